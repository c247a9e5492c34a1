// SPDX-License-Identifier: GPL-2.0-only
/*
 * A software model of page ownership, for testing guest_memfd without the
 * hardware that enforces it.
 *
 * SEV-SNP's RMP records, for every physical page, whether it belongs to the
 * hypervisor or is assigned to a guest, and the hardware faults an access
 * by the wrong side; TDX's S-EPT and the TDX module do the same for private
 * pages, and machine-check a host that touches one.  Under TCG none of this
 * exists, so a conversion that forgets a step, steps in the wrong order or
 * leaves a host or device mapping behind goes unnoticed.  This model keeps
 * a table shaped like the RMP: one entry per PFN of a guest_memfd page,
 * saying host-owned or guest-owned and, for the reports, the file index.
 *
 *  - A page is assigned when guest_memfd allocates it: guest-owned where
 *    the file says private, host-owned where it says shared.  Assigning at
 *    allocation rather than at the first private fault, as SEV-SNP does,
 *    keeps the table a function of the file's state at every point outside
 *    a conversion, so every check below is exact: a skipped or repeated
 *    step is caught at the next access instead of being repaired by a
 *    lazy assignment.
 *  - A conversion's architecture step moves the pages from one owner to
 *    the other (guest_memfd_model_assign()); the step of a page that is not
 *    owned by the side it leaves is refused, as RMPUPDATE refuses to assign
 *    an assigned page.  Its undo moves them back.
 *  - Every path through which the host or a device reaches a page checks
 *    that it is host-owned, and every private fault of KVM that it is
 *    guest-owned (guest_memfd_model_check()).
 *  - IOMMU mappings are counted per page (guest_memfd_model_map() and
 *    guest_memfd_model_unmap()): a page may become the guest's only once no
 *    IOMMU maps it (on TDX, a shared IOPTE left on a private page
 *    machine-checks the host), and may leave the file only unmapped.
 *  - A page that leaves the file is forgotten.
 *
 * A violation is a WARN naming the PFN, the file index, the owner found and
 * the path, which a test run's kernel log scan turns into a failure.
 *
 * Off unless the kernel command line has guest_memfd.ownership_model=1;
 * the checks are behind a static key, so they cost a NOP when off.  The
 * parameter is read-only: the table must see every page from its
 * allocation on.
 */
#include <linux/bitfield.h>
#include <linux/folio_batch.h>
#include <linux/guest_memfd.h>
#include <linux/init.h>
#include <linux/jump_label.h>
#include <linux/moduleparam.h>
#include <linux/pagemap.h>
#include <linux/printk.h>
#include <linux/ratelimit.h>
#include <linux/xarray.h>

#include "internal.h"

#undef MODULE_PARAM_PREFIX
#define MODULE_PARAM_PREFIX "guest_memfd."

static bool gmem_model_param;
module_param_named(ownership_model, gmem_model_param, bool, 0444);
MODULE_PARM_DESC(ownership_model,
		 "Check every access to guest_memfd pages against a software model of page ownership (testing only)");

DEFINE_STATIC_KEY_FALSE(guest_memfd_model_key);
EXPORT_SYMBOL_NS_GPL(guest_memfd_model_key, "GUEST_MEMFD");

/*
 * PFN -> xa_mk_value(): the owner, how many IOMMU mappings of the page
 * there are (iommufd's mirror), and its file index for the reports.  No
 * entry: not a page of a guest_memfd (or not any more).  Lookups are
 * lockless; read-modify-write updates take the xarray's lock.
 */
static DEFINE_XARRAY(gmem_model_table);

#define GMEM_MODEL_GUEST	BIT(0)
#define GMEM_MODEL_MAPS		GENMASK(20, 1)
#define GMEM_MODEL_INDEX_SHIFT	21

static const char *const gmem_model_owner_name[] = {
	[GUEST_MEMFD_OWNER_HOST]	= "host",
	[GUEST_MEMFD_OWNER_GUEST]	= "guest",
};

static unsigned long gmem_model_val(pgoff_t index, enum guest_memfd_owner owner)
{
	return index << GMEM_MODEL_INDEX_SHIFT |
	       (owner == GUEST_MEMFD_OWNER_GUEST ? GMEM_MODEL_GUEST : 0);
}

static enum guest_memfd_owner gmem_model_owner(unsigned long val)
{
	return val & GMEM_MODEL_GUEST ? GUEST_MEMFD_OWNER_GUEST :
					GUEST_MEMFD_OWNER_HOST;
}

static unsigned long gmem_model_maps(unsigned long val)
{
	return FIELD_GET(GMEM_MODEL_MAPS, val);
}

/*
 * Report a violation at @pfn, whose entry was @entry (NULL if none): a
 * WARN, which fails a test run, rate-limited so that a broken invariant
 * does not flood the log.
 */
