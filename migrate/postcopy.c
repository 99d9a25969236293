/*
 * Post-copy, the source's side (postcopy.h): the memory a dump left in the
 * stopped tree goes to the restore side, pushed in order, and first what
 * its tasks touch (they ask for it). cryo migrate does it over its
 * connection to the agent; a lazy dump (dump --lazy-pages, runc checkpoint
 * --lazy-pages) listens for the restore side's cryo lazy-pages, which
 * connects to it and is the session's server (pagesrv.h, ps_attach).
 */
#define LOG_PREFIX "post-copy: "
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dump-round.h"
#include "log.h"
#include "notify.h"
#include "pagesrv.h"
#include "postcopy.h"
#include "util.h"

#define PUSH_MAX (1u << 20)

/* the runs of pages left in the stopped tree, pushed in order */
struct lazy_run {
	pid_t pid, vpid;
	uint64_t addr, len;
};

struct lazy_runs {
	struct lazy_run *v;
	size_t n;
};

static int add_run(void *arg, pid_t pid, pid_t vpid, uint64_t addr, uint64_t len)
{
	struct lazy_runs *r = arg;
	struct lazy_run *v = xrealloc_array(r->v, r->n + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	r->v = v;
	r->v[r->n++] = (struct lazy_run){ pid, vpid, addr, len };
	return 0;
}

static pid_t host_pid(const struct lazy_runs *r, pid_t vpid)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].vpid == vpid)
			return r->v[i].pid;
	return 0;
}

/* [addr, addr + len) of the stopped task pid, to the restore side: read straight into the frames */
static int send_pages(struct ps_client *ps, pid_t pid, pid_t vpid, uint64_t addr, uint64_t len)
{
	while (len) {
		uint64_t n = MIN(len, PUSH_MAX);
		uint8_t *to = ps_pages_frame(ps, vpid, addr, n);
		struct iovec l = { to, n }, r = { (void *)addr, n };
		int ret;

		if (!to)
			return -EMSGSIZE;
		if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)n)
			return pr_perror("pid %d: cannot read its pages at %#lx", pid, (unsigned long)addr);
		if ((ret = ps_pages_send(ps)))
			return ret;
		addr += n;
		len -= n;
	}
	return 0;
}

int postcopy_serve(struct ps_client *ps, const struct dump_round *dr, int rate_mib, struct postcopy_stat *st)
{
	struct lazy_runs runs = { 0 };
	_cleanup_free_ uint8_t *frame = malloc(256);
	uint64_t t0 = now_ns(), sent0 = ps_sent(ps), next = 0, total = 0;
	size_t ri = 0, off = 0;
	int ret;

	if (!frame)
		return -ENOMEM;
	if ((ret = dump_lazy_runs(dr, add_run, &runs)))
		goto out;
	for (size_t i = 0; i < runs.n; i++)
		total += runs.v[i].len;
	pr_info("%lu MiB to send to %s", total >> 20, ps_peer(ps));
	for (;;) {
		struct pollfd p = { .fd = ps_sock(ps), .events = POLLIN };
		uint64_t now = now_ns();
		int timeout = ri < runs.n ? (next > now ? (int)((next - now) / 1000000) + 1 : 0) : -1;

		if (poll(&p, 1, timeout) < 0 && errno != EINTR) {
			ret = pr_perror("poll");
			break;
		}
		if (p.revents) {
			uint32_t type;
			size_t len;
			struct ps_page_req rq;

			if ((ret = ps_recv_frame(ps, &type, frame, 256, &len)))
				break;
			if (type == PSF_LAZY_DONE)
				break;
			if (type != PSF_PAGE_REQ || len != sizeof(rq)) {
				pr_err("%s sent frame type %u during post-copy", ps_peer(ps), type);
				ret = -EPROTO;
				break;
			}
			memcpy(&rq, frame, sizeof(rq));
			if (!host_pid(&runs, rq.vpid) || rq.len > PUSH_MAX * 4) {
				pr_err("%s asked for pages of pid %u at %#lx, which are not left here", ps_peer(ps),
				       rq.vpid, (unsigned long)rq.addr);
				ret = -EPROTO;
				break;
			}
			st->asked += rq.len;
			if ((ret = send_pages(ps, host_pid(&runs, rq.vpid), rq.vpid, rq.addr, rq.len)))
				break;
			continue;
		}
		if (ri < runs.n && now_ns() >= next) {
			const struct lazy_run *r = &runs.v[ri];
			uint64_t n = MIN(r->len - off, PUSH_MAX);

			if ((ret = send_pages(ps, r->pid, r->vpid, r->addr + off, n)))
				break;
			st->pushed += n;
			off += n;
			if (off == r->len) {
				ri++;
				off = 0;
			}
			if (rate_mib > 0)
				next = now_ns() + n * 1000000000ULL / ((uint64_t)rate_mib << 20);
		}
	}
out:
	free(runs.v);
	st->ns = now_ns() - t0;
	st->wire = ps_sent(ps) - sent0;
	return ret;
}

