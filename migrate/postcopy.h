/*
 * Post-copy, the source's side: a tree dumped with its private anonymous
 * memory left in it (PE_LAZY), stopped, and that memory sent to the host
 * that restored it, as it runs there.
 */
#ifndef CRYO_POSTCOPY_H
#define CRYO_POSTCOPY_H

#include <stdint.h>

#include "cryo.h"

struct ps_client;
struct dump_round;

struct postcopy_stat {
	uint64_t pushed, asked;		/* bytes sent in order, and first because a task touched them */
	uint64_t ns;			/* from the first page to the restore side's word that all are in */
	uint64_t wire;			/* bytes on the wire, frames included */
};

/*
 * Push every page left in the stopped tree r->held over ps, in order, and
 * first of all those the restore side asks for (its tasks wait on them),
 * until it says every page is in. rate_mib limits the push (0: none).
 * 0, or -errno (logged): the tree is still here, stopped, either way.
 */
int postcopy_serve(struct ps_client *ps, const struct dump_round *r, int rate_mib, struct postcopy_stat *st);

/*
 * cryo dump --lazy-pages --address A --port P (CRIU's lazy dump; runc
 * checkpoint --lazy-pages --page-server A:P): dump the tree with its memory
 * left in it, serve that memory on A:P to the restore side's cryo
 * lazy-pages, and kill the tree once every page is there. The tree runs on
 * if anything fails before. 0, or -errno (logged).
 */
int dump_lazily(struct cryo_opts *o);

#endif
