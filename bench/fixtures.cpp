// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
#include "fixtures.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "gmem/mailbox_guest.h"
#include "options.h"

namespace bench {

using gmem::GuestMemfd;
using gmem::Ioas;
using gmem::Iommufd;
using gmem::Kvm;
using gmem::Mapping;
using gmem::UniqueFd;
using gmem::Vm;
using gmem::testing::MockDomain;

Vm make_vm()
{
	if (const std::string &why = gmem::ConvertibleGuest::unsupported(); !why.empty())
		throw Skip{ why };
	return Kvm::open().value().create_vm(KVM_X86_SW_PROTECTED_VM).value();
}

ConvertibleFile ConvertibleFile::bound(uint64_t len, uint64_t flags, uint64_t gpa)
{
	if (const std::string &why = gmem::ConvertibleGuest::unsupported(); !why.empty())
		throw Skip{ why };
	gmem::GuestConfig config = gmem::mailbox_guest_config(len);
	config.data_gpa = gpa;
	config.gmem_flags = flags;
	ConvertibleFile f;
	f.guest_.emplace(gmem::ConvertibleGuest::create(config).value());
	return f;
}

ConvertibleFile ConvertibleFile::unbound(uint64_t len, uint64_t flags)
{
	ConvertibleFile f;
	f.vm_.emplace(make_vm());
	f.file_.emplace(
		f.vm_->create_guest_memfd(len, flags | GUEST_MEMFD_FLAG_CONVERTIBLE).value());
	if (flags & GUEST_MEMFD_FLAG_MMAP)
		f.map_ = f.file_->map(0, len).value();
	return f;
}

SharedBacking::SharedBacking(uint64_t len)
{
	int f = memfd_create("gmem-bench-shared", MFD_CLOEXEC);
	if (f < 0)
		throw CheckFailed{ std::string("memfd_create: ") + std::strerror(errno) };
	fd.reset(f);
	if (ftruncate(f, static_cast<off_t>(len)) < 0)
		throw CheckFailed{ std::string("ftruncate: ") + std::strerror(errno) };
	map = Mapping::map(f, len, PROT_READ | PROT_WRITE, MAP_SHARED).value();
}

void SharedBacking::punch(uint64_t len) const
{
	if (fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
		      static_cast<off_t>(len)) < 0)
		throw CheckFailed{ std::string("fallocate(PUNCH_HOLE) of the memfd: ") +
				   std::strerror(errno) };
}

uint64_t SharedBacking::pages() const
{
	struct stat st {};
	if (fstat(fd.get(), &st) < 0)
		return 0;
	return static_cast<uint64_t>(st.st_blocks) * 512 / kPage;
}

ConvertibleFile shared_gmem(uint64_t len)
{
	auto f = ConvertibleFile::bound(len, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	f.gmem().allocate(0, len).value();
	return f;
}

IommuCtx IommuCtx::make(bool attach)
{
	auto fd = Iommufd::open();
	if (!fd)
		throw Skip{ fd.error().message() };
	if (!gmem::testing::have_iommufd_mock(fd->fd()))
		throw Skip{ "no iommufd mock (CONFIG_IOMMUFD_TEST): MD_CHECK_REFS" };
	auto ioas = fd->alloc_ioas().value();
	IommuCtx c{ std::move(fd).value(), std::move(ioas), std::nullopt, std::nullopt };
	if (!attach)
		return c;
	if (!opts.edu) {
		c.domain.emplace(MockDomain::attach(c.ioas).value());
		return c;
	}
	auto edu = gmem::testing::Edu::open(c.iommufd.fd());
	if (!edu)
		throw Skip{ edu.error().message() };
	c.edu.emplace(std::move(edu).value());
	c.edu->vfio().attach(c.ioas.id()).value();
	return c;
}

bool IommuCtx::check_mirror(uint64_t iova, uint64_t len, int gmem_fd, bool mapped,
			    std::string &why) const
{
	if (domain) {
		auto r = gmem::testing::check_gmem(iommufd.fd(), domain->hwpt_id(), iova, len,
						   gmem_fd, 0, !mapped);
		if (!r.has_value())
			why = r.error().message();
		return r.has_value();
	}
	auto st = ioas.mirror_status(iova);
	if (!st.has_value()) {
		why = st.error().message();
		return false;
	}
	const uint64_t want = mapped ? len / kPage : 0;
	why = "MIRROR_STATUS: " + std::to_string(st->mapped_pages) + " mapped, " +
	      std::to_string(st->pending_pages) + " pending";
	return st->mapped_pages == want && st->pending_pages == 0;
}

void touch(uint8_t *base, uint64_t pages, uint8_t seed)
{
	volatile uint8_t *p = base;
	for (uint64_t i = 0; i < pages; i++)
		p[i * kPage] = static_cast<uint8_t>(seed + i);
}

uint64_t resident_pages(const uint8_t *base, uint64_t len)
{
	std::vector<unsigned char> vec(len / kPage);
	if (mincore(const_cast<uint8_t *>(base), len, vec.data()) < 0)
		return 0;
	uint64_t n = 0;
	for (unsigned char c : vec)
		n += c & 1;
	return n;
}

uint64_t pfn_runs(const uint8_t *base, uint64_t pages)
{
	UniqueFd f(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (!f.valid())
		return 0;
	std::vector<uint64_t> e(pages);
	const auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(base) / kPage * 8);
	if (pread(f.get(), e.data(), pages * 8, off) != static_cast<ssize_t>(pages * 8))
		return 0;
	uint64_t runs = 0;
	for (uint64_t i = 0; i < pages; i++) {
		const uint64_t pfn = e[i] & ((1ULL << 55) - 1);
		if (!(e[i] >> 63) || pfn == 0)
			return 0;
		if (i == 0 || pfn != (e[i - 1] & ((1ULL << 55) - 1)) + 1)
			runs++;
	}
	return runs;
}

uint64_t meminfo_kib(const std::string &key)
{
	std::ifstream f("/proc/meminfo");
	std::string line;
	const std::string want = key + ":";
	while (std::getline(f, line))
		if (line.compare(0, want.size(), want) == 0)
			return std::stoull(line.substr(want.size()));
	return 0;
}

uint64_t settled_cached_kib()
{
	uint64_t prev = meminfo_kib("Cached");
	for (int i = 0; i < 9; i++) {
		usleep(1100000);
		const uint64_t now = meminfo_kib("Cached");
		if (now == prev)
			return now;
		prev = now;
	}
	return prev;
}

uint64_t slab_growth_kib(uint64_t before)
{
	const uint64_t now = meminfo_kib("Slab");
	return now > before ? now - before : 0;
}

int pre_fault_memory(int vcpu_fd, uint64_t gpa, uint64_t size)
{
	kvm_pre_fault_memory r{};
	r.gpa = gpa;
	r.size = size;
	while (r.size)
		if (ioctl(vcpu_fd, KVM_PRE_FAULT_MEMORY, &r) < 0 && errno != EINTR &&
		    errno != EAGAIN)
			return errno;
	return 0;
}

} // namespace bench
