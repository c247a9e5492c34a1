// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// iommufd mapping a convertible guest_memfd without pinning
// (IOMMU_IOAS_MAP_FILE): every mock IOMMU domain of the IOAS mirrors the
// file's shared, allocated pages through conversions, hole punches and
// fallocate(). The fixture keeps a model of every file page (shared?
// allocated?) and after every step checks the mirror invariant against it:
// for every page of the mapped range and every domain, shared and allocated
// <=> the domain maps that file page's PFN, else it maps nothing; and
// IOMMU_IOAS_MIRROR_STATUS counts exactly those pages, has nothing pending,
// and its IOPTE counters moved by exactly the pages that changed.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "testing/gmem_test_client.h"
#include "testing/iommufd_mock.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::check_gmem;
using ::gmem::testing::check_refs;
using ::gmem::testing::Event;
using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::have_iommufd_mock;
using ::gmem::testing::MockAccess;
using ::gmem::testing::MockClient;
using ::gmem::testing::MockDomain;
using ::gmem::testing::Succeeds;
using ::testing::Contains;
using ::testing::Not;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kFilePages = 64;
constexpr uint64_t kFileSize = kFilePages * kPage;
// The IOAS maps file pages [kFirst, kFirst + kMapPages) at kIova: a range
// inside the file, so that changes around it must not show, at an IOVA
// unlike the file offset.
constexpr uint64_t kFirst = 8;
constexpr uint64_t kMapPages = 48;
constexpr uint64_t kMapLen = kMapPages * kPage;
constexpr uint64_t kIova = MOCK_APERTURE_START + 0x100000;
// Free IOVA for mappings that must fail or are not of a guest_memfd.
constexpr uint64_t kOtherIova = MOCK_APERTURE_START + 0x1000000;

// The model of one file page.
struct Page {
	bool shared = false;
	bool allocated = false;
};

enum class Op { kToShared, kToPrivate, kPunch, kAllocate };

// Pages that became mirrored / stopped being mirrored in one step.
struct Delta {
	uint64_t added = 0;
	uint64_t removed = 0;
};

std::string describe(Op op, uint64_t first, uint64_t n)
{
	static const char *const names[] = { "convert_shared", "convert_private", "punch_hole",
					     "fallocate" };
	std::ostringstream s;
	s << names[static_cast<int>(op)] << " of pages [" << first << ", " << first + n << ")";
	return s.str();
}

// One random step within pages [lo, hi): both conversions (40% each), hole
// punches and fallocate() (10% each), 1 to 16 pages. rng() % n rather than
// a distribution keeps the sequence the same with every C++ library.
std::tuple<Op, uint64_t, uint64_t> random_step(std::mt19937 &rng, uint64_t lo, uint64_t hi)
{
	const unsigned r = rng() % 10;
	const Op op = r < 4   ? Op::kToShared
		      : r < 8 ? Op::kToPrivate
		      : r < 9 ? Op::kPunch
			      : Op::kAllocate;
	const uint64_t first = lo + rng() % (hi - lo);
	const uint64_t n = 1 + rng() % std::min<uint64_t>(16, hi - first);
	return { op, first, n };
}

// Parameters: how many mock domains the IOAS has (0: the mirror only keeps
// count), and whether the file starts shared (GUEST_MEMFD_FLAG_INIT_SHARED).
// With two domains, the second is attached after the mapping is made.
class IommufdGmem : public ::testing::TestWithParam<std::tuple<int, bool>> {
protected:
	static size_t Domains() { return static_cast<size_t>(std::get<0>(GetParam())); }
	static bool InitShared() { return std::get<1>(GetParam()); }

