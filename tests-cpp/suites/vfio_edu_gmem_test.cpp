// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// A real device's DMA into a convertible guest_memfd through a real IOMMU
// driver: QEMU's edu device, bound to vfio-pci, opened through its iommufd
// cdev and attached to an IOAS that maps the guest_memfd with
// IOMMU_IOAS_MAP_FILE (nothing pinned), behind an emulated VT-d, AMD-Vi or
// virtio-iommu (the runner's --viommu). Each check is real DMA, both ways:
// the device reads a page into its buffer and the buffer is DMAed out to a
// pinned scratch page the test reads, or the device writes a pattern into a
// page and the host reads it back through the guest_memfd's mmap.
//
//  - reachable: shared pages, with the file's contents;
//  - blocked: private pages and holes. A blocked read brings none of the
//    page's data (QEMU's edu sees zeros where the IOMMU refused, so the
//    buffer's marker is replaced by zeros, never by the page), a blocked
//    write changes nothing, and the IOMMU driver logs a fault for the page
//    (read back from /dev/kmsg).
//
// The suite prints, at its end, the cases run, DMAs issued, the blocked
// DMAs and the faults logged for them, and the stray DMAs (a DMA that
// reached a page that was private or a hole at that moment); the last must
// be 0. Usage: vfio_edu_gmem_test [--viommu=intel|amd|virtio] [gtest flags]
// (with --viommu, a device behind another IOMMU is a failure) and
// GMEM_STORM_SEED=N to replay a storm.
#include <asm/kvm_para.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmem/guest.h"
#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "gmem/layout.h"
#include "gmem/mailbox_guest.h"
#include "gmem/vfio.h"
#include "mock/edu.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::DmaDir;
using ::gmem::testing::Edu;
using ::gmem::testing::is_iommu_fault;
using ::gmem::testing::KernelLog;
using ::gmem::testing::Succeeds;
using ::gmem::testing::SyscallSucceeds;
using ::gmem::testing::user_pfn;
using Clock = std::chrono::steady_clock;

using layout::kPage;
constexpr uint64_t kPages = 8;
constexpr uint64_t kSize = kPages * kPage;
// IOVA = GPA, as for an assigned device; below edu's 28-bit DMA mask.
constexpr uint64_t kGpa = layout::kDataGpa;
constexpr uint64_t kIova = kGpa;
// Two pinned pages of ordinary memory: the source of patterns and
// markers, and where the buffer is read back to.
constexpr uint64_t kScratchIova = 0x200000;
constexpr uint8_t kMarker = 0xee;
static_assert(kIova + kSize <= testing::kEduDmaLimit);

// What the whole run did, printed at its end (Summary below).
struct Figures {
	std::atomic<uint64_t> dmas{ 0 };
	std::atomic<uint64_t> reached{ 0 };	  // DMAs that reached a shared page
	std::atomic<uint64_t> blocked{ 0 };	  // DMAs refused, as they must be
	std::atomic<uint64_t> faults_wanted{ 0 }; // blocked DMAs a fault was waited for
	std::atomic<uint64_t> faults_seen{ 0 };	  // ... and found in the kernel log
	std::atomic<uint64_t> stray{ 0 };	  // reached a page it must not
	std::atomic<uint64_t> storm_samples{ 0 };
	std::atomic<uint64_t> storm_to_private{ 0 };
	std::atomic<uint64_t> storm_to_shared{ 0 };
	std::string kind;
	std::string no_faults_why;
};
Figures figures;
std::string wanted_kind;
// When the checks that wait for a fault made one (PaceFaults()).
std::deque<Clock::time_point> fault_times;

// The 8 bytes at word @w of page @p's pattern of generation @gen: every
// page and generation is unique, and so is every 64-byte slot.
uint64_t pattern_word(uint64_t p, uint32_t gen, uint64_t w)
{
	return 0x6700000000000000ULL | (uint64_t(gen) << 32) | (p << 16) | w;
}

