// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The shadow model of the stress: the file's geometry, and what the kernel
// should show of each page.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "gmem/layout.h"
#include "mock/iommufd_mock.h"

namespace gmem::stress {

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
// The file's GPA in the guest: its data slot.
constexpr uint64_t kDataGpa = layout::kDataGpa;
// Where each IOAS maps chunk c: base + c * 2 chunks (a gap between areas).
constexpr uint64_t kIovaBase[kIoases] = { MOCK_APERTURE_START + 0x100000,
					  MOCK_APERTURE_START + 0x4000000 };
static_assert(kIovaBase[1] + 2 * kFileSize <= MOCK_APERTURE_LAST);

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

// Where IOAS @ioas maps file page @page (if it maps its chunk).
inline uint64_t iova(int ioas, uint64_t page)
{
	return kIovaBase[ioas] + (page / kChunkPages) * 2 * kChunkSize +
	       (page % kChunkPages) * kPage;
}

// The shadow model: what the kernel should show of every file page, and
// which chunks each IOAS maps. The checks (check.cpp) compare the kernel's
// view with it; the actors update it after each operation, under the locks
// Stress::Section describes.
class Model {
public:
	std::array<PageModel, kPages> pages;
	// covered[i][c]: IOAS i maps chunk c.
	std::array<std::array<bool, kChunks>, kIoases> covered{};

	[[nodiscard]] bool covers(int ioas, uint64_t page) const
	{
		return covered[ioas][page / kChunkPages];
	}
	[[nodiscard]] bool covered_any(uint64_t page) const;
	// The domains map the page: shared, allocated, not poisoned.
	[[nodiscard]] bool mirrored(uint64_t p) const
	{
		const PageModel &m = pages[p];
		return m.shared && m.allocated && !m.poisoned;
	}
	// A token no write has used (the top bit tells it from zeroed memory).
	uint32_t new_token() { return next_token_.fetch_add(1) | 0x80000000u; }
	// The page's model and who maps it (@domains: each IOAS's count).
	[[nodiscard]] std::string describe(uint64_t p,
					   const std::array<size_t, kIoases> &domains) const;

private:
	std::atomic<uint32_t> next_token_{ 1 };
};

} // namespace gmem::stress
