// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests of the guest_memfd notifier API.
 *
 * The tests create guest_memfd files through the core directly (no KVM),
 * subscribe mock clients that log every callback into one shared log, and
 * drive the real paths: fallocate() hole punch, ->error_remove_folio() for
 * memory failure, and the last fput() for release.
 */
#include <kunit/test.h>
#include <linux/anon_inodes.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/kthread.h>
#include <linux/pagemap.h>
#include <linux/swap.h>

#include "internal.h"

#define KT_PAGES	16
#define KT_MAX_EVENTS	64

enum kt_kind {
	KT_OWNER_RELEASE,
	KT_PREPARE,
	KT_REFUSE,
	KT_ABORT,
	KT_BEGIN,
	KT_END,
	KT_STEP,
	KT_UNDO,
};

struct kt_event {
	int client;
	enum kt_kind kind;
	enum guest_memfd_reason reason;
	pgoff_t start;
	pgoff_t end;
	/* Whether page 0 was in the page cache when the callback ran. */
	bool page0;
	/* The owner's step and undo: the first PFN. */
	unsigned long pfn;
};

/* One log shared by every client of a test: it shows their order. */
struct kt_log {
	/* Protects the log; taken in callbacks, under the invalidate lock. */
	struct mutex lock;
	struct kt_event events[KT_MAX_EVENTS];
	unsigned int nr;
};

struct kt_client {
	struct guest_memfd_notifier n;
	struct kt_log *log;
	int id;
	/* When non-zero, prepare refuses with it at refuse_index. */
	int refuse;
	pgoff_t refuse_index;
	/* For the race test, which does not log. */
	atomic_t begins;
	atomic_t ends;
	atomic_t in_callback;
};

static struct kt_log *kt_owner_log;

static bool kt_page0(struct guest_memfd_notifier *n)
{
	struct folio *folio = filemap_get_folio(n->inode->i_mapping, 0);

	if (IS_ERR(folio))
		return false;
	folio_put(folio);
	return true;
}

static void kt_log_add(struct kt_log *log, int client, enum kt_kind kind,
		       const struct guest_memfd_range *range, bool page0)
{
	mutex_lock(&log->lock);
	if (log->nr < KT_MAX_EVENTS) {
		struct kt_event *e = &log->events[log->nr];

		e->client = client;
		e->kind = kind;
		e->reason = range ? range->reason : 0;
		e->start = range ? range->start : 0;
		e->end = range ? range->end : 0;
		e->page0 = page0;
	}
	log->nr++;
	mutex_unlock(&log->lock);
}

static struct kt_client *to_kt(struct guest_memfd_notifier *n)
{
	return container_of(n, struct kt_client, n);
}

static int kt_prepare(struct guest_memfd_notifier *n,
		      const struct guest_memfd_range *range, pgoff_t *index)
{
	struct kt_client *c = to_kt(n);

	if (c->refuse) {
		*index = c->refuse_index;
		kt_log_add(c->log, c->id, KT_REFUSE, range, kt_page0(n));
		return c->refuse;
	}
	kt_log_add(c->log, c->id, KT_PREPARE, range, kt_page0(n));
	return 0;
}

static void kt_abort(struct guest_memfd_notifier *n,
		     const struct guest_memfd_range *range)
{
	kt_log_add(to_kt(n)->log, to_kt(n)->id, KT_ABORT, range, kt_page0(n));
}

static void kt_begin(struct guest_memfd_notifier *n,
		     const struct guest_memfd_range *range)
{
	kt_log_add(to_kt(n)->log, to_kt(n)->id, KT_BEGIN, range, kt_page0(n));
}

static void kt_end(struct guest_memfd_notifier *n,
		   const struct guest_memfd_range *range)
{
	kt_log_add(to_kt(n)->log, to_kt(n)->id, KT_END, range, kt_page0(n));
}

static const struct guest_memfd_notifier_ops kt_ops = {
	.prepare		= kt_prepare,
	.abort			= kt_abort,
	.invalidate_begin	= kt_begin,
	.invalidate_end		= kt_end,
};

static const struct guest_memfd_notifier_ops kt_ops_no_prepare = {
	.invalidate_begin	= kt_begin,
	.invalidate_end		= kt_end,
};

static void kt_race_begin(struct guest_memfd_notifier *n,
			  const struct guest_memfd_range *range)
{
	struct kt_client *c = to_kt(n);

	atomic_inc(&c->in_callback);
	atomic_inc(&c->begins);
	atomic_dec(&c->in_callback);
}

static void kt_race_end(struct guest_memfd_notifier *n,
			const struct guest_memfd_range *range)
{
	struct kt_client *c = to_kt(n);

	atomic_inc(&c->in_callback);
	atomic_inc(&c->ends);
	atomic_dec(&c->in_callback);
}

static const struct guest_memfd_notifier_ops kt_race_ops = {
	.invalidate_begin	= kt_race_begin,
	.invalidate_end		= kt_race_end,
};

static void kt_owner_release(struct file *file)
{
	if (kt_owner_log)
		kt_log_add(kt_owner_log, 0, KT_OWNER_RELEASE, NULL, false);
}

static const struct guest_memfd_owner_ops kt_owner_ops = {
	.release	= kt_owner_release,
};

/*
 * An owner with a step, which logs each call (client 0) into the log given
 * as its data, and fails with kt_step_error for the folio that contains
 * page kt_step_fail_index.
 */
