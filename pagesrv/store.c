/*
 * What a page-server session writes: files and symbolic links beneath its
 * directory (DIR, or DIR/ID in a migration), never anywhere else.
 *
 * Every name goes through session_name (the door and the protocol's
 * charset); a round's directory is made and opened with door_mkdirs, so
 * that no symlink is ever followed (one the session made included); a
 * file is written under a hidden name of its own, then renamed to its
 * name only if nothing has that name (RENAME_NOREPLACE): a session never
 * replaces what exists, and two sessions writing the same round cannot
 * mix their bytes. A link's target is a sibling round ("../ROUND").
 */
#define LOG_PREFIX "pagesrv: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "door.h"
#include "log.h"
#include "session.h"
#include "util.h"

static int remember(struct session *s, const char *name, bool dir)
{
	struct made *m = xrealloc_array(s->made, s->nr_made + 1, sizeof(*m));

	if (!m)
		return session_fail(s, ENOMEM, "out of memory");
	s->made = m;
	s->made[s->nr_made].name = xstrdup(name);
	s->made[s->nr_made].dir = dir;
	if (!s->made[s->nr_made].name)
		return session_fail(s, ENOMEM, "out of memory");
	s->nr_made++;
	return 0;
}

/*
 * The directory name (ROUND/LAST or LAST) goes into: ROUND made if need
 * be, opened with no symlink on the way; or the session's own directory.
 * An O_PATH fd, or the session failed; *last points into name.
 */
static int open_round(struct session *s, const char *name, const char **last)
{
	const char *slash = strchr(name, '/');
	char round[PS_NAME_MAX + 1];
	bool made = false;
	int fd;

	*last = slash ? slash + 1 : name;
	if (!slash) {
		fd = dup(s->dirfd);
		return fd >= 0 ? fd : session_fail(s, errno, "dup: %s", strerror(errno));
	}
	snprintf(round, sizeof(round), "%.*s", (int)(slash - name), name);
	fd = door_mkdirs(s->dirfd, round, 0700, &made, "peer %s: round directory", s->peer);
	if (fd < 0)
		return session_refused(s, fd);
	if (made && remember(s, round, true)) {
		close(fd);
		return -ENOMEM;
	}
	return fd;
}

/* does name exist in dir (as anything, a dangling symlink too)? */
static bool exists_at(int dir, const char *name)
{
	struct stat st;

	return !fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW);
}

