// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// notify: converting N shared pages nobody maps to private and back, with 0
// notifier clients, KVM, and KVM plus an IOAS (without a domain, or with one
// that maps the pages); and with nothing allocated (the state alone).
#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

// notify: the same round trip (to private, back to shared) of N shared
// pages that no one has mapped in a page table (the file is mmapped but
// never touched), with 0, 1 or 2 notifier clients: none (the file not bound
// to a memslot), KVM (bound), KVM and an IOAS (IOMMU_IOAS_MAP_FILE of the
// file, with no domain, or with the mock domain that then really maps the
// pages). With @alloc false nothing is allocated: the conversion changes
// the shareability state alone.
class NotifyConv : public Variant {
public:
	enum class IoasKind { none, bare, domain };
	static constexpr uint64_t kFlags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

	NotifyConv(uint64_t pages, bool kvm, IoasKind ioas, bool alloc)
	    : Variant(pages), f_(kvm ? ConvertibleFile::bound(len_, kFlags)
				     : ConvertibleFile::unbound(len_, kFlags)),
	      alloc_(alloc)
	{
		if (alloc_)
			f_.gmem().allocate(0, len_).value();
		if (ioas != IoasKind::none) {
			io_.emplace(IommuCtx::make(ioas == IoasKind::domain));
			io_->ioas.map_file(f_.gmem().fd(), 0, len_, kIova).value();
		}
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "convert",
			      [this] { f_.gmem().convert_private(0, len_).value(); } } } },
			{ "to_shared",
			  { { "convert",
			      [this] { f_.gmem().convert_shared(0, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override
	{
		return { resident_pages(f_.data(), len_), 0 };
	}
	void check() override
	{
		// mincore() counts the file's uptodate folios: fallocate()
		// leaves them not uptodate (guest_memfd clears a page when it
		// is first used), MAP_FILE's lookups clear them. So it is a
		// fact, before and after the round trips, not a check.
		const uint64_t resident = resident_pages(f_.data(), len_);
		if (checked_) {
			resident_after_ = resident;
			return;
		}
		checked_ = true;
		resident_before_ = resident;
		if (!io_)
			return;
		auto st = io_->ioas.mirror_status(kIova).value();
		require(st.mapped_pages == pages_ && st.pending_pages == 0,
			"notify: the IOAS maps every shared page");
		f_.gmem().convert_private(0, len_).value();
		st = io_->ioas.mirror_status(kIova).value();
		require(st.mapped_pages == 0, "notify: the IOAS maps no private page");
		f_.gmem().convert_shared(0, len_).value();
	}

	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "uptodate_before", resident_before_ },
			 { "uptodate_after", resident_after_ } };
	}

private:
	ConvertibleFile f_;
	std::optional<IommuCtx> io_;
	bool alloc_;
	bool checked_ = false;
	uint64_t resident_before_ = 0, resident_after_ = 0;
};

std::unique_ptr<Variant> notify(uint64_t pages, bool kvm, NotifyConv::IoasKind ioas)
{
	return std::make_unique<NotifyConv>(pages, kvm, ioas, true);
}

} // namespace

Group notify_group()
{
	return { "notify",
		 "conversion of N shared pages nobody maps: 0, 1, 2 notifier clients",
		 { "to_private", "to_shared", "round_trip" },
		 { { "none",
		     [](uint64_t n) { return notify(n, false, NotifyConv::IoasKind::none); } },
		   { "kvm",
		     [](uint64_t n) { return notify(n, true, NotifyConv::IoasKind::none); } },
		   { "kvm+ioas",
		     [](uint64_t n) { return notify(n, true, NotifyConv::IoasKind::bare); } },
		   { "kvm+ioas+domain",
		     [](uint64_t n) { return notify(n, true, NotifyConv::IoasKind::domain); } },
		   { "none-holes",
		     [](uint64_t n) {
			     return std::make_unique<NotifyConv>(n, false,
								 NotifyConv::IoasKind::none, false);
		     },
		     true } },
		 false };
}

} // namespace bench
