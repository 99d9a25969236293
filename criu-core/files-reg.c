/* Regular files and directories: reopened by path at their offset. */
#define LOG_PREFIX "files-reg: "
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool reg_match(const struct fd_parms *p)
{
	return S_ISREG(p->st.st_mode) || S_ISDIR(p->st.st_mode);
}

static int reg_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	RegFileEntry *r = arena_new(&ctx->arena, RegFileEntry);
	size_t len = strlen(p->link);

	if (!r)
		return -ENOMEM;
	if (len > 10 && !strcmp(p->link + len - 10, " (deleted)")) {
		pr_err("pid %d fd %d: file %s was deleted: not supported yet", p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	if (p->link[0] != '/') {
		pr_err("pid %d fd %d: cannot dump file '%s': not a path", p->pid, p->fd, p->link);
		return -ENOTSUP;
	}
	reg_file_entry__init(r);
	r->path = arena_strdup(&ctx->arena, p->link);
	r->flags = p->flags;
	r->pos = p->pos;
	r->mode = p->st.st_mode;
	r->has_size = r->has_dev = r->has_ino = true;
	r->size = p->st.st_size;
	r->dev = p->st.st_dev;
	r->ino = p->st.st_ino;
	fe->reg = r;
	return 0;
}

static int reg_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const RegFileEntry *r = fe->reg;
	struct stat st;
	int fd;

	if (!r) {
		pr_err("files.img: entry %u is a regular file without its details", fe->id);
		return -EINVAL;
	}
	fd = open(r->path, r->flags | O_NOCTTY);
	if (fd < 0)
		return pr_perror("pid %d fd %d: cannot open %s", pid, fdnum, r->path);
	if (fstat(fd, &st)) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot stat %s", pid, fdnum, r->path);
	}
	if ((st.st_mode & S_IFMT) != (r->mode & S_IFMT)) {
		pr_err("pid %d fd %d: %s is no longer a %s", pid, fdnum, r->path,
		       S_ISDIR(r->mode) ? "directory" : "regular file");
		close(fd);
		return -ESTALE;
	}
	if (r->pos && !(r->flags & O_PATH) && lseek(fd, r->pos, SEEK_SET) != (off_t)r->pos) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot seek %s to %lu", pid, fdnum, r->path, r->pos);
	}
	return fd;
}

const struct fd_kind_ops reg_fd_ops = {
	.kind = FD_KIND__REG,
	.name = "regular file",
	.match = reg_match,
	.dump = reg_dump,
	.open = reg_open,
};
