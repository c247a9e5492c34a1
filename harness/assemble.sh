#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Assemble the patched kernel tree: the pristine base committed as "base",
# then one commit per patch of ../series, applied in order the way "git am"
# would (author, date and message from the patch; committer = author, so
# the result is the same on every machine). The result is checked out in
# $GMEM_CACHE/linux on branch "series"; only files whose content changed
# are rewritten, so incremental kernel builds stay incremental.
#
# Then check that the series reproduces this repository's mirror: every
# file the series adds is at its kernel path here with the same content
# and mode, no file here at a kernel path is missing from the series, and
# Kconfig.patch is the series' cumulative Kconfig diff. CI relies on this.
#
# Usage: assemble.sh [--force] [--adopt | --refresh]
#   --force  discard uncommitted edits and commits not written back in the
#            assembled tree (otherwise such a tree is refused: run
#            writeback.sh first).
#   --adopt  if the mirror was edited directly, do not fail: carry its
#            differences into the assembled tree as uncommitted edits, for
#            writeback.sh to fold into the patches.
#   --refresh  after patches/ were edited by hand: the patches win, the
#            mirror and Kconfig.patch are rewritten from them.
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

force=0
adopt=0
refresh=0
for a in "$@"; do
	case "$a" in
	--force) force=1 ;;
	--adopt) adopt=1 ;;
	--refresh) refresh=1 ;;
	*) die "assemble: unknown argument $a (usage: assemble.sh [--force] [--adopt | --refresh])" ;;
	esac
done

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
	git -C "$tree" config user.name "$SERIES_NAME"
	git -C "$tree" config user.email "$SERIES_EMAIL"
	git -C "$tree" config core.autocrlf false
	git -C "$tree" config gc.auto 0
	# The kernel's .gitignore hides generated files; commit every
	# source file regardless so the base is exactly the tarball.
	git -C "$tree" add -A -f .
	git -C "$tree" commit -q -m "Linux $(cut -d' ' -f1 "$src/.gmem-extracted") (Debian linux-source-7.3)"
	git -C "$tree" tag -f "$BASE_REF" >/dev/null
	git -C "$tree" checkout -q -b series
fi

cd "$tree"
if [ $force = 0 ]; then
	if [ -n "$(git status --porcelain)" ]; then
		git status --short | head -n 20 >&2
		die "assemble: $tree has uncommitted edits; run harness/writeback.sh (or assemble.sh --force to drop them)"
	fi
	if git rev-parse -q --verify "$ASSEMBLED_REF" >/dev/null &&
		[ "$(git rev-parse HEAD)" != "$(git rev-parse "$ASSEMBLED_REF")" ]; then
		git log --oneline "$ASSEMBLED_REF..HEAD" | head -n 20 >&2
		die "assemble: $tree has commits that are not in the series yet; run harness/writeback.sh (or assemble.sh --force to drop them)"
	fi
fi

