// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// guest_memfd behaviour that the series must keep: creation per VM type,
// host access through mmap, and hole punching.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "gmem/kvm.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::Succeeds;
using ::gmem::testing::SyscallSucceeds;

constexpr uint64_t kSize = 16 * 4096;

class GuestMemfdBasicsTest : public ::testing::TestWithParam<unsigned long> {
protected:
	void SetUp() override
	{
		auto kvm = Kvm::open();
		if (!kvm)
			GTEST_SKIP() << "no KVM: " << kvm.error().message();
		if (!kvm->supports_vm_type(GetParam()))
			GTEST_SKIP() << vm_type_name(GetParam()) << " not supported by this host";
		if (kvm->check_extension(KVM_CAP_GUEST_MEMFD).value_or(0) <= 0)
			GTEST_SKIP() << "KVM_CAP_GUEST_MEMFD not supported";
		auto vm = kvm->create_vm(GetParam());
		ASSERT_THAT(vm, Succeeds());
		kvm_.emplace(std::move(kvm).value());
		vm_.emplace(std::move(vm).value());
	}

	std::optional<Kvm> kvm_;
	std::optional<Vm> vm_;
};

// Every flag KVM_CAP_GUEST_MEMFD_FLAGS reports creates a file alone, and an
// unreported flag is refused with EINVAL.
TEST_P(GuestMemfdBasicsTest, ReportedFlagsAreAccepted)
{
	uint64_t flags = vm_->guest_memfd_flags();
	for (int bit = 0; bit < 64; bit++) {
		uint64_t f = 1ULL << bit;
		auto g = vm_->create_guest_memfd(kSize, f);
		if (flags & f)
			EXPECT_THAT(g, Succeeds()) << "flag bit " << bit;
		else
			EXPECT_THAT(g, FailsWithErrno(EINVAL)) << "flag bit " << bit;
	}
}

// A size that is not a multiple of the page size is refused.
TEST_P(GuestMemfdBasicsTest, UnalignedSizeIsRefused)
{
	EXPECT_THAT(vm_->create_guest_memfd(kSize + 1), FailsWithErrno(EINVAL));
	EXPECT_THAT(vm_->create_guest_memfd(0), FailsWithErrno(EINVAL));
}

// Without GUEST_MEMFD_FLAG_MMAP the file cannot be mapped.
TEST_P(GuestMemfdBasicsTest, NoMmapWithoutFlag)
{
	GMEM_ASSERT_OK_AND_ASSIGN(g, vm_->create_guest_memfd(kSize));
	EXPECT_THAT(g.map(0, kSize), FailsWithErrno(ENODEV));
}

// With MMAP|INIT_SHARED, host writes land in the file and punching a hole
// gives zeroes back on the next access; the file's size is unchanged.
TEST_P(GuestMemfdBasicsTest, HolePunchZeroesSharedPages)
{
	const uint64_t want = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
	if ((vm_->guest_memfd_flags() & want) != want)
		GTEST_SKIP() << vm_type_name(GetParam()) << " does not offer MMAP|INIT_SHARED";
	GMEM_ASSERT_OK_AND_ASSIGN(g, vm_->create_guest_memfd(kSize, want));
	GMEM_ASSERT_OK_AND_ASSIGN(m, g.map(0, kSize));
	const long page = sysconf(_SC_PAGESIZE);
	for (uint64_t i = 0; i < kSize / page; i++)
		std::memset(m.data() + i * page, 0x40 + static_cast<int>(i), page);

	ASSERT_THAT(g.punch_hole(page, 2 * page), Succeeds());
	for (uint64_t i = 0; i < kSize / page; i++) {
		uint8_t expect = (i == 1 || i == 2) ? 0 : 0x40 + i;
		EXPECT_EQ(m.data()[i * page], expect) << "page " << i;
		EXPECT_EQ(m.data()[i * page + page - 1], expect) << "page " << i;
	}
	struct stat st {};
	ASSERT_THAT(fstat(g.fd(), &st), SyscallSucceeds());
	EXPECT_EQ(st.st_size, static_cast<off_t>(kSize));
}

// Every VM type with private memory converts in place: SW-protected VMs,
// SEV-SNP and TDX offer GUEST_MEMFD_FLAG_CONVERTIBLE (INIT_SHARED with it)
// and create such files; the default VM type offers neither flag. SEV-SNP
// and TDX are skipped, with the reason, on a host whose KVM_CAP_VM_TYPES
// lacks them.
TEST_P(GuestMemfdBasicsTest, ConvertibleOnEveryPrivateMemoryType)
{
	const bool converts = GetParam() != KVM_X86_DEFAULT_VM;
	const uint64_t flags = vm_->guest_memfd_flags();
	const uint64_t convertible = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE;

	EXPECT_EQ((flags & GUEST_MEMFD_FLAG_CONVERTIBLE) != 0, converts);
	if (!converts) {
		EXPECT_THAT(vm_->create_guest_memfd(kSize, convertible), FailsWithErrno(EINVAL));
		return;
	}
	EXPECT_NE(flags & GUEST_MEMFD_FLAG_INIT_SHARED, 0U);
	EXPECT_THAT(vm_->create_guest_memfd(kSize, convertible), Succeeds());
	EXPECT_THAT(vm_->create_guest_memfd(kSize, convertible | GUEST_MEMFD_FLAG_INIT_SHARED),
		    Succeeds());
}

// Hole punching must be page aligned.
TEST_P(GuestMemfdBasicsTest, UnalignedPunchIsRefused)
{
	GMEM_ASSERT_OK_AND_ASSIGN(g, vm_->create_guest_memfd(kSize));
	EXPECT_THAT(g.punch_hole(1, 4096), FailsWithErrno(EINVAL));
	EXPECT_THAT(g.punch_hole(0, 4095), FailsWithErrno(EINVAL));
}

INSTANTIATE_TEST_SUITE_P(VmTypes, GuestMemfdBasicsTest,
			 ::testing::Values(KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM,
					   KVM_X86_SNP_VM, KVM_X86_TDX_VM),
			 [](const auto &info) { return std::string(vm_type_name(info.param)); });

} // namespace
} // namespace gmem
