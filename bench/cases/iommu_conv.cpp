// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// iommu-conv: converting a DMA-mapped range to private and back: with the
// mirror it is the conversion alone; with a pinned mapping of the same
// guest_memfd the VMM must unmap first (else EAGAIN) and map again
// afterwards; and the 7.3 way, two backings with the memfd pinned.
#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

using gmem::GuestMemfd;
using gmem::Vm;

// iommu-conv: the range is DMA-mapped through the mirror; converting it is
// the conversion alone (iommufd follows through its notifier).
class ConvMirror : public Variant {
public:
	explicit ConvMirror(uint64_t pages)
	    : Variant(pages), io_(IommuCtx::make()), gm_(shared_gmem(len_))
	{
		io_.ioas.map_file(gm_.gmem().fd(), 0, len_, kIova).value();
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "convert",
			      [this] { gm_.gmem().convert_private(0, len_).value(); } } } },
			{ "to_shared",
			  { { "convert",
			      [this] { gm_.gmem().convert_shared(0, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override
	{
		return { resident_pages(gm_.data(), len_), 0 };
	}
	void check() override
	{
		std::string why;
		require(io_.check_mirror(kIova, len_, gm_.gmem().fd(), true, why),
			"mirror: shared range mapped (" + why + ")");
		gm_.gmem().convert_private(0, len_).value();
		require(io_.check_mirror(kIova, len_, gm_.gmem().fd(), false, why),
			"mirror: private range not mapped (" + why + ")");
		gm_.gmem().convert_shared(0, len_).value();
		auto st = io_.ioas.mirror_status(kIova).value();
		require(st.mapped_pages == pages_ && st.pending_pages == 0,
			"mirror: every page mapped again after to_shared");
	}

private:
	IommuCtx io_;
	ConvertibleFile gm_;
};

// iommu-conv: the same guest_memfd, but DMA-mapped with IOMMU_IOAS_MAP of
// its host mapping (pinned): to_private must unmap first (the pins make
// KVM_GMEM_CONVERT_PRIVATE fail with EAGAIN), to_shared maps (pins) again.
class ConvPinnedInPlace : public Variant {
public:
	explicit ConvPinnedInPlace(uint64_t pages)
	    : Variant(pages), io_(IommuCtx::make()), gm_(shared_gmem(len_))
	{
		touch(gm_.data(), pages_, 1);
		io_.ioas.map_memory(gm_.data(), len_, kIova).value();
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "unmap", [this] { io_.ioas.unmap(kIova, len_).value(); } },
			    { "convert",
			      [this] { gm_.gmem().convert_private(0, len_).value(); } } } },
			{ "to_shared",
			  { { "convert", [this] { gm_.gmem().convert_shared(0, len_).value(); } },
			    { "map",
			      [this] {
				      io_.ioas.map_memory(gm_.data(), len_, kIova).value();
			      } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override
	{
		return { resident_pages(gm_.data(), len_), 0 };
	}
	void check() override
	{
		auto r = gm_.gmem().convert_private(0, len_);
		require(!r.has_value() && errno_of(r) == EAGAIN,
			"pinned: KVM_GMEM_CONVERT_PRIVATE of a pinned range fails with EAGAIN "
			"(got " +
				(r.has_value() ? std::string("success") : r.error().message()) +
				")");
	}

private:
	IommuCtx io_;
	ConvertibleFile gm_;
};

// iommu-conv, the 7.3 way: two backings, the memfd DMA-mapped (pinned).
// to_private: unmap, attributes, punch the memfd, allocate private;
// to_shared: attributes, punch guest_memfd, map (pin_user_pages faults the
// memfd pages in, allocating them).
class ConvPinnedTwoBacking : public Variant {
public:
	explicit ConvPinnedTwoBacking(uint64_t pages)
	    : Variant(pages), io_(IommuCtx::make()), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, 0).value()), sh_(len_)
	{
		vm_.set_memory_region(kSlot, kGpa, len_, sh_.map.data(), &g_, 0).value();
		touch(sh_.map.data(), pages_, 1);
		io_.ioas.map_memory(sh_.map.data(), len_, kIova).value();
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "unmap", [this] { io_.ioas.unmap(kIova, len_).value(); } },
			    { "attributes",
			      [this] {
				      vm_.set_memory_attributes(kGpa, len_,
								KVM_MEMORY_ATTRIBUTE_PRIVATE)
					      .value();
			      } },
			    { "punch_shared", [this] { sh_.punch(len_); } },
			    { "alloc_private",
			      [this] {
				      g_.allocate(0, len_).value();
				      gmem_pages_ = pages_;
			      } } } },
			{ "to_shared",
			  { { "attributes",
			      [this] { vm_.set_memory_attributes(kGpa, len_, 0).value(); } },
			    { "punch_private",
			      [this] {
				      g_.punch_hole(0, len_).value();
				      gmem_pages_ = 0;
			      } },
			    { "map",
			      [this] {
				      io_.ioas.map_memory(sh_.map.data(), len_, kIova).value();
			      } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { gmem_pages_, sh_.pages() }; }

private:
	IommuCtx io_;
	Vm vm_;
	GuestMemfd g_;
	SharedBacking sh_;
	uint64_t gmem_pages_ = 0;
};

} // namespace

Group iommu_conv_group()
{
	return { "iommu-conv",
		 "conversion of N DMA-mapped pages: mirror vs unmap/convert/re-map",
		 { "to_private", "to_shared", "round_trip" },
		 { { "mirror", [](uint64_t n) { return std::make_unique<ConvMirror>(n); } },
		   { "pin-in-place",
		     [](uint64_t n) { return std::make_unique<ConvPinnedInPlace>(n); } },
		   { "pin-two-backing",
		     [](uint64_t n) { return std::make_unique<ConvPinnedTwoBacking>(n); } } },
		 true };
}

} // namespace bench
