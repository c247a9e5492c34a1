// SPDX-License-Identifier: GPL-2.0-only
/*
 * IOMMU_IOAS_MAP_FILE of a convertible guest_memfd: the IOAS mirrors the file
 * without pinning it. Every mock domain of the IOAS must map exactly the
 * pages of the range that are shared and allocated, and follow every
 * conversion, hole punch, fallocate() and memory failure of the file.
 *
 * Each test keeps a model of the file (shared, allocated, poisoned per page)
 * and of the areas mapped, and check_mirror() compares every mock domain with
 * it page by page (IOMMU_TEST_OP_MD_CHECK_GMEM), and the counts of
 * IOMMU_IOAS_MIRROR_STATUS. If the guest_memfd debugfs mock client exists,
 * it also checks which file pages are allocated.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "iommufd_utils.h"
#include "iommufd_gmem_utils.h"

#define NR_PAGES	16
#define MAX_AREAS	2
/* Areas are 1 MiB apart, inside the mock aperture */
#define AREA_IOVA(n)	(MOCK_APERTURE_START + (__u64)(n) * 1024 * 1024)

static __attribute__((constructor)) void setup_sizes(void)
{
	PAGE_SIZE = sysconf(_SC_PAGE_SIZE);
	BUFFER_SIZE = PAGE_SIZE * 16;
	buffer = mmap(0, BUFFER_SIZE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert(buffer != MAP_FAILED);
	mfd_buffer = memfd_mmap(BUFFER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
				&mfd);
	assert(mfd_buffer != MAP_FAILED);
}

struct gmem_area {
	__u64 iova;
	unsigned int first;	/* first file page */
	unsigned int npages;
};

FIXTURE(iommufd_gmem)
{
	int fd;
	__u32 ioas_id;
	__u32 stdev_id;
	__u32 idev_id;
	__u32 hwpt_ids[GMEM_MAX_DOMAINS];
	unsigned int ndomains;
	int vm_fd;
	int gmem_fd;
	size_t size;
	__u8 *mem;
	/* The model: what the file is and what is mapped where */
	bool shared[NR_PAGES];
	bool allocated[NR_PAGES];
	bool poisoned[NR_PAGES];
	struct gmem_area areas[MAX_AREAS];
	unsigned int nareas;
};

FIXTURE_VARIANT(iommufd_gmem)
{
	unsigned int mock_domains;
	bool init_shared;
};

FIXTURE_VARIANT_ADD(iommufd_gmem, no_domain)
{
	.mock_domains = 0,
};

FIXTURE_VARIANT_ADD(iommufd_gmem, no_domain_init_shared)
{
	.mock_domains = 0,
	.init_shared = true,
};

FIXTURE_VARIANT_ADD(iommufd_gmem, one_domain)
{
	.mock_domains = 1,
};

FIXTURE_VARIANT_ADD(iommufd_gmem, one_domain_init_shared)
{
	.mock_domains = 1,
	.init_shared = true,
};

FIXTURE_VARIANT_ADD(iommufd_gmem, two_domains)
{
	.mock_domains = 2,
};

FIXTURE_VARIANT_ADD(iommufd_gmem, two_domains_init_shared)
{
	.mock_domains = 2,
	.init_shared = true,
};

/*
 * One more mock domain on the IOAS. A second mock device would share the
 * first one's automatic domain, so further domains are allocated as paging
 * HWPTs of the first device: each is a distinct domain of the IOAS.
 */
static void add_domain(struct __test_metadata *_metadata,
		       FIXTURE_DATA(iommufd_gmem) *self)
{
	__u32 *hwpt_id = &self->hwpt_ids[self->ndomains];

	ASSERT_GT(GMEM_MAX_DOMAINS, self->ndomains);
	if (!self->ndomains) {
		test_cmd_mock_domain(self->ioas_id, &self->stdev_id, hwpt_id,
				     &self->idev_id);
	} else {
		test_cmd_hwpt_alloc(self->idev_id, self->ioas_id, 0, hwpt_id);
	}
	self->ndomains++;
}

FIXTURE_SETUP(iommufd_gmem)
{
	const char *skip = NULL;
	unsigned int i;
	int r;

	self->vm_fd = -1;
	self->gmem_fd = -1;
	self->mem = MAP_FAILED;
	self->nareas = 0;
	self->size = NR_PAGES * PAGE_SIZE;

	self->fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, self->fd);

	r = gmem_vm_create(self->size,
			   variant->init_shared ? GUEST_MEMFD_FLAG_INIT_SHARED : 0,
			   &self->vm_fd, &self->gmem_fd, &skip);
	if (r == 1)
		SKIP(return, "%s", skip);
	ASSERT_EQ(0, r);
	self->mem = mmap(NULL, self->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 self->gmem_fd, 0);
	ASSERT_NE(MAP_FAILED, self->mem);

	test_ioctl_ioas_alloc(&self->ioas_id);
	ASSERT_GE(GMEM_MAX_DOMAINS - 1, variant->mock_domains);
	self->ndomains = 0;
	for (i = 0; i != variant->mock_domains; i++)
		add_domain(_metadata, self);

	for (i = 0; i != NR_PAGES; i++) {
		self->shared[i] = variant->init_shared;
		self->allocated[i] = false;
		self->poisoned[i] = false;
	}
}

FIXTURE_TEARDOWN(iommufd_gmem)
{
	if (self->mem != MAP_FAILED)
		munmap(self->mem, self->size);
	teardown_iommufd(self->fd, _metadata);
	if (self->gmem_fd >= 0)
		close(self->gmem_fd);
	if (self->vm_fd >= 0)
		close(self->vm_fd);
}

#define page_off(i)	((__u64)(i) * PAGE_SIZE)

static bool in_area(FIXTURE_DATA(iommufd_gmem) *self, unsigned int page)
{
	unsigned int a;

	for (a = 0; a != self->nareas; a++)
		if (page >= self->areas[a].first &&
		    page < self->areas[a].first + self->areas[a].npages)
			return true;
	return false;
}

static bool expect_mapped(FIXTURE_DATA(iommufd_gmem) *self, unsigned int page)
{
	return self->shared[page] && self->allocated[page] &&
	       !self->poisoned[page];
}

/* With the mock client, every page is allocated exactly as the model says. */
static void check_allocation(struct __test_metadata *_metadata,
			     FIXTURE_DATA(iommufd_gmem) *self)
{
	unsigned int i;
	int cfd, err;

	cfd = gmem_client_open();
	if (cfd < 0)
		return;
	ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", self->gmem_fd));
	for (i = 0; i != NR_PAGES; i++) {
		if (self->poisoned[i])
			continue;
		err = gmem_client_cmd(cfd, "lookup %llu %s", page_off(i),
				      self->shared[i] ? "shared" : "private");
		ASSERT_EQ(self->allocated[i] ? 0 : ENOENT, err)
			TH_LOG("page %u (%s) should %sbe allocated", i,
			       self->shared[i] ? "shared" : "private",
			       self->allocated[i] ? "" : "not ");
	}
	close(cfd);
}

/* The area's mirror status and, unless @io is NULL, its IOPTE counters */
static void get_status(struct __test_metadata *_metadata,
		       FIXTURE_DATA(iommufd_gmem) *self, unsigned int area,
		       struct iommu_ioas_mirror_status *st,
		       struct gmem_iopte_count *io)
{
	ASSERT_EQ(0, _test_ioctl_mirror_status(self->fd, self->ioas_id,
					       self->areas[area].iova, 0, st));
	if (io)
		ASSERT_EQ(0, _test_cmd_gmem_iopte_count(self->fd,
							self->ioas_id,
							self->areas[area].iova,
							io));
}

static unsigned int area_expected(FIXTURE_DATA(iommufd_gmem) *self,
				  const struct gmem_area *a)
{
	unsigned int i, n = 0;

	for (i = 0; i != a->npages; i++)
		n += expect_mapped(self, a->first + i);
	return n;
}

static void check_area(struct __test_metadata *_metadata,
		       FIXTURE_DATA(iommufd_gmem) *self,
		       const struct gmem_area *a)
{
	struct iommu_ioas_mirror_status st;
	struct gmem_iopte_count st_io;
	unsigned int i, d, mapped = area_expected(self, a);

	for (i = 0; i != a->npages; i++) {
		unsigned int p = a->first + i;
		__u64 iova = a->iova + page_off(i);
		bool exp = expect_mapped(self, p);
		__u32 flags = exp ? 0 : MOCK_CHECK_GMEM_UNMAPPED;

		for (d = 0; d != self->ndomains; d++) {
			ASSERT_EQ(0, _test_cmd_md_check_gmem(self->fd,
							     self->hwpt_ids[d],
							     iova, PAGE_SIZE,
							     self->gmem_fd,
							     page_off(p), flags))
				TH_LOG("domain %u, iova 0x%llx: page %u should %s (errno %d)",
				       d, (unsigned long long)iova, p,
				       exp ? "be mapped" : "map nothing",
				       errno);
		}
	}
	/* Nothing right after the area */
	for (d = 0; d != self->ndomains; d++) {
		test_cmd_md_check_gmem_unmapped(self->hwpt_ids[d],
						a->iova + page_off(a->npages),
						PAGE_SIZE, self->gmem_fd, 0);
	}

	/* Any IOVA of the area names it: ask with its last byte */
	ASSERT_EQ(0, _test_ioctl_mirror_status(self->fd, self->ioas_id,
					       a->iova + page_off(a->npages) - 1,
					       0, &st));
	ASSERT_EQ(0, _test_cmd_gmem_iopte_count(self->fd, self->ioas_id,
						a->iova, &st_io));
	ASSERT_EQ(a->iova, st.out_iova);
	ASSERT_EQ(page_off(a->npages), st.out_length);
	ASSERT_EQ(mapped, st.out_mapped_pages);
	ASSERT_EQ(0, st.out_pending_pages);
	ASSERT_EQ(0, st.out_error);
	ASSERT_EQ((__u64)mapped * self->ndomains,
		  st_io.adds - st_io.removes);
	if (!self->ndomains) {
		ASSERT_EQ(0, st_io.adds);
		ASSERT_EQ(0, st_io.removes);
	}
}

static void __check_mirror(struct __test_metadata *_metadata,
			   FIXTURE_DATA(iommufd_gmem) *self)
{
	unsigned int a;

	for (a = 0; a != self->nareas; a++)
		check_area(_metadata, self, &self->areas[a]);
	check_allocation(_metadata, self);
}
#define check_mirror() __check_mirror(_metadata, self)

static void __map_area(struct __test_metadata *_metadata,
		       FIXTURE_DATA(iommufd_gmem) *self, unsigned int first,
		       unsigned int npages, __u64 iova)
{
	struct gmem_area *a = &self->areas[self->nareas];
	unsigned int i;

	ASSERT_GT(MAX_AREAS, self->nareas);
	test_ioctl_ioas_map_fixed_file(self->gmem_fd, page_off(first),
				       page_off(npages), iova);
	a->iova = iova;
	a->first = first;
	a->npages = npages;
	self->nareas++;
	/* Mapping allocates the shared pages of the range */
	for (i = first; i != first + npages; i++)
		if (self->shared[i])
			self->allocated[i] = true;
}
#define map_area(first, npages, iova) \
	__map_area(_metadata, self, first, npages, iova)

static void __unmap_area(struct __test_metadata *_metadata,
			 FIXTURE_DATA(iommufd_gmem) *self, unsigned int area)
{
	struct gmem_area *a = &self->areas[area];

	test_ioctl_ioas_unmap(a->iova, page_off(a->npages));
	memmove(a, a + 1, (self->nareas - area - 1) * sizeof(*a));
	self->nareas--;
}
#define unmap_area(area) __unmap_area(_metadata, self, area)

static void __convert(struct __test_metadata *_metadata,
		      FIXTURE_DATA(iommufd_gmem) *self, unsigned int first,
		      unsigned int n, bool shared)
{
	unsigned int i;

	ASSERT_EQ(0, gmem_convert(self->gmem_fd,
				  shared ? KVM_GMEM_CONVERT_SHARED :
					   KVM_GMEM_CONVERT_PRIVATE,
				  page_off(first), page_off(n), NULL));
	for (i = first; i != first + n; i++) {
		/* A page going shared inside an area is allocated and mapped */
		if (shared && !self->shared[i] && in_area(self, i))
			self->allocated[i] = true;
		self->shared[i] = shared;
	}
}
#define to_shared(first, n)	__convert(_metadata, self, first, n, true)
#define to_private(first, n)	__convert(_metadata, self, first, n, false)

