/*
 * Memory: the VMAs of a task and the pages in them.
 *
 * Dump: VMAs come from /proc/PID/smaps; the pages worth saving are found
 * with the PAGEMAP_SCAN ioctl (present or swapped, not the zero page, not
 * page cache of a file) and handed out by the parasite with vmsplice, one
 * pagemap entry (and one crc32c) per chunk of at most CHUNK_MAX bytes.
 *
 * Restore: every VMA is mapped and filled inside one reserved range (the
 * premap) that overlaps none of the target's addresses; the restorer then
 * moves each one into place with mremap.
 */
#define LOG_PREFIX "mem: "
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "chain.h"
#include "compat.h"
#include "track.h"
#include "cow.h"
#include "crc32c.h"
#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "manifest.h"
#include "mem-flags.h"
#include "pagesrv.h"
#include "restore.h"
#include "validate.h"

#define CHUNK_MAX	(2UL << 20)
#define HUGE_ALIGN	(2UL << 20)

/* ---------------------------------------------------------------- dump */

static const struct {
	const char code[3];
	uint32_t bit;
} vmflag_madv[] = {
	{ "hg", VMA_MADV_HUGEPAGE }, { "nh", VMA_MADV_NOHUGEPAGE },
	{ "dc", VMA_MADV_DONTFORK }, { "wf", VMA_MADV_WIPEONFORK },
	{ "dd", VMA_MADV_DONTDUMP }, { "mg", VMA_MADV_MERGEABLE },
	{ "rr", VMA_MADV_RANDOM },   { "sr", VMA_MADV_SEQUENTIAL },
	{ "lo", VMA_MADV_LOCKED },   { "lf", VMA_MADV_LOCKONFAULT },
};

struct vma_collect {
	struct dump_ctx *ctx;
	struct dump_task *t;
	VmaEntry **vmas;
	size_t nr;
};

/* Sort one smaps entry into a VmaEntry kind, or explain why cryo can't. */
static int classify_vma(pid_t pid, uint32_t ns_flags, const struct proc_vma *v, VmaEntry *e, struct arena *a)
{
	const char *path = v->path;

	e->flags = v->shared ? MAP_SHARED : MAP_PRIVATE;
	if (path[0] == '[') {
		static const struct { const char *name; VmaKind kind; } special[] = {
			{ "[vdso]", VMA_KIND__VDSO }, { "[vvar]", VMA_KIND__VVAR },
			{ "[vvar_vclock]", VMA_KIND__VVAR_VCLOCK }, { "[vsyscall]", VMA_KIND__VSYSCALL },
		};

		for (size_t i = 0; i < ARRAY_SIZE(special); i++)
			if (!strcmp(path, special[i].name)) {
				e->kind = special[i].kind;
				e->name = arena_strdup(a, path);
				return 0;
			}
		if (!strcmp(path, "[heap]") || !strcmp(path, "[stack]") ||
		    !strncmp(path, "[anon:", 6) || !strncmp(path, "[anon_shmem:", 12)) {
			e->kind = v->shared ? VMA_KIND__ANON_SHARED : VMA_KIND__ANON_PRIVATE;
			e->flags |= MAP_ANONYMOUS;
			e->name = arena_strdup(a, path);
			return 0;
		}
		pr_err("pid %d: VMA %lx-%lx is a special mapping %s that cryo does not support",
		       pid, v->start, v->end, path);
		return -ENOTSUP;
	}
	if (vmflag_has(v, "io") || vmflag_has(v, "pf")) {
		pr_err("pid %d: VMA %lx-%lx (%s) maps device memory (VM_IO/VM_PFNMAP), which cannot be dumped",
		       pid, v->start, v->end, path[0] ? path : "anonymous");
		return -ENOTSUP;
	}
	if (!path[0]) {
		e->kind = v->shared ? VMA_KIND__ANON_SHARED : VMA_KIND__ANON_PRIVATE;
		e->flags |= MAP_ANONYMOUS;
		return 0;
	}
	if (v->shared && !strcmp(path, "/dev/zero (deleted)")) {
		/* MAP_SHARED | MAP_ANONYMOUS is backed by an unlinked shmem file */
		e->kind = VMA_KIND__ANON_SHARED;
		e->flags |= MAP_ANONYMOUS;
		return 0;
	}
	if (!strncmp(path, "/SYSV", 5)) {
		/* SysV shared memory: its inode number is the segment's id; ipc.img has the contents */
		if (!(ns_flags & CLONE_NEWIPC)) {
			pr_err("pid %d: VMA %lx-%lx maps SysV shared memory %lu of cryo's own IPC namespace: dump a container that has its own",
			       pid, v->start, v->end, (unsigned long)v->ino);
			return -ENOTSUP;
		}
		e->kind = VMA_KIND__FILE_SHARED;
		e->has_sysv_shmid = true;
		e->sysv_shmid = v->ino;
		return 0;
	}
	if (memfd_handles(path)) {
		/* a memfd or deleted file, dumped with its contents: see collect_one_vma */
		e->kind = v->shared ? VMA_KIND__FILE_SHARED : VMA_KIND__FILE_PRIVATE;
		e->path = arena_strdup(a, path);
		return 0;
	}
	if (!strncmp(path, "socket:", 7)) {
		/* only packet sockets can be mapped: their rings */
		pr_err("pid %d: VMA %lx-%lx maps %s, a packet socket's ring (PACKET_RX_RING/TX_RING): not supported yet",
		       pid, v->start, v->end, path);
		return -ENOTSUP;
	}
	if (path[0] != '/') {
		pr_err("pid %d: VMA %lx-%lx: cannot understand mapping '%s'", pid, v->start, v->end, path);
		return -ENOTSUP;
	}
	e->kind = v->shared ? VMA_KIND__FILE_SHARED : VMA_KIND__FILE_PRIVATE;
	e->path = arena_strdup(a, path);
	return 0;
}

/* The mapped file itself, through map_files: its identity, size and type. */
static int stat_mapped_file(pid_t pid, const struct proc_vma *v, VmaEntry *e)
{
	char mf[96];
	struct stat st;

	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%lx-%lx", pid, v->start, v->end);
	if (stat(mf, &st))
		return pr_perror("pid %d: VMA %lx-%lx (%s): cannot stat the mapped file", pid,
				 v->start, v->end, v->path);
	if (S_ISCHR(st.st_mode)) {
		if (major(st.st_rdev) == 1 && minor(st.st_rdev) == 5 && !v->shared) {
			/* a private /dev/zero mapping is plain anonymous memory */
			e->kind = VMA_KIND__ANON_PRIVATE;
			e->flags |= MAP_ANONYMOUS;
			e->path = NULL;
			return 0;
		}
		pr_err("pid %d: VMA %lx-%lx maps character device %s: not supported", pid,
		       v->start, v->end, v->path);
		return -ENOTSUP;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("pid %d: VMA %lx-%lx maps %s, which is not a regular file", pid,
		       v->start, v->end, v->path);
		return -ENOTSUP;
	}
	e->has_dev = e->has_ino = e->has_file_size = e->has_fdflags = true;
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->file_size = st.st_size;
	/* a shared mapping may be made writable later only if the file was opened so */
	e->fdflags = (v->shared && vmflag_has(v, "mw")) ? O_RDWR : O_RDONLY;
	return 0;
}

