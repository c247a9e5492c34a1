// SPDX-License-Identifier: GPL-2.0-only
/*
 * In-place shared/private conversion of a guest_memfd file, through both of
 * its interfaces on the guest_memfd fd: KVM_GMEM_CONVERT_SHARED and
 * KVM_GMEM_CONVERT_PRIVATE, and KVM_SET_MEMORY_ATTRIBUTES2.  The fixture's
 * variants run every test through each.
 *
 * The host sees a page's state through its mmap of the file: a shared page
 * can be read and written, a private page raises SIGBUS, and a syscall that
 * uses a private page as its buffer fails with EFAULT. Every test checks the
 * state of every page afterwards, not just the ioctl's return value.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <linux/falloc.h>
/* Before io_uring.h: tools/include's linux/types.h does not include it. */
#include <linux/stddef.h>
#include <linux/io_uring.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "kvm_util.h"
#include "test_util.h"
#include "../../../../mm/gup_test.h"
#include "kselftest_harness.h"

#define NR_PAGES	16

/*
 * Read one byte of @p: a shared page reads, a private one must raise
 * SIGBUS (an unexpected SIGBUS kills the test, a missing one fails it).
 */
static void host_read(volatile uint8_t *p, bool shared)
{
	if (shared)
		(void)*p;
	else
		TEST_EXPECT_SIGBUS((void)*p);
}

static bool conversion_supported(unsigned long vm_type)
{
	return (kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(vm_type)) &&
	       (kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) &
		GUEST_MEMFD_FLAG_CONVERTIBLE);
}

FIXTURE(conversion) {
	struct kvm_vm *vm;
	size_t page;
	size_t size;
	int fd;
	uint8_t *mem;
	/* What every page must be, checked by check_states(). */
	bool shared[NR_PAGES];
};

FIXTURE_VARIANT(conversion) {
	/* Convert with KVM_SET_MEMORY_ATTRIBUTES2, not KVM_GMEM_CONVERT_*. */
	bool attributes2;
	bool init_shared;
};

FIXTURE_VARIANT_ADD(conversion, convert_init_private) {
	.attributes2 = false,
	.init_shared = false,
};

FIXTURE_VARIANT_ADD(conversion, convert_init_shared) {
	.attributes2 = false,
	.init_shared = true,
};

FIXTURE_VARIANT_ADD(conversion, attributes2_init_private) {
	.attributes2 = true,
	.init_shared = false,
};

FIXTURE_VARIANT_ADD(conversion, attributes2_init_shared) {
	.attributes2 = true,
	.init_shared = true,
};

/*
 * Convert [@offset, @offset + @size) of the guest_memfd @fd through one
 * interface or the other.  Returns 0 or -errno, and the kernel's
 * error_offset in *@error_offset if that is not NULL.
 */
static int convert(int fd, bool attributes2, bool to_private, uint64_t offset,
		   uint64_t size, uint64_t *error_offset)
{
	loff_t eo = 0;
	int r;

	if (!attributes2)
		return gmem_convert(fd, to_private ? KVM_GMEM_CONVERT_PRIVATE :
						     KVM_GMEM_CONVERT_SHARED,
				    offset, size, error_offset);

	if (to_private)
		r = __gmem_set_private(fd, offset, size, &eo);
	else
		r = __gmem_set_shared(fd, offset, size, &eo);
	if (error_offset)
		*error_offset = eo;
	return r ? -errno : 0;
}

FIXTURE_SETUP(conversion)
{
	uint64_t flags = GUEST_MEMFD_FLAG_MMAP;
	int i;

	self->fd = -1;
	self->mem = MAP_FAILED;
	self->vm = NULL;
	if (!conversion_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP(return, "no KVM_X86_SW_PROTECTED_VM or GUEST_MEMFD_FLAG_CONVERTIBLE");

	self->page = getpagesize();
	self->size = NR_PAGES * self->page;
	self->vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	ASSERT_TRUE(vm_check_cap(self->vm, KVM_CAP_GUEST_MEMFD_FLAGS) &
		    GUEST_MEMFD_FLAG_CONVERTIBLE);
	ASSERT_EQ(kvm_has_gmem_attributes ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		  vm_check_cap(self->vm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES));
	/*
	 * As a VMM written for either interface would: MMAP alone where
	 * KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES says that converts in place,
	 * CONVERTIBLE otherwise.
	 */
	if (!variant->attributes2 || !kvm_has_gmem_attributes)
		flags |= GUEST_MEMFD_FLAG_CONVERTIBLE;
	if (variant->init_shared)
		flags |= GUEST_MEMFD_FLAG_INIT_SHARED;
	self->fd = __vm_create_guest_memfd(self->vm, self->size, flags);
	ASSERT_GE(self->fd, 0);
	self->mem = mmap(NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 self->fd, 0);
	ASSERT_NE(self->mem, MAP_FAILED);
	for (i = 0; i < NR_PAGES; i++)
		self->shared[i] = variant->init_shared;
}

FIXTURE_TEARDOWN(conversion)
{
	if (self->mem != MAP_FAILED)
		munmap(self->mem, self->size);
	if (self->fd >= 0)
		close(self->fd);
	if (self->vm)
		kvm_vm_free(self->vm);
}

#define page_ptr(i)	(self->mem + (size_t)(i) * self->page)

/* Read every page; each must be accessible exactly when it is shared. */
#define check_states()							\
	do {								\
		for (int __i = 0; __i < NR_PAGES; __i++)		\
			host_read(page_ptr(__i), self->shared[__i]);	\
	} while (0)

#define set_states(first, n, val)					\
	do {								\
		int __first = (first);					\
		for (int __i = 0; __i < (n); __i++)			\
			self->shared[__first + __i] = (val);		\
	} while (0)

#define to_shared(first, n)						\
	convert(self->fd, variant->attributes2, false,			\
		(uint64_t)(first) * self->page,				\
		(uint64_t)(n) * self->page, NULL)
#define to_private(first, n)						\
	convert(self->fd, variant->attributes2, true,			\
		(uint64_t)(first) * self->page,				\
		(uint64_t)(n) * self->page, NULL)

TEST_F(conversion, initial_state)
{
	check_states();
}

/* Converting one page flips that page and no other, both ways. */
TEST_F(conversion, per_page_precision)
{
	int i;

	for (i = 0; i < NR_PAGES; i += 5) {
		if (self->shared[i]) {
			ASSERT_EQ(0, to_private(i, 1));
			self->shared[i] = false;
		} else {
			ASSERT_EQ(0, to_shared(i, 1));
			self->shared[i] = true;
		}
		check_states();
	}
	for (i = 0; i < NR_PAGES; i += 5) {
		if (self->shared[i]) {
			ASSERT_EQ(0, to_private(i, 1));
		} else {
			ASSERT_EQ(0, to_shared(i, 1));
		}
		self->shared[i] = !self->shared[i];
		check_states();
	}
}

/* Converting a range part of which is already in the target state is fine. */
TEST_F(conversion, partly_in_target_state)
{
	ASSERT_EQ(0, to_shared(2, 2));
	set_states(2, 2, true);
	ASSERT_EQ(0, to_shared(0, 8));
	set_states(0, 8, true);
	check_states();
	ASSERT_EQ(0, to_private(4, 2));
	set_states(4, 2, false);
	ASSERT_EQ(0, to_private(3, 6));
	set_states(3, 6, false);
	check_states();
}

/* Conversion works on pages that were never allocated. */
TEST_F(conversion, before_allocation)
{
	/* No page has been touched or fallocate()d yet. */
	ASSERT_EQ(0, to_shared(4, 4));
	ASSERT_EQ(0, to_private(6, 1));
	set_states(4, 4, true);
	self->shared[6] = false;
	check_states();
}

/* One conversion over allocated and unallocated pages. */
TEST_F(conversion, mixed_allocated_and_unallocated)
{
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, 4 * self->page));
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 8 * self->page,
			       2 * self->page));
	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	set_states(0, NR_PAGES, true);
	check_states();
	ASSERT_EQ(0, to_private(2, 10));
	set_states(2, 10, false);
	check_states();
}

