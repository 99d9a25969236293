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
#include <stdbool.h>
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

/* count *n up every 5 ms until SIGUSR1 (a restore must not lose the count) */
static inline void prog_count_until_trigger(volatile unsigned long *n)
{
	while (!prog_go) {
		struct timespec ts = { 0, 5 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		(*n)++;
	}
}

static inline int prog_finish(void)
{
	if (prog_failed)
		return 1;
	say("PASS");
	return 0;
}

#define COUNT_K 0x9e3779b97f4a7c15ULL

/* what count_in_registers leaves behind */
struct reg_count {
	unsigned long long count;	/* r12 */
	unsigned long long scaled;	/* r13: r12 * COUNT_K all along */
	unsigned long long stacked;	/* the stack slot counting with r12 */
	unsigned long long k[3];	/* rbx, r14, r15 at the end */
	int bad;			/* the lockstep check failed on the way */
};

/*
 * Count until *stop, with all the state in registers and on the stack: the
 * loop is assembly, so the compiler keeps nothing of its own around it.
 * r12 counts, r13 adds COUNT_K in step, a stack slot counts with r12, and
 * rbx/r14/r15 hold k1-k3; every turn checks r12, r13 and the slot agree.
 */
static inline void count_in_registers(volatile int *stop, unsigned long long k1,
				      unsigned long long k2, unsigned long long k3,
				      struct reg_count *out)
{
	/* bound to the registers the loop uses: no memory operand may be
	 * addressed off rsp while the loop has moved it */
	register unsigned long long count asm("r12"), scaled asm("r13"), c1 asm("rbx");
	register unsigned long long c2 asm("r14"), c3 asm("r15");
	unsigned long long stacked, bad;

	asm volatile(
		"	mov	%[k1], %%rbx\n"
		"	mov	%[k2], %%r14\n"
		"	mov	%[k3], %%r15\n"
		"	xor	%%r12, %%r12\n"
		"	xor	%%r13, %%r13\n"
		"	xor	%%ecx, %%ecx\n"
		"	sub	$16, %%rsp\n"
		"	movq	$0, (%%rsp)\n"
		"1:	inc	%%r12\n"
		"	incq	(%%rsp)\n"
		"	movabs	%[k], %%rax\n"
		"	add	%%rax, %%r13\n"
		"	cmp	(%%rsp), %%r12\n"
		"	jne	2f\n"
		"	mov	%%r12, %%rax\n"
		"	movabs	%[k], %%rdx\n"
		"	imul	%%rdx, %%rax\n"
		"	cmp	%%rax, %%r13\n"
		"	jne	2f\n"
		"	cmpl	$0, (%[stop])\n"
		"	je	1b\n"
		"	jmp	3f\n"
		"2:	mov	$1, %%ecx\n"
		"3:	mov	(%%rsp), %%rax\n"
		"	add	$16, %%rsp\n"
		/* early clobbers: no input may sit in a register the loop sets */
		: "=&r"(count), "=&r"(scaled), "=&r"(c1), "=&r"(c2), "=&r"(c3), "=&a"(stacked),
		  "=&c"(bad)
		: [k] "i"(COUNT_K), [stop] "r"(stop), [k1] "m"(k1), [k2] "m"(k2), [k3] "m"(k3)
		: "rdx", "cc", "memory");
	out->count = count;
	out->scaled = scaled;
	out->stacked = stacked;
	out->k[0] = c1;
	out->k[1] = c2;
	out->k[2] = c3;
	out->bad = bad;
}

static inline unsigned long long xorshift64(unsigned long long *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

#include <netinet/in.h>
#include <arpa/inet.h>

/* the loopback address, v4 or v6, port 0; its length */
static inline socklen_t prog_loopback(int v6, struct sockaddr_storage *sa)
{
	memset(sa, 0, sizeof(*sa));
	if (v6) {
		struct sockaddr_in6 *a = (void *)sa;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		return sizeof(*a);
	}
	((struct sockaddr_in *)sa)->sin_family = AF_INET;
	((struct sockaddr_in *)sa)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(struct sockaddr_in);
}

#endif
