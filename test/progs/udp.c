/*
 * udp [v6|mapped]: datagrams a UDP socket has received and not read yet
 * come back, in order, each from its own sender:
 *  - a socket bound to all addresses holds four datagrams from two
 *    senders: 5 bytes, none, 60000 bytes of a pattern, and one sent to
 *    another of its addresses (127.0.0.2 in IPv4);
 *  - a socket bound to lo (SO_BINDTODEVICE) and connected to the first
 *    sender holds a datagram from the second sender that came before it
 *    connected, then two from its peer.
 *  - a socket with UDP_CORK on holds "held-" back for its peer, and an
 *    unconnected one holds "more-" sent with MSG_MORE.
 * After the restore each socket gives exactly those, with the senders'
 * addresses and its own buffer size, and nothing more; then both carry
 * new datagrams. The held bytes went nowhere, and go out with what the
 * two sockets send next, as one datagram each: "held-rest" once the first
 * uncorks, "more-tail" from the second's next send. "v6" does it over ::1; "mapped" has IPv6 sockets take
 * IPv4 datagrams (v4-mapped).
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "prog.h"

#define BIG 60000

static int fam_sock, fam_peer;		/* the family of the receiving sockets, and of the senders */

static void addr_of(struct sockaddr_storage *ss, int family, const char *ip)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = family;
	if (family == AF_INET)
		inet_pton(AF_INET, ip, &((struct sockaddr_in *)ss)->sin_addr);
	else
		inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)ss)->sin6_addr);
}

static uint16_t port_of(int fd)
{
	struct sockaddr_in6 sa;	/* the port sits at the same place in v4 */
	socklen_t l = sizeof(sa);

	return getsockname(fd, (void *)&sa, &l) ? 0 : ntohs(sa.sin6_port);
}

