// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// What the stress reads from /proc and tracefs to explain a hang.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>

namespace gmem::stress {

// A whole (small) file, e.g. under /proc.
std::string slurp(const std::filesystem::path &p);

// [start, end) of a kernel function's text, from /proc/kallsyms (the next
// symbol's address ends it); { 0, 0 } if it cannot be read.
std::pair<uint64_t, uint64_t> symbol_range(const std::string &name);

// A running vCPU thread has no stack to show: what KVM does instead, from
// one second of its tracepoints (the events of a fault that never ends).
void print_kvm_trace();

// What KVM does with vCPU @vcpu_id while @run runs it (the caller's
// KVM_RUN, interrupted after about half a second): its distinct exits
// (reason and guest RIP) and injected exceptions with their counts, most
// frequent first; or why it cannot tell.
std::string kvm_exit_summary(int vcpu_id, const std::function<void()> &run);

// Each of this process's threads: state, wait channel and kernel stack
// (the test runs as root), for a deadlock report.
void print_thread_stacks();

} // namespace gmem::stress
