/*
 * The fd table: which open file description sits at which number, with
 * which per-fd flag. Descriptions shared between fds (dup, fork) get one id
 * in files.img so that they are opened once and shared again on restore.
 */
#define LOG_PREFIX "files: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "compat.h"
#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"
#include "validate.h"

static const struct fd_kind_ops *const fd_kinds[] = {
	&mq_fd_ops,	/* before reg: a message queue looks like a regular file */
	&reg_fd_ops,	/* it takes O_PATH fds of every kind of file */
	&pty_fd_ops,	/* before tty: a pty of the tree's own */
	&tty_fd_ops,	/* before chr: a terminal is a character device too */
	&chr_fd_ops,
	&pipe_fd_ops,
	&eventfd_fd_ops,
	&signalfd_fd_ops,
	&timerfd_fd_ops,
	&epoll_fd_ops,
	&inotify_fd_ops,
	&pidfd_fd_ops,
	&unix_sk_fd_ops,
	&inet_sk_fd_ops,
	&netlink_sk_fd_ops,
	&packet_sk_fd_ops,
};

static const struct fd_kind_ops *kind_ops(FdKind kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->kind == kind)
			return fd_kinds[i];
	return NULL;
}

bool fd_is_anon(const struct fd_parms *p, const char *what)
{
	return !strncmp(p->link, "anon_inode:", 11) && !strcmp(p->link + 11, what);
}

const char *fdinfo_field(const char *fdinfo, const char *key)
{
	size_t len = strlen(key);

	for (const char *l = fdinfo; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, key, len))
			return l + len;
	return NULL;
}

/* ---------------------------------------------------------------- dump */

/* is there a task (TID: thread) of the tree with this id, or (PGRP) a group? */
static bool owner_in_tree(struct dump_ctx *ctx, int type, pid_t pid)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];

		if (t->zombie || t->gone)
			continue;
		if (type == F_OWNER_PGRP ? t->stat.pgid == pid : t->pid == pid)
			return true;
		for (int k = 0; type == F_OWNER_TID && k < t->nr_tids; k++)
			if (t->tids[k] == pid)
				return true;
	}
	return false;
}

/* O_ASYNC, F_SETOWN and F_SETSIG of the description */
static int dump_fown(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	struct f_owner_ex own;
	FownEntry *fo;
	int sig;

	if (p->flags & O_PATH)
		return 0;	/* no owner, no signal */
	if (fcntl(p->lfd, F_GETOWN_EX, &own) || (sig = fcntl(p->lfd, F_GETSIG)) < 0)
		return pr_perror("pid %d fd %d (%s): cannot read its owner and signal", p->pid, p->fd, p->link);
	if (!(p->flags & O_ASYNC) && !own.pid && !sig)
		return 0;
	if (own.pid && !owner_in_tree(ctx, own.type, own.pid)) {
		pr_err("pid %d fd %d (%s): its owner (F_SETOWN) %s %d is outside the dump", p->pid, p->fd, p->link,
		       own.type == F_OWNER_PGRP ? "process group" : own.type == F_OWNER_TID ? "thread" : "pid",
		       own.pid);
		return -ENOTSUP;
	}
	fo = arena_new(&ctx->arena, FownEntry);
	if (!fo)
		return -ENOMEM;
	fown_entry__init(fo);
	fo->type = own.type;
	fo->pid = own.pid;
	fo->signum = sig;
	fo->async = p->flags & O_ASYNC;
	fe->fown = fo;
	return 0;
}

/*
 * The locks fdinfo shows for fd: flock and OFD locks belong to its open
 * file description (into fe, the first time it is seen), POSIX locks to
 * the task (into e). A lease, or a lock of a process outside the dump
 * that shows here, is refused.
 */
