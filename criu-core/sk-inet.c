/*
 * TCP, UDP, ping (ICMP datagram) and raw sockets, IPv4 and IPv6: bound
 * (ping sockets to their echo identifier, as UDP ones to a port) or not,
 * connected, listening with their backlog, and with --tcp-established
 * TCP connections, read and rebuilt in TCP repair mode: sequence numbers,
 * both queues, window and options, in any state from ESTABLISHED to
 * LAST_ACK and CLOSING (the FINs go again in the order they went). The
 * connections in a listener's accept queue are accepted by cryo, read the
 * same way, and made again in the queue (tcp-queue.c).
 *
 * A dumped connection stays in repair mode in cryo's hands: when the task
 * is killed after the dump its socket goes silently, with no FIN or RST
 * for the peer; if the task runs on, repair mode ends without a window
 * probe, and the accepted ones go back in their queue (inet_dump_finish).
 *
 * The listen backlog comes from sock_diag (inet_diag), asked in the
 * socket's own network namespace. On restore the root, which is in the
 * tree's network namespace, makes the socket: options, bind, listen or
 * connect.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "guard.h"
#include "fault.h"
#include "log.h"
#include "restore.h"
#include "sockets.h"
#include "tcp.h"
#include "udp.h"
#include "util.h"

static bool inet_match(const struct fd_parms *p)
{
	int domain;
	socklen_t len = sizeof(domain);

	return S_ISSOCK(p->st.st_mode) && !getsockopt(p->lfd, SOL_SOCKET, SO_DOMAIN, &domain, &len) &&
	       (domain == AF_INET || domain == AF_INET6);
}

static const char *addr_str(const void *sa, size_t len, char *buf, size_t blen)
{
	const struct sockaddr_in *in = sa;
	const struct sockaddr_in6 *in6 = sa;
	char a[INET6_ADDRSTRLEN] = "?";

	if (len >= sizeof(*in) && in->sin_family == AF_INET) {
		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(buf, blen, "%s:%u", a, ntohs(in->sin_port));
	} else if (len >= sizeof(*in6) && in6->sin6_family == AF_INET6) {
		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(buf, blen, "[%s]:%u", a, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, blen, "?");
	}
	return buf;
}

struct listen_info {
	ino_t ino;
	uint32_t backlog, queued;
};

static int listen_found(const struct nlmsghdr *h, void *arg)
{
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	struct listen_info *li = arg;

	if (m->idiag_inode != li->ino)
		return 0;
	li->queued = m->idiag_rqueue;
	li->backlog = m->idiag_wqueue;
	return 1;
}

/* a listener's backlog and accept queue, from inet_diag in the socket's own namespace */
static int listen_info(const struct fd_parms *p, int family, uint32_t *backlog, uint32_t *queued)
{
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req = { .r = { .sdiag_family = family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = 1 << 10 /* LISTEN */ } };
	struct listen_info li = { .ino = p->st.st_ino };
	char what[80];
	int ret;

	snprintf(what, sizeof(what), "pid %d fd %d (%s)", p->pid, p->fd, p->link);
	ret = sock_diag_walk(p->lfd, &req, sizeof(req), listen_found, &li, what);
	if (ret < 0)
		return ret;
	if (!ret) {
		pr_err("%s: sock_diag does not list the listening socket", what);
		return -ENOENT;
	}
	*backlog = li.backlog;
	*queued = li.queued;
	return 0;
}

static bool opt_on(int fd, int level, int opt)
{
	int v = 0;
	socklen_t l = sizeof(v);

	return !getsockopt(fd, level, opt, &v, &l) && v;
}

/* an int option: dumped as a present field, set back only if the kernel's default differs */
struct int_opt {
	int level, name;
	size_t has, val;	/* offsets of has_X and X in InetSkEntry */
	bool v6;		/* for AF_INET6 sockets (else AF_INET), or either if tcp */
	bool tcp;		/* TCP sockets only */
};

#define IOPT(lvl, nm, f, six, t) { lvl, nm, offsetof(InetSkEntry, has_##f), offsetof(InetSkEntry, f), six, t }
static const struct int_opt int_opts[] = {
	IOPT(IPPROTO_IP, IP_TOS, tos, false, false),
	IOPT(IPPROTO_IP, IP_TTL, ttl, false, false),
	IOPT(IPPROTO_IP, IP_FREEBIND, freebind, false, false),
	IOPT(IPPROTO_IP, IP_TRANSPARENT, transparent, false, false),
	IOPT(IPPROTO_IP, IP_HDRINCL, hdrincl, false, false),
	IOPT(IPPROTO_IPV6, IPV6_TCLASS, tos, true, false),
	IOPT(IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl, true, false),
	IOPT(IPPROTO_IPV6, IPV6_FREEBIND, freebind, true, false),
	IOPT(IPPROTO_IPV6, IPV6_TRANSPARENT, transparent, true, false),
	IOPT(IPPROTO_TCP, TCP_KEEPIDLE, keepidle, false, true),
	IOPT(IPPROTO_TCP, TCP_KEEPINTVL, keepintvl, false, true),
	IOPT(IPPROTO_TCP, TCP_KEEPCNT, keepcnt, false, true),
};

