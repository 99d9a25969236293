/*
 * The bytes a UDP socket holds back (UDP_CORK, or sends with MSG_MORE):
 * part of a datagram, kept in the kernel's send queue, which nothing can
 * read. At the dump cryo lets them go and catches them on the way out:
 *
 *  1. In the socket's network namespace, an nftables table of its own
 *     (owned by cryo's netlink socket, so the kernel removes it if cryo
 *     dies) with a rule in the output hook, ahead of everything else, that
 *     logs UDP packets from the socket's port to an NFLOG group of cryo's
 *     and drops them.
 *  2. The socket is corked and uncorked: the datagram goes out, whole, and
 *     the rule hands it to cryo instead of the network.
 *  3. Its addresses and bytes go into the image, and the same bytes are
 *     held back in the socket again, as they were (UDP_CORK on, or
 *     MSG_MORE): if the task runs on, it finds them there.
 *
 * Restore holds them back again the same way.
 *
 * The rule knows the socket by its port only: another socket of that
 * namespace sending from the same port (SO_REUSEADDR/SO_REUSEPORT on
 * another address) in the same milliseconds would lose its datagram, and
 * could be taken for this one. In a container, whose tasks are frozen,
 * none can.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/sockios.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>

#include "log.h"
#include "nft.h"
#include "udp.h"
#include "util.h"

#define CORK_PRIO	(-500)		/* before raw (-300) and conntrack (-200) */
#define NFLOG_FIRST	0xc000		/* NFLOG groups tried: the first free from here */

struct cork_catch {
	struct mnl_socket *nft;		/* owns the table */
	struct mnl_socket *log;		/* bound to the NFLOG group */
	uint16_t group;
	char table[32];			/* cryo-cork-<cryo's pid> */
	const char *what;
};

/* udp sport P: log group G, drop */
static struct nftnl_rule *cork_rule(const char *table, uint16_t port, uint16_t group)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct nftnl_expr *e[6] = { nftnl_expr_alloc("meta"), nftnl_expr_alloc("cmp"), nftnl_expr_alloc("payload"),
				    nftnl_expr_alloc("cmp"), nftnl_expr_alloc("log"), nftnl_expr_alloc("immediate") };
	uint8_t udp = IPPROTO_UDP;
	uint16_t nport = htons(port);

	for (size_t i = 0; i < ARRAY_SIZE(e); i++) {
		if (!r || !e[i]) {
			for (size_t j = 0; j < ARRAY_SIZE(e); j++)
				if (e[j])
					nftnl_expr_free(e[j]);
			if (r)
				nftnl_rule_free(r);
			return NULL;
		}
	}
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, "out");
	nftnl_expr_set_u32(e[0], NFTNL_EXPR_META_KEY, NFT_META_L4PROTO);
	nftnl_expr_set_u32(e[0], NFTNL_EXPR_META_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e[1], NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e[1], NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
	nftnl_expr_set(e[1], NFTNL_EXPR_CMP_DATA, &udp, sizeof(udp));
	nftnl_expr_set_u32(e[2], NFTNL_EXPR_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
	nftnl_expr_set_u32(e[2], NFTNL_EXPR_PAYLOAD_OFFSET, offsetof(struct udphdr, source));
	nftnl_expr_set_u32(e[2], NFTNL_EXPR_PAYLOAD_LEN, sizeof(nport));
	nftnl_expr_set_u32(e[2], NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e[3], NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e[3], NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
	nftnl_expr_set(e[3], NFTNL_EXPR_CMP_DATA, &nport, sizeof(nport));
	nftnl_expr_set_u16(e[4], NFTNL_EXPR_LOG_GROUP, group);
	nftnl_expr_set_u32(e[4], NFTNL_EXPR_LOG_SNAPLEN, 0xffff);
	nftnl_expr_set_u32(e[5], NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e[5], NFTNL_EXPR_IMM_VERDICT, NF_DROP);
	for (size_t i = 0; i < ARRAY_SIZE(e); i++)
		nftnl_rule_add_expr(r, e[i]);
	return r;
}

/* the table, its output chain and the rule, in one batch */
static int cork_table(struct cork_catch *c, uint16_t port)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_nlmsg_batch *b = mnl_nlmsg_batch_start(buf, sizeof(buf));
	struct nftnl_table *t = nftnl_table_alloc();
	struct nftnl_chain *ch = nftnl_chain_alloc();
	struct nftnl_rule *r = cork_rule(c->table, port, c->group);
	uint32_t seq = time(NULL);
	struct nlmsghdr *h;
	int ret = -ENOMEM;

	if (!b || !t || !ch || !r)
		goto out;
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, c->table);
	nftnl_table_set_u32(t, NFTNL_TABLE_FLAGS, NFT_TABLE_F_OWNER);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, c->table);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, "out");
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, "filter");
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_OUT);
	nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, CORK_PRIO);
	nftnl_batch_begin(mnl_nlmsg_batch_current(b), seq++);
	mnl_nlmsg_batch_next(b);
	h = nftnl_table_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), NFT_MSG_NEWTABLE, NFPROTO_INET,
					NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq++);
	nftnl_table_nlmsg_build_payload(h, t);
	mnl_nlmsg_batch_next(b);
	h = nftnl_chain_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), NFT_MSG_NEWCHAIN, NFPROTO_INET,
					NLM_F_CREATE | NLM_F_ACK, seq++);
	nftnl_chain_nlmsg_build_payload(h, ch);
	mnl_nlmsg_batch_next(b);
	h = nftnl_rule_nlmsg_build_hdr(mnl_nlmsg_batch_current(b), NFT_MSG_NEWRULE, NFPROTO_INET,
				       NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, seq++);
	nftnl_rule_nlmsg_build_payload(h, r);
	mnl_nlmsg_batch_next(b);
	nftnl_batch_end(mnl_nlmsg_batch_current(b), seq++);
	mnl_nlmsg_batch_next(b);
	if (mnl_socket_sendto(c->nft, mnl_nlmsg_batch_head(b), mnl_nlmsg_batch_size(b)) < 0)
		ret = pr_perror("%s: cannot send nftables its rule", c->what);
	else if ((ret = nft_acks(c->nft, 3))) {
		errno = -ret;
		pr_perror("%s: nftables refuses the rule that would catch its held bytes", c->what);
	}
