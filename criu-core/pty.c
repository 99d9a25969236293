/*
 * Pseudo-terminals owned by the tree: a master (/dev/ptmx) and its slave
 * (/dev/pts/N). The pair keeps its number, the slave's termios and window
 * size, the lock and packet mode, and which session has it as its
 * controlling terminal with which foreground group.
 *
 * Dump: everything is read through the master (the termios, window, session
 * and group ioctls act on the slave side from there). A slave whose master
 * no task of the dump holds is either
 *  - an orphan (orphan_pts_master, asked by runtimes): the console of a
 *    container, whose master the runtime holds. Its state is read through
 *    the slave; the restore makes a new pair and hands the caller its
 *    master (the orphan-pts-master notification, SCM_RIGHTS);
 *  - or the terminal of whoever started the tree: it becomes a shell-job
 *    terminal (tty.c), which needs --shell-job.
 *
 * Restore: the root, in the container's mounts, opens /dev/ptmx until it is
 * given the dumped number (holding the others meanwhile), sets the slave's
 * state through TIOCGPTPEER, and every slave description is a TIOCGPTPEER
 * open (an open of /dev/tty is made by its task, once it has its terminal).
 * A pty bound on a file (runc's /dev/console) is made from the ptmx of its
 * devpts before that mount. The session leader takes the slave as its
 * controlling terminal right after its setsid, before it forks the rest of
 * its session, who inherit it; it gives the foreground to the dumped group
 * once every task has its group. An orphan's master goes from the root to
 * cryo over a socket pair, and from cryo to the caller.
 */
#define LOG_PREFIX "pty: "
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>

#include "compat.h"
#include "door.h"
#include "dump.h"
#include "files.h"
#include "infect.h"
#include "log.h"
#include "notify.h"
#include "restore.h"
#include "util.h"

#define TTYAUX_MAJOR		5	/* /dev/tty, /dev/ptmx */
#define PTMX_MAJOR		5
#define PTMX_MINOR		2
#define PTS_MAJOR_FIRST		136
#define PTS_MAJOR_LAST		143
#define MAX_PTMX_OPENS		4096

struct rst_pty {
	uint32_t index;
	int master, slave;	/* cryo's; the tasks inherit them */
	const PtyEntry *state;
	bool external;		/* the caller's terminal: slave is what --inherit-fd gave, no master */
};

static bool is_master(dev_t rdev)
{
	return major(rdev) == PTMX_MAJOR && minor(rdev) == PTMX_MINOR;
}

static bool is_slave(dev_t rdev)
{
	return major(rdev) >= PTS_MAJOR_FIRST && major(rdev) <= PTS_MAJOR_LAST;
}

static bool is_devtty(dev_t rdev)
{
	return major(rdev) == TTYAUX_MAJOR && minor(rdev) == 0;
}

static bool pty_match(const struct fd_parms *p)
{
	int n;

	return S_ISCHR(p->st.st_mode) && (is_slave(p->st.st_rdev) || is_devtty(p->st.st_rdev) ||
					  (is_master(p->st.st_rdev) && !ioctl(p->lfd, TIOCGPTN, &n)));
}

static bool seen_index(struct dump_ctx *ctx, uint32_t index)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const PtyEntry *y = ctx->file_entries[i]->pty;

		if (y && y->master && y->index == index && y->has_termios)
			return true;
	}
	return false;
}

/* the slave's termios and window size, read through either side */
static int dump_termios(struct dump_ctx *ctx, const struct fd_parms *p, PtyEntry *y)
{
	struct termios t;
	struct winsize ws;

	if (ioctl(p->lfd, TCGETS, &t) || ioctl(p->lfd, TIOCGWINSZ, &ws))
		return pr_perror("pid %d fd %d: pty %u: cannot read its termios and window size", p->pid, p->fd,
				 y->index);
	y->has_termios = true;
	y->termios.len = sizeof(t);
	y->termios.data = arena_alloc(&ctx->arena, sizeof(t));
	if (!y->termios.data)
		return -ENOMEM;
	memcpy(y->termios.data, &t, sizeof(t));
	y->has_rows = y->has_cols = y->has_xpixel = y->has_ypixel = true;
	y->rows = ws.ws_row;
	y->cols = ws.ws_col;
	y->xpixel = ws.ws_xpixel;
	y->ypixel = ws.ws_ypixel;
	return 0;
}

