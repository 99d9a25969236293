/*
 * cryo page-server --address A --port P -D DIR --secret-file F [--once]
 *
 * Receives the images a dump streams to it (PROTOCOL.md) and writes them
 * into DIR. One session at a time. A peer that does not prove the secret,
 * or sends anything malformed, is refused with the reason logged, and
 * nothing of its session stays: files are written as NAME.part and renamed
 * when complete, and a failed session removes every file it made.
 *
 * As cryo migrate-agent it also takes a migration's frames (MIGRATE,
 * RESTORE, COMMIT): the rounds go into DIR/ID/, the last one is restored
 * here when the driver asks, and unless the driver commits, the restored
 * tree is killed and the migration's directory removed when the session
 * ends: a migration that fails leaves nothing on the target.
 *
 * As cryo lazy-pages it is the restore side of a lazy dump (CRIU's
 * lazy-pages daemon): it connects to the dump and serves that one session,
 * whose RESTORE_LAZY it answers once a restore with --lazy-pages has
 * handed it the tasks; then it fills their memory, asking the dump for
 * what it left in the tree.
 */
#define LOG_PREFIX "pagesrv: "
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <zlib.h>

#include "crc32c.h"
#include "cryo.h"
#include "lazy.h"
#include "log.h"
#include "migrate.h"
#include "pagesrv.h"
#include "util.h"

#define SESSION_TIMEOUT_S	60
#define RBUF_SIZE		(256u << 10)
#define FBUF_SIZE		(1u << 20)
/* names a client may not send (they begin with '.'): the agent's own */
#define MIGRATION_MARK		".cryo-migration"	/* in a migration's directory */
#define GONE_PREFIX		".gone-"		/* a migration's directory being removed */

struct session {
	const struct cryo_opts *opts;
	bool agent;			/* cryo migrate-agent: migrations welcome */
	int sock;
	int dirfd;			/* where names go: DIR, or DIR/ID in a migration */
	int base_dirfd;			/* DIR */
	char mig[PS_NAME_MAX + 1];	/* the migration's ID, or "" */
	pid_t restored;			/* the migration's tree, restored here */
	bool committed;			/* the driver let its source go: the tree stays */
	struct lazy *lazy;		/* post-copy: the handler, while pages still come */
	bool lazy_mode;			/* post-copy: the tree stays only once every page is in */
	bool lazy_done;
	int restore_listen;		/* cryo lazy-pages: where the restore hands over its tasks, or -1 */
	const char *restore_path;	/* its path */
	unsigned rounds;		/* DONE frames so far */
	char peer[80];
	uint8_t secret[PS_SECRET_MAX];
	size_t slen;
	bool compress;
	int fd;				/* the file being written, or -1 */
	char name[PS_NAME_MAX + 1];
	char **made;			/* files and links made by this session */
	size_t nr_made;
	uint8_t *payload, *raw;
	uint8_t *fbuf;			/* the open file's bytes not written yet */
	size_t flen;
	uint8_t *rbuf;			/* what came in and is not read yet: rbuf[rpos, rlen) */
	size_t rpos, rlen;
	uint64_t bytes;
	char err[256];
};

static int fail(struct session *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct session *s, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	pr_err("peer %s: %s", s->peer, s->err);
	return -err;
}

/* in one piece: the driver waits for it (a second small segment would wait for an ack) */
static int send_status(struct session *s, int err, const char *msg)
{
	struct ps_status st = { err, MIN(strlen(msg), 480) };
	uint8_t buf[sizeof(st) + 480];

	memcpy(buf, &st, sizeof(st));
	memcpy(buf + sizeof(st), msg, st.len);
	if (send(s->sock, buf, sizeof(st) + st.len, MSG_NOSIGNAL) != (ssize_t)(sizeof(st) + st.len))
		return -EIO;
	return 0;
}

