#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
#
# Runs inside the guest (busybox sh). Built-in KUnit suites ran during boot
# (the suite's boot passes kunit.enable=1 and a kunit.filter_glob); print
# their KTAP report from the kernel log, without the printk timestamps, so
# the harness can count every case. Fails if no KUnit report is found.
dmesg | sed -n 's/^\[[ 0-9.]*\] //p' | awk '
	/^KTAP version/ && !started { started = 1 }
	started { print }
' >ktap.log
if ! grep -q '^KTAP version' ktap.log; then
	echo "guest-kunit: no KUnit report in the kernel log" >&2
	exit 1
fi
# Keep only KTAP lines (results, plans, subtest headers, diagnostics).
grep -E '^ *(KTAP version|1\.\.|ok |not ok |# )' ktap.log