/* the pair's state, read through the master */
static int dump_state(struct dump_ctx *ctx, const struct fd_parms *p, PtyEntry *y)
{
	int locked = 0, packet = 0, ret;
	pid_t sid, pgrp;

	if ((ret = dump_termios(ctx, p, y)))
		return ret;
	if (ioctl(p->lfd, TIOCGPTLCK, &locked) || ioctl(p->lfd, TIOCGPKT, &packet))
		return pr_perror("pid %d fd %d: pty %u: cannot read its lock and packet mode", p->pid, p->fd, y->index);
	y->has_locked = y->has_packet = true;
	y->locked = locked;
	y->packet = packet;
	if (!ioctl(p->lfd, TIOCGSID, &sid) && !ioctl(p->lfd, TIOCGPGRP, &pgrp)) {
		if (!dump_find_task(ctx, sid)) {
			pr_err("pid %d fd %d: pty %u is the terminal of session %d, outside the dump", p->pid,
			       p->fd, y->index, sid);
			return -ENOTSUP;
		}
		y->has_sid = y->has_fg_pgrp = true;
		y->sid = pstree_tree_id(ctx, sid);
		y->fg_pgrp = pstree_tree_id(ctx, pgrp);
	}
	return 0;
}

/* --external tty[RDEV:DEV] and --inherit-fd's key: CRIU's name of a terminal (hex, as LXC writes it) */
static void tty_key(dev_t rdev, dev_t dev, char *buf, size_t len)
{
	snprintf(buf, len, "tty[%lx:%lx]", (unsigned long)rdev, (unsigned long)dev);
}

static bool is_external(const struct dump_ctx *ctx, dev_t rdev, dev_t dev)
{
	char key[64];

	tty_key(rdev, dev, key, sizeof(key));
	for (size_t i = 0; i < ctx->opts->externals.n; i++)
		if (!strcmp(ctx->opts->externals.v[i], key))
			return true;
	return false;
}

/* a slave: its devpts and number, to tell two of one number apart */
static bool same_slave(const FileEntry *a, const FileEntry *b)
{
	return a->pty->index == b->pty->index && a->pty->dev == b->pty->dev;
}

static bool is_slave_entry(const FileEntry *fe)
{
	return fe->kind == FD_KIND__PTY && fe->pty && !fe->pty->master && !fe->pty->devtty && fe->pty->has_dev;
}

/* does a task of session sid hold pty fe (any description of it)? */
static bool session_holds(const struct dump_ctx *ctx, pid_t sid, const FileEntry *fe)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];

		for (size_t k = 0; t->stat.sid == sid && k < t->nr_fds; k++) {
			const FileEntry *o = ctx->file_entries[t->fds[k]->id - 1];

			if (is_slave_entry(o) && same_slave(o, fe))
				return true;
		}
	}
	return false;
}

/*
 * The session of the tree's that slave fe is the controlling terminal of.
 * /proc gives a session's terminal as a device number, which two ptys of
 * two devpts share (LXC: the host's pty 0 its console, the container's
 * pty 0 its tty1): then it is the one of them the session holds, and a
 * session holding both is refused.
 */
static int dump_slave_session(struct dump_ctx *ctx, const FileEntry *fe, PtyEntry *y)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];
		size_t held = 0, twins = 0;

		if (t->stat.sid != t->pid || (dev_t)t->stat.tty_nr != fe->dev->rdev)
			continue;
		for (size_t k = 0; k < ctx->nr_files; k++) {
			const FileEntry *o = ctx->file_entries[k];
			bool first = true;

			if (!is_slave_entry(o) || o->dev->rdev != fe->dev->rdev)
				continue;
			for (size_t j = 0; j < k && first; j++)
				first = !(is_slave_entry(ctx->file_entries[j]) && same_slave(ctx->file_entries[j], o));
			if (!first)
				continue;
			twins++;
			held += session_holds(ctx, t->pid, o);
		}
		if (twins > 1 && !session_holds(ctx, t->pid, fe))
			continue;
		if (twins > 1 && held > 1) {
			pr_err("pid %d: its session's terminal is pty %u of one of %zu devpts it holds ptys of: cryo cannot tell which",
			       t->pid, y->index, held);
			return -ENOTSUP;
		}
		y->has_sid = y->has_fg_pgrp = true;
		y->sid = t->vpid;
		y->fg_pgrp = t->stat.tpgid > 0 ? pstree_tree_id(ctx, t->stat.tpgid) : t->vpid;
	}
	return 0;
}