/* Data written while shared survives a round trip through private. */
TEST_F(conversion, contents_preserved)
{
	int i;

	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	for (i = 0; i < NR_PAGES; i++)
		memset(page_ptr(i), 0x30 + i, self->page);
	ASSERT_EQ(0, to_private(0, NR_PAGES));
	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	for (i = 0; i < NR_PAGES; i++) {
		ASSERT_EQ(page_ptr(i)[0], 0x30 + i);
		ASSERT_EQ(page_ptr(i)[self->page - 1], 0x30 + i);
	}
}

/* A hole punch keeps the state; a later fault gets a zeroed page in it. */
TEST_F(conversion, hole_punch_keeps_state)
{
	ASSERT_EQ(0, to_shared(3, 1));
	ASSERT_EQ(0, to_private(4, 1));
	self->shared[3] = true;
	self->shared[4] = false;
	memset(page_ptr(3), 0x5a, self->page);

	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       3 * self->page, 2 * self->page));
	check_states();
	ASSERT_EQ(0, page_ptr(3)[0]);
	ASSERT_EQ(0, page_ptr(3)[self->page - 1]);
}

/* A private page used as a syscall's buffer makes the syscall fail. */
TEST_F(conversion, private_page_as_buffer_is_efault)
{
	int pipefd[2];

	ASSERT_EQ(0, to_private(1, 1));
	ASSERT_EQ(0, to_shared(2, 1));
	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_EQ(-1, write(pipefd[1], page_ptr(1), 64));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(64, write(pipefd[1], page_ptr(2), 64));
	ASSERT_EQ(-1, read(pipefd[0], page_ptr(1), 64));
	ASSERT_EQ(EFAULT, errno);
	close(pipefd[0]);
	close(pipefd[1]);
}

/*
 * To-private unmaps the page from every process: a child that faulted it in
 * through the inherited mapping gets SIGBUS afterwards.
 */