static int collect_one_vma(const struct proc_vma *v, void *arg)
{
	struct vma_collect *c = arg;
	struct arena *a = &c->ctx->arena;
	VmaEntry *e = arena_new(a, VmaEntry);
	VmaEntry **nv;
	int ret;

	if (!e)
		return -ENOMEM;
	vma_entry__init(e);
	e->start = v->start;
	e->end = v->end;
	e->pgoff = v->pgoff;
	e->prot = v->prot;
	ret = classify_vma(c->t->pid, c->ctx->ns_flags, v, e, a);
	if (ret)
		return ret;
	if (e->path) {
		ret = stat_mapped_file(c->t->pid, v, e);
		if (ret)
			return ret;
	}
	/* shared memory is dumped whole by the final dump, not by pre-dumps */
	if (((e->path && memfd_handles(e->path)) || e->kind == VMA_KIND__ANON_SHARED) && !c->ctx->pre_dump) {
		ret = memfd_dump_vma(c->ctx, c->t->pid, e, &e->memfd_id);
		if (ret)
			return ret;
		e->has_memfd_id = true;
		e->has_file_size = false;	/* the memfd comes back with its own size */
	}
	if (vmflag_has(v, "gd"))
		e->flags |= MAP_GROWSDOWN;
	if (vmflag_has(v, "nr"))
		e->flags |= MAP_NORESERVE;
	for (size_t i = 0; i < ARRAY_SIZE(vmflag_madv); i++)
		if (vmflag_has(v, vmflag_madv[i].code))
			e->madv |= vmflag_madv[i].bit;
	e->has_madv = e->madv != 0;
	if (!c->t->exec_addr && (v->prot & PROT_EXEC) && !v->shared && e->kind != VMA_KIND__VSYSCALL)
		c->t->exec_addr = v->start;

	nv = xrealloc_array(c->vmas, c->nr + 1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	c->vmas = nv;
	c->vmas[c->nr++] = e;
	return 0;
}

static int add_ref_run(struct dump_task *t, const VmaEntry *v, uint64_t addr, uint64_t len, uint32_t flags);

/* post-copy: a page of t's own rseq areas, which the restore needs at once */
static bool rseq_page(const struct dump_task *t, uint64_t page)
{
	for (size_t j = 0; t->core && j < t->core->n_threads; j++) {
		const RseqEntry *r = t->core->threads[j]->rseq;

		if (r && page + PAGE_SIZE > r->ptr && page < r->ptr + r->len)
			return true;
	}
	return false;
}

static int add_chunk(struct dump_task *t, uint64_t addr, uint64_t len, const VmaEntry *v)
{
	if (t->lazy && mem_vma_lazy(v)) {
		/* left in the task for post-copy, but for the rseq pages */
		uint64_t end = addr + len;

		while (addr < end) {
			bool eager = rseq_page(t, addr);
			uint64_t e = addr + PAGE_SIZE;
			int ret;

			while (e < end && rseq_page(t, e) == eager)
				e += PAGE_SIZE;
			if (!eager)
				ret = add_ref_run(t, v, addr, e - addr, PE_LAZY);
			else {
				t->lazy = false;
				ret = add_chunk(t, addr, e - addr, v);
				t->lazy = true;
			}
			if (ret)
				return ret;
			addr = e;
		}
		return 0;
	}
	while (len) {
		uint64_t n = MIN(len, CHUNK_MAX);
		struct parasite_chunk *c;

		if (t->nr_chunks % 1024 == 0) {
			c = xrealloc_array(t->chunks, t->nr_chunks + 1024, sizeof(*c));
			if (!c)
				return -ENOMEM;
			t->chunks = c;
		}
		c = &t->chunks[t->nr_chunks++];
		memset(c, 0, sizeof(*c));
		c->addr = addr;
		c->len = n;
		c->prot = v->prot;
		if (!(v->prot & PROT_READ))
			c->flags |= PARASITE_CHUNK_UNREADABLE;
		addr += n;
		len -= n;
	}
	return 0;
}

/* a run of pages left out, merged with the one before inside the same VMA */
static int add_ref_run(struct dump_task *t, const VmaEntry *v, uint64_t addr, uint64_t len, uint32_t flags)
{
	struct page_run *r;

	if (t->nr_ref_runs) {
		r = &t->ref_runs[t->nr_ref_runs - 1];
		if (r->addr + r->len == addr && r->flags == flags && r->addr >= v->start) {
			r->len += len;
			return 0;
		}
	}
	if (t->nr_ref_runs % 256 == 0) {
		r = xrealloc_array(t->ref_runs, t->nr_ref_runs + 256, sizeof(*r));
		if (!r)
			return -ENOMEM;
		t->ref_runs = r;
	}
	t->ref_runs[t->nr_ref_runs++] = (struct page_run){ addr, len, flags };
	return 0;
}

struct split_arg {
	struct dump_task *t;
	const VmaEntry *v;
	const struct cow_src *src;
	int pagemap_fd;
};

static int emit_cow(void *arg, uint64_t addr, uint64_t len, bool shared)
{
	struct split_arg *a = arg;

	return shared ? add_ref_run(a->t, a->v, addr, len, PE_PARENT) : add_chunk(a->t, addr, len, a->v);
}

/* pages to dump: unless shared copy-on-write with the parent */
static int emit_dump(void *arg, uint64_t addr, uint64_t len)
{
	struct split_arg *a = arg;

	if (cow_candidate(a->src, a->v))
		return cow_split(a->src, a->pagemap_fd, a->t->pid, addr, addr + len, emit_cow, a);
	return add_chunk(a->t, addr, len, a->v);
}

/* pages unchanged since the previous dump: left to it where it has them */
static int emit_clean(void *arg, uint64_t addr, uint64_t len, bool covered)
{
	struct split_arg *a = arg;

	return covered ? add_ref_run(a->t, a->v, addr, len, PE_IN_PREV) : emit_dump(arg, addr, len);
}

/*
 * Which pages of a VMA hold data: present or swapped, and not the shared
 * zero page. In private mappings page-cache pages (PAGE_IS_FILE) are the
 * file's, not the task's, and are skipped too. Pages still shared with the
 * parent are left to it (cow.c). With a tracker the same scan tells which
 * pages were written since the last round and write-protects them all
 * again: the others are left to the previous dump, where it has them.
 */
static int scan_vma_pages(int pagemap_fd, struct dump_task *t, const VmaEntry *v,
			  const struct cow_src *src)
{
	struct split_arg sa = { t, v, src, pagemap_fd };
	struct page_region regs[512];
	uint64_t skip = PAGE_IS_PFNZERO;
	struct pm_scan_arg arg;
	bool tracked = t->track && !track_register(t->track, t->pid, v->start, v->end);

	if (v->kind == VMA_KIND__ANON_PRIVATE || v->kind == VMA_KIND__FILE_PRIVATE)
		skip |= PAGE_IS_FILE;
	for (uint64_t cur = v->start; cur < v->end;) {
		long n;

		memset(&arg, 0, sizeof(arg));
		arg.size = sizeof(arg);
		arg.start = cur;
		arg.end = v->end;
		arg.vec = (uint64_t)regs;
		arg.vec_len = ARRAY_SIZE(regs);
		arg.category_inverted = skip;
		arg.category_mask = skip;
		arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		if (tracked) {
			arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
			arg.return_mask = PAGE_IS_WRITTEN;
		}
		n = ioctl(pagemap_fd, PAGEMAP_SCAN, &arg);
		if (n < 0)
			return pr_perror("pid %d: PAGEMAP_SCAN%s of %lx-%lx", t->pid,
					 tracked ? " (write-protecting)" : "", cur, v->end);
		for (long i = 0; i < n; i++) {
			uint64_t s = regs[i].start, e = regs[i].end;
			bool clean = tracked && !t->track->fresh && !(regs[i].categories & PAGE_IS_WRITTEN);
			int ret = clean ? chain_split(t->prev, s, e, emit_clean, &sa) : emit_dump(&sa, s, e - s);

			if (ret)
				return ret;
		}
		if (arg.walk_end <= cur)
			break;
		cur = arg.walk_end;
	}
	return 0;
}

/* shared anonymous memory is dumped once for all its VMAs, as a memfd is */
static bool vma_has_pages(const VmaEntry *v)
{
	return v->kind == VMA_KIND__ANON_PRIVATE || v->kind == VMA_KIND__FILE_PRIVATE;
}

int mem_collect(struct dump_ctx *ctx, struct dump_task *t)
{
	struct vma_collect c = { .ctx = ctx, .t = t };
	_cleanup_close_ int pagemap_fd = -1;
	struct cow_src src;
	_cleanup_free_ char *auxv = NULL;
	MmEntry *mm;
	char path[64];
	size_t len;
	int ret;

	mm = arena_new(&ctx->arena, MmEntry);
	if (!mm)
		return -ENOMEM;
	mm_entry__init(mm);
	t->mm = mm;
	t->lazy = ctx->lazy;
	mm->start_code = t->stat.start_code;
	mm->end_code = t->stat.end_code;
	mm->start_data = t->stat.start_data;
	mm->end_data = t->stat.end_data;
	mm->start_stack = t->stat.start_stack;
	mm->start_brk = t->stat.start_brk;
	mm->brk = t->stat.start_brk;	/* the parasite reads the current brk */
	mm->arg_start = t->stat.arg_start;
	mm->arg_end = t->stat.arg_end;
	mm->env_start = t->stat.env_start;
	mm->env_end = t->stat.env_end;

	ret = proc_read(t->pid, "auxv", &auxv, &len);
	if (ret)
		return ret;
	mm->n_auxv = len / sizeof(uint64_t);
	mm->auxv = arena_array(&ctx->arena, uint64_t, mm->n_auxv);
	if (!mm->auxv)
		return -ENOMEM;
	memcpy(mm->auxv, auxv, mm->n_auxv * sizeof(uint64_t));
	{
		_cleanup_free_ char *exe = NULL;

		ret = proc_readlink(t->pid, "exe", &exe);
		if (ret)
			return ret;
		if (ends_with(exe, " (deleted)")) {
			pr_err("pid %d: its executable %s was deleted: not supported yet", t->pid, exe);
			return -ENOTSUP;
		}
		mm->exe_path = arena_strdup(&ctx->arena, exe);
	}

	ret = proc_for_each_vma(t->pid, collect_one_vma, &c);
	if (!ret) {
		mm->vmas = arena_array(&ctx->arena, VmaEntry *, c.nr);
		if (mm->vmas) {
			memcpy(mm->vmas, c.vmas, c.nr * sizeof(*c.vmas));
			mm->n_vmas = c.nr;
		} else {
			ret = -ENOMEM;
		}
	}
	free(c.vmas);
	if (ret)
		return ret;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", t->pid);
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0)
		return pr_perror("pid %d: cannot open %s", t->pid, path);
	/* a pre-dump keeps no page of a child's back for its parent: they run on meanwhile */
	src.pagemap_fd = -1;
	ret = ctx->pre_dump ? 0 : cow_src_open(ctx, t, &src);
	for (size_t i = 0; i < mm->n_vmas && !ret; i++)
		if (vma_has_pages(mm->vmas[i])) {
			ret = scan_vma_pages(pagemap_fd, t, mm->vmas[i], &src);
			ctx->stats.pages_scanned += (mm->vmas[i]->end - mm->vmas[i]->start) / PAGE_SIZE;
		}
	cow_src_close(&src);
	if (ret)
		return ret;
	pr_info("pid %d: %zu VMAs, %zu page chunks to dump, %zu runs left to the parent or the previous dump",
		t->pid, mm->n_vmas, t->nr_chunks, t->nr_ref_runs);
	return 0;
}