/* a slave's state, its master being outside the dump: read through the slave (lfd) */
static int dump_slave_state(struct dump_ctx *ctx, int lfd, const FileEntry *fe, PtyEntry *y)
{
	struct fd_parms p = { .pid = 0, .fd = -1, .lfd = lfd };

	return dump_termios(ctx, &p, y) ?: dump_slave_session(ctx, fe, y);
}

static int pty_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	PtyEntry *y = arena_new(&ctx->arena, PtyEntry);
	DevFileEntry *d = arena_new(&ctx->arena, DevFileEntry);
	int index;

	if (!y || !d)
		return -ENOMEM;
	pty_entry__init(y);
	dev_file_entry__init(d);
	y->master = is_master(p->st.st_rdev);
	y->flags = p->flags;
	if (y->master && ioctl(p->lfd, TIOCGPTN, &index))
		return pr_perror("pid %d fd %d: TIOCGPTN", p->pid, p->fd);
	y->index = y->master ? (uint32_t)index : (major(p->st.st_rdev) - PTS_MAJOR_FIRST) * 256 + minor(p->st.st_rdev);
	if (is_devtty(p->st.st_rdev)) {
		/* the terminal /dev/tty stood for: the task's controlling one */
		const struct dump_task *t = dump_find_task(ctx, p->pid);
		dev_t ctty = t ? (dev_t)t->stat.tty_nr : 0;

		y->has_devtty = y->devtty = true;
		y->index = is_slave(ctty) ? (major(ctty) - PTS_MAJOR_FIRST) * 256 + minor(ctty) : ~0u;
	} else if (!y->master) {
		y->has_dev = true;
		y->dev = p->st.st_dev;
	}
	/* as a shell-job terminal, should its master be outside */
	d->path = arena_strdup(&ctx->arena, p->link);
	d->flags = p->flags;
	d->rdev = p->st.st_rdev;
	fe->pty = y;
	fe->dev = d;
	return y->master && !seen_index(ctx, y->index) ? dump_state(ctx, p, y) : 0;
}

/*
 * The devpts file systems of the container's own: mounted in its mount
 * namespace from "/" of the file system (not a bind of a pty file), and
 * not in cryo's (the host's devpts is the shell's). A slave of one whose
 * master is outside (a runtime's console, LXC's ttys) is made again at
 * restore.
 */
struct devpts_mount {
	dev_t dev;
	bool own;		/* the container's: mounted from its root, not visible to cryo */
	int64_t index;		/* a bind of pty index on a file; -1 for a mount of the whole */
	char mnt[PATH_MAX_LEN];
};

static int read_devpts_mounts(pid_t pid, struct devpts_mount **out, size_t *nr)
{
	char path[64], *line = NULL;
	size_t cap = 0, n = 0;
	struct devpts_mount *v = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", pid);
	if (!(f = fopen(path, "re")))
		return pr_perror("cannot read %s", path);
	while (getline(&line, &cap, f) > 0) {
		unsigned maj, min;
		char root[PATH_MAX_LEN], mnt[PATH_MAX_LEN], *sep = strstr(line, " - ");
		struct devpts_mount *nv;
		char *end;

		if (!sep || strncmp(sep, " - devpts ", 10) ||
		    sscanf(line, "%*u %*u %u:%u %4095s %4095s", &maj, &min, root, mnt) != 4)
			continue;
		if (!(nv = xrealloc_array(v, n + 1, sizeof(*v)))) {
			free(v);
			v = NULL;
			break;
		}
		v = nv;
		v[n] = (struct devpts_mount){ .dev = makedev(maj, min), .index = -1 };
		if (strcmp(root, "/")) {
			long i = strtol(root + 1, &end, 10);

			v[n].index = root[0] == '/' && root[1] && !*end && i >= 0 ? i : -2;
		}
		snprintf(v[n].mnt, sizeof(v[n].mnt), "%s", mnt);
		n++;
	}
	free(line);
	fclose(f);
	if (!v && n)
		return -ENOMEM;
	*out = v;
	*nr = n;
	return 0;
}

