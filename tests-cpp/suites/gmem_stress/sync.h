// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// How the threads of the stress meet: the gate that quiesce checks close,
// and racers that run beside an operation on its own pages.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace gmem::stress {

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

} // namespace gmem::stress
