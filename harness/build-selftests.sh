#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build kselftests of the assembled tree as static binaries (they run from
# the busybox initramfs), against the UAPI headers of a kernel build.
#
# Usage: build-selftests.sh [--config NAME] DIR/TARGET...
#   e.g. build-selftests.sh kvm/guest_memfd_test iommu/iommufd
# Output: $GMEM_CACHE/build/selftests/DIR/TARGET
set -euo pipefail
. "$(dirname "$0")/lib.sh"

name=test
if [ "${1:-}" = "--config" ]; then name=$2; shift 2; fi
[ $# -gt 0 ] || die "build-selftests: no targets"

tree=$(ktree)
hdrs="$(kbuild_dir "$name")/usr/include"
[ -d "$hdrs/linux" ] || die "build-selftests: no UAPI headers in $hdrs; build the kernel first"
out=$(selftests_dir)

declare -A bydir
for t in "$@"; do
	d=${t%%/*}
	bydir[$d]="${bydir[$d]:-} $out/$t"
done

export CCACHE_DIR="$GMEM_CACHE/ccache"
for d in "${!bydir[@]}"; do
	log "build-selftests: $d:${bydir[$d]//$out\//}"
	mkdir -p "$out/$d"
	# LDFLAGS from the environment: the Makefiles append to it.
	LDFLAGS=-static make -C "$tree/tools/testing/selftests/$d" -j"$(nproc)" -s \
		CC="ccache gcc" OUTPUT="$out/$d" KHDR_INCLUDES="-isystem $hdrs" \
		${bydir[$d]}
done
