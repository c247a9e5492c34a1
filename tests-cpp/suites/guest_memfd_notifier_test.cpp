// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The exact notifications guest_memfd sends its clients, observed through
// the CONFIG_GUEST_MEMFD_TEST mock client: hole punch, release, memory
// failure and a prepare refusal (which must leave the file unchanged).
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "gmem/kvm.h"
#include "mock/gmem_test_client.h"
#include "mock/host_access.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::change;
using ::gmem::testing::ev;
using ::gmem::testing::Event;
using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::MockClient;
using ::gmem::testing::refused;
using ::gmem::testing::Succeeds;
using ::gmem::testing::SyscallSucceeds;
using ::gmem::testing::SyscallSucceedsWithValue;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kSize = 16 * kPage;

class GuestMemfdNotifierTest : public ::testing::Test {
protected:
	// The default VM offers MMAP|INIT_SHARED: host writes can show that a
	// refused change left the contents alone.
	void SetUp() override
	{
		Open(KVM_X86_DEFAULT_VM, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
	}

	// A VM of @type and a guest_memfd of kSize with @flags, or a skip.
	void Open(unsigned long type, uint64_t flags)
	{
		auto kvm = Kvm::open();
		if (!kvm)
			GTEST_SKIP() << kvm.error().message();
		if (access(MockClient::kPath, F_OK) != 0)
			GTEST_SKIP() << MockClient::kPath << " missing (CONFIG_GUEST_MEMFD_TEST)";
		if (!kvm->supports_vm_type(type))
			GTEST_SKIP() << vm_type_name(type) << " not supported";
		auto vm = kvm->create_vm(type);
		ASSERT_THAT(vm, Succeeds());
		vm_.emplace(std::move(vm).value());
		if ((vm_->guest_memfd_flags() & flags) != flags)
			GTEST_SKIP() << vm_type_name(type) << " does not offer guest_memfd flags 0x"
				     << std::hex << flags;
		auto g = vm_->create_guest_memfd(kSize, flags);
		ASSERT_THAT(g, Succeeds());
		gmem_.emplace(std::move(g).value());
	}

	// A client attached to the test's guest_memfd.
	MockClient attached_client()
	{
		auto c = MockClient::open();
		EXPECT_THAT(c, Succeeds());
		EXPECT_THAT(c->attach(gmem_->fd()), Succeeds());
		return std::move(c).value();
	}

	static std::vector<Event> log_of(const MockClient &c)
	{
		auto e = c.events();
		EXPECT_THAT(e, Succeeds());
		return e.has_value() ? e.value() : std::vector<Event>{};
	}

	std::optional<Vm> vm_;
	std::optional<GuestMemfd> gmem_;
};

// A hole punch sends prepare, begin and end for exactly the punched range,
// whether or not its pages were allocated.
TEST_F(GuestMemfdNotifierTest, HolePunchNotifiesTruncateOfThePunchedRange)
{
	MockClient c = attached_client();
	ASSERT_THAT(gmem_->allocate(0, 4 * kPage), Succeeds());
	ASSERT_THAT(gmem_->punch_hole(kPage, 2 * kPage), Succeeds());
	ASSERT_THAT(gmem_->punch_hole(8 * kPage, 4 * kPage), Succeeds());

	std::vector<Event> want = change("allocate", 0, 4 * kPage, false);
	for (auto &e : change("truncate", kPage, 3 * kPage))
		want.push_back(e);
	for (auto &e : change("truncate", 8 * kPage, 12 * kPage))
		want.push_back(e);
	EXPECT_THAT(log_of(c), ElementsAreArray(want));
}

// fallocate() sends one begin/end pair of "allocate" for the requested range
// (allocated pages or not), without a prepare step, and nothing else.
TEST_F(GuestMemfdNotifierTest, AllocationNotifiesAllocateOnly)
{
	MockClient c = attached_client();
	ASSERT_THAT(gmem_->allocate(2 * kPage, 4 * kPage), Succeeds());
	ASSERT_THAT(gmem_->allocate(0, kSize), Succeeds());
	std::vector<Event> want = change("allocate", 2 * kPage, 6 * kPage, false);
	for (auto &e : change("allocate", 0, kSize, false))
		want.push_back(e);
	EXPECT_THAT(log_of(c), ElementsAreArray(want));
}

// Dropping the last reference to the file sends one begin/end pair of
// "release" for the whole file, without a prepare step.
TEST_F(GuestMemfdNotifierTest, ReleaseNotifiesTheWholeFileOnce)
{
	MockClient c = attached_client();
	gmem_->close();
	EXPECT_THAT(log_of(c), ElementsAreArray(change("release", 0, kSize, false)));
	// Nothing can follow a release.
	EXPECT_THAT(c.detach(), Succeeds());
	EXPECT_THAT(log_of(c), ElementsAreArray(change("release", 0, kSize, false)));
}

// An mmap keeps the file alive: release comes with the last munmap.
TEST_F(GuestMemfdNotifierTest, ReleaseWaitsForTheLastMapping)
{
	MockClient c = attached_client();
	auto m = gmem_->map(0, kSize);
	ASSERT_THAT(m, Succeeds());
	gmem_->close();
	EXPECT_THAT(log_of(c), IsEmpty());
	m->reset();
	EXPECT_THAT(log_of(c), ElementsAreArray(change("release", 0, kSize, false)));
}

// A refusing prepare fails the hole punch with its errno, the client
// records the refusal with the offset it blamed, begin/end never come, and
// the file's contents are unchanged.
TEST_F(GuestMemfdNotifierTest, RefusedHolePunchChangesNothing)
{
	auto m = gmem_->map(0, kSize);
	ASSERT_THAT(m, Succeeds());
	std::memset(m->data(), 0x6b, kSize);
	MockClient c = attached_client();
	ASSERT_THAT(c.refuse(EBUSY, 2 * kPage), Succeeds());

	EXPECT_THAT(gmem_->punch_hole(kPage, 4 * kPage), FailsWithErrno(EBUSY));
	EXPECT_THAT(log_of(c),
		    ElementsAre(refused("truncate", kPage, 5 * kPage, EBUSY, 2 * kPage)));
	for (uint64_t off = 0; off < kSize; off += kPage / 2)
		ASSERT_EQ(m->data()[off], 0x6b) << "offset " << off;

	// The refusal was one-shot: the same punch now goes through.
	ASSERT_THAT(c.clear(), Succeeds());
	EXPECT_THAT(gmem_->punch_hole(kPage, 4 * kPage), Succeeds());
	EXPECT_THAT(log_of(c), ElementsAreArray(change("truncate", kPage, 5 * kPage)));
	EXPECT_EQ(m->data()[2 * kPage], 0);
	EXPECT_EQ(m->data()[0], 0x6b);
}

// With two clients, when the second refuses, the first, which had agreed,
// gets abort; neither gets begin or end.
TEST_F(GuestMemfdNotifierTest, RefusalAbortsEarlierClients)
{
	MockClient first = attached_client();
	MockClient second = attached_client();
	ASSERT_THAT(second.refuse(EAGAIN, 3 * kPage), Succeeds());

	EXPECT_THAT(gmem_->punch_hole(0, 8 * kPage), FailsWithErrno(EAGAIN));
	EXPECT_THAT(log_of(first), ElementsAre(ev("prepare", "truncate", 0, 8 * kPage),
					       ev("abort", "truncate", 0, 8 * kPage)));
	EXPECT_THAT(log_of(second),
		    ElementsAre(refused("truncate", 0, 8 * kPage, EAGAIN, 3 * kPage)));
}

// When the first client refuses, the second is never asked.
TEST_F(GuestMemfdNotifierTest, RefusalStopsLaterClients)
{
	MockClient first = attached_client();
	MockClient second = attached_client();
	ASSERT_THAT(first.refuse(EPERM, 0), Succeeds());

	EXPECT_THAT(gmem_->punch_hole(0, kPage), FailsWithErrno(EPERM));
	EXPECT_THAT(log_of(first), ElementsAre(refused("truncate", 0, kPage, EPERM, 0)));
	EXPECT_THAT(log_of(second), IsEmpty());
}

// A blamed offset outside the range is replaced by the range's start.
TEST_F(GuestMemfdNotifierTest, RefusalOffsetOutsideTheRangeIsTheStart)
{
	MockClient c = attached_client();
	ASSERT_THAT(c.refuse(EBUSY, 15 * kPage), Succeeds());
	EXPECT_THAT(gmem_->punch_hole(2 * kPage, kPage), FailsWithErrno(EBUSY));
	EXPECT_THAT(log_of(c),
		    ElementsAre(refused("truncate", 2 * kPage, 3 * kPage, EBUSY, 2 * kPage)));
}

// After detach, no callback reaches the client.
TEST_F(GuestMemfdNotifierTest, DetachStopsNotifications)
{
	MockClient c = attached_client();
	ASSERT_THAT(gmem_->punch_hole(0, kPage), Succeeds());
	ASSERT_THAT(c.detach(), Succeeds());
	ASSERT_THAT(gmem_->punch_hole(kPage, kPage), Succeeds());
	gmem_->close();
	EXPECT_THAT(log_of(c), ElementsAreArray(change("truncate", 0, kPage)));
}

// The mock's own error rows: not a guest_memfd, attached twice, detached
// twice.
TEST_F(GuestMemfdNotifierTest, AttachErrors)
{
	auto c = MockClient::open();
	ASSERT_THAT(c, Succeeds());
	UniqueFd pipe_r, pipe_w;
	int p[2];
	ASSERT_THAT(pipe(p), SyscallSucceeds());
	pipe_r.reset(p[0]);
	pipe_w.reset(p[1]);
	EXPECT_THAT(c->attach(pipe_r.get()), FailsWithErrno(EINVAL));
	EXPECT_THAT(c->attach(-1), FailsWithErrno(EBADF));
	EXPECT_THAT(c->detach(), FailsWithErrno(ENOTCONN));
	ASSERT_THAT(c->attach(gmem_->fd()), Succeeds());
	EXPECT_THAT(c->attach(gmem_->fd()), FailsWithErrno(EBUSY));
}

// The client's PFN lookup: a missing page is ENOENT unless allocation is
// asked for, and an access that does not match the page's state is
// refused. On this (default VM, INIT_SHARED) file every page is shared.
TEST_F(GuestMemfdNotifierTest, LookupChecksPresenceAndAccess)
{
	MockClient c = attached_client();
	EXPECT_EQ(c.lookup(0, /*shared=*/true), ENOENT);
	EXPECT_EQ(c.lookup(0, /*shared=*/true, /*alloc=*/true), 0);
	EXPECT_EQ(c.lookup(0, /*shared=*/true), 0);
	EXPECT_EQ(c.lookup(0, /*shared=*/false), EACCES);
	// Lookups are not logged and change nothing a client would hear.
	EXPECT_THAT(log_of(c), IsEmpty());
}

// A poisoned page is reported as a memory failure of that page, without a
// prepare step (after the allocation its first touch notified). The poisoning process is killed by
// SIGBUS (it maps the page), so a child does it.
TEST_F(GuestMemfdNotifierTest, MemoryFailureNotifiesThePoisonedPage)
{
	MockClient c = attached_client();
	pid_t pid = fork();
	ASSERT_THAT(pid, SyscallSucceeds());
	if (pid == 0) {
		auto m = gmem_->map(0, kSize);
		if (!m)
			_exit(2);
		m->data()[5 * kPage] = 1;
		if (madvise(m->data() + 5 * kPage, kPage, MADV_HWPOISON) != 0)
			_exit(errno == EPERM || errno == EINVAL ? 3 : 4);
		_exit(0);
	}
	int status = 0;
	ASSERT_THAT(waitpid(pid, &status, 0), SyscallSucceedsWithValue(pid));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
		GTEST_SKIP() << "MADV_HWPOISON not available";
	ASSERT_TRUE(WIFEXITED(status) || WTERMSIG(status) == SIGBUS) << "status " << status;
	if (WIFEXITED(status)) {
		ASSERT_EQ(WEXITSTATUS(status), 0);
	}
	// The child's write faulted the page in: an allocation of that page.
	std::vector<Event> want = change("allocate", 5 * kPage, 6 * kPage, false);
	for (auto &e : change("memory_failure", 5 * kPage, 6 * kPage, false))
		want.push_back(e);
	EXPECT_THAT(log_of(c), ElementsAreArray(want));
}

// Conversions, on a convertible file of a SW-protected VM (starts private).
class GuestMemfdConversionNotifierTest : public GuestMemfdNotifierTest {
protected:
	void SetUp() override
	{
		Open(KVM_X86_SW_PROTECTED_VM, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_CONVERTIBLE);
	}
};

// Each direction is one prepare/begin/end of the requested range.
TEST_F(GuestMemfdConversionNotifierTest, EachConversionIsNotifiedOnce)
{
	MockClient c = attached_client();
	ASSERT_THAT(gmem_->convert_shared(2 * kPage, 4 * kPage), Succeeds());
	ASSERT_THAT(gmem_->convert_private(3 * kPage, 2 * kPage), Succeeds());
	std::vector<Event> want = change("convert_shared", 2 * kPage, 6 * kPage);
	for (auto &e : change("convert_private", 3 * kPage, 5 * kPage))
		want.push_back(e);
	EXPECT_THAT(log_of(c), ElementsAreArray(want));
}

// The notified span is the requested one shrunk to the first and last page
// that change; pages in between that are already in the target state are
// included. A conversion that changes nothing is not notified.
TEST_F(GuestMemfdConversionNotifierTest, SpanShrinksToThePagesThatChange)
{
	ASSERT_THAT(gmem_->convert_shared(4 * kPage, 2 * kPage), Succeeds());
	ASSERT_THAT(gmem_->convert_shared(8 * kPage, 1 * kPage), Succeeds());
	MockClient c = attached_client();
	// Pages 0-3 change, 4-5 are already shared, 6-7 change, 8 is already
	// shared: the span is pages 0-7.
	ASSERT_THAT(gmem_->convert_shared(0, 9 * kPage), Succeeds());
	// Pages 4-8 are all shared now: no notification at all.
	ASSERT_THAT(gmem_->convert_shared(4 * kPage, 5 * kPage), Succeeds());
	EXPECT_THAT(log_of(c), ElementsAreArray(change("convert_shared", 0, 8 * kPage)));
}

// A refusing prepare fails the conversion with its errno and blamed page
// as error_offset; no page changes state.
TEST_F(GuestMemfdConversionNotifierTest, RefusedConversionChangesNothing)
{
	auto m = gmem_->map(0, kSize);
	ASSERT_THAT(m, Succeeds());
	MockClient c = attached_client();
	ASSERT_THAT(c.refuse(EBUSY, 3 * kPage), Succeeds());
	auto r = gmem_->convert_shared(0, 8 * kPage);
	ASSERT_THAT(r, FailsWithErrno(EBUSY));
	EXPECT_EQ(r.error().error_offset.value_or(~0ULL), 3 * kPage);
	EXPECT_THAT(log_of(c),
		    ElementsAre(refused("convert_shared", 0, 8 * kPage, EBUSY, 3 * kPage)));
	for (uint64_t i = 0; i < kSize / kPage; i++)
		EXPECT_FALSE(::gmem::testing::host_touch(m->data() + i * kPage)) << "page " << i;
}

// When the core itself refuses a to-private conversion (a page is still
// referenced), no client hears of it: the core checks references before
// it asks for prepare, so what a client does there (iommufd removes its
// IOPTEs) is never undone for a refusal that a VMM may retry for as long
// as a pin lasts. The core waits out transient references without the
// invalidate lock and starts over, and no attempt is notified. Once the
// reference is gone, the same conversion is notified as any other.
TEST_F(GuestMemfdConversionNotifierTest, CoreRefusalNotifiesNoClient)
{
	ASSERT_THAT(gmem_->convert_shared(0, kSize), Succeeds());
	auto m = gmem_->map(0, kSize);
	ASSERT_THAT(m, Succeeds());
	int p[2];
	ASSERT_THAT(pipe(p), SyscallSucceeds());
	UniqueFd rd(p[0]), wr(p[1]);
	iovec iov{ m->data() + 2 * kPage, kPage };
	ASSERT_THAT(vmsplice(wr.get(), &iov, 1, 0), SyscallSucceedsWithValue(kPage));
	MockClient c = attached_client();

	auto r = gmem_->convert_private(0, 4 * kPage);
	ASSERT_THAT(r, FailsWithErrno(EAGAIN));
	EXPECT_EQ(r.error().error_offset.value_or(~0ULL), 2 * kPage);
	EXPECT_THAT(log_of(c), IsEmpty());

	rd.reset();
	wr.reset();
	ASSERT_THAT(gmem_->convert_private(0, 4 * kPage), Succeeds());
	EXPECT_THAT(log_of(c), ElementsAreArray(change("convert_private", 0, 4 * kPage)));
}

} // namespace
} // namespace gmem
