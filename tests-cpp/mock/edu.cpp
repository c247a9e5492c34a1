// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "mock/edu.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

namespace gmem::testing {

namespace {

// edu's registers (docs/specs/edu.rst).
constexpr uint64_t kRegId = 0x00;
constexpr uint64_t kRegDmaSrc = 0x80;
constexpr uint64_t kRegDmaDst = 0x88;
constexpr uint64_t kRegDmaCount = 0x90;
constexpr uint64_t kRegDmaCmd = 0x98;
constexpr uint64_t kCmdStart = 0x1;
constexpr uint64_t kCmdToRam = 0x2; // direction: from the buffer to RAM

// The number after @key in @line (hex with a 0x prefix), if any.
std::optional<uint64_t> hex_after(const std::string &line, const std::string &key)
{
	auto at = line.find(key);
	if (at == std::string::npos)
		return std::nullopt;
	const char *p = line.c_str() + at + key.size();
	char *end = nullptr;
	errno = 0;
	uint64_t v = std::strtoull(p, &end, 16);
	if (end == p || errno)
		return std::nullopt;
	return v;
}

} // namespace

Result<Edu> Edu::open(int iommufd)
{
	auto found = pci_find_devices(kEduVendor, kEduDevice);
	if (found.empty())
		return fail(ENODEV, "find an edu device (PCI 1234:11e8)");
	const std::string &bdf = found.front();
	if (auto r = pci_bind_vfio(bdf); !r)
		return unexpected(r.error());
	auto dev = VfioDevice::open_pci(bdf);
	if (!dev)
		return unexpected(dev.error());
	// A cdev refuses every other ioctl until it is bound.
	if (auto r = dev->bind_iommufd(iommufd); !r)
		return unexpected(r.error());
	auto bar = dev->map_bar(0);
	if (!bar)
		return unexpected(bar.error());
	if (auto r = dev->set_bus_master(true); !r)
		return unexpected(r.error());
	return Edu(std::move(dev).value(), std::move(bar).value());
}

uint32_t Edu::read32(uint64_t off) const
{
	return *reinterpret_cast<volatile uint32_t *>(bar_.data() + off);
}

uint64_t Edu::read64(uint64_t off) const
{
	return *reinterpret_cast<volatile uint64_t *>(bar_.data() + off);
}

void Edu::write64(uint64_t off, uint64_t v) const
{
	*reinterpret_cast<volatile uint64_t *>(bar_.data() + off) = v;
}

uint32_t Edu::id() const
{
	return read32(kRegId);
}

Result<void> Edu::dma(uint64_t src, uint64_t dst, uint64_t len, bool to_ram,
		      std::chrono::milliseconds timeout)
{
	const std::string what =
		std::string("edu DMA ") + (to_ram ? "buffer -> IOVA 0x" : "IOVA 0x");
	char iova[32];
	std::snprintf(iova, sizeof(iova), "%llx",
		      static_cast<unsigned long long>(to_ram ? dst : src));
	const std::string name = what + iova + (to_ram ? "" : " -> buffer");
	// A transfer still running ignores register writes.
	if (read64(kRegDmaCmd) & kCmdStart)
		return fail(EBUSY, name + " (a transfer is still running)");
	write64(kRegDmaSrc, src);
	write64(kRegDmaDst, dst);
	write64(kRegDmaCount, len);
	write64(kRegDmaCmd, kCmdStart | (to_ram ? kCmdToRam : 0));
	dmas_++;
	const auto deadline = std::chrono::steady_clock::now() + timeout;
	while (read64(kRegDmaCmd) & kCmdStart) {
		if (std::chrono::steady_clock::now() > deadline)
			return fail(ETIMEDOUT, name);
		std::this_thread::sleep_for(std::chrono::milliseconds(2));
	}
	return {};
}

Result<void> Edu::dma_to_device(uint64_t iova, uint64_t len, uint64_t offset,
				std::chrono::milliseconds timeout)
{
	return dma(iova, kEduBuffer + offset, len, false, timeout);
}

Result<void> Edu::dma_from_device(uint64_t iova, uint64_t len, uint64_t offset,
				  std::chrono::milliseconds timeout)
{
	return dma(kEduBuffer + offset, iova, len, true, timeout);
}

Result<KernelLog> KernelLog::open()
{
	int fd = ::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return fail("open /dev/kmsg");
	if (::lseek(fd, 0, SEEK_END) < 0) {
		auto e = last_error("lseek /dev/kmsg");
		::close(fd);
		return unexpected(std::move(e));
	}
	return KernelLog(UniqueFd(fd));
}

std::vector<std::string> KernelLog::read_new(const std::string &want,
					     std::chrono::milliseconds wait)
{
	std::vector<std::string> lines;
	bool found = want.empty();
	const auto deadline = std::chrono::steady_clock::now() + wait;
	for (;;) {
		char buf[8192];
		ssize_t n = ::read(fd_.get(), buf, sizeof(buf) - 1);
		if (n < 0 && errno == EPIPE)
			continue; // records were overwritten; go on with the next
		if (n > 0) {
			buf[n] = 0;
			// "prio,seq,usec,flags;text\n" plus " KEY=value" lines.
			const char *text = std::strchr(buf, ';');
			std::string line = text ? text + 1 : buf;
			line = line.substr(0, line.find('\n'));
			found |= line.find(want) != std::string::npos;
			lines.push_back(std::move(line));
			continue;
		}
		if (found || std::chrono::steady_clock::now() >= deadline)
			break;
		pollfd p{ fd_.get(), POLLIN, 0 };
		::poll(&p, 1, 20);
	}
	return lines;
}

std::string iommu_kind(const std::string &bdf)
{
	char buf[512];
	const std::string link = "/sys/bus/pci/devices/" + bdf + "/iommu";
	ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
	if (n <= 0)
		return "";
	buf[n] = 0;
	std::string name = buf;
	name = name.substr(name.rfind('/') + 1);
	if (name.rfind("dmar", 0) == 0)
		return "intel";
	if (name.rfind("ivhd", 0) == 0)
		return "amd";
	// virtio-iommu names its IOMMU after the PCI function it sits on.
	std::ifstream vendor("/sys/bus/pci/devices/" + name + "/vendor");
	std::string v;
	if (name.rfind("virtio", 0) == 0 || (vendor >> v && v == "0x1af4"))
		return "virtio";
	return name;
}

bool is_iommu_fault(const std::string &kind, const std::string &line, uint64_t iova, DmaDir dir)
{
	std::optional<uint64_t> addr;
	if (kind == "intel") {
		const bool read = line.find("[DMA Read") != std::string::npos;
		const bool write = line.find("[DMA Write") != std::string::npos;
		if (!(dir == DmaDir::kRead ? read : dir == DmaDir::kWrite ? write : read || write))
			return false;
		addr = hex_after(line, "fault addr 0x");
	} else if (kind == "amd") {
		if (line.find("IO_PAGE_FAULT") == std::string::npos)
			return false;
		addr = hex_after(line, "address=0x");
	} else if (kind == "virtio") {
		if (line.find("fault from EP") == std::string::npos)
			return false;
		addr = hex_after(line, " at 0x");
	} else {
		return false;
	}
	return addr && (*addr >> 12) == (iova >> 12);
}

std::optional<uint64_t> user_pfn(const void *addr)
{
	UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (!fd.valid())
		return std::nullopt;
	const long page = ::sysconf(_SC_PAGESIZE);
	uint64_t entry = 0;
	const off_t off =
		static_cast<off_t>(reinterpret_cast<uintptr_t>(addr) / page * sizeof(entry));
	if (::pread(fd.get(), &entry, sizeof(entry), off) != sizeof(entry))
		return std::nullopt;
	if (!(entry & (1ULL << 63)))
		return std::nullopt; // not present
	const uint64_t pfn = entry & ((1ULL << 55) - 1);
	if (pfn == 0)
		return std::nullopt; // hidden without CAP_SYS_ADMIN
	return pfn;
}

} // namespace gmem::testing
