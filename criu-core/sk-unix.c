/*
 * Unix sockets: stream, datagram and seqpacket, with their names, their
 * connections, their options and the data queued in them.
 *
 * Dump: sock_diag (NETLINK_SOCK_DIAG, AF_UNIX), asked in each socket's
 * network namespace (once per namespace), lists every unix socket with
 * its name, the file it is bound to, its peer, the connections waiting in
 * a listener's queue and the shutdown state; a name's file is looked up
 * beneath the root of the task holding the socket (a container's, in its
 * mount namespace), and made again beneath the restored root. The queued
 * data is peeked through cryo's reference to the socket with SO_PEEK_OFF,
 * leaving it in place. The graph must be whole: a stream peer held outside the dump,
 * queued file descriptors (SCM_RIGHTS), data sent on a connection not yet
 * accepted, or a relative name are refused with the reason.
 *
 * Restore: cryo rebuilds the whole graph before the tree is forked.
 * Unnamed pairs come from socketpair(); named sockets are bound (a stale
 * socket file at the name is replaced), listeners listen, each accepted
 * connection is made again by connecting its client and accepting, then
 * the connections still waiting are queued again, oldest first; datagram
 * sockets connect to their peers by name. Then options, then the data,
 * written by each socket's peer (or by a stand-in peer that is closed
 * afterwards, for a socket whose peer had gone), then the shutdowns. A
 * name whose file had been deleted is unlinked again at the end.
 */
#define LOG_PREFIX "sk-unix: "
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "ns.h"
#include "sockets.h"
#include "restore.h"

#define UNIX_NAME_MAX	((int)sizeof(((struct sockaddr_un *)0)->sun_path))
#define SK_LISTEN	10	/* TCP_LISTEN */
#define SK_ESTABLISHED	1	/* TCP_ESTABLISHED */
#define RCV_SHUTDOWN	1
#define SEND_SHUTDOWN	2
#define PEEK_BUF	(4u << 20)

/* one socket as sock_diag shows it */
struct unix_sk_info {
	uint32_t ino, peer, vfs_ino, vfs_dev, rqlen, wqlen;
	uint8_t type, state, shutdown;
	bool has_vfs;
	uint8_t name[UNIX_NAME_MAX];
	int name_len;
	uint32_t *icons;
	size_t nr_icons;
};

static bool unix_match(const struct fd_parms *p)
{
	int domain;
	socklen_t len = sizeof(domain);

	return S_ISSOCK(p->st.st_mode) && !getsockopt(p->lfd, SOL_SOCKET, SO_DOMAIN, &domain, &len) &&
	       domain == AF_UNIX;
}

/* a printable form of a name, for messages */
static const char *name_str(const uint8_t *name, size_t len, char *buf, size_t size)
{
	if (!len)
		snprintf(buf, size, "(unnamed)");
	else if (!name[0])
		snprintf(buf, size, "@%.*s", (int)len - 1, name + 1);
	else
		snprintf(buf, size, "%.*s", (int)strnlen((const char *)name, len), name);
	return buf;
}

/* ----------------------------------------------------------------- dump */

