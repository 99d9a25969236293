/*
 * unixsk [tamper]: unix sockets of every common shape, with data queued,
 * checked byte for byte after the restore:
 *  - a stream socketpair with 7 bytes queued one way and 5000 the other;
 *  - a datagram pair with messages of 10, 200 and 3000 bytes queued;
 *  - a seqpacket pair with two records queued;
 *  - a listener bound to srv.sock (mode 0600, backlog 7): one accepted
 *    connection with data queued both ways and a receive timeout of 1.5 s,
 *    and two connections not accepted yet, accepted after the restore in
 *    the order they came;
 *  - an abstract datagram receiver with two messages from a sender
 *    connected to it and one from a sender since closed;
 *  - a stream pair shut down for writing one way, with "bye" before EOF;
 *  - a stream socket whose peer closed after writing "last words";
 *  - a listener whose socket file was deleted: same name, no file;
 *  - buffer sizes, SO_PASSCRED, O_NONBLOCK kept.
 * "tamper" expects the first stream message to be "hello-b".
 */
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "prog.h"

static int tamper;

static int must(int v, const char *what)
{
	if (v < 0) {
		perror(what);
		exit(2);
	}
	return v;
}

static socklen_t path_addr(struct sockaddr_un *a, const char *path, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (abstract) {
		snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "%s", path);
		return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
	}
	snprintf(a->sun_path, sizeof(a->sun_path), "%s", path);
	return SUN_LEN(a);
}

static void fill(char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (char)(i * 7 + seed);
}

/* a datagram of len bytes with the given seed, read from fd? */
static int got_msg(int fd, size_t len, unsigned seed)
{
	char want[4096], buf[8192];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	fill(want, len, seed);
	return n == (ssize_t)len && !memcmp(buf, want, len);
}

static int getopt_int(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);

	getsockopt(fd, SOL_SOCKET, opt, &v, &l);
	return v;
}

