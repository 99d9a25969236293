/*
 * What a dump and a restore measure, written as CRIU's stats-dump and
 * stats-restore in the work directory (images/stats.proto), shown by
 * --display-stats and `cryo show`.
 */
#ifndef CRYO_STATS_H
#define CRYO_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "cryo.h"
#include "stats.pb-c.h"

#define STATS_DUMP_FILE		"stats-dump"
#define STATS_RESTORE_FILE	"stats-restore"

/* a dump or pre-dump round; times from now_ns(), in ns */
struct dump_stats {
	uint64_t t_freeze;		/* freezing began */
	uint64_t t_frozen;		/* every task stopped (0: not yet) */
	uint64_t t_released;		/* let go (0: still stopped) */
	uint64_t memdump_ns;		/* taking the pages out, writing them included */
	uint64_t memwrite_ns;		/* writing them */
	uint64_t pages_scanned;
	uint64_t pages_skipped_parent;
	uint64_t pages_written;
	uint64_t pages_lazy;
};

struct restore_stats {
	uint64_t t_start;		/* the restore began */
	uint64_t forking_ns;		/* creating the tree's tasks */
	uint64_t pages_restored;	/* filled from the images (the tasks add theirs) */
	uint64_t pages_skipped_cow;	/* inherited from a parent instead */
};

/*
 * stats-dump (stats-restore) in the work directory (-W, else the images
 * directory), replacing what is there, and on stdout too with
 * --display-stats: 0 or -errno (logged). A restore's frozen or restore
 * time runs until the call.
 */
int stats_write_dump(const struct cryo_opts *o, const struct dump_stats *s);
int stats_write_restore(const struct cryo_opts *o, const struct restore_stats *s);
/* is the file at dirfd/name a stats file (by its magic)? 1, 0, or -errno (logged) */
int stats_identify(int dirfd, const char *name);
/* a stats file read and checked (as images are): 0 and *out (stats_entry__free_unpacked), or -errno (logged) */
int stats_read(int dirfd, const char *name, StatsEntry **out);

#endif
