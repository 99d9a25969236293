/*
 * A unix stream service for the container tests: a listener and a client
 * connected to it, both inside the container, talking all the time.
 *
 *   ct-unixpair serve PATH FILE   listen on PATH; fork a client that connects
 *                                 to it and sends 1, 2, 3, ... which the server
 *                                 answers one by one; the client checks each
 *                                 answer and renames the last number into FILE
 *                                 (or writes "FAIL: why" there and stops)
 *   ct-unixpair ask PATH          connect to PATH, say "ask": the server answers
 *                                 "served N last M" (connections it accepted,
 *                                 the last number of its client), printed
 *
 * Both counts live in the server's memory only. Built static: it runs
 * inside the busybox root file system.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int addr(const char *path, struct sockaddr_un *a)
{
	*a = (struct sockaddr_un){ .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a->sun_path)) {
		fprintf(stderr, "ct-unixpair: %s: too long a name\n", path);
		return -1;
	}
	strcpy(a->sun_path, path);
	return 0;
}

static int connect_to(const char *path)
{
	struct sockaddr_un a;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	if (s < 0 || addr(path, &a) || connect(s, (void *)&a, sizeof(a))) {
		perror("ct-unixpair: connect");
		return -1;
	}
	return s;
}

/* one line (without its newline) from s, or -1 */
static int read_line(int s, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		ssize_t r = read(s, buf + n, 1);

		if (r <= 0)
			return -1;
		if (buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = 0;
	return 0;
}

static void report(const char *file, const char *text)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", file);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, file);
}

static void __attribute__((noreturn)) client(const char *path, const char *file)
{
	char buf[128], want[64];
	int s = connect_to(path);

	if (s < 0) {
		report(file, "FAIL: cannot connect\n");
		_exit(1);
	}
	for (unsigned long n = 1;; n++) {
		int len = snprintf(buf, sizeof(buf), "%lu\n", n);

		if (write(s, buf, len) != len || read_line(s, buf, sizeof(buf))) {
			report(file, "FAIL: the connection broke\n");
			_exit(1);
		}
		snprintf(want, sizeof(want), "got %lu", n);
		if (strcmp(buf, want)) {
			snprintf(want, sizeof(want), "FAIL: sent %lu, answered '%.30s'\n", n, buf);
			report(file, want);
			_exit(1);
		}
		snprintf(buf, sizeof(buf), "%lu\n", n);
		report(file, buf);
		usleep(100000);
	}
}

static int serve(const char *path, const char *file)
{
	struct pollfd pf[2] = { { .fd = -1, .events = POLLIN }, { .fd = -1, .events = POLLIN } };
	unsigned long served = 0, last = 0;
	struct sockaddr_un a;
	char buf[128];

	pf[0].fd = socket(AF_UNIX, SOCK_STREAM, 0);
	unlink(path);
	if (pf[0].fd < 0 || addr(path, &a) || bind(pf[0].fd, (void *)&a, sizeof(a)) || listen(pf[0].fd, 8)) {
		perror("ct-unixpair: listen");
		return 1;
	}
	if (fork() == 0) {
		close(pf[0].fd);
		client(path, file);
	}
	for (;;) {
		if (poll(pf, 2, -1) < 0)
			continue;
		if (pf[0].revents & POLLIN) {
			int c = accept(pf[0].fd, NULL, NULL);

			if (c < 0)
				continue;
			served++;
			if (pf[1].fd < 0) {
				pf[1].fd = c;	/* the first one is the client's */
				continue;
			}
			/* anyone else asks */
			if (!read_line(c, buf, sizeof(buf)) && !strcmp(buf, "ask")) {
				int len = snprintf(buf, sizeof(buf), "served %lu last %lu\n", served, last);

				if (write(c, buf, len) != len)
					perror("ct-unixpair: answer");
			}
			close(c);
		}
		if (pf[1].fd >= 0 && (pf[1].revents & (POLLIN | POLLHUP))) {
			int len;

			if (read_line(pf[1].fd, buf, sizeof(buf))) {
				close(pf[1].fd);
				pf[1].fd = -1;
				continue;
			}
			last = strtoul(buf, NULL, 10);
			len = snprintf(buf, sizeof(buf), "got %lu\n", last);
			if (write(pf[1].fd, buf, len) != len)
				perror("ct-unixpair: answer");
		}
	}
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "serve"))
		return serve(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "ask")) {
		char buf[128];
		int s = connect_to(argv[2]);

		if (s < 0 || write(s, "ask\n", 4) != 4 || read_line(s, buf, sizeof(buf)))
			return 1;
		puts(buf);
		return 0;
	}
	fprintf(stderr, "usage: ct-unixpair serve PATH FILE | ask PATH\n");
	return 2;
}