TEST_F(conversion, fork_unmaps_every_process)
{
	int to_child[2], to_parent[2], status;
	pid_t pid;
	char c;

	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	set_states(0, NR_PAGES, true);
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(to_parent));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		/* Fault the pages in, let the parent convert, look again. */
		for (int i = 0; i < NR_PAGES; i++)
			*page_ptr(i) = 0x11;
		if (write(to_parent[1], "r", 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(11);
		for (int i = 0; i < NR_PAGES; i++)
			host_read(page_ptr(i), i < 8);
		_exit(0);
	}
	ASSERT_EQ(1, read(to_parent[0], &c, 1));
	ASSERT_EQ(0, to_private(8, 8));
	set_states(8, 8, false);
	ASSERT_EQ(1, write(to_child[1], "c", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	check_states();
}

/*
 * A long-term pin on a page going private refuses the whole conversion with
 * EAGAIN and error_offset at that page, changing nothing; after unpinning,
 * the same conversion succeeds.
 */
TEST_F(conversion, longterm_pin_refuses_to_private)
{
	struct pin_longterm_test pin = { 0 };
	uint64_t error_offset;
	int gup;

	gup = open("/sys/kernel/debug/gup_test", O_RDWR);
	if (gup < 0)
		SKIP(return, "no /sys/kernel/debug/gup_test (CONFIG_GUP_TEST)");
	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	set_states(0, NR_PAGES, true);
	memset(self->mem, 0x77, self->size);

	pin.addr = (uintptr_t)page_ptr(6);
	pin.size = self->page;
	pin.flags = PIN_LONGTERM_TEST_FLAG_USE_WRITE;
	ASSERT_EQ(0, ioctl(gup, PIN_LONGTERM_TEST_START, &pin));

	ASSERT_EQ(-EAGAIN, convert(self->fd, variant->attributes2, true, 0,
				   self->size, &error_offset));
	ASSERT_EQ(6 * self->page, error_offset);
	check_states();
	ASSERT_EQ(0x77, page_ptr(6)[0]);
	/* A range that does not contain the pinned page converts. */
	ASSERT_EQ(0, to_private(7, 9));
	set_states(7, 9, false);
	check_states();

	ASSERT_EQ(0, ioctl(gup, PIN_LONGTERM_TEST_STOP));
	close(gup);
	ASSERT_EQ(0, to_private(0, NR_PAGES));
	set_states(0, NR_PAGES, false);
	check_states();
}

/* A page reference held by a pipe (vmsplice) refuses to-private too. */
TEST_F(conversion, vmsplice_reference_refuses_to_private)
{
	struct iovec iov;
	uint64_t error_offset;
	int pipefd[2];
	char buf[64];

	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	set_states(0, NR_PAGES, true);
	memset(page_ptr(3), 0x42, self->page);
	ASSERT_EQ(0, pipe(pipefd));
	iov.iov_base = page_ptr(3);
	iov.iov_len = self->page;
	ASSERT_EQ((ssize_t)self->page, vmsplice(pipefd[1], &iov, 1, 0));

	ASSERT_EQ(-EAGAIN, convert(self->fd, variant->attributes2, true,
				   2 * self->page, 4 * self->page,
				   &error_offset));
	ASSERT_EQ(3 * self->page, error_offset);
	check_states();

	/* Drain the pipe: the reference goes, the conversion succeeds. */
	close(pipefd[1]);
	while (read(pipefd[0], buf, sizeof(buf)) > 0)
		ASSERT_EQ(0x42, buf[0]);
	close(pipefd[0]);
	ASSERT_EQ(0, to_private(2, 4));
	set_states(2, 4, false);
	check_states();
}

/* Faults a page over and over, counting those made during a conversion. */
struct fault_loop {
	volatile uint8_t *page;
	size_t size;
	/* Odd while a conversion runs; bumped before and after it. */
	int phase;
	bool stop;
	unsigned long inside;
};

static void *fault_loop_fn(void *arg)
{
	struct fault_loop *f = arg;

	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		int phase = __atomic_load_n(&f->phase, __ATOMIC_ACQUIRE);

		/* Zap the PTE, so that the next access faults the file. */
		if (madvise((void *)f->page, f->size, MADV_DONTNEED))
			break;
		f->page[0]++;
		if ((phase & 1) &&
		    __atomic_load_n(&f->phase, __ATOMIC_ACQUIRE) == phase)
			f->inside++;
	}
	return NULL;
}

/*
 * A conversion refused by a lasting reference waits for transient
 * references to go away (about 2^7 jiffies) without holding up faults on
 * the file: a fault on another page, made over and over meanwhile, keeps
 * completing while the conversion runs.  Were the wait made under the
 * invalidate lock, every fault would wait for the conversion to end and
 * at most the one or two at its edges could count.
 */
TEST_F(conversion, refused_to_private_stalls_no_fault)
{
	struct fault_loop f = { 0 };
	uint64_t error_offset;
	struct iovec iov;
	pthread_t thread;
	int pipefd[2];
	int round;

	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	set_states(0, NR_PAGES, true);
	ASSERT_EQ(0, pipe(pipefd));
	iov.iov_base = page_ptr(3);
	iov.iov_len = self->page;
	ASSERT_EQ((ssize_t)self->page, vmsplice(pipefd[1], &iov, 1, 0));

	f.page = page_ptr(10);
	f.size = self->page;
	ASSERT_EQ(0, pthread_create(&thread, NULL, fault_loop_fn, &f));
	for (round = 0; round < 2; round++) {
		__atomic_add_fetch(&f.phase, 1, __ATOMIC_RELEASE);
		ASSERT_EQ(-EAGAIN, convert(self->fd, variant->attributes2, true,
					   3 * self->page, self->page,
					   &error_offset));
		__atomic_add_fetch(&f.phase, 1, __ATOMIC_RELEASE);
		ASSERT_EQ(3 * self->page, error_offset);
	}
	__atomic_store_n(&f.stop, true, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(thread, NULL));

	ksft_print_msg("faults completed during the conversions: %lu\n",
		       f.inside);
	ASSERT_GE(f.inside, 8);
	check_states();

	close(pipefd[1]);
	close(pipefd[0]);
	ASSERT_EQ(0, to_private(3, 1));
	set_states(3, 1, false);
	check_states();
}

/*
 * An io_uring fixed buffer, a long-term pin through the host mapping, on a
 * page going private refuses the conversion with EAGAIN at that page; once
 * the buffer is unregistered, the same conversion succeeds.
 */
TEST_F(conversion, io_uring_fixed_buffer_refuses_to_private)
{
	struct io_uring_params params = { 0 };
	uint64_t error_offset;
	struct iovec iov;
	int ring;

	ASSERT_EQ(0, to_shared(0, NR_PAGES));
	set_states(0, NR_PAGES, true);
	memset(self->mem, 0x66, self->size);

	ring = syscall(__NR_io_uring_setup, 4, &params);
	if (ring < 0)
		SKIP(return, "io_uring_setup: %s", strerror(errno));
	iov.iov_base = page_ptr(9);
	iov.iov_len = 2 * self->page;
	ASSERT_EQ(0, syscall(__NR_io_uring_register, ring,
			     IORING_REGISTER_BUFFERS, &iov, 1));

	ASSERT_EQ(-EAGAIN, convert(self->fd, variant->attributes2, true,
				   4 * self->page, 8 * self->page,
				   &error_offset));
	ASSERT_EQ(9 * self->page, error_offset);
	check_states();
	ASSERT_EQ(0x66, page_ptr(10)[0]);

	ASSERT_EQ(0, syscall(__NR_io_uring_register, ring,
			     IORING_UNREGISTER_BUFFERS, NULL, 0));
	close(ring);
	ASSERT_EQ(0, to_private(4, 8));
	set_states(4, 8, false);
	check_states();
}

/*
 * The argument block of either interface, for the argument checks: @cmd
 * with a @flags, a reserved word (@reserved_bit counts bits over all of
 * them, -1 for none) and, for KVM_SET_MEMORY_ATTRIBUTES2, @attributes.
 */
struct conv_args {
	unsigned long cmd;
	union {
		struct kvm_gmem_convert convert;
		struct kvm_memory_attributes2 attr2;
	};
};

static void conv_args_init(struct conv_args *a, bool attributes2,
			   bool to_private, uint64_t offset, uint64_t size)
{
	memset(a, 0, sizeof(*a));
	if (attributes2) {
		a->cmd = KVM_SET_MEMORY_ATTRIBUTES2;
		a->attr2.offset = offset;
		a->attr2.size = size;
		a->attr2.attributes = to_private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	} else {
		a->cmd = to_private ? KVM_GMEM_CONVERT_PRIVATE : KVM_GMEM_CONVERT_SHARED;
		a->convert.offset = offset;
		a->convert.size = size;
	}
}

/* An ioctl that must fail with EINVAL and report error_offset = @offset. */
static void assert_einval_at(struct __test_metadata *_metadata, int fd,
			     struct conv_args *a, bool attributes2,
			     uint64_t offset)
{
	ASSERT_EQ(-1, ioctl(fd, a->cmd, &a->convert));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(offset, attributes2 ? a->attr2.error_offset :
					a->convert.error_offset);
}

/* Every row of the errno table: nothing may change on any of them. */
TEST_F(conversion, invalid_arguments)
{
	bool a2 = variant->attributes2;
	int nr_reserved = a2 ? 11 : 4;
	struct conv_args a;
	int dir, i;

	for (dir = 0; dir < 2; dir++) {
		bool to_private = dir;

		/* every flag bit is unknown */
		for (i = 0; i < 64; i++) {
			conv_args_init(&a, a2, to_private, self->page, self->page);
			if (a2)
				a.attr2.flags = 1ULL << i;
			else
				a.convert.flags = 1ULL << i;
			assert_einval_at(_metadata, self->fd, &a, a2, self->page);
		}
		/* every bit of every reserved word must be 0 */
		for (i = 0; i < nr_reserved * 64; i++) {
			conv_args_init(&a, a2, to_private, self->page, self->page);
			if (a2)
				a.attr2.reserved[i / 64] = 1ULL << (i % 64);
			else
				a.convert.reserved[i / 64] = 1ULL << (i % 64);
			assert_einval_at(_metadata, self->fd, &a, a2, self->page);
		}
		/* KVM_MEMORY_ATTRIBUTE_PRIVATE is the only attribute */
		for (i = 0; a2 && i < 64; i++) {
			if (1ULL << i == KVM_MEMORY_ATTRIBUTE_PRIVATE)
				continue;
			conv_args_init(&a, a2, to_private, self->page, self->page);
			a.attr2.attributes |= 1ULL << i;
			assert_einval_at(_metadata, self->fd, &a, a2, self->page);
		}
		/* offset and size page aligned, size non-zero */
		ASSERT_EQ(-EINVAL, convert(self->fd, a2, to_private, 1, self->page, NULL));
		ASSERT_EQ(-EINVAL, convert(self->fd, a2, to_private, 0, self->page + 1,
					   NULL));
		ASSERT_EQ(-EINVAL, convert(self->fd, a2, to_private, 0, 0, NULL));
		/* no overflow of offset + size */
		ASSERT_EQ(-EINVAL, convert(self->fd, a2, to_private,
					   -(uint64_t)self->page, 2 * self->page,
					   NULL));
		/* within the file */
		ASSERT_EQ(-EINVAL, convert(self->fd, a2, to_private, self->size,
					   self->page, NULL));
		ASSERT_EQ(-EINVAL, convert(self->fd, a2, to_private,
					   self->size - self->page, 2 * self->page,
					   NULL));
		/* a readable, writable argument */
		conv_args_init(&a, a2, to_private, 0, self->page);
		ASSERT_EQ(-1, ioctl(self->fd, a.cmd, NULL));
		ASSERT_EQ(EFAULT, errno);
		check_states();
	}
}

/* A range already in the requested state converts, changing nothing. */
TEST_F(conversion, already_in_state)
{
	uint64_t error_offset = 0x5a5a;

	ASSERT_EQ(0, convert(self->fd, variant->attributes2,
			     !variant->init_shared, 0, self->size, &error_offset));
	check_states();
	ASSERT_EQ(0, to_shared(0, 2));
	set_states(0, 2, true);
	ASSERT_EQ(0, to_shared(0, 2));
	ASSERT_EQ(0, to_private(8, 2));
	set_states(8, 2, false);
	ASSERT_EQ(0, to_private(8, 2));
	check_states();
}

/*
 * The conversion ioctls on every other kind of fd: they are guest_memfd
 * ioctls, nothing else takes them (the VM fd neither), and the file is left
 * as it was.
 */
TEST_F(conversion, wrong_fds)
{
	int memfd, kvm_fd, iommufd, closed, dir;
	struct conv_args a;

	memfd = memfd_create("gmem-wrong-fd", 0);
	ASSERT_LE(0, memfd);
	ASSERT_EQ(0, ftruncate(memfd, self->size));
	kvm_fd = open("/dev/kvm", O_RDWR);
	ASSERT_LE(0, kvm_fd);
	iommufd = open("/dev/iommu", O_RDWR);
	closed = dup(memfd);
	ASSERT_LE(0, closed);
	close(closed);

	for (dir = 0; dir < 2; dir++) {
		conv_args_init(&a, variant->attributes2, dir, 0, 4096);
		ASSERT_EQ(-1, ioctl(memfd, a.cmd, &a.convert));
		ASSERT_EQ(ENOTTY, errno);
		/* /dev/kvm and the VM do not know the ioctl either */
		ASSERT_EQ(-1, ioctl(kvm_fd, a.cmd, &a.convert));
		ASSERT_TRUE(errno == EINVAL || errno == ENOTTY)
			TH_LOG("/dev/kvm: errno %d", errno);
		ASSERT_EQ(-1, ioctl(self->vm->fd, a.cmd, &a.convert));
		ASSERT_TRUE(errno == EINVAL || errno == ENOTTY)
			TH_LOG("VM fd: errno %d", errno);
		if (iommufd >= 0) {
			ASSERT_EQ(-1, ioctl(iommufd, a.cmd, &a.convert));
			ASSERT_EQ(ENOTTY, errno);
		}
		ASSERT_EQ(-1, ioctl(closed, a.cmd, &a.convert));
		ASSERT_EQ(EBADF, errno);
		check_states();
	}
	if (iommufd >= 0)
		close(iommufd);
	close(kvm_fd);
	close(memfd);
}

/* A whole-range error reports error_offset = offset. */
TEST_F(conversion, whole_range_error_offset)
{
	uint64_t error_offset;

	ASSERT_EQ(-EINVAL, convert(self->fd, variant->attributes2, false,
				   2 * self->page, self->size, &error_offset));
	ASSERT_EQ(2 * self->page, error_offset);
}

/*
 * The file owns the state of the GFNs it backs: KVM_SET_MEMORY_ATTRIBUTES
 * on them fails with EPERM and changes nothing; GFNs outside stay usable.
 */
TEST_F(conversion, set_memory_attributes_refused)
{
	const uint64_t gpa = 1ULL << 32;
	struct kvm_memory_attributes attr = {
		.address = gpa,
		.size = self->size,
		.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};

	ASSERT_EQ(0, __vm_set_user_memory_region2(self->vm, 1, KVM_MEM_GUEST_MEMFD,
						  gpa, self->size, self->mem,
						  self->fd, 0));
	ASSERT_EQ(-1, ioctl(self->vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr));
	ASSERT_EQ(EPERM, errno);
	attr.address = gpa + self->size - self->page;
	attr.size = 2 * self->page;
	ASSERT_EQ(-1, ioctl(self->vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr));
	ASSERT_EQ(EPERM, errno);
	attr.address = gpa + self->size;
	attr.size = self->page;
	ASSERT_EQ(0, ioctl(self->vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr));
	check_states();
	/* Conversion still works with the memslot bound. */
	ASSERT_EQ(0, to_shared(0, 1));
	self->shared[0] = true;
	ASSERT_EQ(0, to_private(1, 1));
	self->shared[1] = false;
	check_states();
}

/*
 * The debugfs mock client of CONFIG_GUEST_MEMFD_TEST
 * (virt/kvm/guest_memfd/test_client.c), attached to @fd, and with @tap,
 * logging the conversion step too.  Skips if the kernel has no client.
 */
#define GMEM_TEST_CLIENT "/sys/kernel/debug/guest_memfd_test/client"
#define LOG_MAX (64 * 1024)

static int client_cmd(int cfd, const char *cmd)
{
	ssize_t len = strlen(cmd);

	return write(cfd, cmd, len) == len ? 0 : errno;
}

static bool have_client(void)
{
	return !access(GMEM_TEST_CLIENT, F_OK);
}

/* A new client attached to @fd, tapping the conversion step if @tap. */
static int client_attach(int fd, bool tap)
{
	int cfd = open(GMEM_TEST_CLIENT, O_RDWR | O_CLOEXEC);
	char cmd[32];

	TEST_ASSERT(cfd >= 0, "opening " GMEM_TEST_CLIENT);
	snprintf(cmd, sizeof(cmd), "attach %d", fd);
	TEST_ASSERT(!client_cmd(cfd, cmd), "attaching the client");
	TEST_ASSERT(!tap || !client_cmd(cfd, "tap"), "tapping the step");
	return cfd;
}

/* The client's log, which must not have lost lines. */
static void client_log(int cfd, char *buf)
{
	ssize_t n = pread(cfd, buf, LOG_MAX - 1, 0);

	TEST_ASSERT(n >= 0 && n < LOG_MAX - 1, "reading the client's log");
	buf[n] = 0;
	TEST_ASSERT(!strstr(buf, "lost"), "the client lost lines");
}

/* Append one log line "KIND REASON START END" for pages [first, end). */
static void log_line(char *buf, const char *kind, bool to_private,
		     size_t first, size_t end, size_t page)
{
	size_t len = strlen(buf);

	snprintf(buf + len, LOG_MAX - len, "%s %s %zu %zu\n", kind,
		 to_private ? "convert_private" : "convert_shared",
		 first * page, end * page);
}

/*
 * Drop the attempts of a conversion to private that a transient page
 * reference refused and that were made again: "prepare R", "abort R"
 * followed by "prepare R".
 */
static void strip_retries(char *log)
{
	char *line = log;

	while (*line) {
		char *abort_line = strchr(line, '\n'), *next;
		size_t len;

		if (!abort_line++)
			break;
		next = strchr(abort_line, '\n');
		len = abort_line - line;
		if (next && !strncmp(line, "prepare ", 8) &&
		    !strncmp(abort_line, "abort ", 6) &&
		    !strncmp(next + 1, line, len) &&
		    !strncmp(abort_line + 6, line + 8, len - 8)) {
			memmove(line, next + 1, strlen(next + 1) + 1);
			continue;
		}
		line = abort_line;
	}
}

/* The client's log is @expected, retries aside; then empty it. */
static void expect_log(struct __test_metadata *_metadata, int cfd,
		       const char *expected)
{
	char *log = calloc(1, LOG_MAX);

	ASSERT_NE(NULL, log);
	client_log(cfd, log);
	strip_retries(log);
	EXPECT_STREQ(expected, log);
	free(log);
	ASSERT_EQ(0, client_cmd(cfd, "clear"));
}

/*
 * The owner's step, made to fail at the first, a middle and the last page
 * of a conversion of allocated pages: the conversion fails with its errno
 * and error_offset names that page exactly; every page stepped before it
 * is undone, last first; every client's invalidate_end follows; the state,
 * the host's view and the contents are unchanged.  Then the conversion
 * succeeds with one step per page.
 */
TEST_F(conversion, step_fails_at_page)
{
	const bool to_priv = variant->init_shared;
	const int fail_at[] = { 0, NR_PAGES / 2, NR_PAGES - 1 };
	char *expected = calloc(1, LOG_MAX);
	uint64_t error_offset;
	int tapped, other, i, k;

	ASSERT_NE(NULL, expected);
	if (!have_client())
		SKIP(return, "no %s", GMEM_TEST_CLIENT);
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, self->size));
	/* Before the clients attach: the faults that fill the pages notify. */
	if (to_priv)
		for (i = 0; i < NR_PAGES; i++)
			*page_ptr(i) = i + 1;
	tapped = client_attach(self->fd, true);
	other = client_attach(self->fd, false);

	for (k = 0; k < (int)ARRAY_SIZE(fail_at); k++) {
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "fail %d %zu", EIO,
			 fail_at[k] * self->page);
		ASSERT_EQ(0, client_cmd(tapped, cmd));
		/* The previous check_states() filled the shared pages. */
		ASSERT_EQ(0, client_cmd(tapped, "clear"));
		ASSERT_EQ(0, client_cmd(other, "clear"));
		error_offset = -1;
		ASSERT_EQ(-EIO, convert(self->fd, variant->attributes2, to_priv,
					0, self->size, &error_offset));
		ASSERT_EQ(fail_at[k] * self->page, error_offset);

		expected[0] = 0;
		log_line(expected, "prepare", to_priv, 0, NR_PAGES, self->page);
		log_line(expected, "begin", to_priv, 0, NR_PAGES, self->page);
		for (i = 0; i < fail_at[k]; i++)
			log_line(expected, "step", to_priv, i, i + 1, self->page);
		log_line(expected, "fail", to_priv, fail_at[k], fail_at[k] + 1,
			 self->page);
		/* "fail" lines end with the errno and the offset. */
		snprintf(expected + strlen(expected) - 1,
			 LOG_MAX - strlen(expected) + 1, " %d %zu\n", EIO,
			 fail_at[k] * self->page);
		for (i = fail_at[k] - 1; i >= 0; i--)
			log_line(expected, "undo", to_priv, i, i + 1, self->page);
		log_line(expected, "end", to_priv, 0, NR_PAGES, self->page);
		expect_log(_metadata, tapped, expected);

		expected[0] = 0;
		log_line(expected, "prepare", to_priv, 0, NR_PAGES, self->page);
		log_line(expected, "begin", to_priv, 0, NR_PAGES, self->page);
		log_line(expected, "end", to_priv, 0, NR_PAGES, self->page);
		expect_log(_metadata, other, expected);

		check_states();
		if (to_priv)
			for (i = 0; i < NR_PAGES; i++)
				ASSERT_EQ(i + 1, *page_ptr(i));
	}

	ASSERT_EQ(0, client_cmd(tapped, "clear"));
	ASSERT_EQ(0, convert(self->fd, variant->attributes2, to_priv, 0,
			     self->size, NULL));
	expected[0] = 0;
	log_line(expected, "prepare", to_priv, 0, NR_PAGES, self->page);
	log_line(expected, "begin", to_priv, 0, NR_PAGES, self->page);
	for (i = 0; i < NR_PAGES; i++)
		log_line(expected, "step", to_priv, i, i + 1, self->page);
	log_line(expected, "end", to_priv, 0, NR_PAGES, self->page);
	expect_log(_metadata, tapped, expected);
	set_states(0, NR_PAGES, !to_priv);
	check_states();

	close(other);
	close(tapped);
	free(expected);
}

