// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// gmem-bench: what in-place conversion and pin-free IOMMU mapping of a
// guest_memfd buy, measured side by side in one run.
//
// conv        Converting N pages to shared (the host then touches them) and
//             back to private, in place (one convertible guest_memfd,
//             KVM_GMEM_CONVERT_*) against the two backings a 7.3 VMM uses
//             (guest_memfd for private, a memfd for shared,
//             KVM_SET_MEMORY_ATTRIBUTES to flip, a hole punched in the side
//             dropped, the dropped side allocated again when used; and a
//             variant that also copies the contents across). Also the peak
//             number of pages allocated in both backings.
// iommu-map   Mapping N pages into an IOAS with one mock IOMMU domain and
//             unmapping them: IOMMU_IOAS_MAP of a memfd mapping (pins),
//             IOMMU_IOAS_MAP_FILE of the memfd (pins), IOMMU_IOAS_MAP_FILE of
//             a convertible guest_memfd (mirrors, pins nothing).
// iommu-conv  Converting a DMA-mapped range to private and back: with the
//             mirror it is the conversion alone; with a pinned mapping of
//             the same guest_memfd the VMM must unmap first (else EAGAIN)
//             and map again afterwards; and the 7.3 way, two backings with
//             the memfd pinned.
// notify      Converting N shared pages nobody maps to private and back,
//             with 0 notifier clients, KVM, and KVM plus an IOAS (without a
//             domain, or with one that maps the pages); and with nothing
//             allocated (the state alone).
// frag        The shareability state of a 2N-page file: N single pages
//             every other page made shared, against one range of N, then
//             the whole file back to private; with the slab growth of each.
// footprint   A guest sharing half of N pages: page cache in use at
//             rest, at the peak of a conversion storm and after it, in
//             place against two backings (discarding or not).
// touch       A vCPU running guest code touches N pages right after their
//             conversion (KVM's fault path), in place against two backings.
// sparse      IOMMU_IOAS_MAP_FILE of N shared pages: a sparse 1 TiB file
//             against a file of N pages (cost and memory follow N?).
//
// Sizes default to 4 KiB, 2 MiB, 64 MiB and 1 GiB (--pages); from 64 MiB
// on a case runs fewer round trips (--big-reps). --json FILE writes every
// figure for harness/bench-report.py (tables, goals, plot).
//
// Every case is a round trip that ends in the state it started from, run
// --warmup times untimed and --reps times timed; each phase (and each step
// inside it) reports median, quartiles and extremes. Output: readable
// tables with ratios, and one "BENCH name value unit" line per figure.
//
// The mock IOMMU (CONFIG_IOMMUFD_TEST) stands in for hardware: its page
// table is a software xarray, so IOMMU figures show the iommufd and
// guest_memfd side of the cost, not a real IOMMU's IOTLB flushes. With
// --device edu, the iommu-* cases attach QEMU's edu device through VFIO
// instead (a machine booted with harness/guest-run.sh --viommu KIND), so
// that every map, unmap and conversion goes through a real IOMMU driver's
// page table and its strict IOTLB invalidation; the checks then read
// IOMMU_IOAS_MIRROR_STATUS instead of the mock's page table.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "mock/edu.h"
#include "mock/iommufd_mock.h"
#include "timing.h"

// bench_guest.S
extern "C" const uint8_t bench_guest_start[], bench_guest_end[];

namespace {

using gmem::GuestMemfd;
using gmem::Ioas;
using gmem::Iommufd;
using gmem::Kvm;
using gmem::Mapping;
using gmem::UniqueFd;
using gmem::Vm;
using gmem::testing::MockDomain;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kGpa = 1ULL << 32;
constexpr uint32_t kSlot = 1;
constexpr uint64_t kIova = MOCK_APERTURE_START;

// --- Options and environment

struct Options {
	int reps = 15;
	int warmup = 2;
	// 4 KiB, 2 MiB, 64 MiB, 1 GiB.
	std::vector<uint64_t> pages = { 1, 512, 16384, 262144 };
	// From this many pages on, at most big_reps timed and big_warmup
	// untimed round trips (a 1 GiB round trip is billions of instructions).
	uint64_t big_pages = 16384;
	int big_reps = 3;
	int big_warmup = 1;
	// frag's alternating split: at most this many stretches.
	uint64_t frag_max = 4096;
	// Cases with per-page work skip sizes above this (run time).
	uint64_t full_pages = UINT64_MAX;
	std::string json; // --json FILE: every figure, machine-readable
	std::set<std::string> groups = { "conv", "iommu-map", "iommu-conv", "notify",
					 "frag", "footprint", "touch",	    "sparse" };
	bool icount = false;
	std::string config = "unknown";
	std::string source = "unknown";
	bool steps = false;
	bool aslr = false;
	bool edu = false; // --device edu: the iommu-* cases on a real IOMMU
};

// A case that cannot run here (no KVM, no mock IOMMU, ...).
struct Skip {
	std::string why;
};

// A check of the kernel's behaviour that failed: the figures of that case
// are not trustworthy.
struct CheckFailed {
	std::string what;
};

void require(bool ok, const std::string &what)
{
	if (!ok)
		throw CheckFailed{ what };
}

Options opts;

// Clock unit: nanoseconds, or guest instructions under -icount shift=0.
const char *unit()
{
	return opts.icount ? "insn" : "ns";
}
const char *table_unit()
{
	return opts.icount ? "k-insn" : "us";
}

Vm make_vm()
{
	auto kvm = Kvm::open();
	if (!kvm)
		throw Skip{ kvm.error().message() };
	if (!kvm->supports_vm_type(KVM_X86_SW_PROTECTED_VM))
		throw Skip{ "KVM_X86_SW_PROTECTED_VM not supported" };
	if (kvm->check_extension(KVM_CAP_GUEST_MEMFD_CONVERT).value_or(0) <= 0)
		throw Skip{ "KVM_CAP_GUEST_MEMFD_CONVERT not supported" };
	auto vm = kvm->create_vm(KVM_X86_SW_PROTECTED_VM).value();
	if (!(vm.guest_memfd_flags() & GUEST_MEMFD_FLAG_CONVERTIBLE))
		throw Skip{ "no GUEST_MEMFD_FLAG_CONVERTIBLE for KVM_X86_SW_PROTECTED_VM" };
	return vm;
}

// A memfd of @len bytes mapped shared: the 7.3 VMM's shared backing.
struct SharedBacking {
	UniqueFd fd;
	Mapping map;

	explicit SharedBacking(uint64_t len)
	{
		int f = memfd_create("gmem-bench-shared", MFD_CLOEXEC);
		if (f < 0)
			throw CheckFailed{ std::string("memfd_create: ") + std::strerror(errno) };
		fd.reset(f);
		if (ftruncate(f, static_cast<off_t>(len)) < 0)
			throw CheckFailed{ std::string("ftruncate: ") + std::strerror(errno) };
		map = Mapping::map(f, len, PROT_READ | PROT_WRITE, MAP_SHARED).value();
	}
	void punch(uint64_t len) const
	{
		if (fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			      static_cast<off_t>(len)) < 0)
			throw CheckFailed{ std::string("fallocate(PUNCH_HOLE) of the memfd: ") +
					   std::strerror(errno) };
	}
	// Pages allocated in the memfd (shmem accounts its blocks exactly).
	[[nodiscard]] uint64_t pages() const
	{
		struct stat st {};
		if (fstat(fd.get(), &st) < 0)
			return 0;
		return static_cast<uint64_t>(st.st_blocks) * 512 / kPage;
	}
};

// The host writes one byte to each page (a VMM filling a shared buffer).
void touch(const Mapping &m, uint64_t pages, uint8_t seed)
{
	volatile uint8_t *p = m.data();
	for (uint64_t i = 0; i < pages; i++)
		p[i * kPage] = static_cast<uint8_t>(seed + i);
}

// Pages of a file mapping that are in the file's page cache (mincore()
// looks the pages up without faulting; for guest_memfd this counts private
// pages too).
uint64_t resident_pages(const Mapping &m)
{
	std::vector<unsigned char> vec(m.size() / kPage);
	if (mincore(m.data(), m.size(), vec.data()) < 0)
		return 0;
	uint64_t n = 0;
	for (unsigned char c : vec)
		n += c & 1;
	return n;
}

