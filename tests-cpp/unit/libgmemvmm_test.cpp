// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Host-side unit tests of libgmemvmm's value-or-error results (result.h)
// and its owners of file descriptors and mappings (fd.h), and of the
// matchers the suites check them with. They need no KVM and run on the
// build host (CTest's unit.libgmemvmm).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include "gmem/fd.h"
#include "gmem/result.h"
#include "testing/matchers.h"

namespace gmem {
namespace {

using ::gmem::testing::FailsWithErrno;
using ::gmem::testing::Succeeds;
using ::gmem::testing::SyscallFailsWithErrno;
using ::gmem::testing::SyscallSucceeds;
using ::gmem::testing::SyscallSucceedsWithValue;
using ::testing::HasSubstr;
using ::testing::Not;

Result<int> parse_digit(char c)
{
	if (c < '0' || c > '9')
		return fail(EINVAL, std::string("parse_digit('") + c + "')");
	return c - '0';
}

// Whether @fd is an open file descriptor of this process.
bool is_open(int fd)
{
	return ::fcntl(fd, F_GETFD) != -1;
}

TEST(ResultTest, HoldsAValue)
{
	Result<int> r = parse_digit('7');
	ASSERT_TRUE(r.has_value());
	EXPECT_TRUE(static_cast<bool>(r));
	EXPECT_EQ(r.value(), 7);
	EXPECT_EQ(*r, 7);
	EXPECT_EQ(r.value_or(-1), 7);
	EXPECT_EQ(errno_of(r), 0);
	EXPECT_THAT(r, Succeeds());
}

TEST(ResultTest, HoldsAnError)
{
	Result<int> r = parse_digit('x');
	ASSERT_FALSE(r.has_value());
	EXPECT_FALSE(static_cast<bool>(r));
	EXPECT_EQ(r.error().err, EINVAL);
	EXPECT_EQ(r.error().call, "parse_digit('x')");
	EXPECT_EQ(r.value_or(-1), -1);
	EXPECT_EQ(errno_of(r), EINVAL);
	EXPECT_THAT(r, FailsWithErrno(EINVAL));
	EXPECT_THAT(r, Not(FailsWithErrno(ENOENT)));
	EXPECT_THAT(r, Not(Succeeds()));
}

TEST(ResultTest, ValueOfAnErrorThrowsIt)
{
	Result<int> r = parse_digit('x');
	try {
		(void)r.value();
		FAIL() << "value() of an error did not throw";
	} catch (const SysErrorException &e) {
		EXPECT_EQ(e.error().err, EINVAL);
		EXPECT_EQ(e.code().value(), EINVAL);
		EXPECT_THAT(e.what(), HasSubstr("parse_digit('x')"));
	}
}

TEST(ResultTest, MessageNamesCallErrnoAndOffset)
{
	SysError e{ EAGAIN, "KVM_GMEM_CONVERT_PRIVATE", 8192 };
	EXPECT_THAT(e.message(), HasSubstr("KVM_GMEM_CONVERT_PRIVATE: "));
	EXPECT_THAT(e.message(), HasSubstr("(errno " + std::to_string(EAGAIN) + ")"));
	EXPECT_THAT(e.message(), HasSubstr("error_offset 8192"));
	const SysError plain{ EAGAIN, "x" };
	EXPECT_THAT(plain.message(), Not(HasSubstr("error_offset")));
}

TEST(ResultTest, FailReadsErrnoOfTheCallJustMade)
{
	errno = 0;
	ASSERT_THAT(::close(-1), SyscallFailsWithErrno(EBADF));
	unexpected<SysError> u = fail("close");
	EXPECT_EQ(u.error().err, EBADF);
	EXPECT_EQ(u.error().call, "close");
}

TEST(ResultTest, CheckMapsMinusOneToTheError)
{
	auto ok = check(5, "five");
	ASSERT_THAT(ok, Succeeds());
	EXPECT_EQ(*ok, 5);
	errno = ENOSPC;
	auto bad = check(-1, "full");
	EXPECT_THAT(bad, FailsWithErrno(ENOSPC));
	EXPECT_EQ(bad.error().call, "full");
	errno = EIO;
	EXPECT_THAT(check_void(-1, "io"), FailsWithErrno(EIO));
	EXPECT_THAT(check_void(0, "io"), Succeeds());
}

TEST(ResultTest, VoidResult)
{
	Result<void> ok;
	EXPECT_TRUE(ok.has_value());
	EXPECT_NO_THROW(ok.value());
	Result<void> bad = fail(EPERM, "denied");
	EXPECT_FALSE(bad.has_value());
	EXPECT_EQ(errno_of(bad), EPERM);
	EXPECT_THROW(bad.value(), SysErrorException);
}

TEST(ResultTest, MovesAMoveOnlyValueOut)
{
	Result<std::unique_ptr<int>> r = std::make_unique<int>(3);
	ASSERT_TRUE(r.has_value());
	EXPECT_EQ(*r.value(), 3);
	std::unique_ptr<int> p = std::move(r).value();
	ASSERT_NE(p, nullptr);
	EXPECT_EQ(*p, 3);
}

TEST(ResultTest, ArrowReachesTheValue)
{
	Result<std::string> r = std::string("guest_memfd");
	EXPECT_EQ(r->size(), 11u);
}

TEST(SyscallMatcherTest, ChecksReturnValueAndErrno)
{
	int p[2];
	ASSERT_THAT(::pipe(p), SyscallSucceeds());
	UniqueFd rd(p[0]), wr(p[1]);
	EXPECT_THAT(::write(wr.get(), "abc", 3), SyscallSucceedsWithValue(3));
	EXPECT_THAT(::write(wr.get(), "abc", 3), Not(SyscallSucceedsWithValue(2)));
	EXPECT_THAT(::write(-1, "abc", 3), SyscallFailsWithErrno(EBADF));
	EXPECT_THAT(::write(-1, "abc", 3), Not(SyscallFailsWithErrno(EFAULT)));
	EXPECT_THAT(::write(-1, "abc", 3), Not(SyscallSucceeds()));
	EXPECT_THAT(::write(wr.get(), "abc", 3), Not(SyscallFailsWithErrno(EBADF)));
}

TEST(UniqueFdTest, ClosesWhenDestroyed)
{
	int raw;
	{
		UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
		ASSERT_TRUE(fd.valid());
		raw = fd.get();
		EXPECT_TRUE(is_open(raw));
	}
	EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFdTest, MoveTransfersOwnership)
{
	UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	const int raw = a.get();
	UniqueFd b(std::move(a));
	EXPECT_FALSE(a.valid());
	EXPECT_EQ(a.get(), -1);
	EXPECT_EQ(b.get(), raw);
	EXPECT_TRUE(is_open(raw));

	UniqueFd c(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	const int old = c.get();
	c = std::move(b);
	EXPECT_EQ(c.get(), raw);
	EXPECT_FALSE(is_open(old)) << "move assignment must close the fd it replaces";
	EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFdTest, ResetAndRelease)
{
	UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	const int first = fd.get();
	fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	EXPECT_FALSE(is_open(first));
	const int second = fd.release();
	EXPECT_FALSE(fd.valid());
	EXPECT_TRUE(is_open(second)) << "release() must not close";
	EXPECT_THAT(::close(second), SyscallSucceeds());
}

TEST(UniqueFdTest, DuplicateIsCloseOnExec)
{
	UniqueFd fd(::open("/dev/null", O_RDONLY));
	auto d = UniqueFd::duplicate(fd.get());
	ASSERT_THAT(d, Succeeds());
	EXPECT_NE(d->get(), fd.get());
	EXPECT_THAT(::fcntl(d->get(), F_GETFD), SyscallSucceedsWithValue(FD_CLOEXEC));
	EXPECT_THAT(UniqueFd::duplicate(-1), FailsWithErrno(EBADF));
}

TEST(MappingTest, UnmapsWhenDestroyed)
{
	const size_t len = 2 * ::sysconf(_SC_PAGESIZE);
	uint8_t *addr;
	{
		auto m = Mapping::anonymous(len);
		ASSERT_THAT(m, Succeeds());
		addr = m->data();
		EXPECT_EQ(m->size(), len);
		addr[len - 1] = 1;
		unsigned char vec[2];
		EXPECT_THAT(::mincore(addr, len, vec), SyscallSucceeds());
	}
	unsigned char vec[2];
	EXPECT_THAT(::mincore(addr, len, vec), SyscallFailsWithErrno(ENOMEM));
}

TEST(MappingTest, MoveTransfersOwnership)
{
	const size_t len = ::sysconf(_SC_PAGESIZE);
	Mapping a = Mapping::anonymous(len).value();
	uint8_t *addr = a.data();
	Mapping b(std::move(a));
	EXPECT_FALSE(a.valid());
	EXPECT_EQ(a.size(), 0u);
	EXPECT_EQ(b.data(), addr);

	Mapping c = Mapping::anonymous(len).value();
	uint8_t *old = c.data();
	c = std::move(b);
	EXPECT_EQ(c.data(), addr);
	unsigned char vec;
	EXPECT_THAT(::mincore(old, len, &vec), SyscallFailsWithErrno(ENOMEM))
		<< "move assignment must unmap the range it replaces";
	EXPECT_THAT(::mincore(addr, len, &vec), SyscallSucceeds());
}

TEST(MappingTest, FailureNamesMmap)
{
	auto m = Mapping::map(-1, 4096, PROT_READ, MAP_SHARED);
	EXPECT_THAT(m, FailsWithErrno(EBADF));
	EXPECT_EQ(m.error().call, "mmap");
}

} // namespace
} // namespace gmem
