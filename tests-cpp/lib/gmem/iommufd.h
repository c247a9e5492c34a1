// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// RAII owners for iommufd (/dev/iommu) objects a VMM needs to give a device
// DMA access to guest memory: the iommufd context and its IO address spaces
// (IOAS). A guest_memfd created with GUEST_MEMFD_FLAG_CONVERTIBLE maps with
// Ioas::map_file() without pinning: every IOMMU domain of the IOAS then
// mirrors the file's shared, allocated pages and follows conversions, hole
// punches and fallocate() on its own; Ioas::mirror_status() reports what is
// mapped. Every call returns a Result naming the failed call.
#pragma once

#include <linux/iommufd.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

#include "gmem/fd.h"
#include "gmem/result.h"

namespace gmem {

class Ioas;
class Hwpt;

// IOMMU_IOAS_MAP_FILE / IOMMU_IOAS_MAP permissions.
inline constexpr uint32_t kIommuReadWrite = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

// IOMMU_DESTROY of object @id of the iommufd context @iommufd; @what names
// the object in the error.
Result<void> iommufd_destroy(int iommufd, uint32_t id, const std::string &what);

// An open /dev/iommu: one iommufd context.
class Iommufd {
public:
	static Result<Iommufd> open(const char *path = "/dev/iommu");

	[[nodiscard]] int fd() const { return fd_.get(); }
	// IOMMU_IOAS_ALLOC: a new, empty IO address space.
	Result<Ioas> alloc_ioas() const;
	// IOMMU_HWPT_ALLOC: a paging IOMMU domain for the bound device @dev_id
	// (e.g. VfioDevice::devid()) on the IOAS @ioas_id, which it mirrors
	// from then on, guest_memfd mappings included; attach the device to
	// it with VfioDevice::attach(). @flags: IOMMU_HWPT_ALLOC_*.
	Result<Hwpt> alloc_hwpt(uint32_t dev_id, uint32_t ioas_id, uint32_t flags = 0) const;
	// IOMMU_DESTROY of any object of this context.
	Result<void> destroy(uint32_t id) const;
	// IOMMU_IOAS_CHANGE_PROCESS: move the pinned-memory accounting of every
	// mapping to the calling process (EINVAL while a guest_memfd mapping
	// exists: it pins nothing to account).
	Result<void> change_process() const;
	// IOMMU_OPTION_GUEST_MEMFD: whether Ioas::map_file() of a convertible
	// guest_memfd mirrors it without pinning (false: it fails with
	// EOPNOTSUPP). Fails with EOPNOTSUPP on a kernel without the option.
	Result<bool> mirrors_guest_memfd() const;

private:
	explicit Iommufd(UniqueFd fd) : fd_(std::move(fd)) {}
	UniqueFd fd_;
};

// What IOMMU_IOAS_MIRROR_STATUS reports about one guest_memfd mapping.
struct MirrorStatus {
	uint64_t iova = 0;   // first IOVA of the mapping
	uint64_t length = 0; // its length in bytes
	// Pages every domain of the IOAS maps (with no domain: the pages that
	// would be mapped, i.e. shared and allocated).
	uint64_t mapped_pages = 0;
	// Pages that should be mapped but are not: mapping them failed.
	uint64_t pending_pages = 0;
	// 0, or the negative errno of the last failure to map a page.
	int error = 0;
};

inline std::ostream &operator<<(std::ostream &os, const MirrorStatus &s)
{
	return os << "{iova " << s.iova << ", length " << s.length << ", mapped " << s.mapped_pages
		  << ", pending " << s.pending_pages << ", error " << s.error << "}";
}

// One IO address space of an iommufd context; destroyed with the object.
// It keeps its own duplicate of the context's fd, so it stays usable (and
// the context alive) even after the Iommufd it came from is gone.
class Ioas {
public:
	Ioas(const Ioas &) = delete;
	Ioas &operator=(const Ioas &) = delete;
	Ioas(Ioas &&o) noexcept : iommufd_(std::move(o.iommufd_)), id_(std::exchange(o.id_, 0)) {}
	Ioas &operator=(Ioas &&o) noexcept
	{
		if (this != &o) {
			reset();
			iommufd_ = std::move(o.iommufd_);
			id_ = std::exchange(o.id_, 0);
		}
		return *this;
	}
	~Ioas() { reset(); }