// Physically contiguous runs in the pages mapped at @m (from
// /proc/self/pagemap; needs CAP_SYS_ADMIN, else 0): the pinned IOMMU paths
// batch contiguous PFNs, so their cost depends on it.
uint64_t pfn_runs(const Mapping &m, uint64_t pages)
{
	UniqueFd f(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
	if (!f.valid())
		return 0;
	std::vector<uint64_t> e(pages);
	const auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(m.data()) / kPage * 8);
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

// --- Cases: a Variant is one way of doing the job, set up for N pages.

struct Step {
	std::string name;
	std::function<void()> fn;
};

struct Phase {
	std::string name;
	std::vector<Step> steps;
};

// Pages allocated in guest_memfd and in the separate shared backing.
struct MemCount {
	uint64_t gmem = 0;
	uint64_t shared = 0;
	[[nodiscard]] uint64_t total() const { return gmem + shared; }
};

class Variant {
public:
	explicit Variant(uint64_t pages) : pages_(pages), len_(pages * kPage) {}
	virtual ~Variant() = default;
	Variant(const Variant &) = delete;
	Variant &operator=(const Variant &) = delete;

	// The phases of one round trip; the state after the last one is the
	// state before the first.
	virtual std::vector<Phase> round_trip() = 0;
	[[nodiscard]] virtual MemCount memory() const { return {}; }
	// Checks of the kernel's behaviour, outside the timed runs; called
	// before the first and after the last round trip.
	virtual void check() {}
	// Facts about the set-up worth reporting next to the figures.
	[[nodiscard]] virtual std::map<std::string, uint64_t> facts() const { return {}; }

protected:
	uint64_t pages_;
	uint64_t len_;
};

// conv: one convertible guest_memfd bound to a memslot; the guest has used
// all its (private) pages. to_shared: KVM_GMEM_CONVERT_SHARED, then the
// host writes to every page; to_private: KVM_GMEM_CONVERT_PRIVATE.
class InPlaceConv : public Variant {
public:
	explicit InPlaceConv(uint64_t pages)
	    : Variant(pages), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE)
			 .value()),
	      m_(g_.map(0, len_).value())
	{
		vm_.set_memory_region(kSlot, kGpa, len_, m_.data(), &g_, 0).value();
		g_.allocate(0, len_).value();
	}

	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_shared",
			  { { "convert", [this] { g_.convert_shared(0, len_).value(); } },
			    { "touch", [this] { touch(m_, pages_, seed_++); } } } },
			{ "to_private",
			  { { "convert", [this] { g_.convert_private(0, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { resident_pages(m_), 0 }; }
	void check() override
	{
		// Contents survive a round trip (KVM_X86_SW_PROTECTED_VM keeps
		// them), and nothing is allocated beyond the file's own pages.
		g_.convert_shared(0, len_).value();
		for (uint64_t i = 0; i < pages_; i++)
			m_.data()[i * kPage] = static_cast<uint8_t>(0xa5 ^ i);
		g_.convert_private(0, len_).value();
		g_.convert_shared(0, len_).value();
		for (uint64_t i = 0; i < pages_; i++)
			require(m_.data()[i * kPage] == static_cast<uint8_t>(0xa5 ^ i),
				"in-place: contents kept across a round trip");
		g_.convert_private(0, len_).value();
		require(resident_pages(m_) == pages_, "in-place: exactly N pages allocated");
	}

private:
	Vm vm_;
	GuestMemfd g_;
	Mapping m_;
	uint8_t seed_ = 0;
};

// conv, the 7.3 way: private pages in a guest_memfd (no mmap), shared ones
// in a memfd at the memslot's userspace_addr; KVM_SET_MEMORY_ATTRIBUTES
// flips a range, the side dropped gets a hole punched, the side taken is
// allocated (host touch for shared; fallocate for private, standing for the
// guest's first access, which would allocate it). With @copy, contents are
// preserved: both sides exist while the VMM copies (7.3 gives the VMM no
// access to private guest_memfd pages, so a bounce buffer stands for them:
// the cost is the copy, the memory is the second backing).
class TwoBackingConv : public Variant {
public:
	TwoBackingConv(uint64_t pages, bool copy)
	    : Variant(pages), copy_(copy), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, 0).value()), sh_(len_)
	{
		vm_.set_memory_region(kSlot, kGpa, len_, sh_.map.data(), &g_, 0).value();
		vm_.set_memory_attributes(kGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE).value();
		g_.allocate(0, len_).value();
		gmem_pages_ = pages_;
		if (copy_)
			bounce_.assign(len_, 0x5a);
	}

	std::vector<Phase> round_trip() override
	{
		Step attrs_shared{ "attributes",
				   [this] { vm_.set_memory_attributes(kGpa, len_, 0).value(); } };
		Step attrs_private{ "attributes", [this] {
					   vm_.set_memory_attributes(kGpa, len_,
								     KVM_MEMORY_ATTRIBUTE_PRIVATE)
						   .value();
				   } };
		Step punch_private{ "punch_private", [this] {
					   g_.punch_hole(0, len_).value();
					   gmem_pages_ = 0;
				   } };
		Step alloc_private{ "alloc_private", [this] {
					   g_.allocate(0, len_).value();
					   gmem_pages_ = pages_;
				   } };
		Step punch_shared{ "punch_shared", [this] { sh_.punch(len_); } };
		if (!copy_)
			return {
				{ "to_shared",
				  { attrs_shared,
				    punch_private,
				    { "touch", [this] { touch(sh_.map, pages_, seed_++); } } } },
				{ "to_private", { attrs_private, punch_shared, alloc_private } },
			};
		return {
			{ "to_shared",
			  { attrs_shared,
			    { "copy",
			      [this] { std::memcpy(sh_.map.data(), bounce_.data(), len_); } },
			    punch_private } },
			{ "to_private",
			  { attrs_private,
			    alloc_private,
			    { "copy",
			      [this] { std::memcpy(bounce_.data(), sh_.map.data(), len_); } },
			    punch_shared } },
		};
	}
	// guest_memfd pages are counted by construction (7.3's guest_memfd of a
	// private-memory VM cannot be mapped, so mincore() cannot see it):
	// fallocate() of the emptied range allocates N pages, the punch frees
	// them. The memfd's pages are its block count.
	[[nodiscard]] MemCount memory() const override { return { gmem_pages_, sh_.pages() }; }

private:
	bool copy_;
	Vm vm_;
	GuestMemfd g_;
	SharedBacking sh_;
	std::vector<uint8_t> bounce_;
	uint64_t gmem_pages_ = 0;
	uint8_t seed_ = 0;
};

// An iommufd context with one IOAS and one domain attached to it: a mock
// domain, or (--device edu) the domain of QEMU's edu device behind a real
// (emulated) IOMMU. The device goes first: it is detached before the IOAS
// is destroyed.
struct IommuCtx {
	Iommufd iommufd;
	Ioas ioas;
	std::optional<MockDomain> domain;
	std::optional<gmem::testing::Edu> edu;

	// With @attach false, an IOAS with no domain at all (the mirror then
	// only keeps its record of the pages it would map).
	static IommuCtx make(bool attach = true)
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

	// Every page of [iova, iova + len) maps its file page (@mapped), or
	// none does. The mock's page table tells page by page; a real domain
	// only through the mirror's count.
	bool check_mirror(uint64_t iova, uint64_t len, int gmem_fd, bool mapped,
			  std::string &why) const
	{
		if (domain) {
			auto r = gmem::testing::check_gmem(iommufd.fd(), domain->hwpt_id(), iova,
							   len, gmem_fd, 0, !mapped);
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
};

// A convertible guest_memfd that starts shared, all pages allocated, bound
// to a memslot and mmapped (for the memslot, the pinned variants and checks).
struct SharedGmem {
	Vm vm;
	GuestMemfd g;
	Mapping m;

	explicit SharedGmem(uint64_t len)
	    : vm(make_vm()),
	      g(vm.create_guest_memfd(len, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE |
						   GUEST_MEMFD_FLAG_INIT_SHARED)
			.value()),
	      m(g.map(0, len).value())
	{
		vm.set_memory_region(kSlot, kGpa, len, m.data(), &g, 0).value();
		g.allocate(0, len).value();
	}
};

// iommu-map: a memfd, pinned, mapped and unmapped (IOMMU_IOAS_UNMAP):
// either IOMMU_IOAS_MAP of its mapping (pin_user_pages) or, with
// @by_file, IOMMU_IOAS_MAP_FILE of the memfd (7.3: memfd_pin_folios()). The
// pages are allocated and mapped in the host first.
class MapPinned : public Variant {
public:
	MapPinned(uint64_t pages, bool by_file)
	    : Variant(pages), io_(IommuCtx::make()), sh_(len_), by_file_(by_file)
	{
		touch(sh_.map, pages_, 1);
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "map",
			  { { "ioctl",
			      [this] {
				      if (by_file_)
					      io_.ioas.map_file(sh_.fd.get(), 0, len_, kIova)
						      .value();
				      else
					      io_.ioas.map_memory(sh_.map.data(), len_, kIova)
						      .value();
			      } } } },
			{ "unmap",
			  { { "ioctl", [this] { io_.ioas.unmap(kIova, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { 0, sh_.pages() }; }
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "pfn_runs", pfn_runs(sh_.map, pages_) } };
	}

private:
	IommuCtx io_;
	SharedBacking sh_;
	bool by_file_;
};

// iommu-map: IOMMU_IOAS_MAP_FILE of a convertible guest_memfd, all shared
// and allocated: the mock domain mirrors the file, nothing is pinned.
class MapMirror : public Variant {
public:
	explicit MapMirror(uint64_t pages) : Variant(pages), io_(IommuCtx::make()), gm_(len_) {}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "map",
			  { { "ioctl",
			      [this] {
				      io_.ioas.map_file(gm_.g.fd(), 0, len_, kIova).value();
			      } } } },
			{ "unmap",
			  { { "ioctl", [this] { io_.ioas.unmap(kIova, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { resident_pages(gm_.m), 0 }; }
	void check() override
	{
		io_.ioas.map_file(gm_.g.fd(), 0, len_, kIova).value();
		std::string why;
		const bool ok = io_.check_mirror(kIova, len_, gm_.g.fd(), true, why);
		require(ok, "mirror: the domain maps every shared page (" + why + ")");
		auto refs = gmem::testing::check_refs(io_.iommufd.fd(), gm_.m.data(), len_, 0);
		require(refs.has_value(), "mirror: no page pinned");
		io_.ioas.unmap(kIova, len_).value();
	}

private:
	IommuCtx io_;
	SharedGmem gm_;
};

// iommu-conv: the range is DMA-mapped through the mirror; converting it is
// the conversion alone (iommufd follows through its notifier).
class ConvMirror : public Variant {
public:
	explicit ConvMirror(uint64_t pages) : Variant(pages), io_(IommuCtx::make()), gm_(len_)
	{
		io_.ioas.map_file(gm_.g.fd(), 0, len_, kIova).value();
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "convert", [this] { gm_.g.convert_private(0, len_).value(); } } } },
			{ "to_shared",
			  { { "convert", [this] { gm_.g.convert_shared(0, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { resident_pages(gm_.m), 0 }; }
	void check() override
	{
		std::string why;
		require(io_.check_mirror(kIova, len_, gm_.g.fd(), true, why),
			"mirror: shared range mapped (" + why + ")");
		gm_.g.convert_private(0, len_).value();
		require(io_.check_mirror(kIova, len_, gm_.g.fd(), false, why),
			"mirror: private range not mapped (" + why + ")");
		gm_.g.convert_shared(0, len_).value();
		auto st = io_.ioas.mirror_status(kIova).value();
		require(st.mapped_pages == pages_ && st.pending_pages == 0,
			"mirror: every page mapped again after to_shared");
	}

private:
	IommuCtx io_;
	SharedGmem gm_;
};

// iommu-conv: the same guest_memfd, but DMA-mapped with IOMMU_IOAS_MAP of
// its host mapping (pinned): to_private must unmap first (the pins make
// KVM_GMEM_CONVERT_PRIVATE fail with EAGAIN), to_shared maps (pins) again.
class ConvPinnedInPlace : public Variant {
public:
	explicit ConvPinnedInPlace(uint64_t pages)
	    : Variant(pages), io_(IommuCtx::make()), gm_(len_)
	{
		touch(gm_.m, pages_, 1);
		io_.ioas.map_memory(gm_.m.data(), len_, kIova).value();
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "unmap", [this] { io_.ioas.unmap(kIova, len_).value(); } },
			    { "convert", [this] { gm_.g.convert_private(0, len_).value(); } } } },
			{ "to_shared",
			  { { "convert", [this] { gm_.g.convert_shared(0, len_).value(); } },
			    { "map",
			      [this] {
				      io_.ioas.map_memory(gm_.m.data(), len_, kIova).value();
			      } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { resident_pages(gm_.m), 0 }; }
	void check() override
	{
		auto r = gm_.g.convert_private(0, len_);
		require(!r.has_value() && errno_of(r) == EAGAIN,
			"pinned: KVM_GMEM_CONVERT_PRIVATE of a pinned range fails with EAGAIN "
			"(got " +
				(r.has_value() ? std::string("success") : r.error().message()) +
				")");
	}

private:
	IommuCtx io_;
	SharedGmem gm_;
};

// iommu-conv, the 7.3 way: two backings, the memfd DMA-mapped (pinned).
// to_private: unmap, attributes, punch the memfd, allocate private;
// to_shared: attributes, punch guest_memfd, map (pin_user_pages faults the
// memfd pages in, allocating them).
class ConvPinnedTwoBacking : public Variant {
public:
	explicit ConvPinnedTwoBacking(uint64_t pages)
	    : Variant(pages), io_(IommuCtx::make()), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, 0).value()), sh_(len_)
	{
		vm_.set_memory_region(kSlot, kGpa, len_, sh_.map.data(), &g_, 0).value();
		touch(sh_.map, pages_, 1);
		io_.ioas.map_memory(sh_.map.data(), len_, kIova).value();
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "unmap", [this] { io_.ioas.unmap(kIova, len_).value(); } },
			    { "attributes",
			      [this] {
				      vm_.set_memory_attributes(kGpa, len_,
								KVM_MEMORY_ATTRIBUTE_PRIVATE)
					      .value();
			      } },
			    { "punch_shared", [this] { sh_.punch(len_); } },
			    { "alloc_private",
			      [this] {
				      g_.allocate(0, len_).value();
				      gmem_pages_ = pages_;
			      } } } },
			{ "to_shared",
			  { { "attributes",
			      [this] { vm_.set_memory_attributes(kGpa, len_, 0).value(); } },
			    { "punch_private",
			      [this] {
				      g_.punch_hole(0, len_).value();
				      gmem_pages_ = 0;
			      } },
			    { "map",
			      [this] {
				      io_.ioas.map_memory(sh_.map.data(), len_, kIova).value();
			      } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { gmem_pages_, sh_.pages() }; }

private:
	IommuCtx io_;
	Vm vm_;
	GuestMemfd g_;
	SharedBacking sh_;
	uint64_t gmem_pages_ = 0;
};

// Kernel memory counters of /proc/meminfo, in KiB (0 if absent).
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

// The page cache in KiB ("Cached") once its per-CPU counter deltas have
// been folded in: guest_memfd and memfd pages (shmem) are both page cache,
// so this counts exactly the pages backing a guest, whoever allocated them.
// Unlike MemFree it does not move with the pages that sit on the per-CPU
// free lists. vmstat folds the per-CPU deltas within a second
// (sysctl_stat_interval); wait until two reads 1.1 s apart agree (at most
// 10 s, then the last read). The previous case's pages leaving the page
// cache (KVM drops its file reference when the VM is destroyed) settle the
// same way.
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

// Slab growth in KiB from @before to now (0 if it shrank).
uint64_t slab_growth_kib(uint64_t before)
{
	const uint64_t now = meminfo_kib("Slab");
	return now > before ? now - before : 0;
}

// notify: the same round trip (to private, back to shared) of N shared
// pages that no one has mapped in a page table (the file is mmapped but
// never touched), with 0, 1 or 2 notifier clients: none (the file not bound
// to a memslot), KVM (bound), KVM and an IOAS (IOMMU_IOAS_MAP_FILE of the
// file, with no domain, or with the mock domain that then really maps the
// pages). With @alloc false nothing is allocated: the conversion changes
// the shareability state alone.
class NotifyConv : public Variant {
public:
	enum class IoasKind { none, bare, domain };

	NotifyConv(uint64_t pages, bool kvm, IoasKind ioas, bool alloc)
	    : Variant(pages), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE |
						      GUEST_MEMFD_FLAG_INIT_SHARED)
			 .value()),
	      m_(g_.map(0, len_).value()), alloc_(alloc)
	{
		if (alloc_)
			g_.allocate(0, len_).value();
		if (kvm)
			vm_.set_memory_region(kSlot, kGpa, len_, m_.data(), &g_, 0).value();
		if (ioas != IoasKind::none) {
			io_.emplace(IommuCtx::make(ioas == IoasKind::domain));
			io_->ioas.map_file(g_.fd(), 0, len_, kIova).value();
		}
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "to_private",
			  { { "convert", [this] { g_.convert_private(0, len_).value(); } } } },
			{ "to_shared",
			  { { "convert", [this] { g_.convert_shared(0, len_).value(); } } } },
		};
	}
	[[nodiscard]] MemCount memory() const override { return { resident_pages(m_), 0 }; }
	void check() override
	{
		// mincore() counts the file's uptodate folios: fallocate()
		// leaves them not uptodate (guest_memfd clears a page when it
		// is first used), MAP_FILE's lookups clear them. So it is a
		// fact, before and after the round trips, not a check.
		const uint64_t resident = resident_pages(m_);
		if (checked_) {
			resident_after_ = resident;
			return;
		}
		checked_ = true;
		resident_before_ = resident;
		if (!io_)
			return;
		auto st = io_->ioas.mirror_status(kIova).value();
		require(st.mapped_pages == pages_ && st.pending_pages == 0,
			"notify: the IOAS maps every shared page");
		g_.convert_private(0, len_).value();
		st = io_->ioas.mirror_status(kIova).value();
		require(st.mapped_pages == 0, "notify: the IOAS maps no private page");
		g_.convert_shared(0, len_).value();
	}

	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "uptodate_before", resident_before_ },
			 { "uptodate_after", resident_after_ } };
	}

private:
	Vm vm_;
	GuestMemfd g_;
	Mapping m_;
	std::optional<IommuCtx> io_;
	bool alloc_;
	bool checked_ = false;
	uint64_t resident_before_ = 0, resident_after_ = 0;
};

