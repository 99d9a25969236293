/*
 * Pipes and FIFOs: each end an open file description, the pipe itself (its
 * size and the bytes queued in it) shared by both.
 *
 * Dump: the queued bytes are copied without taking them out: a read end is
 * opened through /proc/PID/fd/N and tee(2) duplicates the pipe's contents
 * into a pipe of cryo's own, which is then read. The first description of
 * each pipe carries its size and bytes in files.img. A pipe whose other
 * end only a process outside the dump holds (a runtime's stdio pipe) is
 * external: its bytes stay in it, and the restore needs the pipe to use
 * (--inherit-fd fd[N]:pipe:[INODE]).
 *
 * Restore: cryo creates each pipe once, sizes it, writes the bytes back,
 * and hands out its ends (a further description of the same end is a
 * fresh open of /proc/self/fd/N). An end no task holds is closed when cryo
 * lets go of its copies: its readers see EOF, as after the dump. A FIFO is
 * opened by its path instead, once read-write by cryo to hold the pipe
 * while the bytes go in, and by each description with its own flags.
 */
#define LOG_PREFIX "files-pipe: "
#include <dirent.h>
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

static bool pipe_match(const struct fd_parms *p)
{
	return S_ISFIFO(p->st.st_mode) && (!strncmp(p->link, "pipe:[", 6) || p->link[0] == '/');
}

/* the bytes queued in the pipe behind pid's fd, left in place */
static int peek_pipe(const struct fd_parms *p, size_t size, ProtobufCBinaryData *out, struct arena *a)
{
	char path[64];
	int rfd, cp[2] = { -1, -1 }, ret = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", p->pid, p->fd);
	rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rfd < 0)
		return pr_perror("pid %d fd %d (%s): cannot open it for reading its data", p->pid, p->fd,
				 p->link);
	if (pipe2(cp, O_CLOEXEC | O_NONBLOCK) || fcntl(cp[1], F_SETPIPE_SZ, size) < (int)size) {
		ret = pr_perror("pid %d fd %d (%s): cannot make a %zu-byte pipe to copy its data", p->pid,
				p->fd, p->link, size);
		goto out;
	}
	n = tee(rfd, cp[1], size, SPLICE_F_NONBLOCK);
	if (n < 0 && errno != EAGAIN) {
		ret = pr_perror("pid %d fd %d (%s): tee", p->pid, p->fd, p->link);
		goto out;
	}
	out->len = n > 0 ? n : 0;
	out->data = arena_alloc(a, out->len + 1);
	if (!out->data) {
		ret = -ENOMEM;
		goto out;
	}
	if (out->len && read(cp[0], out->data, out->len) != (ssize_t)out->len)
		ret = pr_perror("pid %d fd %d (%s): reading its data back", p->pid, p->fd, p->link);
out:
	close(rfd);
	if (cp[0] >= 0) {
		close(cp[0]);
		close(cp[1]);
	}
	return ret;
}

static bool pipe_seen(struct dump_ctx *ctx, uint64_t ino)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const FileEntry *fe = ctx->file_entries[i];

		if (fe->kind == FD_KIND__PIPE && fe->pipe->pipe_id == ino)
			return true;
	}
	return false;
}

static int pipe_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	PipeFileEntry *pe = arena_new(&ctx->arena, PipeFileEntry);
	int size;

	if (!pe)
		return -ENOMEM;
	pipe_file_entry__init(pe);
	pe->pipe_id = p->st.st_ino;
	pe->flags = p->flags;
	fe->pipe = pe;
	if (p->link[0] == '/') {
		if (ends_with(p->link, " (deleted)")) {
			pr_err("pid %d fd %d: FIFO %s was deleted: not supported", p->pid, p->fd, p->link);
			return -ENOTSUP;
		}
		pe->fifo = arena_strdup(&ctx->arena, p->link);
	}
	if (pipe_seen(ctx, p->st.st_ino))
		return 0;
	size = fcntl(p->lfd, F_GETPIPE_SZ);
	if (size < 0)
		return pr_perror("pid %d fd %d (%s): F_GETPIPE_SZ", p->pid, p->fd, p->link);
	pe->has_size = pe->has_data = true;
	pe->size = size;
	return peek_pipe(p, size, &pe->data, &ctx->arena);
}

