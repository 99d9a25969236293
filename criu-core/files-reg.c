/*
 * Regular files and directories, reopened by path at their offset; a
 * regular file must have the size and modification time it had at the
 * dump, unless the task only writes to it. Files with no path to reopen (memfds, deleted files) are dumped
 * with their bytes by memfd.c and reopened from the file it makes again.
 * O_PATH fds of any kind of file are reopened by path, and files under
 * /proc/PID of the tree's processes once those exist.
 */
#define LOG_PREFIX "files-reg: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool reg_match(const struct fd_parms *p)
{
	return S_ISREG(p->st.st_mode) || S_ISDIR(p->st.st_mode) || (p->flags & O_PATH);
}

/* the pid of a /proc/PID path, or 0 */
static pid_t proc_path_pid(const char *path)
{
	char *end;
	long pid;

	if (strncmp(path, "/proc/", 6))
		return 0;
	pid = strtol(path + 6, &end, 10);
	return end != path + 6 && (*end == '/' || !*end) ? pid : 0;
}

static int reg_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	RegFileEntry *r = arena_new(&ctx->arena, RegFileEntry);
	pid_t ppid = proc_path_pid(p->link);
	int ret;

	if (!r)
		return -ENOMEM;
	reg_file_entry__init(r);
	if (!(p->flags & O_PATH) && memfd_handles(p->link)) {
		r->has_memfd_id = true;
		if ((ret = memfd_dump_fd(ctx, p->pid, p->fd, p->link, &r->memfd_id)))
			return ret;
	} else if (p->link[0] != '/' || ends_with(p->link, " (deleted)")) {
		pr_err("pid %d fd %d: cannot dump file '%s': not a path", p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	if (ppid && !dump_find_task(ctx, ppid)) {
		pr_err("pid %d fd %d: %s is a file of pid %d, outside the dump", p->pid, p->fd, p->link, ppid);
		return -ENOTSUP;
	}
	r->path = arena_strdup(&ctx->arena, p->link);
	r->flags = p->flags;
	r->pos = p->pos;
	r->mode = p->st.st_mode;
	r->has_size = r->has_dev = r->has_ino = true;
	r->size = p->st.st_size;
	r->dev = p->st.st_dev;
	r->ino = p->st.st_ino;
	if (S_ISREG(p->st.st_mode) && !ppid) {
		r->has_mtime_ns = true;
		r->mtime_ns = p->st.st_mtim.tv_sec * 1000000000LL + p->st.st_mtim.tv_nsec;
	}
	fe->reg = r;
	return 0;
}

static bool reg_needs_tree(const FileEntry *fe)
{
	return fe->reg && proc_path_pid(fe->reg->path);
}

/*
 * Is the file at path still the one dumped? A changed file the task may
 * read is refused; one it only writes (a log) is let through with a warning.
 */
static int check_same(const RegFileEntry *r, int fd, pid_t pid, int fdnum)
{
	bool only_writes = (r->flags & O_ACCMODE) == O_WRONLY;
	char why[96] = "";
	struct stat st;

	if (fstat(fd, &st))
		return pr_perror("pid %d fd %d: cannot stat %s", pid, fdnum, r->path);
	if ((st.st_mode & S_IFMT) != (r->mode & S_IFMT)) {
		pr_err("pid %d fd %d: %s is no longer a %s", pid, fdnum, r->path,
		       S_ISDIR(r->mode) ? "directory" : S_ISREG(r->mode) ? "regular file" : "file of its kind");
		return -ESTALE;
	}
	if (!r->has_mtime_ns)
		return 0;
	if (r->has_size && (uint64_t)st.st_size != r->size)
		snprintf(why, sizeof(why), "%lu bytes, not %lu", (unsigned long)st.st_size, r->size);
	else if (st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec != r->mtime_ns)
		snprintf(why, sizeof(why), "it was modified after it");
	if (!why[0])
		return 0;
	if (only_writes) {
		pr_warn("pid %d fd %d: %s has changed since the dump (%s); it only writes to it", pid, fdnum,
			r->path, why);
		return 0;
	}
	pr_err("pid %d fd %d: %s has changed since the dump: %s", pid, fdnum, r->path, why);
	return -ESTALE;
}

static int reg_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const RegFileEntry *r = fe->reg;
	char path[64];
	int fd;

	if (!r) {
		pr_err("files.img: entry %u is a regular file without its details", fe->id);
		return -EINVAL;
	}
	if (r->has_memfd_id) {
		int mfd = memfd_get(ctx, r->memfd_id);

		if (mfd < 0)
			return mfd;
		/* a description of its own, with its own flags */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
		fd = open(path, (r->flags & ~(O_CREAT | O_TRUNC | O_EXCL)) | O_NOCTTY);
		if (fd < 0)
			return pr_perror("pid %d fd %d: cannot open %s again", pid, fdnum, r->path);
	} else {
		char what[64];

		/* in the container's root, or the host's files of a process of the host (files_open_path) */
		snprintf(what, sizeof(what), "pid %d fd %d: file", pid, fdnum);
		fd = files_open_path(r->path, r->flags | O_NOCTTY, what);
		if (fd < 0)
			return fd;
		if (check_same(r, fd, pid, fdnum)) {
			close(fd);
			return -ESTALE;
		}
	}
	if (r->pos && !(r->flags & O_PATH) && lseek(fd, r->pos, SEEK_SET) != (off_t)r->pos) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot seek %s to %lu", pid, fdnum, r->path, r->pos);
	}
	return fd;
}

/* files.img: a regular file's path (that of one a memfd stands for is only shown, never opened) */
static int reg_validate(const FileEntry *fe, const char *where)
{
	if (!fe->reg || fe->reg->has_memfd_id)
		return 0;
	return door_abspath(fe->reg->path, DOOR_PATH_MAX, "%s: reg.path", where);
}

static int reg_key(const FileEntry *fe, char *buf, size_t len)
{
	if (!fe->reg || fe->reg->has_memfd_id)
		return -1;
	snprintf(buf, len, "%s", fe->reg->path);
	return 0;
}

const struct fd_kind_ops reg_fd_ops = {
	.kind = FD_KIND__REG,
	.name = "regular file",
	.match = reg_match,
	.dump = reg_dump,
	.validate = reg_validate,
	.needs_tree = reg_needs_tree,
	.open = reg_open,
	.key = reg_key,
};
