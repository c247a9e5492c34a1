// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// gmem-demo: a minimal VMM that runs a KVM_X86_SW_PROTECTED_VM whose data
// lives in one convertible guest_memfd, and converts the guest's pages
// between private and shared in place when the guest asks (MAP_GPA_RANGE
// hypercall): the same pages, no second backing, no copy. Once the guest
// has shared a buffer, the VMM gives the guest_memfd to a device through an
// iommufd IOAS (IOMMU_IOAS_MAP_FILE, nothing pinned) and shows the IOMMU
// following every conversion and hole punch on its own. It narrates each
// step, checks what it can see from the host, prints a summary, and exits
// non-zero if any check failed.
//
// The device is a real one when the machine has it: QEMU's edu DMA device
// behind an emulated IOMMU (harness/demo.sh boots a q35 machine with
// VT-d), bound to vfio-pci and attached to the IOAS through its iommufd
// cdev; after each step the device reads every page of the guest's data
// by DMA and the demo shows which reads brought the page and which the
// IOMMU refused. Without one, iommufd's test-only mock device
// (CONFIG_IOMMUFD_TEST) stands in and the demo shows its page table.
//
// Usage: gmem-demo [--require-iommu] [--device=auto|edu|mock]
//                  [--uapi=convert|attributes2]
//   auto (the default): edu if the machine has one, else the mock. Without
//   either the IOMMU steps are skipped; --require-iommu turns that skip
//   into a failure. --uapi picks the conversion interface:
//   KVM_GMEM_CONVERT_SHARED/PRIVATE (the default) or linux-next's
//   KVM_SET_MEMORY_ATTRIBUTES2.
#include <asm/kvm_para.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "gmem/guest.h"
#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "gmem/layout.h"
#include "gmem/vfio.h"
// Test-only: a userspace driver for QEMU's edu device (a VMM hands its
// assigned device to the guest instead of driving it), and the mock IOMMU
// device of CONFIG_IOMMUFD_TEST.
#include "mock/edu.h"
#include "mock/host_access.h"
#include "mock/iommufd_mock.h"

extern "C" const uint8_t demo_guest_start[], demo_guest_end[], demo_guest_message[];

namespace {

using gmem::layout::kDataGpa;
using gmem::layout::kPage;
constexpr uint64_t kDataPages = 16;
constexpr uint64_t kDataSize = kDataPages * kPage;
constexpr uint64_t kSharedPages = 4; // the message pages, shared first
constexpr uint64_t kDmaPages = 8;    // shared next, after them
constexpr uint64_t kDiscardPage = 8; // first of the 4 pages the guest frees
constexpr uint64_t kDiscardPages = 4;
// The guest reports each step done with an "out" of its number to
// GMEM_DONE_PORT, a failure it saw to GMEM_FAIL_PORT.
constexpr uint16_t kStepPort = gmem::layout::kDonePort;
constexpr uint16_t kFailPort = gmem::layout::kFailPort;
constexpr uint32_t kSecret = 0x31565250; // "PRV1"
// The device sees guest memory at IOVA = GPA, as an assigned device does.
constexpr uint64_t kIova = kDataGpa;
static_assert(kIova >= MOCK_APERTURE_START && kIova + kDataSize - 1 <= MOCK_APERTURE_LAST,
	      "the data must lie in the mock IOMMU's aperture");
static_assert(kDataPages <= 32, "page masks are 32 bits");
static_assert(kIova + kDataSize <= gmem::testing::kEduDmaLimit, "edu's DMA mask is 28 bits");
// Two pinned pages of ordinary memory for the real device: markers and
// patterns go in from the first, its buffer comes back into the second.
constexpr uint64_t kScratchIova = 0x200000;
constexpr uint8_t kMarker = 0xee;
constexpr uint64_t kSlot = 64; // bytes the device reads of each page

enum class DeviceKind { kAuto, kEdu, kMock };

int failures = 0;

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	std::vprintf(fmt, ap);
	va_end(ap);
	std::fflush(stdout);
}

