/*
 * fdkinds [tamper]: one of each kind of fd that is not a plain file, with
 * state a fake restore would lose, all checked after the restore:
 *  - eventfd in semaphore mode holding 5, and one holding 0x123456789;
 *  - signalfd for SIGUSR2 and SIGRTMIN+1, with SIGUSR2 pending;
 *  - timerfd every 300 ms: expirations counted since it was armed match
 *    the time gone by (missed ones while it was not running are counted),
 *    the next one is within the interval; a disarmed one stays disarmed;
 *  - epoll with an eventfd, a pipe with data (edge-triggered), an inner
 *    epoll, and a target added under fd number 40 that was moved to 41
 *    (40 now holds /dev/null): epoll_wait reports the right data, MOD and
 *    DEL by the old numbers work;
 *  - inotify with watches numbered 3 (a directory, IN_CREATE) and 5 (a
 *    file, IN_MODIFY): events after restore carry those numbers;
 *  - pidfd of a child: pidfd_send_signal and waitid(P_PIDFD) reach it;
 *  - a pipe with O_ASYNC, F_SETOWN to itself and F_SETSIG SIGRTMIN+3: a
 *    write after restore raises that signal with si_fd;
 *  - flock, POSIX (bytes 100-199) and OFD locks, seen from a new process;
 *  - an O_PATH fd on a directory, an fd on /proc/self/status;
 *  - a FIFO resized to 8192 bytes and full, with two descriptions of it;
 *  - a memfd with seals at offset 1234, and a deleted file, open at offset
 *    777 and mapped shared, still one file.
 * "tamper" expects the semaphore eventfd to hold 6.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include "prog.h"

#define INTERVAL_MS	300
#define FIFO_BYTES	8192	/* the FIFO's whole size */
#define MEMFD_BYTES	(100 << 10)
#define GHOST_BYTES	(200 << 10)

static int tamper;
static volatile sig_atomic_t async_sig, async_fd;

static void on_async(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	async_sig = sig;
	async_fd = si->si_fd;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

static unsigned char pattern(size_t i, unsigned seed)
{
	return (unsigned char)(i * 131 + seed + (i >> 9));
}

static void fill(int fd, size_t len, unsigned seed)
{
	unsigned char buf[4096];

	for (size_t off = 0; off < len; off += sizeof(buf)) {
		size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);

		for (size_t i = 0; i < n; i++)
			buf[i] = pattern(off + i, seed);
		if (pwrite(fd, buf, n, off) != (ssize_t)n) {
			perror("pwrite");
			exit(2);
		}
	}
}

static int same_bytes(int fd, size_t len, unsigned seed)
{
	unsigned char buf[4096];

	for (size_t off = 0; off < len; off += sizeof(buf)) {
		size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);

		if (pread(fd, buf, n, off) != (ssize_t)n)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (buf[i] != pattern(off + i, seed))
				return 0;
	}
	return 1;
}

