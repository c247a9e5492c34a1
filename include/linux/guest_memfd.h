/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * guest_memfd: memory for guests, as a file.
 *
 * A guest_memfd is a file whose pages back guest memory.  The core (built
 * into the kernel, virt/kvm/guest_memfd/) owns the file, its page cache and
 * each page's state (shared with the host or private to the guest).  The
 * module that creates a file (its owner, KVM) and any other subsystem that
 * maps the file's pages (a client, e.g. an IOMMU) learn about every change
 * to those pages through the notifier API below, so that none of them has
 * to pin pages or link against another.
 */
#ifndef _LINUX_GUEST_MEMFD_H
#define _LINUX_GUEST_MEMFD_H

#include <linux/bits.h>
#include <linux/err.h>
#include <linux/jump_label.h>
#include <linux/list.h>
#include <linux/types.h>

struct file;
struct folio;
struct inode;
struct module;

/**
 * DOC: guest_memfd lock order
 *
 * This is the one place that lists the locks around guest_memfd; code that
 * adds a lock to the picture extends this list.  Outer locks first::
 *
 *   kvm->slots_lock, iommufd's io_pagetable rwsems
 *     mapping->invalidate_lock ("the invalidate lock", an rw_semaphore)
 *       guest_memfd_notifier callbacks (a lockdep map, see below)
 *         kvm->mmu_lock, client locks (e.g. iommufd's pages->mutex)
 *
 *   mmap_lock
 *     mapping->invalidate_lock
 *       folio lock
 *         mapping->i_mmap_rwsem
 *
 *   client locks (e.g. iommufd's pages->mutex)
 *     folio lock
 *
 *   KVM's vCPU fault (kvm->srcu held, kvm_gmem_get_pfn())
 *     mapping->invalidate_lock, for reading
 *       folio lock
 *   and then, with the invalidate lock dropped, kvm->mmu_lock
 *
 * No path holds a folio lock while it waits for the invalidate lock or a
 * client lock.  lockdep does not track folio locks: keep it that way.
 * Memory failure calls guest_memfd with mf_mutex held and a folio locked,
 * so it takes neither the invalidate lock nor a client lock there: it
 * queues its notification (%GUEST_MEMFD_REASON_MEMORY_FAILURE), which is
 * sent once memory failure has dropped both.  KVM's fault path decides on
 * a page's state and looks its PFN up under the invalidate lock, then maps
 * it under mmu_lock after dropping it, relying on its invalidation
 * sequence (bumped by invalidate_begin under mmu_lock) to retry a fault
 * that raced with a change.
 *
 * The second order is the mmap fault handler's: it checks a page's state
 * and looks the page up under the invalidate lock held for reading, so that
 * a conversion to private (which holds it for writing from before it
 * unmaps the range until the state has changed) cannot race with a fault
 * mapping the page.  Callbacks therefore never take mmap_lock.  A
 * conversion to private takes the folio lock and i_mmap_rwsem (to unmap)
 * under the invalidate lock, as truncation does.
 *
 * The shared/private state of a convertible file is written with the
 * invalidate lock held for writing, between invalidate_begin and
 * invalidate_end, and read by guest_memfd_is_private() under a spinlock of
 * the file's own that nests inside every other lock, so a client may read
 * it under its own spinlock (KVM does, under mmu_lock).
 *
 * The invalidate lock is held for writing by everything that changes what
 * a page is or whether it exists: hole punch, conversion between shared and
 * private, release of the file, and (un)registration of a notifier.  It is
 * held for reading by memory-failure handling, fallocate() allocation,
 * guest_memfd_lock(), KVM's fault path and the mmap fault handler.  Every
 * notifier callback runs under it.  Because waiting writers hold up every
 * later reader (vCPU and host faults), nothing waits long with it held for
 * writing: a conversion to private that finds a page reference drops the
 * lock to wait for it and tries again from the start, and a conversion
 * waits for the lock killably.
 *
 * Callbacks must not take kvm->slots_lock, mmap_lock or the invalidate
 * lock, and must not register or unregister a notifier.  A client calls
 * guest_memfd_lock() and guest_memfd_unregister_notifier() without
 * holding any lock that its callbacks take.  lockdep checks all of this:
 * the core acquires the lockdep map "guest_memfd_notifier" around every
 * callback, so lockdep learns invalidate lock -> callbacks -> client
 * locks.
 *
 * The owner's release callback (&struct guest_memfd_owner_ops) is not a
 * notifier callback: it runs before the core takes the invalidate lock to
 * send %GUEST_MEMFD_REASON_RELEASE, so that KVM can take slots_lock first.
 */