static bool opt_applies(const struct int_opt *o, int family, int type)
{
	if (o->tcp)
		return type == SOCK_STREAM;
	return o->v6 == (family == AF_INET6);
}

/* bools and uint32s alike: protobuf-c keeps a protobuf_c_boolean as an int */
static void dump_int_opts(int fd, InetSkEntry *e)
{
	struct linger lg;
	socklen_t l = sizeof(lg);

	for (size_t i = 0; i < ARRAY_SIZE(int_opts); i++) {
		const struct int_opt *o = &int_opts[i];
		int v;
		socklen_t vl = sizeof(v);

		if (!opt_applies(o, e->family, e->type) || getsockopt(fd, o->level, o->name, &v, &vl))
			continue;
		*(protobuf_c_boolean *)((char *)e + o->has) = true;
		*(uint32_t *)((char *)e + o->val) = v;
	}
	if (!getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l)) {
		e->has_linger_on = e->has_linger_sec = true;
		e->linger_on = lg.l_onoff;
		e->linger_sec = lg.l_linger;
	}
}

static int restore_int_opts(int fd, const InetSkEntry *e, const char *what)
{
	struct linger lg = { e->linger_on, e->linger_sec };

	for (size_t i = 0; i < ARRAY_SIZE(int_opts); i++) {
		const struct int_opt *o = &int_opts[i];
		int v, cur;
		socklen_t cl = sizeof(cur);

		if (!opt_applies(o, e->family, e->type) || !*(protobuf_c_boolean *)((const char *)e + o->has))
			continue;
		v = *(const uint32_t *)((const char *)e + o->val);
		if (!getsockopt(fd, o->level, o->name, &cur, &cl) && cur == v)
			continue;
		if (setsockopt(fd, o->level, o->name, &v, sizeof(v)))
			return pr_perror("%s: cannot set option %d/%d to %d", what, o->level, o->name, v);
	}
	if (e->linger_on && setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)))
		return pr_perror("%s: SO_LINGER", what);
	return 0;
}

/* one queue's sequence number and bytes, in repair mode */
/* fin: the send queue may end with a FIN, which counts in its length but is no byte to read */
static int peek_queue(int fd, int queue, bool fin, uint32_t *seq, ProtobufCBinaryData *data, struct arena *a)
{
	int len = 0;
	ssize_t n = 0;
	socklen_t l = sizeof(*seq);

	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) ||
	    getsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, seq, &l) ||
	    ioctl(fd, queue == TCP_RECV_QUEUE ? SIOCINQ : SIOCOUTQ, &len))
		return -errno;
	data->len = 0;
	data->data = arena_alloc(a, len + 1);
	if (!data->data)
		return -ENOMEM;
	if (len && (n = recv(fd, data->data, len, MSG_PEEK | MSG_DONTWAIT)) != len && !(fin && n == len - 1))
		return n < 0 ? -errno : -EIO;
	data->len = n;
	return 0;
}

