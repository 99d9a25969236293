/*
 * fds [tamper]: a table of file descriptors, each with something a restore
 * could get wrong. In its cwd it creates data.txt (64 KiB of a known
 * pattern) and log.txt, then holds
 *   fd 3  data.txt O_RDWR at offset 1234
 *   fd 4  data.txt O_RDONLY, a second open with its own offset 40000
 *   fd 5  dup of fd 3: one open file, so one shared offset
 *   fd 6  log.txt O_WRONLY|O_APPEND, cursor moved to 0 (writes still append)
 *   fd 7  data.txt O_RDONLY|O_CLOEXEC at offset 7
 *   fd 8  the cwd, O_RDONLY|O_DIRECTORY
 *   fd 9  /dev/null O_RDWR
 *   fd 900 data.txt O_WRONLY at offset 65536 (end of file)
 * and stdin/stdout/stderr from the harness. After SIGUSR1 it checks the
 * offsets, access modes, flags, sharing and that no other fd is open.
 * "tamper" moves fd 4 by one byte first.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "prog.h"

#define DATA_SIZE 65536

static unsigned char data_byte(long off)
{
	return (unsigned char)(off * 31 + (off >> 8));
}

static void must(int ok, const char *what)
{
	if (!ok) {
		say("FAIL: set-up: %s: %s", what, strerror(errno));
		exit(2);
	}
}

static void place(int fd, int want, off_t off)
{
	must(fd >= 0, "open");
	if (fd != want) {
		must(dup2(fd, want) == want, "dup2");
		close(fd);
	}
	must(lseek(want, off, SEEK_SET) == off, "lseek");
}

static off_t pos(int fd)
{
	return lseek(fd, 0, SEEK_CUR);
}

/* the next byte read at fd is the data.txt byte at its offset */
static void check_reads_at(int fd, off_t off)
{
	unsigned char b;

	CHECK(pos(fd) == off, "fd %d offset %lld, expected %lld", fd, (long long)pos(fd),
	      (long long)off);
	CHECK(read(fd, &b, 1) == 1 && b == data_byte(off), "fd %d: wrong byte at %lld", fd,
	      (long long)off);
	lseek(fd, off, SEEK_SET);
}

static void check_mode(int fd, int want_acc, int want_flags, int want_cloexec)
{
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);

	CHECK(fl >= 0, "fd %d is not open", fd);
	if (fl < 0)
		return;
	CHECK((fl & O_ACCMODE) == want_acc, "fd %d access mode %d, expected %d", fd,
	      fl & O_ACCMODE, want_acc);
	CHECK((fl & want_flags) == want_flags, "fd %d flags %#o lack %#o", fd, fl, want_flags);
	CHECK(!!(fdfl & FD_CLOEXEC) == want_cloexec, "fd %d close-on-exec is %d, expected %d",
	      fd, !!(fdfl & FD_CLOEXEC), want_cloexec);
}

static void check_no_other_fds(void)
{
	static const int expected[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 900 };
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	while (d && (e = readdir(d))) {
		int fd = atoi(e->d_name), known = e->d_name[0] == '.' || fd == dirfd(d);

		for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
			known |= fd == expected[i];
		CHECK(known, "unexpected fd %d is open", fd);
	}
	if (d)
		closedir(d);
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	unsigned char buf[DATA_SIZE];
	struct stat st, cwd_st;
	off_t log_size;
	int fd;

	prog_trigger_init();
	for (long i = 0; i < DATA_SIZE; i++)
		buf[i] = data_byte(i);
	fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
	must(fd >= 0 && write(fd, buf, DATA_SIZE) == DATA_SIZE, "write data.txt");
	place(fd, 3, 1234);
	place(open("data.txt", O_RDONLY), 4, 40000);
	must(dup2(3, 5) == 5, "dup2");
	fd = open("log.txt", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	must(fd >= 0 && write(fd, "first line\n", 11) == 11, "write log.txt");
	place(fd, 6, 0);
	fd = open("data.txt", O_RDONLY | O_CLOEXEC);
	must(fd == 7, "open data.txt as fd 7");
	must(lseek(7, 7, SEEK_SET) == 7, "lseek");
	place(open(".", O_RDONLY | O_DIRECTORY), 8, 0);
	place(open("/dev/null", O_RDWR), 9, 0);
	place(open("data.txt", O_WRONLY), 900, DATA_SIZE);

	say("READY");
	prog_wait_trigger();
	if (tamper)
		lseek(4, 1, SEEK_CUR);

	check_reads_at(3, 1234);
	check_reads_at(4, 40000);
	check_reads_at(7, 7);
	check_mode(3, O_RDWR, 0, 0);
	check_mode(4, O_RDONLY, 0, 0);
	check_mode(6, O_WRONLY, O_APPEND, 0);
	check_mode(7, O_RDONLY, 0, 1);
	check_mode(8, O_RDONLY, O_DIRECTORY, 0);
	check_mode(9, O_RDWR, 0, 0);
	check_mode(900, O_WRONLY, 0, 0);

	/* fd 5 is fd 3's open file: moving one moves the other */
	CHECK(pos(5) == 1234, "fd 5 (dup of 3) offset %lld, expected 1234", (long long)pos(5));
	lseek(3, 4321, SEEK_SET);
	CHECK(pos(5) == 4321, "fd 5 does not share fd 3's offset after restore");
	CHECK(pos(4) == 40000, "moving fd 3 moved fd 4, a separate open");

	/* O_APPEND: the write lands at the end whatever the cursor says */
	CHECK(pos(6) == 0, "fd 6 offset %lld, expected 0", (long long)pos(6));
	CHECK(write(6, "second\n", 7) == 7, "write to log.txt: %s", strerror(errno));
	CHECK(stat("log.txt", &st) == 0 && st.st_size == 18, "log.txt is %lld bytes, expected 18",
	      (long long)st.st_size);
	log_size = pos(6);
	CHECK(log_size == 18, "fd 6 offset %lld after an append, expected 18", (long long)log_size);

	/* the directory fd is the cwd and works for *at() calls */
	CHECK(fstat(8, &st) == 0 && stat(".", &cwd_st) == 0 && S_ISDIR(st.st_mode) &&
	      st.st_ino == cwd_st.st_ino, "fd 8 is not the cwd directory");
	fd = openat(8, "data.txt", O_RDONLY);
	CHECK(fd >= 0, "openat(fd 8, data.txt): %s", strerror(errno));
	if (fd >= 0)
		close(fd);

	CHECK(fstat(9, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
	      "fd 9 is not /dev/null");
	CHECK(write(9, "x", 1) == 1, "write to /dev/null failed");
	CHECK(pos(900) == DATA_SIZE, "fd 900 offset %lld, expected %d", (long long)pos(900),
	      DATA_SIZE);
	CHECK(fstat(0, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
	      "stdin is not /dev/null");
	check_no_other_fds();
	return prog_finish();
}
