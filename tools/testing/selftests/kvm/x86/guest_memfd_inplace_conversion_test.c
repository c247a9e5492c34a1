// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest-driven in-place conversion: a KVM_X86_SW_PROTECTED_VM whose data
 * lives in one convertible guest_memfd asks for conversions with the
 * MAP_GPA_RANGE hypercall, and the VMM side flips the pages in place with
 * KVM_GMEM_CONVERT_SHARED / KVM_GMEM_CONVERT_PRIVATE, or, in the fixture's
 * other variant, with KVM_SET_MEMORY_ATTRIBUTES2: same pages, no second
 * backing. The guest checks what it reads after every conversion (contents
 * are preserved for SW-protected VMs), and the host checks through its mmap
 * of the file that shared pages hold the guest's data and private pages
 * raise SIGBUS. Each vCPU works on a region of its own, concurrently.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/kvm_para.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "kselftest_harness.h"

#define DATA_SLOT		10
#define DATA_GPA		((u64)1 << 32)
#define PAGES_PER_VCPU		32
#define REGION_SIZE		(PAGES_PER_VCPU * PAGE_SIZE)
#define ROUNDS			6
#define MAX_VCPUS		4

enum {
	SYNC_CHECK_SHARED = 1,	/* args: gpa, size, old pattern, new pattern */
	SYNC_CHECK_PRIVATE,	/* args: region base */
};

/* The sub-range of its region a vCPU converts in round @r. */
static u64 round_offset(int r)
{
	return ((r * 7) % (PAGES_PER_VCPU / 2)) * PAGE_SIZE;
}

static u64 round_size(int r)
{
	return (1 + (r * 5) % (PAGES_PER_VCPU / 2)) * PAGE_SIZE;
}

static void guest_check(u64 gpa, u64 size, u8 pattern)
{
	u8 *p = (u8 *)gpa;
	u64 i;

	for (i = 0; i < size; i += 512)
		__GUEST_ASSERT(p[i] == pattern,
			       "gpa 0x%lx: expected 0x%x, read 0x%x",
			       gpa + i, pattern, p[i]);
}

static void guest_code(u64 base)
{
	int r;

	for (r = 0; r < ROUNDS; r++) {
		u8 mine = 0x10 + r, host = 0x80 + r;
		u64 gpa = base + round_offset(r), size = round_size(r);

		/* The whole region is private: write it. */
		memset((void *)base, mine, REGION_SIZE);

		kvm_hypercall_map_gpa_range(gpa, size, KVM_MAP_GPA_RANGE_DECRYPTED);
		/* In place: the shared pages still hold what was written. */
		guest_check(base, REGION_SIZE, mine);
		GUEST_SYNC5(SYNC_CHECK_SHARED, gpa, size, mine, host);
		/* The host's writes through its mmap are what the guest sees. */
		guest_check(gpa, size, host);

		kvm_hypercall_map_gpa_range(gpa, size, KVM_MAP_GPA_RANGE_ENCRYPTED);
		guest_check(gpa, size, host);
		GUEST_SYNC2(SYNC_CHECK_PRIVATE, base);
	}
	GUEST_DONE();
}

static int gmem_fd;
static u8 *gmem_mem;
static bool run_vcpus;
/* Convert with KVM_SET_MEMORY_ATTRIBUTES2 rather than KVM_GMEM_CONVERT_*. */
static bool use_attributes2;

/* TEST_EXPECT_SIGBUS() has one jump buffer: one vCPU thread at a time. */
static pthread_mutex_t sigbus_lock = PTHREAD_MUTEX_INITIALIZER;

/* A private page must raise SIGBUS when the host reads it. */
static void expect_private(u64 gpa)
{
	volatile u8 *p = gmem_mem + (gpa - DATA_GPA);

	pthread_mutex_lock(&sigbus_lock);
	TEST_EXPECT_SIGBUS((void)*p);
	pthread_mutex_unlock(&sigbus_lock);
}

