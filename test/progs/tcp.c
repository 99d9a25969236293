/*
 * tcp [v6|mapped] [shut|peerclose|lastack|closing] [tamper]: established TCP connections over loopback, both
 * ends in this process, with data in flight both ways at the checkpoint.
 * "mapped": IPv6 sockets over IPv4 (the listener bound to ::, the client
 * connected to ::ffff:127.0.0.1).
 * "shut": the client has shut its sending side down after its data
 * (FIN_WAIT1 or FIN_WAIT2 at the checkpoint): the server must read all of
 * it, then the end of stream, and can still send to the client.
 * "peerclose": the same with 5000 bytes only, so that the FIN reaches the
 * server before the checkpoint (CLOSE_WAIT there, FIN_WAIT2 here).
 * "lastack" and "closing": the client drops every segment it is sent (a
 * socket filter that returns 0), so nothing the server sends is
 * acknowledged. "lastack": the server gets the client's 5000 bytes and FIN,
 * then shuts down too (LAST_ACK). "closing": the server shuts down first,
 * then gets the client's bytes and FIN (CLOSING). The client is in
 * FIN_WAIT1. After the restore the client takes its filter off, reads the
 * server's bytes and end of stream, and the server's socket must end as
 * its state says (CLOSED after LAST_ACK, TIME_WAIT after CLOSING).
 *
 * A listener accepts a client. The client writes 3 MiB of a numbered byte
 * stream that the server does not read (small buffers): part of it waits
 * in the server's receive queue, part in the client's send queue, some of
 * it never sent (the window is full). The server writes 1000 bytes the
 * client does not read either. After the restore both sides read
 * everything and check every byte, then trade one more message each way on
 * the same connection, and the listener accepts a new one. The client's
 * options (TOS/traffic class, TTL/hops, linger, keepalive timers) are
 * checked too, and the server's socket filter (a 3-instruction program
 * that lets everything in).
 *
 * "tamper" expects the server's message to start at byte 1 of its stream.
 */
#include <arpa/inet.h>
#include <linux/filter.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "prog.h"

#define CLIENT_BYTES	(3 << 20)
#define SERVER_BYTES	1000

static int tamper;

static unsigned char stream_byte(uint64_t i, unsigned salt)
{
	return (unsigned char)((i * 131 + (i >> 9) + salt) & 0xff);
}

/* write the numbered stream from *off until the socket would block (non-blocking) */
static void write_some(int fd, uint64_t *off, uint64_t total, unsigned salt)
{
	unsigned char buf[4096];

	while (*off < total) {
		size_t n = total - *off < sizeof(buf) ? total - *off : sizeof(buf);
		ssize_t w;

		for (size_t i = 0; i < n; i++)
			buf[i] = stream_byte(*off + i, salt);
		w = send(fd, buf, n, MSG_DONTWAIT);
		if (w <= 0)
			return;
		*off += w;
	}
}

/* read exactly total bytes (waiting up to 10 s), checking each; returns bytes that matched */
static uint64_t read_check(int fd, uint64_t total, unsigned salt, uint64_t start)
{
	unsigned char buf[65536];
	uint64_t got = 0;

	while (got < total) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 10000) <= 0)
			break;
		n = recv(fd, buf, sizeof(buf) < total - got ? sizeof(buf) : total - got, MSG_DONTWAIT);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != stream_byte(start + got + i, salt))
				return got + i;
		got += n;
	}
	return got;
}

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) ? -1 : ti.tcpi_state;
}

/* the local and remote port of a connection, host order */
static void ports(int fd, unsigned *lp, unsigned *rp)
{
	struct sockaddr_in6 a = { 0 }, b = { 0 };	/* the ports are at the same place in v4 */
	socklen_t l = sizeof(a), m = sizeof(b);

	getsockname(fd, (void *)&a, &l);
	getpeername(fd, (void *)&b, &m);
	*lp = ntohs(a.sin6_port);
	*rp = ntohs(b.sin6_port);
}

