// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The checker: the kernel's view of the pages against the model, through
// each mock domain's page table, IOMMU_IOAS_MIRROR_STATUS and the host's
// mapping.
#include "stress.h"

#include <sstream>

namespace gmem::stress {

bool Stress::check_domains(uint64_t first, uint64_t n, const std::string &what)
{
	const int fd = gmem().fd();
	const int ifd = iommufd_->fd();
	for (int i = 0; i < kIoases; i++) {
		for (size_t d = 0; d < domains_[i].size(); d++) {
			const uint32_t hwpt = domains_[i][d].hwpt_id();
			for (uint64_t p = first; p < first + n;) {
				// A run of pages with the same expectation, inside
				// one chunk.
				const bool cov = model_.covers(i, p);
				const bool want = cov && model_.mirrored(p);
				uint64_t q = p + 1;
				while (q < first + n && q % kChunkPages != 0 &&
				       (cov && model_.mirrored(q)) == want)
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
			if (!model_.covered[i][c]) {
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
			auto io = ::gmem::testing::gmem_iopte_count(ioas_[i], base);
			if (!io.has_value()) {
				fail(what + ": " + io.error().message());
				return false;
			}
			uint64_t want = 0;
			for (uint64_t p = c * kChunkPages; p < (c + 1) * kChunkPages; p++)
				want += model_.mirrored(p);
			const uint64_t ioptes = want * domains_[i].size();
			const bool ok = st->iova == base && st->length == kChunkSize &&
					st->mapped_pages == want && st->pending_pages == 0 &&
					st->error == 0 && io->adds - io->removes == ioptes;
			if (!ok) {
				std::ostringstream s;
				s << what << ": IOMMU_IOAS_MIRROR_STATUS of IOAS " << i << " chunk "
				  << c << " (file pages [" << c * kChunkPages << ", "
				  << (c + 1) * kChunkPages << ")): " << *st << ", IOPTEs "
				  << io->adds << " added, " << io->removes
				  << " removed; the model has " << want
				  << " mapped pages, 0 pending, " << ioptes
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
		const PageModel &m = model_.pages[p];
		// Reading a hole would allocate it: only pages the model has.
		if (m.shared && !m.allocated && !m.poisoned)
			continue;
		volatile uint32_t *w = reinterpret_cast<volatile uint32_t *>(data() + p * kPage);
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

bool Stress::retry_pending(uint64_t first, uint64_t n, const std::string &what)
{
	for (int i = 0; i < kIoases; i++) {
		for (uint64_t c = first / kChunkPages; c <= (first + n - 1) / kChunkPages; c++) {
			if (!model_.covered[i][c])
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

} // namespace gmem::stress