static int convert(u64 gpa, u64 size, bool private)
{
	int r, tries = 0;

	/* EAGAIN is documented as retryable (transient page references). */
	do {
		if (!use_attributes2)
			r = gmem_convert(gmem_fd, private ? KVM_GMEM_CONVERT_PRIVATE :
							    KVM_GMEM_CONVERT_SHARED,
					 gpa - DATA_GPA, size, NULL);
		else if (__gmem_set_memory_attributes(gmem_fd, gpa - DATA_GPA, size,
						      private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
						      NULL))
			r = -errno;
		else
			r = 0;
	} while (r == -EAGAIN && ++tries < 100);
	return r;
}

static void handle_map_gpa_range(struct kvm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	u64 gpa = run->hypercall.args[0];
	u64 size = run->hypercall.args[1] * PAGE_SIZE;
	bool private = run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED;
	int r;

	TEST_ASSERT_EQ(run->hypercall.nr, KVM_HC_MAP_GPA_RANGE);
	r = convert(gpa, size, private);
	TEST_ASSERT(!r, "convert gpa 0x%lx size 0x%lx to %s: %s", gpa, size,
		    private ? "private" : "shared", strerror(-r));
	run->hypercall.ret = 0;
}

static void check_shared(u64 base, u64 gpa, u64 size, u8 old, u8 new)
{
	u64 a;
	u8 v;

	for (a = base; a < base + REGION_SIZE; a += PAGE_SIZE) {
		if (a < gpa || a >= gpa + size) {
			expect_private(a);
			continue;
		}
		v = gmem_mem[a - DATA_GPA];
		TEST_ASSERT(v == old, "host read 0x%x at gpa 0x%lx, guest wrote 0x%x",
			    v, a, old);
		memset(gmem_mem + (a - DATA_GPA), new, PAGE_SIZE);
	}
}

static void check_private(u64 base)
{
	u64 a;

	for (a = base; a < base + REGION_SIZE; a += PAGE_SIZE)
		expect_private(a);
}

static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct kvm_run *run = vcpu->run;
	struct ucall uc;

	while (!READ_ONCE(run_vcpus))
		;
	for (;;) {
		vcpu_run(vcpu);
		if (run->exit_reason == KVM_EXIT_HYPERCALL) {
			handle_map_gpa_range(vcpu);
			continue;
		}
		if (run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			/*
			 * Not expected (KVM derives the access from the
			 * file's state for SW-protected VMs), but legal: do
			 * what the fault asks for and retry.
			 */
			TEST_ASSERT(!convert(run->memory_fault.gpa, run->memory_fault.size,
					     run->memory_fault.flags &
					     KVM_MEMORY_EXIT_FLAG_PRIVATE),
				    "convert for KVM_EXIT_MEMORY_FAULT");
			continue;
		}
		TEST_ASSERT(run->exit_reason == KVM_EXIT_IO, "exit reason %u (%s)",
			    run->exit_reason, exit_reason_str(run->exit_reason));
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		case UCALL_SYNC:
			if (uc.args[0] == SYNC_CHECK_SHARED)
				check_shared(uc.args[1] & ~(u64)(REGION_SIZE - 1),
					     uc.args[1], uc.args[2], uc.args[3], uc.args[4]);
			else
				check_private(uc.args[1]);
			break;
		case UCALL_DONE:
			return NULL;
		default:
			TEST_FAIL("unknown ucall %lu", uc.cmd);
		}
	}
}

