/*
 * Character devices that carry no state worth saving (/dev/null, /dev/zero,
 * /dev/urandom, ...): reopened by path, checked to be the same device.
 * Terminals are tty.c's.
 */
#define LOG_PREFIX "files-chr: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/sysmacros.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

/* mem (1:x) devices and the like; others are refused rather than guessed */
static bool chr_stateless(dev_t rdev)
{
	unsigned maj = major(rdev), min = minor(rdev);

	if (maj == 1)	/* null, zero, full, random, urandom, kmsg... */
		return min == 3 || min == 5 || min == 7 || min == 8 || min == 9;
	return false;
}

static bool chr_match(const struct fd_parms *p)
{
	return S_ISCHR(p->st.st_mode) && chr_stateless(p->st.st_rdev);
}

static int chr_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	DevFileEntry *d = arena_new(&ctx->arena, DevFileEntry);

	if (!d)
		return -ENOMEM;
	dev_file_entry__init(d);
	d->path = arena_strdup(&ctx->arena, p->link);
	d->flags = p->flags;
	d->rdev = p->st.st_rdev;
	fe->dev = d;
	return 0;
}

static int chr_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const DevFileEntry *d = fe->dev;
	char what[64];
	struct stat st;
	int fd;

	if (!d) {
		pr_err("files.img: entry %u is a device without its details", fe->id);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "pid %d fd %d: device", pid, fdnum);
	fd = files_open_path(d->path, d->flags | O_NOCTTY, what);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != d->rdev) {
		pr_err("pid %d fd %d: %s is not device %u:%u any more", pid, fdnum, d->path,
		       major(d->rdev), minor(d->rdev));
		close(fd);
		return -ESTALE;
	}
	return fd;
}

static int chr_validate(const FileEntry *fe, const char *where)
{
	return fe->dev ? door_abspath(fe->dev->path, DOOR_PATH_MAX, "%s: dev.path", where) : 0;
}

const struct fd_kind_ops chr_fd_ops = {
	.kind = FD_KIND__CHR,
	.name = "character device",
	.match = chr_match,
	.dump = chr_dump,
	.validate = chr_validate,
	.open = chr_open,
};
