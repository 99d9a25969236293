/*
 * tree [tamper]: a process tree with several sessions and process groups
 * and a zombie:
 *
 *   root (session and group leader)
 *   +-- a        same group        +-- a1     same group
 *   +-- b        own group         +-- b1     b's group     +-- b2  own group
 *   +-- c        own session       +-- c1     c's session and group
 *   +-- z        exited with 7, not reaped: a zombie
 *   +-- d        led its own group, exited and was reaped
 *   +-- e        in d's group      +-- e1     d's group: a group without leader
 *   +-- s        setsid after forking s1   +-- s1  root's session, not its parent's
 *
 * Each process records its pid, parent, group and session and counts in
 * memory. On SIGUSR1 the root signals its
 * children, each signals its own and waits for them: every process checks
 * its ids and that its counter went on, writes the reason of any failure
 * to fail-<name> in the cwd, and exits 0 or 1. The root also reaps the
 * zombie (its status must be 7) and reports PASS or each failure.
 * "tamper" makes b1 expect another session.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>

#include "prog.h"

struct node {
	const char *name;
	int parent;		/* index of the parent */
	int own_group, own_session;
	int join;		/* index of the node whose group it joins, or 0 */
	int late_session;	/* setsid after forking its children */
	pid_t pid;		/* filled in as it starts */
};

static struct node nodes[] = {
	{ "root", -1, 1, 1, 0, 0, 0 },
	{ "a", 0, 0, 0, 0, 0, 0 },
	{ "a1", 1, 0, 0, 0, 0, 0 },
	{ "b", 0, 1, 0, 0, 0, 0 },
	{ "b1", 3, 0, 0, 0, 0, 0 },
	{ "b2", 4, 1, 0, 0, 0, 0 },
	{ "c", 0, 0, 1, 0, 0, 0 },
	{ "c1", 6, 0, 0, 0, 0, 0 },
	{ "z", 0, 0, 0, 0, 0, 0 },
	{ "d", 0, 1, 0, 0, 0, 0 },
	{ "e", 0, 0, 0, 9, 0, 0 },
	{ "e1", 10, 0, 0, 0, 0, 0 },
	{ "s", 0, 0, 0, 0, 1, 0 },
	{ "s1", 12, 0, 0, 0, 0, 0 },
};
#define NNODES (int)(sizeof(nodes) / sizeof(nodes[0]))
#define ZOMBIE 8
#define GONE 9		/* d: exits once e is in its group */
#define LIVE (NNODES - 3)	/* all but the root, the zombie and d say they are ready */

static int gone_pipe[2];

static int self;
static pid_t my_ppid, my_pgid, my_sid;
static volatile unsigned long counter;
static int ready_pipe[2];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	char path[64], buf[512];
	va_list ap;
	int fd, n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	buf[n++] = '\n';
	snprintf(path, sizeof(path), "fail-%s", nodes[self].name);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		if (write(fd, buf, n) < 0)
			_exit(3);
		close(fd);
	}
	prog_failed = 1;
}

/* signal and reap my children; their failures are in their files */
static void finish_children(void)
{
	for (int i = 0; i < NNODES; i++) {
		int st;

		if (nodes[i].parent != self || i == GONE)
			continue;
		if (i != ZOMBIE)
			kill(nodes[i].pid, SIGUSR1);
		if (waitpid(nodes[i].pid, &st, 0) != nodes[i].pid) {
			fail("%s: cannot reap child %s (%d): %s", nodes[self].name, nodes[i].name,
			     nodes[i].pid, strerror(errno));
			continue;
		}
		if (i == ZOMBIE) {
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
				fail("zombie z reaped with status %#x, expected exit 7", st);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			prog_failed = 1;
		}
	}
}

static void check_self(int tamper)
{
	pid_t want_sid = my_sid + (tamper && !strcmp(nodes[self].name, "b1"));

	if (getpid() != nodes[self].pid)
		fail("%s: pid %d, expected %d", nodes[self].name, getpid(), nodes[self].pid);
	if (getppid() != my_ppid)
		fail("%s: parent %d, expected %d", nodes[self].name, getppid(), my_ppid);
	if (getpgid(0) != my_pgid)
		fail("%s: process group %d, expected %d", nodes[self].name, getpgid(0), my_pgid);
	if (getsid(0) != want_sid)
		fail("%s: session %d, expected %d", nodes[self].name, getsid(0), want_sid);
}

