// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd core: the file, its inode and its page cache.
 *
 * This used to be part of kvm.ko.  It is built into the kernel so that the
 * pseudo filesystem and the inode cache exist once, independently of which
 * module created a file, and so that other subsystems can use a guest_memfd
 * without linking against KVM.  The creator of a file (its "owner") passes
 * callbacks for what stays specific to it.
 */
#include <linux/anon_inodes.h>
#include <linux/backing-dev.h>
#include <linux/falloc.h>
#include <linux/folio_batch.h>
#include <linux/fs.h>
#include <linux/guest_memfd.h>
#include <linux/init.h>
#include <linux/llist.h>
#include <linux/magic.h>
#include <linux/maple_tree.h>
#include <linux/mempolicy.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pseudo_fs.h>
#include <linux/pagemap.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/swap.h>
#include <linux/task_work.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "internal.h"

static struct vfsmount *gmem_mnt;

/* The entry of a range of shared pages in gmem_inode.shareability. */
#define GMEM_SHARED	xa_mk_value(1)

static bool gmem_is_convertible(struct inode *inode)
{
	return GMEM_I(inode)->flags & GUEST_MEMFD_F_CONVERTIBLE;
}

static bool gmem_is_private(struct inode *inode, pgoff_t index)
{
	struct gmem_inode *gi = GMEM_I(inode);

	if (!gmem_is_convertible(inode))
		return !(gi->flags & GUEST_MEMFD_F_INIT_SHARED);

	/*
	 * Under state_lock, which every store to the tree takes, not the
	 * invalidate lock: callable under a client's spinlock.  A caller that
	 * must not act on a stale answer either holds the invalidate lock or,
	 * like KVM, rechecks with its own invalidation sequence, which every
	 * change of the tree bumps (the tree changes only between
	 * invalidate_begin and invalidate_end).
	 */
	bool shared;

	spin_lock(&gi->state_lock);
	shared = mtree_load(&gi->shareability, index);
	spin_unlock(&gi->state_lock);
	return !shared;
}

static bool gmem_is_shared_mem(struct inode *inode, pgoff_t index)
{
	return !gmem_is_private(inode, index);
}

/*
 * Returns a locked folio on success.  The caller is responsible for
 * setting the up-to-date flag before the memory is mapped into the guest.
 * There is no backing storage for the memory, so the folio will remain
 * up-to-date until it's removed.
 *
 * Ignore accessed, referenced, and dirty flags.  The memory is
 * unevictable and there is no storage to write back to.
 *
 * A new folio is allocated with @gfp: the mapping's mask for a fault or
 * fallocate(), gmem_client_gfp() for a client's request.
 */
static struct folio *__gmem_get_folio(struct inode *inode, pgoff_t index,
				      gfp_t gfp)
{
	/* TODO: Support huge pages. */
	struct mempolicy *policy;
	struct folio *folio;

	/*
	 * Fast-path: See if folio is already present in mapping to avoid
	 * policy_lookup.
	 */
	folio = filemap_lock_folio(inode->i_mapping, index);
	if (!IS_ERR(folio))
		return folio;

	policy = mpol_shared_policy_lookup(&GMEM_I(inode)->policy, index);
	folio = __filemap_get_folio_mpol(inode->i_mapping, index,
					 FGP_LOCK | FGP_CREAT, gfp, policy);
	mpol_cond_put(policy);

	/* A new folio: owned in the ownership model as the file says. */
	if (!IS_ERR(folio))
		gmem_model_allocated_hook(inode, folio,
					  gmem_is_private(inode, index));

	/*
	 * Clients map folios without pinning them, so nothing may drop one
	 * but a notified truncation: a clean, unmapped page cache folio is
	 * fair game for invalidate_mapping_pages() (drop_caches), unevictable
	 * mapping or not.  A dirty one is not, and with no writeback it stays
	 * dirty until it is truncated.
	 */
	if (!IS_ERR(folio) && !folio_test_dirty(folio))
		folio_mark_dirty(folio);

	/*
	 * External interfaces like kvm_gmem_get_pfn() support dealing
	 * with hugepages to a degree, but internally, guest_memfd currently
	 * assumes that all folios are order-0 and handling would need
	 * to be updated for anything otherwise (e.g. page-clearing
	 * operations).
	 */
	WARN_ON_ONCE(!IS_ERR(folio) && folio_order(folio));

	return folio;
}

static struct folio *gmem_get_folio(struct inode *inode, pgoff_t index)
{
	return __gmem_get_folio(inode, index,
				mapping_gfp_mask(inode->i_mapping));
}

/*
 * The pages that a client's request allocates (an IOMMU mapping of a range,
 * a conversion to shared of a range a client mirrors) rather than a fault:
 * at the memory cgroup's limit, or when memory runs out, the request fails
 * with -ENOMEM instead of invoking the OOM killer, and the task that asked
 * for a range larger than its limit lives to see the error.
 */
static gfp_t gmem_client_gfp(struct inode *inode)
{
	return mapping_gfp_mask(inode->i_mapping) | __GFP_RETRY_MAYFAIL |
	       __GFP_NOWARN;
}

/**
 * guest_memfd_lock() - Hold a guest_memfd's pages and their state
 * @n: the client's registered notifier
 *
 * Takes the file's invalidate lock for reading: until guest_memfd_unlock(),
 * no page changes state or leaves the file, the file is not released and no
 * notifier is registered or unregistered.  Pages may still be allocated
 * (%GUEST_MEMFD_REASON_ALLOCATE) and memory failures notified.  A client
 * looks PFNs up with guest_memfd_get_pfn() under it and installs them under
 * its own lock, the one its invalidate_begin takes, taken after this one: a
 * change to those pages waits for guest_memfd_unlock(), and its
 * invalidate_begin then removes what was installed.
 *
 * Context: May sleep.  Not from a callback, nor with a lock that a callback
 * takes.
 */
void guest_memfd_lock(struct guest_memfd_notifier *n)
{
	filemap_invalidate_lock_shared(n->inode->i_mapping);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_lock, "GUEST_MEMFD");

/**
 * guest_memfd_unlock() - Undo guest_memfd_lock()
 * @n: the client's registered notifier
 */
void guest_memfd_unlock(struct guest_memfd_notifier *n)
{
	filemap_invalidate_unlock_shared(n->inode->i_mapping);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_unlock, "GUEST_MEMFD");

/**
 * guest_memfd_get_pfn() - Look up the PFN of a page of a guest_memfd
 * @n: the client's registered notifier
 * @index: page index in the file
 * @flags: exactly one of %GUEST_MEMFD_ACCESS_SHARED and
 *	%GUEST_MEMFD_ACCESS_PRIVATE, the access the client will make, and
 *	optionally %GUEST_MEMFD_GET_ALLOC to allocate a missing page
 * @pfn: output, the PFN
 *
 * The caller holds the invalidate lock: under guest_memfd_lock(), or in a
 * callback of @n.  No reference is left on the page: guest_memfd keeps it,
 * and the client must stop using @pfn when its invalidate_begin is called
 * for a range that contains @index.  A page allocated here (or by
 * fallocate()) is cleared before its PFN is first returned.  Allocation
 * here is not notified: the client asked for the page.
 *
 * The PFN stays valid without a pin only because guest_memfd folios are
 * never migrated (->migrate_folio refuses) nor reclaimed (the mapping is
 * unevictable and every folio is dirty from its allocation on, so neither
 * reclaim nor drop_caches' invalidation takes it) and leave the file only
 * through a notified truncation or the inode's eviction.  Whoever changes
 * that must notify clients first.
 *
 * Context: May sleep (locks the folio, may allocate).
 * Return: 0 and the PFN in *@pfn; -EINVAL for bad @flags or @index beyond
 * the end of the file; -EACCES if the page's state (shared or private) is
 * not the requested access; -ENOENT if the page is not allocated and
 * %GUEST_MEMFD_GET_ALLOC is not set; -ENODEV if the file was released;
 * -EHWPOISON if the page has a memory error; -ENOMEM.
 */
int guest_memfd_get_pfn(struct guest_memfd_notifier *n, pgoff_t index,
			unsigned int flags, unsigned long *pfn)
{
	unsigned int access = flags & (GUEST_MEMFD_ACCESS_SHARED |
				       GUEST_MEMFD_ACCESS_PRIVATE);
	struct inode *inode = n->inode;
	struct address_space *mapping = inode->i_mapping;
	struct folio *folio;
	bool want_private;
	int ret = 0;

	lockdep_assert_held(&mapping->invalidate_lock);

	if (flags & ~(GUEST_MEMFD_ACCESS_SHARED | GUEST_MEMFD_ACCESS_PRIVATE |
		      GUEST_MEMFD_GET_ALLOC))
		return -EINVAL;
	if (access != GUEST_MEMFD_ACCESS_SHARED &&
	    access != GUEST_MEMFD_ACCESS_PRIVATE)
		return -EINVAL;

	if (GMEM_I(inode)->released)
		return -ENODEV;

	if (index >= (i_size_read(inode) >> PAGE_SHIFT))
		return -EINVAL;

	want_private = access == GUEST_MEMFD_ACCESS_PRIVATE;
	if (gmem_is_private(inode, index) != want_private)
		return -EACCES;

	if (flags & GUEST_MEMFD_GET_ALLOC)
		folio = gmem_get_folio(inode, index);
	else
		folio = filemap_lock_folio(mapping, index);
	if (IS_ERR(folio))
		return PTR_ERR(folio);

	if (folio_test_hwpoison(folio)) {
		ret = -EHWPOISON;
		goto out;
	}

	if (!folio_test_uptodate(folio)) {
		folio_zero_range(folio, 0, folio_size(folio));
		folio_mark_uptodate(folio);
	}

	*pfn = folio_pfn(folio) + (index - folio->index);

out:
	folio_unlock(folio);
	folio_put(folio);
	return ret;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_get_pfn, "GUEST_MEMFD");