/* put the connection in repair mode and read it: cryo holds it (ctx->tcp_held) until inet_dump_finish */
static int dump_tcp_stream(struct dump_ctx *ctx, const struct fd_parms *p, TcpStreamEntry **out, const char *src,
			   const char *dst)
{
	TcpStreamEntry *t = arena_new(&ctx->arena, TcpStreamEntry);
	struct tcp_info ti;
	struct tcp_repair_window w;
	socklen_t l = sizeof(ti);
	int on = 1, unsent = 0, cork = 0, ret;
	struct guard_entry *g;
	struct tcp_held *nv;

	if (!t)
		return -ENOMEM;
	tcp_stream_entry__init(t);
	if (getsockopt(p->lfd, SOL_TCP, TCP_INFO, &ti, &l))
		return pr_perror("pid %d fd %d: TCP_INFO", p->pid, p->fd);
	switch (ti.tcpi_state) {
	case TCP_ESTABLISHED:
		break;
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
		t->fin_sent = true;
		break;
	case TCP_CLOSE_WAIT:
		t->fin_received = true;
		break;
	case TCP_LAST_ACK:
		t->has_peer_fin_first = t->peer_fin_first = true;
		/* fall through */
	case TCP_CLOSING:
		t->fin_sent = t->fin_received = true;
		break;
	default:
		pr_err("pid %d fd %d: TCP connection %s -> %s is in state %u, which cryo does not keep yet",
		       p->pid, p->fd, src, dst, ti.tcpi_state);
		return -ENOTSUP;
	}
	t->has_fin_sent = t->has_fin_received = true;
	/* should cryo die, its guardian takes it out of repair mode again */
	g = guard_tcp_repair(ctx->opts->guard, p->pid, p->fd);
	if (ctx->opts->guard && !g)
		return -ENOMEM;
	if (setsockopt(p->lfd, SOL_TCP, TCP_REPAIR, &on, sizeof(on))) {
		guard_done(g);
		return pr_perror("pid %d fd %d: cannot put TCP connection %s -> %s in repair mode", p->pid, p->fd,
				 src, dst);
	}
	/* from here on it leaves repair mode only through inet_dump_finish */
	nv = xrealloc_array(ctx->tcp_held, ctx->nr_tcp_held + 1, sizeof(*nv));
	if (nv)
		ctx->tcp_held = nv;
	if (!nv || (nv[ctx->nr_tcp_held].fd = fcntl(p->lfd, F_DUPFD_CLOEXEC, 0)) < 0) {
		l = 0;
		setsockopt(p->lfd, SOL_TCP, TCP_REPAIR, &l, sizeof(int));
		guard_done(g);
		return -ENOMEM;
	}
	nv[ctx->nr_tcp_held].g = g;
	fault_point("tcp-repair");
	nv[ctx->nr_tcp_held].netns = -1;
	nv[ctx->nr_tcp_held++].pending = NULL;
	l = sizeof(int);
	ret = peek_queue(p->lfd, TCP_RECV_QUEUE, false, &t->inq_seq, &t->inq, &ctx->arena) ?:
	      peek_queue(p->lfd, TCP_SEND_QUEUE, t->fin_sent, &t->outq_seq, &t->outq, &ctx->arena);
	if (!ret && ioctl(p->lfd, SIOCOUTQNSD, &unsent))
		ret = -errno;
	l = sizeof(w);
	if (!ret && getsockopt(p->lfd, SOL_TCP, TCP_REPAIR_WINDOW, &w, &l))
		ret = -errno;
	l = sizeof(int);
	if (!ret && (getsockopt(p->lfd, SOL_TCP, TCP_MAXSEG, &t->mss, &l) ||
		     getsockopt(p->lfd, SOL_TCP, TCP_TIMESTAMP, &t->timestamp, &l) ||
		     getsockopt(p->lfd, SOL_TCP, TCP_CORK, &cork, &l)))
		ret = -errno;
	if (ret) {
		errno = -ret;
		return pr_perror("pid %d fd %d: cannot read TCP connection %s -> %s", p->pid, p->fd, src, dst);
	}
	t->unsent = MIN((uint32_t)unsent, t->outq.len);	/* a FIN not sent yet counts too */
	t->options = ti.tcpi_options;
	t->snd_wscale = ti.tcpi_snd_wscale;
	t->rcv_wscale = ti.tcpi_rcv_wscale;
	t->snd_wl1 = w.snd_wl1;
	t->snd_wnd = w.snd_wnd;
	t->max_window = w.max_window;
	t->rcv_wnd = w.rcv_wnd;
	t->rcv_wup = w.rcv_wup;
	t->has_cork = true;
	t->cork = cork;
	pr_debug("pid %d fd %d: TCP %s -> %s: %zu bytes to read, %zu to send (%u unsent)", p->pid, p->fd, src, dst,
		 t->inq.len, t->outq.len, t->unsent);
	*out = t;
	return 0;
}

/* the same family, address and port */
static bool same_addr(const void *a, size_t alen, const void *b, size_t blen)
{
	const struct sockaddr_in *x = a, *y = b;
	const struct sockaddr_in6 *x6 = a, *y6 = b;

	if (alen < sizeof(*x) || blen < sizeof(*y) || x->sin_family != y->sin_family || x->sin_port != y->sin_port)
		return false;
	if (x->sin_family == AF_INET)
		return x->sin_addr.s_addr == y->sin_addr.s_addr;
	return alen >= sizeof(*x6) && blen >= sizeof(*y6) && IN6_ARE_ADDR_EQUAL(&x6->sin6_addr, &y6->sin6_addr);
}

/* the timestamp clock of the peer of a pending connection, if cryo holds the peer too */
static bool held_peer_ts(struct dump_ctx *ctx, const TcpPendingEntry *pe, uint32_t *ts)
{
	for (size_t i = 0; i < ctx->nr_tcp_held; i++) {
		struct sockaddr_storage a, b;
		socklen_t al = sizeof(a), bl = sizeof(b), l = sizeof(*ts);
		int fd = ctx->tcp_held[i].fd;

		if (!ctx->tcp_held[i].pending && !getsockname(fd, (void *)&a, &al) &&
		    !getpeername(fd, (void *)&b, &bl) && same_addr(&a, al, pe->dst.data, pe->dst.len) &&
		    same_addr(&b, bl, pe->src.data, pe->src.len) && !getsockopt(fd, SOL_TCP, TCP_TIMESTAMP, ts, &l))
			return true;
	}
	return false;
}

/* a connection cryo accepted from a queue goes back there, in its listener's network namespace */
static void requeue_held(struct dump_ctx *ctx, struct tcp_held *h)
{
	_cleanup_close_ int mine = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	uint32_t ts;
	bool known = held_peer_ts(ctx, h->pending, &ts);
	char a[80], b[80], what[200];

	snprintf(what, sizeof(what), "TCP connection %s -> %s",
		 addr_str(h->pending->src.data, h->pending->src.len, a, sizeof(a)),
		 addr_str(h->pending->dst.data, h->pending->dst.len, b, sizeof(b)));
	/* in repair mode: closing it frees its addresses and says nothing to the peer */
	close(h->fd);
	h->fd = -1;
	if (mine < 0 || setns(h->netns, CLONE_NEWNET)) {
		pr_perror("%s: cannot enter its network namespace to put it back in its listener's queue", what);
		return;
	}
	if (tcp_requeue(h->pending, known ? &ts : NULL, what))
		pr_err("%s: lost: it could not be put back in its listener's queue", what);
	if (setns(mine, CLONE_NEWNET))
		pr_perror("cannot go back to cryo's network namespace");
}

