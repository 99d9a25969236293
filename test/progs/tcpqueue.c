/*
 * tcpqueue [v6|mapped] [outside] [tamper]: connections waiting in a listener's accept queue
 * at the checkpoint, never accepted before it. "mapped": the listener is
 * an IPv6 socket bound to ::, the clients IPv4 ones (so the queued
 * connections have v4-mapped addresses).
 *
 * A listener on the loopback address gets three connections from clients
 * in this process: c1 sends a numbered stream until the connection takes
 * no more, c2 sends 3000 bytes and shuts its side down (CLOSE_WAIT in the
 * queue), c3 sends nothing. READY gives the port: with "outside" the test
 * adds a fourth from outside the tree, which sends "outside-hello\n".
 *
 * After the restore the listener gives the four back in the order they
 * came (checked by the clients' ports); each has what it received, every
 * byte checked (c2's then the end of stream), and carries data both ways:
 * c1's rest of the stream, a reply to each client, and "outside-bye\n" to
 * the fourth.
 *
 * "tamper" expects c1's stream to start at byte 1.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "prog.h"

#define C1_BYTES	(4 << 20)

static int tamper;

static unsigned char stream_byte(uint64_t i)
{
	return (unsigned char)((i * 151 + (i >> 11) + 5) & 0xff);
}

static int port_of(int fd, int peer)
{
	struct sockaddr_in6 sa = { 0 };	/* the port sits at the same place in v4 */
	socklen_t l = sizeof(sa);

	if (peer ? getpeername(fd, (void *)&sa, &l) : getsockname(fd, (void *)&sa, &l))
		return -1;
	return ntohs(sa.sin6_port);
}

/* read exactly n bytes within 10 s (0: up to the end of stream), return how many */
static size_t read_n(int fd, unsigned char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 10000) != 1 || (r = recv(fd, buf + got, n - got, MSG_DONTWAIT)) <= 0)
			break;
		got += r;
	}
	return got;
}

static bool at_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, 10000) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage sa = { 0 };
	socklen_t sl;
	int v6 = 0, mapped = 0, outside = 0, lsn, c[3], s[4], one = 1, fam;
	static unsigned char buf[C1_BYTES], msg[3000];
	uint64_t c1off = 0;

	for (int i = 1; i < argc; i++) {
		v6 |= !strcmp(argv[i], "v6");
		mapped |= !strcmp(argv[i], "mapped");
		tamper |= !strcmp(argv[i], "tamper");
		outside |= !strcmp(argv[i], "outside");
	}
	fam = v6 ? AF_INET6 : AF_INET;
	prog_trigger_init();
	sl = prog_loopback(v6 || mapped, &sa);
	if (mapped)
		((struct sockaddr_in6 *)&sa)->sin6_addr = in6addr_any;
	lsn = socket(v6 || mapped ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	setsockopt(lsn, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lsn, (void *)&sa, sl) || listen(lsn, 8) || getsockname(lsn, (void *)&sa, &sl)) {
		perror("listener");
		return 2;
	}
	if (mapped) {	/* the clients: IPv4, to the listener's port */
		uint16_t port = ((struct sockaddr_in6 *)&sa)->sin6_port;

		sl = prog_loopback(0, &sa);
		((struct sockaddr_in *)&sa)->sin_port = port;
	}
	for (int i = 0; i < 3; i++) {
		c[i] = socket(fam, SOCK_STREAM, 0);
		if (connect(c[i], (void *)&sa, sl)) {
			perror("connect");
			return 2;
		}
	}
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = stream_byte(i);
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (unsigned char)(i * 7 + 1);
	/* c1: as much as goes (into the queued connection's receive queue and c1's send queue) */
	for (int i = 0; i < 20; i++) {
		ssize_t n = send(c[0], buf + c1off, C1_BYTES - c1off, MSG_DONTWAIT);

		if (n > 0)
			c1off += n;
		usleep(5000);
	}
	if (send(c[1], msg, sizeof(msg), 0) != sizeof(msg) || shutdown(c[1], SHUT_WR)) {
		perror("c2");
		return 2;
	}
	usleep(50000);
	say("READY port=%d c1-sent=%lu", port_of(lsn, 0), (unsigned long)c1off);
	prog_wait_trigger();

	for (int i = 0; i < 3 + outside; i++) {
		struct pollfd p = { .fd = lsn, .events = POLLIN };

		s[i] = poll(&p, 1, 5000) == 1 ? accept(lsn, NULL, NULL) : -1;
		CHECK(s[i] >= 0, "the listener gives only %d connections back", i);
		if (s[i] < 0)
			return 1;
	}
	for (int i = 0; i < 3; i++)
		CHECK(port_of(s[i], 1) == port_of(c[i], 0), "connection %d from port %d, expected c%d's %d", i,
		      port_of(s[i], 1), i + 1, port_of(c[i], 0));
	{
		static unsigned char got[C1_BYTES];
		size_t n, bad = 0;

		/* c1 sends the rest while s1 reads it all */
		for (n = 0; n < C1_BYTES;) {
			struct pollfd p[2] = { { .fd = s[0], .events = POLLIN }, { .fd = c[0], .events = POLLOUT } };
			ssize_t r;

			if (poll(p, c1off < C1_BYTES ? 2 : 1, 10000) <= 0)
				break;
			if ((p[1].revents & POLLOUT) && (r = send(c[0], buf + c1off, C1_BYTES - c1off, MSG_DONTWAIT)) > 0)
				c1off += r;
			if ((p[0].revents & POLLIN) && (r = recv(s[0], got + n, C1_BYTES - n, MSG_DONTWAIT)) > 0)
				n += r;
		}
		while (bad < n && got[bad] == stream_byte(bad + tamper))
			bad++;
		CHECK(n == C1_BYTES && bad == n, "c1's stream: %zu of %d bytes, wrong from byte %zu", n, C1_BYTES, bad);
	}
	{
		unsigned char got[sizeof(msg)];

		CHECK(read_n(s[1], got, sizeof(got)) == sizeof(got) && !memcmp(got, msg, sizeof(msg)),
		      "c2's 3000 bytes are not all there");
		CHECK(at_eof(s[1]), "c2's end of stream is not there after its bytes");
	}
	for (int i = 0; i < 3; i++) {
		char r[8];

		CHECK(send(s[i], "reply", 5, 0) == 5 && read_n(c[i], (unsigned char *)r, 5) == 5 && !memcmp(r, "reply", 5),
		      "c%d gets no reply on its connection", i + 1);
	}
	if (outside) {
		char hello[15] = "";

		CHECK(read_n(s[3], (unsigned char *)hello, 14) == 14 && !memcmp(hello, "outside-hello\n", 14),
		      "the connection from outside has '%.14s', expected 'outside-hello'", hello);
		CHECK(send(s[3], "outside-bye\n", 12, 0) == 12, "cannot answer the connection from outside");
	}
	if (!prog_failed)
		say("PASS");
	return prog_failed;
}
