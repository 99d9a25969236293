/*
 * Helper for scripts/bench.
 *   bench-mem memcpy MiB   print the memcpy bandwidth (GiB/s) into fresh
 *                          and into already-touched memory, tab separated
 *   bench-mem hold MiB [THREADS [PROCS]]
 *                          fill MiB of memory with non-zero pseudo-random
 *                          data, fork PROCS-1 children (they share it
 *                          copy-on-write and each writes 64 KiB of its
 *                          own), start THREADS more threads that sleep in
 *                          every process, print READY and wait; on SIGUSR1
 *                          every process verifies the data and that every
 *                          thread is still there; exit 0 (all intact) or 1
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define OWN_WORDS	(64 << 10) / 8

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* the data of process i: the shared pattern, with its own first 64 KiB */
static int check(const uint64_t *mem, size_t words, int i)
{
	uint64_t x = 0x2545f4914f6cdd1dULL, y = 0x9e3779b97f4a7c15ULL + i;

	for (size_t w = 0; w < words; w++) {
		uint64_t want = next(&x) | 1;

		if (i && w < OWN_WORDS)
			want = next(&y);
		if (mem[w] != want) {
			printf("FAIL: process %d: word %zu differs\n", i, w);
			return 1;
		}
	}
	return 0;
}

static int start_threads(int n)
{
	pthread_attr_t attr;
	sigset_t usr1;

	/* SIGUSR1 for the main thread only: the others start with it blocked */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (int i = 0; i < n; i++) {
		pthread_t th;

		if (pthread_create(&th, &attr, sleeper, NULL))
			return -1;
	}
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	size_t len, words;
	uint64_t *mem, x = 0x2545f4914f6cdd1dULL;
	int nthreads = argc > 3 ? atoi(argv[3]) : 0;
	int nprocs = argc > 4 ? atoi(argv[4]) : 1, self = 0, failed = 0, ready[2];
	char c = 'r';
	pid_t *kids = calloc(nprocs, sizeof(pid_t));

	if (argc < 3 || !kids)
		return 2;
	len = (size_t)atol(argv[2]) << 20;
	words = len / 8;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < words; i++)
		mem[i] = next(&x) | 1;

	if (!strcmp(argv[1], "memcpy")) {
		char *dst = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		double t0, t1, t2;

		if (dst == MAP_FAILED)
			return 2;
		t0 = now();
		memcpy(dst, mem, len);
		t1 = now();
		memcpy(dst, mem, len);
		t2 = now();
		printf("%.3f\t%.3f\n", len / (t1 - t0) / (1 << 30), len / (t2 - t1) / (1 << 30));
		return 0;
	}
	signal(SIGUSR1, on_usr1);
	if (pipe(ready))
		return 2;
	for (int i = 1; i < nprocs; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			return 2;
		if (kids[i] == 0) {
			uint64_t y = 0x9e3779b97f4a7c15ULL + i;

			self = i;
			for (size_t w = 0; w < OWN_WORDS && w < words; w++)
				mem[w] = next(&y);
			break;
		}
	}
	if (start_threads(nthreads))
		return 2;
	if (self && write(ready[1], &c, 1) != 1)
		return 2;
	close(ready[1]);
	if (!self) {
		for (int i = 1; i < nprocs; i++)
			if (read(ready[0], &c, 1) != 1)
				return 2;
		printf("READY\n");
		fflush(stdout);
	}
	close(ready[0]);
	while (!go)
		pause();
	for (int i = 1; !self && i < nprocs; i++) {
		int st;

		kill(kids[i], SIGUSR1);
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			failed = 1;
	}
	failed |= check(mem, words, self);
	if (count_threads() != nthreads + 1) {
		printf("FAIL: process %d: %d threads, expected %d\n", self, count_threads(), nthreads + 1);
		failed = 1;
	}
	if (!self && !failed)
		printf("PASS\n");
	return failed;
}