/* the references tcp_later kept */
static void tcp_later_free(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tcp_later; i++)
		close(ctx->tcp_later[i].lfd);
	free(ctx->tcp_later);
	ctx->tcp_later = NULL;
	ctx->nr_tcp_later = 0;
}

void inet_dump_finish(struct dump_ctx *ctx, bool resumed)
{
	int off = TCP_REPAIR_OFF_NO_WP;

	/* first the ones for queues, while their peers in the tree are still quiet */
	for (size_t i = 0; i < ctx->nr_tcp_held && resumed; i++)
		if (ctx->tcp_held[i].pending)
			requeue_held(ctx, &ctx->tcp_held[i]);
	for (size_t i = 0; i < ctx->nr_tcp_held; i++) {
		struct tcp_held *h = &ctx->tcp_held[i];

		/* killed tasks: closing it in repair mode sends nothing to the peer */
		if (resumed && !h->pending && setsockopt(h->fd, SOL_TCP, TCP_REPAIR, &off, sizeof(off)))
			pr_perror("cannot take a TCP connection out of repair mode");
		if (h->fd >= 0)
			close(h->fd);
		if (h->netns >= 0)
			close(h->netns);
		guard_done(h->g);
	}
	free(ctx->tcp_held);
	ctx->tcp_held = NULL;
	ctx->nr_tcp_held = 0;
	tcp_later_free(ctx);
}

/*
 * The connections in a listener's accept queue (queued of them, or more
 * if more come): cryo accepts them, the task being stopped, and reads each
 * in repair mode. They go back at restore, or when the task runs on.
 */
static int dump_pending(struct dump_ctx *ctx, const struct fd_parms *p, InetSkEntry *e, uint32_t queued,
			const char *lname)
{
	size_t max = queued + 64;

	e->pending = arena_array(&ctx->arena, TcpPendingEntry *, max);
	if (!e->pending)
		return -ENOMEM;
	for (;;) {
		struct pollfd pf = { .fd = p->lfd, .events = POLLIN };
		struct sockaddr_storage src, dst;
		socklen_t sl = sizeof(src), dl = sizeof(dst);
		TcpPendingEntry *pe = arena_new(&ctx->arena, TcpPendingEntry);
		struct fd_parms cp = *p;
		char a[80], b[80];
		size_t held = ctx->nr_tcp_held;
		int ret;

		if (!pe)
			return -ENOMEM;
		if (poll(&pf, 1, 0) <= 0)
			return 0;
		if (e->n_pending == max) {
			pr_err("pid %d fd %d: TCP listener %s: connections keep coming into its queue", p->pid, p->fd,
			       lname);
			return -EAGAIN;
		}
		cp.lfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (cp.lfd < 0)
			return errno == EAGAIN ? 0 : pr_perror("pid %d fd %d: TCP listener %s: accept", p->pid, p->fd, lname);
		tcp_pending_entry__init(pe);
		if (getsockname(cp.lfd, (void *)&src, &sl) || getpeername(cp.lfd, (void *)&dst, &dl))
			ret = pr_perror("pid %d fd %d: TCP listener %s: a connection from its queue", p->pid, p->fd, lname);
		else
			ret = dump_tcp_stream(ctx, &cp, &pe->tcp, addr_str(&src, sl, a, sizeof(a)),
					      addr_str(&dst, dl, b, sizeof(b)));
		close(cp.lfd);
		if (ctx->nr_tcp_held > held) {
			/* held: it goes back into the queue if the task runs on, also if this dump fails */
			ctx->tcp_held[held].pending = pe;
			/* cryo's alone: should it die, nothing can take it back to the queue */
			guard_done(ctx->tcp_held[held].g);
			ctx->tcp_held[held].g = NULL;
			ctx->tcp_held[held].netns = ioctl(p->lfd, SIOCGSKNS);
		}
		if (ret)
			return ret;
		pe->src.data = arena_alloc(&ctx->arena, sl);
		pe->dst.data = arena_alloc(&ctx->arena, dl);
		if (!pe->src.data || !pe->dst.data)
			return -ENOMEM;
		memcpy(pe->src.data, &src, pe->src.len = sl);
		memcpy(pe->dst.data, &dst, pe->dst.len = dl);
		e->pending[e->n_pending++] = pe;
	}
}

/*
 * What is read in repair mode waits until every task's state is in and its
 * parasite gone (inet_dump_done), with cryo's own reference to the socket.
 */
static int tcp_later(struct dump_ctx *ctx, const struct fd_parms *p, InetSkEntry *e, uint32_t queued,
		     const char *src, const char *dst)
{
	struct tcp_later *nv = xrealloc_array(ctx->tcp_later, ctx->nr_tcp_later + 1, sizeof(*nv)), *l;

	if (!nv)
		return -ENOMEM;
	ctx->tcp_later = nv;
	l = &nv[ctx->nr_tcp_later];
	*l = (struct tcp_later){ .pid = p->pid, .fd = p->fd, .e = e, .queued = queued };
	snprintf(l->src, sizeof(l->src), "%s", src);
	snprintf(l->dst, sizeof(l->dst), "%s", dst);
	l->lfd = fcntl(p->lfd, F_DUPFD_CLOEXEC, 0);
	if (l->lfd < 0)
		return pr_perror("pid %d fd %d: cannot keep a reference to its socket", p->pid, p->fd);
	ctx->nr_tcp_later++;
	return 0;
}

