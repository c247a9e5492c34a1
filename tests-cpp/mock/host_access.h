// SPDX-License-Identifier: LGPL-2.1-only OR BSD-2-Clause
//
// Test-only: probe whether the host can touch a page of a guest_memfd
// mapping. A private page raises SIGBUS; the probe catches it (per thread)
// and reports false instead of dying.
#pragma once

#include <setjmp.h>
#include <signal.h>

#include <cstdint>

namespace gmem::testing {

namespace detail {
inline thread_local sigjmp_buf probe_jmp;
inline thread_local volatile bool probing = false;

inline void sigbus_handler(int sig)
{
	if (probing)
		siglongjmp(probe_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}
} // namespace detail

// Installs the SIGBUS handler once per process.
inline void install_sigbus_probe()
{
	struct sigaction sa {};
	sa.sa_handler = detail::sigbus_handler;
	sigaction(SIGBUS, &sa, nullptr);
}

// Reads (or, with write, writes val to) one byte; false if that raised
// SIGBUS. The value read is stored in *out when given.
inline bool host_touch(volatile uint8_t *p, bool write = false, uint8_t val = 0,
		       uint8_t *out = nullptr)
{
	install_sigbus_probe();
	if (sigsetjmp(detail::probe_jmp, 1)) {
		detail::probing = false;
		return false;
	}
	detail::probing = true;
	if (write)
		*p = val;
	else if (out)
		*out = *p;
	else
		(void)*p;
	detail::probing = false;
	return true;
}

// Runs fn() with the probe armed: false if a SIGBUS cut it short, true if
// it ran to its end. For accesses wider than a byte, and for calls that
// may be answered with a SIGBUS to the calling thread, such as
// madvise(MADV_HWPOISON) of a page the process maps (memory failure kills
// the mapping thread of a dirty page with BUS_MCEERR_AR).
template <typename F> bool sigbus_guard(F &&fn)
{
	install_sigbus_probe();
	if (sigsetjmp(detail::probe_jmp, 1)) {
		detail::probing = false;
		return false;
	}
	detail::probing = true;
	fn();
	detail::probing = false;
	return true;
}

} // namespace gmem::testing