static int kt_step_error;
static pgoff_t kt_step_fail_index;

static void kt_step_log(struct kt_log *log, enum kt_kind kind, pgoff_t index,
			unsigned long pfn, unsigned long nr, bool to_private)
{
	mutex_lock(&log->lock);
	if (log->nr < KT_MAX_EVENTS) {
		struct kt_event *e = &log->events[log->nr];

		e->client = 0;
		e->kind = kind;
		e->reason = to_private ? GUEST_MEMFD_REASON_CONVERT_PRIVATE :
					 GUEST_MEMFD_REASON_CONVERT_SHARED;
		e->start = index;
		e->end = index + nr;
		e->page0 = false;
		e->pfn = pfn;
	}
	log->nr++;
	mutex_unlock(&log->lock);
}

static int kt_owner_convert_folio(void *priv, pgoff_t index,
				  unsigned long pfn, unsigned long nr,
				  bool to_private)
{
	kt_step_log(priv, KT_STEP, index, pfn, nr, to_private);
	if (kt_step_fail_index >= index && kt_step_fail_index < index + nr)
		return kt_step_error;
	return 0;
}

static void kt_owner_convert_undo(void *priv, pgoff_t index,
				  unsigned long pfn, unsigned long nr,
				  bool to_private)
{
	kt_step_log(priv, KT_UNDO, index, pfn, nr, to_private);
}

static const struct guest_memfd_owner_ops kt_owner_convert_ops = {
	.release	= kt_owner_release,
	.convert_folio	= kt_owner_convert_folio,
	.convert_undo	= kt_owner_convert_undo,
};

static struct kt_log *kt_log_new(struct kunit *test)
{
	struct kt_log *log = kunit_kzalloc(test, sizeof(*log), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, log);
	mutex_init(&log->lock);
	return log;
}

static void kt_client_init(struct kt_client *c, struct kt_log *log, int id,
			   const struct guest_memfd_notifier_ops *ops)
{
	memset(c, 0, sizeof(*c));
	c->n.ops = ops;
	c->log = log;
	c->id = id;
}

static struct file *kt_create(struct kunit *test, u64 flags)
{
	struct file *file;

	file = guest_memfd_create(&kt_owner_ops, NULL, THIS_MODULE,
				  KT_PAGES * PAGE_SIZE, flags);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, file);
	return file;
}

static int kt_punch(struct file *file, pgoff_t start, pgoff_t end)
{
	return vfs_fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     (loff_t)start << PAGE_SHIFT,
			     (loff_t)(end - start) << PAGE_SHIFT);
}

static int kt_allocate(struct file *file, pgoff_t start, pgoff_t end)
{
	return vfs_fallocate(file, FALLOC_FL_KEEP_SIZE,
			     (loff_t)start << PAGE_SHIFT,
			     (loff_t)(end - start) << PAGE_SHIFT);
}

static unsigned long kt_nr_pages(struct file *file)
{
	return file->f_mapping->nrpages;
}

/*
 * Report a memory error on page @index as memory_failure() does (without
 * poisoning the page).  Return what ->error_remove_folio() returned, or -1
 * if the page is not in the file.
 */
static int __kt_memory_failure(struct address_space *mapping, pgoff_t index)
{
	struct folio *folio = filemap_lock_folio(mapping, index);
	int ret;

	if (IS_ERR(folio))
		return -1;
	ret = mapping->a_ops->error_remove_folio(mapping, folio);
	folio_unlock(folio);
	folio_put(folio);
	return ret;
}

/* The same, and wait until it has been notified. */
static void kt_memory_failure(struct kunit *test, struct address_space *mapping,
			      pgoff_t index)
{
	KUNIT_EXPECT_EQ(test, __kt_memory_failure(mapping, index), MF_DELAYED);
	gmem_flush_memory_failures();
}

static void kt_expect_event(struct kunit *test, const struct kt_log *log,
			    unsigned int i, int client, enum kt_kind kind,
			    enum guest_memfd_reason reason, pgoff_t start,
			    pgoff_t end)
{
	const struct kt_event *e = &log->events[i];

	KUNIT_EXPECT_EQ_MSG(test, e->client, client, "event %u", i);
	KUNIT_EXPECT_EQ_MSG(test, e->kind, kind, "event %u", i);
	KUNIT_EXPECT_EQ_MSG(test, e->reason, reason, "event %u", i);
	KUNIT_EXPECT_EQ_MSG(test, e->start, start, "event %u", i);
	KUNIT_EXPECT_EQ_MSG(test, e->end, end, "event %u", i);
}

/* guest_memfd_get_pfn() as a client outside its callbacks calls it. */
static int kt_get_pfn_unlocked(struct guest_memfd_notifier *n, pgoff_t index,
			       unsigned int flags, unsigned long *pfn)
{
	int ret;

	guest_memfd_lock(n);
	ret = guest_memfd_get_pfn(n, index, flags, pfn);
	guest_memfd_unlock(n);
	return ret;
}

