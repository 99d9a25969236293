/*
 * vmas [tamper]: memory areas whose kind and advice matter, each filled with
 * a pattern:
 *   huge     8 MiB, 2 MiB aligned, MADV_HUGEPAGE, touched: backed by
 *            transparent huge pages (AnonHugePages in smaps) before the
 *            dump, and again after the restore;
 *   nohuge   MADV_NOHUGEPAGE;
 *   locked   mlock()ed: "lo" in VmFlags, all of it counted as Locked;
 *   dontfork MADV_DONTFORK ("dc"), wipeonfork MADV_WIPEONFORK ("wf");
 *   shared   MAP_SHARED|MAP_ANONYMOUS;
 *   growsdown MAP_GROWSDOWN ("gd").
 * After SIGUSR1 it checks the patterns, the VmFlags and smaps counters.
 * "tamper" drops the lock before checking.
 */
#include <stdint.h>
#include <sys/mman.h>

#include "prog.h"

#define MB (1UL << 20)
#define PG 4096UL

struct area {
	const char *name;
	unsigned char *p;
	size_t len;
	const char *vmflag;	/* must be in VmFlags, or NULL */
};

static void fill(struct area *a)
{
	for (size_t i = 0; i < a->len; i += 64)
		a->p[i] = (unsigned char)(i / 64 * 13 + a->len / PG);
}

static int intact(const struct area *a)
{
	for (size_t i = 0; i < a->len; i += 64)
		if (a->p[i] != (unsigned char)(i / 64 * 13 + a->len / PG))
			return 0;
	return 1;
}

/* the smaps block of the VMA holding addr: field "key" (kB) or VmFlags */
static int smaps_field(void *addr, const char *key, char *out, size_t len)
{
	char line[512];
	int in = 0, found = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long start, end;
	char perms[8];

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3) {
			/* containing it: a VMA may merge with a neighbour whose flags it now shares */
			in = start <= (unsigned long)addr && (unsigned long)addr < end;
			continue;
		}
		if (in && !strncmp(line, key, strlen(key)) && line[strlen(key)] == ':') {
			snprintf(out, len, "%s", line + strlen(key) + 1);
			out[strcspn(out, "\n")] = 0;
			found = 1;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static long smaps_kb(void *addr, const char *key)
{
	char v[128];

	return smaps_field(addr, key, v, sizeof(v)) ? strtol(v, NULL, 10) : -1;
}

static void *map(size_t len, int flags)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);

	if (p == MAP_FAILED) {
		say("FAIL: set-up: mmap: %s", strerror(errno));
		exit(2);
	}
	return p;
}

static void must(int ok, const char *what)
{
	if (!ok) {
		say("FAIL: set-up: %s: %s", what, strerror(errno));
		exit(2);
	}
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	struct area areas[7];
	unsigned char *raw;
	int n = 0;
	long huge_before;

	prog_trigger_init();
	raw = map(10 * MB, 0);
	areas[n++] = (struct area){ "huge", (void *)(((uintptr_t)raw + 2 * MB - 1) & ~(2 * MB - 1)),
				    8 * MB, "hg" };
	must(!madvise(areas[0].p, 8 * MB, MADV_HUGEPAGE), "MADV_HUGEPAGE");
	areas[n++] = (struct area){ "nohuge", map(4 * MB, 0), 4 * MB, "nh" };
	must(!madvise(areas[1].p, 4 * MB, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE");
	areas[n++] = (struct area){ "locked", map(64 * PG, 0), 64 * PG, "lo" };
	areas[n++] = (struct area){ "dontfork", map(8 * PG, 0), 8 * PG, "dc" };
	must(!madvise(areas[3].p, 8 * PG, MADV_DONTFORK), "MADV_DONTFORK");
	areas[n++] = (struct area){ "wipeonfork", map(8 * PG, 0), 8 * PG, "wf" };
	must(!madvise(areas[4].p, 8 * PG, MADV_WIPEONFORK), "MADV_WIPEONFORK");
	areas[n].p = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	must(areas[n].p != MAP_FAILED, "shared mmap");
	areas[n].name = "shared";
	areas[n].len = 16 * PG;
	areas[n++].vmflag = "sh";
	areas[n++] = (struct area){ "growsdown", map(16 * PG, MAP_GROWSDOWN), 16 * PG, "gd" };
	for (int i = 0; i < n; i++)
		fill(&areas[i]);
	must(!mlock(areas[2].p, areas[2].len), "mlock");
	huge_before = smaps_kb(areas[0].p, "AnonHugePages");
	say("READY huge_kb=%ld", huge_before);
	prog_wait_trigger();
	if (tamper)
		munlock(areas[2].p, areas[2].len);

	for (int i = 0; i < n; i++) {
		char flags[256] = "";

		CHECK(intact(&areas[i]), "%s: the pattern changed", areas[i].name);
		smaps_field(areas[i].p, "VmFlags", flags, sizeof(flags));
		CHECK(strstr(flags, areas[i].vmflag) != NULL, "%s: VmFlags \"%s\" lack %s",
		      areas[i].name, flags, areas[i].vmflag);
	}
	CHECK(smaps_kb(areas[2].p, "Locked") == (long)(areas[2].len / 1024),
	      "locked: %ld kB locked, expected %zu", smaps_kb(areas[2].p, "Locked"), areas[2].len / 1024);
	if (huge_before > 0)
		CHECK(smaps_kb(areas[0].p, "AnonHugePages") >= huge_before,
		      "huge: %ld kB in huge pages after restore, %ld before",
		      smaps_kb(areas[0].p, "AnonHugePages"), huge_before);
	return prog_finish();
}