	void SetUp() override
	{
		auto kvm = Kvm::open();
		if (!kvm)
			GTEST_SKIP() << kvm.error().message();
		if (!kvm->supports_vm_type(KVM_X86_SW_PROTECTED_VM))
			GTEST_SKIP() << "KVM_X86_SW_PROTECTED_VM not supported by this host";
		if (kvm->check_extension(KVM_CAP_GUEST_MEMFD_CONVERT) <= 0)
			GTEST_SKIP() << "KVM_CAP_GUEST_MEMFD_CONVERT not supported";
		auto iommufd = Iommufd::open();
		if (!iommufd)
			GTEST_SKIP() << iommufd.error().message();
		iommufd_.emplace(std::move(iommufd).value());

		auto vm = kvm->create_vm(KVM_X86_SW_PROTECTED_VM);
		ASSERT_THAT(vm, Succeeds());
		vm_.emplace(std::move(vm).value());
		if (!(vm_->guest_memfd_flags() & GUEST_MEMFD_FLAG_CONVERTIBLE))
			GTEST_SKIP() << "KVM_X86_SW_PROTECTED_VM does not offer CONVERTIBLE files";
		uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE;
		if (InitShared())
			flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
		auto g = vm_->create_guest_memfd(kFileSize, flags);
		ASSERT_THAT(g, Succeeds());
		gmem_.emplace(std::move(g).value());
		pages_.assign(kFilePages, Page{ InitShared(), false });

		auto ioas = iommufd_->alloc_ioas();
		ASSERT_THAT(ioas, Succeeds());
		ioas_.emplace(std::move(ioas).value());
		auto st = ioas_->mirror_status(kIova);
		if (st.err() == ENOTTY)
			GTEST_SKIP() << "no IOMMU_IOAS_MIRROR_STATUS in this kernel";
		ASSERT_THAT(st, FailsWithErrno(ENOENT));
		mock_ = have_iommufd_mock(iommufd_->fd());
		if (Domains() > 0 && !mock_)
			GTEST_SKIP() << "no iommufd mock domains (CONFIG_IOMMUFD_TEST)";

		const size_t before = Domains() > 1 ? Domains() - 1 : Domains();
		for (size_t i = 0; i < before; i++)
			ASSERT_NO_FATAL_FAILURE(AttachDomain());
		ASSERT_NO_FATAL_FAILURE(Map());
		while (domains_.size() < Domains())
			ASSERT_NO_FATAL_FAILURE(AttachDomain());
		ExpectMirror("after setup");
	}

	static bool InMap(uint64_t p) { return p >= kFirst && p < kFirst + kMapPages; }
	static uint64_t IovaOf(uint64_t p) { return kIova + (p - kFirst) * kPage; }

	// Whether the domains must map file page @p now.
	bool Mirrored(uint64_t p) const
	{
		return mapped_ && InMap(p) && pages_[p].shared && pages_[p].allocated;
	}
	uint64_t MirroredCount() const
	{
		uint64_t n = 0;
		for (uint64_t p = kFirst; p < kFirst + kMapPages; p++)
			n += Mirrored(p);
		return n;
	}
	std::string Describe(uint64_t p) const
	{
		return std::string(pages_[p].shared ? "shared" : "private") +
		       (pages_[p].allocated ? ", allocated" : ", not allocated");
	}

	// IOMMU_IOAS_MAP_FILE of the range; the new area's counters start with
	// one install per mirrored page per domain, and no removal.
	void Map()
	{
		auto r = ioas_->map_file(gmem_->fd(), kFirst * kPage, kMapLen, kIova);
		ASSERT_THAT(r, Succeeds());
		ASSERT_EQ(*r, kIova);
		mapped_ = true;
		// Mapping allocates the range's shared pages.
		for (uint64_t p = kFirst; p < kFirst + kMapPages; p++)
			if (pages_[p].shared)
				pages_[p].allocated = true;
		want_adds_ = MirroredCount() * domains_.size();
		want_removes_ = 0;
		ExpectMirror("after IOMMU_IOAS_MAP_FILE");
	}

	void Unmap()
	{
		auto r = ioas_->unmap(kIova, kMapLen);
		ASSERT_THAT(r, Succeeds());
		EXPECT_EQ(*r, kMapLen);
		mapped_ = false;
	}