// frag: the shareability state of a 2N-page file, nothing allocated, no
// client. split: N pages become shared, either as N single pages every
// other page (N stretches, N ioctls) or as one range (one stretch, one
// ioctl); merge: the whole file back to private (one ioctl either way).
// The merge shows whether the cost follows stretches or pages; the slab
// growth of the split is the memory the state takes.
class FragConv : public Variant {
public:
	FragConv(uint64_t pages, bool alternating)
	    : Variant(pages), alternating_(alternating), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(2 * len_,
					GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE)
			 .value())
	{
		// Past 4096 stretches, one ioctl per page would take minutes
		// of a run. --frag-max overrides.
		if (alternating_ && pages_ > opts.frag_max)
			throw Skip{ "over --frag-max " + std::to_string(opts.frag_max) };
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "split", { { "convert", [this] { split(); } } } },
			{ "merge",
			  { { "convert", [this] { g_.convert_private(0, 2 * len_).value(); } } } },
		};
	}
	void check() override
	{
		if (measured_)
			return;
		measured_ = true;
		const uint64_t before = meminfo_kib("Slab");
		split();
		split_kib_ = slab_growth_kib(before);
		g_.convert_private(0, 2 * len_).value();
		merged_kib_ = slab_growth_kib(before);
	}
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "stretches", alternating_ ? pages_ : 1 },
			 { "slab_kib_split", split_kib_ },
			 { "slab_kib_merged", merged_kib_ } };
	}