/* The file can be mmap()ed (its shared pages, that is). */
#define GUEST_MEMFD_F_MMAP		BIT_ULL(0)
/* The file's pages start out shared rather than private. */
#define GUEST_MEMFD_F_INIT_SHARED	BIT_ULL(1)
/*
 * The file tracks each page's state (shared or private) and userspace
 * converts pages in place with KVM_GMEM_CONVERT_SHARED/PRIVATE on the file.
 * Implies GUEST_MEMFD_F_MMAP.
 */
#define GUEST_MEMFD_F_CONVERTIBLE	BIT_ULL(2)

/**
 * enum guest_memfd_reason - why a range of a guest_memfd is invalidated
 * @GUEST_MEMFD_REASON_CONVERT_SHARED: the range becomes shared with the host.
 *	Clients drop their mappings of its private pages.  Notified once for
 *	the requested range, shrunk to start at the first page and end after
 *	the last page whose state changes (pages in between that already are
 *	shared are included); a conversion that changes nothing is not
 *	notified.  Has a prepare step.
 * @GUEST_MEMFD_REASON_CONVERT_PRIVATE: the range becomes private to the
 *	guest.  Clients drop their mappings of its shared pages.  Notified
 *	like @GUEST_MEMFD_REASON_CONVERT_SHARED.  Has a prepare step; the core
 *	unmaps host page tables and checks page references before it, so a
 *	conversion that a page reference refuses is not notified at all.
 * @GUEST_MEMFD_REASON_TRUNCATE: the pages of the range are freed (hole
 *	punch).  The range is the punched one, allocated pages or not.  Has a
 *	prepare step: a refusal fails the hole punch and leaves the file as it
 *	was.
 * @GUEST_MEMFD_REASON_RELEASE: the last reference to the file was dropped.
 *	The range is the whole file.  Clients drop everything; no callback
 *	follows, and guest_memfd_get_pfn() fails from then on.  The notifier
 *	stays registered (and keeps the inode, i.e. the memory) until
 *	guest_memfd_unregister_notifier().  No prepare step.
 * @GUEST_MEMFD_REASON_MEMORY_FAILURE: a page of the range has an
 *	uncorrectable memory error.  The page stays in the file; clients drop
 *	their mappings of it.  Sent once memory failure has handled the page
 *	and dropped its locks: before the task that handled it returns to
 *	userspace, or from a workqueue if a kernel thread did.  Sent with the
 *	invalidate lock held for reading: two of these may run concurrently,
 *	for different ranges.  No prepare step.
 * @GUEST_MEMFD_REASON_ALLOCATE: pages of the range were allocated
 *	(fallocate(); the range is the one requested, or the part of it done
 *	before an error, and may include pages that existed already).
 *	Nothing was mapped there before; a client that mirrors allocated
 *	pages maps them at invalidate_end.  Sent with the invalidate lock held
 *	for reading, like %GUEST_MEMFD_REASON_MEMORY_FAILURE.  A fault on a
 *	user mapping that fills a page nobody used before is notified the
 *	same way, for that page (with mmap_lock held: callbacks never take
 *	it), and so are a fault of the owner (KVM) that fills a page, see
 *	guest_memfd_notify_allocated(), and the shared pages a client
 *	allocates with guest_memfd_allocate().  Pages allocated by
 *	guest_memfd_get_pfn() are not notified: the client asked for them.
 *	No prepare step.
 */
enum guest_memfd_reason {
	GUEST_MEMFD_REASON_CONVERT_SHARED,
	GUEST_MEMFD_REASON_CONVERT_PRIVATE,
	GUEST_MEMFD_REASON_TRUNCATE,
	GUEST_MEMFD_REASON_RELEASE,
	GUEST_MEMFD_REASON_MEMORY_FAILURE,
	GUEST_MEMFD_REASON_ALLOCATE,
};

/**
 * struct guest_memfd_range - a range of a guest_memfd being invalidated
 * @start: first page index of the range
 * @end: page index after the last page of the range
 * @reason: why, see &enum guest_memfd_reason
 */
struct guest_memfd_range {
	pgoff_t start;
	pgoff_t end;
	enum guest_memfd_reason reason;
};