/* Registration: only guest_memfds; notified while registered, not after. */
static void gmem_register_test(struct kunit *test)
{
	static const struct file_operations dummy_fops;
	struct kt_log *log = kt_log_new(test);
	struct file *file, *other;
	struct kt_client a;

	kt_client_init(&a, log, 1, &kt_ops_no_prepare);

	other = anon_inode_getfile("kt", &dummy_fops, NULL, O_RDWR);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, other);
	KUNIT_EXPECT_FALSE(test, is_guest_memfd(other));
	KUNIT_EXPECT_EQ(test, guest_memfd_register_notifier(other, &a.n), -EINVAL);
	fput(other);

	file = kt_create(test, 0);
	KUNIT_EXPECT_TRUE(test, is_guest_memfd(file));

	/* No subscriber: the hole punch just happens. */
	KUNIT_EXPECT_EQ(test, kt_punch(file, 0, 1), 0);

	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_EXPECT_EQ(test, kt_punch(file, 1, 3), 0);
	KUNIT_ASSERT_EQ(test, log->nr, 2);
	kt_expect_event(test, log, 0, 1, KT_BEGIN, GUEST_MEMFD_REASON_TRUNCATE, 1, 3);
	kt_expect_event(test, log, 1, 1, KT_END, GUEST_MEMFD_REASON_TRUNCATE, 1, 3);

	guest_memfd_unregister_notifier(&a.n);
	KUNIT_EXPECT_EQ(test, kt_punch(file, 1, 3), 0);
	KUNIT_EXPECT_EQ(test, log->nr, 2);

	/* A notifier can be registered again once unregistered. */
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_EXPECT_EQ(test, kt_punch(file, 4, 5), 0);
	KUNIT_EXPECT_EQ(test, log->nr, 4);
	guest_memfd_unregister_notifier(&a.n);

	__fput_sync(file);
}

/* Every begin is followed by one end with the same range and reason. */
static void gmem_pairing_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	struct kt_client a;
	struct file *file;
	unsigned int i;

	kt_client_init(&a, log, 1, &kt_ops_no_prepare);
	file = kt_create(test, 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);

	KUNIT_ASSERT_EQ(test, kt_allocate(file, 0, 4), 0);
	/* Allocation is notified, without a prepare step. */
	KUNIT_ASSERT_EQ(test, log->nr, 2);
	kt_expect_event(test, log, 0, 1, KT_BEGIN, GUEST_MEMFD_REASON_ALLOCATE, 0, 4);
	kt_expect_event(test, log, 1, 1, KT_END, GUEST_MEMFD_REASON_ALLOCATE, 0, 4);
	log->nr = 0;

	KUNIT_EXPECT_EQ(test, kt_punch(file, 0, 2), 0);

	kt_memory_failure(test, file->f_mapping, 3);
	/* Memory failure leaves the page in the file. */
	KUNIT_EXPECT_EQ(test, kt_nr_pages(file), 2UL);

	KUNIT_EXPECT_EQ(test, kt_punch(file, 5, KT_PAGES), 0);

	KUNIT_ASSERT_EQ(test, log->nr, 6);
	kt_expect_event(test, log, 0, 1, KT_BEGIN, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 1, 1, KT_END, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 2, 1, KT_BEGIN, GUEST_MEMFD_REASON_MEMORY_FAILURE, 3, 4);
	kt_expect_event(test, log, 3, 1, KT_END, GUEST_MEMFD_REASON_MEMORY_FAILURE, 3, 4);
	kt_expect_event(test, log, 4, 1, KT_BEGIN, GUEST_MEMFD_REASON_TRUNCATE, 5, KT_PAGES);
	kt_expect_event(test, log, 5, 1, KT_END, GUEST_MEMFD_REASON_TRUNCATE, 5, KT_PAGES);
	for (i = 0; i < log->nr; i++)
		KUNIT_EXPECT_EQ(test, log->events[i].kind, i % 2 ? KT_END : KT_BEGIN);

	guest_memfd_unregister_notifier(&a.n);
	__fput_sync(file);
}

/*
 * Several clients: all prepares (only clients that have one), then begin
 * on every client, the change, then end on every client, each in
 * registration order.
 */
static void gmem_order_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	struct kt_client a, b, c;
	struct file *file;
	unsigned int i;

	kt_client_init(&a, log, 1, &kt_ops);
	kt_client_init(&b, log, 2, &kt_ops_no_prepare);
	kt_client_init(&c, log, 3, &kt_ops);
	file = kt_create(test, 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &b.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &c.n), 0);

	KUNIT_ASSERT_EQ(test, kt_allocate(file, 0, 2), 0);
	/* Setup: forget the allocation's notification. */
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, kt_punch(file, 0, 2), 0);
	KUNIT_EXPECT_EQ(test, kt_nr_pages(file), 0UL);

	KUNIT_ASSERT_EQ(test, log->nr, 8);
	kt_expect_event(test, log, 0, 1, KT_PREPARE, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 1, 3, KT_PREPARE, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 2, 1, KT_BEGIN, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 3, 2, KT_BEGIN, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 4, 3, KT_BEGIN, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 5, 1, KT_END, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 6, 2, KT_END, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	kt_expect_event(test, log, 7, 3, KT_END, GUEST_MEMFD_REASON_TRUNCATE, 0, 2);
	/* The page goes between the last begin and the first end. */
	for (i = 0; i < 5; i++)
		KUNIT_EXPECT_TRUE_MSG(test, log->events[i].page0, "event %u", i);
	for (i = 5; i < 8; i++)
		KUNIT_EXPECT_FALSE_MSG(test, log->events[i].page0, "event %u", i);

	guest_memfd_unregister_notifier(&b.n);
	guest_memfd_unregister_notifier(&a.n);
	guest_memfd_unregister_notifier(&c.n);
	__fput_sync(file);
}

