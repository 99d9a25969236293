/*
 * Private pages a child still shares copy-on-write with its parent.
 *
 * After fork, parent and child map the same physical pages until one of
 * them writes. Dumping them twice would restore them twice: a tree of N
 * children of a parent with a big heap would need N times the memory.
 *
 * Dump: for an anonymous private VMA of a child that lies inside one of
 * its parent's, the two pagemaps are read side by side; a page mapped in
 * both at the same address by the same page frame is the parent's, and
 * the child's pagemap image lists it with PE_PARENT instead of its bytes.
 *
 * Restore: the parent premaps and fills its memory before it forks its
 * children, so each child is born with the parent's premapped VMAs. A child
 * VMA with PE_PARENT pages takes its part of the parent's premapped VMA
 * with mremap (the pages stay shared), writes its own pages over it
 * (copy-on-write breaks only there) and drops the parent's pages it did
 * not have. What is left of the parent's premap is unmapped.
 */
#define LOG_PREFIX "cow: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "compat.h"
#include "cow.h"
#include "dump.h"
#include "log.h"
#include "mem-flags.h"
#include "restore.h"

#define PM_PRESENT	(1ULL << 63)
#define PM_SWAP		(1ULL << 62)
#define PM_PFN_MASK	((1ULL << 55) - 1)
#define BATCH		512

/* ------------------------------------------------------------------ dump */

int cow_src_open(struct dump_ctx *ctx, const struct dump_task *t, struct cow_src *src)
{
	char path[64];

	src->pagemap_fd = -1;
	src->mm = NULL;
	for (size_t i = 0; i < ctx->nr_tasks && t->ppid; i++) {
		const struct dump_task *p = ctx->tasks[i];

		if (p->pid == t->ppid && !p->zombie && p->mm) {
			src->mm = p->mm;
			src->pid = p->pid;
		}
	}
	if (!src->mm)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", src->pid);
	src->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (src->pagemap_fd < 0)
		return pr_perror("pid %d: cannot open its parent's %s", t->pid, path);
	return 0;
}

void cow_src_close(struct cow_src *src)
{
	if (src->pagemap_fd >= 0)
		close(src->pagemap_fd);
	src->pagemap_fd = -1;
}

/* a VMA whose pages may be the parent's: anonymous, private, inside one of the parent's alike */
bool cow_candidate(const struct cow_src *src, const VmaEntry *v)
{
	if (src->pagemap_fd < 0 || v->kind != VMA_KIND__ANON_PRIVATE)
		return false;
	for (size_t i = 0; i < src->mm->n_vmas; i++) {
		const VmaEntry *p = src->mm->vmas[i];

		if (p->start <= v->start && v->end <= p->end)
			return p->kind == VMA_KIND__ANON_PRIVATE && p->flags == v->flags;
	}
	return false;
}

static int read_pagemap(int fd, pid_t pid, uint64_t addr, size_t n, uint64_t *out)
{
	ssize_t len = pread(fd, out, n * sizeof(*out), addr / PAGE_SIZE * sizeof(*out));

	if (len != (ssize_t)(n * sizeof(*out))) {
		if (len >= 0)
			errno = EIO;
		return pr_perror("pid %d: cannot read the pagemap at %#lx", pid, addr);
	}
	return 0;
}

static bool same_frame(uint64_t a, uint64_t b)
{
	return (a & PM_PRESENT) && (b & PM_PRESENT) && !(a & PM_SWAP) && (a & PM_PFN_MASK) &&
	       (a & PM_PFN_MASK) == (b & PM_PFN_MASK);
}