static void __punch(struct __test_metadata *_metadata,
		    FIXTURE_DATA(iommufd_gmem) *self, unsigned int first,
		    unsigned int n)
{
	unsigned int i;

	ASSERT_EQ(0, fallocate(self->gmem_fd,
			       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       page_off(first), page_off(n)));
	for (i = first; i != first + n; i++)
		self->allocated[i] = false;
}
#define punch(first, n)	__punch(_metadata, self, first, n)

static void __populate(struct __test_metadata *_metadata,
		       FIXTURE_DATA(iommufd_gmem) *self, unsigned int first,
		       unsigned int n)
{
	unsigned int i;

	ASSERT_EQ(0, fallocate(self->gmem_fd, FALLOC_FL_KEEP_SIZE,
			       page_off(first), page_off(n)));
	for (i = first; i != first + n; i++)
		self->allocated[i] = true;
}
#define populate(first, n)	__populate(_metadata, self, first, n)

/*
 * Convert the pages that differ to @layout, one character per page: 'S'
 * shared, 'P' private.
 */
static void __set_layout(struct __test_metadata *_metadata,
			 FIXTURE_DATA(iommufd_gmem) *self, const char *layout)
{
	unsigned int i;

	ASSERT_EQ(NR_PAGES, strlen(layout));
	for (i = 0; i != NR_PAGES; i++) {
		bool shared = layout[i] == 'S';

		if (shared != self->shared[i])
			__convert(_metadata, self, i, 1, shared);
	}
}
#define set_layout(layout) __set_layout(_metadata, self, layout)

static int access_rw(int fd, __u32 access_id, __u64 iova, void *buf,
		     size_t length, __u32 flags)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_ACCESS_RW,
		.id = access_id,
		.access_rw = {
			.iova = iova,
			.length = length,
			.uptr = (uintptr_t)buf,
			.flags = flags,
		},
	};

	return ioctl(fd, _IOMMU_TEST_CMD(IOMMU_TEST_OP_ACCESS_RW), &cmd);
}

#define MIXED "SSPPSPSPPPSSSSPS"

/* The shared pages of a mixed range are mapped, the private ones are not. */
TEST_F(iommufd_gmem, map_mixed)
{
	struct iommu_ioas_mirror_status st;
	struct gmem_iopte_count st_io;
	unsigned int d;

	set_layout(MIXED);
	check_mirror();
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	get_status(_metadata, self, 0, &st, &st_io);
	ASSERT_EQ((__u64)area_expected(self, &self->areas[0]) * self->ndomains,
		  st_io.adds);
	ASSERT_EQ(0, st_io.removes);
	/* Runs of shared and of private pages also check in one call */
	for (d = 0; d != self->ndomains; d++) {
		test_cmd_md_check_gmem(self->hwpt_ids[d],
				       AREA_IOVA(0) + page_off(10),
				       page_off(4), self->gmem_fd,
				       page_off(10));
		test_cmd_md_check_gmem_unmapped(self->hwpt_ids[d],
						AREA_IOVA(0) + page_off(7),
						page_off(3), self->gmem_fd,
						page_off(7));
		/* A range with a mapped page does not map nothing */
		EXPECT_ERRNO(EINVAL,
			     _test_cmd_md_check_gmem(self->fd, self->hwpt_ids[d],
						     AREA_IOVA(0) + page_off(6),
						     page_off(2), self->gmem_fd,
						     page_off(6),
						     MOCK_CHECK_GMEM_UNMAPPED));
	}
}

/*
 * A range from the middle of the file, and a second area overlapping it:
 * pages outside both stay unallocated, conversions change both areas.
 */
TEST_F(iommufd_gmem, map_subrange_and_overlap)
{
	struct iommu_ioas_mirror_status st0, st1, st;
	struct gmem_iopte_count st_io, st0_io, st1_io;

	set_layout("SSSSSSPPSSSSPPSS");
	map_area(4, 8, AREA_IOVA(0));
	check_mirror();
	map_area(8, 8, AREA_IOVA(1));
	check_mirror();

	to_private(8, 4);
	check_mirror();
	to_shared(8, 6);
	check_mirror();

	/* Pages outside every area: nothing changes in the mirror */
	get_status(_metadata, self, 0, &st0, &st0_io);
	get_status(_metadata, self, 1, &st1, &st1_io);
	to_private(0, 4);
	to_shared(0, 2);
	check_mirror();
	get_status(_metadata, self, 0, &st, &st_io);
	ASSERT_EQ(st0_io.adds, st_io.adds);
	ASSERT_EQ(st0_io.removes, st_io.removes);
	get_status(_metadata, self, 1, &st, &st_io);
	ASSERT_EQ(st1_io.adds, st_io.adds);
	ASSERT_EQ(st1_io.removes, st_io.removes);

	unmap_area(0);
	check_mirror();
}

/*
 * To-private of a mapped range succeeds (no EAGAIN: nothing is pinned) and
 * removes exactly the IOPTEs of the pages that were shared.
 */
TEST_F(iommufd_gmem, to_private)
{
	struct iommu_ioas_mirror_status before, after;
	struct gmem_iopte_count after_io, before_io;
	unsigned int i, lost = 0;

	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	get_status(_metadata, self, 0, &before, &before_io);
	for (i = 2; i != 10; i++)
		lost += expect_mapped(self, i);
	to_private(2, 8);
	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(before_io.adds, after_io.adds);
	ASSERT_EQ(before_io.removes + (__u64)lost * self->ndomains,
		  after_io.removes);
	ASSERT_EQ(before.out_mapped_pages - lost, after.out_mapped_pages);

	/* Converting pages already private changes nothing */
	to_private(2, 8);
	check_mirror();
	get_status(_metadata, self, 0, &before, &before_io);
	ASSERT_EQ(after_io.adds, before_io.adds);
	ASSERT_EQ(after_io.removes, before_io.removes);

	/* Everything private: nothing left mapped */
	to_private(0, NR_PAGES);
	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(0, after.out_mapped_pages);
}

/*
 * To-shared maps the pages again, the same pages (their contents survive),
 * and allocates pages of the area that never were.
 */
TEST_F(iommufd_gmem, to_shared)
{
	struct iommu_ioas_mirror_status before, after;
	struct gmem_iopte_count after_io, before_io;
	__u8 *page = malloc(PAGE_SIZE);
	unsigned int i;

	ASSERT_NE(NULL, page);
	set_layout("SSSSSSSSPPPPPPPP");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
	for (i = 0; i != 8; i++)
		memset(self->mem + page_off(i), 0x40 + i, PAGE_SIZE);

	to_private(0, 8);
	check_mirror();
	get_status(_metadata, self, 0, &before, &before_io);
	to_shared(0, 8);
	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(before_io.adds + 8ULL * self->ndomains, after_io.adds);
	ASSERT_EQ(before_io.removes, after_io.removes);
	for (i = 0; i != 8; i++) {
		memset(page, 0x40 + i, PAGE_SIZE);
		ASSERT_EQ(0, memcmp(page, self->mem + page_off(i), PAGE_SIZE));
	}

	/* Private pages never allocated: to-shared allocates and maps them */
	to_shared(10, 4);
	check_mirror();
	get_status(_metadata, self, 0, &before, &before_io);
	ASSERT_EQ(12, before.out_mapped_pages);

	/* Converting pages already shared changes nothing */
	to_shared(0, 8);
	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(before_io.adds, after_io.adds);
	ASSERT_EQ(before_io.removes, after_io.removes);

	/* Round trips, page by page */
	for (i = 0; i < NR_PAGES; i += 3) {
		bool shared = self->shared[i];

		__convert(_metadata, self, i, 1, !shared);
		check_mirror();
		__convert(_metadata, self, i, 1, shared);
		check_mirror();
	}
	free(page);
}

/*
 * A hole punch unmaps; the pages stay unmapped until they are allocated
 * again by fallocate(), or converted to shared.
 */