/*
 * The step covers exactly the allocated pages whose state changes: not
 * the holes, not the pages already in the target state.
 */
TEST_F(conversion, step_only_changing_allocated_pages)
{
	const bool to_priv = variant->init_shared;
	char *expected = calloc(1, LOG_MAX);
	int tapped;

	ASSERT_NE(NULL, expected);
	if (!have_client())
		SKIP(return, "no %s", GMEM_TEST_CLIENT);
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 2 * self->page,
			       4 * self->page));
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 9 * self->page,
			       self->page));
	ASSERT_EQ(0, convert(self->fd, variant->attributes2, to_priv,
			     3 * self->page, self->page, NULL));
	self->shared[3] = !to_priv;
	tapped = client_attach(self->fd, true);

	ASSERT_EQ(0, convert(self->fd, variant->attributes2, to_priv, 0,
			     self->size, NULL));
	log_line(expected, "prepare", to_priv, 0, NR_PAGES, self->page);
	log_line(expected, "begin", to_priv, 0, NR_PAGES, self->page);
	log_line(expected, "step", to_priv, 2, 3, self->page);
	log_line(expected, "step", to_priv, 4, 5, self->page);
	log_line(expected, "step", to_priv, 5, 6, self->page);
	log_line(expected, "step", to_priv, 9, 10, self->page);
	log_line(expected, "end", to_priv, 0, NR_PAGES, self->page);
	expect_log(_metadata, tapped, expected);
	set_states(0, NR_PAGES, !to_priv);
	check_states();

	close(tapped);
	free(expected);
}