/* which of the container's devpts mounts are its own (not cryo's) */
static int mark_own_devpts(struct devpts_mount *its, size_t ni)
{
	_cleanup_free_ struct devpts_mount *host = NULL;
	size_t nh = 0;
	int ret = read_devpts_mounts(getpid(), &host, &nh);

	for (size_t i = 0; !ret && i < ni; i++) {
		its[i].own = its[i].index == -1;
		for (size_t k = 0; k < nh && its[i].own; k++)
			its[i].own = host[k].dev != its[i].dev;
	}
	return ret;
}

static bool own_devpts(const struct devpts_mount *v, size_t n, dev_t dev)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].own && v[i].dev == dev)
			return true;
	return false;
}

/*
 * A pty of the container's own devpts that a mount binds on a file (LXC's
 * /dev/ttyN, on which a getty may or may not run) and no task holds: an
 * orphan of its own, its state read through that file.
 */
static int dump_bound(struct dump_ctx *ctx, const struct devpts_mount *b)
{
	char path[PATH_MAX_LEN + 32];
	FileEntry *fe = arena_new(&ctx->arena, FileEntry);
	PtyEntry *y = arena_new(&ctx->arena, PtyEntry);
	DevFileEntry *d = arena_new(&ctx->arena, DevFileEntry);
	struct stat st;
	int fd, ret;

	if (!fe || !y || !d)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/root%s", ctx->tasks[0]->pid, b->mnt);
	fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) || !S_ISCHR(st.st_mode) || !is_slave(st.st_rdev) || st.st_dev != b->dev) {
		ret = fd < 0 ? pr_perror("the container's %s (pty %ld of its devpts): cannot open it", b->mnt, (long)b->index) :
			       (pr_err("the container's %s is not pty %ld of its devpts", b->mnt, (long)b->index), -EINVAL);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	file_entry__init(fe);
	pty_entry__init(y);
	dev_file_entry__init(d);
	fe->kind = FD_KIND__PTY;
	fe->pty = y;
	fe->dev = d;
	y->index = b->index;
	y->flags = O_RDWR;
	y->has_dev = y->has_orphan = y->orphan = y->has_bound = y->bound = true;
	y->dev = st.st_dev;
	d->path = arena_strdup(&ctx->arena, b->mnt);
	d->flags = O_RDWR;
	d->rdev = st.st_rdev;
	if ((ret = files_add_entry(ctx, fe, fd, &st))) {
		close(fd);
		return ret;
	}
	pr_debug("the container's %s: pty %u of its devpts, held by no task of it: made again at restore", b->mnt,
		 y->index);
	return dump_slave_state(ctx, fd, fe, y);
}

static bool has_slave(const struct dump_ctx *ctx, dev_t dev, uint32_t index)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const FileEntry *fe = ctx->file_entries[i];

		if (is_slave_entry(fe) && fe->pty->dev == dev && fe->pty->index == index)
			return true;
	}
	return false;
}

/*
 * Each slave whose master no task of the dump holds is one of:
 *  - the caller's (--external tty[RDEV:DEV], LXC's console): restored as
 *    what --inherit-fd gives for it; only its session is kept;
 *  - an orphan: a pty of the container's own devpts (LXC's ttys, runc's
 *    console), or any when the caller takes the masters (orphan_pts_master):
 *    made again with its number and state, its master handed to the caller;
 *  - the terminal of whoever started the tree: a shell-job terminal
 *    (tty.c), which needs --shell-job.
 * And a pty of the container's devpts that a mount binds on a file but no
 * task holds is an orphan too.
 */
