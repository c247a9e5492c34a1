#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Install the Debian 12 packages the pipeline needs. Idempotent; run as root.
# QEMU 10.0 comes from bookworm-backports, which is a bookworm suite, so it is
# added to the system's sources. trixie is never added (see fetch-kernel.sh).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: must run as root (apt-get install)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive

bpo=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
	cat >"$bpo" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

pkgs=(
	build-essential bc bison flex libelf-dev libssl-dev dwarves cpio kmod
	xz-utils zstd lz4 ccache git rsync python3 perl cmake ninja-build
	busybox-static libgtest-dev libgmock-dev liburing-dev libbenchmark-dev
	libcap-dev libnuma-dev libmnl-dev pkg-config clang-format
	# lint (harness/lint.sh) and checkpatch's SPDX check
	shellcheck python3-ply python3-git
	ca-certificates python3-matplotlib
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done

need_qemu=1
if command -v qemu-system-x86_64 >/dev/null; then
	v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
	[ "${v:-0}" -ge 10 ] && need_qemu=0
fi

if [ ${#missing[@]} -gt 0 ] || [ $need_qemu = 1 ]; then
	echo "install-deps: installing: ${missing[*]} $([ $need_qemu = 1 ] && echo qemu-system-x86/bookworm-backports)"
	apt-get update -qq
	[ ${#missing[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends "${missing[@]}"
	if [ $need_qemu = 1 ]; then
		apt-get install -y -qq --no-install-recommends -t bookworm-backports \
			qemu-system-x86 qemu-system-data
	fi
fi
qemu-system-x86_64 --version | head -1
