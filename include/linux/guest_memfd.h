/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef _LINUX_GUEST_MEMFD_H
#define _LINUX_GUEST_MEMFD_H

#include <linux/list.h>
#include <linux/types.h>

struct file;
struct folio;
struct module;

/* The file can be mmap()ed (its shared pages, that is). */
#define GUEST_MEMFD_F_MMAP		BIT_ULL(0)
/* The file's pages start out shared rather than private. */
#define GUEST_MEMFD_F_INIT_SHARED	BIT_ULL(1)

/**
 * struct guest_memfd_owner_ops - callbacks of the creator of a guest_memfd
 * @release: called when the last reference to the file is dropped, before
 *	guest_memfd takes any lock of its own.  Required.
 * @free_folio: called when a folio leaves the file's page cache.  Optional.
 */
struct guest_memfd_owner_ops {
	void (*release)(struct file *file);
	void (*free_folio)(struct folio *folio);
};

struct guest_memfd_notifier;

struct guest_memfd_notifier_ops {
	void (*invalidate_start)(struct guest_memfd_notifier *n, pgoff_t start,
				 pgoff_t end);
	void (*invalidate_end)(struct guest_memfd_notifier *n, pgoff_t start,
			       pgoff_t end);
};

struct guest_memfd_notifier {
	struct list_head entry;
	const struct guest_memfd_notifier_ops *ops;
};

struct file *guest_memfd_create(const struct guest_memfd_owner_ops *ops,
				void *priv, struct module *module,
				loff_t size, u64 flags);
bool is_guest_memfd(struct file *file);
void *guest_memfd_owner_data(struct file *file,
			     const struct guest_memfd_owner_ops *ops);
u64 guest_memfd_flags(struct file *file);
bool guest_memfd_is_private(struct file *file, pgoff_t index);
struct folio *guest_memfd_get_folio(struct file *file, pgoff_t index);
void guest_memfd_add_notifier_locked(struct file *file,
				     struct guest_memfd_notifier *n);
void guest_memfd_del_notifier_locked(struct guest_memfd_notifier *n);

#endif /* _LINUX_GUEST_MEMFD_H */