/*
 * Find the first range of pages in [@index, @end) that are all shared (or
 * all private): [*@first, *@last).  One step per range of the tree, so the
 * cost follows the number of distinct ranges, not the number of pages.
 * Called with the invalidate lock held.  Returns false if there is none.
 */
static bool gmem_next_range(struct inode *inode, pgoff_t index, pgoff_t end,
			    bool shared, pgoff_t *first, pgoff_t *last)
{
	MA_STATE(mas, &GMEM_I(inode)->shareability, index, index);

	if (index >= end)
		return false;

	if (!gmem_is_convertible(inode)) {
		if (!(GMEM_I(inode)->flags & GUEST_MEMFD_F_INIT_SHARED) != !shared)
			return false;
		*first = index;
		*last = end;
		return true;
	}

	if (shared) {
		if (!mas_find(&mas, end - 1))
			return false;
		*first = max_t(pgoff_t, mas.index, index);
		*last = mas.last >= end - 1 ? end : mas.last + 1;
		return true;
	}

	/* Private ranges are the gaps between the entries. */
	while (index < end) {
		void *entry;

		mas_set(&mas, index);
		entry = mas_walk(&mas);
		if (!entry) {
			*first = index;
			*last = mas.last >= end - 1 ? end : mas.last + 1;
			return true;
		}
		if (mas.last >= end - 1)
			break;
		index = mas.last + 1;
	}
	return false;
}

/*
 * Make a folio of the file safe to hand out: zero it the first time.  A
 * folio that fallocate() allocated is not up to date until somebody uses
 * it.  Returns true if the folio was new.  The folio is locked.
 */
static bool gmem_folio_make_uptodate(struct folio *folio)
{
	if (folio_test_uptodate(folio))
		return false;

	folio_zero_range(folio, 0, folio_size(folio));
	folio_mark_uptodate(folio);
	return true;
}

static int gmem_walk_folios(struct address_space *mapping, pgoff_t index,
			    pgoff_t end,
			    int (*fn)(void *data, pgoff_t index,
				      unsigned long pfn),
			    void *data)
{
	struct folio_batch fbatch;
	int ret = 0;

	folio_batch_init(&fbatch);
	while (!ret && filemap_get_folios(mapping, &index, end - 1, &fbatch)) {
		unsigned int i;

		for (i = 0; !ret && i < folio_batch_count(&fbatch); i++) {
			struct folio *folio = fbatch.folios[i];
			bool poisoned;

			folio_lock(folio);
			poisoned = folio_test_hwpoison(folio);
			if (!poisoned)
				gmem_folio_make_uptodate(folio);
			folio_unlock(folio);

			/* A page with a memory error is never handed out. */
			if (!poisoned)
				ret = fn(data, folio->index, folio_pfn(folio));
		}
		folio_batch_release(&fbatch);
		cond_resched();
	}

	return ret;
}

/**
 * guest_memfd_walk_shared() - Visit the allocated shared pages of a range
 * @n: a registered notifier
 * @start: first page index
 * @end: page index after the last page
 * @fn: called for each page of [@start, @end) that is shared, allocated
 *	and has no memory error, in index order, with its index and PFN; a
 *	non-zero return ends the walk
 * @data: passed to @fn
 *
 * For a client that mirrors the allocated shared pages of a range: the
 * cost follows the shared ranges and the allocated pages, not the size of
 * the range, so a client may map a range as large as the file.  A page
 * that fallocate() allocated but nobody used yet is zeroed first.  @fn
 * runs without the folio lock and may take the client's own locks.
 *
 * Context: the invalidate lock held (guest_memfd_lock(), or a callback).
 * May sleep.
 * Return: 0, or the first non-zero value @fn returned.
 */
int guest_memfd_walk_shared(struct guest_memfd_notifier *n, pgoff_t start,
			    pgoff_t end,
			    int (*fn)(void *data, pgoff_t index,
				      unsigned long pfn),
			    void *data)
{
	struct inode *inode = n->inode;
	pgoff_t first, last;
	int ret;

	lockdep_assert_held(&inode->i_mapping->invalidate_lock);

	if (GMEM_I(inode)->released)
		return 0;

	end = min_t(pgoff_t, end, i_size_read(inode) >> PAGE_SHIFT);
	while (gmem_next_range(inode, start, end, true, &first, &last)) {
		ret = gmem_walk_folios(inode->i_mapping, first, last, fn, data);
		if (ret)
			return ret;
		start = last;
	}
	return 0;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_walk_shared, "GUEST_MEMFD");

/* Add [@index, @end) to the span [*@first, *@last) of new pages */
static void gmem_span_add(pgoff_t *first, pgoff_t *last, pgoff_t index,
			  pgoff_t end)
{
	if (*first == *last)
		*first = index;
	*last = end;
}

/*
 * Allocate the pages of [@index, @end), all holes, for a client's request;
 * see below
 */
static int gmem_allocate_holes(struct inode *inode, pgoff_t index,
			       pgoff_t end, pgoff_t *error_index,
			       pgoff_t *new_first, pgoff_t *new_last)
{
	gfp_t gfp = gmem_client_gfp(inode);

	for (; index < end; index++) {
		struct folio *folio;
		bool new;

		if (fatal_signal_pending(current)) {
			*error_index = index;
			return -EINTR;
		}

		folio = __gmem_get_folio(inode, index, gfp);
		if (IS_ERR(folio)) {
			*error_index = index;
			return PTR_ERR(folio);
		}
		new = !folio_test_hwpoison(folio) &&
		      gmem_folio_make_uptodate(folio);
		folio_unlock(folio);
		folio_put(folio);

		if (new)
			gmem_span_add(new_first, new_last, index, index + 1);
		cond_resched();
	}
	return 0;
}

/*
 * Allocate the holes of [@index, @end) and make its folios up to date.
 * Present folios are found a batch at a time and locked only if they are
 * not up to date yet, so a range that is allocated already costs a lookup
 * per batch, not per page.
 */
static int gmem_allocate_range(struct inode *inode, pgoff_t index,
			       pgoff_t end, pgoff_t *error_index,
			       pgoff_t *new_first, pgoff_t *new_last)
{
	struct folio_batch fbatch;
	int ret = 0;

	folio_batch_init(&fbatch);
	while (!ret && index < end) {
		pgoff_t next = index;
		unsigned int i, nr;

		nr = filemap_get_folios(inode->i_mapping, &next, end - 1,
					&fbatch);
		if (!nr)
			return gmem_allocate_holes(inode, index, end,
						   error_index, new_first,
						   new_last);

		for (i = 0; !ret && i < nr; i++) {
			struct folio *folio = fbatch.folios[i];
			bool new = false;

			ret = gmem_allocate_holes(inode, index, folio->index,
						  error_index, new_first,
						  new_last);
			if (ret)
				break;
			if (!folio_test_uptodate(folio)) {
				folio_lock(folio);
				new = !folio_test_hwpoison(folio) &&
				      gmem_folio_make_uptodate(folio);
				folio_unlock(folio);
			}
			if (new)
				gmem_span_add(new_first, new_last,
					      folio->index,
					      folio_next_index(folio));
			index = folio_next_index(folio);
		}
		folio_batch_release(&fbatch);
		cond_resched();
	}
	return ret;
}

/*
 * Allocate the missing pages among the pages of [@start, @end) that are in
 * the given state, looking at @max_pages of them at most: *@next is where it
 * stopped, @end if it got there.  Pages in the other state are skipped a
 * range at a time, so the cost follows @max_pages and the number of ranges.
 * [*@new_first, *@new_last) spans the pages allocated (empty if none).
 */
static int gmem_allocate_state(struct inode *inode, pgoff_t start, pgoff_t end,
			       bool shared, unsigned long max_pages,
			       pgoff_t *next, pgoff_t *error_index,
			       pgoff_t *new_first, pgoff_t *new_last)
{
	pgoff_t first, last;
	int ret;

	*new_first = *new_last = start;
	*next = end;
	while (gmem_next_range(inode, start, end, shared, &first, &last)) {
		if (!max_pages) {
			*next = first;
			break;
		}
		if (last - first > max_pages)
			last = first + max_pages;
		max_pages -= last - first;
		ret = gmem_allocate_range(inode, first, last, error_index,
					  new_first, new_last);
		if (ret)
			return ret;
		start = last;
	}
	return 0;
}

