/*
 * pidfd: of a process (or, PIDFD_THREAD, a thread) of the tree. It is
 * opened again in the task that holds it, once the tree exists.
 */
#define LOG_PREFIX "files-pidfd: "
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "compat.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool pidfd_match(const struct fd_parms *p)
{
	return fd_is_anon(p, "[pidfd]");
}

static int pidfd_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	const char *pid = fdinfo_field(p->fdinfo, "Pid:");
	PidfdEntry *e = arena_new(&ctx->arena, PidfdEntry);
	bool in_tree = false;
	pid_t target;

	if (!e)
		return -ENOMEM;
	if (!pid) {
		pr_err("pid %d fd %d: its fdinfo lacks the pidfd's pid", p->pid, p->fd);
		return -EINVAL;
	}
	target = atoi(pid);
	for (size_t i = 0; i < ctx->nr_tasks && !in_tree; i++)
		for (int k = 0; k < ctx->tasks[i]->nr_tids && !in_tree; k++)
			in_tree = ctx->tasks[i]->tids[k] == target && !ctx->tasks[i]->zombie;
	if (!in_tree) {
		if (target <= 0)
			pr_err("pid %d fd %d: a pidfd of a process that has exited: not supported", p->pid, p->fd);
		else
			pr_err("pid %d fd %d: a pidfd of pid %d, outside the dump", p->pid, p->fd, target);
		return -ENOTSUP;
	}
	pidfd_entry__init(e);
	e->flags = p->flags;
	e->pid = target;
	fe->pidfd = e;
	return 0;
}

static bool pidfd_needs_tree(const FileEntry *fe)
{
	return true;
}

static int pidfd_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const PidfdEntry *e = fe->pidfd;
	int fd;

	if (!e) {
		pr_err("files.img: entry %u is a pidfd without its details", fe->id);
		return -EINVAL;
	}
	fd = sys_pidfd_open(e->pid, e->flags & (O_NONBLOCK | PIDFD_THREAD));
	if (fd < 0)
		return pr_perror("pid %d fd %d: cannot open a pidfd of pid %d", pid, fdnum, e->pid);
	return fd;
}

const struct fd_kind_ops pidfd_fd_ops = {
	.kind = FD_KIND__PIDFD,
	.name = "pidfd",
	.match = pidfd_match,
	.dump = pidfd_dump,
	.needs_tree = pidfd_needs_tree,
	.open = pidfd_open,
};
