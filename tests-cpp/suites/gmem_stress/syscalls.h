// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Kernel interfaces the actors drive beside libgmemvmm: an io_uring,
// fail-nth fault injection, and fallocate()'s EINTR.
#pragma once

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "gmem/fd.h"

namespace gmem::stress {

// Runs fn() again while it fails with EINTR: guest_memfd's fallocate()
// stops at signal_pending(), which io_uring's task work (TIF_NOTIFY_SIGNAL)
// makes true without any signal (KERNEL-BUGS.md, 5). What it allocated
// stays; the rerun completes it.
inline std::atomic<uint64_t> eintr_retries{ 0 };

template <typename F> auto again_on_eintr(F &&fn)
{
	auto r = fn();
	for (int i = 0; i < 100 && !r.has_value() && errno_of(r) == EINTR; i++) {
		eintr_retries++;
		r = fn();
	}
	return r;
}

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

// Lets fail-nth reach every allocation, GFP_KERNEL ones included, and keeps
// the injections out of the kernel log (as iommufd_fail_nth does). False if
// there is no fault injection.
bool setup_fault_injection();

} // namespace gmem::stress
