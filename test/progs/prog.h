/*
 * Shared by the self-verifying test programs. Each one builds some state,
 * prints "READY [key=value ...]", waits (in its own way) until SIGUSR1,
 * then checks every piece of its state and prints "PASS" or
 * "FAIL: <what, expected, got>", exiting 0 or 1. Output goes straight to
 * fd 1 with write(2): the harness gives a log file there.
 */
#ifndef PROG_H
#define PROG_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t prog_go;

static void prog_on_usr1(int sig)
{
	(void)sig;
	prog_go = 1;
}

/* install the SIGUSR1 trigger (plain handler, SA_RESTART) */
static inline void prog_trigger_init(void)
{
	struct sigaction sa = { .sa_handler = prog_on_usr1, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL)) {
		perror("sigaction");
		exit(2);
	}
}

static inline void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(1, buf, n) < 0)
		_exit(3);
}

static int prog_failed;

/* record a failed check; the program goes on checking the rest */
#define CHECK(cond, fmt, ...) do {						\
	if (!(cond)) {								\
		say("FAIL: " fmt, ##__VA_ARGS__);				\
		prog_failed = 1;						\
	}									\
} while (0)

/* sleep until SIGUSR1, in nanosleep (restarted by the kernel after a restore) */
static inline void prog_wait_trigger(void)
{
	while (!prog_go) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
}

static inline int prog_finish(void)
{
	if (prog_failed)
		return 1;
	say("PASS");
	return 0;
}

static inline unsigned long long xorshift64(unsigned long long *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

#endif
