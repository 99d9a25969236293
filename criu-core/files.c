/*
 * The fd table: which open file description sits at which number, with
 * which per-fd flag. Descriptions shared between fds (dup, fork) get one id
 * in files.img so that they are opened once and shared again on restore.
 */
#define LOG_PREFIX "files: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "compat.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static const struct fd_kind_ops *const fd_kinds[] = {
	&tty_fd_ops,	/* before chr: a terminal is a character device too */
	&chr_fd_ops,
	&reg_fd_ops,
	&pipe_fd_ops,
};

static const struct fd_kind_ops *kind_ops(FdKind kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(fd_kinds); i++)
		if (fd_kinds[i]->kind == kind)
			return fd_kinds[i];
	return NULL;
}

/* ---------------------------------------------------------------- dump */

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

static int add_file(struct dump_ctx *ctx, struct fd_parms *p, uint32_t *id)
{
	const struct fd_kind_ops *ops = NULL;
	struct dump_file *nf;
	FileEntry **ne, *fe;
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
	if (ret)
		return ret;

	nf = xrealloc_array(ctx->files, ctx->nr_files + 1, sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	ctx->files = nf;
	ne = xrealloc_array(ctx->file_entries, ctx->nr_files + 1, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	ctx->file_entries = ne;
	ctx->files[ctx->nr_files] = (struct dump_file){
		.id = fe->id, .local_fd = p->lfd, .dev = p->st.st_dev, .ino = p->st.st_ino,
	};
	ctx->file_entries[ctx->nr_files] = fe;
	ctx->nr_files++;
	p->lfd = -1;	/* kept by ctx->files now */
	*id = fe->id;
	pr_debug("pid %d fd %d: %s %s is file %u", p->pid, p->fd, ops->name, p->link, fe->id);
	return 0;
}

static int dump_one_fd(struct dump_ctx *ctx, struct dump_task *t, int pidfd, int fd, FdEntry *e)
{
	_cleanup_free_ char *link = NULL;
	struct fd_parms p = { .pid = t->pid, .fd = fd, .lfd = -1 };
	unsigned flags;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "fd/%d", fd);
	if ((ret = proc_readlink(t->pid, name, &link)))
		return ret;
	p.link = link;
	if ((ret = proc_fdinfo(t->pid, fd, &p.pos, &flags)))
		return ret;
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
	if (!e->id)
		ret = add_file(ctx, &p, &e->id);
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
		t->fds[i] = arena_new(&ctx->arena, FdEntry);
		if (!t->fds[i])
			return -ENOMEM;
		ret = dump_one_fd(ctx, t, pidfd, fds[i], t->fds[i]);
		if (ret)
			return ret;
	}
	t->nr_fds = nr;
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
	struct img *img = img_create(ctx->dirfd, IMG_FDS, t->pid);
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

/* close every fd >= from except the (sorted) keep ones */
static void close_all_but(int from, const int *keep, int nr)
{
	int cur = from;

	for (int i = 0; i < nr; i++) {
		if (keep[i] < cur)
			continue;
		if (keep[i] > cur)
			syscall(SYS_close_range, cur, keep[i] - 1, 0);
		cur = keep[i] + 1;
	}
	syscall(SYS_close_range, cur, ~0U, 0);
}

/*
 * In cryo, before the tree is forked: open every description once, above
 * every fd number any task uses, so that all tasks inherit the same open
 * files and the ones they shared keep one offset.
 */
int files_open_all(struct restore_ctx *ctx)
{
	struct rlimit rl = { 0, 0 };
	rlim_t need;
	int base = 3;

	for (size_t i = 0; i < ctx->nr_tasks; i++)
		if (!ctx->tasks[i]->zombie)
			base = MAX(base, files_max_fd(ctx->tasks[i]) + 1);
	ctx->files_base = ctx->files_top = base;
	ctx->file_fds = malloc((ctx->nr_files + 1) * sizeof(int));
	if (!ctx->file_fds)
		return -ENOMEM;
	for (size_t i = 0; i < ctx->nr_files; i++)
		ctx->file_fds[i] = -1;
	/*
	 * Room above the tasks' numbers for the files, and for the 4 pipe ends
	 * per task that go above those; the soft limit may rise to the hard one.
	 */
	need = base + ctx->nr_files + 4 * ctx->nr_tasks + 64;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < need) {
		rl.rlim_cur = MIN(rl.rlim_max, need);
		setrlimit(RLIMIT_NOFILE, &rl);
	}
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
		}
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

static int file_fd(struct restore_ctx *ctx, uint32_t id)
{
	for (size_t i = 0; i < ctx->nr_files; i++)
		if (ctx->files[i]->id == id)
			return ctx->file_fds[i];
	return -1;
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
	int keep[nr_keep + 1], n = 0;

	/* cryo's own low fds go; the task's take their numbers */
	syscall(SYS_close_range, 0, base - 1, 0);
	for (size_t i = 0; i < t->nr_fds; i++) {
		const FdEntry *e = t->fds[i];

		if (dup3(file_fd(ctx, e->id), e->fd, e->cloexec ? O_CLOEXEC : 0) < 0)
			return pr_perror("pid %d: cannot install fd %u", t->pid, e->fd);
	}
	for (int i = 0; i < nr_keep; i++)
		keep[n++] = keep_fds[i];
	if (log_get_fd() >= 0)
		keep[n++] = log_get_fd();
	qsort(keep, n, sizeof(int), cmp_int);
	close_all_but(base, keep, n);
	return 0;
}
