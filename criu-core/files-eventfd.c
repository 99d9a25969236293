/*
 * eventfd: its counter and whether it counts as a semaphore, from fdinfo;
 * a fresh eventfd gets the counter back by a write.
 */
#define LOG_PREFIX "files-eventfd: "
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool eventfd_match(const struct fd_parms *p)
{
	return fd_is_anon(p, "[eventfd]");
}

static int eventfd_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	const char *count = fdinfo_field(p->fdinfo, "eventfd-count:");
	const char *sem = fdinfo_field(p->fdinfo, "eventfd-semaphore:");
	EventfdEntry *e = arena_new(&ctx->arena, EventfdEntry);

	if (!e)
		return -ENOMEM;
	if (!count || !sem) {
		pr_err("pid %d fd %d: its fdinfo lacks the eventfd counter or mode", p->pid, p->fd);
		return -EINVAL;
	}
	eventfd_entry__init(e);
	e->flags = p->flags;
	e->count = strtoull(count, NULL, 16);
	e->semaphore = atoi(sem);
	fe->eventfd = e;
	return 0;
}

static int eventfd_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const EventfdEntry *e = fe->eventfd;
	int fd;

	if (!e) {
		pr_err("files.img: entry %u is an eventfd without its details", fe->id);
		return -EINVAL;
	}
	fd = eventfd(0, EFD_CLOEXEC | (e->flags & O_NONBLOCK) | (e->semaphore ? EFD_SEMAPHORE : 0));
	if (fd < 0)
		return pr_perror("pid %d fd %d: eventfd", pid, fdnum);
	if (e->count && write(fd, &e->count, sizeof(e->count)) != sizeof(e->count)) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot set the eventfd counter to %lu", pid, fdnum, e->count);
	}
	return fd;
}

const struct fd_kind_ops eventfd_fd_ops = {
	.kind = FD_KIND__EVENTFD,
	.name = "eventfd",
	.match = eventfd_match,
	.dump = eventfd_dump,
	.open = eventfd_open,
};
