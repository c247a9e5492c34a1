// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// iommu-map: mapping N pages into an IOAS with one domain and unmapping them:
// IOMMU_IOAS_MAP of a memfd mapping (pins), IOMMU_IOAS_MAP_FILE of the memfd
// (pins), IOMMU_IOAS_MAP_FILE of a convertible guest_memfd (mirrors, pins
// nothing).
#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

// iommu-map: a memfd, pinned, mapped and unmapped (IOMMU_IOAS_UNMAP):
// either IOMMU_IOAS_MAP of its mapping (pin_user_pages) or, with
// @by_file, IOMMU_IOAS_MAP_FILE of the memfd (7.3: memfd_pin_folios()). The
// pages are allocated and mapped in the host first.
class MapPinned : public Variant {
public:
	MapPinned(uint64_t pages, bool by_file)
	    : Variant(pages), io_(IommuCtx::make()), sh_(len_), by_file_(by_file)
	{
		touch(sh_.map.data(), pages_, 1);
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "map",
			  { { "ioctl",
			      [this] {
				      if (by_file_)
					      io_.ioas.map_file(sh_.fd.get(), 0, len_, kIova)
						      .value();
				      else
					      io_.ioas.map_memory(sh_.map.data(), len_, kIova)
						      .value();
			      } } } },
			{ "unmap",
			  { { "ioctl", [this] { io_.ioas.unmap(kIova, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { 0, sh_.pages() }; }
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "pfn_runs", pfn_runs(sh_.map.data(), pages_) } };
	}

private:
	IommuCtx io_;
	SharedBacking sh_;
	bool by_file_;
};

// iommu-map: IOMMU_IOAS_MAP_FILE of a convertible guest_memfd, all shared
// and allocated: the mock domain mirrors the file, nothing is pinned.
class MapMirror : public Variant {
public:
	explicit MapMirror(uint64_t pages)
	    : Variant(pages), io_(IommuCtx::make()), gm_(shared_gmem(len_))
	{
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "map",
			  { { "ioctl",
			      [this] {
				      io_.ioas.map_file(gm_.gmem().fd(), 0, len_, kIova).value();
			      } } } },
			{ "unmap",
			  { { "ioctl", [this] { io_.ioas.unmap(kIova, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override
	{
		return { resident_pages(gm_.data(), len_), 0 };
	}
	void check() override
	{
		io_.ioas.map_file(gm_.gmem().fd(), 0, len_, kIova).value();
		std::string why;
		const bool ok = io_.check_mirror(kIova, len_, gm_.gmem().fd(), true, why);
		require(ok, "mirror: the domain maps every shared page (" + why + ")");
		auto refs = gmem::testing::check_refs(io_.iommufd.fd(), gm_.data(), len_, 0);
		require(refs.has_value(), "mirror: no page pinned");
		io_.ioas.unmap(kIova, len_).value();
	}

private:
	IommuCtx io_;
	ConvertibleFile gm_;
};

} // namespace

Group iommu_map_group()
{
	return { "iommu-map",
		 "IOAS map/unmap of N pages, one domain: mirror vs pinned",
		 { "map", "unmap", "round_trip" },
		 { { "mirror", [](uint64_t n) { return std::make_unique<MapMirror>(n); } },
		   { "pin-memfd-MAP",
		     [](uint64_t n) { return std::make_unique<MapPinned>(n, false); } },
		   { "pin-memfd-MAP_FILE",
		     [](uint64_t n) { return std::make_unique<MapPinned>(n, true); } } },
		 false };
}

} // namespace bench
