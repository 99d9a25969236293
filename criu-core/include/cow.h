/* Pages shared copy-on-write between a child and its parent (cow.c). */
#ifndef CRYO_COW_H
#define CRYO_COW_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

struct dump_ctx;
struct dump_task;
struct rst_task;
struct rst_vma;

/* dump: the parent's address space, to compare page frames with */
struct cow_src {
	int pagemap_fd;			/* -1: no parent in the dump */
	pid_t pid;
	const MmEntry *mm;
};

int cow_src_open(struct dump_ctx *ctx, const struct dump_task *t, struct cow_src *src);
void cow_src_close(struct cow_src *src);
bool cow_candidate(const struct cow_src *src, const VmaEntry *v);
/* cut [start, end) into runs of pages shared with the parent or not */
typedef int (*cow_emit_fn)(void *arg, uint64_t addr, uint64_t len, bool shared);
int cow_split(const struct cow_src *src, int pagemap_fd, pid_t pid, uint64_t start, uint64_t end,
	      cow_emit_fn emit, void *arg);

/* restore: move the parent's premapped copy of v to dst if v has PE_PARENT pages (1), or not (0) */
int cow_inherit(struct rst_task *t, const VmaEntry *v, unsigned long dst, uint32_t prot, size_t *pi);
int cow_drop_others(const struct rst_task *t, const struct rst_vma *rv);
void cow_drop_parent_premap(const struct rst_task *t);

#endif