/* the pagemap: the chunks dumped (their checksums filled in) and the runs left out, by address */
static int write_pagemap(struct dump_ctx *ctx, struct dump_task *t)
{
	struct img *pagemap = img_create(ctx->dirfd, IMG_PAGEMAP, t->vpid);
	size_t ci = 0, ri = 0;
	int ret = 0;

	if (!pagemap)
		return -EIO;
	while ((ci < t->nr_chunks || ri < t->nr_ref_runs) && !ret) {
		PagemapEntry pe = PAGEMAP_ENTRY__INIT;

		if (ri == t->nr_ref_runs || (ci < t->nr_chunks && t->chunks[ci].addr < t->ref_runs[ri].addr)) {
			const struct parasite_chunk *c = &t->chunks[ci++];

			pe.vaddr = c->addr;
			pe.nr_pages = c->len / PAGE_SIZE;
			pe.flags = PE_PRESENT;
			pe.has_crc32c = true;
			pe.crc32c = c->crc;
		} else {
			const struct page_run *r = &t->ref_runs[ri++];

			pe.vaddr = r->addr;
			pe.nr_pages = r->len / PAGE_SIZE;
			pe.flags = r->flags;
		}
		ret = img_write(pagemap, &pe.base);
	}
	return img_close(pagemap) ?: ret;
}