static int dump_locks(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe, FdEntry *e)
{
	for (const char *l = fdinfo_field(p->fdinfo, "lock:"); l; l = fdinfo_field(l, "lock:")) {
		char kind[16], adv[16], mode[16], end[32];
		unsigned long long start;
		LockEntry *lk, ***arr;
		size_t *n;
		int pid;

		if (strstr(l, "->") && strstr(l, "->") < strchr(l, '\n'))
			continue;	/* a waiter, not a holder */
		if (sscanf(l, "%*d: %15s %15s %15s %d %*s %llu %31s", kind, adv, mode, &pid, &start, end) != 6) {
			pr_err("pid %d fd %d (%s): cannot parse a lock line of its fdinfo", p->pid, p->fd, p->link);
			return -EINVAL;
		}
		lk = arena_new(&ctx->arena, LockEntry);
		if (!lk)
			return -ENOMEM;
		lock_entry__init(lk);
		if (!strcmp(kind, "FLOCK") || !strcmp(kind, "OFDLCK")) {
			if (!fe)
				continue;	/* the description's locks are already in */
			lk->kind = kind[0] == 'F' ? LOCK_KIND__FLOCK : LOCK_KIND__OFD;
			arr = &fe->locks, n = &fe->n_locks;
		} else if (!strcmp(kind, "POSIX")) {
			lk->kind = LOCK_KIND__POSIX;
			arr = &e->posix_locks, n = &e->n_posix_locks;
		} else {
			pr_err("pid %d fd %d (%s): holds a %s lock, which cryo does not support", p->pid, p->fd, p->link,
			       kind);
			return -ENOTSUP;
		}
		lk->write = !strcmp(mode, "WRITE");
		lk->start = start;
		lk->len = strcmp(end, "EOF") ? strtoull(end, NULL, 10) - start + 1 : 0;
		*arr = arena_grow(&ctx->arena, *arr, *n, sizeof(**arr));
		if (!*arr)
			return -ENOMEM;
		(*arr)[(*n)++] = lk;
	}
	return 0;
}

/* an id already given to the description behind lfd, or 0 */
static uint32_t find_shared(struct dump_ctx *ctx, const struct fd_parms *p)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		struct dump_file *f = &ctx->files[i];

		if (f->dev != p->st.st_dev || f->ino != p->st.st_ino)
			continue;
		if (sys_kcmp(getpid(), getpid(), KCMP_FILE, f->local_fd, p->lfd) == 0)
			return f->id;
	}
	return 0;
}

int files_add_entry(struct dump_ctx *ctx, FileEntry *fe, int lfd, const struct stat *st)
{
	struct dump_file *nf = xrealloc_array(ctx->files, ctx->nr_files + 1, sizeof(*nf));
	FileEntry **ne;

	if (!nf)
		return -ENOMEM;
	ctx->files = nf;
	ne = xrealloc_array(ctx->file_entries, ctx->nr_files + 1, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	ctx->file_entries = ne;
	fe->id = ctx->nr_files + 1;
	ctx->files[ctx->nr_files] = (struct dump_file){
		.id = fe->id, .local_fd = lfd, .dev = st->st_dev, .ino = st->st_ino,
	};
	ctx->file_entries[ctx->nr_files] = fe;
	ctx->nr_files++;
	return 0;
}

static int add_file(struct dump_ctx *ctx, struct fd_parms *p, FdEntry *e)
{
	const struct fd_kind_ops *ops = NULL;
	FileEntry *fe;
	int ret;

	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds) && !ops; i++)
		if (fd_kinds[i]->match(p))
			ops = fd_kinds[i];
	if (!ops) {
		pr_err("pid %d fd %d: %s is a kind of file cryo does not support yet", p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	fe = arena_new(&ctx->arena, FileEntry);
	if (!fe)
		return -ENOMEM;
	file_entry__init(fe);
	fe->id = ctx->nr_files + 1;
	fe->kind = ops->kind;
	ret = ops->dump(ctx, p, fe);
	if (!ret)
		ret = dump_fown(ctx, p, fe);
	if (!ret)
		ret = dump_locks(ctx, p, fe, e);
	if (ret)
		return ret;

	if ((ret = files_add_entry(ctx, fe, p->lfd, &p->st)))
		return ret;
	p->lfd = -1;	/* kept by ctx->files now */
	e->id = fe->id;
	pr_debug("pid %d fd %d: %s %s is file %u", p->pid, p->fd, ops->name, p->link, fe->id);
	return 0;
}

static int dump_one_fd(struct dump_ctx *ctx, struct dump_task *t, int pidfd, int fd, FdEntry *e)
{
	_cleanup_free_ char *link = NULL, *info = NULL;
	struct fd_parms p = { .pid = t->pid, .fd = fd, .lfd = -1 };
	unsigned flags;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "fd/%d", fd);
	if ((ret = proc_readlink(t->pid, name, &link)))
		return ret;
	p.link = link;
	if ((ret = proc_fdinfo(t->pid, fd, &p.pos, &flags, &info)))
		return ret;
	p.fdinfo = info;
	p.cloexec = flags & O_CLOEXEC;
	p.flags = flags & ~O_CLOEXEC;
	p.lfd = sys_pidfd_getfd(pidfd, fd, 0);
	if (p.lfd < 0)
		return pr_perror("pid %d fd %d (%s): cannot get a reference with pidfd_getfd", t->pid, fd, link);
	if (fstat(p.lfd, &p.st)) {
		ret = pr_perror("pid %d fd %d (%s): fstat", t->pid, fd, link);
		goto out;
	}
	fd_entry__init(e);
	e->fd = fd;
	e->cloexec = p.cloexec;
	e->id = find_shared(ctx, &p);
	if (e->id)
		ret = dump_locks(ctx, &p, NULL, e);
	else
		ret = add_file(ctx, &p, e);
out:
	if (p.lfd >= 0)
		close(p.lfd);
	return ret;
}

