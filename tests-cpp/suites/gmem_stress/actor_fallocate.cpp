// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// fallocate() and hole punch, by the system call or through io_uring,
// racing host faults on their own pages.
#include "stress.h"

#include <linux/falloc.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace gmem::stress {

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
			if (!model_.pages[p].poisoned)
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
			volatile uint8_t *b = data() + race[k++ % race.size()] * kPage;
			(void)sigbus_guard([&] { (void)b[kPage / 2]; });
		});
	int r = 0;
	// EINTR: see again_on_eintr().
	for (int i = 0; i < 100; i++) {
		if (uring) {
			r = t.ring->fallocate(gmem().fd(), mode, first * kPage, n * kPage);
		} else {
			r = ::fallocate(gmem().fd(), mode, static_cast<off_t>(first * kPage),
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
		if (!model_.pages[p].poisoned)
			continue;
		// Memory failure left a hwpoison entry in this process's page
		// table, which truncation does not zap (the folio is no longer
		// mapped): map the page again, as QEMU's qemu_ram_remap() does.
		void *a =
			::mmap(data() + p * kPage, kPage, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, gmem().fd(), static_cast<off_t>(p * kPage));
		if (a != data() + p * kPage) {
			fail(what.str() + ": mmap(MAP_FIXED) of the punched poisoned page: " +
				     std::strerror(errno),
			     p);
			return true;
		}
	}
	if (!s)
		s.emplace(*this, first, n);
	for (uint64_t p = first; p < first + n; p++) {
		PageModel &m = model_.pages[p];
		if (punch) {
			m.allocated = false;
			m.poisoned = false;
			m.token = 0;
		} else {
			m.allocated = true;
		}
	}
	for (uint64_t p : race) {
		if (!punch || !model_.pages[p].shared)
			continue;
		unsigned char vec = 0;
		if (::mincore(data() + p * kPage, kPage, &vec) != 0) {
			fail(what.str() + ": mincore: " + std::strerror(errno), p);
			return true;
		}
		model_.pages[p].allocated = vec & 1;
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

} // namespace gmem::stress