static int parse_diag(const struct nlmsghdr *h, void *arg)
{
	struct dump_ctx *ctx = arg;
	const struct unix_diag_msg *m = NLMSG_DATA(h);
	int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
	struct unix_sk_info *s;

	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
		return 0;
	ctx->unix_sks = arena_grow(&ctx->arena, ctx->unix_sks, ctx->nr_unix_sks, sizeof(*s));
	if (!ctx->unix_sks)
		return -ENOMEM;
	s = &ctx->unix_sks[ctx->nr_unix_sks++];
	*s = (struct unix_sk_info){ .ino = m->udiag_ino, .type = m->udiag_type, .state = m->udiag_state };
	for (const struct rtattr *a = (const struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		const void *d = RTA_DATA(a);
		int dlen = RTA_PAYLOAD(a);

		switch (a->rta_type) {
		case UNIX_DIAG_NAME:
			s->name_len = MIN(dlen, UNIX_NAME_MAX);
			memcpy(s->name, d, s->name_len);
			break;
		case UNIX_DIAG_VFS:
			s->has_vfs = true;
			s->vfs_ino = ((const struct unix_diag_vfs *)d)->udiag_vfs_ino;
			s->vfs_dev = ((const struct unix_diag_vfs *)d)->udiag_vfs_dev;
			break;
		case UNIX_DIAG_PEER:
			s->peer = *(const uint32_t *)d;
			break;
		case UNIX_DIAG_ICONS:
			s->nr_icons = dlen / sizeof(uint32_t);
			s->icons = arena_alloc(&ctx->arena, dlen);
			if (!s->icons)
				return -ENOMEM;
			memcpy(s->icons, d, dlen);
			break;
		case UNIX_DIAG_RQLEN:
			s->rqlen = ((const struct unix_diag_rqlen *)d)->udiag_rqueue;
			s->wqlen = ((const struct unix_diag_rqlen *)d)->udiag_wqueue;
			break;
		case UNIX_DIAG_SHUTDOWN:
			s->shutdown = *(const uint8_t *)d;
			break;
		}
	}
	return 0;
}

/*
 * Every unix socket of the network namespace socket p was made in, once
 * per namespace and dump: sock_diag lists only those of the namespace it
 * is asked from (sock_diag_walk enters it), and a container's are in its
 * own.
 */
static int load_diag(struct dump_ctx *ctx, const struct fd_parms *p)
{
	struct {
		struct nlmsghdr h;
		struct unix_diag_req r;
	} req = {
		.r = { .sdiag_family = AF_UNIX, .udiag_states = ~0u,
		       .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS |
				     UDIAG_SHOW_RQLEN },
	};
	_cleanup_close_ int ns = ioctl(p->lfd, SIOCGSKNS);
	char what[PATH_MAX_LEN + 64];
	struct stat st;
	int ret;

	if (ns < 0 || fstat(ns, &st))
		return pr_perror("pid %d fd %d (%s): cannot reach its network namespace", p->pid, p->fd, p->link);
	for (size_t i = 0; i < ctx->nr_unix_netns; i++)
		if (ctx->unix_netns[i] == st.st_ino)
			return 0;
	snprintf(what, sizeof(what), "pid %d fd %d (%s): listing the unix sockets of its network namespace",
		 p->pid, p->fd, p->link);
	if ((ret = sock_diag_walk(p->lfd, &req, sizeof(req), parse_diag, ctx, what)))
		return ret;
	ctx->unix_netns = arena_grow(&ctx->arena, ctx->unix_netns, ctx->nr_unix_netns, sizeof(uint64_t));
	if (!ctx->unix_netns)
		return -ENOMEM;
	ctx->unix_netns[ctx->nr_unix_netns++] = st.st_ino;
	pr_debug("unix sockets of network namespace %lu read", (unsigned long)st.st_ino);
	return 0;
}

static struct unix_sk_info *find_info(struct dump_ctx *ctx, uint32_t ino)
{
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		if (ctx->unix_sks[i].ino == ino)
			return &ctx->unix_sks[i];
	return NULL;
}

/* fds passed in a peeked message: closed, and the socket refused */
static bool has_rights(struct msghdr *mh)
{
	bool found = false;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
			close(((int *)CMSG_DATA(c))[i]);
		found = true;
	}
	return found || (mh->msg_flags & MSG_CTRUNC);
}

/* the receive queue, left in place: a stream as one piece, else each message */
static int peek_queue(struct dump_ctx *ctx, const struct fd_parms *p, UnixSkEntry *u)
{
	_cleanup_free_ char *buf = malloc(PEEK_BUF);
	char cbuf[CMSG_SPACE(sizeof(int) * 253)];
	bool stream = u->type == SOCK_STREAM;
	int zero = 0, ret = 0;
	size_t total = 0;

	if (!buf)
		return -ENOMEM;
	if (setsockopt(p->lfd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)))
		return pr_perror("pid %d fd %d (%s): SO_PEEK_OFF", p->pid, p->fd, p->link);
	for (;;) {
		struct iovec iov = { buf + (stream ? total : 0), PEEK_BUF - (stream ? total : 0) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(p->lfd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (stream ? 0 : MSG_TRUNC));

		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			ret = pr_perror("pid %d fd %d (%s): cannot peek at its queue", p->pid, p->fd, p->link);
			break;
		}
		if (has_rights(&mh)) {
			pr_err("pid %d fd %d (%s): file descriptors are queued in it (SCM_RIGHTS): not supported",
			       p->pid, p->fd, p->link);
			ret = -ENOTSUP;
			break;
		}
		if (n == 0 && stream)
			break;	/* the peer shut down: nothing after */
		if (n == 0 || (size_t)n > iov.iov_len) {
			pr_err("pid %d fd %d (%s): a %s message is queued in it: not supported", p->pid, p->fd,
			       p->link, n ? "too long" : "zero-length");
			ret = -ENOTSUP;
			break;
		}
		if (stream) {
			total += n;
			if (total < PEEK_BUF)
				continue;
			pr_err("pid %d fd %d (%s): more than %u bytes queued", p->pid, p->fd, p->link, PEEK_BUF);
			ret = -ENOTSUP;
			break;
		}
		u->queue = arena_grow(&ctx->arena, u->queue, u->n_queue, sizeof(*u->queue));
		if (!u->queue || !(u->queue[u->n_queue].data = arena_alloc(&ctx->arena, n))) {
			ret = -ENOMEM;
			break;
		}
		memcpy(u->queue[u->n_queue].data, buf, n);
		u->queue[u->n_queue++].len = n;
	}
	if (!ret && stream && total) {
		u->queue = arena_new(&ctx->arena, ProtobufCBinaryData);
		if (!u->queue || !(u->queue[0].data = arena_alloc(&ctx->arena, total)))
			ret = -ENOMEM;
		else {
			memcpy(u->queue[0].data, buf, total);
			u->queue[0].len = total;
			u->n_queue = 1;
		}
	}
	/* as the task had it */
	if (setsockopt(p->lfd, SOL_SOCKET, SO_PEEK_OFF, &u->opts->peek_off, sizeof(int)) && !ret)
		ret = pr_perror("pid %d fd %d (%s): SO_PEEK_OFF", p->pid, p->fd, p->link);
	return ret;
}

