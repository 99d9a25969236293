/*
 * secret MIB HEX: holds a secret (HEX, the hex of some bytes) in MIB MiB of
 * memory: the raw bytes at offset 100 of every page of a big region whose
 * other bytes are pseudo-random (incompressible), so that whatever carries
 * its memory carries the secret, once per page. After SIGUSR1 it checks
 * every page (the secret and the rest) and prints PASS or FAIL.
 */
#include <stdint.h>
#include <sys/mman.h>

#include "prog.h"

#define PAGE	4096UL
#define AT	100

static int unhex(const char *hex, uint8_t *out, size_t max)
{
	size_t n = strlen(hex) / 2;

	if (strlen(hex) % 2 || n > max || !n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = v;
	}
	return n;
}

static void fill(uint8_t *mem, size_t size, const uint8_t *secret, size_t slen, unsigned long long seed, int check)
{
	unsigned long long x = seed;
	size_t bad = 0;

	for (size_t off = 0; off < size; off += PAGE) {
		uint64_t *w = (uint64_t *)(mem + off);

		for (size_t i = 0; i < PAGE / 8; i++) {
			uint64_t v = xorshift64(&x);

			if (i * 8 + 8 <= AT || i * 8 >= AT + slen) {
				if (!check)
					w[i] = v;
				else if (w[i] != v && !bad++)
					say("FAIL: the word at %p is %#lx, not %#lx", (void *)&w[i], w[i], v);
			}
		}
		if (!check)
			memcpy(mem + off + AT, secret, slen);
		else if (memcmp(mem + off + AT, secret, slen) && !bad++)
			say("FAIL: the secret at %p is not there", (void *)(mem + off + AT));
	}
	if (bad)
		prog_failed = 1;
}

int main(int argc, char **argv)
{
	uint8_t secret[512];
	unsigned long long seed = 0x5eed0f5ec2e7ULL;
	size_t size;
	uint8_t *mem;
	int slen;

	if (argc != 3 || (slen = unhex(argv[2], secret, sizeof(secret))) < 0 || slen > (int)(PAGE - AT - 8)) {
		say("usage: secret MIB HEX");
		return 2;
	}
	size = strtoul(argv[1], NULL, 0) << 20;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		say("FAIL: mmap: %s", strerror(errno));
		return 1;
	}
	/* argv's hex is not needed any more: only the raw bytes stay, in the pages */
	memset(argv[2], 'x', strlen(argv[2]));
	prog_trigger_init();
	fill(mem, size, secret, slen, seed, 0);
	say("READY");
	prog_wait_trigger();
	fill(mem, size, secret, slen, seed, 1);
	return prog_finish();
}