/**
 * guest_memfd_range_init() - Initialise a &struct guest_memfd_range
 * @range: the range
 * @start: first page index
 * @end: page index after the last page
 * @reason: why the range is invalidated
 */
static inline void guest_memfd_range_init(struct guest_memfd_range *range,
					  pgoff_t start, pgoff_t end,
					  enum guest_memfd_reason reason)
{
	range->start = start;
	range->end = end;
	range->reason = reason;
}

struct guest_memfd_notifier;

/**
 * struct guest_memfd_notifier_ops - callbacks of a guest_memfd client
 * @prepare: optional.  The last point where the change described by @range
 *	can be refused.  Return 0 to let it happen, or a negative errno to
 *	refuse it and set *@error_index to the first page of the range that
 *	the client cannot let go (the core uses @range->start if it is left
 *	unchanged or outside the range).  Called, in registration order, for
 *	every client that has a prepare callback, after the core's own checks
 *	and before any invalidate_begin; if one refuses, later clients are
 *	not asked and earlier ones get @abort.  Only for reasons that say
 *	"has a prepare step".  May sleep; runs with the invalidate lock held
 *	for writing, so never concurrently with another callback of the same
 *	file.
 * @abort: optional.  Undoes a successful @prepare when the @prepare of a
 *	later client refuses the change: called, in reverse registration
 *	order, for every client whose @prepare returned 0 for @range.  No
 *	invalidate_begin follows.  Cannot fail; may sleep; same locking as
 *	@prepare.  A client that refuses in its own @prepare undoes what that
 *	@prepare did itself: it gets no @abort.
 * @invalidate_begin: required.  The pages of @range are about to change (see
 *	@range->reason): drop every mapping of them that the change makes
 *	invalid, and install none until the matching @invalidate_end.  Always
 *	followed by exactly one @invalidate_end with the same @range, and
 *	called on every client, in registration order, before the core
 *	changes anything.  Cannot
 *	fail; may sleep.  Runs with the invalidate lock held, for writing
 *	except for %GUEST_MEMFD_REASON_MEMORY_FAILURE (for reading, so it can
 *	run concurrently with another memory-failure range).
 * @invalidate_end: required.  The change of @range is done: the client may
 *	map pages of the range again, looking them up anew.  Called on every
 *	client, in registration order, after the change.  Cannot fail; may
 *	sleep; same locking as @invalidate_begin.
 *
 * The sequence for one change is: the core's own checks, @prepare on every
 * client (conversion and truncation only), @invalidate_begin on every
 * client, the change, @invalidate_end on every client.  If the core's
 * checks refuse, no callback runs; if a @prepare refuses, the sequence
 * stops there, @abort runs where @prepare succeeded, and nothing changes.
 * What a client does in @prepare is therefore undone only for a refusal by
 * a client, never for one by the core.
 */
struct guest_memfd_notifier_ops {
	int (*prepare)(struct guest_memfd_notifier *n,
		       const struct guest_memfd_range *range,
		       pgoff_t *error_index);
	void (*abort)(struct guest_memfd_notifier *n,
		      const struct guest_memfd_range *range);
	void (*invalidate_begin)(struct guest_memfd_notifier *n,
				 const struct guest_memfd_range *range);
	void (*invalidate_end)(struct guest_memfd_notifier *n,
			       const struct guest_memfd_range *range);
};

/**
 * struct guest_memfd_notifier - a subscription to a guest_memfd's changes
 * @ops: the client's callbacks, set before registration
 * @mirror_start: optional, set before registration: first page index of the
 *	range whose shared pages the client maps (an IOMMU mirror)
 * @mirror_end: page index after the last page of that range; both zero
 *	(an empty range) for a client that maps no shared page
 * @entry: private to guest_memfd: link in the file's list of notifiers
 * @inode: private to guest_memfd: the file's inode, NULL when unregistered
 *
 * Embed it in the client's own structure and use container_of() in the
 * callbacks.  A conversion to shared allocates the private holes it
 * converts inside [@mirror_start, @mirror_end) before it takes the
 * invalidate lock for writing, in batches under the lock held for reading
 * (see guest_memfd_convert()), so that such a client finds the pages it
 * maps at invalidate_end allocated, without allocating them itself under
 * the lock held for writing.
 */
