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
/*
 * A page-server session: the handshake, then the frames (PROTOCOL.md).
 * A peer that does not prove the secret within PS_HANDSHAKE_S seconds, or
 * sends anything malformed, or a frame that fails its authentication, is
 * refused with the reason logged, and nothing of its session stays (the
 * files and links are store.c's).
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
 *
 * Each session of cryo page-server and migrate-agent runs in a process of
 * its own (listen.c).
 */
#define LOG_PREFIX "pagesrv: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
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

#include "cryo.h"
#include "door.h"
#include "fault.h"
#include "guard.h"
#include "lazy.h"
#include "log.h"
#include "migrate.h"
#include "session.h"
#include "util.h"

#define SESSION_TIMEOUT_S	60	/* an authenticated peer silent this long ends its session */
#define RBUF_SIZE		(256u << 10)

int session_fail(struct session *s, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	pr_err("peer %s: %s", s->peer, s->err);
	return -err;
}

int session_refused(struct session *s, int ret)
{
	const char *said = log_first_error(NULL);

	snprintf(s->err, sizeof(s->err), "%s", said ? said : "refused (the server's log says why)");
	return ret < 0 ? ret : -EINVAL;
}

static bool name_char(char c)
{
	return c == '.' || c == '_' || c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

int session_name(struct session *s, const void *name, size_t len, int max_parts, const char *what, char *out)
{
	char q[DOOR_QUOTE_LEN];
	int parts = 1, ret;

	log_error_reset();
	if ((ret = door_bytes_str(name, len, PS_NAME_MAX, "peer %s: %s", s->peer, what)))
		return session_refused(s, ret);
	memcpy(out, name, len);
	out[len] = 0;
	if ((ret = door_relpath(out, PS_NAME_MAX, "peer %s: %s", s->peer, what)))
		return session_refused(s, ret);
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '/')
			parts++;
		if ((out[i] == '/' ? false : !name_char(out[i])) || ((!i || out[i - 1] == '/') && out[i] == '.'))
			parts = max_parts + 1;
	}
	if (parts > max_parts)
		return session_fail(s, EPROTO, "%s '%s' is refused: %s of [A-Za-z0-9._-], none beginning with '.'",
				    what, door_quote(out, q, sizeof(q)),
				    max_parts == 1 ? "one component" : "one or two components");
	return 0;
}

/* in one piece: the driver waits for it (a second small segment would wait for an ack) */
static int send_sealed(struct session *s, uint32_t type, const void *a, size_t alen, const void *b, size_t blen)
{
	uint8_t buf[sizeof(struct ps_hdr) + sizeof(int32_t) + PS_STATUS_MAX + PS_TAG_LEN];
	struct ps_hdr h = { type, alen + blen, alen + blen, 0 };
	uint8_t *body = buf + sizeof(h);
	size_t n = sizeof(h) + h.len + PS_TAG_LEN;

	if (n > sizeof(buf))
		return session_fail(s, EMSGSIZE, "a frame of type %u is too long to send", type);
	memcpy(buf, &h, sizeof(h));
	memcpy(body, a, alen);
	memcpy(body + alen, b, blen);
	if (ps_seal(&s->keys.tx, &h, body, body, h.len, body + h.len))
		return session_fail(s, EIO, "cannot seal a frame");
	if (send(s->sock, buf, n, MSG_NOSIGNAL) != (ssize_t)n)
		return session_fail(s, EIO, "cannot send to it");
	return 0;
}

/* a status: sealed once the peer is authenticated; in clear before (the handshake's answer) */
static int send_status(struct session *s, int err, const char *msg)
{
	struct ps_status st = { err, MIN(strlen(msg), PS_STATUS_MAX) };
	uint8_t buf[sizeof(st) + PS_STATUS_MAX];
	int32_t e = err;

	if (s->keyed)
		return send_sealed(s, PSF_STATUS, &e, sizeof(e), msg, st.len);
	memcpy(buf, &st, sizeof(st));
	memcpy(buf + sizeof(st), msg, st.len);
	if (send(s->sock, buf, sizeof(st) + st.len, MSG_NOSIGNAL) != (ssize_t)(sizeof(st) + st.len))
		return -EIO;
	return 0;
}

static int answer(struct session *s, int err, const char *msg)
{
	return send_status(s, err, msg) ? session_fail(s, EIO, "cannot answer it") : 0;
}

