// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// gmem-bench's command line (main.cpp parses it; usage() lists it).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace bench {

struct Options {
	int reps = 15;
	int warmup = 2;
	// 4 KiB, 2 MiB, 64 MiB, 1 GiB.
	std::vector<uint64_t> pages = { 1, 512, 16384, 262144 };
	// From this many pages on, at most big_reps timed and big_warmup
	// untimed round trips (a 1 GiB round trip is billions of instructions).
	uint64_t big_pages = 16384;
	int big_reps = 3;
	int big_warmup = 1;
	// frag's alternating split: at most this many stretches.
	uint64_t frag_max = 4096;
	// Cases with per-page work skip sizes above this (run time).
	uint64_t full_pages = UINT64_MAX;
	// --only GROUP/VARIANT: only these variants of GROUP (and its
	// baseline); a group named alone runs every variant.
	std::map<std::string, std::set<std::string>> variants;
	std::string json; // --json FILE: every figure, machine-readable
	std::set<std::string> groups = { "conv", "iommu-map", "iommu-conv", "notify",
					 "frag", "footprint", "touch",	    "sparse" };
	bool icount = false;
	std::string config = "unknown";
	std::string source = "unknown";
	bool steps = false;
	bool aslr = false;
	bool edu = false; // --device edu: the iommu-* cases on a real IOMMU
};

// The run's options, set once by main() before any case runs.
extern Options opts;

} // namespace bench