static int pty_dump_done(struct dump_ctx *ctx)
{
	_cleanup_free_ struct devpts_mount *mounts = NULL;
	size_t nm = 0;
	int ret = 0;

	if ((ctx->ns_flags & CLONE_NEWNS) &&
	    ((ret = read_devpts_mounts(ctx->tasks[0]->pid, &mounts, &nm)) || (ret = mark_own_devpts(mounts, nm))))
		return ret;
	for (size_t i = 0; i < ctx->nr_files && !ret; i++) {
		FileEntry *fe = ctx->file_entries[i];
		bool master = false;

		if (fe->kind != FD_KIND__PTY || fe->pty->master)
			continue;
		for (size_t j = 0; j < ctx->nr_files && !master; j++) {
			const PtyEntry *y = ctx->file_entries[j]->pty;

			master = y && y->master && y->index == fe->pty->index;
		}
		if (master)
			continue;
		if (fe->pty->devtty && (ctx->opts->orphan_pts_master || ctx->opts->externals.n || nm))
			continue;	/* opened again by its task, from its terminal as restored */
		if (!fe->pty->devtty && is_external(ctx, fe->dev->rdev, fe->pty->dev)) {
			fe->pty->has_external = fe->pty->external = true;
			ret = dump_slave_session(ctx, fe, fe->pty);
			continue;
		}
		if (!fe->pty->devtty && (own_devpts(mounts, nm, fe->pty->dev) || ctx->opts->orphan_pts_master)) {
			/* the caller's console, the container's ttys: made again, the caller takes its new master */
			fe->pty->has_orphan = fe->pty->orphan = true;
			ret = dump_slave_state(ctx, ctx->files[i].local_fd, fe, fe->pty);
			continue;
		}
		if (!ctx->opts->shell_job) {
			pr_err("%s, a terminal of the dumped tree, is not the tree's own (its master is outside): dump it with --shell-job, name it --external tty[%lx:%lx] (the caller's), or dump through a runtime that takes its master (orphan_pts_master)",
			       fe->dev->path, (unsigned long)fe->dev->rdev, (unsigned long)fe->pty->dev);
			return -ENOTSUP;
		}
		fe->kind = FD_KIND__TTY;
		fe->pty = NULL;
	}
	for (size_t i = 0; i < nm && !ret; i++) {
		const struct devpts_mount *b = &mounts[i];

		if (b->index < 0 || !own_devpts(mounts, nm, b->dev) || has_slave(ctx, b->dev, b->index))
			continue;
		ret = dump_bound(ctx, b);
	}
	return ret;
}

/* ------------------------------------------------------------- restore */

static struct rst_pty *find_pty(struct restore_ctx *ctx, uint32_t index)
{
	for (size_t i = 0; i < ctx->nr_ptys; i++)
		if (ctx->ptys[i].index == index && !ctx->ptys[i].external)
			return &ctx->ptys[i];
	return NULL;
}

/* ptmx opened until it gives pty index; the others it gave are closed */
static int open_ptmx(const char *ptmx, uint32_t index)
{
	int held[64], nr = 0, fd = -1, n;

	for (int tries = 0; tries < MAX_PTMX_OPENS; tries++) {
		fd = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (fd < 0 || ioctl(fd, TIOCGPTN, &n)) {
			fd = pr_perror("pty %u: cannot open %s", index, ptmx);
			break;
		}
		if ((uint32_t)n == index)
			break;
		/* numbers below index that are free are filled, others skipped */
		if ((uint32_t)n > index || nr == (int)ARRAY_SIZE(held)) {
			close(fd);
			pr_err("pty %u is in use: cannot make it again (got pty %d)", index, n);
			fd = -EBUSY;
			break;
		}
		held[nr++] = fd;
		fd = -1;
	}
	while (nr)
		close(held[--nr]);
	return fd;
}

/* an orphan's master, from the root to cryo (pty_hand_over_orphans) */
static int send_master(struct restore_ctx *ctx, const struct rst_pty *p)
{
	struct iovec iov = { (void *)&p->index, sizeof(p->index) };

	if (sendmsg_fd(ctx->pty_sock[1], &iov, 1, p->master) < 0)
		return pr_perror("pty %u: cannot pass its new master to cryo", p->index);
	return 0;
}

