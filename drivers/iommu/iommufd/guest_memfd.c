// SPDX-License-Identifier: GPL-2.0-only
/*
 * IOMMU_IOAS_MAP_FILE of a convertible guest_memfd: a mapping that pins
 * nothing and mirrors the file.
 *
 * Every domain that maps such an area maps exactly the pages of its range
 * that are shared with the host and allocated, each with a PAGE_SIZE IOPTE,
 * taking PFNs from guest_memfd and never reading them back from a domain.
 * Each page is mapped with its own iommu_map() call, so that it can be
 * unmapped alone on any IOMMU; runs of consecutive mapped pages are
 * unmapped with one call and one IOTLB sync.
 * guest_memfd's notifier keeps it so:
 *
 *  - conversion to private, hole punch and release unmap the pages in
 *    invalidate_begin, before the pages change (an IOMMU access to a
 *    private page can be fatal on some hardware); memory failure unmaps the
 *    pages of its range that have the error;
 *  - conversion to shared allocates the pages it converts in prepare,
 *    before the point of no return, and maps them in invalidate_end, once
 *    they are shared (a page that already was shared, even a hole, is not
 *    converted and stays as it is);
 *  - fallocate(), a fault on a user mapping or of KVM that fills a hole,
 *    and another client's allocation (another IOAS mapping the range) map
 *    the new pages in invalidate_end (GUEST_MEMFD_REASON_ALLOCATE);
 *  - every invalidate_end leaves its range mapping what should be mapped.
 *
 * invalidate_end cannot fail. A page that fails to map there stays unmapped
 * in every domain (the safe direction), is recorded as pending with the
 * errno, and is retried by the next notification, the next domain attached,
 * or IOMMU_IOAS_MIRROR_STATUS with IOMMU_MIRROR_STATUS_RETRY.
 *
 * State, in iopt_pages_gmem and under pages->mutex: an xarray of the pages
 * mapped in every tracked domain (with no domain: of the pages that would
 * be), and a count of the pages pending. Unmapping only ever walks that
 * xarray, so it never meets a hole. Its size, like the time any walk takes,
 * follows the mapped pages, never the range: guest_memfd_walk_shared()
 * finds the shared, allocated pages from guest_memfd's own state, so a
 * range may be as large as the file (a VMM maps the whole guest memory).
 * No high-order allocation either way.
 *
 * Lock order: iopt rwsems -> guest_memfd's invalidate lock -> pages->mutex
 * -> folio lock (guest_memfd's page lookups; memory failure drops the folio
 * lock before it notifies, see <linux/guest_memfd.h>).
 * Callbacks run under the invalidate lock and take only pages->mutex, never
 * the iopt rwsems: the (area, domain) pairs to unmap come from
 * pages->tracker. Paths that fill a domain take the invalidate lock for
 * reading (guest_memfd_lock()) before pages->mutex, so that the state they
 * read cannot change under them. pages->mutex gets its own lockdep class:
 * user pages take mmap_lock under it, while guest_memfd takes the
 * invalidate lock under mmap_lock (faults).
 */
#include <linux/file.h>
#include <linux/guest_memfd.h>
#include <linux/highmem.h>
#include <linux/iommu.h>
#include <linux/iommufd.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "io_pagetable.h"

MODULE_IMPORT_NS("GUEST_MEMFD");

static struct lock_class_key iopt_gmem_mutex_key;

static struct iopt_pages *iopt_gmem_pages(struct guest_memfd_notifier *n)
{
	return container_of(n, struct iopt_pages, gmem.notifier);
}

static unsigned long iopt_gmem_iova(struct iopt_area *area,
				    unsigned long index)
{
	return iopt_area_iova(area) +
	       (index - iopt_area_index(area)) * PAGE_SIZE;
}

/* The PFN of a page that should be mapped, or an errno if it should not */
static int iopt_gmem_lookup(struct iopt_pages *pages, unsigned long index,
			    unsigned long *pfn)
{
	return guest_memfd_get_pfn(&pages->gmem.notifier,
				   pages->gmem.start + index,
				   GUEST_MEMFD_ACCESS_SHARED, pfn);
}