/* does a process outside the dump hold pipe ino? */
static pid_t held_outside(struct dump_ctx *ctx, uint64_t ino)
{
	DIR *proc = opendir("/proc");
	char want[40];
	struct dirent *e;
	pid_t found = 0;

	snprintf(want, sizeof(want), "pipe:[%lu]", (unsigned long)ino);
	while (proc && !found && (e = readdir(proc))) {
		pid_t pid = atoi(e->d_name);
		char dir[64], link[64];
		struct dirent *f;
		DIR *fds;

		if (pid <= 0 || pid == getpid() || dump_find_task(ctx, pid))
			continue;
		snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
		fds = opendir(dir);
		while (fds && !found && (f = readdir(fds))) {
			char path[sizeof(dir) + sizeof(f->d_name)];
			ssize_t n;

			snprintf(path, sizeof(path), "%s/%s", dir, f->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n > 0) {
				link[n] = 0;
				found = strcmp(link, want) ? 0 : pid;
			}
		}
		if (fds)
			closedir(fds);
	}
	if (proc)
		closedir(proc);
	return found;
}

/*
 * Every pipe with only one end in the dump: a process outside holding the
 * other (a runtime's stdio pipes) makes it external. Its bytes stay in the
 * pipe, which the restore is handed with --inherit-fd.
 */
static int pipe_dump_done(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		FileEntry *fe = ctx->file_entries[i];
		bool ends[2] = { false, false };
		pid_t other;

		/* a FIFO can be opened by anyone: only anonymous pipes need both ends */
		if (fe->kind != FD_KIND__PIPE || !fe->pipe->has_size || fe->pipe->fifo)
			continue;
		for (size_t j = 0; j < ctx->nr_files; j++) {
			const FileEntry *o = ctx->file_entries[j];

			if (o->kind == FD_KIND__PIPE && o->pipe->pipe_id == fe->pipe->pipe_id)
				ends[(o->pipe->flags & O_ACCMODE) != O_RDONLY] = true;
		}
		if (ends[0] && ends[1])
			continue;
		other = held_outside(ctx, fe->pipe->pipe_id);
		if (!other)
			continue;
		pr_info("pipe:[%lu]: its %s end is held by pid %d, outside the dump: external",
			(unsigned long)fe->pipe->pipe_id, ends[0] ? "write" : "read", other);
		fe->pipe->has_data = false;
		for (size_t j = 0; j < ctx->nr_files; j++) {
			FileEntry *o = ctx->file_entries[j];

			if (o->kind == FD_KIND__PIPE && o->pipe->pipe_id == fe->pipe->pipe_id)
				o->pipe->has_external = o->pipe->external = true;
		}
	}
	return 0;
}

/* ------------------------------------------------------------- restore */

struct rst_pipe {
	uint64_t id;
	int fds[2];
	bool given[2];		/* the end's own description is taken */
	bool fifo;		/* fds are cryo's hold on a FIFO */
};

static struct rst_pipe *find_pipe(struct restore_ctx *ctx, uint64_t id)
{
	for (size_t i = 0; i < ctx->nr_pipes; i++)
		if (ctx->pipes[i].id == id)
			return &ctx->pipes[i];
	return NULL;
}

/* cryo's hold on a FIFO: read-write, so that it never blocks */
static int open_fifo(struct rst_pipe *rp, const char *path)
{
	struct stat st;

	rp->fds[0] = files_open_path(path, O_RDWR | O_NONBLOCK | O_CLOEXEC, "FIFO");
	if (rp->fds[0] < 0)
		return rp->fds[0];
	if (fstat(rp->fds[0], &st) || !S_ISFIFO(st.st_mode)) {
		pr_err("FIFO %s: it is not a FIFO any more", path);
		close(rp->fds[0]);
		return -ESTALE;
	}
	rp->fds[1] = fcntl(rp->fds[0], F_DUPFD_CLOEXEC, 0);
	if (rp->fds[1] < 0) {
		close(rp->fds[0]);
		return pr_perror("FIFO %s: dup", path);
	}
	rp->fifo = true;
	return 0;
}

/* create pipe id once, with its size and the bytes it held */
static struct rst_pipe *make_pipe(struct restore_ctx *ctx, uint64_t id)
{
	const PipeFileEntry *data = NULL;
	struct rst_pipe *np, *rp;

