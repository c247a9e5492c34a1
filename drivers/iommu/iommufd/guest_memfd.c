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
 *  - conversion to shared maps the pages it converts once they are shared,
 *    in invalidate_end or, for more than a batch of pages, in batches before
 *    the converting task returns to user space; guest_memfd allocates them
 *    first, in batches before it takes the invalidate lock for writing,
 *    since the notifier's mirror range is the area's (a page that already
 *    was shared, even a hole, is not converted and stays as it is);
 *  - fallocate(), a fault on a user mapping or of KVM that fills a hole,
 *    and another client's allocation (another IOAS mapping the range) map
 *    the new pages in invalidate_end (GUEST_MEMFD_REASON_ALLOCATE);
 *  - every invalidate_end leaves its range mapping what should be mapped.
 *
 * invalidate_end cannot fail. A page that fails to map there stays unmapped
 * in every domain (the safe direction) and is recorded as pending, with the
 * errno; only that page: a run that fails is mapped again page by page.
 * Pending pages are retried by a later notification of their range, the
 * next domain attached, or IOMMU_IOAS_MIRROR_STATUS with
 * IOMMU_MIRROR_STATUS_RETRY, which look each one up again: the cost follows
 * the number of pending pages, never the range.
 *
 * An IOPTE that a domain fails to remove (iommu_unmap() comes back short)
 * is never forgotten: the page is recorded as stale for that domain, with
 * a page reference, so that its memory is neither freed nor reused while
 * the device may reach it, and the mapping reports EIO. A stale page is
 * mapped in no other domain (it is pending), and its removal is tried
 * again by every retry and by the next hole punch or conversion to private
 * of its range (guest_memfd itself refuses to make the page private while
 * the reference is held); when the domain leaves the area a last try is
 * made, and a page whose IOPTE still stays then keeps its reference for
 * good. Since a failure cannot be foreseen, a conversion to private and a
 * hole punch remove their IOPTEs in prepare, where they can still be
 * refused: while a domain keeps the IOPTE of a page of the range, the
 * change is refused (EAGAIN for a conversion, as a device's page reference
 * would; EBUSY for a hole punch), what prepare removed is mapped again,
 * and the page stays shared and in the file: no device reaches a page
 * that is private or that left the file. abort maps the range again
 * likewise when a client registered later refuses. guest_memfd checks
 * page references before it asks any client, so a conversion that a pin
 * refuses leaves every IOPTE in place; only one that is refused after this
 * prepare (by a later client, e.g. another IOAS mapping the range) makes a
 * device that reaches one of the range's pages meanwhile fault, although
 * the page stays shared. Release and memory failure cannot be refused: the
 * reference keeps the memory of a stale page until its IOPTE goes.
 *
 * State, in iopt_pages_gmem and under pages->mutex: an xarray of the pages
 * mapped in every tracked domain (with no domain: of the pages that would
 * be), and one of the pages pending. Unmapping only ever walks the first,
 * so it never meets a hole. Its size, like the time any walk takes,
 * follows the mapped pages, never the range: guest_memfd_walk_shared()
 * finds the shared, allocated pages from guest_memfd's own state, so a
 * range may be as large as the file (a VMM maps the whole guest memory).
 * No high-order allocation either way.
 *
 * Lock order: iopt rwsems -> guest_memfd's invalidate lock -> pages->mutex
 * -> folio lock (guest_memfd's page lookups; memory failure notifies without
 * a folio lock, see <linux/guest_memfd.h>).
 * Callbacks run under the invalidate lock and take only pages->mutex, never
 * the iopt rwsems: the (area, domain) pairs to unmap come from
 * pages->tracker. Paths that fill a domain, and IOMMU_IOAS_MAP_FILE's
 * allocation of its range's shared holes, take the invalidate lock for
 * reading (guest_memfd_lock()) before pages->mutex, so that the state they
 * read cannot change under them, and hold both for one batch of
 * IOPT_GMEM_BATCH pages at a time (the allocation: shared pages of the
 * range, private stretches costing a step each): between two batches they
 * drop both, so that no conversion, fault or memory failure (nor, through
 * rwsem fairness, any fault queued behind a conversion) waits for a whole
 * fill, and a fatal signal ends the fill with EINTR and the domain as it
 * was.
 * Until its fill is done, a domain's track is marked filling and maps the
 * mirrored pages below the fill's progress, and only those: notifications
 * in between map and unmap exactly that part of it, the fill resumes from
 * there and looks at the file anew. So every domain maps, at every point,
 * only pages that are shared, allocated and mirrored, and each domain whose
 * fill is done maps all of them. pages->mutex gets its own lockdep class:
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
#include <linux/task_work.h>

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
 * How many pages of the mirrored run [index, index + npages) @track's
 * domain maps: all of them, or while a fill of the domain is in progress,
 * those below the fill's progress.
 */
