/*
 * ping [tamper]: ICMP datagram ("ping") sockets, IPv4 and IPv6, each bound
 * to an echo identifier of its own (0x5a5a and 0x6b6b) and connected to
 * the loopback address, the v4 one with a TTL of 45. After the restore
 * each keeps its identifier (a new socket would get another), its peer
 * and its TTL, and a ping sent on it comes back with its identifier and
 * sequence number.
 *
 * "tamper" expects the v4 identifier to be one more.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/icmp6.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "prog.h"

static int tamper;

/* the socket's echo identifier (its "port"), or -1 */
static int ident(int fd)
{
	struct sockaddr_in6 sa = { 0 };	/* the port sits at the same place in v4 */
	socklen_t l = sizeof(sa);

	return getsockname(fd, (void *)&sa, &l) ? -1 : ntohs(sa.sin6_port);
}

/* send an echo request with this sequence number; true if the reply comes back with it */
static bool echo(int fd, bool v6, uint16_t seq)
{
	union {
		struct icmphdr v4;
		struct icmp6_hdr v6;
	} req = { 0 };
	unsigned char buf[256];
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (v6) {
		req.v6.icmp6_type = ICMP6_ECHO_REQUEST;
		req.v6.icmp6_seq = htons(seq);
	} else {
		req.v4.type = ICMP_ECHO;
		req.v4.un.echo.sequence = htons(seq);
	}
	/* the kernel puts the socket's identifier in */
	if (send(fd, &req, v6 ? sizeof(req.v6) : sizeof(req.v4), 0) < 0)
		return false;
	while (poll(&p, 1, 2000) == 1) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		const struct icmphdr *r4 = (const void *)buf;
		const struct icmp6_hdr *r6 = (const void *)buf;

		if (n < 8)
			return false;
		if (v6 ? (r6->icmp6_type == ICMP6_ECHO_REPLY && ntohs(r6->icmp6_seq) == seq)
		       : (r4->type == ICMP_ECHOREPLY && ntohs(r4->un.echo.sequence) == seq))
			return true;
	}
	return false;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(0x5a5a) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(0x6b6b) };
	int s4, s6, ttl = 45;

	tamper = argc > 1 && !strcmp(argv[1], "tamper");
	prog_trigger_init();
	s4 = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
	s6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
	if (s4 < 0 || s6 < 0 || bind(s4, (void *)&a4, sizeof(a4)) || bind(s6, (void *)&a6, sizeof(a6))) {
		perror("ping sockets (is net.ipv4.ping_group_range open to this group?)");
		return 2;
	}
	a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a6.sin6_addr = in6addr_loopback;
	if (connect(s4, (void *)&a4, sizeof(a4)) || connect(s6, (void *)&a6, sizeof(a6)) ||
	    setsockopt(s4, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) || !echo(s4, false, 1) || !echo(s6, true, 1)) {
		perror("ping");
		return 2;
	}
	say("READY");
	prog_wait_trigger();

	{
		struct sockaddr_in peer = { 0 };
		socklen_t l = sizeof(peer), tl = sizeof(ttl);

		CHECK(ident(s4) == 0x5a5a + tamper, "v4 ping socket: identifier %#x, expected %#x", ident(s4),
		      0x5a5a + tamper);
		CHECK(ident(s6) == 0x6b6b, "v6 ping socket: identifier %#x, expected 0x6b6b", ident(s6));
		CHECK(!getpeername(s4, (void *)&peer, &l) && peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
		      "v4 ping socket: not connected to 127.0.0.1");
		CHECK(!getsockopt(s4, IPPROTO_IP, IP_TTL, &ttl, &tl) && ttl == 45, "v4 ping socket: TTL %d, expected 45",
		      ttl);
		CHECK(echo(s4, false, 2), "v4 ping socket: no reply to a ping");
		CHECK(echo(s6, true, 2), "v6 ping socket: no reply to a ping");
	}
	if (!prog_failed)
		say("PASS");
	return prog_failed;
}
