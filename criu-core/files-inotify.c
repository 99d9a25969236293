/*
 * inotify: each watch's number and mask. fdinfo gives the watched inode
 * by file handle; the dump turns it into a path (open_by_handle_at on the
 * filesystem's mount, which needs CAP_DAC_READ_SEARCH). The restore adds
 * the watches again in order of their numbers, removing and adding again
 * until the instance hands out the dumped number; the IN_IGNORED events
 * that leaves are read away.
 */
#define LOG_PREFIX "files-inotify: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/inotify.h>
#include <sys/sysmacros.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

#define MAX_WD_TRIES	(1 << 20)

static bool inotify_match(const struct fd_parms *p)
{
	return fd_is_anon(p, "inotify");
}

/* an fd on the root of a mount of device dev (kernel encoding), or -1 */
static int mount_of(unsigned kdev)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "r");
	unsigned maj = kdev >> 20, min = kdev & 0xfffff, ma, mi;
	char root[4096], mnt[4096];
	int fd = -1;

	while (f && fd < 0 && fscanf(f, "%*d %*d %u:%u %4095s %4095s%*[^\n]", &ma, &mi, root, mnt) == 4)
		if (ma == maj && mi == min && !strcmp(root, "/"))
			fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

/* the path of the inode behind an fdinfo file handle */
static char *handle_path(struct dump_ctx *ctx, unsigned sdev, unsigned bytes, int type, const char *hex)
{
	_cleanup_close_ int mfd = mount_of(sdev), fd = -1;
	_cleanup_free_ struct file_handle *fh = calloc(1, sizeof(*fh) + bytes);
	_cleanup_free_ char *path = NULL;
	char link[64];

	if (mfd < 0 || !fh || strlen(hex) < 2 * bytes)
		return NULL;
	fh->handle_bytes = bytes;
	fh->handle_type = type;
	for (unsigned i = 0; i < bytes; i++)
		sscanf(hex + 2 * i, "%2hhx", &fh->f_handle[i]);
	fd = open_by_handle_at(mfd, fh, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (readlink_alloc(link, &path) || path[0] != '/' || ends_with(path, " (deleted)"))
		return NULL;
	return arena_strdup(&ctx->arena, path);
}

static int inotify_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	InotifyEntry *e = arena_new(&ctx->arena, InotifyEntry);

	if (!e)
		return -ENOMEM;
	inotify_entry__init(e);
	e->flags = p->flags;
	for (const char *l = fdinfo_field(p->fdinfo, "inotify wd:"); l; l = fdinfo_field(l, "inotify wd:")) {
		InotifyWatch *w = arena_new(&ctx->arena, InotifyWatch);
		unsigned wd, sdev, mask, bytes;
		unsigned long ino;
		char hex[260];
		int type;

		if (!w)
			return -ENOMEM;
		if (sscanf(l, "%x ino:%lx sdev:%x mask:%x ignored_mask:%*x fhandle-bytes:%x fhandle-type:%x f_handle:%259s",
			   &wd, &ino, &sdev, &mask, &bytes, &type, hex) != 7) {
			pr_err("pid %d fd %d: cannot parse an inotify watch in its fdinfo", p->pid, p->fd);
			return -EINVAL;
		}
		inotify_watch__init(w);
		w->wd = wd;
		w->mask = mask;
		w->path = handle_path(ctx, sdev, bytes, type, hex);
		if (!w->path) {
			pr_err("pid %d fd %d: inotify watch %u: cannot find the path of inode %lu on device %u:%u%s",
			       p->pid, p->fd, wd, ino, sdev >> 20, sdev & 0xfffff,
			       errno == EPERM ? " (finding it by handle needs CAP_DAC_READ_SEARCH)" : "");
			return -ENOTSUP;
		}
		e->watches = arena_grow(&ctx->arena, e->watches, e->n_watches, sizeof(*e->watches));
		if (!e->watches)
			return -ENOMEM;
		e->watches[e->n_watches++] = w;
	}
	fe->inotify = e;
	return 0;
}

static int cmp_wd(const void *a, const void *b)
{
	const InotifyWatch *x = *(InotifyWatch *const *)a, *y = *(InotifyWatch *const *)b;

	return (x->wd > y->wd) - (x->wd < y->wd);
}

/* add watch w to fd under its own number */
static int add_watch(int fd, pid_t pid, int fdnum, const InotifyWatch *w)
{
	char what[64], path[32];
	_cleanup_close_ int target = -1;

	/* resolved by the door, then watched through its fd (no final symlink followed if not to be) */
	snprintf(what, sizeof(what), "pid %d fd %d: watch", pid, fdnum);
	target = files_open_path(w->path, O_PATH | ((w->mask & IN_DONT_FOLLOW) ? O_NOFOLLOW : 0) |
				 ((w->mask & IN_ONLYDIR) ? O_DIRECTORY : 0), what);
	if (target < 0)
		return -EBUSY;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", target);
	for (int tries = 0; tries < MAX_WD_TRIES; tries++) {
		int wd = inotify_add_watch(fd, path, w->mask & ~(IN_DONT_FOLLOW | IN_ONLYDIR));

		if (wd < 0)
			return pr_perror("pid %d fd %d: cannot watch %s (mask %#x)", pid, fdnum, w->path, w->mask);
		if (wd == (int)w->wd)
			return 0;
		if (wd > (int)w->wd)
			break;
		inotify_rm_watch(fd, wd);
	}
	pr_err("pid %d fd %d: cannot get watch number %u back for %s", pid, fdnum, w->wd, w->path);
	return -EBUSY;
}

static int inotify_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	InotifyEntry *e = fe->inotify;
	char buf[4096];
	int fd;

	if (!e) {
		pr_err("files.img: entry %u is an inotify without its details", fe->id);
		return -EINVAL;
	}
	fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (fd < 0)
		return pr_perror("pid %d fd %d: inotify_init1", pid, fdnum);
	qsort(e->watches, e->n_watches, sizeof(*e->watches), cmp_wd);
	for (size_t i = 0; i < e->n_watches; i++)
		if (add_watch(fd, pid, fdnum, e->watches[i])) {
			close(fd);
			return -EBUSY;
		}
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	if (fcntl(fd, F_SETFL, e->flags & O_NONBLOCK)) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot set the inotify's flags", pid, fdnum);
	}
	return fd;
}

/* files.img: each watched path */
static int inotify_validate(const FileEntry *fe, const char *where)
{
	int ret = 0;

	for (size_t i = 0; fe->inotify && !ret && i < fe->inotify->n_watches; i++)
		ret = door_abspath(fe->inotify->watches[i]->path, DOOR_PATH_MAX, "%s: inotify.watches[%zu].path",
				   where, i);
	return ret;
}

const struct fd_kind_ops inotify_fd_ops = {
	.kind = FD_KIND__INOTIFY,
	.name = "inotify",
	.match = inotify_match,
	.dump = inotify_dump,
	.validate = inotify_validate,
	.open = inotify_open,
};