void fill_pattern(uint8_t *dst, uint64_t p, uint32_t gen, size_t len = kPage)
{
	for (size_t w = 0; w < len / 8; w++) {
		const uint64_t v = pattern_word(p, gen, w);
		std::memcpy(dst + w * 8, &v, 8);
	}
}

bool has_pattern(const uint8_t *src, uint64_t p, uint32_t gen, size_t len = kPage)
{
	for (size_t w = 0; w < len / 8; w++) {
		uint64_t v;
		std::memcpy(&v, src + w * 8, 8);
		if (v != pattern_word(p, gen, w))
			return false;
	}
	return true;
}

bool all_bytes(const uint8_t *src, uint8_t b, size_t len = kPage)
{
	return std::all_of(src, src + len, [b](uint8_t x) { return x == b; });
}

class VfioEduGmemTest : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (const std::string &why = ConvertibleGuest::unsupported(); !why.empty())
			GTEST_SKIP() << why;
		auto iommufd = Iommufd::open();
		if (!iommufd)
			GTEST_SKIP() << iommufd.error().message();
		iommufd_.emplace(std::move(iommufd).value());

		auto edu = Edu::open(iommufd_->fd());
		if (!edu && errno_of(edu) == ENODEV && wanted_kind.empty()) {
			GTEST_SKIP() << edu.error().message()
				     << " (boot with harness/guest-run.sh --viommu KIND)";
		}
		ASSERT_THAT(edu, Succeeds());
		edu_.emplace(std::move(edu).value());
		kind_ = testing::iommu_kind(edu_->vfio().bdf());
		figures.kind = kind_;
		if (!FaultsReported())
			figures.no_faults_why = "QEMU 10.0's AMD-Vi logs no event for a 0 PTE";
		if (!wanted_kind.empty()) {
			ASSERT_EQ(kind_, wanted_kind) << "the edu device is behind the wrong IOMMU";
		}
		ASSERT_FALSE(kind_.empty()) << "edu is behind no IOMMU";

		auto ioas = iommufd_->alloc_ioas();
		ASSERT_THAT(ioas, Succeeds());
		ioas_.emplace(std::move(ioas).value());
		auto hwpt = edu_->vfio().attach(ioas_->id());
		ASSERT_THAT(hwpt, Succeeds());

		scratch_.emplace(Mapping::anonymous(2 * kPage).value());
		std::memset(scratch_->data(), 0, 2 * kPage);
		ASSERT_THAT(ioas_->map_memory(scratch_->data(), 2 * kPage, kScratchIova),
			    Succeeds());

		// The VM and its data slot, the guest_memfd, at kGpa; the
		// mailbox guest runs only once a case starts it. No retry on
		// EAGAIN: nothing may pin a page, so a to-private conversion
		// succeeds at its first try or fails the case.
		GuestConfig config = mailbox_guest_config(kSize);
		config.retry.attempts = 1;
		auto guest = ConvertibleGuest::create(config);
		ASSERT_THAT(guest, Succeeds());
		guest_.emplace(std::move(guest).value());
		ASSERT_THAT(ioas_->map_file(guest_->gmem().fd(), 0, kSize, kIova), Succeeds());

		auto log = KernelLog::open();
		ASSERT_THAT(log, Succeeds());
		log_.emplace(std::move(log).value());
		dmas_at_start_ = edu_->dmas();
	}

	void TearDown() override
	{
		if (edu_)
			figures.dmas += edu_->dmas() - dmas_at_start_;
	}

	static uint64_t IovaOf(uint64_t p) { return kIova + p * kPage; }
	uint8_t *Page(uint64_t p) { return guest_->data() + p * kPage; }

	Result<void> Convert(bool to_shared, uint64_t p, uint64_t n = 1)
	{
		return guest_->convert(p * kPage, n * kPage, !to_shared);
	}

	// Shares pages [p, p + n) and gives each its pattern of @gen.
	void ShareWithPattern(uint64_t p, uint64_t n, uint32_t gen)
	{
		ASSERT_THAT(Convert(true, p, n), Succeeds());
		for (uint64_t i = p; i < p + n; i++)
			fill_pattern(Page(i), i, gen);
	}

	// The device reads page @p: marker into the buffer, page into the
	// buffer, buffer out to scratch page 1. Returns what the buffer held.
	std::vector<uint8_t> DeviceRead(uint64_t p)
	{
		std::memset(scratch_->data(), kMarker, kPage);
		std::memset(scratch_->data() + kPage, 0x11, kPage);
		EXPECT_THAT(edu_->dma_to_device(kScratchIova, kPage), Succeeds());
		EXPECT_THAT(edu_->dma_to_device(IovaOf(p), kPage), Succeeds());
		EXPECT_THAT(edu_->dma_from_device(kScratchIova + kPage, kPage), Succeeds());
		return { scratch_->data() + kPage, scratch_->data() + 2 * kPage };
	}

	// The device writes page @p with its pattern of @gen.
	void DeviceWrite(uint64_t p, uint32_t gen)
	{
		fill_pattern(scratch_->data(), p, gen);
		EXPECT_THAT(edu_->dma_to_device(kScratchIova, kPage), Succeeds());
		EXPECT_THAT(edu_->dma_from_device(IovaOf(p), kPage), Succeeds());
	}

	// The device's read of page @p must bring the page's pattern of @gen.
	void ExpectReadReaches(uint64_t p, uint32_t gen, const std::string &why)
	{
		auto got = DeviceRead(p);
		const bool ok = has_pattern(got.data(), p, gen);
		EXPECT_TRUE(ok) << why << ": the device's read of page " << p
				<< " did not bring its contents (first byte 0x" << std::hex
				<< int(got[0]) << ")";
		figures.reached += ok;
	}

	// A fault must not let the next one be rate-limited away: the drivers
	// print through a printk ratelimit of 10 messages in 5 s. VT-d's
	// handler spends up to three of them on each fault (measured: the
	// fourth fault in 5 s goes unprinted); with virtio-iommu, QEMU reports
	// a refused DMA once per 4-byte access, so one refused DMA uses up the
	// whole window. The checks that wait for a fault pace themselves
	// under that: 3 (VT-d) or 1 (virtio-iommu) in 5.5 s.
	void PaceFaults()
	{
		if (!FaultsReported())
			return;
		const size_t burst = kind_ == "intel" ? 3 : 1;
		const auto window = std::chrono::milliseconds(5500);
		while (fault_times.size() >= burst) {
			const auto age = Clock::now() - fault_times.front();
			if (age >= window) {
				fault_times.pop_front();
				continue;
			}
			std::this_thread::sleep_for(window - age);
		}
		fault_times.push_back(Clock::now());
	}

	// Whether the vIOMMU reports a refused DMA at all. QEMU 10.0's AMD-Vi
	// does not: its page walk (amdvi_page_walk()) ends without an event as
	// soon as it loads a PTE that is 0, which is what an unmapped IOVA has
	// at the leaf (or a higher level), and raises IO_PAGE_FAULT only for a
	// non-zero PTE without P or the permission; Linux clears unmapped PTEs
	// to 0. So on AMD the refusal is checked by the DMA alone.
	bool FaultsReported() const { return kind_ != "amd"; }

	// The IOMMU driver must log a fault for page @p's IOVA (a refused
	// read, or a write).
	void ExpectFault(uint64_t p, bool write, const std::string &why)
	{
		if (!FaultsReported())
			return;
		figures.faults_wanted++;
		bool seen = false;
		const auto deadline = Clock::now() + std::chrono::seconds(3);
		while (!seen && Clock::now() < deadline)
			for (const auto &l : log_->read_new("", std::chrono::milliseconds(100)))
				seen |= is_iommu_fault(kind_, l, IovaOf(p),
						       write ? DmaDir::kWrite : DmaDir::kRead);
		figures.faults_seen += seen;
		EXPECT_TRUE(seen) << why << ": no " << kind_ << " IOMMU fault logged for IOVA 0x"
				  << std::hex << IovaOf(p);
	}

	// The device's read of page @p must be refused: the buffer gets none
	// of the page's data (@gen: the pattern the page holds, if any) and
	// the IOMMU logs the fault.
	void ExpectReadBlocked(uint64_t p, std::optional<uint32_t> gen, const std::string &why)
	{
		log_->read_new();
		PaceFaults();
		auto got = DeviceRead(p);
		const bool leaked = gen && has_pattern(got.data(), p, *gen);
		const bool clean = all_bytes(got.data(), 0) || all_bytes(got.data(), kMarker);
		EXPECT_FALSE(leaked) << why << ": the device read page " << p << "'s data";
		EXPECT_TRUE(clean) << why << ": the buffer holds neither zeros nor the marker";
		figures.stray += leaked;
		figures.blocked += !leaked;
		ExpectFault(p, false, why);
	}

	// The device's write to page @p must be refused: the IOMMU logs the
	// fault (the caller checks the page once it can see it).
	void ExpectWriteBlocked(uint64_t p, uint32_t gen, const std::string &why)
	{
		log_->read_new();
		PaceFaults();
		DeviceWrite(p, gen);
		ExpectFault(p, true, why);
	}

	// Counts a device write that must not have landed: @landed says if
	// page @p holds it after all.
	void CountWriteBlocked(bool landed, uint64_t p, const std::string &why)
	{
		EXPECT_FALSE(landed) << why << ": the device's write reached page " << p;
		figures.stray += landed;
		figures.blocked += !landed;
	}

	// --- The guest: the mailbox guest on vCPU 0, its data the
	// guest_memfd at kGpa. Its MAP_GPA_RANGE hypercalls are converted in
	// place by the ConvertibleGuest, as a VMM does.
	void StartGuest() { ASSERT_THAT(guest_->add_vcpu(), Succeeds()); }

	MailboxReply GuestCommand(const MailboxCommand &c)
	{
		auto r = mailbox_exec(*guest_, 0, c);
		EXPECT_THAT(r, Succeeds());
		return r.value_or(MailboxReply{ 0xdeadbeef, 0xdeadbeef, 0xdeadbeef });
	}
	void GuestFill(uint64_t p, uint32_t value)
	{
		GuestCommand({ MailboxCmd::kFill, uint32_t(kGpa + p * kPage), kPage / 4, value });
	}
	void GuestShare(uint64_t p, uint64_t n, bool to_private)
	{
		const MailboxReply r =
			GuestCommand({ MailboxCmd::kMapGpa, uint32_t(kGpa + p * kPage), uint32_t(n),
				       to_private ? uint32_t(KVM_MAP_GPA_RANGE_ENCRYPTED) : 0u });
		EXPECT_EQ(r.ret, 0u) << "the guest's MAP_GPA_RANGE failed"
				     << " (in-place conversion at the first try: nothing pins)";
	}
	uint32_t GuestRead(uint64_t p, uint64_t off = 0)
	{
		return GuestCommand({ MailboxCmd::kRead, uint32_t(kGpa + p * kPage + off) }).out0;
	}

	// The device's read of page @p must bring dwords of @value.
	void ExpectReadReachesValue(uint64_t p, uint32_t value, const std::string &why)
	{
		auto got = DeviceRead(p);
		bool ok = true;
		for (size_t i = 0; i < kPage; i += 4) {
			uint32_t v;
			std::memcpy(&v, got.data() + i, 4);
			ok &= v == value;
		}
		EXPECT_TRUE(ok) << why << ": the device's read of page " << p
				<< " did not bring the guest's data";
		figures.reached += ok;
	}

	std::optional<Iommufd> iommufd_;
	std::optional<Edu> edu_;
	std::string kind_;
	std::optional<Ioas> ioas_;
	std::optional<Mapping> scratch_;
	std::optional<ConvertibleGuest> guest_;
	std::optional<KernelLog> log_;
	uint64_t dmas_at_start_ = 0;
};