	// Filling or emptying a whole domain moves the IOPTE counters by the
	// mirrored pages; then the kernel's numbers are the new baseline.
	void Rebaseline(bool attached)
	{
		auto st = ioas_->mirror_status(kIova);
		ASSERT_THAT(st, Succeeds());
		const uint64_t n = MirroredCount();
		const uint64_t adds = st->iopte_adds - want_adds_;
		const uint64_t removes = st->iopte_removes - want_removes_;
		// MockDomain::attach() passes through the automatic domain before
		// the device gets its own, so only the net change is exact.
		if (attached)
			EXPECT_EQ(adds - removes, n)
				<< "attach: " << *st << ", " << n << " pages mirrored";
		else
			EXPECT_EQ(removes - adds, n)
				<< "detach: " << *st << ", " << n << " pages mirrored";
		want_adds_ = st->iopte_adds;
		want_removes_ = st->iopte_removes;
	}

	void AttachDomain()
	{
		auto d = MockDomain::attach(*ioas_);
		ASSERT_THAT(d, Succeeds());
		domains_.push_back(std::move(d).value());
		if (mapped_) {
			ASSERT_NO_FATAL_FAILURE(Rebaseline(true));
		}
		ExpectMirror("after attaching mock domain " + std::to_string(domains_.size() - 1));
	}

	void DetachDomain(size_t i)
	{
		ASSERT_THAT(domains_[i].detach(), Succeeds());
		domains_.erase(domains_.begin() + static_cast<long>(i));
		if (mapped_) {
			ASSERT_NO_FATAL_FAILURE(Rebaseline(false));
		}
		ExpectMirror("after detaching mock domain " + std::to_string(i));
	}

	// The step itself and the model's update. Safe to call from threads
	// working on disjoint page ranges.
	Result<Delta> Apply(Op op, uint64_t first, uint64_t n)
	{
		const uint64_t off = first * kPage, len = n * kPage;
		Result<void> r = op == Op::kToShared	? gmem_->convert_shared(off, len)
				 : op == Op::kToPrivate ? gmem_->convert_private(off, len)
				 : op == Op::kPunch	? gmem_->punch_hole(off, len)
							: gmem_->allocate(off, len);
		if (!r)
			return r.error();
		Delta d;
		for (uint64_t p = first; p < first + n; p++) {
			const bool was = Mirrored(p);
			Page &pg = pages_[p];
			switch (op) {
			case Op::kToShared:
				// The mirror allocates (and maps) the pages a
				// conversion makes shared; a page that already was
				// shared is not converted and stays as it is (a hole
				// stays a hole). Elsewhere allocation is left unknown,
				// which never matters: Map() allocates the range's
				// shared pages.
				if (!pg.shared && mapped_ && InMap(p))
					pg.allocated = true;
				pg.shared = true;
				break;
			case Op::kToPrivate:
				pg.shared = false;
				break;
			case Op::kPunch:
				pg.allocated = false;
				break;
			case Op::kAllocate:
				pg.allocated = true;
				break;
			}
			const bool now = Mirrored(p);
			d.added += now && !was;
			d.removed += was && !now;
		}
		return d;
	}

	void Count(const Delta &d)
	{
		want_adds_ += d.added * domains_.size();
		want_removes_ += d.removed * domains_.size();
	}

	// Apply() that must succeed (no EAGAIN while mapped), then the check.
	void Do(Op op, uint64_t first, uint64_t n)
	{
		auto d = Apply(op, first, n);
		ASSERT_THAT(d, Succeeds()) << describe(op, first, n);
		Count(*d);
		ExpectMirror("after " + describe(op, first, n));
	}

	// The first page of [from, to) some domain maps wrongly, as a message;
	// empty if all are right. Usable from threads.
	std::string DomainMismatch(uint64_t from, uint64_t to) const
	{
		for (size_t d = 0; d < domains_.size(); d++) {
			for (uint64_t i = from; i < to;) {
				const bool want = Mirrored(i);
				uint64_t j = i + 1;
				while (j < to && Mirrored(j) == want)
					j++;
				auto r =
					check_gmem(iommufd_->fd(), domains_[d].hwpt_id(), IovaOf(i),
						   (j - i) * kPage, gmem_->fd(), i * kPage, !want);
				if (!r.ok()) {
					uint64_t bad = i;
					for (uint64_t k = i; k < j; k++) {
						if (!check_gmem(iommufd_->fd(),
								domains_[d].hwpt_id(), IovaOf(k),
								kPage, gmem_->fd(), k * kPage,
								!want)
							     .ok()) {
							bad = k;
							break;
						}
					}
					std::ostringstream s;
					s << "mock domain " << d << ": file page " << bad << " ("
					  << Describe(bad) << ") should "
					  << (want ? "map its PFN" : "map nothing") << "; pages ["
					  << i << ", " << j << "): " << r.error().message();
					return s.str();
				}
				i = j;
			}
		}
		return {};
	}

