/*
 * heap MIB [tamper]: MIB MiB of pseudo-random data from a random seed, in
 * one big malloc (an anonymous mapping) with a never-touched hole of 1/8 of
 * it in the middle, plus 1 MiB grown on the brk heap with sbrk. After
 * SIGUSR1 it regenerates the data from the seed and compares every word;
 * the hole must still read as zeros. "tamper" flips one byte first, to
 * show the check catches a single wrong byte.
 *
 * READY prints seed, the big region's address and size, and the hole.
 */
#include <stdint.h>
#include <sys/random.h>

#include "prog.h"

#define BRK_SIZE (1UL << 20)

struct region {
	uint64_t *words;
	size_t nwords;
	size_t hole_from, hole_to;	/* word indexes never written */
};

static void fill(const struct region *r, unsigned long long seed)
{
	unsigned long long x = seed;

	for (size_t i = 0; i < r->nwords; i++) {
		uint64_t v = xorshift64(&x);

		if (i < r->hole_from || i >= r->hole_to)
			r->words[i] = v;
	}
}

/* the number of wrong words; the first one is reported */
static size_t check(const char *what, const struct region *r, unsigned long long seed)
{
	unsigned long long x = seed;
	size_t bad = 0;

	for (size_t i = 0; i < r->nwords; i++) {
		uint64_t v = xorshift64(&x);
		uint64_t want = (i < r->hole_from || i >= r->hole_to) ? v : 0;

		if (r->words[i] == want)
			continue;
		if (!bad++)
			say("FAIL: %s word %zu at %p: expected %#llx, got %#llx", what, i,
			    (void *)&r->words[i], (unsigned long long)want,
			    (unsigned long long)r->words[i]);
	}
	return bad;
}

int main(int argc, char **argv)
{
	unsigned long long seed;
	struct region big, brk;
	size_t bytes, bad;
	int tamper;

	if (argc < 2) {
		say("usage: heap MIB [tamper]");
		return 2;
	}
	bytes = strtoul(argv[1], NULL, 0) << 20;
	tamper = argc > 2 && !strcmp(argv[2], "tamper");
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed) || !seed)
		seed = 0x243f6a8885a308d3ULL ^ (unsigned long long)getpid();
	prog_trigger_init();

	big.words = malloc(bytes);
	if (!big.words) {
		say("FAIL: cannot allocate %zu bytes", bytes);
		return 2;
	}
	big.nwords = bytes / 8;
	/* 1/8 of the region, page aligned, in the middle: left untouched */
	big.hole_from = ((big.nwords / 2) & ~511UL);
	big.hole_to = big.hole_from + ((big.nwords / 8) & ~511UL);
	fill(&big, seed);

	brk.words = sbrk(BRK_SIZE);
	if (brk.words == (void *)-1) {
		say("FAIL: sbrk: %s", strerror(errno));
		return 2;
	}
	brk.nwords = BRK_SIZE / 8;
	brk.hole_from = brk.hole_to = 0;
	fill(&brk, ~seed);

	say("READY seed=%#llx addr=%p bytes=%zu hole=%zu brk=%p", seed, (void *)big.words,
	    bytes, (big.hole_to - big.hole_from) * 8, (void *)brk.words);
	prog_wait_trigger();

	if (tamper)
		((volatile unsigned char *)big.words)[bytes / 3] ^= 0x10;
	bad = check("heap", &big, seed);
	CHECK(!bad, "%zu of %zu heap words differ", bad, big.nwords);
	bad = check("brk", &brk, ~seed);
	CHECK(!bad, "%zu of %zu brk words differ", bad, brk.nwords);
	CHECK(sbrk(0) == (char *)brk.words + BRK_SIZE, "program break %p, expected %p",
	      sbrk(0), (void *)((char *)brk.words + BRK_SIZE));
	return prog_finish();
}
