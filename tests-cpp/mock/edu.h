// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Test-only: a userspace driver for QEMU's "edu" PCI device (PCI ID
// 1234:11e8; QEMU's docs/specs/edu.rst) through VFIO, and what the tests
// need around real DMA: the kernel log's IOMMU fault lines (/dev/kmsg) and
// the PFN behind a user address (/proc/self/pagemap).
//
// edu has a DMA engine with one 4 KiB buffer at device address 0x40000: a
// transfer copies up to 4 KiB between the buffer and a bus address (an
// IOVA once an IOMMU translates), in either direction, and is started by
// writing the command register; QEMU runs it 100 ms (virtual clock) later.
// Its DMA mask is 28 bits: IOVAs must be below 256 MiB. The buffer is not
// visible through the BAR: the only way to see it is to DMA it somewhere.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gmem/fd.h"
#include "gmem/result.h"
#include "gmem/vfio.h"

namespace gmem::testing {

inline constexpr uint16_t kEduVendor = 0x1234;
inline constexpr uint16_t kEduDevice = 0x11e8;
inline constexpr uint64_t kEduBuffer = 0x40000; // device address of the buffer
inline constexpr uint64_t kEduBufferSize = 4096;
inline constexpr uint64_t kEduDmaLimit = 1ULL << 28; // IOVAs below this

// The edu device, bound to vfio-pci, opened through its cdev and bound to
// an iommufd context, its BAR 0 mapped and bus mastering on. Its DMA
// reaches memory once vfio().attach() has put it on an IOAS or HWPT.
class Edu {
public:
	// The first edu device of the machine, bound to vfio-pci if it is not
	// yet, then to @iommufd. ENODEV when the machine has none.
	static Result<Edu> open(int iommufd);

	[[nodiscard]] VfioDevice &vfio() { return dev_; }
	// The identification register (0x010000ed for edu 1.0).
	[[nodiscard]] uint32_t id() const;

	// One DMA, waited for: @len bytes from bus address @iova into the
	// buffer at @offset (to_device), or from the buffer at @offset to
	// @iova. ETIMEDOUT if the device has not finished in @timeout.
	Result<void> dma_to_device(uint64_t iova, uint64_t len, uint64_t offset = 0,
				   std::chrono::milliseconds timeout = std::chrono::seconds(10));
	Result<void> dma_from_device(uint64_t iova, uint64_t len, uint64_t offset = 0,
				     std::chrono::milliseconds timeout = std::chrono::seconds(10));
	// DMAs issued so far by this object.
	[[nodiscard]] uint64_t dmas() const { return dmas_; }

private:
	Edu(VfioDevice dev, Mapping bar) : dev_(std::move(dev)), bar_(std::move(bar)) {}
	Result<void> dma(uint64_t src, uint64_t dst, uint64_t len, bool to_ram,
			 std::chrono::milliseconds timeout);
	uint32_t read32(uint64_t off) const;
	void write64(uint64_t off, uint64_t v) const;
	uint64_t read64(uint64_t off) const;

	VfioDevice dev_;
	Mapping bar_;
	uint64_t dmas_ = 0;
};

// The kernel log from now on (/dev/kmsg, positioned at its end when made).
class KernelLog {
public:
	static Result<KernelLog> open();
	// Every record logged since the last call (or since open()), text
	// only. Waits up to @wait for at least one record matching @want (if
	// not empty, a substring) and returns as soon as one is there.
	std::vector<std::string> read_new(const std::string &want = "",
					  std::chrono::milliseconds wait = {});

private:
	explicit KernelLog(UniqueFd fd) : fd_(std::move(fd)) {}
	UniqueFd fd_;
};

// The kind of IOMMU behind the device's DMA ("intel": a dmarN, "amd": an
// ivhdN, "virtio": a virtio PCI function), from /sys/class/iommu; "" if
// none.
std::string iommu_kind(const std::string &bdf);

// Which way a refused DMA went, when the report says (VT-d does; QEMU's
// virtio-iommu reports no direction and its AMD-Vi no fault).
enum class DmaDir { kAny, kRead, kWrite };

// Whether a kernel log line is an IOMMU fault report of @kind ("intel":
// "DMAR: [DMA Read|Write ...] ... fault addr", "amd": "IO_PAGE_FAULT",
// "virtio": "virtio_iommu ... fault from EP") for @iova's page, in
// direction @dir where the report gives one.
bool is_iommu_fault(const std::string &kind, const std::string &line, uint64_t iova,
		    DmaDir dir = DmaDir::kAny);

// The PFN mapped at user address @addr (/proc/self/pagemap; needs
// CAP_SYS_ADMIN for a non-zero PFN), or nothing if no page is present.
std::optional<uint64_t> user_pfn(const void *addr);

} // namespace gmem::testing
