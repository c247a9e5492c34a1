/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for the iommufd guest_memfd tests (iommufd_guest_memfd.c and the
 * guest_memfd cases of iommufd_fail_nth.c): making a KVM_X86_SW_PROTECTED_VM
 * with a convertible guest_memfd, converting its pages, and checking what the
 * mock domains map (IOMMU_TEST_OP_MD_CHECK_GMEM) and what the IOAS reports
 * (IOMMU_IOAS_MIRROR_STATUS).
 *
 * Include after iommufd_utils.h.
 */
#ifndef __SELFTEST_IOMMUFD_GMEM_UTILS
#define __SELFTEST_IOMMUFD_GMEM_UTILS

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/falloc.h>
#include <linux/kvm.h>

#define GMEM_TEST_CLIENT "/sys/kernel/debug/guest_memfd_test/client"

/* Most mock domains a test attaches to one IOAS. */
#define GMEM_MAX_DOMAINS 3

static inline int gmem_create(int vm_fd, size_t size, __u64 flags)
{
	struct kvm_create_guest_memfd args = {
		.size = size,
		.flags = flags,
	};

	return ioctl(vm_fd, KVM_CREATE_GUEST_MEMFD, &args);
}

/*
 * Make a KVM_X86_SW_PROTECTED_VM and a guest_memfd of @size bytes with
 * GUEST_MEMFD_FLAG_CONVERTIBLE | @flags in it. Returns 0 with *vm_fd and
 * *gmem_fd set; 1 if the kernel cannot do it, with the reason to skip in
 * *skip; -1 with errno set on any other failure.
 */
static inline int gmem_vm_create(size_t size, __u64 flags, int *vm_fd,
				 int *gmem_fd, const char **skip)
{
#ifdef KVM_X86_SW_PROTECTED_VM
	int kvm_fd, fd;
	long r;

	*vm_fd = -1;
	*gmem_fd = -1;
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		*skip = "cannot open /dev/kvm";
		return 1;
	}
	r = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES);
	if (r <= 0 || !(r & (1UL << KVM_X86_SW_PROTECTED_VM))) {
		*skip = "KVM_X86_SW_PROTECTED_VM not supported";
		goto skip;
	}
	fd = ioctl(kvm_fd, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	if (fd < 0)
		goto err;
	close(kvm_fd);
	*vm_fd = fd;

	r = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	if (r <= 0 || !(r & GUEST_MEMFD_FLAG_CONVERTIBLE)) {
		*skip = "GUEST_MEMFD_FLAG_CONVERTIBLE not supported";
		close(fd);
		*vm_fd = -1;
		return 1;
	}
	*gmem_fd = gmem_create(fd, size, GUEST_MEMFD_FLAG_CONVERTIBLE | flags);
	if (*gmem_fd < 0) {
		r = errno;
		close(fd);
		*vm_fd = -1;
		errno = r;
		return -1;
	}
	return 0;
skip:
	close(kvm_fd);
	return 1;
err:
	r = errno;
	close(kvm_fd);
	errno = r;
	return -1;
#else
	*vm_fd = -1;
	*gmem_fd = -1;
	*skip = "KVM_X86_SW_PROTECTED_VM is x86 only";
	return 1;
#endif
}

/* KVM_GMEM_CONVERT_SHARED or _PRIVATE (@cmd): 0 or -errno. */
static inline int gmem_convert(int gmem_fd, unsigned long cmd, __u64 offset,
			       __u64 size, __u64 *error_offset)
{
	struct kvm_gmem_convert args = {
		.offset = offset,
		.size = size,
	};
	int r = ioctl(gmem_fd, cmd, &args);

	if (error_offset)
		*error_offset = args.error_offset;
	return r ? -errno : 0;
}

static sigjmp_buf gmem_sigbus_jmp;

static void gmem_sigbus_handler(int sig)
{
	siglongjmp(gmem_sigbus_jmp, 1);
}

/*
 * Read one byte of @p, a page of an mmap of a guest_memfd: true if the host
 * could (the page is shared), false on SIGBUS (it is private). Faults the
 * page in, so only use it on pages that may be allocated.
 */
static inline bool gmem_host_can_read(volatile __u8 *p)
{
	struct sigaction sa = { .sa_handler = gmem_sigbus_handler }, old;
	bool ok = true;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(gmem_sigbus_jmp, 1) == 0)
		(void)*p;
	else
		ok = false;
	sigaction(SIGBUS, &old, NULL);
	return ok;
}

/*
 * IOMMU_TEST_OP_MD_CHECK_GMEM: the mock domain @hwpt_id maps each page of
 * [@iova, @iova + @length) to the page of @gmem_fd at the same position from
 * byte @offset (or, with MOCK_CHECK_GMEM_UNMAPPED in @flags, maps nothing in
 * the range). 0, or -1 with errno: EINVAL on a mismatch, ENOENT if a file page
 * to compare is not allocated.
 */
static inline int _test_cmd_md_check_gmem(int fd, __u32 hwpt_id, __u64 iova,
					  __u64 length, int gmem_fd,
					  __u64 offset, __u32 flags)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_MD_CHECK_GMEM,
		.id = hwpt_id,
		.check_gmem = {
			.iova = iova,
			.length = length,
			.offset = offset,
			.gmem_fd = gmem_fd,
			.flags = flags,
		},
	};

	return ioctl(fd, _IOMMU_TEST_CMD(IOMMU_TEST_OP_MD_CHECK_GMEM), &cmd);
}

