// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Test-only: the guest_memfd mock notifier client of CONFIG_GUEST_MEMFD_TEST
// (/sys/kernel/debug/guest_memfd_test/client, described at the top of
// virt/kvm/guest_memfd/test_client.c). Each MockClient is one open() of
// that file, i.e. one client; its log is the exact sequence of callbacks
// it received. Not something a VMM would copy.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "gmem/fd.h"
#include "gmem/result.h"

namespace gmem::testing {

// One logged callback: "begin truncate 4096 12288", or a refusal
// "refuse truncate 4096 12288 16 8192" (errno, error offset).
struct Event {
	std::string kind;
	std::string reason;
	uint64_t start = 0;
	uint64_t end = 0;
	int err = 0;
	uint64_t error_offset = 0;

	bool operator==(const Event &) const = default;
};

inline std::ostream &operator<<(std::ostream &os, const Event &e)
{
	os << e.kind << ' ' << e.reason << ' ' << e.start << ' ' << e.end;
	if (e.kind == "refuse")
		os << ' ' << e.err << ' ' << e.error_offset;
	return os;
}

inline Event ev(std::string kind, std::string reason, uint64_t start, uint64_t end)
{
	return Event{ std::move(kind), std::move(reason), start, end };
}

inline Event refused(std::string reason, uint64_t start, uint64_t end, int err,
		     uint64_t error_offset)
{
	return Event{ "refuse", std::move(reason), start, end, err, error_offset };
}

// prepare/begin/end of one change, as a successful change logs them.
inline std::vector<Event> change(const std::string &reason, uint64_t start, uint64_t end,
				 bool with_prepare = true)
{
	std::vector<Event> v;
	if (with_prepare)
		v.push_back(ev("prepare", reason, start, end));
	v.push_back(ev("begin", reason, start, end));
	v.push_back(ev("end", reason, start, end));
	return v;
}

class MockClient {
public:
	static constexpr const char *kPath = "/sys/kernel/debug/guest_memfd_test/client";

	static Result<MockClient> open()
	{
		int fd = ::open(kPath, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return fail(std::string("open ") + kPath);
		return MockClient(UniqueFd(fd));
	}

	Result<void> command(const std::string &cmd) const
	{
		ssize_t n = ::write(fd_.get(), cmd.data(), cmd.size());
		if (n < 0)
			return fail("mock client: " + cmd);
		return {};
	}
	Result<void> attach(int gmem_fd) const
	{
		return command("attach " + std::to_string(gmem_fd));
	}
	Result<void> detach() const { return command("detach"); }
	Result<void> clear() const { return command("clear"); }
	// The next prepare refuses with -err, blaming the page at error_offset.
	Result<void> refuse(int err, uint64_t error_offset) const
	{
		return command("refuse " + std::to_string(err) + " " +
			       std::to_string(error_offset));
	}
	// guest_memfd_get_pfn() through the client: 0 or the errno it gave.
	int lookup(uint64_t offset, bool shared, bool alloc = false) const
	{
		auto r = command("lookup " + std::to_string(offset) +
				 (shared ? " shared" : " private") + (alloc ? " alloc" : ""));
		return errno_of(r);
	}

	// The whole log, oldest first. A "lost N" line fails the parse: the
	// test produced more events than the client keeps.
	Result<std::vector<Event>> events() const
	{
		std::string buf(512 * 1024, '\0');
		ssize_t n = ::pread(fd_.get(), buf.data(), buf.size(), 0);
		if (n < 0)
			return fail("read mock client log");
		buf.resize(n);
		std::vector<Event> out;
		std::istringstream in(buf);
		std::string line;
		while (std::getline(in, line)) {
			std::istringstream ls(line);
			Event e;
			ls >> e.kind;
			if (e.kind == "lost")
				return fail(EOVERFLOW, "mock client log: " + line);
			ls >> e.reason >> e.start >> e.end;
			if (e.kind == "refuse")
				ls >> e.err >> e.error_offset;
			if (!ls)
				return fail(EPROTO, "mock client log line: " + line);
			out.push_back(e);
		}
		return out;
	}

private:
	explicit MockClient(UniqueFd fd) : fd_(std::move(fd)) {}
	UniqueFd fd_;
};

} // namespace gmem::testing