out:
	if (b)
		mnl_nlmsg_batch_stop(b);
	if (t)
		nftnl_table_free(t);
	if (ch)
		nftnl_chain_free(ch);
	if (r)
		nftnl_rule_free(r);
	return ret;
}

/* an NFULNL_MSG_CONFIG message for group, with one attribute */
static int nflog_config(struct cork_catch *c, uint16_t group, int type, const void *data, size_t len)
{
	char buf[256];
	struct nlmsghdr *h = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *g;

	h->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
	g->nfgen_family = AF_UNSPEC;
	g->version = NFNETLINK_V0;
	g->res_id = htons(group);
	mnl_attr_put(h, type, len, data);
	if (mnl_socket_sendto(c->log, h, h->nlmsg_len) < 0)
		return -errno;
	return nft_acks(c->log, 1);
}

/* the first free NFLOG group from NFLOG_FIRST, copying whole packets */
static int nflog_bind(struct cork_catch *c)
{
	struct nfulnl_msg_config_cmd bind = { NFULNL_CFG_CMD_BIND };
	struct nfulnl_msg_config_mode mode = { .copy_range = htonl(0xffff), .copy_mode = NFULNL_COPY_PACKET };

	for (c->group = NFLOG_FIRST; c->group < NFLOG_FIRST + 64; c->group++) {
		int ret = nflog_config(c, c->group, NFULA_CFG_CMD, &bind, sizeof(bind));

		if (ret == -EBUSY)
			continue;
		if (!ret)
			ret = nflog_config(c, c->group, NFULA_CFG_MODE, &mode, sizeof(mode));
		if (ret) {
			errno = -ret;
			return pr_perror("%s: cannot listen to NFLOG group %u", c->what, c->group);
		}
		return 0;
	}
	pr_err("%s: no free NFLOG group from %#x", c->what, NFLOG_FIRST);
	return -EBUSY;
}

/* open both netlink sockets in the network namespace of socket fd */
static int catch_open(struct cork_catch *c, int fd)
{
	_cleanup_close_ int ns = ioctl(fd, SIOCGSKNS);

	if (ns < 0)
		return pr_perror("%s: cannot find its network namespace", c->what);
	if (!(c->nft = nft_socket_in(ns, c->what)) || !(c->log = nft_socket_in(ns, c->what)))
		return -EIO;
	return nflog_bind(c);
}

static void catch_close(struct cork_catch *c)
{
	/* the table goes with the socket that owns it, the group with its listener */
	if (c->nft)
		mnl_socket_close(c->nft);
	if (c->log)
		mnl_socket_close(c->log);
}

static void *dup_addr(struct arena *a, ProtobufCBinaryData *out, int family, const void *ip, uint16_t port,
		      bool v4)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = port };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = port };

	if (v4 && family == AF_INET) {
		memcpy(&in.sin_addr, ip, 4);
		out->len = sizeof(in);
	} else if (v4) {	/* an IPv6 socket sends IPv4 from v4-mapped addresses */
		in6.sin6_addr.s6_addr[10] = in6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&in6.sin6_addr.s6_addr[12], ip, 4);
		out->len = sizeof(in6);
	} else {
		memcpy(&in6.sin6_addr, ip, 16);
		out->len = sizeof(in6);
	}
	if ((out->data = arena_alloc(a, out->len)))
		memcpy(out->data, out->len == sizeof(in) ? (void *)&in : (void *)&in6, out->len);
	return out->data;
}

