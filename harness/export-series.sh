#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Export the series as a maintainer receives it: git format-patch output of
# the assembled tree (base..series) with --base, and a cover letter written
# from what this repository knows, not typed by hand: the design and UAPI
# sections of README.md, the test matrix of the last test run
# (build/test-results/summary.tsv and the config it ran), the benchmark
# table, and what was not tested.
#
# Usage: harness/export-series.sh [--out DIR] [--subject-prefix PREFIX]
#                                 [--results DIR] [--no-assemble]
#   --out DIR             where the patches go (default: build/series)
#   --subject-prefix P    default "RFC PATCH"
#   --results DIR         a test run's results (default: build/test-results)
# Nothing is signed off: the person who posts the series adds their
# Signed-off-by (the cover letter says so).
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

out="$REPO_DIR/build/series"
prefix="RFC PATCH"
results="$REPO_DIR/build/test-results"
assemble=1
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--subject-prefix) prefix=$2; shift 2 ;;
	--results) results=$2; shift 2 ;;
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

# A README section, from its "## " heading to the next one, heading dropped.
section() {
	awk -v h="$1" '
		/^## / { on = (index($0, h) == 4) ; next }
		on { print }' "$REPO_DIR/README.md"
}

body=$(mktemp)
trap 'rm -f "$body"' EXIT
{
	cat <<EOF
guest_memfd as the owner of shared/private state, for KVM and iommufd

Confidential guests (SEV-SNP, TDX, KVM's software-protected VMs) keep
their memory in guest_memfd. Today a page's shared/private state lives in
the VM, a conversion needs two backings, and an IOMMU can map such memory
only by pinning it, which blocks conversions. This series makes the
guest_memfd file the single owner of that state: a built-in core
(virt/kvm/guest_memfd/) with a notifier API, KVM as its first client,
in-place conversion ioctls on the guest_memfd fd, and iommufd as a
second client that maps a guest_memfd range without pinning and follows
every conversion.

Base: Linux 7.3.4 as Debian ships it (linux-source-7.3
$(sed -n 's/^KNOWN_VERSION=//p' "$HARNESS_DIR/fetch-kernel.sh"), tarball sha256
$(sed -n 's/^KNOWN_SHA256=//p' "$HARNESS_DIR/fetch-kernel.sh")); "base-commit"
below names that tree as imported by this series' tooling.

The patches ($n):
EOF
	git -C "$tree" log --reverse --format='  %s' base..series
	echo
	echo "Kernel API"
	echo "=========="
	section 'Kernel API in brief' | sed 's/^#\{3,\} //'
	echo
	echo "UAPI"
	echo "===="
	section 'UAPI in brief' | sed 's/^#\{3,\} //'
	echo
	echo "Tests run"
	echo "========="
	if [ -f "$results/summary.tsv" ]; then
		cfg=$(cat "$results/config" 2>/dev/null || echo test)
		echo "The last run of the test command (harness/test.sh), kernel config"
		echo "'$cfg' (configs/ in the repository: lockdep, KASAN, DEBUG_VM), under"
		echo "QEMU TCG with KVM nested in the guest; each suite one guest boot:"
		echo
		python3 - "$results/summary.tsv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter='\t'))
head, rows = rows[0], rows[1:]
tot = [0, 0, 0, 0]
print(f"  {'suite':52} {'pass':>5} {'fail':>5} {'skip':>5} {'splat':>5}")
for r in rows:
    vals = [int(x) if x.isdigit() else 0 for x in r[1:5]]
    tot = [a + b for a, b in zip(tot, vals)]
    print(f"  {r[0]:52} {vals[0]:5} {vals[1]:5} {vals[2]:5} {vals[3]:5}")
print(f"  {'total':52} {tot[0]:5} {tot[1]:5} {tot[2]:5} {tot[3]:5}")
PY
	else
		echo "No test results found in $results: run harness/test.sh first."
	fi
	echo
	echo "Benchmarks"
	echo "=========="
	section 'Benchmarks'
	echo
	echo "Not tested"
	echo "=========="
	section 'Not verified yet'
	echo
	echo "Remaining warnings"
	echo "=================="
	echo "harness/check-series.sh checks every patch (builds with KVM and iommufd"
	echo "=y and =m, W=1 and sparse on the files it touches, checkpatch --strict,"
	echo "kernel-doc -Wall). These findings remain, each for the reason given"
	echo "(harness/check-allow.tsv):"
	echo
	python3 - "$HARNESS_DIR/check-allow.tsv" <<'PY'
import sys, textwrap
for line in open(sys.argv[1]):
    p = line.rstrip('\n').split('\t')
    if line.startswith('#') or len(p) != 5:
        continue
    tool, patches, where, what, reason = p
    head = (f"- {tool}, {'every patch' if patches == '*' else 'patch ' + patches}, "
            f"{'any file' if where == '*' else where}: {what}")
    print(textwrap.fill(head, 72, subsequent_indent='  '))
    print(textwrap.fill(reason, 72, initial_indent='  ', subsequent_indent='  '))
PY
	echo
	cat <<'EOF'
Userspace
=========
The kselftests and KUnit tests are part of the series. The C++
GoogleTest suites, the libgmemvmm library a VMM can copy, the demo VMM,
the benchmark and the QEMU-based test harness are not: they live in the
repository this series is developed in, next to the patches.

No patch carries a Signed-off-by: the person who posts the series adds
theirs.
EOF
} >"$body"

# Replace the cover letter's placeholders with the subject and the body.
python3 - "$cover" "$body" <<'PY'
import sys
cover, body = sys.argv[1], open(sys.argv[2]).read()
s = open(cover).read()
subject, rest = body.split('\n', 1)
s = s.replace('*** SUBJECT HERE ***', subject)
s = s.replace('*** BLURB HERE ***', rest.strip('\n'))
open(cover, 'w').write(s)
PY
log "export-series: $n patches and a cover letter in $out"
