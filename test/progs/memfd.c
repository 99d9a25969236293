/*
 * memfd [tamper]: a memfd "cryo-test" of 64 pages with data in pages 0, 1
 * and 40 only (the rest a hole), sealed against growing and shrinking,
 * mapped three times and then closed (only the mappings hold it):
 *   a, b   MAP_SHARED over the whole file: one object, so a store through
 *          a after the restore shows through b;
 *   priv   MAP_PRIVATE with page 1 written: that page keeps the private
 *          bytes, while the memfd (seen through a) keeps its own.
 * After SIGUSR1 it checks the contents, the sharing, that the hole still
 * reads as zeros, and the name in /proc/self/maps. The seals are checked
 * by the harness through /proc/PID/map_files. "tamper" writes to the
 * private mapping's clean page 0 before checking.
 */
#include <fcntl.h>
#include <sys/mman.h>

#include "prog.h"

#define PG 4096UL
#define NPAGES 64

static unsigned char pattern(size_t off)
{
	return (unsigned char)(off * 3 + off / PG + 1);
}

static int has_data(size_t page)
{
	return page == 0 || page == 1 || page == 40;
}

static int maps_name_ok(void *addr)
{
	char line[512], want[64];
	unsigned long start;
	FILE *f = fopen("/proc/self/maps", "r");
	int ok = 0;

	snprintf(want, sizeof(want), "/memfd:cryo-test (deleted)");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-", &start) == 1 && start == (unsigned long)addr)
			ok = strstr(line, want) != NULL;
	if (f)
		fclose(f);
	return ok;
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	unsigned char *a, *b, *priv, buf[PG];
	int fd, bad = 0;

	prog_trigger_init();
	fd = memfd_create("cryo-test", MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, NPAGES * PG)) {
		say("FAIL: set-up: memfd: %s", strerror(errno));
		return 2;
	}
	for (size_t p = 0; p < NPAGES; p++) {
		if (!has_data(p))
			continue;
		for (size_t i = 0; i < PG; i++)
			buf[i] = pattern(p * PG + i);
		if (pwrite(fd, buf, PG, p * PG) != (ssize_t)PG) {
			say("FAIL: set-up: pwrite: %s", strerror(errno));
			return 2;
		}
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK)) {
		say("FAIL: set-up: seals: %s", strerror(errno));
		return 2;
	}
	a = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	b = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	priv = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || priv == MAP_FAILED) {
		say("FAIL: set-up: mmap: %s", strerror(errno));
		return 2;
	}
	close(fd);
	memset(priv + PG, 0x5a, PG);
	say("READY a=%p b=%p priv=%p", a, b, priv);
	prog_wait_trigger();
	if (tamper)
		priv[10] ^= 1;

	for (size_t off = 0; off < NPAGES * PG && !bad; off++) {
		unsigned char want = has_data(off / PG) ? pattern(off) : 0;
		unsigned char want_priv = off / PG == 1 ? 0x5a : want;

		if (a[off] != want || b[off] != want) {
			CHECK(0, "memfd byte %zu: %#x / %#x, expected %#x", off, a[off], b[off], want);
			bad = 1;
		}
		if (priv[off] != want_priv) {
			CHECK(0, "private mapping byte %zu: %#x, expected %#x", off, priv[off], want_priv);
			bad = 1;
		}
	}
	a[50 * PG] = 0x77;
	CHECK(b[50 * PG] == 0x77, "a store through one shared mapping does not show through the other");
	CHECK(priv[50 * PG] == 0x77, "the private mapping's clean page does not follow the memfd");
	CHECK(maps_name_ok(a) && maps_name_ok(b) && maps_name_ok(priv),
	      "/proc/self/maps does not name the mappings /memfd:cryo-test (deleted)");
	return prog_finish();
}
