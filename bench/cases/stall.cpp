// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// stall: what one long operation on a convertible guest_memfd costs the
// rest of the VM. One thread runs the long operation on S pages of the
// file, again and again:
//
// attach            attach a mock domain to an IOAS that maps the S shared
//                   pages (IOMMU_IOAS_MAP_FILE without a domain before)
// map-file          IOMMU_IOAS_MAP_FILE of the S pages into an IOAS that
//                   has two mock domains
// to-shared         KVM_GMEM_CONVERT_SHARED of the S pages, mapped into an
//                   IOAS with a mock domain
//
// With --device edu, the domain is the edu device's on the machine's
// emulated IOMMU instead: attach and detach of the device, MAP_FILE into an
// IOAS with the device's domain and one mock domain, to-shared of pages the
// device's domain maps.
// to-private-eagain KVM_GMEM_CONVERT_PRIVATE of the S pages refused with
//                   EAGAIN: the first page is pinned by vmsplice()
// idle              no operation on the file: the S pages mapped into an
//                   IOAS with a mock domain, the thread that runs the long
//                   operation elsewhere spins in user space, for as long as
//                   the longest median long operation at that size so far
//                   (kDefaultIdle if none ran)
//
// Meanwhile other threads, each sampling every few milliseconds, time what
// the rest of a VMM does on the same file, outside the S pages:
//
// fault_hole        the host's first touch of a hole (allocates the page)
// fault_shared      the host's fault on an allocated shared page whose PTE
//                   was zapped (MADV_DONTNEED)
// vcpu_fault        KVM_PRE_FAULT_MEMORY of a private GPA (KVM's fault path
//                   asks guest_memfd for the page)
// convert_one       a one-page conversion, alternately to private and back
//
// A sample counts when it overlaps the long operation. The long operation's
// own duration is the "long_op" phase; each measurement's worst case and
// 99th percentile are reported against it. For attach, map-file and
// to-shared, "kill_exit" is the time from SIGKILL of a forked child doing
// the operation (killed half-way through it, by the duration of the
// operation alone, "op_alone_us") to the child's exit.
//
// All concurrent measurements run at once, so the one-page conversion is
// also the writer that queues behind the long operation. idle is the
// baseline: the same five threads on the same CPUs, no lock held, so its
// figures are what the measurements see anyway (under TCG with lockdep and
// KASAN, scheduling alone costs them tens to hundreds of milliseconds), and
// an operation's worst is read against idle's worst at the same size. A
// benchmark, not a test: nothing here asserts a time.
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "case.h"
#include "fixtures.h"
#include "gmem/result.h"
#include "options.h"
#include "timing.h"

namespace bench {
namespace {

using gmem::testing::MockDomain;

// Holes the host may first-touch during one long operation; punched again
// after it. Then one allocated shared page, one private page for the vCPU
// fault and one page for the one-page conversions.
constexpr uint64_t kHoles = 8192;
constexpr uint64_t kExtraPages = kHoles + 512;
// Pause between two samples of one measurement thread.
constexpr auto kPace = std::chrono::milliseconds(2);
// idle's window when no operation ran before it at its size.
constexpr uint64_t kDefaultIdle = 5'000'000'000;

enum class Op { attach, map_file, to_shared, to_private_eagain, idle };

// Per size: the longest median duration of a long operation so far, the
// window of idle at that size.
std::map<uint64_t, uint64_t> &idle_window()
{
	static std::map<uint64_t, uint64_t> w;
	return w;
}

// Threads that each run one measurement in a loop while a long operation
// is in flight (between begin() and end()) and keep the durations of the
// samples that overlapped it.
class Probes {
public:
	// Returns the duration of one sample, or nothing if it took none.
	using Fn = std::function<std::optional<uint64_t>()>;

	Probes() = default;
	Probes(const Probes &) = delete;
	Probes &operator=(const Probes &) = delete;
	~Probes() { stop(); }