static void log_pages(const struct dump_task *t, uint64_t bytes, uint64_t t0)
{
	uint64_t kept = 0, lazy = 0;

	for (size_t i = 0; i < t->nr_ref_runs; i++) {
		if (t->ref_runs[i].flags & PE_IN_PREV)
			kept += t->ref_runs[i].len;
		if (t->ref_runs[i].flags & PE_LAZY)
			lazy += t->ref_runs[i].len;
	}
	pr_info("pid %d: dumped %lu MiB of memory in %lu ms (%lu MiB unchanged since the previous dump, %lu MiB left for post-copy)",
		t->pid, bytes >> 20, (now_ns() - t0) / 1000000, kept >> 20, lazy >> 20);
}

/* the pages image: a local file, or a stream to the page server */
struct pages_out {
	struct img *img;
	struct ps_client *ps;
	char name[96];
};

static int pages_open(struct dump_ctx *ctx, const struct dump_task *t, struct pages_out *o)
{
	uint8_t hdr[IMG_PAGES_HDR_LEN];
	int ret;

	o->ps = ctx->ps;
	if (!o->ps) {
		o->img = img_create(ctx->dirfd, IMG_PAGES, t->vpid);
		if (!o->img)
			return -EIO;
		snprintf(o->name, sizeof(o->name), "%s", o->img->name);
		return 0;
	}
	snprintf(o->name, sizeof(o->name), "%s/pages-%d.img", ctx->ps_dir, t->vpid);
	if ((ret = ps_file(o->ps, o->name)))
		return ret;
	return ps_write(o->ps, hdr, img_header(IMG_PAGES, hdr));
}

static int pages_close(struct pages_out *o)
{
	return o->ps ? ps_close_file(o->ps) : img_close(o->img);
}

static int ps_sink_begin(void *arg, uint32_t len)
{
	return ps_chunk_begin(arg, len);
}

static ssize_t ps_sink_move(void *arg, int pipe_fd, size_t max)
{
	return ps_chunk_move(arg, pipe_fd, max);
}

static int ps_sink_end(void *arg, uint32_t crc)
{
	return ps_chunk_end(arg, crc);
}

/* a sink that times the moves of another, into the dump's memory write time */
struct timed_sink {
	struct page_sink inner;
	uint64_t *ns;
};

static int timed_begin(void *arg, uint32_t len)
{
	struct timed_sink *ts = arg;
	uint64_t t0 = now_ns();
	int ret = ts->inner.begin ? ts->inner.begin(ts->inner.arg, len) : 0;

	*ts->ns += now_ns() - t0;
	return ret;
}

static ssize_t timed_move(void *arg, int pipe_fd, size_t max)
{
	struct timed_sink *ts = arg;
	uint64_t t0 = now_ns();
	ssize_t n = ts->inner.move(ts->inner.arg, pipe_fd, max);
	int err = errno;

	*ts->ns += now_ns() - t0;
	errno = err;
	return n;
}

static int timed_end(void *arg, uint32_t crc)
{
	struct timed_sink *ts = arg;
	uint64_t t0 = now_ns();
	int ret = ts->inner.end ? ts->inner.end(ts->inner.arg, crc) : 0;

	*ts->ns += now_ns() - t0;
	return ret;
}

int mem_dump_pages(struct dump_ctx *ctx, struct dump_task *t)
{
	uint64_t bytes = 0, t0 = now_ns();
	struct timed_sink ts = { .ns = &ctx->stats.memwrite_ns };
	struct page_sink sink;
	struct pages_out o;
	int ret = pages_open(ctx, t, &o);

	if (ret)
		return ret;
	if (o.ps)
		ts.inner = (struct page_sink){ ps_sink_begin, ps_sink_move, ps_sink_end, o.ps, o.name };
	else
		ts.inner = page_sink_fd(&o.img->fd, o.name);
	sink = (struct page_sink){ timed_begin, timed_move, timed_end, &ts, o.name };
	for (size_t done = 0; done < t->nr_chunks && !ret;) {
		unsigned n = MIN(t->nr_chunks - done, PARASITE_MAX_CHUNKS);

		ret = parasite_dump_pages(t->parasite, t->chunks + done, n, &sink);
		for (unsigned i = 0; i < n; i++)
			bytes += t->chunks[done + i].len;
		done += n;
	}
	if (!ret)
		ret = pages_close(&o);
	else if (!o.ps)
		img_close(o.img);
	if (!ret && o.ps)
		ret = ps_flush(o.ps);
	if (!ret && o.ps)
		t->pages_sent = IMG_PAGES_HDR_LEN + bytes;
	ctx->stats.memdump_ns += now_ns() - t0;
	if (!ret)
		ret = write_pagemap(ctx, t);
	if (!ret)
		log_pages(t, bytes, t0);
	return ret;
}

/*
 * One chunk of a running task, through /proc/PID/mem (which reads
 * PROT_NONE pages too). A page unmapped meanwhile reads as zeros: the
 * task changed it after the scan, so the next round dumps it again.
 */
static int read_running(int memfd, struct dump_task *t, struct parasite_chunk *c, uint8_t *buf)
{
	ssize_t n = pread(memfd, buf, c->len, c->addr);

	if (n == (ssize_t)c->len)
		return 0;
	for (uint64_t off = 0; off < c->len; off += PAGE_SIZE) {
		n = pread(memfd, buf + off, PAGE_SIZE, c->addr + off);
		if (n == (ssize_t)PAGE_SIZE)
			continue;
		if (n < 0 && errno != EIO && errno != EFAULT)
			return pr_perror("pid %d: cannot read its memory at %#lx", t->pid,
					 (unsigned long)(c->addr + off));
		memset(buf + off, 0, PAGE_SIZE);
	}
	return 0;
}

/*
 * Chunks [i, *end) read into buf at once with process_vm_readv (scattered
 * pages: one syscall for many); should that fall short (a PROT_NONE page,
 * one unmapped meanwhile), each through /proc/PID/mem.
 */
#define READ_BATCH	512

