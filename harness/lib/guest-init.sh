#!/bin/busybox sh
# shellcheck shell=dash
# SPDX-License-Identifier: GPL-2.0-only
#
# /init of the test initramfs (busybox). Mounts what tests need, mounts the
# run directory the host shares over virtio 9p at /run/gmem, runs its cmd.sh
# with output captured there, saves the kernel log and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/hugepages /tmp /run/gmem
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t hugetlbfs hugetlbfs /dev/hugepages
# cgroup v2, when the kernel has it (the test config does): suites make
# memory cgroups of their own below it.
if grep -qw cgroup2 /proc/filesystems; then
	mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
ulimit -c 0
ulimit -l unlimited

if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 gmem /run/gmem; then
	echo "GMEM-INIT: cannot mount the 9p run directory"
	poweroff -f
fi
cd /run/gmem || poweroff -f
echo "GMEM-INIT: start $(cat /proc/uptime)"

# Every task's state, wait channel and kernel stack. A deadlock in
# killable or interruptible sleeps (or a userspace wait) never trips the
# hung-task detector, which watches only uninterruptible sleep.
dump_tasks() {
	for t in /proc/[0-9]*/task/[0-9]*; do
		read -r st <"$t/stat" 2>/dev/null || continue
		state=${st#*) }
		state=${state%% *}
		stack=$(cat "$t/stack" 2>/dev/null)
		# Idle kernel threads and kworkers say nothing useful.
		[ -z "$(tr -d '\0' 2>/dev/null <"${t%/task/*}/cmdline")" ] &&
			{ [ "$state" = S ] || [ "$state" = I ]; } && continue
		pid=${t#/proc/}
		echo "task ${pid%%/*}/${t##*/} ($(cat "$t/comm")) state $state wchan $(cat "$t/wchan" 2>/dev/null)"
		[ -n "$stack" ] && echo "$stack" | sed 's/^/    /'
	done
}
# guest-run.sh's timeout kills QEMU without a word from the guest; shortly
# before it (hang_dump_at, guest uptime in seconds) the tasks are dumped
# to hang.log, which the runner shows when the guest times out.
wd=""
if [ -f hang_dump_at ]; then
	(
		at=$(cat hang_dump_at)
		now=$(cut -d. -f1 /proc/uptime)
		[ "$at" -gt "$now" ] && sleep $((at - now))
		echo "GMEM-INIT: still running after $(cut -d' ' -f1 /proc/uptime) s; tasks in hang.log"
		dump_tasks >hang.log 2>&1
		sync
	) &
	wd=$!
fi
if [ -f shell ]; then
	setsid cttyhack sh -l
	rc=$?
else
	# output.log as the program wrote it; output.ts the same lines, each
	# after the guest's uptime when it arrived (per-case durations).
	set -o pipefail
	sh ./cmd.sh 2>&1 </dev/null | awk '{
		getline t < "/proc/uptime"; close("/proc/uptime"); split(t, u, " ")
		print > "output.log"; printf "%s\t%s\n", u[1], $0 > "output.ts"
		fflush("output.log"); fflush("output.ts")
	}'
	rc=$?
	set +o pipefail
fi
[ -n "$wd" ] && kill "$wd" 2>/dev/null
echo "$rc" >exit_status
echo "GMEM-INIT: exit $rc after $(cut -d' ' -f1 /proc/uptime) s"
dmesg >dmesg.log
sync
cd /
umount /run/gmem
poweroff -f