/*
 * The step is the file's, not the memslots': each page is stepped once
 * however many memslots bind the file, including bindings that KVM keeps
 * as multi-index entries (a binding of pages 1..3 is two entries, 1 and
 * 2-3), and a page still reaches the step after its memslot was deleted.
 */
TEST_F(conversion, step_once_per_page_bound_or_not)
{
	const uint64_t gpa = 1ULL << 32;
	const bool to_priv = variant->init_shared;
	char *expected = calloc(1, LOG_MAX);
	int tapped, i;

	ASSERT_NE(NULL, expected);
	if (!have_client())
		SKIP(return, "no %s", GMEM_TEST_CLIENT);
	ASSERT_EQ(0, __vm_set_user_memory_region2(self->vm, 1, KVM_MEM_GUEST_MEMFD,
						  gpa, 3 * self->page,
						  self->mem + self->page,
						  self->fd, self->page));
	ASSERT_EQ(0, __vm_set_user_memory_region2(self->vm, 2, KVM_MEM_GUEST_MEMFD,
						  gpa + 8 * self->page,
						  12 * self->page,
						  self->mem + 4 * self->page,
						  self->fd, 4 * self->page));
	ASSERT_EQ(0, fallocate(self->fd, FALLOC_FL_KEEP_SIZE, 0, self->size));
	tapped = client_attach(self->fd, true);

	ASSERT_EQ(0, convert(self->fd, variant->attributes2, to_priv, 0,
			     self->size, NULL));
	log_line(expected, "prepare", to_priv, 0, NR_PAGES, self->page);
	log_line(expected, "begin", to_priv, 0, NR_PAGES, self->page);
	for (i = 0; i < NR_PAGES; i++)
		log_line(expected, "step", to_priv, i, i + 1, self->page);
	log_line(expected, "end", to_priv, 0, NR_PAGES, self->page);
	expect_log(_metadata, tapped, expected);
	set_states(0, NR_PAGES, !to_priv);
	check_states();

	/* Delete the memslot of pages 1..3, then convert them back. */
	ASSERT_EQ(0, __vm_set_user_memory_region2(self->vm, 1, KVM_MEM_GUEST_MEMFD,
						  gpa, 0, NULL, self->fd, 0));
	/* check_states() filled the shared pages. */
	ASSERT_EQ(0, client_cmd(tapped, "clear"));
	ASSERT_EQ(0, convert(self->fd, variant->attributes2, !to_priv,
			     self->page, 3 * self->page, NULL));
	expected[0] = 0;
	log_line(expected, "prepare", !to_priv, 1, 4, self->page);
	log_line(expected, "begin", !to_priv, 1, 4, self->page);
	for (i = 1; i < 4; i++)
		log_line(expected, "step", !to_priv, i, i + 1, self->page);
	log_line(expected, "end", !to_priv, 1, 4, self->page);
	expect_log(_metadata, tapped, expected);
	set_states(1, 3, to_priv);
	check_states();

	close(tapped);
	free(expected);
}