static int read_batch(int memfd, struct dump_task *t, size_t i, size_t *end, uint8_t *buf)
{
	struct iovec local, remote[READ_BATCH];
	size_t n = 0, bytes = 0, j;
	ssize_t got;

	for (j = i; j < t->nr_chunks && n < READ_BATCH && bytes + t->chunks[j].len <= CHUNK_MAX; j++, n++) {
		remote[n].iov_base = (void *)(uintptr_t)t->chunks[j].addr;
		remote[n].iov_len = t->chunks[j].len;
		bytes += t->chunks[j].len;
	}
	*end = j;
	local.iov_base = buf;
	local.iov_len = bytes;
	got = process_vm_readv(t->pid, &local, 1, remote, n, 0);
	if (got == (ssize_t)bytes)
		return 0;
	for (j = i; j < *end; buf += t->chunks[j].len, j++) {
		int ret = read_running(memfd, t, &t->chunks[j], buf);

		if (ret)
			return ret;
	}
	return 0;
}

int mem_predump_pages(struct dump_ctx *ctx, struct dump_task *t)
{
	_cleanup_free_ uint8_t *buf = malloc(CHUNK_MAX);
	_cleanup_close_ int memfd = -1;
	uint64_t bytes = 0, t0 = now_ns();
	struct pages_out o;
	char path[64];
	size_t end;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/mem", t->pid);
	if (!buf)
		return -ENOMEM;
	memfd = open(path, O_RDONLY | O_CLOEXEC);
	if (memfd < 0 && (errno == ENOENT || errno == ESRCH)) {
		/* it exited since the scan: nothing of it to copy, nor to restore */
		pr_info("pid %d exited during the pre-dump; its pages are left out", t->pid);
		t->nr_chunks = 0;
		return 0;
	}
	if (memfd < 0)
		return pr_perror("pid %d: cannot open %s", t->pid, path);
	if ((ret = pages_open(ctx, t, &o)))
		return ret;
	for (size_t i = 0; i < t->nr_chunks && !ret; i = end) {
		uint8_t *p = buf;

		if ((ret = read_batch(memfd, t, i, &end, buf)))
			break;
		for (size_t j = i; j < end && !ret; p += t->chunks[j].len, j++) {
			struct parasite_chunk *c = &t->chunks[j];
			uint64_t tw;

			c->crc = crc32c(0, p, c->len);
			tw = now_ns();
			if (o.ps)
				ret = ps_write(o.ps, p, c->len);
			else if ((ret = write_all(o.img->fd, p, c->len)))
				pr_err("cannot write %s: %s", o.name, strerror(-ret));
			ctx->stats.memwrite_ns += now_ns() - tw;
			bytes += c->len;
		}
	}
	if (!ret)
		ret = pages_close(&o);
	else if (!o.ps)
		img_close(o.img);
	if (!ret && o.ps)
		t->pages_sent = IMG_PAGES_HDR_LEN + bytes;
	ctx->stats.memdump_ns += now_ns() - t0;
	if (!ret)
		ret = write_pagemap(ctx, t);
	if (!ret)
		log_pages(t, bytes, t0);
	return ret;
}

int mem_write_manifest(struct dump_ctx *ctx)
{
	_cleanup_free_ struct manifest_extra *sent = NULL;
	size_t n = 0;

	if (ctx->ps && !(sent = calloc(ctx->nr_tasks + 1, sizeof(*sent))))
		return -ENOMEM;
	for (size_t i = 0; ctx->ps && i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];

		if (!t->pages_sent)
			continue;
		img_name(IMG_PAGES, t->vpid, sent[n].name, sizeof(sent[n].name));
		sent[n++].size = t->pages_sent;
	}
	return manifest_write(ctx->dirfd, sent, n, ctx->ps ? MANIFEST_STREAMED_PAGES : 0);
}

/* ------------------------------------------------------------- restore */

static bool vma_restorable(const VmaEntry *v)
{
	return v->kind == VMA_KIND__ANON_PRIVATE || v->kind == VMA_KIND__ANON_SHARED ||
	       v->kind == VMA_KIND__FILE_PRIVATE || v->kind == VMA_KIND__FILE_SHARED;
}

static uint64_t vma_size(const VmaEntry *v)
{
	return v->end - v->start;
}

size_t mem_premap_size(const struct rst_task *t)
{
	size_t total = HUGE_ALIGN;

	for (size_t i = 0; i < t->mm->n_vmas; i++) {
		const VmaEntry *v = t->mm->vmas[i];

		if (!vma_restorable(v))
			continue;
		total += vma_size(v);
		if (vma_size(v) >= HUGE_ALIGN)
			total += HUGE_ALIGN;
	}
	return total;
}

size_t mem_args_size(const struct rst_task *t)
{
	size_t n = t->mm->n_vmas * sizeof(struct rst_vma) + t->mm->n_auxv * sizeof(uint64_t) + 64;

	for (size_t i = 0; i < t->mm->n_vmas; i++)
		if (t->mm->vmas[i]->name)
			n += strlen(t->mm->vmas[i]->name) + 16;
	return n;
}

static int open_mapped_file(struct restore_ctx *ctx, const struct rst_task *t, const VmaEntry *v)
{
	char what[96];
	struct stat st;
	int fd;

	if (v->has_memfd_id) {
		fd = memfd_get(ctx, v->memfd_id);
		if (fd < 0)
			return fd;
		fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			return pr_perror("pid %d: VMA %lx-%lx: dup of the memfd", t->pid, v->start, v->end);
		return fd;
	}
	snprintf(what, sizeof(what), "pid %d: VMA %lx-%lx: mapped file", t->pid, v->start, v->end);
	fd = files_open_path(v->path, ((v->has_fdflags ? v->fdflags : O_RDONLY) & O_ACCMODE) | O_CLOEXEC, what);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st)) {
		close(fd);
		return pr_perror("pid %d: cannot stat mapped file %s", t->pid, v->path);
	}
	if (v->has_file_size && (uint64_t)st.st_size != v->file_size) {
		pr_err("pid %d: mapped file %s changed size since the dump (%lu bytes, now %ld)",
		       t->pid, v->path, v->file_size, (long)st.st_size);
		close(fd);
		return -ESTALE;
	}
	return fd;
}

