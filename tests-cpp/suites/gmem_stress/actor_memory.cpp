// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Memory failure (MADV_HWPOISON) racing faults and conversions of its page,
// and reclaim (drop_caches, compaction) racing everything.
#include "stress.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace gmem::stress {

bool Stress::op_hwpoison(ThreadCtx &t)
{
	if (!hwpoison_works_ || poisoned_.load() >= kMaxPoisoned)
		return false;
	const uint64_t p = t.rand(kPages);
	auto locks = lock_stripes(p, 1);
	if (!model_.pages[p].shared || model_.pages[p].poisoned)
		return false;
	const std::string what = "hwpoison [" + std::to_string(p) + "]";
	log(t.id, what, p, 1);
	int rc = 0, err = 0;
	// Host faults on the page and no-op conversions of it (which take the
	// invalidate lock for writing all the same) race memory failure, which
	// holds the folio lock while it notifies; their outcome
	// changes nothing the model knows.
	std::atomic<int> racer_err{ 0 };
	bool no_signal;
	{
		Racer racer([&] {
			volatile uint8_t *b = data() + p * kPage;
			(void)sigbus_guard([&] { (void)b[0]; });
			if (auto r = gmem().convert_shared(p * kPage, kPage); !r.has_value())
				racer_err = errno_of(r);
		});
		// The poisoned, dirty page is mapped here: memory failure sends
		// the calling thread a SIGBUS (BUS_MCEERR_AR) as the call
		// returns.
		no_signal = sigbus_guard([&] {
			rc = ::madvise(data() + p * kPage, kPage, MADV_HWPOISON);
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
			model_.pages[p].allocated = true;
			return false;
		}
		fail(what + ": madvise(MADV_HWPOISON): " + std::strerror(err) + "; " + describe(p),
		     p);
		return true;
	}
	poisoned_++;
	Section s(*this, p, 1);
	// The GUP of madvise filled a hole first.
	model_.pages[p].allocated = true;
	model_.pages[p].poisoned = true;
	check_domains(p, 1, "after " + what);
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

} // namespace gmem::stress