/*
 * A path name: is its file still the socket's? (its mode and owner with it)
 * The name is the task's: it is looked up beneath the root of the task
 * that holds the socket (a container's, in its mount namespace), as the
 * restore makes it again beneath the restored root.
 */
static int check_bound_file(struct dump_ctx *ctx, const struct fd_parms *p, const struct unix_sk_info *s,
			    UnixSkEntry *u)
{
	char path[PATH_MAX_LEN + UNIX_NAME_MAX + 2], nb[UNIX_NAME_MAX + 8], root_path[32];
	_cleanup_close_ int root = -1, fd = -1;
	struct stat st;

	snprintf(path, sizeof(path), "%s%s%.*s", u->name_dir ?: "", u->name_dir ? "/" : "", s->name_len,
		 (const char *)s->name);
	snprintf(root_path, sizeof(root_path), "/proc/%d/root", p->pid);
	root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return pr_perror("pid %d fd %d (%s): cannot open its root to find its name", p->pid, p->fd, p->link);
	fd = door_open(root, path, O_PATH | O_CLOEXEC, 0, DOOR_IN_ROOT | DOOR_QUIET_ENOENT,
		       "pid %d fd %d (%s): the file of its name %s in its root", p->pid, p->fd, p->link,
		       name_str(s->name, s->name_len, nb, sizeof(nb)));
	if (fd < 0 && fd != -ENOENT)
		return fd;
	if (fd < 0 || fstat(fd, &st) || !S_ISSOCK(st.st_mode) || st.st_ino != s->vfs_ino) {
		u->has_name_gone = u->name_gone = true;
		return 0;
	}
	u->has_name_mode = u->has_name_uid = u->has_name_gid = true;
	u->name_mode = st.st_mode & 07777;
	/* as the tree's user namespace sees them: the restore sets them from inside it */
	u->name_uid = ns_uid(ctx, st.st_uid);
	u->name_gid = ns_gid(ctx, st.st_gid);
	return 0;
}

static int unix_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	UnixSkEntry *u = arena_new(&ctx->arena, UnixSkEntry);
	SkOpts *o = arena_new(&ctx->arena, SkOpts);
	struct unix_sk_info *s;
	int ret;

	if (!u || !o)
		return -ENOMEM;
	if ((ret = load_diag(ctx, p)))
		return ret;
	s = find_info(ctx, p->st.st_ino);
	if (!s) {
		pr_err("pid %d fd %d (%s): sock_diag of its network namespace does not list it", p->pid, p->fd,
		       p->link);
		return -ENOTSUP;
	}
	unix_sk_entry__init(u);
	u->ino = s->ino;
	u->type = s->type;
	u->state = s->state;
	u->flags = p->flags;
	if (s->name_len) {
		/* relative to the cwd it was bound in: the task's, as far as cryo can tell */
		if (s->name[0] && s->name[0] != '/') {
			_cleanup_free_ char *cwd = NULL;

			if ((ret = proc_readlink(p->pid, "cwd", &cwd)))
				return ret;
			u->name_dir = arena_strdup(&ctx->arena, cwd);
		}
		u->has_name = true;
		u->name.len = s->name_len;
		u->name.data = arena_alloc(&ctx->arena, s->name_len);
		if (!u->name.data)
			return -ENOMEM;
		memcpy(u->name.data, s->name, s->name_len);
		if (s->name[0] && s->has_vfs && (ret = check_bound_file(ctx, p, s, u)))
			return ret;
	}
	u->has_peer = u->has_shutdown = true;
	u->peer = s->peer;
	u->shutdown = s->shutdown;
	if (s->state == SK_LISTEN) {
		u->has_backlog = true;
		u->backlog = s->wqlen;
		u->n_icons = s->nr_icons;
		u->icons = s->icons;
	}
	u->opts = o;
	fe->unix_sk = u;
	if ((ret = sk_opts_dump(p, o, &ctx->arena)))
		return ret;
	return s->state == SK_LISTEN ? 0 : peek_queue(ctx, p, u);
}

static const UnixSkEntry *dumped_sk(struct dump_ctx *ctx, uint32_t ino)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const UnixSkEntry *u = ctx->file_entries[i]->unix_sk;

		if (u && u->ino == ino)
			return u;
	}
	return NULL;
}