bool check(bool ok, const char *fmt, ...)
{
	say("    [%s] ", ok ? " ok " : "FAIL");
	va_list ap;
	va_start(ap, fmt);
	std::vprintf(fmt, ap);
	va_end(ap);
	say("\n");
	if (!ok)
		failures++;
	return ok;
}

struct Stats {
	uint64_t to_shared_pages = 0;
	uint64_t to_private_pages = 0;
	uint64_t hypercalls = 0;
	uint64_t peak_allocated = 0;
	uint64_t peak_two_backing = 0;
	// From the last IOMMU_TEST_OP_GMEM_IOPTE_COUNT (test kernels only).
	uint64_t iopte_adds = 0;
	uint64_t iopte_removes = 0;
	// The real device's DMAs, and those the IOMMU refused.
	uint64_t dmas = 0;
	uint64_t dmas_refused = 0;
};

class Demo {
public:
	Demo(bool require_iommu, DeviceKind device, gmem::ConvertApi api)
	    : require_iommu_(require_iommu), device_kind_(device), api_(api)
	{
	}
	bool setup();
	bool run();
	void summary() const;

private:
	void handle_map_gpa(const gmem::MapGpaRangeExit &m);
	bool handle_step(uint8_t step);
	void discard_and_refill();
	// Pages of the guest_memfd that are allocated (in its page cache).
	uint64_t allocated_pages() const;
	void account();

	// IOMMU part.
	void bind_iommu();
	void skip_iommu(const std::string &why);
	// Pages the IOMMU must map now: shared and allocated (bit i: page i).
	uint32_t mirrored() const;
	// Shows the file's and the IOMMU's view page by page and checks them
	// and MIRROR_STATUS against the model; @before: mirrored() before the
	// step.
	void show_iommu(uint32_t before);
	// The real device: attach it, and what its DMA reaches (bit i: the
	// read of page i brought the page's data).
	bool bind_edu();
	uint32_t device_reads(std::string &row);
	bool attached() const { return ioas_ && (device_ || edu_); }

	bool require_iommu_;
	DeviceKind device_kind_;
	gmem::ConvertApi api_;
	// The VM: code slot, data slot (one convertible guest_memfd), vCPU 0.
	std::optional<gmem::ConvertibleGuest> guest_;
	uint8_t *data_ = nullptr; // the guest_memfd's mapping
	// Destroyed in reverse order: the device, then the IOAS (dropping its
	// reference on the guest_memfd), then the iommufd context.
	std::optional<gmem::Iommufd> iommufd_;
	std::optional<gmem::Ioas> ioas_;
	std::optional<gmem::testing::MockDomain> device_;
	std::optional<gmem::testing::Edu> edu_;
	std::optional<gmem::Mapping> scratch_;
	std::string iommu_skipped_;
	bool legend_shown_ = false;
	// The IOPTE counters are test telemetry (CONFIG_IOMMUFD_TEST).
	bool have_counters_ = false;
	uint64_t want_adds_ = 0;
	uint64_t want_removes_ = 0;
	Stats stats_;
	// The VMM's model of the file: what it asked the kernel for.
	bool shared_[kDataPages] = {};
	bool allocated_[kDataPages] = {};
};

bool Demo::setup()
{
	say("==> Creating a KVM_X86_SW_PROTECTED_VM\n");
	if (const std::string &why = gmem::ConvertibleGuest::unsupported(); !why.empty()) {
		say("    this kernel offers no SW-protected VM with in-place conversion: %s\n",
		    why.c_str());
		return false;
	}
	// Code and stack in an ordinary slot, never private; data in one
	// convertible guest_memfd, private at first, whose own mapping is the
	// slot's userspace address: there is no second backing for shared
	// pages. The demo answers MAP_GPA_RANGE itself, to tell and check
	// each conversion.
	gmem::GuestConfig config;
	config.code = { demo_guest_start, demo_guest_end };
	config.data_size = kDataSize;
	config.handle_map_gpa = false;
	config.api = api_;
	guest_.emplace(gmem::ConvertibleGuest::create(config).value());
	data_ = guest_->data();
	say("    code slot: %zu bytes of guest code at GPA 0x%llx (anonymous memory)\n",
	    config.code.size(), (unsigned long long)gmem::layout::kEntry);
	say("    data slot: %llu pages at GPA 0x%llx, one guest_memfd (MMAP|CONVERTIBLE), "
	    "all private\n",
	    (unsigned long long)kDataPages, (unsigned long long)kDataGpa);
	guest_->add_vcpu().value();
	return true;
}

