#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Fetch the base kernel: Debian's linux-source-7.3 from trixie-backports,
# downloaded with apt through a private sources list and lists directory so
# trixie never reaches the system's own apt configuration. The tarball inside
# is verified against the sha256 we know, then extracted once into the cache.
#
# Prints the path of the pristine, read-only source tree on stdout.
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

KNOWN_VERSION=7.3.4-1~bpo13+1
KNOWN_SHA256=76df1affb19f24926949369be1d74b60071c963c598ce8780bddd4bbf0fc3bc4
PKG=linux-source-7.3

dl="$GMEM_CACHE/download"
private_apt "$dl"

# shellcheck disable=SC2012 # Debian package file names; ls feeds sort -V
find_deb() { ls -1 "$dl"/${PKG}_*_all.deb 2>/dev/null | sort -V | tail -n 1; }

deb=$(find_deb || true)
if [ -z "$deb" ]; then
	echo "deb http://deb.debian.org/debian trixie-backports main" >"$dl/sources.list"
	log "fetch: apt-get update (private lists for trixie-backports)"
	apt-get -qq "${aptopts[@]}" update >&2
	ver=$(apt-cache "${aptopts[@]}" policy "$PKG" | sed -n 's/^ *Candidate: //p')
	if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
		die "fetch: trixie-backports serves no $PKG"
	fi
	if [ "$ver" != "$KNOWN_VERSION" ]; then
		warn "fetch: trixie-backports now serves $PKG $ver, not $KNOWN_VERSION;"
		warn "fetch: its tarball cannot be checked against a known sha256. Trying it anyway."
	fi
	log "fetch: apt-get download $PKG=$ver"
	(cd "$dl" && apt-get -qq "${aptopts[@]}" download "$PKG=$ver" >&2)
	deb=$(find_deb)
fi
[ -n "$deb" ] || die "fetch: download of $PKG produced no .deb in $dl"

ver=$(dpkg-deb -f "$deb" Version)
tarball="$dl/linux-source-7.3-$ver.tar.xz"
if [ ! -s "$tarball" ]; then
	log "fetch: unpacking $(basename "$deb")"
	tmp=$(mktemp -d "$dl/x.XXXXXX")
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/src/linux-source-7.3.tar.xz
	mv "$tmp/usr/src/linux-source-7.3.tar.xz" "$tarball"
	rm -rf "$tmp"
fi

sum=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$ver" = "$KNOWN_VERSION" ]; then
	if [ "$sum" != "$KNOWN_SHA256" ]; then
		rm -f "$tarball"
		die "fetch: sha256 mismatch for $PKG $ver tarball: got $sum, want $KNOWN_SHA256"
	fi
else
	warn "fetch: $PKG $ver tarball sha256 $sum (unverified: newer than $KNOWN_VERSION)"
fi

src="$GMEM_CACHE/src/linux-source-7.3-$ver"
if [ ! -f "$src/.gmem-extracted" ]; then
	log "fetch: extracting kernel source to $src"
	rm -rf "$src"
	mkdir -p "$src"
	tar -xJf "$tarball" -C "$src" --strip-components=1
	echo "$ver $sum" >"$src/.gmem-extracted"
	chmod -R a-w "$src"
fi
echo "$src"