struct guest_memfd_notifier {
	const struct guest_memfd_notifier_ops *ops;
	pgoff_t mirror_start;
	pgoff_t mirror_end;
	struct list_head entry;
	struct inode *inode;
};

/**
 * struct guest_memfd_owner_ops - callbacks of the creator of a guest_memfd
 * @release: required.  Called when the last reference to the file is
 *	dropped, before guest_memfd takes the invalidate lock to notify
 *	%GUEST_MEMFD_REASON_RELEASE, so it may take locks that rank above the
 *	invalidate lock.  The owner unregisters its own notifier here.
 * @free_folio: optional.  Called when a folio leaves the file's page cache
 *	(hole punch, or eviction of the inode), e.g. to give a page back to
 *	the host after the guest used it as private memory.
 * @convert_folio: optional.  The step of an owner whose hardware tracks the
 *	state of each page too (SEV-SNP's RMP, TDX's S-EPT), called by a
 *	conversion for the pages [@index, @index + @nr) of one allocated
 *	folio, whose PFNs are [@pfn, @pfn + @nr): every page of the folio
 *	that is in the range and whose state changes, so each changing
 *	allocated page is stepped exactly once, bound to a memslot or not.
 *	Pages with no folio have no step: a page allocated later starts in
 *	the state the file has for it.  A page with a memory error is
 *	stepped too, and the step must not read it.  Called in index order,
 *	after every client's invalidate_begin (no client, and no host page
 *	table, maps the pages) and before the new state is stored, with the
 *	invalidate lock held for writing: the step must not take it, nor
 *	look pages up through the file, which takes it too.  @priv is what
 *	the owner gave guest_memfd_create().  Return 0 or a negative errno:
 *	on failure the core undoes the folios already stepped, the
 *	conversion fails with that errno naming @index as the page that
 *	failed, the state stays as it was, and invalidate_end still follows
 *	(clients map the pages again as they are).
 * @convert_undo: required with @convert_folio.  Reverts a successful
 *	@convert_folio with the same arguments, when a later folio of the
 *	same conversion failed: called for each folio stepped before the
 *	failing one, in reverse order, under the same locks.  Cannot fail:
 *	a step that cannot be reverted must not succeed.
 * @ioctl: optional.  The file's ioctls: the core defines none, so the
 *	file's UAPI is its owner's (KVM's KVM_GMEM_CONVERT_SHARED and
 *	KVM_GMEM_CONVERT_PRIVATE), implemented with core functions such as
 *	guest_memfd_convert().  Without it, every ioctl fails with -ENOTTY.
 */
struct guest_memfd_owner_ops {
	void (*release)(struct file *file);
	void (*free_folio)(struct folio *folio);
	int (*convert_folio)(void *priv, pgoff_t index, unsigned long pfn,
			     unsigned long nr, bool to_private);
	void (*convert_undo)(void *priv, pgoff_t index, unsigned long pfn,
			     unsigned long nr, bool to_private);
	long (*ioctl)(struct file *file, unsigned int cmd, unsigned long arg);
};

/* Access a client wants to a page, for guest_memfd_get_pfn(). */
#define GUEST_MEMFD_ACCESS_SHARED	BIT(0)
#define GUEST_MEMFD_ACCESS_PRIVATE	BIT(1)
/* guest_memfd_get_pfn() allocates the page if it is missing. */
#define GUEST_MEMFD_GET_ALLOC		BIT(2)

/**
 * enum guest_memfd_owner - who may access a page, in the ownership model
 * @GUEST_MEMFD_OWNER_HOST: the host and devices (the page is shared)
 * @GUEST_MEMFD_OWNER_GUEST: the guest alone (the page is private)
 *
 * See guest_memfd_model_assign() and guest_memfd_model_check().
 */
enum guest_memfd_owner {
	GUEST_MEMFD_OWNER_HOST,
	GUEST_MEMFD_OWNER_GUEST,
};

#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
DECLARE_STATIC_KEY_FALSE(guest_memfd_model_key);
bool __guest_memfd_model_check(unsigned long pfn, unsigned long nr,
			       enum guest_memfd_owner expected,
			       const char *path);
int __guest_memfd_model_assign(unsigned long pfn, unsigned long nr,
			       enum guest_memfd_owner from,
			       enum guest_memfd_owner to, const char *path);
void __guest_memfd_model_map(unsigned long pfn, unsigned long nr,
			     const char *path);
void __guest_memfd_model_unmap(unsigned long pfn, unsigned long nr,
			       const char *path);
