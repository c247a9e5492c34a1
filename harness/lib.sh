# SPDX-License-Identifier: GPL-2.0-only
# Shared settings for the harness scripts. Sourced, not executed.

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HARNESS_DIR/.." && pwd)

# Everything fetched or built lives outside the clone so that later clones
# (CI, the next session) start warm. Override with GMEM_CACHE.
GMEM_CACHE=${GMEM_CACHE:-/var/cache/gmem-series}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The assembled, patched kernel tree (a git repository).
ktree() { echo "${GMEM_KTREE:-$GMEM_CACHE/linux}"; }

# The series file: one patch per line, in apply order, optionally followed
# by the path patterns that writeback.sh puts into that patch by default.
series_entries() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$REPO_DIR/series"
}

# Files of this repository that live at kernel paths: tracked (and untracked
# but not ignored) files whose top-level directory is one of the kernel's.
KERNEL_TOPDIRS="arch block certs crypto Documentation drivers fs include init io_uring ipc kernel lib mm net rust samples scripts security sound tools usr virt"
repo_kernel_files() {
	local d
	(cd "$REPO_DIR" && for d in $KERNEL_TOPDIRS; do
		[ -d "$d" ] && git ls-files -co --exclude-standard -- "$d"
	done) | sort -u
}

# Root of the kernel and kselftest builds.
build_root() { echo "${GMEM_BUILD_ROOT:-$GMEM_CACHE/build}"; }

# Kernel build output directory of one config.
kbuild_dir() { echo "$(build_root)/$1"; }

# Where kselftests are built.
selftests_dir() { echo "$(build_root)/selftests"; }

# Seconds one kselftest harness case may run (build-selftests.sh builds it
# into the tests; CMake's GMEM_KSFT_TIMEOUT passes the same default).
KSFT_TIMEOUT_DEFAULT=300