/*
 * Wait for fd to be readable, however long, unless the client (RPC) goes
 * away meanwhile: then nobody would ever end the wait, and the tree runs on.
 */
static int wait_readable(const struct cryo_opts *o, int fd, const char *what)
{
	struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = o->hangup_fd, .events = POLLIN } };

	while (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return pr_perror("poll");
		if (p[1].revents) {
			pr_err("the client went away while %s: the tree runs on", what);
			return -ECONNABORTED;
		}
	}
	return 0;
}

/* the restore side's cryo lazy-pages, connected and authenticated (whoever fails that ends it all) */
static int accept_restore_side(const struct cryo_opts *o, int lfd, struct ps_client **ps)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[64] = "?", serv[16] = "?", peer[96];
	int sock, ret = wait_readable(o, lfd, "waiting for cryo lazy-pages");

	if (ret)
		return ret;
	do
		sock = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	while (sock < 0 && errno == EINTR);
	if (sock < 0)
		return pr_perror("accept");
	getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(peer, sizeof(peer), "%s port %s", host, serv);
	return ps_attach(sock, peer, o->secret_file, o->compress, ps);
}

int dump_lazily(struct cryo_opts *o)
{
	struct dump_round r = { 0 };
	struct postcopy_stat st = { 0 };
	struct ps_client *ps = NULL;
	uint8_t secret[PS_SECRET_MAX];
	char msg[480];
	size_t slen;
	int lfd, ret;

	if (o->page_server || !o->port) {
		pr_err("dump --lazy-pages serves the memory it leaves in the tree itself: give --port P (and --address A) to listen on%s",
		       o->page_server ? ", not --page-server" : "");
		return -EINVAL;
	}
	/* nothing is stopped unless the restore side can be served */
	ret = ps_read_secret(o->secret_file, secret, &slen);
	explicit_bzero(secret, sizeof(secret));
	if (ret)
		return ret;
	lfd = ps_listen(o->address, o->port);
	if (lfd < 0)
		return lfd;
	ret = dump_hold(o, &r);
	if (!ret)
		ret = notify(o, "post-dump", r.root) ?: notify(o, "status-ready", 0);
	if (!ret) {
		pr_info("pid %d: its memory waits for cryo lazy-pages on %s port %s", r.root, o->address ?: "*",
			o->port);
		ret = accept_restore_side(o, lfd, &ps);
	}
	close(lfd);
	/* the restore side answers once the restore has handed it the tasks */
	if (!ret && !(ret = ps_ask_restore_lazy(ps, "lazy")) &&
	    !(ret = wait_readable(o, ps_sock(ps), "waiting for the restore")) &&
	    !(ret = ps_restore_answer(ps, msg, sizeof(msg))))
		pr_info("%s: %s", ps_peer(ps), msg);
	if (!ret) {
		ret = postcopy_serve(ps, &r, o->lazy_rate_mib, &st);
		if (!ret)
			pr_info("every page is in after %.2f s (%lu MiB pushed, %lu MiB asked for first)", st.ns / 1e9,
				st.pushed >> 20, st.asked >> 20);
	}
	ps_free(ps);
	/* the tree runs over there by now: a stats-dump that cannot be written changes nothing */
	if (!ret && stats_write_dump(o, &r.stats))
		pr_warn("the tree runs on the restore side all the same");
	/* all there: the tree lives on the other side; else it goes on here as if never dumped */
	if (r.held && dump_release(&r, !ret) && !ret)
		pr_warn("the source tree could not be killed cleanly after its memory was sent");
	return ret;
}