// Every shared page of the mapping is reachable both ways with the file's
// data; private pages and holes are reachable neither way.
TEST_F(VfioEduGmemTest, SharedPagesReachableAndPrivatePagesAndHolesNot)
{
	// 0-3 shared, 4 a shared hole, 5-6 private with data, 7 a private hole.
	ASSERT_NO_FATAL_FAILURE(ShareWithPattern(0, 7, 1));
	ASSERT_THAT(guest_->gmem().punch_hole(4 * kPage, kPage), Succeeds());
	ASSERT_THAT(Convert(false, 5, 2), Succeeds());

	for (uint64_t p = 0; p < 4; p++) {
		ExpectReadReaches(p, 1, "shared page");
		DeviceWrite(p, 2);
		const bool landed = has_pattern(Page(p), p, 2);
		EXPECT_TRUE(landed)
			<< "the device's write of shared page " << p << " is not in the file";
		figures.reached += landed;
	}
	ExpectReadBlocked(4, std::nullopt, "shared hole");
	ExpectWriteBlocked(4, 3, "shared hole");
	unsigned char resident = 1;
	ASSERT_THAT(mincore(Page(4), kPage, &resident), SyscallSucceeds());
	CountWriteBlocked(resident & 1, 4, "shared hole (now allocated)");

	for (uint64_t p = 5; p < 7; p++) {
		ExpectReadBlocked(p, 1, "private page");
		ExpectWriteBlocked(p, 3, "private page");
	}
	ExpectReadBlocked(7, std::nullopt, "private hole");

	// Shared again, the private pages show they kept their data and
	// that the device's writes never landed.
	ASSERT_THAT(Convert(true, 5, 2), Succeeds());
	for (uint64_t p = 5; p < 7; p++) {
		EXPECT_TRUE(has_pattern(Page(p), p, 1)) << "page " << p << " lost its data";
		CountWriteBlocked(has_pattern(Page(p), p, 3), p, "private page");
	}
}

