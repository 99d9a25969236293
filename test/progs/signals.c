/*
 * signals [tamper]: signal state that lives in the kernel.
 *   SIGUSR2   SA_SIGINFO|SA_ONSTACK|SA_RESTART handler with sa_mask
 *             {SIGINT, SIGRTMIN+5}; raised after restore it must run on
 *             the alternate stack, see its siginfo, and have its mask
 *             blocked while it runs;
 *   SIGPIPE   ignored; SIGHUP default;
 *   blocked   SIGRTMIN+2 (queued twice with sigqueue, values 42 and 43) and
 *             SIGWINCH (sent once), both pending at the dump: unblocked
 *             after restore, each must be delivered, the RT ones in order
 *             with their values;
 *   altstack  a 64 KiB sigaltstack;
 *   ITIMER_REAL one-shot, 2 s after set-up: after restore it must still be
 *             armed (for no longer than was left), fire once, and not
 *             before its time.
 * "tamper" changes SIGUSR2's sa_mask before checking.
 */
#include <stdint.h>
#include <sys/time.h>

#include "prog.h"

#define ALT_SIZE (64 * 1024)
#define ALARM_S 2

static char altstack[ALT_SIZE] __attribute__((aligned(16)));
static volatile sig_atomic_t usr2_runs, usr2_on_alt, usr2_mask_ok, usr2_value;
static volatile sig_atomic_t rt_count, rt_values[4], winch_count, alarm_count;

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
	char here;
	sigset_t cur;

	(void)sig;
	(void)uc;
	usr2_runs++;
	usr2_on_alt = &here >= altstack && &here < altstack + ALT_SIZE;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	usr2_mask_ok = sigismember(&cur, SIGINT) && sigismember(&cur, SIGRTMIN + 5) &&
		       sigismember(&cur, SIGUSR2);
	usr2_value = si->si_code == SI_QUEUE ? si->si_value.sival_int : -1;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (rt_count < 4)
		rt_values[rt_count] = si->si_value.sival_int;
	rt_count++;
}

static void on_winch(int sig)
{
	(void)sig;
	winch_count++;
}

static volatile double alarm_at;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_alarm(int sig)
{
	(void)sig;
	alarm_at = now();
	alarm_count++;
}