	// The mirror invariant (see the top of the file).
	void ExpectMirror(const std::string &step)
	{
		SCOPED_TRACE(step);
		const std::string bad = DomainMismatch(kFirst, kFirst + kMapPages);
		EXPECT_TRUE(bad.empty()) << bad;
		auto st = ioas_->mirror_status(kIova);
		if (!mapped_) {
			EXPECT_THAT(st, FailsWithErrno(ENOENT));
			return;
		}
		ASSERT_THAT(st, Succeeds());
		EXPECT_EQ(st->iova, kIova);
		EXPECT_EQ(st->length, kMapLen);
		EXPECT_EQ(st->mapped_pages, MirroredCount()) << *st;
		EXPECT_EQ(st->pending_pages, 0u) << *st;
		EXPECT_EQ(st->error, 0) << *st;
		// Exact: an IOPTE removed and installed again for a page whose
		// state did not change would be a window of DMA faults.
		EXPECT_EQ(st->iopte_adds, want_adds_)
			<< *st << " with " << domains_.size() << " domains";
		EXPECT_EQ(st->iopte_removes, want_removes_)
			<< *st << " with " << domains_.size() << " domains";
	}

	// Every page of the mapped range shared (and so mirrored).
	void AllShared() { Do(Op::kToShared, kFirst, kMapPages); }

	// Members in destruction order last to first: domains go before the
	// IOAS, the IOAS (and its file reference) before the rest.
	std::optional<Vm> vm_;
	std::optional<GuestMemfd> gmem_;
	std::optional<Iommufd> iommufd_;
	std::optional<Ioas> ioas_;
	std::vector<MockDomain> domains_;
	std::vector<Page> pages_;
	bool mapped_ = false;
	bool mock_ = false;
	uint64_t want_adds_ = 0;
	uint64_t want_removes_ = 0;
};

// Mapping allocates the shared pages of the range and mirrors exactly
// those; MIRROR_STATUS describes the area (checked in SetUp) and RETRY with
// nothing pending changes nothing.
TEST_P(IommufdGmem, MapMirrorsTheSharedPages)
{
	EXPECT_EQ(MirroredCount(), InitShared() ? kMapPages : 0u);
	auto st = ioas_->mirror_status(kIova + kMapLen - 1, true);
	ASSERT_THAT(st, Succeeds());
	EXPECT_EQ(st->iova, kIova);
	EXPECT_EQ(st->pending_pages, 0u);
	EXPECT_EQ(st->error, 0);
	ExpectMirror("after MIRROR_STATUS with RETRY");
	EXPECT_THAT(ioas_->mirror_status(kIova + kMapLen), FailsWithErrno(ENOENT));
	EXPECT_THAT(ioas_->mirror_status(kIova - 1), FailsWithErrno(ENOENT));
}

// A new mapping of N shared pages with D domains installs N * D IOPTEs.
TEST_P(IommufdGmem, MapInstallsOneIoptePerSharedPagePerDomain)
{
	ASSERT_NO_FATAL_FAILURE(Unmap());
	ExpectMirror("after IOMMU_IOAS_UNMAP");
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst + 4, 12));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 8, 2));
	ASSERT_NO_FATAL_FAILURE(Map());
	auto st = ioas_->mirror_status(kIova);
	ASSERT_THAT(st, Succeeds());
	EXPECT_GE(MirroredCount(), 10u);
	EXPECT_EQ(st->iopte_adds, MirroredCount() * Domains()) << *st;
	EXPECT_EQ(st->iopte_removes, 0u) << *st;
}

