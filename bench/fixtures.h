// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// What several cases set up or measure alike: a VM that offers convertible
// guest_memfds, the 7.3 VMM's memfd backing, an iommufd context with one
// domain, and the page and memory counters the cases report.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "case.h"
#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "mock/edu.h"
#include "mock/iommufd_mock.h"

namespace bench {

// The data slot: the guest_memfd under test at this GPA.
constexpr uint64_t kGpa = 1ULL << 32;
constexpr uint32_t kSlot = 1;
// Where the iommu cases map it.
constexpr uint64_t kIova = MOCK_APERTURE_START;

// A KVM_X86_SW_PROTECTED_VM offering GUEST_MEMFD_FLAG_CONVERTIBLE; throws
// Skip if this host has none.
gmem::Vm make_vm();

// A memfd of @len bytes mapped shared: the 7.3 VMM's shared backing.
struct SharedBacking {
	gmem::UniqueFd fd;
	gmem::Mapping map;

	explicit SharedBacking(uint64_t len);
	void punch(uint64_t len) const;
	// Pages allocated in the memfd (shmem accounts its blocks exactly).
	[[nodiscard]] uint64_t pages() const;
};

// A convertible guest_memfd that starts shared, all pages allocated, bound
// to a memslot and mmapped (for the memslot, the pinned variants and checks).
struct SharedGmem {
	gmem::Vm vm;
	gmem::GuestMemfd g;
	gmem::Mapping m;

	explicit SharedGmem(uint64_t len);
};

// An iommufd context with one IOAS and one domain attached to it: a mock
// domain, or (--device edu) the domain of QEMU's edu device behind a real
// (emulated) IOMMU. The device goes first: it is detached before the IOAS
// is destroyed.
struct IommuCtx {
	gmem::Iommufd iommufd;
	gmem::Ioas ioas;
	std::optional<gmem::testing::MockDomain> domain;
	std::optional<gmem::testing::Edu> edu;

	// With @attach false, an IOAS with no domain at all (the mirror then
	// only keeps its record of the pages it would map).
	static IommuCtx make(bool attach = true);

	// Every page of [iova, iova + len) maps its file page (@mapped), or
	// none does. The mock's page table tells page by page; a real domain
	// only through the mirror's count.
	bool check_mirror(uint64_t iova, uint64_t len, int gmem_fd, bool mapped,
			  std::string &why) const;
};

// The host writes one byte to each page (a VMM filling a shared buffer).
void touch(const gmem::Mapping &m, uint64_t pages, uint8_t seed);

// Pages of a file mapping that are in the file's page cache (mincore()
// looks the pages up without faulting; for guest_memfd this counts private
// pages too).
uint64_t resident_pages(const gmem::Mapping &m);

// Physically contiguous runs in the pages mapped at @m (from
// /proc/self/pagemap; needs CAP_SYS_ADMIN, else 0): the pinned IOMMU paths
// batch contiguous PFNs, so their cost depends on it.
uint64_t pfn_runs(const gmem::Mapping &m, uint64_t pages);

// Kernel memory counters of /proc/meminfo, in KiB (0 if absent).
uint64_t meminfo_kib(const std::string &key);

// The page cache in KiB ("Cached") once its per-CPU counter deltas have
// been folded in: guest_memfd and memfd pages (shmem) are both page cache,
// so this counts exactly the pages backing a guest, whoever allocated them.
// Unlike MemFree it does not move with the pages that sit on the per-CPU
// free lists. vmstat folds the per-CPU deltas within a second
// (sysctl_stat_interval); wait until two reads 1.1 s apart agree (at most
// 10 s, then the last read). The previous case's pages leaving the page
// cache (KVM drops its file reference when the VM is destroyed) settle the
// same way.
uint64_t settled_cached_kib();

// Slab growth in KiB from @before to now (0 if it shrank).
uint64_t slab_growth_kib(uint64_t before);

} // namespace bench
