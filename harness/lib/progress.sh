#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run a long build command with its output in a log, showing one status line
# that says what it is doing and how far along it is (kbuild's objects
# against the count of the last complete build of the same config).
#
# Usage: progress.sh LOG COMMAND [ARGS...]
set -uo pipefail
. "$(dirname "$0")/lib.sh"
logf=$1
shift
"$@" >"$logf" 2>&1 &
pid=$!
kdir=$(kbuild_dir test)
want=$(cat "$kdir/.gmem-objcount" 2>/dev/null || echo 1600)
start=$(date +%s)
tty=0
[ -t 2 ] && tty=1
last=""
while kill -0 "$pid" 2>/dev/null; do
	n=$(find "$kdir" -name '*.o' -newer "$logf" 2>/dev/null | wc -l)
	phase=$(grep -o 'build-kernel\[[a-z]*\]: [a-z]*\|build-selftests: [a-z]*\|assemble: [a-z]*\|fetch: [a-z ]*' "$logf" | tail -n 1)
	pct=$((n * 100 / want))
	[ $pct -gt 99 ] && pct=99
	msg=$(printf '    %4ds  %-36s objects compiled: %d (~%d%% of a cold build)' \
		$(($(date +%s) - start)) "${phase:-starting}" "$n" "$pct")
	if [ $tty = 1 ]; then
		printf '\r%s' "$msg" >&2
	elif [ "$msg" != "$last" ] && [ $((($(date +%s) - start) % 30)) -lt 2 ]; then
		echo "$msg" >&2
		last=$msg
	fi
	sleep 2
done
wait "$pid"
rc=$?
[ $tty = 1 ] && printf '\n' >&2
if [ $rc = 0 ]; then
	n=$(find "$kdir" -name '*.o' | wc -l)
	echo "$n" >"$kdir/.gmem-objcount.tmp" 2>/dev/null && mv "$kdir/.gmem-objcount.tmp" "$kdir/.gmem-objcount"
fi
exit $rc
