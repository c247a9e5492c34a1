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
//
// The kselftest iommufd_guest_memfd owns the kernel's contract case by case
// (mapping, each conversion, hole punch, unmap, pins, errors, accesses);
// this suite keeps what it does not show: random and concurrent storms,
// domains attached and detached while mapped, host faults filling holes,
// one at a time and several threads at once, and memory cgroups: ENOMEM at
// a group's limit rather than the OOM killer, and the mirror's bookkeeping
// charged to the group.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "gmem/guest.h"
#include "gmem/iommufd.h"
#include "gmem/kvm.h"
#include "gmem/layout.h"
#include "mock/iommufd_mock.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::check_gmem;
using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::gmem_iopte_count;
using ::gmem::testing::have_iommufd_mock;
using ::gmem::testing::MockDomain;
using ::gmem::testing::Succeeds;
using ::testing::Not;

using layout::kPage;
constexpr uint64_t kFilePages = 64;
constexpr uint64_t kFileSize = kFilePages * kPage;
// The IOAS maps file pages [kFirst, kFirst + kMapPages) at kIova: a range
// inside the file, so that changes around it must not show, at an IOVA
// unlike the file offset.
constexpr uint64_t kFirst = 8;
constexpr uint64_t kMapPages = 48;
constexpr uint64_t kMapLen = kMapPages * kPage;
constexpr uint64_t kIova = MOCK_APERTURE_START + 0x100000;

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
		if (const std::string &why = ConvertibleGuest::unsupported(); !why.empty())
			GTEST_SKIP() << why;
		auto iommufd = Iommufd::open();
		if (!iommufd)
			GTEST_SKIP() << iommufd.error().message();
		iommufd_.emplace(std::move(iommufd).value());

		// The file as a VMM has it: the data slot of a ConvertibleGuest
		// (no vCPU runs). No retry on EAGAIN: nothing here pins a page,
		// so a conversion that needs one is a failure.
		GuestConfig config;
		config.data_size = kFileSize;
		if (InitShared())
			config.gmem_flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
		config.retry.attempts = 1;
		auto guest = ConvertibleGuest::create(config);
		ASSERT_THAT(guest, Succeeds());
		guest_.emplace(std::move(guest).value());
		gmem_ = &guest_->gmem();
		pages_.assign(kFilePages, Page{ InitShared(), false });

		auto ioas = iommufd_->alloc_ioas();
		ASSERT_THAT(ioas, Succeeds());
		ioas_.emplace(std::move(ioas).value());
		auto st = ioas_->mirror_status(kIova);
		if (errno_of(st) == ENOTTY)
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

	// Filling or emptying a whole domain moves the IOPTE counters by the
	// mirrored pages; then the kernel's numbers are the new baseline.
	void Rebaseline(bool attached)
	{
		auto io = gmem_iopte_count(*ioas_, kIova);
		ASSERT_THAT(io, Succeeds());
		const uint64_t n = MirroredCount();
		const uint64_t adds = io->adds - want_adds_;
		const uint64_t removes = io->removes - want_removes_;
		// MockDomain::attach() passes through the automatic domain before
		// the device gets its own, so only the net change is exact.
		if (attached)
			EXPECT_EQ(adds - removes, n)
				<< "attach: " << io->adds << " adds, " << io->removes
				<< " removes, " << n << " pages mirrored";
		else
			EXPECT_EQ(removes - adds, n)
				<< "detach: " << io->adds << " adds, " << io->removes
				<< " removes, " << n << " pages mirrored";
		want_adds_ = io->adds;
		want_removes_ = io->removes;
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
		Result<void> r = op == Op::kToShared	? guest_->convert(off, len, false)
				 : op == Op::kToPrivate ? guest_->convert(off, len, true)
				 : op == Op::kPunch	? gmem_->punch_hole(off, len)
							: gmem_->allocate(off, len);
		if (!r)
			return unexpected(r.error());
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
				if (!r.has_value()) {
					uint64_t bad = i;
					for (uint64_t k = i; k < j; k++) {
						if (!check_gmem(iommufd_->fd(),
								domains_[d].hwpt_id(), IovaOf(k),
								kPage, gmem_->fd(), k * kPage,
								!want)
							     .has_value()) {
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
		auto io = gmem_iopte_count(*ioas_, kIova);
		ASSERT_THAT(io, Succeeds());
		EXPECT_EQ(io->adds, want_adds_) << *st << " with " << domains_.size() << " domains";
		EXPECT_EQ(io->removes, want_removes_)
			<< *st << " with " << domains_.size() << " domains";
	}

	// Every page of the mapped range shared (and so mirrored).
	void AllShared() { Do(Op::kToShared, kFirst, kMapPages); }

	// Members in destruction order last to first: domains go before the
	// IOAS, the IOAS (and its file reference) before the rest.
	std::optional<ConvertibleGuest> guest_;
	const GuestMemfd *gmem_ = nullptr;
	std::optional<Iommufd> iommufd_;
	std::optional<Ioas> ioas_;
	std::vector<MockDomain> domains_;
	std::vector<Page> pages_;
	bool mapped_ = false;
	bool mock_ = false;
	uint64_t want_adds_ = 0;
	uint64_t want_removes_ = 0;
};

// A VMM asks IOMMU_OPTION_GUEST_MEMFD whether MAP_FILE mirrors a
// guest_memfd rather than trying one: this kernel (it has
// IOMMU_IOAS_MIRROR_STATUS, SetUp() checked) says it does.
TEST_P(IommufdGmem, OptionSaysMapFileMirrors)
{
	auto mirrors = iommufd_->mirrors_guest_memfd();
	ASSERT_THAT(mirrors, Succeeds());
	EXPECT_TRUE(*mirrors);
}

// A punched page maps nothing until the host faults it in through a
// mapping of the file: the fault fills the hole, which guest_memfd notifies
// as an allocation, and the mirror maps the page (the kselftests cover
// fallocate() and KVM's faults).
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

// A punched page maps nothing until it goes private and shared again; a
// conversion of pages that already are shared changes nothing, holes
// included.
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

// Threads fault the same holes in at once, each through its own mapping of
// the file: for each page one of them allocates it and the others find it,
// maybe while the first one's allocation is being mirrored; every read
// sees a zeroed page and the domains map each page once. (With the
// ownership model on, the next hole punch also checks that no domain's
// mapping of a page went uncounted.)
TEST_P(IommufdGmem, ConcurrentFirstTouchesOfHoles)
{
	constexpr int kRounds = 20;
	constexpr int kThreads = 3;
	ASSERT_NO_FATAL_FAILURE(AllShared());
	for (int round = 0; round < kRounds; round++) {
		ASSERT_NO_FATAL_FAILURE(Do(Op::kPunch, kFirst, kMapPages));
		std::vector<std::string> errors(kThreads);
		std::vector<std::thread> threads;
		std::atomic<int> ready{ 0 };
		for (int t = 0; t < kThreads; t++) {
			threads.emplace_back([&, t] {
				auto m = gmem_->map(kFirst * kPage, kMapLen);
				ready++;
				if (!m) {
					errors[t] = "mmap: " + m.error().message();
					return;
				}
				// Start together, so that the faults meet.
				while (ready.load() < kThreads)
					std::this_thread::yield();
				const volatile uint8_t *p = m->data();
				for (uint64_t i = 0; i < kMapPages; i++) {
					if (p[i * kPage + static_cast<uint64_t>(t)] != 0) {
						errors[t] = "file page " +
							    std::to_string(kFirst + i) +
							    " is not zeroed";
						return;
					}
				}
			});
		}
		for (auto &th : threads)
			th.join();
		for (const auto &e : errors)
			ASSERT_TRUE(e.empty()) << "round " << round << ": " << e;
		Delta d;
		for (uint64_t p = kFirst; p < kFirst + kMapPages; p++) {
			d.added += !Mirrored(p);
			pages_[p].allocated = true;
		}
		Count(d);
		ExpectMirror("after round " + std::to_string(round) + " of first touches");
		if (HasFailure())
			return;
	}
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

std::string ParamName(const ::testing::TestParamInfo<std::tuple<int, bool>> &info)
{
	static const char *const domains[] = { "NoDomain", "OneDomain", "TwoDomains" };
	return std::string(domains[std::get<0>(info.param)]) +
	       (std::get<1>(info.param) ? "_InitShared" : "_InitPrivate");
}

INSTANTIATE_TEST_SUITE_P(DomainsAndInitialState, IommufdGmem,
			 ::testing::Combine(::testing::Values(0, 1, 2), ::testing::Bool()),
			 ParamName);

// Memory cgroups. What IOMMU_IOAS_MAP_FILE and a conversion to shared
// allocate for the mirror, and the mirror's record of its pages, are the
// calling task's: charged to its memory cgroup, and at the group's limit
// the call fails with ENOMEM instead of invoking the OOM killer. Each call
// runs in a child process moved into a group of its own (cgroup v2, no
// swap in the test kernel), which reports only its errno as its exit
// status: at the limit, any further allocation of its own would fault.

constexpr uint64_t kBigPages = 16384; // 64 MiB
constexpr uint64_t kBigSize = kBigPages * kPage;
constexpr uint64_t kGroupLimit = 16 << 20;
// One xarray node records XA_CHUNK_SIZE (64) pages and is 576 bytes.
constexpr uint64_t kXaNodePages = 64;
constexpr uint64_t kXaNodeBytes = 576;
constexpr const char *kCgroupRoot = "/sys/fs/cgroup";

// Whether the harness booted this kernel from the test config, which has
// memory cgroups: there a missing memory controller is a failure.
bool booted_from_test_config()
{
	std::ifstream f("/proc/cmdline");
	std::string word;
	while (f >> word)
		if (word == "gmem.config=test")
			return true;
	return false;
}

bool write_file(const std::string &path, const std::string &text)
{
	std::ofstream f(path);
	f << text;
	f.flush();
	return static_cast<bool>(f);
}

// "key value" lines (memory.events, memory.stat): the value of @key, or
// nullopt.
std::optional<uint64_t> read_key(const std::string &path, const std::string &key)
{
	std::ifstream f(path);
	std::string k;
	uint64_t v;
	while (f >> k >> v)
		if (k == key)
			return v;
	return std::nullopt;
}

// "exited with 12 (Cannot allocate memory)" or "killed by signal 9".
std::string describe_status(int status)
{
	if (WIFSIGNALED(status))
		return "killed by signal " + std::to_string(WTERMSIG(status));
	if (WIFEXITED(status)) {
		const int e = WEXITSTATUS(status);
		return "exited with " + std::to_string(e) + " (" +
		       (e ? std::strerror(e) : "success") + ")";
	}
	return "status " + std::to_string(status);
}

class IommufdGmemMemcg : public ::testing::Test {
protected:
	void SetUp() override
	{
		if (const std::string &why = ConvertibleGuest::unsupported(); !why.empty())
			GTEST_SKIP() << why;
		auto iommufd = Iommufd::open();
		if (!iommufd)
			GTEST_SKIP() << iommufd.error().message();
		iommufd_.emplace(std::move(iommufd).value());

		const std::string root = kCgroupRoot;
		std::ifstream controllers(root + "/cgroup.controllers");
		std::string c;
		bool memory = false;
		while (controllers >> c)
			memory |= c == "memory";
		if (!memory) {
			const std::string why = "no cgroup v2 memory controller at " + root +
						" (CONFIG_MEMCG, and cgroup2 mounted there)";
			if (booted_from_test_config())
				FAIL() << why << ", which the test config has";
			GTEST_SKIP() << why;
		}
		ASSERT_TRUE(write_file(root + "/cgroup.subtree_control", "+memory"))
			<< "enabling the memory controller below " << root;
		const ::testing::TestInfo *t =
			::testing::UnitTest::GetInstance()->current_test_info();
		group_ = root + "/gmem-" + t->name() + "-" + std::to_string(::getpid());
		ASSERT_EQ(::mkdir(group_.c_str(), 0755), 0)
			<< group_ << ": " << std::strerror(errno);
		made_ = true;
		procs_ = UniqueFd(::open((group_ + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
		ASSERT_TRUE(procs_.valid()) << group_ << "/cgroup.procs: " << std::strerror(errno);
	}

	void TearDown() override
	{
		procs_.reset();
		if (made_) {
			EXPECT_EQ(::rmdir(group_.c_str()), 0)
				<< group_ << ": " << std::strerror(errno);
		}
	}

	void SetLimit(uint64_t bytes)
	{
		ASSERT_TRUE(write_file(group_ + "/memory.max", std::to_string(bytes)));
	}

	uint64_t Event(const std::string &key) const
	{
		return read_key(group_ + "/memory.events", key).value_or(~0ULL);
	}
	uint64_t Stat(const std::string &key) const
	{
		return read_key(group_ + "/memory.stat", key).value_or(0);
	}

	// Runs @fn (no allocation, returns an errno or 0) in a child process
	// inside the group; returns its wait status.
	template <typename F> int RunInGroup(F fn)
	{
		const pid_t pid = ::fork();
		if (pid == 0) {
			if (::write(procs_.get(), "0", 1) != 1)
				::_exit(255);
			::_exit(fn());
		}
		int status = 0;
		EXPECT_GT(pid, 0) << "fork: " << std::strerror(errno);
		if (pid > 0) {
			EXPECT_EQ(::waitpid(pid, &status, 0), pid);
		}
		return status;
	}

	// No OOM: the child exited by itself with @err, and the group saw no
	// OOM and no OOM kill, but did reach its limit.
	void ExpectEnomemWithoutOom(int status, const std::string &what)
	{
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == ENOMEM)
			<< what << " in the group: the child " << describe_status(status);
		EXPECT_EQ(Event("oom_kill"), 0U) << what << ": memory.events oom_kill";
		EXPECT_EQ(Event("oom"), 0U) << what << ": memory.events oom";
		EXPECT_GT(Event("max"), 0U) << what << " never reached memory.max";
	}

	void MakeGuest(bool init_shared)
	{
		GuestConfig config;
		config.data_size = kBigSize;
		if (init_shared)
			config.gmem_flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
		config.retry.attempts = 1;
		auto guest = ConvertibleGuest::create(config);
		ASSERT_THAT(guest, Succeeds());
		guest_.emplace(std::move(guest).value());
		auto ioas = iommufd_->alloc_ioas();
		ASSERT_THAT(ioas, Succeeds());
		ioas_.emplace(std::move(ioas).value());
	}

	// IOMMU_IOAS_MAP_FILE of the whole file, as a raw ioctl: no allocation
	// in the child. Returns the errno, or 0.
	int MapFileErrno() const
	{
		iommu_ioas_map_file cmd{};
		cmd.size = sizeof(cmd);
		cmd.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			    IOMMU_IOAS_MAP_WRITEABLE;
		cmd.ioas_id = ioas_->id();
		cmd.fd = guest_->gmem().fd();
		cmd.start = 0;
		cmd.length = kBigSize;
		cmd.iova = kIova;
		return ::ioctl(ioas_->iommufd(), IOMMU_IOAS_MAP_FILE, &cmd) ? errno : 0;
	}

	std::optional<Iommufd> iommufd_;
	std::optional<ConvertibleGuest> guest_;
	std::optional<Ioas> ioas_;
	std::string group_;
	bool made_ = false;
	UniqueFd procs_;
};

// MAP_FILE of a shared range larger than the group's limit allocates up to
// the limit, then fails with ENOMEM: no OOM kill, and no mapping is made.
TEST_F(IommufdGmemMemcg, MapFileOverTheLimitFailsWithEnomem)
{
	ASSERT_NO_FATAL_FAILURE(MakeGuest(true));
	ASSERT_NO_FATAL_FAILURE(SetLimit(kGroupLimit));
	const int status = RunInGroup([this] { return MapFileErrno(); });
	ExpectEnomemWithoutOom(status, "IOMMU_IOAS_MAP_FILE of 64 MiB with memory.max 16 MiB");
	EXPECT_THAT(ioas_->mirror_status(kIova), FailsWithErrno(ENOENT))
		<< "a failed IOMMU_IOAS_MAP_FILE left a mapping";
}

// A conversion to shared of a mirrored range larger than the group's limit
// allocates the range's pages first, up to the limit, then fails with
// ENOMEM: no OOM kill, and no page became shared (all or nothing), so the
// mirror maps nothing although pages were allocated.
TEST_F(IommufdGmemMemcg, ToSharedOverTheLimitFailsWithEnomem)
{
	ASSERT_NO_FATAL_FAILURE(MakeGuest(false));
	ASSERT_EQ(MapFileErrno(), 0) << "IOMMU_IOAS_MAP_FILE of the private range";
	ASSERT_NO_FATAL_FAILURE(SetLimit(kGroupLimit));
	const int fd = guest_->gmem().fd();
	const int status = RunInGroup([fd] {
		kvm_gmem_convert args{};
		args.offset = 0;
		args.size = kBigSize;
		return ::ioctl(fd, KVM_GMEM_CONVERT_SHARED, &args) ? errno : 0;
	});
	ExpectEnomemWithoutOom(status, "KVM_GMEM_CONVERT_SHARED of 64 MiB with memory.max 16 MiB");
	auto st = ioas_->mirror_status(kIova);
	ASSERT_THAT(st, Succeeds());
	EXPECT_EQ(st->mapped_pages, 0U) << "pages became shared: " << *st;
	EXPECT_EQ(st->pending_pages, 0U) << *st;
}

// The mirror's record of the pages it maps is charged to the group of the
// task that maps them: the file's pages are allocated outside the group
// first, so what the group is charged for MAP_FILE of N pages is the
// bookkeeping, which takes at least N / 64 xarray nodes.
TEST_F(IommufdGmemMemcg, MapFileBookkeepingIsCharged)
{
	ASSERT_NO_FATAL_FAILURE(MakeGuest(true));
	ASSERT_THAT(guest_->gmem().allocate(0, kBigSize), Succeeds());
	const uint64_t before = Stat("slab");
	const int status = RunInGroup([this] { return MapFileErrno(); });
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		<< "IOMMU_IOAS_MAP_FILE in the group: the child " << describe_status(status);
	auto st = ioas_->mirror_status(kIova);
	ASSERT_THAT(st, Succeeds());
	EXPECT_EQ(st->mapped_pages, kBigPages) << *st;

	// memory.stat is flushed at least every 2 s.
	const uint64_t want = kBigPages / kXaNodePages * kXaNodeBytes;
	uint64_t slab = 0;
	for (int i = 0; i < 50; i++) {
		slab = Stat("slab") - before;
		if (slab >= want)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(100));
	}
	EXPECT_GE(slab, want) << "slab charged to the group for recording " << kBigPages
			      << " pages";
	EXPECT_LT(read_key(group_ + "/memory.stat", "file").value_or(0), kBigSize / 4)
		<< "the file's pages, allocated outside the group, were charged to it";
}

} // namespace
} // namespace gmem