static void gmem_model_report(unsigned long pfn, void *entry, const char *path,
			      const char *what)
{
	static DEFINE_RATELIMIT_STATE(rs, 5 * HZ, 10);
	unsigned long val = entry ? xa_to_value(entry) : 0;

	if (!__ratelimit(&rs))
		return;

	if (!entry)
		WARN(1, "guest_memfd ownership model: %s: PFN %#lx is not a guest_memfd page: %s\n",
		     path, pfn, what);
	else
		WARN(1, "guest_memfd ownership model: %s: PFN %#lx (file index %lu, %s-owned, %lu IOMMU mappings): %s\n",
		     path, pfn, val >> GMEM_MODEL_INDEX_SHIFT,
		     gmem_model_owner_name[gmem_model_owner(val)],
		     gmem_model_maps(val), what);
}

static const char *gmem_model_expected(enum guest_memfd_owner owner)
{
	return owner == GUEST_MEMFD_OWNER_GUEST ? "expected guest-owned" :
						  "expected host-owned";
}

/**
 * __guest_memfd_model_check() - guest_memfd_model_check() with the model on
 * @pfn: first PFN
 * @nr: number of pages
 * @expected: the owner the access needs
 * @path: the access, for the report
 *
 * Return: true if every page is owned by @expected.
 */
bool __guest_memfd_model_check(unsigned long pfn, unsigned long nr,
			       enum guest_memfd_owner expected,
			       const char *path)
{
	bool ok = true;

	for (; nr; pfn++, nr--) {
		void *entry = xa_load(&gmem_model_table, pfn);

		if (entry && gmem_model_owner(xa_to_value(entry)) == expected)
			continue;
		gmem_model_report(pfn, entry, path,
				  gmem_model_expected(expected));
		ok = false;
	}
	return ok;
}
EXPORT_SYMBOL_NS_GPL(__guest_memfd_model_check, "GUEST_MEMFD");

/**
 * __guest_memfd_model_assign() - guest_memfd_model_assign() with the model on
 * @pfn: first PFN
 * @nr: number of pages
 * @from: the owner the pages must have
 * @to: the owner they get
 * @path: the step, for the report
 *
 * Return: 0, or -EBUSY (nothing changed) if a page is not owned by @from
 * or, when it would become the guest's, is still mapped by an IOMMU.
 */
int __guest_memfd_model_assign(unsigned long pfn, unsigned long nr,
			       enum guest_memfd_owner from,
			       enum guest_memfd_owner to, const char *path)
{
	unsigned long i;
	int ret = 0;

	/*
	 * The caller holds the file's invalidate lock for writing, so no
	 * mapping of these pages comes or goes meanwhile.
	 */
	for (i = 0; i < nr; i++) {
		void *entry = xa_load(&gmem_model_table, pfn + i);

		if (!entry || gmem_model_owner(xa_to_value(entry)) != from) {
			gmem_model_report(pfn + i, entry, path,
					  gmem_model_expected(from));
			ret = -EBUSY;
		} else if (to == GUEST_MEMFD_OWNER_GUEST &&
			   gmem_model_maps(xa_to_value(entry))) {
			gmem_model_report(pfn + i, entry, path,
					  "becomes the guest's while an IOMMU maps it");
			ret = -EBUSY;
		}
	}
	if (ret)
		return ret;

	for (i = 0; i < nr; i++) {
		XA_STATE(xas, &gmem_model_table, pfn + i);
		unsigned long val;

		xas_lock(&xas);
		val = xa_to_value(xas_load(&xas));
		val &= ~GMEM_MODEL_GUEST;
		if (to == GUEST_MEMFD_OWNER_GUEST)
			val |= GMEM_MODEL_GUEST;
		/* Replaces an entry: no allocation, cannot fail. */
		xas_store(&xas, xa_mk_value(val));
		xas_unlock(&xas);
	}
	return 0;
}
EXPORT_SYMBOL_NS_GPL(__guest_memfd_model_assign, "GUEST_MEMFD");

/*
 * Add @delta to the IOMMU mappings of @pfn.  Returns the entry before the
 * change, NULL (and no change) if there is none.
 */
static void *gmem_model_add_maps(unsigned long pfn, long delta)
{
	XA_STATE(xas, &gmem_model_table, pfn);
	unsigned long val, maps;
	void *entry;

	xas_lock(&xas);
	entry = xas_load(&xas);
	if (entry) {
		val = xa_to_value(entry);
		maps = gmem_model_maps(val);
		if (delta > 0 || maps) {
			val &= ~GMEM_MODEL_MAPS;
			val |= FIELD_PREP(GMEM_MODEL_MAPS, maps + delta);
			xas_store(&xas, xa_mk_value(val));
		}
	}
	xas_unlock(&xas);
	return entry;
}

