#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build gmem-bench (bench/) and run it in the guest: in-place conversion
# against two backings, pin-free IOMMU mapping against pinning, side by
# side in one boot. Not part of test.sh: run it on purpose.
#
# Usage: bench.sh [--config NAME] [--icount] [--results DIR] [--timeout SEC]
#                 [--no-fallback] [--viommu KIND] [-- GMEM-BENCH-ARGS...]
#   --config NAME  kernel config (default: perf, no lockdep/KASAN/DEBUG_VM).
#                  If the perf kernel fails to build or to boot, the run
#                  falls back to the test config and says so loudly: its
#                  lockdep and KASAN distort every figure.
#   --no-fallback  fail instead of falling back to the test config
#   --icount       QEMU -icount shift=0,sleep=off: the guest clock counts
#                  guest instructions (1 ns = 1 instruction), so figures
#                  repeat across runs and machines; it measures instruction
#                  counts, not cache or TLB cost. Single-threaded TCG.
#   --results DIR  run directory (default: $GMEM_BUILD_ROOT/bench-results/
#                  CONFIG[-icount]); BENCH lines also go to DIR/bench.txt
#   --timeout SEC  guest timeout (default 7200: every case to 1 GiB)
#   --viommu KIND  boot the q35 machine with that emulated IOMMU (intel, amd,
#                  virtio) and QEMU's edu device (guest-run.sh --viommu), and
#                  run the iommu-* cases on edu's domain (gmem-bench
#                  --device edu): real IOMMU page tables and strict IOTLB
#                  invalidation instead of the mock's xarray
#   --and-viommu KIND  after the main run, boot the same kernel again with
#                  --viommu KIND and run the iommu-* cases there too; the
#                  report adds them as "iommu-map (KIND)", "iommu-conv (KIND)"
#                  (results in RESULTS-KIND)
#   --mem SIZE     guest RAM (default 6G: the 1 GiB cases of the 7.3 ways
#                  hold up to three copies of the range)
#   --report DIR   afterwards, turn the run's JSON (always written, as
#                  RESULTS/bench.json) into DIR/bench.md (tables and the
#                  goals of issue 14), DIR/bench.png (cost per page against
#                  range size) and DIR/bench.json, with harness/bench-report.py
#                  (needs /usr/bin/python3 with matplotlib; installed here
#                  with apt if missing and run as root)
#   GMEM-BENCH-ARGS e.g. --reps 21 --pages 4K,2M,64M,1G --only conv --steps
#
# Honours GMEM_CACHE, GMEM_KTREE, GMEM_BUILD_ROOT like every harness script;
# the CMake build directory is GMEM_BENCH_BUILD (default
# $GMEM_CACHE/cmake-bench-HASH, HASH from the checkout's path).
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

config=perf icount=0 results="" timeout=7200 fallback=1 viommu="" mem=6G report=""
and_viommu="" second=0
cmdline="harness/bench.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--config) config=$2; shift 2 ;;
	--icount) icount=1; shift ;;
	--results) results=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--no-fallback) fallback=0; shift ;;
	--viommu) viommu=$2; shift 2 ;;
	--and-viommu) and_viommu=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--report) report=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
	--) shift; break ;;
	*) die "bench: unknown option $1 (gmem-bench's own options go after --)" ;;
	esac
done
# One CMake directory per checkout: CMake refuses a build directory that
# another source directory configured.
bdir=${GMEM_BENCH_BUILD:-$GMEM_CACHE/cmake-bench-$(printf %s "$REPO_DIR" | sha1sum | cut -c1-8)}
mkdir -p "$bdir"

# The report's plot needs matplotlib: check before an hour of benchmark.
if [ -n "$report" ] && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
	[ "$(id -u)" = 0 ] || die "bench: --report needs python3-matplotlib (apt-get install python3-matplotlib)"
	log "bench: installing python3-matplotlib for --report"
	apt-get install -y --no-install-recommends python3-matplotlib >/dev/null ||
		die "bench: cannot install python3-matplotlib"
fi

loud() {
	printf '\n%s\n' "************************************************************************" >&2
	printf '** %s\n' "$@" >&2
	printf '%s\n\n' "************************************************************************" >&2
}