uint64_t Demo::allocated_pages() const
{
	unsigned char vec[kDataPages];
	if (mincore(data_, kDataSize, vec) != 0)
		return 0;
	uint64_t n = 0;
	for (unsigned char v : vec)
		n += v & 1;
	return n;
}

void Demo::account()
{
	uint64_t alloc = allocated_pages(), shared = 0;
	for (uint64_t i = 0; i < kDataPages; i++)
		shared += shared_[i] && allocated_[i];
	stats_.peak_allocated = std::max(stats_.peak_allocated, alloc);
	// A two-backing VMM keeps every private page in guest_memfd and each
	// shared page in a second, anonymous backing.
	stats_.peak_two_backing = std::max(stats_.peak_two_backing, alloc + shared);
}

// --- The IOMMU part ---------------------------------------------------------

void Demo::skip_iommu(const std::string &why)
{
	iommu_skipped_ = why;
	if (require_iommu_)
		check(false, "IOMMU steps required (--require-iommu) but %s", why.c_str());
	else
		say("    IOMMU steps skipped: %s\n", why.c_str());
	device_.reset();
	edu_.reset();
	ioas_.reset();
	iommufd_.reset();
}

bool Demo::bind_edu()
{
	using gmem::testing::Edu;
	auto edu = Edu::open(iommufd_->fd());
	if (!edu) {
		if (errno_of(edu) == ENODEV && device_kind_ == DeviceKind::kAuto)
			return false; // no edu here: the mock stands in
		check(false, "%s", edu.error().message().c_str());
		return true;
	}
	edu_.emplace(std::move(edu).value());
	const std::string bdf = edu_->vfio().bdf();
	auto hwpt = edu_->vfio().attach(ioas_->id());
	if (!hwpt) {
		check(false, "%s", hwpt.error().message().c_str());
		edu_.reset();
		return true;
	}
	scratch_.emplace(gmem::Mapping::anonymous(2 * kPage).value());
	auto r = ioas_->map_memory(scratch_->data(), 2 * kPage, kScratchIova);
	if (!r) {
		check(false, "%s", r.error().message().c_str());
		edu_.reset();
		return true;
	}
	say("    device: QEMU's edu DMA engine at %s behind the %s IOMMU, bound to vfio-pci,\n"
	    "    its cdev bound to the iommufd (VFIO_DEVICE_BIND_IOMMUFD) and attached to\n"
	    "    IOAS %u (VFIO_DEVICE_ATTACH_IOMMUFD_PT: HWPT %u, a real IOMMU domain)\n",
	    bdf.c_str(), gmem::testing::iommu_kind(bdf).c_str(), ioas_->id(), *hwpt);
	return true;
}

