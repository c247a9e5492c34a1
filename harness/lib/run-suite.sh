#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Run one test suite in its own guest boot (a crash costs one suite) and
# judge it: per-case results from TAP or GoogleTest XML, plus a failure for
# any kernel splat. This is what each CTest test runs.
#
# Usage: run-suite.sh --results DIR [--timeout SEC] [--config NAME]
#                     [--file PATH]... [--append KERNEL-ARGS]
#                     [--viommu intel|intel-sm|amd|virtio] [--tcg-single]
#                     [--require-log TEXT]... [--host]
#                     NAME -- PROGRAM [ARGS...]
#   --require-log  the guest's kernel log must contain TEXT (a line or part
#           of one), or the suite fails: for a configuration given with
#           --append, that it took effect.
#   --host  run PROGRAM here, not in a guest (lint, the parser's own
#           tests): its output, TAP or not, is judged the same way.
# Results: DIR/NAME/{output.log,console.log,dmesg.log,cases.tsv,result.tsv}
# Exit: 0 passed, 77 all skipped (CTest SKIP_RETURN_CODE), 1 failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

resroot="" ; gargs=() ; host=0 ; required=()
while [ $# -gt 0 ]; do
	case "$1" in
	--results) resroot=$2; shift 2 ;;
	--timeout|--config|--file|--append|--viommu) gargs+=("$1" "$2"); shift 2 ;;
	--tcg-single) gargs+=("$1"); shift ;;
	--require-log) required+=("$2"); shift 2 ;;
	--host) host=1; shift ;;
	--) shift; break ;;
	-*) die "run-suite: unknown option $1" ;;
	*) name=$1; shift ;;
	esac
done
if [ -z "${name:-}" ] || [ -z "$resroot" ] || [ $# = 0 ]; then
	die "run-suite: usage: see the header"
fi
dir="$resroot/$name"
mkdir -p "$dir"
set +e
if [ $host = 1 ]; then
	log "run-suite: $name: running on the host"
	rm -f "$dir/output.log" "$dir/exit_status" "$dir/splats"
	"$@" >"$dir/output.log" 2>&1
	echo $? >"$dir/exit_status"
else
	log "run-suite: $name: booting the guest"
	"$HARNESS_DIR/guest-run.sh" --results "$dir" "${gargs[@]}" -- "$@"
fi
set -e
rm -f "$dir/require_log"
if [ ${#required[@]} -gt 0 ]; then
	printf '%s\n' "${required[@]}" >"$dir/require_log"
fi
# A host program's failures: its diagnostics, for CTest's --output-on-failure.
if [ $host = 1 ] && { [ "$(cat "$dir/exit_status")" != 0 ] || grep -q '^not ok' "$dir/output.log"; }; then
	grep -E '^(not ok|#|Bail out)' "$dir/output.log" | head -n 60 || tail -n 30 "$dir/output.log"
fi
python3 "$LIB_DIR/parse-results.py" "$name" "$dir"
