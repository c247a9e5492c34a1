// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// sparse: IOMMU_IOAS_MAP_FILE of N shared pages: a sparse 1 TiB file against
// a file of N pages (cost and memory follow N?).
#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

// sparse: IOMMU_IOAS_MAP_FILE and unmap of a whole convertible guest_memfd
// with N shared, allocated pages: a sparse 1 TiB file with the N pages in
// (up to) 4 stretches 256 GiB apart, against a file of exactly N pages, all
// shared. The IOAS has no domain (the mock's aperture is 2 GiB): the
// mirror walks the file and records the pages it would map. Cost and the
// slab growth of the map should follow N, not the file's size.
class SparseMap : public Variant {
public:
	static constexpr uint64_t kTiB = 1ULL << 40;

	SparseMap(uint64_t pages, bool sparse)
	    : Variant(pages), io_(IommuCtx::make(false)), size_(sparse ? kTiB : len_),
	      f_(ConvertibleFile::unbound(size_, 0))
	{
		const uint64_t n = sparse && pages_ >= 4 ? 4 : 1;
		const uint64_t per = pages_ / n * kPage;
		for (uint64_t i = 0; i < n; i++) {
			const uint64_t off = sparse ? i * (kTiB / 4) : i * per;
			f_.gmem().convert_shared(off, per).value();
			f_.gmem().allocate(off, per).value();
		}
		stretches_ = sparse ? n : 1;
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "map",
			  { { "ioctl",
			      [this] {
				      iova_ = io_.ioas.map_file(f_.gmem().fd(), 0, size_, {})
						      .value();
			      } } } },
			{ "unmap",
			  { { "ioctl", [this] { io_.ioas.unmap(iova_, size_).value(); } } } },
		};
	}
	void check() override
	{
		const uint64_t before = meminfo_kib("Slab");
		iova_ = io_.ioas.map_file(f_.gmem().fd(), 0, size_, {}).value();
		map_kib_ = slab_growth_kib(before);
		auto st = io_.ioas.mirror_status(iova_).value();
		require(st.mapped_pages == pages_ && st.pending_pages == 0,
			"sparse: the mirror records exactly the shared, allocated pages (" +
				std::to_string(st.mapped_pages) + ")");
		io_.ioas.unmap(iova_, size_).value();
	}
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "file_mib", size_ >> 20 },
			 { "stretches", stretches_ },
			 { "slab_kib_mapped", map_kib_ } };
	}

private:
	IommuCtx io_;
	uint64_t size_;
	ConvertibleFile f_;
	uint64_t iova_ = 0;
	uint64_t stretches_ = 0;
	uint64_t map_kib_ = 0;
};

} // namespace

Group sparse_group()
{
	return { "sparse",
		 "MAP_FILE of N shared pages: a file of N pages vs a sparse 1 TiB file",
		 { "map", "unmap", "round_trip" },
		 { { "file-N", [](uint64_t n) { return std::make_unique<SparseMap>(n, false); } },
		   { "file-1TiB",
		     [](uint64_t n) { return std::make_unique<SparseMap>(n, true); } } },
		 false };
}

} // namespace bench