int files_collect(struct dump_ctx *ctx, struct dump_task *t)
{
	_cleanup_free_ int *fds = NULL;
	_cleanup_close_ int pidfd = -1;
	int nr, ret;

	ret = proc_list_fds(t->pid, &fds, &nr);
	if (ret)
		return ret;
	pidfd = sys_pidfd_open(t->pid, 0);
	if (pidfd < 0)
		return pr_perror("pid %d: pidfd_open", t->pid);
	t->fds = arena_array(&ctx->arena, FdEntry *, nr);
	if (nr && !t->fds)
		return -ENOMEM;
	for (int i = 0; i < nr; i++) {
		FdEntry *e;

		if (track_is_parked(t, fds[i]))	/* cryo's own: closed before the task runs again */
			continue;
		e = t->fds[t->nr_fds] = arena_new(&ctx->arena, FdEntry);
		if (!e)
			return -ENOMEM;
		ret = dump_one_fd(ctx, t, pidfd, fds[i], e);
		if (ret)
			return ret;
		t->nr_fds++;
	}
	return 0;
}

int files_write(struct dump_ctx *ctx)
{
	struct img *img;
	int ret = 0;

	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds) && !ret; i++)
		if (fd_kinds[i]->dump_done)
			ret = fd_kinds[i]->dump_done(ctx);
	if (ret)
		return ret;
	img = img_create(ctx->dirfd, IMG_FILES, 0);
	if (!img)
		return -EIO;
	for (size_t i = 0; i < ctx->nr_files && !ret; i++)
		ret = img_write(img, &ctx->file_entries[i]->base);
	if (img_close(img) || ret)
		return -EIO;
	return 0;
}

int files_write_fds(struct dump_ctx *ctx, struct dump_task *t)
{
	struct img *img = img_create(ctx->dirfd, IMG_FDS, t->vpid);
	int ret = 0;

	if (!img)
		return -EIO;
	for (size_t i = 0; i < t->nr_fds && !ret; i++)
		ret = img_write(img, &t->fds[i]->base);
	if (img_close(img) || ret)
		return -EIO;
	return 0;
}

void files_release(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_files; i++)
		if (ctx->files[i].local_fd >= 0)
			close(ctx->files[i].local_fd);
	free(ctx->files);
	free(ctx->file_entries);
	ctx->files = NULL;
	ctx->file_entries = NULL;
	ctx->nr_files = 0;
}

/* ------------------------------------------------------------- restore */

