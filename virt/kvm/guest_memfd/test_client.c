// SPDX-License-Identifier: GPL-2.0-only
/*
 * A mock guest_memfd client for tests (CONFIG_GUEST_MEMFD_TEST).
 *
 * It records every notification it receives so that userspace can check
 * the exact sequence a guest_memfd operation produces, and it can refuse a
 * change in its prepare callback so that tests can check that a refusal
 * leaves everything unchanged.  This is a test interface in debugfs, not
 * ABI.
 *
 * Interface
 * =========
 *
 * /sys/kernel/debug/guest_memfd_test/client (mode 0600).  Every open()
 * creates a new, independent client, destroyed (and detached) by the last
 * close() of that open file.  Several clients may be attached to the same
 * guest_memfd; they are notified in the order they were attached.
 *
 * Commands: one command per write(), ASCII, fields separated by spaces, an
 * optional trailing newline, at most 127 bytes.  write() returns the number
 * of bytes written on success, or fails with the errno given below.
 * Numbers are decimal (a 0x prefix selects hex).
 *
 *   attach FD       Register on the guest_memfd open as FD in the calling
 *                   process.  The client holds the guest_memfd's inode,
 *                   not the file: closing every fd of the guest_memfd
 *                   releases it, which the client records.
 *                   EBADF: FD not open.  EINVAL: not a guest_memfd.
 *                   EBUSY: already attached.
 *   detach          Unregister.  The log is kept.  ENOTCONN: not attached.
 *   clear           Empty the log (and the lost count).
 *   refuse ERRNO OFFSET
 *                   Make the next prepare callback (one-shot) refuse with
 *                   -ERRNO, reporting the page at byte OFFSET as the one it
 *                   cannot let go (guest_memfd substitutes the range's start
 *                   if OFFSET is outside the range).  ERRNO is 1..4095;
 *                   "refuse 0 0" disarms.  EINVAL: bad numbers.
 *   lookup OFFSET shared|private [alloc]
 *                   guest_memfd_get_pfn() of the page at byte OFFSET with
 *                   that access (and GUEST_MEMFD_GET_ALLOC): write()
 *                   returns its errno (e.g. EACCES on a state mismatch,
 *                   ENOENT for a missing page).  Not logged.  ENOTCONN: not
 *                   attached.
 *   hold OFFSET     Take a reference on the page at byte OFFSET, as a
 *                   device or firmware holding on to a page would (a
 *                   conversion to private that changes that page then fails
 *                   with EAGAIN).  One page at a time.  ENOENT: no page
 *                   there.  EBUSY: already holding one.  ENOTCONN: not
 *                   attached.
 *   unhold          Drop it (also done by the last close()).  ENOENT: none.
 *   delay MS        Make the next prepare callback (one-shot) sleep MS
 *                   milliseconds, at most 10000, before it answers: the
 *                   change then holds the invalidate lock for writing that
 *                   long, so that tests can line other paths up behind it.
 *                   EINVAL: bad number.
 *   tap             Also log the conversion step of the file: the core's
 *                   call of its owner's convert_folio for each allocated
 *                   folio whose pages change, and of convert_undo.  One
 *                   client per file.  EBUSY: the file has a tap already.
 *                   ENOTCONN: not attached.
 *   fail ERRNO OFFSET
 *                   Make the step of the folio that holds the page at byte
 *                   OFFSET fail with -ERRNO (one-shot), before the owner's
 *                   convert_folio is called for it: whatever the owner,
 *                   the conversion fails there, the folios stepped before
 *                   are undone, and error_offset is the first page of that
 *                   folio in the range.  ERRNO is 1..4095; "fail 0 0"
 *                   disarms.  EINVAL: bad numbers.  ENOTCONN: no tap.
 *
 * Any other command fails with EINVAL.
 *
 * Reading returns the log, one line per callback, oldest first:
 *
 *   KIND REASON START END
 *   refuse REASON START END ERRNO ERROR_OFFSET
 *
 *   fail REASON START END ERRNO ERROR_OFFSET
 *
 * KIND is one of prepare (prepare returned 0), abort, begin
 * (invalidate_begin) or end (invalidate_end), and with a tap step (the
 * owner's step of the pages [START, END), one folio) or undo; "refuse" is
 * a prepare that refused, with the positive ERRNO and the byte offset it
 * reported, "fail" a step that "fail" made fail.
 * REASON is one of convert_shared, convert_private, truncate, release,
 * memory_failure, allocate, populate.  START and END are byte offsets in
 * the guest_memfd, END exclusive.  The log holds up to 4096 lines; further
 * callbacks are counted and reported by a last line "lost N".  Read the
 * log from offset 0 (pread() or lseek() first) with a buffer large enough
 * for all of it (512 KiB always is): each read formats the log anew.
 *
 * Example: after "attach 5" and fallocate(5, PUNCH_HOLE | KEEP_SIZE, 4096,
 * 8192), the log reads "prepare truncate 4096 12288", "begin truncate 4096
 * 12288" and "end truncate 4096 12288"; after "refuse 16 8192" the same
 * fallocate() fails with EBUSY and the log gains only "refuse truncate 4096
 * 12288 16 8192".  A client attached before it logs "prepare truncate 4096
 * 12288" then "abort truncate 4096 12288".
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/guest_memfd.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/mutex.h>
#include <linux/pagemap.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "internal.h"

#define GMEM_TEST_MAX_EVENTS	4096
#define GMEM_TEST_CMD_MAX	128
/* The longest line: "refuse convert_private " + 4 numbers + separators. */
#define GMEM_TEST_LINE_MAX	128