TEST_F(iommufd_gmem, hole_punch_and_populate)
{
	set_layout("SSSSSSSSPPPPSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	punch(2, 4);
	punch(8, 2);
	check_mirror();

	populate(2, 2);
	check_mirror();

	/* Shared, punched: private then shared again allocates and maps it */
	to_private(4, 1);
	check_mirror();
	to_shared(4, 1);
	check_mirror();

	/* Page 5 is still a hole until the whole file is allocated */
	populate(0, NR_PAGES);
	check_mirror();

	punch(0, NR_PAGES);
	check_mirror();
	populate(0, NR_PAGES);
	check_mirror();
}

/* After IOAS_UNMAP the file converts and punches freely, nothing is mapped. */
TEST_F(iommufd_gmem, unmap_then_convert)
{
	unsigned int d;
	int rc;

	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	/*
	 * Part of a guest_memfd area cannot be unmapped. The errno is ENOENT
	 * for any area cut in two; the UAPI comment of MAP_FILE says
	 * EOPNOTSUPP for guest_memfd: take either, nothing may change.
	 */
	rc = _test_ioctl_ioas_unmap(self->fd, self->ioas_id, AREA_IOVA(0),
				    PAGE_SIZE, NULL);
	ASSERT_EQ(-1, rc);
	ASSERT_TRUE(errno == ENOENT || errno == EOPNOTSUPP)
		TH_LOG("partial unmap: errno %d", errno);
	check_mirror();

	unmap_area(0);
	test_err_mirror_status(ENOENT, AREA_IOVA(0));
	for (d = 0; d != self->ndomains; d++) {
		test_cmd_md_check_gmem_unmapped(self->hwpt_ids[d],
						AREA_IOVA(0), self->size,
						self->gmem_fd, 0);
	}

	to_private(0, NR_PAGES);
	to_shared(0, NR_PAGES);
	punch(0, NR_PAGES);
	to_private(0, 8);
	populate(4, 8);
	check_mirror();
	for (d = 0; d != self->ndomains; d++) {
		test_cmd_md_check_gmem_unmapped(self->hwpt_ids[d],
						AREA_IOVA(0), self->size,
						self->gmem_fd, 0);
	}

	/* And it maps again as before */
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
}

/*
 * Closing the guest_memfd and the VM while mapped: the mapping holds
 * neither (only the file's inode, through its notifier), so the file is
 * released, the VM freed, and the mirror sees the release: every IOPTE is
 * removed and nothing is reachable through the IOVA any more. The area
 * stays, mapping nothing, until it is unmapped.
 */
TEST_F(iommufd_gmem, close_gmem_while_mapped)
{
	struct iommu_ioas_mirror_status before, after;
	struct gmem_iopte_count after_io, before_io;
	bool have_vm_dir;
	char vm_dir[64];
	__u8 data[64];
	__u32 access_id;
	int cfd, i;

	set_layout("SSSSSSSSPPPPPPPP");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
	memset(self->mem + page_off(3), 0x5a, PAGE_SIZE);
	/* An mmap holds the file too */
	ASSERT_EQ(0, munmap(self->mem, self->size));
	self->mem = MAP_FAILED;

	test_cmd_create_access(self->ioas_id, &access_id, 0);
	ASSERT_EQ(0, access_rw(self->fd, access_id,
			       AREA_IOVA(0) + page_off(3) + 100, data,
			       sizeof(data), 0));
	cfd = gmem_client_open();
	if (cfd >= 0) {
		ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", self->gmem_fd));
	} else {
		TH_LOG("no %s: release not checked", GMEM_TEST_CLIENT);
	}
	/* KVM's debugfs directory of the VM, "PID-FD", goes when it is freed */
	snprintf(vm_dir, sizeof(vm_dir), "/sys/kernel/debug/kvm/%d-%d",
		 getpid(), self->vm_fd);
	have_vm_dir = !access(vm_dir, F_OK);
	if (!have_vm_dir)
		TH_LOG("no %s: the VM's freeing not checked", vm_dir);

	get_status(_metadata, self, 0, &before, &before_io);
	ASSERT_EQ(8, before.out_mapped_pages);
	ASSERT_EQ(0, close(self->gmem_fd));
	self->gmem_fd = -1;
	ASSERT_EQ(0, close(self->vm_fd));
	self->vm_fd = -1;

	/*
	 * The release may be deferred a little after the last fput(): wait
	 * up to 30 s, which a slow TCG host needs far less than.
	 */
	for (i = 0; i != 3000; i++) {
		get_status(_metadata, self, 0, &after, &after_io);
		if (!after.out_mapped_pages &&
		    (!have_vm_dir || access(vm_dir, F_OK)))
			break;
		usleep(10000);
	}
	ASSERT_EQ(0, after.out_mapped_pages);
	ASSERT_EQ(0, after.out_pending_pages);
	ASSERT_EQ(0, after.out_error);
	ASSERT_EQ(before_io.adds, after_io.adds);
	ASSERT_EQ(before_io.removes + 8 * self->ndomains, after_io.removes);
	if (have_vm_dir) {
		ASSERT_NE(0, access(vm_dir, F_OK)) TH_LOG("the VM was not freed");
	}
	if (cfd >= 0) {
		ASSERT_EQ(1, gmem_client_count(cfd, "begin", "release", 0,
					       self->size));
		ASSERT_EQ(1, gmem_client_count(cfd, "end", "release", 0,
					       self->size));
		close(cfd);
	}

	/* The data is no longer reachable through the IOVA */
	ASSERT_NE(0, access_rw(self->fd, access_id,
			       AREA_IOVA(0) + page_off(3) + 100, data,
			       sizeof(data), 0));
	test_cmd_destroy_access(access_id);

	unmap_area(0);
	test_err_mirror_status(ENOENT, AREA_IOVA(0));
}

/* Nothing is pinned, so to-private of mmapped, mapped pages just works. */
TEST_F(iommufd_gmem, no_pins)
{
	struct iommu_ioas_mirror_status before, after;
	struct gmem_iopte_count after_io, before_io;

	set_layout("SSSSSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
	memset(self->mem, 0x11, self->size);
	check_refs(self->mem, self->size, 0);

	get_status(_metadata, self, 0, &before, &before_io);
	to_private(0, NR_PAGES);
	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(0, after.out_mapped_pages);
	ASSERT_EQ(before_io.removes + (__u64)NR_PAGES * self->ndomains,
		  after_io.removes);

	to_shared(0, NR_PAGES);
	check_mirror();
	check_refs(self->mem, self->size, 0);
	ASSERT_EQ(0x11, self->mem[page_off(NR_PAGES) - 1]);
}

/*
 * A domain attached after the map gets exactly the mirror (in the variant
 * without domains, this is the first one), and follows changes from then on.
 */
TEST_F(iommufd_gmem, domain_attached_after_map)
{
	struct iommu_ioas_mirror_status before, after;
	struct gmem_iopte_count after_io, before_io;
	unsigned int n = self->ndomains;

	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	get_status(_metadata, self, 0, &before, &before_io);
	add_domain(_metadata, self);
	ASSERT_EQ(n + 1, self->ndomains);
	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(before.out_mapped_pages, after.out_mapped_pages);
	ASSERT_EQ(before_io.adds + before.out_mapped_pages, after_io.adds);
	ASSERT_EQ(before_io.removes, after_io.removes);

	to_private(0, 6);
	check_mirror();
	to_shared(2, 10);
	check_mirror();
	punch(3, 2);
	check_mirror();
	populate(0, NR_PAGES);
	check_mirror();
}

#define err_map_gmem(_errno, gmem_fd, start, length)                      \
	({                                                                \
		__u64 __iova = AREA_IOVA(0);                              \
		EXPECT_ERRNO(_errno,                                      \
			     _test_ioctl_ioas_map_file(                   \
				     self->fd, self->ioas_id, gmem_fd,    \
				     start, length, &__iova,              \
				     IOMMU_IOAS_MAP_FIXED_IOVA |          \
					     IOMMU_IOAS_MAP_WRITEABLE |   \
					     IOMMU_IOAS_MAP_READABLE));   \
	})

/* MAP_FILE: EINVAL for a range off page boundaries or beyond the file,
 * EOPNOTSUPP for a guest_memfd that is not convertible; nothing happens.
 */
TEST_F(iommufd_gmem, map_file_errors)
{
	unsigned int d;
	int fd;

	set_layout(MIXED);

	err_map_gmem(EINVAL, self->gmem_fd, PAGE_SIZE / 2, PAGE_SIZE);
	err_map_gmem(EINVAL, self->gmem_fd, 0, PAGE_SIZE / 2);
	err_map_gmem(EINVAL, self->gmem_fd, 0, PAGE_SIZE + PAGE_SIZE / 2);
	err_map_gmem(EINVAL, self->gmem_fd, self->size - PAGE_SIZE,
		     2 * PAGE_SIZE);
	err_map_gmem(EINVAL, self->gmem_fd, self->size, PAGE_SIZE);
	err_map_gmem(EINVAL, self->gmem_fd, 0, 2 * self->size);

	/* A guest_memfd without GUEST_MEMFD_FLAG_CONVERTIBLE */
	fd = gmem_create(self->vm_fd, self->size, 0);
	ASSERT_LE(0, fd);
	err_map_gmem(EOPNOTSUPP, fd, 0, self->size);
	close(fd);

	/*
	 * Files that are no guest_memfd and no memfd: /dev/kvm, the VM, the
	 * iommufd itself; and a closed fd. Without a domain, 7.3's iommufd
	 * takes any file at map time (it only looks at the pages when a
	 * domain or an access needs them): not this series' to change.
	 */
	fd = open("/dev/kvm", O_RDWR);
	ASSERT_LE(0, fd);
	if (self->ndomains) {
		err_map_gmem(EINVAL, fd, 0, PAGE_SIZE);
		err_map_gmem(EINVAL, self->vm_fd, 0, PAGE_SIZE);
		err_map_gmem(EINVAL, self->fd, 0, PAGE_SIZE);
	}
	close(fd);
	err_map_gmem(EBADF, fd, 0, PAGE_SIZE);

	/* Nothing mapped, nothing allocated, no area left behind */
	test_err_mirror_status(ENOENT, AREA_IOVA(0));
	for (d = 0; d != self->ndomains; d++) {
		test_cmd_md_check_gmem_unmapped(self->hwpt_ids[d],
						AREA_IOVA(0), self->size,
						self->gmem_fd, 0);
	}
	check_mirror();

	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
}

/*
 * MIRROR_STATUS: any IOVA of the area names it; ENOENT where nothing is
 * mapped, EINVAL on an area that is not of a guest_memfd.
 */
TEST_F(iommufd_gmem, mirror_status_errors)
{
	struct iommu_ioas_mirror_status st, retry;
	struct gmem_iopte_count retry_io, st_io;
	unsigned int bit;
	__u64 iova;

	test_err_mirror_status(ENOENT, AREA_IOVA(0));
	set_layout(MIXED);
	map_area(4, 8, AREA_IOVA(0));
	check_mirror();

	for (iova = AREA_IOVA(0); iova < AREA_IOVA(0) + page_off(8);
	     iova += PAGE_SIZE / 2 + 1) {
		test_ioctl_mirror_status(iova, 0, &st);
		ASSERT_EQ(AREA_IOVA(0), st.out_iova);
		ASSERT_EQ(page_off(8), st.out_length);
	}
	test_err_mirror_status(ENOENT, AREA_IOVA(0) + page_off(8));
	test_err_mirror_status(ENOENT, AREA_IOVA(0) - 1);

	/* RETRY with nothing pending changes nothing */
	test_cmd_gmem_iopte_count(AREA_IOVA(0), &st_io);
	test_ioctl_mirror_status(AREA_IOVA(0), IOMMU_MIRROR_STATUS_RETRY,
				 &retry);
	test_cmd_gmem_iopte_count(AREA_IOVA(0), &retry_io);
	ASSERT_EQ(st.out_mapped_pages, retry.out_mapped_pages);
	ASSERT_EQ(0, retry.out_pending_pages);
	ASSERT_EQ(st_io.adds, retry_io.adds);
	ASSERT_EQ(st_io.removes, retry_io.removes);

	/* Every unknown flag, non-zero reserved words, another IOAS id */
	for (bit = 1; bit != 32; bit++)
		EXPECT_ERRNO(EOPNOTSUPP,
			     _test_ioctl_mirror_status(self->fd, self->ioas_id,
						       AREA_IOVA(0), 1U << bit,
						       &st));
	st = (struct iommu_ioas_mirror_status){
		.size = sizeof(st),
		.ioas_id = self->ioas_id,
		.__reserved = 1,
		.iova = AREA_IOVA(0),
	};
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(self->fd, IOMMU_IOAS_MIRROR_STATUS, &st));
	st.__reserved = 0;
	st.__reserved2 = 1;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(self->fd, IOMMU_IOAS_MIRROR_STATUS, &st));
	EXPECT_ERRNO(ENOENT,
		     _test_ioctl_mirror_status(self->fd, self->ioas_id + 1000,
					       AREA_IOVA(0), 0, &st));
	test_ioctl_mirror_status(AREA_IOVA(0), 0, &st);

	/* A memfd area and a user memory area are not guest_memfd ones */
	test_ioctl_ioas_map_fixed_file(mfd, 0, PAGE_SIZE, AREA_IOVA(1));
	test_err_mirror_status(EINVAL, AREA_IOVA(1));
	test_ioctl_ioas_map_fixed(buffer, PAGE_SIZE, AREA_IOVA(1) + page_off(4));
	test_err_mirror_status(EINVAL, AREA_IOVA(1) + page_off(4));
	test_ioctl_ioas_unmap(AREA_IOVA(1), page_off(8));

	unmap_area(0);
	test_err_mirror_status(ENOENT, AREA_IOVA(0));
}

/* IOAS_COPY of a guest_memfd area: EOPNOTSUPP, to another IOAS or the same. */
TEST_F(iommufd_gmem, copy_eopnotsupp)
{
	struct iommu_ioas_mirror_status st;
	struct iommu_ioas_copy copy = {
		.size = sizeof(copy),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE |
			 IOMMU_IOAS_MAP_READABLE,
		.src_ioas_id = self->ioas_id,
		.length = self->size,
		.src_iova = AREA_IOVA(0),
	};
	__u32 ioas2;

	test_ioctl_ioas_alloc(&ioas2);
	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));

	copy.dst_ioas_id = ioas2;
	copy.dst_iova = AREA_IOVA(0);
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(self->fd, IOMMU_IOAS_COPY, &copy));
	ASSERT_EQ(-1, _test_ioctl_mirror_status(self->fd, ioas2, AREA_IOVA(0),
						0, &st));
	ASSERT_EQ(ENOENT, errno);

	copy.dst_ioas_id = self->ioas_id;
	copy.dst_iova = AREA_IOVA(1);
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(self->fd, IOMMU_IOAS_COPY, &copy));
	test_err_mirror_status(ENOENT, AREA_IOVA(1));
	check_mirror();
}

/*
 * IOAS_CHANGE_PROCESS with guest_memfd areas: they pin and account nothing,
 * so they move to the new process (a VMM's live update) as they are.
 */
TEST_F(iommufd_gmem, change_process)
{
	struct iommu_ioas_change_process cmd = {
		.size = sizeof(cmd),
	};
	__u64 iova = AREA_IOVA(0);
	__u32 ioas2;
	pid_t pid;
	int status;

	/* A memfd area alone is fine */
	test_ioctl_ioas_map_fixed_file(mfd, 0, PAGE_SIZE, AREA_IOVA(1));
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd));

	/* With a guest_memfd area too, which pins nothing and stays as it is */
	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd));
	check_mirror();

	/* From another process, as a live update does */
	pid = fork();
	ASSERT_NE(-1, pid);
	if (!pid)
		_exit(ioctl(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd) ? errno : 0);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	check_mirror();
	unmap_area(0);

	/* In another IOAS of the same iommufd */
	test_ioctl_ioas_alloc(&ioas2);
	ASSERT_EQ(0, _test_ioctl_ioas_map_file(self->fd, ioas2, self->gmem_fd,
					       0, self->size, &iova,
					       IOMMU_IOAS_MAP_FIXED_IOVA |
						       IOMMU_IOAS_MAP_WRITEABLE |
						       IOMMU_IOAS_MAP_READABLE));
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd));
	test_ioctl_ioas_unmap_id(ioas2, AREA_IOVA(0), self->size);
	test_ioctl_ioas_unmap(AREA_IOVA(1), PAGE_SIZE);
}

/* An in-kernel access that pins pages: EOPNOTSUPP, nothing gets pinned. */
TEST_F(iommufd_gmem, access_pages_eopnotsupp)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_ACCESS_PAGES,
		.access_pages = {
			.iova = AREA_IOVA(0),
			.length = PAGE_SIZE,
		},
	};

	set_layout("SSSSSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	test_cmd_create_access(self->ioas_id, &cmd.id,
			       MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);

	cmd.access_pages.uptr = (uintptr_t)self->mem;
	EXPECT_ERRNO(EOPNOTSUPP,
		     ioctl(self->fd, _IOMMU_TEST_CMD(IOMMU_TEST_OP_ACCESS_PAGES),
			   &cmd));
	cmd.access_pages.length = self->size;
	EXPECT_ERRNO(EOPNOTSUPP,
		     ioctl(self->fd, _IOMMU_TEST_CMD(IOMMU_TEST_OP_ACCESS_PAGES),
			   &cmd));
	check_refs(self->mem, self->size, 0);
	check_mirror();

	/* With the access still there, conversions go on */
	to_private(0, 4);
	check_mirror();
	test_cmd_destroy_access(cmd.id);
}

