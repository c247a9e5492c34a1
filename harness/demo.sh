#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# README command 1 (the main job): from a fresh Debian 12 as root, install
# what is needed, build and boot the patched kernel under QEMU and run the
# demo inside it: gmem-info (what the kernel reports about guest_memfd,
# iommufd and its VM types), then gmem-demo, a mini-VMM whose guest converts
# its memory between private and shared in place while an IOMMU follows the
# shared pages: the guest is a q35 machine with an emulated VT-d and QEMU's
# edu DMA device, whose real DMA shows, after every step, which pages the
# device reaches.
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"
t0=$(date +%s)
step() { printf '\n==> [%s/4] %s\n' "$1" "$2" >&2; }
fail() { printf '\n==> FAILED at step %s: %s\n    log: %s\n' "$1" "$2" "$3" >&2; exit 1; }

logdir="$REPO_DIR/build/demo-logs"
mkdir -p "$logdir"

step 1 "installing packages (apt; a no-op when present)"
"$HARNESS_DIR/install-deps.sh" >"$logdir/install-deps.log" 2>&1 ||
	fail 1 "installing packages" "$logdir/install-deps.log"

step 2 "fetching Linux 7.3, applying the series, building the kernel (cold: ~8 min; warm: seconds)"
cmake_configure "$REPO_DIR/build" >"$logdir/cmake.log" 2>&1 ||
	fail 2 "cmake configure" "$logdir/cmake.log"
"$LIB_DIR/progress.sh" "$logdir/build.log" cmake --build "$REPO_DIR/build" --target gmem-info --target gmem-demo ||
	fail 2 "building the kernel and the demo" "$logdir/build.log"

step 3 "booting the patched kernel under QEMU (TCG) and running the demo"
# One boot: gmem-info, then the demo; the exit status is the demo's.
cat >"$logdir/demo-in-guest.sh" <<'SH'
#!/bin/sh
./gmem-info
echo
exec ./gmem-demo --require-iommu --device=edu
SH
chmod +x "$logdir/demo-in-guest.sh"
set +e
"$HARNESS_DIR/guest-run.sh" --results "$REPO_DIR/build/demo-run" --fail-on-splat \
	--viommu intel --file "$REPO_DIR/build/gmem-info" --file "$REPO_DIR/build/gmem-demo" \
	-- "$logdir/demo-in-guest.sh"
rc=$?
set -e
[ $rc = 0 ] || fail 3 "the demo exited with status $rc" "$REPO_DIR/build/demo-run/console.log"

step 4 "done in $(($(date +%s) - t0)) s: exit status 0"