// Converting mapped pages to private succeeds at once (no EAGAIN: the
// mirror holds no page references) and unmaps exactly those pages.
TEST_P(IommufdGmem, ConvertPrivateWhileMappedUnmapsOnlyThosePages)
{
	ASSERT_NO_FATAL_FAILURE(AllShared());
	const uint64_t removes = want_removes_;
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 10, 5));
	EXPECT_EQ(want_removes_ - removes, 5 * Domains());
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, 0, kFilePages));
	EXPECT_EQ(MirroredCount(), 0u);
	EXPECT_EQ(want_removes_ - removes, kMapPages * Domains());
}

// Pages converted back to shared are mapped again (their PFN checked).
TEST_P(IommufdGmem, ConvertSharedMapsAgain)
{
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst, kMapPages));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst + 3, 7));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 5, 1));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst, kMapPages));
	EXPECT_EQ(MirroredCount(), kMapPages);
	// Conversions around the range change nothing inside it.
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, 0, kFirst));
	ASSERT_NO_FATAL_FAILURE(
		Do(Op::kToPrivate, kFirst + kMapPages, kFilePages - kFirst - kMapPages));
}

// A punched hole maps nothing, also across unrelated conversions, until
// fallocate() allocates the pages again.
TEST_P(IommufdGmem, PunchUnmapsUntilFallocate)
{
	ASSERT_NO_FATAL_FAILURE(AllShared());
	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 3, 4));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 10, 2));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst + 10, 2));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kAllocate, kFirst, 8));
	EXPECT_EQ(MirroredCount(), kMapPages);
}

// ... or until the host faults a punched page in through a mapping of the
// file: the fault fills the hole, which guest_memfd notifies as an
// allocation, and the mirror maps the page.
TEST_P(IommufdGmem, HostFaultRefillsAHole)
{
	ASSERT_NO_FATAL_FAILURE(AllShared());
	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 3, 4));
	auto m = gmem_->map((kFirst + 3) * kPage, 2 * kPage);
	ASSERT_THAT(m, Succeeds());
	volatile uint8_t *p = m->data();
	p[0] = 0x5a;		// a write fault
	EXPECT_EQ(p[kPage], 0); // a read fault: a zeroed page
	Delta d;
	for (uint64_t i = kFirst + 3; i < kFirst + 5; i++) {
		d.added += !Mirrored(i);
		pages_[i].allocated = true;
	}
	Count(d);
	ExpectMirror("after faulting two punched pages in from the host");
	EXPECT_EQ(MirroredCount(), kMapPages - 2);
}

// ... or until a conversion to shared of private pages; a conversion of
// pages that already are shared changes nothing, holes included.
TEST_P(IommufdGmem, PunchUnmapsUntilConvertShared)
{
	ASSERT_NO_FATAL_FAILURE(AllShared());
	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 20, 8));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst + 20, 4));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 24, 4));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 24, 4));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst + 24, 4));
	// [20, 24) were shared holes: converting them to shared changed
	// nothing, so they stay holes; [24, 28) went private and back.
	EXPECT_EQ(MirroredCount(), kMapPages - 4);
}

// After IOMMU_IOAS_UNMAP of the whole area, conversions, punches and
// fallocate() work and nothing is mapped anywhere.
TEST_P(IommufdGmem, UnmapThenConversionsAndPunchAreFine)
{
	ASSERT_NO_FATAL_FAILURE(AllShared());
	ASSERT_NO_FATAL_FAILURE(Unmap());
	ExpectMirror("after IOMMU_IOAS_UNMAP");
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, 0, kFilePages));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst, 16));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 4, 4));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kAllocate, 0, kFilePages));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, 0, kFilePages));
}

// Random conversions both ways, hole punches and fallocate() over the whole
// file (inside, around and across the mapped range), the invariant checked
// after every step.
TEST_P(IommufdGmem, ConversionStorm)
{
	constexpr int kSteps = 400;
	std::mt19937 rng(20240917);
	for (int i = 0; i < kSteps; i++) {
		const auto [op, first, n] = random_step(rng, 0, kFilePages);
		const std::string step =
			"step " + std::to_string(i) + ": " + describe(op, first, n);
		auto d = Apply(op, first, n);
		ASSERT_THAT(d, Succeeds()) << step;
		Count(*d);
		ExpectMirror("after " + step);
		if (HasFailure())
			return;
	}
	ExpectMirror("after the storm");
}

