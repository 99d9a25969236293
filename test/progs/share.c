/*
 * share [HEAP_MiB] [tamper]: what a parent shares with its children.
 *
 *   root --+-- a --- a1
 *          +-- b
 *
 * Before forking, the root fills HEAP_MiB (default 64) of private
 * anonymous memory with a pseudo-random pattern, maps 1 MiB of
 * MAP_SHARED|MAP_ANONYMOUS memory and opens "log" (one open file, one
 * offset for all). After the fork a rewrites the first 16 pages of the heap
 * with its own pattern (a1 inherits those); the rest stays shared
 * copy-on-write by all four. Each process appends a 16-byte record to log
 * and counts in its own slot of the shared memory until SIGUSR1. A pipe
 * runs from the root to b, with 4000 bytes queued in it.
 *
 * On SIGUSR1 the root writes a mark into the shared memory and signals its
 * children, each its own: every process checks it sees the root's mark,
 * checks its heap word by word, writes its own mark and a second record,
 * and exits (reporting failures in its slot). The root reaps them, checks
 * their marks and slots, and that log holds all eight records, none
 * overwritten, with the shared offset at its end. Before signalling b, the
 * root writes 100 more bytes into the pipe and closes it: b must read all
 * 4100, in order, then EOF. "tamper" makes b expect
 * another root mark.
 */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "prog.h"

#define NPROC		4
#define OWN_PAGES	16
#define PAGE		4096UL
#define SEED		0x5eed5eedULL
#define OWN_SEED	0xa11ce5eedULL
#define ROOT_MARK	0x600d600dULL
#define REC_LEN		16
#define QUEUED		4000
#define MORE		100

struct slot {
	volatile unsigned long counter;
	volatile uint64_t mark;		/* written after the trigger */
	char fail[240];
};

struct shared {
	volatile uint64_t root_mark;
	struct slot slot[NPROC];
};

static const char *const names[NPROC] = { "root", "a", "a1", "b" };
static const int parent_of[NPROC] = { -1, 0, 1, 0 };
static pid_t pids[NPROC];
static int self, tamper, logfd, ready_pipe[2], data_pipe[2];
static struct shared *sh;
static uint64_t *heap;
static size_t heap_words;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	struct slot *s = &sh->slot[self];
	size_t used = strlen(s->fail);
	va_list ap;

	prog_failed = 1;
	if (!self) {
		char buf[512];

		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		say("FAIL: %s", buf);
		return;
	}
	if (used + 2 >= sizeof(s->fail))
		return;
	if (used)
		s->fail[used++] = ';';
	va_start(ap, fmt);
	vsnprintf(s->fail + used, sizeof(s->fail) - used, fmt, ap);
	va_end(ap);
}

static uint64_t mark_of(int i)
{
	return 0x1000 + i;
}

static void fill(uint64_t *p, size_t words, uint64_t seed)
{
	unsigned long long x = seed;

	for (size_t i = 0; i < words; i++)
		p[i] = xorshift64(&x);
}

/* a and a1 have their own first pages; everything else is the root's */
static void check_heap(void)
{
	size_t own = (self == 1 || self == 2) ? OWN_PAGES * PAGE / 8 : 0;
	unsigned long long x = SEED, y = OWN_SEED;

	for (size_t i = 0; i < heap_words; i++) {
		uint64_t want = xorshift64(&x);

		if (i < own)
			want = xorshift64(&y);
		if (heap[i] != want) {
			fail("%s: heap word %zu is %#lx, expected %#lx", names[self], i,
			     (unsigned long)heap[i], (unsigned long)want);
			return;
		}
	}
}

static unsigned char pipe_byte(int i)
{
	return (unsigned char)(i * 7 + i / 251);
}

static void write_pipe_bytes(int from, int n)
{
	unsigned char buf[QUEUED];

	for (int i = 0; i < n; i++)
		buf[i] = pipe_byte(from + i);
	if (write(data_pipe[1], buf, n) != n)
		fail("root: write to the pipe: %s", strerror(errno));
}

/* b: everything the root sent, in order, then EOF */
static void read_pipe_bytes(void)
{
	unsigned char buf[QUEUED + MORE + 1];
	int got = 0;
	ssize_t n;

	while ((n = read(data_pipe[0], buf + got, sizeof(buf) - got)) > 0)
		got += n;
	if (got != QUEUED + MORE)
		fail("b: read %d bytes from the pipe, expected %d", got, QUEUED + MORE);
	for (int i = 0; i < got && i < QUEUED + MORE; i++)
		if (buf[i] != pipe_byte(i)) {
			fail("b: pipe byte %d is %#x, expected %#x", i, buf[i], pipe_byte(i));
			break;
		}
}

static void append_record(const char *what)
{
	char rec[REC_LEN + 1];

	snprintf(rec, sizeof(rec), "%-5s %-9s\n", names[self], what);
	if (write(logfd, rec, REC_LEN) != REC_LEN)
		fail("%s: write to log: %s", names[self], strerror(errno));
}

