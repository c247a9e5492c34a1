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

// The error half of a Result, as std::unexpected is std::expected's:
// return unexpected(SysError{...}) from a function returning Result<T>.
template <typename E> class unexpected {
public:
	explicit unexpected(E e) : e_(std::move(e)) {}
	[[nodiscard]] const E &error() const & { return e_; }
	[[nodiscard]] E &&error() && { return std::move(e_); }

private:
	E e_;
};

template <typename E> unexpected(E) -> unexpected<E>;

// A value or the SysError of the call that failed. The names are
// std::expected<T, SysError>'s (has_value, value, error, value_or, *, ->),
// so that Result can become an alias of it once C++23 may be required.
template <typename T> class [[nodiscard]] Result {
public:
	using value_type = T;
	using error_type = SysError;

	Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
	Result(unexpected<SysError> e) : v_(std::in_place_index<1>, std::move(e).error()) {}

	[[nodiscard]] bool has_value() const { return v_.index() == 0; }
	explicit operator bool() const { return has_value(); }

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
	template <typename U> [[nodiscard]] T value_or(U &&other) const &
	{
		return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(other));
	}
	template <typename U> [[nodiscard]] T value_or(U &&other) &&
	{
		return has_value() ? std::get<0>(std::move(v_))
				   : static_cast<T>(std::forward<U>(other));
	}
	// Unchecked, as std::expected's: only after has_value().
	T *operator->() { return &std::get<0>(v_); }
	const T *operator->() const { return &std::get<0>(v_); }
	T &operator*() & { return std::get<0>(v_); }
	const T &operator*() const & { return std::get<0>(v_); }
	T &&operator*() && { return std::get<0>(std::move(v_)); }

	// Only after !has_value().
	[[nodiscard]] const SysError &error() const { return std::get<1>(v_); }

private:
	void check() const
	{
		if (!has_value())
			throw SysErrorException(std::get<1>(v_));
	}
	std::variant<T, SysError> v_;
};

template <> class [[nodiscard]] Result<void> {
public:
	using value_type = void;
	using error_type = SysError;

	Result() = default;
	Result(unexpected<SysError> e) : error_(std::move(e).error()) {}

	[[nodiscard]] bool has_value() const { return !error_; }
	explicit operator bool() const { return has_value(); }
	void value() const
	{
		if (error_)
			throw SysErrorException(*error_);
	}
	void operator*() const {}
	// Only after !has_value().
	[[nodiscard]] const SysError &error() const { return *error_; }

private:
	std::optional<SysError> error_;
};

// errno of a failed result, 0 on success: for comparing with an errno
// whether or not the call failed (works for std::expected too).
template <typename R> [[nodiscard]] int errno_of(const R &r)
{
	return r.has_value() ? 0 : r.error().err;
}

// The error of the call that just failed (reads errno now).
inline SysError last_error(std::string call)
{
	return SysError{ errno, std::move(call) };
}

// unexpected(last_error(call)): what a function returning a Result
// returns when the call it just made failed.
inline unexpected<SysError> fail(std::string call)
{
	return unexpected(last_error(std::move(call)));
}

// The same for an error found without a failed call (or after it).
inline unexpected<SysError> fail(int err, std::string what)
{
	return unexpected(SysError{ err, std::move(what) });
}

// rc < 0 ? error(call) : rc, for calls that return an int or -1/errno.
inline Result<long> check(long rc, std::string call)
{
	if (rc < 0)
		return fail(std::move(call));
	return rc;
}

inline Result<void> check_void(long rc, std::string call)
{
	if (rc < 0)
		return fail(std::move(call));
	return {};
}

} // namespace gmem