// Threads each converting, punching and allocating their own slice of the
// file at once; each checks its own slice after each step, the whole
// invariant (counters included) holds at the end.
TEST_P(IommufdGmem, ConcurrentConversionStorm)
{
	constexpr uint64_t kThreads = 4;
	constexpr uint64_t kSlice = kFilePages / kThreads;
	constexpr int kSteps = 150;
	std::vector<Delta> deltas(kThreads);
	std::vector<std::string> errors(kThreads);
	std::vector<std::thread> threads;
	for (uint64_t t = 0; t < kThreads; t++) {
		threads.emplace_back([&, t] {
			const uint64_t lo = t * kSlice, hi = lo + kSlice;
			const uint64_t check_lo = std::max(lo, kFirst);
			const uint64_t check_hi = std::min(hi, kFirst + kMapPages);
			std::mt19937 rng(777 + t);
			for (int i = 0; i < kSteps; i++) {
				const auto [op, first, n] = random_step(rng, lo, hi);
				const std::string step = "thread " + std::to_string(t) + " step " +
							 std::to_string(i) + ": " +
							 describe(op, first, n);
				auto d = Apply(op, first, n);
				if (!d) {
					errors[t] = step + ": " + d.error().message();
					return;
				}
				deltas[t].added += d->added;
				deltas[t].removed += d->removed;
				if (check_lo < check_hi) {
					std::string bad = DomainMismatch(check_lo, check_hi);
					if (!bad.empty()) {
						errors[t] = "after " + step + ": " + bad;
						return;
					}
				}
			}
		});
	}
	for (auto &th : threads)
		th.join();
	for (const auto &e : errors)
		EXPECT_TRUE(e.empty()) << e;
	for (const auto &d : deltas)
		Count(d);
	ExpectMirror("after the threads");
}

// A domain attached to an IOAS with a mirrored area maps the same pages at
// once; detaching one leaves the others as they were; both keep following.
TEST_P(IommufdGmem, DomainsAttachedAndDetachedWhileMapped)
{
	if (!mock_)
		GTEST_SKIP() << "no iommufd mock domains (CONFIG_IOMMUFD_TEST)";
	std::mt19937 rng(4242);
	for (int i = 0; i < 20; i++) {
		const auto [op, first, n] = random_step(rng, 0, kFilePages);
		ASSERT_NO_FATAL_FAILURE(Do(op, first, n));
	}
	ASSERT_NO_FATAL_FAILURE(AttachDomain());
	ASSERT_NO_FATAL_FAILURE(AttachDomain());
	for (int i = 0; i < 20; i++) {
		const auto [op, first, n] = random_step(rng, 0, kFilePages);
		ASSERT_NO_FATAL_FAILURE(Do(op, first, n));
	}
	ASSERT_NO_FATAL_FAILURE(DetachDomain(0));
	for (int i = 0; i < 20; i++) {
		const auto [op, first, n] = random_step(rng, 0, kFilePages);
		ASSERT_NO_FATAL_FAILURE(Do(op, first, n));
	}
}

// The mapping pins nothing: no long-term pin on any mapped page.
TEST_P(IommufdGmem, MappingPinsNothing)
{
	if (!mock_)
		GTEST_SKIP() << "no IOMMU_TEST_OP_MD_CHECK_REFS (CONFIG_IOMMUFD_TEST)";
	ASSERT_NO_FATAL_FAILURE(AllShared());
	auto m = gmem_->map(kFirst * kPage, kMapLen);
	ASSERT_THAT(m, Succeeds());
	EXPECT_THAT(check_refs(iommufd_->fd(), m->data(), kMapLen, 0), Succeeds());
	m->reset();
	// Conversions after that still need no retry.
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst, kMapPages));
}