static void run_test(int nr_vcpus, bool attributes2)
{
	const struct vm_shape shape = {
		.mode = VM_MODE_DEFAULT,
		.type = KVM_X86_SW_PROTECTED_VM,
	};
	struct kvm_vcpu *vcpus[MAX_VCPUS];
	pthread_t threads[MAX_VCPUS];
	u64 size = (u64)nr_vcpus * REGION_SIZE;
	u64 flags = GUEST_MEMFD_FLAG_MMAP;
	struct kvm_vm *vm;
	int i;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) &
		     GUEST_MEMFD_FLAG_CONVERTIBLE);

	vm = __vm_create_with_vcpus(shape, nr_vcpus, 0, guest_code, vcpus);
	vm_enable_cap(vm, KVM_CAP_EXIT_HYPERCALL, BIT(KVM_HC_MAP_GPA_RANGE));

	/*
	 * Private at first; the slot's memory is the file, nothing else.  A
	 * VMM written for KVM_SET_MEMORY_ATTRIBUTES2 asks for MMAP alone where
	 * that converts in place; otherwise the file must be CONVERTIBLE.
	 */
	use_attributes2 = attributes2;
	if (!attributes2 || !kvm_has_gmem_attributes)
		flags |= GUEST_MEMFD_FLAG_CONVERTIBLE;
	gmem_fd = vm_create_guest_memfd(vm, size, flags);
	gmem_mem = kvm_mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, gmem_fd);
	vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD, DATA_GPA,
				   size, gmem_mem, gmem_fd, 0);
	/* No KVM_SET_MEMORY_ATTRIBUTES: the file says what is private. */

	for (i = 0; i < nr_vcpus; i++) {
		u64 base = DATA_GPA + i * REGION_SIZE;

		vcpu_args_set(vcpus[i], 1, base);
		virt_map(vm, base, base, PAGES_PER_VCPU);
		pthread_create(&threads[i], NULL, vcpu_thread, vcpus[i]);
	}
	WRITE_ONCE(run_vcpus, true);
	for (i = 0; i < nr_vcpus; i++)
		pthread_join(threads[i], NULL);

	kvm_vm_free(vm);
	munmap(gmem_mem, size);
	close(gmem_fd);
}

/*
 * A failing conversion with vCPU faults around it: the guest keeps writing
 * and checking its private pages while the host converts them to shared
 * with the step made to fail (the debugfs mock client's "fail") at a
 * different page each time.  Each conversion fails with that page as
 * error_offset and leaves every page private; the guest, whose mappings
 * each attempt zapped, faults them back in and finds its data.
 */
#define GMEM_TEST_CLIENT	"/sys/kernel/debug/guest_memfd_test/client"
#define FAILING_CONVERSIONS	48

static void guest_code_faults(u64 base)
{
	u64 pass = 0, a;

	for (;;) {
		for (a = base; a < base + REGION_SIZE; a += PAGE_SIZE) {
			__GUEST_ASSERT(!pass || *(u64 *)a == pass,
				       "gpa 0x%lx: expected 0x%lx, read 0x%lx",
				       a, pass, *(u64 *)a);
			*(u64 *)a = pass + 1;
		}
		pass++;
		GUEST_SYNC(pass);
	}
}

static volatile u64 guest_passes;
static volatile bool stop_vcpu;

static void *faulting_vcpu_thread(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct ucall uc;

	while (!stop_vcpu) {
		vcpu_run(vcpu);
		TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO,
			    "exit reason %u (%s)", vcpu->run->exit_reason,
			    exit_reason_str(vcpu->run->exit_reason));
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
		case UCALL_SYNC:
			guest_passes = uc.args[1];
			break;
		default:
			TEST_FAIL("unknown ucall %lu", uc.cmd);
		}
	}
	return NULL;
}

static void wait_for_pass(u64 pass)
{
	while (guest_passes < pass)
		sched_yield();
}