// Converting a DMA-mapped page to private stops DMA before the ioctl
// returns; converting it back makes the same physical page reachable right
// after, contents kept, and nothing pins it (first try, no EAGAIN).
TEST_F(VfioEduGmemTest, ConversionStopsAndRestartsDmaOnTheSamePage)
{
	ASSERT_NO_FATAL_FAILURE(ShareWithPattern(0, 2, 1));
	ExpectReadReaches(0, 1, "shared page before the conversion");
	const auto pfn = user_pfn(Page(0));
	ASSERT_TRUE(pfn) << "no PFN in /proc/self/pagemap (needs CAP_SYS_ADMIN)";

	ASSERT_THAT(Convert(false, 0), Succeeds()) << "first try: the IOMMU pins nothing";
	ExpectReadBlocked(0, 1, "right after to-private");
	ExpectWriteBlocked(0, 2, "right after to-private");
	ExpectReadReaches(1, 1, "the shared neighbour");

	ASSERT_THAT(Convert(true, 0), Succeeds());
	ExpectReadReaches(0, 1, "right after to-shared (contents kept)");
	CountWriteBlocked(has_pattern(Page(0), 0, 2), 0, "private page");
	EXPECT_EQ(user_pfn(Page(0)), pfn) << "to-shared must keep the physical page";
	DeviceWrite(0, 3);
	EXPECT_TRUE(has_pattern(Page(0), 0, 3)) << "the device's write after to-shared";

	// The whole DMA-mapped range goes private at once, at the first try.
	ASSERT_THAT(Convert(false, 0, kPages), Succeeds());
	auto st = ioas_->mirror_status(kIova);
	ASSERT_THAT(st, Succeeds());
	EXPECT_EQ(st->mapped_pages, 0u) << *st;
	ExpectReadBlocked(1, 1, "after the whole range went private");
}