/* Private pages a conversion to shared allocates per lock hold, at most */
#define GMEM_ALLOC_BATCH	256

/*
 * Before a conversion to shared: allocate the private holes of [@start,
 * @end) that lie in a client's mirror range (&struct guest_memfd_notifier),
 * i.e. the pages that the client maps once they are shared, so that no
 * client allocates them under the invalidate lock held for writing.  At most
 * GMEM_ALLOC_BATCH private pages per hold of the lock for reading, dropped
 * between two batches: no fault, and no conversion queued meanwhile, waits
 * for the whole allocation.  Shared ranges and the gaps between mirror
 * ranges are skipped a range at a time.  The pages stay private until the
 * conversion, so nothing is notified.  *@gen is the file's notifier
 * generation at the start: the conversion compares it under the lock held
 * for writing and starts over if a client registered meanwhile.  Pages
 * punched in between are converted as holes, as if the hole punch came
 * after the conversion.
 *
 * Returns 0, -EINTR on a fatal signal or -ENOMEM (at the memory cgroup's
 * limit too: no OOM kill), with *@error_index the page that failed; what
 * was allocated stays allocated.
 */
static int gmem_allocate_converted(struct inode *inode, pgoff_t start,
				   pgoff_t end, unsigned long *gen,
				   pgoff_t *error_index)
{
	struct address_space *mapping = inode->i_mapping;
	struct gmem_inode *gi = GMEM_I(inode);
	pgoff_t index = start;
	bool first = true;
	int r = 0;

	while (!r && index < end) {
		struct guest_memfd_notifier *n, *mirror = NULL;
		pgoff_t lo = end, new_first, new_last;

		if (fatal_signal_pending(current) ||
		    down_read_killable(&mapping->invalidate_lock)) {
			*error_index = index;
			return -EINTR;
		}
		if (first)
			*gen = gi->notifier_gen;
		first = false;

		/* The mirror range that holds the next page of the range */
		list_for_each_entry(n, &gi->notifiers, entry) {
			if (n->mirror_end <= index || n->mirror_start >= end ||
			    max(index, n->mirror_start) >= lo)
				continue;
			lo = max(index, n->mirror_start);
			mirror = n;
		}
		if (!mirror || gi->released) {
			index = end;
		} else {
			r = gmem_allocate_state(inode, lo,
						min(end, mirror->mirror_end),
						false, GMEM_ALLOC_BATCH, &index,
						error_index, &new_first,
						&new_last);
		}
		filemap_invalidate_unlock_shared(mapping);
		cond_resched();
	}
	return r;
}

/**
 * guest_memfd_allocate() - Allocate the missing shared pages of a range
 * @n: a registered notifier
 * @start: first page index
 * @end: page index after the last page
 * @max_pages: how many shared pages of the range to look at, at most
 * @next: output: where to go on, @end once the range is done
 * @error_index: output, on failure: the page that failed
 *
 * For a client that starts to map the shared pages of a range (an IOMMU
 * mapping of the file).  The pages are zeroed.  The caller holds the
 * invalidate lock for reading (guest_memfd_lock()) and none of the locks
 * its own callbacks take, because every client, the caller included, is
 * told about the new pages with %GUEST_MEMFD_REASON_ALLOCATE.  The private
 * pages of the range are left alone: a conversion to shared allocates those
 * in the client's mirror range itself (&struct guest_memfd_notifier).  What
 * was allocated before an error stays allocated, as after a failed
 * fallocate(); at the memory cgroup's limit, or when memory runs out, the
 * allocation fails with -ENOMEM rather than invoking the OOM killer.  The
 * cost follows @max_pages and the number of shared ranges, never the size
 * of the range: a client allocates a large range in batches, dropping the
 * lock in between and resuming at *@next.
 *
 * Context: May sleep.
 * Return: 0, -EINTR on a fatal signal, -ENOMEM, -ENODEV if the file was
 * released.
 */
int guest_memfd_allocate(struct guest_memfd_notifier *n, pgoff_t start,
			 pgoff_t end, unsigned long max_pages, pgoff_t *next,
			 pgoff_t *error_index)
{
	struct inode *inode = n->inode;
	struct guest_memfd_range range;
	pgoff_t first, last;
	int ret;

	lockdep_assert_held_read(&inode->i_mapping->invalidate_lock);

	*next = end;
	if (GMEM_I(inode)->released)
		return -ENODEV;

	end = min_t(pgoff_t, end, i_size_read(inode) >> PAGE_SHIFT);
	ret = gmem_allocate_state(inode, start, end, true, max_pages, next,
				  error_index, &first, &last);
	if (first != last) {
		guest_memfd_range_init(&range, first, last,
				       GUEST_MEMFD_REASON_ALLOCATE);
		gmem_notify_begin(GMEM_I(inode), &range);
		gmem_notify_end(GMEM_I(inode), &range);
	}
	return ret;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_allocate, "GUEST_MEMFD");

/**
 * guest_memfd_lock_contended() - Whether a task waits for the invalidate lock
 * @n: a registered notifier whose client holds guest_memfd_lock()
 *
 * For a client that works under guest_memfd_lock() in batches: a conversion
 * waits for the lock, and every fault on the file queues behind the
 * conversion, so the client ends its batch early, drops the lock and goes
 * on after them.  Cheap enough to ask after every page.
 *
 * Context: guest_memfd_lock() held.
 * Return: true if a task waits for the lock.
 */
bool guest_memfd_lock_contended(struct guest_memfd_notifier *n)
{
	return rwsem_is_contended(&n->inode->i_mapping->invalidate_lock);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_lock_contended, "GUEST_MEMFD");

/**
 * guest_memfd_notify_allocated() - Tell clients that the owner filled a page
 * @file: a guest_memfd
 * @index: the page index
 *
 * For the owner of the file (KVM's fault path), after it allocated and
 * zeroed a page: every client that mirrors allocated pages maps it, as
 * after fallocate().
 *
 * Context: the invalidate lock held for reading; the folio not locked.
 */
void guest_memfd_notify_allocated(struct file *file, pgoff_t index)
{
	struct gmem_inode *gi = GMEM_I(file_inode(file));
	struct guest_memfd_range range;

	lockdep_assert_held_read(&file->f_mapping->invalidate_lock);

	if (gi->released || list_empty(&gi->notifiers))
		return;

	guest_memfd_range_init(&range, index, index + 1,
			       GUEST_MEMFD_REASON_ALLOCATE);
	gmem_notify_begin(gi, &range);
	gmem_notify_end(gi, &range);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_notify_allocated, "GUEST_MEMFD");

static long gmem_punch_hole(struct inode *inode, loff_t offset, loff_t len)
{
	pgoff_t start = offset >> PAGE_SHIFT;
	pgoff_t end = (offset + len) >> PAGE_SHIFT;
	struct guest_memfd_range range;
	pgoff_t error_index;
	int r;

	guest_memfd_range_init(&range, start, end, GUEST_MEMFD_REASON_TRUNCATE);

	/*
	 * Notifiers (and what they track, e.g. KVM's bindings) must be stable
	 * across invalidation to ensure the begin+end are balanced.
	 */
	filemap_invalidate_lock(inode->i_mapping);

	r = gmem_notify_prepare(GMEM_I(inode), &range, &error_index);
	if (r)
		goto out_unlock;

	gmem_notify_begin(GMEM_I(inode), &range);

	gmem_model_forget_hook(inode->i_mapping, start, end);
	truncate_inode_pages_range(inode->i_mapping, offset, offset + len - 1);

	gmem_notify_end(GMEM_I(inode), &range);

out_unlock:
	filemap_invalidate_unlock(inode->i_mapping);

	return r;
}

static long gmem_allocate(struct inode *inode, loff_t offset, loff_t len)
{
	struct address_space *mapping = inode->i_mapping;
	pgoff_t start, index, end;
	int r;

	/* Dedicated guest is immutable by default. */
	if (offset + len > i_size_read(inode))
		return -EINVAL;

	if (down_read_killable(&mapping->invalidate_lock))
		return -EINTR;

	start = offset >> PAGE_SHIFT;
	end = (offset + len) >> PAGE_SHIFT;

	r = 0;
	for (index = start; index < end; ) {
		struct folio *folio;

		/*
		 * Only a fatal signal ends the allocation: any other, io_uring's
		 * task work included, is delivered once it is done, rather
		 * than failing it halfway after clients have mapped the part
		 * already allocated.
		 */
		if (fatal_signal_pending(current)) {
			r = -EINTR;
			break;
		}

		folio = gmem_get_folio(inode, index);
		if (IS_ERR(folio)) {
			r = PTR_ERR(folio);
			break;
		}

		index = folio_next_index(folio);

		folio_unlock(folio);
		folio_put(folio);

		/* 64-bit only, wrapping the index should be impossible. */
		if (WARN_ON_ONCE(!index))
			break;

		cond_resched();
	}

	/* Clients that mirror allocated pages map what is there now. */
	if (index > start) {
		struct guest_memfd_range range;

		guest_memfd_range_init(&range, start, min(index, end),
				       GUEST_MEMFD_REASON_ALLOCATE);
		gmem_notify_begin(GMEM_I(inode), &range);
		gmem_notify_end(GMEM_I(inode), &range);
	}

	filemap_invalidate_unlock_shared(mapping);

	return r;
}