static unsigned long iopt_gmem_track_span(const struct iopt_pages_track *track,
					  unsigned long index,
					  unsigned long npages)
{
	if (!track->gmem_filling)
		return npages;
	if (index >= track->gmem_filled)
		return 0;
	return min(npages, track->gmem_filled - index);
}

/*
 * A page whose IOPTE a domain failed to remove: the domain may still reach
 * it.  Holds a reference on the page, if the domain could tell which page
 * the IOPTE points to, so that its memory is neither freed nor reused.
 */
struct iopt_gmem_stale {
	struct list_head elm;
	struct iopt_area *area;
	struct iommu_domain *domain;
	unsigned long index;
	struct page *page;
	/* The PFN recorded in gmem.mapped, for guest_memfd_model_unmap() */
	unsigned long pfn;
};

static void iopt_gmem_add_stale(struct iopt_pages *pages,
				struct iopt_area *area,
				struct iommu_domain *domain, unsigned long index)
{
	unsigned long iova = iopt_gmem_iova(area, index);
	struct iopt_gmem_stale *stale;
	phys_addr_t phys;

	/* Rare, and nothing may fail here: the mapping is changing already */
	stale = kzalloc_obj(*stale, GFP_KERNEL_ACCOUNT | __GFP_NOFAIL);
	stale->area = area;
	stale->domain = domain;
	stale->index = index;
	stale->pfn = xa_to_value(xa_load(&pages->gmem.mapped, index));
	phys = iommu_iova_to_phys(domain, iova);
	if (phys && pfn_valid(PHYS_PFN(phys))) {
		stale->page = pfn_to_page(PHYS_PFN(phys));
		get_page(stale->page);
	}
	list_add_tail(&stale->elm, &pages->gmem.stale);
	pages->gmem.nr_stale++;
	pages->gmem.error = -EIO;
	pr_warn_ratelimited("iommufd: IOVA 0x%lx stays mapped after a failed unmap, its page is kept\n",
			    iova);
}

static void iopt_gmem_free_stale(struct iopt_pages *pages,
				 struct iopt_gmem_stale *stale)
{
	list_del(&stale->elm);
	pages->gmem.nr_stale--;
	kfree(stale);
}

/* Try again to remove a stale IOPTE; once it is gone, forget the page */
static bool iopt_gmem_unmap_stale(struct iopt_pages *pages,
				  struct iopt_gmem_stale *stale)
{
	unsigned long iova = iopt_gmem_iova(stale->area, stale->index);

	if (iommu_unmap(stale->domain, iova, PAGE_SIZE) != PAGE_SIZE)
		return false;
	pages->gmem.iopte_removes++;
	guest_memfd_model_unmap(stale->pfn, 1, "iommufd mirror unmap");
	if (stale->page)
		put_page(stale->page);
	iopt_gmem_free_stale(pages, stale);
	return true;
}

/* Try again to remove the stale IOPTEs of the pages [start, end) */
static void iopt_gmem_retry_stale(struct iopt_pages *pages,
				  unsigned long start, unsigned long end)
{
	struct iopt_gmem_stale *stale, *next;

	lockdep_assert_held(&pages->mutex);

	list_for_each_entry_safe(stale, next, &pages->gmem.stale, elm) {
		if (stale->index >= start && stale->index < end)
			iopt_gmem_unmap_stale(pages, stale);
	}
}

/* The first page of [start, end) that a domain still maps stale, or @end */
static unsigned long iopt_gmem_first_stale(struct iopt_pages *pages,
					   unsigned long start,
					   unsigned long end)
{
	struct iopt_gmem_stale *stale;
	unsigned long first = end;

	list_for_each_entry(stale, &pages->gmem.stale, elm) {
		if (stale->index >= start && stale->index < first)
			first = stale->index;
	}
	return first;
}

static bool iopt_gmem_is_stale(struct iopt_pages *pages, unsigned long index)
{
	return pages->gmem.nr_stale &&
	       iopt_gmem_first_stale(pages, index, index + 1) == index;
}

/*
 * @domain (with NULL: every domain) no longer tracks @area: a last try to
 * remove their stale IOPTEs.  A page whose IOPTE still stays keeps its
 * reference for good, since nothing tracks that IOPTE any more.
 */
static void iopt_gmem_forget_stale(struct iopt_pages *pages,
				   struct iopt_area *area,
				   struct iommu_domain *domain)
{
	struct iopt_gmem_stale *stale, *next;

	lockdep_assert_held(&pages->mutex);

	list_for_each_entry_safe(stale, next, &pages->gmem.stale, elm) {
		if (stale->area != area || (domain && stale->domain != domain))
			continue;
		if (iopt_gmem_unmap_stale(pages, stale))
			continue;
		pr_warn_ratelimited("iommufd: IOVA 0x%lx stays mapped in a domain that leaves it, its page is never freed\n",
				    iopt_gmem_iova(area, stale->index));
		iopt_gmem_free_stale(pages, stale);
	}
}