void Demo::bind_iommu()
{
	using gmem::testing::check_refs;
	using gmem::testing::have_iommufd_mock;
	using gmem::testing::MockDomain;
	say("==> Giving the guest's shared pages to a device: an iommufd IOAS on the "
	    "guest_memfd\n");
	auto fd = gmem::Iommufd::open();
	if (!fd) {
		if (errno_of(fd) == ENOENT || errno_of(fd) == ENODEV || errno_of(fd) == ENXIO)
			skip_iommu("no /dev/iommu (CONFIG_IOMMUFD)");
		else
			check(false, "%s", fd.error().message().c_str());
		return;
	}
	iommufd_.emplace(std::move(fd).value());
	const bool mock = have_iommufd_mock(iommufd_->fd());
	have_counters_ = mock;
	auto ioas = iommufd_->alloc_ioas();
	if (!ioas) {
		check(false, "%s", ioas.error().message().c_str());
		return;
	}
	ioas_.emplace(std::move(ioas).value());
	if (errno_of(ioas_->mirror_status(kIova)) == ENOTTY)
		return skip_iommu("this kernel's iommufd cannot map a guest_memfd "
				  "(no IOMMU_IOAS_MIRROR_STATUS)");

	// A domain exists only once a device is attached. The device comes
	// first, so that the IOPTE counters of the mapping start from zero.
	const bool real = device_kind_ != DeviceKind::kMock && bind_edu();
	if (real && !edu_)
		return; // a failed check said why
	if (!real) {
		if (device_kind_ == DeviceKind::kEdu || !mock)
			return skip_iommu(
				"no edu device behind an IOMMU (boot with "
				"harness/guest-run.sh --viommu intel) and no iommufd mock "
				"device (CONFIG_IOMMUFD_TEST)");
		auto dev = MockDomain::attach(*ioas_);
		if (!dev) {
			check(false, "%s", dev.error().message().c_str());
			return;
		}
		device_.emplace(std::move(dev).value());
		say("    device %u attached to IOAS %u, with its own IOMMU domain (HWPT %u)\n",
		    device_->stdev_id(), ioas_->id(), device_->hwpt_id());
		say("    (test-only: iommufd's mock device, CONFIG_IOMMUFD_TEST, stands in for an "
		    "assigned device)\n");
	}

	auto iova = ioas_->map_file(guest_->gmem().fd(), 0, kDataSize, kIova);
	if (!iova || *iova != kIova) {
		check(false, "IOMMU_IOAS_MAP_FILE at IOVA 0x%llx: %s", (unsigned long long)kIova,
		      iova ? "mapped elsewhere" : iova.error().message().c_str());
		device_.reset();
		edu_.reset();
		ioas_.reset();
		return;
	}
	say("    IOMMU_IOAS_MAP_FILE(guest_memfd, 0, %llu bytes) at IOVA 0x%llx (= GPA): the\n"
	    "    IOMMU maps the shared pages and follows the file on its own from now on\n",
	    (unsigned long long)kDataSize, (unsigned long long)kIova);
	show_iommu(0);

	// Nothing pinned: conversions to private need no unpinning. Only the
	// mock's MD_CHECK_REFS can count pins; with the real device, the
	// conversions to private succeeding at the first try show it.
	if (!mock)
		return;
	std::vector<uint64_t> shared;
	for (uint64_t i = 0; i < kDataPages; i++)
		if (shared_[i])
			shared.push_back(i);
	bool unpinned = true;
	for (uint64_t i : shared)
		unpinned &= check_refs(iommufd_->fd(), data_ + i * kPage, kPage, 0).has_value();
	check(unpinned, "no page pinned (MD_CHECK_REFS: 0 long-term pins on the %zu shared pages)",
	      shared.size());
}

uint32_t Demo::device_reads(std::string &row)
{
	// The device reads the first 64 bytes of each page into its own
	// slot of its buffer (which starts full of a marker), then writes
	// the buffer out to a scratch page: one DMA per page, and two more.
	uint8_t *marker = scratch_->data(), *back = scratch_->data() + kPage;
	std::memset(marker, kMarker, kPage);
	std::memset(back, 0, kPage);
	bool ok = edu_->dma_to_device(kScratchIova, kPage).has_value();
	for (uint64_t i = 0; i < kDataPages; i++)
		ok &= edu_->dma_to_device(kIova + i * kPage, kSlot, i * kSlot).has_value();
	ok &= edu_->dma_from_device(kScratchIova + kPage, kPage).has_value();
	stats_.dmas += kDataPages + 2;
	if (!ok)
		check(false, "edu DMA timed out");
	uint32_t reached = 0;
	for (uint64_t i = 0; i < kDataPages; i++) {
		const uint8_t *got = back + i * kSlot;
		// What the host sees there, if it can (a shared page).
		uint8_t want[kSlot];
		bool host = shared_[i] && allocated_[i];
		if (host)
			std::memcpy(want, data_ + i * kPage, kSlot);
		const bool refused = std::all_of(got, got + kSlot,
						 [](uint8_t b) { return b == 0 || b == kMarker; });
		if (host && std::memcmp(got, want, kSlot) == 0 && !refused) {
			reached |= 1u << i;
			row += 'D';
		} else if (refused) {
			stats_.dmas_refused++;
			row += '.';
		} else {
			row += '?';
		}
	}
	// A shared page full of zeros reads like a refusal: count it as
	// reached when the host sees zeros there too.
	for (uint64_t i = 0; i < kDataPages; i++) {
		if (row[i] != '.' || !(shared_[i] && allocated_[i]))
			continue;
		const uint8_t *h = data_ + i * kPage;
		if (std::all_of(h, h + kSlot, [](uint8_t b) { return b == 0; }) &&
		    std::all_of(back + i * kSlot, back + (i + 1) * kSlot,
				[](uint8_t b) { return b == 0; })) {
			reached |= 1u << i;
			row[i] = 'D';
			stats_.dmas_refused--;
		}
	}
	return reached;
}

