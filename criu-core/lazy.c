/*
 * The lazy-pages handler (lazy.h): fills the memory of a tree restored
 * with --lazy-pages through each task's userfaultfd.
 *
 * For every address space it keeps the ranges still to fill, each with
 * where its bytes come from: the task (image id) and the address there,
 * which stay the same when the task moves the range with mremap. A fork
 * gives the child a copy of its parent's ranges (its memory is the
 * parent's, missing pages included); madvise(DONTNEED) and munmap drop
 * ranges, and a page touched there later is a zero page, as the kernel
 * would give. A task that exits is noticed when a copy into it fails.
 *
 * While an event is pending the kernel refuses copies (EAGAIN): the
 * events are read first, then the copy is tried again where the range now
 * is. A fault is answered from its page on (FAULT_WINDOW), the background
 * fill goes through the ranges in order, FILL_BATCH at a time.
 */
#define LOG_PREFIX "lazy-pages: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "chain.h"
#include "cryo.h"
#include "lazy.h"
#include "log.h"
#include "mem-flags.h"
#include "util.h"

#define FAULT_WINDOW	(64u << 10)
#define FILL_BATCH	(1u << 20)
#define MAX_LAZY_VMAS	8192
#define MAX_POLL	256

/* [start, end) of an address space still to fill: its bytes are at addr + delta in task src */
struct lrange {
	uint64_t start, end;
	int64_t delta;
	pid_t src;
};

struct lmm {
	int uffd;			/* -1: gone */
	pid_t vpid;			/* the task, or the one it was forked from */
	bool forked;
	struct lrange *r;		/* sorted; emptied ones ([x, x)) stay until compacted */
	size_t nr, cap, dead;
	bool moved;			/* some ranges may have a delta (after mremap) */
	struct uffd_msg *faults;	/* read while events were read, answered next */
	size_t nr_faults, cap_faults;
};

struct ltask {
	pid_t vpid, ppid, host;
	struct chain *chain;		/* its pages: this dump and the ones before */
};

struct lazy {
	int dirfd;
	const char *dir;
	struct ltask *tasks;
	size_t nr_tasks;
	struct lmm **mms;
	size_t nr_mms;
	const struct lazy_remote *remote;
	uint8_t *buf;
	size_t cursor_mm;		/* the background fill's place */
	uint64_t cursor;
	bool nothing_local;		/* the last pass found nothing it can fill from here */
	uint64_t faults, zero_pages, copied, asked;
	bool committed;			/* the restore said its tree runs (lazy_commit) */
};

/* ------------------------------------------------------------ ranges */

/*
 * A range filled whole is emptied in place ([end, end)), not cut out of
 * the array: the fill goes in address order, and cutting each one out
 * would move the whole array every time. The emptied ones keep the ends
 * in order; they go when they are half of the array.
 */
static bool lr_empty(const struct lrange *r)
{
	return r->start == r->end;
}

static void lr_compact(struct lmm *m)
{
	size_t j = 0;
	bool moved = false;

	for (size_t i = 0; i < m->nr; i++)
		if (!lr_empty(&m->r[i])) {
			moved |= m->r[i].delta != 0;
			m->r[j++] = m->r[i];
		}
	m->nr = j;
	m->dead = 0;
	m->moved = moved;
}