static int files_max_fd(const struct rst_task *t)
{
	int max = -1;

	for (size_t i = 0; i < t->nr_fds; i++)
		if ((int)t->fds[i]->fd > max)
			max = t->fds[i]->fd;
	return max;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

static int take_lock(int fd, const LockEntry *lk, pid_t pid, unsigned fdnum)
{
	struct flock fl = {
		.l_type = lk->write ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET,
		.l_start = lk->start, .l_len = lk->len,
	};
	int ret;

	if (lk->kind == LOCK_KIND__FLOCK)
		ret = flock(fd, (lk->write ? LOCK_EX : LOCK_SH) | LOCK_NB);
	else
		ret = fcntl(fd, lk->kind == LOCK_KIND__OFD ? F_OFD_SETLK : F_SETLK, &fl);
	if (ret)
		return pr_perror("pid %d fd %u: cannot take back its %s %s lock on %lu+%lu%s", pid, fdnum,
				 lk->kind == LOCK_KIND__FLOCK ? "flock" : lk->kind == LOCK_KIND__OFD ? "OFD" : "POSIX",
				 lk->write ? "write" : "read", lk->start, lk->len,
				 errno == EAGAIN || errno == EWOULDBLOCK ? " (another process holds a conflicting one)" : "");
	return 0;
}

/* the description's locks */
static int open_common(int fd, const FileEntry *fe, pid_t pid, unsigned fdnum)
{
	for (size_t i = 0; i < fe->n_locks; i++)
		if (take_lock(fd, fe->locks[i], pid, fdnum))
			return -EAGAIN;
	return 0;
}

static bool opened_in_task(const FileEntry *fe)
{
	const struct fd_kind_ops *ops = kind_ops(fe->kind);

	return ops && ops->needs_tree && ops->needs_tree(fe);
}

const FileEntry *files_find(struct restore_ctx *ctx, uint32_t id)
{
	for (size_t i = 0; i < ctx->nr_files; i++)
		if (ctx->files[i]->id == id)
			return ctx->files[i];
	return NULL;
}

/* --inherit-fd fd[N]:KEY: N and *key, or -1 if s is not of that form */
static int inherit_parse(const char *s, const char **key)
{
	char *end;
	long n;

	if (strncmp(s, "fd[", 3))
		return -1;
	errno = 0;
	n = strtol(s + 3, &end, 10);
	if (errno || end == s + 3 || n < 0 || n > INT_MAX || strncmp(end, "]:", 2) || !end[2])
		return -1;
	*key = end + 2;
	return n;
}

int files_check_inherit(const struct cryo_opts *o)
{
	for (size_t i = 0; i < o->inherit_fds.n; i++) {
		const char *s = o->inherit_fds.v[i], *key;
		int fd = inherit_parse(s, &key);

		if (fd < 0) {
			pr_err("--inherit-fd %s: not of the form fd[N]:KEY (KEY: pipe:[INODE] or a file's path)", s);
			return -EINVAL;
		}
		if (fcntl(fd, F_GETFD) < 0)
			return pr_perror("--inherit-fd %s: cryo has no fd %d", s, fd);
	}
	return 0;
}

/* paths match with or without their leading / */
int files_inherited_key(const struct cryo_opts *o, const char *key)
{
	key += *key == '/';
	for (size_t i = 0; i < o->inherit_fds.n; i++) {
		const char *want;
		int fd = inherit_parse(o->inherit_fds.v[i], &want);

		if (fd >= 0 && !strcmp(want + (*want == '/'), key))
			return fd;
	}
	return -1;
}

/* the fd --inherit-fd gives cryo for file fe, or -1 */
static int inherited_fd(const struct cryo_opts *o, const FileEntry *fe)
{
	const struct fd_kind_ops *ops = kind_ops(fe->kind);
	char key[PATH_MAX + 32];

	if (!o->inherit_fds.n || !ops || !ops->key || ops->key(fe, key, sizeof(key)))
		return -1;
	return files_inherited_key(o, key);
}

int files_get_fd(struct restore_ctx *ctx, uint32_t id)
{
	for (size_t i = 0; ctx->file_fds && i < ctx->nr_files; i++)
		if (ctx->files[i]->id == id)
			return ctx->file_fds[i];
	return -1;
}

/*
 * In cryo, before the tree is forked: the fd numbers above every one any
 * task uses (files_base), where cryo's own fds for the tasks and then the
 * files go.
 */
int files_plan(struct restore_ctx *ctx)
{
	struct rlimit rl = { 0, 0 };
	rlim_t need;
	int base = 3;

	for (size_t i = 0; i < ctx->nr_tasks; i++)
		if (!ctx->tasks[i]->zombie)
			base = MAX(base, files_max_fd(ctx->tasks[i]) + 1);
	ctx->files_base = ctx->files_top = base;
	/*
	 * Room above the tasks' numbers for the 4 pipe ends per task and for
	 * the files; the soft limit may rise to the hard one.
	 */
	need = base + ctx->nr_files + 4 * ctx->nr_tasks + 64;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < need) {
		rl.rlim_cur = MIN(rl.rlim_max, need);
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	return 0;
}

int files_open_path(const char *path, int flags, const char *what)
{
	/* what open(2) takes and openat2(2) does too: it refuses what open ignores */
	int keep = O_ACCMODE | O_NOCTTY | O_APPEND | O_NONBLOCK | O_SYNC | O_DSYNC | O_ASYNC | O_DIRECT |
		   O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC | O_PATH;
	_cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (root < 0)
		return pr_perror("%s: cannot open the root directory", what);
	flags &= (flags & O_PATH) ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC : keep;
	return door_open(root, path, flags, 0, DOOR_IN_ROOT, "%s", what);
}

/* files.img: a kind cryo knows, and that kind's names and paths */
int files_validate_entry(const FileEntry *fe, const char *where)
{
	const struct fd_kind_ops *ops = kind_ops(fe->kind);

	if (!ops) {
		char val[16];

		snprintf(val, sizeof(val), "%d", fe->kind);
		return door_refuse(val, "not a kind of file cryo restores", "%s: kind", where);
	}
	return ops->validate ? ops->validate(fe, where) : 0;
}

int files_validate(const struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		char where[64];

		snprintf(where, sizeof(where), "files.img record %zu", i);
		if (files_validate_entry(ctx->files[i], where))
			return -EINVAL;
	}
	return 0;
}

