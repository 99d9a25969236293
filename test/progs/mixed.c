/*
 * mixed [tamper]: a parent and its child share a pipe (1000 bytes queued
 * from parent to child), a socketpair (a message queued each way) and one
 * epoll set watching the child's ends, made before the fork. After the
 * restore the parent passes SIGUSR1 on; the child sees both targets ready
 * in the shared epoll set, reads everything, and answers "ack" through the
 * socketpair; the parent checks what it got and how the child exited.
 * "tamper" makes the child expect 1001 bytes in the pipe.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "prog.h"

#define PIPE_BYTES 1000

static int tamper;

static int child_checks(int rd, int sk, int ep)
{
	struct epoll_event evs[4];
	char buf[2048];
	int n, seen = 0;

	n = epoll_wait(ep, evs, 4, 1000);
	for (int i = 0; i < n; i++)
		seen |= 1 << evs[i].data.u32;
	CHECK(seen == 6, "child: epoll set reports targets %#x, expected 0x6", seen);
	n = read(rd, buf, sizeof(buf));
	CHECK(n == (tamper ? PIPE_BYTES + 1 : PIPE_BYTES), "child: %d bytes in the pipe, expected %d", n,
	      tamper ? PIPE_BYTES + 1 : PIPE_BYTES);
	for (int i = 0; i < n && i < PIPE_BYTES; i++)
		if (buf[i] != (char)(i * 13)) {
			CHECK(0, "child: pipe byte %d differs", i);
			break;
		}
	n = read(sk, buf, sizeof(buf));
	CHECK(n == 8 && !memcmp(buf, "to-child", 8), "child: socketpair gave %d bytes", n);
	if (write(sk, "ack", 3) != 3)
		return 1;
	return prog_failed;
}

int main(int argc, char **argv)
{
	int p[2], sp[2], ep, st;
	char buf[PIPE_BYTES];
	pid_t child;

	tamper = argc > 1 && !strcmp(argv[1], "tamper");
	prog_trigger_init();
	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || (ep = epoll_create1(0)) < 0)
		return perror("setup"), 2;
	struct epoll_event ev = { EPOLLIN, { .u32 = 1 } };
	epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
	ev.data.u32 = 2;
	epoll_ctl(ep, EPOLL_CTL_ADD, sp[1], &ev);
	child = fork();
	if (child == 0) {
		close(p[1]);
		close(sp[0]);
		if (write(sp[1], "to-parent", 9) != 9)
			_exit(2);
		prog_wait_trigger();
		_exit(child_checks(p[0], sp[1], ep));
	}
	close(p[0]);
	close(sp[1]);
	for (int i = 0; i < PIPE_BYTES; i++)
		buf[i] = (char)(i * 13);
	if (write(p[1], buf, PIPE_BYTES) != PIPE_BYTES || write(sp[0], "to-child", 8) != 8)
		return perror("write"), 2;
	/* the child's message is in before READY */
	if (recv(sp[0], buf, 9, MSG_PEEK | MSG_WAITALL) != 9)
		return perror("recv"), 2;
	say("READY child=%d", child);
	prog_wait_trigger();
	kill(child, SIGUSR1);
	CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "the child failed its checks (status %#x)", st);
	int n = read(sp[0], buf, sizeof(buf));
	CHECK(n == 12 && !memcmp(buf, "to-parentack", 12), "parent: socketpair gave '%.*s'", n > 0 ? n : 0, buf);
	return prog_finish();
}