	[[nodiscard]] uint32_t id() const { return id_; }
	[[nodiscard]] int iommufd() const { return iommufd_.get(); }

	// IOMMU_IOAS_MAP_FILE of [start, start + length) of the file @fd at
	// @iova (IOMMU_IOAS_MAP_FIXED_IOVA), or where the kernel chooses if
	// @iova is empty. Returns the IOVA. For a convertible guest_memfd the
	// mapping pins nothing and mirrors the file (see the top of this file).
	Result<uint64_t> map_file(int fd, uint64_t start, uint64_t length,
				  std::optional<uint64_t> iova,
				  uint32_t flags = kIommuReadWrite) const;
	// IOMMU_IOAS_MAP of user memory (pinned).
	Result<uint64_t> map_memory(const void *va, uint64_t length, std::optional<uint64_t> iova,
				    uint32_t flags = kIommuReadWrite) const;
	// IOMMU_IOAS_COPY of [src_iova, src_iova + length) of @src into this
	// IOAS. Returns the IOVA.
	Result<uint64_t> copy_from(const Ioas &src, uint64_t src_iova, uint64_t length,
				   std::optional<uint64_t> iova,
				   uint32_t flags = kIommuReadWrite) const;
	// IOMMU_IOAS_UNMAP: whole mappings inside [iova, iova + length).
	// Returns the bytes unmapped. Unmapping a guest_memfd mapping drops
	// its reference on the file.
	Result<uint64_t> unmap(uint64_t iova, uint64_t length) const;
	// IOMMU_IOAS_MIRROR_STATUS of the guest_memfd mapping holding @iova;
	// with @retry the kernel first tries again to map pending pages.
	// ENOENT if @iova is not mapped, EINVAL if not a guest_memfd mapping.
	Result<MirrorStatus> mirror_status(uint64_t iova, bool retry = false) const;

	// Destroys the IOAS now (fails with EBUSY while a device or domain
	// still uses it; the context then frees it when it closes).
	Result<void> destroy();

private:
	friend class Iommufd;
	Ioas(UniqueFd iommufd, uint32_t id) : iommufd_(std::move(iommufd)), id_(id) {}
	void reset() { (void)destroy(); }

	UniqueFd iommufd_;
	uint32_t id_ = 0;
};

// One HW page table (an IOMMU domain) of an iommufd context; destroyed
// with the object (EBUSY while a device is still attached: detach first).
// Like Ioas, it keeps its own duplicate of the context's fd.
class Hwpt {
public:
	Hwpt(const Hwpt &) = delete;
	Hwpt &operator=(const Hwpt &) = delete;
	Hwpt(Hwpt &&o) noexcept : iommufd_(std::move(o.iommufd_)), id_(std::exchange(o.id_, 0)) {}
	Hwpt &operator=(Hwpt &&o) noexcept
	{
		if (this != &o) {
			(void)destroy();
			iommufd_ = std::move(o.iommufd_);
			id_ = std::exchange(o.id_, 0);
		}
		return *this;
	}
	~Hwpt() { (void)destroy(); }

	[[nodiscard]] uint32_t id() const { return id_; }
	Result<void> destroy();

private:
	friend class Iommufd;
	Hwpt(UniqueFd iommufd, uint32_t id) : iommufd_(std::move(iommufd)), id_(id) {}
	UniqueFd iommufd_;
	uint32_t id_ = 0;
};

} // namespace gmem
