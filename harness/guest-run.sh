#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Boot the built kernel under QEMU (TCG, -cpu max: the guest sees SVM with
# nested paging, so KVM works inside it) and run one static program there.
# Prints the program's output and exits with its exit status.
#
# Usage: guest-run.sh [options] [--] PROGRAM [ARGS...]
#   --config NAME     kernel build to boot (default: test)
#   --results DIR     keep the run's files there (default: a temp dir):
#                     output.log, console.log, dmesg.log, exit_status, splats
#   --timeout SEC     kill the guest after SEC seconds (default: 1800)
#   --file PATH       also copy PATH into the guest's working directory
#                     (repeatable); PROGRAM itself is always copied
#   --shell           boot into an interactive shell instead (PROGRAM
#                     optional; files are still copied)
#   --quiet           do not stream the program's output while it runs
#   --qemu-arg ARG    extra QEMU argument (repeatable)
#   --icount          count instructions: -icount shift=0,sleep=off, so the
#                     guest clock advances 1 ns per guest instruction
#                     (single-threaded TCG, which icount needs)
#   --tcg-single      single-threaded TCG (both vCPUs on one host thread):
#                     under multi-threaded TCG, QEMU's nested SVM at times
#                     gives a nested vCPU its host's state (KERNEL-BUGS.md,
#                     6); this mode has not shown it
#   --append ARGS     extra kernel command-line arguments
#   --mem SIZE        guest RAM (QEMU -m; default 4G)
#   --viommu KIND     boot a q35 machine with an emulated IOMMU and QEMU's
#                     "edu" DMA device behind it, the kernel in translated,
#                     strict mode (iommu.passthrough=0 iommu.strict=1):
#                     intel   -device intel-iommu (interrupt remapping on,
#                             intel_iommu=on), QEMU's legacy mode
#                     intel-sm  the same in scalable mode
#                             (x-scalable-mode=on, experimental in QEMU
#                             10.0; second-stage tables)
#                     amd     -device amd-iommu,pt=off (interrupt remapping
#                             on; see viommu_args below for pt=off)
#                     virtio  -device virtio-iommu-pci (no interrupt
#                             remapping: iommufd.allow_unsafe_interrupts=1)
#                     The splat scan then also passes the IOMMU's fault
#                     reports (the tests cause them on purpose), and only
#                     those.
#
# Exit status: the program's; 124 if the guest timed out; 125 if the guest
# died before the program finished (panic, triple fault). A kernel splat in
# the guest's log (WARNING, BUG, lockdep, KASAN, ...) is reported on stderr
# and written to the "splats" file; with --fail-on-splat it turns a zero
# exit status into 126.
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

name=test results="" timeout=1800 shell=0 quiet=0 failsplat=0 extra="" viommu="" mem=4G
accel=tcg,thread=multi
files=() qargs=() machine=()
while [ $# -gt 0 ]; do
	case "$1" in
	--config) name=$2; shift 2 ;;
	--results) results=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--file) files+=("$2"); shift 2 ;;
	--shell) shell=1; shift ;;
	--quiet) quiet=1; shift ;;
	--fail-on-splat) failsplat=1; shift ;;
	--qemu-arg) qargs+=("$2"); shift 2 ;;
	--icount) accel=tcg,thread=single; qargs+=(-icount "shift=0,sleep=off"); shift ;;
	--tcg-single) accel=tcg,thread=single; shift ;;
	--append) extra+=" $2"; shift 2 ;;
	--viommu) viommu=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--) shift; break ;;
	-*) die "guest-run: unknown option $1" ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || [ $shell = 1 ] || die "guest-run: no program given"

