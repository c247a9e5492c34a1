#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build kselftests of the assembled tree as static binaries (they run from
# the busybox initramfs), against the UAPI headers of a kernel build.
#
# The kselftest harness gives each test a compiled-in limit of 30 s
# (TEST_TIMEOUT_DEFAULT in kselftest_harness.h), which a slow TCG host
# overruns on correct kernels. The tests' own code stays as upstream wrote
# it: they are built from a staging copy of tools/testing/selftests (hard
# links, refreshed every build) in which only that default is replaced by
# $GMEM_KSFT_TIMEOUT (default below), for upstream and series tests alike.
# Tests that set their own limit (TEST_F_TIMEOUT) keep it.
#
# Usage: build-selftests.sh [--config NAME] DIR/TARGET...
#   e.g. build-selftests.sh kvm/guest_memfd_test iommu/iommufd
# Output: $GMEM_CACHE/build/selftests/DIR/TARGET
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

name="test"
if [ "${1:-}" = "--config" ]; then name=$2; shift 2; fi
[ $# -gt 0 ] || die "build-selftests: no targets"

tree=$(ktree)
hdrs="$(kbuild_dir "$name")/usr/include"
[ -d "$hdrs/linux" ] || die "build-selftests: no UAPI headers in $hdrs; build the kernel first"
out=$(selftests_dir)
timeout=${GMEM_KSFT_TIMEOUT:-$KSFT_TIMEOUT_DEFAULT}
case "$timeout" in '' | *[!0-9]*) die "build-selftests: GMEM_KSFT_TIMEOUT must be a number of seconds" ;; esac

# The staging tree: tools/testing/selftests hard-linked from the assembled
# tree (so make sees the tree's mtimes), every other path a symlink into it.
stage="$out/.src"
rm -rf "$stage"
mkdir -p "$stage/tools/testing"
for e in "$tree"/* "$tree"/.[!.]*; do
	[ -e "$e" ] || continue
	[ "${e##*/}" = tools ] || ln -s "$e" "$stage/${e##*/}"
done
for e in "$tree"/tools/*; do
	[ "${e##*/}" = testing ] || ln -s "$e" "$stage/tools/${e##*/}"
done
for e in "$tree"/tools/testing/*; do
	[ "${e##*/}" = selftests ] || ln -s "$e" "$stage/tools/testing/${e##*/}"
done
cp -al "$tree/tools/testing/selftests" "$stage/tools/testing/selftests"
h="$stage/tools/testing/selftests/kselftest_harness.h"
sed "s/^#define TEST_TIMEOUT_DEFAULT [0-9]*$/#define TEST_TIMEOUT_DEFAULT $timeout/" \
	"$tree/tools/testing/selftests/kselftest_harness.h" >"$h.new"
grep -q "^#define TEST_TIMEOUT_DEFAULT $timeout$" "$h.new" ||
	die "build-selftests: kselftest_harness.h has no '#define TEST_TIMEOUT_DEFAULT N' line to replace"
rm "$h"
mv "$h.new" "$h"
# Rebuild the tests when the limit changes (not every Makefile tracks
# its header dependencies), not on every run.
stamp="$out/.ksft-timeout"
if [ "$(cat "$stamp" 2>/dev/null)" = "$timeout" ]; then
	touch -r "$tree/tools/testing/selftests/kselftest_harness.h" "$h"
else
	find "$out" -mindepth 1 -maxdepth 1 ! -name .src ! -name .ksft-timeout -exec rm -rf {} +
	echo "$timeout" >"$stamp"
fi

declare -A bydir
for t in "$@"; do
	d=${t%%/*}
	bydir[$d]="${bydir[$d]:-} $out/$t"
done

export CCACHE_DIR="$GMEM_CACHE/ccache"
for d in "${!bydir[@]}"; do
	log "build-selftests: $d:${bydir[$d]//$out\//} (per-test limit ${timeout} s)"
	mkdir -p "$out/$d"
	# LDFLAGS from the environment: the Makefiles append to it.
	# shellcheck disable=SC2086 # bydir[d] is a space-separated list of targets
	LDFLAGS=-static make -C "$stage/tools/testing/selftests/$d" -j"$(nproc)" -s \
		CC="ccache gcc" OUTPUT="$out/$d" KHDR_INCLUDES="-isystem $hdrs" \
		${bydir[$d]}
done
