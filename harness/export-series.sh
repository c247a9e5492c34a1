#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Export the series as a maintainer receives it: git format-patch output of
# the assembled tree (base..series) with --base, and the cover letter from
# its source, docs/cover-letter.txt, with the base kernel, the last test
# run's results and the last per-patch check's filled in where the source
# says (lib/cover-letter.py): only runs of these very patches count, and
# the letter says when there is none.
#
# Usage: harness/export-series.sh [--out DIR] [--subject-prefix PREFIX]
#                                 [--results DIR] [--check DIR] [--no-assemble]
#   --out DIR             where the patches go (default: build/series)
#   --subject-prefix P    default "RFC PATCH"
#   --results DIR         a test run's results (default: build/test-results)
#   --check DIR           a per-patch check's output (default:
#                         build/check-series)
# Nothing is signed off: the person who posts the series adds their
# Signed-off-by (the cover letter says so).
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

out="$REPO_DIR/build/series"
prefix="RFC PATCH"
results="$REPO_DIR/build/test-results"
check="$REPO_DIR/build/check-series"
assemble=1
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--subject-prefix) prefix=$2; shift 2 ;;
	--results) results=$2; shift 2 ;;
	--check) check=$2; shift 2 ;;
	--no-assemble) assemble=0; shift ;;
	*) die "export-series: unknown argument $1" ;;
	esac
done

tree=$(ktree)
[ $assemble = 1 ] && "$HARNESS_DIR/assemble.sh" >/dev/null
git -C "$tree" rev-parse -q --verify base >/dev/null ||
	die "export-series: $tree has no assembled series (run harness/assemble.sh)"

rm -rf "$out"
mkdir -p "$out"
git -C "$tree" format-patch -q -o "$out" --cover-letter --base=base \
	--subject-prefix="$prefix" --zero-commit --no-signature base..series
cover=$(ls "$out"/0000-cover-letter.patch)
n=$(git -C "$tree" rev-list --count base..series)

python3 "$LIB_DIR/cover-letter.py" --cover "$cover" --source "$REPO_DIR/docs/cover-letter.txt" \
	--results "$results" --check "$check" --allow "$HARNESS_DIR/check-allow.tsv" \
	--digest "$(series_digest)" --patches "$n" \
	--base-version "$(sed -n 's/^KNOWN_VERSION=//p' "$HARNESS_DIR/fetch-kernel.sh")" \
	--base-sha256 "$(sed -n 's/^KNOWN_SHA256=//p' "$HARNESS_DIR/fetch-kernel.sh")"
log "export-series: $n patches and a cover letter in $out"
