// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// KVM's fault path against whole-range conversions, the shape of
// linux-next's race test for in-place conversion: four vCPUs of the
// mailbox guest write one word of every page of a 512-page convertible
// guest_memfd, round after round, each starting at its own quarter, while
// the host converts the whole range to shared and back to private (a
// to-shared zaps the vCPUs' mappings, so every write faults again, often
// during the to-private that follows).
//
// What must hold, every round: both conversions succeed (a vCPU fault in
// flight is a transient reference, which the series waits out instead of
// answering EAGAIN); every KVM_RUN ends with the guest's command done or
// with KVM_EXIT_MEMORY_FAULT for a page whose conversion is in flight;
// no vCPU stops making progress. A vCPU that exits any other way (linux-
// next's test saw KVM_EXIT_SHUTDOWN at RIP 0xfff0 under multi-threaded
// TCG) or that stays at one page for --stuck-s fails the test with its
// RIP, the GPA it was writing (EBX in the guest's touch loop), the round
// and what KVM does with it over half a second more of KVM_RUN.
//
// Flags (or environment variables): --rounds=N (GMEM_RACE_ROUNDS, default
// 10000), --seconds=S (GMEM_RACE_SECONDS, default 600: the run ends at
// whichever comes first), --stuck-s=S (GMEM_RACE_STUCK_S, default 30).
#include <linux/kvm.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "gmem/guest.h"
#include "gmem/layout.h"
#include "gmem/mailbox_guest.h"
#include "gmem_stress/diagnostics.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::Succeeds;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kPages = 512;
constexpr unsigned kVcpus = 4;

// --name=value on the command line, else the environment variable, else
// @def.
double flag(const char *name, const char *env, double def)
{
	const std::string all = ::gmem::stress::slurp("/proc/self/cmdline");
	const std::string prefix = std::string("--") + name + "=";
	std::string arg;
	for (char c : all) {
		if (c != '\0') {
			arg += c;
			continue;
		}
		if (arg.rfind(prefix, 0) == 0)
			return std::stod(arg.substr(prefix.size()));
		arg.clear();
	}
	if (const char *v = std::getenv(env))
		return std::stod(v);
	return def;
}

class Race {
public:
	Race(ConvertibleGuest &g, double stuck_s) : g_(g), stuck_s_(stuck_s) {}

	// vCPU @v: TOUCH_WRITE of its pages from its quarter to the end, then
	// from the start to its quarter, until stop().
	void vcpu(unsigned v)
	{
		sigevent ev{};
		ev.sigev_notify = SIGEV_THREAD_ID;
		ev.sigev_signo = SIGUSR1;
		ev._sigev_un._tid = ::gettid();
		timer_t kick;
		if (::timer_create(CLOCK_MONOTONIC, &ev, &kick) != 0) {
			fail("timer_create failed");
			return;
		}
		const uint64_t first = v * (kPages / kVcpus);
		for (uint32_t n = 0; !stop_.load(); n++) {
			const bool head = n % 2 == 0;
			const uint64_t from = head ? first : 0;
			const uint64_t count = head ? kPages - first : first;
			if (!count)
				continue;
			if (!touch(v, kick, from, count, n))
				break;
			progress_[v]++;
		}
		::timer_delete(kick);
	}

	// The host: @rounds of to-shared, 10 us, to-private, for at most
	// @seconds.
	void host(uint64_t rounds, double seconds)
	{
		const uint64_t size = kPages * layout::kPage;
		const auto end = Clock::now() + std::chrono::duration<double>(seconds);
		for (; rounds_ < rounds && Clock::now() < end && !stop_.load(); rounds_++) {
			if (!convert(size, false))
				break;
			std::this_thread::sleep_for(std::chrono::microseconds(10));
			if (!convert(size, true))
				break;
			if ((rounds_ + 1) % 500 == 0) {
				std::printf("[ RACE     ] %llu rounds\n",
					    (unsigned long long)rounds_.load() + 1);
				std::fflush(stdout);
			}
		}
		stop_ = true;
	}