uint32_t Demo::mirrored() const
{
	uint32_t m = 0;
	for (uint64_t i = 0; i < kDataPages; i++)
		if (shared_[i] && allocated_[i])
			m |= 1u << i;
	return attached() ? m : 0;
}

void Demo::show_iommu(uint32_t before)
{
	using gmem::testing::check_gmem;
	const uint32_t now = mirrored();
	want_adds_ += std::popcount(now & ~before);
	want_removes_ += std::popcount(before & ~now);

	std::string file, iommu, want;
	uint64_t bad = kDataPages;
	if (edu_) {
		// The file as the VMM made it, and what the device's DMA
		// reaches, page by page.
		for (uint64_t i = 0; i < kDataPages; i++) {
			file += !allocated_[i] ? '-' : shared_[i] ? 'S' : 'P';
			want += now & (1u << i) ? 'D' : '.';
		}
		const uint32_t reached = device_reads(iommu);
		say("    guest_memfd  %s%s\n", file.c_str(),
		    legend_shown_ ? "" : "   S shared, P private, - not allocated");
		say("    device DMA   %s%s\n", iommu.c_str(),
		    legend_shown_ ? ""
				  : "   D the device read the page's data, . the IOMMU refused");
		legend_shown_ = true;
		for (uint64_t i = 0; i < kDataPages && bad == kDataPages; i++)
			if (iommu[i] != want[i])
				bad = i;
		if (bad == kDataPages && reached == now)
			check(true, "edu DMA page by page: exactly the shared pages are reachable");
		else
			check(false, "edu DMA page by page: page %llu should %s",
			      (unsigned long long)bad,
			      want[bad] == 'D' ? "be reachable with its data" : "be refused");
	}
	// The file as the VMM made it, and the device's domain as the mock
	// IOMMU reports it, page by page (MD_CHECK_GMEM compares each IOPTE
	// with the PFN of the file page).
	for (uint64_t i = 0; i < kDataPages && !edu_; i++) {
		file += !allocated_[i] ? '-' : shared_[i] ? 'S' : 'P';
		const bool mapped =
			check_gmem(iommufd_->fd(), device_->hwpt_id(), kIova + i * kPage, kPage,
				   guest_->gmem().fd(), i * kPage, false)
				.has_value();
		const bool empty =
			!mapped && check_gmem(iommufd_->fd(), device_->hwpt_id(), kIova + i * kPage,
					      kPage, guest_->gmem().fd(), i * kPage, true)
					   .has_value();
		iommu += mapped ? 'M' : empty ? '.' : '?';
		want += now & (1u << i) ? 'M' : '.';
		if (iommu.back() != want.back() && bad == kDataPages)
			bad = i;
	}
	if (!edu_) {
		say("    guest_memfd  %s%s\n", file.c_str(),
		    legend_shown_ ? "" : "   S shared, P private, - not allocated");
		say("    IOMMU        %s%s\n", iommu.c_str(),
		    legend_shown_ ? "" : "   M IOVA maps the file's page, . maps nothing");
		legend_shown_ = true;
		if (bad == kDataPages)
			check(true, "check_gmem page by page: exactly the shared pages are mapped");
		else
			check(false, "check_gmem page by page: page %llu should %s",
			      (unsigned long long)bad,
			      want[bad] == 'M' ? "map its guest_memfd page" : "map nothing");
	}

	auto st = ioas_->mirror_status(kIova);
	if (!st) {
		check(false, "%s", st.error().message().c_str());
		return;
	}
	const bool status_ok = st->mapped_pages == (uint64_t)std::popcount(now) &&
			       st->pending_pages == 0 && st->error == 0;
	if (!have_counters_) {
		check(status_ok, "MIRROR_STATUS: %llu pages mapped, %llu pending",
		      (unsigned long long)st->mapped_pages, (unsigned long long)st->pending_pages);
		if (!status_ok)
			say("           expected %d mapped, 0 pending, error 0; got error %d\n",
			    std::popcount(now), st->error);
		return;
	}
	// Test kernels: the IOPTEs each change cost, from the test-only counters.
	auto io = gmem::testing::gmem_iopte_count(*ioas_, kIova);
	if (!io) {
		check(false, "%s", io.error().message().c_str());
		return;
	}
	const uint64_t adds = io->adds - stats_.iopte_adds;
	const uint64_t removes = io->removes - stats_.iopte_removes;
	stats_.iopte_adds = io->adds;
	stats_.iopte_removes = io->removes;
	const bool ok = status_ok && io->adds == want_adds_ && io->removes == want_removes_;
	check(ok, "MIRROR_STATUS: %llu pages mapped, %llu pending; IOPTEs +%llu -%llu",
	      (unsigned long long)st->mapped_pages, (unsigned long long)st->pending_pages,
	      (unsigned long long)adds, (unsigned long long)removes);
	if (!ok)
		say("           expected %d mapped, 0 pending, error 0, IOPTEs %llu added and "
		    "%llu removed in all; got error %d, %llu and %llu\n",
		    std::popcount(now), (unsigned long long)want_adds_,
		    (unsigned long long)want_removes_, st->error, (unsigned long long)io->adds,
		    (unsigned long long)io->removes);
}