/* a migration begins: its rounds go into DIR/ID, a directory of its own */
static int on_migrate(struct session *s, const char *id, size_t len)
{
	int ret, mark;

	if (!s->agent)
		return session_fail(s, EPROTO, "a migration was asked of a page server (start cryo migrate-agent)");
	if (s->mig[0] || s->rounds || s->fd >= 0 || s->nr_made)
		return session_fail(s, EPROTO, "a migration must be the first thing a session asks for");
	if ((ret = session_name(s, id, len, 1, "migration id", s->mig))) {
		s->mig[0] = 0;
		return ret;
	}
	if (mkdirat(s->base_dirfd, s->mig, 0700)) {
		int err = errno;

		s->mig[0] = 0;	/* not ours to remove */
		return session_fail(s, err, "cannot create %.*s for the migration: %s", (int)len, id, strerror(err));
	}
	s->dirfd = door_open(s->base_dirfd, s->mig, O_RDONLY | O_DIRECTORY, 0, DOOR_NO_SYMLINKS,
			     "peer %s: the migration's directory", s->peer);
	if (s->dirfd < 0) {
		s->dirfd = s->base_dirfd;
		return session_refused(s, -EIO);
	}
	/* should this agent die, the next one knows the directory for garbage */
	mark = openat(s->dirfd, MIGRATION_MARK, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (mark < 0)
		return session_fail(s, errno, "cannot mark %s as a migration's: %s", s->mig, strerror(errno));
	close(mark);
	pr_info("peer %s: migration %s begins", s->peer, s->mig);
	return answer(s, 0, "ok");
}

/*
 * A round to restore: its name checked, and the round there as a
 * directory of the migration's (no symlink on the way): an fd of it, its
 * path in dir; or the session failed.
 */
static int restore_dir(struct session *s, const char *round, size_t len, char *dir, size_t dlen)
{
	char name[PS_NAME_MAX + 1];
	int fd, ret;

	if (!s->mig[0] || s->restored)
		return session_fail(s, EPROTO, "restore asked outside a migration, or twice");
	if ((ret = session_name(s, round, len, 1, "round to restore", name)))
		return ret;
	fd = door_open(s->dirfd, name, O_RDONLY | O_DIRECTORY, 0, DOOR_NO_SYMLINKS, "peer %s: round to restore",
		       s->peer);
	if (fd < 0)
		return session_refused(s, fd);
	snprintf(dir, dlen, "%s/%s/%s", s->opts->images_dir, s->mig, name);
	return fd;
}

/*
 * Restore the round in dir, its tree held by the session's guardian until
 * the commit: should the session die first (the agent killed), the tree
 * dies too, and the driver's source is then the only copy.
 */
static int restore_held(struct session *s, const char *dir, int lazy_sock, char *msg, size_t len)
{
	int ret;

	if (!s->guard && guard_open(s->opts, &s->guard)) {
		snprintf(msg, len, "the agent cannot start its guardian");
		return -EAGAIN;
	}
	ret = agent_restore(dir, lazy_sock, guard_pid(s->guard), &s->restored, msg, len);
	if (ret)
		return ret;
	s->g_tree = guard_kill_tree(s->guard, s->restored);
	if (!s->g_tree) {
		snprintf(msg, len, "the agent cannot hold the restored tree: it is killed");
		agent_kill_tree(s->restored);
		s->restored = 0;
		return -EAGAIN;
	}
	fault_point("agent-restored");
	return 0;
}

/* the driver has sent its last round: restore it here, and say how that went */
static int on_restore(struct session *s, const char *round, size_t len)
{
	char dir[PATH_MAX], msg[PS_STATUS_MAX];
	int ret = restore_dir(s, round, len, dir, sizeof(dir));

	if (ret < 0)
		return ret;
	close(ret);
	ret = restore_held(s, dir, -1, msg, sizeof(msg));
	if (ret) {
		pr_err("peer %s: migration %s: the restore failed: %s", s->peer, s->mig, msg);
		/* the driver hears why, and ends the session: then the images go */
		return answer(s, -ret, msg);
	}
	pr_info("peer %s: migration %s: %s", s->peer, s->mig, msg);
	return answer(s, 0, msg);
}

static int on_frame(struct session *s);

static int lazy_request(void *arg, pid_t vpid, uint64_t addr, uint64_t len)
{
	struct ps_page_req r = { .vpid = vpid, .addr = addr, .len = len };

	return send_sealed(arg, PSF_PAGE_REQ, &r, sizeof(r), NULL, 0);
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
	return ret == 1 ? session_fail(s, EPIPE, "the driver ended the session before every page was in") : ret;
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
		return s->err[0] ? ret : session_fail(s, -ret, "post-copy failed (see the lines above)");
	s->lazy_done = true;
	pr_info("peer %s: every page is in", s->peer);
	return send_sealed(s, PSF_LAZY_DONE, NULL, 0, NULL, 0);
}

/* cryo lazy-pages: the dump waits for the restore's tasks, which come on restore_listen */
static int on_lazy_dump(struct session *s)
{
	int conn, ret;

	printf("cryo lazy-pages: the dump at %s waits; waiting for the restore on %s\n", s->peer, s->restore_path);
	fflush(stdout);
	conn = accept4(s->restore_listen, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return session_fail(s, errno, "cannot take the restore's connection: %s", strerror(errno));
	s->lazy_mode = true;
	if ((ret = answer(s, 0, "the restore has its tasks"))) {
		close(conn);
		return ret;
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
	char dir[PATH_MAX], msg[PS_STATUS_MAX];
	int sv[2], dfd, ret;

	if (s->restore_listen >= 0)
		return on_lazy_dump(s);
	if ((dfd = restore_dir(s, round, len, dir, sizeof(dir))) < 0)
		return dfd;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		close(dfd);
		return session_fail(s, errno, "socketpair: %s", strerror(errno));
	}
	s->lazy_mode = true;
	ret = restore_held(s, dir, sv[1], msg, sizeof(msg));
	close(sv[1]);
	if (ret) {
		close(sv[0]);
		close(dfd);
		pr_err("peer %s: migration %s: the restore failed: %s", s->peer, s->mig, msg);
		return answer(s, -ret, msg);
	}
	pr_info("peer %s: migration %s: %s; its memory follows", s->peer, s->mig, msg);
	if ((ret = answer(s, 0, msg))) {
		close(sv[0]);
		close(dfd);
		return ret;
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

/* the stream ended (or broke) where a frame would begin: 1 if that is a clean end of the session */
static int stream_ended(struct session *s, int ret)
{
	/* clean between rounds, if a migration was committed; a lazy dump's once all is in */
	if (ret == -ENODATA && s->fd < 0 && !s->nr_made &&
	    ((s->rounds && (!s->mig[0] || s->committed)) || (s->restore_listen >= 0 && s->lazy_done)))
		return 1;
	if (s->mig[0] && !s->committed)
		return session_fail(s, -ret, "the driver went away before it committed migration %s%s", s->mig,
				    ret == -ENODATA ? "" : " (timed out or broken)");
	return session_fail(s, -ret, "the stream ended without its end frame%s",
			    ret == -ENODATA ? "" : " (timed out or broken)");
}

/*
 * The next frame, read and opened: *data its raw payload. Its header is
 * checked before a byte of its payload is read; its tag says it is the
 * peer's next frame, unaltered. 0, 1 at a clean end, or the session failed.
 */
static int read_frame(struct session *s, struct ps_hdr *h, uint8_t **data)
{
	const char *why;
	uLongf raw_len;
	int ret;

	if ((ret = sread(s, h, sizeof(*h))))
		return stream_ended(s, ret);
	if ((why = ps_hdr_refused(h, s->compress)))
		return session_fail(s, EPROTO, "a frame refused from its header (type %u, %u bytes, %u raw, flags %#x): %s",
				    h->type, h->len, h->raw_len, h->flags, why);
	if ((ret = sread(s, s->payload, h->len + PS_TAG_LEN)))
		return session_fail(s, -ret, "the stream ended in the middle of a frame");
	if (ps_unseal(&s->keys.rx, h, s->payload, h->len, s->payload + h->len))
		return session_fail(s, EBADMSG, "a frame of type %u (%u bytes) fails its authentication: it was altered, "
				    "replayed, reordered or injected on the way", h->type, h->len);
	*data = s->payload;
	if (!(h->flags & PS_F_ZLIB))
		return 0;
	raw_len = h->raw_len;
	if (uncompress(s->raw, &raw_len, s->payload, h->len) != Z_OK || raw_len != h->raw_len)
		return session_fail(s, EPROTO, "a compressed frame does not uncompress to %u bytes", h->raw_len);
	*data = s->raw;
	return 0;
}

static int on_pages(struct session *s, const uint8_t *data, size_t len)
{
	struct ps_pages p;

	if (s->lazy_done && len >= sizeof(p))
		return 0;	/* pushed before the driver heard every page is in */
	if (!s->lazy || len < sizeof(p))
		return session_fail(s, EPROTO, "pages outside post-copy, or a malformed pages frame");
	memcpy(&p, data, sizeof(p));
	s->bytes += len - sizeof(p);
	return lazy_pages_in(s->lazy, p.vpid, p.addr, data + sizeof(p), len - sizeof(p));
}

static int on_commit(struct session *s)
{
	if (!s->restored)
		return session_fail(s, EPROTO, "commit before a restore");
	s->committed = true;
	pr_info("peer %s: migration %s committed: pid %d is ours", s->peer, s->mig, s->restored);
	if (s->lazy_mode)	/* post-copy: frames go both ways now, no status */
		return 0;
	return answer(s, 0, "ok");
}

/* one frame: 1 at a clean end of the session, 0 to go on, <0 on error (s->err says why) */
static int on_frame(struct session *s)
{
	struct ps_hdr h;
	uint8_t *data = NULL;
	int ret;

	log_error_reset();
	if ((ret = read_frame(s, &h, &data)))
		return ret;
	switch (h.type) {
	case PSF_FILE:
		return store_file(s, (const char *)data, h.raw_len);
	case PSF_DATA:
		return store_data(s, data, h.raw_len);
	case PSF_CLOSE:
		return store_close(s);
	case PSF_LINK:
		return store_link(s, (const char *)data, h.raw_len);
	case PSF_DONE:
		if (s->fd >= 0)
			return session_fail(s, EPROTO, "the round ends with %s still open", s->name);
		/* the round is whole: it stays, whatever comes after */
		s->rounds++;
		store_keep(s);
		return answer(s, 0, "ok");
	case PSF_MIGRATE:
		return on_migrate(s, (const char *)data, h.raw_len);
	case PSF_RESTORE:
		return on_restore(s, (const char *)data, h.raw_len);
	case PSF_RESTORE_LAZY:
		return on_restore_lazy(s, (const char *)data, h.raw_len);
	case PSF_PAGES:
		return on_pages(s, data, h.raw_len);
	case PSF_COMMIT:
		return on_commit(s);
	}
	return session_fail(s, EPROTO, "a frame of type %u, which a client does not send", h.type);
}

/* len bytes of the handshake, by the deadline: 0, or -errno (-ETIMEDOUT) */
static int read_by(int sock, void *buf, size_t len, uint64_t deadline)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pf = { .fd = sock, .events = POLLIN };
		uint64_t now = now_ns();
		ssize_t n;

		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&pf, 1, (deadline - now) / 1000000 + 1) <= 0)
			continue;
		n = recv(sock, p, len, MSG_DONTWAIT);
		if (n == 0)
			return -ENODATA;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/*
 * Both ends prove the secret; then the session's keys. The whole of it
 * within PS_HANDSHAKE_S seconds: an unauthenticated peer holds nothing long.
 */
static int authenticate(struct session *s)
{
	uint8_t hello[8 + PS_NONCE_LEN], auth[8 + 4 + PS_NONCE_LEN + PS_MAC_LEN], want[PS_MAC_LEN];
	uint8_t ok[sizeof(struct ps_status) + 2 + PS_MAC_LEN];
	struct ps_status st = { 0, 2 };
	uint8_t *nonce_s = hello + 8, *nonce_c = auth + 12;
	uint64_t deadline = now_ns() + PS_HANDSHAKE_S * 1000000000ULL;
	uint32_t flags;
	int ret;

	memcpy(hello, PS_MAGIC, 8);
	if (getrandom(nonce_s, PS_NONCE_LEN, 0) != PS_NONCE_LEN)
		return session_fail(s, errno, "getrandom: %s", strerror(errno));
	if (send(s->sock, hello, sizeof(hello), MSG_NOSIGNAL) != sizeof(hello))
		return session_fail(s, EIO, "cannot greet it");
	if ((ret = read_by(s->sock, auth, sizeof(auth), deadline)))
		return ret == -ETIMEDOUT ? session_fail(s, ETIMEDOUT, "no authentication within %d s", PS_HANDSHAKE_S)
					 : session_fail(s, -ret, "no authentication from it");
	if (memcmp(auth, PS_MAGIC, 8))
		return session_fail(s, EPROTO, "not a cryo client of this version (bad magic)");
	memcpy(&flags, auth + 8, 4);
	ps_mac(s->secret, s->slen, "cryo-client", nonce_s, nonce_c, flags, want);
	if (!ps_mac_equal(auth + 12 + PS_NONCE_LEN, want))
		return session_fail(s, EACCES, "authentication failed: it does not know the secret");
	if (flags & ~PS_F_ZLIB)
		return session_fail(s, EPROTO, "unknown session flags %#x", flags);
	s->compress = flags & PS_F_ZLIB;
	if ((ret = ps_keys_derive(&s->keys, s->secret, s->slen, nonce_s, nonce_c, flags, true)))
		return session_fail(s, -ret, "cannot derive the session's keys");
	ps_mac(s->secret, s->slen, "cryo-server", nonce_c, nonce_s, flags, want);
	/* the secret is of no more use here */
	explicit_bzero(s->secret, sizeof(s->secret));
	memcpy(ok, &st, sizeof(st));
	memcpy(ok + sizeof(st), "ok", 2);
	memcpy(ok + sizeof(st) + 2, want, sizeof(want));
	if (send(s->sock, ok, sizeof(ok), MSG_NOSIGNAL) != sizeof(ok))
		return session_fail(s, EIO, "cannot answer it");
	s->keyed = true;
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
		if (agent_kill_tree(s->restored))
			pr_err("peer %s: migration %s: its restored tree (pid %d) may not all be gone", s->peer,
			       s->mig, s->restored);
	}
	/* it stays, or it is gone: the guardian has nothing more to hold */
	guard_done(s->g_tree);
	s->g_tree = NULL;
	guard_close(s->guard);
	s->guard = NULL;
	if (s->dirfd != s->base_dirfd)
		close(s->dirfd);
	s->dirfd = s->base_dirfd;
	/*
	 * The images served their purpose, or the migration failed. Renamed
	 * first, at once: should the agent die while removing them, the next
	 * one knows them for garbage by their name.
	 */
	snprintf(gone, sizeof(gone), "%s%s", GONE_PREFIX, s->mig);
	if (renameat(s->base_dirfd, s->mig, s->base_dirfd, gone))
		pr_warn("peer %s: cannot rename %s/%s to %s: %s", s->peer, s->opts->images_dir, s->mig, gone,
			strerror(errno));
	else if (rm_tree_at(s->base_dirfd, gone))
		pr_warn("peer %s: cannot remove all of %s/%s", s->peer, s->opts->images_dir, gone);
	s->mig[0] = 0;
}

int session_buffers(struct session *s)
{
	s->payload = malloc(PS_FRAME_MAX + PS_TAG_LEN);
	s->raw = s->compress ? malloc(PS_FRAME_MAX) : NULL;
	s->rbuf = malloc(RBUF_SIZE);
	s->fbuf = malloc(FBUF_SIZE);
	s->flen = s->rpos = s->rlen = 0;
	if (s->payload && s->rbuf && s->fbuf && (s->raw || !s->compress))
		return 0;
	return session_fail(s, ENOMEM, "out of memory for the session's buffers");
}

void session_free(struct session *s)
{
	ps_keys_free(&s->keys);
	s->keyed = false;
	free(s->payload);
	free(s->raw);
	free(s->rbuf);
	free(s->fbuf);
	s->payload = s->raw = s->rbuf = s->fbuf = NULL;
	explicit_bzero(s->secret, sizeof(s->secret));
}

/* a failed session: the peer hears why before the connection goes; what it still sends is dropped */
static void say_why(struct session *s, int ret)
{
	struct timeval tv = { 1, 0 };
	uint64_t until = now_ns() + 1000000000ULL;
	char sink[16384];

	send_status(s, -ret, s->err);
	shutdown(s->sock, SHUT_WR);
	setsockopt(s->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (now_ns() < until && recv(s->sock, sink, sizeof(sink), 0) > 0)
		;
}

int session_serve(struct session *s)
{
	struct timeval tv = { PS_HANDSHAKE_S, 0 };
	uint64_t t0 = now_ns();
	int ret, one = 1;

	setsockopt(s->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(s->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ps_sock_liveness(s->sock);
	ret = authenticate(s);
	if (!ret && !(ret = session_buffers(s))) {
		/* an authenticated peer: silent this long, its session ends */
		tv.tv_sec = SESSION_TIMEOUT_S;
		setsockopt(s->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(s->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	while (!ret)
		ret = on_frame(s);
	if (ret == 1) {
		pr_info("peer %s: %u rounds, %lu MiB in %lu ms", s->peer, s->rounds, s->bytes >> 20,
			(now_ns() - t0) / 1000000);
		end_migration(s);
		session_free(s);
		return 0;
	}
	/* nothing of a failed session stays; its restored tree is gone before it hears */
	store_undo(s);
	end_migration(s);
	say_why(s, ret);
	session_free(s);
	return ret;
}

/*
 * cryo lazy-pages --page-server HOST:PORT -D DIR [-W DIR]. The dump is
 * reached first: should it not be there, no restore is kept waiting on
 * this daemon (it finds no socket, and says the pages are at the source).
 */
int cmd_lazy_pages(struct cryo_opts *o)
{
	struct session s = { .opts = o, .fd = -1, .fdir = -1, .sock = -1, .restore_listen = -1 };
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
	ret = session_serve(&s);
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
