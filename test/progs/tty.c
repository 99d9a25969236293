/*
 * A shell job: stdio on a terminal that is its session's controlling
 * terminal, its process group in the foreground. READY carries a random
 * token drawn at start. On SIGUSR1 it checks that stdio is still one
 * terminal, that it is the controlling terminal (/dev/tty) and that its
 * group is in the foreground; then it prints ASK, reads a line from the
 * terminal and echoes it with the token, which a re-executed program
 * could not know.
 */
#include <fcntl.h>
#include <termios.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "prog.h"

/* field 7 of /proc/self/stat: the controlling terminal's device */
static unsigned stat_tty_nr(void)
{
	char buf[512], *p;
	unsigned nr = 0;
	FILE *f = fopen("/proc/self/stat", "r");

	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 2, "%*c %*d %*d %*d %u", &nr);
	fclose(f);
	return nr;
}

int main(void)
{
	unsigned long long token;
	struct stat st[3];
	unsigned tty_nr;
	char line[128];
	ssize_t n;
	int fd;

	if (getrandom(&token, sizeof(token), 0) != sizeof(token))
		return 2;
	prog_trigger_init();
	say("READY token=%llx", token);
	prog_wait_trigger();

	for (int i = 0; i < 3; i++) {
		CHECK(isatty(i), "fd %d is no terminal", i);
		CHECK(!fstat(i, &st[i]), "fstat fd %d: %s", i, strerror(errno));
	}
	CHECK(st[0].st_rdev == st[1].st_rdev && st[1].st_rdev == st[2].st_rdev,
	      "stdio is not one terminal");
	fd = open("/dev/tty", O_RDWR | O_NOCTTY);
	CHECK(fd >= 0, "no controlling terminal: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	tty_nr = stat_tty_nr();
	CHECK(makedev((tty_nr >> 8) & 0xfff, (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00)) == st[0].st_rdev,
	      "the controlling terminal (tty_nr %#x) is not the one on stdin", tty_nr);
	CHECK(tcgetpgrp(0) == getpgrp(), "process group %d is not in the foreground (%d is)",
	      getpgrp(), tcgetpgrp(0));
	say("ASK");
	n = read(0, line, sizeof(line) - 1);
	CHECK(n > 0, "read from the terminal: %s", n < 0 ? strerror(errno) : "EOF");
	if (n > 0) {
		line[n] = 0;
		line[strcspn(line, "\n")] = 0;
		say("GOT %s token=%llx", line, token);
	}
	return prog_finish();
}