private:
	void split()
	{
		if (!alternating_) {
			g_.convert_shared(0, len_).value();
			return;
		}
		for (uint64_t i = 0; i < pages_; i++)
			g_.convert_shared(2 * i * kPage, kPage).value();
	}

	bool alternating_;
	Vm vm_;
	GuestMemfd g_;
	bool measured_ = false;
	uint64_t split_kib_ = 0, merged_kib_ = 0;
};

// footprint: a guest of N pages that shares half of them, from the
// kernel's own counter (the growth of Cached in /proc/meminfo since before
// the set-up: the guest_memfd and memfd pages backing the guest), at
// rest, at the peak of a conversion storm and after it. The storm swaps
// which half is shared, 2 MiB at a time (one chunk goes private, one goes
// shared and the host touches it), then swaps back. in-place: one
// convertible guest_memfd. two-backing: 7.3 with a VMM that discards the
// side it drops (punches the hole); two-backing-keep: one that does not.
class Footprint : public Variant {
public:
	enum class Kind { in_place, two_backing, two_backing_keep };

	Footprint(uint64_t pages, Kind kind)
	    : Variant(pages), cached0_(settled_cached_kib()), kind_(kind), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, kind == Kind::in_place
						      ? GUEST_MEMFD_FLAG_MMAP |
								GUEST_MEMFD_FLAG_CONVERTIBLE
						      : 0)
			 .value()),
	      half_(pages / 2), chunk_(std::min<uint64_t>(512, pages / 2))
	{
		if (half_ == 0)
			throw Skip{ "footprint needs at least 2 pages" };
		if (pages_ > 16384)
			throw Skip{ "kept to 64 MiB (a storm touches every page twice)" };
		if (kind_ == Kind::in_place) {
			m_ = g_.map(0, len_).value();
			vm_.set_memory_region(kSlot, kGpa, len_, m_.data(), &g_, 0).value();
		} else {
			sh_.emplace(len_);
			vm_.set_memory_region(kSlot, kGpa, len_, sh_->map.data(), &g_, 0).value();
			vm_.set_memory_attributes(kGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE).value();
		}
		g_.allocate(0, len_).value();
		for (uint64_t i = 0; i < half_; i += chunk_)
			to_shared(i);
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "storm_out", { { "swap", [this] { storm(0, half_, nullptr); } } } },
			{ "storm_back", { { "swap", [this] { storm(half_, 0, nullptr); } } } },
		};
	}
	void check() override
	{
		if (measured_)
			return;
		measured_ = true;
		rest_ = used_kib();
		peak_ = rest_;
		storm(0, half_, &peak_);
		after_ = used_kib();
		storm(half_, 0, &peak_);
	}
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "kib_rest", rest_ }, { "kib_peak", peak_ }, { "kib_after", after_ } };
	}

private:
	[[nodiscard]] uint64_t used_kib() const
	{
		const uint64_t now = settled_cached_kib();
		return now > cached0_ ? now - cached0_ : 0;
	}
	// The pages [@shared, +half) go private and [@priv, +half) shared,
	// chunk by chunk; with @peak, the most memory in use after any chunk.
	void storm(uint64_t shared, uint64_t priv, uint64_t *peak)
	{
		for (uint64_t i = 0; i < half_; i += chunk_) {
			to_private(shared + i);
			to_shared(priv + i);
			if (peak)
				*peak = std::max(*peak, used_kib());
		}
	}
	void to_private(uint64_t first)
	{
		const uint64_t off = first * kPage, n = chunk_ * kPage;
		if (kind_ == Kind::in_place) {
			g_.convert_private(off, n).value();
			return;
		}
		vm_.set_memory_attributes(kGpa + off, n, KVM_MEMORY_ATTRIBUTE_PRIVATE).value();
		if (kind_ == Kind::two_backing &&
		    fallocate(sh_->fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      static_cast<off_t>(off), static_cast<off_t>(n)) < 0)
			throw CheckFailed{ std::string("punching the memfd: ") +
					   std::strerror(errno) };
		g_.allocate(off, n).value();
	}
	void to_shared(uint64_t first)
	{
		const uint64_t off = first * kPage, n = chunk_ * kPage;
		uint8_t *host = nullptr;
		if (kind_ == Kind::in_place) {
			g_.convert_shared(off, n).value();
			host = m_.data();
		} else {
			vm_.set_memory_attributes(kGpa + off, n, 0).value();
			if (kind_ == Kind::two_backing)
				g_.punch_hole(off, n).value();
			host = sh_->map.data();
		}
		for (uint64_t i = 0; i < chunk_; i++)
			host[off + i * kPage] = static_cast<uint8_t>(i);
	}

	uint64_t cached0_; // before anything of this case was set up
	Kind kind_;
	Vm vm_;
	GuestMemfd g_;
	Mapping m_;
	std::optional<SharedBacking> sh_;
	uint64_t half_, chunk_;
	bool measured_ = false;
	uint64_t rest_ = 0, peak_ = 0, after_ = 0;
};

// touch: what the guest pays after a conversion. A vCPU runs guest code
// (bench_guest.S) that writes the first word of each of N pages: its first
// touch of the converted pages, KVM's fault path included (NPT faults in a
// nested guest here). in-place: one convertible guest_memfd, convert then
// touch. two-backing (7.3): attributes, the dropped side punched; shared,
// the guest's touch faults the memfd's pages in; private, the pages are
// allocated first (fallocate), so that the private touch is KVM's fault
// path alone in both: a convertible slot asking the file for the state
// against 7.3's attributes.
class GuestTouch : public Variant {
public:
	static constexpr uint64_t kCodeSize = 64 * 1024;
	static constexpr uint64_t kEntry = 0x1000;
	static constexpr uint64_t kMailbox = 0x8000;
	static constexpr uint64_t kDataGpa = 1ULL << 30; // below 4 GiB: no paging
	static constexpr uint16_t kDonePort = 0xe0;