static bool iopt_gmem_is_mapped(struct iopt_pages *pages, unsigned long index)
{
	return xa_load(&pages->gmem.mapped, index);
}

/*
 * Map @npages pages, consecutive in the area and in physical memory from
 * @pfn, into one domain, with one iommu_map() call per page: the mirror
 * unmaps single pages, and the IOMMU API only promises to unmap what one
 * call mapped (virtio-iommu never splits a mapping; generic_pt drivers
 * would use larger IOPTEs for a longer call).  On failure the domain is
 * left as it was.
 */
static int iopt_gmem_map_run(struct iopt_pages *pages, struct iopt_area *area,
			     struct iommu_domain *domain, unsigned long index,
			     unsigned long pfn, unsigned long npages)
{
	unsigned long iova = iopt_gmem_iova(area, index);
	unsigned long done;
	int rc = 0;

	for (done = 0; done < npages; done++) {
		if (iommufd_should_fail()) {
			rc = -ENOMEM;
			break;
		}
		rc = iommu_map(domain, iova + done * PAGE_SIZE,
			       PFN_PHYS(pfn + done), PAGE_SIZE,
			       area->iommu_prot, GFP_KERNEL_ACCOUNT);
		if (rc)
			break;
		cond_resched();
	}
	if (!rc)
		pages->gmem.iopte_adds += npages;
	else if (done)
		WARN_ON_ONCE(iommu_unmap(domain, iova, done * PAGE_SIZE) !=
			     done * PAGE_SIZE);
	return rc;
}

static void iopt_gmem_unmap_run(struct iopt_pages *pages,
				struct iopt_area *area,
				struct iommu_domain *domain,
				unsigned long index, unsigned long npages)
{
	size_t len = npages * PAGE_SIZE;

	/* Every page of the run is mapped with its own PAGE_SIZE IOPTE */
	WARN_ON_ONCE(iommu_unmap(domain, iopt_gmem_iova(area, index), len) !=
		     len);
	pages->gmem.iopte_removes += npages;
}

/* What to do with a run of consecutive mapped pages */
typedef void (*iopt_gmem_run_fn)(struct iopt_pages *pages, unsigned long index,
				 unsigned long npages, void *data);

/*
 * Call @fn for each run of consecutive mapped pages in [start, end).  @fn
 * may erase the entries of its run.
 */
static void iopt_gmem_mapped_runs(struct iopt_pages *pages,
				  unsigned long start, unsigned long end,
				  iopt_gmem_run_fn fn, void *data)
{
	XA_STATE(xas, &pages->gmem.mapped, start);
	unsigned long first = 0, next = 0;
	void *entry;

	if (start >= end)
		return;

	/*
	 * The entries are values and nobody frees them but under
	 * pages->mutex, which is held: no RCU needed to walk them.
	 */
	lockdep_assert_held(&pages->mutex);
	for (;;) {
		rcu_read_lock();
		entry = xas_find(&xas, end - 1);
		rcu_read_unlock();
		if (entry && xas.xa_index == next && next != first) {
			next++;
			continue;
		}
		if (next != first) {
			fn(pages, first, next - first, data);
			cond_resched();
		}
		if (!entry)
			break;
		first = xas.xa_index;
		next = first + 1;
		xas_set(&xas, next);
	}
}

struct iopt_gmem_unmap_args {
	struct iopt_area *area;
	struct iommu_domain *domain;
};

static void iopt_gmem_unmap_domain_run(struct iopt_pages *pages,
				       unsigned long index,
				       unsigned long npages, void *data)
{
	struct iopt_gmem_unmap_args *args = data;

	iopt_gmem_unmap_run(pages, args->area, args->domain, index, npages);
}

