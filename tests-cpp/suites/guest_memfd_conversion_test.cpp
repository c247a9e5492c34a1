// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// In-place conversion through libgmemvmm: KVM_GMEM_CONVERT_SHARED and
// KVM_GMEM_CONVERT_PRIVATE on a convertible guest_memfd of a
// KVM_X86_SW_PROTECTED_VM. Every test reads back the state of every page
// through the host mapping (shared: accessible, private: SIGBUS).
#include <liburing.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "gmem/kvm.h"
#include "mock/host_access.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::host_touch;
using ::gmem::testing::Succeeds;
using ::gmem::testing::SyscallFailsWithErrno;
using ::gmem::testing::SyscallSucceeds;
using ::gmem::testing::SyscallSucceedsWithValue;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 64;
constexpr uint64_t kSize = kPages * kPage;

// Parameters: the VM type (the hardware types are probed through
// KVM_CAP_VM_TYPES and skipped with the reason where the host has none),
// and whether the file starts shared (GUEST_MEMFD_FLAG_INIT_SHARED).
class GuestMemfdConversionTest : public ::testing::TestWithParam<std::tuple<unsigned long, bool>> {
protected:
	static bool InitShared() { return std::get<1>(GetParam()); }

	void SetUp() override
	{
		const unsigned long type = std::get<0>(GetParam());
		auto kvm = Kvm::open();
		if (!kvm)
			GTEST_SKIP() << kvm.error().message();
		if (!kvm->supports_vm_type(type))
			GTEST_SKIP() << vm_type_name(type) << " not supported by this host";
		if (kvm->check_extension(KVM_CAP_GUEST_MEMFD_CONVERT).value_or(0) <= 0)
			GTEST_SKIP() << "KVM_CAP_GUEST_MEMFD_CONVERT not supported";
		auto vm = kvm->create_vm(type);
		ASSERT_THAT(vm, Succeeds());
		vm_.emplace(std::move(vm).value());
		if (!(vm_->guest_memfd_flags() & GUEST_MEMFD_FLAG_CONVERTIBLE))
			GTEST_SKIP() << vm_type_name(type) << " does not offer CONVERTIBLE files";
		uint64_t flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE;
		if (InitShared())
			flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
		auto g = vm_->create_guest_memfd(kSize, flags);
		ASSERT_THAT(g, Succeeds());
		gmem_.emplace(std::move(g).value());
		auto m = gmem_->map(0, kSize);
		ASSERT_THAT(m, Succeeds());
		map_.emplace(std::move(m).value());
		shared_.assign(kPages, InitShared());
	}

	uint8_t *page(uint64_t i) const { return map_->data() + i * kPage; }

	Result<void> to_shared(uint64_t first, uint64_t n)
	{
		auto r = gmem_->convert_shared(first * kPage, n * kPage);
		if (r.has_value())
			std::fill_n(shared_.begin() + first, n, true);
		return r;
	}
	Result<void> to_private(uint64_t first, uint64_t n)
	{
		auto r = gmem_->convert_private(first * kPage, n * kPage);
		if (r.has_value())
			std::fill_n(shared_.begin() + first, n, false);
		return r;
	}

	// Every page is accessible exactly when it should be shared.
	void ExpectStates() const
	{
		for (uint64_t i = 0; i < kPages; i++)
			ASSERT_EQ(host_touch(page(i)), shared_[i])
				<< "page " << i << " should be "
				<< (shared_[i] ? "shared" : "private");
	}

	std::optional<Vm> vm_;
	std::optional<GuestMemfd> gmem_;
	std::optional<Mapping> map_;
	std::vector<bool> shared_;
};

// A single-page conversion flips that page only, in both directions.
TEST_P(GuestMemfdConversionTest, ConvertsOnePageAtATime)
{
	ExpectStates();
	for (uint64_t i = 1; i < kPages; i += 7) {
		if (shared_[i])
			ASSERT_THAT(to_private(i, 1), Succeeds());
		else
			ASSERT_THAT(to_shared(i, 1), Succeeds());
		ExpectStates();
	}
}

