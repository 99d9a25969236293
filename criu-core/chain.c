/*
 * Image chains (chain.h): the `parent` link a dump with --prev-images-dir
 * makes, and the pages read back through it.
 */
#define LOG_PREFIX "chain: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "chain.h"
#include "crc32c.h"
#include "log.h"
#include "manifest.h"
#include "mem-flags.h"
#include "util.h"

#define CHAIN_MAX_DEPTH	64
#define PE_KNOWN	(PE_PRESENT | PE_PARENT | PE_IN_PREV | PE_LAZY)
#define VADDR_END	(1ULL << 57)	/* five-level paging's user space */

/* is there a complete dump (or pre-dump) in dirfd? */
static int check_complete(int dirfd, const char *dir)
{
	struct img *inv = img_open_in(dirfd, dir, IMG_INVENTORY, 0, true);

	if (!inv) {
		if (errno == ENOENT)
			pr_err("%s holds no complete dump or pre-dump: inventory.img is missing", dir);
		return -ENOENT;
	}
	img_close(inv);
	return 0;
}

int chain_link(int dirfd, const char *images_dir, const char *prev)
{
	_cleanup_close_ int pfd = openat(dirfd, prev, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat a, b;
	int ret;

	if (pfd < 0)
		return pr_perror("--prev-images-dir %s (from %s): cannot open it", prev, images_dir);
	if (fstat(pfd, &a) || fstat(dirfd, &b))
		return pr_perror("cannot stat %s", prev);
	if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
		pr_err("--prev-images-dir %s is the images directory itself", prev);
		return -EINVAL;
	}
	if ((ret = chain_check(pfd, prev, prev, false)))
		return ret;
	if (unlinkat(dirfd, "parent", 0) && errno != ENOENT)
		return pr_perror("cannot remove %s/parent", images_dir);
	if (symlinkat(prev, dirfd, "parent"))
		return pr_perror("cannot link %s/parent to %s", images_dir, prev);
	return 0;
}

static void chain_free_level(struct chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		img_free_msg(IMG_PAGEMAP, &c->pm[i]->base);
	free(c->pm);
	free(c->off);
	free(c->checked);
	free(c->buf);
	free(c->dir);
	pages_punch_end(&c->punch, false);
	if (c->pages)
		img_close(c->pages);
	if (c->dirfd >= 0)
		close(c->dirfd);
	free(c);
}

void chain_close(struct chain *c)
{
	while (c) {
		struct chain *p = c->parent;

		chain_free_level(c);
		c = p;
	}
}

/* the size of the open pages image of c: 0 and *size, or -errno (logged) */
static int raw_size(const struct chain *c, int64_t *size)
{
	struct stat st;

	if (fstat(c->pages->fd, &st))
		return pr_perror("%s/pages-%d.img: cannot stat it", c->dir, c->pid);
	*size = st.st_size;
	return 0;
}