/*
 * IOMMU_TEST_OP_ACCESS_RW reads and writes a shared allocated page (as seen
 * through mmap), fails with EACCES on a private page and ENOENT on a hole,
 * and allocates nothing.
 */
TEST_F(iommufd_gmem, access_rw)
{
	static const __u32 modes[] = { 0, MOCK_ACCESS_RW_SLOW_PATH };
	__u8 *buf = malloc(4 * PAGE_SIZE);
	__u64 iova = AREA_IOVA(0);
	__u32 access_id;
	unsigned int m;

	ASSERT_NE(NULL, buf);
	set_layout("SSSSPPPPSSSSPPPP");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	test_cmd_create_access(self->ioas_id, &access_id, 0);

	for (m = 0; m != ARRAY_SIZE(modes); m++) {
		__u32 flags = modes[m];

		/* Written through the IOVA, seen through mmap */
		memset(buf, 0xa0 + m, 100);
		ASSERT_EQ(0, access_rw(self->fd, access_id,
				       iova + page_off(1) + 10, buf, 100,
				       flags | MOCK_ACCESS_RW_WRITE));
		ASSERT_EQ(0, memcmp(buf, self->mem + page_off(1) + 10, 100));

		/* Written through mmap, seen through the IOVA */
		memset(self->mem + page_off(2), 0x30 + m, PAGE_SIZE);
		ASSERT_EQ(0, access_rw(self->fd, access_id, iova + page_off(2),
				       buf, PAGE_SIZE, flags));
		ASSERT_EQ(0, memcmp(buf, self->mem + page_off(2), PAGE_SIZE));

		/* Across the four shared pages */
		ASSERT_EQ(0, access_rw(self->fd, access_id, iova, buf,
				       4 * PAGE_SIZE, flags));
		ASSERT_EQ(0, memcmp(buf, self->mem, 4 * PAGE_SIZE));

		/* A private page, alone or at the end of a range */
		EXPECT_ERRNO(EACCES, access_rw(self->fd, access_id,
					       iova + page_off(5), buf, 16,
					       flags));
		EXPECT_ERRNO(EACCES, access_rw(self->fd, access_id,
					       iova + page_off(5), buf, 16,
					       flags | MOCK_ACCESS_RW_WRITE));
		EXPECT_ERRNO(EACCES, access_rw(self->fd, access_id,
					       iova + page_off(4) - 8, buf, 16,
					       flags));
	}

	/* A hole in a shared range: ENOENT, and it stays a hole */
	punch(9, 1);
	for (m = 0; m != ARRAY_SIZE(modes); m++) {
		EXPECT_ERRNO(ENOENT, access_rw(self->fd, access_id,
					       iova + page_off(9), buf, 16,
					       modes[m]));
		EXPECT_ERRNO(ENOENT, access_rw(self->fd, access_id,
					       iova + page_off(9), buf, 16,
					       modes[m] | MOCK_ACCESS_RW_WRITE));
	}
	check_mirror();

	/* A page converted to private is refused from then on */
	to_private(0, 1);
	EXPECT_ERRNO(EACCES, access_rw(self->fd, access_id, iova, buf, 16, 0));
	check_mirror();

	test_cmd_destroy_access(access_id);
	free(buf);
}

/*
 * Poison a shared page with MADV_HWPOISON, in a child that maps it (the
 * child may get SIGBUS for it). Returns false if the kernel refuses
 * (no CAP_SYS_ADMIN or no CONFIG_MEMORY_FAILURE).
 */
static bool __poison(struct __test_metadata *_metadata,
		     FIXTURE_DATA(iommufd_gmem) *self, unsigned int page)
{
	int status;
	pid_t pid;

	pid = fork();
	if (pid == -1)
		return false;
	if (!pid) {
		volatile __u8 *p = self->mem + page_off(page);

		(void)*p;
		if (madvise((void *)p, PAGE_SIZE, MADV_HWPOISON))
			_exit(errno == EPERM || errno == EINVAL ? KSFT_SKIP : 1);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return false;
	if (WIFEXITED(status) && WEXITSTATUS(status) == KSFT_SKIP)
		return false;
	EXPECT_TRUE((WIFEXITED(status) && !WEXITSTATUS(status)) ||
		    (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS))
		TH_LOG("child status 0x%x", status);
	self->poisoned[page] = true;
	return true;
}
#define poison(page)							\
	do {								\
		if (!__poison(_metadata, self, page))			\
			SKIP(return, "MADV_HWPOISON refused: CAP_SYS_ADMIN, MEMORY_FAILURE"); \
	} while (0)

/*
 * Only the pages that change state are checked for references: a page
 * that is already private (here with a reference the mock client holds,
 * as a device or firmware might) does not fail a conversion to private of
 * a span around it; once shared, the same reference refuses it (EAGAIN).
 */
TEST_F(iommufd_gmem, to_private_checks_changing_pages)
{
	__u64 error_offset = 0;
	int cfd;

	cfd = gmem_client_open();
	if (cfd < 0)
		SKIP(return, "no guest_memfd mock client (CONFIG_GUEST_MEMFD_TEST)");
	ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", self->gmem_fd));
	set_layout("SSSPSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	populate(0, NR_PAGES);
	check_mirror();
	ASSERT_EQ(0, gmem_client_cmd(cfd, "hold %llu", page_off(3)));

	to_private(0, 8);
	check_mirror();

	to_shared(3, 1);
	ASSERT_EQ(-EAGAIN, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
					page_off(2), page_off(4),
					&error_offset));
	ASSERT_EQ(page_off(3), error_offset);
	check_mirror();

	ASSERT_EQ(0, gmem_client_cmd(cfd, "unhold"));
	to_private(2, 4);
	check_mirror();
	close(cfd);
}

/*
 * A conversion to private that a page reference refuses (a pipe holds one
 * page through vmsplice(), as a VMM's I/O might for as long as it likes)
 * leaves every domain alone, not only in the end: guest_memfd checks
 * references before it asks any client, so the mirror never removes an
 * IOPTE for it to install again. The IOPTE counters show that not one was
 * removed even for a moment. Once the pipe is closed, the conversion goes
 * through.
 */
TEST_F(iommufd_gmem, pinned_to_private_keeps_ioptes)
{
	struct gmem_iopte_count before_io, after_io;
	struct iommu_ioas_mirror_status st;
	__u64 error_offset = 0;
	struct iovec iov;
	int pipefd[2];

	if (!self->ndomains)
		add_domain(_metadata, self);
	set_layout("SSSSSSSSPPPPPPPP");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
	get_status(_metadata, self, 0, &st, &before_io);

	ASSERT_EQ(0, pipe(pipefd));
	iov.iov_base = self->mem + page_off(5);
	iov.iov_len = PAGE_SIZE;
	ASSERT_EQ((ssize_t)PAGE_SIZE, vmsplice(pipefd[1], &iov, 1, 0));

	ASSERT_EQ(-EAGAIN, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
					page_off(2), page_off(6),
					&error_offset));
	ASSERT_EQ(page_off(5), error_offset);
	get_status(_metadata, self, 0, &st, &after_io);
	ASSERT_EQ(before_io.removes, after_io.removes);
	ASSERT_EQ(before_io.adds, after_io.adds);
	check_mirror();

	ASSERT_EQ(0, close(pipefd[0]));
	ASSERT_EQ(0, close(pipefd[1]));
	to_private(2, 6);
	check_mirror();
	get_status(_metadata, self, 0, &st, &after_io);
	ASSERT_EQ(before_io.removes + 6 * self->ndomains, after_io.removes);
}

/*
 * Memory failure of a shared page: that page's IOVA maps nothing
 * afterwards, the others stay.
 */
