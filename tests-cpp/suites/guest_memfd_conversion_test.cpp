// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// In-place conversion through libgmemvmm: KVM_GMEM_CONVERT_SHARED and
// KVM_GMEM_CONVERT_PRIVATE on a convertible guest_memfd of each VM type
// that converts in place, where only a C++ program reaches: an io_uring
// registered buffer as the page reference that refuses to-private, and
// threads converting concurrently. The ioctls' own semantics (per-page
// precision, ranges partly in the target state, contents kept, page
// references, EFAULT on private buffers, the errno table) are the KVM
// kselftest guest_memfd_conversion_test's. Every test reads back the
// state of every page through the host mapping (shared: accessible,
// private: SIGBUS).
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

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 64;
constexpr uint64_t kSize = kPages * kPage;

// Parameters: the VM type (the hardware types are probed through
// KVM_CAP_VM_TYPES and skipped with the reason where the host has none),
// whether the file starts shared (GUEST_MEMFD_FLAG_INIT_SHARED), and the
// conversion interface (KVM_GMEM_CONVERT_* or KVM_SET_MEMORY_ATTRIBUTES2).
class GuestMemfdConversionTest
    : public ::testing::TestWithParam<std::tuple<unsigned long, bool, ConvertApi>> {
protected:
	static bool InitShared() { return std::get<1>(GetParam()); }
	static ConvertApi Api() { return std::get<2>(GetParam()); }

	Result<void> convert(uint64_t offset, uint64_t len, bool to_private) const
	{
		return gmem_->convert(offset, len, to_private, Api());
	}

	void SetUp() override
	{
		const unsigned long type = std::get<0>(GetParam());
		auto kvm = Kvm::open();
		if (!kvm)
			GTEST_SKIP() << kvm.error().message();
		if (!kvm->supports_vm_type(type))
			GTEST_SKIP() << vm_type_name(type) << " not supported by this host";
		auto vm = kvm->create_vm(type);
		ASSERT_THAT(vm, Succeeds());
		vm_.emplace(std::move(vm).value());
		// Every type of the suite converts in place where the host has it.
		ASSERT_NE(vm_->guest_memfd_flags() & GUEST_MEMFD_FLAG_CONVERTIBLE, 0U)
			<< vm_type_name(type) << " does not offer CONVERTIBLE files";
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
		auto r = convert(first * kPage, n * kPage, false);
		if (r.has_value())
			std::fill_n(shared_.begin() + first, n, true);
		return r;
	}
	Result<void> to_private(uint64_t first, uint64_t n)
	{
		auto r = convert(first * kPage, n * kPage, true);
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

	auto res = convert(4 * kPage, 16 * kPage, true);
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
				auto res = convert(i * kPage, kPage, !shared);
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

// Every VM type that converts in place; SEV-SNP and TDX are skipped, with
// the reason, on a host whose KVM_CAP_VM_TYPES lacks them. No test here
// depends on contents across a conversion, which only SW-protected VMs
// keep (SEV-SNP leaves them undefined, TDX zeroes them).
INSTANTIATE_TEST_SUITE_P(VmTypeInitialStateAndApi, GuestMemfdConversionTest,
			 ::testing::Combine(::testing::Values(KVM_X86_SW_PROTECTED_VM,
							      KVM_X86_SNP_VM, KVM_X86_TDX_VM),
					    ::testing::Bool(),
					    ::testing::Values(ConvertApi::kGmemConvert,
							      ConvertApi::kMemoryAttributes2)),
			 [](const auto &info) {
				 return std::string(vm_type_name(std::get<0>(info.param))) +
					(std::get<1>(info.param) ? "_InitShared" : "_InitPrivate") +
					(std::get<2>(info.param) == ConvertApi::kGmemConvert
						 ? "_GmemConvert"
						 : "_MemoryAttributes2");
			 });

} // namespace
} // namespace gmem