// --- Guest exits -------------------------------------------------------------

void Demo::handle_map_gpa(const gmem::MapGpaRangeExit &m)
{
	stats_.hypercalls++;
	const uint64_t pages = m.size / kPage;
	say("==> Guest hypercall MAP_GPA_RANGE: GPA 0x%llx, %llu pages -> %s\n",
	    (unsigned long long)m.gpa, (unsigned long long)pages,
	    m.to_private ? "private" : "shared");
	const auto off = guest_->offset_of(m.gpa);
	if (!off || *off + m.size > kDataSize) {
		*m.ret = -KVM_EINVAL;
		check(false, "range lies in the guest_memfd slot");
		return;
	}
	const uint64_t before = allocated_pages();
	const uint32_t mirrored_before = mirrored();
	const uint64_t retries_before = guest_->stats().retries;
	auto res = guest_->convert(*off, m.size, m.to_private);
	const uint64_t retries = guest_->stats().retries - retries_before;
	if (!res) {
		say("    %s\n", res.error().message().c_str());
		*m.ret = -KVM_EINVAL;
		check(false, "in-place conversion");
		return;
	}
	for (uint64_t i = 0; i < pages; i++)
		shared_[*off / kPage + i] = !m.to_private;
	(m.to_private ? stats_.to_private_pages : stats_.to_shared_pages) += pages;
	if (api_ == gmem::ConvertApi::kGmemConvert)
		say("    %s(offset 0x%llx, %llu bytes) on the guest_memfd fd\n",
		    m.to_private ? "KVM_GMEM_CONVERT_PRIVATE" : "KVM_GMEM_CONVERT_SHARED",
		    (unsigned long long)*off, (unsigned long long)m.size);
	else
		say("    KVM_SET_MEMORY_ATTRIBUTES2(offset 0x%llx, %llu bytes, attributes %s) on "
		    "the guest_memfd fd\n",
		    (unsigned long long)*off, (unsigned long long)m.size,
		    m.to_private ? "PRIVATE" : "0 (shared)");
	check(allocated_pages() == before, "no page allocated or freed by the conversion");
	if (attached()) {
		if (m.to_private)
			check(retries == 0, "converted at the first try: the IOMMU holds no page "
					    "references");
		show_iommu(mirrored_before);
	}
	account();
	*m.ret = 0;
}