/* Unmap the pages below @end that are mapped, from one domain */
static void iopt_gmem_unmap_below(struct iopt_pages *pages,
				  struct iopt_area *area,
				  struct iommu_domain *domain, unsigned long end)
{
	struct iopt_gmem_unmap_args args = { .area = area, .domain = domain };

	iopt_gmem_mapped_runs(pages, 0, end, iopt_gmem_unmap_domain_run,
			      &args);
}

/* Unmap a run of pages from the tracked domains before @stop in the list */
static void iopt_gmem_unmap_tracks_before(struct iopt_pages *pages,
					  struct iopt_pages_track *stop,
					  unsigned long index,
					  unsigned long npages)
{
	struct iopt_pages_track *track;

	list_for_each_entry(track, &pages->tracker, elm) {
		if (track == stop)
			break;
		iopt_gmem_unmap_run(pages, track->area, track->domain, index,
				    npages);
	}
}

static void iopt_gmem_forget(struct iopt_pages *pages, unsigned long index)
{
	xa_erase(&pages->gmem.mapped, index);
	pages->gmem.nr_mapped--;
}

/*
 * A run of pages consecutive in the area and in physical memory, built up
 * page by page in index order: recorded under one xarray lock, mapped into
 * the domains one domain after the other.
 */
struct iopt_gmem_run {
	unsigned long index;
	unsigned long pfn;
	unsigned long npages;
};

/* Add a page to @run if it continues it; false if it does not */
static bool iopt_gmem_run_add(struct iopt_gmem_run *run, unsigned long index,
			      unsigned long pfn)
{
	if (!run->npages || index != run->index + run->npages ||
	    pfn != run->pfn + run->npages)
		return false;
	run->npages++;
	return true;
}

static void iopt_gmem_run_start(struct iopt_gmem_run *run,
				unsigned long index, unsigned long pfn)
{
	run->index = index;
	run->pfn = pfn;
	run->npages = 1;
}

struct iopt_gmem_fill {
	struct iopt_pages *pages;
	struct iopt_pages_track *new;
	unsigned long next;
	struct iopt_gmem_run run;
};

static int iopt_gmem_fill_run(struct iopt_gmem_fill *fill)
{
	struct iopt_gmem_run *run = &fill->run;

	if (!run->npages)
		return 0;
	return iopt_gmem_map_run(fill->pages, fill->new->area,
				 fill->new->domain, run->index, run->pfn,
				 run->npages);
}

/*
 * The mapped pages of [fill->next, @end) that the walk did not visit
 * should no longer be mapped (a memory error whose notification has not
 * come yet, or never comes): unmap them from the domains before the new
 * one and forget them.
 */
static void iopt_gmem_fill_skipped(struct iopt_gmem_fill *fill,
				   unsigned long end)
{
	struct iopt_pages *pages = fill->pages;
	unsigned long index;
	void *entry;

	if (fill->next >= end)
		return;
	xa_for_each_range(&pages->gmem.mapped, index, entry, fill->next,
			  end - 1) {
		iopt_gmem_unmap_tracks_before(pages, fill->new, index, 1);
		iopt_gmem_forget(pages, index);
	}
}

/* guest_memfd_walk_shared() callback of iopt_gmem_fill_track() */
static int iopt_gmem_fill_page(void *data, pgoff_t file_index,
			       unsigned long pfn)
{
	struct iopt_gmem_fill *fill = data;
	unsigned long index = file_index - fill->pages->gmem.start;
	int rc;

	iopt_gmem_fill_skipped(fill, index);
	fill->next = index + 1;
	/* Not mapped yet: pending, and mapped by the retry that follows */
	if (!iopt_gmem_is_mapped(fill->pages, index) ||
	    iopt_gmem_run_add(&fill->run, index, pfn))
		return 0;
	rc = iopt_gmem_fill_run(fill);
	if (rc)
		return rc;
	iopt_gmem_run_start(&fill->run, index, pfn);
	return 0;
}

