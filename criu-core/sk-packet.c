/*
 * Packet sockets: type, protocol, the device they are bound to (by name:
 * its index may differ after a restore, in a new network namespace),
 * options, filter, fanout group, and memberships (promiscuous mode,
 * multicast addresses), which only sock_diag lists. Frames queued at the
 * dump are not kept (with a warning): the kernel cannot read them in
 * place. Rings (PACKET_RX_RING/TX_RING, mapped into the task) are refused.
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
#include <linux/netlink.h>
#include <linux/packet_diag.h>
#include <linux/rtnetlink.h>
#include <stddef.h>

#include "door.h"
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

/* the SOL_PACKET options kept, where each goes in the entry */
static const struct packet_opt {
	int opt;
	size_t has, val;
} packet_opts[] = {
#define P(o, f) { o, offsetof(PacketSkEntry, has_##f), offsetof(PacketSkEntry, f) }
	P(PACKET_VERSION, version),	P(PACKET_RESERVE, reserve),	P(PACKET_AUXDATA, auxdata),
	P(PACKET_ORIGDEV, origdev),	P(PACKET_VNET_HDR, vnet_hdr),	P(PACKET_TIMESTAMP, tstamp),
	P(PACKET_LOSS, loss),		P(PACKET_QDISC_BYPASS, qdisc_bypass),
	P(PACKET_IGNORE_OUTGOING, ignore_outgoing),
#undef P
};

/* a device's name, asked in the namespace of socket fd */
static char *dev_name(int fd, int index, struct arena *a)
{
	struct ifreq ifr = { .ifr_ifindex = index };

	return ioctl(fd, SIOCGIFNAME, &ifr) ? NULL : arena_strdup(a, ifr.ifr_name);
}

struct packet_diag {
	ino_t ino;
	bool found, ring;
	struct packet_diag_info info;
	const struct packet_diag_mclist *mc;	/* in a copy of the answer */
	size_t nr_mc;
	void *copy;
};

static int packet_found(const struct nlmsghdr *h, void *arg)
{
	const struct packet_diag_msg *m = NLMSG_DATA(h);
	struct packet_diag *d = arg;
	int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));

	if (m->pdiag_ino != d->ino)
		return 0;
	d->found = true;
	if (!(d->copy = malloc(h->nlmsg_len)))
		return -ENOMEM;
	memcpy(d->copy, h, h->nlmsg_len);
	m = NLMSG_DATA((struct nlmsghdr *)d->copy);
	for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == PACKET_DIAG_RX_RING || a->rta_type == PACKET_DIAG_TX_RING)
			d->ring = true;
		else if (a->rta_type == PACKET_DIAG_INFO && RTA_PAYLOAD(a) >= sizeof(d->info))
			memcpy(&d->info, RTA_DATA(a), sizeof(d->info));
		else if (a->rta_type == PACKET_DIAG_MCLIST) {
			d->mc = RTA_DATA(a);
			d->nr_mc = RTA_PAYLOAD(a) / sizeof(*d->mc);
		}
	}
	return 1;
}

/* rings, memberships and the copy threshold, which getsockopt does not give */
static int packet_diag_dump(const struct fd_parms *p, PacketSkEntry *e, struct arena *a)
{
	struct {
		struct nlmsghdr h;
		struct packet_diag_req r;
	} req = { .r = { .sdiag_family = AF_PACKET, .pdiag_ino = p->st.st_ino,
			 .pdiag_show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG } };
	struct packet_diag d = { .ino = p->st.st_ino };
	char what[80];
	int ret;

	snprintf(what, sizeof(what), "pid %d fd %d (%s)", p->pid, p->fd, p->link);
	ret = sock_diag_walk(p->lfd, &req, sizeof(req), packet_found, &d, what);
	if (ret >= 0 && !d.found) {
		pr_err("%s: sock_diag does not list the packet socket", what);
		ret = -ENOENT;
	} else if (ret >= 0 && d.ring) {
		pr_err("%s: packet socket with a ring mapped into the task (PACKET_RX_RING/TX_RING): not supported yet",
		       what);
		ret = -ENOTSUP;
	}
	if (ret < 0)
		goto out;
	ret = 0;
	e->has_copy_thresh = true;
	e->copy_thresh = d.info.pdi_copy_thresh;
	e->mclist = arena_array(a, PacketMcEntry *, d.nr_mc);
	for (size_t i = 0; i < d.nr_mc && !ret; i++) {
		const struct packet_diag_mclist *mc = &d.mc[i];
		PacketMcEntry *me = arena_new(a, PacketMcEntry);
		size_t alen = MIN(mc->pdmc_alen, sizeof(mc->pdmc_addr));

		if (!e->mclist || !me) {
			ret = -ENOMEM;
			break;
		}
		packet_mc_entry__init(me);
		me->addr.data = arena_alloc(a, alen ?: 1);
		if (!me->addr.data || !(me->ifname = dev_name(p->lfd, mc->pdmc_index, a))) {
			ret = me->addr.data ? pr_perror("%s: its membership on device %u", what, mc->pdmc_index) : -ENOMEM;
			break;
		}
		me->type = mc->pdmc_type;
		me->count = mc->pdmc_count;
		me->has_addr = true;
		me->addr.len = alen;
		memcpy(me->addr.data, mc->pdmc_addr, alen);
		e->mclist[e->n_mclist++] = me;
	}
out:
	free(d.copy);
	return ret < 0 ? ret : 0;
}