static void __attribute__((noreturn)) run(int tamper)
{
	unsigned long at_trigger;
	char c = 'r';

	my_ppid = getppid();
	my_pgid = getpgid(0);
	my_sid = getsid(0);
	if (write(ready_pipe[1], &c, 1) != 1)
		_exit(3);
	close(ready_pipe[1]);
	prog_count_until_trigger(&counter);
	at_trigger = counter;
	finish_children();
	check_self(tamper);
	{
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		counter++;
	}
	if (counter <= at_trigger || at_trigger < 2)
		fail("%s: counter %lu, at the trigger %lu", nodes[self].name, counter, at_trigger);
	_exit(prog_failed);
}

/* start node i's children (in the child: set up groups first) */
static void start_children(int tamper);

static void become(int i, int tamper)
{
	self = i;
	nodes[i].pid = getpid();
	close(ready_pipe[0]);
	if (nodes[i].own_session && i)
		setsid();
	else if (nodes[i].own_group && i)
		setpgid(0, 0);
	else if (nodes[i].join && setpgid(0, nodes[nodes[i].join].pid))
		fail("%s: cannot join the group of %s: %s", nodes[i].name, nodes[nodes[i].join].name,
		     strerror(errno));
	if (i != GONE) {
		close(gone_pipe[0]);
		close(gone_pipe[1]);
	} else {
		char c;

		close(gone_pipe[1]);
		/* until the root says e is in the group */
		if (read(gone_pipe[0], &c, 1) < 0)
			_exit(3);
		_exit(0);
	}
	start_children(tamper);
	if (nodes[i].late_session)
		setsid();
	if (i == ZOMBIE)
		_exit(7);
	run(tamper);
}

static void start_children(int tamper)
{
	for (int i = 0; i < NNODES; i++) {
		pid_t pid;

		if (nodes[i].parent != self)
			continue;
		pid = fork();
		if (pid < 0) {
			say("FAIL: set-up: fork: %s", strerror(errno));
			exit(2);
		}
		if (pid == 0)
			become(i, tamper);
		nodes[i].pid = pid;
		/* as shells do: the parent too, so that the group exists before the next fork */
		if (nodes[i].own_group && !nodes[i].own_session)
			setpgid(pid, pid);
		else if (nodes[i].join)
			setpgid(pid, nodes[nodes[i].join].pid);
	}
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	char c;
	int n = 0;

	prog_trigger_init();
	if (pipe(ready_pipe) || pipe(gone_pipe)) {
		say("FAIL: set-up: pipe: %s", strerror(errno));
		return 2;
	}
	self = 0;
	nodes[0].pid = getpid();
	start_children(tamper);
	/* every process but the root and the zombie says it is ready */
	close(ready_pipe[1]);
	while (n < LIVE && read(ready_pipe[0], &c, 1) == 1)
		n++;
	close(ready_pipe[0]);
	ready_pipe[0] = ready_pipe[1] = -1;
	/* e and e1 are in d's group: d may go */
	close(gone_pipe[0]);
	close(gone_pipe[1]);
	if (waitpid(nodes[GONE].pid, NULL, 0) != nodes[GONE].pid) {
		say("FAIL: set-up: cannot reap d: %s", strerror(errno));
		return 2;
	}
	/* the zombie has exited */
	{
		siginfo_t si;

		waitid(P_PID, nodes[ZOMBIE].pid, &si, WEXITED | WNOWAIT);
	}
	say("READY");
	my_ppid = getppid();
	my_pgid = getpgid(0);
	my_sid = getsid(0);
	prog_wait_trigger();
	finish_children();
	check_self(tamper);
	{
		DIR *d = opendir(".");
		struct dirent *e;

		while (d && (e = readdir(d))) {
			char buf[512];
			ssize_t len;
			int fd;

			if (strncmp(e->d_name, "fail-", 5))
				continue;
			fd = open(e->d_name, O_RDONLY);
			len = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
			if (len > 0) {
				buf[len] = 0;
				buf[strcspn(buf, "\n")] = 0;
				say("FAIL: %s", buf);
			}
			if (fd >= 0)
				close(fd);
			prog_failed = 1;
		}
		if (d)
			closedir(d);
	}
	return prog_finish();
}
