#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Print every line of the given kernel logs that marks a kernel splat:
# warnings, BUGs, oopses, sanitizer and lockdep reports, hung tasks, RCU
# stalls, panics. Exits 0 if there was none, 1 otherwise.
set -u
pat='WARNING:|BUG:|Oops|KASAN:|UBSAN:|KFENCE:|general protection fault'
pat+='|possible circular locking|inconsistent lock state|possible recursive locking'
pat+='|suspicious RCU usage|lock held when returning|bad unlock balance|held lock freed'
pat+='|INFO: task .* blocked for more than|rcu: INFO:|detected stall|soft lockup|hard LOCKUP'
pat+='|Kernel panic|kernel BUG at|unreferenced object'
found=0
for f in "$@"; do
	[ -f "$f" ] || continue
	# (Fault injection's stack dumps are intentional and carry none of
	# these markers.)
	out=$(grep -aE "$pat" "$f" | grep -v 'GMEM-INIT' || true)
	if [ -n "$out" ]; then
		found=1
		printf '%s\n' "$out" | sed "s|^|$(basename "$f"): |"
	fi
done
exit $found