/* The ownership model: the IOPTEs of @npages pages from @index are gone */
static void iopt_gmem_model_unmap(struct iopt_pages *pages,
				  unsigned long index, unsigned long npages)
{
	unsigned long i, pfn;

	/* The PFNs are recorded in gmem.mapped until the run is forgotten. */
	if (!guest_memfd_model_enabled())
		return;
	for (i = index; i < index + npages; i++) {
		pfn = xa_to_value(xa_load(&pages->gmem.mapped, i));
		guest_memfd_model_unmap(pfn, 1, "iommufd mirror unmap");
	}
}

/*
 * Unmap a run of mapped pages from one domain, each page with its own
 * PAGE_SIZE IOPTE.  iommu_unmap() stops at the first IOPTE it fails to
 * remove: the rest of the run is tried page by page, and a page whose
 * IOPTE stays is recorded as stale, never forgotten (and still counted as
 * mapped in the ownership model).
 */
static void iopt_gmem_unmap_run(struct iopt_pages *pages,
				struct iopt_area *area,
				struct iommu_domain *domain,
				unsigned long index, unsigned long npages)
{
	unsigned long iova = iopt_gmem_iova(area, index);
	unsigned long done, i;

	lockdep_assert_held(&pages->mutex);

	done = iommu_unmap(domain, iova, npages * PAGE_SIZE) / PAGE_SIZE;
	if (WARN_ON_ONCE(done > npages))
		done = npages;
	pages->gmem.iopte_removes += done;
	iopt_gmem_model_unmap(pages, index, done);
	for (i = done; i < npages; i++) {
		if (iommu_unmap(domain, iova + i * PAGE_SIZE, PAGE_SIZE) ==
		    PAGE_SIZE) {
			pages->gmem.iopte_removes++;
			iopt_gmem_model_unmap(pages, index + i, 1);
		} else {
			iopt_gmem_add_stale(pages, area, domain, index + i);
		}
	}
}

/*
 * Map @npages pages, consecutive in the area and in physical memory from
 * @pfn, into one domain, with one iommu_map() call per page: the mirror
 * unmaps single pages, and the IOMMU API only promises to unmap what one
 * call mapped (virtio-iommu never splits a mapping; generic_pt drivers
 * would use larger IOPTEs for a longer call).  On failure the domain is
 * left as it was, but for an IOPTE it failed to remove again (stale).
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
	if (!rc) {
		pages->gmem.iopte_adds += npages;
		/* A device may reach only pages the host owns. */
		guest_memfd_model_map(pfn, npages, "iommufd mirror map");
	} else if (done) {
		pages->gmem.iopte_adds += done;
		/* Counted as mapped, to be uncounted as they are unmapped */
		guest_memfd_model_map(pfn, done, "iommufd mirror map");
		iopt_gmem_unmap_run(pages, area, domain, index, done);
	}
	return rc;
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
		unsigned long n = iopt_gmem_track_span(track, index, npages);

		if (track == stop)
			break;
		if (n)
			iopt_gmem_unmap_run(pages, track->area, track->domain,
					    index, n);
	}
}

/* Unmap a run of mapped pages from every tracked domain and forget it */
static void iopt_gmem_unmap_all_run(struct iopt_pages *pages,
				    unsigned long index, unsigned long npages,
				    void *data)
{
	unsigned long i;

	iopt_gmem_unmap_tracks_before(pages, NULL, index, npages);
	for (i = index; i < index + npages; i++)
		xa_erase(&pages->gmem.mapped, i);
	pages->gmem.nr_mapped -= npages;
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

/*
 * Pages a fill maps per hold of guest_memfd's invalidate lock and
 * pages->mutex, at most: between two batches it drops both, so that a
 * conversion, a fault's notification or a memory failure waits for one
 * batch at most, and a fatal signal ends it.  A batch ends early, after
 * any page, once a conversion waits for the invalidate lock
 * (iopt_gmem_yield()).
 */
#define IOPT_GMEM_BATCH		256
/* A guest_memfd_walk_shared() callback's return: the batch is full */
#define IOPT_GMEM_PAUSE		1

/*
 * Whether a batch that has done some work (@budget pages of it left) ends
 * now: a conversion waits for guest_memfd's invalidate lock, and every fault
 * on the file queues behind it.  A holder preempted in the middle of a
 * batch would make them wait for as long as it does not run.
 */
static bool iopt_gmem_yield(struct iopt_pages *pages, unsigned long budget)
{
	return budget < IOPT_GMEM_BATCH &&
	       guest_memfd_lock_contended(&pages->gmem.notifier);
}

struct iopt_gmem_fill {
	struct iopt_pages *pages;
	struct iopt_pages_track *new;
	unsigned long next;
	unsigned long budget;
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
 * come yet, or never comes): unmap them from the other domains (the new
 * one does not map them yet) and forget them.
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
			  end - 1)
		iopt_gmem_unmap_all_run(pages, index, 1, NULL);
}