# The machine of --viommu. The vIOMMU comes before every other PCI device
# (QEMU wants it first). Interrupt remapping is on where the vIOMMU has it,
# as on a production host: VFIO_DEVICE_BIND_IOMMUFD then needs no
# iommufd.allow_unsafe_interrupts. edu sits at a fixed slot, 00:10.0.
viommu_args() {
	local -a edu=(-device "edu,addr=10.0")
	case "$1" in
	intel|intel-sm)
		local sm=""
		[ "$1" = intel-sm ] && sm=",x-scalable-mode=on"
		machine=(-machine q35 -device "intel-iommu,intremap=on$sm" "${edu[@]}")
		extra+=" intel_iommu=on iommu.passthrough=0 iommu.strict=1" ;;
	amd)
		# pt=off: QEMU 10.0's amd-iommu with its default pt=on gives
		# every device the untranslated address space ("nodma")
		# whatever the guest writes into the device table, so DMA
		# goes to the IOVA as a physical address, unchecked and
		# unreported (fixed upstream by 31753d5a336f, QEMU 10.1).
		# Interrupt remapping stays off: with intremap=on, QEMU's
		# IVRS names 00:14.0 as the southbridge IOAPIC, 7.3 wants an
		# ISA bridge or SMBus controller there (check_sb_ioapic()),
		# q35 has none (its LPC and SMBus are 00:1f.0 and 00:1f.3),
		# so 7.3 says "No southbridge IOAPIC found" and disables
		# it; iommufd needs the override here too.
		machine=(-machine q35 -device "amd-iommu,pt=off" "${edu[@]}")
		extra+=" iommu.passthrough=0 iommu.strict=1 iommufd.allow_unsafe_interrupts=1" ;;
	virtio)
		# virtio-iommu has no interrupt remapping, so iommufd
		# cannot tell MSIs are isolated and needs the override.
		machine=(-machine q35 -device virtio-iommu-pci "${edu[@]}")
		extra+=" iommu.passthrough=0 iommu.strict=1 iommufd.allow_unsafe_interrupts=1" ;;
	*) die "guest-run: unknown --viommu $1 (intel, intel-sm, amd or virtio)" ;;
	esac
}
[ -z "$viommu" ] || viommu_args "$viommu"

kdir=$(kbuild_dir "$name")
kernel="$kdir/arch/x86/boot/bzImage"
[ -f "$kernel" ] || die "guest-run: no kernel at $kernel; run harness/build-kernel.sh $name"
initrd=$("$LIB_DIR/mkinitramfs.sh" "$name")

if [ -z "$results" ]; then
	results=$(mktemp -d /tmp/gmem-run.XXXXXX)
	trap 'rm -rf "$results"' EXIT
fi
mkdir -p "$results"
results=$(cd "$results" && pwd)
# Fresh run directory: stale output must never be mistaken for this run's.
find "$results" -mindepth 1 -delete

put() { # copy a file into the run directory
	local src=$1 dst
	dst="$results/$(basename "$1")"
	[ -e "$src" ] || die "guest-run: no such file $src"
	cp -rL "$src" "$dst"
}
for f in "${files[@]}"; do put "$f"; done

