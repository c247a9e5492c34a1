// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Owners of file descriptors and memory mappings.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "gmem/result.h"

namespace gmem {

// Owns one file descriptor; closes it when destroyed.
class UniqueFd {
public:
	UniqueFd() = default;
	explicit UniqueFd(int fd) : fd_(fd) {}
	UniqueFd(const UniqueFd &) = delete;
	UniqueFd &operator=(const UniqueFd &) = delete;
	UniqueFd(UniqueFd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
	UniqueFd &operator=(UniqueFd &&o) noexcept
	{
		if (this != &o)
			reset(std::exchange(o.fd_, -1));
		return *this;
	}
	~UniqueFd() { reset(); }

	[[nodiscard]] int get() const { return fd_; }
	[[nodiscard]] bool valid() const { return fd_ >= 0; }
	void reset(int fd = -1)
	{
		if (fd_ >= 0)
			::close(fd_);
		fd_ = fd;
	}
	// Give up ownership without closing.
	[[nodiscard]] int release() { return std::exchange(fd_, -1); }
	// A close-on-exec duplicate of @fd, owned.
	static Result<UniqueFd> duplicate(int fd)
	{
		int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (d < 0)
			return fail("fcntl(F_DUPFD_CLOEXEC)");
		return UniqueFd(d);
	}

private:
	int fd_ = -1;
};

// Owns one mmap()ed range; unmaps it when destroyed.
class Mapping {
public:
	Mapping() = default;
	Mapping(const Mapping &) = delete;
	Mapping &operator=(const Mapping &) = delete;
	Mapping(Mapping &&o) noexcept
	    : addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0))
	{
	}
	Mapping &operator=(Mapping &&o) noexcept
	{
		if (this != &o) {
			reset();
			addr_ = std::exchange(o.addr_, nullptr);
			len_ = std::exchange(o.len_, 0);
		}
		return *this;
	}
	~Mapping() { reset(); }

	static Result<Mapping> map(int fd, size_t len, int prot, int flags, off_t offset = 0)
	{
		void *p = ::mmap(nullptr, len, prot, flags, fd, offset);
		if (p == MAP_FAILED)
			return fail("mmap");
		return Mapping(p, len);
	}
	static Result<Mapping> anonymous(size_t len, int prot = PROT_READ | PROT_WRITE)
	{
		return map(-1, len, prot, MAP_PRIVATE | MAP_ANONYMOUS);
	}

	[[nodiscard]] uint8_t *data() const { return static_cast<uint8_t *>(addr_); }
	[[nodiscard]] size_t size() const { return len_; }
	[[nodiscard]] bool valid() const { return addr_ != nullptr; }
	void reset()
	{
		if (addr_)
			::munmap(addr_, len_);
		addr_ = nullptr;
		len_ = 0;
	}

private:
	Mapping(void *addr, size_t len) : addr_(addr), len_(len) {}
	void *addr_ = nullptr;
	size_t len_ = 0;
};

} // namespace gmem