TEST_F(iommufd_gmem, memory_failure)
{
	set_layout("SSSSSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	poison(5);
	check_mirror();
}

/*
 * A domain attached after a memory failure maps every mapped page but the
 * poisoned one, and the attach succeeds.
 */
TEST_F(iommufd_gmem, memory_failure_then_attach)
{
	if (self->ndomains >= GMEM_MAX_DOMAINS)
		SKIP(return, "no room for one more domain");
	set_layout("SSSSSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	poison(3);
	add_domain(_metadata, self);
	check_mirror();
	poison(11);
	check_mirror();
}

/*
 * Memory failure, a domain attach and a conversion, lined up: the mock
 * client makes a conversion hold the invalidate lock for a while; a child
 * poisons a mapped page meanwhile (memory failure marks it poisoned and
 * then waits for the lock, with the folio lock dropped); a domain attach
 * waits for the lock too. When the conversion is done, the attach and the
 * memory-failure notification run together: the attach must skip the
 * poisoned page (it may not have been notified yet) and neither may wait
 * for the other (memory failure once waited on pages->mutex holding the
 * folio lock that the attach's page lookup needed). Three rounds, so that
 * either order comes up.
 */
struct convert_arg {
	int gmem_fd;
	unsigned int page;
	int rc;
};

static void *convert_thread(void *data)
{
	struct convert_arg *arg = data;

	arg->rc = gmem_convert(arg->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
			       page_off(arg->page), PAGE_SIZE, NULL);
	return NULL;
}

TEST_F(iommufd_gmem, memory_failure_attach_race)
{
	const unsigned int bad[] = { 5, 9, 13 };
	unsigned int r, rounds = GMEM_MAX_DOMAINS - self->ndomains;
	int cfd;

	cfd = gmem_client_open();
	if (cfd < 0)
		SKIP(return, "no guest_memfd mock client (CONFIG_GUEST_MEMFD_TEST)");
	ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", self->gmem_fd));
	set_layout("SSSSSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	for (r = 0; r != rounds && r != ARRAY_SIZE(bad); r++) {
		struct convert_arg arg = { .gmem_fd = self->gmem_fd, .page = r };
		int ready[2], go[2], status;
		pthread_t thread;
		char c = 0;
		pid_t pid;

		ASSERT_EQ(0, pipe(ready));
		ASSERT_EQ(0, pipe(go));
		pid = fork();
		ASSERT_NE(-1, pid);
		if (!pid) {
			volatile __u8 *p = self->mem + page_off(bad[r]);

			/* Fault the page in now, poison it when told */
			*p = 1;
			if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
				_exit(1);
			madvise((void *)p, PAGE_SIZE, MADV_HWPOISON);
			_exit(0);
		}
		ASSERT_EQ(1, read(ready[0], &c, 1));

		ASSERT_EQ(0, gmem_client_cmd(cfd, "delay 1000"));
		ASSERT_EQ(0, pthread_create(&thread, NULL, convert_thread, &arg));
		usleep(200 * 1000);
		ASSERT_EQ(1, write(go[1], &c, 1));
		usleep(200 * 1000);
		add_domain(_metadata, self);

		ASSERT_EQ(0, pthread_join(thread, NULL));
		ASSERT_EQ(0, arg.rc);
		self->shared[r] = false;
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		self->poisoned[bad[r]] = true;
		self->allocated[bad[r]] = true;
		check_mirror();
		close(ready[0]);
		close(ready[1]);
		close(go[0]);
		close(go[1]);
	}
	close(cfd);
}

/*
 * Lining up with memory failure: the tests below park threads and processes
 * in the kernel and check where they are parked through /proc (the kernel
 * stack of the task, which needs root and CONFIG_STACKTRACE). That stack
 * leaves out the scheduler's and the locks' own functions (down_read(),
 * msleep()'s schedule_timeout()...): a task waiting for the invalidate lock
 * shows the function that takes it, and each test parks its actors where
 * that is the only thing they can wait for.
 */

/* Whether task @tid (of process @pid) sleeps in a kernel function @fn */
static bool task_sleeps_in(pid_t pid, pid_t tid, const char *fn)
{
	char path[64], buf[4096];
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stack", pid, tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = 0;
	return strstr(buf, fn);
}

/* Wait up to @ms for task_sleeps_in() */
static bool wait_sleeps_in(pid_t pid, pid_t tid, const char *fn,
			   unsigned int ms)
{
	unsigned int waited;

	for (waited = 0; waited < ms; waited += 10) {
		if (task_sleeps_in(pid, tid, fn))
			return true;
		usleep(10 * 1000);
	}
	return false;
}

static bool have_task_stacks(void)
{
	return task_sleeps_in(getpid(), getpid(), "");
}

/*
 * A child that maps @mem's page, faults it in, and poisons it with
 * MADV_HWPOISON when told to (poisoner_go()); it may die of SIGBUS.
 */
struct poisoner {
	pid_t pid;
	int go;
};

static void poisoner_start(struct __test_metadata *_metadata,
			   struct poisoner *p, __u8 *page)
{
	int ready[2], go[2];
	char c = 0;

	ASSERT_EQ(0, pipe(ready));
	ASSERT_EQ(0, pipe(go));
	p->pid = fork();
	ASSERT_NE(-1, p->pid);
	if (!p->pid) {
		volatile __u8 *v = page;

		*v = 1;
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		madvise(page, PAGE_SIZE, MADV_HWPOISON);
		_exit(0);
	}
	ASSERT_EQ(1, read(ready[0], &c, 1));
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	p->go = go[1];
}

static void poisoner_go(struct __test_metadata *_metadata, struct poisoner *p)
{
	char c = 0;

	ASSERT_EQ(1, write(p->go, &c, 1));
	close(p->go);
}

static void poisoner_wait(struct __test_metadata *_metadata,
			  struct poisoner *p)
{
	int status;

	ASSERT_EQ(p->pid, waitpid(p->pid, &status, 0));
	ASSERT_TRUE((WIFEXITED(status) && !WEXITSTATUS(status)) ||
		    (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS))
		TH_LOG("poisoning child: status 0x%x", status);
}

/* Join @thread, failing after @seconds: a deadlock */
static bool join_within(pthread_t thread, unsigned int seconds)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += seconds;
	return !pthread_timedjoin_np(thread, NULL, &ts);
}

struct converter {
	int gmem_fd;
	unsigned long cmd;
	__u64 offset, size;
	__u64 error_offset;
	pid_t tid;
	int rc;
	volatile bool done;
};

static void *converter_thread(void *data)
{
	struct converter *c = data;

	c->tid = syscall(SYS_gettid);
	c->rc = gmem_convert(c->gmem_fd, c->cmd, c->offset, c->size,
			     &c->error_offset);
	c->done = true;
	return NULL;
}

/* Start @c and wait until it is in the kernel, sleeping in @fn */
static void converter_start(struct __test_metadata *_metadata,
			    struct converter *c, pthread_t *thread,
			    const char *fn)
{
	ASSERT_EQ(0, pthread_create(thread, NULL, converter_thread, c));
	while (!c->tid)
		usleep(1000);
	ASSERT_TRUE(wait_sleeps_in(getpid(), c->tid, fn, 5000))
		TH_LOG("the conversion does not wait in %s", fn);
}

/*
 * What the lined-up tests start from: the mock client attached (returned),
 * every page shared and the whole file mapped, and, unless @bad is
 * negative, a child ready to poison page @bad. On a missing feature,
 * returns -1 with the reason in *@skip.
 */
static int lineup_start(struct __test_metadata *_metadata,
			FIXTURE_DATA(iommufd_gmem) *self, int bad,
			struct poisoner *child, const char **skip)
{
	int cfd;

	*skip = "no /proc/PID/stack (root, CONFIG_STACKTRACE)";
	if (!have_task_stacks())
		return -1;
	*skip = "no guest_memfd mock client (CONFIG_GUEST_MEMFD_TEST)";
	cfd = gmem_client_open();
	if (cfd < 0)
		return -1;
	ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", self->gmem_fd));
	set_layout("SSSSSSSSSSSSSSSS");
	if (bad < 0)
		return cfd;
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
	poisoner_start(_metadata, child, self->mem + page_off(bad));
	return cfd;
}

/* Thread attributes: on CPU 0, and SCHED_FIFO if @fifo */
static void cpu0_attr(struct __test_metadata *_metadata, pthread_attr_t *attr,
		      bool fifo)
{
	struct sched_param prio = { .sched_priority = 1 };
	cpu_set_t cpu0;

	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	ASSERT_EQ(0, pthread_attr_init(attr));
	ASSERT_EQ(0, pthread_attr_setaffinity_np(attr, sizeof(cpu0), &cpu0));
	if (!fifo)
		return;
	ASSERT_EQ(0, pthread_attr_setinheritsched(attr, PTHREAD_EXPLICIT_SCHED));
	ASSERT_EQ(0, pthread_attr_setschedpolicy(attr, SCHED_FIFO));
	ASSERT_EQ(0, pthread_attr_setschedparam(attr, &prio));
}

/*
 * Memory failure against a conversion to private of the same page: the
 * conversion takes the invalidate lock for writing and then locks the page
 * to check its references; memory failure locks the page, and its
 * notification needs the invalidate lock. Lined up so that the conversion
 * has the lock coming while memory failure runs: a first conversion (of
 * another page) holds the lock, parked in the mock client's prepare (which
 * comes after the reference check), the conversion of the page queues for
 * the lock behind it, then memory failure comes and its notification
 * queues behind both. The notification must wait without the page lock,
 * i.e. after memory failure is done with the page, before madvise()
 * returns (memory failure once held the page lock while it waited, and the
 * two waited for each other for good): the conversion then finds the page
 * poisoned and fails with EHWPOISON at it, the notification follows, and
 * nothing else changes.
 */
TEST_F(iommufd_gmem, memory_failure_during_to_private)
{
	const unsigned int bad = 6, other = 12;
	struct converter first = {
		.gmem_fd = self->gmem_fd,
		.cmd = KVM_GMEM_CONVERT_PRIVATE,
		.offset = page_off(other),
		.size = page_off(1),
	};
	struct converter conv = {
		.gmem_fd = self->gmem_fd,
		.cmd = KVM_GMEM_CONVERT_PRIVATE,
		.offset = page_off(4),
		.size = page_off(4),
	};
	pthread_t first_thread, thread;
	struct poisoner child;
	const char *skip;
	int cfd;

	cfd = lineup_start(_metadata, self, bad, &child, &skip);
	if (cfd < 0)
		SKIP(return, "%s", skip);

	ASSERT_EQ(0, gmem_client_cmd(cfd, "delay 8000"));
	converter_start(_metadata, &first, &first_thread, "gmem_test_prepare");
	/* /proc/PID/stack leaves out the rwsem's own (__sched) frames */
	converter_start(_metadata, &conv, &thread, "gmem_convert");
	poisoner_go(_metadata, &child);
	ASSERT_TRUE(wait_sleeps_in(child.pid, child.pid, "gmem_mf_", 4000))
		TH_LOG("memory failure does not wait for the invalidate lock");
	/* All three parked, in this order: nothing happened yet */
	ASSERT_TRUE(task_sleeps_in(getpid(), first.tid, "gmem_test_prepare"))
		TH_LOG("the first conversion went on before memory failure came");
	ASSERT_TRUE(task_sleeps_in(getpid(), conv.tid, "gmem_convert"))
		TH_LOG("the conversion went on before memory failure came");

	ASSERT_TRUE(join_within(first_thread, 60));
	ASSERT_EQ(0, first.rc);
	ASSERT_TRUE(join_within(thread, 60))
		TH_LOG("deadlock: the conversion waits for the page memory failure keeps locked");
	poisoner_wait(_metadata, &child);
	ASSERT_EQ(-EHWPOISON, conv.rc);
	ASSERT_EQ(page_off(bad), conv.error_offset);
	self->shared[other] = false;
	self->poisoned[bad] = true;
	self->allocated[bad] = true;
	check_mirror();
	ASSERT_TRUE(gmem_host_can_read(self->mem + page_off(4)));
	close(cfd);
}

/*
 * Memory failure of the last page of a large mapped file while a domain
 * attach maps the file into the new domain, page after page in batches.
 * Memory failure marks the page poisoned, then needs the invalidate lock
 * and pages->mutex to notify, which the attach drops between two batches:
 * it must complete while the attach still runs (it once waited for the
 * whole attach). Whichever comes first, the attach must skip the page
 * (it once WARNed and failed the attach when it met the page poisoned but
 * not notified yet), must not wait for memory failure (which once kept the
 * page locked until its notification, while the attach's lookup waited for
 * that lock holding pages->mutex, which the notification needs), and the
 * new domain must never map the page: the old domain's IOPTE is the only
 * one removed.
 *
 * Whether memory failure comes while the attach is walking depends on the
 * machine's speed: a round in which it came after the attach, or after the
 * new domain mapped the page, proves nothing, and the next round maps a
 * file four times larger. No round lining up is a failure.
 */
struct attacher {
	int fd;
	__u32 idev_id, ioas_id, hwpt_id;
	int rc;
	volatile bool done;
};

static void *attacher_thread(void *data)
{
	struct attacher *a = data;

	a->rc = _test_cmd_hwpt_alloc(a->fd, a->idev_id, a->ioas_id, 0, 0,
				     &a->hwpt_id, IOMMU_HWPT_DATA_NONE, NULL,
				     0);
	a->done = true;
	return NULL;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Returns true if the round was lined up (and passed) */
static bool attach_round(struct __test_metadata *_metadata, unsigned int npages)
{
	/* The last mapped page, met last by the attach */
	const unsigned int bad = npages - 1;
	struct iommu_ioas_mirror_status st0, st;
	struct gmem_iopte_count st_io, st0_io;
	struct attacher att = {};
	__u32 stdev_id, hwpt_id;
	struct poisoner child;
	pthread_t thread;
	const char *skip = NULL;
	const char *why = "";
	bool lined_up = false;
	int vm_fd, gmem_fd;
	double t0, walk_ms;
	__u64 iova = MOCK_APERTURE_START;
	size_t size = page_off(npages + 1);
	__u8 *mem;

	att.fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, att.fd);
	ASSERT_EQ(0, gmem_vm_create(size, GUEST_MEMFD_FLAG_INIT_SHARED, &vm_fd,
				    &gmem_fd, &skip))
		TH_LOG("%s", skip ?: strerror(errno));
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, gmem_fd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	ASSERT_EQ(0, _test_ioctl_ioas_alloc(att.fd, &att.ioas_id));
	ASSERT_EQ(0, _test_cmd_mock_domain(att.fd, att.ioas_id, &stdev_id,
					   &hwpt_id, &att.idev_id));
	/* Page npages stays out of the area */
	ASSERT_EQ(0, _test_ioctl_ioas_map_file(att.fd, att.ioas_id, gmem_fd, 0,
					       page_off(npages), &iova,
					       IOMMU_IOAS_MAP_FIXED_IOVA |
					       IOMMU_IOAS_MAP_WRITEABLE |
					       IOMMU_IOAS_MAP_READABLE));

	/* How long an attach takes */
	t0 = now_ms();
	attacher_thread(&att);
	walk_ms = now_ms() - t0;
	ASSERT_EQ(0, att.rc);
	ASSERT_EQ(0, _test_ioctl_destroy(att.fd, att.hwpt_id));
	att.done = false;
	ASSERT_EQ(0, _test_ioctl_mirror_status(att.fd, att.ioas_id, iova, 0,
					       &st0));
	ASSERT_EQ(0, _test_cmd_gmem_iopte_count(att.fd, att.ioas_id, iova,
						&st0_io));

	poisoner_start(_metadata, &child, mem + page_off(bad));
	ASSERT_EQ(0, pthread_create(&thread, NULL, attacher_thread, &att));
	usleep(walk_ms * 1000 / 5);
	if (att.done) {
		why = "the attach was done before memory failure came";
		poisoner_go(_metadata, &child);
		poisoner_wait(_metadata, &child);
	} else {
		poisoner_go(_metadata, &child);
		poisoner_wait(_metadata, &child);
		lined_up = !att.done;
		if (!lined_up)
			why = "memory failure completed only after the attach";
	}

	ASSERT_TRUE(join_within(thread, 120))
		TH_LOG("deadlock: the attach waits for the page memory failure keeps locked");
	ASSERT_EQ(0, att.rc) TH_LOG("the attach failed on the poisoned page");

	/* Both domains map every page but the poisoned one */
	ASSERT_EQ(0, _test_cmd_md_check_gmem(att.fd, hwpt_id, iova,
					     page_off(bad), gmem_fd, 0, 0));
	ASSERT_EQ(0, _test_cmd_md_check_gmem(att.fd, att.hwpt_id, iova,
					     page_off(bad), gmem_fd, 0, 0));
	ASSERT_EQ(0, _test_cmd_md_check_gmem(att.fd, hwpt_id,
					     iova + page_off(bad), PAGE_SIZE,
					     gmem_fd, 0,
					     MOCK_CHECK_GMEM_UNMAPPED));
	ASSERT_EQ(0, _test_cmd_md_check_gmem(att.fd, att.hwpt_id,
					     iova + page_off(bad), PAGE_SIZE,
					     gmem_fd, 0,
					     MOCK_CHECK_GMEM_UNMAPPED));
	ASSERT_EQ(0, _test_ioctl_mirror_status(att.fd, att.ioas_id, iova, 0,
					       &st));
	ASSERT_EQ(0, _test_cmd_gmem_iopte_count(att.fd, att.ioas_id, iova,
						&st_io));
	ASSERT_EQ(npages - 1, st.out_mapped_pages);
	ASSERT_EQ(0, st.out_pending_pages);
	ASSERT_EQ((__u64)(npages - 1) * 2,
		  st_io.adds - st_io.removes);
	/* One removal: the new domain never mapped the page */
	if (lined_up && st_io.removes - st0_io.removes != 1) {
		why = "the new domain mapped the page before it was poisoned";
		lined_up = false;
	}
	ksft_print_msg("%u pages, attach %.0f ms: %s\n", npages, walk_ms,
		       lined_up ? "lined up" : why);

	munmap(mem, size);
	close(att.fd);
	close(gmem_fd);
	close(vm_fd);
	return lined_up;
}

TEST(memory_failure_during_attach)
{
	const char *skip = NULL;
	unsigned int npages;
	int vm_fd, gmem_fd;

	if (!have_task_stacks())
		SKIP(return, "no /proc/PID/stack (root, CONFIG_STACKTRACE)");
	if (gmem_vm_create(PAGE_SIZE, 0, &vm_fd, &gmem_fd, &skip) == 1)
		SKIP(return, "%s", skip);
	close(gmem_fd);
	close(vm_fd);

	for (npages = 4096; npages <= 65536; npages *= 4) {
		if (attach_round(_metadata, npages))
			return;
	}
	/* Not a skip: an attach that holds up memory failure never lines up */
	ASSERT_TRUE(false) TH_LOG("memory failure never came during the attach");
}

/*
 * A notification between MAP_FILE's subscription and its first population
 * of the area: lined up with a real-time thread on the same CPU. A
 * conversion holds the invalidate lock (parked in the mock client's
 * prepare); MAP_FILE waits for it, to subscribe; a fallocate() of a hole of
 * the range, from a SCHED_FIFO thread on MAP_FILE's CPU, waits behind it.
 * When MAP_FILE's subscription drops the lock, the fallocate() gets it and
 * preempts MAP_FILE at once: the page it allocates is notified to the new
 * area before MAP_FILE populates it, and the area must count that page
 * once (it once counted it again in its population: out_mapped_pages one
 * too many, for good).
 */
struct filler {
	int gmem_fd;
	__u64 offset;
	pid_t tid;
	int rc;
};

static void *filler_thread(void *data)
{
	struct filler *f = data;

	f->tid = syscall(SYS_gettid);
	f->rc = fallocate(f->gmem_fd, FALLOC_FL_KEEP_SIZE, f->offset,
			  PAGE_SIZE);
	return NULL;
}

struct mapper {
	int fd;
	__u32 ioas_id;
	int gmem_fd;
	__u64 length, iova;
	pid_t tid;
	int rc;
};

static void *mapper_thread(void *data)
{
	struct mapper *m = data;

	m->tid = syscall(SYS_gettid);
	m->rc = _test_ioctl_ioas_map_file(m->fd, m->ioas_id, m->gmem_fd, 0,
					  m->length, &m->iova,
					  IOMMU_IOAS_MAP_FIXED_IOVA |
					  IOMMU_IOAS_MAP_WRITEABLE |
					  IOMMU_IOAS_MAP_READABLE);
	return NULL;
}

/* The range of the first "begin allocate" the client logged */
static bool first_allocate(int cfd, __u64 *start, __u64 *end)
{
	const size_t len = 512 * 1024;
	char *buf = malloc(len + 1), *line, *save;
	unsigned long long s, e;
	bool found = false;
	ssize_t n;

	if (!buf)
		return false;
	n = pread(cfd, buf, len, 0);
	buf[n > 0 ? n : 0] = 0;
	for (line = strtok_r(buf, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save))
		found = sscanf(line, "begin allocate %llu %llu", &s, &e) == 2;
	free(buf);
	if (found) {
		*start = s;
		*end = e;
	}
	return found;
}

TEST_F(iommufd_gmem, notification_before_map_file_population)
{
	const unsigned int hole = 5, npages = 8, other = 12;
	struct converter conv = {
		.gmem_fd = self->gmem_fd,
		.cmd = KVM_GMEM_CONVERT_PRIVATE,
		.offset = page_off(other),
		.size = PAGE_SIZE,
	};
	struct mapper map = {
		.fd = self->fd,
		.ioas_id = self->ioas_id,
		.gmem_fd = self->gmem_fd,
		.length = page_off(npages),
		.iova = AREA_IOVA(0),
	};
	struct filler fill = {
		.gmem_fd = self->gmem_fd,
		.offset = page_off(hole),
	};
	pthread_t cthread, mthread, fthread;
	pthread_attr_t attr;
	__u64 start, end;
	const char *skip;
	unsigned int i;
	int cfd;

	cfd = lineup_start(_metadata, self, -1, NULL, &skip);
	if (cfd < 0)
		SKIP(return, "%s", skip);
	cpu0_attr(_metadata, &attr, false);

	ASSERT_EQ(0, gmem_client_cmd(cfd, "delay 3000"));
	converter_start(_metadata, &conv, &cthread, "gmem_test_prepare");

	ASSERT_EQ(0, pthread_create(&mthread, &attr, mapper_thread, &map));
	while (!map.tid)
		usleep(1000);
	ASSERT_TRUE(wait_sleeps_in(getpid(), map.tid,
				   "guest_memfd_register_notifier", 2000))
		TH_LOG("MAP_FILE does not wait to subscribe");

	pthread_attr_destroy(&attr);
	cpu0_attr(_metadata, &attr, true);
	if (pthread_create(&fthread, &attr, filler_thread, &fill)) {
		ASSERT_TRUE(join_within(cthread, 60));
		ASSERT_TRUE(join_within(mthread, 60));
		SKIP(return, "no SCHED_FIFO thread");
	}
	while (!fill.tid)
		usleep(1000);
	ASSERT_TRUE(wait_sleeps_in(getpid(), fill.tid,
				   "gmem_fallocate", 2000))
		TH_LOG("fallocate() does not wait for the invalidate lock");
	ASSERT_TRUE(task_sleeps_in(getpid(), conv.tid, "gmem_test_prepare"))
		TH_LOG("the conversion went on too early");

	ASSERT_TRUE(join_within(cthread, 60));
	ASSERT_TRUE(join_within(fthread, 60));
	ASSERT_TRUE(join_within(mthread, 60));
	pthread_attr_destroy(&attr);
	ASSERT_EQ(0, conv.rc);
	ASSERT_EQ(0, fill.rc);
	ASSERT_EQ(0, map.rc);

	/* Lined up: the hole's allocation was the first one notified */
	ASSERT_TRUE(first_allocate(cfd, &start, &end));
	ASSERT_EQ(page_off(hole), start)
		TH_LOG("MAP_FILE populated the area before the fallocate() came");
	ASSERT_EQ(page_off(hole + 1), end);

	self->shared[other] = false;
	self->areas[0] = (struct gmem_area){ .iova = AREA_IOVA(0),
					     .first = 0, .npages = npages };
	self->nareas = 1;
	for (i = 0; i != npages; i++)
		self->allocated[i] = true;
	check_mirror();
	close(cfd);
}

/*
 * A conversion to shared allocates the private holes it converts inside a
 * mapped range before it takes the invalidate lock for writing, a batch at
 * a time under the lock held for reading, not in a client's prepare step
 * under the lock held for writing: a client attached before the IOAS that
 * refuses the conversion in its prepare step finds them allocated already.
 * They stay allocated and private, nothing else changed, and the pages of
 * the conversion outside the mapped range stay holes.
 */
TEST_F(iommufd_gmem, to_shared_allocates_before_converting)
{
	__u64 error_offset = 0;
	unsigned int i;
	int cfd;

	cfd = gmem_client_open();
	if (cfd < 0)
		SKIP(return, "no guest_memfd mock client (CONFIG_GUEST_MEMFD_TEST)");
	ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", self->gmem_fd));
	set_layout("PPPPPPPPPPPPPPPP");
	map_area(4, 8, AREA_IOVA(0));
	check_mirror();

	ASSERT_EQ(0, gmem_client_cmd(cfd, "refuse %d %llu", EBUSY,
				     page_off(6)));
	ASSERT_EQ(-EBUSY, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_SHARED,
				       0, page_off(NR_PAGES), &error_offset));
	ASSERT_EQ(page_off(6), error_offset);
	ASSERT_EQ(1, gmem_client_count(cfd, "refuse", "convert_shared", 0,
				       page_off(NR_PAGES)));
	ASSERT_EQ(0, gmem_client_count(cfd, "begin", "convert_shared", 0,
				       page_off(NR_PAGES)));
	for (i = 4; i != 12; i++)
		self->allocated[i] = true;
	check_mirror();

	/* Then converted: the allocated pages are mapped, no others */
	to_shared(0, NR_PAGES);
	check_mirror();
	close(cfd);
}

