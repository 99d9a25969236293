/*
 * socks [tamper]: sockets of the other kinds, each checked by using it
 * after the restore:
 *  - a raw ICMP socket bound to 127.0.0.1 (with IP_HDRINCL off) sends an
 *    echo request and sees the reply with its id;
 *  - a packet socket bound to lo (ETH_P_IP, datagram) sees a UDP datagram
 *    sent to 127.0.0.1 go by;
 *  - a raw packet socket on lo keeps TPACKET_V2, PACKET_AUXDATA, its
 *    fanout group and its membership that makes lo promiscuous (lo is
 *    not, once the dumped process is gone, until it is back);
 *  - a netlink route socket bound to port id pid+7 in the link and IPv4
 *    address groups, which keeps them and answers an RTM_GETLINK dump
 *    that lists lo;
 *  - a UDP socket connected to another, with SO_REUSEADDR and UDP_CORK
 *    on (nothing queued): two sends after the restore go as one datagram
 *    when it is uncorked.
 *
 * "tamper" expects the netlink socket in one more group.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "prog.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static int tamper;

static uint16_t csum(const void *p, size_t n)
{
	const uint16_t *w = p;
	uint32_t s = 0;

	for (; n > 1; n -= 2)
		s += *w++;
	if (n)
		s += *(const uint8_t *)w;
	s = (s >> 16) + (s & 0xffff);
	s += s >> 16;
	return ~s;
}

static bool wait_in(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

static void check_raw(int raw)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct icmphdr req = { .type = ICMP_ECHO, .un.echo.id = htons(0x4242), .un.echo.sequence = htons(7) };
	unsigned char buf[2048];
	int hdrincl = 1;
	socklen_t l = sizeof(hdrincl);
	bool seen = false;

	req.checksum = csum(&req, sizeof(req));
	CHECK(!getsockopt(raw, IPPROTO_IP, IP_HDRINCL, &hdrincl, &l) && !hdrincl, "raw socket: IP_HDRINCL is on");
	CHECK(sendto(raw, &req, sizeof(req), 0, (void *)&to, sizeof(to)) == sizeof(req), "raw socket: cannot send");
	for (int i = 0; i < 8 && !seen && wait_in(raw, 2000); i++) {
		ssize_t n = recv(raw, buf, sizeof(buf), 0);
		const struct iphdr *ip = (const void *)buf;
		const struct icmphdr *ic = (const void *)(buf + ip->ihl * 4);

		seen = n >= (ssize_t)(ip->ihl * 4 + sizeof(*ic)) && ic->type == ICMP_ECHOREPLY &&
		       ic->un.echo.id == htons(0x4242);
	}
	CHECK(seen, "raw socket: no echo reply to its ping");
}

static void check_packet(int pk)
{
	struct sockaddr_ll sa;
	socklen_t sl = sizeof(sa);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	unsigned char buf[2048];
	bool seen = false;

	CHECK(!getsockname(pk, (void *)&sa, &sl) && sa.sll_ifindex == (int)if_nametoindex("lo") &&
	      ntohs(sa.sll_protocol) == ETH_P_IP, "packet socket: not bound to lo for ETH_P_IP");
	sendto(u, "cryo-packet-probe", 17, 0, (void *)&to, sizeof(to));
	for (int i = 0; i < 20 && !seen && wait_in(pk, 2000); i++) {
		ssize_t n = recv(pk, buf, sizeof(buf), 0);

		seen = n > 17 && memmem(buf, n, "cryo-packet-probe", 17);
	}
	CHECK(seen, "packet socket: did not see the UDP datagram on lo");
	close(u);
}

static bool lo_promisc(void)
{
	unsigned flags = 0;
	FILE *f = fopen("/sys/class/net/lo/flags", "r");

	if (f && fscanf(f, "%x", &flags) != 1)
		flags = 0;
	if (f)
		fclose(f);
	return flags & IFF_PROMISC;
}

static int packet_opt(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);

	return getsockopt(fd, SOL_PACKET, opt, &v, &l) ? -1 : v;
}

static void check_packet_opts(int pk, int fanout)
{
	CHECK(packet_opt(pk, PACKET_VERSION) == TPACKET_V2, "packet socket: version %d, expected TPACKET_V2",
	      packet_opt(pk, PACKET_VERSION));
	CHECK(packet_opt(pk, PACKET_AUXDATA) == 1, "packet socket: PACKET_AUXDATA is off");
	CHECK(packet_opt(pk, PACKET_FANOUT) == fanout, "packet socket: fanout %#x, expected %#x",
	      packet_opt(pk, PACKET_FANOUT), fanout);
	CHECK(lo_promisc(), "packet socket: lo is not promiscuous: its membership is gone");
}

static void check_netlink(int nl, unsigned portid)
{
	struct sockaddr_nl sa;
	socklen_t sl = sizeof(sa), gl;
	uint32_t groups[4] = { 0 };
	uint32_t want = (1u << (RTNLGRP_LINK - 1)) | (1u << (RTNLGRP_IPV4_IFADDR - 1)) |
			(tamper ? 1u << (RTNLGRP_IPV4_ROUTE - 1) : 0);
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = { .h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 99 },
		  .i = { .ifi_family = AF_UNSPEC } };
	char buf[65536];
	bool lo = false;

	gl = sizeof(groups);
	CHECK(!getsockname(nl, (void *)&sa, &sl) && sa.nl_pid == portid, "netlink: port id %u, expected %u",
	      sa.nl_pid, portid);
	CHECK(!getsockopt(nl, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &gl) && groups[0] == want,
	      "netlink: groups %#x, expected %#x", groups[0], want);
	CHECK(send(nl, &req, sizeof(req), 0) == sizeof(req), "netlink: cannot send");
	while (!lo && wait_in(nl, 2000)) {
		ssize_t n = recv(nl, buf, sizeof(buf), 0);

		for (struct nlmsghdr *h = (void *)buf; n > 0 && NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR)
				n = 0;
			else if (h->nlmsg_type == RTM_NEWLINK && h->nlmsg_seq == 99 &&
				 memmem(h, h->nlmsg_len, "lo", 3))
				lo = true;
		}
		if (!n && !lo)
			break;
	}
	CHECK(lo, "netlink: its RTM_GETLINK dump does not list lo");
}

int main(int argc, char **argv)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP) };
	struct sockaddr_nl nla = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR };
	struct sockaddr_in ua = lo, ub = lo;
	socklen_t sl = sizeof(ua);
	int raw, pk, pk2, nl, u1, u2, one = 1, v2 = TPACKET_V2, fanout = (getpid() & 0xffff) | PACKET_FANOUT_HASH << 16;
	struct packet_mreq mr = { .mr_type = PACKET_MR_PROMISC };
	char buf[16];

	tamper = argc > 1 && !strcmp(argv[1], "tamper");
	prog_trigger_init();
	raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	pk = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
	pk2 = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	u1 = socket(AF_INET, SOCK_DGRAM, 0);
	u2 = socket(AF_INET, SOCK_DGRAM, 0);
	ll.sll_ifindex = if_nametoindex("lo");
	mr.mr_ifindex = ll.sll_ifindex;
	if (pk2 < 0 || setsockopt(pk2, SOL_PACKET, PACKET_VERSION, &v2, sizeof(v2)) ||
	    setsockopt(pk2, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)) || bind(pk2, (void *)&ll, sizeof(ll)) ||
	    setsockopt(pk2, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)) ||
	    setsockopt(pk2, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr))) {
		perror("packet socket options");
		return 2;
	}
	nla.nl_pid = getpid() + 7;
	setsockopt(u1, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (raw < 0 || pk < 0 || nl < 0 || bind(raw, (void *)&lo, sizeof(lo)) || bind(pk, (void *)&ll, sizeof(ll)) ||
	    bind(nl, (void *)&nla, sizeof(nla)) || bind(u1, (void *)&ua, sizeof(ua)) ||
	    bind(u2, (void *)&ub, sizeof(ub)) || getsockname(u1, (void *)&ua, &sl) ||
	    getsockname(u2, (void *)&ub, &sl) || connect(u1, (void *)&ub, sizeof(ub)) ||
	    setsockopt(u1, IPPROTO_UDP, UDP_CORK, &one, sizeof(one))) {
		perror("sockets");
		return 2;
	}
	say("READY");
	prog_wait_trigger();
	check_raw(raw);
	check_packet(pk);
	check_packet_opts(pk2, fanout);
	check_netlink(nl, getpid() + 7);
	{
		struct sockaddr_in peer;
		socklen_t pl = sizeof(peer);
		int reuse = 0;
		socklen_t rl = sizeof(reuse);

		CHECK(!getpeername(u1, (void *)&peer, &pl) && peer.sin_port == ub.sin_port,
		      "UDP socket: not connected to its peer any more");
		CHECK(!getsockopt(u1, SOL_SOCKET, SO_REUSEADDR, &reuse, &rl) && reuse, "UDP socket: SO_REUSEADDR lost");
		int cork = 0, off = 0;
		socklen_t cl = sizeof(cork);

		CHECK(!getsockopt(u1, IPPROTO_UDP, UDP_CORK, &cork, &cl) && cork, "UDP socket: UDP_CORK is off");
		CHECK(send(u1, "ud", 2, 0) == 2 && send(u1, "p!", 2, 0) == 2 &&
		      !setsockopt(u1, IPPROTO_UDP, UDP_CORK, &off, sizeof(off)) && wait_in(u2, 2000) &&
		      recv(u2, buf, sizeof(buf), 0) == 4 && !memcmp(buf, "udp!", 4),
		      "UDP socket: its corked datagram did not arrive whole");
	}
	if (!prog_failed)
		say("PASS");
	return prog_failed;
}
