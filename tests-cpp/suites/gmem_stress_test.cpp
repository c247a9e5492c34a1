// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Model-checked stress of one convertible guest_memfd: threads
// do random operations on a file bound to a memslot of a
// KVM_X86_SW_PROTECTED_VM and mapped, chunk by chunk, into two IOASes with
// one or two iommufd mock domains each, while a shadow model of every page
// (shared or private, allocated or a hole, poisoned, the token last
// written) is checked throughout:
//
//  - after every operation, for the pages it touched: each domain of each
//    IOAS maps exactly the allocated, shared, unpoisoned pages of the
//    chunks it maps (IOMMU_TEST_OP_MD_CHECK_GMEM, page PFN by page PFN)
//    and nothing elsewhere; host accesses through mmap SIGBUS exactly on
//    private and poisoned pages and read the token last written, by the
//    host or by the guest;
//  - at quiesce points (every --check-ms, all threads stopped between two
//    operations): the same for every page, every page read back from the
//    host, and IOMMU_IOAS_MIRROR_STATUS of every area counting the model's
//    mapped pages, nothing pending, and as many IOPTEs as pages times
//    domains. IOAS 1 also passes through zero domains (then the mirror
//    only counts).
//
// Operations on the same pages are serialised by per-stripe locks; the rest
// run concurrently. MAP_FILE and UNMAP of a chunk, and domain attach and
// detach, run concurrently with page operations: the model's update of a
// page operation (and its check) waits for them instead, see Stress::Section.
// The same-page races that matter are made on purpose, each with an outcome
// the model can leave open or look up: host faults against conversions,
// hole punch, fallocate() and memory failure (a Racer thread), a conversion
// against a vCPU's access to its page; drop_caches and compaction run
// against everything.
//
// The pieces are in gmem_stress/: the shadow model (model.h), the checker
// (check.cpp), one actor_*.cpp per kind of operation, and the Stress object
// that owns the kernel objects and runs the threads (stress.h, stress.cpp).
//
// Flags (or environment variables): --seed=N (GMEM_STRESS_SEED),
// --seconds=N (GMEM_STRESS_SECONDS), --max-ops=N (GMEM_STRESS_OPS),
// --check-ms=N (GMEM_STRESS_CHECK_MS), --disable=kind,kind
// (GMEM_STRESS_DISABLE): op kinds as printed at the end, plus "guest_fill"
// (vCPUs avoid shared holes in mapped chunks) and "map_fill" (MAP_FILE
// finds no hole: the chunk is fallocate()d first); with guest_read and
// guest_write both disabled no vCPU runs. --vcpu-stuck-s=N
// (GMEM_STRESS_VCPU_STUCK_S, default 30): a vCPU whose read or write has
// not completed after N s of KVM_RUN fails the run, with its RIPs, KVM's
// exits and the page's model. --max-vcpu-restarts=N
// (GMEM_STRESS_MAX_VCPU_RESTARTS, default 0): how many vCPUs found with
// their host's state (KERNEL-BUGS.md, 6) may be started over before the
// run fails.
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#include "gmem_stress/options.h"
#include "gmem_stress/stress.h"
#include "testing/matchers.h"

namespace gmem::stress {
namespace {

// Random operations of every kind by concurrent threads and vCPUs never
// leave a domain, the host or MIRROR_STATUS disagreeing with the model.
TEST(GmemStressTest, RandomOperationsKeepTheModel)
{
	Options opt;
	std::string bad;
	try {
		bad = parse_options(opt);
	} catch (const std::exception &e) {
		bad = std::string("bad number in an option: ") + e.what();
	}
	ASSERT_TRUE(bad.empty()) << bad;
	std::printf("[ STRESS   ] seed %llu (rerun with --seed=%llu or GMEM_STRESS_SEED), "
		    "%.0f s or %llu operations, quiesce check every %u ms, disabled: %s\n",
		    (unsigned long long)opt.seed, (unsigned long long)opt.seed, opt.seconds,
		    (unsigned long long)opt.max_ops, opt.check_ms,
		    opt.disabled_list.empty() ? "none" : opt.disabled_list.c_str());
	std::fflush(stdout);
	const auto start = Clock::now();
	Stress s(opt);
	std::string skip;
	try {
		skip = s.setup();
	} catch (const SysErrorException &e) {
		FAIL() << "setup: " << e.error().message();
	}
	if (!skip.empty())
		GTEST_SKIP() << skip;
	s.run();
	const double secs = std::chrono::duration<double>(Clock::now() - start).count();
	s.print_summary(secs);
	for (const auto &f : s.failures())
		ADD_FAILURE() << f;
}

} // namespace
} // namespace gmem::stress
