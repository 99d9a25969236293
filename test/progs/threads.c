/*
 * threads [tamper]: eight threads, each holding state a restore could lose.
 *   0-3 count in registers and on the stack (count_in_registers), with their
 *       own constants in rbx/r14/r15, their own blocked signal
 *       (SIGRTMIN+i) and their own sigaltstack;
 *   4-5 sleep, 4 in nanosleep and 5 in poll, counting wake-ups;
 *   6   waits on a condition variable (a futex) for the generation to change;
 *   7   is blocked reading a pipe; after the trigger the main thread opens
 *       /dev/null and sends the fd number down the pipe: thread 7 finds it
 *       open in the fd table all threads share, and installs a SIGURG
 *       handler that the main thread's raise(SIGURG) must then run.
 * The main thread prints READY with the kernel tids once every thread is
 * in its steady state, and waits for SIGUSR1. Then it stops the counters,
 * bumps the generation, broadcasts, and joins every thread (pthread_join
 * depends on the kernel clearing the tid word: set_tid_address), and checks
 * what each thread recorded: consistent registers, its own mask and
 * altstack, a wake-up after the trigger, the new generation, the same tid.
 * "tamper" expects thread 2's rbx one off, to show the check can fail.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "prog.h"

#define NTHREADS 8
#define ALT_SIZE (32 * 1024)

struct thread {
	int index;
	pid_t tid, tid_after;
	uint64_t count, c1, c2, c3;
	int consistent, mask_ok, altstack_ok, generation_seen, fd_seen;
	unsigned long wakeups, wakeups_at_trigger;
};

static struct thread threads[NTHREADS];
static char altstacks[4][ALT_SIZE];
static volatile int stop, started;
static int generation;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int pipe_fds[2];
static volatile sig_atomic_t urg_seen;

static void on_urg(int sig)
{
	(void)sig;
	urg_seen = 1;
}

static uint64_t constant(int i, int which)
{
	return (0x1111111111111111ULL * (i + 1)) ^ (0xa5a5000000000000ULL >> which);
}

static void counter(struct thread *t)
{
	stack_t ss = { .ss_sp = altstacks[t->index], .ss_size = ALT_SIZE };
	struct reg_count c;
	sigset_t mine, cur;

	sigemptyset(&mine);
	sigaddset(&mine, SIGRTMIN + t->index);
	pthread_sigmask(SIG_BLOCK, &mine, NULL);
	sigaltstack(&ss, NULL);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	count_in_registers(&stop, constant(t->index, 1), constant(t->index, 2),
			   constant(t->index, 3), &c);
	t->count = c.count;
	t->c1 = c.k[0];
	t->c2 = c.k[1];
	t->c3 = c.k[2];
	t->consistent = !c.bad && c.stacked == c.count && c.scaled == c.count * COUNT_K;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	t->mask_ok = sigismember(&cur, SIGRTMIN + t->index) &&
		     !sigismember(&cur, SIGRTMIN + (t->index + 1) % 4);
	sigaltstack(NULL, &ss);
	t->altstack_ok = ss.ss_sp == altstacks[t->index] && ss.ss_size == ALT_SIZE;
}

static void sleeper(struct thread *t)
{
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (!stop) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		struct pollfd never = { .fd = -1 };

		if (t->index == 4)
			nanosleep(&ts, NULL);
		else
			poll(&never, 1, 10);
		__atomic_add_fetch(&t->wakeups, 1, __ATOMIC_SEQ_CST);
	}
}

static void waiter(struct thread *t)
{
	pthread_mutex_lock(&lock);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (generation == 0)
		pthread_cond_wait(&cond, &lock);
	t->generation_seen = generation;
	pthread_mutex_unlock(&lock);
}

static void reader(struct thread *t)
{
	struct stat st;
	int fd;

	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	if (read(pipe_fds[0], &fd, sizeof(fd)) != sizeof(fd))
		return;
	t->generation_seen = 2;
	t->fd_seen = !fstat(fd, &st) && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
	/* for every thread: they share one table of handlers */
	signal(SIGURG, on_urg);
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;

	t->tid = gettid();
	if (t->index < 4)
		counter(t);
	else if (t->index < 6)
		sleeper(t);
	else if (t->index == 6)
		waiter(t);
	else
		reader(t);
	t->tid_after = gettid();
	return NULL;
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	pthread_t handles[NTHREADS];
	char tids[NTHREADS * 12] = "";
	sigset_t usr1;

	prog_trigger_init();
	/* SIGUSR1 is for the main thread: the others start with it blocked */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	if (pipe(pipe_fds)) {
		say("FAIL: set-up: pipe");
		return 2;
	}
	for (int i = 0; i < NTHREADS; i++) {
		threads[i].index = i;
		if (pthread_create(&handles[i], NULL, thread_main, &threads[i])) {
			say("FAIL: set-up: pthread_create");
			return 2;
		}
	}
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NTHREADS)
		usleep(1000);
	/* the waiters are inside pthread_cond_wait once they let go of the lock */
	pthread_mutex_lock(&lock);
	pthread_mutex_unlock(&lock);
	for (int i = 0; i < NTHREADS; i++)
		snprintf(tids + strlen(tids), sizeof(tids) - strlen(tids), "%s%d", i ? "," : "",
			 threads[i].tid);
	say("READY tids=%s", tids);
	prog_wait_trigger();

	for (int i = 4; i < 6; i++)
		threads[i].wakeups_at_trigger = __atomic_load_n(&threads[i].wakeups, __ATOMIC_SEQ_CST);
	usleep(50 * 1000);
	stop = 1;
	pthread_mutex_lock(&lock);
	generation = 2;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	{
		int fd = open("/dev/null", O_RDONLY);

		if (write(pipe_fds[1], &fd, sizeof(fd)) != sizeof(fd))
			say("FAIL: write to the pipe: %s", strerror(errno));
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(handles[i], NULL);
	raise(SIGURG);
	CHECK(urg_seen, "SIGURG: the handler thread 7 installed did not run in the main thread");

	for (int i = 0; i < NTHREADS; i++) {
		struct thread *t = &threads[i];

		CHECK(t->tid_after == t->tid, "thread %d: tid %d, was %d", i, t->tid_after, t->tid);
		if (i < 4) {
			uint64_t want1 = constant(i, 1) + (tamper && i == 2);

			CHECK(t->consistent && t->count > 0, "thread %d: counter registers out of step", i);
			CHECK(t->c1 == want1, "thread %d rbx %#llx, expected %#llx", i,
			      (unsigned long long)t->c1, (unsigned long long)want1);
			CHECK(t->c2 == constant(i, 2) && t->c3 == constant(i, 3),
			      "thread %d: r14/r15 changed", i);
			CHECK(t->mask_ok, "thread %d: its signal mask is not its own", i);
			CHECK(t->altstack_ok, "thread %d: its sigaltstack is not its own", i);
		} else if (i < 6) {
			CHECK(t->wakeups > t->wakeups_at_trigger, "thread %d: no wake-up from %s", i,
			      i == 4 ? "nanosleep" : "poll");
		} else {
			CHECK(t->generation_seen == 2, "thread %d: woke with generation %d, expected 2", i,
			      t->generation_seen);
		}
		if (i == 7)
			CHECK(t->fd_seen, "thread 7: the fd the main thread opened is not in its fd table");
	}
	say("counts=%llu,%llu,%llu,%llu", (unsigned long long)threads[0].count,
	    (unsigned long long)threads[1].count, (unsigned long long)threads[2].count,
	    (unsigned long long)threads[3].count);
	return prog_finish();
}