/*
 * Map every mapped page into the domain of @new, the last of the tracker's
 * list: the domains before it in the list map them already.  The PFNs come
 * from a walk of the shared, allocated pages (one lookup per folio batch,
 * not per page); a mapped page the walk does not visit should no longer be
 * mapped (a memory error whose notification has not come yet, or never
 * comes) and is unmapped from the other domains and forgotten instead.
 * On failure @new's domain is left as it was.
 */
static int iopt_gmem_fill_track(struct iopt_pages *pages,
				struct iopt_pages_track *new)
{
	struct iopt_gmem_fill fill = { .pages = pages, .new = new };
	int rc;

	lockdep_assert_held(&pages->mutex);

	rc = guest_memfd_walk_shared(&pages->gmem.notifier, pages->gmem.start,
				     pages->gmem.start + pages->npages,
				     iopt_gmem_fill_page, &fill);
	if (!rc)
		rc = iopt_gmem_fill_run(&fill);
	if (rc) {
		iopt_gmem_unmap_below(pages, new->area, new->domain,
				      fill.run.index);
		return rc;
	}
	iopt_gmem_fill_skipped(&fill, pages->npages);
	return 0;
}

/*
 * Record the pages of a run as mapped, taking the xarray lock once per
 * XA_CHUNK_SIZE pages rather than once per page; all or, on failure, none
 * (-EBUSY if one is recorded already).
 */
static int iopt_gmem_record(struct iopt_pages *pages, unsigned long index,
			    unsigned long npages)
{
	XA_STATE(xas, &pages->gmem.mapped, index);
	unsigned long done = 0;
	int rc = 0;

	while (!rc && done < npages) {
		unsigned int n = 0;

		xas_lock(&xas);
		xas_set(&xas, index + done);
		while (done < npages && n++ < XA_CHUNK_SIZE) {
			if (xas_load(&xas)) {
				xas_set_err(&xas, -EBUSY);
				break;
			}
			xas_store(&xas, xa_mk_value(0));
			if (xas_error(&xas))
				break;
			done++;
			xas_next(&xas);
		}
		xas_unlock(&xas);
		if (xas_nomem(&xas, GFP_KERNEL_ACCOUNT))
			continue;
		rc = xas_error(&xas);
		cond_resched();
	}

	while (rc && done--)
		xa_erase(&pages->gmem.mapped, index + done);
	return rc;
}

/* Map a run of pages into every tracked domain, or into none */
static int iopt_gmem_map_all(struct iopt_pages *pages,
			     const struct iopt_gmem_run *run)
{
	struct iopt_pages_track *track;
	unsigned long i;
	int rc;

	rc = iopt_gmem_record(pages, run->index, run->npages);
	if (rc)
		return rc;

	list_for_each_entry(track, &pages->tracker, elm) {
		rc = iopt_gmem_map_run(pages, track->area, track->domain,
				       run->index, run->pfn, run->npages);
		if (rc)
			goto err_unmap;
	}
	pages->gmem.nr_mapped += run->npages;
	return 0;

err_unmap:
	iopt_gmem_unmap_tracks_before(pages, track, run->index, run->npages);
	for (i = 0; i < run->npages; i++)
		xa_erase(&pages->gmem.mapped, run->index + i);
	return rc;
}

static void iopt_gmem_sync_run(struct iopt_pages *pages,
			       const struct iopt_gmem_run *run)
{
	int rc;

	if (!run->npages)
		return;
	rc = iopt_gmem_map_all(pages, run);
	if (rc) {
		/* Stays unmapped everywhere; the next resync retries it */
		pages->gmem.nr_pending += run->npages;
		pages->gmem.error = rc;
	}
}

struct iopt_gmem_sync {
	struct iopt_pages *pages;
	struct iopt_gmem_run run;
};