static int packet_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	PacketSkEntry *e = arena_new(&ctx->arena, PacketSkEntry);
	SkOpts *o = arena_new(&ctx->arena, SkOpts);
	struct sockaddr_ll sa;
	socklen_t sl = sizeof(sa), l = sizeof(int);
	int type, ret, v;

	if (!e || !o)
		return -ENOMEM;
	packet_sk_entry__init(e);
	if (getsockopt(p->lfd, SOL_SOCKET, SO_TYPE, &type, &l) || getsockname(p->lfd, (void *)&sa, &sl))
		return pr_perror("pid %d fd %d (%s): cannot read the packet socket", p->pid, p->fd, p->link);
	e->type = type;
	e->protocol = ntohs(sa.sll_protocol);
	e->flags = p->flags;
	if (sa.sll_ifindex && !(e->ifname = dev_name(p->lfd, sa.sll_ifindex, &ctx->arena)))
		return pr_perror("pid %d fd %d: its device %d has no name", p->pid, p->fd, sa.sll_ifindex);
	for (size_t i = 0; i < ARRAY_SIZE(packet_opts); i++) {
		const struct packet_opt *po = &packet_opts[i];

		l = sizeof(v);
		if (getsockopt(p->lfd, SOL_PACKET, po->opt, &v, &l))
			return pr_perror("pid %d fd %d: cannot read packet socket option %d", p->pid, p->fd, po->opt);
		*(protobuf_c_boolean *)((char *)e + po->has) = true;
		*(uint32_t *)((char *)e + po->val) = v;
	}
	l = sizeof(v);
	if (!getsockopt(p->lfd, SOL_PACKET, PACKET_FANOUT, &v, &l) && v) {
		e->has_fanout = true;
		e->fanout = v;
	}
	if ((ret = packet_diag_dump(p, e, &ctx->arena)) || (ret = sk_opts_dump(p, o, &ctx->arena)))
		return ret;
	sk_warn_queued(p, "packet");
	e->opts = o;
	fe->packet_sk = e;
	return 0;
}

/* the options, from an image: only those set differently from a new socket's */
static int packet_opts_restore(int fd, const PacketSkEntry *e, const char *what)
{
	for (size_t i = 0; i < ARRAY_SIZE(packet_opts); i++) {
		const struct packet_opt *po = &packet_opts[i];
		int v = *(const uint32_t *)((const char *)e + po->val), now;
		socklen_t l = sizeof(now);

		if (!*(const protobuf_c_boolean *)((const char *)e + po->has) ||
		    (!getsockopt(fd, SOL_PACKET, po->opt, &now, &l) && now == v))
			continue;
		if (setsockopt(fd, SOL_PACKET, po->opt, &v, sizeof(v)))
			return pr_perror("%s: cannot set packet socket option %d to %d", what, po->opt, v);
	}
	if (e->has_copy_thresh && e->copy_thresh &&
	    setsockopt(fd, SOL_PACKET, PACKET_COPY_THRESH, &e->copy_thresh, sizeof(int)))
		return pr_perror("%s: cannot set its copy threshold", what);
	return 0;
}

/* after bind: the fanout group and the memberships */
static int packet_groups_restore(int fd, const PacketSkEntry *e, const char *what)
{
	if (e->has_fanout && setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &e->fanout, sizeof(int)))
		return pr_perror("%s: cannot join fanout group %u (mode %u)", what, e->fanout & 0xffff,
				 (e->fanout >> 16) & 0xff);
	for (size_t i = 0; i < e->n_mclist; i++) {
		const PacketMcEntry *me = e->mclist[i];
		struct packet_mreq mr = { .mr_ifindex = if_nametoindex(me->ifname), .mr_type = me->type };

		if (!mr.mr_ifindex)
			return pr_perror("%s: the device %s of its membership is missing", what, me->ifname);
		mr.mr_alen = MIN(me->addr.len, sizeof(mr.mr_address));
		if (mr.mr_alen)
			memcpy(mr.mr_address, me->addr.data, mr.mr_alen);
		for (uint32_t n = 0; n < me->count; n++)
			if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr)))
				return pr_perror("%s: cannot add its membership (type %u) on %s", what, me->type,
						 me->ifname);
	}
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
	ret = sk_opts_restore(fd, e->opts, what) ?: packet_opts_restore(fd, e, what);
	if (!ret && e->ifname) {
		sa.sll_protocol = htons(e->protocol);
		sa.sll_ifindex = if_nametoindex(e->ifname);
		if (!sa.sll_ifindex)
			ret = pr_perror("%s: its device %s is missing", what, e->ifname);
		else if (bind(fd, (void *)&sa, sizeof(sa)))
			ret = pr_perror("%s: cannot bind it to %s", what, e->ifname);
	}
	if (!ret)
		ret = packet_groups_restore(fd, e, what);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/* files.img: the devices of a packet socket and of its memberships, by name */
static int packet_validate(const FileEntry *fe, const char *where)
{
	const PacketSkEntry *e = fe->packet_sk;
	int ret = e && e->ifname ? door_ifname(e->ifname, "%s: packet_sk.ifname", where) : 0;

	for (size_t i = 0; e && !ret && i < e->n_mclist; i++)
		ret = door_ifname(e->mclist[i]->ifname, "%s: packet_sk.mclist[%zu].ifname", where, i);
	return ret;
}

const struct fd_kind_ops packet_sk_fd_ops = {
	.kind = FD_KIND__PACKET_SK,
	.name = "packet socket",
	.match = packet_match,
	.dump = packet_dump,
	.validate = packet_validate,
	.open = packet_open,
};