static long gmem_fallocate(struct file *file, int mode, loff_t offset,
			   loff_t len)
{
	int ret;

	if (!(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
		return -EOPNOTSUPP;

	if (!PAGE_ALIGNED(offset) || !PAGE_ALIGNED(len))
		return -EINVAL;

	if (mode & FALLOC_FL_PUNCH_HOLE)
		ret = gmem_punch_hole(file_inode(file), offset, len);
	else
		ret = gmem_allocate(file_inode(file), offset, len);

	if (!ret)
		file_modified(file);
	return ret;
}

static int gmem_release(struct inode *inode, struct file *file)
{
	struct gmem_inode *gi = GMEM_I(inode);
	struct guest_memfd_range range;

	/*
	 * The owner first, without any lock of ours: KVM takes slots_lock,
	 * which ranks above the invalidate lock, and unregisters its notifier.
	 */
	gi->owner_ops->release(file);

	/*
	 * Then every client still subscribed: nothing can reach the memory
	 * through this file any more.  The pages stay until the inode goes,
	 * i.e. until the last notifier is unregistered.
	 */
	guest_memfd_range_init(&range, 0, i_size_read(inode) >> PAGE_SHIFT,
			       GUEST_MEMFD_REASON_RELEASE);
	filemap_invalidate_lock(inode->i_mapping);
	gmem_notify_begin(gi, &range);
	gi->released = true;
	gmem_notify_end(gi, &range);
	filemap_invalidate_unlock(inode->i_mapping);

	return 0;
}

static bool gmem_supports_mmap(struct inode *inode)
{
	/* A convertible file exists to be mapped where it is shared. */
	return GMEM_I(inode)->flags & (GUEST_MEMFD_F_MMAP |
				       GUEST_MEMFD_F_CONVERTIBLE);
}

/*
 * A fault on a user mapping filled a page that was never handed out before
 * (a new page, or one that fallocate() allocated but nobody used yet): tell
 * the clients that mirror allocated pages, as fallocate() does.  The folio
 * is unlocked around the callbacks, which may look it up; the invalidate
 * lock, held for reading, keeps it in the file meanwhile.
 */
static void gmem_notify_fault_allocated(struct inode *inode,
					struct folio *folio)
{
	struct guest_memfd_range range;

	lockdep_assert_held_read(&inode->i_mapping->invalidate_lock);

	if (list_empty(&GMEM_I(inode)->notifiers))
		return;

	guest_memfd_range_init(&range, folio->index,
			       folio->index + folio_nr_pages(folio),
			       GUEST_MEMFD_REASON_ALLOCATE);
	folio_unlock(folio);
	gmem_notify_begin(GMEM_I(inode), &range);
	gmem_notify_end(GMEM_I(inode), &range);
	folio_lock(folio);
}

static vm_fault_t gmem_fault_user_mapping(struct vm_fault *vmf)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	struct folio *folio;
	vm_fault_t ret = VM_FAULT_LOCKED;

	if (((loff_t)vmf->pgoff << PAGE_SHIFT) >= i_size_read(inode))
		return VM_FAULT_SIGBUS;

	/*
	 * Check the state and look the folio up under the invalidate lock,
	 * so that a conversion to private (which holds it for writing) cannot
	 * change the state in between.  The folio stays locked until the
	 * caller has installed the PTE: a conversion that takes the
	 * invalidate lock after this unlock waits for the folio lock and
	 * unmaps the page again, see gmem_check_refs().
	 */
	filemap_invalidate_lock_shared(inode->i_mapping);

	if (!gmem_is_shared_mem(inode, vmf->pgoff)) {
		filemap_invalidate_unlock_shared(inode->i_mapping);
		return VM_FAULT_SIGBUS;
	}

	folio = gmem_get_folio(inode, vmf->pgoff);
	if (IS_ERR(folio)) {
		filemap_invalidate_unlock_shared(inode->i_mapping);
		if (PTR_ERR(folio) == -EAGAIN)
			return VM_FAULT_RETRY;

		return vmf_error(PTR_ERR(folio));
	}

	if (WARN_ON_ONCE(folio_test_large(folio))) {
		filemap_invalidate_unlock_shared(inode->i_mapping);
		ret = VM_FAULT_SIGBUS;
		goto out_folio;
	}

	if (!folio_test_uptodate(folio)) {
		clear_highpage(folio_page(folio, 0));
		folio_mark_uptodate(folio);
		gmem_notify_fault_allocated(inode, folio);
	}
	vmf->page = folio_file_page(folio, vmf->pgoff);
	guest_memfd_model_check(page_to_pfn(vmf->page), 1,
				GUEST_MEMFD_OWNER_HOST, "mmap fault");
	filemap_invalidate_unlock_shared(inode->i_mapping);

out_folio:
	if (ret != VM_FAULT_LOCKED) {
		folio_unlock(folio);
		folio_put(folio);
	}

	return ret;
}

#ifdef CONFIG_NUMA
static int gmem_set_policy(struct vm_area_struct *vma, struct mempolicy *mpol)
{
	struct inode *inode = file_inode(vma->vm_file);

	return mpol_set_shared_policy(&GMEM_I(inode)->policy, vma, mpol);
}

static struct mempolicy *gmem_get_policy(struct vm_area_struct *vma,
					 unsigned long addr, pgoff_t *ilx)
{
	pgoff_t pgoff = linear_page_index(vma, addr);
	struct inode *inode = file_inode(vma->vm_file);

	*ilx = inode->i_ino;

	/*
	 * Return the memory policy for this index, or NULL if none is set.
	 *
	 * Returning NULL, e.g. instead of the current task's memory policy, is
	 * important for the .get_policy kernel ABI: it indicates that no
	 * explicit policy has been set via mbind() for this memory. The caller
	 * can then replace NULL with the default memory policy instead of the
	 * current task's memory policy.
	 */
	return mpol_shared_policy_lookup(&GMEM_I(inode)->policy, pgoff);
}
#endif /* CONFIG_NUMA */

static const struct vm_operations_struct gmem_vm_ops = {
	.fault		= gmem_fault_user_mapping,
#ifdef CONFIG_NUMA
	.get_policy	= gmem_get_policy,
	.set_policy	= gmem_set_policy,
#endif
};

/*
 * Find the pages of [@start, @end) whose state differs from the target:
 * [*@first, *@last) spans all of them.  One step per range of the tree, not
 * per page.  Returns false if no page changes.
 */
static bool gmem_changed_span(struct gmem_inode *gi, pgoff_t start,
			      pgoff_t end, bool to_private, pgoff_t *first,
			      pgoff_t *last)
{
	MA_STATE(mas, &gi->shareability, start, start);
	pgoff_t index = start;
	bool found = false;

	while (index < end) {
		bool shared;
		pgoff_t next;

		mas_set(&mas, index);
		shared = mas_walk(&mas);
		next = mas.last >= end - 1 ? end : mas.last + 1;

		if (shared == to_private) {
			if (!found)
				*first = index;
			found = true;
			*last = next;
		}
		index = next;
	}

	return found;
}

/*
 * A page going private must have no reference but the page cache's and
 * the one taken here: anything else (a GUP pin, a pipe buffer) could keep
 * accessing it after it became private.  Called with the invalidate lock
 * held for writing and the range unmapped, so no new fault can map a page;
 * a fault that checked the state before still holds the folio lock until
 * its PTE is in place, so lock the folio and unmap it again if needed.
 * A page with a memory error keeps memory failure's reference for good: it
 * is reported as such, not as a reference that may go away.
 */
static int gmem_check_refs_range(struct address_space *mapping, pgoff_t start,
				 pgoff_t end, pgoff_t *error_index)
{
	struct folio_batch fbatch;
	pgoff_t index = start;
	int ret = 0;

	folio_batch_init(&fbatch);
	while (!ret && filemap_get_folios(mapping, &index, end - 1, &fbatch)) {
		unsigned int i;

		for (i = 0; i < folio_batch_count(&fbatch); i++) {
			struct folio *folio = fbatch.folios[i];

			folio_lock(folio);
			if (folio_test_hwpoison(folio)) {
				ret = -EHWPOISON;
			} else {
				if (folio_mapped(folio))
					unmap_mapping_pages(mapping, folio->index,
							    folio_nr_pages(folio),
							    false);
				/* The page cache's references plus fbatch's. */
				if (folio_ref_count(folio) >
				    folio_nr_pages(folio) + 1)
					ret = -EAGAIN;
			}
			folio_unlock(folio);
			if (ret) {
				*error_index = max(folio->index, start);
				break;
			}
		}
		folio_batch_release(&fbatch);
		cond_resched();
	}

	return ret;
}

/* Check the pages of [@start, @end) that change, i.e. the shared ones. */
static int gmem_check_refs(struct inode *inode, pgoff_t start, pgoff_t end,
			   pgoff_t *error_index)
{
	pgoff_t first, last;
	int ret;

	while (gmem_next_range(inode, start, end, true, &first, &last)) {
		ret = gmem_check_refs_range(inode->i_mapping, first, last,
					    error_index);
		if (ret)
			return ret;
		start = last;
	}
	return 0;
}

/* Folios gmem_refs_elevated() looks at per hold of the lock, at most */
#define GMEM_REFS_BATCH		256

/*
 * Whether a page of [@start, @end) that a conversion to private would change
 * (a shared one) has a reference beyond those of the page cache and of its
 * page tables (folio_expected_ref_count()) or the caller's lookup, looked at
 * with the invalidate lock held only for reading, GMEM_REFS_BATCH folios per
 * hold: faults go on meanwhile.  Not exact (a fault may map or unmap a page
 * meanwhile, and the LRU's per-CPU batches hold references it does not
 * count), so it only decides whether an attempt is worth making; the
 * attempt checks again with the lock held for writing.  A page with a
 * memory error ends the look: the attempt reports it.
 */
static bool gmem_refs_elevated(struct inode *inode, pgoff_t start,
			       pgoff_t end)
{
	struct address_space *mapping = inode->i_mapping;
	struct folio_batch fbatch;
	bool busy = false, done = false;

	folio_batch_init(&fbatch);
	while (!busy && !done && start < end) {
		unsigned int i, seen = 0;
		pgoff_t first, last;

		if (fatal_signal_pending(current))
			break;
		filemap_invalidate_lock_shared(mapping);
		done = !gmem_next_range(inode, start, end, true, &first, &last);
		if (!done)
			start = first;
		while (!done && !busy && seen < GMEM_REFS_BATCH &&
		       filemap_get_folios(mapping, &start, last - 1, &fbatch)) {
			for (i = 0; i < folio_batch_count(&fbatch); i++) {
				struct folio *folio = fbatch.folios[i];

				if (folio_test_hwpoison(folio)) {
					done = true;
					break;
				}
				/* The page cache's and fbatch's references */
				if (folio_ref_count(folio) >
				    folio_expected_ref_count(folio) + 1) {
					busy = true;
					break;
				}
			}
			seen += folio_batch_count(&fbatch);
			folio_batch_release(&fbatch);
		}
		filemap_invalidate_unlock_shared(mapping);
		cond_resched();
	}
	return busy;
}

/*
 * Between two attempts of a conversion to private of [@start, @end)
 * refused by a page reference, without the invalidate lock: folios are
 * added to the LRU through per-CPU batches that hold a reference until
 * drained, and KVM's or compaction's transient references go away by
 * themselves.  Drain, then sleep 1, 2, 4, ... jiffies from the second wait
 * on, and go on waiting as long as gmem_refs_elevated() still sees a
 * reference, rather than make an attempt that takes the lock for writing
 * only to be refused: a conversion refused for as long as a long-term pin
 * lasts then makes faults wait only at its first and last attempts.  The
 * last attempt (*@tries reaching %GMEM_CONVERT_REF_TRIES) is always made.
 * Returns -EINTR on a fatal signal.
 */
static int gmem_wait_for_refs(struct inode *inode, pgoff_t start,
			      pgoff_t end, unsigned int *tries)
{
	do {
		lru_add_drain_all();
		if (*tries)
			schedule_timeout_killable(1UL << (*tries - 1));
		if (fatal_signal_pending(current))
			return -EINTR;
	} while (++*tries < GMEM_CONVERT_REF_TRIES &&
		 gmem_refs_elevated(inode, start, end));
	return 0;
}

#ifdef CONFIG_GUEST_MEMFD_TEST
/**
 * gmem_set_step_tap() - Let a test see, and fail, a file's conversion step
 * @inode: the file's inode
 * @tap: the test's callbacks
 *
 * Context: May sleep.  Takes the invalidate lock for writing.
 * Return: 0, or -EBUSY if the file has a tap already.
 */
int gmem_set_step_tap(struct inode *inode, struct gmem_step_tap *tap)
{
	struct gmem_inode *gi = GMEM_I(inode);
	int r = 0;

	filemap_invalidate_lock(inode->i_mapping);
	if (gi->step_tap)
		r = -EBUSY;
	else
		gi->step_tap = tap;
	filemap_invalidate_unlock(inode->i_mapping);

	return r;
}

/**
 * gmem_clear_step_tap() - Remove a test's tap from a file
 * @inode: the file's inode
 * @tap: the tap gmem_set_step_tap() set; nothing happens if it is not set
 *
 * Context: May sleep.  Takes the invalidate lock for writing.
 */
void gmem_clear_step_tap(struct inode *inode, struct gmem_step_tap *tap)
{
	struct gmem_inode *gi = GMEM_I(inode);

	filemap_invalidate_lock(inode->i_mapping);
	if (gi->step_tap == tap)
		gi->step_tap = NULL;
	filemap_invalidate_unlock(inode->i_mapping);
}

static struct gmem_step_tap *gmem_step_tap(struct gmem_inode *gi)
{
	return gi->step_tap;
}
#else
static struct gmem_step_tap *gmem_step_tap(struct gmem_inode *gi)
{
	return NULL;
}
#endif

/* Whether a conversion of the file has a per-folio step. */
static bool gmem_has_step(struct gmem_inode *gi)
{
	return gi->owner_ops->convert_folio || gmem_step_tap(gi);
}

/* The owner's step for the pages [@index, @index + @nr) of @folio. */
static int gmem_step_folio(struct gmem_inode *gi, struct folio *folio,
			   pgoff_t index, unsigned long nr, bool to_private)
{
	unsigned long pfn = folio_pfn(folio) + index - folio->index;
	struct gmem_step_tap *tap = gmem_step_tap(gi);
	int r;

	if (tap) {
		r = tap->step(tap, index, nr, to_private);
		if (r)
			return r;
	}
	if (!gi->owner_ops->convert_folio)
		return 0;
	return gi->owner_ops->convert_folio(gi->owner_priv, index, pfn, nr,
					    to_private);
}

/* Undo gmem_step_folio() for the pages [@index, @index + @nr) of @folio. */
static void gmem_undo_folio(struct gmem_inode *gi, struct folio *folio,
			    pgoff_t index, unsigned long nr, bool to_private)
{
	unsigned long pfn = folio_pfn(folio) + index - folio->index;
	struct gmem_step_tap *tap = gmem_step_tap(gi);

	if (gi->owner_ops->convert_undo)
		gi->owner_ops->convert_undo(gi->owner_priv, index, pfn, nr,
					    to_private);
	if (tap)
		tap->undo(tap, index, nr, to_private);
}

/*
 * Undo the owner's step for every folio stepped in [@start, @end), last
 * first, with the arguments it was stepped with: the parts of the folios
 * that lie in one run of changing pages, as gmem_step_run() cut them.
 * Nothing has been stored yet, so the tree still tells which pages change;
 * the invalidate lock, held for writing, keeps every folio in place.
 */
static void gmem_undo_range(struct gmem_inode *gi, pgoff_t start,
			    pgoff_t end, bool to_private)
{
	MA_STATE(mas, &gi->shareability, 0, 0);
	struct address_space *mapping = gi->vfs_inode.i_mapping;
	pgoff_t index = end;

	while (index > start) {
		struct folio *folio;
		bool shared;
		pgoff_t lo;

		mas_set(&mas, index - 1);
		shared = mas_walk(&mas);
		lo = max_t(pgoff_t, mas.index, start);
		/* A run of pages that keep their state was not stepped. */
		if (shared != to_private) {
			index = lo;
			continue;
		}

		folio = filemap_get_folio(mapping, index - 1);
		if (IS_ERR(folio)) {
			/* A hole: one lookup per page, on failure only. */
			index--;
			if (!(index % 1024))
				cond_resched();
			continue;
		}
		lo = max(lo, folio->index);
		gmem_undo_folio(gi, folio, lo, index - lo, to_private);
		folio_put(folio);
		index = lo;
	}
}

/* The owner's step for the allocated folios of [@first, @last). */
static int gmem_step_run(struct gmem_inode *gi, pgoff_t first, pgoff_t last,
			 bool to_private, pgoff_t *error_index)
{
	struct address_space *mapping = gi->vfs_inode.i_mapping;
	struct folio_batch fbatch;
	pgoff_t index = first;
	int r = 0;

	folio_batch_init(&fbatch);
	while (!r && filemap_get_folios(mapping, &index, last - 1, &fbatch)) {
		unsigned int i;

		for (i = 0; !r && i < folio_batch_count(&fbatch); i++) {
			struct folio *folio = fbatch.folios[i];
			pgoff_t lo = max(folio->index, first);
			pgoff_t hi = min(folio_next_index(folio), last);

			r = gmem_step_folio(gi, folio, lo, hi - lo, to_private);
			if (r)
				*error_index = lo;
		}
		folio_batch_release(&fbatch);
		cond_resched();
	}

	return r;
}

/*
 * The owner's step for every allocated folio of [@start, @end) whose pages
 * change, once per folio and run of changing pages, in index order.  On
 * failure, the folios already stepped are undone in reverse order and
 * *@error_index is the first page of the part that failed.
 */
static int gmem_step_range(struct gmem_inode *gi, pgoff_t start,
			   pgoff_t end, bool to_private, pgoff_t *error_index)
{
	struct inode *inode = &gi->vfs_inode;
	pgoff_t index = start, first, last;
	int r = 0;

	/* The pages that change are those in the other state. */
	while (!r && gmem_next_range(inode, index, end, to_private, &first,
				     &last)) {
		r = gmem_step_run(gi, first, last, to_private, error_index);
		index = last;
	}
	if (r)
		gmem_undo_range(gi, start, *error_index, to_private);

	return r;
}

/*
 * One attempt of gmem_convert(), under the invalidate lock.  *@busy is set
 * when a page reference refused it: the caller may wait and try again.
 * *@stale is set, and nothing done, when a client registered since the
 * conversion to shared allocated the pages of the mirror ranges (notifier
 * generation @gen): the caller allocates again, for the new client too.
 */
static int gmem_convert_once(struct inode *inode, pgoff_t start, pgoff_t end,
			     bool to_private, unsigned long gen,
			     pgoff_t *error_index, bool *busy, bool *stale)
{
	MA_STATE(mas, &GMEM_I(inode)->shareability, 0, 0);
	enum guest_memfd_reason reason = to_private ?
		GUEST_MEMFD_REASON_CONVERT_PRIVATE :
		GUEST_MEMFD_REASON_CONVERT_SHARED;
	void *entry = to_private ? NULL : GMEM_SHARED;
	struct address_space *mapping = inode->i_mapping;
	struct gmem_inode *gi = GMEM_I(inode);
	struct guest_memfd_range range;
	pgoff_t first, last, lo, hi;
	int r = 0;

	*error_index = start;

	if (down_write_killable(&mapping->invalidate_lock))
		return -EINTR;

	/* A client came in after gmem_allocate_converted(): again. */
	if (!to_private && gi->notifier_gen != gen) {
		*stale = true;
		goto out_unlock;
	}

	if (!gmem_changed_span(gi, start, end, to_private, &first, &last))
		goto out_unlock;

	/*
	 * Keep one entry per maximal range of shared pages: a new shared
	 * range absorbs the shared ranges next to it.  (Gaps, i.e. private
	 * ranges, are merged by the tree itself.)
	 */
	lo = first;
	hi = last - 1;
	if (!to_private) {
		if (lo) {
			mas_set(&mas, lo - 1);
			if (mas_walk(&mas))
				lo = mas.index;
		}
		mas_set(&mas, hi + 1);
		if (mas_walk(&mas))
			hi = mas.last;
	}

	/* Nothing may fail between invalidate_begin and invalidate_end. */
	mas_set_range(&mas, lo, hi);
	r = mas_preallocate(&mas, entry, GFP_KERNEL_ACCOUNT);
	if (r)
		goto out_unlock;

	/*
	 * The core's checks come before any client hears of the conversion: a
	 * client may act in prepare (iommufd removes its IOMMU mappings there,
	 * since a removal can fail and must then refuse), and a refusal by a
	 * page reference, which a VMM may retry for as long as a pin lasts,
	 * must not make a device lose pages that stay shared, attempt after
	 * attempt.  What the checks find holds until the change: with the
	 * invalidate lock held for writing no fault maps a page again (one
	 * that looked the state up before holds the folio lock until its PTE
	 * is in place, and gmem_check_refs() waits for that lock and unmaps
	 * the PTE), so GUP finds nothing to take a new reference on, and
	 * neither a client nor the owner can look a page up until the change.
	 */
	if (to_private) {
		/* Every process's mappings, not only the caller's. */
		unmap_mapping_pages(mapping, first, last - first, false);
		r = gmem_check_refs(inode, first, last, error_index);
		if (r) {
			*busy = r == -EAGAIN;
			goto out_free;
		}
	}

	guest_memfd_range_init(&range, first, last, reason);
	r = gmem_notify_prepare(gi, &range, error_index);
	if (r)
		goto out_free;

	gmem_notify_begin(gi, &range);
	/* The owner's step, e.g. the hardware's own state of the pages. */
	if (gmem_has_step(gi))
		r = gmem_step_range(gi, first, last, to_private, error_index);
	if (!r) {
		spin_lock(&gi->state_lock);
		mas_store_prealloc(&mas, entry);
		spin_unlock(&gi->state_lock);
	} else {
		mas_destroy(&mas);
	}
	gmem_notify_end(gi, &range);
	goto out_unlock;

out_free:
	mas_destroy(&mas);
out_unlock:
	filemap_invalidate_unlock(mapping);

	return r;
}

/**
 * gmem_convert() - Convert pages of a guest_memfd between shared and private
 * @inode: the guest_memfd's inode, created with GUEST_MEMFD_F_CONVERTIBLE
 * @start: first page index
 * @end: page index after the last page, at most the file's size in pages
 * @to_private: convert to private rather than to shared
 * @error_index: output, on failure: the first page that failed
 *
 * All or nothing.  Only the span of pages whose state changes is notified
 * (nothing if no page changes).  The steps: the core's checks (to private:
 * unmap from every host page table, then no unexpected page reference,
 * counting only the pages that change), prepare, invalidate_begin, the
 * owner's convert_folio step for each allocated folio whose pages change,
 * the change, invalidate_end.  If the owner's step fails for a folio, the
 * folios stepped before it are undone in reverse order, invalidate_end
 * still follows and nothing changes.
 *
 * A page reference refuses an attempt before any client hears of it (no
 * prepare, no abort), and the attempt is made again from the start up to
 * %GMEM_CONVERT_REF_TRIES times, after waiting for transient references to
 * go away.  The wait happens without the invalidate lock, and an attempt
 * is made only once the references seem gone (or for the last time), so
 * that a conversion refused by a long-term reference stalls faults on the
 * file twice at most; every attempt looks at the file's state anew.
 *
 * A conversion to shared first allocates the private holes it converts in
 * the clients' mirror ranges (&struct guest_memfd_notifier), in batches
 * under the invalidate lock held for reading, so that the pages those
 * clients map at invalidate_end exist without an allocation under the lock
 * held for writing.  That allocation can fail (-ENOMEM, -EINTR) before any
 * state changed; what it allocated stays allocated.
 *
 * Context: May sleep.  Takes the invalidate lock for reading (a conversion
 * to shared, in batches), then for writing, killably.
 * Return: 0; -ENOMEM; -EAGAIN if a page going private has references beyond
 * the file's; -EHWPOISON if a page going private has a memory error; -EINTR
 * on a fatal signal; or the errno with which a client's prepare or the
 * owner's convert_folio step refused.
 */
int gmem_convert(struct inode *inode, pgoff_t start, pgoff_t end,
		 bool to_private, pgoff_t *error_index)
{
	unsigned int tries = 0;
	unsigned long gen = 0;
	int r;

	for (;;) {
		bool busy = false, stale = false;

		if (!to_private) {
			r = gmem_allocate_converted(inode, start, end, &gen,
						    error_index);
			if (r)
				return r;
		}
		r = gmem_convert_once(inode, start, end, to_private, gen,
				      error_index, &busy, &stale);
		if (stale)
			continue;
		if (!busy || tries == GMEM_CONVERT_REF_TRIES)
			return r;

		if (gmem_wait_for_refs(inode, start, end, &tries))
			return -EINTR;
	}
}

/**
 * guest_memfd_convert() - Convert a range of a guest_memfd in place
 * @file: a guest_memfd created with %GUEST_MEMFD_F_CONVERTIBLE
 * @start: first page index of the range
 * @end: page index after the last page of the range
 * @to_private: true to make the pages private, false to make them shared
 * @error_index: output, on failure: the page that failed
 *
 * For the owner's conversion ioctls (KVM_GMEM_CONVERT_SHARED and
 * KVM_GMEM_CONVERT_PRIVATE): all or nothing, with the notifications that
 * %GUEST_MEMFD_REASON_CONVERT_SHARED and %GUEST_MEMFD_REASON_CONVERT_PRIVATE
 * describe.  A conversion to shared first allocates the pages it converts
 * in the clients' mirror ranges, in batches.  The errors are those of the
 * ioctls, see Documentation/virt/kvm/api.rst.
 *
 * Context: May sleep.  Takes the invalidate lock for reading (a conversion
 * to shared, in batches), then for writing.
 * Return: 0; -EOPNOTSUPP if @file is not a convertible guest_memfd; -EINVAL
 * (*@error_index is @start) if the range is empty or extends beyond the end
 * of the file; or the errno of the conversion.
 */
int guest_memfd_convert(struct file *file, pgoff_t start, pgoff_t end,
			bool to_private, pgoff_t *error_index)
{
	struct inode *inode = file_inode(file);

	if (!is_guest_memfd(file) || !gmem_is_convertible(inode))
		return -EOPNOTSUPP;

	if (start >= end || end > (i_size_read(inode) >> PAGE_SHIFT)) {
		*error_index = start;
		return -EINVAL;
	}

	return gmem_convert(inode, start, end, to_private, error_index);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_convert, "GUEST_MEMFD");

/* The file's UAPI is its owner's (KVM's): the core has no ioctl of its own. */
static long gmem_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	const struct guest_memfd_owner_ops *ops = GMEM_I(file_inode(file))->owner_ops;

	if (!ops->ioctl)
		return -ENOTTY;

	return ops->ioctl(file, cmd, arg);
}