/* the datagram in NFLOG message h, into d */
static int parse_caught(const struct nlmsghdr *h, int family, DgramEntry *d, struct arena *a, const char *what)
{
	struct nlattr *at;
	const uint8_t *pkt = NULL;
	size_t len = 0, hl;
	const struct udphdr *uh;
	bool v4;

	mnl_attr_for_each(at, h, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(at) == NFULA_PAYLOAD) {
			pkt = mnl_attr_get_payload(at);
			len = mnl_attr_get_payload_len(at);
		}
	}
	if (!pkt || len < 1)
		goto bad;
	v4 = pkt[0] >> 4 == 4;
	hl = v4 ? (pkt[0] & 0xf) * 4u : sizeof(struct ip6_hdr);
	if (len < hl + sizeof(*uh) || (!v4 && ((const struct ip6_hdr *)pkt)->ip6_nxt != IPPROTO_UDP))
		goto bad;
	uh = (const void *)(pkt + hl);
	if (ntohs(uh->len) != len - hl) {
		pr_err("%s: its held datagram of %u bytes is too big to be caught whole", what,
		       ntohs(uh->len) - (unsigned)sizeof(*uh));
		return -EFBIG;
	}
	dgram_entry__init(d);
	d->data.len = len - hl - sizeof(*uh);
	if (!(d->data.data = arena_alloc(a, d->data.len ?: 1)) ||
	    !dup_addr(a, &d->src, family, v4 ? pkt + 12 : pkt + 8, uh->source, v4) ||
	    !dup_addr(a, &d->dst, family, v4 ? pkt + 16 : pkt + 24, uh->dest, v4))
		return -ENOMEM;
	memcpy(d->data.data, uh + 1, d->data.len);
	return 0;
bad:
	pr_err("%s: NFLOG gave something else than its datagram", what);
	return -EIO;
}

/* hold d back in fd again: with UDP_CORK if cork, else with MSG_MORE */
static int hold_again(int fd, const DgramEntry *d, bool cork, const char *what)
{
	int one = 1, held = 0;

	if (cork && setsockopt(fd, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)))
		return pr_perror("%s: cannot cork it again", what);
	if (sendto(fd, d->data.data, d->data.len, cork ? 0 : MSG_MORE, (const void *)d->dst.data, d->dst.len) !=
	    (ssize_t)d->data.len)
		return pr_perror("%s: cannot hold its %zu bytes back again", what, d->data.len);
	if (ioctl(fd, SIOCOUTQ, &held) || held <= 0) {
		pr_err("%s: its %zu bytes are not held back again", what, d->data.len);
		return -EIO;
	}
	return 0;
}

int udp_cork_dump(int fd, InetSkEntry *e, struct arena *a, const char *what)
{
	struct cork_catch c = { .what = what };
	struct sockaddr_in6 self;	/* the port sits at the same place in v4 */
	socklen_t sl = sizeof(self);
	DgramEntry *d = arena_new(a, DgramEntry);
	_cleanup_free_ char *buf = malloc(1 << 17);
	int zero = 0, one = 1, ret;
	struct pollfd pf;
	ssize_t n;

	if (!d || !buf)
		return -ENOMEM;
	snprintf(c.table, sizeof(c.table), "cryo-cork-%d", getpid());
	if (getsockname(fd, (void *)&self, &sl))
		return pr_perror("%s: getsockname", what);
	ret = catch_open(&c, fd) ?: cork_table(&c, ntohs(self.sin6_port));
	if (ret)
		goto out;
	/* corked or not, this sends what is held, as one datagram */
	if (setsockopt(fd, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_UDP, UDP_CORK, &zero, sizeof(zero))) {
		ret = pr_perror("%s: cannot uncork it", what);
		goto out;
	}
	pf = (struct pollfd){ .fd = mnl_socket_get_fd(c.log), .events = POLLIN };
	for (;;) {
		const struct nlmsghdr *h = (const void *)buf;

		if (poll(&pf, 1, 2000) != 1 || (n = recv(pf.fd, buf, 1 << 17, 0)) <= 0) {
			pr_err("%s: its held bytes were sent, and not caught: they are lost", what);
			ret = -EIO;
			goto out;
		}
		if (mnl_nlmsg_ok(h, n) && h->nlmsg_type == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET))
			break;
	}
	ret = parse_caught((const void *)buf, e->family, d, a, what);
	if (!ret)
		ret = hold_again(fd, d, e->udp_cork, what);
	if (!ret) {
		e->corked = d;
		pr_debug("%s: %zu bytes held back, for a datagram to port %u", what, d->data.len,
			 ntohs(((struct sockaddr_in *)d->dst.data)->sin_port));
	}
out:
	catch_close(&c);
	return ret;
}

int udp_cork_restore(int fd, const InetSkEntry *e, const char *what)
{
	if (!e->corked)
		return 0;
	if (e->corked->dst.len < sizeof(struct sockaddr_in)) {
		pr_err("%s: its held bytes have no address", what);
		return -EINVAL;
	}
	return hold_again(fd, e->corked, e->udp_cork, what);
}