	[[nodiscard]] uint64_t rounds() const { return rounds_.load(); }
	[[nodiscard]] uint64_t progress(unsigned v) const { return progress_[v].load(); }
	[[nodiscard]] uint64_t memory_faults() const { return memory_faults_.load(); }
	[[nodiscard]] uint64_t interrupts() const { return interrupts_.load(); }
	[[nodiscard]] uint64_t eagain() const { return eagain_.load(); }
	[[nodiscard]] const std::string &first_eagain() const { return first_eagain_; }
	[[nodiscard]] const std::vector<std::string> &failures() const { return failures_; }

private:
	bool convert(uint64_t size, bool to_private)
	{
		converting_ = true;
		auto r = g_.convert(0, size, to_private);
		// EAGAIN: a page kept a reference through every wait. Counted
		// (only a long-term pin may cause it, and there is none) and
		// tried again, as a VMM would, so that the race goes on.
		for (int tries = 0; to_private && !r && errno_of(r) == EAGAIN && tries < 100;
		     tries++) {
			if (eagain_++ == 0)
				first_eagain_ = "round " + std::to_string(rounds_.load()) + ": " +
						r.error().message();
			r = g_.convert(0, size, to_private);
		}
		converting_ = false;
		if (!r) {
			fail("round " + std::to_string(rounds_.load()) + ": to-" +
			     (to_private ? "private" : "shared") + " of all " +
			     std::to_string(kPages) + " pages: " + r.error().message());
			return false;
		}
		return true;
	}

	// One TOUCH_WRITE of [@from, @from + @count) by vCPU @v, run to its
	// end; false (and a failure) if it cannot be.
	bool touch(unsigned v, timer_t kick, uint64_t from, uint64_t count, uint32_t n)
	{
		const MailboxCommand cmd{ MailboxCmd::kTouchWrite,
					  static_cast<uint32_t>(layout::kDataGpa +
								from * layout::kPage),
					  static_cast<uint32_t>(count), n, 0 };
		// Since when the guest's touch loop has been at this page (EBX):
		// progress is a page written, not a command done (while the
		// range converts, every page may fault again).
		auto since = Clock::now();
		uint64_t at = 0;
		bool posted = false;
		for (;;) {
			itimerspec arm{};
			arm.it_value.tv_sec = 5;
			::timer_settime(kick, 0, &arm, nullptr);
			auto r = posted ? mailbox_resume(g_, v) : mailbox_post(g_, v, cmd);
			posted = true;
			const itimerspec off{};
			::timer_settime(kick, 0, &off, nullptr);
			if (r && mailbox_done(*r, cmd.cmd))
				return true;
			// KVM's answer to a fault on a page whose conversion is in
			// flight: the VMM lets it finish and runs on. EINTR: the
			// 5 s kick.
			const bool fault = r && std::holds_alternative<MemoryFaultExit>(*r);
			const bool eintr = !r && errno_of(r) == EINTR;
			memory_faults_ += fault;
			interrupts_ += eintr;
			if ((fault || eintr) && stop_.load())
				return false;
			if (auto regs = g_.vcpu(v).get_regs(); regs && regs->rbx != at) {
				at = regs->rbx;
				since = Clock::now();
			}
			const auto stalled = Clock::now() - since;
			if ((fault || eintr) && stalled < std::chrono::duration<double>(stuck_s_))
				continue;
			std::string why =
				r ? "exit " + describe(*r) : "KVM_RUN: " + r.error().message();
			if (fault || eintr)
				why += " (no page written)";
			fail(where(v, kick, why, std::chrono::duration<double>(stalled).count()));
			return false;
		}
	}

	// vCPU @v's registers, the page it writes, the round and what KVM
	// does with it over half a second more of KVM_RUN.
	std::string where(unsigned v, timer_t kick, const std::string &why, double secs)
	{
		char buf[256];
		auto regs = g_.vcpu(v).get_regs();
		if (!regs) {
			std::snprintf(buf, sizeof(buf), "(registers: %s)",
				      regs.error().message().c_str());
		} else {
			const uint64_t gpa = regs->rbx;
			std::snprintf(buf, sizeof(buf),
				      "RIP 0x%llx, RSP 0x%llx, writing GPA 0x%llx (page %lld of "
				      "the file), %llu pages left",
				      (unsigned long long)regs->rip, (unsigned long long)regs->rsp,
				      (unsigned long long)gpa,
				      (long long)((gpa - layout::kDataGpa) / layout::kPage),
				      (unsigned long long)regs->rcx);
		}
		char when[96];
		std::snprintf(when, sizeof(when), " for %.1f s at that page, round %llu, %s", secs,
			      (unsigned long long)rounds_.load(),
			      converting_.load() ? "a conversion in flight"
						 : "between conversions");
		std::string then;
		const std::string trace = ::gmem::stress::kvm_exit_summary(v, [&] {
			itimerspec arm{};
			arm.it_value.tv_nsec = 500000000;
			::timer_settime(kick, 0, &arm, nullptr);
			auto r = mailbox_resume(g_, v);
			const itimerspec off{};
			::timer_settime(kick, 0, &off, nullptr);
			then = r ? "exit " + describe(*r) : r.error().message();
		});
		return "vCPU " + std::to_string(v) + ": " + why + "; " + buf + when +
		       "; KVM over 0.5 s more: " + trace + " (that KVM_RUN ended with: " + then +
		       ")";
	}

