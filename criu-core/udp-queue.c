/*
 * The datagrams a UDP socket has received and its task not read yet.
 *
 * Dump: with SO_PEEK_OFF each peek returns the next datagram, so the
 * queue is walked without taking anything out of it; IP_RECVORIGDSTADDR
 * (and its IPv6 twin) tells where each one was sent to. The socket's own
 * settings of both are put back afterwards.
 *
 * Restore: each datagram is sent again from its sender's address through
 * a raw socket (inject.c), in order, to the restored socket's port. Then
 * the queue is walked again: every datagram must be there, or the restore
 * fails, naming the socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "inject.h"
#include "log.h"
#include "udp.h"
#include "util.h"

#define DGRAM_MAX 65536		/* bigger than any UDP datagram */

struct udp_peek_opts {
	int peek_off, orig4, orig6;
};

static int peek_opts_set(int fd, bool v6, const struct udp_peek_opts *o)
{
	return setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &o->peek_off, sizeof(int)) ||
	       setsockopt(fd, IPPROTO_IP, IP_RECVORIGDSTADDR, &o->orig4, sizeof(int)) ||
	       (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, &o->orig6, sizeof(int)));
}

/* where the datagram mh was sent to, from its IP(V6)_ORIGDSTADDR message */
static const void *orig_dst(struct msghdr *mh, size_t *len)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
		    (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
			*len = c->cmsg_len - CMSG_LEN(0);
			return CMSG_DATA(c);
		}
	}
	return NULL;
}

static void *arena_dup(struct arena *a, const void *p, size_t n, ProtobufCBinaryData *out)
{
	out->data = arena_alloc(a, n ?: 1);
	if (out->data) {
		memcpy(out->data, p, n);
		out->len = n;
	}
	return out->data;
}

/* the array of n datagrams, with room for one more: it doubles when full */
static DgramEntry **queue_room(struct arena *a, DgramEntry **v, size_t n)
{
	DgramEntry **nv;

	if (n & (n - 1))
		return v;	/* not a power of two: there is room */
	if ((nv = arena_array(a, DgramEntry *, n ? 2 * n : 1)) && n)
		memcpy(nv, v, n * sizeof(*v));
	return nv;
}

int udp_queue_dump(int fd, InetSkEntry *e, struct arena *a, const char *what)
{
	bool v6 = e->family == AF_INET6;
	struct udp_peek_opts old = { -1, 0, 0 }, walk = { 0, 1, 1 };
	socklen_t l = sizeof(int);
	_cleanup_free_ uint8_t *buf = malloc(DGRAM_MAX);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &old.peek_off, &l) ||
	    getsockopt(fd, IPPROTO_IP, IP_RECVORIGDSTADDR, &old.orig4, &l) ||
	    (v6 && getsockopt(fd, IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, &old.orig6, &l)) ||
	    peek_opts_set(fd, v6, &walk))
		return pr_perror("%s: cannot read its queue in place", what);
	for (;;) {
		struct sockaddr_storage src;
		union {
			struct cmsghdr h;
			uint8_t b[1024];	/* with the task's own (timestamps, packet info...) */
		} cb;
		struct iovec iov = { buf, DGRAM_MAX };
		struct msghdr mh = { .msg_name = &src, .msg_namelen = sizeof(src), .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = &cb, .msg_controllen = sizeof(cb) };
		ssize_t n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
		DgramEntry *d, **v;
		const void *dst;
		size_t dl = 0;

		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			ret = pr_perror("%s: cannot read datagram %zu of its queue", what, e->n_rqueue + 1);
			break;
		}
		if (n > DGRAM_MAX || (mh.msg_flags & MSG_TRUNC) || !(dst = orig_dst(&mh, &dl))) {
			pr_err("%s: datagram %zu of its queue (%zd bytes) cannot be read whole with where it was sent to",
			       what, e->n_rqueue + 1, n);
			ret = -EIO;
			break;
		}
		d = arena_new(a, DgramEntry);
		if (!d || !(v = queue_room(a, e->rqueue, e->n_rqueue))) {
			ret = -ENOMEM;
			break;
		}
		dgram_entry__init(d);
		e->rqueue = v;
		if (!arena_dup(a, &src, mh.msg_namelen, &d->src) || !arena_dup(a, dst, dl, &d->dst) ||
		    !arena_dup(a, buf, n, &d->data)) {
			ret = -ENOMEM;
			break;
		}
		e->rqueue[e->n_rqueue++] = d;
	}
	if (peek_opts_set(fd, v6, &old) && !ret)
		ret = pr_perror("%s: cannot put its options back after reading its queue", what);
	return ret;
}

