/*
 * Terminals. A task started from a shell holds the shell's terminal on its
 * stdio; like a shell job it is given the terminal of the restoring cryo
 * (--shell-job). Pseudo-terminal pairs owned by the tree come later.
 */
#define LOG_PREFIX "tty: "
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>

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

const struct fd_kind_ops tty_fd_ops = {
	.kind = FD_KIND__TTY,
	.name = "terminal",
	.match = tty_match,
	.dump = tty_dump,
	.open = tty_open,
};