/* the dumped listener with a connection from client ino waiting in its queue */
static const UnixSkEntry *waiting_in(struct dump_ctx *ctx, uint32_t ino)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const UnixSkEntry *u = ctx->file_entries[i]->unix_sk;

		for (size_t k = 0; u && k < u->n_icons; k++)
			if (u->icons[k] == ino)
				return u;
	}
	return NULL;
}

/* can each socket's connections be made again? */
static int check_peer(struct dump_ctx *ctx, UnixSkEntry *u)
{
	const struct unix_sk_info *ps, *self = find_info(ctx, u->ino);
	const UnixSkEntry *peer;
	char nb[UNIX_NAME_MAX + 8];

	if (waiting_in(ctx, u->ino)) {
		/* a client whose connection is not accepted yet (its peer has no inode) */
		if (self && self->wqlen) {
			pr_err("unix socket %u: data sent on its connection, not accepted yet: not supported",
			       u->ino);
			return -ENOTSUP;
		}
		return 0;
	}
	if (!u->peer || (peer = dumped_sk(ctx, u->peer))) {
		if (u->peer && u->type == SOCK_DGRAM && peer->peer != u->ino && !peer->has_name) {
			pr_err("unix socket %u: connected to socket %u, which has no name to connect to again",
			       u->ino, u->peer);
			return -ENOTSUP;
		}
		return 0;
	}
	ps = find_info(ctx, u->peer);
	if (u->type == SOCK_DGRAM && ps && ps->name_len) {
		u->has_peer_external = u->peer_external = true;
		u->has_peer_name = true;
		u->peer_name = (ProtobufCBinaryData){ ps->name_len, arena_alloc(&ctx->arena, ps->name_len) };
		if (!u->peer_name.data)
			return -ENOMEM;
		memcpy(u->peer_name.data, ps->name, ps->name_len);
		return 0;
	}
	pr_err("unix socket %u: its peer, socket %u %s, is held by no task of the dump", u->ino, u->peer,
	       ps ? name_str(ps->name, ps->name_len, nb, sizeof(nb)) : "");
	return -ENOTSUP;
}

static int unix_dump_done(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		UnixSkEntry *u = ctx->file_entries[i]->unix_sk;
		int ret;

		if (!u)
			continue;
		if ((ret = check_peer(ctx, u)))
			return ret;
		for (size_t k = 0; k < u->n_icons; k++) {
			if (!dumped_sk(ctx, u->icons[k])) {
				pr_err("unix socket %u: client %u of a connection waiting in its queue is held by no task of the dump",
				       u->ino, u->icons[k]);
				return -ENOTSUP;
			}
		}
	}
	return 0;
}

/* -------------------------------------------------------------- restore */

struct rst_unix {
	const UnixSkEntry *u;
	int fd;
	int stand_in;		/* the other end of a pair whose peer had gone */
	char bound[UNIX_NAME_MAX + 1];	/* the name bound, as bound ("@": abstract), to unlink if the name was gone */
};

static struct rst_unix *rsk_find(struct restore_ctx *ctx, uint32_t ino)
{
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		if (ctx->unix_sks[i].u->ino == ino)
			return &ctx->unix_sks[i];
	return NULL;
}

/*
 * A name (validated: unix_validate) as an address to bind, connect or
 * send to, with the very bytes it had: the kernel keeps them as the
 * socket's name (getsockname, sock_diag, a later dump). A path name's
 * directory is resolved first by the door in the root (a container's root
 * once pivoted into; a host process's names are the host's, by design),
 * which refuses what leaves it or goes through a magic link; the kernel's
 * own resolution of the name from that root then finds the same one. A
 * relative name is reached from the directory it was bound in, made
 * cryo's cwd through its fd (cryo runs one thread) until uaddr_put. The
 * file of the name is then handled through ua->dir and ua->last only.
 */
struct uaddr {
	struct sockaddr_un a;
	socklen_t len;
	int dir;		/* a path name's directory, or -1 */
	int here;		/* cryo's cwd while it is in a relative name's directory, or -1 */
	char last[UNIX_NAME_MAX + 1];	/* a path name's last component */
};

static void uaddr_put(struct uaddr *ua)
{
	if (ua->here >= 0 && fchdir(ua->here))
		pr_perror("cannot change back into cryo's directory");
	if (ua->here >= 0)
		close(ua->here);
	if (ua->dir >= 0)
		close(ua->dir);
	ua->here = ua->dir = -1;
}

/* a relative name's directory, by the door, as cryo's cwd */
static int uaddr_enter(struct uaddr *ua, int root, const char *dir, uint32_t ino)
{
	_cleanup_close_ int fd = door_open(root, dir, O_PATH | O_DIRECTORY, 0, DOOR_IN_ROOT,
					   "unix socket %u: the directory of its name", ino);

	if (fd < 0)
		return fd;
	ua->here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ua->here < 0 || fchdir(fd))
		return pr_perror("unix socket %u: cannot go into %s", ino, dir);
	return steal_fd(fd);
}