static int gmem_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (!gmem_supports_mmap(file_inode(file)))
		return -ENODEV;

	if ((vma->vm_flags & (VM_SHARED | VM_MAYSHARE)) !=
	    (VM_SHARED | VM_MAYSHARE)) {
		return -EINVAL;
	}

	vma->vm_ops = &gmem_vm_ops;

	return 0;
}

static const struct file_operations gmem_fops = {
	.mmap		= gmem_mmap,
	.open		= generic_file_open,
	.release	= gmem_release,
	.fallocate	= gmem_fallocate,
	.unlocked_ioctl	= gmem_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

/*
 * Clients hold PFNs without pinning them (guest_memfd_get_pfn()): a folio
 * must never move.
 */
static int gmem_migrate_folio(struct address_space *mapping,
			      struct folio *dst, struct folio *src,
			      enum migrate_mode mode)
{
	WARN_ON_ONCE(1);
	return -EINVAL;
}

/*
 * A memory failure's notification, sent once ->error_remove_folio() has
 * returned: see gmem_error_folio().
 */
struct gmem_mf_event {
	union {
		struct callback_head twork;
		struct llist_node node;
	};
	struct inode *inode;
	pgoff_t start;
	pgoff_t end;
};

static void gmem_mf_notify(struct gmem_mf_event *ev)
{
	struct inode *inode = ev->inode;
	struct gmem_inode *gi = GMEM_I(inode);
	struct guest_memfd_range range;

	guest_memfd_range_init(&range, ev->start, ev->end,
			       GUEST_MEMFD_REASON_MEMORY_FAILURE);

	filemap_invalidate_lock_shared(inode->i_mapping);

	/*
	 * After RELEASE, clients have dropped everything already.
	 *
	 * Do not truncate the range, what action is taken in response to the
	 * error is userspace's decision (assuming the architecture supports
	 * gracefully handling memory errors).  If/when the guest attempts to
	 * access a poisoned page, kvm_gmem_get_pfn() will return -EHWPOISON,
	 * at which point KVM can either terminate the VM or propagate the
	 * error to userspace.
	 */
	if (!gi->released) {
		gmem_notify_begin(gi, &range);
		gmem_notify_end(gi, &range);
	}

	filemap_invalidate_unlock_shared(inode->i_mapping);

	/* Maybe the last reference: evicts the inode, puts the owner's module. */
	iput(inode);
	kfree(ev);
}

static void gmem_mf_task_work(struct callback_head *twork)
{
	gmem_mf_notify(container_of(twork, struct gmem_mf_event, twork));
}

static LLIST_HEAD(gmem_mf_list);

static void gmem_mf_work_fn(struct work_struct *work)
{
	struct llist_node *list = llist_reverse_order(llist_del_all(&gmem_mf_list));
	struct gmem_mf_event *ev, *next;

	llist_for_each_entry_safe(ev, next, list, node)
		gmem_mf_notify(ev);
}

static DECLARE_WORK(gmem_mf_work, gmem_mf_work_fn);

/*
 * Waits until the memory-failure notifications that kernel threads queued
 * have been sent (for tests, which run in kernel threads).
 */
void gmem_flush_memory_failures(void)
{
	flush_work(&gmem_mf_work);
}

/*
 * Memory failure calls this with mf_mutex held and the folio locked, and
 * expects both to stay held until it returns: the folio lock is the
 * caller's, and so is the inode, which the folio being in the page cache
 * keeps alive.  The notification cannot run here:
 *
 * - not under the folio lock: the invalidate lock ranks above folio locks
 *   (truncation, and every path that looks pages up under it, locks folios
 *   with it held for writing or reading), and so do client locks, which the
 *   callbacks take.  Waiting for either with the folio locked can deadlock
 *   against a hole punch that holds the invalidate lock and waits for this
 *   folio.
 * - not with the folio unlocked for the while: the lock is memory
 *   failure's, which goes on with the folio and its mapping afterwards.  A
 *   hole punch could take the folio out of the file meanwhile, and the
 *   inode reference that the notification needs could then be the last
 *   one: dropping it here would evict the inode (and put the owner's
 *   module) inside ->error_remove_folio().
 *
 * So take an inode reference and send the notification after memory
 * failure is done, as fput() defers its work: a user task (MADV_HWPOISON,
 * the machine check handler's task work) runs it before it returns to
 * userspace, so that the mappings of the page are gone by then; a kernel
 * thread (the memory-failure work queue, a test) queues it for a worker.
 * The notification takes the invalidate lock for reading and no folio
 * lock, and holds no page reference: PG_hwpoison, set before this is
 * called, already keeps every lookup from handing the page out; if a hole
 * punch frees the page meanwhile, the notification finds nothing left to
 * drop, which is what it asks for anyway.
 */
static int gmem_error_folio(struct address_space *mapping, struct folio *folio)
{
	struct inode *inode = mapping->host;
	struct gmem_mf_event *ev;

	/* Being evicted: nobody is subscribed any more. */
	if (!igrab(inode))
		return MF_DELAYED;

	/*
	 * Small, and a memory failure cannot be refused: a lost notification
	 * would leave a client's mapping of the bad page in place.
	 */
	ev = kmalloc_obj(*ev, GFP_KERNEL | __GFP_NOFAIL);
	ev->inode = inode;
	ev->start = folio->index;
	ev->end = folio->index + folio_nr_pages(folio);

	if (!(current->flags & PF_KTHREAD)) {
		init_task_work(&ev->twork, gmem_mf_task_work);
		if (!task_work_add(current, &ev->twork, TWA_RESUME))
			return MF_DELAYED;
	}

	if (llist_add(&ev->node, &gmem_mf_list))
		schedule_work(&gmem_mf_work);

	return MF_DELAYED;
}

static const struct address_space_operations gmem_aops = {
	.dirty_folio = noop_dirty_folio,
	.migrate_folio	= gmem_migrate_folio,
	.error_remove_folio = gmem_error_folio,
};

static int gmem_setattr(struct mnt_idmap *idmap, struct dentry *dentry,
			struct iattr *attr)
{
	return -EINVAL;
}

static const struct inode_operations gmem_iops = {
	.setattr	= gmem_setattr,
};

/**
 * guest_memfd_create() - Create a guest_memfd file
 * @ops: the creator's callbacks, see &struct guest_memfd_owner_ops
 * @priv: the creator's data, stored in the file's private_data
 * @module: the module @ops live in.  The new inode holds it until it is
 *	evicted, after the last @ops->free_folio() call.
 * @size: size of the file in bytes, page aligned and not zero
 * @flags: GUEST_MEMFD_F_* flags
 *
 * The creator registers its own notifier, if it needs one, before it makes
 * the file visible (e.g. installs a file descriptor).
 *
 * Context: May sleep.
 * A file created with %GUEST_MEMFD_F_CONVERTIBLE starts out private, or
 * shared with %GUEST_MEMFD_F_INIT_SHARED, and userspace converts its pages
 * with the KVM_GMEM_CONVERT_SHARED and KVM_GMEM_CONVERT_PRIVATE ioctls.
 *
 * Return: the new file, or an ERR_PTR(): -EINVAL for bad @ops, @size or
 * @flags, -ENOENT if @module is going away, -ENOMEM.
 */
struct file *guest_memfd_create(const struct guest_memfd_owner_ops *ops,
				void *priv, struct module *module,
				loff_t size, u64 flags)
{
	static const char *name = "[kvm-gmem]";
	struct inode *inode;
	struct file *file;
	int err;

	if (WARN_ON_ONCE(!ops || !ops->release ||
			 !ops->convert_folio != !ops->convert_undo))
		return ERR_PTR(-EINVAL);

	if (size <= 0 || !PAGE_ALIGNED(size) ||
	    (flags & ~(GUEST_MEMFD_F_MMAP | GUEST_MEMFD_F_INIT_SHARED |
		       GUEST_MEMFD_F_CONVERTIBLE)))
		return ERR_PTR(-EINVAL);

	if (!try_module_get(module))
		return ERR_PTR(-ENOENT);

	inode = anon_inode_make_secure_inode(gmem_mnt->mnt_sb, name, NULL);
	if (IS_ERR(inode)) {
		err = PTR_ERR(inode);
		goto err_module;
	}

	/* From here on, evicting the inode puts the module. */
	GMEM_I(inode)->owner_ops = ops;
	GMEM_I(inode)->owner_module = module;
	GMEM_I(inode)->owner_priv = priv;

	inode->i_op = &gmem_iops;
	inode->i_mapping->a_ops = &gmem_aops;
	if (ops->free_folio) {
		/*
		 * ->free_folio() gets nothing but the folio, which no longer
		 * points to its mapping: give the inode its own copy of the
		 * operations that calls the owner's hook directly.
		 */
		GMEM_I(inode)->aops = gmem_aops;
		GMEM_I(inode)->aops.free_folio = ops->free_folio;
		inode->i_mapping->a_ops = &GMEM_I(inode)->aops;
	}
	inode->i_mode |= S_IFREG;
	inode->i_size = size;
	mapping_set_gfp_mask(inode->i_mapping, GFP_HIGHUSER);
	mapping_set_inaccessible(inode->i_mapping);
	/* Unmovable mappings are supposed to be marked unevictable as well. */
	WARN_ON_ONCE(!mapping_unevictable(inode->i_mapping));

	GMEM_I(inode)->flags = flags;

	if ((flags & GUEST_MEMFD_F_CONVERTIBLE) &&
	    (flags & GUEST_MEMFD_F_INIT_SHARED)) {
		MA_STATE(mas, &GMEM_I(inode)->shareability, 0,
			 (size >> PAGE_SHIFT) - 1);

		filemap_invalidate_lock(inode->i_mapping);
		err = mas_store_gfp(&mas, GMEM_SHARED, GFP_KERNEL_ACCOUNT);
		filemap_invalidate_unlock(inode->i_mapping);
		if (err)
			goto err_inode;
	}

	file = alloc_file_pseudo(inode, gmem_mnt, name, O_RDWR, &gmem_fops);
	if (IS_ERR(file)) {
		err = PTR_ERR(file);
		goto err_inode;
	}

	file->f_flags |= O_LARGEFILE;
	file->private_data = priv;

	return file;

err_inode:
	iput(inode);
	return ERR_PTR(err);
err_module:
	module_put(module);
	return ERR_PTR(err);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_create, "GUEST_MEMFD");

/**
 * is_guest_memfd() - Test whether a file is a guest_memfd
 * @file: the file
 *
 * Return: true if @file was created by guest_memfd_create().
 */
bool is_guest_memfd(struct file *file)
{
	return file->f_op == &gmem_fops;
}
EXPORT_SYMBOL_NS_GPL(is_guest_memfd, "GUEST_MEMFD");

/**
 * guest_memfd_owner_data() - The creator's data of a guest_memfd
 * @file: the file
 * @ops: the callbacks the creator passed to guest_memfd_create()
 *
 * Return: the @priv given to guest_memfd_create() if @file is a guest_memfd
 * created with @ops, else NULL.
 */
void *guest_memfd_owner_data(struct file *file,
			     const struct guest_memfd_owner_ops *ops)
{
	if (!is_guest_memfd(file) || GMEM_I(file_inode(file))->owner_ops != ops)
		return NULL;

	return file->private_data;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_owner_data, "GUEST_MEMFD");

/**
 * guest_memfd_flags() - The GUEST_MEMFD_F_* flags of a guest_memfd
 * @file: a guest_memfd
 *
 * Return: the flags the file was created with.
 */
u64 guest_memfd_flags(struct file *file)
{
	return GMEM_I(file_inode(file))->flags;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_flags, "GUEST_MEMFD");

/**
 * guest_memfd_is_private() - Whether a page of a guest_memfd is private
 * @file: a guest_memfd
 * @index: page index in @file
 *
 * Takes only a spinlock of the file's own, the innermost lock of all,
 * without disabling interrupts: callable in process context with any lock
 * held or interrupts disabled, e.g. under a client's spinlock (KVM's
 * mmu_lock), never from interrupt or NMI context.  The
 * state can change as soon as this returns unless the caller holds the
 * invalidate lock; a caller that maps pages rechecks instead, with an
 * invalidation sequence its notifier bumps (conversions change the state
 * between invalidate_begin and invalidate_end).  The caller holds a
 * reference on @file.
 *
 * Return: true if the page at @index is private to the guest.
 */
bool guest_memfd_is_private(struct file *file, pgoff_t index)
{
	return gmem_is_private(file_inode(file), index);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_is_private, "GUEST_MEMFD");

/**
 * guest_memfd_get_folio() - Get (allocating if needed) a guest_memfd folio
 * @file: a guest_memfd
 * @index: page index in @file
 *
 * For the owner of the file.  The folio is not cleared: the caller is
 * responsible for making it up to date before it is mapped anywhere.
 *
 * Return: the folio, locked and with a reference, or an ERR_PTR().
 */
struct folio *guest_memfd_get_folio(struct file *file, pgoff_t index)
{
	return gmem_get_folio(file_inode(file), index);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_get_folio, "GUEST_MEMFD");

static struct kmem_cache *gmem_inode_cachep;

static void gmem_init_inode_once(void *__gi)
{
	struct gmem_inode *gi = __gi;

	/*
	 * Note!  Don't initialize the inode with anything specific to the
	 * guest_memfd instance, or that might be specific to how the inode is
	 * used (from the VFS-layer's perspective).  This hook is called only
	 * during the initial slab allocation, i.e. only fields/state that are
	 * idempotent across _all_ use of the inode _object_ can be initialized
	 * at this time!
	 */
	inode_init_once(&gi->vfs_inode);
}

static struct inode *gmem_alloc_inode(struct super_block *sb)
{
	struct gmem_inode *gi;

	gi = alloc_inode_sb(sb, gmem_inode_cachep, GFP_KERNEL);
	if (!gi)
		return NULL;

	mpol_shared_policy_init(&gi->policy, NULL);

	gmem_notifier_init_inode(gi);
	/*
	 * Written under the invalidate lock (and state_lock for the store
	 * itself), read under either.  Not in RCU mode: with thousands of
	 * single-page ranges, a store that merged them had the dead subtree
	 * freed from an RCU callback that crashed (KASAN null-ptr-deref in
	 * mte_dead_walk()); readers without the invalidate lock take
	 * state_lock instead.
	 */
	mt_init_flags(&gi->shareability, MT_FLAGS_LOCK_EXTERN);
	spin_lock_init(&gi->state_lock);
	mt_set_external_lock(&gi->shareability,
			     &gi->vfs_inode.i_data.invalidate_lock);
	gi->flags = 0;
	gi->owner_ops = NULL;
	gi->owner_module = NULL;
	gi->owner_priv = NULL;
#ifdef CONFIG_GUEST_MEMFD_TEST
	gi->step_tap = NULL;
#endif
	return &gi->vfs_inode;
}

static void gmem_destroy_inode(struct inode *inode)
{
	/* Each notifier holds a reference to the inode. */
	WARN_ON_ONCE(!list_empty(&GMEM_I(inode)->notifiers));

	mpol_free_shared_policy(&GMEM_I(inode)->policy);

	/* Every reader holds a reference on the file or inode: none is left. */
	filemap_invalidate_lock(inode->i_mapping);
	__mt_destroy(&GMEM_I(inode)->shareability);
	filemap_invalidate_unlock(inode->i_mapping);

	/*
	 * The page cache is gone (evict() truncated it before calling here),
	 * so the owner's ->free_folio() and ->release() can no longer run.
	 */
	module_put(GMEM_I(inode)->owner_module);
}

/* The page cache goes: the ownership model forgets its pages first. */
static void gmem_evict_inode(struct inode *inode)
{
	gmem_model_forget_hook(inode->i_mapping, 0, ULONG_MAX);
	truncate_inode_pages_final(&inode->i_data);
	clear_inode(inode);
}

static void gmem_free_inode(struct inode *inode)
{
	kmem_cache_free(gmem_inode_cachep, GMEM_I(inode));
}

static const struct super_operations gmem_super_operations = {
	.statfs		= simple_statfs,
	.alloc_inode	= gmem_alloc_inode,
	.destroy_inode	= gmem_destroy_inode,
	.evict_inode	= gmem_evict_inode,
	.free_inode	= gmem_free_inode,
};

static int gmem_init_fs_context(struct fs_context *fc)
{
	struct pseudo_fs_context *ctx;

	if (!init_pseudo(fc, GUEST_MEMFD_MAGIC))
		return -ENOMEM;

	ctx = fc->fs_private;
	ctx->ops = &gmem_super_operations;

	return 0;
}

static struct file_system_type gmem_fs = {
	.name		 = "guest_memfd",
	.init_fs_context = gmem_init_fs_context,
	.kill_sb	 = kill_anon_super,
};

static int gmem_init_mount(void)
{
	gmem_mnt = kern_mount(&gmem_fs);

	if (IS_ERR(gmem_mnt))
		return PTR_ERR(gmem_mnt);

	gmem_mnt->mnt_flags |= MNT_NOEXEC;
	return 0;
}

/*
 * Set up once at boot and never torn down: files may outlive any module
 * that created them, and the module that created a file is pinned by the
 * file's inode rather than by the filesystem.
 */
static int __init gmem_init(void)
{
	struct kmem_cache_args args = {
		.align = 0,
		.ctor = gmem_init_inode_once,
	};
	int ret;

	gmem_inode_cachep = kmem_cache_create("guest_memfd_inode_cache",
					      sizeof(struct gmem_inode),
					      &args, SLAB_ACCOUNT);
	if (!gmem_inode_cachep)
		return -ENOMEM;

	ret = gmem_init_mount();
	if (ret) {
		kmem_cache_destroy(gmem_inode_cachep);
		return ret;
	}
	return 0;
}
fs_initcall(gmem_init);