static int make_pty(struct restore_ctx *ctx, const PtyEntry *y, const char *ptmx)
{
	struct winsize ws = { y->rows, y->cols, y->xpixel, y->ypixel };
	struct rst_pty *np = xrealloc_array(ctx->ptys, ctx->nr_ptys + 1, sizeof(*np)), *p;
	int unlock = 0, locked = y->locked, packet = y->packet;

	if (!np)
		return -ENOMEM;
	ctx->ptys = np;
	p = &ctx->ptys[ctx->nr_ptys++];
	*p = (struct rst_pty){ .index = y->index, .master = -1, .slave = -1, .state = y };
	p->master = open_ptmx(ptmx, y->index);
	if (p->master < 0)
		return p->master;
	if (ioctl(p->master, TIOCSPTLCK, &unlock))
		return pr_perror("pty %u: cannot unlock it", y->index);
	p->slave = ioctl(p->master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (p->slave < 0)
		return pr_perror("pty %u: cannot open its slave", y->index);
	if (y->termios.len != sizeof(struct termios)) {
		pr_err("files.img: pty %u has a termios of %zu bytes", y->index, y->termios.len);
		return -EINVAL;
	}
	if (ioctl(p->slave, TCSETS, y->termios.data) || ioctl(p->slave, TIOCSWINSZ, &ws) ||
	    ioctl(p->master, TIOCPKT, &packet) || ioctl(p->master, TIOCSPTLCK, &locked))
		return pr_perror("pty %u: cannot set its termios, window size, packet mode or lock", y->index);
	return y->orphan ? send_master(ctx, p) : 0;
}

/* the entry that makes pty index again: its master's, or an orphan slave's */
static const PtyEntry *pty_maker(struct restore_ctx *ctx, uint32_t index)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const PtyEntry *y = ctx->files[i]->kind == FD_KIND__PTY ? ctx->files[i]->pty : NULL;

		if (y && y->index == index && (y->master || y->orphan) && y->has_termios && !y->external)
			return y;
	}
	return NULL;
}

/* --inherit-fd's key of a slave: tty[RDEV:DEV], as CRIU names it */
static int pty_key(const FileEntry *fe, char *buf, size_t len)
{
	if (!fe->pty || fe->pty->master || fe->pty->devtty || !fe->pty->has_dev || !fe->dev)
		return -ENOENT;
	tty_key(fe->dev->rdev, fe->pty->dev, buf, len);
	return 0;
}

/* the fd --inherit-fd gives for the caller's terminal fe, or -1 */
static int external_fd(const struct restore_ctx *ctx, const FileEntry *fe)
{
	char key[64];

	return pty_key(fe, key, sizeof(key)) ? -1 : files_inherited_key(ctx->opts, key);
}

/* the caller's terminal that was a session's: kept to make it that session's again */
static int add_external(struct restore_ctx *ctx, const FileEntry *fe)
{
	struct rst_pty *np;
	int fd = external_fd(ctx, fe);

	for (size_t i = 0; i < ctx->nr_ptys; i++)
		if (ctx->ptys[i].external && ctx->ptys[i].state->sid == fe->pty->sid)
			return 0;
	if (!(np = xrealloc_array(ctx->ptys, ctx->nr_ptys + 1, sizeof(*np))))
		return -ENOMEM;
	ctx->ptys = np;
	np[ctx->nr_ptys] = (struct rst_pty){ .index = fe->pty->index, .master = -1, .state = fe->pty,
					     .external = true };
	np[ctx->nr_ptys].slave = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (np[ctx->nr_ptys++].slave < 0)
		return pr_perror("%s: cannot dup the terminal --inherit-fd gave for it", fe->dev->path);
	return 0;
}

static int pty_prepare(struct restore_ctx *ctx)
{
	int ret;

	for (size_t i = 0; i < ctx->nr_files; i++) {
		const FileEntry *fe = ctx->files[i];
		const PtyEntry *y = fe->kind == FD_KIND__PTY ? fe->pty : NULL;

		if (y && y->external && y->has_sid && (ret = add_external(ctx, fe)))
			return ret;
		if (y && pty_maker(ctx, y->index) == y && !find_pty(ctx, y->index) &&
		    (ret = make_pty(ctx, y, "/dev/ptmx")))
			return ret;
	}
	return 0;
}

/*
 * In the root, before mount m binds pty file path of its devpts on a file
 * (runc's /dev/console): the pair is made now, from that devpts's ptmx.
 */
int pty_make_bound(struct restore_ctx *ctx, const MountEntry *m, const char *path)
{
	const char *name = strrchr(path, '/');
	char ptmx[PATH_MAX_LEN + 8], *end;
	const PtyEntry *y;
	unsigned long index;

	if (!name || !access(path, F_OK))
		return 0;
	index = strtoul(name + 1, &end, 10);
	if (!name[1] || *end)
		return 0;
	if (!(y = pty_maker(ctx, index))) {
		pr_err("the container's %s binds pty %lu, which no task of the tree holds: cannot make it again",
		       m->mountpoint, index);
		return -ENOENT;
	}
	if (find_pty(ctx, index))
		return 0;
	snprintf(ptmx, sizeof(ptmx), "%.*s/ptmx", (int)(name - path), path);
	return make_pty(ctx, y, ptmx);
}