/*
 * In the root, before it forks the tree (and in its namespaces): open every
 * description once, above every fd number any task uses, so that all tasks
 * inherit the same open files and the ones they shared keep one offset.
 */
int files_open_all(struct restore_ctx *ctx)
{
	struct rlimit rl = { 0, 0 };
	int base = ctx->files_base, ret;

	getrlimit(RLIMIT_NOFILE, &rl);
	ctx->file_fds = malloc((ctx->nr_files + 1) * sizeof(int));
	if (!ctx->file_fds)
		return -ENOMEM;
	for (size_t i = 0; i < ctx->nr_files; i++)
		ctx->file_fds[i] = -1;
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->prepare && (ret = fd_kinds[i]->prepare(ctx)))
			return ret;
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct rst_task *t = ctx->tasks[i];

		for (size_t j = 0; j < t->nr_fds; j++) {
			const FdEntry *e = t->fds[j];
			const struct fd_kind_ops *ops;
			size_t k;
			int fd;

			for (k = 0; k < ctx->nr_files && ctx->files[k]->id != e->id; k++)
				;
			if (k == ctx->nr_files || !(ops = kind_ops(ctx->files[k]->kind))) {
				pr_err("fds-%d.img: fd %u refers to file %u, which files.img lacks",
				       t->pid, e->fd, e->id);
				return -EINVAL;
			}
			if (ctx->file_fds[k] >= 0)
				continue;
			if ((fd = inherited_fd(ctx->opts, ctx->files[k])) >= 0) {
				/* the caller's file, as it is now: no locks of the tree's put on it */
				pr_info("pid %d fd %u: cryo's fd %d (--inherit-fd)", t->pid, e->fd, fd);
				if ((fd = fcntl(fd, F_DUPFD_CLOEXEC, base)) < 0)
					return pr_perror("pid %d fd %u: cannot dup the inherited fd", t->pid, e->fd);
				ctx->file_fds[k] = fd;
				ctx->files_top = MAX(ctx->files_top, fd + 1);
				continue;
			}
			if (opened_in_task(ctx->files[k]))
				continue;
			fd = ops->open(ctx, t->pid, e->fd, ctx->files[k]);
			if (fd < 0)
				return fd;
			ctx->file_fds[k] = fd_move_above(fd, base, true);
			ctx->files_top = MAX(ctx->files_top, ctx->file_fds[k] + 1);
			if (ctx->file_fds[k] < 0) {
				close(fd);
				return pr_perror("pid %d fd %u: cannot move it above fd %d (open files limit %lu)",
						 t->pid, e->fd, base, (unsigned long)rl.rlim_cur);
			}
			if ((ret = open_common(ctx->file_fds[k], ctx->files[k], t->pid, e->fd)))
				return ret;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->open_done && (ret = fd_kinds[i]->open_done(ctx)))
			return ret;
	return 0;
}

