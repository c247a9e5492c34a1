// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The stress's options: flags of the test binary, or environment variables.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "ops.h"

namespace gmem::stress {

struct Options {
	uint64_t seed = 0;
	double seconds = 150;
	uint64_t max_ops = 1000000;
	unsigned check_ms = 1000;
	// vCPU restarts (the host's state at VMRUN, see run_vcpu()) the run
	// accepts before it fails; a vCPU whose command has not completed
	// after vcpu_stuck_s seconds of KVM_RUN fails the run.
	uint64_t max_vcpu_restarts = 0;
	double vcpu_stuck_s = 30;
	std::array<bool, kOpCount> disabled{};
	bool guest_fill = true;
	bool map_fill = true;
	std::string disabled_list;
};

// Reads the options from /proc/self/cmdline and the environment: an empty
// string, or what is wrong with them. Throws std::exception on a bad number.
std::string parse_options(Options &o);

} // namespace gmem::stress