fall_back() { # why
	if [ "$config" = test ] || [ $fallback = 0 ]; then
		die "bench: $1"
	fi
	loud "$1" \
		"FALLING BACK TO THE TEST CONFIG: lockdep, KASAN and DEBUG_VM are on," \
		"every figure below is distorted by them. Do not quote these numbers."
	config="test"
	"$HARNESS_DIR/build-kernel.sh" test
}

# 1. The kernel (the CMake target below builds it too; building it first
# lets a broken perf config fall back instead of failing the build).
if ! "$HARNESS_DIR/build-kernel.sh" "$config"; then
	fall_back "the $config kernel did not build"
fi

# 2. gmem-bench, against that kernel's UAPI headers.
log "bench: building gmem-bench in $bdir"
cmake_configure "$bdir" -DGMEM_CONFIG="$config" >"$bdir.cmake.log" 2>&1 ||
	die "bench: cmake configure failed, see $bdir.cmake.log"
ninja -C "$bdir" gmem-bench
bin="$bdir/bench/gmem-bench"

# 3. One boot.
run() { # prints nothing itself; returns guest-run's status
	local qargs=(--mem "$mem")
	[ $icount = 1 ] && qargs+=(--icount)
	[ -n "$viommu" ] && qargs+=(--viommu "$viommu")
	local tag=$config
	[ $icount = 1 ] && tag+=-icount
	[ -n "$viommu" ] && tag+=-$viommu
	res=${results:-$(build_root)/bench-results/$tag}
	[ "$second" = 1 ] && res=$main_res-$viommu
	# What was measured: the repository's commit (the series the kernel was
	# assembled from; "+" if it had uncommitted edits) and the kernel tree.
	local src
	src="series:$(git -C "$REPO_DIR" rev-parse --short HEAD)"
	git -C "$REPO_DIR" diff --quiet HEAD 2>/dev/null || src+="+"
	src+=",tree:$(git -C "$(ktree)" rev-parse --short "HEAD^{tree}")"
	local bargs=(--config "$config" --source "$src" --json bench.json)
	[ $icount = 1 ] && bargs+=(--icount)
	[ -n "$viommu" ] && bargs+=(--device edu)
	log "bench: booting the $config kernel$([ $icount = 1 ] && echo ' with -icount shift=0'); results in $res"
	set +e
	"$HARNESS_DIR/guest-run.sh" --config "$config" --results "$res" --timeout "$timeout" \
		"${qargs[@]}" -- "$bin" "${bargs[@]}" "$@"
	rc=$?
	set -e
}

run "$@"
if [ $rc = 125 ] && [ "$config" != test ] && [ $fallback = 1 ]; then
	fall_back "the $config kernel did not boot or died (see $res/console.log)"
	run "$@"
fi
grep '^BENCH ' "$res/output.log" >"$res/bench.txt" 2>/dev/null || true
main_res=$res
devices=()
if [ -n "$and_viommu" ] && [ $rc = 0 ]; then
	viommu=$and_viommu second=1
	log "bench: the iommu-* cases again on the emulated $viommu IOMMU"
	run "$@" --only iommu-map,iommu-conv
	grep '^BENCH ' "$res/output.log" >"$res/bench.txt" 2>/dev/null || true
	devices+=(--device "$viommu=$res/bench.json")
	[ -s "$res/splats" ] && loud "The $viommu guest's kernel log has a splat (see $res/splats)"
	res=$main_res
fi
if [ "$config" != perf ]; then
	loud "These figures come from the $config config, not perf: see above."
fi
if [ -s "$res/splats" ]; then
	loud "The guest's kernel log has a splat (see $res/splats): figures suspect."
fi
log "bench: exit status $rc; BENCH lines in $res/bench.txt, JSON in $res/bench.json"
if [ -n "$report" ]; then
	[ -s "$res/bench.json" ] || die "bench: no $res/bench.json to report"
	/usr/bin/python3 "$HARNESS_DIR/bench-report.py" "$res/bench.json" "$report" \
		--command "$cmdline" "${devices[@]}" || die "bench: bench-report.py failed"
fi
exit "$rc"