void Demo::discard_and_refill()
{
	const uint64_t off = kDiscardPage * kPage, len = kDiscardPages * kPage;
	say("==> Guest is done with pages %llu-%llu: the VMM punches a hole there "
	    "(fallocate PUNCH_HOLE)\n",
	    (unsigned long long)kDiscardPage,
	    (unsigned long long)(kDiscardPage + kDiscardPages - 1));
	uint32_t before = mirrored();
	auto r = guest_->gmem().punch_hole(off, len);
	if (!r) {
		check(false, "%s", r.error().message().c_str());
		return;
	}
	for (uint64_t i = 0; i < kDiscardPages; i++)
		allocated_[kDiscardPage + i] = false;
	check(allocated_pages() == kDataPages - kDiscardPages, "the %llu pages are freed (mincore)",
	      (unsigned long long)kDiscardPages);
	if (attached())
		show_iommu(before);

	say("==> ... and allocates them again (fallocate KEEP_SIZE): fresh, zeroed pages\n");
	before = mirrored();
	r = guest_->gmem().allocate(off, len);
	if (!r) {
		check(false, "%s", r.error().message().c_str());
		return;
	}
	for (uint64_t i = 0; i < kDiscardPages; i++)
		allocated_[kDiscardPage + i] = true;
	// mincore() cannot tell: guest_memfd zeroes a fallocate()d page (and
	// only then reports it resident) when it is first used. The IOMMU uses
	// them at once, and check_gmem fails (ENOENT) on a page not allocated.
	if (attached())
		show_iommu(before);
	account();
}

bool Demo::handle_step(uint8_t step)
{
	using gmem::testing::host_touch;
	switch (step) {
	case 1: {
		say("==> Guest wrote its secret into all %llu data pages (private)\n",
		    (unsigned long long)kDataPages);
		std::fill(std::begin(allocated_), std::end(allocated_), true);
		account();
		bool all_private = true;
		for (uint64_t i = 0; i < kDataPages; i++)
			all_private &= !host_touch(data_ + i * kPage);
		check(all_private, "the host's mapping gets SIGBUS on every private page");
		check(allocated_pages() == kDataPages, "the pages live in guest_memfd");
		break;
	}
	case 2: {
		say("==> Guest sees its pages shared, contents intact\n");
		uint32_t word = 0;
		std::memcpy(&word, data_ + 8, sizeof(word));
		check(word == kSecret, "the host reads the guest's data in the shared pages");
		check(!host_touch(data_ + kSharedPages * kPage),
		      "the next page is still private (SIGBUS)");
		break;
	}
	case 3: {
		const char *msg = reinterpret_cast<const char *>(data_);
		say("==> Guest left a message in shared memory; the VMM reads it through mmap:\n");
		say("    \"%.*s\"\n", 80, msg);
		check(std::strcmp(msg, reinterpret_cast<const char *>(demo_guest_message)) == 0,
		      "message matches");
		bind_iommu();
		break;
	}
	case 4: {
		say("==> Guest shared %llu more pages, a buffer for the device\n",
		    (unsigned long long)kDmaPages);
		uint32_t word = 0;
		std::memcpy(&word, data_ + kSharedPages * kPage, sizeof(word));
		check(word == kSecret, "the host reads the guest's data in the new shared pages");
		break;
	}
	case 5: {
		say("==> Guest took the message pages back (private) and still reads its "
		    "message\n");
		bool none = true;
		for (uint64_t i = 0; i < kSharedPages; i++)
			none &= !host_touch(data_ + i * kPage);
		check(none, "the host's mapping is gone: SIGBUS on the converted pages");
		break;
	}
	case 6:
		discard_and_refill();
		break;
	default:
		check(false, "known step %u", step);
	}
	return true;
}

