#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The reverse of assemble.sh: turn the assembled tree's history back into
# this repository's patches.
#  - uncommitted edits become "fixup!" commits: all of them for the patch
#    named with --into, else each file's for the last series commit that
#    changes it (a file no commit has touched needs --into);
#  - a non-interactive "git rebase --autosquash" folds these, and any
#    fixup!/squash! commit the developer made, into their patches; new
#    commits and reworded messages stay as they are;
#  - every commit base..series is exported with git format-patch into
#    patches/ (renumbered, stale files deleted), series is rewritten, the
#    new files at their kernel paths and Kconfig.patch are refreshed;
#  - the tree is re-assembled from the result (no file is rewritten), which
#    checks that the series reproduces the repository.
# On a conflict the rebase is aborted and the tree left as it was.
#
# Usage: writeback.sh [--into NNNN|patches/NNNN-x.patch] [--dry-run]
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

into=""
dry=0
while [ $# -gt 0 ]; do
	case "$1" in
	--into)
		[ $# -ge 2 ] || die "writeback: --into needs a patch number"
		into=$2
		shift 2
		;;
	--dry-run) dry=1; shift ;;
	*) die "writeback: unknown argument $1 (usage: writeback.sh [--into NNNN] [--dry-run])" ;;
	esac
done

tree=$(ktree)
[ -d "$tree/.git" ] || die "writeback: no assembled tree at $tree"
cd "$tree"
git rev-parse -q --verify "$BASE_REF" >/dev/null || die "writeback: $tree has no $BASE_REF tag"
git merge-base --is-ancestor "$BASE_REF" HEAD || die "writeback: HEAD does not descend from $BASE_REF"
[ -d "$(git rev-parse --git-path rebase-merge)" ] || [ -d "$(git rev-parse --git-path rebase-apply)" ] &&
	die "writeback: a rebase is in progress in $tree; finish or abort it first"

mapfile -t commits < <(git rev-list --reverse "$BASE_REF..HEAD")
subject() { git log -1 --format=%s "$1"; }
label() { printf '%04d %s' "$1" "$(subject "${commits[$1 - 1]}")"; }

