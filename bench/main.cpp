// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// gmem-bench: what in-place conversion and pin-free IOMMU mapping of a
// guest_memfd buy, measured side by side in one run. The groups of cases,
// each in its own file under cases/ (which says what it compares):
//
// conv        conversion of N pages, in place against two backings (7.3)
// iommu-map   IOAS map and unmap of N pages: mirror against pinning
// iommu-conv  conversion of N DMA-mapped pages: mirror against
//             unmap/convert/re-map
// notify      conversion of N pages nobody maps, with 0, 1, 2 notifier
//             clients
// frag        the shareability state of N single pages against one range
// footprint   a guest sharing half of N pages: memory at rest, at the peak
//             of a conversion storm and after it
// touch       a vCPU's first touch of N converted pages
// sparse      IOMMU_IOAS_MAP_FILE of N pages of a sparse 1 TiB file
// stall       one long operation on N pages (attach, MAP_FILE, to-shared,
//             a refused to-private) against faults and a conversion on the
//             same file: worst latencies, SIGKILL to exit, and the same
//             measurements with no operation (idle); not run unless named
//             with --only (--only stall/map-file: one operation and idle)
// fault       host and vCPU faults on N pages of a guest_memfd that cannot
//             be converted, through 7.3's UAPI only, so that the same binary
//             runs on pristine 7.3 (not run unless named with --only)
//
// Sizes default to 4 KiB, 2 MiB, 64 MiB and 1 GiB (--pages); from 64 MiB
// on a case runs fewer round trips (--big-reps). --json FILE writes every
// figure for harness/bench-report.py (tables, goals, plot).
//
// Every case is a round trip that ends in the state it started from, run
// --warmup times untimed and --reps times timed (runner.cpp); each phase
// (and each step inside it) reports median, quartiles and extremes.
// Output (report.cpp): readable tables with ratios, and one "BENCH name
// value unit" line per figure. fixtures.cpp holds what the cases share.
//
// The mock IOMMU (CONFIG_IOMMUFD_TEST) stands in for hardware: its page
// table is a software xarray, so IOMMU figures show the iommufd and
// guest_memfd side of the cost, not a real IOMMU's IOTLB flushes. With
// --device edu, the iommu-* cases attach QEMU's edu device through VFIO
// instead (a machine booted with harness/guest-run.sh --viommu KIND), so
// that every map, unmap and conversion goes through a real IOMMU driver's
// page table and its strict IOTLB invalidation; the checks then read
// IOMMU_IOAS_MIRROR_STATUS instead of the mock's page table.
#include <sys/personality.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "case.h"
#include "options.h"
#include "report.h"
#include "runner.h"
#include "mock/iommufd_mock.h"
#include "timing.h"

namespace bench {

Options opts;

namespace {

std::vector<Group> groups()
{
	return { conv_group(),	iommu_map_group(), iommu_conv_group(), notify_group(),
		 frag_group(),	footprint_group(), touch_group(),      sparse_group(),
		 stall_group(), fault_group() };
}

[[noreturn]] void usage(int rc)
{
	std::fprintf(rc ? stderr : stdout,
		     "Usage: gmem-bench [--reps N] [--warmup N] [--pages N|SIZE,...]\n"
		     "                  [--big-pages N] [--big-reps N] [--big-warmup N]\n"
		     "                  [--full-pages N] [--frag-max N]\n"
		     "                  [--only conv,iommu-map,iommu-conv,notify,frag,sparse,\n"
		     "                          footprint,touch,stall,fault]\n"
		     "                  [--only GROUP/VARIANT,...]\n"
		     "                  [--steps] [--aslr] [--json FILE]\n"
		     "                  [--icount] [--config NAME] [--source ID]\n"
		     "                  [--device mock|edu]\n"
		     "  --only    groups, or GROUP/VARIANT for one variant (and the group's\n"
		     "            baseline, e.g. stall/map-file runs map-file and idle)\n"
		     "  --pages   page counts, or sizes with K, M, G (default 4K,2M,64M,1G)\n"
		     "  --big-*   from --big-pages pages on (default 16384), at most\n"
		     "            --big-reps (3) timed and --big-warmup (1) untimed round trips\n"
		     "  --json    also write every figure to FILE as JSON\n"
		     "  --full-pages N  cases with per-page work skip sizes above N\n"
		     "  --frag-max N    frag's alternating split up to N stretches (4096)\n"
		     "  --device  the iommu-* cases' domain: iommufd's mock (default) or QEMU's\n"
		     "            edu device behind the machine's emulated IOMMU\n"
		     "  --icount  label figures as guest instructions (QEMU -icount shift=0)\n"
		     "  --config  the kernel config's name, for the report\n"
		     "  --source  what the kernel was built from, for the report\n"
		     "  --steps   quartiles and extremes of every step, not only of phases\n"
		     "  --aslr    keep address-space randomisation (default: off, for\n"
		     "            figures that repeat across runs)\n"
		     "Exit: 0 all ran, 1 a case failed, 4 every case was skipped.\n");
	std::exit(rc);
}

// Page counts; a K, M or G suffix gives a size in bytes instead
// ("4K,2M,64M,1G" is 1,512,16384,262144).
std::vector<uint64_t> parse_list(const std::string &s)
{
	std::vector<uint64_t> v;
	std::stringstream ss(s);
	std::string item;
	while (std::getline(ss, item, ',')) {
		size_t end = 0;
		uint64_t n = std::stoull(item, &end);
		const std::string suf = item.substr(end);
		if (suf == "K" || suf == "M" || suf == "G") {
			const int shift = suf == "K" ? 10 : suf == "M" ? 20 : 30;
			n = (n << shift) / kPage;
		} else if (!suf.empty()) {
			usage(2);
		}
		v.push_back(n);
	}
	return v;
}

// The groups with only the variants --only names (a group named alone:
// all of them); a latency group's baseline runs with any of its variants,
// last. Exits if a named variant does not exist.
std::vector<Group> selected(std::vector<Group> all)
{
	for (auto &g : all) {
		auto it = opts.variants.find(g.name);
		if (it == opts.variants.end())
			continue;
		std::set<std::string> want = it->second;
		for (auto &v : g.variants)
			want.erase(v.name);
		if (!want.empty()) {
			std::fprintf(stderr, "gmem-bench: %s has no variant %s\n", g.name.c_str(),
				     want.begin()->c_str());
			usage(2);
		}
		std::erase_if(g.variants, [&](const VariantDef &v) {
			return !it->second.count(v.name) && v.name != g.baseline;
		});
	}
	return all;
}

} // namespace
} // namespace bench

