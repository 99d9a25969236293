/*
 * Image chains: a dump (or pre-dump) made with --prev-images-dir holds only
 * the pages written since the one before; the others are flagged
 * PE_IN_PREV in its pagemap and read through the `parent` link of its
 * directory, which may lead further back.
 */
#ifndef CRYO_CHAIN_H
#define CRYO_CHAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

struct pages_punch {
	int fd;				/* the image for writing, -1: nothing to free */
	bool in_order;
	uint64_t start, end;		/* read and not freed yet */
	const char *dir;		/* for messages: the image is DIR/pages-PID.img */
	pid_t pid;
};

/* one directory of the chain, seen for one task */
struct chain {
	int dirfd;
	char *dir;			/* its path from the newest dump, for messages */
	pid_t pid;			/* image id: the task's pid in the tree's namespace */
	PagemapEntry **pm;		/* sorted by address */
	size_t n;
	uint64_t *off;			/* pages-N.img offset of each entry with bytes */
	struct img *pages;		/* NULL if the task has no pages there (or not opened) */
	/* the last entry read whole and checked, for the parts asked for next */
	uint8_t *buf;
	size_t buf_len;
	long cached;
	uint8_t *checked;		/* a bit per entry: its checksum was found right */
	struct pages_punch punch;	/* restore --auto-dedup: free what is read */
	struct chain *parent;		/* NULL at the first dump */
};

/*
 * Make `parent` in dirfd point at prev (relative to the images directory
 * images_dir, as CRIU's --prev-images-dir is), after checking that prev
 * holds a complete dump or pre-dump. Returns 0 or -errno (logged).
 */
int chain_link(int dirfd, const char *images_dir, const char *prev);

/*
 * The manifest of the image directory dirfd (named dir; its images named
 * prefix/NAME in messages, or NAME with prefix NULL), then that of every
 * directory up its chain of parent links: the first thing a restore,
 * `cryo show DIR` or a dump building on a previous one does with them.
 * Without pages, raw images are not looked at (a page server may have
 * them). 0 or -errno (logged).
 */
int chain_check(int dirfd, const char *dir, const char *prefix, bool pages);

/*
 * The n entries of pagemap-PID.img (in dir/, or with dir NULL in the
 * images directory) as readers rely on them: flags known, page ranges of
 * user space, in address order without overlap, a checksum for every
 * chunk of bytes; and, with pages_size >= 0, those chunks adding up to
 * the size of pages-PID.img exactly. 0 or -EINVAL (logged).
 */
int pagemap_check(const char *dir, pid_t pid, PagemapEntry *const *pm, size_t n, int64_t pages_size);

/*
 * The chain behind the directory dirfd (named dir) for task pid: NULL in
 * *out if dirfd has no parent. Every level is opened now, before a
 * restored task loses the right to open files. Without pages, only the
 * pagemaps are read (what a dump needs: a page server has the pages).
 */
int chain_open(int dirfd, const char *dir, pid_t pid, bool pages, struct chain **out);
void chain_close(struct chain *c);
/* the same with dirfd itself as the first level (the pages of a dump, for post-copy) */
int chain_open_self(int dirfd, const char *dir, pid_t pid, struct chain **out);

/*
 * Freeing a pages image as it is read (restore --auto-dedup): holes
 * punched a few MiB at a time. A reader in file order (in_order) frees
 * what it passed over too (pages a later dump replaced); another only
 * what it read. Should the file not take it, a warning says the images
 * stay whole, and reading goes on.
 */
void pages_punch_start(struct pages_punch *p, int fd, bool in_order);
void pages_punch_read(struct pages_punch *p, uint64_t off, uint64_t len);
/* done: with all, every page of the image goes (its header stays) */
void pages_punch_end(struct pages_punch *p, bool all);

/*
 * From now on, free in each level's pages image the bytes chain_read
 * reads: for readers that read each byte once (in address order: in_order).
 * Only the levels beside the restored directory dirfd (named dir) are
 * freed: a parent elsewhere is another dump's, kept with a warning.
 */
void chain_consume(struct chain *c, int dirfd, const char *dir, bool in_order);
/* every page is in: free the rest too (the pages later dumps replaced) */
void chain_consume_rest(struct chain *c);

/* the flags of the first level's entry at addr (0: none), and how far they go in *run */
uint32_t chain_flags_at(const struct chain *c, uint64_t addr, uint64_t *run);

/* Read [addr, addr + len) from the chain into dst, checking each chunk (once). */
int chain_read(struct chain *c, uint64_t addr, uint64_t len, void *dst);

/*
 * Cut [start, end) into runs the chain has bytes for (covered true) and
 * runs it has not, calling emit for each, in order.
 */
typedef int (*chain_emit_fn)(void *arg, uint64_t addr, uint64_t len, bool covered);
int chain_split(const struct chain *c, uint64_t start, uint64_t end, chain_emit_fn emit, void *arg);

#endif