// A hole punched in a DMA-mapped shared page stops DMA; each way of
// populating it again (fallocate, a host fault, a guest fault through KVM)
// makes the new page reachable, with the new page's contents.
TEST_F(VfioEduGmemTest, HolePunchStopsDmaAndRepopulationRestoresIt)
{
	ASSERT_NO_FATAL_FAILURE(ShareWithPattern(0, 3, 1));
	ASSERT_THAT(guest_->gmem().punch_hole(0, 3 * kPage), Succeeds());
	for (uint64_t p = 0; p < 3; p++)
		ExpectReadBlocked(p, 1, "punched page");

	// fallocate(): a zeroed page.
	ASSERT_THAT(guest_->gmem().allocate(0, kPage), Succeeds());
	auto got = DeviceRead(0);
	EXPECT_TRUE(all_bytes(got.data(), 0)) << "fallocate()d page: not zeros";
	figures.reached += all_bytes(got.data(), 0);

	// A host fault through the mmap fills the hole.
	fill_pattern(Page(1), 1, 7);
	ExpectReadReaches(1, 7, "page refilled by a host fault");

	// A guest fault through KVM fills the hole.
	ASSERT_NO_FATAL_FAILURE(StartGuest());
	ASSERT_NO_FATAL_FAILURE(GuestFill(2, 0x47554553)); // "SEUG"
	ExpectReadReachesValue(2, 0x47554553, "page refilled by a guest fault through KVM");
}