/* a client of cryo swrk takes the orphans' masters (orphan-pts-master); else the parent, if the tree is its */
static bool masters_to_client(const struct restore_ctx *ctx)
{
	return ctx->opts->orphan_pts_master && ctx->opts->notify_fn;
}

/*
 * In cryo, before the tree is forked: the caller's terminals are given
 * (--inherit-fd), and the orphans' masters have a taker: a client of cryo
 * swrk that asked for them (orphan-pts-master notifications), or the
 * caller the tree is restored under (--restore-sibling: LXC's monitor,
 * who held them before; there is no other way to give them to it).
 */
int pty_plan(struct restore_ctx *ctx)
{
	uint32_t orphan = ~0u;

	for (size_t i = 0; i < ctx->nr_files; i++) {
		const FileEntry *fe = ctx->files[i];
		char key[64];

		if (fe->kind != FD_KIND__PTY || !fe->pty)
			continue;
		if (fe->pty->orphan && orphan == ~0u)
			orphan = fe->pty->index;
		if (fe->pty->external && external_fd(ctx, fe) < 0) {
			pty_key(fe, key, sizeof(key));
			pr_err("%s (%s) was the caller's terminal: the restore needs it, --inherit-fd fd[N]:%s",
			       fe->dev->path, key, key);
			return -EINVAL;
		}
	}
	if (orphan == ~0u)
		return 0;
	if (!masters_to_client(ctx) && !ctx->opts->rst_sibling) {
		pr_err("pty %u was the tree's terminal with its master outside (a runtime's console or tty): only a client of cryo swrk that takes its new master (orphan_pts_master), or a caller that restores the tree as its child (--restore-sibling) and takes it so, can restore it",
		       orphan);
		return -ENOTSUP;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctx->pty_sock))
		return pr_perror("socketpair");
	for (int k = 0; k < 2; k++)
		if ((ctx->pty_sock[k] = fd_move_above(ctx->pty_sock[k], ctx->files_top, true)) < 0)
			return pr_perror("cannot move a socket above fd %d", ctx->files_top);
	return 0;
}

/* the masters, all at once, into the parent the tree is restored under */
static int give_to_parent(struct restore_ctx *ctx, const uint32_t *index, const int *masters, int nr)
{
	pid_t parent = getppid();
	int got[nr ? nr : 1], ret;

	if (!nr)
		return 0;
	ret = task_give_fds(parent, masters, nr, got, ctx->opts->guard);
	for (int i = 0; !ret && i < nr; i++)
		pr_info("pty %u: its new master is fd %d of pid %d, the caller the tree is restored under", index[i],
			got[i], parent);
	return ret;
}

/* in cryo, once every task has its files: each orphan's new master to the caller */
int pty_hand_over_orphans(struct restore_ctx *ctx)
{
	uint32_t index[64];
	int masters[64], nr = 0, ret = 0;

	while (!ret && ctx->pty_sock[0] >= 0) {
		struct iovec iov = { &index[nr], sizeof(index[nr]) };
		int master = -1;
		ssize_t n = recvmsg_fd(ctx->pty_sock[0], &iov, 1, &master, MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN)
			break;
		if (n != sizeof(index[nr]) || master < 0) {
			if (master >= 0)
				close(master);
			ret = pr_perror("cannot take the new master of an orphan pty from the root");
			break;
		}
		if (masters_to_client(ctx)) {
			pr_info("pty %u: its new master goes to the caller", index[nr]);
			ret = notify_fd(ctx->opts, "orphan-pts-master", master);
			close(master);
		} else if (nr == (int)ARRAY_SIZE(masters)) {
			close(master);
			pr_err("more than %d ptys with their masters outside: cannot give them all", nr);
			ret = -E2BIG;
		} else {
			masters[nr++] = master;
		}
	}
	if (!ret)
		ret = give_to_parent(ctx, index, masters, nr);
	while (nr)
		close(masters[--nr]);
	return ret;
}

/*
 * A slave opened by the path its task had it by (LXC's /dev/tty1, which
 * a mount binds it on), if that path is the pty made again: its fds read
 * as before. -1 if not.
 */
