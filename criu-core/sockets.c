/* The socket options every kind of socket has (SOL_SOCKET). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>

#include "log.h"
#include "sockets.h"
#include "util.h"

/* a classic BPF socket filter: SO_GET_FILTER gives its length (in instructions), then it */
static int dump_filter(const struct fd_parms *p, SkOpts *o, struct arena *a)
{
	socklen_t n = 0;
	struct sock_filter *f;

	if (getsockopt(p->lfd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) || !n)
		return 0;	/* none */
	f = calloc(n, sizeof(*f));
	o->filter = arena_array(a, uint64_t, n);
	if (!f || !o->filter) {
		free(f);
		o->filter = NULL;
		return -ENOMEM;
	}
	if (getsockopt(p->lfd, SOL_SOCKET, SO_GET_FILTER, f, &n)) {
		free(f);
		return pr_perror("pid %d fd %d (%s): cannot read its socket filter", p->pid, p->fd, p->link);
	}
	for (socklen_t i = 0; i < n; i++)
		o->filter[i] = f[i].code | (uint64_t)f[i].jt << 16 | (uint64_t)f[i].jf << 24 | (uint64_t)f[i].k << 32;
	o->n_filter = n;
	free(f);
	return 0;
}

int sk_opts_dump(const struct fd_parms *p, SkOpts *o, struct arena *a)
{
	struct timeval rt, st;
	int v[5];
	socklen_t l, lt = sizeof(struct timeval);
	int opts[] = { SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_PASSSEC, SO_PEEK_OFF };

	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		l = sizeof(int);
		if (getsockopt(p->lfd, SOL_SOCKET, opts[i], &v[i], &l)) {
			/* only some families have these */
			if (errno == EOPNOTSUPP && opts[i] != SO_SNDBUF && opts[i] != SO_RCVBUF) {
				v[i] = opts[i] == SO_PEEK_OFF ? -1 : 0;
				continue;
			}
			return pr_perror("pid %d fd %d (%s): getsockopt %d", p->pid, p->fd, p->link, opts[i]);
		}
	}
	if (getsockopt(p->lfd, SOL_SOCKET, SO_RCVTIMEO, &rt, &lt) ||
	    getsockopt(p->lfd, SOL_SOCKET, SO_SNDTIMEO, &st, &lt))
		return pr_perror("pid %d fd %d (%s): cannot read its timeouts", p->pid, p->fd, p->link);
	sk_opts__init(o);
	o->sndbuf = v[0];
	o->rcvbuf = v[1];
	o->passcred = v[2];
	o->passsec = v[3];
	o->peek_off = v[4];
	o->rcvtimeo_us = rt.tv_sec * 1000000ULL + rt.tv_usec;
	o->sndtimeo_us = st.tv_sec * 1000000ULL + st.tv_usec;
	return dump_filter(p, o, a);
}

int sk_opts_restore(int fd, const SkOpts *o, const char *what)
{
	struct timeval rt = { o->rcvtimeo_us / 1000000, o->rcvtimeo_us % 1000000 };
	struct timeval st = { o->sndtimeo_us / 1000000, o->sndtimeo_us % 1000000 };
	int snd = o->sndbuf / 2, rcv = o->rcvbuf / 2, cred = o->passcred, sec = o->passsec;

	int cur_snd = 0, cur_rcv = 0;
	socklen_t l = sizeof(int);

	/*
	 * Only sizes that differ from a new socket's: setting one locks it
	 * (no more autotuning, and a listener's connections would get a
	 * window scale of that size). The kernel doubles what it is given;
	 * the FORCE forms pass the sysctl limits (root).
	 */
	getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur_snd, &l);
	getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cur_rcv, &l);
	if ((uint32_t)cur_snd != o->sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(int)) &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(int)))
		return pr_perror("%s: SO_SNDBUF %d", what, snd);
	if ((uint32_t)cur_rcv != o->rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(int)) &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(int)))
		return pr_perror("%s: SO_RCVBUF %d", what, rcv);
	if ((cred && setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &cred, sizeof(int))) ||
	    (sec && setsockopt(fd, SOL_SOCKET, SO_PASSSEC, &sec, sizeof(int))) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st)) ||
	    (o->peek_off >= 0 && setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &o->peek_off, sizeof(int))))
		return pr_perror("%s: cannot set its options", what);
	if (o->n_filter) {
		struct sock_filter *f = calloc(o->n_filter, sizeof(*f));
		struct sock_fprog prog = { .len = o->n_filter, .filter = f };
		int ret = 0;

		if (!f)
			return -ENOMEM;
		for (size_t i = 0; i < o->n_filter; i++)
			f[i] = (struct sock_filter){ o->filter[i] & 0xffff, (o->filter[i] >> 16) & 0xff,
						     (o->filter[i] >> 24) & 0xff, o->filter[i] >> 32 };
		if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
			ret = pr_perror("%s: cannot attach its socket filter (%zu instructions)", what, o->n_filter);
		free(f);
		return ret;
	}
	return 0;
}

int sock_diag_walk(int sk, void *req, size_t len, int (*cb)(const struct nlmsghdr *h, void *arg), void *arg,
		   const char *what)
{
	_cleanup_close_ int ns = ioctl(sk, SIOCGSKNS);
	_cleanup_close_ int mine = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	_cleanup_free_ char *buf = malloc(1 << 16);
	_cleanup_close_ int fd = -1;
	ssize_t n;

	if (ns < 0 || mine < 0 || !buf)
		return pr_perror("%s: cannot reach its network namespace", what);
	/* sock_diag answers about the namespace its own socket was made in */
	if (setns(ns, CLONE_NEWNET))
		return pr_perror("%s: cannot enter its network namespace", what);
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (setns(mine, CLONE_NEWNET))
		return pr_perror("cannot go back to cryo's network namespace");
	if (fd < 0)
		return pr_perror("%s: cannot open a sock_diag socket", what);
	((struct nlmsghdr *)req)->nlmsg_len = len;
	((struct nlmsghdr *)req)->nlmsg_type = SOCK_DIAG_BY_FAMILY;
	((struct nlmsghdr *)req)->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	if (send(fd, req, len, 0) != (ssize_t)len)
		return pr_perror("%s: cannot ask sock_diag about it", what);
	while ((n = recv(fd, buf, 1 << 16, 0)) > 0) {
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			int ret;

			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				errno = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
				return pr_perror("%s: sock_diag", what);
			}
			if ((ret = cb(h, arg)))
				return ret;
		}
	}
	return pr_perror("%s: reading sock_diag's answer", what);
}

void sk_warn_queued(const struct fd_parms *p, const char *kind)
{
	if (recv(p->lfd, NULL, 0, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) >= 0)
		pr_warn("pid %d fd %d (%s): %s socket: what is queued in it is not kept (lost, as on a network)",
			p->pid, p->fd, p->link, kind);
}