/*
 * A page with a memory error cannot go private: the conversion fails with
 * EHWPOISON at that page before any client hears of it (the core's checks
 * come before prepare), so nothing is stepped or undone, and the pages
 * around it convert as usual.
 */
TEST(hwpoisoned_page_is_not_stepped)
{
	const size_t page = getpagesize();
	char *expected = calloc(1, LOG_MAX);
	uint64_t error_offset = 0;
	struct kvm_vm *vm;
	int fd, tapped, status;
	pid_t pid;

	ASSERT_NE(NULL, expected);
	if (!conversion_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP(return, "no KVM_X86_SW_PROTECTED_VM or GUEST_MEMFD_FLAG_CONVERTIBLE");
	if (!have_client())
		SKIP(return, "no %s", GMEM_TEST_CLIENT);
	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	fd = __vm_create_guest_memfd(vm, 4 * page, GUEST_MEMFD_FLAG_CONVERTIBLE |
					 GUEST_MEMFD_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4 * page));

	/* Memory failure kills the process that maps the page: a child. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		uint8_t *mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
				    MAP_SHARED, fd, 0);

		/* Not the test library's handler, which reports a failure. */
		signal(SIGBUS, SIG_DFL);
		if (mem == MAP_FAILED)
			_exit(2);
		mem[2 * page] = 1;
		_exit(madvise(mem + 2 * page, page, MADV_HWPOISON) ? 3 : 0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE((WIFEXITED(status) && !WEXITSTATUS(status)) ||
		    (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS));

	tapped = client_attach(fd, true);
	ASSERT_EQ(-EHWPOISON, gmem_convert(fd, KVM_GMEM_CONVERT_PRIVATE, 0,
					   4 * page, &error_offset));
	ASSERT_EQ(2 * page, error_offset);
	expect_log(_metadata, tapped, expected);

	ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_PRIVATE, 0, 2 * page,
				  NULL));
	ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED, 0, 4 * page,
				  NULL));
	expected[0] = 0;
	log_line(expected, "prepare", true, 0, 2, page);
	log_line(expected, "begin", true, 0, 2, page);
	log_line(expected, "step", true, 0, 1, page);
	log_line(expected, "step", true, 1, 2, page);
	log_line(expected, "end", true, 0, 2, page);
	log_line(expected, "prepare", false, 0, 2, page);
	log_line(expected, "begin", false, 0, 2, page);
	log_line(expected, "step", false, 0, 1, page);
	log_line(expected, "step", false, 1, 2, page);
	log_line(expected, "end", false, 0, 2, page);
	expect_log(_metadata, tapped, expected);

	close(tapped);
	close(fd);
	kvm_vm_free(vm);
	free(expected);
}