/*
 * IOMMU_IOAS_MAP_FILE allocates the shared holes of its range a batch at a
 * time, each batch under one hold of the invalidate lock (and notified with
 * GUEST_MEMFD_REASON_ALLOCATE, the range of that batch), so that a
 * conversion or fault that comes meanwhile waits for one batch, not for the
 * whole range. The batches cover the range once, in order.
 */
#define BATCH_MAP_SIZE	(8ULL << 20)

TEST(map_file_allocates_in_batches)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_ioas_map_file map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.length = BATCH_MAP_SIZE,
		.iova = MOCK_APERTURE_START,
	};
	const size_t len = 512 * 1024;
	unsigned long long s, e, next = 0;
	unsigned int batches = 0;
	int fd, vm_fd, gmem_fd, cfd, r;
	char *buf, *line, *save;
	const char *skip = NULL;
	ssize_t n;

	r = gmem_vm_create(BATCH_MAP_SIZE, GUEST_MEMFD_FLAG_INIT_SHARED,
			   &vm_fd, &gmem_fd, &skip);
	if (r == 1)
		SKIP(return, "%s", skip);
	ASSERT_EQ(0, r);
	cfd = gmem_client_open();
	if (cfd < 0) {
		close(gmem_fd);
		close(vm_fd);
		SKIP(return, "no guest_memfd mock client (CONFIG_GUEST_MEMFD_TEST)");
	}
	ASSERT_EQ(0, gmem_client_cmd(cfd, "attach %d", gmem_fd));
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, fd);
	ASSERT_EQ(0, ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	map.ioas_id = alloc.out_ioas_id;
	map.fd = gmem_fd;
	ASSERT_EQ(0, ioctl(fd, IOMMU_IOAS_MAP_FILE, &map));

	buf = malloc(len + 1);
	ASSERT_NE(NULL, buf);
	n = pread(cfd, buf, len, 0);
	ASSERT_LT(0, n);
	buf[n] = 0;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		ASSERT_NE(0, strncmp(line, "lost", 4));
		if (sscanf(line, "begin allocate %llu %llu", &s, &e) != 2)
			continue;
		ASSERT_EQ(next, s);
		ASSERT_LT(s, e);
		ASSERT_GE(BATCH_MAP_SIZE / 8, e - s)
			TH_LOG("one hold allocated [%llu, %llu)", s, e);
		next = e;
		batches++;
	}
	free(buf);
	ASSERT_EQ(BATCH_MAP_SIZE, next);
	ASSERT_LE(8, batches);

	close(cfd);
	close(fd);
	close(gmem_fd);
	close(vm_fd);
}

/*
 * Conversion to private of a span with a poisoned page fails with
 * EHWPOISON at that page (memory failure keeps its reference for good: no
 * retry can succeed), and changes nothing.
 */
TEST_F(iommufd_gmem, to_private_hwpoison)
{
	__u64 error_offset = 0;

	set_layout("SSSSSSSSSSSSSSSS");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	poison(6);
	ASSERT_EQ(-EHWPOISON,
		  gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
			       page_off(2), page_off(8), &error_offset));
	ASSERT_EQ(page_off(6), error_offset);
	check_mirror();
	ASSERT_TRUE(gmem_host_can_read(self->mem + page_off(2)));

	/* The pages around it still convert */
	to_private(2, 4);
	to_private(7, 3);
	check_mirror();
}

/* Make unmaps in the mock domain @hwpt_id leave [iova, iova + length) */
static int md_unmap_short(int fd, __u32 hwpt_id, __u64 iova, __u64 length)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_MD_UNMAP_SHORT,
		.id = hwpt_id,
		.unmap_short = { .iova = iova, .length = length },
	};

	return ioctl(fd, _IOMMU_TEST_CMD(IOMMU_TEST_OP_MD_UNMAP_SHORT), &cmd);
}

/*
 * A domain whose unmap comes back short keeps the IOPTE, and the mirror
 * never forgets it. A conversion to private of a range with that page is
 * refused (EAGAIN, the page named), and the other pages of the range are
 * mapped again; the page is mapped in no other domain and reported pending
 * with EIO. The mirror's reference keeps the page: a conversion to private
 * of it is refused by guest_memfd, and a hole punch by the mirror (EBUSY),
 * so that no device reaches a page that is private or left the file. Once
 * the domain unmaps again, a retry removes the IOPTE and maps the page, and
 * the page converts and punches as any other.
 */