/* map one VMA at addr, writable if it is to be filled */
static int premap_vma(struct restore_ctx *ctx, const struct rst_task *t, const VmaEntry *v,
		      unsigned long addr, bool fill)
{
	int prot = v->prot | (fill ? PROT_READ | PROT_WRITE : 0);
	int flags = (v->flags & (MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_NORESERVE)) |
		    MAP_FIXED;
	int fd = -1;
	void *p;

	if (v->has_sysv_shmid) {
		/* the segment exists again (ipc.c): attach it where the VMA goes */
		p = shmat(v->sysv_shmid, (void *)addr, SHM_REMAP | ((v->prot & PROT_WRITE) ? 0 : SHM_RDONLY) |
			  ((v->prot & PROT_EXEC) ? SHM_EXEC : 0));
		if (p == (void *)-1)
			return pr_perror("pid %d: VMA %lx-%lx: cannot attach SysV shared memory %u", t->pid,
					 v->start, v->end, v->sysv_shmid);
		return 0;
	}
	if (v->kind == VMA_KIND__FILE_PRIVATE || v->kind == VMA_KIND__FILE_SHARED || v->has_memfd_id) {
		fd = open_mapped_file(ctx, t, v);
		if (fd < 0)
			return fd;
		flags &= ~MAP_ANONYMOUS;
	}
	p = mmap((void *)addr, vma_size(v), prot, flags, fd, fd >= 0 ? v->pgoff : 0);
	if (fd >= 0)
		close(fd);
	if (p == MAP_FAILED)
		return pr_perror("pid %d: cannot map VMA %lx-%lx (%s)", t->pid, v->start, v->end,
				 v->path ? v->path : v->name ? v->name : "anonymous");
	return 0;
}

/*
 * Post-copy: which VMAs get their pages later, through a userfaultfd.
 * Private anonymous memory only (userfaultfd cannot take private file
 * mappings), and not mlock()ed memory, which the restorer faults in.
 */
bool mem_vma_lazy(const VmaEntry *v)
{
	return v->kind == VMA_KIND__ANON_PRIVATE && !(v->madv & VMA_MADV_LOCKED);
}

/*
 * A page filled at once even in a lazy VMA: one holding a thread's rseq
 * area (of any task: a child may have inherited the page). The kernel
 * writes there as soon as the restorer registers it, before the lazy-pages
 * handler has the task's userfaultfd.
 */
bool mem_page_eager(const struct rst_task *const *tasks, size_t nr, uint64_t page)
{
	for (size_t i = 0; i < nr; i++) {
		const CoreEntry *c = tasks[i]->core;

		for (size_t j = 0; c && j < c->n_threads; j++) {
			const RseqEntry *r = c->threads[j]->rseq;

			if (r && r->ptr && page + PAGE_SIZE > r->ptr && page < r->ptr + r->len)
				return true;
		}
	}
	return false;
}

/* the eager pages of a lazy entry's bytes [addr, addr + len), from the pages image at off or the chain */
static int fill_eager(struct restore_ctx *ctx, struct rst_task *t, int pages_fd, const PagemapEntry *pe,
		      uint64_t off, char *dst)
{
	for (uint64_t a = pe->vaddr; a < pe->vaddr + (uint64_t)pe->nr_pages * PAGE_SIZE; a += PAGE_SIZE) {
		char *d = dst + (a - pe->vaddr);
		int ret;

		if (!mem_page_eager((const struct rst_task *const *)ctx->tasks, ctx->nr_tasks, a))
			continue;
		if (pe->flags & PE_LAZY) {
			pr_err("pagemap-%d.img: the rseq area at %#lx is left to post-copy: the dump should have sent it",
			       t->pid, (unsigned long)a);
			return -EINVAL;
		}
		ret = (pe->flags & PE_IN_PREV) ? chain_read(t->chain, a, PAGE_SIZE, d)
					       : pread_all(pages_fd, d, PAGE_SIZE, off + (a - pe->vaddr));
		if (ret)
			return pr_err("pages-%d.img: cannot read the page at %#lx: %s", t->pid, (unsigned long)a,
				      strerror(-ret)), ret;
		t->pages_restored++;
	}
	return 0;
}

/*
 * A run of pages of earlier dumps, a piece at a time: with --auto-dedup,
 * the memory each piece frees in the images is the next piece's.
 */
static int fill_from_chain(struct chain *c, uint64_t addr, uint64_t len, char *dst)
{
	for (uint64_t done = 0; done < len;) {
		uint64_t n = MIN(len - done, CHUNK_MAX);
		int ret;

		madvise(dst + done, n, MADV_POPULATE_WRITE);
		if ((ret = chain_read(c, addr + done, n, dst + done)))
			return ret;
		done += n;
	}
	return 0;
}

/* Read the pages image into the premapped VMAs, checking every chunk. */
static int fill_pages(struct restore_ctx *ctx, struct rst_task *t, struct rst_vma *rv, size_t nr)
{
	struct img *pages = img_open_pre(&ctx->pre_imgs, ctx->dirfd, IMG_PAGES, t->pid, false);
	uint64_t off = IMG_PAGES_HDR_LEN, prev = 0, lazy = 0, skipped = 0, t0 = now_ns();
	size_t vi = 0;
	struct pages_punch punch = { .fd = -1, .dir = ctx->opts->images_dir, .pid = t->pid };
	struct stat st;
	int ret = 0;

	if (!pages)
		return -EIO;
	if (fstat(pages->fd, &st)) {
		img_close(pages);
		return pr_perror("pages-%d.img: cannot stat it", t->pid);
	}
	/* every read below stays inside the file, and no byte of it is left unaccounted for */
	if ((ret = pagemap_check(NULL, t->pid, t->pagemap, t->nr_pagemap, st.st_size))) {
		img_close(pages);
		return ret;
	}
	/* --auto-dedup: free what is read (as the chain does, see restore.c) */
	if (ctx->opts->auto_dedup && !ctx->opts->lazy_pages)
		pages_punch_start(&punch, pages->fd, true);
	for (size_t i = 0; i < t->nr_pagemap; i++) {
		const PagemapEntry *pe = t->pagemap[i];
		uint64_t len = (uint64_t)pe->nr_pages * PAGE_SIZE;
		char *dst;

		if (!(pe->flags & (PE_PRESENT | PE_IN_PREV | PE_LAZY))) {
			if (pe->flags & PE_PARENT)
				t->pages_inherited += pe->nr_pages;
			continue;
		}
		/* entries and VMAs are both sorted by address */
		while (vi < nr && rv[vi].end <= pe->vaddr)
			vi++;
		if (vi == nr || pe->vaddr < rv[vi].start || pe->vaddr + len > rv[vi].end) {
			pr_err("pagemap-%d.img: entry %zu (%#lx, %u pages) lies outside the dumped VMAs",
			       t->pid, i, pe->vaddr, pe->nr_pages);
			ret = -EINVAL;
			break;
		}
		dst = (char *)rv[vi].premap + (pe->vaddr - rv[vi].start);
		if (rv[vi].lazy) {
			/* post-copy: the handler brings it, but for the rseq pages */
			if ((ret = fill_eager(ctx, t, pages->fd, pe, off, dst)))
				break;
			if (pe->flags & PE_PRESENT) {
				off += len;
				skipped += len;
			}
			lazy += len;
			continue;
		}
		if (pe->flags & PE_LAZY) {
			pr_err("pagemap-%d.img: the pages at %#lx are still at the source: restore with --lazy-pages (post-copy)",
			       t->pid, (unsigned long)pe->vaddr);
			ret = -EINVAL;
			break;
		}
		if (pe->flags & PE_IN_PREV) {
			ret = fill_from_chain(t->chain, pe->vaddr, len, dst);
			if (ret)
				break;
			prev += len;
			t->pages_restored += pe->nr_pages;
			continue;
		}
		/* fault the chunk in with one call rather than page by page in
		 * read(); it is only a hint, so a failure is harmless */
		madvise(dst, len, MADV_POPULATE_WRITE);
		ret = pread_all(pages->fd, dst, len, off);
		if (ret) {
			if (ret == -ENODATA)
				pr_err("pages-%d.img is truncated: chunk %zu (%#lx) at offset %lu is missing",
				       t->pid, i, pe->vaddr, off);
			else
				pr_err("pages-%d.img: cannot read chunk %zu at offset %lu: %s", t->pid, i,
				       off, strerror(-ret));
			break;
		}
		if (pe->has_crc32c && crc32c(0, dst, len) != pe->crc32c) {
			pr_err("pages-%d.img is corrupted: checksum mismatch in the chunk at offset %lu (address %#lx, %u pages)",
			       t->pid, off, pe->vaddr, pe->nr_pages);
			ret = -EINVAL;
			break;
		}
		pages_punch_read(&punch, off, len);
		off += len;
		t->pages_restored += pe->nr_pages;
	}
	img_close(pages);
	pages_punch_end(&punch, !ret);
	if (!ret)
		chain_consume_rest(t->chain);
	if (!ret)
		pr_info("pid %d: read %lu MiB of pages (%lu MiB from previous dumps) in %lu ms, %lu MiB left to post-copy",
			t->pid, (off - IMG_PAGES_HDR_LEN - skipped + prev) >> 20, prev >> 20,
			(now_ns() - t0) / 1000000, lazy >> 20);
	return ret;
}

