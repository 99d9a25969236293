/*
 * pty [tamper]: a session leader with a pseudo-terminal of its own as its
 * controlling terminal: raw-ish termios (no echo, VMIN 3), a 33x111
 * window, and a child's process group in the foreground. After restore the
 * pair has its number, termios, window and foreground group, /dev/tty is
 * that terminal (an fd opened on it before the dump too), and bytes flow
 * both ways between master and slave.
 * "tamper" expects 34 rows.
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

#include "prog.h"

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	struct winsize ws = { 33, 111, 0, 0 };
	struct termios t, t0;
	char name[64], buf[64];
	int m, s, n = 0;
	pid_t child;

	prog_trigger_init();
	m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m) || ptsname_r(m, name, sizeof(name)))
		return perror("posix_openpt"), 2;
	s = open(name, O_RDWR);	/* a session leader without one: its controlling terminal */
	if (s < 0 || tcgetattr(s, &t))
		return perror(name), 2;
	t.c_lflag &= ~(ECHO | ICANON);
	t.c_cc[VMIN] = 3;
	if (tcsetattr(s, TCSANOW, &t) || ioctl(s, TIOCSWINSZ, &ws) || tcgetattr(s, &t0))
		return perror("tcsetattr"), 2;
	child = fork();
	if (child == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	setpgid(child, child);
	signal(SIGTTOU, SIG_IGN);
	if (tcsetpgrp(s, child))
		return perror("tcsetpgrp"), 2;
	int tty = open("/dev/tty", O_RDWR);	/* held across the checkpoint */

	if (tty < 0)
		return perror("/dev/tty"), 2;
	say("READY child=%d pty=%s", child, name);
	prog_wait_trigger();

	char now[64];
	CHECK(!ptsname_r(m, now, sizeof(now)) && !strcmp(now, name), "the pty is %s, expected %s", now, name);
	CHECK(!tcgetattr(s, &t) && t.c_lflag == t0.c_lflag && t.c_iflag == t0.c_iflag && t.c_cc[VMIN] == 3,
	      "termios lflag %#x VMIN %d, expected %#x 3", t.c_lflag, t.c_cc[VMIN], t0.c_lflag);
	CHECK(!ioctl(s, TIOCGWINSZ, &ws) && ws.ws_row == (tamper ? 34 : 33) && ws.ws_col == 111,
	      "window %dx%d, expected %dx111", ws.ws_row, ws.ws_col, tamper ? 34 : 33);
	CHECK(tcgetpgrp(s) == child, "foreground group %d, expected %d", tcgetpgrp(s), child);
	CHECK(tcgetsid(s) == getpid(), "the pty is the terminal of session %d, expected %d", tcgetsid(s), getpid());
	CHECK(tty >= 0 && tcgetsid(tty) == getpid() && tcgetpgrp(tty) == child, "/dev/tty: %s",
	      tty >= 0 ? "not this session's pty" : strerror(errno));
	/* back in the foreground to use it */
	CHECK(!tcsetpgrp(s, getpgrp()), "tcsetpgrp: %s", strerror(errno));
	CHECK(write(m, "abc", 3) == 3 && (n = read(s, buf, sizeof(buf))) == 3 && !memcmp(buf, "abc", 3),
	      "master to slave: %d bytes (%s)", n, strerror(errno));
	CHECK(write(s, "xyz", 3) == 3 && (n = read(m, buf, sizeof(buf))) == 3 && !memcmp(buf, "xyz", 3),
	      "slave to master: %d bytes", n);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return prog_finish();
}