/* a hidden name of its own for the file being written (no peer's name begins with '.') */
static int create_part(struct session *s, const char *name)
{
	for (int tries = 0; tries < 8; tries++) {
		uint64_t r;

		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			return session_fail(s, errno, "getrandom: %s", strerror(errno));
		snprintf(s->part, sizeof(s->part), ".part-%016lx", (unsigned long)r);
		/* O_EXCL: never through a symlink, never an existing file */
		s->fd = openat(s->fdir, s->part, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (s->fd >= 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
	return session_fail(s, errno, "cannot create a file for %s: %s", name, strerror(errno));
}

int store_file(struct session *s, const char *name, size_t len)
{
	const char *last;
	int ret;

	if (s->fd >= 0)
		return session_fail(s, EPROTO, "a file begins while %s is still open", s->name);
	if ((ret = session_name(s, name, len, 2, "file name", s->name)))
		return ret;
	s->fdir = open_round(s, s->name, &last);
	if (s->fdir < 0)
		return s->fdir;
	if (exists_at(s->fdir, last))
		return session_fail(s, EEXIST, "%s exists already: a session never replaces a file", s->name);
	s->flen = 0;
	return create_part(s, s->name);
}

/* the file being written is dropped (a failed session, or one that failed to complete it) */
static void drop_part(struct session *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		if (unlinkat(s->fdir, s->part, 0) && errno != ENOENT)
			pr_warn("peer %s: cannot remove the unfinished %s (%s): %s", s->peer, s->name, s->part,
				strerror(errno));
	}
	if (s->fdir >= 0)
		close(s->fdir);
	s->fd = s->fdir = -1;
	s->flen = 0;
}

/* the file's gathered bytes, written */
static int flush_file(struct session *s)
{
	int ret = s->flen ? write_all(s->fd, s->fbuf, s->flen) : 0;

	s->flen = 0;
	return ret ? session_fail(s, -ret, "cannot write %s: %s", s->name, strerror(-ret)) : 0;
}

/* a DATA frame's bytes: small ones gathered, so that a page costs no write() of its own */
int store_data(struct session *s, const uint8_t *data, size_t len)
{
	int ret;

	if (s->fd < 0)
		return session_fail(s, EPROTO, "data outside a file");
	s->bytes += len;
	/* a large frame goes straight to the file: after what is gathered, in order */
	if ((s->flen + len > FBUF_SIZE || len >= FBUF_SIZE / 4) && (ret = flush_file(s)))
		return ret;
	if (len >= FBUF_SIZE / 4) {
		ret = write_all(s->fd, data, len);
		return ret ? session_fail(s, -ret, "cannot write %s: %s", s->name, strerror(-ret)) : 0;
	}
	memcpy(s->fbuf + s->flen, data, len);
	s->flen += len;
	return 0;
}

/* the part file takes its name, if nothing has it: 0, or -errno */
static int publish(int dir, const char *part, const char *last)
{
	if (!renameat2(dir, part, dir, last, RENAME_NOREPLACE))
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* a file system without RENAME_NOREPLACE: a hard link is as atomic, and never replaces either */
	if (linkat(dir, part, dir, last, 0))
		return -errno;
	unlinkat(dir, part, 0);
	return 0;
}

int store_close(struct session *s)
{
	const char *last = strrchr(s->name, '/');
	int ret;

	if (s->fd < 0)
		return session_fail(s, EPROTO, "a file is closed that was never opened");
	last = last ? last + 1 : s->name;
	if ((ret = flush_file(s)))
		return ret;
	ret = close(s->fd);
	s->fd = -1;
	if (ret) {
		ret = session_fail(s, errno, "cannot write %s: %s", s->name, strerror(errno));
	} else if ((ret = publish(s->fdir, s->part, last))) {
		ret = ret == -EEXIST ? session_fail(s, EEXIST, "%s was made by someone else meanwhile: not replaced",
						    s->name)
				     : session_fail(s, -ret, "cannot rename %s to %s: %s", s->part, s->name,
						    strerror(-ret));
	}
	if (ret)
		unlinkat(s->fdir, s->part, 0);
	close(s->fdir);
	s->fdir = -1;
	return ret ?: remember(s, s->name, false);
}

/* "ROUND/NAME\0../OTHER": a symbolic link to a sibling round (a round's parent) */
int store_link(struct session *s, const char *payload, size_t len)
{
	char name[PS_NAME_MAX + 1], target[PS_NAME_MAX + 4], other[PS_NAME_MAX + 1];
	const char *zero = memchr(payload, 0, len), *last;
	size_t nlen = zero ? (size_t)(zero - payload) : len;
	int fd, ret;

	if (!zero || len - nlen - 1 < 4 || memcmp(zero + 1, "../", 3))
		return session_fail(s, EPROTO, "a link frame that is not NAME\\0../ROUND");
	if ((ret = session_name(s, payload, nlen, 2, "link name", name)) ||
	    (ret = session_name(s, zero + 4, len - nlen - 4, 1, "link target", other)))
		return ret;
	if (!strchr(name, '/') || (!strncmp(name, other, strlen(other)) && name[strlen(other)] == '/'))
		return session_fail(s, EPROTO, "link %s -> ../%s: a link is a round's, to another round", name, other);
	snprintf(target, sizeof(target), "../%s", other);
	fd = open_round(s, name, &last);
	if (fd < 0)
		return fd;
	ret = symlinkat(target, fd, last);
	if (ret)
		ret = errno == EEXIST ? session_fail(s, EEXIST, "%s exists already: a link never replaces anything", name)
				      : session_fail(s, errno, "cannot make link %s: %s", name, strerror(errno));
	close(fd);
	return ret ?: remember(s, name, false);
}

void store_keep(struct session *s)
{
	for (size_t i = 0; i < s->nr_made; i++)
		free(s->made[i].name);
	free(s->made);
	s->made = NULL;
	s->nr_made = 0;
}

void store_undo(struct session *s)
{
	drop_part(s);
	/* the last made first: a round's directory after its files */
	for (size_t i = s->nr_made; i-- > 0;) {
		const struct made *m = &s->made[i];
		const char *last;
		int dir;

		if (m->dir) {
			/* another session's files in it keep it */
			if (unlinkat(s->dirfd, m->name, AT_REMOVEDIR) && errno != ENOTEMPTY && errno != ENOENT)
				pr_warn("peer %s: cannot remove directory %s: %s", s->peer, m->name, strerror(errno));
			continue;
		}
		dir = door_parent(s->dirfd, m->name, &last, "peer %s: what the session made", s->peer);
		if (dir < 0)
			continue;
		if (unlinkat(dir, last, 0) && errno != ENOENT)
			pr_warn("peer %s: cannot remove %s: %s", s->peer, m->name, strerror(errno));
		close(dir);
	}
	store_keep(s);
}