// A range converts as a whole, and a range partly in the target state is
// fine.
TEST_P(GuestMemfdConversionTest, ConvertsRangesPartlyInTargetState)
{
	ASSERT_THAT(to_shared(8, 8), Succeeds());
	ASSERT_THAT(to_shared(0, 32), Succeeds());
	ExpectStates();
	ASSERT_THAT(to_private(20, 4), Succeeds());
	ASSERT_THAT(to_private(16, 16), Succeeds());
	ExpectStates();
}

// SW-protected VMs keep the contents across a round trip.
TEST_P(GuestMemfdConversionTest, ContentsSurviveARoundTrip)
{
	ASSERT_THAT(to_shared(0, kPages), Succeeds());
	for (uint64_t i = 0; i < kPages; i++)
		std::memset(page(i), static_cast<int>(i), kPage);
	ASSERT_THAT(to_private(0, kPages), Succeeds());
	ExpectStates();
	ASSERT_THAT(to_shared(0, kPages), Succeeds());
	for (uint64_t i = 0; i < kPages; i++)
		ASSERT_EQ(page(i)[kPage / 2], static_cast<uint8_t>(i)) << "page " << i;
}

// An io_uring registered buffer pins its pages: to-private of a range that
// holds one fails with EAGAIN, error_offset names the pinned page, and no
// page changes; after unregistering, the same conversion succeeds.
TEST_P(GuestMemfdConversionTest, IoUringRegisteredBufferRefusesToPrivate)
{
	ASSERT_THAT(to_shared(0, kPages), Succeeds());
	std::memset(page(0), 0x5c, kSize);
	io_uring ring{};
	int r = io_uring_queue_init(4, &ring, 0);
	if (r < 0)
		GTEST_SKIP() << "io_uring_queue_init: " << std::strerror(-r);
	iovec iov{ page(10), 2 * kPage };
	r = io_uring_register_buffers(&ring, &iov, 1);
	if (r < 0) {
		io_uring_queue_exit(&ring);
		GTEST_SKIP() << "io_uring_register_buffers: " << std::strerror(-r);
	}

	auto res = gmem_->convert_private(4 * kPage, 16 * kPage);
	EXPECT_THAT(res, FailsWithErrno(EAGAIN));
	if (!res.has_value()) {
		ASSERT_TRUE(res.error().error_offset.has_value());
		EXPECT_EQ(*res.error().error_offset, 10 * kPage);
	}
	ExpectStates();
	EXPECT_EQ(page(10)[0], 0x5c);

	ASSERT_EQ(io_uring_unregister_buffers(&ring), 0);
	io_uring_queue_exit(&ring);
	EXPECT_THAT(to_private(4, 16), Succeeds());
	ExpectStates();
}

// vmsplice() into a pipe holds page references: the same refusal.
TEST_P(GuestMemfdConversionTest, VmspliceReferenceRefusesToPrivate)
{
	ASSERT_THAT(to_shared(0, kPages), Succeeds());
	int p[2];
	ASSERT_THAT(pipe(p), SyscallSucceeds());
	UniqueFd rd(p[0]), wr(p[1]);
	iovec iov{ page(33), kPage };
	ASSERT_THAT(vmsplice(wr.get(), &iov, 1, 0), SyscallSucceedsWithValue(kPage));

	auto res = gmem_->convert_private(32 * kPage, 4 * kPage);
	EXPECT_THAT(res, FailsWithErrno(EAGAIN));
	if (!res.has_value()) {
		EXPECT_EQ(res.error().error_offset.value_or(0), 33 * kPage);
	}
	ExpectStates();

	wr.reset();
	char buf[512];
	while (read(rd.get(), buf, sizeof(buf)) > 0) {
	}
	EXPECT_THAT(to_private(32, 4), Succeeds());
	ExpectStates();
}