static int must(int v, const char *what)
{
	if (v < 0) {
		perror(what);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	int sem, big, sfd, tfd, tfd_off, ep, inner, pipefd[2], evx, ino, pidfd, apipe[2];
	int lk_flock, lk_posix, lk_ofd, opath, procfd, fifo_rw, fifo_rd, mfd, ghost;
	struct sigaction sa = { .sa_sigaction = on_async, .sa_flags = SA_SIGINFO | SA_RESTART };
	struct itimerspec its = { { 0, INTERVAL_MS * 1000000L }, { 0, INTERVAL_MS * 1000000L } };
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 100 };
	struct f_owner_ex own = { F_OWNER_PID, 0 };
	struct epoll_event ev;
	char buf[FIFO_BYTES];
	unsigned char *map;
	uint64_t armed, ticks_before = 0, v;
	sigset_t mask;
	pid_t child;

	tamper = argc > 1 && !strcmp(argv[1], "tamper");
	prog_trigger_init();

	sem = must(eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK), "eventfd");
	big = must(eventfd(0, 0), "eventfd");
	v = 0x123456789ULL;
	must(write(big, &v, 8), "write eventfd");

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = must(signalfd(-1, &mask, SFD_NONBLOCK), "signalfd");
	raise(SIGUSR2);

	tfd = must(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK), "timerfd_create");
	armed = now_ms();
	must(timerfd_settime(tfd, 0, &its, NULL), "timerfd_settime");
	tfd_off = must(timerfd_create(CLOCK_REALTIME, 0), "timerfd_create");

	/* epoll: eventfd, pipe (ET), inner epoll, and a target whose number moved */
	ep = must(epoll_create1(0), "epoll_create1");
	inner = must(epoll_create1(0), "epoll_create1");
	must(pipe(pipefd), "pipe");
	must(write(pipefd[1], "x", 1), "write");
	ev = (struct epoll_event){ EPOLLIN, { .u64 = 0xdead0001 } };
	must(epoll_ctl(ep, EPOLL_CTL_ADD, sem, &ev), "epoll_ctl");
	ev = (struct epoll_event){ EPOLLIN | EPOLLET, { .u64 = 0xdead0002 } };
	must(epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev), "epoll_ctl");
	ev = (struct epoll_event){ EPOLLIN, { .u64 = 0xdead0003 } };
	must(epoll_ctl(inner, EPOLL_CTL_ADD, big, &ev), "epoll_ctl");
	ev = (struct epoll_event){ EPOLLIN, { .u64 = 0xdead0004 } };
	must(epoll_ctl(ep, EPOLL_CTL_ADD, inner, &ev), "epoll_ctl");
	evx = must(eventfd(1, 0), "eventfd");
	must(dup2(evx, 40), "dup2");
	close(evx);
	ev = (struct epoll_event){ EPOLLIN, { .u64 = 0xdead0005 } };
	must(epoll_ctl(ep, EPOLL_CTL_ADD, 40, &ev), "epoll_ctl");
	must(dup2(40, 41), "dup2");
	must(dup2(open("/dev/null", O_RDONLY), 40), "dup2");

	/* inotify: watch numbers 3 and 5 */
	mkdir("watched", 0755);
	close(must(open("watched-file", O_CREAT | O_WRONLY, 0644), "open"));
	ino = must(inotify_init1(IN_NONBLOCK), "inotify_init1");
	inotify_rm_watch(ino, must(inotify_add_watch(ino, ".", IN_ALL_EVENTS), "watch"));
	inotify_rm_watch(ino, must(inotify_add_watch(ino, ".", IN_ALL_EVENTS), "watch"));
	if (inotify_add_watch(ino, "watched", IN_CREATE) != 3)
		return say("FAIL: setup: the first watch is not number 3"), 2;
	inotify_rm_watch(ino, must(inotify_add_watch(ino, ".", IN_ALL_EVENTS), "watch"));
	if (inotify_add_watch(ino, "watched-file", IN_MODIFY) != 5)
		return say("FAIL: setup: the second watch is not number 5"), 2;
	while (read(ino, buf, sizeof(buf)) > 0)
		;

	child = must(fork(), "fork");
	if (child == 0) {
		for (;;)
			pause();
	}
	pidfd = must(syscall(SYS_pidfd_open, child, 0), "pidfd_open");

	sigaction(SIGRTMIN + 3, &sa, NULL);
	must(pipe(apipe), "pipe");
	own.pid = getpid();
	must(fcntl(apipe[0], F_SETOWN_EX, &own), "F_SETOWN_EX");
	must(fcntl(apipe[0], F_SETSIG, SIGRTMIN + 3), "F_SETSIG");
	must(fcntl(apipe[0], F_SETFL, O_ASYNC | O_NONBLOCK), "F_SETFL");

	lk_flock = must(open("lock-flock", O_CREAT | O_RDWR, 0644), "open");
	must(flock(lk_flock, LOCK_EX), "flock");
	lk_posix = must(open("lock-posix", O_CREAT | O_RDWR, 0644), "open");
	must(fcntl(lk_posix, F_SETLK, &fl), "F_SETLK");
	lk_ofd = must(open("lock-ofd", O_CREAT | O_RDWR, 0644), "open");
	fl = (struct flock){ .l_type = F_RDLCK, .l_whence = SEEK_SET };
	must(fcntl(lk_ofd, F_OFD_SETLK, &fl), "F_OFD_SETLK");

	opath = must(open("watched", O_PATH | O_DIRECTORY), "open O_PATH");
	procfd = must(open("/proc/self/status", O_RDONLY), "open /proc/self/status");

	must(mkfifo("fifo", 0600), "mkfifo");
	fifo_rw = must(open("fifo", O_RDWR | O_NONBLOCK), "open fifo");
	fifo_rd = must(open("fifo", O_RDONLY | O_NONBLOCK), "open fifo");
	must(fcntl(fifo_rw, F_SETPIPE_SZ, FIFO_BYTES), "F_SETPIPE_SZ");
	for (int i = 0; i < FIFO_BYTES; i++)
		buf[i] = pattern(i, 7);
	must(write(fifo_rw, buf, FIFO_BYTES), "write fifo");

	mfd = must(memfd_create("fdkinds-memfd", MFD_ALLOW_SEALING), "memfd_create");
	fill(mfd, MEMFD_BYTES, 1);
	must(fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK), "F_ADD_SEALS");
	lseek(mfd, 1234, SEEK_SET);

	ghost = must(open("ghost", O_CREAT | O_RDWR, 0640), "open ghost");
	fill(ghost, GHOST_BYTES, 2);
	map = mmap(NULL, GHOST_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, ghost, 0);
	if (map == MAP_FAILED)
		return perror("mmap"), 2;
	lseek(ghost, 777, SEEK_SET);
	must(unlink("ghost"), "unlink");

	/* one expiry seen before the dump */
	while (!ticks_before) {
		usleep(50000);
		if (read(tfd, &ticks_before, 8) != 8)
			ticks_before = 0;
	}
	say("READY child=%d", child);
	prog_wait_trigger();

	/* eventfds */
	int got = 0;
	while (read(sem, &v, 8) == 8)
		got++;
	CHECK(got == (tamper ? 6 : 5), "semaphore eventfd gave %d reads, expected %d", got, tamper ? 6 : 5);
	CHECK(read(big, &v, 8) == 8 && v == 0x123456789ULL, "eventfd counter %#llx", (unsigned long long)v);

	/* signalfd */
	struct signalfd_siginfo ssi;
	CHECK(read(sfd, &ssi, sizeof(ssi)) == sizeof(ssi) && ssi.ssi_signo == SIGUSR2,
	      "signalfd did not give the pending SIGUSR2");
	raise(SIGRTMIN + 1);
	CHECK(read(sfd, &ssi, sizeof(ssi)) == sizeof(ssi) && ssi.ssi_signo == (unsigned)SIGRTMIN + 1,
	      "signalfd does not read SIGRTMIN+1");

	/* timerfd: on schedule */
	uint64_t ticks = 0, elapsed, expect;
	struct itimerspec cur;
	usleep(10000);
	if (read(tfd, &ticks, 8) != 8)
		ticks = 0;
	elapsed = now_ms() - armed;
	expect = elapsed / INTERVAL_MS;
	CHECK(ticks_before + ticks + 1 >= expect && ticks_before + ticks <= expect + 1,
	      "timerfd: %llu expirations in %llu ms, expected %llu", (unsigned long long)(ticks_before + ticks),
	      (unsigned long long)elapsed, (unsigned long long)expect);
	CHECK(!timerfd_gettime(tfd, &cur) && cur.it_interval.tv_nsec == INTERVAL_MS * 1000000L &&
	      cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec <= INTERVAL_MS * 1000000L &&
	      (cur.it_value.tv_nsec || cur.it_value.tv_sec), "timerfd: next expiry not within the interval");
	CHECK(!timerfd_gettime(tfd_off, &cur) && !cur.it_value.tv_sec && !cur.it_value.tv_nsec,
	      "the disarmed timerfd is armed");

	/* epoll: sem (emptied now), pipe, inner (big read: empty), 41 */
	struct epoll_event evs[8];
	char want[64];
	int seen = 0, n;
	v = 2;
	must(write(sem, &v, 8), "write");
	v = 1;
	must(write(big, &v, 8), "write");
	n = epoll_wait(ep, evs, 8, 1000);
	for (int i = 0; i < n; i++)
		seen |= 1 << (evs[i].data.u64 - 0xdead0000);
	CHECK(seen == 0x36, "epoll_wait gave data mask %#x, expected 0x36", seen);
	n = epoll_wait(ep, evs, 8, 0);
	seen = 0;
	for (int i = 0; i < n; i++)
		seen |= 1 << (evs[i].data.u64 - 0xdead0000);
	CHECK(!(seen & 4), "the edge-triggered pipe was reported twice");
	ev = (struct epoll_event){ EPOLLIN, { .u64 = 0xdead0009 } };
	CHECK(!epoll_ctl(ep, EPOLL_CTL_MOD, sem, &ev), "EPOLL_CTL_MOD of the eventfd: %s", strerror(errno));
	CHECK(!epoll_ctl(ep, EPOLL_CTL_DEL, pipefd[0], NULL), "EPOLL_CTL_DEL of the pipe: %s", strerror(errno));
	/* the target added under 40 is still known by that number */
	char info[4096];
	snprintf(want, sizeof(want), "/proc/self/fdinfo/%d", ep);
	int infd = must(open(want, O_RDONLY), "open fdinfo");
	n = read(infd, info, sizeof(info) - 1);
	info[n > 0 ? n : 0] = 0;
	close(infd);
	CHECK(strstr(info, "tfd:       40 events:       19 data:         dead0005"), "epoll fdinfo:\n%s", info);

	/* inotify */
	union { struct inotify_event e; char b[4096]; } ib;
	close(must(open("watched/new", O_CREAT | O_WRONLY, 0644), "open"));
	int wfd = must(open("watched-file", O_WRONLY), "open");
	must(write(wfd, "m", 1), "write");
	close(wfd);
	usleep(10000);
	seen = 0;
	n = read(ino, ib.b, sizeof(ib.b));
	for (char *p = ib.b; n > 0 && p < ib.b + n; p += sizeof(struct inotify_event) + ((struct inotify_event *)p)->len) {
		struct inotify_event *e = (struct inotify_event *)p;

		if (e->wd == 3 && (e->mask & IN_CREATE) && !strcmp(e->name, "new"))
			seen |= 1;
		else if (e->wd == 5 && (e->mask & IN_MODIFY))
			seen |= 2;
		else
			seen |= 4;
	}
	CHECK(seen == 3, "inotify events: mask %#x, expected 3 (create in wd 3, modify in wd 5)", seen);

	/* pidfd */
	siginfo_t si = { 0 };
	CHECK(!syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0), "pidfd_send_signal: %s", strerror(errno));
	CHECK(!waitid(P_PIDFD, pidfd, &si, WEXITED) && si.si_pid == child && si.si_status == SIGTERM,
	      "waitid(P_PIDFD): pid %d status %d", si.si_pid, si.si_status);

	/* O_ASYNC */
	must(write(apipe[1], "a", 1), "write");
	for (int i = 0; i < 100 && !async_sig; i++)
		usleep(10000);
	CHECK(async_sig == SIGRTMIN + 3 && async_fd == apipe[0], "O_ASYNC: signal %d fd %d, expected %d fd %d",
	      async_sig, async_fd, SIGRTMIN + 3, apipe[0]);

	/* locks, from a new process */
	pid_t checker = fork();
	if (checker == 0) {
		int a = open("lock-flock", O_RDWR), b = open("lock-posix", O_RDWR), c = open("lock-ofd", O_RDWR);
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 150, .l_len = 1 };
		struct flock r = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int bad = 0;

		bad |= !(flock(a, LOCK_EX | LOCK_NB) && errno == EWOULDBLOCK);
		bad |= (fcntl(b, F_GETLK, &q) || q.l_type != F_WRLCK || q.l_pid != getppid() || q.l_start != 100 ||
			q.l_len != 100) << 1;
		q = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 250, .l_len = 1 };
		bad |= (fcntl(b, F_GETLK, &q) || q.l_type != F_UNLCK) << 2;
		bad |= (fcntl(c, F_OFD_GETLK, &r) || r.l_type != F_RDLCK) << 3;
		_exit(bad);
	}
	int st;
	CHECK(waitpid(checker, &st, 0) == checker && WIFEXITED(st) && !WEXITSTATUS(st),
	      "locks as a new process sees them: failures %#x (1 flock, 2/4 POSIX, 8 OFD)", WEXITSTATUS(st));

	/* O_PATH and /proc */
	struct stat sb;
	CHECK(!fstatat(opath, "new", &sb, 0), "O_PATH directory fd: %s", strerror(errno));
	CHECK((fcntl(opath, F_GETFL) & O_PATH), "the O_PATH fd lost O_PATH");
	char status[4096];
	n = pread(procfd, status, sizeof(status) - 1, 0);
	status[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof(want), "\nPid:\t%d\n", getpid());
	CHECK(strstr(status, want), "/proc/self/status fd does not show pid %d", getpid());

	/* FIFO */
	char got_fifo[FIFO_BYTES + 10];
	CHECK(fcntl(fifo_rd, F_GETPIPE_SZ) == FIFO_BYTES, "FIFO size %d", fcntl(fifo_rd, F_GETPIPE_SZ));
	n = read(fifo_rd, got_fifo, sizeof(got_fifo));
	CHECK(n == FIFO_BYTES && !memcmp(got_fifo, buf, FIFO_BYTES), "FIFO gave %d bytes, expected %d", n, FIFO_BYTES);
	CHECK((fcntl(fifo_rd, F_GETFL) & O_ACCMODE) == O_RDONLY && (fcntl(fifo_rw, F_GETFL) & O_ACCMODE) == O_RDWR,
	      "FIFO access modes");

	/* memfd */
	char link[256];
	ssize_t ln;
	snprintf(want, sizeof(want), "/proc/self/fd/%d", mfd);
	ln = readlink(want, link, sizeof(link) - 1);
	link[ln > 0 ? ln : 0] = 0;
	CHECK(strstr(link, "memfd:fdkinds-memfd"), "memfd link %s", link);
	CHECK(lseek(mfd, 0, SEEK_CUR) == 1234, "memfd offset %ld", (long)lseek(mfd, 0, SEEK_CUR));
	CHECK(fcntl(mfd, F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK), "memfd seals %#x", fcntl(mfd, F_GET_SEALS));
	CHECK(same_bytes(mfd, MEMFD_BYTES, 1), "memfd contents differ");

	/* deleted file */
	snprintf(want, sizeof(want), "/proc/self/fd/%d", ghost);
	ln = readlink(want, link, sizeof(link) - 1);
	link[ln > 0 ? ln : 0] = 0;
	CHECK(strstr(link, "/ghost") && strstr(link, "(deleted)"), "deleted file link %s", link);
	CHECK(lseek(ghost, 0, SEEK_CUR) == 777, "deleted file offset %ld", (long)lseek(ghost, 0, SEEK_CUR));
	CHECK(!fstat(ghost, &sb) && sb.st_nlink == 0 && sb.st_size == GHOST_BYTES && (sb.st_mode & 0777) == 0640,
	      "deleted file: %lu links, %ld bytes, mode %o", (unsigned long)sb.st_nlink, (long)sb.st_size,
	      sb.st_mode & 0777);
	CHECK(same_bytes(ghost, GHOST_BYTES, 2), "deleted file contents differ");
	map[5000] ^= 0xff;
	CHECK(pread(ghost, buf, 1, 5000) == 1 && (unsigned char)buf[0] == (pattern(5000, 2) ^ 0xff),
	      "the mapping and the fd of the deleted file are not one file");
	return prog_finish();
}