// The mapping holds the file: with the guest_memfd and the VM closed it
// stays mapped, and the file is released only by IOMMU_IOAS_UNMAP.
TEST_P(IommufdGmem, CloseGmemWhileMappedThenUnmap)
{
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst, 8));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 8, 4));
	std::optional<MockClient> client;
	if (access(MockClient::kPath, F_OK) == 0) {
		auto c = MockClient::open();
		ASSERT_THAT(c, Succeeds());
		client.emplace(std::move(c).value());
		ASSERT_THAT(client->attach(gmem_->fd()), Succeeds());
	}
	const uint64_t mirrored = MirroredCount();
	gmem_->close();
	vm_.reset();

	auto st = ioas_->mirror_status(kIova);
	ASSERT_THAT(st, Succeeds());
	EXPECT_EQ(st->mapped_pages, mirrored) << *st;
	EXPECT_EQ(st->pending_pages, 0u) << *st;
	const Event release_begin{ "begin", "release", 0, kFileSize };
	const Event release_end{ "end", "release", 0, kFileSize };
	if (client) {
		auto log = client->events();
		ASSERT_THAT(log, Succeeds());
		EXPECT_THAT(*log, Not(Contains(release_begin))) << "released while mapped";
	}

	ASSERT_NO_FATAL_FAILURE(Unmap());
	EXPECT_THAT(ioas_->mirror_status(kIova), FailsWithErrno(ENOENT));
	if (client) {
		auto log = client->events();
		ASSERT_THAT(log, Succeeds());
		EXPECT_THAT(*log, Contains(release_begin));
		EXPECT_THAT(*log, Contains(release_end));
	} else {
		std::cout << "[ NOTE     ] " << MockClient::kPath
			  << " missing (CONFIG_GUEST_MEMFD_TEST): release not observed\n";
	}
}

// MAP_FILE refuses what it cannot mirror, leaving no area behind.
TEST_P(IommufdGmem, MapFileErrors)
{
	const int fd = gmem_->fd();
	EXPECT_THAT(ioas_->map_file(fd, kPage / 2, kPage, kOtherIova), FailsWithErrno(EINVAL));
	EXPECT_THAT(ioas_->map_file(fd, 0, kPage + kPage / 2, kOtherIova), FailsWithErrno(EINVAL));
	EXPECT_THAT(ioas_->map_file(fd, kFileSize - kPage, 2 * kPage, kOtherIova),
		    FailsWithErrno(EINVAL));
	EXPECT_THAT(ioas_->map_file(fd, kFileSize, kPage, kOtherIova), FailsWithErrno(EINVAL));

	auto plain = vm_->create_guest_memfd(kFileSize, 0);
	ASSERT_THAT(plain, Succeeds());
	EXPECT_THAT(ioas_->map_file(plain->fd(), 0, kPage, kOtherIova), FailsWithErrno(EOPNOTSUPP));

	EXPECT_THAT(ioas_->mirror_status(kOtherIova), FailsWithErrno(ENOENT));
	ExpectMirror("after the refused maps");
}

// MIRROR_STATUS of an IOVA of an ordinary (pinned) mapping is EINVAL.
TEST_P(IommufdGmem, MirrorStatusOfAnotherMappingIsEinval)
{
	auto buf = Mapping::anonymous(4 * kPage);
	ASSERT_THAT(buf, Succeeds());
	std::memset(buf->data(), 1, buf->size());
	ASSERT_THAT(ioas_->map_memory(buf->data(), buf->size(), kOtherIova), Succeeds());
	EXPECT_THAT(ioas_->mirror_status(kOtherIova + kPage), FailsWithErrno(EINVAL));
	EXPECT_THAT(ioas_->unmap(kOtherIova, buf->size()), Succeeds());
	ExpectMirror("after the other mapping came and went");
}