/*
 * A refusal stops the sequence: clients asked before get abort in reverse
 * order, later ones are not asked, nobody gets begin, nothing changes.
 */
static void gmem_refuse_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	struct kt_client a, b, c, d;
	struct guest_memfd_range range;
	pgoff_t error_index = 0;
	struct file *file;
	int r;

	kt_client_init(&a, log, 1, &kt_ops);
	kt_client_init(&b, log, 2, &kt_ops);
	kt_client_init(&c, log, 3, &kt_ops);
	kt_client_init(&d, log, 4, &kt_ops_no_prepare);
	c.refuse = -EBUSY;
	c.refuse_index = 2;
	file = kt_create(test, 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &b.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &c.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &d.n), 0);

	KUNIT_ASSERT_EQ(test, kt_allocate(file, 0, 4), 0);
	/* Setup: forget the allocation's notification. */
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, kt_punch(file, 0, 4), -EBUSY);
	KUNIT_EXPECT_EQ(test, kt_nr_pages(file), 4UL);

	KUNIT_ASSERT_EQ(test, log->nr, 5);
	kt_expect_event(test, log, 0, 1, KT_PREPARE, GUEST_MEMFD_REASON_TRUNCATE, 0, 4);
	kt_expect_event(test, log, 1, 2, KT_PREPARE, GUEST_MEMFD_REASON_TRUNCATE, 0, 4);
	kt_expect_event(test, log, 2, 3, KT_REFUSE, GUEST_MEMFD_REASON_TRUNCATE, 0, 4);
	kt_expect_event(test, log, 3, 2, KT_ABORT, GUEST_MEMFD_REASON_TRUNCATE, 0, 4);
	kt_expect_event(test, log, 4, 1, KT_ABORT, GUEST_MEMFD_REASON_TRUNCATE, 0, 4);

	/* The refusing offset comes back; one outside the range is clamped. */
	guest_memfd_range_init(&range, 1, 4, GUEST_MEMFD_REASON_TRUNCATE);
	filemap_invalidate_lock(file->f_mapping);
	r = gmem_notify_prepare(GMEM_I(file_inode(file)), &range, &error_index);
	KUNIT_EXPECT_EQ(test, r, -EBUSY);
	KUNIT_EXPECT_EQ(test, error_index, 2UL);
	c.refuse_index = 7;
	r = gmem_notify_prepare(GMEM_I(file_inode(file)), &range, &error_index);
	KUNIT_EXPECT_EQ(test, r, -EBUSY);
	KUNIT_EXPECT_EQ(test, error_index, 1UL);
	filemap_invalidate_unlock(file->f_mapping);

	/* Once nobody refuses, the same hole punch goes through. */
	c.refuse = 0;
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, kt_punch(file, 0, 4), 0);
	KUNIT_EXPECT_EQ(test, kt_nr_pages(file), 0UL);
	KUNIT_EXPECT_EQ(test, log->nr, 3 + 4 + 4);

	guest_memfd_unregister_notifier(&a.n);
	guest_memfd_unregister_notifier(&b.n);
	guest_memfd_unregister_notifier(&c.n);
	guest_memfd_unregister_notifier(&d.n);
	__fput_sync(file);
}

/*
 * Release: the owner's callback first, then RELEASE for the whole file on
 * every client, then nothing; the memory stays until the last notifier is
 * unregistered.
 */
static void gmem_release_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	struct address_space *mapping;
	struct kt_client a;
	struct file *file;
	unsigned long pfn;

	kt_client_init(&a, log, 1, &kt_ops);
	file = kt_create(test, GUEST_MEMFD_F_INIT_SHARED);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_ASSERT_EQ(test, kt_allocate(file, 0, 1), 0);
	/* Setup: forget the allocation's notification. */
	log->nr = 0;
	mapping = file->f_mapping;

	kt_owner_log = log;
	__fput_sync(file);
	kt_owner_log = NULL;

	KUNIT_ASSERT_EQ(test, log->nr, 3);
	KUNIT_EXPECT_EQ(test, log->events[0].kind, KT_OWNER_RELEASE);
	kt_expect_event(test, log, 1, 1, KT_BEGIN, GUEST_MEMFD_REASON_RELEASE, 0, KT_PAGES);
	kt_expect_event(test, log, 2, 1, KT_END, GUEST_MEMFD_REASON_RELEASE, 0, KT_PAGES);

	KUNIT_EXPECT_EQ(test, mapping->nrpages, 1UL);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, 0, GUEST_MEMFD_ACCESS_SHARED, &pfn),
			-ENODEV);
	/* No callback after RELEASE, not even for a memory failure. */
	kt_memory_failure(test, mapping, 0);
	KUNIT_EXPECT_EQ(test, log->nr, 3);

	guest_memfd_unregister_notifier(&a.n);
}

struct kt_mf {
	struct address_space *mapping;
	struct folio *folio;
	struct completion locked;
	struct completion done;
	int ret;
	/* Whether the folio was still in the file when the callback returned. */
	bool in_file;
};

/* What memory_failure() does around ->error_remove_folio(). */
static int kt_mf_thread(void *data)
{
	struct kt_mf *mf = data;

	folio_lock(mf->folio);
	complete(&mf->locked);
	mf->ret = mf->mapping->a_ops->error_remove_folio(mf->mapping, mf->folio);
	mf->in_file = mf->folio->mapping == mf->mapping;
	folio_unlock(mf->folio);
	complete(&mf->done);
	return 0;
}