/*
 * Every task's state is in: the tree is fenced in, then its connections
 * are read in repair mode and the listeners' queues taken, each held by
 * cryo until inet_dump_finish.
 */
static int inet_dump_done(struct dump_ctx *ctx)
{
	int ret = ctx->nr_tcp_later ? dump_fence_tree(ctx) : 0;

	for (size_t i = 0; i < ctx->nr_tcp_later && !ret; i++) {
		struct tcp_later *l = &ctx->tcp_later[i];
		struct fd_parms p = { .pid = l->pid, .fd = l->fd, .lfd = l->lfd };

		ret = l->queued ? dump_pending(ctx, &p, l->e, l->queued, l->src) :
				  dump_tcp_stream(ctx, &p, &l->e->tcp, l->src, l->dst);
	}
	return ret;
}

static bool is_ping(int type, int proto)
{
	return type == SOCK_DGRAM && (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6);
}

/* the kind of socket, for messages */
static const char *inet_kind(int type, int proto)
{
	return type == SOCK_STREAM ? "TCP" : type == SOCK_RAW ? "raw" : is_ping(type, proto) ? "ping" : "UDP";
}

static int inet_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	InetSkEntry *e = arena_new(&ctx->arena, InetSkEntry);
	SkOpts *o = arena_new(&ctx->arena, SkOpts);
	struct sockaddr_storage src, dst;
	socklen_t sl = sizeof(src), dl = sizeof(dst), l = sizeof(int);
	int family, type, proto, ret;
	char a[80], b[80], dev[IFNAMSIZ + 1] = "", what[128];
	socklen_t devl = sizeof(dev) - 1;
	bool connected, listening;

	if (!e || !o)
		return -ENOMEM;
	inet_sk_entry__init(e);
	if (getsockopt(p->lfd, SOL_SOCKET, SO_DOMAIN, &family, &l) ||
	    getsockopt(p->lfd, SOL_SOCKET, SO_TYPE, &type, &l) ||
	    getsockopt(p->lfd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) ||
	    getsockname(p->lfd, (struct sockaddr *)&src, &sl))
		return pr_perror("pid %d fd %d (%s): cannot read the socket", p->pid, p->fd, p->link);
	if (!((type == SOCK_STREAM && proto == IPPROTO_TCP) || (type == SOCK_DGRAM && proto == IPPROTO_UDP) ||
	      is_ping(type, proto) || type == SOCK_RAW)) {
		pr_err("pid %d fd %d (%s): an IPv%d socket of type %d, protocol %d: not supported yet", p->pid,
		       p->fd, p->link, family == AF_INET ? 4 : 6, type, proto);
		return -ENOTSUP;
	}
	connected = !getpeername(p->lfd, (struct sockaddr *)&dst, &dl);
	listening = opt_on(p->lfd, SOL_SOCKET, SO_ACCEPTCONN);
	if (connected && type == SOCK_STREAM) {
		if (!ctx->opts->tcp_established) {
			pr_err("pid %d fd %d: TCP connection %s -> %s is established: dump with --tcp-established to keep it",
			       p->pid, p->fd, addr_str(&src, sl, a, sizeof(a)), addr_str(&dst, dl, b, sizeof(b)));
			return -ENOTSUP;
		}
		if ((ret = tcp_later(ctx, p, e, 0, addr_str(&src, sl, a, sizeof(a)), addr_str(&dst, dl, b, sizeof(b)))))
			return ret;
	}
	e->family = family;
	e->type = type;
	e->protocol = proto;
	e->flags = p->flags;
	e->has_src = true;
	e->src.data = arena_alloc(&ctx->arena, sl);
	if (!e->src.data)
		return -ENOMEM;
	memcpy(e->src.data, &src, sl);
	e->src.len = sl;
	if (connected) {
		e->has_dst = true;
		e->dst.data = arena_alloc(&ctx->arena, dl);
		if (!e->dst.data)
			return -ENOMEM;
		memcpy(e->dst.data, &dst, dl);
		e->dst.len = dl;
	}
	if (listening) {
		uint32_t queued = 0;

		if ((ret = listen_info(p, family, &e->backlog, &queued)))
			return ret;
		e->has_backlog = true;
		if (queued && !ctx->opts->tcp_established) {
			pr_err("pid %d fd %d: TCP listener %s has %u connections not accepted yet: dump with --tcp-established to keep them",
			       p->pid, p->fd, addr_str(&src, sl, a, sizeof(a)), queued);
			return -ENOTSUP;
		}
		if (queued && (ret = tcp_later(ctx, p, e, queued, addr_str(&src, sl, a, sizeof(a)), "")))
			return ret;
	}
	if ((ret = sk_opts_dump(p, o, &ctx->arena)))
		return ret;
	e->opts = o;
	e->has_reuseaddr = e->has_reuseport = e->has_keepalive = true;
	e->reuseaddr = opt_on(p->lfd, SOL_SOCKET, SO_REUSEADDR);
	e->reuseport = opt_on(p->lfd, SOL_SOCKET, SO_REUSEPORT);
	e->keepalive = opt_on(p->lfd, SOL_SOCKET, SO_KEEPALIVE);
	if (family == AF_INET6) {
		e->has_v6only = true;
		e->v6only = opt_on(p->lfd, IPPROTO_IPV6, IPV6_V6ONLY);
	}
	if (type == SOCK_STREAM) {
		e->has_nodelay = true;
		e->nodelay = opt_on(p->lfd, IPPROTO_TCP, TCP_NODELAY);
	}
	if (type == SOCK_DGRAM && proto == IPPROTO_UDP) {
		int held = 0;

		e->has_udp_cork = true;
		e->udp_cork = opt_on(p->lfd, IPPROTO_UDP, UDP_CORK);
		snprintf(what, sizeof(what), "pid %d fd %d: UDP socket %s", p->pid, p->fd,
			 addr_str(&src, sl, a, sizeof(a)));
		if ((ret = udp_queue_dump(p->lfd, e, &ctx->arena, what)))
			return ret;
		/* bytes sent with UDP_CORK or MSG_MORE wait in the kernel, where nothing can read them */
		if (!ioctl(p->lfd, SIOCOUTQ, &held) && held > 0 && (ret = udp_cork_dump(p->lfd, e, &ctx->arena, what)))
			return ret;
	} else if (type != SOCK_STREAM) {
		sk_warn_queued(p, inet_kind(type, proto));	/* the kernel cannot peek past the first */
	}
	dump_int_opts(p->lfd, e);
	if (!getsockopt(p->lfd, SOL_SOCKET, SO_BINDTODEVICE, dev, &devl) && dev[0]) {
		e->bind_dev = arena_strdup(&ctx->arena, dev);
		if (!e->bind_dev)
			return -ENOMEM;
	}
	pr_debug("pid %d fd %d: %s socket %s%s", p->pid, p->fd, inet_kind(type, proto),
		 addr_str(&src, sl, a, sizeof(a)), listening ? " listening" : "");
	fe->inet_sk = e;
	return 0;
}