	for (size_t i = 0; i < ctx->nr_files && !data; i++) {
		const FileEntry *fe = ctx->files[i];

		if (fe->kind == FD_KIND__PIPE && fe->pipe && fe->pipe->pipe_id == id && fe->pipe->has_size)
			data = fe->pipe;
	}
	if (!data) {
		pr_err("files.img: pipe:[%lu] has no entry with its size and data", (unsigned long)id);
		return NULL;
	}
	np = xrealloc_array(ctx->pipes, ctx->nr_pipes + 1, sizeof(*np));
	if (!np)
		return NULL;
	ctx->pipes = np;
	rp = &ctx->pipes[ctx->nr_pipes];
	*rp = (struct rst_pipe){ .id = id, .fds = { -1, -1 } };
	if (data->fifo) {
		if (open_fifo(rp, data->fifo))
			return NULL;
	} else if (pipe2(rp->fds, O_CLOEXEC)) {
		pr_perror("pipe:[%lu]: cannot create it", (unsigned long)id);
		return NULL;
	}
	ctx->nr_pipes++;
	if (fcntl(rp->fds[1], F_SETPIPE_SZ, data->size) < 0) {
		pr_perror("pipe:[%lu]: cannot make it %u bytes", (unsigned long)id, data->size);
		return NULL;
	}
	if (data->data.len > data->size ||
	    write(rp->fds[1], data->data.data, data->data.len) != (ssize_t)data->data.len) {
		pr_perror("pipe:[%lu]: cannot put back its %zu bytes", (unsigned long)id, data->data.len);
		return NULL;
	}
	return rp;
}

static int pipe_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const PipeFileEntry *pe = fe->pipe;
	struct rst_pipe *rp;
	int end, fd;

	if (!pe) {
		pr_err("files.img: entry %u is a pipe without its details", fe->id);
		return -EINVAL;
	}
	if (pe->external) {
		pr_err("pid %d fd %d: pipe:[%lu] led to a process outside the dump: give the pipe to connect "
		       "it to with --inherit-fd fd[N]:pipe:[%lu]", pid, fdnum, (unsigned long)pe->pipe_id,
		       (unsigned long)pe->pipe_id);
		return -ENOENT;
	}
	rp = find_pipe(ctx, pe->pipe_id) ?: make_pipe(ctx, pe->pipe_id);
	if (!rp)
		return -EIO;
	end = (pe->flags & O_ACCMODE) != O_RDONLY;
	if (pe->fifo) {
		fd = files_open_path(pe->fifo, (pe->flags & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC, "FIFO");
		if (fd < 0)
			return fd;
	} else if (!rp->given[end]) {
		rp->given[end] = true;
		fd = fcntl(rp->fds[end], F_DUPFD_CLOEXEC, 0);
	} else {
		char path[64];

		/* one more description of that end */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", rp->fds[end]);
		fd = open(path, (pe->flags & O_ACCMODE) | O_NONBLOCK | O_CLOEXEC);
	}
	if (fd < 0)
		return pr_perror("pid %d fd %d: pipe:[%lu]", pid, fdnum, (unsigned long)pe->pipe_id);
	if (fcntl(fd, F_SETFL, pe->flags & ~O_ACCMODE)) {
		close(fd);
		return pr_perror("pid %d fd %d: pipe:[%lu]: cannot set its flags %#x", pid, fdnum,
				 (unsigned long)pe->pipe_id, pe->flags);
	}
	return fd;
}

static int pipe_validate(const FileEntry *fe, const char *where)
{
	return fe->pipe && fe->pipe->fifo ? door_abspath(fe->pipe->fifo, DOOR_PATH_MAX, "%s: pipe.fifo", where) : 0;
}

static int pipe_key(const FileEntry *fe, char *buf, size_t len)
{
	if (!fe->pipe || fe->pipe->fifo)
		return -1;
	snprintf(buf, len, "pipe:[%lu]", (unsigned long)fe->pipe->pipe_id);
	return 0;
}

static void pipe_restore_done(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_pipes; i++) {
		close(ctx->pipes[i].fds[0]);
		close(ctx->pipes[i].fds[1]);
	}
	free(ctx->pipes);
	ctx->pipes = NULL;
	ctx->nr_pipes = 0;
}


const struct fd_kind_ops pipe_fd_ops = {
	.kind = FD_KIND__PIPE,
	.name = "pipe",
	.match = pipe_match,
	.dump = pipe_dump,
	.dump_done = pipe_dump_done,
	.validate = pipe_validate,
	.open = pipe_open,
	.key = pipe_key,
	.restore_done = pipe_restore_done,
};
