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
 * Held (as far as lockdep knows) around every callback: lockdep then sees
 * invalidate lock -> callbacks -> client locks, and complains if a callback
 * takes a lock that is held somewhere while the invalidate lock is taken.
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
	gi->notifier_gen = 0;
	gi->released = false;
}

/*
 * Ask every client with a prepare callback whether the change described by
 * @range may happen.  On refusal, the clients asked before the refusing one
 * get abort (in reverse order), *@error_index is the refused page, and the
 * refusal's errno is returned.  On success the caller must go on to
 * gmem_notify_begin(): whatever the core itself may refuse the change for
 * is checked before the clients are asked.
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
			if (n->ops->prepare && n->ops->abort)
				n->ops->abort(n, range);
		}
		break;
	}
	gmem_notifier_map_release();

	return ret;
}

void gmem_notify_begin(struct gmem_inode *gi,
		       const struct guest_memfd_range *range)
{
	struct guest_memfd_notifier *n;

	gmem_assert_held(gi, !gmem_reason_shared_lock(range->reason));

	/* The list cannot change before the matching gmem_notify_end(). */
	if (list_empty(&gi->notifiers))
		return;

	gmem_notifier_map_acquire();
	list_for_each_entry(n, &gi->notifiers, entry)
		n->ops->invalidate_begin(n, range);
	gmem_notifier_map_release();
}

void gmem_notify_end(struct gmem_inode *gi,
		     const struct guest_memfd_range *range)
{
	struct guest_memfd_notifier *n;

	gmem_assert_held(gi, !gmem_reason_shared_lock(range->reason));

	if (list_empty(&gi->notifiers))
		return;

	gmem_notifier_map_acquire();
	list_for_each_entry(n, &gi->notifiers, entry)
		n->ops->invalidate_end(n, range);
	gmem_notifier_map_release();
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
			 !ops->invalidate_end))
		return -EINVAL;

	inode = file_inode(file);
	ihold(inode);

	filemap_invalidate_lock(inode->i_mapping);
	/* Teach lockdep the callbacks' place before the first one runs. */
	gmem_notifier_map_acquire();
	gmem_notifier_map_release();
	n->inode = inode;
	list_add_tail(&n->entry, &GMEM_I(inode)->notifiers);
	GMEM_I(inode)->notifier_gen++;
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