static bool vma_filled(const struct rst_task *t, const VmaEntry *v, size_t *pi)
{
	/* is any entry with bytes inside v? (entries sorted; *pi walks along) */
	while (*pi < t->nr_pagemap && t->pagemap[*pi]->vaddr < v->start)
		(*pi)++;
	for (size_t i = *pi; i < t->nr_pagemap && t->pagemap[i]->vaddr < v->end; i++)
		if (t->pagemap[i]->flags & (PE_PRESENT | PE_IN_PREV | PE_LAZY))
			return true;
	return false;
}

uint32_t mem_lazy_vmas(const struct restore_ctx *ctx, const struct rst_task *t, uint64_t **out)
{
	uint64_t *v = xrealloc_array(NULL, 2 * t->mm->n_vmas + 1, sizeof(*v));
	uint32_t n = 0;
	size_t pi = 0;

	*out = v;
	if (!v || !ctx->opts->lazy_pages)
		return 0;
	for (size_t i = 0; i < t->mm->n_vmas; i++) {
		const VmaEntry *e = t->mm->vmas[i];

		/* as mem_premap decides */
		if (!vma_restorable(e) || !vma_filled(t, e, &pi) || !mem_vma_lazy(e))
			continue;
		v[2 * n] = e->start;
		v[2 * n + 1] = e->end;
		n++;
	}
	return n;
}

/* the mm fields PR_SET_MM_MAP sets (exe_fd is filled in by the caller) */
static int prepare_mm_map(const struct rst_task *t, struct rst_area *ra)
{
	struct rst_mm_map *m = &ra->args->mm;
	const MmEntry *mm = t->mm;
	uint64_t *auxv = rst_area_alloc(ra, mm->n_auxv * sizeof(uint64_t));

	if (!auxv)
		return -ENOMEM;
	memcpy(auxv, mm->auxv, mm->n_auxv * sizeof(uint64_t));
	m->start_code = mm->start_code;
	m->end_code = mm->end_code;
	m->start_data = mm->start_data;
	m->end_data = mm->end_data;
	m->start_brk = mm->start_brk;
	m->brk = mm->brk;
	m->start_stack = mm->start_stack;
	m->arg_start = mm->arg_start;
	m->arg_end = mm->arg_end;
	m->env_start = mm->env_start;
	m->env_end = mm->env_end;
	m->auxv = (uint64_t)auxv;
	m->auxv_size = mm->n_auxv * sizeof(uint64_t);
	return 0;
}