/**
 * __guest_memfd_model_map() - guest_memfd_model_map() with the model on
 * @pfn: first PFN
 * @nr: number of pages
 * @path: the mapping, for the report
 */
void __guest_memfd_model_map(unsigned long pfn, unsigned long nr,
			     const char *path)
{
	for (; nr; pfn++, nr--) {
		void *entry = gmem_model_add_maps(pfn, 1);

		if (!entry ||
		    gmem_model_owner(xa_to_value(entry)) != GUEST_MEMFD_OWNER_HOST)
			gmem_model_report(pfn, entry, path,
					  "expected host-owned");
	}
}
EXPORT_SYMBOL_NS_GPL(__guest_memfd_model_map, "GUEST_MEMFD");

/**
 * __guest_memfd_model_unmap() - guest_memfd_model_unmap() with the model on
 * @pfn: first PFN
 * @nr: number of pages
 * @path: the unmapping, for the report
 */
void __guest_memfd_model_unmap(unsigned long pfn, unsigned long nr,
			       const char *path)
{
	for (; nr; pfn++, nr--) {
		void *entry = gmem_model_add_maps(pfn, -1);

		if (!entry || !gmem_model_maps(xa_to_value(entry)))
			gmem_model_report(pfn, entry, path,
					  "unmapped more often than mapped");
	}
}
EXPORT_SYMBOL_NS_GPL(__guest_memfd_model_unmap, "GUEST_MEMFD");

/*
 * gmem_get_folio() returned @folio for @inode after missing it in the page
 * cache.  A new folio has no entry: its pages start out owned as the file's
 * state says, mapped nowhere.  A folio that has entries is one that another
 * task added to the page cache first, and it may be mapped by an IOMMU by
 * now: its entries are kept, counts included, and must agree with the
 * file.  (Every folio leaves the file through gmem_model_forget(), so an
 * entry of a PFN in the file can only be its folio's.)  Called with the
 * invalidate lock held (for a file that converts) and the folio locked, so
 * the state cannot change meanwhile.
 */
void gmem_model_allocated(struct inode *inode, struct folio *folio,
			  bool private)
{
	enum guest_memfd_owner owner = private ? GUEST_MEMFD_OWNER_GUEST :
						 GUEST_MEMFD_OWNER_HOST;
	unsigned long i;

	for (i = 0; i < folio_nr_pages(folio); i++) {
		unsigned long pfn = folio_pfn(folio) + i;
		unsigned long val = gmem_model_val(folio->index + i, owner);
		void *old;

		old = xa_cmpxchg(&gmem_model_table, pfn, NULL, xa_mk_value(val),
				 GFP_KERNEL | __GFP_NOFAIL);
		if (old && (xa_to_value(old) & ~GMEM_MODEL_MAPS) != val)
			gmem_model_report(pfn, old, "allocation",
					  private ? "expected this page, guest-owned" :
						    "expected this page, host-owned");
	}
}

/*
 * The folios of [@start, @end) of @mapping are about to leave the file: no
 * IOMMU may map them any more.
 */
void gmem_model_forget(struct address_space *mapping, pgoff_t start,
		       pgoff_t end)
{
	struct folio_batch fbatch;
	pgoff_t index = start;

	if (start >= end)
		return;

	folio_batch_init(&fbatch);
	while (filemap_get_folios(mapping, &index, end - 1, &fbatch)) {
		unsigned int i;

		for (i = 0; i < folio_batch_count(&fbatch); i++) {
			struct folio *folio = fbatch.folios[i];
			unsigned long j;

			for (j = 0; j < folio_nr_pages(folio); j++) {
				unsigned long pfn = folio_pfn(folio) + j;
				void *entry = xa_erase(&gmem_model_table, pfn);

				if (entry && gmem_model_maps(xa_to_value(entry)))
					gmem_model_report(pfn, entry,
							  "page freed",
							  "an IOMMU still maps it");
			}
		}
		folio_batch_release(&fbatch);
		cond_resched();
	}
}

/*
 * For the KUnit tests: the owner of @pfn and its IOMMU mappings.  Returns
 * false if @pfn has no entry.
 */
bool gmem_model_peek(unsigned long pfn, enum guest_memfd_owner *owner,
		     unsigned long *maps)
{
	void *entry = xa_load(&gmem_model_table, pfn);

	if (!entry)
		return false;
	*owner = gmem_model_owner(xa_to_value(entry));
	*maps = gmem_model_maps(xa_to_value(entry));
	return true;
}

static int __init gmem_model_init(void)
{
	if (gmem_model_param) {
		static_branch_enable(&guest_memfd_model_key);
		pr_info("guest_memfd: software ownership model on\n");
	}
	return 0;
}
core_initcall(gmem_model_init);