/* bound: to a port, or (raw sockets, whose "port" is their protocol) to an address */
static bool bound(const InetSkEntry *e)
{
	const struct sockaddr_in *in = (const void *)e->src.data;
	const struct sockaddr_in6 *in6 = (const void *)e->src.data;

	if (!e->has_src || e->src.len < sizeof(*in))
		return false;
	if (e->type != SOCK_RAW)
		return in->sin_port != 0;	/* sin_port and sin6_port sit at the same offset */
	if (in->sin_family == AF_INET)
		return in->sin_addr.s_addr != 0;
	return e->src.len >= sizeof(*in6) && !IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
}

static int send_queue(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		struct pollfd pf = { .fd = fd, .events = POLLOUT };
		ssize_t n = send(fd, p, len, MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN && poll(&pf, 1, 10000) > 0)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/*
 * In repair mode (since before bind): the sequence numbers, then connect (no packet goes out),
 * the options, both queues, the window. It stays in repair mode until
 * every socket is made (inet_open_done).
 */
static int restore_tcp_stream(int fd, const InetSkEntry *e, const char *what)
{
	const TcpStreamEntry *t = e->tcp;
	int q, sent = t->outq.len - t->unsent;
	/* a FIN takes a sequence number after the bytes: it is sent again by shutdown() */
	uint32_t inseq = t->inq_seq - t->inq.len - !!t->fin_received;
	uint32_t outseq = t->outq_seq - t->outq.len - !!t->fin_sent;
	struct tcp_repair_opt opts[4];
	struct tcp_repair_window w = { t->snd_wl1, t->snd_wnd, t->max_window, t->rcv_wnd, t->rcv_wup };
	int nopts = 0;
	char a[80];

	if (t->unsent > t->outq.len) {
		pr_err("%s: its image says more bytes are unsent than queued", what);
		return -EINVAL;
	}
	opts[nopts++] = (struct tcp_repair_opt){ TCPOPT_MAXSEG, t->mss };
	if (t->options & TCPI_OPT_WSCALE)
		opts[nopts++] = (struct tcp_repair_opt){ TCPOPT_WINDOW, t->snd_wscale | (t->rcv_wscale << 16) };
	if (t->options & TCPI_OPT_SACK)
		opts[nopts++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERMITTED, 0 };
	if (t->options & TCPI_OPT_TIMESTAMPS)
		opts[nopts++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP, 0 };
	if (tcp_repair_seqs(fd, inseq, outseq, what))
		return -EIO;
	/*
	 * The segment size is worked out once, at connect(), from the clamp
	 * set here: the peer's MSS, not 536 (it would stay that small), and at
	 * most half the largest window the peer offered, as the kernel bounds
	 * it (else a small window only takes probes). The kernel takes 88 to
	 * 32767 here; the options below set the whole clamp (loopback's 65495).
	 */
	uint32_t half = t->max_window > 536 ? t->max_window / 2 : t->max_window;
	int mss = MAX(MIN(MIN(t->mss, 32767u), half ? half : UINT32_MAX), 88u);

	if (setsockopt(fd, SOL_TCP, TCP_MAXSEG, &mss, sizeof(mss)))
		return pr_perror("%s: cannot set its segment size to %d", what, mss);
	if (connect(fd, (const void *)e->dst.data, e->dst.len))
		return pr_perror("%s: cannot connect it again to %s", what,
				 addr_str(e->dst.data, e->dst.len, a, sizeof(a)));
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts, nopts * sizeof(opts[0])))
		return pr_perror("%s: cannot set its options (mss %u, window scale %u/%u)", what, t->mss,
				 t->snd_wscale, t->rcv_wscale);
	if ((t->options & TCPI_OPT_TIMESTAMPS) &&
	    setsockopt(fd, SOL_TCP, TCP_TIMESTAMP, &t->timestamp, sizeof(t->timestamp)))
		return pr_perror("%s: cannot set its timestamp", what);
	q = TCP_RECV_QUEUE;
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) ||
	    (t->inq.len && send_queue(fd, t->inq.data, t->inq.len)))
		return pr_perror("%s: cannot put back %zu received bytes", what, t->inq.len);
	q = TCP_SEND_QUEUE;
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) ||
	    (sent && send_queue(fd, t->outq.data, sent)))
		return pr_perror("%s: cannot put back %d bytes sent and not acknowledged", what, sent);
	/* the window last: the kernel checks it against the queues' sequence numbers */
	if ((int32_t)(w.rcv_wup - t->inq_seq) >= 0 && t->fin_received)
		w.rcv_wup = t->inq_seq - 1;	/* the peer's FIN is not in yet: it comes after */
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)))
		return pr_perror("%s: cannot set its window", what);
	return 0;
}