bool Demo::run()
{
	for (;;) {
		auto exit = guest_->run(0);
		if (!exit) {
			say("    %s\n", exit.error().message().c_str());
			return false;
		}
		if (auto *m = std::get_if<gmem::MapGpaRangeExit>(&*exit)) {
			handle_map_gpa(*m);
		} else if (gmem::is_out(*exit, kFailPort)) {
			say("==> The guest reports failure %u\n",
			    std::get<gmem::IoExit>(*exit).value());
			failures++;
			return false;
		} else if (gmem::is_out(*exit, kStepPort)) {
			handle_step(std::get<gmem::IoExit>(*exit).value());
		} else if (std::holds_alternative<gmem::HltExit>(*exit)) {
			say("==> Guest read zeros from the re-allocated pages and halted\n");
			return true;
		} else {
			say("==> unexpected exit: %s\n", gmem::describe(*exit).c_str());
			failures++;
			return false;
		}
	}
}

void Demo::summary() const
{
	say("\n==> Summary\n");
	say("    conversion interface:             %s\n", gmem::convert_api_name(api_));
	say("    pages converted to shared:        %llu\n",
	    (unsigned long long)stats_.to_shared_pages);
	say("    pages converted to private:       %llu\n",
	    (unsigned long long)stats_.to_private_pages);
	say("    MAP_GPA_RANGE hypercall exits:    %llu\n", (unsigned long long)stats_.hypercalls);
	if (iommu_skipped_.empty() && have_counters_)
		say("    IOPTEs added / removed:           %llu / %llu "
		    "(IOMMU_TEST_OP_GMEM_IOPTE_COUNT, 1 device)\n",
		    (unsigned long long)stats_.iopte_adds,
		    (unsigned long long)stats_.iopte_removes);
	else if (iommu_skipped_.empty())
		say("    IOPTEs added / removed:           not counted (no CONFIG_IOMMUFD_TEST)\n");
	else
		say("    IOPTEs added / removed:           skipped (%s)\n", iommu_skipped_.c_str());
	if (edu_)
		say("    device DMAs (edu, real IOMMU):    %llu, of which %llu refused by the "
		    "IOMMU\n",
		    (unsigned long long)stats_.dmas, (unsigned long long)stats_.dmas_refused);
	say("    peak guest data memory, in place: %llu pages\n",
	    (unsigned long long)stats_.peak_allocated);
	say("    same run with two backings:       %llu pages (private in guest_memfd + "
	    "shared in anonymous memory)\n",
	    (unsigned long long)stats_.peak_two_backing);
	say("    checks failed:                    %d\n", failures);
}

} // namespace

int main(int argc, char **argv)
{
	bool require_iommu = false;
	DeviceKind device = DeviceKind::kAuto;
	gmem::ConvertApi api = gmem::ConvertApi::kGmemConvert;
	for (int i = 1; i < argc; i++) {
		if (std::strcmp(argv[i], "--require-iommu") == 0) {
			require_iommu = true;
		} else if (std::strcmp(argv[i], "--device=edu") == 0) {
			device = DeviceKind::kEdu;
		} else if (std::strcmp(argv[i], "--device=mock") == 0) {
			device = DeviceKind::kMock;
		} else if (std::strcmp(argv[i], "--device=auto") == 0) {
			device = DeviceKind::kAuto;
		} else if (std::strcmp(argv[i], "--uapi=convert") == 0) {
			api = gmem::ConvertApi::kGmemConvert;
		} else if (std::strcmp(argv[i], "--uapi=attributes2") == 0) {
			api = gmem::ConvertApi::kMemoryAttributes2;
		} else {
			say("usage: %s [--require-iommu] [--device=auto|edu|mock] "
			    "[--uapi=convert|attributes2]\n",
			    argv[0]);
			return 2;
		}
	}
	try {
		Demo demo(require_iommu, device, api);
		if (!demo.setup())
			return 1;
		bool ok = demo.run();
		demo.summary();
		return ok && failures == 0 ? 0 : 1;
	} catch (const gmem::SysErrorException &e) {
		say("==> FAILED: %s\n", e.error().message().c_str());
		return 1;
	}
}
