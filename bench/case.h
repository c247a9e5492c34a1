// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// What a benchmark case is: a Variant is one way of doing a job, set up
// for N pages, whose round trip is a list of timed phases made of timed
// steps; a Group puts the variants that do the same job side by side (the
// first is the series' way, the baseline of the ratios). Each file under
// cases/ builds one group; runner.cpp times them, report.cpp prints them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bench {

constexpr uint64_t kPage = 4096;

// A case that cannot run here (no KVM, no mock IOMMU, ...).
struct Skip {
	std::string why;
};

// A check of the kernel's behaviour that failed: the figures of that case
// are not trustworthy.
struct CheckFailed {
	std::string what;
};

inline void require(bool ok, const std::string &what)
{
	if (!ok)
		throw CheckFailed{ what };
}

struct Step {
	std::string name;
	std::function<void()> fn;
};

struct Phase {
	std::string name;
	std::vector<Step> steps;
};

// Pages allocated in guest_memfd and in the separate shared backing.
struct MemCount {
	uint64_t gmem = 0;
	uint64_t shared = 0;
	[[nodiscard]] uint64_t total() const { return gmem + shared; }
};

class Variant {
public:
	explicit Variant(uint64_t pages) : pages_(pages), len_(pages * kPage) {}
	virtual ~Variant() = default;
	Variant(const Variant &) = delete;
	Variant &operator=(const Variant &) = delete;

	// The phases of one round trip; the state after the last one is the
	// state before the first.
	virtual std::vector<Phase> round_trip() = 0;
	[[nodiscard]] virtual MemCount memory() const { return {}; }
	// Checks of the kernel's behaviour, outside the timed runs; called
	// before the first and after the last round trip.
	virtual void check() {}
	// Facts about the set-up worth reporting next to the figures.
	[[nodiscard]] virtual std::map<std::string, uint64_t> facts() const { return {}; }
	// Samples the variant took itself, beside the timed round trips (e.g.
	// latencies measured by other threads while a phase ran); called once
	// after the last timed round trip, reported like phases.
	virtual std::map<std::string, std::vector<uint64_t>> samples() { return {}; }

protected:
	uint64_t pages_;
	uint64_t len_;
};

struct VariantDef {
	std::string name;
	std::function<std::unique_ptr<Variant>(uint64_t)> make;
	// Changes state only, no per-page work: not limited by --full-pages.
	bool state_only = false;
};

struct Group {
	std::string name;
	std::string title;
	std::vector<std::string> phases; // table rows, in order
	std::vector<VariantDef> variants;
	bool memory = false;
	// The rows are latencies (worst and 99th percentile against the
	// first row's median), not medians of round-trip phases.
	bool latency = false;
	// A latency group's variant that takes the same measurements with no
	// long operation in flight: the noise they see anyway, which the
	// other variants' figures are read against. Runs whenever another
	// variant of its group runs, and last.
	std::string baseline{};
};

// The groups, one per file of cases/, in the order they run and print.
Group conv_group();
Group iommu_map_group();
Group iommu_conv_group();
Group notify_group();
Group frag_group();
Group footprint_group();
Group touch_group();
Group sparse_group();
Group stall_group();
Group fault_group();

} // namespace bench
