// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memfd notifiers: how KVM, an IOMMU or any other client that maps
 * the pages of a guest_memfd hears that it must let go of them.
 *
 * The contract of each callback and the lock order are documented in
 * include/linux/guest_memfd.h.  In short: everything runs under the file's
 * invalidate lock, which is also what makes unregistration synchronous.
 */
#include <linux/lockdep.h>
#include <linux/pagemap.h>
#include <linux/sched.h>

#include "internal.h"

/*
 * Held (as far as lockdep knows) around every callback and in
 * guest_memfd_read_begin(), which waits for callbacks to finish: lockdep
 * then sees invalidate lock -> callbacks -> client locks, and complains if
 * a client waits for an invalidation while holding a lock its callbacks
 * take.
 */
#ifdef CONFIG_LOCKDEP
static struct lockdep_map gmem_notifier_map = {
	.name = "guest_memfd_notifier"
};
#endif

static void gmem_notifier_map_acquire(void)
{
	lock_map_acquire(&gmem_notifier_map);
}

static void gmem_notifier_map_release(void)
{
	lock_map_release(&gmem_notifier_map);
}

static void gmem_assert_held(struct gmem_inode *gi, bool write)
{
	if (write)
		lockdep_assert_held_write(&gi->vfs_inode.i_mapping->invalidate_lock);
	else
		lockdep_assert_held(&gi->vfs_inode.i_mapping->invalidate_lock);
}

/*
 * Memory failure and allocation run with the invalidate lock held for
 * reading, so two of them (on different ranges) may notify concurrently;
 * everything else holds it for writing.
 */
static bool gmem_reason_shared_lock(enum guest_memfd_reason reason)
{
	return reason == GUEST_MEMFD_REASON_MEMORY_FAILURE ||
	       reason == GUEST_MEMFD_REASON_ALLOCATE;
}

void gmem_notifier_init_inode(struct gmem_inode *gi)
{
	INIT_LIST_HEAD(&gi->notifiers);
	gi->released = false;
	spin_lock_init(&gi->seq_lock);
	gi->invalidate_seq = 0;
	gi->invalidate_active = 0;
	init_waitqueue_head(&gi->invalidate_wq);
}

/*
 * Ask every client with a prepare callback whether the change described by
 * @range may happen.  On refusal, the clients asked before the refusing one
 * get abort (in reverse order), *@error_index is the refused page, and the
 * refusal's errno is returned.  On success the caller must either go on to
 * gmem_notify_begin() or call gmem_notify_abort().
 */
int gmem_notify_prepare(struct gmem_inode *gi,
			const struct guest_memfd_range *range,
			pgoff_t *error_index)
{
	struct guest_memfd_notifier *n;
	int ret = 0;

	gmem_assert_held(gi, true);

	if (list_empty(&gi->notifiers))
		return 0;

	gmem_notifier_map_acquire();
	list_for_each_entry(n, &gi->notifiers, entry) {
		pgoff_t index = range->start;

		if (!n->ops->prepare)
			continue;

		ret = n->ops->prepare(n, range, &index);
		if (!ret)
			continue;

		/* Only errnos: a positive value would read as success. */
		if (WARN_ON_ONCE(ret > 0))
			ret = -EINVAL;
		if (index < range->start || index >= range->end)
			index = range->start;
		*error_index = index;

		list_for_each_entry_continue_reverse(n, &gi->notifiers, entry) {
			if (n->ops->prepare)
				n->ops->abort(n, range);
		}
		break;
	}
	gmem_notifier_map_release();

	return ret;
}

/* Undo a successful gmem_notify_prepare(): the core itself refuses. */
void gmem_notify_abort(struct gmem_inode *gi,
		       const struct guest_memfd_range *range)
{
	struct guest_memfd_notifier *n;

	gmem_assert_held(gi, true);

	if (list_empty(&gi->notifiers))
		return;

	gmem_notifier_map_acquire();
	list_for_each_entry_reverse(n, &gi->notifiers, entry) {
		if (n->ops->prepare)
			n->ops->abort(n, range);
	}
	gmem_notifier_map_release();
}

