/*
 * Connections in a listener's accept queue: established by the kernel,
 * not accepted by the task yet. At the dump cryo accepts them and reads
 * them in repair mode (sk-inet.c); here they are put back, at restore or
 * when a dumped task runs on.
 *
 * The kernel has no call that puts a socket in a listener's queue: only a
 * handshake does. So the handshake is made again, with segments from the
 * peer's address sent through a raw socket (inject.c), and the kernel
 * is led to the connection's own sequence numbers:
 *
 *  1. A SYN that finds a TIME_WAIT socket of the same addresses starts the
 *     new connection at that socket's next sequence number + 65537. So a
 *     socket of those addresses is made in repair mode with the number
 *     that gives the dumped one, shut down (still in repair mode: its FIN
 *     is only queued, nothing goes to the peer) and sent the peer's FIN:
 *     it goes to TIME_WAIT.
 *  2. The peer's SYN, with its initial sequence number and the options the
 *     connection had (MSS, window scale, SACK, timestamps if the peer's
 *     clock is known), then its ACK: the listener makes the connection and
 *     queues it.
 *  3. The bytes the connection had received and not been read, and the
 *     peer's FIN if it had come.
 *
 * The listener's answers go to the peer, which ignores them: they are out
 * of its window (it is past the handshake), or the network lock holds them.
 * Then sock_diag must show the connection with everything it received and
 * its own window scale, or the restore fails, naming it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>

#include "compat.h"
#include "log.h"
#include "tcp.h"
#include "util.h"

/* what the handshake left, as sock_diag sees it */
struct queued_info {
	uint8_t state;
	uint32_t rqueue;
	uint8_t rcv_wscale;
	uint32_t rcv_wnd;	/* the window it last offered: 0 if the kernel does not tell */
};

/* the connection between src and dst, asked of sock_diag by its addresses */
static int diag_find(const TcpPendingEntry *p, struct queued_info *qi, const char *what)
{
	const struct sockaddr_in *s = (const void *)p->src.data, *d = (const void *)p->dst.data;
	const struct sockaddr_in6 *s6 = (const void *)p->src.data, *d6 = (const void *)p->dst.data;
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST },
		.r = { .sdiag_family = s->sin_family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u,
		       .idiag_ext = 1 << (INET_DIAG_INFO - 1),
		       .id = { .idiag_sport = s->sin_port, .idiag_dport = d->sin_port,
			       .idiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE } } },
	};
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	_cleanup_free_ char *buf = malloc(8192);
	struct nlmsghdr *h;
	ssize_t n;

	if (fd < 0 || !buf)
		return pr_perror("%s: cannot open a sock_diag socket", what);
	if (s->sin_family == AF_INET) {
		req.r.id.idiag_src[0] = s->sin_addr.s_addr;
		req.r.id.idiag_dst[0] = d->sin_addr.s_addr;
	} else {
		memcpy(req.r.id.idiag_src, &s6->sin6_addr, 16);
		memcpy(req.r.id.idiag_dst, &d6->sin6_addr, 16);
	}
	if (send(fd, &req, sizeof(req), 0) != sizeof(req) || (n = recv(fd, buf, 8192, 0)) <= 0)
		return pr_perror("%s: cannot ask sock_diag for it", what);
	h = (struct nlmsghdr *)buf;
	if (!NLMSG_OK(h, n) || h->nlmsg_type == NLMSG_ERROR) {
		errno = NLMSG_OK(h, n) ? -((struct nlmsgerr *)NLMSG_DATA(h))->error : EIO;
		return pr_perror("%s: not in its listener's queue after the handshake", what);
	}
	{
		const struct inet_diag_msg *m = NLMSG_DATA(h);
		size_t alen = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));

		qi->state = m->idiag_state;
		qi->rqueue = m->idiag_rqueue;
		int rcv_wnd_at = TCPI_RCV_WND_OFFSET;

		qi->rcv_wscale = 0xff;
		qi->rcv_wnd = 0;
		for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
			if (a->rta_type != INET_DIAG_INFO || (int)RTA_PAYLOAD(a) < (int)offsetof(struct tcp_info, tcpi_rto))
				continue;
			qi->rcv_wscale = ((const struct tcp_info *)RTA_DATA(a))->tcpi_rcv_wscale;
			if ((int)RTA_PAYLOAD(a) >= rcv_wnd_at + 4)
				memcpy(&qi->rcv_wnd, (const char *)RTA_DATA(a) + rcv_wnd_at, 4);
		}
	}
	return 0;
}