tmp=$(mktemp -d "$GMEM_CACHE/assemble.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export GIT_INDEX_FILE=$tmp/index
git read-tree "$BASE_REF"
parent=$(git rev-parse "$BASE_REF")

# One commit per patch, as "git am" makes it.
np=0
while read -r patch _; do
	p="$REPO_DIR/$patch"
	[ -f "$p" ] || die "assemble: series lists $patch, which does not exist"
	git mailinfo "$tmp/msg" "$tmp/diff" <"$p" >"$tmp/info" ||
		die "assemble: $patch is not a patch in mail form (git format-patch)"
	author=$(sed -n 's/^Author: //p' "$tmp/info")
	email=$(sed -n 's/^Email: //p' "$tmp/info")
	date=$(sed -n 's/^Date: //p' "$tmp/info")
	subject=$(sed -n 's/^Subject: //p' "$tmp/info")
	if [ -z "$author" ] || [ -z "$date" ] || [ -z "$subject" ]; then
		die "assemble: $patch lacks a From:, Date: or Subject: header"
	fi
	if [ -s "$tmp/diff" ] && ! git apply --cached --whitespace=nowarn "$tmp/diff" 2>"$tmp/err"; then
		echo "assemble: patch $patch does not apply to the tree so far:" >&2
		sed 's/^/  /' "$tmp/err" >&2
		# Name the hunk that failed: the one of that file starting there.
		where=$(sed -n 's/^error: patch failed: //p' "$tmp/err" | head -n 1)
		if [ -n "$where" ]; then
			awk -v f="${where%:*}" -v l="${where##*:}" '
				/^diff --git / { cur = ($3 == "a/" f) }
				cur && index($0, "@@ -" l ",") == 1 { print "  failing hunk: " $0; exit }
			' "$tmp/diff" >&2
		fi
		exit 1
	fi
	{
		printf '%s\n' "$subject"
		if [ -s "$tmp/msg" ]; then
			echo
			cat "$tmp/msg"
		fi
	} >"$tmp/commitmsg"
	parent=$(GIT_AUTHOR_NAME=$author GIT_AUTHOR_EMAIL=$email GIT_AUTHOR_DATE=$date \
		GIT_COMMITTER_NAME=$author GIT_COMMITTER_EMAIL=$email GIT_COMMITTER_DATE=$date \
		git commit-tree "$(git write-tree)" -p "$parent" -F "$tmp/commitmsg")
	np=$((np + 1))
done < <(series_entries)
final=$parent
unset GIT_INDEX_FILE

# The mirror check: what differs between the series' final state and this
# repository's files at kernel paths, one "what path" line each.
mirror_diff() {
	local f mode
	declare -A mirror=()
	while read -r f; do
		[ -e "$REPO_DIR/$f" ] || continue
		mirror[$f]=1
		if git cat-file -e "$BASE_REF:$f" 2>/dev/null; then
			echo "upstream $f"
			continue
		fi
		if ! git cat-file -e "$final:$f" 2>/dev/null; then
			echo "unknown $f"
			continue
		fi
		mode=100644
		[ -x "$REPO_DIR/$f" ] && mode=100755
		if [ "$(git hash-object "$REPO_DIR/$f")" != "$(git rev-parse "$final:$f")" ]; then
			echo "content $f"
		elif [ "$(git ls-tree "$final" -- "$f" | cut -d' ' -f1)" != "$mode" ]; then
			echo "mode $f"
		fi
	done < <(repo_kernel_files)
	while read -r f; do
		[ -n "${mirror[$f]:-}" ] || echo "missing $f"
	done < <(git diff --no-renames --name-only --diff-filter=A "$BASE_REF" "$final")
	kconfig_view "$final" >"$tmp/Kconfig.patch"
	cmp -s "$tmp/Kconfig.patch" "$REPO_DIR/Kconfig.patch" || echo "kconfig Kconfig.patch"
}
if [ $refresh = 1 ]; then
	refresh_mirror "$final"
	[ $adopt = 0 ] || die "assemble: --adopt and --refresh exclude each other"
fi
mirror_diff >"$tmp/mismatch"

if [ -s "$tmp/mismatch" ] && [ $adopt = 0 ]; then
	echo "assemble: the series does not reproduce the repository's files:" >&2
	lines=0
	while read -r what f; do
		case "$what" in
		upstream) echo "  $f: exists upstream; edits to upstream files belong in a patch" ;;
		unknown) echo "  $f: here, but no patch adds it" ;;
		missing) echo "  $f: a patch adds it, but it is not here" ;;
		mode) echo "  $f: mode differs (the series has $(git ls-tree "$final" -- "$f" | cut -d' ' -f1))" ;;
		content)
			echo "  $f: content differs (- series, + here):"
			if [ $lines -lt 40 ]; then
				git show "$final:$f" | diff -u - "$REPO_DIR/$f" |
					tail -n +3 | head -n $((40 - lines)) | sed 's/^/    /' || true
			fi
			lines=$((lines + 20))
			;;
		kconfig)
			echo "  Kconfig.patch: not the series' Kconfig diff (- series, + here):"
			diff -u "$tmp/Kconfig.patch" "$REPO_DIR/Kconfig.patch" | tail -n +3 | head -n 20 | sed 's/^/    /' || true
			;;
		esac
	done <"$tmp/mismatch" >&2
	echo "  hint: edited the files here? assemble.sh --adopt makes them edits in the" >&2
	echo "  assembled tree, then writeback.sh folds them into the patches. Edited" >&2
	echo "  patches/ by hand? assemble.sh --refresh rewrites the files here." >&2
	exit 1
fi

if [ "$(git rev-parse "HEAD^{tree}")" = "$(git rev-parse "$final^{tree}")" ]; then
	# Same files: move the branch, touch nothing.
	git update-ref refs/heads/series "$final"
	git symbolic-ref HEAD refs/heads/series
	git reset -q --soft "$final"
elif [ $force = 1 ]; then
	git checkout -q -f -B series "$final"
	git clean -q -fd
else
	git checkout -q -B series "$final"
fi
git update-ref "$ASSEMBLED_REF" "$final"

if [ -s "$tmp/mismatch" ]; then
	# --adopt: the repository's files win, as uncommitted edits.
	kconfig=0
	while read -r what f; do
		case "$what" in
		upstream) die "assemble: $f exists upstream; edits to upstream files belong in a patch (or in the assembled tree)" ;;
		unknown | content | mode)
			mkdir -p "$(dirname "$f")"
			cp -p "$REPO_DIR/$f" "$f"
			;;
		missing) rm -f "$f" ;;
		kconfig) kconfig=1 ;;
		esac
		log "assemble: adopted $what $f"
	done <"$tmp/mismatch"
	if [ $kconfig = 1 ]; then
		# Kconfig files = base + the repository's Kconfig.patch.
		while read -r f; do
			git show "$BASE_REF:$f" >"$f"
		done < <( (git diff --no-renames --name-only --diff-filter=M "$BASE_REF" "$final" |
			grep -E '(^|/)Kconfig[^/]*$' || true
			sed -n 's|^diff --git a/\([^ ]*\) b/.*|\1|p' "$REPO_DIR/Kconfig.patch") | sort -u)
		git apply --whitespace=nowarn "$REPO_DIR/Kconfig.patch" 2>"$tmp/err" || {
			sed 's/^/  /' "$tmp/err" >&2
			die "assemble: Kconfig.patch does not apply to the base's Kconfig files"
		}
	fi
	log "assemble: $tree at $(git log -1 --format=%h) ($np patches); $(wc -l <"$tmp/mismatch") differences of the repository's files are now uncommitted edits there: fold them into the patches with harness/writeback.sh"
else
	log "assemble: $tree at $(git log -1 --format=%h) ($np patches, series reproduces the repository's files)"
fi
echo "$tree"
