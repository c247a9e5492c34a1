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
mount -t hugetlbfs hugetlbfs /dev/hugepages
ulimit -c 0
ulimit -l unlimited

if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 gmem /run/gmem; then
	echo "GMEM-INIT: cannot mount the 9p run directory"
	poweroff -f
fi
cd /run/gmem || poweroff -f
echo "GMEM-INIT: start $(cat /proc/uptime)"
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
echo "$rc" >exit_status
echo "GMEM-INIT: exit $rc after $(cut -d' ' -f1 /proc/uptime) s"
dmesg >dmesg.log
sync
cd /
umount /run/gmem
poweroff -f
