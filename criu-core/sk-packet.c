/*
 * Packet sockets: type, protocol, the device they are bound to (by name:
 * its index may differ after a restore, in a new network namespace),
 * options and filter. Frames queued at the dump are not kept. Rings
 * (PACKET_RX_RING/TX_RING) are not supported yet.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_packet.h>

#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"
#include "sockets.h"
#include "util.h"

static bool packet_match(const struct fd_parms *p)
{
	int domain;
	socklen_t len = sizeof(domain);

	return S_ISSOCK(p->st.st_mode) && !getsockopt(p->lfd, SOL_SOCKET, SO_DOMAIN, &domain, &len) &&
	       domain == AF_PACKET;
}

static int packet_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	PacketSkEntry *e = arena_new(&ctx->arena, PacketSkEntry);
	SkOpts *o = arena_new(&ctx->arena, SkOpts);
	struct sockaddr_ll sa;
	socklen_t sl = sizeof(sa), l = sizeof(int);
	int type, ret;

	if (!e || !o)
		return -ENOMEM;
	packet_sk_entry__init(e);
	if (getsockopt(p->lfd, SOL_SOCKET, SO_TYPE, &type, &l) || getsockname(p->lfd, (void *)&sa, &sl))
		return pr_perror("pid %d fd %d (%s): cannot read the packet socket", p->pid, p->fd, p->link);
	e->type = type;
	e->protocol = ntohs(sa.sll_protocol);
	e->flags = p->flags;
	if (sa.sll_ifindex) {
		/* the name in the socket's own namespace: the ioctl asks there */
		struct ifreq ifr = { .ifr_ifindex = sa.sll_ifindex };

		if (ioctl(p->lfd, SIOCGIFNAME, &ifr))
			return pr_perror("pid %d fd %d: its device %d has no name", p->pid, p->fd, sa.sll_ifindex);
		e->ifname = arena_strdup(&ctx->arena, ifr.ifr_name);
	}
	if ((ret = sk_opts_dump(p, o, &ctx->arena)))
		return ret;
	e->opts = o;
	fe->packet_sk = e;
	return 0;
}

static int packet_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const PacketSkEntry *e = fe->packet_sk;
	struct sockaddr_ll sa = { .sll_family = AF_PACKET };
	char what[64];
	int fd, ret = 0;

	if (!e) {
		pr_err("files.img: entry %u is a packet socket without its details", fe->id);
		return -EINVAL;
	}
	snprintf(what, sizeof(what), "pid %d fd %d (packet socket)", pid, fdnum);
	fd = socket(AF_PACKET, e->type | SOCK_CLOEXEC | ((e->flags & O_NONBLOCK) ? SOCK_NONBLOCK : 0),
		    htons(e->protocol));
	if (fd < 0)
		return pr_perror("%s: socket", what);
	ret = sk_opts_restore(fd, e->opts, what);
	if (!ret && e->ifname) {
		sa.sll_protocol = htons(e->protocol);
		sa.sll_ifindex = if_nametoindex(e->ifname);
		if (!sa.sll_ifindex)
			ret = pr_perror("%s: its device %s is missing", what, e->ifname);
		else if (bind(fd, (void *)&sa, sizeof(sa)))
			ret = pr_perror("%s: cannot bind it to %s", what, e->ifname);
	}
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

const struct fd_kind_ops packet_sk_fd_ops = {
	.kind = FD_KIND__PACKET_SK,
	.name = "packet socket",
	.match = packet_match,
	.dump = packet_dump,
	.open = packet_open,
};