# --into: a number (the patch's position in base..HEAD) or a patch file.
intok=""
if [ -n "$into" ]; then
	n=$(basename "$into")
	n=${n%%-*}
	[[ $n =~ ^[0-9]+$ ]] || die "writeback: --into $into: give the patch number, e.g. --into 0003"
	intok=$((10#$n))
	if [ "$intok" -lt 1 ] || [ "$intok" -gt ${#commits[@]} ]; then
		die "writeback: --into $into: the tree has patches 0001-$(printf %04d ${#commits[@]})"
	fi
fi

# Every path that differs from HEAD, NUL-separated, as "XY path" status
# entries. Untracked files are listed even when a .gitignore hides them
# (Debian's tarball ignores "/*" at the top), except what tools leave
# behind in a source tree.
changed_paths() {
	git status --porcelain=v1 -z -uall --no-renames
	git ls-files -z --others --ignored --exclude-standard |
		grep -zvE '(^|/)(__pycache__/|[^/]*\.(pyc|o|orig|rej|swp)$|[^/]*~$)' |
		while IFS= read -r -d '' f; do printf '?? %s\0' "$f"; done
}

# Which patch (1-based position) takes each edited file.
declare -A files_of=() # position -> NUL-free, newline-separated paths
while IFS= read -r -d '' entry; do
	f=${entry:3}
	if [ -n "$intok" ]; then
		k=$intok
	else
		c=$(git log -1 --format=%H "$BASE_REF..HEAD" -- "$f")
		[ -n "$c" ] || die "writeback: no patch touches $f yet; name the one that should add it with --into NNNN"
		k=0
		for i in "${!commits[@]}"; do
			[ "${commits[$i]}" = "$c" ] && k=$((i + 1))
		done
	fi
	log "writeback: $f -> $(label "$k")"
	files_of[$k]="${files_of[$k]:-}$f"$'\n'
done < <(changed_paths)

own=$(git log --format=%s "${ASSEMBLED_REF}..HEAD" 2>/dev/null | wc -l)
[ "$own" = 0 ] || log "writeback: $own commit(s) made in the tree since it was assembled"
if [ $dry = 1 ]; then
	log "writeback: dry run, nothing changed"
	exit 0
fi

orig=$(git rev-parse HEAD)
undo() { # back to the tree as it was: original HEAD, edits uncommitted
	git reset -q "$orig"
}

# One fixup! commit per target patch, in series order.
for k in $(printf '%s\n' "${!files_of[@]}" | sort -n); do
	mapfile -t paths < <(printf '%s' "${files_of[$k]}")
	git add -A -f -- "${paths[@]}"
	git -c user.name="$SERIES_NAME" -c user.email="$SERIES_EMAIL" \
		commit -q --no-verify --fixup="${commits[$k - 1]}" || { undo; die "writeback: could not commit the edits for $(label "$k")"; }
done

# Fold every fixup!/squash! commit into its patch. The rebase rewrites
# files it steps back over; their final content is what it was, so give
# them back their modification times and the kernel build stays
# incremental.
if [ -n "$(git log --format=%s "$BASE_REF..HEAD" | grep -E '^(fixup|squash|amend)! ' || true)" ]; then
	stamps=$(mktemp)
	trap 'rm -f "$stamps"' EXIT
	restore_stamps() {
		local entry f
		while IFS= read -r -d '' entry; do
			f=${entry#* }
			if [ -e "$f" ]; then touch -m -d "@${entry%% *}" "$f"; fi
		done <"$stamps"
	}
	git diff --no-renames --name-only -z "$BASE_REF" HEAD |
		while IFS= read -r -d '' f; do
			[ -e "$f" ] && printf '%s %s\0' "$(stat -c %.9Y "$f")" "$f"
		done >"$stamps"
	if ! GIT_SEQUENCE_EDITOR=: GIT_EDITOR=: git -c core.hooksPath=/dev/null \
		-c user.name="$SERIES_NAME" -c user.email="$SERIES_EMAIL" \
		rebase -q -i --autosquash "$BASE_REF" >"$stamps.log" 2>&1; then
		stopped=$(tail -n 1 "$(git rev-parse --git-path rebase-merge/done)" 2>/dev/null || true)
		conflicts=$(git diff --name-only --diff-filter=U | paste -sd' ')
		git rebase --abort || true
		undo
		restore_stamps
		sed 's/^/  /' "$stamps.log" | tail -n 15 >&2
		die "writeback: folding '${stopped#* * }' conflicts in ${conflicts:-(see above)}: the edit depends on a later patch (use --into a later one); the tree is as it was"
	fi
	rm -f "$stamps.log"
	restore_stamps
fi

# Export, renumbered from 0001, with output that depends on nothing but
# the commits.
out=$(mktemp -d)
trap 'rm -rf "$out" "${stamps:-}"' EXIT
git -c core.abbrev=12 -c diff.noprefix=false -c diff.mnemonicPrefix=false \
	format-patch -q -o "$out" --zero-commit --no-signature --no-numbered \
	--no-thread --no-attach --no-cover-letter --no-base --subject-prefix=PATCH \
	--filename-max-length=100 --stat=72 -M --no-color "$BASE_REF..HEAD"
for p in "$out"/*.patch; do
	[ -e "$p" ] || continue
	# One author for the series, whoever committed in the tree.
	sed -i "0,/^From: .*/s//From: $SERIES_NAME <$SERIES_EMAIL>/" "$p"
	grep -q '^Signed-off-by:' "$p" &&
		warn "writeback: $(basename "$p") has a Signed-off-by; the human who posts the series adds it"
done

mkdir -p "$REPO_DIR/patches"
for p in "$REPO_DIR"/patches/*.patch; do
	[ -e "$p" ] || continue
	[ -e "$out/$(basename "$p")" ] || { rm -f "$p"; log "writeback: removed patches/$(basename "$p")"; }
done
for p in "$out"/*.patch; do
	[ -e "$p" ] || continue
	dst="$REPO_DIR/patches/$(basename "$p")"
	cmp -s "$p" "$dst" || { cp "$p" "$dst"; log "writeback: wrote patches/$(basename "$p")"; }
done

{
	echo "# The series, in apply order: one git format-patch file per logical"
	echo "# patch, new files included. harness/assemble.sh applies them on the"
	echo "# pristine base; harness/writeback.sh rewrites this file and patches/."
	echo
	for p in "$out"/*.patch; do
		[ -e "$p" ] && echo "patches/$(basename "$p")"
	done
} >"$REPO_DIR/series.tmp"
mv "$REPO_DIR/series.tmp" "$REPO_DIR/series"

refresh_mirror HEAD

# Re-assemble from what was written: same files, the series' own commits.
git update-ref "$ASSEMBLED_REF" HEAD
"$HARNESS_DIR/assemble.sh" >/dev/null
log "writeback: done: ${#commits[@]} commits before, $(git rev-list --count "$BASE_REF..HEAD") patches now"