static void handle(int sig, void (*fn)(int), void (*act)(int, siginfo_t *, void *), int flags,
		   const sigset_t *mask)
{
	struct sigaction sa = { .sa_flags = flags };

	if (act)
		sa.sa_sigaction = act;
	else
		sa.sa_handler = fn;
	if (mask)
		sa.sa_mask = *mask;
	else
		sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL)) {
		say("FAIL: set-up: sigaction %d: %s", sig, strerror(errno));
		exit(2);
	}
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	struct itimerval it = { .it_value = { ALARM_S, 0 } };
	stack_t ss = { .ss_sp = altstack, .ss_size = ALT_SIZE };
	sigset_t usr2_mask, block, pend;
	struct sigaction sa;
	union sigval v;
	double armed_at, deadline;

	prog_trigger_init();
	sigemptyset(&usr2_mask);
	sigaddset(&usr2_mask, SIGINT);
	sigaddset(&usr2_mask, SIGRTMIN + 5);
	handle(SIGUSR2, NULL, on_usr2, SA_SIGINFO | SA_ONSTACK | SA_RESTART, &usr2_mask);
	handle(SIGRTMIN + 2, NULL, on_rt, SA_SIGINFO, NULL);
	handle(SIGWINCH, on_winch, NULL, 0, NULL);
	handle(SIGALRM, on_alarm, NULL, SA_RESTART, NULL);
	handle(SIGPIPE, SIG_IGN, NULL, 0, NULL);
	if (sigaltstack(&ss, NULL)) {
		say("FAIL: set-up: sigaltstack: %s", strerror(errno));
		return 2;
	}

	sigemptyset(&block);
	sigaddset(&block, SIGRTMIN + 2);
	sigaddset(&block, SIGWINCH);
	sigprocmask(SIG_BLOCK, &block, NULL);
	v.sival_int = 42;
	sigqueue(getpid(), SIGRTMIN + 2, v);
	v.sival_int = 43;
	sigqueue(getpid(), SIGRTMIN + 2, v);
	kill(getpid(), SIGWINCH);

	armed_at = now();
	setitimer(ITIMER_REAL, &it, NULL);
	say("READY");
	prog_wait_trigger();

	if (tamper) {
		sigaction(SIGUSR2, NULL, &sa);
		sigaddset(&sa.sa_mask, SIGTERM);
		sigaction(SIGUSR2, &sa, NULL);
	}

	/* dispositions */
	sigaction(SIGUSR2, NULL, &sa);
	CHECK(sa.sa_sigaction == on_usr2, "SIGUSR2 handler %p, expected %p",
	      (void *)sa.sa_sigaction, (void *)on_usr2);
	CHECK((sa.sa_flags & (SA_SIGINFO | SA_ONSTACK | SA_RESTART)) ==
	      (SA_SIGINFO | SA_ONSTACK | SA_RESTART), "SIGUSR2 flags %#x", sa.sa_flags);
	CHECK(sigismember(&sa.sa_mask, SIGINT) && sigismember(&sa.sa_mask, SIGRTMIN + 5) &&
	      !sigismember(&sa.sa_mask, SIGTERM) && !sigismember(&sa.sa_mask, SIGQUIT),
	      "SIGUSR2 sa_mask is not {SIGINT, SIGRTMIN+5}");
	sigaction(SIGPIPE, NULL, &sa);
	CHECK(sa.sa_handler == SIG_IGN, "SIGPIPE is not ignored");
	sigaction(SIGHUP, NULL, &sa);
	CHECK(sa.sa_handler == SIG_DFL, "SIGHUP is not default");

	/* altstack */
	sigaltstack(NULL, &ss);
	CHECK(ss.ss_sp == altstack && ss.ss_size == ALT_SIZE && !(ss.ss_flags & SS_DISABLE),
	      "sigaltstack %p+%zu flags %#x, expected %p+%d", ss.ss_sp, ss.ss_size, ss.ss_flags,
	      (void *)altstack, ALT_SIZE);

	/* blocked and pending, then delivered */
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGRTMIN + 2) && sigismember(&pend, SIGWINCH),
	      "SIGRTMIN+2 / SIGWINCH no longer pending after restore");
	CHECK(rt_count == 0 && winch_count == 0, "a blocked signal was delivered");
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	CHECK(rt_count == 2, "SIGRTMIN+2 delivered %d times, expected 2", rt_count);
	CHECK(rt_values[0] == 42 && rt_values[1] == 43, "SIGRTMIN+2 values %d, %d, expected 42, 43",
	      rt_values[0], rt_values[1]);
	CHECK(winch_count == 1, "SIGWINCH delivered %d times, expected 1", winch_count);

	/* the handler runs on the altstack with its mask */
	v.sival_int = 7;
	sigqueue(getpid(), SIGUSR2, v);
	CHECK(usr2_runs == 1, "SIGUSR2 handler ran %d times", usr2_runs);
	CHECK(usr2_on_alt, "SIGUSR2 handler did not run on the alternate stack");
	CHECK(usr2_mask_ok, "SIGUSR2 handler ran without its sa_mask blocked");
	CHECK(usr2_value == 7, "SIGUSR2 handler saw si_value %d, expected 7", usr2_value);

	/* the interval timer fires once, not early */
	getitimer(ITIMER_REAL, &it);
	if (!alarm_count)
		CHECK(it.it_value.tv_sec || it.it_value.tv_usec, "ITIMER_REAL is not armed");
	CHECK(it.it_value.tv_sec < ALARM_S || (it.it_value.tv_sec == ALARM_S && !it.it_value.tv_usec),
	      "ITIMER_REAL has %ld.%06ld s left, more than the %d s it was set to",
	      (long)it.it_value.tv_sec, (long)it.it_value.tv_usec, ALARM_S);
	deadline = now() + ALARM_S + 3;
	while (!alarm_count && now() < deadline) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	CHECK(alarm_count == 1, "SIGALRM delivered %d times, expected 1", alarm_count);
	CHECK(!alarm_count || alarm_at >= armed_at + ALARM_S - 0.01,
	      "SIGALRM came %.3f s after arming, before its %d s", alarm_at - armed_at, ALARM_S);
	return prog_finish();
}
