#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Assemble the patched kernel tree: the pristine base committed as "base",
# then one commit per entry of ../series (each patch applied in order), then
# one commit with the series' new files. The result is checked out in
# $GMEM_CACHE/linux on branch "series"; only files whose content changed are
# rewritten, so incremental kernel builds stay incremental.
#
# Usage: assemble.sh [--force]
#   --force  discard uncommitted edits in the assembled tree (otherwise an
#            edited tree is refused: run writeback.sh first).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

force=0
[ "${1:-}" = "--force" ] && force=1

src=$("$HARNESS_DIR/fetch-kernel.sh")
tree=$(ktree)

if [ ! -d "$tree/.git" ]; then
	log "assemble: creating $tree from $src (one-off, about a minute)"
	rm -rf "$tree"
	mkdir -p "$tree"
	cp -a "$src/." "$tree/"
	chmod -R u+w "$tree"
	rm -f "$tree/.gmem-extracted"
	git -C "$tree" init -q
	git -C "$tree" config user.name "gmem-series"
	git -C "$tree" config user.email "gmem-series@localhost"
	git -C "$tree" config core.autocrlf false
	git -C "$tree" config gc.auto 0
	# The kernel's .gitignore hides generated files; commit every
	# source file regardless so the base is exactly the tarball.
	git -C "$tree" add -A -f .
	git -C "$tree" commit -q -m "Linux $(cat "$src/.gmem-extracted" | cut -d' ' -f1) (Debian linux-source-7.3)"
	git -C "$tree" tag -f base >/dev/null
	git -C "$tree" checkout -q -b series
fi

cd "$tree"
if [ $force = 0 ] && [ -n "$(git status --porcelain)" ]; then
	git status --short | head -n 20 >&2
	die "assemble: $tree has uncommitted edits; run harness/writeback.sh (or assemble.sh --force to drop them)"
fi

idx=$(mktemp "$GMEM_CACHE/index.XXXXXX")
trap 'rm -f "$idx"' EXIT
export GIT_INDEX_FILE=$idx
git read-tree base
parent=$(git rev-parse base)

# One commit per patch, in the order of the series file.
while read -r patch _; do
	p="$REPO_DIR/$patch"
	[ -f "$p" ] || die "assemble: series lists $patch, which does not exist"
	if ! grep -q '^diff --git ' "$p"; then
		: # an entry with no diff yet: an empty commit keeps its place
	elif ! git apply --cached --whitespace=nowarn "$p" 2>"$idx.err"; then
		echo "assemble: patch $patch does not apply to the tree so far:" >&2
		sed 's/^/  /' "$idx.err" >&2
		# Name the hunk that failed.
		git apply --cached --check -v "$p" 2>&1 | grep -E '^(Checking|error|Hunk)' | sed 's/^/  /' >&2 || true
		rm -f "$idx.err"
		exit 1
	fi
	rm -f "$idx.err"
	subj=$(sed -n 's/^Subject: *\(\[PATCH[^]]*\] *\)\{0,1\}//p' "$p" | head -n 1)
	[ -n "$subj" ] || subj="$(basename "$patch")"
	msg=$(printf '%s\n\nGmem-Patch: %s\n' "$subj" "$patch")
	parent=$(git commit-tree "$(git write-tree)" -p "$parent" -m "$msg")
done < <(series_entries)

# The series' new files, at their kernel paths.
n=0
while read -r f; do
	[ -e "$REPO_DIR/$f" ] || continue
	if git cat-file -e "base:$f" 2>/dev/null; then
		die "assemble: $f exists upstream; edits to upstream files belong in a patch"
	fi
	mode=100644
	[ -x "$REPO_DIR/$f" ] && mode=100755
	sha=$(git hash-object -w "$REPO_DIR/$f")
	git update-index --add --cacheinfo "$mode,$sha,$f"
	n=$((n + 1))
done < <(repo_kernel_files)
msg=$(printf 'series: add new files (%d)\n\nGmem-Patch: new-files\n' "$n")
final=$(git commit-tree "$(git write-tree)" -p "$parent" -m "$msg")
unset GIT_INDEX_FILE

if [ "$(git rev-parse HEAD^{tree})" = "$(git rev-parse "$final^{tree}")" ]; then
	git update-ref refs/heads/series "$final"
	git symbolic-ref HEAD refs/heads/series
	git reset -q --soft "$final"
else
	if [ $force = 1 ]; then
		git checkout -q -f -B series "$final"
		git clean -q -fd
	else
		git checkout -q -B series "$final"
	fi
fi
log "assemble: $tree at $(git log -1 --format=%h) ($(series_entries | wc -l) patches, $n new files)"
echo "$tree"