static int uaddr_get(struct uaddr *ua, const ProtobufCBinaryData *name, const char *dir, uint32_t ino)
{
	size_t n = MIN(name->len, sizeof(ua->a.sun_path));
	_cleanup_close_ int root = -1, base = -1;
	char path[UNIX_NAME_MAX + 1];
	const char *last;

	*ua = (struct uaddr){ .a.sun_family = AF_UNIX, .dir = -1, .here = -1 };
	memcpy(ua->a.sun_path, name->data, n);
	ua->len = offsetof(struct sockaddr_un, sun_path) + n;
	if (!n || !name->data[0])
		return 0;	/* abstract: no file */
	snprintf(path, sizeof(path), "%.*s", (int)strnlen((const char *)name->data, n), (const char *)name->data);
	if ((root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return pr_perror("unix socket %u: cannot open the root directory", ino);
	if (path[0] != '/' && dir && (base = uaddr_enter(ua, root, dir, ino)) < 0) {
		uaddr_put(ua);
		return base;
	}
	/* from a relative name's directory, beneath it: no absolute symlink to be resolved otherwise */
	ua->dir = base >= 0 ? door_parent_how(base, path, DOOR_BENEATH, &last, "unix socket %u: name", ino) :
			      door_parent_how(root, path, DOOR_IN_ROOT, &last, "unix socket %u: name", ino);
	if (ua->dir < 0) {
		int ret = ua->dir;

		uaddr_put(ua);
		return ret;
	}
	snprintf(ua->last, sizeof(ua->last), "%s", last);
	return 0;
}

/* the name s is bound to (bound), with its directory if relative */
static int uaddr_bound(struct uaddr *ua, const struct rst_unix *s)
{
	ProtobufCBinaryData n = { strlen(s->bound) + 1, (uint8_t *)s->bound };

	return uaddr_get(ua, &n, s->u->name_dir, s->u->ino);
}

static bool same_name(const UnixSkEntry *a, const UnixSkEntry *b)
{
	return a->has_name && b->has_name && a->name.len == b->name.len &&
	       !memcmp(a->name.data, b->name.data, a->name.len);
}

/* is s a client whose connection waits in a listener's queue? */
static bool waiting(struct restore_ctx *ctx, const struct rst_unix *s)
{
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		for (size_t k = 0; k < ctx->unix_sks[i].u->n_icons; k++)
			if (ctx->unix_sks[i].u->icons[k] == s->u->ino)
				return true;
	return false;
}

/* the dumped listener s was accepted from (it has the listener's name), or NULL */
static struct rst_unix *accepted_from(struct restore_ctx *ctx, const struct rst_unix *s)
{
	if (s->u->state == SK_LISTEN || !s->u->peer || !rsk_find(ctx, s->u->peer))
		return NULL;
	for (size_t i = 0; i < ctx->nr_unix_sks; i++) {
		struct rst_unix *l = &ctx->unix_sks[i];

		if (l->u->state == SK_LISTEN && same_name(l->u, s->u) && l->u->type == s->u->type)
			return l;
	}
	return NULL;
}

static bool name_taken(struct restore_ctx *ctx, const struct rst_unix *s)
{
	for (size_t i = 0; i < ctx->nr_unix_sks && &ctx->unix_sks[i] != s; i++)
		if (ctx->unix_sks[i].fd >= 0 && ctx->unix_sks[i].bound[0] && same_name(ctx->unix_sks[i].u, s->u))
			return true;
	return false;
}

/* a path name's file: a stale socket file is replaced; a socket's whose name was gone goes next to it */
static int clear_name(struct rst_unix *s, struct uaddr *ua)
{
	const UnixSkEntry *u = s->u;
	size_t bl = strlen(s->bound);
	struct stat st;

	if (fstatat(ua->dir, ua->last, &st, AT_SYMLINK_NOFOLLOW))
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("unix socket %u: %s, its name, is now a file that is not a socket", u->ino, s->bound);
		return -EEXIST;
	}
	if (!u->name_gone) {
		if (unlinkat(ua->dir, ua->last, 0))
			return pr_perror("unix socket %u: cannot remove the stale socket file %s", u->ino, s->bound);
		return 0;
	}
	/* a new socket took the name: bind next to it, unlink after */
	if (snprintf(s->bound + bl, sizeof(s->bound) - bl, ".cryo-%u", u->ino) >= (int)(sizeof(s->bound) - bl)) {
		pr_err("unix socket %u: no room for a name next to %s", u->ino, s->bound);
		return -ENAMETOOLONG;
	}
	uaddr_put(ua);
	if (uaddr_bound(ua, s))
		return -EINVAL;
	unlinkat(ua->dir, ua->last, 0);
	return 0;
}

/* bind s to its name, beneath the name's directory, in place of a stale socket file */
static int bind_name(struct restore_ctx *ctx, struct rst_unix *s)
{
	const UnixSkEntry *u = s->u;
	char nb[UNIX_NAME_MAX + 8];
	struct uaddr ua;
	int ret;

	if (name_taken(ctx, s))
		return 0;	/* sockets accepted from a listener now closed share its name */
	if (!u->name.len || !u->name.data[0])
		snprintf(s->bound, sizeof(s->bound), "@");
	else
		snprintf(s->bound, sizeof(s->bound), "%.*s", (int)strnlen((const char *)u->name.data, u->name.len),
			 (const char *)u->name.data);
	ret = uaddr_get(&ua, &u->name, u->name_dir, u->ino);
	if (!ret && ua.dir >= 0)
		ret = clear_name(s, &ua);
	if (!ret && bind(s->fd, (struct sockaddr *)&ua.a, ua.len))
		ret = pr_perror("unix socket %u: cannot bind it to %s", u->ino,
				name_str((uint8_t *)ua.a.sun_path, ua.len - offsetof(struct sockaddr_un, sun_path), nb,
					 sizeof(nb)));
	if (!ret && ua.dir >= 0 && u->has_name_mode &&
	    (fchownat(ua.dir, ua.last, u->name_uid, u->name_gid, AT_SYMLINK_NOFOLLOW) ||
	     fchmodat(ua.dir, ua.last, u->name_mode, 0)))
		ret = pr_perror("unix socket %u: cannot give %s its mode and owner back", u->ino, s->bound);
	uaddr_put(&ua);
	return ret;
}

static int connect_to(struct rst_unix *s, const ProtobufCBinaryData *name, const char *dir, const char *what)
{
	char nb[UNIX_NAME_MAX + 8];
	struct uaddr ua;
	int ret = uaddr_get(&ua, name, dir, s->u->ino);

	if (ret)
		return ret;
	ret = connect(s->fd, (struct sockaddr *)&ua.a, ua.len);
	if (ret)
		ret = pr_perror("unix socket %u: cannot connect it to %s %s%s%s", s->u->ino, what,
				name->data[0] != '/' && dir ? dir : "", name->data[0] != '/' && dir ? "/" : "",
				name_str(name->data, name->len, nb, sizeof(nb)));
	uaddr_put(&ua);
	return ret;
}

/* connect c to t where t is bound, which may be a stand-in for a name that was gone */
static int connect_bound(struct rst_unix *c, const struct rst_unix *t, const char *what)
{
	ProtobufCBinaryData n = t->u->name;

	if (t->bound[0] && t->bound[0] != '@')
		n = (ProtobufCBinaryData){ strlen(t->bound) + 1, (uint8_t *)t->bound };
	return connect_to(c, &n, t->u->name_dir, what);
}

/*
 * A connected socket whose peer closed (a stream one says it is connected
 * still; a datagram one has messages only its peer can have sent) gets a
 * stand-in peer for its data.
 */
static bool peer_gone(struct restore_ctx *ctx, const struct rst_unix *s)
{
	if (s->u->peer || waiting(ctx, s))
		return false;
	if (s->u->type != SOCK_DGRAM)
		return s->u->state == SK_ESTABLISHED;
	if (!s->u->n_queue || s->u->has_name)
		return false;
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		if (ctx->unix_sks[i].u->peer == s->u->ino)
			return false;
	return true;
}

/* step 1: every socket that is not made by accept(), bound */
static int create_sockets(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_unix_sks; i++) {
		struct rst_unix *s = &ctx->unix_sks[i], *p = rsk_find(ctx, s->u->peer);
		int sv[2], ret;

		if (s->fd >= 0 || accepted_from(ctx, s))
			continue;
		if (peer_gone(ctx, s)) {
			/* its peer closed: a pair whose other end closes once the data is in */
			if (socketpair(AF_UNIX, s->u->type | SOCK_CLOEXEC, 0, sv))
				return pr_perror("unix socket %u: socketpair", s->u->ino);
			s->fd = sv[0];
			s->stand_in = sv[1];
		} else if (p && p->u->peer == s->u->ino && !accepted_from(ctx, p) && p->fd < 0) {
			if (socketpair(AF_UNIX, s->u->type | SOCK_CLOEXEC, 0, sv))
				return pr_perror("unix socket %u: socketpair", s->u->ino);
			s->fd = sv[0];
			p->fd = sv[1];
			if (p->u->has_name && (ret = bind_name(ctx, p)))
				return ret;
		} else {
			s->fd = socket(AF_UNIX, s->u->type | SOCK_CLOEXEC, 0);
			if (s->fd < 0)
				return pr_perror("unix socket %u: socket", s->u->ino);
		}
		if (s->u->has_name && (ret = bind_name(ctx, s)))
			return ret;
	}
	return 0;
}

