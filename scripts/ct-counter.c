/*
 * The sample application container's one process: a counter kept in
 * memory, written to a file every 100 ms through an fd held open (the
 * number at offset 0, and a line per second appended to a log: the number
 * and CLOCK_MONOTONIC's seconds, as the vDSO gives them).
 *
 *   ct-counter FILE LOG
 *
 * Built static: it runs inside the busybox root file system.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	unsigned long n = 0;
	char buf[32];
	int fd, log;

	/* a container's init leads its own session, as runtimes make it */
	setsid();
	if (argc != 3) {
		fprintf(stderr, "usage: ct-counter FILE LOG\n");
		return 2;
	}
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	log = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || log < 0) {
		perror("ct-counter");
		return 1;
	}
	for (;;) {
		int len = snprintf(buf, sizeof(buf), "%lu\n", ++n);

		if (pwrite(fd, buf, len, 0) != len || ftruncate(fd, len))
			return 1;
		if (n % 10 == 0) {
			struct timespec ts;
			char line[64];
			int ll;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ll = snprintf(line, sizeof(line), "%lu %ld\n", n, (long)ts.tv_sec);
			if (write(log, line, ll) != ll)
				return 1;
		}
		usleep(100000);
	}
}
