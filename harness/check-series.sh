#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The per-patch check of the series, as a maintainer would run it before
# posting: the assembled tree's commits are the series applied patch by
# patch on the pristine base; at every patch it
#   - builds the lean check configs configs/check-y.config (KVM, the
#     guest_memfd core, iommufd with its mock and VFIO built in) and
#     configs/check-m.config (KVM, iommufd, VFIO as modules: modpost
#     catches a missing export), incrementally from the previous patch;
#   - compiles each .c file of the kernel the patch touches with W=1 and
#     sparse (C=2), at the patch and at its parent, and reports the
#     warnings the patch adds in the files it touches;
#   - runs scripts/checkpatch.pl --strict on the patch as exported
#     (export-series.sh) and scripts/kernel-doc -none -Wall on the .c/.h
#     files it touches (warnings the parent already had are not the
#     patch's);
# and at the last patch runs the test command (harness/test.sh: the test
# kernel, every suite in its own guest boot). Findings named in
# harness/check-allow.tsv (each with the reason; the cover letter quotes
# them) are shown but do not fail. Prints a table per patch and exits
# non-zero if any patch failed anything.
#
# Usage: check-series.sh [--from N] [--to N] [--no-boot] [--no-assemble]
#                        [--out DIR]
#   --from/--to N  check patches N..M only (1-based; default all)
#   --no-boot      do not run the test command at the last patch
#   --out DIR      logs and the table (default build/check-series)
# Uses the assembled tree $GMEM_KTREE (checked out detached at each patch,
# back on branch "series" at the end) and $GMEM_BUILD_ROOT/check-{y,m}.
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

from=1
to=""
boot=1
assemble=1
out="$REPO_DIR/build/check-series"
while [ $# -gt 0 ]; do
	case "$1" in
	--from) from=$2; shift 2 ;;
	--to) to=$2; shift 2 ;;
	--no-boot) boot=0; shift ;;
	--no-assemble) assemble=0; shift ;;
	--out) out=$2; shift 2 ;;
	*) die "check-series: unknown argument $1 (see the header for usage)" ;;
	esac
done

t_start=$(date +%s)
allow="$HARNESS_DIR/check-allow.tsv"
tree=$(ktree)
[ $assemble = 1 ] && "$HARNESS_DIR/assemble.sh" >/dev/null
cd "$tree"
[ -z "$(git status --porcelain)" ] ||
	die "check-series: $tree has uncommitted edits (run writeback.sh first)"
