/*
 * mappings [tamper]: file and protection state of an address space. In its
 * cwd it creates
 *   priv.dat   16 pages mapped MAP_PRIVATE and written in pages 3 and 9:
 *              the written pages keep the new bytes, the others show the
 *              file, and the file itself never changes;
 *   shared.dat 4 pages mapped MAP_SHARED, written through the mapping
 *              before the dump: after restore a store through the mapping
 *              must reach the file (pread sees it) and a pwrite to the file
 *              must show in the mapping;
 * and anonymously
 *   a three-page region whose middle page is PROT_NONE (a guard): the
 *              outer pages keep their data, the guard faults;
 *   a read-only region, filled and then mprotect'ed PROT_READ: its data
 *              is intact and a store faults.
 * /proc/self/maps must show the same protections as before the dump.
 * "tamper" makes the guard page readable before checking.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/mman.h>

#include "prog.h"

#define PG 4096UL

static sigjmp_buf fault_jmp;

static void on_segv(int sig)
{
	siglongjmp(fault_jmp, sig);
}

/* does a load (or store) at p fault? */
static int faults(volatile char *p, int store)
{
	struct sigaction sa = { .sa_handler = on_segv, .sa_flags = SA_NODEFER }, old;
	int faulted = 1;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (!sigsetjmp(fault_jmp, 1)) {
		if (store)
			*p = *p;
		else
			(void)*p;
		faulted = 0;
	}
	sigaction(SIGSEGV, &old, NULL);
	return faulted;
}

static unsigned char file_byte(unsigned long off)
{
	return (unsigned char)(off * 7 + off / PG);
}

static int make_file(const char *name, size_t size)
{
	unsigned char buf[PG];
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0) {
		say("FAIL: create %s: %s", name, strerror(errno));
		exit(2);
	}
	for (size_t off = 0; off < size; off += PG) {
		for (size_t i = 0; i < PG; i++)
			buf[i] = file_byte(off + i);
		if (write(fd, buf, PG) != PG) {
			say("FAIL: write %s: %s", name, strerror(errno));
			exit(2);
		}
	}
	return fd;
}

static void *map(void *addr, size_t len, int prot, int flags, int fd)
{
	void *p = mmap(addr, len, prot, flags, fd, 0);

	if (p == MAP_FAILED) {
		say("FAIL: mmap: %s", strerror(errno));
		exit(2);
	}
	return p;
}

/* the permission field of the maps line starting at addr, or "" */
static const char *maps_perms(void *addr)
{
	static char perms[8];
	char line[512];
	unsigned long start;
	FILE *f = fopen("/proc/self/maps", "r");

	perms[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%*x %4s", &start, perms) == 2 && start == (unsigned long)addr)
			break;
		perms[0] = 0;
	}
	if (f)
		fclose(f);
	return perms;
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	unsigned char *priv, *shared, *guard, *ro;
	int privfd, sharedfd;
	unsigned char byte;

	prog_trigger_init();

	privfd = make_file("priv.dat", 16 * PG);
	priv = map(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, privfd);
	close(privfd);
	memset(priv + 3 * PG, 0xa3, PG);
	memset(priv + 9 * PG + 100, 0x99, 50);

	sharedfd = make_file("shared.dat", 4 * PG);
	shared = map(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, sharedfd);
	memcpy(shared + PG + 10, "before the dump", 15);

	guard = map(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	memset(guard, 0x11, PG);
	memset(guard + 2 * PG, 0x22, PG);
	mprotect(guard + PG, PG, PROT_NONE);

	ro = map(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	for (size_t i = 0; i < 2 * PG; i++)
		ro[i] = (unsigned char)(i ^ 0x5a);
	mprotect(ro, 2 * PG, PROT_READ);

	say("READY priv=%p shared=%p guard=%p ro=%p", priv, shared, guard, ro);
	prog_wait_trigger();
	if (tamper)
		mprotect(guard + PG, PG, PROT_READ);

	/* private file mapping: dirty pages kept, clean pages from the file */
	for (size_t off = 0; off < 16 * PG; off++) {
		unsigned char want = file_byte(off);

		if (off / PG == 3)
			want = 0xa3;
		else if (off >= 9 * PG + 100 && off < 9 * PG + 150)
			want = 0x99;
		if (priv[off] != want) {
			CHECK(0, "priv.dat mapping byte %zu: expected %#x, got %#x", off, want, priv[off]);
			break;
		}
	}
	privfd = open("priv.dat", O_RDONLY);
	CHECK(privfd >= 0 && pread(privfd, &byte, 1, 3 * PG) == 1 && byte == file_byte(3 * PG),
	      "priv.dat on disk changed: a private write reached the file");
	CHECK(!strcmp(maps_perms(priv), "rw-p"), "priv.dat mapping is %s, expected rw-p",
	      maps_perms(priv));

	/* shared file mapping: one object with the file, both ways */
	CHECK(!memcmp(shared + PG + 10, "before the dump", 15), "shared.dat lost the dumped store");
	shared[2 * PG + 5] = 0xee;
	CHECK(pread(sharedfd, &byte, 1, 2 * PG + 5) == 1 && byte == 0xee,
	      "a store to the shared mapping did not reach shared.dat");
	byte = 0x77;
	CHECK(pwrite(sharedfd, &byte, 1, 3 * PG) == 1 && shared[3 * PG] == 0x77,
	      "a pwrite to shared.dat does not show in the shared mapping");
	CHECK(!strcmp(maps_perms(shared), "rw-s"), "shared.dat mapping is %s, expected rw-s",
	      maps_perms(shared));

	/* guard page */
	CHECK(guard[0] == 0x11 && guard[PG - 1] == 0x11 && guard[2 * PG] == 0x22 &&
	      guard[3 * PG - 1] == 0x22, "data around the guard page changed");
	CHECK(!strcmp(maps_perms(guard + PG), "---p"), "guard page is %s, expected ---p",
	      maps_perms(guard + PG));
	CHECK(faults((char *)guard + PG, 0), "reading the PROT_NONE guard page did not fault");

	/* read-only region */
	for (size_t i = 0; i < 2 * PG; i++) {
		if (ro[i] != (unsigned char)(i ^ 0x5a)) {
			CHECK(0, "read-only region byte %zu: expected %#x, got %#x", i,
			      (unsigned)(i ^ 0x5a) & 0xff, ro[i]);
			break;
		}
	}
	CHECK(!strcmp(maps_perms(ro), "r--p"), "read-only region is %s, expected r--p",
	      maps_perms(ro));
	CHECK(faults((char *)ro + 5, 1), "a store to the read-only region did not fault");
	return prog_finish();
}