void gmem_notify_begin(struct gmem_inode *gi,
		       const struct guest_memfd_range *range)
{
	struct guest_memfd_notifier *n;

	gmem_assert_held(gi, !gmem_reason_shared_lock(range->reason));

	/* The list cannot change before the matching gmem_notify_end(). */
	if (list_empty(&gi->notifiers))
		return;

	/*
	 * Readers that sample the sequence after this see an invalidation in
	 * progress; readers that sampled it before either installed their
	 * PFNs before the client's invalidate_begin took the client's lock
	 * (and that callback removes them) or see the count under that lock
	 * (guest_memfd_read_retry()).
	 */
	spin_lock(&gi->seq_lock);
	gi->invalidate_active++;
	spin_unlock(&gi->seq_lock);

	gmem_notifier_map_acquire();
	list_for_each_entry(n, &gi->notifiers, entry)
		n->ops->invalidate_begin(n, range);
	gmem_notifier_map_release();
}

void gmem_notify_end(struct gmem_inode *gi,
		     const struct guest_memfd_range *range)
{
	struct guest_memfd_notifier *n;
	bool idle;

	gmem_assert_held(gi, !gmem_reason_shared_lock(range->reason));

	if (list_empty(&gi->notifiers))
		return;

	gmem_notifier_map_acquire();
	list_for_each_entry(n, &gi->notifiers, entry)
		n->ops->invalidate_end(n, range);
	gmem_notifier_map_release();

	/* A reader that sees the count drop also sees the new sequence. */
	spin_lock(&gi->seq_lock);
	gi->invalidate_seq++;
	idle = !--gi->invalidate_active;
	spin_unlock(&gi->seq_lock);

	/* wake_up_all() takes the waitqueue lock: no barrier needed. */
	if (idle)
		wake_up_all(&gi->invalidate_wq);
}

/**
 * guest_memfd_register_notifier() - Subscribe to a guest_memfd's changes
 * @file: the guest_memfd; the caller holds a reference for the duration of
 *	the call only
 * @n: the notifier, with @n->ops set; not registered anywhere
 *
 * From the return of this function, @n's callbacks are called for every
 * change to any page of the file (subscriptions are not ranged).  The
 * registration never splits a notification: @n gets either all of its
 * callbacks or none.  The notifier holds a reference on the file's inode,
 * and thereby on its memory, until guest_memfd_unregister_notifier(), but
 * not on the file: when the file is released, @n gets
 * %GUEST_MEMFD_REASON_RELEASE and then nothing more.
 *
 * Context: May sleep.  Takes the invalidate lock; not from a callback.
 * Return: 0, or -EINVAL if @file is not a guest_memfd or @n->ops lacks a
 * required callback.
 */
int guest_memfd_register_notifier(struct file *file,
				  struct guest_memfd_notifier *n)
{
	const struct guest_memfd_notifier_ops *ops = n->ops;
	struct inode *inode;

	if (!is_guest_memfd(file))
		return -EINVAL;

	if (WARN_ON_ONCE(!ops || !ops->invalidate_begin ||
			 !ops->invalidate_end || (ops->prepare && !ops->abort)))
		return -EINVAL;

	inode = file_inode(file);
	ihold(inode);

	filemap_invalidate_lock(inode->i_mapping);
	/* Teach lockdep the callbacks' place before the first one runs. */
	gmem_notifier_map_acquire();
	gmem_notifier_map_release();
	n->inode = inode;
	list_add_tail(&n->entry, &GMEM_I(inode)->notifiers);
	filemap_invalidate_unlock(inode->i_mapping);

	return 0;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_register_notifier, "GUEST_MEMFD");

/**
 * guest_memfd_unregister_notifier() - Cancel a subscription
 * @n: a notifier registered with guest_memfd_register_notifier()
 *
 * When this function returns, none of @n's callbacks is running and none
 * will be called again, so the caller may free @n.  It waits for a
 * notification in progress to finish: calling it from one of @n's
 * callbacks (or of any notifier of the same file), or while holding a lock
 * that such a callback takes, deadlocks.  It may drop the last reference to
 * the inode and free the file's memory.
 *
 * Context: May sleep.  Takes the invalidate lock.
 */
