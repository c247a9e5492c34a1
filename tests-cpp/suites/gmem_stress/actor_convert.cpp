// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Conversions: to shared and to private, racing host faults on their own
// pages; and to private refused while io_uring pins the pages.
#include "stress.h"

#include <sys/uio.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace gmem::stress {

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
			if (model_.pages[p].shared && model_.pages[p].poisoned)
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
			if (!model_.pages[p].shared || (to_private && !poisoned))
				race.push_back(p);
		if (!race.empty())
			what << " racing host faults";
	}
	log(t.id, what.str(), first, n);
	std::optional<Racer> racer;
	if (!race.empty())
		racer.emplace([this, &race, k = size_t{ 0 }]() mutable {
			volatile uint8_t *b = data() + race[k++ % race.size()] * kPage;
			(void)sigbus_guard([&] { (void)b[kPage / 2]; });
		});
	auto r = to_private ? gmem().convert_private(first * kPage, n * kPage)
			    : gmem().convert_shared(first * kPage, n * kPage);
	racer.reset();
	if (poisoned) {
		// The page keeps memory failure's reference: not a retryable
		// EAGAIN, its own errno naming a poisoned page.
		const uint64_t at =
			r.has_value() ? 0 : r.error().error_offset.value_or(~0ULL) / kPage;
		if (r.has_value() || errno_of(r) != EHWPOISON || at < first || at >= first + n ||
		    !model_.pages[at].poisoned) {
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
			PageModel &m = model_.pages[p];
			if (to_private) {
				m.shared = false;
			} else if (!m.shared) {
				// The mirror allocates the pages a conversion makes
				// shared; a page that already was shared stays as
				// it is (a hole stays a hole).
				m.shared = true;
				if (model_.covered_any(p))
					m.allocated = true;
			}
		}
	}
	if (r.has_value() && to_private) {
		// No host mapping survives, not even one a racing fault made.
		for (uint64_t p = first; p < first + n; p++) {
			volatile uint8_t *b = data() + p * kPage;
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

bool Stress::op_pin_to_private(ThreadCtx &t)
{
	if (!t.ring->ok() || !uring_pins_work_)
		return false;
	const uint64_t first = t.rand(kPages);
	const uint64_t n = 1 + t.rand(std::min<uint64_t>(4, kPages - first));
	auto locks = lock_stripes(first, n);
	for (uint64_t p = first; p < first + n; p++)
		if (!model_.pages[p].shared || model_.pages[p].poisoned)
			return false;
	std::ostringstream what;
	what << "pin_to_private [" << first << ", " << first + n << ")";
	log(t.id, what.str(), first, n);
	iovec iov{ data() + first * kPage, n * kPage };
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
			model_.pages[p].allocated = true;
	}
	// The pin is the test's own reference: EAGAIN naming the first page,
	// and nothing changed.
	auto c = gmem().convert_private(first * kPage, n * kPage);
	if (errno_of(c) != EAGAIN || c.error().error_offset.value_or(~0ULL) != first * kPage) {
		fail(what.str() + ": to-private of a pinned range should fail with EAGAIN at " +
			     std::to_string(first * kPage) + ", got " +
			     (c.has_value() ? std::string("success") : c.error().message()) + "; " +
			     describe(first),
		     first);
		if (c.has_value()) {
			for (uint64_t p = first; p < first + n; p++)
				model_.pages[p].shared = false;
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
	c = gmem().convert_private(first * kPage, n * kPage);
	if (!c.has_value()) {
		fail(what.str() + ": to-private after unpinning: " + c.error().message() + "; " +
			     describe(first),
		     first);
		return true;
	}
	Section s(*this, first, n);
	for (uint64_t p = first; p < first + n; p++)
		model_.pages[p].shared = false;
	check_domains(first, n, "after " + what.str());
	return true;
}

} // namespace gmem::stress