int mem_premap(struct restore_ctx *ctx, struct rst_task *t, struct rst_area *ra,
	       unsigned long premap_start)
{
	struct restorer_args *a = ra->args;
	unsigned long cur = ALIGN_UP(premap_start, HUGE_ALIGN);
	_cleanup_free_ bool *inherited = xzalloc(t->mm->n_vmas + 1);
	struct rst_vma *rv;
	size_t nr = 0, pi = 0, ppi = 0;
	int ret;

	rv = rst_area_alloc(ra, t->mm->n_vmas * sizeof(*rv));
	if (!rv || !inherited)
		return -ENOMEM;
	for (size_t i = 0; i < t->mm->n_vmas; i++) {
		const VmaEntry *v = t->mm->vmas[i];
		struct rst_vma *r = &rv[nr];
		bool fill;

		if (!vma_restorable(v))
			continue;
		if (nr && v->start < rv[nr - 1].end) {
			pr_err("mm-%d.img: VMA %lx-%lx overlaps the one before it", t->pid, v->start, v->end);
			return -EINVAL;
		}
		if (vma_size(v) >= HUGE_ALIGN)	/* keep the 2 MiB alignment for THP */
			cur += (v->start - cur) & (HUGE_ALIGN - 1);
		fill = vma_filled(t, v, &pi);
		if (fill && v->kind == VMA_KIND__FILE_SHARED) {
			pr_err("pagemap-%d.img: pages dumped for shared file mapping %lx-%lx", t->pid,
			       v->start, v->end);
			return -EINVAL;
		}
		r->prot = v->prot | (fill ? PROT_READ | PROT_WRITE : 0);	/* fixed below */
		ret = cow_inherit(t, v, cur, r->prot, &ppi);
		if (ret < 0)
			return ret;
		inherited[nr] = ret;
		if (!ret && (ret = premap_vma(ctx, t, v, cur, fill)))
			return ret;
		if (v->madv & (VMA_MADV_HUGEPAGE | VMA_MADV_NOHUGEPAGE))
			madvise((void *)cur, vma_size(v),
				(v->madv & VMA_MADV_HUGEPAGE) ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		r->start = v->start;
		r->end = v->end;
		r->premap = cur;
		r->madv = v->madv;
		r->lazy = ctx->opts->lazy_pages && fill && mem_vma_lazy(v);
		if (v->name && !strncmp(v->name, "[anon:", 6)) {
			size_t len = strlen(v->name) - 7;
			char *name = rst_area_alloc(ra, len + 1);

			if (!name)
				return -ENOMEM;
			memcpy(name, v->name + 6, len);
			r->anon_name = (uint64_t)name;
		}
		cur += vma_size(v);
		nr++;
	}
	a->vmas = (uint64_t)rv;
	a->nr_vmas = nr;
	ret = prepare_mm_map(t, ra);
	if (ret)
		return ret;

	ret = fill_pages(ctx, t, rv, nr);
	for (size_t j = 0; j < nr && !ret; j++)
		if (inherited[j])
			ret = cow_drop_others(t, &rv[j]);
	if (ret)
		return ret;
	/* now the real protections */
	for (size_t i = 0, j = 0; i < t->mm->n_vmas; i++) {
		const VmaEntry *v = t->mm->vmas[i];

		if (!vma_restorable(v))
			continue;
		if (rv[j].prot != v->prot && mprotect((void *)rv[j].premap, vma_size(v), v->prot))
			return pr_perror("pid %d: mprotect of VMA %lx-%lx", t->pid, v->start, v->end);
		rv[j].prot = v->prot;
		j++;
	}
	/* the children forked next inherit all this */
	cow_drop_parent_premap(t);
	t->premapped = rv;
	t->nr_premapped = nr;
	return 0;
}

/* The child's own vdso/vvar, to be moved where the dumped task had its own. */
static const struct {
	const char *name;
	VmaKind kind;
} special_names[] = {
	{ "[vdso]", VMA_KIND__VDSO },
	{ "[vvar]", VMA_KIND__VVAR },
	{ "[vvar_vclock]", VMA_KIND__VVAR_VCLOCK },
};

int mem_prepare_specials(struct rst_task *t, struct restorer_args *a, unsigned long scratch,
			 size_t *scratch_len)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	size_t used = 0;

	if (!f)
		return pr_perror("cannot open /proc/self/maps");
	a->nr_specials = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char *name = strrchr(line, ' ');

		if (!name || sscanf(line, "%lx-%lx", &s, &e) != 2)
			continue;
		name++;
		name[strcspn(name, "\n")] = 0;
		for (size_t k = 0; k < ARRAY_SIZE(special_names); k++) {
			struct rst_special *sp;

			if (strcmp(name, special_names[k].name))
				continue;
			if (a->nr_specials == RESTORER_MAX_SPECIAL) {
				pr_err("too many special mappings in cryo itself");
				return -E2BIG;
			}
			sp = &a->specials[a->nr_specials++];
			sp->cur = s;
			sp->size = e - s;
			sp->dst = 0;
			snprintf(sp->name, sizeof(sp->name), "%s", name);
			used += sp->size;
			for (size_t i = 0; i < t->mm->n_vmas; i++) {
				const VmaEntry *v = t->mm->vmas[i];

				if (v->kind != special_names[k].kind)
					continue;
				if (vma_size(v) != sp->size) {
					pr_err("pid %d: the dumped %s is %lu bytes, this kernel's is %lu: "
					       "restoring across kernels is not supported", t->pid, name,
					       vma_size(v), sp->size);
					return -ENOTSUP;
				}
				sp->dst = v->start;
			}
		}
	}
	/* a dumped special this kernel does not have cannot be recreated */
	for (size_t i = 0; i < t->mm->n_vmas; i++) {
		const VmaEntry *v = t->mm->vmas[i];
		bool found = v->kind == VMA_KIND__VSYSCALL || vma_restorable(v);

		for (uint32_t k = 0; !found && k < a->nr_specials; k++)
			found = a->specials[k].dst == v->start;
		if (!found) {
			pr_err("pid %d: the dump has %s at %lx, which this kernel does not provide",
			       t->pid, v->name ? v->name : "a special mapping", v->start);
			return -ENOTSUP;
		}
	}
	if (used > *scratch_len) {
		pr_err("the vdso/vvar of cryo need %zu bytes of scratch, %zu reserved", used, *scratch_len);
		return -E2BIG;
	}
	a->scratch = scratch;
	*scratch_len = used;
	return 0;
}

int mem_exe_fd(struct restore_ctx *ctx, struct rst_task *t)
{
	char what[64];
	int fd, moved;

	/* PR_SET_MM_MAP wants a real open file, not O_PATH */
	snprintf(what, sizeof(what), "pid %d: its executable", t->pid);
	fd = files_open_path(t->mm->exe_path, O_RDONLY | O_CLOEXEC, what);
	if (fd < 0)
		return fd;
	/* above the files: installing them leaves it alone */
	moved = fd_move_above(fd, ctx->files_top, true);
	if (moved < 0) {
		close(fd);
		return pr_perror("pid %d: cannot move the fd of its executable", t->pid);
	}
	return moved;
}

/* ----------------------------------------------------------- validate */

/*
 * mm-PID.img: the executable's and each mapped file's path, each VMA's
 * name ("[anon:NAME]" given back to prctl), and a mapped file's flags no
 * more than its access mode.
 */
int mem_validate_mm(const MmEntry *mm, const char *where)
{
	int ret = door_abspath(mm->exe_path, DOOR_PATH_MAX, "%s: exe_path", where);

	for (size_t i = 0; !ret && i < mm->n_vmas; i++) {
		const VmaEntry *v = mm->vmas[i];

		ret = (v->path ? door_abspath(v->path, DOOR_PATH_MAX, "%s: vmas[%zu].path", where, i) : 0) ?:
		      (v->name ? door_text(v->name, 256, "%s: vmas[%zu].name", where, i) : 0);
		if (!ret && v->name && !strncmp(v->name, "[anon:", 6) &&
		    (strlen(v->name) < 7 || v->name[strlen(v->name) - 1] != ']'))
			ret = door_refuse(v->name, "an [anon:NAME] without its ']'", "%s: vmas[%zu].name", where, i);
		if (!ret && v->has_fdflags && (v->fdflags & ~O_ACCMODE)) {
			char val[16];

			snprintf(val, sizeof(val), "%#o", v->fdflags);
			ret = door_refuse(val, "a mapped file is opened with its access mode alone", "%s: vmas[%zu].fdflags",
					  where, i);
		}
	}
	return ret;
}

int mem_validate(const struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct rst_task *t = ctx->tasks[i];
		char where[64];

		snprintf(where, sizeof(where), "mm-%d.img record 0", t->pid);
		if (t->mm && mem_validate_mm(t->mm, where))
			return -EINVAL;
	}
	return 0;
}
