/*
 * A dump as one round of a migration: the driver (migrate/) runs pre-dump
 * rounds and a final dump over one connection to the target, and decides
 * after the final one whether the tree dies (the target runs it) or goes
 * on (the target failed).
 */
#ifndef CRYO_DUMP_ROUND_H
#define CRYO_DUMP_ROUND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cryo.h"
#include "stats.h"

struct ps_client;
struct dump_ctx;

struct dump_round {
	struct ps_client *ps;		/* in: the connection to use (kept open), or NULL */
	uint64_t pages;			/* out: pages the round sent */
	uint64_t t_frozen;		/* out: when the tree was stopped (now_ns) */
	uint64_t frozen_ns;		/* out: pre-dump: how long it stayed stopped */
	struct dump_ctx *held;		/* out: dump_hold: the dumped tree, still stopped */
	pid_t root;			/* out: dump_hold: its root */
	struct dump_stats stats;	/* out: what the round measured (stats-dump) */
};

/* a pre-dump: 0, or -errno (logged); the tree runs on either way */
int pre_dump_round(struct cryo_opts *o, struct dump_round *r);
/*
 * A dump that keeps the tree stopped, its network locked and its TCP
 * connections in repair mode: 0 and r->held, or -errno (logged) with the
 * tree running again as before.
 */
int dump_hold(struct cryo_opts *o, struct dump_round *r);
/* the trackers pre-dumps left in the tree, closed: a migration given up */
int dump_untrack(struct cryo_opts *o, pid_t root);
/*
 * after a dump_hold with lazy_pages (post-copy): each run of pages left in
 * the stopped tree (PE_LAZY), with the task's pid here and in the images
 */
typedef int (*dump_lazy_fn)(void *arg, pid_t pid, pid_t vpid, uint64_t addr, uint64_t len);
int dump_lazy_runs(const struct dump_round *r, dump_lazy_fn fn, void *arg);
/* after dump_hold: kill the tree, or let it go on as if never dumped */
int dump_release(struct dump_round *r, bool kill);

#endif
