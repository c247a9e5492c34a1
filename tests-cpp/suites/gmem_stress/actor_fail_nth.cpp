// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Operations with an allocation failure injected (fail-nth).
#include "stress.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace gmem::stress {

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
		if (model_.covered[i][c])
			return false;
		std::ostringstream what;
		what << "fail_nth " << nth << " map_file IOAS " << i << " chunk " << c;
		log(t.id, what.str(), c * kChunkPages, kChunkPages);
		const uint64_t base = iova(i, c * kChunkPages);
		t.nth->arm(nth);
		auto r = ioas_[i].map_file(gmem().fd(), c * kChunkSize, kChunkSize, base);
		const bool fired = t.nth->disarm();
		if (!injected(what.str(), r, fired, true))
			return true;
		if (!r.has_value()) {
			// It may have allocated shared holes before failing.
			if (auto a = again_on_eintr(
				    [&] { return gmem().allocate(c * kChunkSize, kChunkSize); });
			    !a.has_value()) {
				fail(what.str() + ": " + a.error().message());
				return true;
			}
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				model_.pages[p].allocated = true;
		} else {
			model_.covered[i][c] = true;
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				if (model_.pages[p].shared)
					model_.pages[p].allocated = true;
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
		if (model_.pages[p].poisoned)
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
			return gmem().convert_shared(first * kPage, n * kPage);
		case 1:
			return gmem().convert_private(first * kPage, n * kPage);
		case 2:
			return gmem().allocate(first * kPage, n * kPage);
		default:
			return gmem().punch_hole(first * kPage, n * kPage);
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
		PageModel &m = model_.pages[p];
		switch (kind) {
		case 0:
			if (!m.shared) {
				m.shared = true;
				if (model_.covered_any(p))
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

} // namespace gmem::stress