/* guest_memfd_walk_shared() callback: map the pages that are not mapped */
static int iopt_gmem_sync_page(void *data, pgoff_t file_index,
			       unsigned long pfn)
{
	struct iopt_gmem_sync *sync = data;
	struct iopt_pages *pages = sync->pages;
	unsigned long index = file_index - pages->gmem.start;

	if (iopt_gmem_is_mapped(pages, index) ||
	    iopt_gmem_run_add(&sync->run, index, pfn))
		return 0;
	iopt_gmem_sync_run(pages, &sync->run);
	iopt_gmem_run_start(&sync->run, index, pfn);
	return 0;
}

/*
 * Map the shared, allocated pages of [start, end) that are not mapped.
 * With pages pending, resync the whole range instead: the pending count is
 * only exact after a full resync, which recounts it.
 */
static void iopt_gmem_sync(struct iopt_pages *pages, unsigned long start,
			   unsigned long end)
{
	lockdep_assert_held(&pages->mutex);

	if (pages->gmem.nr_pending) {
		pages->gmem.nr_pending = 0;
		start = 0;
		end = pages->npages;
	}
	if (start < end) {
		struct iopt_gmem_sync sync = { .pages = pages };

		guest_memfd_walk_shared(&pages->gmem.notifier,
					pages->gmem.start + start,
					pages->gmem.start + end,
					iopt_gmem_sync_page, &sync);
		iopt_gmem_sync_run(pages, &sync.run);
	}
	if (!pages->gmem.nr_pending)
		pages->gmem.error = 0;
}

static void iopt_gmem_retry(struct iopt_pages *pages)
{
	iopt_gmem_sync(pages, 0, 0);
}

static void iopt_gmem_unmap_all_run(struct iopt_pages *pages,
				    unsigned long index, unsigned long npages,
				    void *data)
{
	struct iopt_pages_track *track;
	unsigned long i;

	list_for_each_entry(track, &pages->tracker, elm)
		iopt_gmem_unmap_run(pages, track->area, track->domain, index,
				    npages);
	for (i = index; i < index + npages; i++)
		xa_erase(&pages->gmem.mapped, i);
	pages->gmem.nr_mapped -= npages;
}

/* Unmap [start, end) from every tracked domain */
static void iopt_gmem_unmap_range(struct iopt_pages *pages,
				  unsigned long start, unsigned long end)
{
	lockdep_assert_held(&pages->mutex);

	iopt_gmem_mapped_runs(pages, start, end, iopt_gmem_unmap_all_run,
			      NULL);
}

/*
 * Memory failure: unmap, from every domain, the mapped pages of the range
 * that can no longer be looked up (the page with the error); the others
 * of the range stay.
 */
static void iopt_gmem_unmap_failed(struct iopt_pages *pages,
				   unsigned long start, unsigned long end)
{
	unsigned long index = start;
	unsigned long pfn;
	void *entry;

	xa_for_each_range(&pages->gmem.mapped, index, entry, start, end - 1) {
		if (!iopt_gmem_lookup(pages, index, &pfn))
			continue;
		iopt_gmem_unmap_all_run(pages, index, 1, NULL);
	}
}

/* The part of @range inside @pages, as page indexes of @pages */
static bool iopt_gmem_clamp(struct iopt_pages *pages,
			    const struct guest_memfd_range *range,
			    unsigned long *start, unsigned long *end)
{
	pgoff_t first = pages->gmem.start;
	pgoff_t last = first + pages->npages;

	if (range->end <= first || range->start >= last)
		return false;
	*start = max(range->start, first) - first;
	*end = min(range->end, last) - first;
	return true;
}

static int iopt_gmem_prepare(struct guest_memfd_notifier *n,
			     const struct guest_memfd_range *range,
			     pgoff_t *error_index)
{
	struct iopt_pages *pages = iopt_gmem_pages(n);
	unsigned long start, end;

	if (range->reason != GUEST_MEMFD_REASON_CONVERT_SHARED ||
	    !iopt_gmem_clamp(pages, range, &start, &end))
		return 0;

	/*
	 * Allocate now what invalidate_end maps: it cannot fail. Only the
	 * private pages are converted; a shared page in the span (even a
	 * hole) is left as it is.
	 */
	return guest_memfd_allocate(n, pages->gmem.start + start,
				    pages->gmem.start + end,
				    GUEST_MEMFD_ACCESS_PRIVATE, error_index);
}

