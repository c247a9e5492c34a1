// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The kinds of operation the actors do, their names (as --disable takes
// them and the summary prints them) and how often host threads pick them.
#pragma once

#include <cstdint>

namespace gmem::stress {

enum Op : int {
	kToShared,
	kToPrivate,
	kHostRead,
	kHostWrite,
	kPunch,
	kFallocate,
	kUringFallocate,
	kHwPoison,
	kGuestRead,
	kGuestWrite,
	kMapFile,
	kUnmap,
	kAttach,
	kDetach,
	kFork,
	kPinToPrivate,
	kDmaRead,
	kReclaim,
	kFailNth,
	kOpCount
};

constexpr const char *kOpNames[kOpCount] = {
	"to_shared",	  "to_private",	     "host_read", "host_write", "punch",
	"fallocate",	  "uring_fallocate", "hwpoison",  "guest_read", "guest_write",
	"map_file",	  "unmap",	     "attach",	  "detach",	"fork",
	"pin_to_private", "dma_read",	     "reclaim",	  "fail_nth",
};

// Host threads pick operations with these weights; vCPU threads do guest
// reads and writes only. map_file/unmap and attach/detach are picked as
// one toggle each (whichever applies).
struct Weight {
	Op op;
	unsigned weight;
};
constexpr Weight kHostWeights[] = {
	{ kToShared, 14 }, { kToPrivate, 14 }, { kHostRead, 10 },      { kHostWrite, 8 },
	{ kPunch, 6 },	   { kFallocate, 4 },  { kUringFallocate, 4 }, { kHwPoison, 2 },
	{ kMapFile, 3 },   { kAttach, 2 },     { kFork, 1 },	       { kPinToPrivate, 2 },
	{ kDmaRead, 6 },   { kReclaim, 1 },    { kFailNth, 3 },
};

} // namespace gmem::stress
