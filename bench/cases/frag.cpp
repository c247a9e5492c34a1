// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// frag: the shareability state of a 2N-page file: N single pages every other
// page made shared, against one range of N, then the whole file back to
// private; with the slab growth of each.
#include "case.h"
#include "fixtures.h"
#include "options.h"

namespace bench {
namespace {

// frag: the shareability state of a 2N-page file, nothing allocated, no
// client. split: N pages become shared, either as N single pages every
// other page (N stretches, N ioctls) or as one range (one stretch, one
// ioctl); merge: the whole file back to private (one ioctl either way).
// The merge shows whether the cost follows stretches or pages; the slab
// growth of the split is the memory the state takes.
class FragConv : public Variant {
public:
	FragConv(uint64_t pages, bool alternating)
	    : Variant(pages), alternating_(alternating),
	      f_(ConvertibleFile::unbound(2 * len_, GUEST_MEMFD_FLAG_MMAP))
	{
		// Past 4096 stretches, one ioctl per page would take minutes
		// of a run. --frag-max overrides.
		if (alternating_ && pages_ > opts.frag_max)
			throw Skip{ "over --frag-max " + std::to_string(opts.frag_max) };
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "split", { { "convert", [this] { split(); } } } },
			{ "merge",
			  { { "convert",
			      [this] { f_.gmem().convert_private(0, 2 * len_).value(); } } } },
		};
	}
	void check() override
	{
		if (measured_)
			return;
		measured_ = true;
		const uint64_t before = meminfo_kib("Slab");
		split();
		split_kib_ = slab_growth_kib(before);
		f_.gmem().convert_private(0, 2 * len_).value();
		merged_kib_ = slab_growth_kib(before);
	}
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "stretches", alternating_ ? pages_ : 1 },
			 { "slab_kib_split", split_kib_ },
			 { "slab_kib_merged", merged_kib_ } };
	}

private:
	void split()
	{
		if (!alternating_) {
			f_.gmem().convert_shared(0, len_).value();
			return;
		}
		for (uint64_t i = 0; i < pages_; i++)
			f_.gmem().convert_shared(2 * i * kPage, kPage).value();
	}

	bool alternating_;
	ConvertibleFile f_;
	bool measured_ = false;
	uint64_t split_kib_ = 0, merged_kib_ = 0;
};

} // namespace

Group frag_group()
{
	return { "frag",
		 "state of a 2N-page file: N single shared pages vs one range of N",
		 { "split", "merge", "round_trip" },
		 { { "one-range", [](uint64_t n) { return std::make_unique<FragConv>(n, false); },
		     true },
		   { "alternating",
		     [](uint64_t n) { return std::make_unique<FragConv>(n, true); } } },
		 false };
}

} // namespace bench
