// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// conv: converting N pages to shared (the host then touches them) and back to
// private, in place (one convertible guest_memfd, KVM_GMEM_CONVERT_*) against
// the two backings a 7.3 VMM uses (guest_memfd for private, a memfd for
// shared, KVM_SET_MEMORY_ATTRIBUTES to flip, a hole punched in the side
// dropped, the dropped side allocated again when used; and a variant that also
// copies the contents across). Also the peak number of pages allocated in both
// backings.
#include <cstring>

#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

using gmem::GuestMemfd;
using gmem::Vm;

// conv: one convertible guest_memfd bound to a memslot; the guest has used
// all its (private) pages. to_shared: KVM_GMEM_CONVERT_SHARED, then the
// host writes to every page; to_private: KVM_GMEM_CONVERT_PRIVATE.
class InPlaceConv : public Variant {
public:
	explicit InPlaceConv(uint64_t pages)
	    : Variant(pages), f_(ConvertibleFile::bound(len_, GUEST_MEMFD_FLAG_MMAP))
	{
		f_.gmem().allocate(0, len_).value();
	}

	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_shared",
			  { { "convert", [this] { convert(false); } },
			    { "touch", [this] { touch(f_.data(), pages_, seed_++); } } } },
			{ "to_private", { { "convert", [this] { convert(true); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override
	{
		return { resident_pages(f_.data(), len_), 0 };
	}
	void check() override
	{
		// Contents survive a round trip (KVM_X86_SW_PROTECTED_VM keeps
		// them), and nothing is allocated beyond the file's own pages.
		convert(false);
		for (uint64_t i = 0; i < pages_; i++)
			f_.data()[i * kPage] = static_cast<uint8_t>(0xa5 ^ i);
		convert(true);
		convert(false);
		for (uint64_t i = 0; i < pages_; i++)
			require(f_.data()[i * kPage] == static_cast<uint8_t>(0xa5 ^ i),
				"in-place: contents kept across a round trip");
		convert(true);
		require(resident_pages(f_.data(), len_) == pages_,
			"in-place: exactly N pages allocated");
	}

private:
	// The whole file, through the VMM's single entry point.
	void convert(bool to_private) { f_.guest().convert(0, len_, to_private).value(); }

	ConvertibleFile f_;
	uint8_t seed_ = 0;
};

// conv, the 7.3 way: private pages in a guest_memfd (no mmap), shared ones
// in a memfd at the memslot's userspace_addr; KVM_SET_MEMORY_ATTRIBUTES
// flips a range, the side dropped gets a hole punched, the side taken is
// allocated (host touch for shared; fallocate for private, standing for the
// guest's first access, which would allocate it). With @copy, contents are
// preserved: both sides exist while the VMM copies (7.3 gives the VMM no
// access to private guest_memfd pages, so a bounce buffer stands for them:
// the cost is the copy, the memory is the second backing).
class TwoBackingConv : public Variant {
public:
	TwoBackingConv(uint64_t pages, bool copy)
	    : Variant(pages), copy_(copy), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, 0).value()), sh_(len_)
	{
		vm_.set_memory_region(kSlot, kGpa, len_, sh_.map.data(), &g_, 0).value();
		vm_.set_memory_attributes(kGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE).value();
		g_.allocate(0, len_).value();
		gmem_pages_ = pages_;
		if (copy_)
			bounce_.assign(len_, 0x5a);
	}

	std::vector<Phase> round_trip() override
	{
		Step attrs_shared{ "attributes",
				   [this] { vm_.set_memory_attributes(kGpa, len_, 0).value(); } };
		Step attrs_private{ "attributes", [this] {
					   vm_.set_memory_attributes(kGpa, len_,
								     KVM_MEMORY_ATTRIBUTE_PRIVATE)
						   .value();
				   } };
		Step punch_private{ "punch_private", [this] {
					   g_.punch_hole(0, len_).value();
					   gmem_pages_ = 0;
				   } };
		Step alloc_private{ "alloc_private", [this] {
					   g_.allocate(0, len_).value();
					   gmem_pages_ = pages_;
				   } };
		Step punch_shared{ "punch_shared", [this] { sh_.punch(len_); } };
		if (!copy_)
			return {
				{ "to_shared",
				  { attrs_shared,
				    punch_private,
				    { "touch",
				      [this] { touch(sh_.map.data(), pages_, seed_++); } } } },
				{ "to_private", { attrs_private, punch_shared, alloc_private } },
			};
		return {
			{ "to_shared",
			  { attrs_shared,
			    { "copy",
			      [this] { std::memcpy(sh_.map.data(), bounce_.data(), len_); } },
			    punch_private } },
			{ "to_private",
			  { attrs_private,
			    alloc_private,
			    { "copy",
			      [this] { std::memcpy(bounce_.data(), sh_.map.data(), len_); } },
			    punch_shared } },
		};
	}
	// guest_memfd pages are counted by construction (7.3's guest_memfd of a
	// private-memory VM cannot be mapped, so mincore() cannot see it):
	// fallocate() of the emptied range allocates N pages, the punch frees
	// them. The memfd's pages are its block count.
	[[nodiscard]] MemCount memory() const override { return { gmem_pages_, sh_.pages() }; }

private:
	bool copy_;
	Vm vm_;
	GuestMemfd g_;
	SharedBacking sh_;
	std::vector<uint8_t> bounce_;
	uint64_t gmem_pages_ = 0;
	uint8_t seed_ = 0;
};

} // namespace

Group conv_group()
{
	return { "conv",
		 "conversion of N pages: in place vs two backings (7.3)",
		 { "to_shared", "to_private", "round_trip" },
		 { { "in-place", [](uint64_t n) { return std::make_unique<InPlaceConv>(n); } },
		   { "two-backing",
		     [](uint64_t n) { return std::make_unique<TwoBackingConv>(n, false); } },
		   { "two-backing+copy",
		     [](uint64_t n) { return std::make_unique<TwoBackingConv>(n, true); } } },
		 true };
}

} // namespace bench