	GuestTouch(uint64_t pages, bool in_place)
	    : Variant(pages), in_place_(in_place), vm_(make_vm()),
	      g_(vm_.create_guest_memfd(len_, in_place ? GUEST_MEMFD_FLAG_MMAP |
								 GUEST_MEMFD_FLAG_CONVERTIBLE
						       : 0)
			 .value()),
	      code_(Mapping::anonymous(kCodeSize).value())
	{
		// A pass over 1 GiB is 262144 NPT faults of a nested guest, some
		// 10^10 instructions under TCG per round trip: too long a run.
		if (pages_ > 16384)
			throw Skip{ "kept to 64 MiB (nested NPT faults under TCG)" };
		std::memcpy(code_.data() + kEntry, bench_guest_start,
			    bench_guest_end - bench_guest_start);
		vm_.set_memory_region(0, 0, kCodeSize, code_.data()).value();
		if (in_place_) {
			m_ = g_.map(0, len_).value();
			vm_.set_memory_region(kSlot, kDataGpa, len_, m_.data(), &g_, 0).value();
		} else {
			sh_.emplace(len_);
			vm_.set_memory_region(kSlot, kDataGpa, len_, sh_->map.data(), &g_, 0)
				.value();
			vm_.set_memory_attributes(kDataGpa, len_, KVM_MEMORY_ATTRIBUTE_PRIVATE)
				.value();
		}
		g_.allocate(0, len_).value();
		vcpu_.emplace(vm_.create_vcpu(0).value());
		vcpu_->start_flat32(kEntry, 0xf000, kMailbox).value();
	}
	std::vector<Phase> round_trip() override
	{
		Step touch{ "guest_touch", [this] { guest_write(); } };
		if (in_place_)
			return {
				{ "to_shared",
				  { { "convert", [this] { g_.convert_shared(0, len_).value(); } },
				    touch } },
				{ "to_private",
				  { { "convert", [this] { g_.convert_private(0, len_).value(); } },
				    touch } },
			};
		return {
			{ "to_shared",
			  { { "attributes",
			      [this] { vm_.set_memory_attributes(kDataGpa, len_, 0).value(); } },
			    { "punch_private", [this] { g_.punch_hole(0, len_).value(); } },
			    touch } },
			{ "to_private",
			  { { "attributes",
			      [this] {
				      vm_.set_memory_attributes(kDataGpa, len_,
								KVM_MEMORY_ATTRIBUTE_PRIVATE)
					      .value();
			      } },
			    { "punch_shared", [this] { sh_->punch(len_); } },
			    { "alloc_private", [this] { g_.allocate(0, len_).value(); } },
			    touch } },
		};
	}
	void check() override
	{
		// The guest's writes to shared pages are what the host sees.
		auto phases = round_trip();
		for (auto &st : phases[0].steps)
			st.fn();
		const uint8_t *host = in_place_ ? m_.data() : sh_->map.data();
		for (uint64_t i = 0; i < pages_; i++)
			require(host[i * kPage] == 1, "touch: the guest wrote every shared page");
		for (auto &st : phases[1].steps)
			st.fn();
	}

private:
	// One KVM_RUN: the guest writes 1 to the first word of every page.
	void guest_write()
	{
		auto *mb = reinterpret_cast<uint32_t *>(code_.data() + kMailbox);
		mb[0] = static_cast<uint32_t>(kDataGpa);
		mb[1] = static_cast<uint32_t>(pages_);
		mb[2] = 1;
		auto r = vcpu_->run();
		const kvm_run *run = vcpu_->run_area();
		if (!r.has_value() || run->exit_reason != KVM_EXIT_IO || run->io.port != kDonePort)
			throw CheckFailed{ "touch: KVM_RUN " +
					   (r.has_value() ? std::string("ok")
							  : r.error().message()) +
					   ", exit " + std::to_string(run->exit_reason) };
	}

	bool in_place_;
	Vm vm_;
	GuestMemfd g_;
	Mapping code_;
	Mapping m_;
	std::optional<SharedBacking> sh_;
	std::optional<gmem::Vcpu> vcpu_;
};

// sparse: IOMMU_IOAS_MAP_FILE and unmap of a whole convertible guest_memfd
// with N shared, allocated pages: a sparse 1 TiB file with the N pages in
// (up to) 4 stretches 256 GiB apart, against a file of exactly N pages, all
// shared. The IOAS has no domain (the mock's aperture is 2 GiB): the
// mirror walks the file and records the pages it would map. Cost and the
// slab growth of the map should follow N, not the file's size.
class SparseMap : public Variant {
public:
	static constexpr uint64_t kTiB = 1ULL << 40;

	SparseMap(uint64_t pages, bool sparse)
	    : Variant(pages), io_(IommuCtx::make(false)), vm_(make_vm()),
	      size_(sparse ? kTiB : len_),
	      g_(vm_.create_guest_memfd(size_, GUEST_MEMFD_FLAG_CONVERTIBLE).value())
	{
		const uint64_t n = sparse && pages_ >= 4 ? 4 : 1;
		const uint64_t per = pages_ / n * kPage;
		for (uint64_t i = 0; i < n; i++) {
			const uint64_t off = sparse ? i * (kTiB / 4) : i * per;
			g_.convert_shared(off, per).value();
			g_.allocate(off, per).value();
		}
		stretches_ = sparse ? n : 1;
	}
	std::vector<Phase> round_trip() override
	{
		return {
			{ "map",
			  { { "ioctl",
			      [this] {
				      iova_ = io_.ioas.map_file(g_.fd(), 0, size_, {}).value();
			      } } } },
			{ "unmap",
			  { { "ioctl", [this] { io_.ioas.unmap(iova_, size_).value(); } } } },
		};
	}
	void check() override
	{
		const uint64_t before = meminfo_kib("Slab");
		iova_ = io_.ioas.map_file(g_.fd(), 0, size_, {}).value();
		map_kib_ = slab_growth_kib(before);
		auto st = io_.ioas.mirror_status(iova_).value();
		require(st.mapped_pages == pages_ && st.pending_pages == 0,
			"sparse: the mirror records exactly the shared, allocated pages (" +
				std::to_string(st.mapped_pages) + ")");
		io_.ioas.unmap(iova_, size_).value();
	}
	[[nodiscard]] std::map<std::string, uint64_t> facts() const override
	{
		return { { "file_mib", size_ >> 20 },
			 { "stretches", stretches_ },
			 { "slab_kib_mapped", map_kib_ } };
	}

private:
	IommuCtx io_;
	Vm vm_;
	uint64_t size_;
	GuestMemfd g_;
	uint64_t iova_ = 0;
	uint64_t stretches_ = 0;
	uint64_t map_kib_ = 0;
};

// --- Groups: the variants compared side by side; the first is the
// series' way, the baseline of the ratios.

struct VariantDef {
	std::string name;
	std::function<std::unique_ptr<Variant>(uint64_t)> make;
	// Changes state only, no per-page work: not limited by --full-pages.
	bool state_only = false;
};

struct Group {
	std::string name;
	std::string title;
	std::vector<std::string> phases; // table rows, in order
	std::vector<VariantDef> variants;
	bool memory = false;
};

std::unique_ptr<Variant> notify(uint64_t pages, bool kvm, NotifyConv::IoasKind ioas)
{
	return std::make_unique<NotifyConv>(pages, kvm, ioas, true);
}