// What a guest_memfd mapping cannot do: be copied to another IOAS, be
// unmapped in part, have its accounting moved to another process, or be
// pinned by an in-kernel access.
TEST_P(IommufdGmem, CopyPartialUnmapChangeProcessAndPinningAreRefused)
{
	ASSERT_NO_FATAL_FAILURE(AllShared());
	auto other = iommufd_->alloc_ioas();
	ASSERT_THAT(other, Succeeds());
	EXPECT_THAT(other->copy_from(*ioas_, kIova, kMapLen, kIova), FailsWithErrno(EOPNOTSUPP));
	// Part of the area stays mapped: ENOENT as for any area (IOMMU_IOAS_UNMAP
	// never splits one), or EOPNOTSUPP as the UAPI comment words it (what
	// a split, e.g. by the VFIO compat unmap, gets).
	auto part = ioas_->unmap(kIova, kPage);
	EXPECT_THAT(part, ::testing::AnyOf(FailsWithErrno(ENOENT), FailsWithErrno(EOPNOTSUPP)));
	EXPECT_THAT(iommufd_->change_process(), FailsWithErrno(EINVAL));
	if (mock_) {
		auto access = MockAccess::create(*ioas_, true);
		ASSERT_THAT(access, Succeeds());
		auto m = gmem_->map(kFirst * kPage, kMapLen);
		ASSERT_THAT(m, Succeeds());
		EXPECT_THAT(access->pin_pages(kIova, kPage, m->data()), FailsWithErrno(EOPNOTSUPP));
	}
	ExpectMirror("after the refusals");
}

// An in-kernel access reads and writes the shared, allocated pages (the
// host sees the data through mmap), gets EACCES on private pages and ENOENT
// on punched ones.
TEST_P(IommufdGmem, AccessRwReachesSharedPagesOnly)
{
	if (!mock_)
		GTEST_SKIP() << "no iommufd mock access (CONFIG_IOMMUFD_TEST)";
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst, 4));
	auto m = gmem_->map(kFirst * kPage, 4 * kPage);
	ASSERT_THAT(m, Succeeds());
	auto access = MockAccess::create(*ioas_);
	ASSERT_THAT(access, Succeeds());

	for (uint64_t i = 0; i < kPage; i++)
		m->data()[i] = static_cast<uint8_t>(i * 7);
	uint8_t buf[64];
	ASSERT_THAT(access->read(IovaOf(kFirst) + 100, buf, sizeof(buf)), Succeeds());
	EXPECT_EQ(std::memcmp(buf, m->data() + 100, sizeof(buf)), 0);

	std::memset(buf, 0xa5, sizeof(buf));
	ASSERT_THAT(access->write(IovaOf(kFirst + 1) + 10, buf, 32), Succeeds());
	EXPECT_EQ(std::memcmp(m->data() + kPage + 10, buf, 32), 0);

	ASSERT_NO_FATAL_FAILURE(Do(Op::kToPrivate, kFirst + 2, 1));
	EXPECT_THAT(access->read(IovaOf(kFirst + 2), buf, sizeof(buf)), FailsWithErrno(EACCES));
	EXPECT_THAT(access->write(IovaOf(kFirst + 2), buf, sizeof(buf)), FailsWithErrno(EACCES));

	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 3, 1));
	EXPECT_THAT(access->read(IovaOf(kFirst + 3), buf, sizeof(buf)), FailsWithErrno(ENOENT));
	EXPECT_THAT(access->write(IovaOf(kFirst + 3), buf, sizeof(buf)), FailsWithErrno(ENOENT));
	ExpectMirror("after the accesses");
}

// Dropping the page cache while mapped changes nothing.
TEST_P(IommufdGmem, DropCachesChangesNothing)
{
	ASSERT_NO_FATAL_FAILURE(Do(Op::kToShared, kFirst, 16));
	ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst + 4, 2));
	UniqueFd f(::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC));
	if (!f.valid())
		GTEST_SKIP() << "/proc/sys/vm/drop_caches: " << std::strerror(errno);
	ASSERT_EQ(::write(f.get(), "3\n", 2), 2) << std::strerror(errno);
	ExpectMirror("after drop_caches");
}

std::string ParamName(const ::testing::TestParamInfo<std::tuple<int, bool>> &info)
{
	static const char *const domains[] = { "NoDomain", "OneDomain", "TwoDomains" };
	return std::string(domains[std::get<0>(info.param)]) +
	       (std::get<1>(info.param) ? "_InitShared" : "_InitPrivate");
}

INSTANTIATE_TEST_SUITE_P(DomainsAndInitialState, IommufdGmem,
			 ::testing::Combine(::testing::Values(0, 1, 2), ::testing::Bool()),
			 ParamName);

} // namespace
} // namespace gmem
