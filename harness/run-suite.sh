#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run one test suite in its own guest boot (a crash costs one suite) and
# judge it: per-case results from TAP or GoogleTest XML, plus a failure for
# any kernel splat. This is what each CTest test runs.
#
# Usage: run-suite.sh --results DIR [--timeout SEC] [--config NAME]
#                     [--file PATH]... [--append KERNEL-ARGS]
#                     [--viommu intel|intel-sm|amd|virtio]
#                     NAME -- PROGRAM [ARGS...]
# Results: DIR/NAME/{output.log,console.log,dmesg.log,cases.tsv,result.tsv}
# Exit: 0 passed, 77 all skipped (CTest SKIP_RETURN_CODE), 1 failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

resroot="" ; gargs=()
while [ $# -gt 0 ]; do
	case "$1" in
	--results) resroot=$2; shift 2 ;;
	--timeout|--config|--file|--append|--viommu) gargs+=("$1" "$2"); shift 2 ;;
	--) shift; break ;;
	-*) die "run-suite: unknown option $1" ;;
	*) name=$1; shift ;;
	esac
done
[ -n "${name:-}" ] && [ -n "$resroot" ] && [ $# -gt 0 ] || die "run-suite: usage: see the header"
dir="$resroot/$name"
mkdir -p "$dir"
log "run-suite: $name: booting the guest"
set +e
"$HARNESS_DIR/guest-run.sh" --results "$dir" "${gargs[@]}" -- "$@"
set -e
python3 "$HARNESS_DIR/parse-results.py" "$name" "$dir"
