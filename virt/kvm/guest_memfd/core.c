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
#include <linux/fs.h>
#include <linux/guest_memfd.h>
#include <linux/init.h>
#include <linux/magic.h>
#include <linux/mempolicy.h>
#include <linux/module.h>
#include <linux/pseudo_fs.h>
#include <linux/pagemap.h>

#include "internal.h"

static struct vfsmount *gmem_mnt;

bool gmem_is_private(struct inode *inode, pgoff_t index)
{
	return !(GMEM_I(inode)->flags & GUEST_MEMFD_F_INIT_SHARED);
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
 */
struct folio *gmem_get_folio(struct inode *inode, pgoff_t index)
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
					 FGP_LOCK | FGP_CREAT,
					 mapping_gfp_mask(inode->i_mapping), policy);
	mpol_cond_put(policy);

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

static long gmem_punch_hole(struct inode *inode, loff_t offset, loff_t len)
{
	pgoff_t start = offset >> PAGE_SHIFT;
	pgoff_t end = (offset + len) >> PAGE_SHIFT;
	struct guest_memfd_range range;
	pgoff_t error_index;
	int r;

	guest_memfd_range_init(&range, start, end, GUEST_MEMFD_REASON_TRUNCATE,
			       NULL);

	/*
	 * Notifiers (and what they track, e.g. KVM's bindings) must be stable
	 * across invalidation to ensure the begin+end are balanced.
	 */
	filemap_invalidate_lock(inode->i_mapping);

	r = gmem_notify_prepare(GMEM_I(inode), &range, &error_index);
	if (r)
		goto out_unlock;

	gmem_notify_begin(GMEM_I(inode), &range);

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

	filemap_invalidate_lock_shared(mapping);

	start = offset >> PAGE_SHIFT;
	end = (offset + len) >> PAGE_SHIFT;

	r = 0;
	for (index = start; index < end; ) {
		struct folio *folio;

		if (signal_pending(current)) {
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
			       GUEST_MEMFD_REASON_RELEASE, NULL);
	filemap_invalidate_lock(inode->i_mapping);
	gmem_notify_begin(gi, &range);
	gi->released = true;
	gmem_notify_end(gi, &range);
	filemap_invalidate_unlock(inode->i_mapping);

	return 0;
}

static bool gmem_supports_mmap(struct inode *inode)
{
	return GMEM_I(inode)->flags & GUEST_MEMFD_F_MMAP;
}

static vm_fault_t gmem_fault_user_mapping(struct vm_fault *vmf)
{
	struct inode *inode = file_inode(vmf->vma->vm_file);
	struct folio *folio;
	vm_fault_t ret = VM_FAULT_LOCKED;

	if (((loff_t)vmf->pgoff << PAGE_SHIFT) >= i_size_read(inode))
		return VM_FAULT_SIGBUS;

	if (!gmem_is_shared_mem(inode, vmf->pgoff))
		return VM_FAULT_SIGBUS;

	folio = gmem_get_folio(inode, vmf->pgoff);
	if (IS_ERR(folio)) {
		if (PTR_ERR(folio) == -EAGAIN)
			return VM_FAULT_RETRY;

		return vmf_error(PTR_ERR(folio));
	}

	if (WARN_ON_ONCE(folio_test_large(folio))) {
		ret = VM_FAULT_SIGBUS;
		goto out_folio;
	}

	if (!folio_test_uptodate(folio)) {
		clear_highpage(folio_page(folio, 0));
		folio_mark_uptodate(folio);
	}

	vmf->page = folio_file_page(folio, vmf->pgoff);

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

static int gmem_error_folio(struct address_space *mapping, struct folio *folio)
{
	struct gmem_inode *gi = GMEM_I(mapping->host);
	struct guest_memfd_range range;

	guest_memfd_range_init(&range, folio->index,
			       folio->index + folio_nr_pages(folio),
			       GUEST_MEMFD_REASON_MEMORY_FAILURE, NULL);

	filemap_invalidate_lock_shared(mapping);

	/* After RELEASE, clients have dropped everything already. */
	if (gi->released)
		goto out_unlock;

	gmem_notify_begin(gi, &range);

	/*
	 * Do not truncate the range, what action is taken in response to the
	 * error is userspace's decision (assuming the architecture supports
	 * gracefully handling memory errors).  If/when the guest attempts to
	 * access a poisoned page, kvm_gmem_get_pfn() will return -EHWPOISON,
	 * at which point KVM can either terminate the VM or propagate the
	 * error to userspace.
	 */

	gmem_notify_end(gi, &range);

out_unlock:
	filemap_invalidate_unlock_shared(mapping);

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

	if (WARN_ON_ONCE(!ops || !ops->release))
		return ERR_PTR(-EINVAL);

	if (size <= 0 || !PAGE_ALIGNED(size) ||
	    (flags & ~(GUEST_MEMFD_F_MMAP | GUEST_MEMFD_F_INIT_SHARED)))
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
	gi->flags = 0;
	gi->owner_ops = NULL;
	gi->owner_module = NULL;
	return &gi->vfs_inode;
}

static void gmem_destroy_inode(struct inode *inode)
{
	/* Each notifier holds a reference to the inode. */
	WARN_ON_ONCE(!list_empty(&GMEM_I(inode)->notifiers));

	mpol_free_shared_policy(&GMEM_I(inode)->policy);

	/*
	 * The page cache is gone (evict() truncated it before calling here),
	 * so the owner's ->free_folio() and ->release() can no longer run.
	 */
	module_put(GMEM_I(inode)->owner_module);
}

static void gmem_free_inode(struct inode *inode)
{
	kmem_cache_free(gmem_inode_cachep, GMEM_I(inode));
}

static const struct super_operations gmem_super_operations = {
	.statfs		= simple_statfs,
	.alloc_inode	= gmem_alloc_inode,
	.destroy_inode	= gmem_destroy_inode,
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