void guest_memfd_unregister_notifier(struct guest_memfd_notifier *n)
{
	struct inode *inode = n->inode;

	if (WARN_ON_ONCE(!inode))
		return;

	/*
	 * Every callback runs with the invalidate lock held, so once it is
	 * ours no callback of @n is running, and none starts after the list
	 * no longer holds @n.
	 */
	filemap_invalidate_lock(inode->i_mapping);
	list_del(&n->entry);
	n->inode = NULL;
	filemap_invalidate_unlock(inode->i_mapping);

	iput(inode);
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_unregister_notifier, "GUEST_MEMFD");

/**
 * guest_memfd_read_begin() - Start looking up PFNs of a guest_memfd
 * @n: the client's registered notifier
 *
 * guest_memfd does not pin the pages whose PFNs it hands out; a client
 * instead follows this protocol, like mmu_interval_read_begin()'s::
 *
 *	again:
 *	seq = guest_memfd_read_begin(n);
 *	guest_memfd_get_pfn(n, index, flags, &pfn);	(no client lock held)
 *	take the client lock (the one its invalidate_begin also takes)
 *	if (guest_memfd_read_retry(n, seq)) {
 *		drop the client lock
 *		goto again;
 *	}
 *	install pfn
 *	drop the client lock
 *
 * Either the PFN is installed before invalidate_begin takes the client lock
 * (and that callback removes it) or the recheck sees the invalidation.
 * Waits until no invalidation of the file is in progress.
 *
 * Context: May sleep.  Not from a callback, nor with a lock that a callback
 * takes.
 * Return: the sequence number to give to guest_memfd_read_retry().
 */
unsigned long guest_memfd_read_begin(struct guest_memfd_notifier *n)
{
	struct gmem_inode *gi = GMEM_I(n->inode);
	unsigned long seq;

	might_sleep();
	gmem_notifier_map_acquire();
	gmem_notifier_map_release();

	wait_event(gi->invalidate_wq, !READ_ONCE(gi->invalidate_active));

	spin_lock(&gi->seq_lock);
	seq = gi->invalidate_seq;
	spin_unlock(&gi->seq_lock);

	return seq;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_read_begin, "GUEST_MEMFD");

/**
 * guest_memfd_read_retry() - Check whether PFNs looked up are still valid
 * @n: the client's registered notifier
 * @seq: the value guest_memfd_read_begin() returned
 *
 * Call it with the client lock held that the client's invalidate_begin
 * takes; see guest_memfd_read_begin().
 *
 * Context: Any context that may take a spinlock.
 * Return: true if an invalidation started since @seq was read, or is in
 * progress: the PFNs must not be installed.
 */
bool guest_memfd_read_retry(struct guest_memfd_notifier *n, unsigned long seq)
{
	struct gmem_inode *gi = GMEM_I(n->inode);
	bool retry;

	spin_lock(&gi->seq_lock);
	retry = gi->invalidate_active || gi->invalidate_seq != seq;
	spin_unlock(&gi->seq_lock);

	return retry;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_read_retry, "GUEST_MEMFD");

