/*
 * Helper for scripts/bench.
 *   bench-mem memcpy MiB   print the memcpy bandwidth (GiB/s) into fresh
 *                          and into already-touched memory, tab separated
 *   bench-mem hold MiB [THREADS]
 *                          fill MiB of memory with non-zero pseudo-random
 *                          data, start THREADS more threads that sleep,
 *                          print READY and wait; on SIGUSR1 verify the data
 *                          and that every thread is still there, and exit
 *                          0 (intact) or 1
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

int main(int argc, char **argv)
{
	size_t len, words;
	uint64_t *mem, x = 0x2545f4914f6cdd1dULL;
	int nthreads = argc > 3 ? atoi(argv[3]) : 0;
	pthread_attr_t attr;
	sigset_t usr1;

	if (argc < 3)
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
	/* SIGUSR1 for the main thread only: the others start with it blocked */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	for (int i = 0; i < nthreads; i++) {
		pthread_t th;

		if (pthread_create(&th, &attr, sleeper, NULL))
			return 2;
	}
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	printf("READY\n");
	fflush(stdout);
	while (!go)
		pause();
	x = 0x2545f4914f6cdd1dULL;
	for (size_t i = 0; i < words; i++)
		if (mem[i] != (next(&x) | 1)) {
			printf("FAIL: word %zu differs\n", i);
			return 1;
		}
	if (count_threads() != nthreads + 1) {
		printf("FAIL: %d threads, expected %d\n", count_threads(), nthreads + 1);
		return 1;
	}
	printf("PASS\n");
	return 0;
}