/*
 * Memory failure on a file whose last reference is a client's (the file is
 * closed, an IOMMU mapping still holds the inode): the folio stays locked
 * across ->error_remove_folio() and in the file, and the inode is not
 * evicted inside it, even when the client lets go of the inode while a
 * hole punch or conversion holds the invalidate lock.  The inode goes once
 * the notification is done.
 */
static void gmem_memory_failure_keeps_lock_test(struct kunit *test)
{
	struct address_space *mapping;
	struct task_struct *thread;
	bool unlocked = false;
	struct inode *inode;
	struct file *file;
	struct kt_mf mf;
	unsigned int i;

	file = kt_create(test, 0);
	KUNIT_ASSERT_EQ(test, kt_allocate(file, 0, 1), 0);
	mapping = file->f_mapping;
	inode = file_inode(file);
	memset(&mf, 0, sizeof(mf));
	mf.mapping = mapping;
	mf.folio = filemap_get_folio(mapping, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(mf.folio));
	init_completion(&mf.locked);
	init_completion(&mf.done);

	/* The client's reference, then the file's last one goes. */
	ihold(inode);
	__fput_sync(file);

	filemap_invalidate_lock(mapping);
	thread = kthread_run(kt_mf_thread, &mf, "gmem-kunit-mf");
	if (IS_ERR(thread)) {
		filemap_invalidate_unlock(mapping);
		iput(inode);
		folio_put(mf.folio);
		KUNIT_FAIL(test, "kthread_run: %ld", PTR_ERR(thread));
		return;
	}
	wait_for_completion(&mf.locked);
	/* Until the callback returns, or lets go of the folio lock. */
	for (i = 0; i < 2000 && !completion_done(&mf.done); i++) {
		if (!folio_test_locked(mf.folio)) {
			unlocked = true;
			break;
		}
		usleep_range(500, 1000);
	}
	/* The client lets go; the callback's own reference may be the last. */
	iput(inode);
	filemap_invalidate_unlock(mapping);
	wait_for_completion(&mf.done);

	KUNIT_EXPECT_EQ(test, mf.ret, MF_DELAYED);
	KUNIT_EXPECT_FALSE_MSG(test, unlocked,
			       "folio unlocked inside ->error_remove_folio()");
	KUNIT_EXPECT_TRUE_MSG(test, mf.in_file,
			      "inode evicted inside ->error_remove_folio()");

	/* Once notified, nothing holds the inode: eviction truncated it. */
	gmem_flush_memory_failures();
	KUNIT_EXPECT_NULL(test, mf.folio->mapping);
	folio_put(mf.folio);
}

/* PFN lookup: access checked against the page's state, no reference kept. */
static void gmem_get_pfn_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	struct file *shared, *private;
	struct kt_client a, b;
	struct folio *folio;
	unsigned long pfn;

	kt_client_init(&a, log, 1, &kt_ops_no_prepare);
	kt_client_init(&b, log, 2, &kt_ops_no_prepare);
	shared = kt_create(test, GUEST_MEMFD_F_INIT_SHARED);
	private = kt_create(test, 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(shared, &a.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(private, &b.n), 0);

	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, 0, GUEST_MEMFD_ACCESS_SHARED, &pfn),
			-ENOENT);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, 0, 0, &pfn), -EINVAL);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, 0, GUEST_MEMFD_ACCESS_SHARED |
						  GUEST_MEMFD_ACCESS_PRIVATE, &pfn),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, KT_PAGES,
						  GUEST_MEMFD_ACCESS_SHARED |
						  GUEST_MEMFD_GET_ALLOC, &pfn),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, 0, GUEST_MEMFD_ACCESS_PRIVATE |
						  GUEST_MEMFD_GET_ALLOC, &pfn),
			-EACCES);
	KUNIT_EXPECT_EQ(test, kt_nr_pages(shared), 0UL);

	pfn = 0;
	KUNIT_ASSERT_EQ(test, kt_get_pfn_unlocked(&a.n, 3, GUEST_MEMFD_ACCESS_SHARED |
						  GUEST_MEMFD_GET_ALLOC, &pfn), 0);
	folio = filemap_get_folio(shared->f_mapping, 3);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_EQ(test, pfn, folio_pfn(folio));
	KUNIT_EXPECT_TRUE(test, folio_test_uptodate(folio));
	/*
	 * The page cache's reference and ours, nothing else, once the LRU
	 * batch that took the new folio has been drained.
	 */
	lru_add_drain_all();
	KUNIT_EXPECT_EQ(test, folio_ref_count(folio), 2);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&a.n, 3, GUEST_MEMFD_ACCESS_SHARED, &pfn),
			0);
	KUNIT_EXPECT_EQ(test, folio_ref_count(folio), 2);
	folio_put(folio);

	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&b.n, 0, GUEST_MEMFD_ACCESS_SHARED |
						  GUEST_MEMFD_GET_ALLOC, &pfn),
			-EACCES);
	KUNIT_EXPECT_EQ(test, kt_get_pfn_unlocked(&b.n, 0, GUEST_MEMFD_ACCESS_PRIVATE |
						  GUEST_MEMFD_GET_ALLOC, &pfn),
			0);

	/* Lookups notify nobody. */
	KUNIT_EXPECT_EQ(test, log->nr, 0);

	guest_memfd_unregister_notifier(&a.n);
	guest_memfd_unregister_notifier(&b.n);
	__fput_sync(shared);
	__fput_sync(private);
}