	void add(const std::string &name, Fn fn)
	{
		{
			std::lock_guard<std::mutex> l(mu_);
			samples_[name];
		}
		threads_.emplace_back([this, name, fn = std::move(fn)] { loop(name, fn); });
	}
	void begin() { bump(); }
	// Also waits for the samples in flight: what comes after the long
	// operation (its undoing, itself long) must not be counted against it.
	void end()
	{
		bump();
		while (busy_.load())
			std::this_thread::sleep_for(std::chrono::microseconds(100));
	}
	void stop()
	{
		{
			std::lock_guard<std::mutex> l(mu_);
			stop_ = true;
		}
		cv_.notify_all();
		for (auto &t : threads_)
			if (t.joinable())
				t.join();
	}
	// The samples so far; throws CheckFailed if a measurement failed.
	std::map<std::string, std::vector<uint64_t>> take()
	{
		std::lock_guard<std::mutex> l(mu_);
		if (!error_.empty())
			throw CheckFailed{ error_ };
		return samples_;
	}

private:
	void bump()
	{
		{
			std::lock_guard<std::mutex> l(mu_);
			gen_.fetch_add(1);
		}
		cv_.notify_all();
	}
	void loop(const std::string &name, const Fn &fn)
	{
		for (;;) {
			{
				std::unique_lock<std::mutex> l(mu_);
				cv_.wait(l, [this] { return stop_ || (gen_.load() & 1); });
				if (stop_)
					return;
				busy_++;
			}
			const uint64_t g0 = gen_.load();
			std::optional<uint64_t> d;
			try {
				d = fn();
			} catch (const std::exception &e) {
				fail(name + ": " + e.what());
				return;
			} catch (const CheckFailed &c) {
				fail(name + ": " + c.what);
				return;
			}
			// Odd: the long operation ran when the sample started;
			// changed: it started or ended during the sample.
			if (d && ((g0 & 1) || gen_.load() != g0)) {
				std::lock_guard<std::mutex> l(mu_);
				samples_[name].push_back(*d);
			}
			busy_--;
			std::this_thread::sleep_for(kPace);
		}
	}

	void fail(const std::string &why)
	{
		std::lock_guard<std::mutex> l(mu_);
		if (error_.empty())
			error_ = why;
		busy_--;
	}

	std::mutex mu_;
	std::condition_variable cv_;
	std::atomic<int> busy_{ 0 };
	std::atomic<uint64_t> gen_{ 0 };
	bool stop_ = false;
	std::string error_;
	std::map<std::string, std::vector<uint64_t>> samples_;
	std::vector<std::thread> threads_;
};

class Stall : public Variant {
public:
	Stall(uint64_t pages, Op op)
	    : Variant(pages), op_(op),
	      gm_(ConvertibleFile::bound(len_ + kExtraPages * kPage,
					 GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED))
	{
		const auto &f = gm_.gmem();
		f.allocate(0, len_).value();
		f.allocate(shared_off(), kPage).value();
		f.convert_private(private_off(), kPage).value();
		set_up();
		vcpu_ = gm_.guest().add_vcpu().value();
		pre_fault_err_ =
			pre_fault_memory(gm_.guest().vcpu(vcpu_).fd(), kGpa + private_off(), kPage);
		// Not there, or not for this VM: no vCPU figure (the fact says why).
		if (pre_fault_err_ && pre_fault_err_ != ENOTTY && pre_fault_err_ != EOPNOTSUPP &&
		    pre_fault_err_ != EINVAL)
			throw CheckFailed{ std::string("KVM_PRE_FAULT_MEMORY: ") +
					   std::strerror(pre_fault_err_) };
		start_probes();
	}
	~Stall() override { probes_.stop(); }

	std::vector<Phase> round_trip() override
	{
		return {
			{ "long_op", { { "op", [this] { timed_op(); } } } },
			{ "reset", { { "undo", [this] { undo(); } } } },
		};
	}

	void check() override
	{
		if (op_ != Op::to_shared)
			return;
		std::string why;
		const bool ok = io_->check_mirror(kIova, len_, gm_.gmem().fd(), false, why);
		require(ok, "to-shared: no private page is mapped before (" + why + ")");
	}