static void run_failing_conversions(bool attributes2)
{
	u64 flags = GUEST_MEMFD_FLAG_MMAP;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	struct kvm_vm *vm;
	char cmd[64];
	int cfd, i;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) &
		     GUEST_MEMFD_FLAG_CONVERTIBLE);
	cfd = open(GMEM_TEST_CLIENT, O_RDWR | O_CLOEXEC);
	__TEST_REQUIRE(cfd >= 0, "no " GMEM_TEST_CLIENT);

	vm = __vm_create_with_vcpus((struct vm_shape){
					    .mode = VM_MODE_DEFAULT,
					    .type = KVM_X86_SW_PROTECTED_VM,
				    }, 1, 0, guest_code_faults, &vcpu);
	use_attributes2 = attributes2;
	if (!attributes2 || !kvm_has_gmem_attributes)
		flags |= GUEST_MEMFD_FLAG_CONVERTIBLE;
	gmem_fd = vm_create_guest_memfd(vm, REGION_SIZE, flags);
	gmem_mem = kvm_mmap(REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
			    gmem_fd);
	vm_set_user_memory_region2(vm, DATA_SLOT, KVM_MEM_GUEST_MEMFD, DATA_GPA,
				   REGION_SIZE, gmem_mem, gmem_fd, 0);
	vcpu_args_set(vcpu, 1, DATA_GPA);
	virt_map(vm, DATA_GPA, DATA_GPA, PAGES_PER_VCPU);

	snprintf(cmd, sizeof(cmd), "attach %d", gmem_fd);
	TEST_ASSERT(write(cfd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd),
		    "attach the mock client");
	TEST_ASSERT(write(cfd, "tap", 3) == 3, "tap the step");

	guest_passes = 0;
	stop_vcpu = false;
	pthread_create(&thread, NULL, faulting_vcpu_thread, vcpu);
	/* After the first pass, every page is allocated. */
	wait_for_pass(1);

	for (i = 0; i < FAILING_CONVERSIONS; i++) {
		u64 fail = (i * 13) % PAGES_PER_VCPU * PAGE_SIZE;
		u64 pass = guest_passes;
		u64 error_offset = -1;
		int r;

		snprintf(cmd, sizeof(cmd), "fail %d %lu", EIO, fail);
		TEST_ASSERT(write(cfd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd),
			    "arm the failure");
		TEST_ASSERT(write(cfd, "clear", 5) == 5, "clear the log");
		if (!attributes2) {
			r = gmem_convert(gmem_fd, KVM_GMEM_CONVERT_SHARED, 0,
					 REGION_SIZE, &error_offset);
		} else {
			loff_t eo = -1;

			r = __gmem_set_memory_attributes(gmem_fd, 0, REGION_SIZE,
							 0, &eo) ? -errno : 0;
			error_offset = eo;
		}
		TEST_ASSERT(r == -EIO && error_offset == fail,
			    "conversion %d: %d at 0x%lx, expected -EIO at 0x%lx",
			    i, r, error_offset, fail);
		expect_private(DATA_GPA + fail);
		/* The guest faults its pages back in, data intact. */
		wait_for_pass(pass + 2);
	}
	for (i = 0; i < PAGES_PER_VCPU; i++)
		expect_private(DATA_GPA + i * PAGE_SIZE);

	stop_vcpu = true;
	pthread_join(thread, NULL);
	close(cfd);
	kvm_vm_free(vm);
	munmap(gmem_mem, REGION_SIZE);
	close(gmem_fd);
}

FIXTURE(inplace) {
};

FIXTURE_VARIANT(inplace) {
	bool attributes2;
};

FIXTURE_VARIANT_ADD(inplace, convert) {
	.attributes2 = false,
};

FIXTURE_VARIANT_ADD(inplace, attributes2) {
	.attributes2 = true,
};

FIXTURE_SETUP(inplace)
{
}

FIXTURE_TEARDOWN(inplace)
{
}

TEST_F(inplace, one_vcpu)
{
	run_test(1, variant->attributes2);
}

TEST_F(inplace, four_vcpus)
{
	run_test(4, variant->attributes2);
}

TEST_F(inplace, failing_conversions_with_vcpu_faults)
{
	run_failing_conversions(variant->attributes2);
}

TEST_HARNESS_MAIN