static void iopt_gmem_invalidate_begin(struct guest_memfd_notifier *n,
				       const struct guest_memfd_range *range)
{
	struct iopt_pages *pages = iopt_gmem_pages(n);
	unsigned long start, end;

	switch (range->reason) {
	case GUEST_MEMFD_REASON_CONVERT_SHARED:
	case GUEST_MEMFD_REASON_ALLOCATE:
		/* Nothing mapped becomes invalid */
		return;
	default:
		break;
	}

	if (!iopt_gmem_clamp(pages, range, &start, &end))
		return;

	mutex_lock(&pages->mutex);
	if (range->reason == GUEST_MEMFD_REASON_MEMORY_FAILURE)
		iopt_gmem_unmap_failed(pages, start, end);
	else
		iopt_gmem_unmap_range(pages, start, end);
	mutex_unlock(&pages->mutex);
}

static void iopt_gmem_invalidate_end(struct guest_memfd_notifier *n,
				     const struct guest_memfd_range *range)
{
	struct iopt_pages *pages = iopt_gmem_pages(n);
	unsigned long start = 0, end = 0;

	/*
	 * Whatever the reason, the range now maps what should be mapped: the
	 * pages that became shared or allocated are mapped, and nothing of a
	 * change that did not happen is lost.
	 */
	mutex_lock(&pages->mutex);
	if (range->reason != GUEST_MEMFD_REASON_RELEASE)
		iopt_gmem_clamp(pages, range, &start, &end);
	iopt_gmem_sync(pages, start, end);
	mutex_unlock(&pages->mutex);
}

static const struct guest_memfd_notifier_ops iopt_gmem_notifier_ops = {
	.prepare = iopt_gmem_prepare,
	.invalidate_begin = iopt_gmem_invalidate_begin,
	.invalidate_end = iopt_gmem_invalidate_end,
};

/**
 * iopt_alloc_gmem_pages() - iopt_pages for a range of a guest_memfd
 * @file: a guest_memfd
 * @start: byte offset of the range in @file, page aligned
 * @length: length of the range, page aligned
 * @writable: whether domains may map it writable
 *
 * Subscribes to the file's notifier, allocates the range's shared pages and
 * records them as the pages to map.
 *
 * Return: the pages, or ERR_PTR() with -EOPNOTSUPP if @file is not
 * convertible, -EINVAL for a misaligned or out-of-file range, -ENOMEM.
 */
struct iopt_pages *iopt_alloc_gmem_pages(struct file *file,
					 unsigned long start,
					 unsigned long length, bool writable)
{
	struct guest_memfd_notifier *n;
	struct iopt_pages *pages;
	pgoff_t error_index;
	unsigned long end;
	int rc;

	if (!(guest_memfd_flags(file) & GUEST_MEMFD_F_CONVERTIBLE))
		return ERR_PTR(-EOPNOTSUPP);
	if (!PAGE_ALIGNED(start) || !PAGE_ALIGNED(length) ||
	    check_add_overflow(start, length, &end) ||
	    end > i_size_read(file_inode(file)))
		return ERR_PTR(-EINVAL);

	pages = iopt_alloc_pages(0, length, writable);
	if (IS_ERR(pages))
		return pages;

	lockdep_set_class(&pages->mutex, &iopt_gmem_mutex_key);
	/* Nothing is pinned, so nothing is accounted */
	pages->account_mode = IOPT_PAGES_ACCOUNT_NONE;
	pages->type = IOPT_ADDRESS_GMEM;
	pages->gmem.file = get_file(file);
	pages->gmem.start = start >> PAGE_SHIFT;

	xa_init(&pages->gmem.mapped);

	n = &pages->gmem.notifier;
	n->ops = &iopt_gmem_notifier_ops;
	rc = guest_memfd_register_notifier(file, n);
	if (rc)
		goto err_put;

	/*
	 * Allocate the range's shared pages (every client, this one included,
	 * is told: a page that another client or the owner allocated is
	 * mapped the same way), then record those not recorded yet by a
	 * notification since the registration.
	 */
	guest_memfd_lock(n);
	rc = guest_memfd_allocate(n, pages->gmem.start,
				  pages->gmem.start + pages->npages,
				  GUEST_MEMFD_ACCESS_SHARED, &error_index);
	if (!rc) {
		mutex_lock(&pages->mutex);
		iopt_gmem_sync(pages, 0, pages->npages);
		rc = pages->gmem.error;
		mutex_unlock(&pages->mutex);
	}
	guest_memfd_unlock(n);
	if (rc)
		goto err_put;

	return pages;

err_put:
	iopt_put_pages(pages);
	return ERR_PTR(rc);
}