	std::map<std::string, std::vector<uint64_t>> samples() override
	{
		auto s = probes_.take();
		// The operation's own duration, every run of it (the phase's
		// figure also holds the wait for the samples in flight).
		s["long_op"] = op_ns_;
		if (op_ != Op::idle && !op_ns_.empty()) {
			auto d = op_ns_;
			std::nth_element(d.begin(), d.begin() + d.size() / 2, d.end());
			uint64_t &w = idle_window()[pages_];
			w = std::max(w, d[d.size() / 2]);
		}
		if (killable())
			s["kill_exit"] = kill_exits();
		return s;
	}

	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		std::map<std::string, uint64_t> f{ { "holes_used_max", holes_used_max_ } };
		if (pre_fault_err_)
			f["vcpu_fault_unsupported_errno"] = static_cast<uint64_t>(pre_fault_err_);
		if (killable())
			f["kill_after_op_ended"] = killed_late_;
		if (op_alone_ns_)
			f["op_alone_us"] = op_alone_ns_ / 1000;
		return f;
	}

private:
	[[nodiscard]] bool killable() const
	{
		return op_ != Op::to_private_eagain && op_ != Op::idle;
	}
	[[nodiscard]] uint64_t hole_off(uint64_t i) const { return len_ + i * kPage; }
	[[nodiscard]] uint64_t shared_off() const { return len_ + kHoles * kPage; }
	[[nodiscard]] uint64_t private_off() const { return shared_off() + kPage; }
	[[nodiscard]] uint64_t convert_off() const { return shared_off() + 2 * kPage; }

	// The state before the long operation.
	void set_up()
	{
		const int fd = gm_.gmem().fd();
		switch (op_) {
		case Op::attach:
			io_.emplace(IommuCtx::make(false));
			io_->ioas.map_file(fd, 0, len_, kIova).value();
			if (opts.edu) {
				// The device, bound but on no IOAS yet.
				auto edu = gmem::testing::Edu::open(io_->iommufd.fd());
				if (!edu)
					throw Skip{ edu.error().message() };
				io_->edu.emplace(std::move(edu).value());
			}
			break;
		case Op::map_file:
			io_.emplace(IommuCtx::make(true));
			second_.emplace(MockDomain::attach(io_->ioas).value());
			break;
		case Op::to_shared:
			io_.emplace(IommuCtx::make(true));
			io_->ioas.map_file(fd, 0, len_, kIova).value();
			gm_.gmem().convert_private(0, len_).value();
			break;
		case Op::idle:
			io_.emplace(IommuCtx::make(true));
			io_->ioas.map_file(fd, 0, len_, kIova).value();
			break;
		case Op::to_private_eagain: {
			// The host maps the first page; the pipe holds a reference
			// to it until it is read, which the conversion refuses.
			volatile uint8_t *p = gm_.data();
			*p = 1;
			int fds[2];
			if (pipe2(fds, O_CLOEXEC) < 0)
				throw CheckFailed{ std::string("pipe2: ") + std::strerror(errno) };
			pipe_r_.reset(fds[0]);
			pipe_w_.reset(fds[1]);
			iovec iov{ gm_.data(), kPage };
			if (vmsplice(pipe_w_.get(), &iov, 1, 0) != static_cast<ssize_t>(kPage))
				throw CheckFailed{ std::string("vmsplice: ") +
						   std::strerror(errno) };
			break;
		}
		}
	}

	// The long operation itself, in this thread or a forked child.
	void op()
	{
		const auto &f = gm_.gmem();
		switch (op_) {
		case Op::attach:
			if (io_->edu)
				edu_hwpt_ = io_->edu->vfio().attach(io_->ioas.id()).value();
			else
				attached_.emplace(MockDomain::attach(io_->ioas).value());
			break;
		case Op::map_file:
			io_->ioas.map_file(f.fd(), 0, len_, kIova).value();
			break;
		case Op::to_shared:
			f.convert_shared(0, len_).value();
			break;
		case Op::to_private_eagain: {
			auto r = f.convert_private(0, len_);
			require(gmem::errno_of(r) == EAGAIN,
				"to-private of a range with a vmsplice()d page: EAGAIN, got " +
					std::string(std::strerror(gmem::errno_of(r))));
			break;
		}
		case Op::idle: {
			// Busy, as the thread of a long operation is, but in user
			// space: no lock of the kernel's held.
			auto it = idle_window().find(pages_);
			const uint64_t w = it == idle_window().end() ? kDefaultIdle : it->second;
			const uint64_t t0 = now_ns();
			while (now_ns() - t0 < w)
				;
			break;
		}
		}
	}