std::vector<Group> groups()
{
	return {
		{ "conv",
		  "conversion of N pages: in place vs two backings (7.3)",
		  { "to_shared", "to_private", "round_trip" },
		  { { "in-place", [](uint64_t n) { return std::make_unique<InPlaceConv>(n); } },
		    { "two-backing",
		      [](uint64_t n) { return std::make_unique<TwoBackingConv>(n, false); } },
		    { "two-backing+copy",
		      [](uint64_t n) { return std::make_unique<TwoBackingConv>(n, true); } } },
		  true },
		{ "iommu-map",
		  "IOAS map/unmap of N pages, one domain: mirror vs pinned",
		  { "map", "unmap", "round_trip" },
		  { { "mirror", [](uint64_t n) { return std::make_unique<MapMirror>(n); } },
		    { "pin-memfd-MAP",
		      [](uint64_t n) { return std::make_unique<MapPinned>(n, false); } },
		    { "pin-memfd-MAP_FILE",
		      [](uint64_t n) { return std::make_unique<MapPinned>(n, true); } } },
		  false },
		{ "iommu-conv",
		  "conversion of N DMA-mapped pages: mirror vs unmap/convert/re-map",
		  { "to_private", "to_shared", "round_trip" },
		  { { "mirror", [](uint64_t n) { return std::make_unique<ConvMirror>(n); } },
		    { "pin-in-place",
		      [](uint64_t n) { return std::make_unique<ConvPinnedInPlace>(n); } },
		    { "pin-two-backing",
		      [](uint64_t n) { return std::make_unique<ConvPinnedTwoBacking>(n); } } },
		  true },
		{ "notify",
		  "conversion of N shared pages nobody maps: 0, 1, 2 notifier clients",
		  { "to_private", "to_shared", "round_trip" },
		  { { "none",
		      [](uint64_t n) { return notify(n, false, NotifyConv::IoasKind::none); } },
		    { "kvm",
		      [](uint64_t n) { return notify(n, true, NotifyConv::IoasKind::none); } },
		    { "kvm+ioas",
		      [](uint64_t n) { return notify(n, true, NotifyConv::IoasKind::bare); } },
		    { "kvm+ioas+domain",
		      [](uint64_t n) { return notify(n, true, NotifyConv::IoasKind::domain); } },
		    { "none-holes",
		      [](uint64_t n) {
			      return std::make_unique<NotifyConv>(
				      n, false, NotifyConv::IoasKind::none, false);
		      },
		      true } },
		  false },
		{ "frag",
		  "state of a 2N-page file: N single shared pages vs one range of N",
		  { "split", "merge", "round_trip" },
		  { { "one-range", [](uint64_t n) { return std::make_unique<FragConv>(n, false); },
		      true },
		    { "alternating",
		      [](uint64_t n) { return std::make_unique<FragConv>(n, true); } } },
		  false },
		{ "footprint",
		  "a guest sharing half of N pages: memory used at rest, storm peak, after",
		  { "storm_out", "storm_back", "round_trip" },
		  { { "in-place",
		      [](uint64_t n) {
			      return std::make_unique<Footprint>(n, Footprint::Kind::in_place);
		      } },
		    { "two-backing",
		      [](uint64_t n) {
			      return std::make_unique<Footprint>(n, Footprint::Kind::two_backing);
		      } },
		    { "two-backing-keep",
		      [](uint64_t n) {
			      return std::make_unique<Footprint>(n,
								 Footprint::Kind::two_backing_keep);
		      } } },
		  false },
		{ "touch",
		  "guest's first touch of N converted pages (vCPU running): in place vs two "
		  "backings",
		  { "to_shared", "to_private", "round_trip" },
		  { { "in-place",
		      [](uint64_t n) { return std::make_unique<GuestTouch>(n, true); } },
		    { "two-backing",
		      [](uint64_t n) { return std::make_unique<GuestTouch>(n, false); } } },
		  false },
		{ "sparse",
		  "MAP_FILE of N shared pages: a file of N pages vs a sparse 1 TiB file",
		  { "map", "unmap", "round_trip" },
		  { { "file-N", [](uint64_t n) { return std::make_unique<SparseMap>(n, false); } },
		    { "file-1TiB",
		      [](uint64_t n) { return std::make_unique<SparseMap>(n, true); } } },
		  false },
	};
}

// --- Running and reporting

struct Peak {
	MemCount start; // the state each round trip starts from
	MemCount peak;	// the most pages allocated at any step of a round trip
};

struct Outcome {
	std::map<std::string, bench::Stats> stats; // phase or "phase.step"
	std::optional<Peak> mem;
	std::map<std::string, uint64_t> facts;
	std::string skipped; // non-empty: why the case did not run
	std::string failed;  // non-empty: what went wrong
};

// results[group][variant][pages]
std::map<std::string, std::map<std::string, std::map<uint64_t, Outcome>>> results;
int failures = 0;

// Timed and untimed round trips for N pages: big sizes get fewer.
std::pair<int, int> reps_for(uint64_t pages)
{
	if (pages < opts.big_pages)
		return { opts.reps, opts.warmup };
	return { std::min(opts.reps, opts.big_reps), std::min(opts.warmup, opts.big_warmup) };
}

Outcome run_case(const VariantDef &def, uint64_t pages)
{
	Outcome out;
	try {
		if (!def.state_only && pages > opts.full_pages)
			throw Skip{ "over --full-pages " + std::to_string(opts.full_pages) +
				    " (per-page work; run time)" };
		auto v = def.make(pages);
		v->check();
		auto phases = v->round_trip();
		std::map<std::string, std::vector<uint64_t>> samples;
		const auto [reps, warmup] = reps_for(pages);
		for (int r = 0; r < warmup + reps; r++) {
			const bool keep = r >= warmup;
			const uint64_t rt0 = bench::now_ns();
			for (auto &ph : phases) {
				const uint64_t t0 = bench::now_ns();
				uint64_t prev = t0;
				for (auto &st : ph.steps) {
					st.fn();
					const uint64_t t = bench::now_ns();
					if (keep)
						samples[ph.name + "." + st.name].push_back(t -
											   prev);
					prev = t;
				}
				if (keep)
					samples[ph.name].push_back(prev - t0);
			}
			if (keep)
				samples["round_trip"].push_back(bench::now_ns() - rt0);
		}
		// One more round trip, untimed, counting pages after every step.
		Peak p;
		p.start = p.peak = v->memory();
		for (auto &ph : phases)
			for (auto &st : ph.steps) {
				st.fn();
				const MemCount m = v->memory();
				if (m.total() > p.peak.total())
					p.peak = m;
			}
		out.mem = p;
		out.facts = v->facts();
		v->check();
		for (auto &[name, s] : samples)
			out.stats[name] = bench::summarize(s);
	} catch (const Skip &s) {
		out.skipped = s.why;
	} catch (const CheckFailed &c) {
		out.failed = c.what;
	} catch (const gmem::SysErrorException &e) {
		out.failed = e.error().message();
	}
	if (!out.failed.empty())
		failures++;
	return out;
}

double scaled(double ns)
{
	return ns / 1000.0;
}

std::string cell(const Outcome &o, const std::string &phase)
{
	char buf[64];
	if (!o.skipped.empty())
		return "skipped";
	if (!o.failed.empty())
		return "FAILED";
	auto it = o.stats.find(phase);
	if (it == o.stats.end())
		return "-";
	std::snprintf(buf, sizeof(buf), "%9.1f [%3.0f%%]", scaled(it->second.median),
		      it->second.iqr_pct());
	return buf;
}

std::optional<double> median(const Outcome &o, const std::string &phase)
{
	if (!o.skipped.empty() || !o.failed.empty())
		return std::nullopt;
	auto it = o.stats.find(phase);
	if (it == o.stats.end() || it->second.median <= 0)
		return std::nullopt;
	return it->second.median;
}

void print_group(const Group &g)
{
	auto &res = results[g.name];
	const std::string &base = g.variants.front().name;
	std::printf("\n== %s: %s\n", g.name.c_str(), g.title.c_str());
	std::printf("   median %s [IQR as %% of median] of %d reps (%d from %llu pages on); "
		    "ratio = other / %s\n",
		    table_unit(), opts.reps, std::min(opts.reps, opts.big_reps),
		    static_cast<unsigned long long>(opts.big_pages), base.c_str());
	std::printf("%6s %-11s", "pages", "phase");
	for (auto &v : g.variants)
		std::printf(" %19s", v.name.c_str());
	for (size_t i = 1; i < g.variants.size(); i++)
		std::printf(" %18s", ("x " + g.variants[i].name).c_str());
	std::printf("\n");
	for (uint64_t n : opts.pages) {
		for (auto &ph : g.phases) {
			std::printf("%6llu %-11s", static_cast<unsigned long long>(n), ph.c_str());
			for (auto &v : g.variants)
				std::printf(" %19s", cell(res[v.name][n], ph).c_str());
			auto b = median(res[base][n], ph);
			for (size_t i = 1; i < g.variants.size(); i++) {
				auto o = median(res[g.variants[i].name][n], ph);
				if (b && o)
					std::printf(" %17.2fx", *o / *b);
				else
					std::printf(" %18s", "-");
			}
			std::printf("\n");
		}
	}
	// Why a case did not run, once per variant and reason.
	for (auto &v : g.variants) {
		std::set<std::string> said;
		for (uint64_t n : opts.pages) {
			const Outcome &o = res[v.name][n];
			std::string why;
			if (!o.skipped.empty())
				why = "skipped: " + o.skipped;
			else if (!o.failed.empty())
				why = "FAILED (" + std::to_string(n) + " pages): " + o.failed;
			if (!why.empty() && said.insert(why).second)
				std::printf("   %s %s\n", v.name.c_str(), why.c_str());
		}
	}
	for (auto &v : g.variants)
		for (uint64_t n : opts.pages)
			for (auto &[k, val] : res[v.name][n].facts)
				std::printf("   %s, %llu pages: %s %llu\n", v.name.c_str(),
					    static_cast<unsigned long long>(n), k.c_str(),
					    static_cast<unsigned long long>(val));
	if (!g.memory)
		return;
	std::printf("\n   %s memory: pages allocated (guest_memfd + shared backing), "
		    "at rest / peak over a round trip\n",
		    g.name.c_str());
	std::printf("%6s", "pages");
	for (auto &v : g.variants)
		std::printf(" %27s", v.name.c_str());
	std::printf("\n");
	for (uint64_t n : opts.pages) {
		std::printf("%6llu", static_cast<unsigned long long>(n));
		for (auto &v : g.variants) {
			const Outcome &o = res[v.name][n];
			char buf[64] = "-";
			if (o.mem)
				std::snprintf(buf, sizeof(buf), "%llu / %llu (%llu+%llu)",
					      static_cast<unsigned long long>(o.mem->start.total()),
					      static_cast<unsigned long long>(o.mem->peak.total()),
					      static_cast<unsigned long long>(o.mem->peak.gmem),
					      static_cast<unsigned long long>(o.mem->peak.shared));
			std::printf(" %27s", buf);
		}
		std::printf("\n");
	}
}

