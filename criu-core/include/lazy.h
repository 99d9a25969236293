/*
 * Post-copy (lazy pages). A tree restored with --lazy-pages runs before
 * its private anonymous memory is in: each task's restorer registers those
 * VMAs with a userfaultfd of its own (MISSING mode), and the handler here
 * fills them, the pages a task touches first at once, the rest in the
 * background, until every page is in.
 *
 * The pages come from the images (this dump, its chain, a parent's pages
 * for those shared copy-on-write) or, for those flagged PE_LAZY, from the
 * source host through a `remote` (migrate-agent). Forks, mremap,
 * madvise(DONTNEED), munmap and exits of the tasks meanwhile are followed
 * through userfaultfd's events.
 *
 * cryo restore hands each task's userfaultfd to the handler over a unix
 * socket, with what the handler needs to know of the task (lazy_send).
 */
#ifndef CRYO_LAZY_H
#define CRYO_LAZY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/userfaultfd.h>

/* the userfaultfd features the restorer asks for */
#define LAZY_UFFD_FEATURES	(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | \
				 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP)

struct lazy;

/* what a task tells the handler, with its userfaultfd */
struct lazy_task_desc {
	pid_t vpid, ppid;		/* image ids: the task and its parent (0: none) */
	pid_t host;			/* its pid where the handler runs: killed should its pages be lost */
	uint32_t nr_vmas;		/* its lazy VMAs follow: [start, end) pairs */
};

/* cryo restore: one task's uffd and lazy VMAs (vmas: nr_vmas pairs) onto sock */
int lazy_send(int sock, const struct lazy_task_desc *d, const uint64_t *vmas, int uffd);
/* cryo restore, once the tree runs: the handler may tell a source to let go */
int lazy_commit(int sock);

/* the source of PE_LAZY pages: the handler asks, and is told with lazy_pages_in */
struct lazy_remote {
	void *arg;
	int fd;				/* polled for input: then on_input runs */
	int (*request)(void *arg, pid_t vpid, uint64_t addr, uint64_t len);
	int (*on_input)(void *arg, struct lazy *l);
};

/*
 * The handler: takes the tasks from sock (until the sender closes it),
 * then fills their memory from the images in dirfd (named dir) and the
 * remote, if any; with a remote, only if the restore said its tree runs
 * (lazy_commit), else -ECANCELED. With a remote, a failure kills the
 * tasks: the source keeps the only whole copy. rate_mib: the background fill's limit (0: none).
 * consume: free the images' pages as they are read (restore --auto-dedup),
 * but those of a task the tree has children of (they may share them).
 * Returns 0 once every page is in (or its task gone), or -errno (logged).
 */
int lazy_serve(int dirfd, const char *dir, int sock, const struct lazy_remote *remote, int rate_mib,
	       bool consume);

/* remote pages arrived: copied into every task that still needs them */
int lazy_pages_in(struct lazy *l, pid_t vpid, uint64_t addr, const void *buf, uint64_t len);

/*
 * cryo lazy-pages (the restore side of a lazy dump) waits for a restore's
 * tasks in WORK_DIR/lazy-pages.socket, CRIU's name; WORK_DIR is -W, or -D.
 */
#define LAZY_DAEMON_SOCKET	"lazy-pages.socket"
struct cryo_opts;
/* its path: 0, or -ENAMETOOLONG (logged) */
int lazy_daemon_path(const struct cryo_opts *o, char *buf, size_t len);
/* a restore's connection to it: 0 and *fd (-1 if no daemon waits there), or -errno (logged) */
int lazy_daemon_connect(const struct cryo_opts *o, int *fd);

#endif
