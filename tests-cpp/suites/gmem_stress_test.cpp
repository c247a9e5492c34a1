// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Model-checked stress of one convertible guest_memfd (issue 12): threads
// do random operations on a file bound to a memslot of a
// KVM_X86_SW_PROTECTED_VM and mapped, chunk by chunk, into two IOASes with
// one or two iommufd mock domains each, while a shadow model of every page
// (shared or private, allocated or a hole, poisoned, the token last
// written) is checked throughout:
//
//  - after every operation, for the pages it touched: each domain of each
//    IOAS maps exactly the allocated, shared, unpoisoned pages of the
//    chunks it maps (IOMMU_TEST_OP_MD_CHECK_GMEM, page PFN by page PFN)
//    and nothing elsewhere; host accesses through mmap SIGBUS exactly on
//    private and poisoned pages and read the token last written, by the
//    host or by the guest;
//  - at quiesce points (every --check-ms, all threads stopped between two
//    operations): the same for every page, every page read back from the
//    host, and IOMMU_IOAS_MIRROR_STATUS of every area counting the model's
//    mapped pages, nothing pending, and as many IOPTEs as pages times
//    domains. IOAS 1 also passes through zero domains (then the mirror
//    only counts).
//
// Operations on the same pages are serialised by per-stripe locks; the rest
// run concurrently. MAP_FILE and UNMAP of a chunk, and domain attach and
// detach, run concurrently with page operations: the model's update of a
// page operation (and its check) waits for them instead, see Stress::Section.
// The same-page races that matter are made on purpose, each with an outcome
// the model can leave open or look up: host faults against conversions,
// hole punch, fallocate() and memory failure (a Racer thread), a conversion
// against a vCPU's access to its page; drop_caches and compaction run
// against everything.
//
// Flags (or environment variables): --seed=N (GMEM_STRESS_SEED),
// --seconds=N (GMEM_STRESS_SECONDS), --max-ops=N (GMEM_STRESS_OPS),
// --check-ms=N (GMEM_STRESS_CHECK_MS), --disable=kind,kind
// (GMEM_STRESS_DISABLE): op kinds as printed at the end, plus "guest_fill"
// (vCPUs avoid shared holes in mapped chunks) and "map_fill" (MAP_FILE
// finds no hole: the chunk is fallocate()d first).
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "mock/host_access.h"
#include "mock/iommufd_mock.h"
#include "testing/matchers.h"

extern "C" const uint8_t stress_guest_start[], stress_guest_end[];

