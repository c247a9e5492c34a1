#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The test command's lint, one TAP case per file (run-suite.sh --host and
# parse-results.py judge it like any suite):
#  - checkpatch:   scripts/checkpatch.pl --strict on every patch of the
#                 series as export-series.sh writes it, findings named in
#                 check-allow.tsv allowed (with their reason)
#  - clang-format: clang-format --dry-run -Werror (the repository's
#                 .clang-format) on the C++ of tests-cpp/, demo/, bench/
#  - series-text:  the exported cover letter and patches read as the
#                 mailing list reads them: no issue numbers, bug-log or CI
#                 references, local commit ids, session narrative or
#                 first-person notes (lib/series-text.py says what counts)
#  - shellcheck:   shellcheck on harness/*.sh and harness/lib/*.sh
#                 (harness/.shellcheckrc; a finding is fixed or disabled
#                 on its line with a reason)
#
# Usage: lint.sh checkpatch|series-text|clang-format|shellcheck
# checkpatch and series-text need the assembled tree ($GMEM_KTREE; the
# kernel target assembles it).
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

# tap_case N NAME LOG STATUS: one TAP result, LOG's lines as diagnostics
# when it failed.
tap_case() {
	local n=$1 name=$2 log=$3 st=$4
	if [ "$st" = 0 ]; then
		echo "ok $n $name"
	else
		echo "not ok $n $name"
		sed 's/^/# /' "$log"
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "${1:-}" in
checkpatch)
	tree=$(ktree)
	"$HARNESS_DIR/export-series.sh" --no-assemble --out "$tmp/series" 2>"$tmp/export.log" ||
		{ cat "$tmp/export.log"; echo "Bail out! export-series.sh failed"; exit 1; }
	files=()
	for f in "$tmp/series"/[0-9][0-9][0-9][0-9]-*.patch; do
		[ "${f##*/}" = 0000-cover-letter.patch ] || files+=("$f")
	done
	echo "1..${#files[@]}"
	cd "$tree"
	n=0
	for f in "${files[@]}"; do
		n=$((n + 1))
		st=0
		# The patch's number, as check-allow.tsv names it.
		checkpatch_judged "$f" "$(printf '%04d' "$n")" "$tmp/cp" || st=1
		tap_case "$n" "${f##*/}" "$tmp/cp.new" "$st"
	done
	;;
series-text)
	"$HARNESS_DIR/export-series.sh" --no-assemble --out "$tmp/series" 2>"$tmp/export.log" ||
		{ cat "$tmp/export.log"; echo "Bail out! export-series.sh failed"; exit 1; }
	python3 "$LIB_DIR/series-text.py" "$tmp/series"/[0-9][0-9][0-9][0-9]-*.patch
	;;
clang-format)
	cd "$REPO_DIR"
	mapfile -t files < <(git ls-files -- 'tests-cpp/*.cpp' 'tests-cpp/*.h' 'demo/*.cpp' \
		'demo/*.h' 'bench/*.cpp' 'bench/*.h')
	echo "1..${#files[@]}"
	n=0
	for f in "${files[@]}"; do
		n=$((n + 1))
		st=0
		clang-format --dry-run -Werror "$f" >"$tmp/out" 2>&1 || st=1
		tap_case "$n" "$f" "$tmp/out" "$st"
	done
	;;
shellcheck)
	cd "$HARNESS_DIR"
	files=(*.sh lib/*.sh)
	echo "1..${#files[@]}"
	n=0
	for f in "${files[@]}"; do
		n=$((n + 1))
		st=0
		shellcheck -f gcc "$f" >"$tmp/out" 2>&1 || st=1
		tap_case "$n" "harness/$f" "$tmp/out" "$st"
	done
	;;
*)
	die "lint: usage: lint.sh checkpatch|series-text|clang-format|shellcheck"
	;;
esac