/*
 * The peer's FIN, which the restored socket was not given (repair mode has
 * no way to say a FIN came): sent to it again from the peer's address,
 * with the sequence number it expects and an acknowledgement of nothing
 * new. No timestamp: it would become the one the socket holds the peer's
 * next segments to. The socket goes to CLOSE_WAIT (or on), and tells the
 * peer again that it got the FIN.
 */
static int inject_fin(const InetSkEntry *e, const char *what)
{
	const TcpStreamEntry *t = e->tcp;
	struct tcp_seg seg = {
		.from = e->dst.data, .to = e->src.data, .flags = TH_FIN | TH_ACK,
		.seq = t->inq_seq - 1, .ack = t->outq_seq - t->outq.len - !!t->fin_sent,
		.window = MIN(0xffffu, t->snd_wnd >> t->snd_wscale),
	};

	return tcp_inject(&seg, what);
}

/* out of repair mode: the bytes never sent go the normal way, the cork goes back on */
static int tcp_leave_repair(int fd, const FileEntry *fe, const char *what)
{
	const TcpStreamEntry *t = fe->inet_sk->tcp;
	/* room for what it held: the send buffer goes back to its size after */
	int off = 0, on = 1, room = t->outq.len + t->unsent, snd = fe->inet_sk->opts->sndbuf / 2;

	if (setsockopt(fd, SOL_TCP, TCP_REPAIR, &off, sizeof(off)))
		return pr_perror("%s: cannot leave TCP repair mode", what);
	if (t->unsent && (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &room, sizeof(room)) ||
			  send_queue(fd, t->outq.data + t->outq.len - t->unsent, t->unsent) ||
			  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd))))
		return pr_perror("%s: cannot queue %u bytes not sent yet", what, t->unsent);
	if (t->cork && setsockopt(fd, SOL_TCP, TCP_CORK, &on, sizeof(on)))
		return pr_perror("%s: TCP_CORK", what);
	return 0;
}

/*
 * Every socket is there, the other ends of connections inside the tree
 * too. They leave repair mode, then the FINs go again in the order they
 * went, in passes, because a FIN one socket sends reaches its peer in the
 * tree at once:
 *   1. sockets that shut down before the peer did (CLOSING) shut down,
 *   2. then the ones whose peer has not shut down (FIN_WAIT1/2),
 *   3. sockets that got the peer's FIN get it again (a duplicate where the
 *      peer is in the tree and sent it in 1 or 2),
 *   4. sockets that shut down after the peer (LAST_ACK) shut down.
 */
/* the timestamp clock of the peer of a pending connection, if the peer is in the tree */
static const uint32_t *peer_ts(struct restore_ctx *ctx, const TcpPendingEntry *pe)
{
	for (size_t i = 0; i < ctx->nr_files; i++) {
		const InetSkEntry *e = ctx->files[i]->inet_sk;

		if (e && e->tcp && same_addr(e->src.data, e->src.len, pe->dst.data, pe->dst.len) &&
		    same_addr(e->dst.data, e->dst.len, pe->src.data, pe->src.len))
			return &e->tcp->timestamp;
	}
	return NULL;
}

/* the listeners' queues, before any connection leaves repair mode: its peer might be in one */
static int fill_queues(struct restore_ctx *ctx)
{
	int ret = 0;

	for (size_t i = 0; i < ctx->nr_tcp_listeners && !ret; i++) {
		const InetSkEntry *e = files_find(ctx, ctx->tcp_listeners[i])->inet_sk;

		for (size_t j = 0; j < e->n_pending && !ret; j++) {
			const TcpPendingEntry *pe = e->pending[j];
			char what[200], a[80], b[80];

			snprintf(what, sizeof(what), "TCP connection %s -> %s in listener %u's queue",
				 addr_str(pe->src.data, pe->src.len, a, sizeof(a)),
				 addr_str(pe->dst.data, pe->dst.len, b, sizeof(b)), ctx->tcp_listeners[i]);
			ret = tcp_requeue(pe, peer_ts(ctx, pe), what);
		}
	}
	free(ctx->tcp_listeners);
	ctx->tcp_listeners = NULL;
	ctx->nr_tcp_listeners = 0;
	return ret;
}

