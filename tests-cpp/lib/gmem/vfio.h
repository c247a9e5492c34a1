// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// An assigned PCI device through VFIO's iommufd interface: the device's
// cdev (/dev/vfio/devices/vfioN) bound to an iommufd context
// (VFIO_DEVICE_BIND_IOMMUFD) and attached to an IOAS or a HWPT
// (VFIO_DEVICE_ATTACH_IOMMUFD_PT), so that its DMA goes through the IOMMU
// domain that mirrors the IOAS, a guest_memfd mapping (Ioas::map_file())
// included. Plus what a VMM needs to drive it: region info, BAR mmap,
// config space and bus mastering. Every call returns a Result naming the
// failed call.
#pragma once

#include <linux/vfio.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gmem/fd.h"
#include "gmem/result.h"

namespace gmem {

// sysfs helpers for PCI devices (/sys/bus/pci/devices). A BDF is written
// as sysfs names it: "0000:00:03.0".

// The BDFs of the PCI devices with this vendor and device ID, in sysfs
// order.
std::vector<std::string> pci_find_devices(uint16_t vendor, uint16_t device);
// The name of the driver bound to @bdf, or "" when none is.
std::string pci_driver(const std::string &bdf);
// Binds @bdf to vfio-pci: driver_override, unbind from the current driver
// if any, then drivers_probe. Needs CONFIG_VFIO_PCI and root.
Result<void> pci_bind_vfio(const std::string &bdf);
// The VFIO cdev of @bdf ("/dev/vfio/devices/vfioN"), from
// /sys/bus/pci/devices/BDF/vfio-dev/. ENOENT when the device is not bound
// to a VFIO driver or the kernel has no VFIO_DEVICE_CDEV.
Result<std::string> vfio_cdev_path(const std::string &bdf);

// What VFIO_DEVICE_GET_REGION_INFO reports about one region.
struct VfioRegion {
	uint32_t index = 0;
	uint32_t flags = 0; // VFIO_REGION_INFO_FLAG_*
	uint64_t size = 0;
	uint64_t offset = 0; // of the region in the device fd
};

// One VFIO device opened through its cdev. Until bind_iommufd(), the cdev
// refuses every other call (EINVAL). Destroying it detaches it from
// its IOAS/HWPT and unbinds it from the iommufd (both happen on close).
class VfioDevice {
public:
	// Opens the cdev of @bdf (see vfio_cdev_path()).
	static Result<VfioDevice> open_pci(const std::string &bdf);

	[[nodiscard]] int fd() const { return fd_.get(); }
	[[nodiscard]] const std::string &bdf() const { return bdf_; }
	// The iommufd device ID, valid once bound.
	[[nodiscard]] uint32_t devid() const { return devid_; }

	// VFIO_DEVICE_BIND_IOMMUFD: the device becomes an object of the
	// iommufd context @iommufd; until then it has no DMA at all. EPERM
	// when the platform cannot isolate the device's MSIs (no interrupt
	// remapping) and iommufd.allow_unsafe_interrupts is off.
	Result<uint32_t> bind_iommufd(int iommufd);
	// VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach to @pt_id, an IOAS (the kernel
	// then finds or allocates a paging HWPT for it) or a HWPT. Returns the
	// HWPT ID the device is attached to.
	Result<uint32_t> attach(uint32_t pt_id) const;
	// VFIO_DEVICE_DETACH_IOMMUFD_PT: the device's DMA is blocked again.
	Result<void> detach() const;

	Result<VfioRegion> region(uint32_t index) const;
	// mmap()s the whole of BAR @bar (needs VFIO_REGION_INFO_FLAG_MMAP).
	Result<Mapping> map_bar(uint32_t bar) const;
	// Config space reads and writes (VFIO_PCI_CONFIG_REGION_INDEX).
	Result<uint16_t> config_read16(uint32_t offset) const;
	Result<void> config_write16(uint32_t offset, uint16_t value) const;
	// Sets (or clears) PCI_COMMAND's memory-space and bus-master bits.
	Result<void> set_bus_master(bool on) const;
	// VFIO_DEVICE_RESET.
	Result<void> reset() const;

private:
	VfioDevice(UniqueFd fd, std::string bdf) : fd_(std::move(fd)), bdf_(std::move(bdf)) {}
	UniqueFd fd_;
	std::string bdf_;
	uint32_t devid_ = 0;
};

} // namespace gmem