/* guest_memfd_walk_shared() callback of iopt_gmem_fill_track() */
static int iopt_gmem_fill_page(void *data, pgoff_t file_index,
			       unsigned long pfn)
{
	struct iopt_gmem_fill *fill = data;
	unsigned long index = file_index - fill->pages->gmem.start;
	int rc;

	/* Resumed from this page once the locks were dropped and retaken */
	if (!fill->budget || iopt_gmem_yield(fill->pages, fill->budget))
		return IOPT_GMEM_PAUSE;
	fill->budget--;
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

/* A new domain maps nothing until its fill (below) maps the mirror */
static void iopt_gmem_fill_start(struct iopt_pages_track *track)
{
	track->gmem_filling = true;
	track->gmem_filled = 0;
}

/*
 * Between two batches of a fill: drop guest_memfd's invalidate lock and
 * pages->mutex, let the waiters in, and take them back.  A fatal signal
 * ends the fill with -EINTR, the locks held.
 */
static int iopt_gmem_pause(struct iopt_pages *pages)
{
	mutex_unlock(&pages->mutex);
	guest_memfd_unlock(&pages->gmem.notifier);
	cond_resched();
	guest_memfd_lock(&pages->gmem.notifier);
	mutex_lock(&pages->mutex);
	return fatal_signal_pending(current) ? -EINTR : 0;
}

/*
 * Map every mapped page into the domain of @new, whose fill is in progress
 * (gmem_filling set, nothing filled): the other domains map them already.
 * The PFNs come from a walk of the shared, allocated pages (one lookup per
 * folio batch, not per page); a mapped page the walk does not visit should
 * no longer be mapped (a memory error whose notification has not come yet,
 * or never comes) and is unmapped from the other domains and forgotten
 * instead.
 *
 * In batches of IOPT_GMEM_BATCH pages, dropping the locks between two
 * (iopt_gmem_pause()).  Meanwhile, notifications keep every domain's
 * mirror exact, the new one's below gmem_filled, up to which the fill has
 * mapped; the walk resumes there, looking at the file anew.  Called and
 * returns with guest_memfd_lock() and pages->mutex held.  On failure
 * (-EINTR on a fatal signal) @new's domain is left as it was and the
 * caller untracks it.
 */
static int iopt_gmem_fill_track(struct iopt_pages *pages,
				struct iopt_pages_track *new)
{
	struct iopt_gmem_fill fill = { .pages = pages, .new = new };
	unsigned long mapped_below;
	int rc;

	lockdep_assert_held(&pages->mutex);

	for (;;) {
		fill.budget = IOPT_GMEM_BATCH;
		rc = guest_memfd_walk_shared(&pages->gmem.notifier,
					     pages->gmem.start + fill.next,
					     pages->gmem.start + pages->npages,
					     iopt_gmem_fill_page, &fill);
		mapped_below = fill.run.index;
		if (rc >= 0) {
			int err = iopt_gmem_fill_run(&fill);

			if (err)
				rc = err;
		}
		if (rc < 0)
			goto err_unmap;
		fill.run.npages = 0;
		if (rc != IOPT_GMEM_PAUSE)
			break;

		new->gmem_filled = fill.next;
		mapped_below = fill.next;
		rc = iopt_gmem_pause(pages);
		if (rc)
			goto err_unmap;
	}
	iopt_gmem_fill_skipped(&fill, pages->npages);
	new->gmem_filling = false;
	return 0;

err_unmap:
	iopt_gmem_unmap_below(pages, new->area, new->domain, mapped_below);
	new->gmem_filled = 0;
	return rc;
}

/*
 * The mirror's records (pages mapped, pages pending) are allocated for a
 * task's request (IOMMU_IOAS_MAP_FILE, a conversion, a fault) and charged
 * to its memory cgroup; at the group's limit a record fails, and its page
 * stays pending with -ENOMEM, rather than invoking the OOM killer.  Both
 * xarrays are XA_FLAGS_ACCOUNT too, for the nodes allocated under their
 * lock.
 */
#define IOPT_GMEM_GFP	(GFP_KERNEL_ACCOUNT | __GFP_RETRY_MAYFAIL | \
			 __GFP_NOWARN)

/*
 * Record the pages of a run as mapped, each with its PFN (for the ownership
 * model's guest_memfd_model_unmap()), taking the xarray lock once per
 * XA_CHUNK_SIZE pages rather than once per page; all or, on failure, none
 * (-EBUSY if one is recorded already).
 */
