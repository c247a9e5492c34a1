#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# README command 2: everything the tests need, from a fresh Debian 12 as
# root: packages, the base kernel, the patched test kernel, the kselftests
# and C++ suites; then every suite in its own QEMU boot, and the summary.
#
# Usage: harness/test.sh [ctest arguments, e.g. -R upstream]
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"
t0=$(date +%s)

"$HARNESS_DIR/install-deps.sh" >"${TMPDIR:-/tmp}/gmem-install-deps.log" 2>&1 ||
	{ cat "${TMPDIR:-/tmp}/gmem-install-deps.log" >&2; die "test: installing packages failed"; }

build="$REPO_DIR/build"
log "test: configuring and building (kernel, kselftests, C++ suites)"
cmake_configure "$build" >/dev/null
cmake --build "$build"
t1=$(date +%s)

rm -rf "$build/test-results"
mkdir -p "$build/test-results"
# What was tested, for the cover letter (export-series.sh): these patches,
# this kernel config, and the CTest filter if the run was one.
series_digest >"$build/test-results/series-digest"
sed -n 's/^GMEM_CONFIG:[A-Z]*=//p' "$build/CMakeCache.txt" >"$build/test-results/config"
printf '%s\n' "$*" >"$build/test-results/filter"
log "test: running the suites (one guest boot each)"
set +e
ctest --test-dir "$build" --output-on-failure "$@"
set -e
t2=$(date +%s)
log "test: build $((t1 - t0)) s, tests $((t2 - t1)) s"
mapfile -t suites <"$build/suites.txt"
if [ $# -gt 0 ]; then suites=(); fi # a filtered run only judges what ran
python3 "$LIB_DIR/summary.py" "$build/test-results" --limits "$build/limits.tsv" \
	--build-seconds $((t1 - t0)) --tests-seconds $((t2 - t1)) "${suites[@]}"
