// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Value-or-error results for system calls: a failed call keeps its errno
// and the name of the call, so a test failure or a VMM log line says which
// call failed and why, without a second errno read racing other calls.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace gmem {

// A failed system call: errno, what was called and, for conversions, the
// first offending offset the kernel reported.
struct SysError {
	int err = 0;
	std::string call;
	std::optional<uint64_t> error_offset = {};

	[[nodiscard]] std::string message() const
	{
		std::string m =
			call + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
		if (error_offset)
			m += ", error_offset " + std::to_string(*error_offset);
		return m;
	}
};

inline std::ostream &operator<<(std::ostream &os, const SysError &e)
{
	return os << e.message();
}

// Thrown by Result::value() on an error: tests and simple tools can write
// vm.create_vcpu(0).value() and still get the failed call in the message.
class SysErrorException : public std::system_error {
public:
	explicit SysErrorException(const SysError &e)
	    : std::system_error(e.err, std::generic_category(), e.call), error_(e)
	{
	}
	[[nodiscard]] const SysError &error() const { return error_; }

private:
	SysError error_;
};

template <typename T> class [[nodiscard]] Result {
public:
	Result(T value) : v_(std::move(value)) {}
	Result(SysError error) : v_(std::move(error)) {}

	[[nodiscard]] bool ok() const { return v_.index() == 0; }
	explicit operator bool() const { return ok(); }

	T &value() &
	{
		check();
		return std::get<0>(v_);
	}
	T &&value() &&
	{
		check();
		return std::get<0>(std::move(v_));
	}
	const T &value() const &
	{
		check();
		return std::get<0>(v_);
	}
	T *operator->() { return &value(); }
	T &operator*() & { return value(); }

	[[nodiscard]] const SysError &error() const { return std::get<1>(v_); }
	// errno of the failure, 0 on success.
	[[nodiscard]] int err() const { return ok() ? 0 : error().err; }

private:
	void check() const
	{
		if (!ok())
			throw SysErrorException(std::get<1>(v_));
	}
	std::variant<T, SysError> v_;
};

template <> class [[nodiscard]] Result<void> {
public:
	Result() = default;
	Result(SysError error) : error_(std::move(error)) {}

	[[nodiscard]] bool ok() const { return !error_; }
	explicit operator bool() const { return ok(); }
	void value() const
	{
		if (error_)
			throw SysErrorException(*error_);
	}
	[[nodiscard]] const SysError &error() const { return *error_; }
	[[nodiscard]] int err() const { return ok() ? 0 : error_->err; }

private:
	std::optional<SysError> error_;
};

// The error of the call that just failed (reads errno now).
inline SysError last_error(std::string call)
{
	return SysError{ errno, std::move(call) };
}

// rc < 0 ? error(call) : rc, for calls that return an int or -1/errno.
inline Result<long> check(long rc, std::string call)
{
	if (rc < 0)
		return last_error(std::move(call));
	return rc;
}

inline Result<void> check_void(long rc, std::string call)
{
	if (rc < 0)
		return last_error(std::move(call));
	return {};
}

} // namespace gmem