#endif

/**
 * guest_memfd_model_enabled() - Whether the software ownership model is on
 *
 * For a caller that has work to do only for the model, e.g. find the PFNs
 * it is about to unmap for guest_memfd_model_unmap().
 *
 * Return: true if CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL is built in and the
 * kernel command line turned it on.
 */
static inline bool guest_memfd_model_enabled(void)
{
#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
	return static_branch_unlikely(&guest_memfd_model_key);
#else
	return false;
#endif
}

/**
 * guest_memfd_model_check() - Check an access to pages against the model
 * @pfn: first PFN, of a guest_memfd page
 * @nr: number of pages
 * @expected: the owner that the access needs: %GUEST_MEMFD_OWNER_HOST for
 *	an access by the host or a device (a user mapping, an IOMMU mapping,
 *	a kernel copy), %GUEST_MEMFD_OWNER_GUEST for a private fault of the
 *	guest
 * @path: the access, named in the report
 *
 * With the software ownership model on (CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
 * and guest_memfd.ownership_model=1 on the kernel command line), a page
 * that is not a guest_memfd page or is owned by the other side is a
 * violation: a WARN naming the PFN, the file index, the owner and @path,
 * where the hardware of a confidential VM (SEV-SNP's RMP, TDX) would
 * fault.  The access goes on regardless.  Without the model, a NOP.
 *
 * Context: Any context but interrupt or NMI.
 * Return: true if every page is owned by @expected (or the model is off).
 */
static inline bool guest_memfd_model_check(unsigned long pfn, unsigned long nr,
					   enum guest_memfd_owner expected,
					   const char *path)
{
#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
	if (static_branch_unlikely(&guest_memfd_model_key))
		return __guest_memfd_model_check(pfn, nr, expected, path);
#endif
	return true;
}

/**
 * guest_memfd_model_assign() - Move pages between owners in the model
 * @pfn: first PFN, of a guest_memfd page
 * @nr: number of pages
 * @from: the owner the pages have
 * @to: the owner they get
 * @path: the step, named in a report
 *
 * For the architecture step of a conversion (&struct guest_memfd_owner_ops)
 * of a VM type that the model stands in for hardware, and for its undo.
 * Like RMPUPDATE, a page that is not owned by @from is refused, and so is
 * a page that would become the guest's while an IOMMU maps it (see
 * guest_memfd_model_map()): a WARN as in guest_memfd_model_check(), and no
 * page changes.  guest_memfd itself
 * assigns each page when it allocates it, as the file's state says, and
 * forgets it when the page leaves the file.  Without the model, a NOP.
 *
 * Context: May sleep.
 * Return: 0; -EBUSY if a page is not owned by @from or is still mapped.
 */
static inline int guest_memfd_model_assign(unsigned long pfn, unsigned long nr,
					   enum guest_memfd_owner from,
					   enum guest_memfd_owner to,
					   const char *path)
{
#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
	if (static_branch_unlikely(&guest_memfd_model_key))
		return __guest_memfd_model_assign(pfn, nr, from, to, path);
#endif
	return 0;
}

/**
 * guest_memfd_model_map() - Count IOMMU mappings of pages in the model
 * @pfn: first PFN, of a guest_memfd page
 * @nr: number of pages
 * @path: the mapping, named in a report
 *
 * For a client that maps guest_memfd pages into an IOMMU (iommufd), after
 * it mapped them: with the software ownership model on, a page that is not
 * host-owned is a violation (a WARN, as in guest_memfd_model_check()), and
 * so is, until guest_memfd_model_unmap(), a step that gives the page to the
 * guest or the page leaving the file.  Without the model, a NOP.
 *
 * Context: May sleep.
 */
static inline void guest_memfd_model_map(unsigned long pfn, unsigned long nr,
					 const char *path)
{
#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
	if (static_branch_unlikely(&guest_memfd_model_key))
		__guest_memfd_model_map(pfn, nr, path);
#endif
}

/**
 * guest_memfd_model_unmap() - Undo guest_memfd_model_map()
 * @pfn: first PFN
 * @nr: number of pages
 * @path: the unmapping, named in a report
 *
 * After the client removed the mappings (and flushed the IOTLB).  An unmap
 * of a page that has no mapping left in the model is a violation.
 *
 * Context: May sleep.
 */
