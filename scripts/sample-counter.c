/*
 * The demo's sample program: counts, keeps a checksum of 64 MiB of memory
 * it keeps changing, and prints both every half second. After a restore it
 * carries on from the same count with a checksum that still adds up.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#define WORDS ((64u << 20) / 8)

int main(void)
{
	uint64_t *mem = malloc(WORDS * 8), sum = 0, x = 0x9e3779b97f4a7c15ULL;
	unsigned long count = 0;

	if (!mem)
		return 1;
	/* like a daemon, keep only stdio of what the caller left open */
	syscall(SYS_close_range, 3, ~0U, 0);
	for (size_t i = 0; i < WORDS; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		mem[i] = x;
		sum += x;
	}
	for (;;) {
		struct timespec ts = { 0, 500000000 };
		uint64_t check = 0;
		size_t i = count % WORDS;

		/* change one word, keep the running sum in step */
		sum -= mem[i];
		mem[i] = mem[i] * 6364136223846793005ULL + count;
		sum += mem[i];
		for (size_t j = 0; j < WORDS; j++)
			check += mem[j];
		printf("pid %d count %lu checksum %s\n", getpid(), ++count, check == sum ? "ok" : "BAD");
		fflush(stdout);
		nanosleep(&ts, NULL);
	}
}