int cow_split(const struct cow_src *src, int pagemap_fd, pid_t pid, uint64_t start, uint64_t end,
	      cow_emit_fn emit, void *arg)
{
	uint64_t mine[BATCH], theirs[BATCH];
	uint64_t run = start;
	bool run_shared = false;
	int ret;

	for (uint64_t addr = start; addr < end;) {
		size_t n = MIN((end - addr) / PAGE_SIZE, BATCH);

		if ((ret = read_pagemap(pagemap_fd, pid, addr, n, mine)) ||
		    (ret = read_pagemap(src->pagemap_fd, src->pid, addr, n, theirs)))
			return ret;
		for (size_t i = 0; i < n; i++, addr += PAGE_SIZE) {
			bool shared = same_frame(mine[i], theirs[i]);

			if (shared == run_shared)
				continue;
			if (addr > run && (ret = emit(arg, run, addr - run, run_shared)))
				return ret;
			run = addr;
			run_shared = shared;
		}
	}
	return end > run ? emit(arg, run, end - run, run_shared) : 0;
}

/* --------------------------------------------------------------- restore */

/* any PE_PARENT entry inside v? (entries are sorted; *pi walks along) */
static bool has_parent_pages(const struct rst_task *t, const VmaEntry *v, size_t *pi)
{
	size_t i;

	while (*pi < t->nr_pagemap && t->pagemap[*pi]->vaddr < v->start)
		(*pi)++;
	for (i = *pi; i < t->nr_pagemap && t->pagemap[i]->vaddr < v->end; i++)
		if (t->pagemap[i]->flags & PE_PARENT)
			return true;
	return false;
}

int cow_inherit(struct rst_task *t, const VmaEntry *v, unsigned long dst, uint32_t prot, size_t *pi)
{
	const struct rst_task *p = t->parent;
	uint64_t size = v->end - v->start;

	if (!has_parent_pages(t, v, pi))
		return 0;
	for (size_t i = 0; p && i < p->nr_premapped; i++) {
		const struct rst_vma *pv = &p->premapped[i];
		void *src, *got;

		if (pv->start > v->start || v->end > pv->end)
			continue;
		src = (void *)(pv->premap + (v->start - pv->start));
		got = mremap(src, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)dst);
		if (got == MAP_FAILED)
			return pr_perror("pid %d: VMA %lx-%lx: cannot take the pages it shares with its parent",
					 t->pid, v->start, v->end);
		if (mprotect(got, size, prot))
			return pr_perror("pid %d: VMA %lx-%lx: mprotect", t->pid, v->start, v->end);
		return 1;
	}
	pr_err("pagemap-%d.img: VMA %lx-%lx shares pages with the parent, which has no such VMA",
	       t->pid, v->start, v->end);
	return -EINVAL;
}

/* drop the parent's pages in [start, end) of an inherited VMA that the task did not have */
int cow_drop_others(const struct rst_task *t, const struct rst_vma *rv)
{
	uint64_t cur = rv->start;

	for (size_t i = 0; i <= t->nr_pagemap; i++) {
		const PagemapEntry *pe = i < t->nr_pagemap ? t->pagemap[i] : NULL;
		uint64_t next = pe ? pe->vaddr : rv->end;

		if (pe && (pe->vaddr + (uint64_t)pe->nr_pages * PAGE_SIZE <= rv->start))
			continue;
		next = MIN(MAX(next, rv->start), rv->end);
		if (next > cur && madvise((void *)(rv->premap + (cur - rv->start)), next - cur, MADV_DONTNEED))
			return pr_perror("pid %d: dropping pages %lx-%lx it did not have", t->pid, cur, next);
		if (!pe || pe->vaddr >= rv->end)
			break;
		cur = MAX(cur, pe->vaddr + (uint64_t)pe->nr_pages * PAGE_SIZE);
	}
	return 0;
}

/* the child has taken what it shares: the rest of its parent's premap goes */
void cow_drop_parent_premap(const struct rst_task *t)
{
	const struct rst_task *p = t->parent;

	if (!p || !p->premap_len)
		return;
	munmap((void *)p->area_start, p->area_len);
	munmap((void *)p->premap_start, p->premap_len);
}
