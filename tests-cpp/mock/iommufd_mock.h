// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Test-only: the iommufd mock IOMMU of CONFIG_IOMMUFD_TEST, driven through
// IOMMU_TEST_CMD like tools/testing/selftests/iommu/iommufd_utils.h does.
// Its ABI (iommufd_test.h) is not exported to usr/include; it comes from
// the kernel tree's drivers/iommu/iommufd. Not something a VMM would copy.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "gmem/fd.h"
#include "gmem/iommufd.h"
#include "gmem/result.h"
#include "iommufd_test.h"

namespace gmem::testing {

// IOMMU_TEST_CMD of @op with @cmd (size and op filled in here); @what names
// the call in the error.
Result<void> iommufd_test_cmd(int iommufd, uint32_t op, iommu_test_cmd &cmd,
			      const std::string &what);

// Whether the context has the mock (CONFIG_IOMMUFD_TEST): a no-op
// IOMMU_TEST_OP_MD_CHECK_REFS of nothing succeeds, ENOTTY without it.
bool have_iommufd_mock(int iommufd);

// A mock device attached to an IOAS through an automatic mock domain
// (IOMMU_TEST_OP_MOCK_DOMAIN); detached and destroyed with the object.
class MockDomain {
public:
	// A mock device on @ioas with a domain of its own (a paging HWPT), so
	// that each MockDomain is a distinct domain of the IOAS.
	static Result<MockDomain> attach(const Ioas &ioas);

	MockDomain(const MockDomain &) = delete;
	MockDomain &operator=(const MockDomain &) = delete;
	MockDomain(MockDomain &&o) noexcept
	    : iommufd_(std::move(o.iommufd_)), stdev_id_(std::exchange(o.stdev_id_, 0)),
	      hwpt_id_(std::exchange(o.hwpt_id_, 0)), idev_id_(std::exchange(o.idev_id_, 0))
	{
	}
	MockDomain &operator=(MockDomain &&o) noexcept
	{
		if (this != &o) {
			(void)detach();
			iommufd_ = std::move(o.iommufd_);
			stdev_id_ = std::exchange(o.stdev_id_, 0);
			hwpt_id_ = std::exchange(o.hwpt_id_, 0);
			idev_id_ = std::exchange(o.idev_id_, 0);
		}
		return *this;
	}
	~MockDomain() { (void)detach(); }

	[[nodiscard]] uint32_t stdev_id() const { return stdev_id_; }
	// The mock domain's hw_pagetable: the id MD_CHECK_* ops take.
	[[nodiscard]] uint32_t hwpt_id() const { return hwpt_id_; }
	[[nodiscard]] uint32_t idev_id() const { return idev_id_; }

	// IOMMU_DESTROY of the mock device, then of its own domain (HWPT).
	Result<void> detach();

private:
	MockDomain(UniqueFd iommufd, uint32_t stdev, uint32_t hwpt, uint32_t idev)
	    : iommufd_(std::move(iommufd)), stdev_id_(stdev), hwpt_id_(hwpt), idev_id_(idev)
	{
	}
	UniqueFd iommufd_;
	uint32_t stdev_id_ = 0;
	uint32_t hwpt_id_ = 0;
	uint32_t idev_id_ = 0;
};

// IOMMU_TEST_OP_MD_CHECK_GMEM: the mock domain @hwpt_id maps each page of
// [iova, iova + length) to the page at the same position from byte @offset
// of the guest_memfd @gmem_fd; with @unmapped, maps nothing in the range.
// EINVAL on a mismatch, ENOENT if a page to compare is not allocated.
Result<void> check_gmem(int iommufd, uint32_t hwpt_id, uint64_t iova, uint64_t length, int gmem_fd,
			uint64_t offset, bool unmapped);

// The IOPTE counters of a guest_memfd mapping (IOMMU_TEST_OP_GMEM_IOPTE_COUNT):
// page IOPTEs installed / removed since it was made, counted once per domain.
// Test telemetry, which IOMMU_IOAS_MIRROR_STATUS does not report.
struct IopteCount {
	uint64_t adds = 0;
	uint64_t removes = 0;
};

// The IOPTE counters of the guest_memfd mapping at @iova of @ioas.
Result<IopteCount> gmem_iopte_count(const Ioas &ioas, uint64_t iova);

// IOMMU_TEST_OP_MD_CHECK_REFS: every page of the user range has @refs
// long-term pins (it faults the pages in).
Result<void> check_refs(int iommufd, const void *uptr, uint64_t length, uint32_t refs);

// An in-kernel access (IOMMU_TEST_OP_CREATE_ACCESS) to an IOAS, as an
// emulated device or a VFIO mdev would have. Closed with the object.
class MockAccess {
public:
	// @pins: an access whose driver pins pages (ACCESS_PAGES works).
	static Result<MockAccess> create(const Ioas &ioas, bool pins = false);

	// IOMMU_TEST_OP_ACCESS_RW: copy between @buf and the IOVA range.
	Result<void> read(uint64_t iova, void *buf, uint64_t length) const;
	Result<void> write(uint64_t iova, const void *buf, uint64_t length) const;
	// IOMMU_TEST_OP_ACCESS_PAGES: pin the range (the kernel compares the
	// pages with those at @uptr); returns the id to unpin with.
	Result<uint32_t> pin_pages(uint64_t iova, uint64_t length, const void *uptr) const;
	Result<void> unpin_pages(uint32_t access_pages_id) const;

private:
	MockAccess(UniqueFd iommufd, UniqueFd access)
	    : iommufd_(std::move(iommufd)), access_(std::move(access))
	{
	}
	Result<void> rw(uint64_t iova, const void *buf, uint64_t length, bool write) const;
	// Declared first: closed after the access.
	UniqueFd iommufd_;
	UniqueFd access_;
};

} // namespace gmem::testing