int main(int argc, char **argv)
{
	int st[2], dg[2], sq[2], lsn, c1, s1, c2, c3, rcv, snd, gone_snd, e[2], g[2], lsn2;
	struct timeval tv = { 1, 500000 };
	struct sockaddr_un a;
	char big[5000], buf[8192], abs_name[64];
	int rcvbuf, sndbuf;
	socklen_t len;

	tamper = argc > 1 && !strcmp(argv[1], "tamper");
	prog_trigger_init();

	must(socketpair(AF_UNIX, SOCK_STREAM, 0, st), "socketpair");
	must(write(st[0], "hello-a", 7), "write");
	fill(big, sizeof(big), 3);
	must(write(st[1], big, sizeof(big)), "write");
	rcvbuf = 65536;
	must(setsockopt(st[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(int)), "SO_RCVBUF");
	must(setsockopt(st[1], SOL_SOCKET, SO_PASSCRED, (int[]){ 1 }, sizeof(int)), "SO_PASSCRED");
	rcvbuf = getopt_int(st[0], SO_RCVBUF);
	sndbuf = getopt_int(st[1], SO_SNDBUF);

	must(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg), "socketpair");
	fill(buf, 3000, 5);
	must(send(dg[0], buf, 10, 0), "send");
	must(send(dg[0], buf, 200, 0), "send");
	must(send(dg[0], buf, 3000, 0), "send");
	must(fcntl(dg[1], F_SETFL, O_NONBLOCK), "F_SETFL");

	must(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq), "socketpair");
	must(send(sq[1], "record-one", 10, 0), "send");
	must(send(sq[1], "record-two!", 11, 0), "send");

	lsn = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	len = path_addr(&a, "srv.sock", 0);
	must(bind(lsn, (struct sockaddr *)&a, len), "bind");
	must(chmod("srv.sock", 0600), "chmod");
	must(listen(lsn, 7), "listen");
	c1 = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	must(connect(c1, (struct sockaddr *)&a, len), "connect");
	s1 = must(accept(lsn, NULL, NULL), "accept");
	must(write(c1, "to-server", 9), "write");
	must(write(s1, "to-client", 9), "write");
	must(setsockopt(s1, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), "SO_RCVTIMEO");
	c2 = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	must(connect(c2, (struct sockaddr *)&a, len), "connect");
	c3 = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	must(connect(c3, (struct sockaddr *)&a, len), "connect");

	snprintf(abs_name, sizeof(abs_name), "cryo-unixsk-%d", getpid());
	rcv = must(socket(AF_UNIX, SOCK_DGRAM, 0), "socket");
	len = path_addr(&a, abs_name, 1);
	must(bind(rcv, (struct sockaddr *)&a, len), "bind");
	snd = must(socket(AF_UNIX, SOCK_DGRAM, 0), "socket");
	must(connect(snd, (struct sockaddr *)&a, len), "connect");
	gone_snd = must(socket(AF_UNIX, SOCK_DGRAM, 0), "socket");
	fill(buf, 100, 11);
	must(send(snd, buf, 100, 0), "send");
	fill(buf, 50, 12);
	must(sendto(gone_snd, buf, 50, 0, (struct sockaddr *)&a, len), "sendto");
	close(gone_snd);
	fill(buf, 70, 13);
	must(send(snd, buf, 70, 0), "send");

	must(socketpair(AF_UNIX, SOCK_STREAM, 0, e), "socketpair");
	must(write(e[0], "bye", 3), "write");
	must(shutdown(e[0], SHUT_WR), "shutdown");

	must(socketpair(AF_UNIX, SOCK_STREAM, 0, g), "socketpair");
	must(write(g[1], "last words", 10), "write");
	close(g[1]);

	lsn2 = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	len = path_addr(&a, "gone.sock", 0);
	must(bind(lsn2, (struct sockaddr *)&a, len), "bind");
	must(listen(lsn2, 3), "listen");
	must(unlink("gone.sock"), "unlink");

	say("READY");
	prog_wait_trigger();

	/* stream pair */
	memset(buf, 0, sizeof(buf));
	CHECK(read(st[1], buf, sizeof(buf)) == 7 && !memcmp(buf, tamper ? "hello-b" : "hello-a", 7),
	      "stream pair: got '%.7s', expected '%s'", buf, tamper ? "hello-b" : "hello-a");
	size_t got = 0;
	while (got < sizeof(big)) {
		ssize_t n = recv(st[0], buf + got, sizeof(buf) - got, MSG_DONTWAIT);

		if (n <= 0)
			break;
		got += n;
	}
	CHECK(got == sizeof(big) && !memcmp(buf, big, sizeof(big)), "stream pair: %zu of 5000 bytes back", got);
	CHECK(getopt_int(st[0], SO_RCVBUF) == rcvbuf && getopt_int(st[1], SO_SNDBUF) == sndbuf,
	      "buffer sizes %d/%d, expected %d/%d", getopt_int(st[0], SO_RCVBUF), getopt_int(st[1], SO_SNDBUF),
	      rcvbuf, sndbuf);
	CHECK(getopt_int(st[1], SO_PASSCRED) == 1 && getopt_int(st[0], SO_PASSCRED) == 0, "SO_PASSCRED");
	must(write(st[0], "after", 5), "write");
	CHECK(read(st[1], buf, sizeof(buf)) == 5, "the stream pair does not carry new data");

	/* datagram pair */
	CHECK(got_msg(dg[1], 10, 5) && got_msg(dg[1], 200, 5) && got_msg(dg[1], 3000, 5),
	      "datagram pair: the 3 messages did not come back whole and in order");
	CHECK(recv(dg[1], buf, sizeof(buf), 0) < 0 && errno == EAGAIN, "datagram pair: lost O_NONBLOCK");

	/* seqpacket */
	CHECK(recv(sq[0], buf, sizeof(buf), 0) == 10 && !memcmp(buf, "record-one", 10) &&
	      recv(sq[0], buf, sizeof(buf), 0) == 11 && !memcmp(buf, "record-two!", 11),
	      "seqpacket: records lost their boundaries or bytes");

	/* the listener and its connections */
	struct stat sb;
	CHECK(!stat("srv.sock", &sb) && S_ISSOCK(sb.st_mode) && (sb.st_mode & 0777) == 0600, "srv.sock mode %o",
	      sb.st_mode & 0777);
	CHECK(read(s1, buf, sizeof(buf)) == 9 && !memcmp(buf, "to-server", 9), "accepted socket lost its data");
	CHECK(read(c1, buf, sizeof(buf)) == 9 && !memcmp(buf, "to-client", 9), "client socket lost its data");
	struct timeval tvr;
	len = sizeof(tvr);
	CHECK(!getsockopt(s1, SOL_SOCKET, SO_RCVTIMEO, &tvr, &len) && tvr.tv_sec == 1 && tvr.tv_usec == 500000,
	      "SO_RCVTIMEO %ld.%06ld", (long)tvr.tv_sec, (long)tvr.tv_usec);
	len = sizeof(a);
	CHECK(!getsockname(s1, (struct sockaddr *)&a, &len) && strstr(a.sun_path, "srv.sock"),
	      "the accepted socket's name is '%s'", a.sun_path);
	must(write(c2, "2", 1), "write");
	must(write(c3, "3", 1), "write");
	int a2 = accept(lsn, NULL, NULL), a3 = accept(lsn, NULL, NULL);
	CHECK(a2 >= 0 && a3 >= 0 && read(a2, buf, 1) == 1 && buf[0] == '2' && read(a3, buf, 1) == 1 && buf[0] == '3',
	      "the waiting connections did not come back in order");
	int c4 = must(socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	len = path_addr(&a, "srv.sock", 0);
	CHECK(!connect(c4, (struct sockaddr *)&a, len), "cannot connect to the listener: %s", strerror(errno));

	/* abstract receiver */
	CHECK(got_msg(rcv, 100, 11) && got_msg(rcv, 50, 12) && got_msg(rcv, 70, 13),
	      "abstract receiver: its 3 messages did not come back in order");
	fill(buf, 30, 14);
	must(send(snd, buf, 30, 0), "send");
	CHECK(got_msg(rcv, 30, 14), "the connected sender does not reach the receiver");

	/* shutdown, closed peer */
	CHECK(read(e[1], buf, sizeof(buf)) == 3 && read(e[1], buf, sizeof(buf)) == 0, "shut-down pair: no bye then EOF");
	CHECK(write(e[1], "back", 4) == 4 && read(e[0], buf, sizeof(buf)) == 4, "shut-down pair: the other way is shut too");
	memset(buf, 0, sizeof(buf));
	CHECK(read(g[0], buf, sizeof(buf)) == 10 && !memcmp(buf, "last words", 10) && read(g[0], buf, 1) == 0,
	      "closed peer: got '%s', then no EOF", buf);

	/* deleted socket file */
	len = sizeof(a);
	CHECK(!getsockname(lsn2, (struct sockaddr *)&a, &len) && strstr(a.sun_path, "gone.sock") &&
	      access("gone.sock", F_OK), "deleted listener name '%s', or its file is back", a.sun_path);
	return prog_finish();
}