void print_machine(const Group &g)
{
	auto &res = results[g.name];
	const std::string &base = g.variants.front().name;
	for (auto &v : g.variants)
		for (uint64_t n : opts.pages) {
			const Outcome &o = res[v.name][n];
			const std::string pre = g.name + "." + v.name + ".";
			const std::string suf = ".p" + std::to_string(n);
			if (!o.skipped.empty() || !o.failed.empty()) {
				std::printf("BENCH %sstatus%s %s -\n", pre.c_str(), suf.c_str(),
					    o.failed.empty() ? "skipped" : "failed");
				continue;
			}
			for (auto &[name, s] : o.stats) {
				const bool phase = name.find('.') == std::string::npos;
				if (!phase && !opts.steps) {
					std::printf("BENCH %s%s%s.median %.0f %s\n", pre.c_str(),
						    name.c_str(), suf.c_str(), s.median, unit());
					continue;
				}
				std::printf("BENCH %s%s%s.median %.0f %s\n", pre.c_str(),
					    name.c_str(), suf.c_str(), s.median, unit());
				std::printf("BENCH %s%s%s.iqr %.1f %%\n", pre.c_str(), name.c_str(),
					    suf.c_str(), s.iqr_pct());
				std::printf("BENCH %s%s%s.min %.0f %s\n", pre.c_str(), name.c_str(),
					    suf.c_str(), s.min, unit());
				std::printf("BENCH %s%s%s.max %.0f %s\n", pre.c_str(), name.c_str(),
					    suf.c_str(), s.max, unit());
			}
			for (auto &[k, val] : o.facts)
				std::printf("BENCH %s%s%s %llu -\n", pre.c_str(), k.c_str(),
					    suf.c_str(), static_cast<unsigned long long>(val));
			if (o.mem && g.memory) {
				std::printf("BENCH mem.%s.%s.rest%s %llu pages\n", g.name.c_str(),
					    v.name.c_str(), suf.c_str(),
					    static_cast<unsigned long long>(o.mem->start.total()));
				std::printf("BENCH mem.%s.%s.peak%s %llu pages\n", g.name.c_str(),
					    v.name.c_str(), suf.c_str(),
					    static_cast<unsigned long long>(o.mem->peak.total()));
			}
		}
	for (size_t i = 1; i < g.variants.size(); i++)
		for (uint64_t n : opts.pages)
			for (auto &ph : g.phases) {
				auto b = median(res[base][n], ph);
				auto o = median(res[g.variants[i].name][n], ph);
				if (b && o)
					std::printf("BENCH ratio.%s.%s/%s.%s.p%llu %.3f x\n",
						    g.name.c_str(), g.variants[i].name.c_str(),
						    base.c_str(), ph.c_str(),
						    static_cast<unsigned long long>(n), *o / *b);
			}
}

// --- JSON: everything the tables and BENCH lines hold, for the report
// script (harness/bench-report.py).

std::string json_str(const std::string &v)
{
	std::string o = "\"";
	for (char c : v) {
		if (c == '"' || c == '\\')
			o += '\\';
		if (static_cast<unsigned char>(c) < 0x20) {
			char buf[8];
			std::snprintf(buf, sizeof(buf), "\\u%04x", c);
			o += buf;
			continue;
		}
		o += c;
	}
	return o + "\"";
}

std::string json_stats(const bench::Stats &s)
{
	char buf[256];
	std::snprintf(buf, sizeof(buf),
		      "{\"n\": %zu, \"median\": %.0f, \"p25\": %.0f, \"p75\": %.0f, "
		      "\"min\": %.0f, \"max\": %.0f}",
		      s.n, s.median, s.p25, s.p75, s.min, s.max);
	return buf;
}

std::string json_outcome(const Outcome &o)
{
	std::string j = "{\"status\": ";
	j += json_str(!o.failed.empty() ? "failed" : !o.skipped.empty() ? "skipped" : "ok");
	if (!o.failed.empty() || !o.skipped.empty())
		j += ", \"why\": " + json_str(o.failed.empty() ? o.skipped : o.failed);
	j += ", \"stats\": {";
	const char *sep = "";
	for (auto &[name, st] : o.stats) {
		j += sep + json_str(name) + ": " + json_stats(st);
		sep = ", ";
	}
	j += "}, \"facts\": {";
	sep = "";
	for (auto &[k, val] : o.facts) {
		j += sep + json_str(k) + ": " + std::to_string(val);
		sep = ", ";
	}
	j += "}";
	if (o.mem)
		j += ", \"mem\": {\"rest\": " + std::to_string(o.mem->start.total()) +
		     ", \"peak\": " + std::to_string(o.mem->peak.total()) +
		     ", \"peak_gmem\": " + std::to_string(o.mem->peak.gmem) +
		     ", \"peak_shared\": " + std::to_string(o.mem->peak.shared) + "}";
	return j + "}";
}

void write_json(const std::vector<Group> &all, const std::map<std::string, std::string> &env)
{
	std::FILE *f = std::fopen(opts.json.c_str(), "w");
	if (!f) {
		std::printf("gmem-bench: cannot write %s: %s\n", opts.json.c_str(),
			    std::strerror(errno));
		failures++;
		return;
	}
	std::fprintf(f, "{\n  \"unit\": %s,\n  \"env\": {", json_str(unit()).c_str());
	const char *sep = "";
	for (auto &[k, v] : env) {
		std::fprintf(f, "%s%s: %s", sep, json_str(k).c_str(), json_str(v).c_str());
		sep = ", ";
	}
	std::fprintf(f, "},\n  \"groups\": {");
	sep = "";
	for (auto &g : all) {
		if (!opts.groups.count(g.name))
			continue;
		std::fprintf(f, "%s\n    %s: {\"title\": %s, \"phases\": [", sep,
			     json_str(g.name).c_str(), json_str(g.title).c_str());
		sep = ",";
		const char *s2 = "";
		for (auto &ph : g.phases) {
			std::fprintf(f, "%s%s", s2, json_str(ph).c_str());
			s2 = ", ";
		}
		std::fprintf(f, "], \"variants\": {");
		s2 = "";
		for (auto &v : g.variants) {
			std::fprintf(f, "%s\n      %s: {", s2, json_str(v.name).c_str());
			s2 = ",";
			const char *s3 = "";
			for (uint64_t n : opts.pages) {
				std::fprintf(f, "%s\n        \"%llu\": %s", s3,
					     static_cast<unsigned long long>(n),
					     json_outcome(results[g.name][v.name][n]).c_str());
				s3 = ",";
			}
			std::fprintf(f, "}");
		}
		std::fprintf(f, "}}");
	}
	std::fprintf(f, "\n  }\n}\n");
	std::fclose(f);
}

bool kallsyms_has(const std::string &sym)
{
	std::ifstream f("/proc/kallsyms");
	std::string line;
	const std::string want = " " + sym;
	while (std::getline(f, line))
		if (line.size() >= want.size() &&
		    line.compare(line.size() - want.size(), want.size(), want) == 0)
			return true;
	return false;
}