/* steps 2-4: listeners listen, accepted connections are made, waiting ones queued */
static int make_connections(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_unix_sks; i++) {
		struct rst_unix *l = &ctx->unix_sks[i];
		int ret;

		if (l->u->state != SK_LISTEN)
			continue;
		if (listen(l->fd, l->u->backlog))
			return pr_perror("unix socket %u: listen", l->u->ino);
		for (size_t k = 0; k < ctx->nr_unix_sks; k++) {
			struct rst_unix *s = &ctx->unix_sks[k], *c;

			if (accepted_from(ctx, s) != l)
				continue;
			c = rsk_find(ctx, s->u->peer);
			if ((ret = connect_bound(c, l, "listener")))
				return ret;
			s->fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
			if (s->fd < 0)
				return pr_perror("unix socket %u: accept", s->u->ino);
		}
		for (size_t k = 0; k < l->u->n_icons; k++) {
			struct rst_unix *c = rsk_find(ctx, l->u->icons[k]);

			if (!c) {
				pr_err("unix socket %u: client %u of a waiting connection is not in the images",
				       l->u->ino, l->u->icons[k]);
				return -EINVAL;
			}
			if ((ret = connect_bound(c, l, "listener")))
				return ret;
		}
	}
	/* datagram sockets connected one way, by name */
	for (size_t i = 0; i < ctx->nr_unix_sks; i++) {
		struct rst_unix *s = &ctx->unix_sks[i], *p = rsk_find(ctx, s->u->peer);
		int ret = 0;

		if (s->u->type != SOCK_DGRAM)
			continue;
		if (s->u->peer_external)
			ret = connect_to(s, &s->u->peer_name, NULL, "socket");
		else if (p && p->u->peer != s->u->ino)
			ret = connect_bound(s, p, "socket");
		if (ret)
			return ret;
	}
	return 0;
}