	void timed_op()
	{
		probes_.begin();
		const uint64_t t0 = now_ns();
		try {
			op();
		} catch (...) {
			probes_.end();
			throw;
		}
		op_ns_.push_back(now_ns() - t0);
		probes_.end();
	}

	// After the first long operation: the domains map the S pages.
	void check_done()
	{
		if (checked_ || op_ == Op::to_private_eagain || op_ == Op::idle)
			return;
		checked_ = true;
		const int fd = gm_.gmem().fd();
		std::string why;
		bool ok = false;
		if (op_ == Op::attach && io_->edu) {
			// A real domain tells its pages only through the mirror.
			ok = edu_hwpt_ != 0 && io_->check_mirror(kIova, len_, fd, true, why);
		} else if (op_ == Op::attach) {
			auto r = gmem::testing::check_gmem(io_->iommufd.fd(), attached_->hwpt_id(),
							   kIova, len_, fd, 0, false);
			ok = r.has_value();
			if (!ok)
				why = r.error().message();
		} else {
			ok = io_->check_mirror(kIova, len_, fd, true, why);
		}
		require(ok, "stall: the domain maps the S pages after the operation (" + why + ")");
	}

	// Back to the state before the long operation, the holes punched.
	void undo()
	{
		check_done();
		switch (op_) {
		case Op::attach:
			if (io_->edu)
				io_->edu->vfio().detach().value();
			attached_.reset();
			break;
		case Op::map_file:
			io_->ioas.unmap(kIova, len_).value();
			break;
		case Op::to_shared:
			gm_.gmem().convert_private(0, len_).value();
			break;
		case Op::to_private_eagain:
		case Op::idle:
			break;
		}
		const uint64_t used = std::min(next_hole_.load(), kHoles);
		holes_used_max_ = std::max(holes_used_max_, used);
		if (used)
			gm_.gmem().punch_hole(hole_off(0), used * kPage).value();
		next_hole_ = 0;
	}

	void start_probes()
	{
		uint8_t *base = gm_.data();
		probes_.add("fault_hole", [this, base]() -> std::optional<uint64_t> {
			const uint64_t i = next_hole_++;
			if (i >= kHoles)
				return std::nullopt;
			volatile uint8_t *p = base + hole_off(i);
			const uint64_t t0 = now_ns();
			*p = 1;
			return now_ns() - t0;
		});
		probes_.add("fault_shared", [this, base]() -> std::optional<uint64_t> {
			uint8_t *page = base + shared_off();
			if (madvise(page, kPage, MADV_DONTNEED) < 0)
				throw CheckFailed{ std::string("madvise: ") +
						   std::strerror(errno) };
			volatile uint8_t *p = page;
			const uint64_t t0 = now_ns();
			*p = 1;
			return now_ns() - t0;
		});
		if (!pre_fault_err_) {
			const int vcpu_fd = gm_.guest().vcpu(vcpu_).fd();
			const uint64_t gpa = kGpa + private_off();
			probes_.add("vcpu_fault", [vcpu_fd, gpa]() -> std::optional<uint64_t> {
				const uint64_t t0 = now_ns();
				const int err = pre_fault_memory(vcpu_fd, gpa, kPage);
				const uint64_t d = now_ns() - t0;
				if (err)
					throw CheckFailed{ std::string("KVM_PRE_FAULT_MEMORY: ") +
							   std::strerror(err) };
				return d;
			});
		}
		probes_.add("convert_one", [this]() -> std::optional<uint64_t> {
			const auto &f = gm_.gmem();
			const uint64_t t0 = now_ns();
			if (one_private_)
				f.convert_shared(convert_off(), kPage).value();
			else
				f.convert_private(convert_off(), kPage).value();
			const uint64_t d = now_ns() - t0;
			one_private_ = !one_private_;
			return d;
		});
	}