static void finish_children(void)
{
	for (int i = 0; i < NPROC; i++) {
		int st;

		if (parent_of[i] != self)
			continue;
		kill(pids[i], SIGUSR1);
		if (waitpid(pids[i], &st, 0) != pids[i]) {
			fail("%s: cannot reap %s (%d): %s", names[self], names[i], pids[i], strerror(errno));
			continue;
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			prog_failed = 1;
	}
}

/* after the trigger, in every process */
static void check_self(void)
{
	uint64_t want = ROOT_MARK + (tamper && self == 3);

	if (sh->root_mark != want)
		fail("%s: sees root mark %#lx in the shared memory, expected %#lx", names[self],
		     (unsigned long)sh->root_mark, (unsigned long)want);
	check_heap();
	append_record("after");
	sh->slot[self].mark = mark_of(self);
	if (sh->slot[self].counter < 2)
		fail("%s: counted only %lu times", names[self], (unsigned long)sh->slot[self].counter);
}

static void __attribute__((noreturn)) run_child(void)
{
	char c = 'r';

	append_record("before");
	if (write(ready_pipe[1], &c, 1) != 1)
		_exit(3);
	close(ready_pipe[1]);
	prog_count_until_trigger(&sh->slot[self].counter);
	finish_children();
	if (self == 3)
		read_pipe_bytes();
	check_self();
	_exit(prog_failed);
}

static void start_children(void)
{
	for (int i = 0; i < NPROC; i++) {
		pid_t pid;

		if (parent_of[i] != self)
			continue;
		pid = fork();
		if (pid < 0) {
			say("FAIL: set-up: fork: %s", strerror(errno));
			exit(2);
		}
		if (pid == 0) {
			self = i;
			pids[i] = getpid();
			close(ready_pipe[0]);
			close(data_pipe[1]);
			if (i != 3)
				close(data_pipe[0]);
			if (i == 1)	/* a: its own first pages, before a1 is forked */
				fill(heap, OWN_PAGES * PAGE / 8, OWN_SEED);
			start_children();
			run_child();
		}
		pids[i] = pid;
	}
}

/* the root, once its children are gone: their marks, failures and records */
static void check_all(void)
{
	char buf[NPROC * 2 * REC_LEN + 64];
	int before[NPROC] = { 0 }, after[NPROC] = { 0 };
	off_t pos = lseek(logfd, 0, SEEK_CUR);
	ssize_t len = pread(logfd, buf, sizeof(buf), 0);

	for (int i = 1; i < NPROC; i++) {
		if (sh->slot[i].fail[0])
			fail("%s", sh->slot[i].fail);
		if (sh->slot[i].mark != mark_of(i))
			fail("root: sees mark %#lx of %s in the shared memory, expected %#lx",
			     (unsigned long)sh->slot[i].mark, names[i], (unsigned long)mark_of(i));
	}
	if (len != NPROC * 2 * REC_LEN || pos != len) {
		fail("log: %zd bytes with the shared offset at %ld, expected %d and %d (an offset not shared?)",
		     len, (long)pos, NPROC * 2 * REC_LEN, NPROC * 2 * REC_LEN);
		return;
	}
	for (ssize_t off = 0; off < len; off += REC_LEN) {
		char name[8], what[16];

		if (sscanf(buf + off, "%7s %15s", name, what) != 2)
			continue;
		for (int i = 0; i < NPROC; i++)
			if (!strcmp(name, names[i]))
				(strcmp(what, "before") ? after : before)[i]++;
	}
	for (int i = 0; i < NPROC; i++)
		if (before[i] != 1 || after[i] != 1)
			fail("log: %s has %d records from before and %d from after, expected 1 and 1",
			     names[i], before[i], after[i]);
}

int main(int argc, char **argv)
{
	size_t heap_mb = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 64;
	int n = 0;
	char c;

	tamper = argc > 2 && !strcmp(argv[2], "tamper");
	if (argc > 1 && !strcmp(argv[1], "tamper"))
		tamper = 1;
	prog_trigger_init();
	heap_words = heap_mb * (1UL << 20) / 8;
	heap = mmap(NULL, heap_words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sh = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	logfd = open("log", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (heap == MAP_FAILED || sh == MAP_FAILED || logfd < 0 || pipe(ready_pipe) || pipe(data_pipe)) {
		say("FAIL: set-up: %s", strerror(errno));
		return 2;
	}
	fill(heap, heap_words, SEED);
	pids[0] = getpid();
	append_record("before");
	start_children();
	close(data_pipe[0]);
	write_pipe_bytes(0, QUEUED);
	close(ready_pipe[1]);
	while (n < NPROC - 1 && read(ready_pipe[0], &c, 1) == 1)
		n++;
	close(ready_pipe[0]);
	say("READY");
	prog_count_until_trigger(&sh->slot[0].counter);
	sh->root_mark = ROOT_MARK;
	write_pipe_bytes(QUEUED, MORE);
	close(data_pipe[1]);
	finish_children();
	check_self();
	check_all();
	return prog_finish();
}
