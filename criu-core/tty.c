/*
 * Terminals. A task started from a shell holds the shell's terminal on its
 * stdio; like a shell job it is given the terminal of the restoring cryo
 * (--shell-job). Pseudo-terminal pairs owned by the tree come later.
 */
#define LOG_PREFIX "tty: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool tty_match(const struct fd_parms *p)
{
	struct termios t;

	return S_ISCHR(p->st.st_mode) && !ioctl(p->lfd, TCGETS, &t);
}

static int tty_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	DevFileEntry *d = arena_new(&ctx->arena, DevFileEntry);
	unsigned maj = major(p->st.st_rdev);
	int ptn;

	if (!d)
		return -ENOMEM;
	if ((maj == 5 && minor(p->st.st_rdev) == 2) || !ioctl(p->lfd, TIOCGPTN, &ptn)) {
		pr_err("pid %d fd %d: pseudo-terminal master %s: not supported yet", p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	if (!ctx->opts->shell_job) {
		pr_err("pid %d fd %d is terminal %s: dump it with --shell-job (it is then restored onto cryo's terminal)",
		       p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	dev_file_entry__init(d);
	d->path = arena_strdup(&ctx->arena, p->link);
	d->flags = p->flags;
	d->rdev = p->st.st_rdev;
	fe->dev = d;
	return 0;
}

/* the terminal cryo itself runs on, from its stdio */
static int own_terminal(char *path, size_t len)
{
	for (int fd = 0; fd < 3; fd++)
		if (isatty(fd) && !ttyname_r(fd, path, len))
			return 0;
	return -ENOTTY;
}

static int tty_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const DevFileEntry *d = fe->dev;
	char path[256];
	int fd;

	if (!d) {
		pr_err("files.img: entry %u is a terminal without its details", fe->id);
		return -EINVAL;
	}
	if (!ctx->opts->shell_job) {
		pr_err("pid %d fd %d was terminal %s: restore it with --shell-job to give it cryo's terminal",
		       pid, fdnum, d->path);
		return -EINVAL;
	}
	if (own_terminal(path, sizeof(path))) {
		pr_err("pid %d fd %d was terminal %s, but cryo has no terminal on its stdin, stdout or stderr",
		       pid, fdnum, d->path);
		return -ENOTTY;
	}
	fd = open(path, (d->flags & ~O_CREAT) | O_NOCTTY);
	if (fd < 0)
		return pr_perror("pid %d fd %d: cannot open terminal %s", pid, fdnum, path);
	return fd;
}

/* files.img: the terminal's path is only shown (cryo's own is opened); it must still be one */
static int tty_validate(const FileEntry *fe, const char *where)
{
	return fe->dev ? door_abspath(fe->dev->path, DOOR_PATH_MAX, "%s: dev.path", where) : 0;
}

const struct fd_kind_ops tty_fd_ops = {
	.kind = FD_KIND__TTY,
	.name = "terminal",
	.match = tty_match,
	.dump = tty_dump,
	.validate = tty_validate,
	.open = tty_open,
};

/*
 * A shell job restored in the foreground of cryo's terminal can read from
 * it and is stopped by ^Z like before. Only when cryo itself holds that
 * foreground (it runs as a foreground job) and the task's group had it at
 * dump time; otherwise the task stays a background job, which is no error.
 */
void tty_give_foreground(struct restore_ctx *ctx, const struct rst_task *t)
{
	pid_t pgrp = t->pstree->pgid == (uint32_t)t->pid ? t->pid : getpgrp();
	int fd;

	if (!ctx->opts->shell_job || !t->pstree->tty_foreground)
		return;
	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		pr_warn("pid %d was a foreground job, but cryo has no controlling terminal: it runs in the background",
			t->pid);
		return;
	}
	if (tcgetpgrp(fd) != getpgrp()) {
		pr_warn("pid %d was a foreground job, but cryo runs in the background: so does it", t->pid);
		close(fd);
		return;
	}
	if (pgrp != getpgrp() && tcsetpgrp(fd, pgrp)) {
		pr_warn("pid %d: cannot give it the foreground of cryo's terminal: %s", t->pid, strerror(errno));
		close(fd);
		return;
	}
	pr_info("pid %d: process group %d holds the terminal's foreground", t->pid, pgrp);
	ctx->fg_tty = fd;
}

/* after the job ended: cryo, now a background group, takes the terminal back */
void tty_take_back_foreground(struct restore_ctx *ctx)
{
	sigset_t ttou, old;

	if (ctx->fg_tty < 0)
		return;
	sigemptyset(&ttou);
	sigaddset(&ttou, SIGTTOU);
	sigprocmask(SIG_BLOCK, &ttou, &old);
	if (tcsetpgrp(ctx->fg_tty, getpgrp()))
		pr_warn("cannot take back the foreground of the terminal: %s", strerror(errno));
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(ctx->fg_tty);
	ctx->fg_tty = -1;
}