static int sock_at(int family, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	int fd = socket(family, SOCK_DGRAM, 0);

	addr_of(&ss, family, ip);
	((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	if (fd < 0 || bind(fd, (void *)&ss, family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))) {
		perror("udp socket");
		exit(2);
	}
	return fd;
}

static void send_to(int from, const char *ip, uint16_t port, const void *p, size_t n)
{
	struct sockaddr_storage ss;

	addr_of(&ss, fam_peer, ip);
	((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
	if (sendto(from, p, n, 0, (void *)&ss, sizeof(ss)) != (ssize_t)n) {
		perror("sendto");
		exit(2);
	}
}

static bool wait_in(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

/* the next datagram on fd must be these bytes from the sender's port */
static void expect(int fd, const char *name, int i, const void *want, size_t n, uint16_t from)
{
	static char buf[BIG + 100];
	struct sockaddr_in6 sa = { 0 };
	socklen_t l = sizeof(sa);
	ssize_t got;

	if (!wait_in(fd, 0)) {
		say("FAIL: %s: datagram %d is gone", name, i);
		prog_failed = 1;
		return;
	}
	got = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (void *)&sa, &l);
	CHECK(got == (ssize_t)n && !memcmp(buf, want, n), "%s: datagram %d has %zd bytes, expected %zu%s", name, i,
	      got, n, got == (ssize_t)n ? " (other bytes)" : "");
	CHECK(ntohs(sa.sin6_port) == from, "%s: datagram %d from port %u, expected %u", name, i, ntohs(sa.sin6_port),
	      from);
}

int main(int argc, char **argv)
{
	bool v6 = argc > 1 && !strcmp(argv[1], "v6"), mapped = argc > 1 && !strcmp(argv[1], "mapped");
	const char *lo = v6 ? "::1" : "127.0.0.1", *any = v6 || mapped ? "::" : "0.0.0.0";
	const char *other = v6 ? "::1" : "127.0.0.2";
	static char big[BIG];
	int s, k, c1, c2, cork, more, r, bufsz[2], v, one = 1, off = 0;
	socklen_t l = sizeof(int);
	struct sockaddr_storage peer;

	fam_sock = v6 || mapped ? AF_INET6 : AF_INET;
	fam_peer = v6 ? AF_INET6 : AF_INET;
	prog_trigger_init();
	for (int i = 0; i < BIG; i++)
		big[i] = i * 7 + i / 251;
	s = sock_at(fam_sock, any, 0);
	k = sock_at(fam_sock, any, 0);
	c1 = sock_at(fam_peer, lo, 0);
	c2 = sock_at(fam_peer, lo, 0);
	if (setsockopt(k, SOL_SOCKET, SO_BINDTODEVICE, "lo", 2)) {
		perror("SO_BINDTODEVICE");
		return 2;
	}
	send_to(c1, lo, port_of(s), "first", 5);
	send_to(c2, lo, port_of(s), "", 0);
	send_to(c1, lo, port_of(s), big, BIG);
	send_to(c2, other, port_of(s), "last", 4);
	send_to(c2, lo, port_of(k), "before-connect", 14);
	addr_of(&peer, fam_sock, mapped ? "::ffff:127.0.0.1" : lo);
	((struct sockaddr_in6 *)&peer)->sin6_port = htons(port_of(c1));
	if (connect(k, (void *)&peer, fam_sock == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6))) {
		perror("connect");
		return 2;
	}
	send_to(c1, lo, port_of(k), "k1", 2);
	send_to(c1, lo, port_of(k), "k2", 2);
	/* bytes held back: by UDP_CORK on a connected socket, by MSG_MORE on another */
	r = sock_at(fam_peer, lo, 0);
	cork = sock_at(fam_sock, any, 0);
	more = sock_at(fam_sock, any, 0);
	addr_of(&peer, fam_sock, mapped ? "::ffff:127.0.0.1" : lo);
	((struct sockaddr_in6 *)&peer)->sin6_port = htons(port_of(r));
	if (connect(cork, (void *)&peer, fam_sock == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)) ||
	    setsockopt(cork, IPPROTO_UDP, UDP_CORK, &one, sizeof(one)) || send(cork, "held-", 5, 0) != 5 ||
	    sendto(more, "more-", 5, MSG_MORE, (void *)&peer, sizeof(peer)) != 5) {
		perror("held bytes");
		return 2;
	}
	getsockopt(s, SOL_SOCKET, SO_RCVBUF, &bufsz[0], &l);
	getsockopt(k, SOL_SOCKET, SO_RCVBUF, &bufsz[1], &l);
	usleep(50 * 1000);
	say("READY");
	prog_wait_trigger();

	expect(s, "wildcard socket", 1, "first", 5, port_of(c1));
	expect(s, "wildcard socket", 2, "", 0, port_of(c2));
	expect(s, "wildcard socket", 3, big, BIG, port_of(c1));
	expect(s, "wildcard socket", 4, "last", 4, port_of(c2));
	CHECK(!wait_in(s, 100), "wildcard socket: a datagram more than it had");
	expect(k, "connected socket", 1, "before-connect", 14, port_of(c2));
	expect(k, "connected socket", 2, "k1", 2, port_of(c1));
	expect(k, "connected socket", 3, "k2", 2, port_of(c1));
	CHECK(!wait_in(k, 100), "connected socket: a datagram more than it had");
	CHECK(!getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &l) && v == bufsz[0], "wildcard socket: SO_RCVBUF %d, was %d",
	      v, bufsz[0]);
	CHECK(!getsockopt(k, SOL_SOCKET, SO_RCVBUF, &v, &l) && v == bufsz[1],
	      "connected socket: SO_RCVBUF %d, was %d", v, bufsz[1]);
	{
		char dev[IFNAMSIZ] = "";
		socklen_t dl = sizeof(dev);

		CHECK(!getsockopt(k, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl) && !strcmp(dev, "lo"),
		      "connected socket: bound to device \"%s\", expected lo", dev);
	}
	/* the held bytes went nowhere, and go with the next ones */
	CHECK(!wait_in(r, 100), "held bytes: sent before their time");
	CHECK(!getsockopt(cork, IPPROTO_UDP, UDP_CORK, &v, &l) && v, "corked socket: UDP_CORK is off");
	CHECK(send(cork, "rest", 4, 0) == 4 && !setsockopt(cork, IPPROTO_UDP, UDP_CORK, &off, sizeof(off)),
	      "corked socket: cannot send and uncork");
	CHECK(wait_in(r, 2000), "corked socket: nothing arrives when it uncorks");
	expect(r, "corked socket's peer", 1, "held-rest", 9, port_of(cork));
	CHECK(sendto(more, "tail", 4, 0, (void *)&peer, sizeof(peer)) == 4, "MSG_MORE socket: cannot send");
	CHECK(wait_in(r, 2000), "MSG_MORE socket: nothing arrives after its last send");
	expect(r, "MSG_MORE socket's peer", 2, "more-tail", 9, port_of(more));
	CHECK(!wait_in(r, 100), "held bytes: a datagram more than expected");
	/* and new datagrams still come in */
	send_to(c2, lo, port_of(s), "after", 5);
	send_to(c1, lo, port_of(k), "k3", 2);
	CHECK(wait_in(s, 2000), "wildcard socket: a new datagram does not arrive");
	expect(s, "wildcard socket", 5, "after", 5, port_of(c2));
	CHECK(wait_in(k, 2000), "connected socket: a new datagram does not arrive");
	expect(k, "connected socket", 4, "k3", 2, port_of(c1));
	if (!prog_failed)
		say("PASS");
	return prog_failed;
}
