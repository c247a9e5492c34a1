/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef __GUEST_MEMFD_INTERNAL_H
#define __GUEST_MEMFD_INTERNAL_H

#include <linux/fs.h>
#include <linux/maple_tree.h>
#include <linux/guest_memfd.h>
#include <linux/mempolicy.h>
#include <linux/spinlock.h>

/*
 * The inode of a guest_memfd: the memory itself and everything that
 * describes it.  Each file of it is a creator's view (today exactly one).
 */
struct gmem_inode {
	struct shared_policy policy;
	struct inode vfs_inode;

	/*
	 * Registered notifiers, in registration order.  Written with the
	 * invalidate lock held for writing; walked with it held (for reading
	 * only by memory-failure handling).
	 */
	struct list_head notifiers;
	/*
	 * Bumped by every registration, under the invalidate lock held for
	 * writing: a conversion to shared that allocated the pages of every
	 * client's mirror range before taking the lock for writing finds out
	 * whether a client came in meanwhile.
	 */
	unsigned long notifier_gen;
	/* Set, under the invalidate lock, once RELEASE has been notified. */
	bool released;

	u64 flags;

	/*
	 * Which pages are shared with the host, for files created with
	 * GUEST_MEMFD_F_CONVERTIBLE: an entry (xa_mk_value(1)) covers each
	 * maximal range of shared pages, a gap means private.  Its size grows
	 * with the number of distinct ranges, not with the number of pages.
	 * Written with the invalidate lock held for writing (the tree's
	 * external lock) and, around the store itself, state_lock; read with
	 * either held, e.g. by KVM under mmu_lock with state_lock, which is
	 * why it changes only between invalidate_begin and invalidate_end.
	 */
	struct maple_tree shareability;
	/* Brackets each store to shareability; taken by lockless readers. */
	spinlock_t state_lock;

	/* The creator's callbacks and the module they live in. */
	const struct guest_memfd_owner_ops *owner_ops;
	struct module *owner_module;
	void *owner_priv;
	/*
	 * Only used when the owner has a free_folio callback, see
	 * guest_memfd_create(): ->free_folio() gets nothing but the folio, so
	 * the inode needs operations of its own to reach the owner's hook.
	 */
	struct address_space_operations aops;
#ifdef CONFIG_GUEST_MEMFD_TEST
	/* A test's tap on the conversion step, under the invalidate lock. */
	struct gmem_step_tap *step_tap;
#endif
};

static __always_inline struct gmem_inode *GMEM_I(struct inode *inode)
{
	return container_of(inode, struct gmem_inode, vfs_inode);
}

/*
 * How often a conversion to private refused by unexpected page references
 * is attempted again, after draining the per-CPU LRU batches (which hold a
 * reference on folios just added to the page cache) and, from the second
 * time on, sleeping 1, 2, 4, ... jiffies: about 2^(TRIES - 1) jiffies in all
 * (128 ms at HZ=1000) before a reference counts as a long-term one.  The
 * invalidate lock is not held meanwhile.
 */
#define GMEM_CONVERT_REF_TRIES	8

int gmem_convert(struct inode *inode, pgoff_t start, pgoff_t end,
		 bool to_private, pgoff_t *error_index);

/*
 * A test's view of a file's conversion step (CONFIG_GUEST_MEMFD_TEST): the
 * core calls @step before the owner's convert_folio for the same pages,
 * and fails the conversion at that folio if it returns an errno, so that
 * tests can make the step fail at a chosen page whatever the owner; @undo
 * follows the owner's convert_undo.  One tap per file.
 */
struct gmem_step_tap {
	int (*step)(struct gmem_step_tap *tap, pgoff_t index,
		    unsigned long nr, bool to_private);
	void (*undo)(struct gmem_step_tap *tap, pgoff_t index,
		     unsigned long nr, bool to_private);
};

#ifdef CONFIG_GUEST_MEMFD_TEST
int gmem_set_step_tap(struct inode *inode, struct gmem_step_tap *tap);
void gmem_clear_step_tap(struct inode *inode, struct gmem_step_tap *tap);
#endif

void gmem_notifier_init_inode(struct gmem_inode *gi);
int gmem_notify_prepare(struct gmem_inode *gi,
			const struct guest_memfd_range *range,
			pgoff_t *error_index);
void gmem_notify_begin(struct gmem_inode *gi,
		       const struct guest_memfd_range *range);
void gmem_notify_end(struct gmem_inode *gi,
		     const struct guest_memfd_range *range);

/* Sends the memory-failure notifications that kernel threads queued. */
void gmem_flush_memory_failures(void);

#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
void gmem_model_allocated(struct inode *inode, struct folio *folio,
			  bool private);
void gmem_model_forget(struct address_space *mapping, pgoff_t start,
		       pgoff_t end);
bool gmem_model_peek(unsigned long pfn, enum guest_memfd_owner *owner,
		     unsigned long *maps);

static inline void gmem_model_allocated_hook(struct inode *inode,
					     struct folio *folio, bool private)
{
	if (static_branch_unlikely(&guest_memfd_model_key))
		gmem_model_allocated(inode, folio, private);
}

static inline void gmem_model_forget_hook(struct address_space *mapping,
					  pgoff_t start, pgoff_t end)
{
	if (static_branch_unlikely(&guest_memfd_model_key))
		gmem_model_forget(mapping, start, end);
}
#else
static inline void gmem_model_allocated_hook(struct inode *inode,
					     struct folio *folio, bool private)
{
}

static inline void gmem_model_forget_hook(struct address_space *mapping,
					  pgoff_t start, pgoff_t end)
{
}
#endif

#endif /* __GUEST_MEMFD_INTERNAL_H */
