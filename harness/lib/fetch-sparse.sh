#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Print the path of a sparse that the kernel tree accepts (C=1/C=2).
#
# Debian 12's sparse (0.6.4) fails the tree's scripts/checker-valid.sh
# (no __typeof_unqual__), and kbuild then silently drops C=1. In that case
# build Debian's own newer sparse from source: the source package of
# unstable (0.6.5~rc1), downloaded with apt through a private deb-src list
# and lists directory (unstable never reaches the system's apt sources;
# its binary package needs glibc 2.38, which Debian 12 lacks), its orig
# tarball checked against the sha256 below, built without LLVM, sqlite or
# GTK into $GMEM_CACHE/tools. Idempotent.
#
# Usage: fetch-sparse.sh KERNEL-TREE
set -euo pipefail
. "$(dirname "$0")/lib.sh"

tree=${1:?usage: fetch-sparse.sh KERNEL-TREE}
VER="0.6.5~rc1"
DEBREV="2"
ORIG_SHA256=3ac8855ec7f3ab92f325be0f64347ccc2b10f8b4d7c2906783ee8e2bdab3f0de

valid() { [ "$(sh "$tree/scripts/checker-valid.sh" "$1" --arch=x86 -m64 -mlittle-endian 2>/dev/null)" = 1 ]; }

if command -v sparse >/dev/null && valid "$(command -v sparse)"; then
	command -v sparse
	exit 0
fi

top="$GMEM_CACHE/tools/sparse-$VER"
bin="$top/sparse"
if [ -x "$bin" ] && valid "$bin"; then
	echo "$bin"
	exit 0
fi

dl="$GMEM_CACHE/tools/download"
private_apt "$dl"
echo "deb-src http://deb.debian.org/debian sid main" >"$dl/sources.list"
orig="$dl/sparse_$VER.orig.tar.gz"
if [ ! -f "$orig" ] || [ "$(sha256sum "$orig" | cut -d' ' -f1)" != "$ORIG_SHA256" ]; then
	log "fetch-sparse: Debian 12's sparse is too old for this kernel; fetching Debian's sparse $VER source"
	apt-get -qq "${aptopts[@]}" update >&2
	(cd "$dl" && apt-get -qq "${aptopts[@]}" source --download-only "sparse=$VER-$DEBREV" >&2) ||
		die "fetch-sparse: unstable no longer serves sparse $VER-$DEBREV (update VER/DEBREV/ORIG_SHA256)"
	[ "$(sha256sum "$orig" | cut -d' ' -f1)" = "$ORIG_SHA256" ] ||
		die "fetch-sparse: $orig does not have the expected sha256"
fi

log "fetch-sparse: building sparse $VER in $top"
rm -rf "$top"
mkdir -p "$top.tmp"
tar -xzf "$orig" -C "$top.tmp" --strip-components=1
make -C "$top.tmp" -j"$(nproc)" HAVE_LLVM=no HAVE_SQLITE=no HAVE_GTK=no HAVE_LIBXML=no sparse \
	>"$top.tmp/build.log" 2>&1 || { tail -n 20 "$top.tmp/build.log" >&2; die "fetch-sparse: building sparse failed"; }
mv "$top.tmp" "$top"
valid "$bin" || die "fetch-sparse: the sparse built in $top does not pass $tree/scripts/checker-valid.sh"
echo "$bin"
