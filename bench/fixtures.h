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
#include "gmem/guest.h"
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

// A bare KVM_X86_SW_PROTECTED_VM, for what a ConvertibleGuest does not
// set up: the 7.3 ways (a guest_memfd that is not convertible, a second
// backing) and files bound to no memslot. Throws Skip where this host
// cannot run a ConvertibleGuest.
gmem::Vm make_vm();

// A convertible guest_memfd of @len bytes (@flags beyond CONVERTIBLE, e.g.
// MMAP, INIT_SHARED), mapped if @flags has GUEST_MEMFD_FLAG_MMAP.
// bound(): the data slot, at @gpa, of a ConvertibleGuest running the
// mailbox guest (KVM is a notifier client of the file), as a VMM has it.
// unbound(): a file of a bare VM, in no memslot (no notifier client).
class ConvertibleFile {
public:
	static ConvertibleFile bound(uint64_t len, uint64_t flags, uint64_t gpa = kGpa);
	static ConvertibleFile unbound(uint64_t len, uint64_t flags);

	[[nodiscard]] const gmem::GuestMemfd &gmem() const
	{
		return guest_ ? guest_->gmem() : *file_;
	}
	// The file's mapping (null without GUEST_MEMFD_FLAG_MMAP).
	[[nodiscard]] uint8_t *data() const { return guest_ ? guest_->data() : map_.data(); }
	// The guest of a bound file.
	[[nodiscard]] gmem::ConvertibleGuest &guest() { return *guest_; }

private:
	ConvertibleFile() = default;

	std::optional<gmem::ConvertibleGuest> guest_;
	std::optional<gmem::Vm> vm_;
	std::optional<gmem::GuestMemfd> file_;
	gmem::Mapping map_;
};

// A memfd of @len bytes mapped shared: the 7.3 VMM's shared backing.
struct SharedBacking {
	gmem::UniqueFd fd;
	gmem::Mapping map;

	explicit SharedBacking(uint64_t len);
	void punch(uint64_t len) const;
	// Pages allocated in the memfd (shmem accounts its blocks exactly).
	[[nodiscard]] uint64_t pages() const;
};

// A bound convertible guest_memfd that starts shared, all pages allocated,
// and mmapped (for the memslot, the pinned variants and checks).
ConvertibleFile shared_gmem(uint64_t len);

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

// The host writes one byte to each page of the mapping at @base (a VMM
// filling a shared buffer).
void touch(uint8_t *base, uint64_t pages, uint8_t seed);

// Pages of @len bytes of a file mapping at @base that are in the file's
// page cache (mincore() looks the pages up without faulting; for
// guest_memfd this counts private pages too).
uint64_t resident_pages(const uint8_t *base, uint64_t len);

// Physically contiguous runs in the pages mapped at @base (from
// /proc/self/pagemap; needs CAP_SYS_ADMIN, else 0): the pinned IOMMU paths
// batch contiguous PFNs, so their cost depends on it.
uint64_t pfn_runs(const uint8_t *base, uint64_t pages);

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

// KVM_PRE_FAULT_MEMORY of [@gpa, @gpa + @size) on a vCPU, resumed after
// EINTR and EAGAIN until the range is done: 0, or the errno that ended it.
int pre_fault_memory(int vcpu_fd, uint64_t gpa, uint64_t size);

} // namespace bench