/* a frame to the driver (post-copy) */
static int send_frame(struct session *s, uint32_t type, const void *payload, uint32_t len)
{
	struct ps_hdr h = { type, len, len, 0 };
	uint32_t crc = crc32c(0, payload, len);

	if (write_all(s->sock, &h, sizeof(h)) || (len && write_all(s->sock, payload, len)) ||
	    write_all(s->sock, &crc, sizeof(crc)))
		return fail(s, EIO, "cannot send to the driver");
	return 0;
}

/* a name the session may write: one or two components of [A-Za-z0-9._-], none beginning with . */
static bool valid_name(const char *n, size_t len)
{
	int parts = 1;
	const char *comp = n;

	if (!len || len > PS_NAME_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char ch = n[i];

		if (i == len || ch == '/') {
			size_t cl = n + i - comp;

			/* nor hidden: the agent's own marks are */
			if (!cl || comp[0] == '.')
				return false;
			if (i < len && ++parts > 2)
				return false;
			comp = n + i + 1;
			continue;
		}
		if (!(ch == '.' || ch == '_' || ch == '-' || (ch >= '0' && ch <= '9') ||
		      (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')))
			return false;
	}
	return true;
}

static int remember(struct session *s, const char *name)
{
	char **n = xrealloc_array(s->made, s->nr_made + 1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	s->made = n;
	s->made[s->nr_made] = xstrdup(name);
	return s->made[s->nr_made++] ? 0 : -ENOMEM;
}

/* the directory a two-part name goes into */
static int make_subdir(struct session *s, const char *name)
{
	const char *slash = strchr(name, '/');
	char sub[PS_NAME_MAX + 1];

	if (!slash)
		return 0;
	snprintf(sub, sizeof(sub), "%.*s", (int)(slash - name), name);
	if (mkdirat(s->dirfd, sub, 0700) && errno != EEXIST)
		return fail(s, errno, "cannot create directory %s: %s", sub, strerror(errno));
	return 0;
}

static int on_file(struct session *s, const char *name, size_t len)
{
	char part[PS_NAME_MAX + 8];
	int ret;

	if (s->fd >= 0)
		return fail(s, EPROTO, "a file begins while %s is still open", s->name);
	if (!valid_name(name, len))
		return fail(s, EPROTO, "refused file name '%.*s'", (int)MIN(len, 64), name);
	memcpy(s->name, name, len);
	s->name[len] = 0;
	if ((ret = make_subdir(s, s->name)))
		return ret;
	snprintf(part, sizeof(part), "%s.part", s->name);
	s->fd = openat(s->dirfd, part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->fd < 0)
		return fail(s, errno, "cannot create %s: %s", part, strerror(errno));
	return 0;
}

static void drop_part(struct session *s)
{
	char part[PS_NAME_MAX + 8];

	if (s->fd < 0)
		return;
	close(s->fd);
	s->fd = -1;
	s->flen = 0;
	snprintf(part, sizeof(part), "%s.part", s->name);
	unlinkat(s->dirfd, part, 0);
}

/* the file's gathered bytes, written */
static int flush_file(struct session *s)
{
	int ret = s->flen ? write_all(s->fd, s->fbuf, s->flen) : 0;

	s->flen = 0;
	return ret ? fail(s, -ret, "cannot write %s: %s", s->name, strerror(-ret)) : 0;
}

/* a DATA frame's bytes: small ones gathered, so that a page costs no write() of its own */
static int file_data(struct session *s, const uint8_t *data, size_t len)
{
	int ret;

	if (s->flen + len > FBUF_SIZE && (ret = flush_file(s)))
		return ret;
	if (len >= FBUF_SIZE / 4) {
		ret = write_all(s->fd, data, len);
		return ret ? fail(s, -ret, "cannot write %s: %s", s->name, strerror(-ret)) : 0;
	}
	memcpy(s->fbuf + s->flen, data, len);
	s->flen += len;
	return 0;
}

static int on_close(struct session *s)
{
	char part[PS_NAME_MAX + 8];
	int ret;

	if (s->fd < 0)
		return fail(s, EPROTO, "a file is closed that was never opened");
	snprintf(part, sizeof(part), "%s.part", s->name);
	if ((ret = flush_file(s))) {
		close(s->fd);
		s->fd = -1;
		unlinkat(s->dirfd, part, 0);
		return ret;
	}
	if (close(s->fd)) {
		s->fd = -1;
		unlinkat(s->dirfd, part, 0);
		return fail(s, errno, "cannot write %s: %s", s->name, strerror(errno));
	}
	s->fd = -1;
	if (renameat(s->dirfd, part, s->dirfd, s->name)) {
		unlinkat(s->dirfd, part, 0);
		return fail(s, errno, "cannot rename %s: %s", part, strerror(errno));
	}
	return remember(s, s->name);
}

static int on_link(struct session *s, const char *payload, size_t len)
{
	char p[2 * PS_NAME_MAX + 2], *target;
	const char *t;
	size_t nlen;

	if (len >= sizeof(p) || !(target = memchr(payload, 0, len)))
		return fail(s, EPROTO, "malformed link frame");
	memcpy(p, payload, len);
	p[len] = 0;
	nlen = target - payload;
	target = p + nlen + 1;
	/* the target: a sibling round, "../NAME" or "NAME" */
	t = strncmp(target, "../", 3) ? target : target + 3;
	if (!valid_name(p, nlen) || !valid_name(t, p + len - t) || strchr(t, '/'))
		return fail(s, EPROTO, "refused link '%.*s'", (int)MIN(nlen, 64), p);
	if (make_subdir(s, p))
		return -EIO;
	unlinkat(s->dirfd, p, 0);
	if (symlinkat(target, s->dirfd, p))
		return fail(s, errno, "cannot link %s: %s", p, strerror(errno));
	return remember(s, p);
}

static void forget_made(struct session *s)
{
	for (size_t i = 0; i < s->nr_made; i++)
		free(s->made[i]);
	free(s->made);
	s->made = NULL;
	s->nr_made = 0;
}

/* a migration begins: its rounds go into DIR/ID, a directory of its own */
static int on_migrate(struct session *s, const char *id, size_t len)
{
	if (!s->agent)
		return fail(s, EPROTO, "a migration was asked of a page server (start cryo migrate-agent)");
	if (s->mig[0] || s->rounds || s->fd >= 0)
		return fail(s, EPROTO, "a migration must be the first thing a session asks for");
	if (!valid_name(id, len) || memchr(id, '/', len))
		return fail(s, EPROTO, "refused migration id '%.*s'", (int)MIN(len, 64), id);
	memcpy(s->mig, id, len);
	s->mig[len] = 0;
	if (mkdirat(s->base_dirfd, s->mig, 0700)) {
		int err = errno;

		s->mig[0] = 0;	/* not ours to remove */
		return fail(s, err, "cannot create %.*s for the migration: %s", (int)len, id, strerror(err));
	}
	s->dirfd = openat(s->base_dirfd, s->mig, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0)
		return fail(s, errno, "cannot open %s: %s", s->mig, strerror(errno));
	/* should this agent die, the next one knows the directory for garbage */
	close(openat(s->dirfd, MIGRATION_MARK, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
	pr_info("peer %s: migration %s begins", s->peer, s->mig);
	return send_status(s, 0, "ok") ? fail(s, EIO, "cannot answer it") : 0;
}

/* the driver has sent its last round: restore it here, and say how that went */
static int on_restore(struct session *s, const char *round, size_t len)
{
	char dir[PATH_MAX], msg[480];
	int ret;

	if (!s->mig[0] || s->restored || !valid_name(round, len) || memchr(round, '/', len))
		return fail(s, EPROTO, "restore asked outside a migration, twice, or of a bad name");
	snprintf(dir, sizeof(dir), "%s/%s/%.*s", s->opts->images_dir, s->mig, (int)len, round);
	ret = agent_restore(dir, -1, &s->restored, msg, sizeof(msg));
	if (ret) {
		pr_err("peer %s: migration %s: the restore failed: %s", s->peer, s->mig, msg);
		/* the driver hears why, and ends the session: then the images go */
		return send_status(s, -ret, msg) ? fail(s, EIO, "cannot answer it") : 0;
	}
	pr_info("peer %s: migration %s: %s", s->peer, s->mig, msg);
	return send_status(s, 0, msg) ? fail(s, EIO, "cannot answer it") : 0;
}

static int on_frame(struct session *s);

static int lazy_request(void *arg, pid_t vpid, uint64_t addr, uint64_t len)
{
	struct ps_page_req r = { .vpid = vpid, .addr = addr, .len = len };

	return send_frame(arg, PSF_PAGE_REQ, &r, sizeof(r));
}

/* the driver's frames: pages, and its commit; every one already read in too */
static int lazy_input(void *arg, struct lazy *l)
{
	struct session *s = arg;
	int ret;

	s->lazy = l;
	do
		ret = on_frame(s);
	while (!ret && s->rpos < s->rlen);
	s->lazy = NULL;
	return ret == 1 ? fail(s, EPIPE, "the driver ended the session before every page was in") : ret;
}

/*
 * Fill the memory of the tasks handed over on uffd_sock (lazy.c): what they
 * touch first is asked of the driver, which pushes the rest meanwhile.
 * Done, the driver hears it and may kill the source.
 */
static int fill_lazily(struct session *s, int dfd, const char *dir, int uffd_sock, bool consume)
{
	struct lazy_remote remote = { .arg = s, .fd = s->sock, .request = lazy_request, .on_input = lazy_input };
	int ret = lazy_serve(dfd, dir, uffd_sock, &remote, 0, consume);

	if (ret)
		return s->err[0] ? ret : fail(s, -ret, "post-copy failed (see the lines above)");
	s->lazy_done = true;
	pr_info("peer %s: every page is in", s->peer);
	return send_frame(s, PSF_LAZY_DONE, NULL, 0);
}

/* cryo lazy-pages: the dump waits for the restore's tasks, which come on restore_listen */
static int on_lazy_dump(struct session *s)
{
	int conn, ret;

	printf("cryo lazy-pages: the dump at %s waits; waiting for the restore on %s\n", s->peer, s->restore_path);
	fflush(stdout);
	conn = accept4(s->restore_listen, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return fail(s, errno, "cannot take the restore's connection: %s", strerror(errno));
	s->lazy_mode = true;
	if (send_status(s, 0, "the restore has its tasks")) {
		close(conn);
		return fail(s, EIO, "cannot answer it");
	}
	ret = fill_lazily(s, s->dirfd, s->opts->images_dir, conn, false);
	close(conn);
	return ret;
}

/*
 * Post-copy: restore the round with its PE_LAZY pages left at the source,
 * say so, then fill the tree's memory.
 */
static int on_restore_lazy(struct session *s, const char *round, size_t len)
{
	char dir[PATH_MAX], msg[480];
	int sv[2], dfd, ret;

	if (s->restore_listen >= 0)
		return on_lazy_dump(s);
	if (!s->mig[0] || s->restored || !valid_name(round, len) || memchr(round, '/', len))
		return fail(s, EPROTO, "restore asked outside a migration, twice, or of a bad name");
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return fail(s, errno, "socketpair: %s", strerror(errno));
	snprintf(dir, sizeof(dir), "%s/%s/%.*s", s->opts->images_dir, s->mig, (int)len, round);
	s->lazy_mode = true;
	ret = agent_restore(dir, sv[1], &s->restored, msg, sizeof(msg));
	close(sv[1]);
	if (ret) {
		close(sv[0]);
		pr_err("peer %s: migration %s: the restore failed: %s", s->peer, s->mig, msg);
		return send_status(s, -ret, msg) ? fail(s, EIO, "cannot answer it") : 0;
	}
	pr_info("peer %s: migration %s: %s; its memory follows", s->peer, s->mig, msg);
	if (send_status(s, 0, msg)) {
		close(sv[0]);
		return fail(s, EIO, "cannot answer it");
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		close(sv[0]);
		return fail(s, errno, "cannot open %s: %s", dir, strerror(errno));
	}
	ret = fill_lazily(s, dfd, dir, sv[0], agent_images_in_memory(dir));
	close(sv[0]);
	close(dfd);
	return ret;
}

/* read len bytes of the stream: small frames come many to a recv() */
static int sread(struct session *s, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		size_t k;

		if (s->rpos == s->rlen) {
			ssize_t n;

			if (len >= RBUF_SIZE)
				return read_all(s->sock, p, len);
			n = recv(s->sock, s->rbuf, RBUF_SIZE, 0);
			if (n == 0)
				return -ENODATA;
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			s->rpos = 0;
			s->rlen = n;
		}
		k = MIN(len, s->rlen - s->rpos);
		memcpy(p, s->rbuf + s->rpos, k);
		s->rpos += k;
		p += k;
		len -= k;
	}
	return 0;
}

/* one frame: 1 at a clean end of the session, 0 to go on, <0 on error (s->err says why) */
static int on_frame(struct session *s)
{
	struct ps_hdr h;
	uint32_t crc;
	uLongf raw_len;
	uint8_t *data;
	int ret;

	if ((ret = sread(s, &h, sizeof(h)))) {
		/* the end of a session: clean between rounds, if a migration was committed; a lazy dump's once all is in */
		if (ret == -ENODATA && s->fd < 0 && !s->nr_made &&
		    ((s->rounds && (!s->mig[0] || s->committed)) || (s->restore_listen >= 0 && s->lazy_done)))
			return 1;
		if (s->mig[0] && !s->committed)
			return fail(s, -ret, "the driver went away before it committed migration %s%s", s->mig,
				    ret == -ENODATA ? "" : " (timed out or broken)");
		return fail(s, -ret, "the stream ended without its end frame%s",
			    ret == -ENODATA ? "" : " (timed out or broken)");
	}
	if (h.raw_len > PS_FRAME_MAX || h.len > compressBound(PS_FRAME_MAX) ||
	    (h.flags & ~PS_F_ZLIB) || ((h.flags & PS_F_ZLIB) && !s->compress) ||
	    (!(h.flags & PS_F_ZLIB) && h.len != h.raw_len))
		return fail(s, EPROTO, "malformed frame header (type %u, %u bytes, %u raw, flags %#x)",
			    h.type, h.len, h.raw_len, h.flags);
	if ((ret = sread(s, s->payload, h.len)) || (ret = sread(s, &crc, sizeof(crc))))
		return fail(s, -ret, "the stream ended in the middle of a frame");
	data = s->payload;
	if (h.flags & PS_F_ZLIB) {
		raw_len = h.raw_len;
		if (uncompress(s->raw, &raw_len, s->payload, h.len) != Z_OK || raw_len != h.raw_len)
			return fail(s, EPROTO, "a compressed frame does not uncompress to %u bytes", h.raw_len);
		data = s->raw;
	}
	if (crc32c(0, data, h.raw_len) != crc)
		return fail(s, EBADMSG, "checksum mismatch in a frame of %u bytes%s%s", h.raw_len,
			    s->fd >= 0 ? " for " : "", s->fd >= 0 ? s->name : "");
	switch (h.type) {
	case PSF_FILE:
		return on_file(s, (const char *)data, h.raw_len);
	case PSF_DATA:
		if (s->fd < 0)
			return fail(s, EPROTO, "data outside a file");
		s->bytes += h.raw_len;
		return file_data(s, data, h.raw_len);
	case PSF_CLOSE:
		return on_close(s);
	case PSF_LINK:
		return on_link(s, (const char *)data, h.raw_len);
	case PSF_DONE:
		if (s->fd >= 0)
			return fail(s, EPROTO, "the round ends with %s still open", s->name);
		/* the round is whole: it stays, whatever comes after */
		s->rounds++;
		forget_made(s);
		return send_status(s, 0, "ok") ? fail(s, EIO, "cannot answer it") : 0;
	case PSF_SYNC:
		return send_status(s, 0, "ok") ? fail(s, EIO, "cannot answer it") : 0;
	case PSF_MIGRATE:
		return on_migrate(s, (const char *)data, h.raw_len);
	case PSF_RESTORE:
		return on_restore(s, (const char *)data, h.raw_len);
	case PSF_RESTORE_LAZY:
		return on_restore_lazy(s, (const char *)data, h.raw_len);
	case PSF_PAGES: {
		struct ps_pages p;

		if (s->lazy_done && h.raw_len >= sizeof(p))
			return 0;	/* pushed before the driver heard every page is in */
		if (!s->lazy || h.raw_len < sizeof(p))
			return fail(s, EPROTO, "pages outside post-copy, or a malformed pages frame");
		memcpy(&p, data, sizeof(p));
		s->bytes += h.raw_len - sizeof(p);
		return lazy_pages_in(s->lazy, p.vpid, p.addr, data + sizeof(p), h.raw_len - sizeof(p));
	}
	case PSF_COMMIT:
		if (!s->restored)
			return fail(s, EPROTO, "commit before a restore");
		s->committed = true;
		pr_info("peer %s: migration %s committed: pid %d is ours", s->peer, s->mig, s->restored);
		if (s->lazy_mode)	/* post-copy: frames go both ways now, no status */
			return 0;
		return send_status(s, 0, "ok") ? fail(s, EIO, "cannot answer it") : 0;
	}
	return fail(s, EPROTO, "unknown frame type %u", h.type);
}

static int authenticate(struct session *s)
{
	uint8_t hello[8 + PS_NONCE_LEN], auth[8 + 4 + PS_NONCE_LEN + PS_MAC_LEN], want[PS_MAC_LEN];
	uint8_t *nonce_s = hello + 8, *nonce_c = auth + 12;
	uint32_t flags;
	int ret;

	memcpy(hello, PS_MAGIC, 8);
	if (getrandom(nonce_s, PS_NONCE_LEN, 0) != PS_NONCE_LEN)
		return fail(s, errno, "getrandom: %s", strerror(errno));
	if (send(s->sock, hello, sizeof(hello), MSG_NOSIGNAL) != sizeof(hello))
		return fail(s, EIO, "cannot greet it");
	if ((ret = read_all(s->sock, auth, sizeof(auth))))
		return fail(s, -ret, "no authentication from it");
	if (memcmp(auth, PS_MAGIC, 8))
		return fail(s, EPROTO, "not a cryo client (bad magic)");
	memcpy(&flags, auth + 8, 4);
	ps_mac(s->secret, s->slen, "cryo-client", nonce_s, nonce_c, flags, want);
	if (!ps_mac_equal(auth + 12 + PS_NONCE_LEN, want))
		return fail(s, EACCES, "authentication failed: it does not know the secret");
	if (flags & ~PS_F_ZLIB)
		return fail(s, EPROTO, "unknown session flags %#x", flags);
	s->compress = flags & PS_F_ZLIB;
	ps_mac(s->secret, s->slen, "cryo-server", nonce_c, nonce_s, flags, want);
	if (send_status(s, 0, "ok") || send(s->sock, want, sizeof(want), MSG_NOSIGNAL) != sizeof(want))
		return fail(s, EIO, "cannot answer it");
	return 0;
}

/* the end of a migration's session: committed, its tree stays; else it goes */
static void end_migration(struct session *s)
{
	char gone[PS_NAME_MAX + sizeof(GONE_PREFIX)];

	if (!s->mig[0])
		return;
	if (s->restored && (!s->committed || (s->lazy_mode && !s->lazy_done))) {
		pr_warn("peer %s: migration %s was not %s: killing its restored tree (pid %d)", s->peer, s->mig,
			s->committed ? "completed (pages were still to come)" : "committed", s->restored);
		agent_kill_tree(s->restored);
	}
	if (s->dirfd != s->base_dirfd)
		close(s->dirfd);
	s->dirfd = s->base_dirfd;
	/*
	 * The images served their purpose, or the migration failed. Renamed
	 * first, at once: should the agent die while removing them, the next
	 * one knows them for garbage by their name.
	 */
	snprintf(gone, sizeof(gone), "%s%s", GONE_PREFIX, s->mig);
	if (renameat(s->base_dirfd, s->mig, s->base_dirfd, gone) || rm_tree_at(s->base_dirfd, gone))
		pr_warn("peer %s: cannot remove all of %s/%s", s->peer, s->opts->images_dir, s->mig);
	s->mig[0] = 0;
}

/* one connection, start to end: 0 if everything it sent is in place */
static int serve(struct session *s)
{
	struct timeval tv = { SESSION_TIMEOUT_S, 0 };
	uint64_t t0 = now_ns();
	int ret, one = 1;

	setsockopt(s->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(s->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ps_sock_liveness(s->sock);
	ret = authenticate(s);
	while (!ret)
		ret = on_frame(s);
	if (ret == 1) {
		pr_info("peer %s: %u rounds, %lu MiB in %lu ms", s->peer, s->rounds, s->bytes >> 20,
			(now_ns() - t0) / 1000000);
		end_migration(s);
		return 0;
	}
	/* nothing of a failed session stays */
	drop_part(s);
	for (size_t i = 0; i < s->nr_made; i++)
		unlinkat(s->dirfd, s->made[i], 0);
	end_migration(s);
	send_status(s, -ret, s->err);
	/* let the peer read why before the connection goes: what it still sends is dropped */
	shutdown(s->sock, SHUT_WR);
	tv = (struct timeval){ 1, 0 };
	setsockopt(s->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 1024 && recv(s->sock, s->payload, PS_FRAME_MAX, 0) > 0; i++)
		;
	return ret;
}

/* migrations an agent left when it died: nobody will commit them */
static void remove_stale(int dirfd, const char *dir)
{
	DIR *d = fdopendir(dup(dirfd));
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char mark[PS_NAME_MAX + sizeof(MIGRATION_MARK) + 2];

		if (de->d_name[0] == '.' && strncmp(de->d_name, GONE_PREFIX, strlen(GONE_PREFIX)))
			continue;
		snprintf(mark, sizeof(mark), "%s/%s", de->d_name, MIGRATION_MARK);
		if (de->d_name[0] != '.' && faccessat(dirfd, mark, F_OK, AT_SYMLINK_NOFOLLOW))
			continue;
		pr_warn("%s/%s: a migration whose agent died; removing it", dir, de->d_name);
		rm_tree_at(dirfd, de->d_name);
	}
	closedir(d);
}

/* what a server needs before its first client: the secret, the images directory, the listening socket */
static int server_setup(struct session *s, struct cryo_opts *o, bool agent)
{
	int lfd;

	if (!o->port) {
		pr_err("%s: which port? Give it with --port P", o->command);
		return -EINVAL;
	}
	if (ps_read_secret(o->secret_file, s->secret, &s->slen))
		return -EACCES;
	s->dirfd = s->base_dirfd = open_images_dir(o->images_dir);
	if (s->dirfd < 0)
		return -ENOENT;
	if (agent)
		remove_stale(s->dirfd, o->images_dir);
	lfd = ps_listen(o->address, o->port);
	if (lfd < 0) {
		close(s->dirfd);
		explicit_bzero(s->secret, sizeof(s->secret));
	}
	return lfd;
}

/* a session's buffers: one session at a time */
static void session_buffers(struct session *s)
{
	static uint8_t payload[PS_FRAME_MAX + 1024], raw[PS_FRAME_MAX], rbuf[RBUF_SIZE], fbuf[FBUF_SIZE];

	s->payload = payload;
	s->raw = raw;
	s->rbuf = rbuf;
	s->fbuf = fbuf;
	s->flen = 0;
	s->rpos = s->rlen = 0;
}

/* one client after another (one complete session with --once) */
static int server_loop(struct session *s, int lfd)
{
	int ret = 0;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char host[64] = "?", serv[16] = "?";

		s->sock = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (s->sock < 0) {
			if (errno == EINTR)
				continue;
			ret = pr_perror("page server: accept");
			break;
		}
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
			    NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(s->peer, sizeof(s->peer), "%s port %s", host, serv);
		session_buffers(s);
		ret = serve(s);
		close(s->sock);
		forget_made(s);
		s->bytes = 0;
		s->rounds = 0;
		s->restored = 0;
		s->committed = false;
		s->lazy_mode = s->lazy_done = false;
		if (s->opts->once && !ret)
			break;
	}
	explicit_bzero(s->secret, sizeof(s->secret));
	close(s->dirfd);
	close(lfd);
	return ret;
}

static int run_server(struct cryo_opts *o, bool agent)
{
	struct session s = { .opts = o, .agent = agent, .fd = -1, .restore_listen = -1 };
	int lfd = server_setup(&s, o, agent);

	if (lfd < 0)
		return 1;
	printf("cryo %s: listening on %s port %s, writing to %s\n", o->command, o->address ? o->address : "*",
	       o->port, o->images_dir);
	fflush(stdout);
	return server_loop(&s, lfd) ? 1 : 0;
}

int page_server_spawn(struct cryo_opts *o, int close_in_child, pid_t *pid, int *port)
{
	struct session s = { .opts = o, .fd = -1, .restore_listen = -1 };
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int lfd = server_setup(&s, o, false);

	if (lfd < 0)
		return lfd;
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl)) {
		*pid = pr_perror("page server: getsockname");
		goto out;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port :
						 ((struct sockaddr_in *)&ss)->sin_port);
	*pid = fork();
	if (*pid < 0) {
		*pid = pr_perror("page server: fork");
	} else if (*pid == 0) {
		close(close_in_child);
		o->once = true;
		_exit(server_loop(&s, lfd) ? 1 : 0);
	}
out:
	explicit_bzero(s.secret, sizeof(s.secret));
	close(s.dirfd);
	close(lfd);
	return *pid < 0 ? *pid : 0;
}

int cmd_page_server(struct cryo_opts *o)
{
	return run_server(o, false);
}

int cmd_migrate_agent(struct cryo_opts *o)
{
	return run_server(o, true);
}

/*
 * cryo lazy-pages --page-server HOST:PORT -D DIR [-W DIR]. The dump is
 * reached first: should it not be there, no restore is kept waiting on
 * this daemon (it finds no socket, and says the pages are at the source).
 */
int cmd_lazy_pages(struct cryo_opts *o)
{
	struct session s = { .opts = o, .fd = -1, .sock = -1, .restore_listen = -1 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ret = -EINVAL;

	if (!o->page_server) {
		pr_err("lazy-pages: where is the dump? Give --page-server HOST:PORT (or --page-server --address A --port P)");
		return 1;
	}
	if (lazy_daemon_path(o, sa.sun_path, sizeof(sa.sun_path)) || ps_read_secret(o->secret_file, s.secret, &s.slen))
		return 1;
	s.dirfd = s.base_dirfd = open_images_dir(o->images_dir);
	if (s.dirfd < 0)
		goto out;
	s.sock = ps_dial(o->page_server);
	if (s.sock < 0)
		goto out;
	snprintf(s.peer, sizeof(s.peer), "%s", o->page_server);
	unlink(sa.sun_path);
	s.restore_listen = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s.restore_listen < 0 || bind(s.restore_listen, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(s.restore_listen, 1)) {
		ret = pr_perror("lazy-pages: cannot listen on %s", sa.sun_path);
		goto out;
	}
	s.restore_path = sa.sun_path;
	session_buffers(&s);
	ret = serve(&s);
	if (!ret && !s.lazy_done) {
		pr_err("lazy-pages: the dump at %s ended the session before the restore came", o->page_server);
		ret = -EPIPE;
	}
out:
	if (s.restore_listen >= 0) {
		close(s.restore_listen);
		unlink(sa.sun_path);
	}
	if (s.sock >= 0)
		close(s.sock);
	if (s.dirfd >= 0)
		close(s.dirfd);
	explicit_bzero(s.secret, sizeof(s.secret));
	return ret ? 1 : 0;
}