enum gmem_test_kind {
	GMEM_TEST_PREPARE,
	GMEM_TEST_REFUSE,
	GMEM_TEST_ABORT,
	GMEM_TEST_BEGIN,
	GMEM_TEST_END,
	GMEM_TEST_STEP,
	GMEM_TEST_UNDO,
	GMEM_TEST_FAIL,
};

static const char * const gmem_test_kind_names[] = {
	[GMEM_TEST_PREPARE]	= "prepare",
	[GMEM_TEST_REFUSE]	= "refuse",
	[GMEM_TEST_ABORT]	= "abort",
	[GMEM_TEST_BEGIN]	= "begin",
	[GMEM_TEST_END]		= "end",
	[GMEM_TEST_STEP]	= "step",
	[GMEM_TEST_UNDO]	= "undo",
	[GMEM_TEST_FAIL]	= "fail",
};

static const char * const gmem_test_reason_names[] = {
	[GUEST_MEMFD_REASON_CONVERT_SHARED]	= "convert_shared",
	[GUEST_MEMFD_REASON_CONVERT_PRIVATE]	= "convert_private",
	[GUEST_MEMFD_REASON_TRUNCATE]		= "truncate",
	[GUEST_MEMFD_REASON_RELEASE]		= "release",
	[GUEST_MEMFD_REASON_MEMORY_FAILURE]	= "memory_failure",
	[GUEST_MEMFD_REASON_ALLOCATE]		= "allocate",
};

struct gmem_test_event {
	enum gmem_test_kind kind;
	enum guest_memfd_reason reason;
	pgoff_t start;
	pgoff_t end;
	int error;
	pgoff_t error_index;
};

struct gmem_test_client {
	struct guest_memfd_notifier notifier;

	/*
	 * Serialises commands; protects @attached.  Ranks above the
	 * invalidate lock: attach and detach take it under this mutex.
	 */
	struct mutex cmd_lock;
	bool attached;
	bool tapped;
	struct gmem_step_tap tap;

	/* The client lock: taken in callbacks, under the invalidate lock. */
	struct mutex lock;
	struct gmem_test_event *events;
	unsigned int nr_events;
	unsigned long lost;
	int refuse_error;
	pgoff_t refuse_index;
	unsigned int delay_ms;
	int fail_error;
	pgoff_t fail_index;

	/* The page "hold" took a reference on, under @cmd_lock. */
	struct folio *held;
};

static struct dentry *gmem_test_dir;

static struct gmem_test_client *to_client(struct guest_memfd_notifier *n)
{
	return container_of(n, struct gmem_test_client, notifier);
}

static void gmem_test_log(struct gmem_test_client *c, enum gmem_test_kind kind,
			  const struct guest_memfd_range *range, int error,
			  pgoff_t error_index)
{
	struct gmem_test_event *e;

	lockdep_assert_held(&c->lock);

	if (c->nr_events == GMEM_TEST_MAX_EVENTS) {
		c->lost++;
		return;
	}

	e = &c->events[c->nr_events++];
	e->kind = kind;
	e->reason = range->reason;
	e->start = range->start;
	e->end = range->end;
	e->error = error;
	e->error_index = error_index;
}