// A guest converts through MAP_GPA_RANGE and the VMM converts in place:
// the device sees exactly what the guest shares, when it shares it.
TEST_F(VfioEduGmemTest, DeviceSeesWhatTheGuestSharesAndOnlyThat)
{
	constexpr uint32_t kSecret = 0x31565250; // "PRV1"
	ASSERT_NO_FATAL_FAILURE(StartGuest());
	// The guest writes its secret into private pages 0-1 (private
	// faults fill them): the device cannot see them.
	ASSERT_NO_FATAL_FAILURE(GuestFill(0, kSecret));
	ASSERT_NO_FATAL_FAILURE(GuestFill(1, kSecret));
	ExpectReadBlocked(0, std::nullopt, "the guest's private page");

	// The guest shares page 0: contents kept, the device reads them.
	ASSERT_NO_FATAL_FAILURE(GuestShare(0, 1, false));
	ExpectReadReachesValue(0, kSecret, "page the guest shared");
	ExpectReadBlocked(1, std::nullopt, "the page the guest kept private");

	// The device writes into the shared page; the guest reads it.
	DeviceWrite(0, 5);
	uint64_t want;
	std::memcpy(&want, scratch_->data(), 8);
	EXPECT_EQ(GuestRead(0), uint32_t(want)) << "the guest sees the device's write";
	EXPECT_EQ(GuestRead(0, 4), uint32_t(want >> 32));

	// The guest takes the page back: DMA stops.
	ASSERT_NO_FATAL_FAILURE(GuestShare(0, 1, true));
	ExpectReadBlocked(0, 5, "page the guest made private again");
	ExpectWriteBlocked(0, 6, "page the guest made private again");
	const uint64_t now = GuestRead(0) | uint64_t(GuestRead(0, 4)) << 32;
	EXPECT_EQ(now, want) << "the private page lost the device's earlier write";
	CountWriteBlocked(now == pattern_word(0, 6, 0), 0, "page the guest made private");
	EXPECT_EQ(guest_->stats().map_gpa_exits.load(), 2u);
}