static int open_by_path(const struct rst_pty *p, const FileEntry *fe)
{
	struct stat want, st;
	int fd;

	if (!fe->dev || !fe->dev->path || fe->dev->path[0] != '/' || fstat(p->slave, &want) ||
	    access(fe->dev->path, F_OK))
		return -1;
	fd = files_open_path(fe->dev->path, (fe->pty->flags & O_ACCMODE) | O_NOCTTY | O_NONBLOCK | O_CLOEXEC,
			     fe->dev->path);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || st.st_rdev != want.st_rdev || st.st_dev != want.st_dev) {
		close(fd);
		return -1;
	}
	return fd;
}

/* /dev/tty is opened by the task, once it has its controlling terminal */
static bool pty_needs_tree(const FileEntry *fe)
{
	return fe->pty && fe->pty->devtty;
}

static int pty_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	struct rst_pty *p = fe->pty ? find_pty(ctx, fe->pty->index) : NULL;
	int fd;

	if (!p) {
		pr_err("pid %d fd %d: pty %u has no master in the images", pid, fdnum, fe->pty ? fe->pty->index : 0);
		return -EINVAL;
	}
	if (fe->pty->devtty)
		fd = open("/dev/tty", (fe->pty->flags & O_ACCMODE) | O_NOCTTY | O_CLOEXEC);
	else if (fe->pty->master)
		fd = fcntl(p->master, F_DUPFD_CLOEXEC, 0);
	else if ((fd = open_by_path(p, fe)) < 0)
		fd = ioctl(p->master, TIOCGPTPEER, (fe->pty->flags & O_ACCMODE) | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || fcntl(fd, F_SETFL, fe->pty->flags & ~O_ACCMODE))
		return pr_perror("pid %d fd %d: pty %u", pid, fdnum, fe->pty->index);
	return fd;
}

static void pty_restore_done(struct restore_ctx *ctx)
{
	for (int k = 0; k < 2; k++) {
		if (ctx->pty_sock[k] >= 0)
			close(ctx->pty_sock[k]);
		ctx->pty_sock[k] = -1;
	}
	for (size_t i = 0; i < ctx->nr_ptys; i++) {
		if (ctx->ptys[i].master >= 0)
			close(ctx->ptys[i].master);
		if (ctx->ptys[i].slave >= 0)
			close(ctx->ptys[i].slave);
	}
	free(ctx->ptys);
	ctx->ptys = NULL;
	ctx->nr_ptys = 0;
}

static struct rst_pty *session_pty(struct restore_ctx *ctx, pid_t sid)
{
	for (size_t i = 0; i < ctx->nr_ptys; i++)
		if (ctx->ptys[i].state->has_sid && ctx->ptys[i].state->sid == sid)
			return &ctx->ptys[i];
	return NULL;
}

/* in a session leader, right after its setsid */
int pty_take_ctty(struct restore_ctx *ctx, const struct rst_task *t)
{
	struct rst_pty *p = session_pty(ctx, t->pid);

	if (p && ioctl(p->slave, TIOCSCTTY, 0))
		return pr_perror("pid %d: cannot take pty %u as its controlling terminal", t->pid, p->index);
	return 0;
}

/* in a session leader, once every task is in its group */
int pty_set_foreground(struct restore_ctx *ctx, const struct rst_task *t)
{
	struct rst_pty *p = session_pty(ctx, t->pid);
	pid_t pgrp;

	if (!p)
		return 0;
	pgrp = p->state->fg_pgrp;
	if (ioctl(p->slave, TIOCSPGRP, &pgrp))
		return pr_perror("pid %d: cannot give the foreground of pty %u to group %d", t->pid, p->index, pgrp);
	return 0;
}

/* files.img: a terminal's path is only shown; it must still be one */
static int pty_validate(const FileEntry *fe, const char *where)
{
	return fe->dev ? door_abspath(fe->dev->path, DOOR_PATH_MAX, "%s: dev.path", where) : 0;
}

const struct fd_kind_ops pty_fd_ops = {
	.kind = FD_KIND__PTY,
	.name = "pty",
	.match = pty_match,
	.dump = pty_dump,
	.dump_done = pty_dump_done,
	.prepare = pty_prepare,
	.needs_tree = pty_needs_tree,
	.validate = pty_validate,
	.open = pty_open,
	.key = pty_key,
	.restore_done = pty_restore_done,
};
