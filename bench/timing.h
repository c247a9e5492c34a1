// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// A tiny timing harness for gmem-bench: a monotonic clock in nanoseconds
// and robust statistics of repeated samples (median, quartiles, 99th
// percentile, extremes).
// Under QEMU with -icount shift=0 the guest's clock advances one
// nanosecond per guest instruction, so the same code then counts
// instructions and repeats to within a fraction of a percent.
#pragma once

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace bench {

inline uint64_t now_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

struct Stats {
	size_t n = 0;
	double median = 0, p25 = 0, p75 = 0, p99 = 0, min = 0, max = 0;

	// Interquartile range relative to the median, in percent: the spread
	// quoted next to every median (robust against a single preemption).
	[[nodiscard]] double iqr_pct() const
	{
		return median > 0 ? 100.0 * (p75 - p25) / median : 0.0;
	}
};

// Quantile of sorted samples by linear interpolation between ranks.
inline double quantile(const std::vector<uint64_t> &sorted, double q)
{
	if (sorted.empty())
		return 0;
	const double pos = q * static_cast<double>(sorted.size() - 1);
	const auto lo = static_cast<size_t>(pos);
	const size_t hi = std::min(lo + 1, sorted.size() - 1);
	const double frac = pos - static_cast<double>(lo);
	return static_cast<double>(sorted[lo]) * (1 - frac) +
	       static_cast<double>(sorted[hi]) * frac;
}

inline Stats summarize(std::vector<uint64_t> v)
{
	Stats s;
	s.n = v.size();
	if (v.empty())
		return s;
	std::sort(v.begin(), v.end());
	s.median = quantile(v, 0.5);
	s.p25 = quantile(v, 0.25);
	s.p75 = quantile(v, 0.75);
	s.p99 = quantile(v, 0.99);
	s.min = static_cast<double>(v.front());
	s.max = static_cast<double>(v.back());
	return s;
}

} // namespace bench
