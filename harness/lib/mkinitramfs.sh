#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the guest's initramfs: static busybox, the init script, and for
# configs with modules, the installed modules. Rebuilt only when an input
# changed. Prints its path.
#
# Usage: mkinitramfs.sh [CONFIG]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

name=${1:-test}
kdir=$(kbuild_dir "$name")
out="$kdir/gmem-initramfs.cpio.gz"
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
	if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || die "mkinitramfs: no static busybox (apt-get install busybox-static)"

stamp=$( (sha256sum "$busybox" "$LIB_DIR/guest-init.sh"
	if [ -d "$kdir/modroot" ]; then
		find "$kdir/modroot" -type f -printf '%P %s %T@\n' | sort
	fi) | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
	echo "$out"
	exit 0
fi

stage=$(mktemp -d "$GMEM_CACHE/initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,run,etc,root}
cp "$busybox" "$stage/bin/busybox"
cp "$LIB_DIR/guest-init.sh" "$stage/init"
chmod 755 "$stage/init"
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 666 "$stage/dev/null" c 1 3
echo "root:x:0:0:root:/root:/bin/sh" >"$stage/etc/passwd"
echo "root:x:0:" >"$stage/etc/group"
if [ -d "$kdir/modroot/lib" ]; then
	cp -a "$kdir/modroot/lib" "$stage/lib"
fi
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
echo "$stamp" >"$out.stamp"
echo "$out"