struct kt_race {
	struct file *file;
	bool memory_failure;
};

static int kt_race_thread(void *data)
{
	struct kt_race *r = data;

	while (!kthread_should_stop()) {
		/* No KUnit assertion here: this is not the test's thread. */
		if (r->memory_failure)
			__kt_memory_failure(r->file->f_mapping, 0);
		else
			kt_punch(r->file, 8, KT_PAGES);
		cond_resched();
	}
	return 0;
}

/*
 * Unregistration racing with notifications (hole punches, and memory
 * failures, which run concurrently with each other): once unregister
 * returns, the client's begins and ends are paired, none is running and
 * none comes later.
 */
static void gmem_unregister_race_test(struct kunit *test)
{
	struct task_struct *threads[3];
	struct kt_race race[3];
	struct kt_client x, y;
	struct file *file;
	unsigned int i, t;

	kt_client_init(&x, NULL, 1, &kt_race_ops);
	kt_client_init(&y, NULL, 2, &kt_race_ops);
	file = kt_create(test, 0);
	KUNIT_ASSERT_EQ(test, kt_allocate(file, 0, 1), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &y.n), 0);

	for (t = 0; t < ARRAY_SIZE(threads); t++) {
		race[t].file = file;
		race[t].memory_failure = t > 0;
		threads[t] = kthread_run(kt_race_thread, &race[t], "gmem-kunit-%u", t);
		KUNIT_ASSERT_FALSE(test, IS_ERR(threads[t]));
	}

	for (i = 0; i < 200; i++) {
		int begins, ends;

		KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &x.n), 0);
		if (i % 4)
			usleep_range(20, 50);
		guest_memfd_unregister_notifier(&x.n);

		begins = atomic_read(&x.begins);
		ends = atomic_read(&x.ends);
		KUNIT_EXPECT_EQ_MSG(test, begins, ends, "iteration %u", i);
		KUNIT_EXPECT_EQ_MSG(test, atomic_read(&x.in_callback), 0,
				    "iteration %u", i);
		if (!(i % 16))
			usleep_range(100, 200);
		KUNIT_EXPECT_EQ_MSG(test, atomic_read(&x.begins), begins,
				    "iteration %u", i);
		KUNIT_EXPECT_EQ_MSG(test, atomic_read(&x.ends), ends,
				    "iteration %u", i);
	}

	for (t = 0; t < ARRAY_SIZE(threads); t++)
		kthread_stop(threads[t]);
	gmem_flush_memory_failures();

	/* The notifications really happened. */
	KUNIT_EXPECT_GT(test, atomic_read(&y.begins), 0);
	KUNIT_EXPECT_EQ(test, atomic_read(&y.begins), atomic_read(&y.ends));
	kunit_info(test, "x saw %d notifications in 200 registrations, y %d\n",
		   atomic_read(&x.begins), atomic_read(&y.begins));

	guest_memfd_unregister_notifier(&y.n);
	__fput_sync(file);
}

/*
 * Conversion: one notification per conversion, shrunk to the pages whose
 * state changes, none when nothing changes; a prepare refusal or an extra
 * page reference (to private) changes nothing.
 */
static void gmem_convert_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	pgoff_t error_index = 0;
	struct kt_client a;
	struct folio *folio;
	struct inode *inode;
	struct file *file;
	pgoff_t i;

	kt_client_init(&a, log, 1, &kt_ops);
	file = kt_create(test, GUEST_MEMFD_F_CONVERTIBLE);
	inode = file_inode(file);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);

	for (i = 0; i < KT_PAGES; i++)
		KUNIT_EXPECT_TRUE(test, guest_memfd_is_private(file, i));

	/* Pages 4 and 5 already shared: to shared of 2..8 notifies 2..8. */
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 4, 6, false, &error_index), 0);
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 2, 8, false, &error_index), 0);
	KUNIT_ASSERT_EQ(test, log->nr, 3);
	kt_expect_event(test, log, 0, 1, KT_PREPARE, GUEST_MEMFD_REASON_CONVERT_SHARED, 2, 8);
	kt_expect_event(test, log, 1, 1, KT_BEGIN, GUEST_MEMFD_REASON_CONVERT_SHARED, 2, 8);
	kt_expect_event(test, log, 2, 1, KT_END, GUEST_MEMFD_REASON_CONVERT_SHARED, 2, 8);
	for (i = 0; i < KT_PAGES; i++)
		KUNIT_EXPECT_EQ(test, guest_memfd_is_private(file, i), i < 2 || i >= 8);

	/* Nothing changes, nothing is notified. */
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 3, 7, false, &error_index), 0);
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 10, 12, true, &error_index), 0);
	KUNIT_EXPECT_EQ(test, log->nr, 0);

	/* To private of 0..16 only concerns the shared span 2..8. */
	a.refuse = -EBUSY;
	a.refuse_index = 5;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 0, KT_PAGES, true, &error_index),
			-EBUSY);
	KUNIT_EXPECT_EQ(test, error_index, 5UL);
	KUNIT_ASSERT_EQ(test, log->nr, 1);
	kt_expect_event(test, log, 0, 1, KT_REFUSE, GUEST_MEMFD_REASON_CONVERT_PRIVATE, 2, 8);
	for (i = 0; i < KT_PAGES; i++)
		KUNIT_EXPECT_EQ(test, guest_memfd_is_private(file, i), i < 2 || i >= 8);

	/*
	 * An extra reference on page 6 refuses with -EAGAIN before prepare: no
	 * attempt, neither the first nor a retry, is notified.
	 */
	a.refuse = 0;
	KUNIT_ASSERT_EQ(test, kt_allocate(file, 6, 7), 0);
	log->nr = 0;
	folio = filemap_get_folio(file->f_mapping, 6);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 0, KT_PAGES, true, &error_index),
			-EAGAIN);
	KUNIT_EXPECT_EQ(test, error_index, 6UL);
	KUNIT_EXPECT_EQ(test, log->nr, 0);
	KUNIT_EXPECT_FALSE(test, guest_memfd_is_private(file, 6));
	folio_put(folio);

	/* Without it, the conversion goes through; the page stays. */
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 0, KT_PAGES, true, &error_index), 0);
	KUNIT_ASSERT_EQ(test, log->nr, 3);
	kt_expect_event(test, log, 1, 1, KT_BEGIN, GUEST_MEMFD_REASON_CONVERT_PRIVATE, 2, 8);
	kt_expect_event(test, log, 2, 1, KT_END, GUEST_MEMFD_REASON_CONVERT_PRIVATE, 2, 8);
	for (i = 0; i < KT_PAGES; i++)
		KUNIT_EXPECT_TRUE(test, guest_memfd_is_private(file, i));
	KUNIT_EXPECT_EQ(test, kt_nr_pages(file), 1UL);

	guest_memfd_unregister_notifier(&a.n);
	__fput_sync(file);
}