static int set_unix_opts(const struct rst_unix *s)
{
	char what[32];

	snprintf(what, sizeof(what), "unix socket %u", s->u->ino);
	return sk_opts_restore(s->fd, s->u->opts, what);
}

/* who puts s's queue back: its peer, its stand-in, a socket connected to it, or a new one */
static int queue_writer(struct restore_ctx *ctx, const struct rst_unix *s, bool *temp)
{
	const struct rst_unix *p = rsk_find(ctx, s->u->peer);

	*temp = false;
	if (s->stand_in >= 0)
		return s->stand_in;
	if (p && p->u->peer == s->u->ino)
		return p->fd;
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		if (ctx->unix_sks[i].u->peer == s->u->ino)
			return ctx->unix_sks[i].fd;
	if (s->u->type == SOCK_DGRAM && s->u->has_name) {
		*temp = true;
		return socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	}
	pr_err("unix socket %u: no socket to put its %zu queued messages back through", s->u->ino,
	       s->u->n_queue);
	return -ENOTCONN;
}

static int fill_queue(struct restore_ctx *ctx, const struct rst_unix *s)
{
	struct uaddr ua = { .dir = -1, .here = -1 };
	bool temp;
	int w, ret = 0;

	if (!s->u->n_queue)
		return 0;
	w = queue_writer(ctx, s, &temp);
	if (w < 0)
		return w;
	if (temp && (ret = uaddr_get(&ua, &s->u->name, s->u->name_dir, s->u->ino))) {
		close(w);
		return ret;
	}
	for (size_t i = 0; i < s->u->n_queue && !ret; i++) {
		const ProtobufCBinaryData *m = &s->u->queue[i];
		size_t off = 0;

		while (off < m->len) {
			ssize_t n = sendto(w, m->data + off, m->len - off, MSG_DONTWAIT | MSG_NOSIGNAL,
					   temp ? (struct sockaddr *)&ua.a : NULL, temp ? ua.len : 0);

			if (n <= 0) {
				ret = pr_perror("unix socket %u: cannot queue its %zu bytes again", s->u->ino, m->len);
				break;
			}
			off += n;
		}
	}
	if (temp)
		close(w);
	uaddr_put(&ua);
	return ret;
}

