/*
 * lazy MIB: for post-copy (restore --lazy-pages). Two buffers, A (MIB MiB)
 * and B (16 MiB), every word of every page derived from its place and a
 * random seed. At the first SIGUSR1, while the pages are still arriving,
 * it does what the handler must follow and checks each:
 *
 *  - forks a child that checks A's first quarter and B's last quarter,
 *    rewrites part of its copy of A, checks that too, and exits; and one
 *    that exits at once;
 *  - drops B's first quarter with MADV_DONTNEED: it must read zeros;
 *  - moves B's second quarter elsewhere with mremap: it must hold the
 *    same bytes there;
 *  - unmaps B's third quarter;
 * *  - checks every 64th page of A (a fault brings 16).
 *
 * Then it prints "PHASE1 ok", waits for the second SIGUSR1 and checks all
 * of A and what is left of B (the parent's A untouched by the child's
 * writes).
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>

#include "prog.h"

#define PAGE 4096UL
#define WORDS (PAGE / 8)
#define B_SIZE (16UL << 20)

static uint64_t seed;

static uint64_t word(uint64_t buf, size_t page, size_t i)
{
	return (page * 0x100000001b3ULL) ^ (i * 0xff51afd7ed558ccdULL) ^ seed ^ (buf << 60);
}

static void fill(uint64_t *p, uint64_t buf, size_t pages)
{
	for (size_t pg = 0; pg < pages; pg++)
		for (size_t i = 0; i < WORDS; i++)
			p[pg * WORDS + i] = word(buf, pg, i);
}

/* pages [from, to) of buffer buf, at p (page `from` first), every `step`th: the first bad one, or -1 */
static long check(const uint64_t *p, uint64_t buf, size_t from, size_t to, size_t step)
{
	for (size_t pg = from; pg < to; pg += step)
		for (size_t i = 0; i < WORDS; i++)
			if (p[(pg - from) * WORDS + i] != word(buf, pg, i))
				return pg;
	return -1;
}

static int child_checks(uint64_t *a, size_t a_pages, uint64_t *b)
{
	size_t q = B_SIZE / PAGE / 4;
	long bad = check(a, 0, 0, a_pages / 4, 1);

	if (bad >= 0 || (bad = check(b + 3 * q * WORDS, 1, 3 * q, 4 * q, 1)) >= 0)
		return 1;
	/* its own copy changes; the parent's must not */
	for (size_t pg = 0; pg < a_pages; pg += 7)
		a[pg * WORDS] = ~word(0, pg, 0);
	for (size_t pg = 0; pg < a_pages; pg += 7)
		if (a[pg * WORDS] != ~word(0, pg, 0) || a[pg * WORDS + 1] != word(0, pg, 1))
			return 2;
	return 0;
}

int main(int argc, char **argv)
{
	size_t a_pages = (argc > 1 ? strtoul(argv[1], NULL, 0) : 64) << 20 >> 12;
	size_t q = B_SIZE / PAGE / 4;
	uint64_t *a, *b, *moved;
	long bad;
	int st;
	pid_t c1, c2;

	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		return 2;
	a = mmap(NULL, a_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, B_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* where B's second quarter goes: a place of its own */
	moved = mmap(NULL, B_SIZE / 4, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || moved == MAP_FAILED)
		return 2;
	fill(a, 0, a_pages);
	fill(b, 1, B_SIZE / PAGE);
	prog_trigger_init();
	say("READY a=%p b=%p", (void *)a, (void *)b);
	prog_wait_trigger();

	c1 = fork();
	if (c1 == 0)
		_exit(child_checks(a, a_pages, b));
	c2 = fork();
	if (c2 == 0)
		_exit(0);
	CHECK(c1 > 0 && c2 > 0, "fork");

	CHECK(!madvise(b, q * PAGE, MADV_DONTNEED), "madvise: %s", strerror(errno));
	for (size_t i = 0; i < q * WORDS; i++)
		if (b[i]) {
			CHECK(0, "B word %zu reads %#llx after MADV_DONTNEED, not 0", i, (unsigned long long)b[i]);
			break;
		}
	CHECK(mremap(b + q * WORDS, q * PAGE, q * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, moved) == moved,
	      "mremap: %s", strerror(errno));
	bad = check(moved, 1, q, 2 * q, 1);
	CHECK(bad < 0, "B page %ld holds other bytes after mremap", bad);
	CHECK(!munmap(b + 2 * q * WORDS, q * PAGE), "munmap: %s", strerror(errno));
	bad = check(a, 0, 0, a_pages, 64);
	CHECK(bad < 0, "A page %ld holds other bytes", bad);

	CHECK(waitpid(c1, &st, 0) == c1 && WIFEXITED(st) && !WEXITSTATUS(st),
	      "the child that checks A and B: status %#x", st);
	CHECK(waitpid(c2, &st, 0) == c2 && WIFEXITED(st) && !WEXITSTATUS(st), "the child that exits: status %#x",
	      st);
	say("PHASE1 %s", prog_failed ? "failed" : "ok");

	prog_go = 0;
	prog_wait_trigger();
	bad = check(a, 0, 0, a_pages, 1);
	CHECK(bad < 0, "A page %ld holds other bytes", bad);
	bad = check(moved, 1, q, 2 * q, 1);
	CHECK(bad < 0, "moved B page %ld holds other bytes", bad);
	bad = check(b + 3 * q * WORDS, 1, 3 * q, 4 * q, 1);
	CHECK(bad < 0, "B page %ld holds other bytes", bad);
	for (size_t i = 0; i < q * WORDS; i++)
		if (b[i]) {
			CHECK(0, "B word %zu reads %#llx, not 0", i, (unsigned long long)b[i]);
			break;
		}
	say(prog_failed ? "FAIL" : "PASS");
	return prog_failed;
}
