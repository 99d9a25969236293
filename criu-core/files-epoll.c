/*
 * epoll: every registered target, with its events and data. fdinfo gives
 * each target by the fd number it was added under; kcmp(KCMP_EPOLL_TFD)
 * tells which of the dumped files it is (the number may since have been
 * closed or reused). On restore, each task holding the epoll adds its
 * targets once its fds are installed, under their old numbers (lent to
 * the target for the call if they now hold something else), so that a
 * later EPOLL_CTL_MOD or DEL by number finds them. A target may be an
 * epoll itself.
 */
#define LOG_PREFIX "files-epoll: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "compat.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool epoll_match(const struct fd_parms *p)
{
	return fd_is_anon(p, "[eventpoll]");
}

static int epoll_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	EpollEntry *e = arena_new(&ctx->arena, EpollEntry);

	if (!e)
		return -ENOMEM;
	epoll_entry__init(e);
	e->flags = p->flags;
	for (const char *l = fdinfo_field(p->fdinfo, "tfd:"); l; l = fdinfo_field(l, "tfd:")) {
		EpollTarget *t = arena_new(&ctx->arena, EpollTarget);
		unsigned long long data, ino;
		unsigned tfd, events;

		if (!t)
			return -ENOMEM;
		if (sscanf(l, " %u events: %x data: %llx pos:%*d ino:%llx", &tfd, &events, &data, &ino) != 4) {
			pr_err("pid %d fd %d: cannot parse an epoll target in its fdinfo", p->pid, p->fd);
			return -EINVAL;
		}
		epoll_target__init(t);
		t->tfd = tfd;
		t->events = events;
		t->data = data;
		t->has_ino = true;
		t->ino = ino;
		e->targets = arena_grow(&ctx->arena, e->targets, e->n_targets, sizeof(*e->targets));
		if (!e->targets)
			return -ENOMEM;
		e->targets[e->n_targets++] = t;
	}
	fe->epoll = e;
	return 0;
}

/* the file id of target k of epoll file i, among every dumped file */
static int find_target(struct dump_ctx *ctx, size_t i, size_t k)
{
	const EpollEntry *e = ctx->file_entries[i]->epoll;
	struct kcmp_epoll_slot slot = { ctx->files[i].local_fd, e->targets[k]->tfd, 0 };

	/* the nth registration under one number is that number's nth target */
	for (size_t j = 0; j < k; j++)
		slot.toff += e->targets[j]->tfd == e->targets[k]->tfd;
	for (size_t j = 0; j < ctx->nr_files; j++)
		if (ctx->files[j].ino == e->targets[k]->ino &&
		    !sys_kcmp(getpid(), getpid(), KCMP_EPOLL_TFD, ctx->files[j].local_fd, (unsigned long)&slot))
			return ctx->files[j].id;
	return 0;
}

static int epoll_dump_done(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const EpollEntry *e = ctx->file_entries[i]->epoll;

		for (size_t k = 0; e && k < e->n_targets; k++) {
			e->targets[k]->id = find_target(ctx, i, k);
			if (!e->targets[k]->id) {
				pr_err("epoll (file %u): its target fd %u (inode %lu) is open in no task of the dump",
				       ctx->file_entries[i]->id, e->targets[k]->tfd, e->targets[k]->ino);
				return -ENOTSUP;
			}
		}
	}
	return 0;
}

static int epoll_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	int fd;

	if (!fe->epoll) {
		pr_err("files.img: entry %u is an epoll without its details", fe->id);
		return -EINVAL;
	}
	fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		return pr_perror("pid %d fd %d: epoll_create1", pid, fdnum);
	if (fcntl(fd, F_SETFL, fe->epoll->flags & O_NONBLOCK)) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot set the epoll's flags", pid, fdnum);
	}
	return fd;
}

/* in the task: epfd gets target t under number t->tfd, whatever that number holds now */
static int add_target(struct restore_ctx *ctx, pid_t pid, int epfd, const EpollTarget *t)
{
	struct epoll_event ev = { .events = t->events, .data.u64 = t->data };
	int target = files_get_fd(ctx, t->id), held = -1, fdflags = -1, ret;
	bool lent = false;

	if (target < 0) {
		pr_err("pid %d: epoll target %u is file %u, which is not open", pid, t->tfd, t->id);
		return -EINVAL;
	}
	if (sys_kcmp(getpid(), getpid(), KCMP_FILE, t->tfd, target)) {
		fdflags = fcntl(t->tfd, F_GETFD);
		if (fdflags >= 0 && (held = fcntl(t->tfd, F_DUPFD_CLOEXEC, ctx->files_top)) < 0)
			return pr_perror("pid %d: cannot set fd %u aside", pid, t->tfd);
		if (dup2(target, t->tfd) < 0)
			return pr_perror("pid %d: cannot lend fd %u to an epoll target", pid, t->tfd);
		lent = true;
	}
	ret = epoll_ctl(epfd, EPOLL_CTL_ADD, t->tfd, &ev);
	/* a task sharing the epoll may have added it already */
	if (ret && errno == EEXIST)
		ret = 0;
	else if (ret)
		ret = pr_perror("pid %d: cannot add fd %u to its epoll (events %#x)", pid, t->tfd, t->events);
	if (held >= 0) {
		if (dup3(held, t->tfd, fdflags & FD_CLOEXEC ? O_CLOEXEC : 0) < 0)
			ret = pr_perror("pid %d: cannot put fd %u back", pid, t->tfd);
		close(held);
	} else if (lent) {
		close(t->tfd);	/* the number was free */
	}
	return ret;
}

static int epoll_task_done(struct restore_ctx *ctx, struct rst_task *t)
{
	for (size_t i = 0; i < t->nr_fds; i++) {
		const FileEntry *fe = files_find(ctx, t->fds[i]->id);
		int ret;

		if (!fe || fe->kind != FD_KIND__EPOLL)
			continue;
		for (size_t k = 0; k < fe->epoll->n_targets; k++)
			if ((ret = add_target(ctx, t->pid, t->fds[i]->fd, fe->epoll->targets[k])))
				return ret;
	}
	return 0;
}

const struct fd_kind_ops epoll_fd_ops = {
	.kind = FD_KIND__EPOLL,
	.name = "epoll",
	.match = epoll_match,
	.dump = epoll_dump,
	.dump_done = epoll_dump_done,
	.open = epoll_open,
	.task_done = epoll_task_done,
};