TEST_F(iommufd_gmem, unmap_short_keeps_page)
{
	struct iommu_ioas_mirror_status st;
	__u64 error_offset = 0;
	unsigned int d, i;

	if (!self->ndomains)
		add_domain(_metadata, self);
	set_layout("SSSSSSSSPPPPPPPP");
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();

	ASSERT_EQ(0, md_unmap_short(self->fd, self->hwpt_ids[0],
				    AREA_IOVA(0) + page_off(3), PAGE_SIZE));
	ASSERT_EQ(-EAGAIN, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
					page_off(2), page_off(4),
					&error_offset));
	ASSERT_EQ(page_off(3), error_offset);
	ASSERT_TRUE(gmem_host_can_read(self->mem + page_off(3)));

	/* Domain 0 still maps page 3, the others do not; 2, 4, 5 are mapped */
	test_cmd_md_check_gmem(self->hwpt_ids[0], AREA_IOVA(0) + page_off(3),
			       PAGE_SIZE, self->gmem_fd, page_off(3));
	for (d = 1; d < self->ndomains; d++)
		test_cmd_md_check_gmem_unmapped(self->hwpt_ids[d],
						AREA_IOVA(0) + page_off(3),
						PAGE_SIZE, self->gmem_fd,
						page_off(3));
	for (d = 0; d != self->ndomains; d++)
		for (i = 2; i != 6; i++)
			if (i != 3)
				test_cmd_md_check_gmem(self->hwpt_ids[d],
						       AREA_IOVA(0) + page_off(i),
						       PAGE_SIZE, self->gmem_fd,
						       page_off(i));
	test_ioctl_mirror_status(AREA_IOVA(0), 0, &st);
	ASSERT_EQ(7, st.out_mapped_pages);
	ASSERT_EQ(1, st.out_pending_pages);
	ASSERT_EQ(-EIO, st.out_error);

	/* Neither a conversion nor a hole punch lets the page go */
	error_offset = 0;
	ASSERT_EQ(-EAGAIN, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
					page_off(3), page_off(1),
					&error_offset));
	ASSERT_EQ(page_off(3), error_offset);
	ASSERT_EQ(-1, fallocate(self->gmem_fd,
				FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				page_off(3), page_off(1)));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_TRUE(gmem_host_can_read(self->mem + page_off(3)));
	test_cmd_md_check_gmem(self->hwpt_ids[0], AREA_IOVA(0) + page_off(3),
			       PAGE_SIZE, self->gmem_fd, page_off(3));
	test_ioctl_mirror_status(AREA_IOVA(0), 0, &st);
	ASSERT_EQ(1, st.out_pending_pages);
	ASSERT_EQ(-EIO, st.out_error);

	/* The domain unmaps again: the retry removes the IOPTE, maps the page */
	ASSERT_EQ(0, md_unmap_short(self->fd, self->hwpt_ids[0], 0, 0));
	test_ioctl_mirror_status(AREA_IOVA(0), IOMMU_MIRROR_STATUS_RETRY, &st);
	ASSERT_EQ(8, st.out_mapped_pages);
	ASSERT_EQ(0, st.out_pending_pages);
	ASSERT_EQ(0, st.out_error);
	check_mirror();
	to_private(2, 4);
	check_mirror();
	punch(3, 1);
	check_mirror();
}

/*
 * A VMM learns from IOMMU_OPTION_GUEST_MEMFD that IOMMU_IOAS_MAP_FILE
 * mirrors convertible guest_memfds: this kernel does. The option is read
 * only and global.
 */
TEST(guest_memfd_option)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd),
		.option_id = IOMMU_OPTION_GUEST_MEMFD,
		.op = IOMMU_OPTION_OP_GET,
		.val64 = 7,
	};
	int fd;

	fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, fd);
	ASSERT_EQ(0, ioctl(fd, IOMMU_OPTION, &cmd));
	ASSERT_EQ(1, cmd.val64);

	cmd.op = IOMMU_OPTION_OP_SET;
	cmd.val64 = 0;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_OPTION, &cmd));
	cmd.op = IOMMU_OPTION_OP_GET;
	cmd.object_id = 1;
	EXPECT_ERRNO(EOPNOTSUPP, ioctl(fd, IOMMU_OPTION, &cmd));
	cmd.object_id = 0;
	ASSERT_EQ(0, ioctl(fd, IOMMU_OPTION, &cmd));
	ASSERT_EQ(1, cmd.val64);
	close(fd);
}

/*
 * A second IOAS mapping the same range allocates its shared holes: the
 * first IOAS maps them too (they are allocated shared pages now).
 */
TEST_F(iommufd_gmem, second_ioas_allocates)
{
	__u32 ioas2, stdev2, hwpt2;
	unsigned int i;

	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	punch(0, NR_PAGES);
	check_mirror();

	test_ioctl_ioas_alloc(&ioas2);
	test_cmd_mock_domain(ioas2, &stdev2, &hwpt2, NULL);
	{
		__u64 iova = AREA_IOVA(1);

		ASSERT_EQ(0, _test_ioctl_ioas_map_file(self->fd, ioas2,
						       self->gmem_fd, 0,
						       self->size, &iova,
						       IOMMU_IOAS_MAP_FIXED_IOVA |
						       IOMMU_IOAS_MAP_WRITEABLE |
						       IOMMU_IOAS_MAP_READABLE));
	}
	for (i = 0; i != NR_PAGES; i++)
		if (self->shared[i])
			self->allocated[i] = true;
	check_mirror();
	for (i = 0; i != NR_PAGES; i++)
		ASSERT_EQ(0, _test_cmd_md_check_gmem(self->fd, hwpt2,
						     AREA_IOVA(1) + page_off(i),
						     PAGE_SIZE, self->gmem_fd,
						     page_off(i),
						     self->shared[i] ? 0 :
						     MOCK_CHECK_GMEM_UNMAPPED));

	/* And a conversion reaches both */
	to_private(0, 2);
	check_mirror();
	test_cmd_md_check_gmem_unmapped(hwpt2, AREA_IOVA(1), page_off(2),
					self->gmem_fd, 0);
}

/*
 * KVM's own faults fill holes too: a page the guest touches (here through
 * KVM_PRE_FAULT_MEMORY, which faults like a vCPU) is allocated, and if it
 * is shared every domain maps it.
 */
TEST_F(iommufd_gmem, kvm_fault_allocates)
{
	struct kvm_userspace_memory_region2 region = {
		.slot = 0,
		.flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = 0,
		.memory_size = self->size,
		.userspace_addr = (uintptr_t)self->mem,
		.guest_memfd = self->gmem_fd,
		.guest_memfd_offset = 0,
	};
	struct kvm_pre_fault_memory range = {};
	unsigned int i;
	int vcpu_fd;

	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	punch(0, NR_PAGES);
	check_mirror();

	ASSERT_EQ(0, ioctl(self->vm_fd, KVM_SET_USER_MEMORY_REGION2, &region));
	vcpu_fd = ioctl(self->vm_fd, KVM_CREATE_VCPU, 0);
	ASSERT_LE(0, vcpu_fd);
	for (i = 0; i != NR_PAGES; i++) {
		range.gpa = page_off(i);
		range.size = PAGE_SIZE;
		if (ioctl(vcpu_fd, KVM_PRE_FAULT_MEMORY, &range)) {
			close(vcpu_fd);
			/* Only a kernel or VM type without the ioctl skips */
			if (errno == ENOTTY || errno == EOPNOTSUPP)
				SKIP(return, "KVM_PRE_FAULT_MEMORY: %s",
				     strerror(errno));
			ASSERT_EQ(0, errno) TH_LOG("page %u", i);
		}
		self->allocated[i] = true;
	}
	check_mirror();
	close(vcpu_fd);
}

/*
 * The mirror's cost follows the allocated shared pages, not the range: a
 * sparse file of 1 TiB or 17 TiB (more than 2^32 pages), private but for a
 * few pages spread over it, maps as a whole into an IOAS (with no domain:
 * a mock domain's IOVA space is smaller), a window of it beyond page 2^32
 * into a mock domain, and both follow conversions and hole punches. No
 * high-order allocation, no WARN.
 */
FIXTURE(iommufd_gmem_huge)
{
	int fd;
	int vm_fd;
	int gmem_fd;
};

FIXTURE_VARIANT(iommufd_gmem_huge)
{
	__u64 size;
};

FIXTURE_VARIANT_ADD(iommufd_gmem_huge, tib1)
{
	.size = 1ULL << 40,
};

FIXTURE_VARIANT_ADD(iommufd_gmem_huge, tib17)
{
	.size = 17ULL << 40,
};

FIXTURE_SETUP(iommufd_gmem_huge)
{
	const char *skip = NULL;
	int r;

	self->vm_fd = -1;
	self->gmem_fd = -1;
	self->fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, self->fd);
	r = gmem_vm_create(variant->size, 0, &self->vm_fd, &self->gmem_fd,
			   &skip);
	if (r == 1)
		SKIP(return, "%s", skip);
	ASSERT_EQ(0, r);
}

FIXTURE_TEARDOWN(iommufd_gmem_huge)
{
	teardown_iommufd(self->fd, _metadata);
	if (self->gmem_fd >= 0)
		close(self->gmem_fd);
	if (self->vm_fd >= 0)
		close(self->vm_fd);
}

#define HUGE_SHARED	81
#define HUGE_IOVA	(16ULL << 40)
#define HUGE_WINDOW	16

/*
 * The window [win, win + HUGE_WINDOW) of the file, mapped at the start of
 * the mock aperture: a page is mapped iff it is in @shared and not @gone.
 */
static void check_window(struct __test_metadata *_metadata, int fd,
			 __u32 hwpt_id, int gmem_fd, __u64 win,
			 const __u64 *shared, unsigned int n, __u64 gone)
{
	unsigned int i, j;

	for (i = 0; i != HUGE_WINDOW; i++) {
		__u64 p = win + i;
		bool exp = false;

		for (j = 0; j != n; j++)
			exp |= shared[j] == p;
		exp &= p != gone;
		ASSERT_EQ(0, _test_cmd_md_check_gmem(fd, hwpt_id,
						     MOCK_APERTURE_START +
						     i * PAGE_SIZE, PAGE_SIZE,
						     gmem_fd, p * PAGE_SIZE,
						     exp ? 0 :
						     MOCK_CHECK_GMEM_UNMAPPED))
			TH_LOG("file page %llu should %s", (unsigned long long)p,
			       exp ? "be mapped" : "map nothing");
	}
}

TEST_F(iommufd_gmem_huge, map_whole_file)
{
	__u64 pages = variant->size / PAGE_SIZE;
	__u64 shared[HUGE_SHARED];
	struct iommu_ioas_mirror_status st;
	__u32 ioas_id, small_ioas, stdev_id, hwpt_id;
	__u64 iova = HUGE_IOVA, win;
	unsigned int mid = HUGE_SHARED / 2;
	unsigned int i;

	/*
	 * First, last, page 2^32 and the one before (17 TiB) and spread
	 * evenly in between; each distinct and in order.
	 */
	for (i = 0; i != HUGE_SHARED; i++)
		shared[i] = i * (pages / HUGE_SHARED) + i % 2;
	if (pages > (1ULL << 32)) {
		mid = (1ULL << 32) / (pages / HUGE_SHARED);
		shared[mid - 1] = (1ULL << 32) - 1;
		shared[mid] = 1ULL << 32;
	}
	shared[HUGE_SHARED - 1] = pages - 1;
	for (i = 1; i != HUGE_SHARED; i++)
		ASSERT_LT(shared[i - 1], shared[i]);
	for (i = 0; i != HUGE_SHARED; i++)
		ASSERT_EQ(0, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_SHARED,
					  shared[i] * PAGE_SIZE, PAGE_SIZE,
					  NULL));

	test_ioctl_ioas_alloc(&ioas_id);
	ASSERT_EQ(0, _test_ioctl_ioas_map_file(self->fd, ioas_id, self->gmem_fd,
					       0, variant->size, &iova,
					       IOMMU_IOAS_MAP_FIXED_IOVA |
					       IOMMU_IOAS_MAP_WRITEABLE |
					       IOMMU_IOAS_MAP_READABLE));
	ASSERT_EQ(0, _test_ioctl_mirror_status(self->fd, ioas_id, HUGE_IOVA, 0,
					       &st));
	ASSERT_EQ(variant->size, st.out_length);
	ASSERT_EQ(HUGE_SHARED, st.out_mapped_pages);
	ASSERT_EQ(0, st.out_pending_pages);

	/*
	 * A mock domain's IOVA space is below 2 GiB: it gets a window of the
	 * file around the page at 2^32 (or the middle of the file), mapped
	 * from a second IOAS.
	 */
	test_ioctl_ioas_alloc(&small_ioas);
	test_cmd_mock_domain(small_ioas, &stdev_id, &hwpt_id, NULL);
	win = shared[mid] - HUGE_WINDOW / 2;
	iova = MOCK_APERTURE_START;
	ASSERT_EQ(0, _test_ioctl_ioas_map_file(self->fd, small_ioas,
					       self->gmem_fd, win * PAGE_SIZE,
					       HUGE_WINDOW * PAGE_SIZE, &iova,
					       IOMMU_IOAS_MAP_FIXED_IOVA |
					       IOMMU_IOAS_MAP_WRITEABLE |
					       IOMMU_IOAS_MAP_READABLE));
	check_window(_metadata, self->fd, hwpt_id, self->gmem_fd, win, shared,
		     HUGE_SHARED, -1);

	/* Conversion and hole punch far into the file */
	ASSERT_EQ(0, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE,
				  shared[mid] * PAGE_SIZE, PAGE_SIZE,
				  NULL));
	check_window(_metadata, self->fd, hwpt_id, self->gmem_fd, win, shared,
		     HUGE_SHARED, shared[mid]);
	ASSERT_EQ(0, fallocate(self->gmem_fd,
			       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			       (pages - 1) * PAGE_SIZE, PAGE_SIZE));
	ASSERT_EQ(0, _test_ioctl_mirror_status(self->fd, ioas_id, HUGE_IOVA, 0,
					       &st));
	ASSERT_EQ(HUGE_SHARED - 2, st.out_mapped_pages);
	ASSERT_EQ(0, st.out_pending_pages);

	/* The whole range to private is one step per range, not per page */
	ASSERT_EQ(0, gmem_convert(self->gmem_fd, KVM_GMEM_CONVERT_PRIVATE, 0,
				  variant->size, NULL));
	ASSERT_EQ(0, _test_ioctl_mirror_status(self->fd, ioas_id, HUGE_IOVA, 0,
					       &st));
	ASSERT_EQ(0, st.out_mapped_pages);
	test_ioctl_ioas_unmap_id(ioas_id, HUGE_IOVA, variant->size);
}