static int iopt_gmem_record(struct iopt_pages *pages, unsigned long index,
			    unsigned long pfn, unsigned long npages)
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
			xas_store(&xas, xa_mk_value(pfn + done));
			if (xas_error(&xas))
				break;
			done++;
			xas_next(&xas);
		}
		xas_unlock(&xas);
		if (xas_nomem(&xas, IOPT_GMEM_GFP))
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

	rc = iopt_gmem_record(pages, run->index, run->pfn, run->npages);
	if (rc)
		return rc;

	list_for_each_entry(track, &pages->tracker, elm) {
		unsigned long n = iopt_gmem_track_span(track, run->index,
						       run->npages);

		if (!n)
			continue;
		rc = iopt_gmem_map_run(pages, track->area, track->domain,
				       run->index, run->pfn, n);
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

/* A page that should be mapped failed to map: it is mapped in no domain */
static void iopt_gmem_set_pending(struct iopt_pages *pages,
				  unsigned long index, int rc)
{
	void *old;

	pages->gmem.error = rc;
	old = xa_store(&pages->gmem.pending, index, xa_mk_value(0),
		       IOPT_GMEM_GFP);
	if (xa_is_err(old)) {
		/* Not recorded: the next retry looks at the whole range */
		pages->gmem.resync = true;
		return;
	}
	if (!old)
		pages->gmem.nr_pending++;
}

static void iopt_gmem_clear_pending(struct iopt_pages *pages,
				    unsigned long index)
{
	if (xa_erase(&pages->gmem.pending, index))
		pages->gmem.nr_pending--;
}

/* Forget the pending pages of [start, end): they are no longer to map */
static void iopt_gmem_clear_pending_range(struct iopt_pages *pages,
					  unsigned long start,
					  unsigned long end)
{
	unsigned long index;
	void *entry;

	if (!pages->gmem.nr_pending)
		return;
	xa_for_each_range(&pages->gmem.pending, index, entry, start, end - 1)
		iopt_gmem_clear_pending(pages, index);
}

/*
 * Map a run of pages that should be mapped into every tracked domain.  If
 * the run fails as a whole, its pages are mapped one by one, so that a
 * failure leaves only the page that failed unmapped (everywhere) and
 * pending.
 */
static void iopt_gmem_sync_run(struct iopt_pages *pages,
			       const struct iopt_gmem_run *run)
{
	unsigned long i;

	if (!run->npages)
		return;
	if (run->npages > 1 && !iopt_gmem_map_all(pages, run)) {
		iopt_gmem_clear_pending_range(pages, run->index,
					      run->index + run->npages);
		return;
	}
	for (i = 0; i < run->npages; i++) {
		struct iopt_gmem_run page = {
			.index = run->index + i,
			.pfn = run->pfn + i,
			.npages = 1,
		};
		int rc = iopt_gmem_map_all(pages, &page);

		if (rc)
			iopt_gmem_set_pending(pages, page.index, rc);
		else
			iopt_gmem_clear_pending(pages, page.index);
	}
}

struct iopt_gmem_sync {
	struct iopt_pages *pages;
	struct iopt_gmem_run run;
	/* With a budget: the pages left to visit, and where to resume */
	bool batch;
	unsigned long budget;
	unsigned long next;
};

/* guest_memfd_walk_shared() callback: map the pages that are not mapped */
static int iopt_gmem_sync_page(void *data, pgoff_t file_index,
			       unsigned long pfn)
{
	struct iopt_gmem_sync *sync = data;
	struct iopt_pages *pages = sync->pages;
	unsigned long index = file_index - pages->gmem.start;

	if (sync->batch) {
		if (!sync->budget || iopt_gmem_yield(pages, sync->budget))
			return IOPT_GMEM_PAUSE;
		sync->budget--;
		sync->next = index + 1;
	}
	if (iopt_gmem_is_mapped(pages, index))
		return 0;
	/* A domain still maps an old IOPTE there: not until it is gone */
	if (iopt_gmem_is_stale(pages, index)) {
		iopt_gmem_sync_run(pages, &sync->run);
		sync->run.npages = 0;
		iopt_gmem_set_pending(pages, index, -EIO);
		return 0;
	}
	if (iopt_gmem_run_add(&sync->run, index, pfn))
		return 0;
	iopt_gmem_sync_run(pages, &sync->run);
	iopt_gmem_run_start(&sync->run, index, pfn);
	return 0;
}

/* Map the shared, allocated pages of [start, end) that are not mapped */
static void iopt_gmem_sync(struct iopt_pages *pages, unsigned long start,
			   unsigned long end)
{
	lockdep_assert_held(&pages->mutex);

	if (start < end) {
		struct iopt_gmem_sync sync = { .pages = pages };

		guest_memfd_walk_shared(&pages->gmem.notifier,
					pages->gmem.start + start,
					pages->gmem.start + end,
					iopt_gmem_sync_page, &sync);
		iopt_gmem_sync_run(pages, &sync.run);
	}
	if (!pages->gmem.nr_pending && !pages->gmem.resync &&
	    !pages->gmem.nr_stale)
		pages->gmem.error = 0;
}

/*
 * Map the pending pages that should still be mapped and forget the others
 * (gone private, punched, or with a memory error): the cost follows the
 * number of pending pages, not the range.
 */
static void iopt_gmem_retry(struct iopt_pages *pages)
{
	unsigned long index;
	void *entry;

	lockdep_assert_held(&pages->mutex);

	iopt_gmem_retry_stale(pages, 0, pages->npages);
	if (pages->gmem.resync) {
		pages->gmem.resync = false;
		iopt_gmem_sync(pages, 0, pages->npages);
	}
	xa_for_each(&pages->gmem.pending, index, entry) {
		struct iopt_gmem_run run = { .index = index, .npages = 1 };
		int rc;

		if (iopt_gmem_lookup(pages, index, &run.pfn) ||
		    WARN_ON_ONCE(iopt_gmem_is_mapped(pages, index))) {
			iopt_gmem_clear_pending(pages, index);
			continue;
		}
		if (iopt_gmem_is_stale(pages, index)) {
			pages->gmem.error = -EIO;
			continue;
		}
		rc = iopt_gmem_map_all(pages, &run);
		if (rc)
			pages->gmem.error = rc;
		else
			iopt_gmem_clear_pending(pages, index);
		cond_resched();
	}
	if (!pages->gmem.nr_pending && !pages->gmem.resync &&
	    !pages->gmem.nr_stale)
		pages->gmem.error = 0;
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

/*
 * A conversion to private or a hole punch: remove the range's IOPTEs now,
 * while the change can still be refused, and refuse it if a domain keeps
 * the IOPTE of a page of the range, mapping again what was removed.
 */
static int iopt_gmem_prepare(struct guest_memfd_notifier *n,
			     const struct guest_memfd_range *range,
			     pgoff_t *error_index)
{
	struct iopt_pages *pages = iopt_gmem_pages(n);
	unsigned long start, end, stale;
	int rc = 0;

	if ((range->reason != GUEST_MEMFD_REASON_CONVERT_PRIVATE &&
	     range->reason != GUEST_MEMFD_REASON_TRUNCATE) ||
	    !iopt_gmem_clamp(pages, range, &start, &end))
		return 0;

	mutex_lock(&pages->mutex);
	iopt_gmem_unmap_range(pages, start, end);
	if (pages->gmem.nr_stale) {
		iopt_gmem_retry_stale(pages, start, end);
		stale = iopt_gmem_first_stale(pages, start, end);
		if (stale != end) {
			*error_index = pages->gmem.start + stale;
			rc = range->reason == GUEST_MEMFD_REASON_TRUNCATE ?
				-EBUSY : -EAGAIN;
			iopt_gmem_sync(pages, start, end);
		}
	}
	mutex_unlock(&pages->mutex);
	return rc;
}

/* A change that prepare unmapped for does not happen: map the range again */
static void iopt_gmem_abort(struct guest_memfd_notifier *n,
			    const struct guest_memfd_range *range)
{
	struct iopt_pages *pages = iopt_gmem_pages(n);
	unsigned long start, end;

	if ((range->reason != GUEST_MEMFD_REASON_CONVERT_PRIVATE &&
	     range->reason != GUEST_MEMFD_REASON_TRUNCATE) ||
	    !iopt_gmem_clamp(pages, range, &start, &end))
		return;

	mutex_lock(&pages->mutex);
	iopt_gmem_sync(pages, start, end);
	mutex_unlock(&pages->mutex);
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
	if (range->reason == GUEST_MEMFD_REASON_MEMORY_FAILURE) {
		iopt_gmem_unmap_failed(pages, start, end);
	} else {
		iopt_gmem_unmap_range(pages, start, end);
		iopt_gmem_clear_pending_range(pages, start, end);
	}
	mutex_unlock(&pages->mutex);
}

/*
 * Map the shared, allocated pages of [start, end) that are not mapped, at
 * most IOPT_GMEM_BATCH of them: returns where to resume (@end when done).
 */
static unsigned long iopt_gmem_sync_batch(struct iopt_pages *pages,
					  unsigned long start,
					  unsigned long end)
{
	struct iopt_gmem_sync sync = {
		.pages = pages,
		.batch = true,
		.budget = IOPT_GMEM_BATCH,
	};
	int rc;

	lockdep_assert_held(&pages->mutex);

	rc = guest_memfd_walk_shared(&pages->gmem.notifier,
				     pages->gmem.start + start,
				     pages->gmem.start + end,
				     iopt_gmem_sync_page, &sync);
	iopt_gmem_sync_run(pages, &sync.run);
	return rc == IOPT_GMEM_PAUSE ? sync.next : end;
}

/*
 * The mapping of a large conversion to shared, deferred to the converting
 * task's return to user space: see iopt_gmem_defer().
 */
struct iopt_gmem_deferred {
	struct callback_head work;
	struct iopt_pages *pages;
	unsigned long start;
	unsigned long end;
};

static void iopt_gmem_deferred_fn(struct callback_head *work)
{
	struct iopt_gmem_deferred *d =
		container_of(work, struct iopt_gmem_deferred, work);
	struct iopt_pages *pages = d->pages;
	unsigned long next = d->start;

	while (next < d->end) {
		guest_memfd_lock(&pages->gmem.notifier);
		mutex_lock(&pages->mutex);
		if (fatal_signal_pending(current)) {
			/* Dying: the next retry maps what is left */
			pages->gmem.resync = true;
			next = d->end;
		} else {
			next = iopt_gmem_sync_batch(pages, next, d->end);
		}
		mutex_unlock(&pages->mutex);
		guest_memfd_unlock(&pages->gmem.notifier);
		cond_resched();
	}
	iopt_put_pages(pages);
	kfree(d);
	/* The work ran from this module's code: see iopt_gmem_defer() */
	module_put(THIS_MODULE);
}

/*
 * A conversion to shared of many pages would map every one of them into
 * every domain in invalidate_end, with the invalidate lock held for
 * writing: every fault on the file would wait for it.  Instead, map them
 * once the conversion has dropped the lock, before the converting task
 * returns to user space (so the ioctl still returns with the pages
 * mapped), in batches that each take the locks anew and look at the file
 * as it is then: a page that went private or was punched meanwhile is not
 * mapped.  Meanwhile the pages are shared and not mapped yet, the safe
 * direction.  The work holds the pages and this module.  Returns false if
 * the mapping cannot be deferred (no memory, a kernel thread or an exiting
 * task): the caller maps them now.
 */
static bool iopt_gmem_defer(struct iopt_pages *pages, unsigned long start,
			    unsigned long end)
{
	struct iopt_gmem_deferred *d;

	if (current->flags & (PF_KTHREAD | PF_IO_WORKER))
		return false;
	d = kzalloc_obj(*d, GFP_KERNEL_ACCOUNT);
	if (!d)
		return false;
	d->pages = pages;
	d->start = start;
	d->end = end;
	init_task_work(&d->work, iopt_gmem_deferred_fn);
	kref_get(&pages->kref);
	__module_get(THIS_MODULE);
	if (task_work_add(current, &d->work, TWA_RESUME)) {
		module_put(THIS_MODULE);
		kref_put(&pages->kref, iopt_release_pages);
		kfree(d);
		return false;
	}
	return true;
}

static void iopt_gmem_invalidate_end(struct guest_memfd_notifier *n,
				     const struct guest_memfd_range *range)
{
	struct iopt_pages *pages = iopt_gmem_pages(n);
	unsigned long start = 0, end = 0;

	/*
	 * Whatever the reason, the range now maps what should be mapped: the
	 * pages that became shared or allocated are mapped, and nothing of a
	 * change that did not happen is lost.  A range outside the area
	 * (e.g. a fault filling a hole elsewhere) does not wait for
	 * pages->mutex.
	 */
	if (range->reason != GUEST_MEMFD_REASON_RELEASE &&
	    !iopt_gmem_clamp(pages, range, &start, &end))
		return;
	if (range->reason == GUEST_MEMFD_REASON_CONVERT_SHARED &&
	    end - start > IOPT_GMEM_BATCH && iopt_gmem_defer(pages, start, end))
		return;
	mutex_lock(&pages->mutex);
	iopt_gmem_sync(pages, start, end);
	mutex_unlock(&pages->mutex);
}

static const struct guest_memfd_notifier_ops iopt_gmem_notifier_ops = {
	.prepare = iopt_gmem_prepare,
	.abort = iopt_gmem_abort,
	.invalidate_begin = iopt_gmem_invalidate_begin,
	.invalidate_end = iopt_gmem_invalidate_end,
};

/*
 * Allocate the shared holes of a new mapping's range (every client, this one
 * included, is told: a page that another client or the owner allocated is
 * mapped the same way) and record its shared, allocated pages as the pages
 * to map, IOPT_GMEM_BATCH shared pages of the range per hold of
 * guest_memfd's invalidate lock (for reading) and pages->mutex; private
 * stretches cost a step each.  Between two batches both locks are dropped,
 * so that a conversion queued meanwhile, and every fault queued behind it,
 * waits for one batch at most.  The pages are registered but in no domain
 * yet, so what changes in between needs no revalidation: the notifications
 * keep the record of the whole range exact, and each batch looks at the
 * file anew.  A fatal signal ends it with -EINTR; what was allocated stays
 * allocated.
 */
static int iopt_gmem_populate(struct iopt_pages *pages)
{
	struct guest_memfd_notifier *n = &pages->gmem.notifier;
	pgoff_t first = pages->gmem.start;
	unsigned long next = 0;
	pgoff_t error_index, stop;
	int rc = 0;

	while (!rc && next < pages->npages) {
		if (fatal_signal_pending(current))
			return -EINTR;
		guest_memfd_lock(n);
		rc = guest_memfd_allocate(n, first + next,
					  first + pages->npages,
					  IOPT_GMEM_BATCH, &stop, &error_index);
		if (!rc) {
			mutex_lock(&pages->mutex);
			iopt_gmem_sync(pages, next, stop - first);
			rc = pages->gmem.error;
			mutex_unlock(&pages->mutex);
		}
		guest_memfd_unlock(n);
		cond_resched();
		next = stop - first;
	}
	return rc;
}

/**
 * iopt_alloc_gmem_pages() - iopt_pages for a range of a guest_memfd
 * @file: a guest_memfd
 * @start: byte offset of the range in @file, page aligned
 * @length: length of the range, page aligned
 * @writable: whether domains may map it writable
 *
 * Subscribes to the file's notifier, allocates the range's shared pages and
 * records them as the pages to map, in batches (iopt_gmem_populate()): no
 * conversion or fault waits for the whole range.  The pages hold no
 * reference on @file,
 * only the notifier's on its inode (the memory): closing the file (and
 * with it the VM that created it) releases it, and the mirror then maps
 * nothing (%GUEST_MEMFD_REASON_RELEASE).
 *
 * Return: the pages, or ERR_PTR() with -EOPNOTSUPP if @file is not
 * convertible, -EINVAL for a misaligned or out-of-file range, -ENOMEM,
 * -EINTR on a fatal signal.
 */
struct iopt_pages *iopt_alloc_gmem_pages(struct file *file,
					 unsigned long start,
					 unsigned long length, bool writable)
{
	struct guest_memfd_notifier *n;
	struct iopt_pages *pages;
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
	pages->gmem.start = start >> PAGE_SHIFT;

	xa_init_flags(&pages->gmem.mapped, XA_FLAGS_ACCOUNT);
	xa_init_flags(&pages->gmem.pending, XA_FLAGS_ACCOUNT);
	INIT_LIST_HEAD(&pages->gmem.stale);

	n = &pages->gmem.notifier;
	n->ops = &iopt_gmem_notifier_ops;
	/* A conversion to shared allocates what invalidate_end maps */
	n->mirror_start = pages->gmem.start;
	n->mirror_end = pages->gmem.start + pages->npages;
	rc = guest_memfd_register_notifier(file, n);
	if (rc)
		goto err_put;

	rc = iopt_gmem_populate(pages);
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
	struct iopt_gmem_stale *stale, *next;

	/* Each area forgot its stale IOPTEs when it left its domains */
	list_for_each_entry_safe(stale, next, &pages->gmem.stale, elm) {
		WARN_ON_ONCE(1);
		iopt_gmem_free_stale(pages, stale);
	}
	if (pages->gmem.notifier.inode)
		guest_memfd_unregister_notifier(&pages->gmem.notifier);
	xa_destroy(&pages->gmem.mapped);
	xa_destroy(&pages->gmem.pending);
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

	/* Nothing is mapped in the new domains until their fill gets there */
	list_for_each_entry(track, &pages->tracker, elm) {
		if (track->area == area)
			iopt_gmem_fill_start(track);
	}
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
	iopt_gmem_forget_stale(pages, area, NULL);
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
		iopt_gmem_forget_stale(pages, area, NULL);
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
	struct iopt_pages_track *track;
	int rc;

	guest_memfd_lock(&pages->gmem.notifier);
	mutex_lock(&pages->mutex);
	rc = iopt_track_domain(pages, area, domain);
	if (rc)
		goto out_unlock;

	track = list_last_entry(&pages->tracker, struct iopt_pages_track, elm);
	iopt_gmem_fill_start(track);
	rc = iopt_gmem_fill_track(pages, track);
	if (rc) {
		iopt_gmem_forget_stale(pages, area, domain);
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
 * Tries the IOPTEs that @domain failed to remove before a last time.
 */
void iopt_gmem_unmap_domain(struct iopt_area *area, struct iopt_pages *pages,
			    struct iommu_domain *domain)
{
	lockdep_assert_held(&pages->mutex);

	iopt_gmem_unmap_below(pages, area, domain, pages->npages);
	iopt_gmem_forget_stale(pages, area, domain);
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

		guest_memfd_model_check(pfn, 1, GUEST_MEMFD_OWNER_HOST,
					"iommufd access_rw");
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
	status->out_error = pages->gmem.error;
	mutex_unlock(&pages->mutex);
	if (retry)
		guest_memfd_unlock(&pages->gmem.notifier);
}

/**
 * iopt_gmem_iopte_count() - The IOPTE counters of a guest_memfd area
 * @pages: the area's pages
 * @adds: output, page IOPTEs installed since the area was made, counted once
 *	per domain
 * @removes: output, page IOPTEs removed, counted the same way
 *
 * For the selftests (IOMMU_TEST_OP_GMEM_IOPTE_COUNT), which check that the
 * mirror maps and unmaps each page exactly as often as it should.
 */
void iopt_gmem_iopte_count(struct iopt_pages *pages, u64 *adds, u64 *removes)
{
	mutex_lock(&pages->mutex);
	*adds = pages->gmem.iopte_adds;
	*removes = pages->gmem.iopte_removes;
	mutex_unlock(&pages->mutex);
}