/*
 * Check that events [@i, @i + @n) of @log are the owner's @kind calls for
 * the single pages @pages, each with the PFN of the page's folio.
 */
static void kt_expect_steps(struct kunit *test, struct file *file,
			    const struct kt_log *log, unsigned int i,
			    enum kt_kind kind, enum guest_memfd_reason reason,
			    const pgoff_t *pages, unsigned int n)
{
	unsigned int j;

	for (j = 0; j < n; j++) {
		const struct kt_event *e = &log->events[i + j];
		struct folio *folio;

		kt_expect_event(test, log, i + j, 0, kind, reason, pages[j],
				pages[j] + 1);
		folio = filemap_get_folio(file->f_mapping, pages[j]);
		KUNIT_ASSERT_FALSE(test, IS_ERR(folio));
		KUNIT_EXPECT_EQ_MSG(test, e->pfn, folio_pfn(folio), "event %u",
				    i + j);
		folio_put(folio);
	}
}

/*
 * The owner's step runs between every client's begin and end, once for
 * each allocated page whose state changes (holes and pages already in the
 * target state have none), with the page's PFN.  If it fails at a page,
 * the pages stepped before are undone in reverse order, the conversion
 * fails with its errno naming that page exactly, every client's
 * invalidate_end still follows and the state does not change.
 */
static void gmem_convert_owner_step_test(struct kunit *test)
{
	static const pgoff_t changing[] = { 2, 3, 6, 7, 8, 9, 12 };
	static const pgoff_t undone[] = { 9, 8, 7, 6, 3, 2 };
	const enum guest_memfd_reason shared = GUEST_MEMFD_REASON_CONVERT_SHARED;
	const enum guest_memfd_reason private = GUEST_MEMFD_REASON_CONVERT_PRIVATE;
	struct kt_log *log = kt_log_new(test);
	pgoff_t error_index = 0;
	struct kt_client a, b;
	struct inode *inode;
	struct file *file;
	unsigned int n;
	pgoff_t i;

	kt_client_init(&a, log, 1, &kt_ops);
	kt_client_init(&b, log, 2, &kt_ops_no_prepare);
	file = guest_memfd_create(&kt_owner_convert_ops, log, THIS_MODULE,
				  KT_PAGES * PAGE_SIZE, GUEST_MEMFD_F_CONVERTIBLE);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, file);
	inode = file_inode(file);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &b.n), 0);

	/* Pages 2..10 and 12 allocated; 4 and 5 already shared. */
	KUNIT_ASSERT_EQ(test, kt_allocate(file, 2, 10), 0);
	KUNIT_ASSERT_EQ(test, kt_allocate(file, 12, 13), 0);
	kt_step_error = 0;
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 4, 6, false, &error_index), 0);
	KUNIT_ASSERT_EQ(test, log->nr, 7);
	kt_expect_steps(test, file, log, 3, KT_STEP, shared,
			(const pgoff_t[]){ 4, 5 }, 2);

	/* A step failing at the first, a middle and the last changing page. */
	kt_step_error = -EIO;
	for (n = 0; n < ARRAY_SIZE(changing); n += 3) {
		kt_step_fail_index = changing[n];
		log->nr = 0;
		error_index = 0;
		KUNIT_EXPECT_EQ(test, gmem_convert(inode, 0, KT_PAGES, false,
						   &error_index), -EIO);
		KUNIT_EXPECT_EQ(test, error_index, changing[n]);
		/* prepare, 2 begins, n + 1 steps, n undos, 2 ends. */
		KUNIT_ASSERT_EQ(test, log->nr, 2 * n + 6);
		kt_expect_event(test, log, 0, 1, KT_PREPARE, shared, 0, KT_PAGES);
		kt_expect_event(test, log, 1, 1, KT_BEGIN, shared, 0, KT_PAGES);
		kt_expect_event(test, log, 2, 2, KT_BEGIN, shared, 0, KT_PAGES);
		kt_expect_steps(test, file, log, 3, KT_STEP, shared, changing,
				n + 1);
		kt_expect_steps(test, file, log, n + 4, KT_UNDO, shared,
				undone + ARRAY_SIZE(undone) - n, n);
		kt_expect_event(test, log, 2 * n + 4, 1, KT_END, shared, 0, KT_PAGES);
		kt_expect_event(test, log, 2 * n + 5, 2, KT_END, shared, 0, KT_PAGES);
		for (i = 0; i < KT_PAGES; i++)
			KUNIT_EXPECT_EQ(test, guest_memfd_is_private(file, i),
					i != 4 && i != 5);
	}
	KUNIT_EXPECT_EQ(test, n, 9U);

	/* A failure set at a page that keeps its state is never reached. */
	kt_step_fail_index = 4;
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 0, KT_PAGES, false,
					   &error_index), 0);
	KUNIT_ASSERT_EQ(test, log->nr, 5 + ARRAY_SIZE(changing));
	kt_expect_steps(test, file, log, 3, KT_STEP, shared, changing,
			ARRAY_SIZE(changing));
	for (i = 0; i < KT_PAGES; i++)
		KUNIT_EXPECT_FALSE(test, guest_memfd_is_private(file, i));

	/* Back to private: each allocated page of the range, once. */
	kt_step_error = 0;
	log->nr = 0;
	KUNIT_EXPECT_EQ(test, gmem_convert(inode, 3, 13, true, &error_index), 0);
	KUNIT_ASSERT_EQ(test, log->nr, 13);
	kt_expect_steps(test, file, log, 3, KT_STEP, private,
			(const pgoff_t[]){ 3, 4, 5, 6, 7, 8, 9, 12 }, 8);
	for (i = 0; i < KT_PAGES; i++)
		KUNIT_EXPECT_EQ(test, guest_memfd_is_private(file, i),
				i >= 3 && i < 13);

	guest_memfd_unregister_notifier(&b.n);
	guest_memfd_unregister_notifier(&a.n);
	__fput_sync(file);
}