static int gmem_test_prepare(struct guest_memfd_notifier *n,
			     const struct guest_memfd_range *range,
			     pgoff_t *error_index)
{
	struct gmem_test_client *c = to_client(n);
	unsigned int delay;
	int error;

	mutex_lock(&c->lock);
	delay = c->delay_ms;
	c->delay_ms = 0;
	mutex_unlock(&c->lock);
	if (delay)
		msleep(delay);

	mutex_lock(&c->lock);
	error = c->refuse_error;
	if (error) {
		c->refuse_error = 0;
		*error_index = c->refuse_index;
		/* Log what guest_memfd will report. */
		if (*error_index < range->start || *error_index >= range->end)
			*error_index = range->start;
		gmem_test_log(c, GMEM_TEST_REFUSE, range, error, *error_index);
	} else {
		gmem_test_log(c, GMEM_TEST_PREPARE, range, 0, 0);
	}
	mutex_unlock(&c->lock);

	return -error;
}

static void gmem_test_abort(struct guest_memfd_notifier *n,
			    const struct guest_memfd_range *range)
{
	struct gmem_test_client *c = to_client(n);

	mutex_lock(&c->lock);
	gmem_test_log(c, GMEM_TEST_ABORT, range, 0, 0);
	mutex_unlock(&c->lock);
}

static void gmem_test_invalidate_begin(struct guest_memfd_notifier *n,
				       const struct guest_memfd_range *range)
{
	struct gmem_test_client *c = to_client(n);

	mutex_lock(&c->lock);
	gmem_test_log(c, GMEM_TEST_BEGIN, range, 0, 0);
	mutex_unlock(&c->lock);
}

static void gmem_test_invalidate_end(struct guest_memfd_notifier *n,
				     const struct guest_memfd_range *range)
{
	struct gmem_test_client *c = to_client(n);

	mutex_lock(&c->lock);
	gmem_test_log(c, GMEM_TEST_END, range, 0, 0);
	mutex_unlock(&c->lock);
}

static const struct guest_memfd_notifier_ops gmem_test_ops = {
	.prepare		= gmem_test_prepare,
	.abort			= gmem_test_abort,
	.invalidate_begin	= gmem_test_invalidate_begin,
	.invalidate_end		= gmem_test_invalidate_end,
};

static int gmem_test_step(struct gmem_step_tap *tap, pgoff_t index,
			  unsigned long nr, bool to_private)
{
	struct gmem_test_client *c = container_of(tap, struct gmem_test_client,
						  tap);
	struct guest_memfd_range range;
	int error = 0;

	guest_memfd_range_init(&range, index, index + nr, to_private ?
			       GUEST_MEMFD_REASON_CONVERT_PRIVATE :
			       GUEST_MEMFD_REASON_CONVERT_SHARED);
	mutex_lock(&c->lock);
	if (c->fail_error && c->fail_index >= index &&
	    c->fail_index < index + nr) {
		error = c->fail_error;
		c->fail_error = 0;
		gmem_test_log(c, GMEM_TEST_FAIL, &range, error, index);
	} else {
		gmem_test_log(c, GMEM_TEST_STEP, &range, 0, 0);
	}
	mutex_unlock(&c->lock);

	return -error;
}

static void gmem_test_undo(struct gmem_step_tap *tap, pgoff_t index,
			   unsigned long nr, bool to_private)
{
	struct gmem_test_client *c = container_of(tap, struct gmem_test_client,
						  tap);
	struct guest_memfd_range range;

	guest_memfd_range_init(&range, index, index + nr, to_private ?
			       GUEST_MEMFD_REASON_CONVERT_PRIVATE :
			       GUEST_MEMFD_REASON_CONVERT_SHARED);
	mutex_lock(&c->lock);
	gmem_test_log(c, GMEM_TEST_UNDO, &range, 0, 0);
	mutex_unlock(&c->lock);
}

/* Under cmd_lock, while attached. */
static void gmem_test_untap(struct gmem_test_client *c)
{
	if (!c->tapped)
		return;
	gmem_clear_step_tap(c->notifier.inode, &c->tap);
	c->tapped = false;
}