/* cryo, once every task exists: the owners of the descriptions that had one */
int files_set_owners(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const FownEntry *fo = ctx->files[i]->fown;
		struct f_owner_ex own;

		if (!fo || ctx->file_fds[i] < 0)
			continue;
		own.type = fo->type;
		own.pid = fo->pid;
		if ((fo->pid && fcntl(ctx->file_fds[i], F_SETOWN_EX, &own)) ||
		    (fo->signum && fcntl(ctx->file_fds[i], F_SETSIG, fo->signum)))
			return pr_perror("file %u: cannot give it owner %d and signal %u", ctx->files[i]->id,
					 fo->pid, fo->signum);
	}
	return 0;
}

void files_close_all(struct restore_ctx *ctx)
{
	for (size_t i = 0; ctx->file_fds && i < ctx->nr_files; i++)
		if (ctx->file_fds[i] >= 0)
			close(ctx->file_fds[i]);
	free(ctx->file_fds);
	ctx->file_fds = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->restore_done)
			fd_kinds[i]->restore_done(ctx);
}

/* in the task: a description that needed the tree, opened onto number e->fd */
static int open_in_task(struct restore_ctx *ctx, struct rst_task *t, const FdEntry *e)
{
	const FileEntry *fe = files_find(ctx, e->id);
	int fd = kind_ops(fe->kind)->open(ctx, t->pid, e->fd, fe);

	if (fd < 0)
		return fd;
	/* not on a number a later fd of the task takes */
	if ((fd = fd_move_above(fd, ctx->files_top, true)) < 0)
		return pr_perror("pid %d fd %u: cannot move it above fd %d", t->pid, e->fd, ctx->files_top);
	if (open_common(fd, fe, t->pid, e->fd) || dup3(fd, e->fd, e->cloexec ? O_CLOEXEC : 0) < 0) {
		close(fd);
		return pr_perror("pid %d: cannot install fd %u", t->pid, e->fd);
	}
	close(fd);
	return 0;
}

/*
 * Runs in the restored task's process (the owner of its fd table), which
 * inherited cryo's open files (at ctx->files_base and up). keep_fds are
 * fds above those that must stay (exe and status fds of the tasks sharing
 * the table); the log file is above them too.
 */
int files_restore(struct restore_ctx *ctx, struct rst_task *t, const int *keep_fds, int nr_keep)
{
	int base = ctx->files_base;
	int keep[nr_keep + 1], n = 0, ret;

	/* cryo's own low fds go; the task's take their numbers */
	syscall(SYS_close_range, 0, base - 1, 0);
	for (size_t i = 0; i < t->nr_fds; i++) {
		const FdEntry *e = t->fds[i];

		if (files_get_fd(ctx, e->id) < 0)
			continue;
		if (dup3(files_get_fd(ctx, e->id), e->fd, e->cloexec ? O_CLOEXEC : 0) < 0)
			return pr_perror("pid %d: cannot install fd %u", t->pid, e->fd);
	}
	/* then those opened here */
	for (size_t i = 0; i < t->nr_fds; i++)
		if (files_get_fd(ctx, t->fds[i]->id) < 0 && open_in_task(ctx, t, t->fds[i]))
			return -EIO;
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->task_done && (ret = fd_kinds[i]->task_done(ctx, t)))
			return ret;
	for (int i = 0; i < nr_keep; i++)
		keep[n++] = keep_fds[i];
	if (log_get_fd() >= 0)
		keep[n++] = log_get_fd();
	qsort(keep, n, sizeof(int), cmp_int);
	close_fds_but(base, keep, n);
	/* last: a close of any fd of a file drops the task's POSIX locks on it */
	for (size_t i = 0; i < t->nr_fds; i++) {
		const FdEntry *e = t->fds[i];
		const FownEntry *fo = files_find(ctx, e->id)->fown;
		int fl;

		/* signals name the fd that asked for them: this task's number */
		if (fo && fo->async && ((fl = fcntl(e->fd, F_GETFL)) < 0 || fcntl(e->fd, F_SETFL, fl & ~O_ASYNC) ||
					fcntl(e->fd, F_SETFL, fl | O_ASYNC)))
			return pr_perror("pid %d fd %u: cannot set O_ASYNC", t->pid, e->fd);
		for (size_t k = 0; k < e->n_posix_locks; k++)
			if (take_lock(e->fd, e->posix_locks[k], t->pid, e->fd))
				return -EAGAIN;
	}
	return 0;
}
