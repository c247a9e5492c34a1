#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Print every line of the given kernel logs that marks a kernel splat:
# warnings, BUGs, oopses, sanitizer and lockdep reports, hung tasks, RCU
# stalls, panics. Exits 0 if there was none, 1 otherwise.
#
# Usage: scan-splats.sh [--iommu-faults intel|amd|virtio] LOG...
#   --iommu-faults  the suite makes a device fault on purpose behind this
#                   vIOMMU: its fault reports (and only those lines) are not
#                   splats, whatever they contain. Every other line is
#                   judged as usual, so a WARNING or a KASAN report that
#                   follows a fault still fails the suite.
set -u
pat='WARNING:|BUG:|Oops|KASAN:|UBSAN:|KFENCE:|general protection fault'
pat+='|possible circular locking|inconsistent lock state|possible recursive locking'
pat+='|suspicious RCU usage|lock held when returning|bad unlock balance|held lock freed'
pat+='|INFO: task .* blocked for more than|rcu: INFO:|detected stall|soft lockup|hard LOCKUP'
pat+='|Kernel panic|kernel BUG at|unreferenced object'
# The fault reports of each vIOMMU's driver, as 7.3 prints them.
allowed='^$'
case "${1:-}" in
--iommu-faults)
	case "$2" in
	intel) allowed='DMAR: \[DMA (Read|Write) (NO_PASID|PASID 0x[0-9a-f]+)\] Request device \[[0-9a-f:.]+\] fault addr 0x[0-9a-f]+ \[fault reason 0x[0-9a-f]+\] [A-Za-z ,()/-]*[[:space:]]*$|DMAR: DRHD: handling fault status reg [0-9a-f]+[[:space:]]*$' ;;
	amd) allowed='Event logged \[IO_PAGE_FAULT (device=[0-9a-f:.]+ )?domain=0x[0-9a-f]+ address=0x[0-9a-f]+ flags=0x[0-9a-f]+\][[:space:]]*$' ;;
	virtio) allowed='virtio_iommu virtio[0-9]+: (page|domain|unknown) fault from EP [0-9]+( at 0x[0-9a-f]+ \[R?W?X?\])?[[:space:]]*$' ;;
	*) echo "scan-splats: unknown --iommu-faults $2" >&2; exit 2 ;;
	esac
	shift 2 ;;
esac
found=0
for f in "$@"; do
	[ -f "$f" ] || continue
	# (Fault injection's stack dumps are intentional and carry none of
	# these markers.)
	out=$(grep -aE "$pat" "$f" | grep -avE "$allowed" | grep -v 'GMEM-INIT' || true)
	if [ -n "$out" ]; then
		found=1
		printf '%s\n' "$out" | sed "s|^|$(basename "$f"): |"
	fi
done
exit $found