/*
 * A file that does not convert in place refuses both interfaces: a file
 * without GUEST_MEMFD_FLAG_MMAP, any file of a VM without private memory,
 * and, while kvm.gmem_in_place_conversion is off, a file created with only
 * GUEST_MEMFD_FLAG_MMAP.  KVM_GMEM_CONVERT_* fail with EOPNOTSUPP;
 * KVM_SET_MEMORY_ATTRIBUTES2 with ENOTTY while the parameter is off (it
 * then exists only for convertible files) and EINVAL, at offset, while it
 * is on.
 */
TEST(not_convertible)
{
	const unsigned long vm_types[] = { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM };
	unsigned long types = kvm_check_cap(KVM_CAP_VM_TYPES);
	const int page = getpagesize();
	struct kvm_vm *vm;
	loff_t error_offset;
	int t, mappable, fd;

	if (!(kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & GUEST_MEMFD_FLAG_CONVERTIBLE))
		SKIP(return, "GUEST_MEMFD_FLAG_CONVERTIBLE not supported");
	for (t = 0; t < 2; t++) {
		if (!(types & BIT(vm_types[t])))
			continue;
		vm = vm_create_barebones_type(vm_types[t]);
		for (mappable = 0; mappable < 2; mappable++) {
			/* Converts in place: not what this test is about. */
			if (mappable && vm_types[t] == KVM_X86_SW_PROTECTED_VM &&
			    kvm_has_gmem_attributes)
				continue;
			fd = __vm_create_guest_memfd(vm, 2 * page,
						     mappable ? GUEST_MEMFD_FLAG_MMAP : 0);
			ASSERT_GE(fd, 0);
			ASSERT_EQ(-EOPNOTSUPP, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED,
							    0, page, NULL));
			ASSERT_EQ(-EOPNOTSUPP, gmem_convert(fd, KVM_GMEM_CONVERT_PRIVATE,
							    0, page, NULL));
			error_offset = 0;
			ASSERT_EQ(-1, __gmem_set_shared(fd, page, page, &error_offset));
			if (kvm_has_gmem_attributes) {
				ASSERT_EQ(EINVAL, errno);
				ASSERT_EQ(page, error_offset);
			} else {
				ASSERT_EQ(ENOTTY, errno);
			}
			ASSERT_EQ(-1, __gmem_set_private(fd, 0, page, NULL));
			ASSERT_EQ(kvm_has_gmem_attributes ? EINVAL : ENOTTY, errno);
			close(fd);
		}
		kvm_vm_free(vm);
	}
}

/* Sends SIGUSR1 to a thread over and over while it allocates. */
struct signal_storm {
	pthread_t target;
	bool in_fallocate;
	bool stop;
	unsigned long sent_inside;
};

static void storm_handler(int sig)
{
}

static void *signal_storm_fn(void *arg)
{
	struct signal_storm *st = arg;

	while (!__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE)) {
		bool inside = __atomic_load_n(&st->in_fallocate,
					      __ATOMIC_ACQUIRE);

		if (pthread_kill(st->target, SIGUSR1))
			break;
		if (inside)
			st->sent_inside++;
		usleep(500);
	}
	return NULL;
}

/*
 * fallocate() ends early only on a fatal signal: a signal with a handler,
 * like io_uring's task work (which makes signal_pending() true), is
 * delivered once the allocation is done, and the allocation does not fail
 * with EINTR halfway, after clients have mapped part of it.
 */
TEST(fallocate_not_interrupted_by_signals)
{
	size_t size = 16UL << 20;
	struct sigaction sa = { .sa_handler = storm_handler };
	struct signal_storm st = { .target = pthread_self() };
	struct kvm_vm *vm;
	pthread_t thread;
	int round, fd;

	if (!conversion_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP(return, "no KVM_X86_SW_PROTECTED_VM or GUEST_MEMFD_FLAG_CONVERTIBLE");
	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	fd = __vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_CONVERTIBLE |
					       GUEST_MEMFD_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	/* No SA_RESTART: an EINTR would reach the caller. */
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, pthread_create(&thread, NULL, signal_storm_fn, &st));
	for (round = 0; round < 8; round++) {
		int r;

		__atomic_store_n(&st.in_fallocate, true, __ATOMIC_RELEASE);
		r = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, size);
		__atomic_store_n(&st.in_fallocate, false, __ATOMIC_RELEASE);
		ASSERT_EQ(0, r) TH_LOG("round %d: %s", round, strerror(errno));
		ASSERT_EQ(0, fallocate(fd, FALLOC_FL_KEEP_SIZE |
					   FALLOC_FL_PUNCH_HOLE, 0, size));
	}
	__atomic_store_n(&st.stop, true, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	/* Otherwise nothing was shown. */
	ASSERT_GT(st.sent_inside, 0);
	close(fd);
	kvm_vm_free(vm);
}

/*
 * kvm.gmem_in_place_conversion decides what a file created with only
 * GUEST_MEMFD_FLAG_MMAP on a KVM_X86_SW_PROTECTED_VM is.  On: it converts
 * in place through either interface, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES
 * says so, and the VM's memory attributes no longer apply to its GFNs.  Off
 * (the default): it behaves as in 7.3, the VM's memory attributes say what
 * is private, and neither conversion interface takes it.  Files created
 * with GUEST_MEMFD_FLAG_CONVERTIBLE convert either way.
 */