#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
/*
 * Ownership model: two tasks that miss the same hole in the page cache both
 * get the folio that the first one added, and both record it.  The second
 * record keeps what was counted since, here an IOMMU mapping of the page
 * (otherwise its unmap is reported as one too many).
 */
static void gmem_model_record_twice_test(struct kunit *test)
{
	struct kt_log *log = kt_log_new(test);
	enum guest_memfd_owner owner;
	unsigned long pfn, maps;
	struct folio *folio;
	struct kt_client a;
	struct file *file;

	kt_client_init(&a, log, 1, &kt_ops_no_prepare);
	file = kt_create(test, GUEST_MEMFD_F_INIT_SHARED);
	KUNIT_ASSERT_EQ(test, guest_memfd_register_notifier(file, &a.n), 0);
	KUNIT_ASSERT_EQ(test, kt_get_pfn_unlocked(&a.n, 2, GUEST_MEMFD_ACCESS_SHARED |
						  GUEST_MEMFD_GET_ALLOC, &pfn), 0);
	folio = filemap_get_folio(file->f_mapping, 2);
	KUNIT_ASSERT_FALSE(test, IS_ERR(folio));

	/* The first task's record (a no-op if the model is on and did it) */
	gmem_model_allocated(file_inode(file), folio, false);
	__guest_memfd_model_map(pfn, 1, "KUnit map");
	/* The second task's, which found the folio the first one added */
	gmem_model_allocated(file_inode(file), folio, false);
	KUNIT_EXPECT_TRUE(test, gmem_model_peek(pfn, &owner, &maps));
	KUNIT_EXPECT_EQ(test, owner, GUEST_MEMFD_OWNER_HOST);
	KUNIT_EXPECT_EQ(test, maps, 1UL);

	if (maps == 1)
		__guest_memfd_model_unmap(pfn, 1, "KUnit unmap");
	folio_put(folio);
	guest_memfd_unregister_notifier(&a.n);
	/* With the model off, nothing else forgets the pages. */
	gmem_model_forget(file->f_mapping, 0, KT_PAGES);
	KUNIT_EXPECT_FALSE(test, gmem_model_peek(pfn, &owner, &maps));
	__fput_sync(file);
}
#endif

static struct kunit_case gmem_notifier_cases[] = {
	KUNIT_CASE(gmem_register_test),
	KUNIT_CASE(gmem_pairing_test),
	KUNIT_CASE(gmem_order_test),
	KUNIT_CASE(gmem_refuse_test),
	KUNIT_CASE(gmem_release_test),
	KUNIT_CASE(gmem_memory_failure_keeps_lock_test),
	KUNIT_CASE(gmem_get_pfn_test),
	KUNIT_CASE(gmem_convert_test),
	KUNIT_CASE(gmem_convert_owner_step_test),
	KUNIT_CASE_SLOW(gmem_unregister_race_test),
#ifdef CONFIG_GUEST_MEMFD_OWNERSHIP_MODEL
	KUNIT_CASE(gmem_model_record_twice_test),
#endif
	{}
};

static struct kunit_suite gmem_notifier_suite = {
	.name = "guest_memfd_notifier",
	.test_cases = gmem_notifier_cases,
};

kunit_test_suite(gmem_notifier_suite);

MODULE_DESCRIPTION("KUnit tests for the guest_memfd notifier API");
MODULE_LICENSE("GPL");