/* the level of the directory fd (taken over), named dir */
static int open_dir_level(int fd, const char *dir, pid_t pid, bool pages, struct chain **out)
{
	struct chain *c;
	uint64_t off = IMG_PAGES_HDR_LEN;
	int64_t size = -1;
	int ret;

	c = xzalloc(sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->dirfd = fd;
	c->punch.fd = -1;
	c->pid = pid;
	c->cached = -1;
	if (!(c->dir = xstrdup(dir))) {
		chain_free_level(c);
		return -ENOMEM;
	}
	ret = check_complete(fd, c->dir) ?:
	      img_read_all_in(fd, c->dir, IMG_PAGEMAP, pid, true, &c->pm, &c->n);
	if (!ret && pages && c->n && !(c->pages = img_open_in(fd, c->dir, IMG_PAGES, pid, true))) {
		bool listed = false;

		for (size_t i = 0; i < c->n; i++)
			listed |= c->pm[i]->flags & PE_PRESENT;
		if (errno != ENOENT)
			ret = -EIO;
		else if (listed)
			ret = -EIO, pr_err("%s/pages-%d.img is missing, yet its pagemap lists pages", c->dir, pid);
	}
	if (!ret && c->pages)
		ret = raw_size(c, &size);
	if (!ret)
		ret = pagemap_check(c->dir, pid, c->pm, c->n, c->pages ? size : -1);
	if (!ret && c->n && (!(c->off = calloc(c->n, sizeof(*c->off))) || !(c->checked = calloc((c->n + 7) / 8, 1))))
		ret = -ENOMEM;
	for (size_t i = 0; !ret && i < c->n; i++) {
		c->off[i] = off;
		if (c->pm[i]->flags & PE_PRESENT)
			off += (uint64_t)c->pm[i]->nr_pages * PAGE_SIZE;
	}
	if (ret) {
		chain_free_level(c);
		return ret;
	}
	*out = c;
	return 0;
}

/*
 * The directory the `parent` link of dirfd (named dir) names, into *fd
 * (-1 if there is no link): 0, or -errno (logged). The link is followed,
 * but what it names must be a directory itself, not one more symlink.
 */
static int open_parent(int dirfd, const char *dir, int *fd)
{
	char target[PATH_MAX_LEN];
	ssize_t n = readlinkat(dirfd, "parent", target, sizeof(target));

	*fd = -1;
	if (n < 0 && errno == ENOENT)
		return 0;
	if (n < 0 && errno == EINVAL) {
		pr_err("%s/parent is not a symbolic link to the previous dump's directory", dir);
		return -EINVAL;
	}
	if (n < 0)
		return pr_perror("%s/parent: cannot read the link", dir);
	if (n == 0 || n == (ssize_t)sizeof(target)) {
		pr_err("%s/parent: a link %s", dir, n ? "too long" : "to nothing");
		return -EINVAL;
	}
	target[n] = 0;
	*fd = openat(dirfd, target, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (*fd < 0)
		return pr_perror("%s/parent: cannot open %s", dir, target);
	return 0;
}

int chain_check(int dirfd, const char *dir, const char *prefix, bool pages)
{
	_cleanup_free_ char *cur = xstrdup(dir);
	_cleanup_close_ int own = -1;
	int ret;

	if (!cur)
		return -ENOMEM;
	ret = manifest_check(dirfd, dir, prefix, pages ? 0 : MANIFEST_NO_RAW);
	for (int depth = 0; !ret; depth++) {
		char *pdir = NULL;
		int fd;

		if ((ret = open_parent(dirfd, cur, &fd)) || fd < 0)
			return ret;
		if (depth >= CHAIN_MAX_DEPTH) {
			close(fd);
			pr_err("%s: the chain of parent images is longer than %d: a loop?", cur, CHAIN_MAX_DEPTH);
			return -ELOOP;
		}
		if (asprintf(&pdir, "%s/parent", cur) < 0) {
			close(fd);
			return -ENOMEM;
		}
		free(cur);
		cur = pdir;
		if (own >= 0)
			close(own);
		dirfd = own = fd;
		ret = manifest_check(dirfd, cur, cur, pages ? 0 : MANIFEST_NO_RAW);
	}
	return ret;
}

int pagemap_check(const char *dir, pid_t pid, PagemapEntry *const *pm, size_t n, int64_t pages_size)
{
	uint64_t end = 0, bytes = 0;
	const char *sep = dir ? "/" : "";

	dir = dir ?: "";
	for (size_t i = 0; i < n; i++) {
		const PagemapEntry *e = pm[i];
		uint64_t len = (uint64_t)e->nr_pages * PAGE_SIZE;

		if ((e->flags & ~PE_KNOWN) || ((e->flags & PE_PRESENT) && e->flags != PE_PRESENT)) {
			pr_err("%s%spagemap-%d.img: entry %zu (%#lx) has flags %#x, which this cryo does not know", dir,
			       sep, pid, i, (unsigned long)e->vaddr, e->flags);
			return -EINVAL;
		}
		if (!e->nr_pages || e->vaddr % PAGE_SIZE || e->vaddr >= VADDR_END || len > VADDR_END - e->vaddr) {
			pr_err("%s%spagemap-%d.img: entry %zu (%#lx, %u pages) is not a range of user pages", dir, sep,
			       pid, i, (unsigned long)e->vaddr, e->nr_pages);
			return -EINVAL;
		}
		if (e->vaddr < end) {
			pr_err("%s%spagemap-%d.img: entry %zu (%#lx) is out of order or overlaps the one before", dir,
			       sep, pid, i, (unsigned long)e->vaddr);
			return -EINVAL;
		}
		if ((e->flags & PE_PRESENT) && !e->has_crc32c) {
			pr_err("%s%spagemap-%d.img: entry %zu (%#lx) has no checksum for its bytes", dir, sep, pid, i,
			       (unsigned long)e->vaddr);
			return -EINVAL;
		}
		end = e->vaddr + len;
		if (e->flags & PE_PRESENT)
			bytes += len;	/* no overflow: the ranges lie apart below VADDR_END */
	}
	if (pages_size >= 0 && (uint64_t)pages_size != IMG_PAGES_HDR_LEN + bytes) {
		pr_err("%s%spages-%d.img is %s: %lu bytes of pages, its pagemap lists %lu", dir, sep, pid,
		       (uint64_t)pages_size < IMG_PAGES_HDR_LEN + bytes ? "truncated" : "longer than its pagemap says",
		       (unsigned long)(pages_size - MIN((uint64_t)pages_size, IMG_PAGES_HDR_LEN)), (unsigned long)bytes);
		return -EINVAL;
	}
	return 0;
}

/* the level behind dirfd (NULL in *out if there is none) */
static int open_level(int dirfd, const char *dir, pid_t pid, bool pages, struct chain **out)
{
	_cleanup_free_ char *pdir = NULL;
	int fd, ret;

	*out = NULL;
	if ((ret = open_parent(dirfd, dir, &fd)) || fd < 0)
		return ret;
	if (asprintf(&pdir, "%s/parent", dir) < 0) {
		pdir = NULL;
		close(fd);
		return -ENOMEM;
	}
	return open_dir_level(fd, pdir, pid, pages, out);
}

int chain_open(int dirfd, const char *dir, pid_t pid, bool pages, struct chain **out)
{
	struct chain *head = NULL, **tail = &head;
	int depth = 0, ret;

	*out = NULL;
	for (;;) {
		struct chain *c;

		ret = open_level(dirfd, dir, pid, pages, &c);
		if (ret || !c)
			break;
		*tail = c;
		tail = &c->parent;
		if (++depth > CHAIN_MAX_DEPTH) {
			pr_err("%s: the chain of parent images is longer than %d: a loop?", c->dir,
			       CHAIN_MAX_DEPTH);
			ret = -ELOOP;
			break;
		}
		dirfd = c->dirfd;
		dir = c->dir;
	}
	if (ret) {
		chain_close(head);
		return ret;
	}
	*out = head;
	return 0;
}

int chain_open_self(int dirfd, const char *dir, pid_t pid, struct chain **out)
{
	int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0), ret;

	*out = NULL;
	if (fd < 0)
		return pr_perror("%s: dup", dir);
	if ((ret = open_dir_level(fd, dir, pid, true, out)))
		return ret;
	if ((ret = chain_open((*out)->dirfd, (*out)->dir, pid, true, &(*out)->parent))) {
		chain_close(*out);
		*out = NULL;
	}
	return ret;
}

static uint64_t entry_end(const PagemapEntry *e)
{
	return e->vaddr + (uint64_t)e->nr_pages * PAGE_SIZE;
}

/* the first entry that ends after addr */
static size_t find_entry(const struct chain *c, uint64_t addr)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (entry_end(c->pm[mid]) <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool entry_checked(const struct chain *c, size_t i)
{
	return c->checked[i / 8] & (1u << (i % 8));
}

/* entry i's bytes into dst, checked against its crc */
static int read_entry(struct chain *c, size_t i, uint8_t *dst)
{
	const PagemapEntry *e = c->pm[i];
	size_t len = (size_t)e->nr_pages * PAGE_SIZE;
	int ret = pread_all(c->pages->fd, dst, len, c->off[i]);

	if (ret) {
		pr_err("%s/pages-%d.img: cannot read the chunk at offset %lu: %s", c->dir, c->pid,
		       (unsigned long)c->off[i], ret == -ENODATA ? "the file is truncated" : strerror(-ret));
		return ret;
	}
	if (e->has_crc32c && crc32c(0, dst, len) != e->crc32c) {
		pr_err("%s/pages-%d.img is corrupted: checksum mismatch in the chunk at offset %lu (address %#lx, %u pages)",
		       c->dir, c->pid, (unsigned long)c->off[i], (unsigned long)e->vaddr, e->nr_pages);
		return -EINVAL;
	}
	c->checked[i / 8] |= 1u << (i % 8);
	return 0;
}

/* entry i into the cache, for parts of it */
static int load_entry(struct chain *c, size_t i)
{
	const PagemapEntry *e = c->pm[i];
	size_t len = (size_t)e->nr_pages * PAGE_SIZE;
	int ret;

	if (c->cached == (long)i)
		return 0;
	if (len > c->buf_len) {
		uint8_t *b = realloc(c->buf, len);

		if (!b)
			return -ENOMEM;
		c->buf = b;
		c->buf_len = len;
	}
	c->cached = -1;
	if ((ret = read_entry(c, i, c->buf)))
		return ret;
	c->cached = i;
	return 0;
}

#define PUNCH_BATCH	(2u << 20)

static void keep_images(struct pages_punch *p, int err)
{
	pr_warn("%s/pages-%d.img: cannot free what is read (%s): the images stay whole", p->dir, p->pid,
		strerror(-err));
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

static void punch(struct pages_punch *p, uint64_t start, uint64_t end)
{
	int ret;

	if (p->fd >= 0 && end > start && (ret = punch_hole(p->fd, start, end - start)))
		keep_images(p, ret);
}

void pages_punch_start(struct pages_punch *p, int fd, bool in_order)
{
	p->in_order = in_order;
	p->start = p->end = IMG_PAGES_HDR_LEN;
	if ((p->fd = reopen_rw(fd)) < 0)
		keep_images(p, p->fd);
}

void pages_punch_read(struct pages_punch *p, uint64_t off, uint64_t len)
{
	if (p->fd < 0)
		return;
	if (!p->in_order && off != p->end) {
		punch(p, p->start, p->end);
		p->start = off;
	}
	p->end = off + len;	/* in order, what lies between was passed over: it goes too */
	if (p->end - p->start >= PUNCH_BATCH) {
		punch(p, p->start, p->end);
		p->start = p->end;
	}
}

void pages_punch_end(struct pages_punch *p, bool all)
{
	struct stat st;

	if (p->fd < 0)
		return;
	if (!all)
		punch(p, p->start, p->end);
	else if (fstat(p->fd, &st))
		keep_images(p, -errno);
	else
		punch(p, IMG_PAGES_HDR_LEN, st.st_size);
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}

/* are the directories a and b in the same directory? */
static bool beside(int a, int b)
{
	struct stat sa, sb;

	return !fstatat(a, "..", &sa, 0) && !fstatat(b, "..", &sb, 0) && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

void chain_consume(struct chain *c, int dirfd, const char *dir, bool in_order)
{
	for (; c; c = c->parent) {
		if (!c->pages || c->punch.fd >= 0)
			continue;
		/*
		 * The levels beside the restored directory only (as pre-dumps
		 * and a migration's rounds are): a parent link that leads
		 * elsewhere must not have cryo free another dump's pages.
		 */
		if (!beside(c->dirfd, dirfd)) {
			pr_warn("--auto-dedup: %s is not beside %s: its pages are kept", c->dir, dir);
			continue;
		}
		c->punch.dir = c->dir;
		c->punch.pid = c->pid;
		pages_punch_start(&c->punch, c->pages->fd, in_order);
	}
}

void chain_consume_rest(struct chain *c)
{
	for (; c; c = c->parent)
		pages_punch_end(&c->punch, true);
}

int chain_read(struct chain *c, uint64_t addr, uint64_t len, void *dst)
{
	uint8_t *out = dst;

	if (!c) {
		pr_err("pages at %#lx are said to be in the previous dump, but there is no parent link",
		       (unsigned long)addr);
		return -ENOENT;
	}
	while (len) {
		size_t i = find_entry(c, addr);
		const PagemapEntry *e = i < c->n ? c->pm[i] : NULL;
		uint64_t n;
		int ret;

		if (!e || e->vaddr > addr) {
			pr_err("%s/pagemap-%d.img has no page at %#lx, which the dump after it leaves to it",
			       c->dir, c->pid, (unsigned long)addr);
			return -EINVAL;
		}
		n = MIN(len, entry_end(e) - addr);
		if ((e->flags & PE_PRESENT) && addr == e->vaddr && n == entry_end(e) - addr && !entry_checked(c, i)) {
			/* the whole chunk: straight to where it goes */
			if ((ret = read_entry(c, i, out)))
				return ret;
		} else if ((e->flags & PE_PRESENT) && c->cached != (long)i && entry_checked(c, i)) {
			/* a chunk checked before: only the bytes asked for */
			if ((ret = pread_all(c->pages->fd, out, n, c->off[i] + (addr - e->vaddr)))) {
				pr_err("%s/pages-%d.img: cannot read %lu bytes at offset %lu: %s", c->dir, c->pid,
				       (unsigned long)n, (unsigned long)(c->off[i] + (addr - e->vaddr)),
				       strerror(-ret));
				return ret;
			}
		} else if (e->flags & PE_PRESENT) {
			if ((ret = load_entry(c, i)))
				return ret;
			memcpy(out, c->buf + (addr - e->vaddr), n);
		}
		if (e->flags & PE_PRESENT) {
			pages_punch_read(&c->punch, c->off[i] + (addr - e->vaddr), n);
		} else if (e->flags & PE_IN_PREV) {
			if ((ret = chain_read(c->parent, addr, n, out)))
				return ret;
		} else {
			pr_err("%s/pagemap-%d.img: the entry at %#lx has no bytes (flags %#x)", c->dir, c->pid,
			       (unsigned long)e->vaddr, e->flags);
			return -EINVAL;
		}
		out += n;
		addr += n;
		len -= n;
	}
	return 0;
}

uint32_t chain_flags_at(const struct chain *c, uint64_t addr, uint64_t *run)
{
	size_t i = c ? find_entry(c, addr) : 0;
	const PagemapEntry *e = c && i < c->n ? c->pm[i] : NULL;

	if (!e || e->vaddr > addr) {
		*run = e ? e->vaddr - addr : UINT64_MAX - addr;
		return 0;
	}
	*run = entry_end(e) - addr;
	return e->flags;
}

int chain_split(const struct chain *c, uint64_t start, uint64_t end, chain_emit_fn emit, void *arg)
{
	size_t i = c ? find_entry(c, start) : 0;
	uint64_t cur = start;
	int ret;

	for (; c && i < c->n && cur < end; i++) {
		const PagemapEntry *e = c->pm[i];
		uint64_t s = MAX(e->vaddr, cur), t = MIN(entry_end(e), end);

		if (s >= end)
			break;
		if (!(e->flags & (PE_PRESENT | PE_IN_PREV)))
			continue;
		if (s > cur && (ret = emit(arg, cur, s - cur, false)))
			return ret;
		if ((ret = emit(arg, s, t - s, true)))
			return ret;
		cur = t;
	}
	return cur < end ? emit(arg, cur, end - cur, false) : 0;
}
