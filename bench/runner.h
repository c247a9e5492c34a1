// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Runs one variant at one size: its checks, --warmup untimed and --reps
// timed round trips (fewer from --big-pages on), then one more untimed
// round trip counting the pages allocated after every step.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "case.h"
#include "timing.h"

namespace bench {

struct Peak {
	MemCount start; // the state each round trip starts from
	MemCount peak;	// the most pages allocated at any step of a round trip
};

struct Outcome {
	std::map<std::string, Stats> stats; // phase or "phase.step"
	std::optional<Peak> mem;
	std::map<std::string, uint64_t> facts;
	std::string skipped; // non-empty: why the case did not run
	std::string failed;  // non-empty: what went wrong
};

// results[group][variant][pages]
using Results = std::map<std::string, std::map<std::string, std::map<uint64_t, Outcome>>>;

Outcome run_case(const VariantDef &def, uint64_t pages);

} // namespace bench