// A domain made after the guest_memfd mapping (a HWPT the VMM allocates on
// the IOAS and attaches the device to) starts out as the mirror, and
// follows conversions from then on.
TEST_F(VfioEduGmemTest, DomainAllocatedAfterTheMappingMirrorsTheFile)
{
	ASSERT_NO_FATAL_FAILURE(ShareWithPattern(0, 2, 1));
	ASSERT_THAT(Convert(false, 1), Succeeds());
	// The device leaves the IOAS's automatic domain, which goes with it.
	ASSERT_THAT(edu_->vfio().detach(), Succeeds());
	auto hwpt = iommufd_->alloc_hwpt(edu_->vfio().devid(), ioas_->id());
	ASSERT_THAT(hwpt, Succeeds());
	auto attached = edu_->vfio().attach(hwpt->id());
	ASSERT_THAT(attached, Succeeds());
	EXPECT_EQ(*attached, hwpt->id());

	ExpectReadReaches(0, 1, "shared page, domain made after the mapping");
	ExpectReadBlocked(1, 1, "private page, domain made after the mapping");
	ASSERT_THAT(Convert(true, 1), Succeeds());
	ExpectReadReaches(1, 1, "right after to-shared, in the new domain");
	ASSERT_THAT(Convert(false, 0), Succeeds());
	ExpectReadBlocked(0, 1, "right after to-private, in the new domain");
	// The HWPT can only go once the device has left it.
	ASSERT_THAT(edu_->vfio().detach(), Succeeds());
}

// Conversions of DMA-mapped pages race with DMA to them: no DMA ever
// brings data of a page that was private for the whole of it, and every
// to-private conversion succeeds at its first try. Bounded and seeded
// (GMEM_STORM_SEED replays one).
TEST_F(VfioEduGmemTest, ConversionStormWithConcurrentDma)
{
	const char *env = std::getenv("GMEM_STORM_SEED");
	const uint32_t seed = env ? uint32_t(std::strtoul(env, nullptr, 0))
				  : uint32_t(Clock::now().time_since_epoch().count());
	std::printf("storm seed %u (GMEM_STORM_SEED=%u to replay)\n", seed, seed);
	ASSERT_NO_FATAL_FAILURE(ShareWithPattern(0, kPages, 1));

	// What each page was, when: [since, until) of every to-private
	// conversion, from its return to the call of the next to-shared.
	struct Private {
		Clock::time_point since, until;
	};
	std::vector<std::vector<Private>> priv(kPages);
	std::vector<bool> is_private(kPages, false);
	std::mutex mu;
	std::atomic<bool> stop{ false };
	std::atomic<uint64_t> eagain{ 0 };
	std::string conv_error;

	std::thread converter([&] {
		std::mt19937 rng(seed);
		while (!stop) {
			const uint64_t p = rng() % kPages;
			std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
			std::lock_guard<std::mutex> g(mu);
			const bool to_shared = is_private[p];
			if (to_shared)
				priv[p].back().until = Clock::now();
			auto r = Convert(to_shared, p);
			if (!r.has_value()) {
				eagain += errno_of(r) == EAGAIN;
				if (conv_error.empty())
					conv_error = r.error().message();
				if (to_shared)
					priv[p].back().until = Clock::time_point::max();
				continue;
			}
			if (!to_shared)
				priv[p].push_back({ Clock::now(), Clock::time_point::max() });
			is_private[p] = !to_shared;
			(to_shared ? figures.storm_to_shared : figures.storm_to_private)++;
		}
	});

	// The device reads 64 bytes of a random page into one of 64 slots of
	// its buffer per DMA; every 16 reads, the buffer goes out to scratch.
	struct Sample {
		uint64_t page;
		Clock::time_point begin, end;
	};
	std::mt19937 rng(seed ^ 0x5eed);
	std::vector<std::pair<Sample, bool>> results;
	const auto deadline = Clock::now() + std::chrono::seconds(6);
	while (Clock::now() < deadline) {
		std::memset(scratch_->data(), kMarker, kPage);
		ASSERT_THAT(edu_->dma_to_device(kScratchIova, kPage), Succeeds());
		std::vector<Sample> batch;
		for (uint64_t slot = 0; slot < 16; slot++) {
			const uint64_t p = rng() % kPages;
			const auto begin = Clock::now();
			ASSERT_THAT(edu_->dma_to_device(IovaOf(p), 64, slot * 64), Succeeds());
			batch.push_back({ p, begin, Clock::now() });
		}
		ASSERT_THAT(edu_->dma_from_device(kScratchIova + kPage, kPage), Succeeds());
		for (uint64_t slot = 0; slot < batch.size(); slot++) {
			const uint8_t *got = scratch_->data() + kPage + slot * 64;
			const bool data = has_pattern(got, batch[slot].page, 1, 64);
			EXPECT_TRUE(data || all_bytes(got, 0, 64) || all_bytes(got, kMarker, 64))
				<< "slot " << slot << " holds something else than page "
				<< batch[slot].page << ", zeros or the marker";
			results.emplace_back(batch[slot], data);
		}
	}
	stop = true;
	converter.join();
	EXPECT_TRUE(conv_error.empty()) << conv_error;
	EXPECT_EQ(eagain, 0u) << "a to-private conversion needed a retry: a page was pinned";

	uint64_t reached = 0, blocked = 0, stray = 0;
	for (const auto &[s, data] : results) {
		bool private_throughout = false;
		for (const auto &iv : priv[s.page])
			private_throughout |= iv.since <= s.begin && iv.until >= s.end;
		if (data && private_throughout) {
			stray++;
			ADD_FAILURE() << "DMA read page " << s.page << " while it was private";
		}
		reached += data;
		blocked += !data;
	}
	figures.storm_samples += results.size();
	figures.stray += stray;
	figures.reached += reached;
	figures.blocked += blocked;
	std::printf("storm: %zu reads, %llu reached, %llu blocked, %llu stray; %llu to-private, "
		    "%llu to-shared conversions\n",
		    results.size(), (unsigned long long)reached, (unsigned long long)blocked,
		    (unsigned long long)stray, (unsigned long long)figures.storm_to_private,
		    (unsigned long long)figures.storm_to_shared);
	EXPECT_GT(reached, 0u) << "the storm never reached a page: it tested nothing";
	EXPECT_GT(blocked, 0u) << "the storm never met a private page: it tested nothing";

	// Everything shared again: every page kept its data.
	ASSERT_THAT(Convert(true, 0, kPages), Succeeds());
	for (uint64_t p = 0; p < kPages; p++)
		EXPECT_TRUE(has_pattern(Page(p), p, 1)) << "page " << p << " lost its data";
}

