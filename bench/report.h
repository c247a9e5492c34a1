// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// What a run prints and writes: the header (kernel, config, clock, and a
// warning when the kernel's debugging distorts the figures), readable
// tables with ratios, one "BENCH name value unit" line per figure, and
// --json FILE with every figure for harness/bench-report.py.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "case.h"
#include "runner.h"

namespace bench {

// Prints the header; returns the facts about the environment for the JSON.
std::map<std::string, std::string> print_header();
// The group's table, its skips and failures, its facts and memory table.
void print_group(const Group &g, const Results &results);
// The group's BENCH lines.
void print_machine(const Group &g, const Results &results);
// Writes --json FILE; false (and says why) if it cannot.
bool write_json(const std::vector<Group> &all, const Results &results,
		const std::map<std::string, std::string> &env);

} // namespace bench