static int gmem_test_open(struct inode *inode, struct file *file)
{
	struct gmem_test_client *c;

	c = kzalloc_obj(*c);
	if (!c)
		return -ENOMEM;

	c->events = kvcalloc(GMEM_TEST_MAX_EVENTS, sizeof(*c->events),
			     GFP_KERNEL);
	if (!c->events) {
		kfree(c);
		return -ENOMEM;
	}

	mutex_init(&c->cmd_lock);
	mutex_init(&c->lock);
	c->notifier.ops = &gmem_test_ops;
	c->tap.step = gmem_test_step;
	c->tap.undo = gmem_test_undo;
	file->private_data = c;

	return 0;
}

static int gmem_test_release(struct inode *inode, struct file *file)
{
	struct gmem_test_client *c = file->private_data;

	if (c->attached) {
		gmem_test_untap(c);
		guest_memfd_unregister_notifier(&c->notifier);
	}
	if (c->held)
		folio_put(c->held);

	kvfree(c->events);
	kfree(c);

	return 0;
}

static int gmem_test_attach(struct gmem_test_client *c, int fd)
{
	struct file *gmem;
	int ret;

	if (c->attached)
		return -EBUSY;

	gmem = fget(fd);
	if (!gmem)
		return -EBADF;

	ret = guest_memfd_register_notifier(gmem, &c->notifier);
	fput(gmem);
	if (!ret)
		c->attached = true;

	return ret;
}

static int gmem_test_lookup(struct gmem_test_client *c, u64 offset,
			    const char *access, const char *alloc)
{
	unsigned int flags;
	unsigned long pfn;
	int ret;

	if (!c->attached)
		return -ENOTCONN;

	if (!strcmp(access, "shared"))
		flags = GUEST_MEMFD_ACCESS_SHARED;
	else if (!strcmp(access, "private"))
		flags = GUEST_MEMFD_ACCESS_PRIVATE;
	else
		return -EINVAL;

	if (alloc) {
		if (strcmp(alloc, "alloc"))
			return -EINVAL;
		flags |= GUEST_MEMFD_GET_ALLOC;
	}

	guest_memfd_lock(&c->notifier);
	ret = guest_memfd_get_pfn(&c->notifier, offset >> PAGE_SHIFT, flags,
				  &pfn);
	guest_memfd_unlock(&c->notifier);
	return ret;
}

static int gmem_test_hold(struct gmem_test_client *c, u64 offset)
{
	struct folio *folio;

	if (!c->attached)
		return -ENOTCONN;
	if (c->held)
		return -EBUSY;

	folio = filemap_get_folio(c->notifier.inode->i_mapping,
				  offset >> PAGE_SHIFT);
	if (IS_ERR(folio))
		return -ENOENT;
	c->held = folio;
	return 0;
}

