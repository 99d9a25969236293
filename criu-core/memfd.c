/*
 * memfd files and shared anonymous memory behind mappings. Neither has a
 * path to reopen: the bytes go into memfd-<id>.img (holes left out), name,
 * size and seals into memfds.img, once per file however many VMAs of
 * however many tasks map it. cryo creates each one again (memfd_create, or
 * a MAP_SHARED|MAP_ANONYMOUS mapping opened through map_files) before the
 * tree is forked, refills it, and every VMA of every task maps that one
 * file, so mappings that shared it still do; the seals go on once all the
 * tasks have mapped it.
 */
#define LOG_PREFIX "memfd: "
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "compat.h"
#include "crc32c.h"
#include "door.h"
#include "dump.h"
#include "log.h"
#include "restore.h"
#include "validate.h"

#define MEMFD_PREFIX	"/memfd:"
#define DELETED		" (deleted)"
#define COPY_CHUNK	(1UL << 20)

bool memfd_is_mapping(const char *path)
{
	return !strncmp(path, MEMFD_PREFIX, strlen(MEMFD_PREFIX));
}

bool memfd_handles(const char *path)
{
	return memfd_is_mapping(path) || (path[0] == '/' && ends_with(path, DELETED));
}

/* ------------------------------------------------------------------ dump */

/* copy the data ranges of fd into the data image; one chunk per range piece */
static int copy_data(struct dump_ctx *ctx, int fd, MemfdEntry *m, const char *what)
{
	struct img *data = img_create(ctx->dirfd, IMG_MEMFD_DATA, m->id);
	_cleanup_free_ char *buf = malloc(COPY_CHUNK);
	off_t off = 0;
	int ret = 0;

	if (!data || !buf) {
		if (data)
			img_close(data);
		return data ? -ENOMEM : -EIO;
	}
	while (!ret && (uint64_t)off < m->size) {
		off_t start = lseek(fd, off, SEEK_DATA), end;

		if (start < 0) {
			if (errno != ENXIO)	/* ENXIO: no data after off */
				ret = pr_perror("%s: SEEK_DATA", what);
			break;
		}
		end = lseek(fd, start, SEEK_HOLE);
		if (end < 0) {
			ret = pr_perror("%s: SEEK_HOLE", what);
			break;
		}
		for (off = start; !ret && off < end;) {
			size_t n = MIN((size_t)(end - off), COPY_CHUNK);
			MemfdChunk *c = arena_new(&ctx->arena, MemfdChunk);
			MemfdChunk **nv = xrealloc_array(m->chunks, m->n_chunks + 1, sizeof(*nv));

			if (!c || !nv) {
				ret = -ENOMEM;
				break;
			}
			m->chunks = nv;
			memfd_chunk__init(c);
			if (pread(fd, buf, n, off) != (ssize_t)n) {
				ret = pr_perror("%s: cannot read %zu bytes at %ld", what, n, (long)off);
				break;
			}
			if ((ret = write_all(data->fd, buf, n))) {
				pr_err("%s: cannot write memfd-%u.img: %s", what, m->id, strerror(-ret));
				break;
			}
			c->offset = off;
			c->len = n;
			c->crc32c = crc32c(0, buf, n);
			m->chunks[m->n_chunks++] = c;
			off += n;
		}
	}
	return img_close(data) ?: ret;
}

/*
 * The object behind "open", which is /proc/PID/map_files/A-B or
 * /proc/PID/fd/N, dumped once: its id in memfds.img.
 */