/* Called by iopt_release_pages() */
void iopt_gmem_release(struct iopt_pages *pages)
{
	if (pages->gmem.notifier.inode)
		guest_memfd_unregister_notifier(&pages->gmem.notifier);
	fput(pages->gmem.file);
	xa_destroy(&pages->gmem.mapped);
}

/**
 * iopt_gmem_fill_domains() - Map a new guest_memfd area into every domain
 * @area: the area, not yet in the domains_itree
 * @pages: its pages
 *
 * Return: 0, or an errno with every domain left unchanged.
 */
int iopt_gmem_fill_domains(struct iopt_area *area, struct iopt_pages *pages)
{
	struct iopt_pages_track *track;
	struct iopt_pages_track *done;
	int rc;

	lockdep_assert_held(&area->iopt->domains_rwsem);

	guest_memfd_lock(&pages->gmem.notifier);
	mutex_lock(&pages->mutex);
	rc = iopt_track_all_domains(area, pages);
	if (rc)
		goto out_unlock;

	list_for_each_entry(track, &pages->tracker, elm) {
		if (track->area != area)
			continue;
		rc = iopt_gmem_fill_track(pages, track);
		if (rc)
			goto err_unmap;
	}

	area->storage_domain = xa_load(&area->iopt->domains, 0);
	interval_tree_insert(&area->pages_node, &pages->domains_itree);
	goto out_unlock;

err_unmap:
	list_for_each_entry(done, &pages->tracker, elm) {
		if (done == track)
			break;
		if (done->area == area)
			iopt_gmem_unmap_below(pages, area, done->domain,
					      pages->npages);
	}
	iopt_untrack_all_domains(area, pages);
out_unlock:
	mutex_unlock(&pages->mutex);
	guest_memfd_unlock(&pages->gmem.notifier);
	return rc;
}

/**
 * iopt_gmem_unfill_domains() - Unmap a guest_memfd area from every domain
 * @area: the area being destroyed
 * @pages: its pages
 */
void iopt_gmem_unfill_domains(struct iopt_area *area, struct iopt_pages *pages)
{
	struct iopt_pages_track *track;

	lockdep_assert_held(&area->iopt->domains_rwsem);

	mutex_lock(&pages->mutex);
	if (area->storage_domain) {
		list_for_each_entry(track, &pages->tracker, elm)
			if (track->area == area)
				iopt_gmem_unmap_below(pages, area,
						      track->domain,
						      pages->npages);
		iopt_untrack_all_domains(area, pages);
		interval_tree_remove(&area->pages_node, &pages->domains_itree);
		area->storage_domain = NULL;
	}
	mutex_unlock(&pages->mutex);
}

/**
 * iopt_gmem_fill_domain() - Map a guest_memfd area into one more domain
 * @area: the area
 * @pages: its pages
 * @domain: the domain being attached to the area's io_pagetable
 *
 * Also retries the pages that failed to map before.
 *
 * Return: 0, or an errno with @domain left unchanged.
 */