	void fail(const std::string &why)
	{
		std::lock_guard l(mu_);
		stop_ = true;
		failures_.push_back(why);
		std::printf("[ FAILURE  ] %s\n", why.c_str());
		std::fflush(stdout);
	}

	ConvertibleGuest &g_;
	const double stuck_s_;
	std::atomic<bool> stop_{ false };
	std::atomic<bool> converting_{ false };
	std::atomic<uint64_t> rounds_{ 0 };
	std::atomic<uint64_t> memory_faults_{ 0 };
	std::atomic<uint64_t> interrupts_{ 0 };
	std::atomic<uint64_t> eagain_{ 0 };
	std::string first_eagain_;
	std::array<std::atomic<uint64_t>, kVcpus> progress_{};
	std::mutex mu_;
	std::vector<std::string> failures_;
};

// Four vCPUs faulting the pages of a range in while the host converts it
// to shared and back: every conversion succeeds, every vCPU goes on.
TEST(ConvertFaultRaceTest, VcpusFaultWhileTheRangeConverts)
{
	if (const std::string &why = ConvertibleGuest::unsupported(); !why.empty())
		GTEST_SKIP() << why;
	const auto rounds = static_cast<uint64_t>(flag("rounds", "GMEM_RACE_ROUNDS", 10000));
	const double seconds = flag("seconds", "GMEM_RACE_SECONDS", 600);
	const double stuck_s = flag("stuck-s", "GMEM_RACE_STUCK_S", 30);
	// The vCPU threads' 5 s kick must interrupt KVM_RUN, not kill.
	struct sigaction sa {};
	sa.sa_handler = [](int) {};
	::sigaction(SIGUSR1, &sa, nullptr);

	GuestConfig config = mailbox_guest_config(kPages * layout::kPage);
	config.gmem_flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
	// A refused conversion is a failure here, not something to retry.
	config.retry.attempts = 1;
	auto g = ConvertibleGuest::create(config);
	ASSERT_THAT(g, Succeeds());
	for (unsigned v = 0; v < kVcpus; v++)
		ASSERT_THAT(g->add_vcpu(), Succeeds());

	Race race(*g, stuck_s);
	std::vector<std::thread> vcpus;
	const auto start = Clock::now();
	for (unsigned v = 0; v < kVcpus; v++)
		vcpus.emplace_back([&race, v] { race.vcpu(v); });
	race.host(rounds, seconds);
	for (auto &t : vcpus)
		t.join();
	const double secs = std::chrono::duration<double>(Clock::now() - start).count();

	std::printf("[ RACE     ] %llu rounds in %.1f s; to-private EAGAIN %llu; "
		    "KVM_EXIT_MEMORY_FAULT %llu, 5 s interruptions %llu; commands done per vCPU:",
		    (unsigned long long)race.rounds(), secs, (unsigned long long)race.eagain(),
		    (unsigned long long)race.memory_faults(),
		    (unsigned long long)race.interrupts());
	for (unsigned v = 0; v < kVcpus; v++)
		std::printf(" %llu", (unsigned long long)race.progress(v));
	std::printf("\n");
	std::fflush(stdout);
	for (const auto &f : race.failures())
		ADD_FAILURE() << f;
	EXPECT_EQ(race.eagain(), 0U)
		<< "to-private refused by a transient reference, first " << race.first_eagain();
	EXPECT_GT(race.rounds(), 0U);
	for (unsigned v = 0; v < kVcpus; v++)
		EXPECT_GT(race.progress(v), 0U) << "vCPU " << v << " completed no command";
}

} // namespace
} // namespace gmem
