// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// GoogleTest matchers. For gmem::Result: EXPECT_THAT(r, Succeeds()) and
// EXPECT_THAT(r, FailsWithErrno(EINVAL)) print the failed call and errno.
// For raw system calls, as gVisor's tests write them:
// EXPECT_THAT(write(fd, p, n), SyscallSucceedsWithValue(n)) and
// EXPECT_THAT(write(fd, p, n), SyscallFailsWithErrno(EFAULT)) read errno
// right after the call and print it.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>

#include "gmem/result.h"

namespace gmem {

// How GoogleTest prints a Result in a failure message.
template <typename T> void PrintTo(const Result<T> &r, std::ostream *os)
{
	if (r.has_value())
		*os << "success";
	else
		*os << r.error().message();
}

} // namespace gmem

namespace gmem::testing {

MATCHER(Succeeds, "succeeds")
{
	if (arg.has_value())
		return true;
	*result_listener << "failed: " << arg.error().message();
	return false;
}

MATCHER_P(FailsWithErrno, err, std::string("fails with ") + std::strerror(err))
{
	if (arg.has_value()) {
		*result_listener << "succeeded";
		return false;
	}
	*result_listener << arg.error().message();
	return errno_of(arg) == err;
}

// A system call's return value: -1 is a failure with errno set.
MATCHER(SyscallSucceeds, "succeeds")
{
	const int err = errno;
	if (arg != -1)
		return true;
	*result_listener << "failed with " << std::strerror(err) << " (errno " << err << ")";
	return false;
}

MATCHER_P(SyscallSucceedsWithValue, value,
	  std::string("succeeds with value ") + ::testing::PrintToString(value))
{
	const int err = errno;
	if (arg == -1) {
		*result_listener << "failed with " << std::strerror(err) << " (errno " << err
				 << ")";
		return false;
	}
	return arg == static_cast<std::remove_cvref_t<arg_type>>(value);
}

MATCHER_P(SyscallFailsWithErrno, err, std::string("fails with ") + std::strerror(err))
{
	const int got = errno;
	if (arg != -1) {
		*result_listener << "succeeded";
		return false;
	}
	*result_listener << "failed with " << std::strerror(got) << " (errno " << got << ")";
	return got == err;
}

// ASSERT_OK_AND_ASSIGN-like helper: the value, or fail the test with the
// failed call named.
#define GMEM_ASSERT_OK_AND_ASSIGN(lhs, expr)                                                       \
	auto lhs##_result_ = (expr);                                                               \
	ASSERT_TRUE(lhs##_result_.has_value()) << lhs##_result_.error().message();                 \
	auto lhs = std::move(lhs##_result_).value()

} // namespace gmem::testing
