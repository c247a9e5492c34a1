// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// The host's accesses through its mapping of the file: reads and writes,
// and a forked child's.
#include "stress.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>

namespace gmem::stress {

bool Stress::op_host_access(ThreadCtx &t, bool write)
{
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	std::ostringstream what;
	what << (write ? "host_write" : "host_read") << " [" << first << ", " << first + n << ")";
	log(t.id, what.str(), first, n);
	std::vector<uint32_t> tokens(n);
	for (uint64_t i = 0; i < n; i++) {
		const uint64_t p = first + i;
		PageModel &m = model_.pages[p];
		volatile uint32_t *w = reinterpret_cast<volatile uint32_t *>(data() + p * kPage);
		uint32_t a = 0, b = 0;
		const uint32_t tok = model_.new_token();
		const bool ok = sigbus_guard([&] {
			if (write) {
				w[0] = tok;
				w[kPage / 4 - 1] = tok;
			} else {
				a = w[0];
				b = w[kPage / 4 - 1];
			}
		});
		const bool want = m.shared && !m.poisoned;
		if (ok != want) {
			fail(what.str() + ": " + (ok ? "succeeded" : "got SIGBUS") + "; " +
				     describe(p),
			     p);
			return true;
		}
		if (ok && !write && (a != m.token || b != m.token)) {
			std::ostringstream s;
			s << what.str() << ": read 0x" << std::hex << a << "/0x" << b << std::dec
			  << "; " << describe(p);
			fail(s.str(), p);
			return true;
		}
		tokens[i] = ok && write ? tok : m.token.load();
	}
	Section s(*this, first, n);
	for (uint64_t i = 0; i < n; i++) {
		PageModel &m = model_.pages[first + i];
		if (m.shared && !m.poisoned) {
			// The fault filled a hole (notified as an allocation).
			m.allocated = true;
			m.token = tokens[i];
		}
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

namespace {

// What a forked child reports through its pipe when a page is not as the
// parent's model says.
struct ChildReport {
	uint64_t page;
	uint32_t got_first;
	uint32_t got_last;
	int32_t readable;
};

} // namespace

bool Stress::op_fork(ThreadCtx &t)
{
	uint64_t first, n;
	range(t, first, n);
	auto locks = lock_stripes(first, n);
	std::ostringstream what;
	what << "fork [" << first << ", " << first + n << ")";
	log(t.id, what.str(), first, n);
	struct Want {
		bool readable;
		uint32_t token;
	};
	std::vector<Want> want(n);
	for (uint64_t i = 0; i < n; i++) {
		const PageModel &m = model_.pages[first + i];
		want[i] = { m.shared && !m.poisoned, m.token };
	}
	const uint32_t tok = model_.new_token();
	int fds[2];
	if (::pipe2(fds, O_CLOEXEC) != 0) {
		fail(what.str() + ": pipe2: " + std::strerror(errno));
		return true;
	}
	UniqueFd rd(fds[0]), wr(fds[1]);
	const pid_t pid = ::fork();
	if (pid == 0) {
		// The child: touch the pages through the inherited MAP_SHARED
		// mapping (its own faults), write the new token, exit. Only
		// async-signal-safe calls from here on.
		for (uint64_t i = 0; i < n; i++) {
			volatile uint32_t *w =
				reinterpret_cast<volatile uint32_t *>(data() + (first + i) * kPage);
			uint32_t a = 0, b = 0;
			const bool ok = sigbus_guard([&] {
				a = w[0];
				b = w[kPage / 4 - 1];
			});
			if (ok != want[i].readable ||
			    (ok && (a != want[i].token || b != want[i].token))) {
				ChildReport rep{ first + i, a, b, ok };
				(void)!::write(wr.get(), &rep, sizeof(rep));
				::_exit(1);
			}
			if (ok) {
				w[0] = tok;
				w[kPage / 4 - 1] = tok;
			}
		}
		::_exit(0);
	}
	if (pid < 0) {
		fail(what.str() + ": fork: " + std::strerror(errno));
		return true;
	}
	wr.reset();
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	ChildReport rep{};
	const ssize_t got = ::read(rd.get(), &rep, sizeof(rep));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		std::ostringstream s;
		s << what.str() << ": the child ";
		if (got == static_cast<ssize_t>(sizeof(rep)) && rep.page < kPages)
			s << (rep.readable ? "read 0x" : "got SIGBUS") << std::hex
			  << (rep.readable ? rep.got_first : 0) << std::dec << "; "
			  << describe(rep.page);
		else
			s << "ended with status 0x" << std::hex << status;
		fail(s.str(), rep.page);
		return true;
	}
	Section s(*this, first, n);
	for (uint64_t i = 0; i < n; i++) {
		if (!want[i].readable)
			continue;
		model_.pages[first + i].allocated = true;
		model_.pages[first + i].token = tok;
	}
	check_domains(first, n, "after " + what.str());
	return true;
}

} // namespace gmem::stress
