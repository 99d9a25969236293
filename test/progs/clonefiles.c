/*
 * clonefiles [tamper]: processes that share their fd table and fs info.
 *
 *   root --+-- s   cloned with CLONE_FILES | CLONE_FS: one fd table, one cwd and umask
 *          +-- f   forked: tables of its own
 *
 * On SIGUSR1 the root signals s, which opens /dev/null, chdirs into "sub",
 * sets the umask to 027, tells the fd number through shared memory and
 * exits. The root must then find that fd open in its own table, its cwd in
 * sub and its umask 027; then it signals f, which must not see the fd and
 * must still be in the old cwd with the old umask. "tamper" makes the root
 * expect umask 077.
 */
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "prog.h"

struct shared {
	volatile int fd;		/* what s opened */
	volatile int f_failed;
	char f_why[200];
};

static struct shared *sh;

static void __attribute__((noreturn)) run_s(void)
{
	prog_wait_trigger();
	sh->fd = open("/dev/null", O_RDONLY);
	if (chdir("sub"))
		_exit(3);
	umask(027);
	_exit(0);
}

static void __attribute__((noreturn)) run_f(void)
{
	char cwd[4096];
	mode_t old;

	prog_wait_trigger();
	old = umask(0);
	if (fcntl(sh->fd, F_GETFD) >= 0)
		snprintf(sh->f_why, sizeof(sh->f_why), "f sees fd %d that s opened", sh->fd);
	else if (!getcwd(cwd, sizeof(cwd)) || !strcmp(strrchr(cwd, '/'), "/sub"))
		snprintf(sh->f_why, sizeof(sh->f_why), "f moved into sub with s");
	else if (old != 022)
		snprintf(sh->f_why, sizeof(sh->f_why), "f has umask %03o, expected 022", old);
	sh->f_failed = sh->f_why[0] != 0;
	_exit(0);
}

int main(int argc, char **argv)
{
	int tamper = argc > 1 && !strcmp(argv[1], "tamper");
	char cwd[4096];
	pid_t s, f;
	mode_t mask;
	int st;

	prog_trigger_init();
	umask(022);
	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || (mkdir("sub", 0755) && errno != EEXIST)) {
		say("FAIL: set-up: %s", strerror(errno));
		return 2;
	}
	sh->fd = -1;
	s = syscall(SYS_clone, CLONE_FILES | CLONE_FS | SIGCHLD, NULL, NULL, NULL, 0);
	if (s == 0)
		run_s();
	f = fork();
	if (f == 0)
		run_f();
	if (s < 0 || f < 0) {
		say("FAIL: set-up: clone: %s", strerror(errno));
		return 2;
	}
	say("READY s=%d f=%d", s, f);
	prog_wait_trigger();

	kill(s, SIGUSR1);
	if (waitpid(s, &st, 0) != s || !WIFEXITED(st) || WEXITSTATUS(st)) {
		say("FAIL: s exited with status %#x", st);
		return 1;
	}
	CHECK(sh->fd >= 0 && fcntl(sh->fd, F_GETFD) >= 0,
	      "fd %d that s opened is not in the root's table: the fd table is not shared", sh->fd);
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(strrchr(cwd, '/'), "/sub"),
	      "the root's cwd is %s, not s's sub: fs info is not shared", cwd);
	mask = umask(0);
	CHECK(mask == (tamper ? 077 : 027), "the root's umask is %03o, expected %03o", mask,
	      tamper ? 077 : 027);

	kill(f, SIGUSR1);
	if (waitpid(f, &st, 0) != f || !WIFEXITED(st) || WEXITSTATUS(st)) {
		say("FAIL: f exited with status %#x", st);
		return 1;
	}
	CHECK(!sh->f_failed, "%s", sh->f_why);
	return prog_finish();
}
