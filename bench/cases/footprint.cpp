// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// footprint: a guest sharing half of N pages: page cache in use at rest, at
// the peak of a conversion storm and after it, in place against two backings
// (discarding or not).
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

using gmem::GuestMemfd;
using gmem::Vm;

// footprint: a guest of N pages that shares half of them, from the
// kernel's own counter (the growth of Cached in /proc/meminfo since before
// the set-up: the guest_memfd and memfd pages backing the guest), at
// rest, at the peak of a conversion storm and after it. The storm swaps
// which half is shared, 2 MiB at a time (one chunk goes private, one goes
// shared and the host touches it), then swaps back. in-place: one
// convertible guest_memfd. two-backing: 7.3 with a VMM that discards the
// side it drops (punches the hole); two-backing-keep: one that does not.
class Footprint : public Variant {
public:
	enum class Kind { in_place, two_backing, two_backing_keep };

	Footprint(uint64_t pages, Kind kind)
	    : Variant(pages), cached0_(settled_cached_kib()), kind_(kind), half_(pages / 2),
	      chunk_(std::min<uint64_t>(512, pages / 2))
	{
		if (half_ == 0)
			throw Skip{ "footprint needs at least 2 pages" };
		if (pages_ > 16384)
			throw Skip{ "kept to 64 MiB (a storm touches every page twice)" };
		if (kind_ == Kind::in_place) {
			f_.emplace(ConvertibleFile::bound(len_, GUEST_MEMFD_FLAG_MMAP));
		} else {
			vm_.emplace(make_vm());
			own_.emplace(vm_->create_guest_memfd(len_, 0).value());
			sh_.emplace(len_);
			vm_->set_memory_region(kSlot, kGpa, len_, sh_->map.data(), &*own_, 0)
				.value();
			vm_->set_memory_attributes(kGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE)
				.value();
		}
		gmem().allocate(0, len_).value();
		for (uint64_t i = 0; i < half_; i += chunk_)
			to_shared(i);
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "storm_out", { { "swap", [this] { storm(0, half_, nullptr); } } } },
			{ "storm_back", { { "swap", [this] { storm(half_, 0, nullptr); } } } },
		};
	}
	void check() override
	{
		if (measured_)
			return;
		measured_ = true;
		rest_ = used_kib();
		peak_ = rest_;
		storm(0, half_, &peak_);
		after_ = used_kib();
		storm(half_, 0, &peak_);
	}
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "kib_rest", rest_ }, { "kib_peak", peak_ }, { "kib_after", after_ } };
	}

private:
	[[nodiscard]] const GuestMemfd &gmem() const { return f_ ? f_->gmem() : *own_; }
	[[nodiscard]] uint64_t used_kib() const
	{
		const uint64_t now = settled_cached_kib();
		return now > cached0_ ? now - cached0_ : 0;
	}
	// The pages [@shared, +half) go private and [@priv, +half) shared,
	// chunk by chunk; with @peak, the most memory in use after any chunk.
	void storm(uint64_t shared, uint64_t priv, uint64_t *peak)
	{
		for (uint64_t i = 0; i < half_; i += chunk_) {
			to_private(shared + i);
			to_shared(priv + i);
			if (peak)
				*peak = std::max(*peak, used_kib());
		}
	}
	void to_private(uint64_t first)
	{
		const uint64_t off = first * kPage, n = chunk_ * kPage;
		if (kind_ == Kind::in_place) {
			gmem().convert_private(off, n).value();
			return;
		}
		vm_->set_memory_attributes(kGpa + off, n, KVM_MEMORY_ATTRIBUTE_PRIVATE).value();
		if (kind_ == Kind::two_backing &&
		    fallocate(sh_->fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      static_cast<off_t>(off), static_cast<off_t>(n)) < 0)
			throw CheckFailed{ std::string("punching the memfd: ") +
					   std::strerror(errno) };
		gmem().allocate(off, n).value();
	}
	void to_shared(uint64_t first)
	{
		const uint64_t off = first * kPage, n = chunk_ * kPage;
		uint8_t *host = nullptr;
		if (kind_ == Kind::in_place) {
			gmem().convert_shared(off, n).value();
			host = f_->data();
		} else {
			vm_->set_memory_attributes(kGpa + off, n, 0).value();
			if (kind_ == Kind::two_backing)
				gmem().punch_hole(off, n).value();
			host = sh_->map.data();
		}
		for (uint64_t i = 0; i < chunk_; i++)
			host[off + i * kPage] = static_cast<uint8_t>(i);
	}

	uint64_t cached0_; // before anything of this case was set up
	Kind kind_;
	// in-place: a ConvertibleGuest's file; else 7.3's two backings.
	std::optional<ConvertibleFile> f_;
	std::optional<Vm> vm_;
	std::optional<GuestMemfd> own_;
	std::optional<SharedBacking> sh_;
	uint64_t half_, chunk_;
	bool measured_ = false;
	uint64_t rest_ = 0, peak_ = 0, after_ = 0;
};

} // namespace

Group footprint_group()
{
	return { "footprint",
		 "a guest sharing half of N pages: memory used at rest, storm peak, after",
		 { "storm_out", "storm_back", "round_trip" },
		 { { "in-place",
		     [](uint64_t n) {
			     return std::make_unique<Footprint>(n, Footprint::Kind::in_place);
		     } },
		   { "two-backing",
		     [](uint64_t n) {
			     return std::make_unique<Footprint>(n, Footprint::Kind::two_backing);
		     } },
		   { "two-backing-keep",
		     [](uint64_t n) {
			     return std::make_unique<Footprint>(n,
								Footprint::Kind::two_backing_keep);
		     } } },
		 false };
}

} // namespace bench