static int unix_prepare(struct restore_ctx *ctx)
{
	int ret;

	for (size_t i = 0; i < ctx->nr_files; i++) {
		const FileEntry *fe = ctx->files[i];
		struct rst_unix *nv;

		if (fe->kind != FD_KIND__UNIX_SK)
			continue;
		if (!fe->unix_sk || !fe->unix_sk->opts) {
			pr_err("files.img: entry %u is a unix socket without its details", fe->id);
			return -EINVAL;
		}
		nv = xrealloc_array(ctx->unix_sks, ctx->nr_unix_sks + 1, sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		ctx->unix_sks = nv;
		nv[ctx->nr_unix_sks++] = (struct rst_unix){ .u = fe->unix_sk, .fd = -1, .stand_in = -1 };
	}
	if ((ret = create_sockets(ctx)) || (ret = make_connections(ctx)))
		return ret;
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		if ((ret = set_unix_opts(&ctx->unix_sks[i])))
			return ret;
	for (size_t i = 0; i < ctx->nr_unix_sks; i++)
		if ((ret = fill_queue(ctx, &ctx->unix_sks[i])))
			return ret;
	for (size_t i = 0; i < ctx->nr_unix_sks; i++) {
		struct rst_unix *s = &ctx->unix_sks[i];
		unsigned sh = s->u->shutdown;

		/* a stand-in's close shuts its pair down on its own */
		if (s->stand_in >= 0) {
			close(s->stand_in);
			s->stand_in = -1;
		} else if (sh && s->u->state != SK_LISTEN &&
			   shutdown(s->fd, sh == (RCV_SHUTDOWN | SEND_SHUTDOWN) ? SHUT_RDWR :
					   sh & SEND_SHUTDOWN ? SHUT_WR : SHUT_RD) && errno != ENOTCONN) {
			return pr_perror("unix socket %u: shutdown", s->u->ino);
		}
		if (s->u->name_gone && s->bound[0] && s->bound[0] != '@') {
			struct uaddr ua;

			if (uaddr_bound(&ua, s))
				return -EINVAL;
			unlinkat(ua.dir, ua.last, 0);
			uaddr_put(&ua);
		}
	}
	return 0;
}

/*
 * A name of the image: an abstract one (a 0 byte first) is bytes, at most
 * sun_path's size; a path name a path (relative ones only with the
 * directory they were bound in), NUL-padded at most.
 */
static int name_ok(const ProtobufCBinaryData *name, bool relative_ok, const char *where, const char *field)
{
	char path[UNIX_NAME_MAX + 1];
	size_t n;

	if (name->len > (size_t)UNIX_NAME_MAX) {
		snprintf(path, sizeof(path), "%zu bytes", name->len);
		return door_refuse(path, "more than a socket name holds", "%s: unix_sk.%s", where, field);
	}
	if (!name->len || !name->data[0])
		return name->len ? 0 : door_bytes_str(name->data, 0, UNIX_NAME_MAX, "%s: unix_sk.%s", where, field);
	n = strnlen((const char *)name->data, name->len);
	for (size_t i = n; i < name->len; i++)
		if (name->data[i])
			return door_bytes_str(name->data, name->len, UNIX_NAME_MAX, "%s: unix_sk.%s", where, field);
	snprintf(path, sizeof(path), "%.*s", (int)n, (const char *)name->data);
	if (path[0] == '/' || !relative_ok)
		return door_abspath(path, UNIX_NAME_MAX - 1, "%s: unix_sk.%s", where, field);
	return door_relpath(path, UNIX_NAME_MAX - 1, "%s: unix_sk.%s", where, field);
}

static int unix_validate(const FileEntry *fe, const char *where)
{
	const UnixSkEntry *u = fe->unix_sk;

	if (!u)
		return 0;
	return (u->has_name ? name_ok(&u->name, u->name_dir != NULL, where, "name") : 0) ?:
	       (u->has_peer_name ? name_ok(&u->peer_name, false, where, "peer_name") : 0) ?:
	       (u->name_dir ? door_abspath(u->name_dir, DOOR_PATH_MAX, "%s: unix_sk.name_dir", where) : 0);
}

static int unix_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	struct rst_unix *s = fe->unix_sk ? rsk_find(ctx, fe->unix_sk->ino) : NULL;
	int fd;

	if (!s || s->fd < 0) {
		pr_err("pid %d fd %d: unix socket of file %u was not made", pid, fdnum, fe->id);
		return -EINVAL;
	}
	fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 || fcntl(fd, F_SETFL, s->u->flags & ~O_ACCMODE)) {
		if (fd >= 0)
			close(fd);
		return pr_perror("pid %d fd %d: unix socket %u", pid, fdnum, s->u->ino);
	}
	return fd;
}

static void unix_restore_done(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_unix_sks; i++) {
		if (ctx->unix_sks[i].fd >= 0)
			close(ctx->unix_sks[i].fd);
		if (ctx->unix_sks[i].stand_in >= 0)
			close(ctx->unix_sks[i].stand_in);
	}
	free(ctx->unix_sks);
	ctx->unix_sks = NULL;
	ctx->nr_unix_sks = 0;
}

const struct fd_kind_ops unix_sk_fd_ops = {
	.kind = FD_KIND__UNIX_SK,
	.name = "unix socket",
	.match = unix_match,
	.dump = unix_dump,
	.dump_done = unix_dump_done,
	.validate = unix_validate,
	.prepare = unix_prepare,
	.open = unix_open,
	.restore_done = unix_restore_done,
};