mapfile -t commits < <(git rev-list --reverse "$BASE_REF..series")
n=${#commits[@]}
to=${to:-$n}
if [ "$from" -lt 1 ] || [ "$to" -gt "$n" ] || [ "$from" -gt "$to" ]; then
	die "check-series: --from $from --to $to: the series has patches 1..$n"
fi

# checkpatch's SPDX check and kernel-doc run python3 from PATH: use
# Debian's (python3-ply, python3-git), not a developer's own.
export PATH="/usr/bin:/bin:$PATH"
sparse=$("$LIB_DIR/fetch-sparse.sh" "$tree")

rm -rf "$out"
mkdir -p "$out"
"$HARNESS_DIR/export-series.sh" --no-assemble --out "$out/series" 2>"$out/export.log" ||
	{ cat "$out/export.log" >&2; die "check-series: export-series.sh failed"; }
patches=()
for f in "$out/series"/[0-9][0-9][0-9][0-9]-*.patch; do
	[ "${f##*/}" = 0000-cover-letter.patch ] || patches+=("$f")
done
[ ${#patches[@]} = "$n" ] || die "check-series: export wrote ${#patches[@]} patches, the series has $n"

trap 'git -C "$tree" checkout -q series' EXIT

ydir=$(kbuild_dir check-y)
export CCACHE_DIR="$GMEM_CACHE/ccache" CCACHE_MAXSIZE=8G CCACHE_COMPRESS=1 CCACHE_BASEDIR="$tree"
mk=(nice -n 10 make -C "$tree" O="$ydir" -j"$(nproc)" CC="ccache gcc" HOSTCC="ccache gcc" -s)

# The kernel .c files a commit touches (added or modified), and the
# make target of each: KVM's common code is built from arch/x86/kvm.
touched() { git diff --no-renames --name-only --diff-filter=AM "$1^" "$1"; }
kernel_c() { grep -E '\.c$' | grep -vE '^(tools|Documentation|scripts|samples|usr)/' || true; }
target_of() {
	case "$1" in
	virt/kvm/*/*) echo "${1%.c}.o" ;;
	virt/kvm/*) echo "arch/x86/kvm/../../../${1%.c}.o" ;;
	*) echo "${1%.c}.o" ;;
	esac
}

# W=1 and sparse on FILES... at the tree's current commit, in the check-y
# build directory (which must be configured for that commit), into LOG.
# Files whose object the config does not build are listed in LOG.skipped.
# The object's flags change, so the next ordinary build compiles it again
# (from ccache). Returns make's status.
w1_sparse() {
	local log=$1 f
	shift
	local -a tg=()
	: >"$log.skipped"
	for f in "$@"; do
		if [ -f "$ydir/${f%.c}.o" ]; then
			tg+=("$(target_of "$f")")
		else
			echo "$f" >>"$log.skipped"
		fi
	done
	[ ${#tg[@]} -gt 0 ] || { : >"$log"; return 0; }
	"${mk[@]}" W=1 C=2 CHECK="$sparse" "${tg[@]}" >"$log" 2>&1
}

# kernel-doc -none -Wall on FILES... of COMMIT (extracted, so the tree
# stays where it is), into LOG.
kdoc() {
	local c=$1 log=$2 tmp
	shift 2
	tmp=$(mktemp -d)
	# Only the files that exist at that commit.
	local -a fs=()
	local f
	for f in "$@"; do
		git cat-file -e "$c:$f" 2>/dev/null && fs+=("$f")
	done
	if [ ${#fs[@]} -gt 0 ]; then
		git archive "$c" -- "${fs[@]}" | tar -x -C "$tmp"
		(cd "$tmp" && "$tree/scripts/kernel-doc" -none -Wall "${fs[@]}") >"$log" 2>&1 || true
	else
		: >"$log"
	fi
	rm -rf "$tmp"
}

# check-filter.py's verdict in a table cell: "N" or "N (+M allowed)".
verdict() {
	local nw na
	read -r nw na < <(tail -n 1 "$1")
	if [ "$na" = 0 ]; then echo "$nw"; else echo "$nw (+$na allowed)"; fi
}

# check-filter.py on one tool's LOG (the last argument), into LOG.new: sets
# $cnt to the verdict and returns 1 if a warning is not allowed.
judge() {
	python3 "$LIB_DIR/check-filter.py" --allow "$allow" "$@" >"${*: -1}.new"
	cnt=$(verdict "${*: -1}.new")
	[ "${cnt%% *}" = 0 ]
}

# The parent's W=1/sparse baseline of the first patch checked: the build
# directory configured for that commit (and prepared by make itself).
first=${commits[from - 1]}
git checkout -q --detach "$first^"
mapfile -t cfiles < <(touched "$first" | kernel_c)
log "check-series: W=1/sparse baseline of patch $from at its parent"
"$HARNESS_DIR/build-kernel.sh" check-y --no-assemble --series-step --config-only >"$out/baseline-config.log" 2>&1 ||
	{ cat "$out/baseline-config.log" >&2; die "check-series: configuring check-y at the parent of patch $from failed"; }
basedir=$(printf '%s/%04d' "$out" "$from")
mkdir -p "$basedir"
existing=()
for f in "${cfiles[@]}"; do git cat-file -e "HEAD:$f" 2>/dev/null && existing+=("$f"); done
if [ ${#existing[@]} -gt 0 ]; then
	# Objects of a config only configured: try each; a file the config
	# does not build fails and has no baseline.
	: >"$basedir/w1-base.log"
	for f in "${existing[@]}"; do
		"${mk[@]}" W=1 C=2 CHECK="$sparse" "$(target_of "$f")" >>"$basedir/w1-base.log" 2>&1 ||
			echo "$f: not built at the parent" >>"$basedir/w1-base.log"
	done
fi

fail=0
rows=()
for ((i = from; i <= to; i++)); do
	c=${commits[i - 1]}
	nn=$(printf '%04d' "$i")
	d="$out/$nn"
	mkdir -p "$d"
	t0=$(date +%s)
	git checkout -q --detach "$c"
	subject=$(git log -1 --format=%s "$c")
	log "check-series: [$nn] $subject"
	mapfile -t files < <(touched "$c")
	mapfile -t cfiles < <(printf '%s\n' "${files[@]}" | kernel_c)
	mapfile -t docfiles < <(printf '%s\n' "${files[@]}" | grep -E '\.[ch]$' || true)
	bad=0

	declare -A st=()
	for cfg in y m; do
		if nice -n 10 "$HARNESS_DIR/build-kernel.sh" "check-$cfg" --no-assemble --series-step \
			>"$d/build-$cfg.log" 2>&1; then
			st[$cfg]=ok
		else
			st[$cfg]=FAIL
			bad=1
		fi
	done

	# W=1 and sparse: the patch's .c files now, against the baseline
	# taken at the parent.
	if [ "${st[y]}" = ok ] && [ ${#cfiles[@]} -gt 0 ]; then
		if w1_sparse "$d/w1.log" "${cfiles[@]}"; then
			# gcc and sparse name files by the path kbuild gave them: the
			# source tree relative to the build directory (O=).
			judge --tool build --patch "$nn" --base "$d/w1-base.log" --strip "$tree" \
				--strip "$(realpath -m --relative-to="$ydir" "$tree")" \
				--files "${files[@]}" -- "$d/w1.log" || bad=1
			w1=$cnt
		else
			w1="FAIL"
			bad=1
		fi
		[ -s "$d/w1.log.skipped" ] && w1="$w1 ($(wc -l <"$d/w1.log.skipped") not built)"
	elif [ ${#cfiles[@]} = 0 ]; then
		w1="- (no kernel .c)"
	else
		w1="- (no build)"
	fi

	# The next patch's baseline: its .c files as they are here.
	if [ "$i" -lt "$to" ] && [ "${st[y]}" = ok ]; then
		mapfile -t nfiles < <(touched "${commits[i]}" | kernel_c)
		nx="$out/$(printf '%04d' $((i + 1)))"
		mkdir -p "$nx"
		existing=()
		for f in "${nfiles[@]}"; do git cat-file -e "HEAD:$f" 2>/dev/null && existing+=("$f"); done
		if [ ${#existing[@]} -gt 0 ]; then
			w1_sparse "$nx/w1-base.log" "${existing[@]}" || echo "baseline build failed" >>"$nx/w1-base.log"
		fi
	fi

	# checkpatch on the exported patch, from outside this repository.
	checkpatch_judged "${patches[i - 1]}" "$nn" "$d/checkpatch.log" || bad=1
	cp=$(verdict "$d/checkpatch.log.new")

	# kernel-doc on the touched .c/.h files, new warnings only.
	if [ ${#docfiles[@]} -gt 0 ]; then
		kdoc "$c" "$d/kernel-doc.log" "${docfiles[@]}"
		kdoc "$c^" "$d/kernel-doc-base.log" "${docfiles[@]}"
		judge --tool kernel-doc --patch "$nn" --base "$d/kernel-doc-base.log" \
			--files "${docfiles[@]}" -- "$d/kernel-doc.log" || bad=1
		kd=$cnt
	else
		kd="- (no .c/.h)"
	fi

	secs=$(($(date +%s) - t0))
	[ $bad = 0 ] || fail=1
	rows+=("$nn	${st[y]}	${st[m]}	$w1	$cp	$kd	$secs	$subject")
	log "check-series: [$nn] =y ${st[y]}, =m ${st[m]}, W=1/sparse $w1, checkpatch $cp, kernel-doc $kd ($secs s)"
	unset st
done

git checkout -q series
log "check-series: patches $from..$to checked in $(($(date +%s) - t_start)) s"

# The table, on the terminal and as Markdown for docs/HACKING.md (before the
# boot, which takes a while).
{
	echo "| patch | =y | =m | new W=1/sparse | checkpatch | kernel-doc | s |"
	echo "|---|---|---|---|---|---|---|"
	for r in "${rows[@]}"; do
		IFS=$'\t' read -r nn y m w cp kd s subj <<<"$r"
		echo "| $nn $subj | $y | $m | $w | $cp | $kd | $s |"
	done
} >"$out/table.md"
printf '%s\n' "${rows[@]}" >"$out/results.tsv"
series_digest >"$out/series-digest"
echo
printf '%-5s %-4s %-4s %-22s %-18s %-18s %5s\n' patch =y =m "new W=1/sparse" checkpatch kernel-doc s
for r in "${rows[@]}"; do
	IFS=$'\t' read -r nn y m w cp kd s _ <<<"$r"
	printf '%-5s %-4s %-4s %-22s %-18s %-18s %5s\n' "$nn" "$y" "$m" "$w" "$cp" "$kd" "$s"
done

suites="not run (--no-boot)"
if [ "$to" = "$n" ] && [ $boot = 1 ]; then
	log "check-series: the last patch: the test command (harness/test.sh)"
	t0=$(date +%s)
	if "$HARNESS_DIR/test.sh" >"$out/test.log" 2>&1; then
		suites="green: $(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out/test.log" | tail -n 1)"
	else
		suites="RED: $(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out/test.log" | tail -n 1 || true)"
		fail=1
	fi
	suites="$suites ($(($(date +%s) - t0)) s, log: $out/test.log)"
elif [ "$to" != "$n" ]; then
	suites="not run (--to $to is not the last patch)"
fi
echo "suites at the last patch: $suites"
echo "allowed findings: $allow; per patch: $out/NNNN/*.new; table: $out/table.md"
echo "check-series: $(($(date +%s) - t_start)) s"
[ $fail = 0 ] || { echo "check-series: FAILED" >&2; exit 1; }
echo "check-series: every patch passed"