namespace gmem {
namespace {

using ::gmem::testing::check_gmem;
using ::gmem::testing::have_iommufd_mock;
using ::gmem::testing::MockAccess;
using ::gmem::testing::MockDomain;
using ::gmem::testing::sigbus_guard;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 256;
constexpr uint64_t kFileSize = kPages * kPage;
// IOASes map the file in chunks, each its own area.
constexpr uint64_t kChunkPages = 64;
constexpr uint64_t kChunks = kPages / kChunkPages;
constexpr uint64_t kChunkSize = kChunkPages * kPage;
// Page operations lock the stripes they touch.
constexpr uint64_t kStripePages = 8;
constexpr uint64_t kStripes = kPages / kStripePages;
constexpr int kIoases = 2;
constexpr int kMaxDomains = 2;
constexpr int kHostThreads = 3;
constexpr int kVcpus = 2;
// The guest: code and mailboxes in an ordinary slot, the file in another.
constexpr uint64_t kCodeSize = 0x10000;
constexpr uint64_t kGuestEntry = 0x1000;
constexpr uint64_t kMailbox = 0x8000;
constexpr uint64_t kDataGpa = 0x1000000;
constexpr uint16_t kDonePort = 0xe0;
// Where each IOAS maps chunk c: base + c * 2 chunks (a gap between areas).
constexpr uint64_t kIovaBase[kIoases] = { MOCK_APERTURE_START + 0x100000,
					  MOCK_APERTURE_START + 0x4000000 };
constexpr uint64_t kLogTail = 48;
constexpr uint64_t kPageHistory = 12;
// Each MADV_HWPOISON costs a page for good: bound them.
constexpr int kMaxPoisoned = 48;

static_assert(kIovaBase[1] + 2 * kFileSize <= MOCK_APERTURE_LAST);

enum Op : int {
	kToShared,
	kToPrivate,
	kHostRead,
	kHostWrite,
	kPunch,
	kFallocate,
	kUringFallocate,
	kHwPoison,
	kGuestRead,
	kGuestWrite,
	kMapFile,
	kUnmap,
	kAttach,
	kDetach,
	kFork,
	kPinToPrivate,
	kDmaRead,
	kReclaim,
	kFailNth,
	kOpCount
};

constexpr const char *kOpNames[kOpCount] = {
	"to_shared",	  "to_private",	     "host_read", "host_write", "punch",
	"fallocate",	  "uring_fallocate", "hwpoison",  "guest_read", "guest_write",
	"map_file",	  "unmap",	     "attach",	  "detach",	"fork",
	"pin_to_private", "dma_read",	     "reclaim",	  "fail_nth",
};

// Host threads pick operations with these weights; vCPU threads do guest
// reads and writes only. map_file/unmap and attach/detach are picked as
// one toggle each (whichever applies).
struct Weight {
	Op op;
	unsigned weight;
};
constexpr Weight kHostWeights[] = {
	{ kToShared, 14 }, { kToPrivate, 14 }, { kHostRead, 10 },      { kHostWrite, 8 },
	{ kPunch, 6 },	   { kFallocate, 4 },  { kUringFallocate, 4 }, { kHwPoison, 2 },
	{ kMapFile, 3 },   { kAttach, 2 },     { kFork, 1 },	       { kPinToPrivate, 2 },
	{ kDmaRead, 6 },   { kReclaim, 1 },    { kFailNth, 3 },
};

// splitmix64: derives the per-thread seeds from the run's seed.
uint64_t splitmix64(uint64_t &x)
{
	uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct Options {
	uint64_t seed = 0;
	double seconds = 150;
	uint64_t max_ops = 1000000;
	unsigned check_ms = 1000;
	std::array<bool, kOpCount> disabled{};
	bool guest_fill = true;
	bool map_fill = true;
	std::string disabled_list;
};

// A whole (small) file, e.g. under /proc.
std::string slurp(const std::filesystem::path &p)
{
	std::ifstream f(p);
	return std::string(std::istreambuf_iterator<char>(f), {});
}

std::vector<std::string> command_line()
{
	const std::string all = slurp("/proc/self/cmdline");
	std::vector<std::string> args;
	std::string cur;
	for (char c : all) {
		if (c == '\0') {
			args.push_back(cur);
			cur.clear();
		} else {
			cur += c;
		}
	}
	return args;
}

// --name=value on the command line, else the environment variable.
std::optional<std::string> option(const std::vector<std::string> &args, const std::string &name,
				  const char *env)
{
	const std::string prefix = "--" + name + "=";
	for (const auto &a : args)
		if (a.rfind(prefix, 0) == 0)
			return a.substr(prefix.size());
	if (const char *v = std::getenv(env))
		return std::string(v);
	return std::nullopt;
}

// Fails with a message naming the unknown kind.
std::string parse_options(Options &o)
{
	const auto args = command_line();
	if (auto v = option(args, "seed", "GMEM_STRESS_SEED"))
		o.seed = std::stoull(*v, nullptr, 0);
	else
		o.seed = std::random_device{}() ^
			 (static_cast<uint64_t>(std::random_device{}()) << 32);
	if (auto v = option(args, "seconds", "GMEM_STRESS_SECONDS"))
		o.seconds = std::stod(*v);
	if (auto v = option(args, "max-ops", "GMEM_STRESS_OPS"))
		o.max_ops = std::stoull(*v, nullptr, 0);
	if (auto v = option(args, "check-ms", "GMEM_STRESS_CHECK_MS"))
		o.check_ms = static_cast<unsigned>(std::stoul(*v));
	if (auto v = option(args, "disable", "GMEM_STRESS_DISABLE")) {
		std::stringstream ss(*v);
		std::string kind;
		while (std::getline(ss, kind, ',')) {
			if (kind.empty())
				continue;
			if (kind == "guest_fill") {
				o.guest_fill = false;
			} else if (kind == "map_fill") {
				o.map_fill = false;
			} else {
				int i = 0;
				while (i < kOpCount && kind != kOpNames[i])
					i++;
				if (i == kOpCount)
					return "unknown op kind in --disable: " + kind;
				o.disabled[i] = true;
			}
			o.disabled_list += (o.disabled_list.empty() ? "" : ",") + kind;
		}
	}
	return {};
}

// Runs fn() again while it fails with EINTR: guest_memfd's fallocate()
// stops at signal_pending(), which io_uring's task work (TIF_NOTIFY_SIGNAL)
// makes true without any signal (KERNEL-BUGS.md, 5). What it allocated
// stays; the rerun completes it.
std::atomic<uint64_t> eintr_retries{ 0 };

template <typename F> auto again_on_eintr(F &&fn)
{
	auto r = fn();
	for (int i = 0; i < 100 && !r.has_value() && errno_of(r) == EINTR; i++) {
		eintr_retries++;
		r = fn();
	}
	return r;
}

// The model of one file page. Written by the page operation that holds the
// page's stripe, inside a Section (see Stress::Section), or by MAP_FILE
// holding its chunk exclusively (allocated only); atomics so that a
// concurrent reader of another field is well defined.
struct PageModel {
	std::atomic<bool> shared{ false };
	std::atomic<bool> allocated{ false };
	std::atomic<bool> poisoned{ false };
	std::atomic<uint32_t> token{ 0 };
};

// Page operations pass it while running; a quiesce check closes it and
// waits until none is inside.
class Gate {
public:
	void enter()
	{
		std::unique_lock l(mu_);
		cv_.wait(l, [&] { return !closed_; });
		active_++;
	}
	void exit()
	{
		std::lock_guard l(mu_);
		if (--active_ == 0)
			cv_.notify_all();
	}
	// False if operations are still running after @timeout (a hang).
	bool close(std::chrono::seconds timeout)
	{
		std::unique_lock l(mu_);
		closed_ = true;
		return cv_.wait_for(l, timeout, [&] { return active_ == 0; });
	}
	void open()
	{
		std::lock_guard l(mu_);
		closed_ = false;
		cv_.notify_all();
	}

private:
	std::mutex mu_;
	std::condition_variable cv_;
	int active_ = 0;
	bool closed_ = false;
};

class GateGuard {
public:
	explicit GateGuard(Gate &g) : g_(g) { g_.enter(); }
	~GateGuard() { g_.exit(); }
	GateGuard(const GateGuard &) = delete;
	GateGuard &operator=(const GateGuard &) = delete;

private:
	Gate &g_;
};

// An io_uring instance of one thread.
class Ring {
public:
	Ring() { ok_ = io_uring_queue_init(8, &ring_, 0) == 0; }
	~Ring()
	{
		if (ok_)
			io_uring_queue_exit(&ring_);
	}
	Ring(const Ring &) = delete;
	Ring &operator=(const Ring &) = delete;
	[[nodiscard]] bool ok() const { return ok_; }
	io_uring *get() { return &ring_; }

	// IORING_OP_FALLOCATE: the completion's result (0 or -errno).
	int fallocate(int fd, int mode, uint64_t off, uint64_t len)
	{
		io_uring_sqe *sqe = io_uring_get_sqe(&ring_);
		if (!sqe)
			return -EBUSY;
		io_uring_prep_fallocate(sqe, fd, mode, off, len);
		int r = io_uring_submit(&ring_);
		if (r < 0)
			return r;
		io_uring_cqe *cqe = nullptr;
		r = io_uring_wait_cqe(&ring_, &cqe);
		if (r < 0)
			return r;
		r = cqe->res;
		io_uring_cqe_seen(&ring_, cqe);
		return r;
	}

private:
	io_uring ring_{};
	bool ok_ = false;
};

// A thread that repeats fn() until destroyed: concurrent activity on the
// very pages an operation works on, of a kind whose outcome the model does
// not need (host faults that SIGBUS or not, no-op conversions).
class Racer {
public:
	explicit Racer(std::function<void()> fn)
	    : th_([this, fn = std::move(fn)] {
		      while (run_)
			      fn();
	      })
	{
	}
	~Racer()
	{
		run_ = false;
		th_.join();
	}
	Racer(const Racer &) = delete;
	Racer &operator=(const Racer &) = delete;

private:
	std::atomic<bool> run_{ true };
	std::thread th_;
};

// The mailbox the guest reads its requests from (gmem_stress_guest.S).
struct Mailbox {
	volatile uint32_t op;
	volatile uint32_t gpa;
	volatile uint32_t val;
	volatile uint32_t out_first;
	volatile uint32_t out_last;
};

// The calling thread's fail-nth (CONFIG_FAULT_INJECTION): arm(n) makes its
// n-th fault-injectable allocation from then on fail, in whatever call.
class FailNth {
public:
	FailNth()
	    : fd_(::open(("/proc/self/task/" + std::to_string(::gettid()) + "/fail-nth").c_str(),
			 O_RDWR | O_CLOEXEC))
	{
	}
	[[nodiscard]] bool ok() const { return fd_.valid(); }
	bool arm(unsigned n)
	{
		const std::string v = std::to_string(n);
		return ::pwrite(fd_.get(), v.data(), v.size(), 0) == static_cast<ssize_t>(v.size());
	}
	// Disarms; true if the injection fired, i.e. some allocation failed.
	bool disarm()
	{
		char buf[32] = {};
		bool fired;
		const ssize_t r = ::pread(fd_.get(), buf, sizeof(buf) - 1, 0);
		// EFAULT: the read itself was the n-th, nothing before it.
		fired = r > 0 && std::strtoul(buf, nullptr, 10) == 0;
		while (::pwrite(fd_.get(), "0", 1, 0) != 1 && errno == EFAULT) {
		}
		return fired;
	}

private:
	UniqueFd fd_;
};

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

	// --- the model -------------------------------------------------------
	bool covered(int ioas, uint64_t page) const { return covered_[ioas][page / kChunkPages]; }
	bool covered_any(uint64_t page) const
	{
		for (int i = 0; i < kIoases; i++)
			if (covered(i, page))
				return true;
		return false;
	}
	bool mirrored(uint64_t p) const
	{
		const PageModel &m = pages_[p];
		return m.shared && m.allocated && !m.poisoned;
	}
	std::string describe(uint64_t p) const;
	static uint64_t iova(int ioas, uint64_t page)
	{
		return kIovaBase[ioas] + (page / kChunkPages) * 2 * kChunkSize +
		       (page % kChunkPages) * kPage;
	}
	uint32_t new_token() { return next_token_.fetch_add(1) | 0x80000000u; }

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
	Result<void> run_vcpu(ThreadCtx &t, int v);
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
	// Destroyed last to first: domains and accesses go before their IOAS,
	// the IOASes (and their file references) before the file and the VM.
	std::optional<Kvm> kvm_;
	std::optional<Vm> vm_;
	std::optional<Mapping> code_;
	std::optional<GuestMemfd> gmem_;
	std::optional<Mapping> data_;
	std::vector<Vcpu> vcpus_;
	std::optional<Iommufd> iommufd_;
	std::vector<Ioas> ioas_;
	std::vector<MockAccess> access_;
	std::array<std::vector<MockDomain>, kIoases> domains_;

	std::array<PageModel, kPages> pages_;
	std::array<std::array<bool, kChunks>, kIoases> covered_{};
	std::array<std::mutex, kStripes> stripe_mu_;
	std::array<std::array<std::shared_mutex, kChunks>, kIoases> area_mu_;
	std::array<std::shared_mutex, kIoases> dom_mu_;
	std::mutex domain_rng_mu_;
	Gate gate_;

	std::atomic<bool> stop_{ false };
	std::atomic<uint64_t> total_ops_{ 0 };
	std::atomic<int64_t> last_progress_{ 0 };
	std::atomic<uint32_t> next_token_{ 1 };
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

std::string Stress::describe(uint64_t p) const
{
	const PageModel &m = pages_[p];
	std::ostringstream s;
	s << "file page " << p << " (GPA 0x" << std::hex << kDataGpa + p * kPage << std::dec
	  << ", chunk " << p / kChunkPages << "): model " << (m.shared ? "shared" : "private")
	  << (m.allocated ? ", allocated" : ", hole") << (m.poisoned ? ", poisoned" : "")
	  << ", token 0x" << std::hex << m.token << std::dec << "; mapped by IOAS";
	bool any = false;
	for (int i = 0; i < kIoases; i++)
		if (covered(i, p)) {
			s << " " << i << " (" << domains_[i].size() << " domains, IOVA 0x"
			  << std::hex << iova(i, p) << std::dec << ")";
			any = true;
		}
	if (!any)
		s << " none";
	return s.str();
}

void Stress::log(int thread, const std::string &line, uint64_t first, uint64_t n)
{
	std::lock_guard l(log_mu_);
	std::ostringstream s;
	s << "#" << ++log_seq_ << " t" << thread << " " << line;
	log_.push_back(s.str());
	if (log_.size() > kLogTail)
		log_.pop_front();
	for (uint64_t p = first; p < first + n && p < kPages; p++) {
		history_[p].push_back(s.str());
		if (history_[p].size() > kPageHistory)
			history_[p].pop_front();
	}
}

void Stress::fail(const std::string &msg, std::optional<uint64_t> page)
{
	std::lock_guard l(log_mu_);
	stop_ = true;
	if (!failures_.empty()) {
		// The first failure carries the log; later ones are likely its
		// consequences.
		if (failures_.size() < 8)
			failures_.push_back("(also) " + msg);
		return;
	}
	std::ostringstream s;
	s << "model mismatch with --seed=" << opt_.seed << ": " << msg << "\noperation log tail ("
	  << log_.size() << " entries, oldest first):\n";
	for (const auto &e : log_)
		s << "  " << e << "\n";
	if (page && *page < kPages) {
		s << "operations on file page " << *page << " (oldest first):\n";
		for (const auto &e : history_[*page])
			s << "  " << e << "\n";
	}
	failures_.push_back(s.str());
	std::printf("[ FAILURE  ] %s\n", s.str().c_str());
	std::fflush(stdout);
}

bool Stress::check_domains(uint64_t first, uint64_t n, const std::string &what)
{
	const int fd = gmem_->fd();
	const int ifd = iommufd_->fd();
	for (int i = 0; i < kIoases; i++) {
		for (size_t d = 0; d < domains_[i].size(); d++) {
			const uint32_t hwpt = domains_[i][d].hwpt_id();
			for (uint64_t p = first; p < first + n;) {
				// A run of pages with the same expectation, inside
				// one chunk.
				const bool cov = covered(i, p);
				const bool want = cov && mirrored(p);
				uint64_t q = p + 1;
				while (q < first + n && q % kChunkPages != 0 &&
				       (cov && mirrored(q)) == want)
					q++;
				auto r = check_gmem(ifd, hwpt, iova(i, p), (q - p) * kPage, fd,
						    p * kPage, !want);
				if (!r.has_value()) {
					uint64_t bad = p;
					for (uint64_t k = p; k < q; k++)
						if (!check_gmem(ifd, hwpt, iova(i, k), kPage, fd,
								k * kPage, !want)
							     .has_value()) {
							bad = k;
							break;
						}
					std::ostringstream s;
					s << what << ": IOAS " << i << " mock domain " << d
					  << " (HWPT " << hwpt << ") should "
					  << (want ? "map the page's PFN" : "map nothing")
					  << " at IOVA 0x" << std::hex << iova(i, bad) << std::dec
					  << " (" << r.error().message() << "); " << describe(bad);
					fail(s.str(), bad);
					return false;
				}
				p = q;
			}
		}
	}
	return true;
}

bool Stress::check_mirror_status(const std::string &what)
{
	for (int i = 0; i < kIoases; i++) {
		for (uint64_t c = 0; c < kChunks; c++) {
			const uint64_t base = iova(i, c * kChunkPages);
			auto st = ioas_[i].mirror_status(base);
			if (!covered_[i][c]) {
				if (errno_of(st) != ENOENT) {
					fail(what + ": MIRROR_STATUS of unmapped chunk " +
					     std::to_string(c) + " of IOAS " + std::to_string(i) +
					     " should fail with ENOENT");
					return false;
				}
				continue;
			}
			if (!st.has_value()) {
				fail(what + ": " + st.error().message());
				return false;
			}
			uint64_t want = 0;
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				want += mirrored(p);
			const uint64_t ioptes = want * domains_[i].size();
			const bool ok = st->iova == base && st->length == kChunkSize &&
					st->mapped_pages == want && st->pending_pages == 0 &&
					st->error == 0 &&
					st->iopte_adds - st->iopte_removes == ioptes;
			if (!ok) {
				std::ostringstream s;
				s << what << ": IOMMU_IOAS_MIRROR_STATUS of IOAS " << i << " chunk "
				  << c << " (file pages [" << c * kChunkPages << ", "
				  << (c + 1) * kChunkPages << ")): " << *st << "; the model has "
				  << want << " mapped pages, 0 pending, " << ioptes
				  << " IOPTEs (adds - removes) in " << domains_[i].size()
				  << " domains";
				fail(s.str());
				return false;
			}
		}
	}
	return true;
}

bool Stress::check_host_all(const std::string &what)
{
	for (uint64_t p = 0; p < kPages; p++) {
		const PageModel &m = pages_[p];
		// Reading a hole would allocate it: only pages the model has.
		if (m.shared && !m.allocated && !m.poisoned)
			continue;
		volatile uint32_t *w =
			reinterpret_cast<volatile uint32_t *>(data_->data() + p * kPage);
		uint32_t a = 0, b = 0;
		const bool ok = sigbus_guard([&] {
			a = w[0];
			b = w[kPage / 4 - 1];
		});
		const bool want = m.shared && !m.poisoned;
		if (ok != want) {
			fail(what + ": host read " + (ok ? "succeeded" : "got SIGBUS") + "; " +
				     describe(p),
			     p);
			return false;
		}
		if (ok && (a != m.token || b != m.token)) {
			std::ostringstream s;
			s << what << ": host read 0x" << std::hex << a << "/0x" << b << std::dec
			  << "; " << describe(p);
			fail(s.str(), p);
			return false;
		}
	}
	return true;
}

void Stress::full_check(const std::string &what)
{
	quiesce_checks_++;
	if (!check_domains(0, kPages, what))
		return;
	if (!check_mirror_status(what))
		return;
	check_host_all(what);
}

void Stress::range(ThreadCtx &t, uint64_t &first, uint64_t &n)
{
	first = t.rand(kPages);
	const uint64_t max = t.rand(2) ? 4 : 16;
	n = 1 + t.rand(std::min<uint64_t>(max, kPages - first));
}

bool Stress::op_convert(ThreadCtx &t, bool to_private)
{
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	std::ostringstream what;
	what << (to_private ? "to_private" : "to_shared") << " [" << first << ", " << first + n
	     << ")";
	// Expected failure: a poisoned page that would change (shared ones).
	std::optional<uint64_t> poisoned;
	if (to_private)
		for (uint64_t p = first; p < first + n && !poisoned; p++)
			if (pages_[p].shared && pages_[p].poisoned)
				poisoned = p;
	// Half of the conversions race host faults on their own pages: a
	// fault filling a hole, or holding a transient reference, must
	// neither fail the conversion (no EAGAIN: the reference is waited
	// for) nor survive it. Only pages whose allocation the model can
	// leave open are faulted: private ones, and to private (unless it
	// must fail) shared ones, which end private.
	std::vector<uint64_t> race;
	if (t.rand(2)) {
		for (uint64_t p = first; p < first + n; p++)
			if (!pages_[p].shared || (to_private && !poisoned))
				race.push_back(p);
		if (!race.empty())
			what << " racing host faults";
	}
	log(t.id, what.str(), first, n);
	std::optional<Racer> racer;
	if (!race.empty())
		racer.emplace([this, &race, k = size_t{ 0 }]() mutable {
			volatile uint8_t *b = data_->data() + race[k++ % race.size()] * kPage;
			(void)sigbus_guard([&] { (void)b[kPage / 2]; });
		});
	auto r = to_private ? gmem_->convert_private(first * kPage, n * kPage)
			    : gmem_->convert_shared(first * kPage, n * kPage);
	racer.reset();
	if (poisoned) {
		// The page keeps memory failure's reference: not a retryable
		// EAGAIN, its own errno naming a poisoned page (issue 12, 5).
		const uint64_t at =
			r.has_value() ? 0 : r.error().error_offset.value_or(~0ULL) / kPage;
		if (r.has_value() || errno_of(r) != EHWPOISON || at < first || at >= first + n ||
		    !pages_[at].poisoned) {
			fail(what.str() +
				     " over a poisoned page should fail with EHWPOISON naming "
				     "a poisoned page, got " +
				     (r.has_value() ? std::string("success")
						    : r.error().message()) +
				     "; " + describe(*poisoned),
			     *poisoned);
			return true;
		}
		expected_errors_++;
	} else if (!r.has_value()) {
		const uint64_t at = std::min(
			first + n - 1, r.error().error_offset.value_or(first * kPage) / kPage);
		fail(what.str() + ": " + r.error().message() + "; " + describe(at), at);
		return true;
	}
	Section s(*this, first, n);
	if (r.has_value()) {
		for (uint64_t p = first; p < first + n; p++) {
			PageModel &m = pages_[p];
			if (to_private) {
				m.shared = false;
			} else if (!m.shared) {
				// The mirror allocates the pages a conversion makes
				// shared; a page that already was shared stays as
				// it is (a hole stays a hole).
				m.shared = true;
				if (covered_any(p))
					m.allocated = true;
			}
		}
	}
	if (r.has_value() && to_private) {
		// No host mapping survives, not even one a racing fault made.
		for (uint64_t p = first; p < first + n; p++) {
			volatile uint8_t *b = data_->data() + p * kPage;
			if (sigbus_guard([&] { (void)b[0]; })) {
				fail("after " + what.str() + ": the host still reads the page; " +
					     describe(p),
				     p);
				return true;
			}
		}
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

bool Stress::op_host_access(ThreadCtx &t, bool write)
{
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	std::ostringstream what;
	what << (write ? "host_write" : "host_read") << " [" << first << ", " << first + n << ")";
	log(t.id, what.str(), first, n);
	std::vector<uint32_t> tokens(n);
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t p = first + i;
		PageModel &m = pages_[p];
		volatile uint32_t *w =
			reinterpret_cast<volatile uint32_t *>(data_->data() + p * kPage);
		uint32_t a = 0, b = 0;
		const uint32_t tok = new_token();
		const bool ok = sigbus_guard([&] {
			if (write) {
				w[0] = tok;
				w[kPage / 4 - 1] = tok;
			} else {
				a = w[0];
				b = w[kPage / 4 - 1];
			}
		});
		const bool want = m.shared && !m.poisoned;
		if (ok != want) {
			fail(what.str() + ": " + (ok ? "succeeded" : "got SIGBUS") + "; " +
				     describe(p),
			     p);
			return true;
		}
		if (ok && !write && (a != m.token || b != m.token)) {
			std::ostringstream s;
			s << what.str() << ": read 0x" << std::hex << a << "/0x" << b << std::dec
			  << "; " << describe(p);
			fail(s.str(), p);
			return true;
		}
		tokens[i] = ok && write ? tok : m.token.load();
	}
	Section s(*this, first, n);
	for (uint64_t i = 0; i < n; i++) {
		PageModel &m = pages_[first + i];
		if (m.shared && !m.poisoned) {
			// The fault filled a hole (notified as an allocation).
			m.allocated = true;
			m.token = tokens[i];
		}
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

bool Stress::op_fallocate(ThreadCtx &t, bool punch, bool uring)
{
	if (uring && !t.ring->ok())
		return false;
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	std::ostringstream what;
	what << (uring ? "uring_" : "") << (punch ? "punch" : "fallocate") << " [" << first << ", "
	     << first + n << ")";
	// Half of them race host faults on their own unpoisoned pages. A fault
	// filling a hole the punch just made leaves the page allocated, one
	// before it does not: mincore() tells afterwards (a faulted page is up
	// to date), and either way the page reads zero and each domain must
	// map exactly what is there.
	std::vector<uint64_t> race;
	if (t.rand(2)) {
		for (uint64_t p = first; p < first + n; p++)
			if (!pages_[p].poisoned)
				race.push_back(p);
		if (!race.empty())
			what << " racing host faults";
	}
	log(t.id, what.str(), first, n);
	// A punch must not race MAP_FILE of its chunk, which allocates the
	// shared holes: hold the Section over the call.
	std::optional<Section> s;
	if (punch)
		s.emplace(*this, first, n);
	const int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : 0);
	std::optional<Racer> racer;
	if (!race.empty())
		racer.emplace([this, &race, k = size_t{ 0 }]() mutable {
			volatile uint8_t *b = data_->data() + race[k++ % race.size()] * kPage;
			(void)sigbus_guard([&] { (void)b[kPage / 2]; });
		});
	int r = 0;
	// EINTR: see again_on_eintr().
	for (int i = 0; i < 100; i++) {
		if (uring) {
			r = t.ring->fallocate(gmem_->fd(), mode, first * kPage, n * kPage);
		} else {
			r = ::fallocate(gmem_->fd(), mode, static_cast<off_t>(first * kPage),
					static_cast<off_t>(n * kPage));
			if (r < 0)
				r = -errno;
		}
		if (r != -EINTR)
			break;
		eintr_retries++;
	}
	racer.reset();
	if (r != 0) {
		fail(what.str() + ": " + std::strerror(-r) + "; " + describe(first), first);
		return true;
	}
	for (uint64_t p = first; p < first + n && punch; p++) {
		if (!pages_[p].poisoned)
			continue;
		// Memory failure left a hwpoison entry in this process's page
		// table, which truncation does not zap (the folio is no longer
		// mapped): map the page again, as QEMU's qemu_ram_remap() does.
		void *a =
			::mmap(data_->data() + p * kPage, kPage, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, gmem_->fd(), static_cast<off_t>(p * kPage));
		if (a != data_->data() + p * kPage) {
			fail(what.str() + ": mmap(MAP_FIXED) of the punched poisoned page: " +
				     std::strerror(errno),
			     p);
			return true;
		}
	}
	if (!s)
		s.emplace(*this, first, n);
	for (uint64_t p = first; p < first + n; p++) {
		PageModel &m = pages_[p];
		if (punch) {
			m.allocated = false;
			m.poisoned = false;
			m.token = 0;
		} else {
			m.allocated = true;
		}
	}
	for (uint64_t p : race) {
		if (!punch || !pages_[p].shared)
			continue;
		unsigned char vec = 0;
		if (::mincore(data_->data() + p * kPage, kPage, &vec) != 0) {
			fail(what.str() + ": mincore: " + std::strerror(errno), p);
			return true;
		}
		pages_[p].allocated = vec & 1;
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

bool Stress::op_hwpoison(ThreadCtx &t)
{
	if (!hwpoison_works_ || poisoned_.load() >= kMaxPoisoned)
		return false;
	const uint64_t p = t.rand(kPages);
	auto locks = lock_stripes(p, 1);
	if (!pages_[p].shared || pages_[p].poisoned)
		return false;
	const std::string what = "hwpoison [" + std::to_string(p) + "]";
	log(t.id, what, p, 1);
	int rc = 0, err = 0;
	// Host faults on the page and no-op conversions of it (which take the
	// invalidate lock for writing all the same) race memory failure, which
	// holds the folio lock while it notifies (issue 12, 2); their outcome
	// changes nothing the model knows.
	std::atomic<int> racer_err{ 0 };
	bool no_signal;
	{
		Racer racer([&] {
			volatile uint8_t *b = data_->data() + p * kPage;
			(void)sigbus_guard([&] { (void)b[0]; });
			if (auto r = gmem_->convert_shared(p * kPage, kPage); !r.has_value())
				racer_err = errno_of(r);
		});
		// The poisoned, dirty page is mapped here: memory failure sends
		// the calling thread a SIGBUS (BUS_MCEERR_AR) as the call
		// returns.
		no_signal = sigbus_guard([&] {
			rc = ::madvise(data_->data() + p * kPage, kPage, MADV_HWPOISON);
			err = errno;
		});
	}
	if (racer_err) {
		fail(what + ": a no-op conversion to shared racing it failed: " +
			     std::strerror(racer_err) + "; " + describe(p),
		     p);
		return true;
	}
	if (no_signal && rc != 0 && err == EBUSY) {
		// Memory failure takes guest_memfd's MF_DELAYED for a failure
		// (KERNEL-BUGS.md, 2); the page is poisoned all the same. Seen
		// when no SIGBUS hides it: the racer's fault on the poisoned
		// page unmapped it first.
		expected_errors_++;
	} else if (no_signal && rc != 0) {
		if (err == EPERM || err == EINVAL) {
			// No CAP_SYS_ADMIN or no CONFIG_MEMORY_FAILURE.
			hwpoison_works_ = false;
			std::printf("[ NOTE     ] MADV_HWPOISON: %s: hwpoison disabled\n",
				    std::strerror(err));
			// The racer's faults filled the page if it was a hole.
			Section s(*this, p, 1);
			pages_[p].allocated = true;
			return false;
		}
		fail(what + ": madvise(MADV_HWPOISON): " + std::strerror(err) + "; " + describe(p),
		     p);
		return true;
	}
	poisoned_++;
	Section s(*this, p, 1);
	// The GUP of madvise filled a hole first.
	pages_[p].allocated = true;
	pages_[p].poisoned = true;
	check_domains(p, 1, "after " + what);
	return true;
}

bool Stress::op_area(ThreadCtx &t, Op &done)
{
	const int i = static_cast<int>(t.rand(kIoases));
	const uint64_t c = t.rand(kChunks);
	std::unique_lock l(area_mu_[i][c]);
	const bool unmap = covered_[i][c];
	done = unmap ? kUnmap : kMapFile;
	if (!enabled(done))
		return false;
	std::ostringstream what;
	what << (unmap ? "unmap" : "map_file") << " IOAS " << i << " chunk " << c << " (pages ["
	     << c * kChunkPages << ", " << (c + 1) * kChunkPages << "))";
	log(t.id, what.str(), c * kChunkPages, kChunkPages);
	const uint64_t base = iova(i, c * kChunkPages);
	if (unmap) {
		auto r = ioas_[i].unmap(base, kChunkSize);
		if (!r.has_value() || *r != kChunkSize) {
			fail(what.str() + ": " +
			     (r.has_value() ? "unmapped " + std::to_string(*r) + " bytes"
					    : r.error().message()));
			return true;
		}
		covered_[i][c] = false;
		return true;
	}
	if (!opt_.map_fill) {
		// Workaround switch: no hole for MAP_FILE to fill unnotified.
		if (auto r = again_on_eintr(
			    [&] { return gmem_->allocate(c * kChunkSize, kChunkSize); });
		    !r.has_value()) {
			fail(what.str() + ": " + r.error().message());
			return true;
		}
		for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
			pages_[p].allocated = true;
	}
	auto r = ioas_[i].map_file(gmem_->fd(), c * kChunkSize, kChunkSize, base);
	if (!r.has_value() || *r != base) {
		fail(what.str() + ": " +
		     (r.has_value() ? "mapped elsewhere" : r.error().message()));
		return true;
	}
	covered_[i][c] = true;
	// Mapping allocates the chunk's shared pages.
	for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
		if (pages_[p].shared)
			pages_[p].allocated = true;
	return true;
}

bool Stress::op_domain(ThreadCtx &t, Op &done)
{
	const int i = static_cast<int>(t.rand(kIoases));
	std::unique_lock l(dom_mu_[i]);
	// IOAS 0 keeps a domain; IOAS 1 also passes through none, when the
	// mirror only keeps its bitmap and the next attach fills from it.
	const size_t min = i == 0 ? 1 : 0;
	const size_t ndom = domains_[i].size();
	const bool detach = ndom == kMaxDomains || (ndom > min && t.rand(2));
	done = detach ? kDetach : kAttach;
	if (!enabled(done))
		return false;
	if (detach) {
		const size_t d = t.rand(domains_[i].size());
		const std::string what = "detach IOAS " + std::to_string(i) + " domain " +
					 std::to_string(d) + " (HWPT " +
					 std::to_string(domains_[i][d].hwpt_id()) + ")";
		log(t.id, what);
		auto r = domains_[i][d].detach();
		domains_[i].erase(domains_[i].begin() + static_cast<long>(d));
		if (domains_[i].empty())
			domainless_++;
		if (!r.has_value())
			fail(what + ": " + r.error().message());
		return true;
	}
	const std::string what = "attach IOAS " + std::to_string(i);
	log(t.id, what);
	auto r = MockDomain::attach(ioas_[i]);
	if (!r.has_value()) {
		fail(what + ": " + r.error().message());
		return true;
	}
	domains_[i].push_back(std::move(r).value());
	log(t.id, what + ": HWPT " + std::to_string(domains_[i].back().hwpt_id()));
	return true;
}

// What a forked child reports through its pipe when a page is not as the
// parent's model says.
struct ChildReport {
	uint64_t page;
	uint32_t got_first;
	uint32_t got_last;
	int32_t readable;
};

bool Stress::op_fork(ThreadCtx &t)
{
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	std::ostringstream what;
	what << "fork [" << first << ", " << first + n << ")";
	log(t.id, what.str(), first, n);
	struct Want {
		bool readable;
		uint32_t token;
	};
	std::vector<Want> want(n);
	for (uint64_t i = 0; i < n; i++) {
		const PageModel &m = pages_[first + i];
		want[i] = { m.shared && !m.poisoned, m.token };
	}
	const uint32_t tok = new_token();
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) != 0) {
		fail(what.str() + ": pipe2: " + std::strerror(errno));
		return true;
	}
	UniqueFd rd(fds[0]), wr(fds[1]);
	const pid_t pid = ::fork();
	if (pid == 0) {
		// The child: touch the pages through the inherited MAP_SHARED
		// mapping (its own faults), write the new token, exit. Only
		// async-signal-safe calls from here on.
		for (uint64_t i = 0; i < n; i++) {
			volatile uint32_t *w = reinterpret_cast<volatile uint32_t *>(
				data_->data() + (first + i) * kPage);
			uint32_t a = 0, b = 0;
			const bool ok = sigbus_guard([&] {
				a = w[0];
				b = w[kPage / 4 - 1];
			});
			if (ok != want[i].readable ||
			    (ok && (a != want[i].token || b != want[i].token))) {
				ChildReport rep{ first + i, a, b, ok };
				(void)!::write(wr.get(), &rep, sizeof(rep));
				::_exit(1);
			}
			if (ok) {
				w[0] = tok;
				w[kPage / 4 - 1] = tok;
			}
		}
		::_exit(0);
	}
	if (pid < 0) {
		fail(what.str() + ": fork: " + std::strerror(errno));
		return true;
	}
	wr.reset();
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	ChildReport rep{};
	const ssize_t got = ::read(rd.get(), &rep, sizeof(rep));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		std::ostringstream s;
		s << what.str() << ": the child ";
		if (got == static_cast<ssize_t>(sizeof(rep)) && rep.page < kPages)
			s << (rep.readable ? "read 0x" : "got SIGBUS") << std::hex
			  << (rep.readable ? rep.got_first : 0) << std::dec << "; "
			  << describe(rep.page);
		else
			s << "ended with status 0x" << std::hex << status;
		fail(s.str(), rep.page);
		return true;
	}
	Section s(*this, first, n);
	for (uint64_t i = 0; i < n; i++) {
		if (!want[i].readable)
			continue;
		pages_[first + i].allocated = true;
		pages_[first + i].token = tok;
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

bool Stress::op_pin_to_private(ThreadCtx &t)
{
	if (!t.ring->ok() || !uring_pins_work_)
		return false;
	const uint64_t first = t.rand(kPages);
	const uint64_t n = 1 + t.rand(std::min<uint64_t>(4, kPages - first));
	auto locks = lock_stripes(first, n);
	for (uint64_t p = first; p < first + n; p++)
		if (!pages_[p].shared || pages_[p].poisoned)
			return false;
	std::ostringstream what;
	what << "pin_to_private [" << first << ", " << first + n << ")";
	log(t.id, what.str(), first, n);
	iovec iov{ data_->data() + first * kPage, n * kPage };
	const int r = io_uring_register_buffers(t.ring->get(), &iov, 1);
	if (r < 0) {
		if (r == -ENOMEM || r == -EOPNOTSUPP) {
			uring_pins_work_ = false;
			std::printf("[ NOTE     ] io_uring_register_buffers: %s: pin_to_private "
				    "disabled\n",
				    std::strerror(-r));
			return false;
		}
		fail(what.str() + ": io_uring_register_buffers: " + std::strerror(-r) + "; " +
			     describe(first),
		     first);
		return true;
	}
	{
		// Pinning faulted the pages in.
		Section s(*this, first, n);
		for (uint64_t p = first; p < first + n; p++)
			pages_[p].allocated = true;
	}
	// The pin is the test's own reference: EAGAIN naming the first page,
	// and nothing changed.
	auto c = gmem_->convert_private(first * kPage, n * kPage);
	if (errno_of(c) != EAGAIN || c.error().error_offset.value_or(~0ULL) != first * kPage) {
		fail(what.str() + ": to-private of a pinned range should fail with EAGAIN at " +
			     std::to_string(first * kPage) + ", got " +
			     (c.has_value() ? std::string("success") : c.error().message()) + "; " +
			     describe(first),
		     first);
		if (c.has_value()) {
			for (uint64_t p = first; p < first + n; p++)
				pages_[p].shared = false;
		}
		io_uring_unregister_buffers(t.ring->get());
		return true;
	}
	expected_errors_++;
	{
		Section s(*this, first, n);
		if (!check_domains(first, n, "after the refused " + what.str())) {
			io_uring_unregister_buffers(t.ring->get());
			return true;
		}
	}
	io_uring_unregister_buffers(t.ring->get());
	c = gmem_->convert_private(first * kPage, n * kPage);
	if (!c.has_value()) {
		fail(what.str() + ": to-private after unpinning: " + c.error().message() + "; " +
			     describe(first),
		     first);
		return true;
	}
	Section s(*this, first, n);
	for (uint64_t p = first; p < first + n; p++)
		pages_[p].shared = false;
	check_domains(first, n, "after " + what.str());
	return true;
}

bool Stress::op_dma_read(ThreadCtx &t)
{
	const int i = static_cast<int>(t.rand(kIoases));
	const uint64_t p = t.rand(kPages);
	auto locks = lock_stripes(p, 1);
	Section s(*this, p, 1);
	if (!covered(i, p))
		return false;
	const std::string what =
		"dma_read IOAS " + std::to_string(i) + " [" + std::to_string(p) + "]";
	log(t.id, what, p, 1);
	const PageModel &m = pages_[p];
	uint32_t a = 0, b = 0;
	auto r = access_[i].read(iova(i, p), &a, sizeof(a));
	if (r.has_value())
		r = access_[i].read(iova(i, p) + kPage - 4, &b, sizeof(b));
	const int want = !m.shared ? EACCES : m.poisoned ? EHWPOISON : !m.allocated ? ENOENT : 0;
	if (errno_of(r) != want || (r.has_value() && (a != m.token || b != m.token))) {
		std::ostringstream s;
		s << what << ": in-kernel access read " << (want ? "should fail with " : "")
		  << (want ? std::strerror(want) : "") << ", got "
		  << (r.has_value() ? "success" : r.error().message()) << ", 0x" << std::hex << a
		  << "/0x" << b << std::dec << "; " << describe(p);
		fail(s.str(), p);
		return true;
	}
	if (want)
		expected_errors_++;
	return true;
}

// Dropping the page cache or compacting memory must change nothing: the
// mirror maps PFNs without pinning them, so guest_memfd folios must never be
// dropped (they are dirty) nor migrated (the mapping is unmovable). No
// locks: nothing the model knows changes; the next quiesce point checks.
bool Stress::op_reclaim(ThreadCtx &t)
{
	const int64_t now = Clock::now().time_since_epoch().count();
	int64_t last = last_reclaim_;
	// At most one every two seconds: each walks all of the guest's memory.
	if (now - last < std::chrono::nanoseconds(std::chrono::seconds(2)).count() ||
	    !last_reclaim_.compare_exchange_strong(last, now))
		return false;
	const bool compact = t.rand(2);
	const char *path = compact ? "/proc/sys/vm/compact_memory" : "/proc/sys/vm/drop_caches";
	log(t.id, std::string("reclaim: ") + path);
	UniqueFd f(::open(path, O_WRONLY | O_CLOEXEC));
	if (!f.valid())
		return false;
	const char *v = compact ? "1\n" : "3\n";
	if (::write(f.get(), v, 2) != 2 && errno != EINVAL) {
		fail(std::string("write ") + path + ": " + std::strerror(errno));
		return true;
	}
	return true;
}

bool Stress::retry_pending(uint64_t first, uint64_t n, const std::string &what)
{
	for (int i = 0; i < kIoases; i++) {
		for (uint64_t c = first / kChunkPages; c <= (first + n - 1) / kChunkPages; c++) {
			if (!covered_[i][c])
				continue;
			auto st = ioas_[i].mirror_status(iova(i, c * kChunkPages), true);
			if (!st.has_value() || st->pending_pages != 0 || st->error != 0) {
				std::ostringstream s;
				s << what << ": MIRROR_STATUS with RETRY of IOAS " << i << " chunk "
				  << c << ": ";
				if (st.has_value())
					s << *st << ", pending after the retry";
				else
					s << st.error().message();
				fail(s.str());
				return false;
			}
		}
	}
	return true;
}

// An operation with an allocation failure injected into the calling thread
// (fail-nth, n random) while the other threads go on: it succeeds, or fails
// with ENOMEM having changed nothing the model knows; a mapping that failed
// after the point of no return is pending until MIRROR_STATUS retries it.
// Where a failure may leave pages allocated (fallocate(), MAP_FILE), the
// operation is then completed without injection, so the model stays exact.
bool Stress::op_fail_nth(ThreadCtx &t)
{
	if (!fault_injection_ || !t.nth || !t.nth->ok())
		return false;
	const unsigned nth = 1 + static_cast<unsigned>(t.rand(32));
	const unsigned kind = static_cast<unsigned>(t.rand(6));
	// guest_memfd's paths give ENOMEM. fail-nth also arms iommufd's own
	// injection points (fail_iommufd), which fail on purpose with ENOENT
	// (object lookup) or EINVAL (domain attach): MAP_FILE and attach take
	// any errno an injection caused (KERNEL-BUGS.md, 3).
	auto injected = [&](const std::string &what, const auto &r, bool fired,
			    bool any_errno = false) {
		if (r.has_value())
			return true;
		if ((errno_of(r) == ENOMEM || any_errno) && fired) {
			injected_failures_++;
			return true;
		}
		fail(what + ": " + r.error().message() +
		     (fired ? " (an injected failure should give ENOMEM)" : " (nothing injected)"));
		return false;
	};
	if (kind == 4) {
		// MAP_FILE of a chunk an IOAS does not map. The injection
		// reaches every client's mapping of the pages it allocates
		// (its notification runs in this thread), so another IOAS
		// may be left with pages pending: the chunk's stripes keep
		// page operations from checking them until the retry below.
		const int i = static_cast<int>(t.rand(kIoases));
		const uint64_t c = t.rand(kChunks);
		auto locks = lock_stripes(c * kChunkPages, kChunkPages);
		std::unique_lock l(area_mu_[i][c]);
		if (covered_[i][c])
			return false;
		std::ostringstream what;
		what << "fail_nth " << nth << " map_file IOAS " << i << " chunk " << c;
		log(t.id, what.str(), c * kChunkPages, kChunkPages);
		const uint64_t base = iova(i, c * kChunkPages);
		t.nth->arm(nth);
		auto r = ioas_[i].map_file(gmem_->fd(), c * kChunkSize, kChunkSize, base);
		const bool fired = t.nth->disarm();
		if (!injected(what.str(), r, fired, true))
			return true;
		if (!r.has_value()) {
			// It may have allocated shared holes before failing.
			if (auto a = again_on_eintr(
				    [&] { return gmem_->allocate(c * kChunkSize, kChunkSize); });
			    !a.has_value()) {
				fail(what.str() + ": " + a.error().message());
				return true;
			}
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				pages_[p].allocated = true;
		} else {
			covered_[i][c] = true;
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				if (pages_[p].shared)
					pages_[p].allocated = true;
		}
		l.unlock();
		Section s(*this, c * kChunkPages, kChunkPages);
		if (retry_pending(c * kChunkPages, kChunkPages, what.str()))
			check_domains(c * kChunkPages, kChunkPages, "after " + what.str());
		return true;
	}
	if (kind == 5) {
		// Attaching a domain.
		const int i = static_cast<int>(t.rand(kIoases));
		std::unique_lock l(dom_mu_[i]);
		if (domains_[i].size() == kMaxDomains)
			return false;
		const std::string what =
			"fail_nth " + std::to_string(nth) + " attach IOAS " + std::to_string(i);
		log(t.id, what);
		t.nth->arm(nth);
		auto r = MockDomain::attach(ioas_[i]);
		const bool fired = t.nth->disarm();
		if (!injected(what, r, fired, true))
			return true;
		if (r.has_value())
			domains_[i].push_back(std::move(r).value());
		return true;
	}
	// Page operations: conversions, fallocate() and punch.
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	for (uint64_t p = first; p < first + n; p++)
		if (pages_[p].poisoned)
			return false;
	static const char *const names[] = { "to_shared", "to_private", "fallocate", "punch" };
	std::ostringstream what;
	what << "fail_nth " << nth << " " << names[kind] << " [" << first << ", " << first + n
	     << ")";
	log(t.id, what.str(), first, n);
	const bool punch = kind == 3;
	std::optional<Section> s;
	if (punch)
		s.emplace(*this, first, n);
	auto call = [&]() -> Result<void> {
		switch (kind) {
		case 0:
			return gmem_->convert_shared(first * kPage, n * kPage);
		case 1:
			return gmem_->convert_private(first * kPage, n * kPage);
		case 2:
			return gmem_->allocate(first * kPage, n * kPage);
		default:
			return gmem_->punch_hole(first * kPage, n * kPage);
		}
	};
	t.nth->arm(nth);
	// fallocate() and punch: see again_on_eintr(). A retry keeps the
	// injection armed, so it still counts from the first call.
	auto r = kind >= 2 ? again_on_eintr(call) : call();
	const bool fired = t.nth->disarm();
	if (!injected(what.str(), r, fired))
		return true;
	if (!r.has_value() && kind >= 2) {
		// fallocate() may have allocated part of the range: complete
		// it, and the punch too.
		r = again_on_eintr(call);
		if (!r.has_value()) {
			fail(what.str() + ": without injection: " + r.error().message(), first);
			return true;
		}
	}
	if (!s)
		s.emplace(*this, first, n);
	for (uint64_t p = first; p < first + n && r.has_value(); p++) {
		PageModel &m = pages_[p];
		switch (kind) {
		case 0:
			if (!m.shared) {
				m.shared = true;
				if (covered_any(p))
					m.allocated = true;
			}
			break;
		case 1:
			m.shared = false;
			break;
		case 2:
			m.allocated = true;
			break;
		default:
			m.allocated = false;
			m.token = 0;
			break;
		}
	}
	if (!retry_pending(first, n, what.str()))
		return true;
	check_domains(first, n, "after " + what.str());
	return true;
}

bool Stress::op_guest(ThreadCtx &t, int v, bool write)
{
	const uint64_t p = t.rand(kPages);
	auto locks = lock_stripes(p, 1);
	PageModel &m = pages_[p];
	// KVM would answer a poisoned page with a SIGBUS of its own.
	if (m.poisoned)
		return false;
	if (!opt_.guest_fill && m.shared && !m.allocated)
		return false;
	// A quarter of the accesses race a conversion of their own page, to
	// shared or to private (issue 12, 8: KVM's fault against conversion).
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
	auto *mb = reinterpret_cast<Mailbox *>(code_->data() + kMailbox + 64 * v);
	const uint32_t tok = new_token();
	mb->op = write ? 1 : 0;
	mb->gpa = static_cast<uint32_t>(kDataGpa + p * kPage);
	mb->val = tok;
	mb->out_first = 0;
	mb->out_last = 0;
	const Vcpu &vcpu = vcpus_[v];
	kvm_run *run = vcpu.run_area();
	std::atomic<bool> converting{ false };
	std::optional<SysError> convert_error;
	std::optional<std::thread> converter;
	if (convert_to_shared) {
		converting = true;
		converter.emplace([&] {
			auto r = *convert_to_shared ? gmem_->convert_shared(p * kPage, kPage)
						    : gmem_->convert_private(p * kPage, kPage);
			if (!r.has_value())
				convert_error = r.error();
			converting = false;
		});
		racing_conversions_++;
	}
	Result<void> r;
	for (int tries = 0;; tries++) {
		const bool in_flight = converting;
		r = run_vcpu(t, v);
		if (r.has_value() || run->exit_reason != KVM_EXIT_MEMORY_FAULT || !in_flight ||
		    tries == 1000)
			break;
		// The state changed under KVM's fault: run again, as a VMM
		// would once it has converted the page itself.
		memory_fault_retries_++;
	}
	if (converter)
		converter->join();
	if (convert_error) {
		fail(what + ": the racing conversion failed: " + convert_error->message() + "; " +
			     describe(p),
		     p);
		return true;
	}
	if (!r.has_value() || run->exit_reason != KVM_EXIT_IO || run->io.port != kDonePort) {
		std::ostringstream s;
		s << what << ": KVM_RUN " << (r.has_value() ? "ok" : r.error().message())
		  << ", exit " << run->exit_reason;
		if (run->exit_reason == KVM_EXIT_MEMORY_FAULT)
			s << " (memory fault at GPA 0x" << std::hex << run->memory_fault.gpa
			  << ", flags 0x" << run->memory_fault.flags << std::dec << ")";
		s << "; " << describe(p);
		fail(s.str(), p);
		return true;
	}
	if (!write && (mb->out_first != m.token || mb->out_last != m.token)) {
		std::ostringstream s;
		s << what << ": the guest read 0x" << std::hex << mb->out_first << "/0x"
		  << mb->out_last << std::dec << "; " << describe(p);
		fail(s.str(), p);
		return true;
	}
	Section s(*this, p, 1);
	// KVM's fault allocated the page if it was a hole, shared or private:
	// a shared one must now be mapped in every domain (issue 12, 4).
	m.allocated = true;
	if (write)
		m.token = tok;
	if (convert_to_shared)
		m.shared = *convert_to_shared;
	check_domains(p, 1, "after " + what);
	return true;
}

void Stress::host_thread(int id)
{
	uint64_t sm = opt_.seed ^ (0x1000ULL * (id + 1));
	ThreadCtx t{ id, std::mt19937_64(splitmix64(sm)), std::make_unique<Ring>() };
	t.nth = std::make_unique<FailNth>();
	unsigned total = 0;
	for (const auto &w : kHostWeights)
		total += w.weight;
	while (!stopping() && Clock::now() < deadline_ && total_ops_ < opt_.max_ops) {
		unsigned x = static_cast<unsigned>(t.rand(total));
		Op op = kHostWeights[0].op;
		for (const auto &w : kHostWeights) {
			if (x < w.weight) {
				op = w.op;
				break;
			}
			x -= w.weight;
		}
		if (op != kMapFile && op != kAttach && !enabled(op))
			continue;
		GateGuard g(gate_);
		doing_[id] = kOpNames[op];
		Op done = op;
		bool did = false;
		switch (op) {
		case kToShared:
		case kToPrivate:
			did = op_convert(t, op == kToPrivate);
			break;
		case kHostRead:
		case kHostWrite:
			did = op_host_access(t, op == kHostWrite);
			break;
		case kPunch:
			did = op_fallocate(t, true, false);
			break;
		case kFallocate:
			did = op_fallocate(t, false, false);
			break;
		case kUringFallocate:
			did = op_fallocate(t, t.rand(2), true);
			break;
		case kHwPoison:
			did = op_hwpoison(t);
			break;
		case kMapFile:
			did = op_area(t, done);
			break;
		case kAttach:
			did = op_domain(t, done);
			break;
		case kFork:
			did = op_fork(t);
			break;
		case kPinToPrivate:
			did = op_pin_to_private(t);
			break;
		case kDmaRead:
			did = op_dma_read(t);
			break;
		case kReclaim:
			did = op_reclaim(t);
			break;
		case kFailNth:
			did = op_fail_nth(t);
			break;
		default:
			break;
		}
		doing_[id] = "between ops";
		if (did)
			count(done);
	}
}

// [start, end) of a kernel function's text, from /proc/kallsyms (the next
// symbol's address ends it); { 0, 0 } if it cannot be read.
std::pair<uint64_t, uint64_t> symbol_range(const std::string &name)
{
	std::ifstream f("/proc/kallsyms");
	std::vector<uint64_t> addrs;
	uint64_t start = 0;
	std::string line;
	while (std::getline(f, line)) {
		std::istringstream in(line);
		std::string addr, type, sym;
		if (!(in >> addr >> type >> sym) || (type != "t" && type != "T"))
			continue;
		const uint64_t a = std::stoull(addr, nullptr, 16);
		addrs.push_back(a);
		if (sym == name)
			start = a;
	}
	if (!start)
		return { 0, 0 };
	uint64_t end = UINT64_MAX;
	for (uint64_t a : addrs)
		if (a > start && a < end)
			end = a;
	return { start, end };
}

// KVM_RUN of vCPU @v, for one request of the guest. Under QEMU's TCG the
// nested vCPU's state is at times replaced by its host's (KERNEL-BUGS.md,
// 6): the vCPU then loops in KVM_RUN on a #GP it cannot deliver, at the
// host's RIP. A KVM_RUN that lasts 5 s is interrupted (SIGUSR1 makes it
// return EINTR): a vCPU still in the guest's code goes on; one at the
// host's VMRUN (that signature only) is started over, with the same
// request, and counted; one anywhere else fails the run.
// KVM_RUN as the checks read it: a memory fault is KVM_RUN's EFAULT, the
// exit itself is read from kvm_run.
Result<void> run_once(const Vcpu &vcpu)
{
	auto e = vcpu.run();
	if (!e)
		return unexpected(e.error());
	if (std::holds_alternative<MemoryFaultExit>(*e))
		return fail(EFAULT, "KVM_RUN");
	return {};
}

Result<void> Stress::run_vcpu(ThreadCtx &t, int v)
{
	const Vcpu &vcpu = vcpus_[v];
	if (!t.kick) {
		sigevent ev{};
		ev.sigev_notify = SIGEV_THREAD_ID;
		ev.sigev_signo = SIGUSR1;
		ev._sigev_un._tid = ::gettid();
		timer_t id;
		if (::timer_create(CLOCK_MONOTONIC, &ev, &id) != 0)
			return run_once(vcpu);
		t.kick = id;
	}
	for (;;) {
		itimerspec arm{};
		arm.it_value.tv_sec = 5;
		::timer_settime(*t.kick, 0, &arm, nullptr);
		auto r = run_once(vcpu);
		const itimerspec off{};
		::timer_settime(*t.kick, 0, &off, nullptr);
		if (r.has_value() || errno_of(r) != EINTR)
			return r;
		auto regs = vcpu.get_regs();
		if (!regs)
			return unexpected(regs.error());
		const uint64_t code_len = stress_guest_end - stress_guest_start;
		if (regs->rip >= kGuestEntry && regs->rip < kGuestEntry + code_len)
			continue;
		// Only that signature is the emulator's; anything else fails.
		if (regs->rip < vmrun_text_.first || regs->rip >= vmrun_text_.second) {
			char buf[96];
			std::snprintf(buf, sizeof(buf), "vCPU %d left its code for RIP 0x%llx", v,
				      (unsigned long long)regs->rip);
			return ::gmem::fail(EFAULT, buf);
		}
		if (vcpu_state_lost_++ == 0)
			std::printf("[ NOTE     ] vCPU %d left its code for RIP 0x%llx: its state "
				    "was replaced (KERNEL-BUGS.md, 6); starting it over\n",
				    v, (unsigned long long)regs->rip);
		kvm_vcpu_events ev{};
		if (::ioctl(vcpu.fd(), KVM_SET_VCPU_EVENTS, &ev) != 0)
			return ::gmem::fail("KVM_SET_VCPU_EVENTS");
		if (auto s = vcpu.set_sregs(sregs0_[v]); !s)
			return s;
		if (auto s = vcpu.set_regs(regs0_[v]); !s)
			return s;
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

// Lets fail-nth reach every allocation, GFP_KERNEL ones included, and keeps
// the injections out of the kernel log (as iommufd_fail_nth does). False if
// there is no fault injection.
bool setup_fault_injection()
{
	auto put = [](const std::string &file, const char *v) {
		UniqueFd f(::open(("/sys/kernel/debug/" + file).c_str(), O_WRONLY | O_CLOEXEC));
		return f.valid() && ::write(f.get(), v, std::strlen(v)) > 0;
	};
	if (!put("failslab/ignore-gfp-wait", "N"))
		return false;
	put("fail_page_alloc/ignore-gfp-wait", "N");
	put("fail_page_alloc/ignore-gfp-highmem", "N");
	for (const char *d :
	     { "failslab", "fail_page_alloc", "fail_iommufd", "fail_usercopy", "fail_futex" })
		put(std::string(d) + "/verbose", "0");
	return true;
}

std::string Stress::setup()
{
	auto kvm = Kvm::open();
	if (!kvm)
		return kvm.error().message();
	kvm_.emplace(std::move(kvm).value());
	if (!kvm_->supports_vm_type(KVM_X86_SW_PROTECTED_VM))
		return "KVM_X86_SW_PROTECTED_VM not supported by this host";
	if (kvm_->check_extension(KVM_CAP_GUEST_MEMFD_CONVERT).value_or(0) <= 0)
		return "KVM_CAP_GUEST_MEMFD_CONVERT not supported";
	auto iommufd = Iommufd::open();
	if (!iommufd)
		return iommufd.error().message();
	iommufd_.emplace(std::move(iommufd).value());
	if (!have_iommufd_mock(iommufd_->fd()))
		return "no iommufd mock domains (CONFIG_IOMMUFD_TEST)";

	vmrun_text_ = symbol_range("__svm_vcpu_run");
	// run_vcpu() interrupts a long KVM_RUN with SIGUSR1: it needs to
	// return EINTR, not to kill the process.
	struct sigaction sa {};
	sa.sa_handler = [](int) {};
	::sigaction(SIGUSR1, &sa, nullptr);
	vm_.emplace(kvm_->create_vm(KVM_X86_SW_PROTECTED_VM).value());
	if (!(vm_->guest_memfd_flags() & GUEST_MEMFD_FLAG_CONVERTIBLE))
		return "KVM_X86_SW_PROTECTED_VM does not offer CONVERTIBLE files";
	uint64_t sm = opt_.seed;
	std::mt19937_64 rng(splitmix64(sm));
	const bool init_shared = rng() & 1;
	uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE;
	if (init_shared)
		flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
	gmem_.emplace(vm_->create_guest_memfd(kFileSize, flags).value());
	data_.emplace(gmem_->map(0, kFileSize).value());
	for (auto &p : pages_)
		p.shared = init_shared;

	code_.emplace(vm_->add_code_slot(0, 0, kCodeSize, stress_guest_start,
					 stress_guest_end - stress_guest_start, kGuestEntry)
			      .value());
	vm_->set_memory_region(1, kDataGpa, kFileSize, data_->data(), &*gmem_, 0).value();
	for (int v = 0; v < kVcpus; v++) {
		vcpus_.push_back(vm_->create_vcpu(v).value());
		vcpus_[v].start_flat32(kGuestEntry, 0xf000 - 0x100 * v, kMailbox + 64 * v).value();
		sregs0_.push_back(vcpus_[v].get_sregs().value());
		regs0_.push_back(vcpus_[v].get_regs().value());
	}

	// IOAS 0 maps every chunk, IOAS 1 some; each has one or two domains,
	// attached before or after the mapping.
	for (int i = 0; i < kIoases; i++) {
		ioas_.push_back(iommufd_->alloc_ioas().value());
		if (errno_of(ioas_[i].mirror_status(kIovaBase[i])) == ENOTTY)
			return "no IOMMU_IOAS_MIRROR_STATUS in this kernel";
		access_.push_back(MockAccess::create(ioas_[i]).value());
	}
	for (int i = 0; i < kIoases; i++) {
		const size_t ndom = 1 + (rng() >> 33) % kMaxDomains;
		const bool after = (rng() >> 40) & 1;
		if (!after)
			for (size_t d = 0; d < ndom; d++)
				domains_[i].push_back(MockDomain::attach(ioas_[i]).value());
		for (uint64_t c = 0; c < kChunks; c++) {
			if (i > 0 && !(rng() & 1))
				continue;
			if (!opt_.map_fill)
				again_on_eintr([&] {
					return gmem_->allocate(c * kChunkSize, kChunkSize);
				}).value();
			ioas_[i].map_file(gmem_->fd(), c * kChunkSize, kChunkSize,
					  iova(i, c * kChunkPages))
				.value();
			covered_[i][c] = true;
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				if (pages_[p].shared || !opt_.map_fill)
					pages_[p].allocated = true;
		}
		if (after)
			for (size_t d = 0; d < ndom; d++)
				domains_[i].push_back(MockDomain::attach(ioas_[i]).value());
	}
	std::printf("[ STRESS   ] file of %llu pages, %s; IOAS 0: %zu domains, IOAS 1: %zu "
		    "domains\n",
		    (unsigned long long)kPages, init_shared ? "INIT_SHARED" : "private",
		    domains_[0].size(), domains_[1].size());
	if (!setup_fault_injection()) {
		fault_injection_ = false;
		std::printf("[ NOTE     ] no failslab in debugfs: fail_nth disabled\n");
	}
	std::fflush(stdout);
	return {};
}

// A running vCPU thread has no stack to show: what KVM does instead, from
// one second of its tracepoints (the events of a fault that never ends).
void print_kvm_trace()
{
	const std::string t = "/sys/kernel/tracing/";
	auto put = [&](const std::string &file, const char *v) {
		UniqueFd f(::open((t + file).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
		return f.valid() && ::write(f.get(), v, std::strlen(v)) > 0;
	};
	if (UniqueFd clear(::open((t + "trace").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
	    !clear.valid() || !put("events/kvm/enable", "1")) {
		std::printf("[ TRACE    ] no KVM tracepoints in %s\n", t.c_str());
		return;
	}
	put("events/kvmmmu/enable", "1");
	std::this_thread::sleep_for(std::chrono::seconds(1));
	put("events/kvm/enable", "0");
	put("events/kvmmmu/enable", "0");
	std::ifstream f(t + "trace");
	std::string line;
	for (int n = 0; n < 120 && std::getline(f, line);)
		if (line.empty() || line[0] != '#') {
			std::printf("[ TRACE    ] %s\n", line.c_str());
			n++;
		}
}

// The fields of a thread's stat after its comm: [0] is field 3 (state) of
// proc_pid_stat(5), [n - 3] field n.
std::vector<std::string> stat_fields(const std::filesystem::path &task)
{
	const std::string stat = slurp(task / "stat");
	const size_t paren = stat.rfind(") ");
	if (paren == std::string::npos)
		return {};
	std::istringstream in(stat.substr(paren + 2));
	return { std::istream_iterator<std::string>(in), {} };
}

// utime, stime and guest_time (fields 14, 15, 43) in clock ticks.
std::array<unsigned long long, 3> thread_times(const std::filesystem::path &task)
{
	const auto f = stat_fields(task);
	if (f.size() <= 40)
		return {};
	return { std::stoull(f[11]), std::stoull(f[12]), std::stoull(f[40]) };
}

// Each of this process's threads: state, wait channel and kernel stack
// (the test runs as root), for a deadlock report.
void print_thread_stacks()
{
	const std::filesystem::path tasks = "/proc/self/task";
	std::vector<std::filesystem::path> running;
	std::error_code ec;
	for (const auto &e : std::filesystem::directory_iterator(tasks, ec)) {
		std::string comm = slurp(e.path() / "comm");
		if (!comm.empty() && comm.back() == '\n')
			comm.pop_back();
		const auto f = stat_fields(e.path());
		const char state = f.empty() ? '?' : f[0][0];
		std::printf("[ STACK    ] thread %s (%s) state %c wchan %s\n%s",
			    e.path().filename().c_str(), comm.c_str(), state,
			    slurp(e.path() / "wchan").c_str(), slurp(e.path() / "stack").c_str());
		if (state == 'R' && e.path().filename() != std::to_string(::gettid()))
			running.push_back(e.path());
	}
	// A thread on a CPU shows no stack: where its time goes over a second
	// (user, system, or a guest's), and its stack whenever it is off the CPU.
	for (const auto &p : running) {
		const auto t0 = thread_times(p);
		std::string seen;
		for (int i = 0; i < 20; i++) {
			std::string st = slurp(p / "stack");
			if (!st.empty() && seen.find(st) == std::string::npos)
				seen += st + "--\n";
			std::this_thread::sleep_for(std::chrono::milliseconds(50));
		}
		const auto t1 = thread_times(p);
		std::printf(
			"[ STACK    ] running thread %s over 1 s: user %llu, system %llu, guest "
			"%llu ticks; syscall %s; stacks seen off the CPU:\n%s",
			p.filename().c_str(), t1[0] - t0[0], t1[1] - t0[1], t1[2] - t0[2],
			slurp(p / "syscall").c_str(), seen.c_str());
	}
}

void Stress::run()
{
	const auto start = Clock::now();
	deadline_ = start + std::chrono::milliseconds(static_cast<int64_t>(opt_.seconds * 1000));
	last_progress_ = Clock::now().time_since_epoch().count();
	full_check("after setup");
	std::vector<std::thread> threads;
	for (int i = 0; i < kHostThreads; i++)
		threads.emplace_back([this, i] { host_thread(i); });
	for (int v = 0; v < kVcpus; v++)
		threads.emplace_back([this, v] { vcpu_thread(v); });

	// Quiesce every check_ms: close the gate, check everything, reopen.
	while (!stopping() && Clock::now() < deadline_ && total_ops_ < opt_.max_ops) {
		std::this_thread::sleep_for(std::chrono::milliseconds(opt_.check_ms));
		if (!gate_.close(std::chrono::seconds(120))) {
			std::string doing;
			for (size_t i = 0; i < doing_.size(); i++) {
				const char *d = doing_[i];
				doing += " t" + std::to_string(i) + ": " + (d ? d : "starting") +
					 ";";
			}
			fail("no operation finished within 120 s (a deadlock?); threads:" + doing +
			     " kernel stacks follow");
			print_thread_stacks();
			print_kvm_trace();
			std::fflush(stdout);
			std::_Exit(1);
		}
		full_check("at quiesce point " + std::to_string(quiesce_checks_.load() + 1) +
			   " after " + std::to_string(total_ops_.load()) + " operations");
		gate_.open();
	}
	stop_ = true;
	for (auto &th : threads)
		th.join();
	if (failures_.empty())
		full_check("at the end");
}

void Stress::print_summary(double seconds) const
{
	std::printf("[ STRESS   ] seed %llu: %llu operations in %.1f s, %llu quiesce checks, "
		    "%llu expected errors, %d pages poisoned\n",
		    (unsigned long long)opt_.seed, (unsigned long long)total_ops_.load(), seconds,
		    (unsigned long long)quiesce_checks_.load(),
		    (unsigned long long)expected_errors_.load(), poisoned_.load());
	std::printf("[ STRESS   ] guest accesses racing a conversion of their page: %llu "
		    "(KVM_EXIT_MEMORY_FAULT retried: %llu)\n",
		    (unsigned long long)racing_conversions_.load(),
		    (unsigned long long)memory_fault_retries_.load());
	std::printf("[ STRESS   ] vCPU state replaced by the host's and started over "
		    "(KERNEL-BUGS.md, 6): %llu\n",
		    (unsigned long long)vcpu_state_lost_.load());
	std::printf("[ STRESS   ] IOAS 1 left without a domain: %llu times; injected failures "
		    "that failed an operation: %llu\n",
		    (unsigned long long)domainless_.load(),
		    (unsigned long long)injected_failures_.load());
	std::printf("[ STRESS   ] fallocate()s retried after EINTR without a signal: %llu\n",
		    (unsigned long long)eintr_retries.load());
	for (int i = 0; i < kOpCount; i++)
		std::printf("[ STRESS   ]   %-16s %8llu%s\n", kOpNames[i],
			    (unsigned long long)counts_[i].load(),
			    opt_.disabled[i] ? "  (disabled)" : "");
	std::fflush(stdout);
}

// Random operations of every kind by concurrent threads and vCPUs never
// leave a domain, the host or MIRROR_STATUS disagreeing with the model.
TEST(GmemStressTest, RandomOperationsKeepTheModel)
{
	Options opt;
	std::string bad;
	try {
		bad = parse_options(opt);
	} catch (const std::exception &e) {
		bad = std::string("bad number in an option: ") + e.what();
	}
	ASSERT_TRUE(bad.empty()) << bad;
	std::printf("[ STRESS   ] seed %llu (rerun with --seed=%llu or GMEM_STRESS_SEED), "
		    "%.0f s or %llu operations, quiesce check every %u ms, disabled: %s\n",
		    (unsigned long long)opt.seed, (unsigned long long)opt.seed, opt.seconds,
		    (unsigned long long)opt.max_ops, opt.check_ms,
		    opt.disabled_list.empty() ? "none" : opt.disabled_list.c_str());
	std::fflush(stdout);
	const auto start = Clock::now();
	Stress s(opt);
	std::string skip;
	try {
		skip = s.setup();
	} catch (const SysErrorException &e) {
		FAIL() << "setup: " << e.error().message();
	}
	if (!skip.empty())
		GTEST_SKIP() << skip;
	s.run();
	const double secs = std::chrono::duration<double>(Clock::now() - start).count();
	s.print_summary(secs);
	for (const auto &f : s.failures())
		ADD_FAILURE() << f;
}

} // namespace
} // namespace gmem