static int inet_open_done(struct restore_ctx *ctx)
{
	int ret = fill_queues(ctx);

	for (int pass = 0; pass < 5 && !ret; pass++) {
		for (size_t i = 0; i < ctx->nr_tcp_repairing && !ret; i++) {
			const FileEntry *fe = files_find(ctx, ctx->tcp_repairing[i]);
			const TcpStreamEntry *t = fe->inet_sk->tcp;
			int fd = files_get_fd(ctx, fe->id);
			bool peer_first = t->fin_received && t->peer_fin_first;
			bool shut = pass == (peer_first ? 4 : t->fin_received ? 1 : 2);
			char what[32];

			snprintf(what, sizeof(what), "TCP connection %u", fe->id);
			if (pass == 0)
				ret = tcp_leave_repair(fd, fe, what);
			else if (pass == 3 && t->fin_received)
				ret = inject_fin(fe->inet_sk, what);
			else if (t->fin_sent && shut && shutdown(fd, SHUT_WR))
				ret = pr_perror("%s: cannot shut its sending side down again", what);
		}
	}
	free(ctx->tcp_repairing);
	ctx->tcp_repairing = NULL;
	ctx->nr_tcp_repairing = 0;
	return ret;
}

static int inet_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const InetSkEntry *e = fe->inet_sk;
	char what[64], a[80];
	int fd, one = 1, ret = 0;

	if (!e) {
		pr_err("files.img: entry %u is a socket without its details", fe->id);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "pid %d fd %d (%s socket)", pid, fdnum, inet_kind(e->type, e->protocol));
	fd = socket(e->family, e->type | SOCK_CLOEXEC | ((e->flags & O_NONBLOCK) ? SOCK_NONBLOCK : 0), e->protocol);
	if (fd < 0)
		return pr_perror("%s: socket", what);
	ret = sk_opts_restore(fd, e->opts, what);
	if (!ret && ((e->reuseaddr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) ||
		     (e->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) ||
		     (e->keepalive && setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one))) ||
		     (e->has_v6only && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &e->v6only, sizeof(int))) ||
		     (e->nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) ||
		     (e->udp_cork && setsockopt(fd, IPPROTO_UDP, UDP_CORK, &one, sizeof(one))) ||
		     (e->bind_dev && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, e->bind_dev, strlen(e->bind_dev)))))
		ret = pr_perror("%s: cannot set its options", what);
	if (!ret)
		ret = restore_int_opts(fd, e, what);
	/* repair mode before bind: a connection shares its port with its listener */
	if (!ret && e->tcp && setsockopt(fd, SOL_TCP, TCP_REPAIR, &one, sizeof(one)))
		ret = pr_perror("%s: cannot use TCP repair mode", what);
	if (!ret && bound(e) && bind(fd, (const void *)e->src.data, e->src.len))
		ret = pr_perror("%s: cannot bind it to %s", what, addr_str(e->src.data, e->src.len, a, sizeof(a)));
	/* before connecting: a connected socket takes datagrams from its peer only */
	if (!ret && e->n_rqueue)
		ret = udp_queue_restore(fd, e, what);
	if (!ret && e->has_backlog && listen(fd, e->backlog))
		ret = pr_perror("%s: cannot listen", what);
	if (!ret && e->n_pending) {
		uint32_t *nv = xrealloc_array(ctx->tcp_listeners, ctx->nr_tcp_listeners + 1, sizeof(*nv));

		if (nv) {
			ctx->tcp_listeners = nv;
			nv[ctx->nr_tcp_listeners++] = fe->id;
		}
		ret = nv ? 0 : -ENOMEM;
	}
	if (!ret && e->tcp) {
		uint32_t *nv = xrealloc_array(ctx->tcp_repairing, ctx->nr_tcp_repairing + 1, sizeof(*nv));

		ret = nv ? restore_tcp_stream(fd, e, what) : -ENOMEM;
		if (nv) {
			ctx->tcp_repairing = nv;
			nv[ctx->nr_tcp_repairing++] = fe->id;
		}
	}
	else if (!ret && e->has_dst && connect(fd, (const void *)e->dst.data, e->dst.len))
		ret = pr_perror("%s: cannot connect it to %s", what, addr_str(e->dst.data, e->dst.len, a, sizeof(a)));
	if (!ret && e->corked)
		ret = udp_cork_restore(fd, e, what);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* files.img: the device an inet socket is bound to, by name */
static int inet_validate(const FileEntry *fe, const char *where)
{
	return fe->inet_sk && fe->inet_sk->bind_dev ?
	       door_ifname(fe->inet_sk->bind_dev, "%s: inet_sk.bind_dev", where) : 0;
}

const struct fd_kind_ops inet_sk_fd_ops = {
	.kind = FD_KIND__INET_SK,
	.name = "inet socket",
	.match = inet_match,
	.dump = inet_dump,
	.dump_done = inet_dump_done,
	.validate = inet_validate,
	.open = inet_open,
	.open_done = inet_open_done,
};