static inline void guest_memfd_model_unmap(unsigned long pfn, unsigned long nr,
					   const char *path)
{
#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
	if (static_branch_unlikely(&guest_memfd_model_key))
		__guest_memfd_model_unmap(pfn, nr, path);
#endif
}

#ifdef CONFIG_GUEST_MEMFD
bool is_guest_memfd(struct file *file);
int guest_memfd_register_notifier(struct file *file,
				  struct guest_memfd_notifier *n);
void guest_memfd_unregister_notifier(struct guest_memfd_notifier *n);
void guest_memfd_lock(struct guest_memfd_notifier *n);
void guest_memfd_unlock(struct guest_memfd_notifier *n);
int guest_memfd_get_pfn(struct guest_memfd_notifier *n, pgoff_t index,
			unsigned int flags, unsigned long *pfn);
int guest_memfd_walk_shared(struct guest_memfd_notifier *n, pgoff_t start,
			    pgoff_t end,
			    int (*fn)(void *data, pgoff_t index,
				      unsigned long pfn),
			    void *data);
int guest_memfd_allocate(struct guest_memfd_notifier *n, pgoff_t start,
			 pgoff_t end, unsigned long max_pages, pgoff_t *next,
			 pgoff_t *error_index);
bool guest_memfd_lock_contended(struct guest_memfd_notifier *n);
void guest_memfd_notify_allocated(struct file *file, pgoff_t index);

struct file *guest_memfd_create(const struct guest_memfd_owner_ops *ops,
				void *priv, struct module *module,
				loff_t size, u64 flags);
void *guest_memfd_owner_data(struct file *file,
			     const struct guest_memfd_owner_ops *ops);
u64 guest_memfd_flags(struct file *file);
int guest_memfd_convert(struct file *file, pgoff_t start, pgoff_t end,
			bool to_private, pgoff_t *error_index);
bool guest_memfd_is_private(struct file *file, pgoff_t index);
struct folio *guest_memfd_get_folio(struct file *file, pgoff_t index);
#else
static inline bool is_guest_memfd(struct file *file)
{
	return false;
}

static inline int guest_memfd_register_notifier(struct file *file,
						struct guest_memfd_notifier *n)
{
	return -EINVAL;
}

static inline void guest_memfd_unregister_notifier(struct guest_memfd_notifier *n)
{
}

static inline void guest_memfd_lock(struct guest_memfd_notifier *n)
{
}

static inline void guest_memfd_unlock(struct guest_memfd_notifier *n)
{
}

static inline int guest_memfd_get_pfn(struct guest_memfd_notifier *n,
				      pgoff_t index, unsigned int flags,
				      unsigned long *pfn)
{
	return -EINVAL;
}

static inline int guest_memfd_walk_shared(struct guest_memfd_notifier *n,
					  pgoff_t start, pgoff_t end,
					  int (*fn)(void *data, pgoff_t index,
						    unsigned long pfn),
					  void *data)
{
	return -EINVAL;
}

static inline int guest_memfd_allocate(struct guest_memfd_notifier *n,
				       pgoff_t start, pgoff_t end,
				       unsigned long max_pages, pgoff_t *next,
				       pgoff_t *error_index)
{
	return -EINVAL;
}

static inline bool guest_memfd_lock_contended(struct guest_memfd_notifier *n)
{
	return false;
}

static inline void guest_memfd_notify_allocated(struct file *file,
						pgoff_t index)
{
}

static inline struct file *guest_memfd_create(const struct guest_memfd_owner_ops *ops,
					      void *priv, struct module *module,
					      loff_t size, u64 flags)
{
	return ERR_PTR(-EOPNOTSUPP);
}

static inline void *guest_memfd_owner_data(struct file *file,
					   const struct guest_memfd_owner_ops *ops)
{
	return NULL;
}

static inline u64 guest_memfd_flags(struct file *file)
{
	return 0;
}

static inline int guest_memfd_convert(struct file *file, pgoff_t start,
				      pgoff_t end, bool to_private,
				      pgoff_t *error_index)
{
	return -EOPNOTSUPP;
}

static inline bool guest_memfd_is_private(struct file *file, pgoff_t index)
{
	return false;
}

static inline struct folio *guest_memfd_get_folio(struct file *file,
						  pgoff_t index)
{
	return ERR_PTR(-EOPNOTSUPP);
}
#endif /* CONFIG_GUEST_MEMFD */

#endif /* _LINUX_GUEST_MEMFD_H */
