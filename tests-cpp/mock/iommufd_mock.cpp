// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "mock/iommufd_mock.h"

#include <sys/ioctl.h>

namespace gmem::testing {

namespace {

std::string range(uint64_t iova, uint64_t length)
{
	return "iova " + std::to_string(iova) + ", length " + std::to_string(length);
}

} // namespace

Result<void> iommufd_test_cmd(int iommufd, uint32_t op, iommu_test_cmd &cmd,
			      const std::string &what)
{
	cmd.size = sizeof(cmd);
	cmd.op = op;
	return check_void(::ioctl(iommufd, IOMMU_TEST_CMD, &cmd), what);
}

bool have_iommufd_mock(int iommufd)
{
	iommu_test_cmd cmd{};
	return errno_of(iommufd_test_cmd(iommufd, IOMMU_TEST_OP_MD_CHECK_REFS, cmd, "probe")) !=
	       ENOTTY;
}

Result<MockDomain> MockDomain::attach(const Ioas &ioas)
{
	auto dup = UniqueFd::duplicate(ioas.iommufd());
	if (!dup)
		return unexpected(dup.error());
	iommu_test_cmd cmd{};
	cmd.id = ioas.id();
	auto r = iommufd_test_cmd(ioas.iommufd(), IOMMU_TEST_OP_MOCK_DOMAIN, cmd,
				  "IOMMU_TEST_OP_MOCK_DOMAIN(IOAS " + std::to_string(ioas.id()) +
					  ")");
	if (!r)
		return unexpected(r.error());
	// Its own domain: a second mock device would share the automatic domain
	// of the first, so allocate a paging HWPT on the IOAS for this device and
	// move the device onto it.
	MockDomain md(std::move(dup).value(), cmd.mock_domain.out_stdev_id, 0,
		      cmd.mock_domain.out_idev_id);
	iommu_hwpt_alloc alloc{};
	alloc.size = sizeof(alloc);
	alloc.dev_id = md.idev_id_;
	alloc.pt_id = ioas.id();
	alloc.data_type = IOMMU_HWPT_DATA_NONE;
	if (auto a = check_void(::ioctl(md.iommufd_.get(), IOMMU_HWPT_ALLOC, &alloc),
				"IOMMU_HWPT_ALLOC(IOAS " + std::to_string(ioas.id()) + ")");
	    !a)
		return unexpected(a.error());
	md.hwpt_id_ = alloc.out_hwpt_id;
	iommu_test_cmd replace{};
	replace.id = md.stdev_id_;
	replace.mock_domain_replace.pt_id = md.hwpt_id_;
	if (auto rr = iommufd_test_cmd(
		    md.iommufd_.get(), IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, replace,
		    "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE(HWPT " + std::to_string(md.hwpt_id_) + ")");
	    !rr)
		return unexpected(rr.error());
	return md;
}

Result<void> MockDomain::detach()
{
	if (!iommufd_.valid())
		return {};
	auto r = iommufd_destroy(iommufd_.get(), stdev_id_,
				 "mock device " + std::to_string(stdev_id_));
	if (r && hwpt_id_)
		r = iommufd_destroy(iommufd_.get(), hwpt_id_, "HWPT " + std::to_string(hwpt_id_));
	iommufd_.reset();
	stdev_id_ = hwpt_id_ = idev_id_ = 0;
	return r;
}

Result<void> check_gmem(int iommufd, uint32_t hwpt_id, uint64_t iova, uint64_t length, int gmem_fd,
			uint64_t offset, bool unmapped)
{
	iommu_test_cmd cmd{};
	cmd.id = hwpt_id;
	cmd.check_gmem.iova = iova;
	cmd.check_gmem.length = length;
	cmd.check_gmem.offset = offset;
	cmd.check_gmem.gmem_fd = gmem_fd;
	cmd.check_gmem.flags = unmapped ? MOCK_CHECK_GMEM_UNMAPPED : 0;
	return iommufd_test_cmd(iommufd, IOMMU_TEST_OP_MD_CHECK_GMEM, cmd,
				std::string("IOMMU_TEST_OP_MD_CHECK_GMEM(") +
					(unmapped ? "unmapped, " : "") + range(iova, length) +
					", offset " + std::to_string(offset) + ")");
}

Result<IopteCount> gmem_iopte_count(const Ioas &ioas, uint64_t iova)
{
	iommu_test_cmd cmd{};
	cmd.id = ioas.id();
	cmd.gmem_iopte_count.iova = iova;
	if (auto r = iommufd_test_cmd(ioas.iommufd(), IOMMU_TEST_OP_GMEM_IOPTE_COUNT, cmd,
				      "IOMMU_TEST_OP_GMEM_IOPTE_COUNT(iova " +
					      std::to_string(iova) + ")");
	    !r)
		return unexpected(r.error());
	return IopteCount{ .adds = cmd.gmem_iopte_count.out_adds,
			   .removes = cmd.gmem_iopte_count.out_removes };
}

Result<void> check_refs(int iommufd, const void *uptr, uint64_t length, uint32_t refs)
{
	iommu_test_cmd cmd{};
	cmd.check_refs.length = length;
	cmd.check_refs.uptr = reinterpret_cast<uintptr_t>(uptr);
	cmd.check_refs.refs = refs;
	return iommufd_test_cmd(iommufd, IOMMU_TEST_OP_MD_CHECK_REFS, cmd,
				"IOMMU_TEST_OP_MD_CHECK_REFS(refs " + std::to_string(refs) + ")");
}

Result<MockAccess> MockAccess::create(const Ioas &ioas, bool pins)
{
	auto dup = UniqueFd::duplicate(ioas.iommufd());
	if (!dup)
		return unexpected(dup.error());
	iommu_test_cmd cmd{};
	cmd.id = ioas.id();
	cmd.create_access.flags = pins ? MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES : 0;
	auto r = iommufd_test_cmd(ioas.iommufd(), IOMMU_TEST_OP_CREATE_ACCESS, cmd,
				  "IOMMU_TEST_OP_CREATE_ACCESS");
	if (!r)
		return unexpected(r.error());
	return MockAccess(std::move(dup).value(),
			  UniqueFd(static_cast<int>(cmd.create_access.out_access_fd)));
}

Result<void> MockAccess::rw(uint64_t iova, const void *buf, uint64_t length, bool write) const
{
	iommu_test_cmd cmd{};
	cmd.id = static_cast<uint32_t>(access_.get());
	cmd.access_rw.iova = iova;
	cmd.access_rw.length = length;
	cmd.access_rw.uptr = reinterpret_cast<uintptr_t>(buf);
	cmd.access_rw.flags = write ? MOCK_ACCESS_RW_WRITE : 0;
	return iommufd_test_cmd(iommufd_.get(), IOMMU_TEST_OP_ACCESS_RW, cmd,
				std::string("IOMMU_TEST_OP_ACCESS_RW(") + (write ? "write, " : "") +
					range(iova, length) + ")");
}

Result<void> MockAccess::read(uint64_t iova, void *buf, uint64_t length) const
{
	return rw(iova, buf, length, false);
}

Result<void> MockAccess::write(uint64_t iova, const void *buf, uint64_t length) const
{
	return rw(iova, buf, length, true);
}

Result<uint32_t> MockAccess::pin_pages(uint64_t iova, uint64_t length, const void *uptr) const
{
	iommu_test_cmd cmd{};
	cmd.id = static_cast<uint32_t>(access_.get());
	cmd.access_pages.iova = iova;
	cmd.access_pages.length = length;
	cmd.access_pages.uptr = reinterpret_cast<uintptr_t>(uptr);
	auto r = iommufd_test_cmd(iommufd_.get(), IOMMU_TEST_OP_ACCESS_PAGES, cmd,
				  "IOMMU_TEST_OP_ACCESS_PAGES(" + range(iova, length) + ")");
	if (!r)
		return unexpected(r.error());
	return static_cast<uint32_t>(cmd.access_pages.out_access_pages_id);
}

Result<void> MockAccess::unpin_pages(uint32_t access_pages_id) const
{
	iommu_test_cmd cmd{};
	cmd.id = static_cast<uint32_t>(access_.get());
	cmd.destroy_access_pages.access_pages_id = access_pages_id;
	return iommufd_test_cmd(iommufd_.get(), IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, cmd,
				"IOMMU_TEST_OP_DESTROY_ACCESS_PAGES");
}

} // namespace gmem::testing