int tcp_repair_seqs(int fd, uint32_t rcv, uint32_t snd, const char *what)
{
	int q = TCP_RECV_QUEUE;

	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) ||
	    setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, &rcv, sizeof(rcv)))
		return pr_perror("%s: cannot set its receive sequence", what);
	q = TCP_SEND_QUEUE;
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) ||
	    setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, &snd, sizeof(snd)))
		return pr_perror("%s: cannot set its send sequence", what);
	return 0;
}

/*
 * Step 1: a TIME_WAIT socket of the connection's addresses whose next
 * sequence number is isn - 65537, and which has received up to rcv.
 */
static int make_time_wait(const TcpPendingEntry *p, uint32_t isn, uint32_t rcv, const char *what)
{
	const struct sockaddr *src = (const void *)p->src.data;
	uint32_t snd = isn - 65537 - 1;	/* its FIN takes one */
	int on = 1;
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	struct tcp_seg fin = { .from = p->dst.data, .to = p->src.data, .flags = TH_FIN | TH_ACK,
			       .seq = rcv, .ack = snd + 1, .window = 0xffff };
	_cleanup_close_ int s = socket(src->sa_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);

	if (s < 0 || setsockopt(s, SOL_TCP, TCP_REPAIR, &on, sizeof(on)))
		return pr_perror("%s: cannot make a socket in repair mode", what);
	/* the send queue stays chosen: the FIN below is queued as sent */
	if (tcp_repair_seqs(s, rcv, snd, what))
		return -EIO;
	if (bind(s, src, p->src.len) || connect(s, (const void *)p->dst.data, p->dst.len))
		return pr_perror("%s: cannot make a socket of its addresses", what);
	/* in repair mode with the send queue chosen, the FIN is queued as sent: nothing goes out */
	if (shutdown(s, SHUT_WR))
		return pr_perror("%s: cannot shut the socket of its addresses down", what);
	if (tcp_inject(&fin, what))
		return -EIO;
	/* in TIME_WAIT the kernel keeps a small socket of its own; this one is closed */
	if (getsockopt(s, SOL_TCP, TCP_INFO, &ti, &l) || ti.tcpi_state != TCP_CLOSE) {
		pr_err("%s: the socket of its addresses did not go to TIME_WAIT (state %u)", what, ti.tcpi_state);
		return -EIO;
	}
	return 0;
}

/* TCP options of the peer's segments: NOP-padded, the SYN's with MSS, SACK and window scale */
static size_t peer_opts(uint8_t *o, const TcpStreamEntry *t, const uint32_t *ts, bool syn)
{
	size_t n = 0;

	if (syn) {
		o[n++] = TCPOPT_MAXSEG;
		o[n++] = TCPOLEN_MAXSEG;
		o[n++] = t->mss >> 8;
		o[n++] = t->mss & 0xff;
	}
	if (syn && (t->options & TCPI_OPT_SACK)) {
		o[n++] = TCPOPT_SACK_PERMITTED;
		o[n++] = TCPOLEN_SACK_PERMITTED;
	} else if (ts) {
		o[n++] = TCPOPT_NOP;
		o[n++] = TCPOPT_NOP;
	}
	if (ts) {
		uint32_t v = htonl(*ts), e = 0;	/* no echo: the listener's own clock is not known */

		o[n++] = TCPOPT_TIMESTAMP;
		o[n++] = TCPOLEN_TIMESTAMP;
		memcpy(o + n, &v, 4);
		memcpy(o + n + 4, &e, 4);
		n += 8;
	} else if (syn && (t->options & TCPI_OPT_SACK)) {
		o[n++] = TCPOPT_NOP;
		o[n++] = TCPOPT_NOP;
	}
	if (syn && (t->options & TCPI_OPT_WSCALE)) {
		o[n++] = TCPOPT_NOP;
		o[n++] = TCPOPT_WINDOW;
		o[n++] = TCPOLEN_WINDOW;
		o[n++] = t->snd_wscale;
	}
	return n;
}

