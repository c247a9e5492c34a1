// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The IOMMU side: MAP_FILE and unmap of a chunk, domain attach and detach,
// and in-kernel (access) reads of the IOVA of a page.
#include "stress.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace gmem::stress {

bool Stress::op_area(ThreadCtx &t, Op &done)
{
	const int i = static_cast<int>(t.rand(kIoases));
	const uint64_t c = t.rand(kChunks);
	std::unique_lock l(area_mu_[i][c]);
	const bool unmap = model_.covered[i][c];
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
		model_.covered[i][c] = false;
		return true;
	}
	if (!opt_.map_fill) {
		// Workaround switch: no hole for MAP_FILE to fill unnotified.
		if (auto r = again_on_eintr(
			    [&] { return gmem().allocate(c * kChunkSize, kChunkSize); });
		    !r.has_value()) {
			fail(what.str() + ": " + r.error().message());
			return true;
		}
		for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
			model_.pages[p].allocated = true;
	}
	auto r = ioas_[i].map_file(gmem().fd(), c * kChunkSize, kChunkSize, base);
	if (!r.has_value() || *r != base) {
		fail(what.str() + ": " +
		     (r.has_value() ? "mapped elsewhere" : r.error().message()));
		return true;
	}
	model_.covered[i][c] = true;
	// Mapping allocates the chunk's shared pages.
	for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
		if (model_.pages[p].shared)
			model_.pages[p].allocated = true;
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

bool Stress::op_dma_read(ThreadCtx &t)
{
	const int i = static_cast<int>(t.rand(kIoases));
	const uint64_t p = t.rand(kPages);
	auto locks = lock_stripes(p, 1);
	Section s(*this, p, 1);
	if (!model_.covers(i, p))
		return false;
	const std::string what =
		"dma_read IOAS " + std::to_string(i) + " [" + std::to_string(p) + "]";
	log(t.id, what, p, 1);
	const PageModel &m = model_.pages[p];
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

} // namespace gmem::stress