int main(int argc, char **argv)
{
	using namespace bench;

	for (int i = 1; i < argc; i++) {
		const std::string a = argv[i];
		auto next = [&]() -> std::string {
			if (i + 1 >= argc)
				usage(2);
			return argv[++i];
		};
		if (a == "--reps")
			opts.reps = std::stoi(next());
		else if (a == "--warmup")
			opts.warmup = std::stoi(next());
		else if (a == "--pages")
			opts.pages = parse_list(next());
		else if (a == "--big-pages")
			opts.big_pages = std::stoull(next());
		else if (a == "--big-reps")
			opts.big_reps = std::stoi(next());
		else if (a == "--frag-max")
			opts.frag_max = std::stoull(next());
		else if (a == "--full-pages")
			opts.full_pages = std::stoull(next());
		else if (a == "--big-warmup")
			opts.big_warmup = std::stoi(next());
		else if (a == "--json")
			opts.json = next();
		else if (a == "--only") {
			opts.groups.clear();
			std::stringstream ss(next());
			std::string g;
			while (std::getline(ss, g, ',')) {
				const size_t slash = g.find('/');
				if (slash != std::string::npos)
					opts.variants[g.substr(0, slash)].insert(
						g.substr(slash + 1));
				opts.groups.insert(g.substr(0, slash));
			}
		} else if (a == "--icount")
			opts.icount = true;
		else if (a == "--config")
			opts.config = next();
		else if (a == "--source")
			opts.source = next();
		else if (a == "--steps")
			opts.steps = true;
		else if (a == "--aslr")
			opts.aslr = true;
		else if (a == "--device") {
			const std::string d = next();
			if (d != "mock" && d != "edu")
				usage(2);
			opts.edu = d == "edu";
		} else if (a == "--help" || a == "-h")
			usage(0);
		else
			usage(2);
	}
	if (opts.reps < 1 || opts.big_reps < 1 || opts.pages.empty())
		usage(2);
	for (uint64_t n : opts.pages)
		if (n == 0 || n * kPage > MOCK_APERTURE_LAST - MOCK_APERTURE_START)
			usage(2);

	// Address-space randomisation moves the buffers relative to page-table
	// boundaries, which changes the cost of page-table walks (GUP, zaps)
	// from one run to the next: run with a fixed layout, so that -icount
	// figures repeat across boots.
	if (!opts.aslr) {
		const int pers = personality(0xffffffff);
		if (pers != -1 && !(pers & ADDR_NO_RANDOMIZE) &&
		    personality(static_cast<unsigned long>(pers) | ADDR_NO_RANDOMIZE) != -1) {
			execv("/proc/self/exe", argv);
			// Not fatal: go on with a random layout.
		}
	}
	const auto env = print_header();
	Results results;
	int failures = 0;
	const auto all = selected(groups());
	int ran = 0;
	for (auto &g : all) {
		if (!opts.groups.count(g.name))
			continue;
		for (uint64_t n : opts.pages)
			for (auto &v : g.variants) {
				const uint64_t t0 = now_ns();
				Outcome o = run_case(v, n);
				std::string note;
				if (!o.skipped.empty())
					note = ", skipped: " + o.skipped;
				else if (!o.failed.empty())
					note = ", FAILED: " + o.failed;
				std::printf("  ran %s/%s/%llu pages in %.1f ms%s\n", g.name.c_str(),
					    v.name.c_str(), static_cast<unsigned long long>(n),
					    static_cast<double>(now_ns() - t0) / 1e6, note.c_str());
				std::fflush(stdout);
				if (o.skipped.empty())
					ran++;
				if (!o.failed.empty())
					failures++;
				results[g.name][v.name][n] = std::move(o);
			}
	}
	for (auto &g : all)
		if (opts.groups.count(g.name))
			print_group(g, results);
	std::printf("\n");
	for (auto &g : all)
		if (opts.groups.count(g.name))
			print_machine(g, results);
	if (!opts.json.empty())
		if (!write_json(all, results, env))
			failures++;
	std::printf("\ngmem-bench: %d case(s) ran, %d failed\n", ran, failures);
	if (failures)
		return 1;
	return ran ? 0 : 4;
}