#define test_cmd_md_check_gmem(hwpt_id, iova, length, gmem_fd, offset)      \
	ASSERT_EQ(0, _test_cmd_md_check_gmem(self->fd, hwpt_id, iova, length, \
					     gmem_fd, offset, 0))
#define test_cmd_md_check_gmem_unmapped(hwpt_id, iova, length, gmem_fd,     \
					offset)                             \
	ASSERT_EQ(0, _test_cmd_md_check_gmem(self->fd, hwpt_id, iova, length, \
					     gmem_fd, offset,                 \
					     MOCK_CHECK_GMEM_UNMAPPED))
#define test_err_md_check_gmem(_errno, hwpt_id, iova, length, gmem_fd,      \
			       offset)                                      \
	EXPECT_ERRNO(_errno, _test_cmd_md_check_gmem(self->fd, hwpt_id, iova, \
						     length, gmem_fd, offset, \
						     0))

/*
 * How the @ndomains mock domains @hwpt_ids map the page at @iova, which
 * mirrors the page at byte @offset of @gmem_fd: 1 if every domain maps that
 * file page, 0 if none maps anything there, -1 for anything else (a domain
 * maps a wrong page, or only some domains map it).
 */
static inline int gmem_page_mapping(int fd, const __u32 *hwpt_ids,
				    unsigned int ndomains, int gmem_fd,
				    __u64 iova, __u64 offset, size_t page_size)
{
	unsigned int mapped = 0, unmapped = 0, i;

	for (i = 0; i != ndomains; i++) {
		if (!_test_cmd_md_check_gmem(fd, hwpt_ids[i], iova, page_size,
					     gmem_fd, offset, 0))
			mapped++;
		else if (!_test_cmd_md_check_gmem(fd, hwpt_ids[i], iova,
						  page_size, gmem_fd, offset,
						  MOCK_CHECK_GMEM_UNMAPPED))
			unmapped++;
	}
	if (mapped == ndomains)
		return 1;
	if (unmapped == ndomains)
		return 0;
	return -1;
}

static inline int _test_ioctl_mirror_status(int fd, __u32 ioas_id, __u64 iova,
					    __u32 flags,
					    struct iommu_ioas_mirror_status *st)
{
	*st = (struct iommu_ioas_mirror_status){
		.size = sizeof(*st),
		.flags = flags,
		.ioas_id = ioas_id,
		.iova = iova,
	};
	return ioctl(fd, IOMMU_IOAS_MIRROR_STATUS, st);
}

#define test_ioctl_mirror_status(iova, flags, st)                         \
	ASSERT_EQ(0, _test_ioctl_mirror_status(self->fd, self->ioas_id, iova, \
					       flags, st))
#define test_err_mirror_status(_errno, iova)                                 \
	({                                                                   \
		struct iommu_ioas_mirror_status __st;                        \
		EXPECT_ERRNO(_errno,                                         \
			     _test_ioctl_mirror_status(self->fd,             \
						       self->ioas_id, iova,  \
						       0, &__st));           \
	})

/* IOMMU_TEST_OP_GMEM_IOPTE_COUNT: a guest_memfd mapping's IOPTE counters */
struct gmem_iopte_count {
	__u64 adds;
	__u64 removes;
};

static inline int _test_cmd_gmem_iopte_count(int fd, __u32 ioas_id, __u64 iova,
					     struct gmem_iopte_count *count)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_GMEM_IOPTE_COUNT,
		.id = ioas_id,
		.gmem_iopte_count = { .iova = iova },
	};
	int ret;

	ret = ioctl(fd, IOMMU_TEST_CMD, &cmd);
	if (ret)
		return ret;
	count->adds = cmd.gmem_iopte_count.out_adds;
	count->removes = cmd.gmem_iopte_count.out_removes;
	return 0;
}

#define test_cmd_gmem_iopte_count(iova, count)                             \
	ASSERT_EQ(0, _test_cmd_gmem_iopte_count(self->fd, self->ioas_id, iova, \
						count))

/*
 * The debugfs mock client of CONFIG_GUEST_MEMFD_TEST
 * (virt/kvm/guest_memfd/test_client.c). Each open() is one client.
 */
static inline int gmem_client_open(void)
{
	return open(GMEM_TEST_CLIENT, O_RDWR | O_CLOEXEC);
}

/* One command, e.g. "attach 5": 0 or the (positive) errno it failed with. */
static inline int gmem_client_cmd(int cfd, const char *fmt, ...)
{
	char cmd[128];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert(len > 0 && len < (int)sizeof(cmd));
	if (write(cfd, cmd, len) != len)
		return errno;
	return 0;
}

/*
 * How many lines "KIND REASON START END" the client logged with these
 * values, or -1 if the log cannot be read or lost lines.
 */
static inline int gmem_client_count(int cfd, const char *kind,
				    const char *reason, __u64 start, __u64 end)
{
	const size_t len = 512 * 1024;
	char *buf = malloc(len + 1), *line, *save;
	int count = 0;
	ssize_t n;

	if (!buf)
		return -1;
	n = pread(cfd, buf, len, 0);
	if (n < 0) {
		free(buf);
		return -1;
	}
	buf[n] = 0;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned long long s, e;
		char k[16], r[32];

		if (!strncmp(line, "lost", 4)) {
			count = -1;
			break;
		}
		if (sscanf(line, "%15s %31s %llu %llu", k, r, &s, &e) != 4)
			continue;
		if (!strcmp(k, kind) && !strcmp(r, reason) && s == start &&
		    e == end)
			count++;
	}
	free(buf);
	return count;
}

#endif