static int dump_object(struct dump_ctx *ctx, const char *open_path, const char *path, bool anon,
		       const char *what, uint32_t *id)
{
	struct dump_memfd *nv;
	struct stat st;
	int fd, ret, seals = 0;
	MemfdEntry *m;

	if (stat(open_path, &st))
		return pr_perror("%s: cannot stat the file behind it", what);
	for (size_t i = 0; i < ctx->nr_memfds; i++)
		if (ctx->memfds[i].dev == st.st_dev && ctx->memfds[i].ino == st.st_ino) {
			*id = ctx->memfds[i].e->id;
			return 0;
		}
	fd = open(open_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("%s: cannot open the file behind it", what);
	m = arena_new(&ctx->arena, MemfdEntry);
	nv = xrealloc_array(ctx->memfds, ctx->nr_memfds + 1, sizeof(*nv));
	if (!m || !nv) {
		close(fd);
		return -ENOMEM;
	}
	ctx->memfds = nv;
	memfd_entry__init(m);
	m->id = ctx->nr_memfds + 1;
	if (anon) {
		m->name = arena_strdup(&ctx->arena, "");
		m->has_anon = m->anon = true;
	} else if (memfd_is_mapping(path)) {
		m->name = arena_strdup(&ctx->arena, path + strlen(MEMFD_PREFIX));
		if (ends_with(m->name, DELETED))
			m->name[strlen(m->name) - strlen(DELETED)] = 0;
	} else {
		/* a deleted file: its name (without " (deleted)") and mode */
		m->name = arena_strdup(&ctx->arena, path);
		m->name[strlen(path) - strlen(DELETED)] = 0;
		m->has_deleted = m->deleted = true;
		m->has_mode = true;
		m->mode = st.st_mode & 07777;
	}
	/* shared anonymous memory cannot be sealed: no seals to keep */
	if (fstat(fd, &st)) {
		ret = pr_perror("%s: fstat", what);
	} else if (!anon && memfd_is_mapping(path) && (seals = fcntl(fd, F_GET_SEALS)) < 0) {
		ret = pr_perror("%s: cannot read its seals", what);
	} else {
		m->size = st.st_size;
		m->seals = seals;
		ret = copy_data(ctx, fd, m, what);
	}
	close(fd);
	if (ret)
		return ret;
	ctx->memfds[ctx->nr_memfds++] = (struct dump_memfd){ st.st_dev, st.st_ino, m };
	*id = m->id;
	pr_debug("%s: %s %u, %lu bytes, %zu chunks, seals %#x", what,
		 anon ? "shmem" : m->deleted ? "deleted file" : "memfd", m->id, m->size, m->n_chunks, m->seals);
	return 0;
}

int memfd_dump_vma(struct dump_ctx *ctx, pid_t pid, const VmaEntry *v, uint32_t *id)
{
	bool anon = v->kind == VMA_KIND__ANON_SHARED;
	char mf[96], what[128 + PATH_MAX_LEN];

	snprintf(what, sizeof(what), "pid %d: VMA %lx-%lx (%s)", pid, v->start, v->end,
		 anon ? "shared anonymous memory" : v->path);
	snprintf(mf, sizeof(mf), "/proc/%d/map_files/%lx-%lx", pid, v->start, v->end);
	return dump_object(ctx, mf, v->path, anon, what, id);
}

int memfd_dump_fd(struct dump_ctx *ctx, pid_t pid, int fd, const char *link, uint32_t *id)
{
	char path[64], what[64 + PATH_MAX_LEN];

	snprintf(what, sizeof(what), "pid %d fd %d (%s)", pid, fd, link);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
	return dump_object(ctx, path, link, false, what, id);
}

int memfd_write(struct dump_ctx *ctx)
{
	struct img *img;
	int ret = 0;

	if (!ctx->nr_memfds)
		return 0;
	img = img_create(ctx->dirfd, IMG_MEMFDS, 0);
	if (!img)
		return -EIO;
	for (size_t i = 0; i < ctx->nr_memfds && !ret; i++)
		ret = img_write(img, &ctx->memfds[i].e->base);
	return img_close(img) ?: ret;
}

/* --------------------------------------------------------------- restore */

/*
 * The chunks of m against memfd-ID.img (size bytes): each inside the memfd
 * and after the one before, and together exactly the bytes of the image.
 */
static int check_chunks(const MemfdEntry *m, int64_t size)
{
	uint64_t end = 0, bytes = 0;

	for (size_t i = 0; i < m->n_chunks; i++) {
		const MemfdChunk *c = m->chunks[i];

		if (!c->len || c->len > COPY_CHUNK || c->offset > m->size || c->len > m->size - c->offset ||
		    c->offset < end) {
			pr_err("memfds.img: memfd %u chunk %zu (%lu bytes at %lu) is out of bounds, out of order or overlaps the one before",
			       m->id, i, c->len, c->offset);
			return -EINVAL;
		}
		end = c->offset + c->len;
		bytes += c->len;
	}
	if ((uint64_t)size != IMG_PAGES_HDR_LEN + bytes) {
		pr_err("memfd-%u.img is %s: %ld bytes, memfds.img accounts for %lu", m->id,
		       (uint64_t)size < IMG_PAGES_HDR_LEN + bytes ? "truncated" : "longer than memfds.img says",
		       (long)size, (unsigned long)(IMG_PAGES_HDR_LEN + bytes));
		return -EINVAL;
	}
	return 0;
}

static int fill_memfd(struct restore_ctx *ctx, const MemfdEntry *m, int fd)
{
	struct img *data = img_open_pre(&ctx->pre_imgs, ctx->dirfd, IMG_MEMFD_DATA, m->id, false);
	_cleanup_free_ char *buf = malloc(COPY_CHUNK);
	uint64_t off = IMG_PAGES_HDR_LEN;
	struct stat st;
	int ret = 0;

	if (!data || !buf) {
		if (data)
			img_close(data);
		return data ? -ENOMEM : -EIO;
	}
	if (fstat(data->fd, &st))
		ret = pr_perror("memfd-%u.img: cannot stat it", m->id);
	else
		ret = check_chunks(m, st.st_size);
	for (size_t i = 0; i < m->n_chunks && !ret; i++) {
		const MemfdChunk *c = m->chunks[i];

		if ((ret = pread_all(data->fd, buf, c->len, off))) {
			if (ret == -ENODATA)
				pr_err("memfd-%u.img is truncated: chunk %zu is missing", m->id, i);
			else
				pr_err("memfd-%u.img: cannot read chunk %zu: %s", m->id, i, strerror(-ret));
		} else if (crc32c(0, buf, c->len) != c->crc32c) {
			pr_err("memfd-%u.img is corrupted: checksum mismatch in chunk %zu", m->id, i);
			ret = -EINVAL;
		} else if (pwrite(fd, buf, c->len, c->offset) != (ssize_t)c->len) {
			ret = pr_perror("memfd %s: cannot write %lu bytes", m->name, c->len);
		}
		off += c->len;
	}
	img_close(data);
	return ret;
}

/*
 * The file behind MAP_SHARED|MAP_ANONYMOUS memory ("/dev/zero (deleted)"
 * in the maps) has no other way in than map_files: make one, open it.
 */
static int create_shmem(uint64_t size)
{
	char mf[96];
	void *p;
	int fd;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return pr_perror("cannot create %lu bytes of shared anonymous memory", size);
	snprintf(mf, sizeof(mf), "/proc/self/map_files/%lx-%lx", (unsigned long)p,
		 (unsigned long)p + PAGE_ALIGN(size));
	fd = open(mf, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fd = pr_perror("cannot open the shared anonymous memory through %s", mf);
	munmap(p, size);
	return fd;
}

/*
 * memfds.img: a memfd's name as memfd_create(2) takes it, a deleted file's
 * path (where it is made again for a moment), none for shared memory.
 */
int memfd_validate_entry(const MemfdEntry *e, const char *where)
{
	if (e->deleted)
		return door_abspath(e->name, DOOR_PATH_MAX, "%s: name", where);
	return door_text(e->name, 249, "%s: name", where);
}

static int check_memfd(const ProtobufCMessage *m, const char *where)
{
	return memfd_validate_entry((const MemfdEntry *)m, where);
}

int memfd_validate(const struct restore_ctx *ctx)
{
	return validate_image(ctx->dirfd, IMG_MEMFDS, 0, true, check_memfd);
}

/*
 * A deleted file comes back as a file of its name, unlinked once open; if
 * the name is taken again, under a name next to it. In the root: a
 * container's file in its root (absolute symlinks inside it); a host
 * process's on the host, whose file it was.
 */
static int create_deleted(const MemfdEntry *m)
{
	char name[DOOR_NAME_MAX + 1];
	const char *last;
	_cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), dir = -1;
	int fd;

	if (root < 0)
		return pr_perror("cannot open the root directory");
	dir = door_parent_how(root, m->name, DOOR_IN_ROOT, &last, "deleted file");
	if (dir < 0)
		return dir;
	snprintf(name, sizeof(name), "%s", last);
	fd = openat(dir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, m->mode);
	for (int i = 1; fd < 0 && errno == EEXIST && i < 100; i++) {
		if (snprintf(name, sizeof(name), "%.*s.cryo-%u-%d", DOOR_NAME_MAX - 24, last, m->id, i) >=
		    (int)sizeof(name))
			break;
		fd = openat(dir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, m->mode);
	}
	if (fd < 0)
		return pr_perror("deleted file %s: cannot create it again", m->name);
	if (unlinkat(dir, name, 0) || fchmod(fd, m->mode)) {
		close(fd);
		return pr_perror("deleted file %s: cannot unlink %s", m->name, name);
	}
	return fd;
}

int memfd_restore(struct restore_ctx *ctx)
{
	struct img *img = img_open_pre(&ctx->pre_imgs, ctx->dirfd, IMG_MEMFDS, 0, true);
	ProtobufCMessage *msg;
	int ret;

	if (!img)
		return errno == ENOENT ? 0 : -EIO;
	while ((ret = img_read(img, &msg)) == 1) {
		MemfdEntry *m = (MemfdEntry *)msg;
		struct rst_memfd *nv = xrealloc_array(ctx->memfds, ctx->nr_memfds + 1, sizeof(*nv));
		int fd;

		if (!nv) {
			img_free_msg(IMG_MEMFDS, msg);
			ret = -ENOMEM;
			break;
		}
		ctx->memfds = nv;
		fd = m->anon ? create_shmem(m->size) : m->deleted ? create_deleted(m)
			     : memfd_create(m->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0) {
			ret = m->anon || m->deleted ? fd : pr_perror("cannot create memfd %s", m->name);
		} else if (!m->anon && ftruncate(fd, m->size)) {
			ret = pr_perror("%s %s: cannot make it %lu bytes", m->deleted ? "deleted file" : "memfd",
					m->name, m->size);
		} else {
			ret = fill_memfd(ctx, m, fd);
		}
		ctx->memfds[ctx->nr_memfds++] = (struct rst_memfd){ m->id, fd, m->seals };
		img_free_msg(IMG_MEMFDS, msg);
		if (ret)
			break;
	}
	img_close(img);
	return ret < 0 ? ret : 0;
}

int memfd_get(struct restore_ctx *ctx, uint32_t id)
{
	for (size_t i = 0; i < ctx->nr_memfds; i++)
		if (ctx->memfds[i].id == id)
			return ctx->memfds[i].fd;
	pr_err("mm image: a VMA maps memfd %u, which memfds.img does not have", id);
	return -EINVAL;
}

/* once every task has mapped them: a sealed memfd could not be mapped writable any more */
int memfd_seal(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_memfds; i++) {
		struct rst_memfd *m = &ctx->memfds[i];

		if (m->seals && fcntl(m->fd, F_ADD_SEALS, m->seals))
			return pr_perror("memfd %u: cannot add seals %#x", m->id, m->seals);
	}
	return 0;
}

void memfd_close_all(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_memfds; i++)
		if (ctx->memfds[i].fd >= 0)
			close(ctx->memfds[i].fd);
	free(ctx->memfds);
	ctx->memfds = NULL;
	ctx->nr_memfds = 0;
}