if [ $# -gt 0 ]; then
	prog=$1
	shift
	[ -x "$prog" ] || prog=$(command -v "$prog") || die "guest-run: program not found"
	put "$prog"
	{
		echo "# written by guest-run.sh"
		printf 'exec ./%q' "$(basename "$prog")"
		for a in "$@"; do printf ' %q' "$a"; done
		echo
	} >"$results/cmd.sh"
fi
[ $shell = 1 ] && touch "$results/shell"
# When the guest dumps its tasks if the program is still running: a
# minute before the kill (the guest's uptime trails QEMU's wall time by
# the firmware's few seconds), or at three quarters of a short limit.
if [ "$timeout" -ge 240 ]; then
	echo $((timeout - 60)) >"$results/hang_dump_at"
else
	echo $((timeout * 3 / 4)) >"$results/hang_dump_at"
fi

append="console=ttyS0 earlyprintk=serial panic=-1 hugepages=128 rdinit=/init"
append+=" hung_task_panic=0 printk.devkmsg=on"
# The config the kernel was built from, for suites that must fail rather
# than skip when a feature that config has is missing (the kernel ignores
# an unknown parameter with a dot in its name).
append+=" gmem.config=$name"
# The guest's clock is the host's, but under TCG a vCPU thread may wait on
# the host for a core (2 vCPUs on one core of a slow host) with no steal
# time accounting, so the kernel's watchdogs get room for a host half as
# fast as this project's: soft lockup after 60 s (2 x watchdog_thresh),
# RCU stall after 60 s, hung task after 360 s (defaults 20, 21, 120 s).
append+=" watchdog_thresh=30 rcupdate.rcu_cpu_stall_timeout=60"
append+=" sysctl.kernel.hung_task_timeout_secs=360"
# The IO-APIC timer check measures ticks against a busy-wait: when the
# host is loaded, TCG delivers too few of them and the kernel panics
# with "timer doesn't work through Interrupt-remapped IO-APIC" on the
# vIOMMU machines. The timer works; skip the check.
append+=" no_timer_check$extra"
# -cpu max without LA57: with 5-level paging, a timer interrupt that lands
# while start_kernel() re-runs identify_cpu() (the capability bits are
# rebuilt from zero) makes KASAN misjudge a per-CPU address as wild (seen
# once in early boot: "BUG: KASAN: wild-memory-access in rcu_is_watching").
# Nothing here needs 5-level paging.
qemu=(qemu-system-x86_64 -accel "$accel" -cpu "max,la57=off" -smp 2 -m "$mem"
	-nodefaults -no-reboot -display none "${machine[@]}"
	-kernel "$kernel" -initrd "$initrd" -append "$append"
	-virtfs "local,path=$results,mount_tag=gmem,security_model=none,id=gmem"
	"${qargs[@]}")
# GMEM_QEMU_MONITOR=PATH: a QEMU monitor (HMP) on that Unix socket, for
# looking at a stuck guest's vCPUs from the host ("info registers -a").
[ -n "${GMEM_QEMU_MONITOR:-}" ] &&
	qemu+=(-monitor "unix:$GMEM_QEMU_MONITOR,server=on,wait=off")

if [ $shell = 1 ]; then
	exec "${qemu[@]}" -serial mon:stdio
fi

: >"$results/output.log"
tailpid=""
if [ $quiet = 0 ]; then
	tail -n +1 -F "$results/output.log" 2>/dev/null &
	tailpid=$!
fi
set +e
tq=$(date +%s.%N)
timeout --kill-after=10 "$timeout" "${qemu[@]}" -serial "file:$results/console.log" </dev/null
qrc=$?
set -e
# How long QEMU ran (host clock), and the guest's uptime when /init
# started and when the program ended: the runner's time report (boot and
# shutdown = wall time less the program's) and headroom check read these.
awk -v a="$tq" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }' >"$results/wall_seconds"
sed -n 's/^GMEM-INIT: start \([0-9.]*\).*/\1/p' "$results/console.log" | head -n 1 >"$results/init_seconds"
sed -n 's/^GMEM-INIT: exit .* after \([0-9.]*\) s.*/\1/p' "$results/console.log" | head -n 1 >"$results/exit_seconds"
if [ -n "$tailpid" ]; then
	sleep 0.3
	kill "$tailpid" 2>/dev/null || true
	wait "$tailpid" 2>/dev/null || true
fi

"$LIB_DIR/scan-splats.sh" ${viommu:+--iommu-faults "${viommu%-sm}"} "$results/console.log" "$results/dmesg.log" >"$results/splats" || true
if [ -s "$results/splats" ]; then
	echo "guest-run: KERNEL SPLAT in the guest's log ($results/console.log):" >&2
	sed 's/^/  /' "$results/splats" >&2
fi

if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	echo "guest-run: guest timed out after $timeout s" >&2
	if [ -s "$results/hang.log" ]; then
		echo "guest-run: the guest's tasks before the kill ($results/hang.log):" >&2
		head -n 200 "$results/hang.log" | sed 's/^/  /' >&2
	fi
	echo 124 >"$results/exit_status"
	exit 124
fi
if [ ! -s "$results/exit_status" ]; then
	echo "guest-run: the guest stopped before the program finished (qemu exit $qrc); see $results/console.log" >&2
	tail -n 30 "$results/console.log" >&2 || true
	echo 125 >"$results/exit_status"
	exit 125
fi
rc=$(cat "$results/exit_status")
if [ $failsplat = 1 ] && [ "$rc" = 0 ] && [ -s "$results/splats" ]; then
	exit 126
fi
exit "$rc"
