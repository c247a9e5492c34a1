// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "runner.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "gmem/result.h"
#include "options.h"

namespace bench {
namespace {

// Timed and untimed round trips for N pages: big sizes get fewer.
std::pair<int, int> reps_for(uint64_t pages)
{
	if (pages < opts.big_pages)
		return { opts.reps, opts.warmup };
	return { std::min(opts.reps, opts.big_reps), std::min(opts.warmup, opts.big_warmup) };
}

} // namespace

Outcome run_case(const VariantDef &def, uint64_t pages)
{
	Outcome out;
	try {
		if (!def.state_only && pages > opts.full_pages)
			throw Skip{ "over --full-pages " + std::to_string(opts.full_pages) +
				    " (per-page work; run time)" };
		auto v = def.make(pages);
		v->check();
		auto phases = v->round_trip();
		std::map<std::string, std::vector<uint64_t>> samples;
		const auto [reps, warmup] = reps_for(pages);
		for (int r = 0; r < warmup + reps; r++) {
			const bool keep = r >= warmup;
			const uint64_t rt0 = now_ns();
			for (auto &ph : phases) {
				const uint64_t t0 = now_ns();
				uint64_t prev = t0;
				for (auto &st : ph.steps) {
					st.fn();
					const uint64_t t = now_ns();
					if (keep)
						samples[ph.name + "." + st.name].push_back(t -
											   prev);
					prev = t;
				}
				if (keep)
					samples[ph.name].push_back(prev - t0);
			}
			if (keep)
				samples["round_trip"].push_back(now_ns() - rt0);
		}
		// One more round trip, untimed, counting pages after every step.
		Peak p;
		p.start = p.peak = v->memory();
		for (auto &ph : phases)
			for (auto &st : ph.steps) {
				st.fn();
				const MemCount m = v->memory();
				if (m.total() > p.peak.total())
					p.peak = m;
			}
		out.mem = p;
		for (auto &[name, s] : v->samples())
			samples[name] = std::move(s);
		out.facts = v->facts();
		v->check();
		for (auto &[name, s] : samples)
			out.stats[name] = summarize(s);
	} catch (const Skip &s) {
		out.skipped = s.why;
	} catch (const CheckFailed &c) {
		out.failed = c.what;
	} catch (const gmem::SysErrorException &e) {
		out.failed = e.error().message();
	}
	return out;
}

} // namespace bench
