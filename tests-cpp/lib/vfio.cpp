// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "gmem/vfio.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/pci_regs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace gmem {

namespace {

const std::string kPciDevices = "/sys/bus/pci/devices/";

// The first line of a sysfs file, or "" if it cannot be read.
std::string read_line(const std::string &path)
{
	std::ifstream f(path);
	std::string s;
	std::getline(f, s);
	return s;
}

Result<void> write_sysfs(const std::string &path, const std::string &value)
{
	UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
	if (!fd.valid())
		return fail("open " + path);
	if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
		return fail("write " + value + " to " + path);
	return {};
}

// Sorted names of the entries of @dir, without "." and "..".
std::vector<std::string> list_dir(const std::string &dir)
{
	std::vector<std::string> names;
	DIR *d = ::opendir(dir.c_str());
	if (!d)
		return names;
	while (dirent *e = ::readdir(d)) {
		std::string n = e->d_name;
		if (n != "." && n != "..")
			names.push_back(n);
	}
	::closedir(d);
	std::sort(names.begin(), names.end());
	return names;
}

} // namespace

std::vector<std::string> pci_find_devices(uint16_t vendor, uint16_t device)
{
	std::vector<std::string> found;
	for (const auto &bdf : list_dir(kPciDevices)) {
		const std::string dir = kPciDevices + bdf + "/";
		unsigned long v = std::strtoul(read_line(dir + "vendor").c_str(), nullptr, 16);
		unsigned long d = std::strtoul(read_line(dir + "device").c_str(), nullptr, 16);
		if (v == vendor && d == device)
			found.push_back(bdf);
	}
	return found;
}

std::string pci_driver(const std::string &bdf)
{
	char buf[256];
	const std::string link = kPciDevices + bdf + "/driver";
	ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
	if (n <= 0)
		return "";
	buf[n] = 0;
	std::string target = buf;
	return target.substr(target.rfind('/') + 1);
}

Result<void> pci_bind_vfio(const std::string &bdf)
{
	const std::string dir = kPciDevices + bdf + "/";
	if (pci_driver(bdf) == "vfio-pci")
		return {};
	if (auto r = write_sysfs(dir + "driver_override", "vfio-pci"); !r)
		return r;
	if (!pci_driver(bdf).empty())
		if (auto r = write_sysfs(dir + "driver/unbind", bdf); !r)
			return r;
	if (auto r = write_sysfs("/sys/bus/pci/drivers_probe", bdf); !r)
		return r;
	if (pci_driver(bdf) != "vfio-pci")
		return fail(ENODEV, "bind " + bdf + " to vfio-pci (driver now: \"" +
					    pci_driver(bdf) + "\")");
	return {};
}

Result<std::string> vfio_cdev_path(const std::string &bdf)
{
	for (const auto &n : list_dir(kPciDevices + bdf + "/vfio-dev"))
		if (n.rfind("vfio", 0) == 0)
			return "/dev/vfio/devices/" + n;
	return fail(ENOENT,
		    "find the VFIO cdev of " + bdf + " (" + kPciDevices + bdf + "/vfio-dev)");
}

Result<VfioDevice> VfioDevice::open_pci(const std::string &bdf)
{
	auto path = vfio_cdev_path(bdf);
	if (!path)
		return unexpected(path.error());
	int fd = ::open(path->c_str(), O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open " + *path);
	return VfioDevice(UniqueFd(fd), bdf);
}

Result<uint32_t> VfioDevice::bind_iommufd(int iommufd)
{
	vfio_device_bind_iommufd cmd{};
	cmd.argsz = sizeof(cmd);
	cmd.iommufd = iommufd;
	if (::ioctl(fd_.get(), VFIO_DEVICE_BIND_IOMMUFD, &cmd) < 0)
		return fail("VFIO_DEVICE_BIND_IOMMUFD(" + bdf_ + ")");
	devid_ = cmd.out_devid;
	return devid_;
}

Result<uint32_t> VfioDevice::attach(uint32_t pt_id) const
{
	vfio_device_attach_iommufd_pt cmd{};
	cmd.argsz = sizeof(cmd);
	cmd.pt_id = pt_id;
	if (::ioctl(fd_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd) < 0)
		return fail("VFIO_DEVICE_ATTACH_IOMMUFD_PT(" + bdf_ + ", pt " +
			    std::to_string(pt_id) + ")");
	return cmd.pt_id;
}

Result<void> VfioDevice::detach() const
{
	vfio_device_detach_iommufd_pt cmd{};
	cmd.argsz = sizeof(cmd);
	return check_void(::ioctl(fd_.get(), VFIO_DEVICE_DETACH_IOMMUFD_PT, &cmd),
			  "VFIO_DEVICE_DETACH_IOMMUFD_PT(" + bdf_ + ")");
}

Result<VfioRegion> VfioDevice::region(uint32_t index) const
{
	vfio_region_info info{};
	info.argsz = sizeof(info);
	info.index = index;
	if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, &info) < 0)
		return fail("VFIO_DEVICE_GET_REGION_INFO(" + bdf_ + ", region " +
			    std::to_string(index) + ")");
	VfioRegion r;
	r.index = index;
	r.flags = info.flags;
	r.size = info.size;
	r.offset = info.offset;
	return r;
}

Result<Mapping> VfioDevice::map_bar(uint32_t bar) const
{
	auto r = region(VFIO_PCI_BAR0_REGION_INDEX + bar);
	if (!r)
		return unexpected(r.error());
	if (!(r->flags & VFIO_REGION_INFO_FLAG_MMAP) || r->size == 0)
		return fail(EINVAL, "mmap BAR" + std::to_string(bar) + " of " + bdf_ +
					    " (region not mmap()able)");
	auto m = Mapping::map(fd_.get(), r->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			      static_cast<off_t>(r->offset));
	if (!m)
		return fail(errno_of(m), "mmap BAR" + std::to_string(bar) + " of " + bdf_);
	return m;
}

Result<uint16_t> VfioDevice::config_read16(uint32_t offset) const
{
	auto r = region(VFIO_PCI_CONFIG_REGION_INDEX);
	if (!r)
		return unexpected(r.error());
	uint16_t v = 0;
	if (::pread(fd_.get(), &v, sizeof(v), static_cast<off_t>(r->offset + offset)) != sizeof(v))
		return fail("read config space of " + bdf_);
	return v;
}

Result<void> VfioDevice::config_write16(uint32_t offset, uint16_t value) const
{
	auto r = region(VFIO_PCI_CONFIG_REGION_INDEX);
	if (!r)
		return unexpected(r.error());
	if (::pwrite(fd_.get(), &value, sizeof(value), static_cast<off_t>(r->offset + offset)) !=
	    sizeof(value))
		return fail("write config space of " + bdf_);
	return {};
}

Result<void> VfioDevice::set_bus_master(bool on) const
{
	auto cmd = config_read16(PCI_COMMAND);
	if (!cmd)
		return unexpected(cmd.error());
	uint16_t v = *cmd;
	if (on)
		v |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	else
		v &= ~PCI_COMMAND_MASTER;
	return config_write16(PCI_COMMAND, v);
}

Result<void> VfioDevice::reset() const
{
	return check_void(::ioctl(fd_.get(), VFIO_DEVICE_RESET), "VFIO_DEVICE_RESET(" + bdf_ + ")");
}

} // namespace gmem