int tcp_requeue(const TcpPendingEntry *p, const uint32_t *peer_ts, const char *what)
{
	const TcpStreamEntry *t = p->tcp;
	/* it has sent nothing but its SYN-ACK: its send queue is empty */
	uint32_t isn = t->outq_seq - 1, peer_isn = t->inq_seq - t->inq.len - !!t->fin_received - 1;
	const uint32_t *ts = (t->options & TCPI_OPT_TIMESTAMPS) ? peer_ts : NULL;
	uint8_t opts[40];
	bool wscale = t->options & TCPI_OPT_WSCALE;
	struct tcp_seg seg = { .from = p->dst.data, .to = p->src.data, .opts = opts };
	struct queued_info qi = { 0 };
	int ret;

	if (t->outq.len || t->fin_sent || p->src.len < sizeof(struct sockaddr_in) ||
	    p->dst.len != p->src.len) {
		pr_err("%s: its image has it send before it was accepted", what);
		return -EINVAL;
	}
	if ((ret = make_time_wait(p, isn, peer_isn - (1u << 28), what)))
		return ret;
	seg.seq = peer_isn;
	seg.flags = TH_SYN;
	seg.window = 0xffff;
	seg.olen = peer_opts(opts, t, ts, true);
	if ((ret = tcp_inject(&seg, what)))
		return ret;
	seg.seq++;
	seg.ack = isn + 1;
	seg.flags = TH_ACK;
	seg.window = MIN(0xffffu, t->snd_wnd >> (wscale ? t->snd_wscale : 0));
	seg.olen = peer_opts(opts, t, ts, false);
	if ((ret = tcp_inject(&seg, what)))
		return ret;
	/*
	 * What it had received, within the window it offers each time (it
	 * grows as data comes, as it did for the peer), picking up from what
	 * sock_diag says it holds; a while for a delayed ACK if it takes none.
	 */
	for (int stalled = 0; stalled < 40; ) {
		size_t off, n;

		if ((ret = diag_find(p, &qi, what)))
			return ret;
		off = qi.rqueue;
		if (off >= t->inq.len)
			break;
		n = MIN(t->inq.len - off, MIN(MAX(t->mss, 536u), 32768u));
		if (qi.rcv_wnd)
			n = MIN(n, qi.rcv_wnd);
		seg.flags = TH_ACK | TH_PUSH;
		seg.seq = peer_isn + 1 + off;
		seg.data = t->inq.data + off;
		seg.len = n;
		if ((ret = tcp_inject(&seg, what)))
			return ret;
		if ((ret = diag_find(p, &qi, what)))
			return ret;
		if (qi.rqueue > off) {
			stalled = 0;
		} else {
			stalled++;
			usleep(50000);
		}
	}
	seg.seq = peer_isn + 1 + qi.rqueue;
	if (t->fin_received && qi.rqueue == t->inq.len) {
		seg.flags = TH_ACK | TH_FIN;
		seg.len = 0;
		if ((ret = tcp_inject(&seg, what)))
			return ret;
	}
	if ((ret = diag_find(p, &qi, what)))
		return ret;
	/* sock_diag counts the FIN in the queue: it takes a sequence number */
	if (qi.state != (t->fin_received ? TCP_CLOSE_WAIT : TCP_ESTABLISHED) ||
	    qi.rqueue != t->inq.len + !!t->fin_received ||
	    (wscale && qi.rcv_wscale != t->rcv_wscale)) {
		pr_err("%s: made again in its listener's queue in state %u with %u of %zu bytes and window scale %u, not %u",
		       what, qi.state, qi.rqueue, t->inq.len, qi.rcv_wscale, t->rcv_wscale);
		return -EIO;
	}
	pr_debug("%s: back in its listener's queue with %zu bytes%s", what, t->inq.len,
		 ts ? "" : (t->options & TCPI_OPT_TIMESTAMPS) ? ", without timestamps" : "");
	return 0;
}