// The figures of the run, for the closing note.
class Summary : public ::testing::Environment {
public:
	void TearDown() override
	{
		const auto *u = ::testing::UnitTest::GetInstance();
		std::printf(
			"EDU-DMA SUMMARY: viommu=%s cases=%d passed=%d failed=%d skipped=%d "
			"dmas=%llu reached=%llu blocked=%llu faults_wanted=%llu faults_seen=%llu "
			"stray=%llu storm_reads=%llu\n",
			figures.kind.empty() ? "none" : figures.kind.c_str(),
			u->test_to_run_count(), u->successful_test_count(), u->failed_test_count(),
			u->skipped_test_count(), (unsigned long long)figures.dmas,
			(unsigned long long)figures.reached, (unsigned long long)figures.blocked,
			(unsigned long long)figures.faults_wanted,
			(unsigned long long)figures.faults_seen, (unsigned long long)figures.stray,
			(unsigned long long)figures.storm_samples);
	}
};

// --viommu=KIND among the arguments GoogleTest left.
const bool registered = [] {
	for (const auto &a : ::testing::internal::GetArgvs())
		if (a.rfind("--viommu=", 0) == 0)
			wanted_kind = a.substr(9);
	::testing::AddGlobalTestEnvironment(new Summary);
	return true;
}();

} // namespace
} // namespace gmem