/* v4 multicast or the limited broadcast; v6 multicast */
static bool group_addr(const void *sa)
{
	const struct sockaddr_in *in = sa;
	const struct sockaddr_in6 *in6 = sa;

	if (in->sin_family == AF_INET)
		return IN_MULTICAST(ntohl(in->sin_addr.s_addr)) || in->sin_addr.s_addr == INADDR_BROADCAST;
	return IN6_IS_ADDR_MULTICAST(&in6->sin6_addr) ||
	       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && (in6->sin6_addr.s6_addr[12] >= 224));
}

/*
 * Where datagram d goes to reach the restored socket, whose address is
 * self: where it was sent if that was one host (it is ours), else the
 * socket's own address if it is bound to one of the same family, else the
 * loopback address of that family.
 */
static void queue_dst(const DgramEntry *d, const struct sockaddr_storage *self, struct sockaddr_storage *to)
{
	struct sockaddr_in *in = (void *)to;
	struct sockaddr_in6 *in6 = (void *)to;
	const struct sockaddr_in *s4 = (const void *)self;
	const struct sockaddr_in6 *s6 = (const void *)self;

	memset(to, 0, sizeof(*to));
	memcpy(to, d->dst.data, MIN(d->dst.len, sizeof(*to)));
	if (group_addr(to)) {
		bool v4 = in->sin_family == AF_INET || IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
		bool self_v4 = s4->sin_family == AF_INET || IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr);
		bool self_any = s4->sin_family == AF_INET ? s4->sin_addr.s_addr == INADDR_ANY
							  : IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);

		memset(to, 0, sizeof(*to));
		if (v4 == self_v4 && !self_any && !group_addr(self)) {
			memcpy(to, self, sizeof(*to));
		} else if (v4) {
			in->sin_family = AF_INET;
			in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		} else {
			in6->sin6_family = AF_INET6;
			in6->sin6_addr = in6addr_loopback;
		}
	}
	/* the port is the socket's: the same slot in both */
	in->sin_port = s4->sin_port;
}

/* how many datagrams fd holds, counted with SO_PEEK_OFF */
static size_t queue_len(int fd)
{
	int zero = 0;
	size_t n = 0;

	if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)))
		return 0;
	while (recv(fd, NULL, 0, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) >= 0)
		n++;
	return n;
}

int udp_queue_restore(int fd, const InetSkEntry *e, const char *what)
{
	struct sockaddr_storage self, to;
	socklen_t sl = sizeof(self), l = sizeof(int);
	size_t total = 0, n = 0;
	int rcvbuf, big, ret = 0;

	if (!e->n_rqueue)
		return 0;
	if (getsockname(fd, (void *)&self, &sl) || getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &l))
		return pr_perror("%s: cannot read its address", what);
	for (size_t i = 0; i < e->n_rqueue; i++)
		total += e->rqueue[i]->data.len + 1024;
	/*
	 * Room for every datagram while they come in (the kernel counts the
	 * memory of each, which need not be what it was), and a device bound
	 * to only after (they come in on the loopback one).
	 */
	big = MIN(total + rcvbuf, (size_t)INT_MAX / 2);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) ||
	    (e->bind_dev && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "", 0)))
		return pr_perror("%s: cannot make room for its queued datagrams", what);
	for (size_t i = 0; i < e->n_rqueue && !ret; i++) {
		const DgramEntry *d = e->rqueue[i];

		if (d->src.len < sizeof(struct sockaddr_in) || d->dst.len < sizeof(struct sockaddr_in)) {
			pr_err("%s: queued datagram %zu has no addresses", what, i + 1);
			return -EINVAL;
		}
		queue_dst(d, &self, &to);
		ret = udp_inject(d->src.data, &to, d->data.data, d->data.len, what);
	}
	/* loopback delivers them at once, or nearly */
	for (int t = 0; !ret && (n = queue_len(fd)) < e->n_rqueue && t < 200; t++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	if (!ret && n < e->n_rqueue) {
		pr_err("%s: only %zu of its %zu queued datagrams came back", what, n, e->n_rqueue);
		ret = -EIO;
	}
	rcvbuf /= 2;	/* the kernel doubles what it is given */
	if (!ret && (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) ||
		     setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &e->opts->peek_off, sizeof(int)) ||
		     (e->bind_dev && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, e->bind_dev, strlen(e->bind_dev)))))
		ret = pr_perror("%s: cannot set its options back after queueing its datagrams", what);
	return ret;
}