int iopt_gmem_fill_domain(struct iopt_area *area, struct iopt_pages *pages,
			  struct iommu_domain *domain)
{
	int rc;

	guest_memfd_lock(&pages->gmem.notifier);
	mutex_lock(&pages->mutex);
	rc = iopt_track_domain(pages, area, domain);
	if (rc)
		goto out_unlock;

	rc = iopt_gmem_fill_track(pages, list_last_entry(&pages->tracker,
							 struct iopt_pages_track,
							 elm));
	if (rc) {
		iopt_untrack_domain(pages, area, domain);
		goto out_unlock;
	}

	if (!area->storage_domain) {
		WARN_ON(area->iopt->next_domain_id != 0);
		area->storage_domain = domain;
		interval_tree_insert(&area->pages_node, &pages->domains_itree);
	}
	iopt_gmem_retry(pages);
out_unlock:
	mutex_unlock(&pages->mutex);
	guest_memfd_unlock(&pages->gmem.notifier);
	return rc;
}

/**
 * iopt_gmem_unmap_domain() - Unmap a guest_memfd area from one domain
 * @area: the area
 * @pages: its pages
 * @domain: the domain, still tracked; the caller untracks it
 *
 * Unmaps only the pages that are mapped: an unmap must not meet a hole.
 */
void iopt_gmem_unmap_domain(struct iopt_area *area, struct iopt_pages *pages,
			    struct iommu_domain *domain)
{
	lockdep_assert_held(&pages->mutex);

	iopt_gmem_unmap_below(pages, area, domain, pages->npages);
}

/**
 * iopt_gmem_rw_access() - Read or write a guest_memfd area from the kernel
 * @pages: the area's pages
 * @start_byte: first byte, from the start of @pages
 * @data: kernel buffer
 * @length: number of bytes
 * @flags: IOMMUFD_ACCESS_RW_* flags
 *
 * Return: 0; -EACCES if a page is private, -ENOENT if a page is not
 * allocated, -EHWPOISON if a page has a memory error (the bytes before it
 * were copied).
 */
int iopt_gmem_rw_access(struct iopt_pages *pages, unsigned long start_byte,
			void *data, unsigned long length, unsigned int flags)
{
	struct guest_memfd_notifier *n = &pages->gmem.notifier;
	int rc = 0;

	guest_memfd_lock(n);
	while (length) {
		unsigned long offset = offset_in_page(start_byte);
		unsigned long chunk = min(length, PAGE_SIZE - offset);
		unsigned long pfn;
		void *mem;

		rc = iopt_gmem_lookup(pages, start_byte / PAGE_SIZE, &pfn);
		if (rc)
			break;

		mem = kmap_local_pfn(pfn);
		if (flags & IOMMUFD_ACCESS_RW_WRITE)
			memcpy(mem + offset, data, chunk);
		else
			memcpy(data, mem + offset, chunk);
		kunmap_local(mem);

		data += chunk;
		start_byte += chunk;
		length -= chunk;
	}
	guest_memfd_unlock(n);
	return rc;
}

/**
 * iopt_gmem_status() - Report a guest_memfd area's mirror state
 * @pages: the area's pages
 * @retry: first retry the pages that failed to map
 * @status: output, the out_ fields but the area's IOVA and length
 */
void iopt_gmem_status(struct iopt_pages *pages, bool retry,
		      struct iommu_ioas_mirror_status *status)
{
	if (retry)
		guest_memfd_lock(&pages->gmem.notifier);
	mutex_lock(&pages->mutex);
	if (retry)
		iopt_gmem_retry(pages);
	status->out_mapped_pages = pages->gmem.nr_mapped;
	status->out_pending_pages = pages->gmem.nr_pending;
	status->out_iopte_adds = pages->gmem.iopte_adds;
	status->out_iopte_removes = pages->gmem.iopte_removes;
	status->out_error = pages->gmem.error;
	mutex_unlock(&pages->mutex);
	if (retry)
		guest_memfd_unlock(&pages->gmem.notifier);
}