static int gmem_test_command(struct gmem_test_client *c, char *cmd)
{
	char *argv[4];
	int argc = 0;
	char *tok;
	u64 a, b;

	while ((tok = strsep(&cmd, " \t")) != NULL) {
		if (!*tok)
			continue;
		if (argc == ARRAY_SIZE(argv))
			return -EINVAL;
		argv[argc++] = tok;
	}
	if (!argc)
		return -EINVAL;

	if (!strcmp(argv[0], "attach") && argc == 2) {
		int fd;

		if (kstrtoint(argv[1], 0, &fd))
			return -EINVAL;
		return gmem_test_attach(c, fd);
	}

	if (!strcmp(argv[0], "detach") && argc == 1) {
		if (!c->attached)
			return -ENOTCONN;
		gmem_test_untap(c);
		guest_memfd_unregister_notifier(&c->notifier);
		c->attached = false;
		return 0;
	}

	if (!strcmp(argv[0], "tap") && argc == 1) {
		int ret;

		if (!c->attached)
			return -ENOTCONN;
		if (c->tapped)
			return -EBUSY;
		ret = gmem_set_step_tap(c->notifier.inode, &c->tap);
		if (!ret)
			c->tapped = true;
		return ret;
	}

	if (!strcmp(argv[0], "fail") && argc == 3) {
		if (kstrtou64(argv[1], 0, &a) || a > MAX_ERRNO ||
		    kstrtou64(argv[2], 0, &b))
			return -EINVAL;
		if (!c->tapped)
			return -ENOTCONN;
		mutex_lock(&c->lock);
		c->fail_error = a;
		c->fail_index = b >> PAGE_SHIFT;
		mutex_unlock(&c->lock);
		return 0;
	}

	if (!strcmp(argv[0], "clear") && argc == 1) {
		mutex_lock(&c->lock);
		c->nr_events = 0;
		c->lost = 0;
		mutex_unlock(&c->lock);
		return 0;
	}

	if (!strcmp(argv[0], "refuse") && argc == 3) {
		if (kstrtou64(argv[1], 0, &a) || a > MAX_ERRNO ||
		    kstrtou64(argv[2], 0, &b))
			return -EINVAL;
		mutex_lock(&c->lock);
		c->refuse_error = a;
		c->refuse_index = b >> PAGE_SHIFT;
		mutex_unlock(&c->lock);
		return 0;
	}

	if (!strcmp(argv[0], "lookup") && (argc == 3 || argc == 4)) {
		if (kstrtou64(argv[1], 0, &a))
			return -EINVAL;
		return gmem_test_lookup(c, a, argv[2], argc == 4 ? argv[3] : NULL);
	}

	if (!strcmp(argv[0], "hold") && argc == 2) {
		if (kstrtou64(argv[1], 0, &a))
			return -EINVAL;
		return gmem_test_hold(c, a);
	}

	if (!strcmp(argv[0], "delay") && argc == 2) {
		if (kstrtou64(argv[1], 0, &a) || a > 10000)
			return -EINVAL;
		mutex_lock(&c->lock);
		c->delay_ms = a;
		mutex_unlock(&c->lock);
		return 0;
	}

	if (!strcmp(argv[0], "unhold") && argc == 1) {
		if (!c->held)
			return -ENOENT;
		folio_put(c->held);
		c->held = NULL;
		return 0;
	}

	return -EINVAL;
}

static ssize_t gmem_test_write(struct file *file, const char __user *ubuf,
			       size_t count, loff_t *ppos)
{
	struct gmem_test_client *c = file->private_data;
	char buf[GMEM_TEST_CMD_MAX];
	int ret;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	strim(buf);

	mutex_lock(&c->cmd_lock);
	ret = gmem_test_command(c, buf);
	mutex_unlock(&c->cmd_lock);

	return ret ?: count;
}

static ssize_t gmem_test_read(struct file *file, char __user *ubuf,
			      size_t count, loff_t *ppos)
{
	struct gmem_test_client *c = file->private_data;
	size_t size = (GMEM_TEST_MAX_EVENTS + 1) * GMEM_TEST_LINE_MAX;
	size_t len = 0;
	unsigned int i;
	ssize_t ret;
	char *text;

	text = kvmalloc(size, GFP_KERNEL);
	if (!text)
		return -ENOMEM;

	mutex_lock(&c->lock);
	for (i = 0; i < c->nr_events; i++) {
		struct gmem_test_event *e = &c->events[i];

		len += scnprintf(text + len, size - len, "%s %s %llu %llu",
				 gmem_test_kind_names[e->kind],
				 gmem_test_reason_names[e->reason],
				 (u64)e->start << PAGE_SHIFT,
				 (u64)e->end << PAGE_SHIFT);
		if (e->kind == GMEM_TEST_REFUSE || e->kind == GMEM_TEST_FAIL)
			len += scnprintf(text + len, size - len, " %d %llu",
					 e->error,
					 (u64)e->error_index << PAGE_SHIFT);
		len += scnprintf(text + len, size - len, "\n");
	}
	if (c->lost)
		len += scnprintf(text + len, size - len, "lost %lu\n", c->lost);
	mutex_unlock(&c->lock);

	ret = simple_read_from_buffer(ubuf, count, ppos, text, len);
	kvfree(text);

	return ret;
}

static const struct file_operations gmem_test_fops = {
	.open		= gmem_test_open,
	.release	= gmem_test_release,
	.read		= gmem_test_read,
	.write		= gmem_test_write,
	.llseek		= default_llseek,
};

static int __init gmem_test_init(void)
{
	gmem_test_dir = debugfs_create_dir("guest_memfd_test", NULL);
	debugfs_create_file("client", 0600, gmem_test_dir, NULL,
			    &gmem_test_fops);
	return 0;
}
late_initcall(gmem_test_init);
