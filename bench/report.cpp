// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "report.h"

#include <sys/personality.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>

#include "options.h"
#include "timing.h"

namespace bench {
namespace {

// Clock unit: nanoseconds, or guest instructions under -icount shift=0.
const char *unit()
{
	return opts.icount ? "insn" : "ns";
}
const char *table_unit()
{
	return opts.icount ? "k-insn" : "us";
}

// The outcome of a case; an empty one for a case that has none.
const Outcome &outcome(const Results &results, const std::string &group, const std::string &variant,
		       uint64_t pages)
{
	static const Outcome none;
	auto g = results.find(group);
	if (g == results.end())
		return none;
	auto v = g->second.find(variant);
	if (v == g->second.end())
		return none;
	auto o = v->second.find(pages);
	return o == v->second.end() ? none : o->second;
}

double scaled(double ns)
{
	return ns / 1000.0;
}

std::string cell(const Outcome &o, const std::string &phase)
{
	char buf[64];
	if (!o.skipped.empty())
		return "skipped";
	if (!o.failed.empty())
		return "FAILED";
	auto it = o.stats.find(phase);
	if (it == o.stats.end())
		return "-";
	std::snprintf(buf, sizeof(buf), "%9.1f [%3.0f%%]", scaled(it->second.median),
		      it->second.iqr_pct());
	return buf;
}

std::optional<double> median(const Outcome &o, const std::string &phase)
{
	if (!o.skipped.empty() || !o.failed.empty())
		return std::nullopt;
	auto it = o.stats.find(phase);
	if (it == o.stats.end() || it->second.median <= 0)
		return std::nullopt;
	return it->second.median;
}

// --- JSON: everything the tables and BENCH lines hold, for the report
// script (harness/bench-report.py).

std::string json_str(const std::string &v)
{
	std::string o = "\"";
	for (char c : v) {
		if (c == '"' || c == '\\')
			o += '\\';
		if (static_cast<unsigned char>(c) < 0x20) {
			char buf[8];
			std::snprintf(buf, sizeof(buf), "\\u%04x", c);
			o += buf;
			continue;
		}
		o += c;
	}
	return o + "\"";
}

std::string json_stats(const Stats &s)
{
	char buf[256];
	std::snprintf(buf, sizeof(buf),
		      "{\"n\": %zu, \"median\": %.0f, \"p25\": %.0f, \"p75\": %.0f, "
		      "\"p99\": %.0f, \"min\": %.0f, \"max\": %.0f}",
		      s.n, s.median, s.p25, s.p75, s.p99, s.min, s.max);
	return buf;
}

std::string json_outcome(const Outcome &o)
{
	std::string j = "{\"status\": ";
	j += json_str(!o.failed.empty() ? "failed" : !o.skipped.empty() ? "skipped" : "ok");
	if (!o.failed.empty() || !o.skipped.empty())
		j += ", \"why\": " + json_str(o.failed.empty() ? o.skipped : o.failed);
	j += ", \"stats\": {";
	const char *sep = "";
	for (auto &[name, st] : o.stats) {
		j += sep + json_str(name) + ": " + json_stats(st);
		sep = ", ";
	}
	j += "}, \"facts\": {";
	sep = "";
	for (auto &[k, val] : o.facts) {
		j += sep + json_str(k) + ": " + std::to_string(val);
		sep = ", ";
	}
	j += "}";
	if (o.mem)
		j += ", \"mem\": {\"rest\": " + std::to_string(o.mem->start.total()) +
		     ", \"peak\": " + std::to_string(o.mem->peak.total()) +
		     ", \"peak_gmem\": " + std::to_string(o.mem->peak.gmem) +
		     ", \"peak_shared\": " + std::to_string(o.mem->peak.shared) + "}";
	return j + "}";
}

bool kallsyms_has(const std::string &sym)
{
	std::ifstream f("/proc/kallsyms");
	std::string line;
	const std::string want = " " + sym;
	while (std::getline(f, line))
		if (line.size() >= want.size() &&
		    line.compare(line.size() - want.size(), want.size(), want) == 0)
			return true;
	return false;
}

// A latency group: per size and variant, the first row's median (the
// long operation's own duration) and, for every other row, the worst
// case, the 99th percentile, the worst against that duration and against
// the baseline's worst at that size (what the measurement sees anyway).
void print_latency(const Group &g, const Results &results)
{
	const std::string &first = g.phases.front();
	std::printf("\n== %s: %s\n", g.name.c_str(), g.title.c_str());
	std::printf("   %s: median ms of %d reps (%d from %llu pages on); other rows: worst and "
		    "99th percentile ms of n samples, worst / median %s\n",
		    first.c_str(), opts.reps, std::min(opts.reps, opts.big_reps),
		    static_cast<unsigned long long>(opts.big_pages), first.c_str());
	for (uint64_t n : opts.pages)
		for (auto &v : g.variants) {
			const Outcome &o = outcome(results, g.name, v.name, n);
			std::printf("%8llu pages %-18s", static_cast<unsigned long long>(n),
				    v.name.c_str());
			if (!o.skipped.empty() || !o.failed.empty()) {
				std::printf(" %s: %s\n", o.failed.empty() ? "skipped" : "FAILED",
					    o.failed.empty() ? o.skipped.c_str()
							     : o.failed.c_str());
				continue;
			}
			const auto base = median(o, first);
			std::printf(" %s %.1f ms\n", first.c_str(), base ? *base / 1e6 : 0.0);
			const Outcome *idle = nullptr;
			if (!g.baseline.empty() && v.name != g.baseline)
				idle = &outcome(results, g.name, g.baseline, n);
			for (auto &ph : g.phases) {
				auto it = o.stats.find(ph);
				if (ph == first || it == o.stats.end())
					continue;
				const Stats &s = it->second;
				std::printf("%32s worst %9.2f  p99 %9.2f  n %6zu", ph.c_str(),
					    s.max / 1e6, s.p99 / 1e6, s.n);
				if (base)
					std::printf("  worst/%s %.4f", first.c_str(),
						    s.max / *base);
				auto b = idle ? idle->stats.find(ph) : o.stats.end();
				if (idle && b != idle->stats.end() && b->second.max > 0)
					std::printf("  worst/%s %.2f", g.baseline.c_str(),
						    s.max / b->second.max);
				std::printf("\n");
			}
			for (auto &[k, val] : o.facts)
				std::printf("%32s %llu\n", k.c_str(),
					    static_cast<unsigned long long>(val));
		}
}

} // namespace

void print_group(const Group &g, const Results &results)
{
	if (g.latency) {
		print_latency(g, results);
		return;
	}
	auto res = [&](const std::string &v, uint64_t n) -> const Outcome & {
		return outcome(results, g.name, v, n);
	};
	const std::string &base = g.variants.front().name;
	std::printf("\n== %s: %s\n", g.name.c_str(), g.title.c_str());
	std::printf("   median %s [IQR as %% of median] of %d reps (%d from %llu pages on); "
		    "ratio = other / %s\n",
		    table_unit(), opts.reps, std::min(opts.reps, opts.big_reps),
		    static_cast<unsigned long long>(opts.big_pages), base.c_str());
	std::printf("%6s %-11s", "pages", "phase");
	for (auto &v : g.variants)
		std::printf(" %19s", v.name.c_str());
	for (size_t i = 1; i < g.variants.size(); i++)
		std::printf(" %18s", ("x " + g.variants[i].name).c_str());
	std::printf("\n");
	for (uint64_t n : opts.pages) {
		for (auto &ph : g.phases) {
			std::printf("%6llu %-11s", static_cast<unsigned long long>(n), ph.c_str());
			for (auto &v : g.variants)
				std::printf(" %19s", cell(res(v.name, n), ph).c_str());
			auto b = median(res(base, n), ph);
			for (size_t i = 1; i < g.variants.size(); i++) {
				auto o = median(res(g.variants[i].name, n), ph);
				if (b && o)
					std::printf(" %17.2fx", *o / *b);
				else
					std::printf(" %18s", "-");
			}
			std::printf("\n");
		}
	}
	// Why a case did not run, once per variant and reason.
	for (auto &v : g.variants) {
		std::set<std::string> said;
		for (uint64_t n : opts.pages) {
			const Outcome &o = res(v.name, n);
			std::string why;
			if (!o.skipped.empty())
				why = "skipped: " + o.skipped;
			else if (!o.failed.empty())
				why = "FAILED (" + std::to_string(n) + " pages): " + o.failed;
			if (!why.empty() && said.insert(why).second)
				std::printf("   %s %s\n", v.name.c_str(), why.c_str());
		}
	}
	for (auto &v : g.variants)
		for (uint64_t n : opts.pages)
			for (auto &[k, val] : res(v.name, n).facts)
				std::printf("   %s, %llu pages: %s %llu\n", v.name.c_str(),
					    static_cast<unsigned long long>(n), k.c_str(),
					    static_cast<unsigned long long>(val));
	if (!g.memory)
		return;
	std::printf("\n   %s memory: pages allocated (guest_memfd + shared backing), "
		    "at rest / peak over a round trip\n",
		    g.name.c_str());
	std::printf("%6s", "pages");
	for (auto &v : g.variants)
		std::printf(" %27s", v.name.c_str());
	std::printf("\n");
	for (uint64_t n : opts.pages) {
		std::printf("%6llu", static_cast<unsigned long long>(n));
		for (auto &v : g.variants) {
			const Outcome &o = res(v.name, n);
			char buf[64] = "-";
			if (o.mem)
				std::snprintf(buf, sizeof(buf), "%llu / %llu (%llu+%llu)",
					      static_cast<unsigned long long>(o.mem->start.total()),
					      static_cast<unsigned long long>(o.mem->peak.total()),
					      static_cast<unsigned long long>(o.mem->peak.gmem),
					      static_cast<unsigned long long>(o.mem->peak.shared));
			std::printf(" %27s", buf);
		}
		std::printf("\n");
	}
}

void print_machine(const Group &g, const Results &results)
{
	auto res = [&](const std::string &v, uint64_t n) -> const Outcome & {
		return outcome(results, g.name, v, n);
	};
	const std::string &base = g.variants.front().name;
	for (auto &v : g.variants)
		for (uint64_t n : opts.pages) {
			const Outcome &o = res(v.name, n);
			const std::string pre = g.name + "." + v.name + ".";
			const std::string suf = ".p" + std::to_string(n);
			if (!o.skipped.empty() || !o.failed.empty()) {
				std::printf("BENCH %sstatus%s %s -\n", pre.c_str(), suf.c_str(),
					    o.failed.empty() ? "skipped" : "failed");
				continue;
			}
			for (auto &[name, s] : o.stats) {
				const bool phase = name.find('.') == std::string::npos;
				if (!phase && !opts.steps) {
					std::printf("BENCH %s%s%s.median %.0f %s\n", pre.c_str(),
						    name.c_str(), suf.c_str(), s.median, unit());
					continue;
				}
				std::printf("BENCH %s%s%s.median %.0f %s\n", pre.c_str(),
					    name.c_str(), suf.c_str(), s.median, unit());
				std::printf("BENCH %s%s%s.iqr %.1f %%\n", pre.c_str(), name.c_str(),
					    suf.c_str(), s.iqr_pct());
				std::printf("BENCH %s%s%s.min %.0f %s\n", pre.c_str(), name.c_str(),
					    suf.c_str(), s.min, unit());
				std::printf("BENCH %s%s%s.max %.0f %s\n", pre.c_str(), name.c_str(),
					    suf.c_str(), s.max, unit());
				if (g.latency)
					std::printf("BENCH %s%s%s.p99 %.0f %s\n", pre.c_str(),
						    name.c_str(), suf.c_str(), s.p99, unit());
			}
			for (auto &[k, val] : o.facts)
				std::printf("BENCH %s%s%s %llu -\n", pre.c_str(), k.c_str(),
					    suf.c_str(), static_cast<unsigned long long>(val));
			if (o.mem && g.memory) {
				std::printf("BENCH mem.%s.%s.rest%s %llu pages\n", g.name.c_str(),
					    v.name.c_str(), suf.c_str(),
					    static_cast<unsigned long long>(o.mem->start.total()));
				std::printf("BENCH mem.%s.%s.peak%s %llu pages\n", g.name.c_str(),
					    v.name.c_str(), suf.c_str(),
					    static_cast<unsigned long long>(o.mem->peak.total()));
			}
		}
	if (g.latency)
		return;
	for (size_t i = 1; i < g.variants.size(); i++)
		for (uint64_t n : opts.pages)
			for (auto &ph : g.phases) {
				auto b = median(res(base, n), ph);
				auto o = median(res(g.variants[i].name, n), ph);
				if (b && o)
					std::printf("BENCH ratio.%s.%s/%s.%s.p%llu %.3f x\n",
						    g.name.c_str(), g.variants[i].name.c_str(),
						    base.c_str(), ph.c_str(),
						    static_cast<unsigned long long>(n), *o / *b);
			}
}

bool write_json(const std::vector<Group> &all, const Results &results,
		const std::map<std::string, std::string> &env)
{
	std::FILE *f = std::fopen(opts.json.c_str(), "w");
	if (!f) {
		std::printf("gmem-bench: cannot write %s: %s\n", opts.json.c_str(),
			    std::strerror(errno));
		return false;
	}
	std::fprintf(f, "{\n  \"unit\": %s,\n  \"env\": {", json_str(unit()).c_str());
	const char *sep = "";
	for (auto &[k, v] : env) {
		std::fprintf(f, "%s%s: %s", sep, json_str(k).c_str(), json_str(v).c_str());
		sep = ", ";
	}
	std::fprintf(f, "},\n  \"groups\": {");
	sep = "";
	for (auto &g : all) {
		if (!opts.groups.count(g.name))
			continue;
		std::fprintf(f, "%s\n    %s: {\"title\": %s, \"latency\": %s, ", sep,
			     json_str(g.name).c_str(), json_str(g.title).c_str(),
			     g.latency ? "true" : "false");
		if (!g.baseline.empty())
			std::fprintf(f, "\"baseline\": %s, ", json_str(g.baseline).c_str());
		std::fprintf(f, "\"phases\": [");
		sep = ",";
		const char *s2 = "";
		for (auto &ph : g.phases) {
			std::fprintf(f, "%s%s", s2, json_str(ph).c_str());
			s2 = ", ";
		}
		std::fprintf(f, "], \"variants\": {");
		s2 = "";
		for (auto &v : g.variants) {
			std::fprintf(f, "%s\n      %s: {", s2, json_str(v.name).c_str());
			s2 = ",";
			const char *s3 = "";
			for (uint64_t n : opts.pages) {
				std::fprintf(
					f, "%s\n        \"%llu\": %s", s3,
					static_cast<unsigned long long>(n),
					json_outcome(outcome(results, g.name, v.name, n)).c_str());
				s3 = ",";
			}
			std::fprintf(f, "}");
		}
		std::fprintf(f, "}}");
	}
	std::fprintf(f, "\n  }\n}\n");
	std::fclose(f);
	return true;
}

std::map<std::string, std::string> print_header()
{
	utsname u{};
	uname(&u);
	const bool lockdep = access("/proc/lockdep", F_OK) == 0;
	const bool kasan = kallsyms_has("kasan_report");
	std::printf("gmem-bench: kernel %s (%s), config %s, clock %s, %d reps after %d warm-up\n",
		    u.release, opts.source.c_str(), opts.config.c_str(),
		    opts.icount ? "QEMU -icount shift=0 (1 ns = 1 guest instruction)"
				: "CLOCK_MONOTONIC (wall time under TCG)",
		    opts.reps, opts.warmup);
	std::printf(
		"BENCH env.kasan %d bool\nBENCH env.lockdep %d bool\nBENCH env.icount %d bool\n",
		kasan, lockdep, opts.icount);
	std::printf("BENCH env.aslr %d bool\n", !(personality(0xffffffff) & ADDR_NO_RANDOMIZE));
	std::printf("BENCH env.config %s name\nBENCH env.source %s -\n", opts.config.c_str(),
		    opts.source.c_str());
	std::printf("IOMMU domain of the iommu-* cases: %s\nBENCH env.device %s name\n",
		    opts.edu ? "edu through VFIO, behind the machine's emulated IOMMU "
			       "(strict invalidation)"
			     : "iommufd's mock domain (software page table, no IOTLB)",
		    opts.edu ? "edu" : "mock");
	// What one clock read costs: it is inside every figure once (phases)
	// or once per step.
	std::vector<uint64_t> d;
	for (int i = 0; i < 201; i++) {
		const uint64_t t0 = now_ns();
		d.push_back(now_ns() - t0);
	}
	const Stats c = summarize(d);
	std::printf("clock read: median %.0f %s (inside every figure once per step)\n", c.median,
		    unit());
	std::printf("BENCH env.clock_read %.0f %s\n", c.median, unit());
	if (kasan || lockdep) {
		std::printf("\n"
			    "************************************************************\n"
			    "** WARNING: this kernel has %s%s%s: timings are\n"
			    "** distorted (instrumented memory accesses and locks). Use\n"
			    "** the perf config for figures worth quoting.\n"
			    "************************************************************\n",
			    kasan ? "KASAN" : "", kasan && lockdep ? " and " : "",
			    lockdep ? "lockdep" : "");
	}
	std::fflush(stdout);
	return { { "kernel", u.release },
		 { "source", opts.source },
		 { "config", opts.config },
		 { "icount", opts.icount ? "1" : "0" },
		 { "kasan", kasan ? "1" : "0" },
		 { "lockdep", lockdep ? "1" : "0" },
		 { "device", opts.edu ? "edu" : "mock" },
		 { "clock_read", std::to_string(static_cast<uint64_t>(c.median)) },
		 { "reps", std::to_string(opts.reps) },
		 { "warmup", std::to_string(opts.warmup) },
		 { "big_pages", std::to_string(opts.big_pages) },
		 { "big_reps", std::to_string(opts.big_reps) },
		 { "big_warmup", std::to_string(opts.big_warmup) } };
}

} // namespace bench
