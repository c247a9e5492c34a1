#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The reverse of assemble.sh: take what was edited in the assembled tree and
# write it back into this repository.
#  - files that do not exist upstream go to their path in the repository
#    (deleted ones are deleted);
#  - edits to upstream files are folded into a patch: the one named with
#    --into, else the first series entry whose patterns match the path, else
#    the last patch that already touches the file. A patch may only take an
#    edit if no later patch touches the same file (later patches would no
#    longer apply); writeback refuses otherwise.
# Then the tree is re-assembled, which rewrites no file.
#
# Usage: writeback.sh [--into PATCH] [--dry-run]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

into=""
dry=0
while [ $# -gt 0 ]; do
	case "$1" in
	--into) into=$2; shift 2 ;;
	--dry-run) dry=1; shift ;;
	*) die "writeback: unknown argument $1" ;;
	esac
done

tree=$(ktree)
[ -d "$tree/.git" ] || die "writeback: no assembled tree at $tree"
cd "$tree"

# Commit of each patch, and its parent, from the assembled history.
declare -A pcommit
order=()
while read -r c; do
	p=$(git log -1 --format=%B "$c" | sed -n 's/^Gmem-Patch: //p')
	[ -n "$p" ] || continue
	pcommit[$p]=$c
	order+=("$p")
done < <(git rev-list --reverse base..HEAD)

[ -z "$into" ] || [ -n "${pcommit[$into]:-}" ] ||
	die "writeback: --into $into is not an entry of the series (add it to series and assemble first)"

last_touching() { # path -> last patch (in series order) that changes it
	local f=$1 p found=""
	for p in "${order[@]}"; do
		[ "$p" = new-files ] && continue
		if ! git diff --quiet "${pcommit[$p]}^" "${pcommit[$p]}" -- "$f"; then
			found=$p
		fi
	done
	echo "$found"
}

rule_for() { # path -> patch whose patterns in the series file match it
	local f=$1 patch pats pat
	local -a list
	while read -r patch pats; do
		# Split without pathname expansion: the patterns are for [[ ]].
		read -r -a list <<<"$pats"
		for pat in ${list[@]+"${list[@]}"}; do
			# shellcheck disable=SC2053
			if [[ $f == $pat ]]; then
				echo "$patch"
				return
			fi
		done
	done < <(series_entries)
}

# Every path that differs from the assembled HEAD, NUL-separated, as
# "XY path" status entries. Untracked files are listed even when a
# .gitignore hides them (Debian's tarball ignores "/*" at the top), except
# what tools leave behind in a source tree.
changed_paths() {
	git status --porcelain=v1 -z -uall --no-renames
	git ls-files -z --others --ignored --exclude-standard |
		grep -zvE '(^|/)(__pycache__/|[^/]*\.(pyc|o|orig|rej|swp)$|[^/]*~$)' |
		while IFS= read -r -d '' f; do printf '?? %s\0' "$f"; done
}

declare -A edits=() # patch -> space-separated upstream paths
nnew=0
while IFS= read -r -d '' entry; do
	st=${entry:0:2}
	f=${entry:3}
	case "$st" in
	R*|C*) die "writeback: rename of $f: do renames as delete + add" ;;
	esac
	if ! git cat-file -e "base:$f" 2>/dev/null; then
		nnew=$((nnew + 1))
		if [ -e "$f" ]; then
			log "writeback: new file $f"
			[ $dry = 1 ] || { mkdir -p "$REPO_DIR/$(dirname "$f")"; cp -p "$f" "$REPO_DIR/$f"; }
		else
			log "writeback: deleted $f"
			[ $dry = 1 ] || rm -f "$REPO_DIR/$f"
		fi
		continue
	fi
	last=$(last_touching "$f")
	target=${into:-$(rule_for "$f")}
	target=${target:-$last}
	[ -n "$target" ] || die "writeback: $f is upstream and no series entry takes it; name one with --into or add a pattern to series"
	if [ -n "$last" ] && [ "$last" != "$target" ]; then
		# target must come after every patch that touches the file
		after=0
		for p in "${order[@]}"; do
			[ "$p" = "$last" ] && after=1
			[ "$p" = "$target" ] && [ $after = 0 ] &&
				die "writeback: $f: $target comes before $last, which also changes it"
		done
	fi
	log "writeback: $f -> $target"
	edits[$target]="${edits[$target]:-} $f"
done < <(changed_paths)

idx=$(mktemp "$GMEM_CACHE/index.XXXXXX")
trap 'rm -f "$idx"' EXIT
for patch in ${edits[@]+"${!edits[@]}"}; do
	c=${pcommit[$patch]}
	GIT_INDEX_FILE=$idx git read-tree "$c"
	for f in ${edits[$patch]}; do
		if [ -e "$f" ]; then
			mode=100644
			[ -x "$f" ] && mode=100755
			GIT_INDEX_FILE=$idx git update-index --add --cacheinfo "$mode,$(git hash-object -w "$f"),$f"
		else
			GIT_INDEX_FILE=$idx git update-index --force-remove "$f"
		fi
	done
	newtree=$(GIT_INDEX_FILE=$idx git write-tree)
	out="$REPO_DIR/$patch"
	[ $dry = 1 ] && { log "writeback: would rewrite $patch"; continue; }
	pre=""
	# Keep the patch's header (From/Subject/body, up to the "---" line).
	[ -f "$out" ] && pre=$(awk '/^---$/ || /^diff --git /{exit} {print}' "$out")
	{
		if [ -n "$pre" ]; then
			printf '%s\n' "$pre"
		else
			printf 'Subject: [PATCH] %s\n\n' "$(basename "$patch" .patch)"
		fi
		echo "---"
		git diff --no-color --no-ext-diff --stat=72 "$c^" "$newtree"
		echo
		git diff --no-color --no-ext-diff --no-renames "$c^" "$newtree"
	} >"$out.tmp"
	mv "$out.tmp" "$out"
	log "writeback: rewrote $patch"
done

[ $dry = 1 ] && exit 0
# Record the edits as the tree's own state, then re-assemble (no file
# changes), so the tree's history again matches the repository.
git add -A
git commit -q -m "writeback" --allow-empty
"$HARNESS_DIR/assemble.sh" >/dev/null
log "writeback: done ($nnew new-file changes, ${#edits[@]} patches rewritten)"