// A private page as a syscall buffer is EFAULT, a shared one works.
TEST_P(GuestMemfdConversionTest, PrivatePageAsBufferIsEfault)
{
	ASSERT_THAT(to_private(5, 1), Succeeds());
	ASSERT_THAT(to_shared(6, 1), Succeeds());
	int p[2];
	ASSERT_THAT(pipe(p), SyscallSucceeds());
	UniqueFd rd(p[0]), wr(p[1]);
	EXPECT_THAT(write(wr.get(), page(5), 16), SyscallFailsWithErrno(EFAULT));
	EXPECT_THAT(write(wr.get(), page(6), 16), SyscallSucceedsWithValue(16));
}

// Invalid arguments are refused before any work, naming the whole range.
TEST_P(GuestMemfdConversionTest, InvalidRangesAreRefused)
{
	EXPECT_THAT(gmem_->convert_shared(1, kPage), FailsWithErrno(EINVAL));
	EXPECT_THAT(gmem_->convert_shared(0, 0), FailsWithErrno(EINVAL));
	EXPECT_THAT(gmem_->convert_private(kSize - kPage, 2 * kPage), FailsWithErrno(EINVAL));
	EXPECT_THAT(gmem_->convert_private(~0ULL & ~(kPage - 1), 2 * kPage),
		    FailsWithErrno(EINVAL));
	auto r = gmem_->convert_shared(kPage, kSize);
	ASSERT_THAT(r, FailsWithErrno(EINVAL));
	EXPECT_EQ(r.error().error_offset.value_or(0), kPage);
	ExpectStates();
}

// Threads converting their own interleaved pages concurrently (so the
// state structure splits and merges under all of them) end in exactly the
// state each thread last asked for, while another thread keeps faulting
// the pages in; transient references from those faults never fail a
// conversion.
TEST_P(GuestMemfdConversionTest, ConcurrentConversionsEndConsistent)
{
	constexpr uint64_t kThreads = 4;
	constexpr int kRounds = 200;
	// want[i]: the last state page i's owner (thread i % kThreads) set.
	std::vector<uint8_t> want(kPages, InitShared());
	std::atomic<bool> stop{ false };
	std::atomic<int> failures{ 0 };

	std::vector<std::thread> threads;
	for (uint64_t t = 0; t < kThreads; t++) {
		threads.emplace_back([&, t] {
			std::mt19937 rng(1234 + t);
			for (int r = 0; r < kRounds; r++) {
				uint64_t i = t + kThreads * (rng() % (kPages / kThreads));
				bool shared = rng() & 1;
				auto res = shared ? gmem_->convert_shared(i * kPage, kPage)
						  : gmem_->convert_private(i * kPage, kPage);
				if (res.has_value())
					want[i] = shared;
				else
					failures++;
			}
		});
	}
	std::thread reader([&] {
		while (!stop.load()) {
			for (uint64_t i = 0; i < kPages; i++)
				host_touch(page(i));
		}
	});
	for (auto &th : threads)
		th.join();
	stop = true;
	reader.join();
	ASSERT_EQ(failures.load(), 0);
	for (uint64_t i = 0; i < kPages; i++)
		shared_[i] = want[i];
	ExpectStates();
}

// SW-protected VMs keep contents across conversions; SEV-SNP and TDX would
// also have to update the RMP / Secure EPT and may scrub pages, which is
// why they do not offer CONVERTIBLE files yet (the suite skips them).
INSTANTIATE_TEST_SUITE_P(VmTypeAndInitialState, GuestMemfdConversionTest,
			 ::testing::Combine(::testing::Values(1UL /* KVM_X86_SW_PROTECTED_VM */,
							      4UL /* KVM_X86_SNP_VM */,
							      5UL /* KVM_X86_TDX_VM */),
					    ::testing::Bool()),
			 [](const auto &info) {
				 return std::string(vm_type_name(std::get<0>(info.param))) +
					(std::get<1>(info.param) ? "_InitShared" : "_InitPrivate");
			 });

} // namespace
} // namespace gmem