/* the first range not emptied that ends after addr */
static size_t lr_first(const struct lmm *m, uint64_t addr)
{
	size_t lo = 0, hi = m->nr;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (m->r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	while (lo < m->nr && lr_empty(&m->r[lo]))
		lo++;
	return lo;
}

/* the next range from i on, not emptied */
static size_t lr_next(const struct lmm *m, size_t i)
{
	while (i < m->nr && lr_empty(&m->r[i]))
		i++;
	return i;
}

static int lr_insert(struct lmm *m, size_t at, struct lrange r)
{
	if (m->nr == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64;
		struct lrange *n = xrealloc_array(m->r, cap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		m->r = n;
		m->cap = cap;
	}
	memmove(m->r + at + 1, m->r + at, (m->nr - at) * sizeof(*m->r));
	m->r[at] = r;
	m->nr++;
	return 0;
}

/* [s, e) needs nothing any more (indices into m->r change) */
static int lr_remove(struct lmm *m, uint64_t s, uint64_t e)
{
	size_t i = lr_first(m, s);

	for (; i < m->nr && m->r[i].start < e; i = lr_next(m, i + 1)) {
		struct lrange *r = &m->r[i];

		if (r->start < s && r->end > e) {
			struct lrange tail = *r;

			tail.start = e;
			r->end = s;
			if (i + 1 < m->nr && lr_empty(&m->r[i + 1])) {
				/* an emptied slot right after it: the tail goes there */
				m->r[i + 1] = tail;
				m->dead--;
				return 0;
			}
			return lr_insert(m, i + 1, tail);
		}
		if (r->start < s) {
			r->end = s;
		} else if (r->end > e) {
			r->start = e;
			break;
		} else {
			r->start = r->end;
			m->dead++;
		}
	}
	if (m->dead > 64 && m->dead > m->nr / 2)
		lr_compact(m);
	return 0;
}

/* the task moved [from, from + len) to `to`: so do its ranges, their sources staying */
static int lr_remap(struct lmm *m, uint64_t from, uint64_t to, uint64_t len)
{
	struct lrange *moved = NULL;
	size_t n = 0, i = lr_first(m, from);
	int ret = 0;

	for (; i < m->nr && m->r[i].start < from + len; i = lr_next(m, i + 1)) {
		struct lrange p = m->r[i];
		struct lrange *nm = xrealloc_array(moved, n + 1, sizeof(*nm));

		if (!nm) {
			free(moved);
			return -ENOMEM;
		}
		moved = nm;
		p.start = MAX(p.start, from);
		p.end = MIN(p.end, from + len);
		p.delta -= (int64_t)(to - from);
		p.start += to - from;
		p.end += to - from;
		moved[n++] = p;
	}
	ret = lr_remove(m, from, from + len) ?: lr_remove(m, to, to + len);
	/* no emptied range may lie where the moved ones go */
	lr_compact(m);
	for (size_t k = 0; k < n && !ret; k++) {
		ret = lr_insert(m, lr_first(m, moved[k].start), moved[k]);
		m->moved |= moved[k].delta != 0;
	}
	free(moved);
	return ret;
}

/* ---------------------------------------------------- where bytes are */

static struct ltask *find_task(struct lazy *l, pid_t vpid)
{
	for (size_t i = 0; i < l->nr_tasks; i++)
		if (l->tasks[i].vpid == vpid)
			return &l->tasks[i];
	return NULL;
}

/*
 * Task vpid's bytes from addr on, as far as they lie in one place (at most
 * len): 0 and read into buf, or 1 if they are the source host's (PE_LAZY),
 * with their length in *got; -errno if they are nowhere.
 */
static int src_read(struct lazy *l, pid_t vpid, uint64_t addr, uint64_t len, void *buf, uint64_t *got)
{
	for (int depth = 0; depth < 64; depth++) {
		struct ltask *t = find_task(l, vpid);
		uint64_t run;
		uint32_t f;

		if (!t) {
			pr_err("pages of pid %d are asked for, which is not in the tree", vpid);
			return -ENOENT;
		}
		f = chain_flags_at(t->chain, addr, &run);
		*got = MIN(len, run);
		if (f & PE_LAZY)
			return 1;
		if (f & (PE_PRESENT | PE_IN_PREV))
			return chain_read(t->chain, addr, *got, buf);
		if (!(f & PE_PARENT)) {
			pr_err("pagemap-%d.img has no page at %#lx, yet it was left to post-copy", vpid,
			       (unsigned long)addr);
			return -EINVAL;
		}
		vpid = t->ppid;		/* shared copy-on-write with its parent: the parent's bytes */
	}
	return -ELOOP;
}

/* ------------------------------------------------------- userfaultfd */

static void mm_gone(struct lmm *m)
{
	if (m->uffd >= 0)
		close(m->uffd);
	m->uffd = -1;
	m->nr = 0;
	m->dead = 0;
	m->nr_faults = 0;
}

static int queue_fault(struct lmm *m, const struct uffd_msg *msg)
{
	if (m->nr_faults == m->cap_faults) {
		size_t cap = m->cap_faults ? 2 * m->cap_faults : 16;
		struct uffd_msg *n = xrealloc_array(m->faults, cap, sizeof(*n));

		if (!n)
			return -ENOMEM;
		m->faults = n;
		m->cap_faults = cap;
	}
	m->faults[m->nr_faults++] = *msg;
	return 0;
}

static struct lmm *mm_new(struct lazy *l, int uffd, pid_t vpid, bool forked)
{
	struct lmm **v = xrealloc_array(l->mms, l->nr_mms + 1, sizeof(*v));
	struct lmm *m = xzalloc(sizeof(*m));

	if (!v || !m) {
		if (v)
			l->mms = v;
		free(m);
		return NULL;
	}
	l->mms = v;
	m->uffd = uffd;
	m->vpid = vpid;
	m->forked = forked;
	l->mms[l->nr_mms++] = m;
	return m;
}

static int on_fork(struct lazy *l, struct lmm *parent, int uffd)
{
	struct lmm *c = mm_new(l, uffd, parent->vpid, true);

	if (!c) {
		close(uffd);
		return -ENOMEM;
	}
	lr_compact(parent);
	if (parent->nr) {
		c->r = xrealloc_array(NULL, parent->nr, sizeof(*c->r));
		if (!c->r)
			return -ENOMEM;
		memcpy(c->r, parent->r, parent->nr * sizeof(*c->r));
		c->nr = c->cap = parent->nr;
		c->moved = parent->moved;
	}
	l->nothing_local = false;
	pr_debug("a task of pid %d's line forked: %zu ranges to fill in the child too", parent->vpid, c->nr);
	return 0;
}

/* every message m's userfaultfd has: events now, faults queued */
static int read_events(struct lazy *l, struct lmm *m)
{
	struct uffd_msg msgs[32];

	while (m->uffd >= 0) {
		ssize_t n = read(m->uffd, msgs, sizeof(msgs));
		int ret = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return pr_perror("reading the userfaultfd of pid %d", m->vpid);
		}
		if (n == 0) {
			mm_gone(m);
			return 0;
		}
		for (size_t i = 0; i < n / sizeof(msgs[0]) && !ret; i++) {
			const struct uffd_msg *e = &msgs[i];

			switch (e->event) {
			case UFFD_EVENT_PAGEFAULT:
				ret = queue_fault(m, e);
				break;
			case UFFD_EVENT_FORK:
				ret = on_fork(l, m, e->arg.fork.ufd);
				/* on_fork may move l->mms, never m */
				break;
			case UFFD_EVENT_REMAP:
				ret = lr_remap(m, e->arg.remap.from, e->arg.remap.to, e->arg.remap.len);
				break;
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				ret = lr_remove(m, e->arg.remove.start, e->arg.remove.end);
				break;
			}
		}
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Copy len bytes to dst in m: 0 (pages already there are left as they
 * are), -EAGAIN if an event must be read first, -ESRCH if the task is gone.
 */
static int copy_in(struct lazy *l, struct lmm *m, uint64_t dst, const uint8_t *src, uint64_t len)
{
	while (len) {
		struct uffdio_copy c = { .dst = dst, .src = (uint64_t)src, .len = len };
		int64_t n;

		if (!ioctl(m->uffd, UFFDIO_COPY, &c)) {
			l->copied += len;
			return 0;
		}
		n = c.copy > 0 ? c.copy : 0;
		if (!n && errno != EEXIST && errno != ENOENT)
			return errno == EAGAIN ? -EAGAIN : errno == ESRCH ? -ESRCH
						 : pr_perror("pid %d: UFFDIO_COPY at %#lx", m->vpid,
							     (unsigned long)dst);
		if (!n) {
			/* already there (the rseq page, or a copy that raced) or unmapped: skip it */
			struct uffdio_range w = { dst, PAGE_SIZE };

			ioctl(m->uffd, UFFDIO_WAKE, &w);
			n = PAGE_SIZE;
		}
		l->copied += n;
		dst += n;
		src += n;
		len -= n;
	}
	return 0;
}

/*
 * The first range of m that waits for bytes of task src in [saddr, end):
 * found by address, for ranges whose bytes are where they are to go; then
 * the moved ones, one by one.
 */
static size_t lr_find_src(const struct lmm *m, pid_t src, uint64_t saddr, uint64_t end)
{
	for (size_t i = lr_first(m, saddr); i < m->nr && m->r[i].start < end; i = lr_next(m, i + 1))
		if (!m->r[i].delta && m->r[i].src == src)
			return i;
	for (size_t i = 0; m->moved && i < m->nr; i++) {
		const struct lrange *r = &m->r[i];

		if (r->delta && r->src == src && !lr_empty(r) && r->start + r->delta < end &&
		    r->end + r->delta > saddr)
			return i;
	}
	return m->nr;
}

/* bytes of task src at saddr: into every address space that still waits for them */
static int apply(struct lazy *l, pid_t src, uint64_t saddr, const uint8_t *buf, uint64_t len)
{
	for (size_t k = 0; k < l->nr_mms; k++) {
		struct lmm *m = l->mms[k];
		size_t i;

		while (m->uffd >= 0 && (i = lr_find_src(m, src, saddr, saddr + len)) < m->nr) {
			const struct lrange *r = &m->r[i];
			uint64_t s = MAX(r->start + r->delta, saddr), e = MIN(r->end + r->delta, saddr + len);
			int64_t delta = r->delta;
			int ret = copy_in(l, m, s - delta, buf + (s - saddr), e - s);

			if (ret == -ESRCH) {
				pr_debug("pid %d (or a child of it) is gone", m->vpid);
				mm_gone(m);
				break;
			}
			if (ret == -EAGAIN) {
				/* an event first; the ranges may have changed: look again */
				if ((ret = read_events(l, m)))
					return ret;
				continue;
			}
			if (ret || (ret = lr_remove(m, s - delta, e - delta)))
				return ret;
		}
	}
	return 0;
}

int lazy_pages_in(struct lazy *l, pid_t vpid, uint64_t addr, const void *buf, uint64_t len)
{
	return apply(l, vpid, addr, buf, len);
}

/*
 * Fill [addr, addr + len) of r, from its first byte as far as the bytes
 * lie in one place: from here, or asked of the source host (if ask; *remote
 * says which).
 */
static int fetch(struct lazy *l, const struct lrange *r, uint64_t addr, uint64_t len, bool ask, bool *remote)
{
	uint64_t got, saddr = addr + r->delta;
	pid_t src = r->src;
	int ret = src_read(l, src, saddr, len, l->buf, &got);

	*remote = ret == 1;
	if (ret == 1 && !ask)
		return 0;
	if (ret == 1) {
		if (!l->remote) {
			pr_err("pid %d: the pages at %#lx are still at the source, and there is none to ask",
			       src, (unsigned long)saddr);
			return -ENOENT;
		}
		l->asked += got;
		return l->remote->request(l->remote->arg, src, saddr, got);
	}
	return ret ?: apply(l, src, saddr, l->buf, got);
}

/* a first touch: its page and the ones after it, or a zero page where nothing is to come */
static int on_fault(struct lazy *l, struct lmm *m, uint64_t addr)
{
	uint64_t page = addr & ~(uint64_t)(PAGE_SIZE - 1);
	size_t i = lr_first(m, page);
	bool remote;

	l->faults++;
	if (i < m->nr && m->r[i].start <= page) {
		struct lrange r = m->r[i];

		return fetch(l, &r, page, MIN(r.end, page + FAULT_WINDOW) - page, true, &remote);
	}
	{
		struct uffdio_zeropage z = { .range = { page, PAGE_SIZE } };

		if (!ioctl(m->uffd, UFFDIO_ZEROPAGE, &z)) {
			l->zero_pages++;
			return 0;
		}
		if (errno == EAGAIN)
			return -EAGAIN;
		if (errno == ESRCH) {
			mm_gone(m);
			return 0;
		}
		/* there already (filled meanwhile) or unmapped: wake whoever waits */
		ioctl(m->uffd, UFFDIO_WAKE, &z.range);
		return 0;
	}
}

/* the faults read so far, of every address space; one that must wait for an event stays */
static int answer_faults(struct lazy *l, bool *again)
{
	*again = false;
	for (size_t k = 0; k < l->nr_mms; k++) {
		struct lmm *m = l->mms[k];

		while (m->nr_faults && m->uffd >= 0) {
			int ret = on_fault(l, m, m->faults[0].arg.pagefault.address);

			if (ret == -EAGAIN) {
				*again = true;
				if ((ret = read_events(l, m)))
					return ret;
				break;
			}
			if (ret)
				return ret;
			memmove(m->faults, m->faults + 1, (m->nr_faults - 1) * sizeof(*m->faults));
			m->nr_faults--;
		}
	}
	return 0;
}

/* one batch of the background fill: 1 if it filled something, 0 if nothing is left to do here */
static int fill_some(struct lazy *l)
{
	for (size_t pass = 0; pass <= l->nr_mms; pass++) {
		struct lmm *m;
		size_t i;

		if (l->cursor_mm >= l->nr_mms) {
			l->cursor_mm = 0;
			l->cursor = 0;
		}
		m = l->mms[l->cursor_mm];
		for (i = lr_first(m, l->cursor); i < m->nr; i = lr_next(m, i + 1)) {
			struct lrange r = m->r[i];
			uint64_t s = MAX(r.start, l->cursor);
			bool remote;
			int ret = fetch(l, &r, s, MIN(r.end - s, FILL_BATCH), false, &remote);

			if (ret)
				return ret;
			if (!remote) {
				l->cursor = s;	/* what is left of r is found from there */
				return 1;
			}
			/* the source host pushes those: on past them */
			l->cursor = r.end;
		}
		l->cursor_mm++;
		l->cursor = 0;
	}
	return 0;
}

static bool all_in(const struct lazy *l)
{
	for (size_t k = 0; k < l->nr_mms; k++)
		if (l->mms[k]->nr > l->mms[k]->dead || l->mms[k]->nr_faults)
			return false;
	return true;
}

/* ------------------------------------------------------- the tasks */

/* the tree runs: a task description of pid 0, without a userfaultfd */
int lazy_commit(int sock)
{
	struct lazy_task_desc d = { 0 };
	struct iovec iov = { &d, sizeof(d) };

	if (sendmsg_fd(sock, &iov, 1, -1) < 0)
		return pr_perror("cannot tell the lazy-pages handler that the tree runs");
	return 0;
}

int lazy_send(int sock, const struct lazy_task_desc *d, const uint64_t *vmas, int uffd)
{
	struct iovec iov[2] = { { (void *)d, sizeof(*d) }, { (void *)vmas, d->nr_vmas * 2 * sizeof(uint64_t) } };

	if (sendmsg_fd(sock, iov, 2, uffd) < 0)
		return pr_perror("pid %d: cannot hand its userfaultfd to the lazy-pages handler", d->vpid);
	return 0;
}

/*
 * Whose bytes task vpid has at addr when they are its parent's (PE_PARENT,
 * shared copy-on-write at the dump): the nearest ancestor with bytes of its
 * own there, as far as *run goes (cut down to where that holds). The
 * ranges waiting for them then name it as their source, so that its pages,
 * filled here or pushed by the source host, fill them too.
 */
static pid_t owner_at(struct lazy *l, pid_t vpid, uint64_t addr, uint64_t *run)
{
	for (int depth = 0; depth < 64; depth++) {
		struct ltask *t = find_task(l, vpid), *p;
		uint64_t r;

		if (!t || !(chain_flags_at(t->chain, addr, &r) & PE_PARENT) || !(p = find_task(l, t->ppid)))
			return vpid;
		*run = MIN(*run, r);
		vpid = p->vpid;
	}
	return vpid;
}

/* one task from cryo restore: 1, or 0 at the end of the list, or -errno */
static int recv_task(struct lazy *l, int sock)
{
	size_t blen = sizeof(struct lazy_task_desc) + MAX_LAZY_VMAS * 2 * sizeof(uint64_t);
	_cleanup_free_ uint8_t *buf = xzalloc(blen);
	struct iovec iov = { buf, blen };
	struct lazy_task_desc d;
	struct ltask *t;
	const uint64_t *v;
	struct lmm *m;
	int uffd = -1, ret;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	n = recvmsg_fd(sock, &iov, 1, &uffd, 0);
	if (n < 0)
		return pr_perror("receiving the tasks");
	if (n == 0)
		return 0;
	memcpy(&d, buf, sizeof(d));
	if ((size_t)n == sizeof(d) && !d.vpid && !d.nr_vmas && uffd < 0) {
		l->committed = true;
		return 1;
	}
	if ((size_t)n < sizeof(d) || d.nr_vmas > MAX_LAZY_VMAS ||
	    (size_t)n != sizeof(d) + d.nr_vmas * 2 * sizeof(uint64_t) || (d.nr_vmas && uffd < 0)) {
		if (uffd >= 0)
			close(uffd);
		pr_err("a malformed task description (%zd bytes)", n);
		return -EPROTO;
	}
	t = xrealloc_array(l->tasks, l->nr_tasks + 1, sizeof(*t));
	if (!t) {
		if (uffd >= 0)
			close(uffd);
		return -ENOMEM;
	}
	l->tasks = t;
	t = &l->tasks[l->nr_tasks++];
	*t = (struct ltask){ .vpid = d.vpid, .ppid = d.ppid, .host = d.host };
	if ((ret = chain_open_self(l->dirfd, l->dir, d.vpid, &t->chain))) {
		if (uffd >= 0)
			close(uffd);
		return ret;
	}
	if (uffd < 0)
		return 1;
	m = mm_new(l, uffd, d.vpid, false);
	if (!m) {
		close(uffd);
		return -ENOMEM;
	}
	/* the pages it has in the images, inside its lazy VMAs */
	v = (const uint64_t *)(buf + sizeof(d));
	for (uint32_t k = 0; k < d.nr_vmas; k++) {
		for (uint64_t a = v[2 * k]; a < v[2 * k + 1];) {
			uint64_t run, e;
			uint32_t f = chain_flags_at(t->chain, a, &run);
			pid_t src = d.vpid;

			if (f & PE_PARENT)
				src = owner_at(l, d.vpid, a, &run);
			e = MIN(v[2 * k + 1], a + MIN(run, v[2 * k + 1] - a));
			if ((f & (PE_PRESENT | PE_IN_PREV | PE_PARENT | PE_LAZY)) &&
			    (ret = lr_insert(m, m->nr, (struct lrange){ a, e, 0, src })))
				return ret;
			a = e;
		}
	}
	return 1;
}

static void lazy_free(struct lazy *l)
{
	for (size_t k = 0; k < l->nr_mms; k++) {
		mm_gone(l->mms[k]);
		free(l->mms[k]->r);
		free(l->mms[k]->faults);
		free(l->mms[k]);
	}
	free(l->mms);
	for (size_t i = 0; i < l->nr_tasks; i++)
		chain_close(l->tasks[i].chain);
	free(l->tasks);
	free(l->buf);
}

/* PE_PARENT pages are read from the parent's images: only a childless task's are read once */
static void consume_images(struct lazy *l)
{
	for (size_t i = 0; i < l->nr_tasks; i++) {
		bool parent = false;

		for (size_t k = 0; k < l->nr_tasks && !parent; k++)
			parent = l->tasks[k].ppid == l->tasks[i].vpid;
		if (!parent)
			chain_consume(l->tasks[i].chain, l->dirfd, l->dir, false);
	}
}

int lazy_serve(int dirfd, const char *dir, int sock, const struct lazy_remote *remote, int rate_mib,
	       bool consume)
{
	struct lazy l = { .dirfd = dirfd, .dir = dir, .remote = remote };
	uint64_t t0 = now_ns(), next_fill = 0, total = 0;
	int ret;

	/* what the restore checked, checked again here: this reader may be another process, on its own -D */
	if ((ret = chain_check(dirfd, dir, dir, true)))
		return ret;
	if (!(l.buf = malloc(FILL_BATCH)))
		return -ENOMEM;
	while ((ret = recv_task(&l, sock)) == 1)
		;
	/* pages at the source go nowhere but into a tree that runs: else the source keeps them, and runs on */
	if (!ret && remote && !l.committed) {
		pr_err("the restore did not complete: its tree is gone, the source keeps its memory");
		ret = -ECANCELED;
	}
	if (consume)
		consume_images(&l);
	for (size_t k = 0; k < l.nr_mms; k++)
		for (size_t i = 0; i < l.mms[k]->nr; i++)
			total += l.mms[k]->r[i].end - l.mms[k]->r[i].start;
	if (!ret)
		pr_info("%zu tasks, %zu with lazy memory: %lu MiB to fill", l.nr_tasks, l.nr_mms, total >> 20);
	while (!ret && !all_in(&l)) {
		struct pollfd p[MAX_POLL + 1];
		size_t np = 0, map[MAX_POLL];
		int timeout = -1;
		uint64_t now;
		bool again;

		for (size_t k = 0; k < l.nr_mms && np < MAX_POLL; k++)
			if (l.mms[k]->uffd >= 0) {
				map[np] = k;
				p[np++] = (struct pollfd){ .fd = l.mms[k]->uffd, .events = POLLIN };
			}
		if (remote)
			p[np] = (struct pollfd){ .fd = remote->fd, .events = POLLIN };
		now = now_ns();
		if (!l.nothing_local)
			timeout = next_fill > now ? (int)((next_fill - now) / 1000000) + 1 : 0;
		if (poll(p, np + !!remote, timeout) < 0 && errno != EINTR) {
			ret = pr_perror("poll");
			break;
		}
		for (size_t i = 0; i < np && !ret; i++)
			if (p[i].revents)
				ret = read_events(&l, l.mms[map[i]]);
		if (!ret)
			ret = answer_faults(&l, &again);
		if (!ret && again)
			usleep(200);	/* the event's task has yet to let go of its mm */
		if (!ret && remote && (p[np].revents & (POLLIN | POLLHUP | POLLERR)))
			ret = remote->on_input(remote->arg, &l);
		if (!ret && !l.nothing_local && now_ns() >= next_fill) {
			uint64_t before = l.copied;

			/* small runs (pages between the ones written since a pre-copy round) go many to a pass */
			do
				ret = fill_some(&l);
			while (ret == 1 && l.copied - before < FILL_BATCH);
			if (ret == 0)
				l.nothing_local = true;
			else if (ret == 1) {
				ret = 0;
				if (rate_mib > 0)
					next_fill = now_ns() + (l.copied - before) * 1000000000ULL / ((uint64_t)rate_mib << 20);
			}
		}
	}
	for (size_t i = 0; !ret && i < l.nr_tasks; i++)
		chain_consume_rest(l.tasks[i].chain);
	/* memory that will never come: the tree must not run on without it (the source does) */
	for (size_t i = 0; ret && remote && l.committed && i < l.nr_tasks; i++)
		if (l.tasks[i].host > 0 && !kill(l.tasks[i].host, SIGKILL))
			pr_warn("pid %d (%d here) killed: its memory cannot come", l.tasks[i].vpid, l.tasks[i].host);
	if (!ret)
		pr_info("every page is in: %lu MiB copied in %lu ms, %lu faults, %lu zero pages, %lu MiB asked of the source",
			l.copied >> 20, (now_ns() - t0) / 1000000, l.faults, l.zero_pages, l.asked >> 20);
	lazy_free(&l);
	return ret;
}

int lazy_daemon_path(const struct cryo_opts *o, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s/%s", o->work_dir ?: o->images_dir, LAZY_DAEMON_SOCKET) >= len) {
		pr_err("%s/%s: too long a path for a unix socket", o->work_dir ?: o->images_dir, LAZY_DAEMON_SOCKET);
		return -ENAMETOOLONG;
	}
	return 0;
}

int lazy_daemon_connect(const struct cryo_opts *o, int *fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ret = lazy_daemon_path(o, sa.sun_path, sizeof(sa.sun_path));

	*fd = -1;
	if (ret || access(sa.sun_path, F_OK))
		return ret;
	*fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (*fd < 0 || connect(*fd, (struct sockaddr *)&sa, sizeof(sa))) {
		/* the socket of one that died: none waits */
		ret = errno == ECONNREFUSED ? 0 : pr_perror("cannot reach cryo lazy-pages at %s", sa.sun_path);
		if (!ret)
			pr_info("%s: no cryo lazy-pages listens there any more", sa.sun_path);
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return ret;
	}
	pr_info("the lazy pages are filled by cryo lazy-pages (%s)", sa.sun_path);
	return 0;
}