TEST(in_place_parameter)
{
	const uint64_t gpa = 1ULL << 32;
	const int page = getpagesize();
	struct kvm_memory_attributes attr = {
		.address = gpa,
		.size = page,
		.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	struct kvm_vm *vm;
	bool in_place;
	uint8_t *p;
	int fd;

	if (!conversion_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP(return, "no KVM_X86_SW_PROTECTED_VM or GUEST_MEMFD_FLAG_CONVERTIBLE");
	in_place = kvm_get_module_param_bool("kvm", "gmem_in_place_conversion");
	TH_LOG("kvm.gmem_in_place_conversion is %s", in_place ? "on" : "off");
	ASSERT_EQ(in_place, kvm_has_gmem_attributes);
	ASSERT_EQ(in_place ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		  kvm_check_cap(KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES));

	/* A VM without private memory never converts in place. */
	vm = vm_create_barebones_type(KVM_X86_DEFAULT_VM);
	ASSERT_EQ(0, vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES));
	ASSERT_FALSE(vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS) &
		     GUEST_MEMFD_FLAG_CONVERTIBLE);
	kvm_vm_free(vm);

	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	ASSERT_EQ(in_place ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		  vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES));
	fd = __vm_create_guest_memfd(vm, 2 * page, GUEST_MEMFD_FLAG_MMAP);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, __vm_set_user_memory_region2(vm, 1, KVM_MEM_GUEST_MEMFD, gpa,
						  2 * page, p, fd, 0));
	if (in_place) {
		/* Private at first; each interface converts it. */
		host_read(p, false);
		ASSERT_EQ(0, __gmem_set_shared(fd, 0, page, NULL));
		p[0] = 0x3c;
		ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_PRIVATE, 0, page, NULL));
		host_read(p, false);
		ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED, 0, page, NULL));
		ASSERT_EQ(0x3c, p[0]);
		ASSERT_EQ(-1, ioctl(vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr));
		ASSERT_EQ(EPERM, errno);
	} else {
		ASSERT_EQ(-1, __gmem_set_shared(fd, 0, page, NULL));
		ASSERT_EQ(ENOTTY, errno);
		ASSERT_EQ(-EOPNOTSUPP, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED, 0,
						    page, NULL));
		ASSERT_EQ(0, ioctl(vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr));
		attr.attributes = 0;
		ASSERT_EQ(0, ioctl(vm->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr));
	}
	munmap(p, 2 * page);
	close(fd);

	/* CONVERTIBLE: both interfaces, whatever the parameter. */
	fd = __vm_create_guest_memfd(vm, page, GUEST_MEMFD_FLAG_CONVERTIBLE);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	host_read(p, false);
	ASSERT_EQ(0, __gmem_set_shared(fd, 0, page, NULL));
	p[0] = 0x4d;
	ASSERT_EQ(0, __gmem_set_private(fd, 0, page, NULL));
	host_read(p, false);
	ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED, 0, page, NULL));
	ASSERT_EQ(0x4d, p[0]);
	munmap(p, page);
	close(fd);
	kvm_vm_free(vm);
}

/*
 * The state of a file with thousands of single-page shared stretches
 * (a deep tree), merged back by one conversion, several times over: the
 * merge frees a large part of the tree at once.  With the tree freeing
 * it from an RCU callback, this crashed the kernel (KASAN null-ptr-deref
 * in mte_dead_walk()) from the second round on.
 */
#define STRETCHES	4096

TEST(many_stretches_merge)
{
	size_t page = getpagesize();
	size_t size = 2 * STRETCHES * page;
	struct kvm_vm *vm;
	uint64_t error;
	int round, fd;
	uint8_t *p;
	int i;

	if (!conversion_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP(return, "no KVM_X86_SW_PROTECTED_VM or GUEST_MEMFD_FLAG_CONVERTIBLE");
	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	for (round = 0; round < 4; round++) {
		fd = __vm_create_guest_memfd(vm, size, GUEST_MEMFD_FLAG_CONVERTIBLE);
		ASSERT_GE(fd, 0);
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT_NE(MAP_FAILED, p);
		for (i = 0; i < STRETCHES; i++)
			ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED,
						  (uint64_t)2 * i * page, page,
						  NULL));
		/* Every other page is shared, the others are not. */
		for (i = 0; i < 2 * STRETCHES; i += 511)
			host_read(p + (size_t)i * page, !(i % 2));
		ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_PRIVATE, 0, size,
					  &error));
		host_read(p, false);
		ASSERT_EQ(0, munmap(p, size));
		ASSERT_EQ(0, close(fd));
		/* Let the grace period end and any RCU callback run. */
		usleep(100 * 1000);
	}
	kvm_vm_free(vm);
}

/*
 * Private-memory VM types: CONVERTIBLE is reported, implies MMAP, and
 * INIT_SHARED implies CONVERTIBLE (7.3 refuses INIT_SHARED there).
 */
TEST(flag_implications)
{
	struct kvm_vm *vm;
	uint64_t flags;
	uint8_t *p;
	int fd;

	if (!conversion_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP(return, "no KVM_X86_SW_PROTECTED_VM or GUEST_MEMFD_FLAG_CONVERTIBLE");
	vm = vm_create_barebones_type(KVM_X86_SW_PROTECTED_VM);
	flags = vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS);
	ASSERT_TRUE(flags & GUEST_MEMFD_FLAG_CONVERTIBLE);
	ASSERT_TRUE(flags & GUEST_MEMFD_FLAG_INIT_SHARED);

	/* CONVERTIBLE alone: mappable, converts, starts private. */
	fd = __vm_create_guest_memfd(vm, getpagesize(), GUEST_MEMFD_FLAG_CONVERTIBLE);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	host_read(p, false);
	ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_SHARED, 0,
				  getpagesize(), NULL));
	*p = 1;
	munmap(p, getpagesize());
	close(fd);

	/* INIT_SHARED alone: convertible and starts shared. */
	fd = __vm_create_guest_memfd(vm, getpagesize(), GUEST_MEMFD_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, getpagesize(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	*p = 1;
	ASSERT_EQ(0, gmem_convert(fd, KVM_GMEM_CONVERT_PRIVATE, 0,
				  getpagesize(), NULL));
	host_read(p, false);
	munmap(p, getpagesize());
	close(fd);
	kvm_vm_free(vm);
}

TEST_HARNESS_MAIN