std::map<std::string, std::string> print_header()
{
	utsname u{};
	uname(&u);
	const bool lockdep = access("/proc/lockdep", F_OK) == 0;
	const bool kasan = kallsyms_has("kasan_report");
	std::printf("gmem-bench: kernel %s (%s), config %s, clock %s, %d reps after %d warm-up\n",
		    u.release, opts.source.c_str(), opts.config.c_str(),
		    opts.icount ? "QEMU -icount shift=0 (1 ns = 1 guest instruction)"
				: "CLOCK_MONOTONIC (wall time under TCG)",
		    opts.reps, opts.warmup);
	std::printf(
		"BENCH env.kasan %d bool\nBENCH env.lockdep %d bool\nBENCH env.icount %d bool\n",
		kasan, lockdep, opts.icount);
	std::printf("BENCH env.aslr %d bool\n", !(personality(0xffffffff) & ADDR_NO_RANDOMIZE));
	std::printf("BENCH env.config %s name\nBENCH env.source %s -\n", opts.config.c_str(),
		    opts.source.c_str());
	std::printf("IOMMU domain of the iommu-* cases: %s\nBENCH env.device %s name\n",
		    opts.edu ? "edu through VFIO, behind the machine's emulated IOMMU "
			       "(strict invalidation)"
			     : "iommufd's mock domain (software page table, no IOTLB)",
		    opts.edu ? "edu" : "mock");
	// What one clock read costs: it is inside every figure once (phases)
	// or once per step.
	std::vector<uint64_t> d;
	for (int i = 0; i < 201; i++) {
		const uint64_t t0 = bench::now_ns();
		d.push_back(bench::now_ns() - t0);
	}
	const bench::Stats c = bench::summarize(d);
	std::printf("clock read: median %.0f %s (inside every figure once per step)\n", c.median,
		    unit());
	std::printf("BENCH env.clock_read %.0f %s\n", c.median, unit());
	if (kasan || lockdep) {
		std::printf("\n"
			    "************************************************************\n"
			    "** WARNING: this kernel has %s%s%s: timings are\n"
			    "** distorted (instrumented memory accesses and locks). Use\n"
			    "** the perf config for figures worth quoting.\n"
			    "************************************************************\n",
			    kasan ? "KASAN" : "", kasan && lockdep ? " and " : "",
			    lockdep ? "lockdep" : "");
	}
	std::fflush(stdout);
	return { { "kernel", u.release },
		 { "source", opts.source },
		 { "config", opts.config },
		 { "icount", opts.icount ? "1" : "0" },
		 { "kasan", kasan ? "1" : "0" },
		 { "lockdep", lockdep ? "1" : "0" },
		 { "device", opts.edu ? "edu" : "mock" },
		 { "clock_read", std::to_string(static_cast<uint64_t>(c.median)) },
		 { "reps", std::to_string(opts.reps) },
		 { "warmup", std::to_string(opts.warmup) },
		 { "big_pages", std::to_string(opts.big_pages) },
		 { "big_reps", std::to_string(opts.big_reps) },
		 { "big_warmup", std::to_string(opts.big_warmup) } };
}

[[noreturn]] void usage(int rc)
{
	std::fprintf(rc ? stderr : stdout,
		     "Usage: gmem-bench [--reps N] [--warmup N] [--pages N|SIZE,...]\n"
		     "                  [--big-pages N] [--big-reps N] [--big-warmup N]\n"
		     "                  [--full-pages N] [--frag-max N]\n"
		     "                  [--only conv,iommu-map,iommu-conv,notify,frag,sparse,\n"
		     "                          footprint,touch]\n"
		     "                  [--steps] [--aslr] [--json FILE]\n"
		     "                  [--icount] [--config NAME] [--source ID]\n"
		     "                  [--device mock|edu]\n"
		     "  --pages   page counts, or sizes with K, M, G (default 4K,2M,64M,1G)\n"
		     "  --big-*   from --big-pages pages on (default 16384), at most\n"
		     "            --big-reps (3) timed and --big-warmup (1) untimed round trips\n"
		     "  --json    also write every figure to FILE as JSON\n"
		     "  --full-pages N  cases with per-page work skip sizes above N\n"
		     "  --frag-max N    frag's alternating split up to N stretches (4096)\n"
		     "  --device  the iommu-* cases' domain: iommufd's mock (default) or QEMU's\n"
		     "            edu device behind the machine's emulated IOMMU\n"
		     "  --icount  label figures as guest instructions (QEMU -icount shift=0)\n"
		     "  --config  the kernel config's name, for the report\n"
		     "  --source  what the kernel was built from, for the report\n"
		     "  --steps   quartiles and extremes of every step, not only of phases\n"
		     "  --aslr    keep address-space randomisation (default: off, for\n"
		     "            figures that repeat across runs)\n"
		     "Exit: 0 all ran, 1 a case failed, 4 every case was skipped.\n");
	std::exit(rc);
}

// Page counts; a K, M or G suffix gives a size in bytes instead
// ("4K,2M,64M,1G" is 1,512,16384,262144).
std::vector<uint64_t> parse_list(const std::string &s)
{
	std::vector<uint64_t> v;
	std::stringstream ss(s);
	std::string item;
	while (std::getline(ss, item, ',')) {
		size_t end = 0;
		uint64_t n = std::stoull(item, &end);
		const std::string suf = item.substr(end);
		if (suf == "K" || suf == "M" || suf == "G") {
			const int shift = suf == "K" ? 10 : suf == "M" ? 20 : 30;
			n = (n << shift) / kPage;
		} else if (!suf.empty()) {
			usage(2);
		}
		v.push_back(n);
	}
	return v;
}

} // namespace

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const std::string a = argv[i];
		auto next = [&]() -> std::string {
			if (i + 1 >= argc)
				usage(2);
			return argv[++i];
		};
		if (a == "--reps")
			opts.reps = std::stoi(next());
		else if (a == "--warmup")
			opts.warmup = std::stoi(next());
		else if (a == "--pages")
			opts.pages = parse_list(next());
		else if (a == "--big-pages")
			opts.big_pages = std::stoull(next());
		else if (a == "--big-reps")
			opts.big_reps = std::stoi(next());
		else if (a == "--frag-max")
			opts.frag_max = std::stoull(next());
		else if (a == "--full-pages")
			opts.full_pages = std::stoull(next());
		else if (a == "--big-warmup")
			opts.big_warmup = std::stoi(next());
		else if (a == "--json")
			opts.json = next();
		else if (a == "--only") {
			opts.groups.clear();
			std::stringstream ss(next());
			std::string g;
			while (std::getline(ss, g, ','))
				opts.groups.insert(g);
		} else if (a == "--icount")
			opts.icount = true;
		else if (a == "--config")
			opts.config = next();
		else if (a == "--source")
			opts.source = next();
		else if (a == "--steps")
			opts.steps = true;
		else if (a == "--aslr")
			opts.aslr = true;
		else if (a == "--device") {
			const std::string d = next();
			if (d != "mock" && d != "edu")
				usage(2);
			opts.edu = d == "edu";
		} else if (a == "--help" || a == "-h")
			usage(0);
		else
			usage(2);
	}
	if (opts.reps < 1 || opts.big_reps < 1 || opts.pages.empty())
		usage(2);
	for (uint64_t n : opts.pages)
		if (n == 0 || n * kPage > MOCK_APERTURE_LAST - MOCK_APERTURE_START)
			usage(2);

	// Address-space randomisation moves the buffers relative to page-table
	// boundaries, which changes the cost of page-table walks (GUP, zaps)
	// from one run to the next: run with a fixed layout, so that -icount
	// figures repeat across boots.
	if (!opts.aslr) {
		const int pers = personality(0xffffffff);
		if (pers != -1 && !(pers & ADDR_NO_RANDOMIZE) &&
		    personality(static_cast<unsigned long>(pers) | ADDR_NO_RANDOMIZE) != -1) {
			execv("/proc/self/exe", argv);
			// Not fatal: go on with a random layout.
		}
	}
	const auto env = print_header();
	const auto all = groups();
	int ran = 0;
	for (auto &g : all) {
		if (!opts.groups.count(g.name))
			continue;
		for (uint64_t n : opts.pages)
			for (auto &v : g.variants) {
				const uint64_t t0 = bench::now_ns();
				Outcome o = run_case(v, n);
				std::string note;
				if (!o.skipped.empty())
					note = ", skipped: " + o.skipped;
				else if (!o.failed.empty())
					note = ", FAILED: " + o.failed;
				std::printf("  ran %s/%s/%llu pages in %.1f ms%s\n", g.name.c_str(),
					    v.name.c_str(), static_cast<unsigned long long>(n),
					    static_cast<double>(bench::now_ns() - t0) / 1e6,
					    note.c_str());
				std::fflush(stdout);
				if (o.skipped.empty())
					ran++;
				results[g.name][v.name][n] = std::move(o);
			}
	}
	for (auto &g : all)
		if (opts.groups.count(g.name))
			print_group(g);
	std::printf("\n");
	for (auto &g : all)
		if (opts.groups.count(g.name))
			print_machine(g);
	if (!opts.json.empty())
		write_json(all, env);
	std::printf("\ngmem-bench: %d case(s) ran, %d failed\n", ran, failures);
	if (failures)
		return 1;
	return ran ? 0 : 4;
}
