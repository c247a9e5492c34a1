// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The vCPUs: a guest's read or write of a page, at times racing a
// conversion of that page, and the KVM_RUN that survives the emulator
// replacing the vCPU's state.
#include "stress.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <variant>

#include "diagnostics.h"

namespace gmem::stress {

bool Stress::op_guest(ThreadCtx &t, int v, bool write)
{
	const uint64_t p = t.rand(kPages);
	auto locks = lock_stripes(p, 1);
	PageModel &m = model_.pages[p];
	// KVM would answer a poisoned page with a SIGBUS of its own.
	if (m.poisoned)
		return false;
	if (!opt_.guest_fill && m.shared && !m.allocated)
		return false;
	// A quarter of the accesses race a conversion of their own page, to
	// shared or to private (KVM's fault against conversion).
	// Both orders end the same: the page in the target state, allocated,
	// holding the token; no EAGAIN (KVM keeps no reference), and a
	// KVM_EXIT_MEMORY_FAULT only while the conversion is in flight.
	std::optional<bool> convert_to_shared;
	if (t.rand(4) == 0)
		convert_to_shared = t.rand(2);
	std::string what = std::string(write ? "guest_write" : "guest_read") + " vCPU " +
			   std::to_string(v) + " [" + std::to_string(p) + "]";
	if (convert_to_shared)
		what += *convert_to_shared ? " racing to_shared" : " racing to_private";
	log(t.id, what, p, 1);
	const uint32_t tok = model_.new_token();
	// The guest reads or writes the first and the last word of the page.
	const MailboxCommand cmd{ write ? MailboxCmd::kWrite : MailboxCmd::kRead,
				  static_cast<uint32_t>(kDataGpa + p * kPage), 0, tok,
				  static_cast<uint32_t>(kPage - 4) };
	std::atomic<bool> converting{ false };
	std::optional<SysError> convert_error;
	std::optional<std::thread> converter;
	if (convert_to_shared) {
		converting = true;
		converter.emplace([&] {
			auto r = *convert_to_shared ? gmem().convert_shared(p * kPage, kPage)
						    : gmem().convert_private(p * kPage, kPage);
			if (!r.has_value())
				convert_error = r.error();
			converting = false;
		});
		racing_conversions_++;
	}
	bool in_flight = converting;
	auto r = run_vcpu(t, v, &cmd);
	// A memory fault while the state changes under KVM's fault: run again,
	// as a VMM would once it has converted the page itself.
	for (int tries = 0;
	     r && std::holds_alternative<MemoryFaultExit>(*r) && in_flight && tries < 1000;
	     tries++) {
		memory_fault_retries_++;
		in_flight = converting;
		r = run_vcpu(t, v, nullptr);
	}
	if (converter)
		converter->join();
	if (convert_error) {
		fail(what + ": the racing conversion failed: " + convert_error->message() + "; " +
			     describe(p),
		     p);
		return true;
	}
	if (!r || !mailbox_done(*r, cmd.cmd)) {
		fail(what + ": KVM_RUN " +
			     (r ? "exit " + ::gmem::describe(*r) : r.error().message()) + "; " +
			     describe(p),
		     p);
		return true;
	}
	const Mailbox &mb = mailbox(*guest_, v);
	if (!write && (mb.out0 != m.token || mb.out1 != m.token)) {
		std::ostringstream s;
		s << what << ": the guest read 0x" << std::hex << mb.out0 << "/0x" << mb.out1
		  << std::dec << "; " << describe(p);
		fail(s.str(), p);
		return true;
	}
	Section s(*this, p, 1);
	// KVM's fault allocated the page if it was a hole, shared or private:
	// a shared one must now be mapped in every domain.
	m.allocated = true;
	if (write)
		m.token = tok;
	if (convert_to_shared)
		m.shared = *convert_to_shared;
	check_domains(p, 1, "after " + what);
	return true;
}

// KVM_RUN of vCPU @v until the guest is done with its command (@post, or
// the one it has if null) or exits otherwise. Under QEMU's multi-threaded
// TCG the nested vCPU's state is at times replaced by its host's
// (KERNEL-BUGS.md, 6): the vCPU then loops in KVM_RUN on a #GP it cannot
// deliver, at the host's RIP. A KVM_RUN that lasts 5 s is interrupted
// (SIGUSR1 makes it return EINTR): a vCPU still in the guest's code goes
// on, for --vcpu-stuck-s in all; one at the host's VMRUN (that signature
// only) is started over, with the same request, and counted, up to
// --max-vcpu-restarts (0 unless asked: single-threaded TCG has not shown
// it). Anything else, a vCPU still in the guest's code after
// --vcpu-stuck-s, or one more restart fails the run with where the vCPU
// is and what KVM does with it.
Result<VcpuExit> Stress::run_vcpu(ThreadCtx &t, int v, const MailboxCommand *post)
{
	const Vcpu &vcpu = guest_->vcpu(v);
	const auto start = Clock::now();
	// The guest RIPs seen at the interruptions, in order, without repeats.
	std::string rips;
	uint64_t last_rip = 0;
	auto run = [&] {
		auto r = post ? mailbox_post(*guest_, v, *post) : mailbox_resume(*guest_, v);
		post = nullptr;
		return r;
	};
	if (!t.kick) {
		sigevent ev{};
		ev.sigev_notify = SIGEV_THREAD_ID;
		ev.sigev_signo = SIGUSR1;
		ev._sigev_un._tid = ::gettid();
		timer_t id;
		if (::timer_create(CLOCK_MONOTONIC, &ev, &id) != 0)
			return run();
		t.kick = id;
	}
	// The failure: where the vCPU was, and what KVM does with it over one
	// more KVM_RUN of half a second.
	auto stuck = [&](const std::string &why) {
		const double s = std::chrono::duration<double>(Clock::now() - start).count();
		std::string then;
		const std::string trace = kvm_exit_summary(v, [&] {
			itimerspec arm{};
			arm.it_value.tv_nsec = 500000000;
			::timer_settime(*t.kick, 0, &arm, nullptr);
			auto r = run();
			const itimerspec off{};
			::timer_settime(*t.kick, 0, &off, nullptr);
			then = r ? "exit " + ::gmem::describe(*r) : r.error().message();
		});
		char buf[64];
		std::snprintf(buf, sizeof(buf), " after %.1f s in KVM_RUN", s);
		return ::gmem::fail(EFAULT, "vCPU " + std::to_string(v) + " " + why + buf +
						    " (RIPs at each 5 s interruption:" + rips +
						    "); KVM over 0.5 s more: " + trace +
						    " (that KVM_RUN ended with: " + then + ")");
	};
	for (;;) {
		itimerspec arm{};
		arm.it_value.tv_sec = 5;
		::timer_settime(*t.kick, 0, &arm, nullptr);
		auto r = run();
		const itimerspec off{};
		::timer_settime(*t.kick, 0, &off, nullptr);
		if (r.has_value() || errno_of(r) != EINTR)
			return r;
		auto regs = vcpu.get_regs();
		if (!regs)
			return unexpected(regs.error());
		if (regs->rip != last_rip || rips.empty()) {
			char buf[32];
			std::snprintf(buf, sizeof(buf), " 0x%llx", (unsigned long long)regs->rip);
			rips += buf;
			last_rip = regs->rip;
		}
		const uint64_t code_len = mailbox_guest_code().size();
		if (regs->rip >= layout::kEntry && regs->rip < layout::kEntry + code_len) {
			// A read or a write is a handful of instructions.
			if (Clock::now() - start >=
			    std::chrono::duration<double>(opt_.vcpu_stuck_s))
				return stuck("stuck in the guest's code");
			continue;
		}
		// Only that signature is the emulator's; anything else fails.
		if (regs->rip < vmrun_text_.first || regs->rip >= vmrun_text_.second)
			return stuck("left the guest's code");
		if (vcpu_state_lost_.load() >= opt_.max_vcpu_restarts)
			return stuck("has its host's state (at VMRUN; KERNEL-BUGS.md, 6) and "
				     "restarts are used up (" +
				     std::to_string(opt_.max_vcpu_restarts) + ")");
		if (vcpu_state_lost_++ == 0)
			std::printf("[ NOTE     ] vCPU %d left its code for RIP 0x%llx: its state "
				    "was replaced (KERNEL-BUGS.md, 6); starting it over\n",
				    v, (unsigned long long)regs->rip);
		kvm_vcpu_events ev{};
		if (::ioctl(vcpu.fd(), KVM_SET_VCPU_EVENTS, &ev) != 0)
			return ::gmem::fail("KVM_SET_VCPU_EVENTS");
		if (auto s = vcpu.set_sregs(sregs0_[v]); !s)
			return unexpected(s.error());
		if (auto s = vcpu.set_regs(regs0_[v]); !s)
			return unexpected(s.error());
	}
}

void Stress::vcpu_thread(int v)
{
	uint64_t sm = opt_.seed ^ (0x100000ULL * (v + 1));
	ThreadCtx t{ kHostThreads + v, std::mt19937_64(splitmix64(sm)), nullptr };
	while (!stopping() && Clock::now() < deadline_ && total_ops_ < opt_.max_ops) {
		const bool write = t.rand(2);
		const Op op = write ? kGuestWrite : kGuestRead;
		if (!enabled(op))
			continue;
		GateGuard g(gate_);
		doing_[kHostThreads + v] = kOpNames[op];
		const bool did = op_guest(t, v, write);
		doing_[kHostThreads + v] = "between ops";
		if (did)
			count(op);
	}
	if (t.kick)
		::timer_delete(*t.kick);
}

} // namespace gmem::stress
