// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Model-checked stress of one convertible guest_memfd: the Stress object
// owns the VM, the file, the IOASes and their domains, the threads that act
// on them, and the shadow model (model.h) they keep. Its members are
// defined by theme: stress.cpp (set-up, the run, the log), check.cpp (the
// checker), and one actor_*.cpp per kind of operation.
#pragma once

#include <time.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "gmem/guest.h"
#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "gmem/mailbox_guest.h"
#include "model.h"
#include "ops.h"
#include "options.h"
#include "sync.h"
#include "syscalls.h"
#include "mock/host_access.h"
#include "mock/iommufd_mock.h"

namespace gmem::stress {

using ::gmem::testing::check_gmem;
using ::gmem::testing::have_iommufd_mock;
using ::gmem::testing::MockAccess;
using ::gmem::testing::MockDomain;
using ::gmem::testing::sigbus_guard;
using Clock = std::chrono::steady_clock;

constexpr int kHostThreads = 3;
constexpr int kVcpus = 2;
constexpr uint64_t kLogTail = 48;
constexpr uint64_t kPageHistory = 12;
// Each MADV_HWPOISON costs a page for good: bound them.
constexpr int kMaxPoisoned = 48;

// splitmix64: derives the per-thread seeds from the run's seed.
inline uint64_t splitmix64(uint64_t &x)
{
	uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct ThreadCtx {
	int id;
	std::mt19937_64 rng;
	std::unique_ptr<Ring> ring;
	std::unique_ptr<FailNth> nth = nullptr;
	// vCPU threads: a timer that sends this thread SIGUSR1.
	std::optional<timer_t> kick = std::nullopt;
	uint64_t rand(uint64_t n) { return rng() % n; }
};

class Stress {
public:
	explicit Stress(const Options &o) : opt_(o) {}

	// Creates everything; an empty string or why the host cannot run it
	// (skip), or throws SysErrorException on an unexpected failure.
	std::string setup();
	void run();
	[[nodiscard]] const std::vector<std::string> &failures() const { return failures_; }
	void print_summary(double seconds) const;

private:
	// --- locking ---------------------------------------------------------
	// The model update and the check of a page operation: every IOAS's
	// area lock of the chunks touched (shared; MAP_FILE and UNMAP take
	// one exclusively), then every IOAS's domain lock (shared; attach and
	// detach take one exclusively). Taken while holding the stripes.
	class Section {
	public:
		Section(Stress &s, uint64_t first, uint64_t n)
		{
			const uint64_t c0 = first / kChunkPages, c1 = (first + n - 1) / kChunkPages;
			for (int i = 0; i < kIoases; i++)
				for (uint64_t c = c0; c <= c1; c++)
					area_.emplace_back(s.area_mu_[i][c]);
			for (int i = 0; i < kIoases; i++)
				dom_.emplace_back(s.dom_mu_[i]);
		}

	private:
		std::vector<std::shared_lock<std::shared_mutex>> area_;
		std::vector<std::shared_lock<std::shared_mutex>> dom_;
	};
	std::vector<std::unique_lock<std::mutex>> lock_stripes(uint64_t first, uint64_t n)
	{
		std::vector<std::unique_lock<std::mutex>> l;
		for (uint64_t s = first / kStripePages; s <= (first + n - 1) / kStripePages; s++)
			l.emplace_back(stripe_mu_[s]);
		return l;
	}

	const GuestMemfd &gmem() const { return guest_->gmem(); }
	// The host's mapping of the whole file.
	uint8_t *data() const { return guest_->data(); }

	// --- the model -------------------------------------------------------
	// The model's description of a page, with its IOASes' domain counts.
	std::string describe(uint64_t p) const;

	// --- checks (inside a Section, or with the gate closed) -------------
	// Each domain maps exactly the mirrored pages of [first, first + n).
	bool check_domains(uint64_t first, uint64_t n, const std::string &what);
	bool check_mirror_status(const std::string &what);
	// Host view of every page: SIGBUS exactly where the model says.
	bool check_host_all(const std::string &what);
	void full_check(const std::string &what);

	// --- reporting -------------------------------------------------------
	// Logs an operation; [first, first + n) are the pages it touches.
	void log(int thread, const std::string &line, uint64_t first = 0, uint64_t n = 0);
	// Reports a model mismatch (the first one with the log tail and the
	// history of @page) and stops the run.
	void fail(const std::string &msg, std::optional<uint64_t> page = std::nullopt);
	[[nodiscard]] bool stopping() const { return stop_.load(); }

	// --- operations --------------------------------------------------------
	void host_thread(int id);
	void vcpu_thread(int v);
	Result<VcpuExit> run_vcpu(ThreadCtx &t, int v, const MailboxCommand *post);
	bool enabled(Op op) const { return !opt_.disabled[op]; }
	void range(ThreadCtx &t, uint64_t &first, uint64_t &n);
	// Each returns false if it did not apply (nothing counted).
	bool op_convert(ThreadCtx &t, bool to_private);
	bool op_host_access(ThreadCtx &t, bool write);
	bool op_fallocate(ThreadCtx &t, bool punch, bool uring);
	bool op_hwpoison(ThreadCtx &t);
	bool op_area(ThreadCtx &t, Op &done);
	bool op_domain(ThreadCtx &t, Op &done);
	bool op_fork(ThreadCtx &t);
	bool op_pin_to_private(ThreadCtx &t);
	bool op_dma_read(ThreadCtx &t);
	bool op_guest(ThreadCtx &t, int v, bool write);
	bool op_reclaim(ThreadCtx &t);
	bool op_fail_nth(ThreadCtx &t);
	// MIRROR_STATUS with RETRY of every area holding [first, first + n):
	// maps what an injected failure left pending; then nothing may be.
	bool retry_pending(uint64_t first, uint64_t n, const std::string &what);
	void count(Op op)
	{
		counts_[op]++;
		total_ops_++;
		last_progress_ = Clock::now().time_since_epoch().count();
	}

	Options opt_;
	// The VM running the mailbox guest on kVcpus vCPUs, the file its data
	// slot. Destroyed last to first: domains and accesses go before their
	// IOAS, the IOASes (and their file references) before the guest.
	std::optional<ConvertibleGuest> guest_;
	std::optional<Iommufd> iommufd_;
	std::vector<Ioas> ioas_;
	std::vector<MockAccess> access_;
	std::array<std::vector<MockDomain>, kIoases> domains_;

	Model model_;
	std::array<std::mutex, kStripes> stripe_mu_;
	std::array<std::array<std::shared_mutex, kChunks>, kIoases> area_mu_;
	std::array<std::shared_mutex, kIoases> dom_mu_;
	std::mutex domain_rng_mu_;
	Gate gate_;

	std::atomic<bool> stop_{ false };
	std::atomic<uint64_t> total_ops_{ 0 };
	std::atomic<int64_t> last_progress_{ 0 };
	std::atomic<int> poisoned_{ 0 };
	std::array<std::atomic<uint64_t>, kOpCount> counts_{};
	std::atomic<uint64_t> quiesce_checks_{ 0 };
	std::atomic<uint64_t> expected_errors_{ 0 };
	std::atomic<uint64_t> racing_conversions_{ 0 };
	std::atomic<uint64_t> memory_fault_retries_{ 0 };
	std::atomic<uint64_t> vcpu_state_lost_{ 0 };
	// Each vCPU's state as setup() left it, to start it over with.
	std::vector<kvm_sregs> sregs0_;
	std::vector<kvm_regs> regs0_;
	// Where the host's VMRUN returns (__svm_vcpu_run), from kallsyms.
	std::pair<uint64_t, uint64_t> vmrun_text_{ 0, 0 };
	std::atomic<uint64_t> domainless_{ 0 };
	std::atomic<uint64_t> injected_failures_{ 0 };
	// What each thread is doing: an op kind's name, or "between ops".
	std::array<std::atomic<const char *>, kHostThreads + kVcpus> doing_{};
	Clock::time_point deadline_;

	std::mutex log_mu_;
	std::deque<std::string> log_;
	// The last operations that touched each page.
	std::array<std::deque<std::string>, kPages> history_;
	uint64_t log_seq_ = 0;
	std::vector<std::string> failures_;
	std::atomic<bool> uring_pins_work_{ true };
	std::atomic<bool> hwpoison_works_{ true };
	std::atomic<int64_t> last_reclaim_{ 0 };
	bool fault_injection_ = true;
};

} // namespace gmem::stress
