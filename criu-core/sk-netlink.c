/*
 * Netlink sockets: protocol, port id, multicast groups (all of them, from
 * NETLINK_LIST_MEMBERSHIPS), peer, options and filter. On restore the
 * root, in the tree's network namespace, binds the same port id and joins
 * the same groups. Messages queued at the dump are not kept (with a
 * warning): netlink gives no way to read them past the first without
 * taking them, and none to queue them again as the kernel's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>

#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"
#include "sockets.h"
#include "util.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static bool netlink_match(const struct fd_parms *p)
{
	int domain;
	socklen_t len = sizeof(domain);

	return S_ISSOCK(p->st.st_mode) && !getsockopt(p->lfd, SOL_SOCKET, SO_DOMAIN, &domain, &len) &&
	       domain == AF_NETLINK;
}

static int netlink_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	NetlinkSkEntry *e = arena_new(&ctx->arena, NetlinkSkEntry);
	SkOpts *o = arena_new(&ctx->arena, SkOpts);
	struct sockaddr_nl sa, da;
	socklen_t sl = sizeof(sa), dl = sizeof(da), l = sizeof(int), gl = 0;
	int proto, type, ret;

	if (!e || !o)
		return -ENOMEM;
	netlink_sk_entry__init(e);
	if (getsockopt(p->lfd, SOL_SOCKET, SO_PROTOCOL, &proto, &l) ||
	    getsockopt(p->lfd, SOL_SOCKET, SO_TYPE, &type, &l) || getsockname(p->lfd, (void *)&sa, &sl))
		return pr_perror("pid %d fd %d (%s): cannot read the netlink socket", p->pid, p->fd, p->link);
	e->protocol = proto;
	e->type = type;
	e->flags = p->flags;
	e->portid = sa.nl_pid;
	/* first the size of the bitmap, then the bitmap */
	if (!getsockopt(p->lfd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, NULL, &gl) && gl) {
		e->groups = arena_alloc(&ctx->arena, gl);
		if (!e->groups)
			return -ENOMEM;
		if (getsockopt(p->lfd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, e->groups, &gl))
			return pr_perror("pid %d fd %d: cannot list its netlink groups", p->pid, p->fd);
		e->n_groups = gl / sizeof(uint32_t);
	}
	if (!getpeername(p->lfd, (void *)&da, &dl) && (da.nl_pid || da.nl_groups)) {
		e->has_dst_portid = e->has_dst_group = true;
		e->dst_portid = da.nl_pid;
		e->dst_group = da.nl_groups;
	}
	if ((ret = sk_opts_dump(p, o, &ctx->arena)))
		return ret;
	sk_warn_queued(p, "netlink");
	e->opts = o;
	fe->netlink_sk = e;
	return 0;
}

static int netlink_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const NetlinkSkEntry *e = fe->netlink_sk;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char what[64];
	int fd, ret = 0;

	if (!e) {
		pr_err("files.img: entry %u is a netlink socket without its details", fe->id);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "pid %d fd %d (netlink socket %u)", pid, fdnum, e->protocol);
	fd = socket(AF_NETLINK, e->type | SOCK_CLOEXEC | ((e->flags & O_NONBLOCK) ? SOCK_NONBLOCK : 0), e->protocol);
	if (fd < 0)
		return pr_perror("%s: socket", what);
	ret = sk_opts_restore(fd, e->opts, what);
	sa.nl_pid = e->portid;
	if (!ret && e->portid && bind(fd, (void *)&sa, sizeof(sa)))
		ret = pr_perror("%s: cannot bind port id %u", what, e->portid);
	for (size_t w = 0; !ret && w < e->n_groups; w++)
		for (unsigned b = 0; !ret && b < 32; b++) {
			unsigned group = w * 32 + b + 1;

			if ((e->groups[w] & (1u << b)) &&
			    setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)))
				ret = pr_perror("%s: cannot join group %u", what, group);
		}
	if (!ret && e->has_dst_portid) {
		struct sockaddr_nl da = { .nl_family = AF_NETLINK, .nl_pid = e->dst_portid, .nl_groups = e->dst_group };

		if (connect(fd, (void *)&da, sizeof(da)))
			ret = pr_perror("%s: cannot connect it to port %u", what, e->dst_portid);
	}
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

const struct fd_kind_ops netlink_sk_fd_ops = {
	.kind = FD_KIND__NETLINK_SK,
	.name = "netlink socket",
	.match = netlink_match,
	.dump = netlink_dump,
	.open = netlink_open,
};