/* Dropping the page cache changes nothing in the mirror. */
TEST_F(iommufd_gmem, drop_caches)
{
	struct iommu_ioas_mirror_status before, after;
	struct gmem_iopte_count after_io, before_io;
	int fd;

	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		SKIP(return, "cannot open /proc/sys/vm/drop_caches");
	set_layout(MIXED);
	map_area(0, NR_PAGES, AREA_IOVA(0));
	check_mirror();
	get_status(_metadata, self, 0, &before, &before_io);

	ASSERT_EQ(1, write(fd, "3", 1));
	close(fd);

	check_mirror();
	get_status(_metadata, self, 0, &after, &after_io);
	ASSERT_EQ(before_io.adds, after_io.adds);
	ASSERT_EQ(before_io.removes, after_io.removes);
}

/*
 * Long work under the invalidate lock ends on a fatal signal, with nothing
 * changed: a child maps (or converts to shared, with the range mapped) a
 * 1 GiB range whose pages must all be allocated; once allocation is under
 * way the parent kills it. Without a fatal-signal check the child could
 * only die after allocating every page; with it, part of the range stays
 * unallocated, and a conversion leaves the range private.
 */
#define KILL_SIZE	(1024ULL << 20)

static unsigned long resident_pages(void *mem, size_t size)
{
	size_t n = size / PAGE_SIZE, i;
	unsigned long count = 0;
	unsigned char *vec;

	vec = malloc(n);
	if (!vec || mincore(mem, size, vec)) {
		free(vec);
		return ~0UL;
	}
	for (i = 0; i != n; i++)
		count += vec[i] & 1;
	free(vec);
	return count;
}

static int kill_during(int iommufd, int gmem_fd, void *mem, bool convert)
{
	unsigned long seen = 0;
	int status, i;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
		struct iommu_ioas_map_file map = {
			.size = sizeof(map),
			.flags = IOMMU_IOAS_MAP_FIXED_IOVA |
				 IOMMU_IOAS_MAP_READABLE,
			.fd = gmem_fd,
			.length = KILL_SIZE,
			.iova = HUGE_IOVA,
		};

		if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
			_exit(2);
		map.ioas_id = alloc.out_ioas_id;
		if (ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &map))
			_exit(3);
		if (convert)
			gmem_convert(gmem_fd, KVM_GMEM_CONVERT_SHARED, 0,
				     KILL_SIZE, NULL);
		_exit(0);
	}
	/* Wait until the allocation is under way, 60 s at most */
	for (i = 0; i != 6000 && !seen; i++) {
		usleep(10000);
		seen = resident_pages(mem, KILL_SIZE);
		if (seen == ~0UL)
			break;
	}
	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		return -2;
	return seen && seen != ~0UL ? 0 : -3;
}

TEST(gmem_map_file_killable)
{
	const char *skip = NULL;
	int fd, vm_fd, gmem_fd, r;
	void *mem;

	r = gmem_vm_create(KILL_SIZE, GUEST_MEMFD_FLAG_INIT_SHARED, &vm_fd,
			   &gmem_fd, &skip);
	if (r == 1)
		SKIP(return, "%s", skip);
	ASSERT_EQ(0, r);
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, fd);
	mem = mmap(NULL, KILL_SIZE, PROT_READ, MAP_SHARED, gmem_fd, 0);
	ASSERT_NE(MAP_FAILED, mem);

	ASSERT_EQ(0, kill_during(fd, gmem_fd, mem, false));
	ASSERT_GT(KILL_SIZE / PAGE_SIZE, resident_pages(mem, KILL_SIZE));

	munmap(mem, KILL_SIZE);
	close(fd);
	close(gmem_fd);
	close(vm_fd);
}

TEST(gmem_convert_killable)
{
	const char *skip = NULL;
	int fd, vm_fd, gmem_fd, r;
	__u8 *mem;

	r = gmem_vm_create(KILL_SIZE, 0, &vm_fd, &gmem_fd, &skip);
	if (r == 1)
		SKIP(return, "%s", skip);
	ASSERT_EQ(0, r);
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, fd);
	mem = mmap(NULL, KILL_SIZE, PROT_READ, MAP_SHARED, gmem_fd, 0);
	ASSERT_NE(MAP_FAILED, mem);

	/* The private range is mapped; converting it allocates all of it */
	ASSERT_EQ(0, kill_during(fd, gmem_fd, mem, true));
	ASSERT_GT(KILL_SIZE / PAGE_SIZE, resident_pages(mem, KILL_SIZE));
	/* All or nothing: still private */
	ASSERT_FALSE(gmem_host_can_read(mem));
	ASSERT_FALSE(gmem_host_can_read(mem + KILL_SIZE - PAGE_SIZE));

	munmap(mem, KILL_SIZE);
	close(fd);
	close(gmem_fd);
	close(vm_fd);
}

/*
 * The mirror's long work stalls nothing on the file: while a domain is
 * attached to an IOAS mapping STALL_SIZE of shared pages (one iommu_map()
 * per page), then a second one, while the range is mapped into a second
 * IOAS (its shared pages looked up and recorded), then while the whole
 * range, punched, is converted back to shared (every page allocated, then
 * mapped into both domains), another thread punches and touches again, over
 * and over, a page outside the mapped range. The punch takes the invalidate
 * lock for writing, the touch allocates the page and notifies every client,
 * this IOAS included. Both keep completing during each operation; were the
 * work done under one hold of the invalidate lock (and, for a fill,
 * pages->mutex), each would wait for the whole operation and at most the
 * one or two at its edges could count.
 */
#define STALL_SIZE	(32ULL << 20)

struct hole_loop {
	int gmem_fd;
	volatile __u8 *page;
	off_t offset;
	/* Odd while an operation runs; bumped before and after it */
	int phase;
	bool stop;
	unsigned long inside;
	int error;
};

static void *hole_loop_fn(void *arg)
{
	struct hole_loop *h = arg;

	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		int phase = __atomic_load_n(&h->phase, __ATOMIC_ACQUIRE);

		if (fallocate(h->gmem_fd,
			      FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
			      h->offset, PAGE_SIZE)) {
			h->error = errno;
			break;
		}
		/* The first touch of the hole allocates and notifies */
		(void)h->page[0];
		if ((phase & 1) &&
		    __atomic_load_n(&h->phase, __ATOMIC_ACQUIRE) == phase)
			h->inside++;
	}
	return NULL;
}

TEST(mirror_work_stalls_no_fault)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_ioas_map_file map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.length = STALL_SIZE - PAGE_SIZE,
		.iova = MOCK_APERTURE_START,
	};
	struct iommu_ioas_map_file second;
	struct iommu_ioas_mirror_status st;
	struct gmem_iopte_count st_io;
	struct hole_loop h = { 0 };
	__u32 stdev_id, hwpt_id[2], idev_id;
	const char *skip = NULL;
	int fd, vm_fd, gmem_fd, r;
	pthread_t thread;
	__u8 *mem;

	r = gmem_vm_create(STALL_SIZE, GUEST_MEMFD_FLAG_INIT_SHARED, &vm_fd,
			   &gmem_fd, &skip);
	if (r == 1)
		SKIP(return, "%s", skip);
	ASSERT_EQ(0, r);
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_NE(-1, fd);
	mem = mmap(NULL, STALL_SIZE, PROT_READ, MAP_SHARED, gmem_fd, 0);
	ASSERT_NE(MAP_FAILED, mem);

	/* Every page but the last is allocated, shared and mapped */
	ASSERT_EQ(0, ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	map.ioas_id = alloc.out_ioas_id;
	map.fd = gmem_fd;
	ASSERT_EQ(0, ioctl(fd, IOMMU_IOAS_MAP_FILE, &map));

	h.gmem_fd = gmem_fd;
	h.offset = STALL_SIZE - PAGE_SIZE;
	h.page = mem + h.offset;
	ASSERT_EQ(0, pthread_create(&thread, NULL, hole_loop_fn, &h));

	/* A mock device's domain, then a second domain */
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	r = _test_cmd_mock_domain(fd, map.ioas_id, &stdev_id, &hwpt_id[0],
				  &idev_id);
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, r);
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	r = _test_cmd_hwpt_alloc(fd, idev_id, map.ioas_id, 0, 0, &hwpt_id[1],
				 IOMMU_HWPT_DATA_NONE, NULL, 0);
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, r);
	ksft_print_msg("punches and faults completed during the attaches: %lu\n",
		       h.inside);
	ASSERT_LE(8, h.inside);

	/* The same range into a second IOAS */
	second = map;
	ASSERT_EQ(0, ioctl(fd, IOMMU_IOAS_ALLOC, &alloc));
	second.ioas_id = alloc.out_ioas_id;
	h.inside = 0;
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	r = ioctl(fd, IOMMU_IOAS_MAP_FILE, &second);
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, r);
	ksft_print_msg("punches and faults completed during the MAP_FILE: %lu\n",
		       h.inside);
	ASSERT_LE(8, h.inside);
	ASSERT_EQ(0, _test_ioctl_ioas_unmap(fd, second.ioas_id, second.iova,
					    second.length, NULL));

	/*
	 * Private (unmapped everywhere) and punched, then shared again:
	 * allocated and mapped again
	 */
	ASSERT_EQ(0, gmem_convert(gmem_fd, KVM_GMEM_CONVERT_PRIVATE, 0,
				  map.length, NULL));
	ASSERT_EQ(0, fallocate(gmem_fd,
			       FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			       map.length));
	h.inside = 0;
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	r = gmem_convert(gmem_fd, KVM_GMEM_CONVERT_SHARED, 0, map.length, NULL);
	__atomic_add_fetch(&h.phase, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(0, r);

	__atomic_store_n(&h.stop, true, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(0, h.error);
	ksft_print_msg("punches and faults completed during the conversion: %lu\n",
		       h.inside);
	ASSERT_LE(8, h.inside);

	/* Both domains map every page of the range, nothing is pending */
	ASSERT_EQ(0, _test_ioctl_mirror_status(fd, map.ioas_id,
					       MOCK_APERTURE_START, 0,
					       &st));
	ASSERT_EQ(0, _test_cmd_gmem_iopte_count(fd, map.ioas_id,
						MOCK_APERTURE_START, &st_io));
	ASSERT_EQ(STALL_SIZE / PAGE_SIZE - 1, st.out_mapped_pages);
	ASSERT_EQ(0, st.out_pending_pages);
	ASSERT_EQ(0, st.out_error);
	ASSERT_EQ(2 * st.out_mapped_pages,
		  st_io.adds - st_io.removes);

	munmap(mem, STALL_SIZE);
	close(fd);
	close(gmem_fd);
	close(vm_fd);
}

TEST_HARNESS_MAIN