/* is the connection between these ports in TIME_WAIT on the local side, as /proc/net/tcp{,6} lists it? */
static int in_time_wait(int v6, unsigned lport, unsigned rport)
{
	char line[256];
	FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
	int found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned lp, rp, st;
		char *c = strchr(line, ':');

		/* "sl: local:port remote:port st" */
		if (!c || !(c = strchr(c + 1, ':')) || sscanf(c + 1, "%x", &lp) != 1 || !(c = strchr(c + 1, ':')) ||
		    sscanf(c + 1, "%x %x", &rp, &st) != 2)
			continue;
		found |= lp == lport && rp == rport && st == TCP_TIME_WAIT;
	}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	int v6 = 0, mapped = 0, shut = 0, few = 0, lastack = 0, closing = 0, one = 1, small = 16384;
	uint64_t total = CLIENT_BYTES;
	struct sockaddr_storage sa = { 0 };
	socklen_t sl;
	int lsn, cli, srv, fam;
	uint64_t coff = 0, soff = 0, cq = 0, sq = 0;
	unsigned lp, rp;
	char buf[64];

	for (int i = 1; i < argc; i++) {
		v6 |= !strcmp(argv[i], "v6");
		mapped |= !strcmp(argv[i], "mapped");
		tamper |= !strcmp(argv[i], "tamper");
		shut |= !strcmp(argv[i], "shut");
		/* few bytes: the client's FIN reaches the server (CLOSE_WAIT there, FIN_WAIT2 here) */
		few |= !strcmp(argv[i], "peerclose");
		lastack |= !strcmp(argv[i], "lastack");
		closing |= !strcmp(argv[i], "closing");
	}
	few |= lastack || closing;
	v6 |= mapped;
	fam = v6 ? AF_INET6 : AF_INET;
	prog_trigger_init();
	lsn = socket(fam, SOCK_STREAM, 0);
	setsockopt(lsn, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sl = prog_loopback(v6, &sa);
	if (mapped)
		((struct sockaddr_in6 *)&sa)->sin6_addr = in6addr_any;
	if (bind(lsn, (void *)&sa, sl) || listen(lsn, 5) || getsockname(lsn, (void *)&sa, &sl)) {
		perror("listener");
		return 2;
	}
	if (mapped)
		inet_pton(AF_INET6, "::ffff:127.0.0.1", &((struct sockaddr_in6 *)&sa)->sin6_addr);
	cli = socket(fam, SOCK_STREAM, 0);
	setsockopt(cli, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(cli, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(cli, (void *)&sa, sl) || (srv = accept(lsn, NULL, NULL)) < 0) {
		perror("connect");
		return 2;
	}
	setsockopt(srv, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	{
		struct sock_filter f[3] = { { BPF_LD | BPF_W | BPF_LEN, 0, 0, 0 }, { BPF_JMP | BPF_JGE | BPF_K, 0, 0, 1 },
					    { BPF_RET | BPF_K, 0, 0, 0xfffff } };
		struct sock_fprog fp = { 3, f };

		if (setsockopt(srv, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp))) {
			perror("filter");
			return 2;
		}
	}
	{
		struct linger lg = { 1, 7 };
		int tos = 0x10, ttl = 33, idle = 77, intvl = 11, cnt = 5;

		if (setsockopt(cli, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_TCLASS : IP_TOS, &tos, sizeof(tos)) ||
		    setsockopt(cli, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_UNICAST_HOPS : IP_TTL, &ttl, sizeof(ttl)) ||
		    setsockopt(cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) ||
		    setsockopt(cli, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
		    setsockopt(cli, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
		    setsockopt(cli, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
		    setsockopt(cli, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt))) {
			perror("options");
			return 2;
		}
	}
	if (lastack || closing) {
		struct sock_filter f = { BPF_RET | BPF_K, 0, 0, 0 };
		struct sock_fprog fp = { 1, &f };

		if (setsockopt(cli, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp))) {
			perror("filter");
			return 2;
		}
	}
	/* fill both directions as far as they go */
	write_some(srv, &soff, SERVER_BYTES, 7);
	if (closing)
		shutdown(srv, SHUT_WR);
	for (int i = 0; i < 50; i++) {
		write_some(cli, &coff, few ? 5000 : CLIENT_BYTES, 3);
		usleep(2000);
	}
	shut |= few;
	if (shut) {
		/* half-closed: the client sends no more (FIN_WAIT1/2), the server sees it after the data */
		total = coff;
		shutdown(cli, SHUT_WR);
		usleep(20000);
	}
	if (lastack) {
		shutdown(srv, SHUT_WR);
		usleep(20000);
	}
	{
		int want = lastack ? TCP_LAST_ACK : closing ? TCP_CLOSING : few ? TCP_CLOSE_WAIT : -1;
		int st = tcp_state(srv);

		if (want >= 0 && st != want) {
			fprintf(stderr, "the server's connection is in state %d, not %d\n", st, want);
			return 2;
		}
	}
	ioctl(cli, TIOCOUTQ, &cq);
	ioctl(srv, FIONREAD, &sq);
	say("READY sent=%lu client-outq=%lu server-inq=%lu", (unsigned long)coff, (unsigned long)cq,
	    (unsigned long)sq);
	prog_wait_trigger();

	{
		struct linger lg = { 0, 0 };
		int tos = 0, ttl = 0, idle = 0, intvl = 0, cnt = 0, ka = 0;
		socklen_t l = sizeof(int), ll = sizeof(lg);

		getsockopt(cli, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_TCLASS : IP_TOS, &tos, &l);
		getsockopt(cli, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_UNICAST_HOPS : IP_TTL, &ttl, &l);
		getsockopt(cli, SOL_SOCKET, SO_LINGER, &lg, &ll);
		getsockopt(cli, SOL_SOCKET, SO_KEEPALIVE, &ka, &l);
		getsockopt(cli, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &l);
		getsockopt(cli, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, &l);
		getsockopt(cli, IPPROTO_TCP, TCP_KEEPCNT, &cnt, &l);
		CHECK(tos == 0x10 && ttl == 33, "client TOS %#x TTL %d, expected 0x10 and 33", tos, ttl);
		CHECK(lg.l_onoff == 1 && lg.l_linger == 7, "client linger %d/%d, expected 1/7", lg.l_onoff,
		      lg.l_linger);
		CHECK(ka && idle == 77 && intvl == 11 && cnt == 5, "client keepalive %d %d/%d/%d, expected 1 77/11/5",
		      ka, idle, intvl, cnt);
	}
	{
		struct sock_filter f[4];
		socklen_t n = 4;

		CHECK(!getsockopt(srv, SOL_SOCKET, SO_GET_FILTER, f, &n) && n == 3 &&
		      f[1].code == (BPF_JMP | BPF_JGE | BPF_K) && f[1].k == 1 && f[2].k == 0xfffff,
		      "the server's socket filter is not back (%u instructions)", n);
	}
	ports(srv, &lp, &rp);	/* while connected */
	{
		/* the rest goes faster with room (the small buffers only kept data in flight) */
		int big = 1 << 20;

		setsockopt(srv, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	}
	if (lastack || closing) {
		struct sock_filter f[2];
		socklen_t n = 2;

		CHECK(!getsockopt(cli, SOL_SOCKET, SO_GET_FILTER, f, &n) && n == 1 && f[0].k == 0,
		      "the client's dropping filter is not back (%u instructions)", n);
		setsockopt(cli, SOL_SOCKET, SO_DETACH_FILTER, &one, sizeof(one));
	}
	/* the client goes on writing the rest while the server reads it all */
	{
		uint64_t got = 0, want = total;
		unsigned char rb[65536];

		while (got < want) {
			struct pollfd p[2] = { { .fd = srv, .events = POLLIN }, { .fd = cli, .events = POLLOUT } };

			if (poll(p, coff < want ? 2 : 1, 10000) <= 0)
				break;
			if (p[1].revents & POLLOUT)
				write_some(cli, &coff, total, 3);
			if (p[0].revents & POLLIN) {
				ssize_t n = recv(srv, rb, sizeof(rb), MSG_DONTWAIT);

				if (n <= 0)
					break;
				for (ssize_t i = 0; i < n; i++)
					if (rb[i] != stream_byte(got + i, 3)) {
						CHECK(0, "client stream byte %lu is %u, expected %u",
						      (unsigned long)(got + i), rb[i], stream_byte(got + i, 3));
						want = 0;
						break;
					}
				got += n;
			}
		}
		CHECK(got == total, "server read %lu of %lu client bytes", (unsigned long)got, (unsigned long)total);
		if (shut) {
			struct pollfd p = { .fd = srv, .events = POLLIN };

			CHECK(poll(&p, 1, 10000) == 1 && recv(srv, rb, sizeof(rb), MSG_DONTWAIT) == 0,
			      "the server does not see the client's end of stream after its data");
		}
	}
	{
		uint64_t ok = read_check(cli, SERVER_BYTES, 7, tamper ? 1 : 0);

		CHECK(ok == SERVER_BYTES, "client: server stream wrong or short at byte %lu of %d",
		      (unsigned long)ok, SERVER_BYTES);
	}
	/* the same connection still carries new data both ways, where it may */
	CHECK(shut || (send(cli, "ping", 4, 0) == 4 && recv(srv, buf, 4, MSG_WAITALL) == 4 && !memcmp(buf, "ping", 4)),
	      "no ping on the restored connection");
	CHECK(lastack || closing ||
	      (send(srv, "pong", 4, 0) == 4 && recv(cli, buf, 4, MSG_WAITALL) == 4 && !memcmp(buf, "pong", 4)),
	      "no pong on the restored connection");
	if (lastack || closing) {
		struct pollfd p = { .fd = cli, .events = POLLIN };
		int tw;


		CHECK(poll(&p, 1, 10000) == 1 && recv(cli, buf, sizeof(buf), MSG_DONTWAIT) == 0,
		      "the client does not see the server's end of stream after its data");
		for (int i = 0; i < 1000 && tcp_state(srv) != TCP_CLOSE; i++)
			usleep(10000);
		tw = in_time_wait(v6, lp, rp);
		CHECK(tcp_state(srv) == TCP_CLOSE && tw == closing,
		      "the server's connection ends in state %d, %s TIME_WAIT", tcp_state(srv), tw ? "in" : "not in");
	}
	{
		int c2 = socket(fam, SOCK_STREAM, 0), s2;

		CHECK(!connect(c2, (void *)&sa, sl) && (s2 = accept(lsn, NULL, NULL)) >= 0,
		      "the listener takes no new connection");
	}
	if (!prog_failed)
		say("PASS");
	return prog_failed;
}
