/*
 * dirty MIB RATE [tamper]: a MIB MiB buffer, filled once, then rewritten
 * at RATE MiB/s (0: not at all) until SIGUSR1, one page at a time: write
 * number k goes to page pick(k), a pseudo-random function of k and the
 * seed, and fills it with words derived from (page, k). Only the number of
 * writes is kept (in a local variable); at SIGUSR1 the program works out
 * from it alone which write each page saw last, and checks every word of
 * every page. A page copied before its last write and never again (a
 * missed dirty page) is caught, and so is a stale counter.
 *
 * Also: a pipe's data read() into a page of its own each second (the
 * kernel writing to tracked memory), a page moved with mremap and one
 * dropped with MADV_DONTNEED after they were written (they must read as
 * the moved bytes and as zeros).
 *
 * READY prints the buffer's address and size.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "prog.h"

#define PAGE 4096UL
#define WORDS (PAGE / 8)

static unsigned long long seed;
static size_t npages;

static size_t pick(unsigned long long k)
{
	unsigned long long x = (k + 1) * 0x9e3779b97f4a7c15ULL ^ seed;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x % npages;
}

static uint64_t word(size_t page, unsigned long long k, size_t i)
{
	return (page * 0x100000001b3ULL) ^ (k << 20) ^ (i * 0xff51afd7ed558ccdULL) ^ seed;
}

static void write_page(uint64_t *buf, size_t page, unsigned long long k)
{
	uint64_t *p = buf + page * WORDS;

	for (size_t i = 0; i < WORDS; i++)
		p[i] = word(page, k, i);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned long long k, *last;
	size_t bytes, rate, bad = 0, nread = 0;
	char *moved, *dropped, *kpage, msg[64];
	double t0, next_read;
	int pfd[2], tamper;
	uint64_t *buf;

	if (argc < 3) {
		say("usage: dirty MIB RATE_MIB_S [tamper]");
		return 2;
	}
	bytes = strtoul(argv[1], NULL, 0) << 20;
	rate = strtoul(argv[2], NULL, 0);
	tamper = argc > 3 && !strcmp(argv[3], "tamper");
	npages = bytes / PAGE;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = 0x243f6a8885a308d3ULL ^ (unsigned long long)getpid();
	prog_trigger_init();
	buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	moved = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dropped = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	kpage = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || moved == MAP_FAILED || dropped == MAP_FAILED || kpage == MAP_FAILED || pipe(pfd)) {
		say("FAIL: setup: %s", strerror(errno));
		return 2;
	}
	/* the initial fill counts as writes 0 .. npages-1, page k gets write k */
	for (k = 0; k < npages; k++)
		write_page(buf, k, k);
	memset(moved, 'a', PAGE);
	memset(moved + PAGE, 'b', PAGE);
	memset(dropped, 'd', PAGE);
	memset(kpage, 'k', PAGE);

	say("READY addr=%p bytes=%zu", (void *)buf, bytes);
	t0 = now();
	next_read = t0 + 1;
	/* k counts on: write k goes to pick(k) */
	while (!prog_go) {
		double t = now();
		unsigned long long due = npages + (unsigned long long)((t - t0) * rate * (1 << 20) / PAGE);

		for (; k < due && !prog_go; k++)
			write_page(buf, pick(k), k);
		if (t >= next_read) {
			/* the kernel writes into tracked memory, in read() */
			int n = snprintf(msg, sizeof(msg), "read %zu", ++nread);

			if (write(pfd[1], msg, n + 1) != n + 1 || read(pfd[0], kpage, n + 1) != n + 1) {
				say("FAIL: pipe: %s", strerror(errno));
				return 2;
			}
			next_read = t + 1;
			if (nread == 2) {
				/* swap the two pages of moved through a third place, drop dropped */
				char *tmp = mremap(moved, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dropped + 0);

				if (tmp == MAP_FAILED) {
					say("FAIL: mremap: %s", strerror(errno));
					return 2;
				}
				dropped = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				memset(dropped, 'z', PAGE);
				madvise(dropped, PAGE, MADV_DONTNEED);
				moved = tmp;
			}
		}
		{
			struct timespec ts = { 0, 2 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}

	if (tamper)
		((volatile char *)buf)[bytes / 3 + 5] ^= 0x20;
	/* which write each page saw last, from k alone */
	last = malloc(npages * sizeof(*last));
	if (!last) {
		say("FAIL: malloc");
		return 2;
	}
	for (size_t p = 0; p < npages; p++)
		last[p] = p;
	for (unsigned long long j = npages; j < k; j++)
		last[pick(j)] = j;
	for (size_t p = 0; p < npages; p++) {
		const uint64_t *w = buf + p * WORDS;

		for (size_t i = 0; i < WORDS; i++) {
			uint64_t want = word(p, last[p], i);

			if (w[i] != want) {
				if (!bad++)
					say("FAIL: page %zu word %zu: expected %#llx (write %llu of %llu), got %#llx",
					    p, i, (unsigned long long)want, last[p], k, (unsigned long long)w[i]);
				break;
			}
		}
	}
	CHECK(!bad, "%zu of %zu pages differ", bad, npages);
	if (nread) {
		int n = snprintf(msg, sizeof(msg), "read %zu", nread);

		CHECK(!memcmp(kpage, msg, n + 1), "the page read() fills holds '%.20s', expected '%s'",
		      kpage, msg);
	}
	if (nread >= 2) {
		CHECK(moved[0] == 'a' && moved[PAGE - 1] == 'a', "the moved page holds '%c'", moved[0]);
		for (size_t i = 0; i < PAGE; i++)
			if (dropped[i]) {
				CHECK(0, "the dropped page holds '%c' at %zu", dropped[i], i);
				break;
			}
	}
	say("writes=%llu", k);
	return prog_finish();
}