/**
 * guest_memfd_lock() - Hold a guest_memfd's pages and their state
 * @n: the client's registered notifier
 *
 * Takes the file's invalidate lock for reading: until guest_memfd_unlock(),
 * no page changes state or leaves the file, the file is not released and no
 * notifier is registered or unregistered.  Pages may still be allocated
 * (%GUEST_MEMFD_REASON_ALLOCATE) and memory failures notified.  For a client
 * that fills a mapping from scratch under its own lock: take this first,
 * then the client lock, and look PFNs up with guest_memfd_get_pfn_locked();
 * no guest_memfd_read_begin() protocol is needed.
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
 * guest_memfd_get_pfn_locked() - Look up the PFN of a page, lock held
 * @n: the client's registered notifier
 * @index: page index in the file
 * @flags: as for guest_memfd_get_pfn(), except that both
 *	%GUEST_MEMFD_ACCESS_SHARED and %GUEST_MEMFD_ACCESS_PRIVATE may be set,
 *	to accept a page in either state (e.g. to allocate pages that are
 *	about to become shared, from a prepare callback)
 * @pfn: output, the PFN
 *
 * Like guest_memfd_get_pfn(), for a caller that holds the invalidate lock:
 * under guest_memfd_lock(), or from a callback of @n.  The answer stays
 * valid until the caller drops the lock or returns from the callback; a PFN
 * kept beyond that is dropped by the client's next invalidate_begin that
 * covers @index, as for guest_memfd_get_pfn().
 *
 * Context: May sleep (locks the folio, may allocate).
 * Return: as for guest_memfd_get_pfn().
 */
int guest_memfd_get_pfn_locked(struct guest_memfd_notifier *n, pgoff_t index,
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
	if (!access)
		return -EINVAL;

	if (GMEM_I(inode)->released)
		return -ENODEV;

	if (index >= (i_size_read(inode) >> PAGE_SHIFT))
		return -EINVAL;

	want_private = access == GUEST_MEMFD_ACCESS_PRIVATE;
	if (access != (GUEST_MEMFD_ACCESS_SHARED | GUEST_MEMFD_ACCESS_PRIVATE) &&
	    gmem_is_private(inode, index) != want_private)
		return -EACCES;

	if (flags & GUEST_MEMFD_GET_ALLOC)
		folio = gmem_get_folio(inode, index);
	else
		folio = filemap_lock_folio(mapping, index);
	if (IS_ERR(folio))
		return PTR_ERR(folio);

	if (folio_test_hwpoison(folio)) {
		ret = -EHWPOISON;
		goto out_folio;
	}

	if (!folio_test_uptodate(folio)) {
		folio_zero_range(folio, 0, folio_size(folio));
		folio_mark_uptodate(folio);
	}

	*pfn = folio_pfn(folio) + (index - folio->index);

out_folio:
	folio_unlock(folio);
	folio_put(folio);
	return ret;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_get_pfn_locked, "GUEST_MEMFD");

/**
 * guest_memfd_get_pfn() - Look up the PFN of a page of a guest_memfd
 * @n: the client's registered notifier
 * @index: page index in the file
 * @flags: exactly one of %GUEST_MEMFD_ACCESS_SHARED and
 *	%GUEST_MEMFD_ACCESS_PRIVATE, the access the client will make, and
 *	optionally %GUEST_MEMFD_GET_ALLOC to allocate a missing page
 * @pfn: output, the PFN
 *
 * No reference is left on the page: guest_memfd keeps it, and the client
 * must stop using @pfn when its invalidate_begin is called for a range that
 * contains @index.  Use the guest_memfd_read_begin() protocol to install it.
 * A page allocated here (or by fallocate()) is cleared before its PFN is
 * first returned.  Allocation here is not notified: the client asked for
 * the page (compare fallocate(), which is).
 *
 * The PFN stays valid without a pin only because guest_memfd folios are
 * never migrated (->migrate_folio refuses) nor reclaimed (the mapping is
 * unevictable and every folio is dirty from its allocation on, so neither
 * reclaim nor drop_caches' invalidation takes it) and leave the file only
 * through a notified truncation or the inode's eviction.  Whoever changes
 * that must notify clients first.
 *
 * Context: May sleep (takes the invalidate lock for reading).  Not from a
 * callback, nor with a lock that a callback takes.
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
	int ret;

	if (access != GUEST_MEMFD_ACCESS_SHARED &&
	    access != GUEST_MEMFD_ACCESS_PRIVATE)
		return -EINVAL;

	guest_memfd_lock(n);
	ret = guest_memfd_get_pfn_locked(n, index, flags, pfn);
	guest_memfd_unlock(n);
	return ret;
}
EXPORT_SYMBOL_NS_GPL(guest_memfd_get_pfn, "GUEST_MEMFD");
