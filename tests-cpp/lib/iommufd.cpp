// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "gmem/iommufd.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <string>

namespace gmem {

namespace {

uint32_t fixed(std::optional<uint64_t> iova, uint32_t flags)
{
	return iova ? flags | IOMMU_IOAS_MAP_FIXED_IOVA : flags & ~IOMMU_IOAS_MAP_FIXED_IOVA;
}

} // namespace

Result<Iommufd> Iommufd::open(const char *path)
{
	int fd = ::open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail(std::string("open ") + path);
	return Iommufd(UniqueFd(fd));
}

Result<Ioas> Iommufd::alloc_ioas() const
{
	auto dup = UniqueFd::duplicate(fd_.get());
	if (!dup)
		return unexpected(dup.error());
	iommu_ioas_alloc cmd{};
	cmd.size = sizeof(cmd);
	if (::ioctl(fd_.get(), IOMMU_IOAS_ALLOC, &cmd) < 0)
		return fail("IOMMU_IOAS_ALLOC");
	return Ioas(std::move(dup).value(), cmd.out_ioas_id);
}

Result<Hwpt> Iommufd::alloc_hwpt(uint32_t dev_id, uint32_t ioas_id, uint32_t flags) const
{
	auto dup = UniqueFd::duplicate(fd_.get());
	if (!dup)
		return unexpected(dup.error());
	iommu_hwpt_alloc cmd{};
	cmd.size = sizeof(cmd);
	cmd.flags = flags;
	cmd.dev_id = dev_id;
	cmd.pt_id = ioas_id;
	if (::ioctl(fd_.get(), IOMMU_HWPT_ALLOC, &cmd) < 0)
		return fail("IOMMU_HWPT_ALLOC(dev " + std::to_string(dev_id) + ", IOAS " +
			    std::to_string(ioas_id) + ")");
	return Hwpt(std::move(dup).value(), cmd.out_hwpt_id);
}

Result<void> Hwpt::destroy()
{
	if (!iommufd_.valid())
		return {};
	auto r = iommufd_destroy(iommufd_.get(), id_, "HWPT " + std::to_string(id_));
	iommufd_.reset();
	id_ = 0;
	return r;
}

Result<void> iommufd_destroy(int iommufd, uint32_t id, const std::string &what)
{
	iommu_destroy cmd{};
	cmd.size = sizeof(cmd);
	cmd.id = id;
	return check_void(::ioctl(iommufd, IOMMU_DESTROY, &cmd), "IOMMU_DESTROY(" + what + ")");
}

Result<void> Iommufd::destroy(uint32_t id) const
{
	return iommufd_destroy(fd_.get(), id, std::to_string(id));
}

Result<void> Iommufd::change_process() const
{
	iommu_ioas_change_process cmd{};
	cmd.size = sizeof(cmd);
	return check_void(::ioctl(fd_.get(), IOMMU_IOAS_CHANGE_PROCESS, &cmd),
			  "IOMMU_IOAS_CHANGE_PROCESS");
}

Result<bool> Iommufd::mirrors_guest_memfd() const
{
	iommu_option cmd{};
	cmd.size = sizeof(cmd);
	cmd.option_id = IOMMU_OPTION_GUEST_MEMFD;
	cmd.op = IOMMU_OPTION_OP_GET;
	if (::ioctl(fd_.get(), IOMMU_OPTION, &cmd) < 0)
		return fail("IOMMU_OPTION(IOMMU_OPTION_GUEST_MEMFD)");
	return cmd.val64 != 0;
}

Result<uint64_t> Ioas::map_file(int fd, uint64_t start, uint64_t length,
				std::optional<uint64_t> iova, uint32_t flags) const
{
	iommu_ioas_map_file cmd{};
	cmd.size = sizeof(cmd);
	cmd.flags = fixed(iova, flags);
	cmd.ioas_id = id_;
	cmd.fd = fd;
	cmd.start = start;
	cmd.length = length;
	cmd.iova = iova.value_or(0);
	if (::ioctl(iommufd_.get(), IOMMU_IOAS_MAP_FILE, &cmd) < 0)
		return fail("IOMMU_IOAS_MAP_FILE(start " + std::to_string(start) + ", length " +
			    std::to_string(length) + ")");
	return static_cast<uint64_t>(cmd.iova);
}

Result<uint64_t> Ioas::map_memory(const void *va, uint64_t length, std::optional<uint64_t> iova,
				  uint32_t flags) const
{
	iommu_ioas_map cmd{};
	cmd.size = sizeof(cmd);
	cmd.flags = fixed(iova, flags);
	cmd.ioas_id = id_;
	cmd.user_va = reinterpret_cast<uintptr_t>(va);
	cmd.length = length;
	cmd.iova = iova.value_or(0);
	if (::ioctl(iommufd_.get(), IOMMU_IOAS_MAP, &cmd) < 0)
		return fail("IOMMU_IOAS_MAP");
	return static_cast<uint64_t>(cmd.iova);
}

Result<uint64_t> Ioas::copy_from(const Ioas &src, uint64_t src_iova, uint64_t length,
				 std::optional<uint64_t> iova, uint32_t flags) const
{
	iommu_ioas_copy cmd{};
	cmd.size = sizeof(cmd);
	cmd.flags = fixed(iova, flags);
	cmd.dst_ioas_id = id_;
	cmd.src_ioas_id = src.id_;
	cmd.length = length;
	cmd.dst_iova = iova.value_or(0);
	cmd.src_iova = src_iova;
	if (::ioctl(iommufd_.get(), IOMMU_IOAS_COPY, &cmd) < 0)
		return fail("IOMMU_IOAS_COPY");
	return static_cast<uint64_t>(cmd.dst_iova);
}

Result<uint64_t> Ioas::unmap(uint64_t iova, uint64_t length) const
{
	iommu_ioas_unmap cmd{};
	cmd.size = sizeof(cmd);
	cmd.ioas_id = id_;
	cmd.iova = iova;
	cmd.length = length;
	if (::ioctl(iommufd_.get(), IOMMU_IOAS_UNMAP, &cmd) < 0)
		return fail("IOMMU_IOAS_UNMAP(iova " + std::to_string(iova) + ", length " +
			    std::to_string(length) + ")");
	return static_cast<uint64_t>(cmd.length);
}

Result<MirrorStatus> Ioas::mirror_status(uint64_t iova, bool retry) const
{
	iommu_ioas_mirror_status cmd{};
	cmd.size = sizeof(cmd);
	cmd.flags = retry ? IOMMU_MIRROR_STATUS_RETRY : 0;
	cmd.ioas_id = id_;
	cmd.iova = iova;
	if (::ioctl(iommufd_.get(), IOMMU_IOAS_MIRROR_STATUS, &cmd) < 0)
		return fail("IOMMU_IOAS_MIRROR_STATUS(iova " + std::to_string(iova) + ")");
	MirrorStatus s;
	s.iova = cmd.out_iova;
	s.length = cmd.out_length;
	s.mapped_pages = cmd.out_mapped_pages;
	s.pending_pages = cmd.out_pending_pages;
	s.error = cmd.out_error;
	return s;
}

Result<void> Ioas::destroy()
{
	if (!iommufd_.valid())
		return {};
	auto r = iommufd_destroy(iommufd_.get(), id_, "IOAS " + std::to_string(id_));
	iommufd_.reset();
	id_ = 0;
	return r;
}

} // namespace gmem