	// A forked child doing the long operation; returns once it is about
	// to start it.
	pid_t start_child()
	{
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) < 0)
			throw CheckFailed{ std::string("pipe2: ") + std::strerror(errno) };
		gmem::UniqueFd r(fds[0]), w(fds[1]);
		const pid_t pid = fork();
		if (pid < 0)
			throw CheckFailed{ std::string("fork: ") + std::strerror(errno) };
		if (pid == 0) {
			const char c = 1;
			if (write(w.get(), &c, 1) != 1)
				_exit(2);
			try {
				op();
			} catch (...) {
				_exit(1);
			}
			_exit(0);
		}
		w.reset();
		char c = 0;
		if (read(r.get(), &c, 1) != 1)
			throw CheckFailed{ "stall: the child did not start" };
		return pid;
	}

	static int reap(pid_t pid)
	{
		int st = 0;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		return st;
	}

	// SIGKILL of a child doing the long operation, half-way through it by
	// the duration of the operation alone (a first child, not killed,
	// measures it): the time until the child has exited. Each time, the
	// state before the operation again.
	std::vector<uint64_t> kill_exits()
	{
		std::vector<uint64_t> out;
		uint64_t t0 = now_ns();
		int st = reap(start_child());
		op_alone_ns_ = now_ns() - t0;
		require(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			"stall: the long operation failed in a child");
		after_kill();
		const int kills = std::min(opts.reps, 3);
		for (int k = 0; k < kills; k++) {
			const pid_t pid = start_child();
			std::this_thread::sleep_for(std::chrono::nanoseconds(op_alone_ns_ / 2));
			t0 = now_ns();
			kill(pid, SIGKILL);
			st = reap(pid);
			out.push_back(now_ns() - t0);
			if (!WIFSIGNALED(st))
				killed_late_++;
			after_kill();
		}
		return out;
	}

	void after_kill()
	{
		switch (op_) {
		case Op::attach:
			// The child's domain (if its attach went through) has ids
			// only the child knew: start over with a new context.
			io_.reset();
			set_up();
			break;
		case Op::map_file:
			(void)io_->ioas.unmap(kIova, len_);
			break;
		case Op::to_shared:
			gm_.gmem().convert_private(0, len_).value();
			break;
		case Op::to_private_eagain:
		case Op::idle:
			break;
		}
	}

	Op op_;
	ConvertibleFile gm_;
	std::optional<IommuCtx> io_;
	std::optional<MockDomain> second_;   // map-file: the IOAS's second domain
	std::optional<MockDomain> attached_; // attach: the domain attached
	uint32_t edu_hwpt_ = 0;		     // attach, edu: the device's HWPT
	gmem::UniqueFd pipe_r_, pipe_w_;
	unsigned vcpu_ = 0;
	int pre_fault_err_ = 0;
	std::atomic<uint64_t> next_hole_{ 0 };
	uint64_t holes_used_max_ = 0;
	bool one_private_ = false;
	bool checked_ = false;
	std::vector<uint64_t> op_ns_;
	uint64_t killed_late_ = 0;
	uint64_t op_alone_ns_ = 0;
	// Last: its threads stop before the rest is torn down.
	Probes probes_;
};

} // namespace

Group stall_group()
{
	auto make = [](Op op) {
		return [op](uint64_t n) { return std::make_unique<Stall>(n, op); };
	};
	return { "stall",
		 "one long operation on S pages against faults and a conversion on the same "
		 "file",
		 { "long_op", "fault_hole", "fault_shared", "vcpu_fault", "convert_one",
		   "kill_exit" },
		 { { "attach", make(Op::attach) },
		   { "map-file", make(Op::map_file) },
		   { "to-shared", make(Op::to_shared) },
		   { "to-private-eagain", make(Op::to_private_eagain) },
		   { "idle", make(Op::idle) } },
		 false,
		 true,
		 "idle" };
}

} // namespace bench
