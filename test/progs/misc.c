/*
 * misc WORD [tamper]: per-process attributes outside memory and fds.
 *   umask 027; cwd a directory "sub/dir" made under the start directory;
 *   rlimits lowered: NOFILE 256/512, CORE 0/0, STACK 4 MiB soft,
 *   MSGQUEUE 4096/8192, NPROC 1000/2000, FSIZE 1/2 GiB;
 *   comm "misc-renamed" (PR_SET_NAME); WORD rewritten in place in the
 *   argument area, upper-cased, so /proc/self/cmdline reads differently
 *   from what exec set;
 *   personality ADDR_NO_RANDOMIZE; prctl: no_new_privs, child subreaper,
 *   THP disabled, pdeath signal SIGWINCH, timer slack 123456 ns.
 * After SIGUSR1 it reads each back. "tamper" renames the process first.
 */
#include <ctype.h>
#include <fcntl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "prog.h"

static const struct { int res; rlim_t cur, max; const char *name; } limits[] = {
	{ RLIMIT_NOFILE, 256, 512, "NOFILE" },
	{ RLIMIT_CORE, 0, 0, "CORE" },
	{ RLIMIT_MSGQUEUE, 4096, 8192, "MSGQUEUE" },
	{ RLIMIT_NPROC, 1000, 2000, "NPROC" },
	{ RLIMIT_FSIZE, 1UL << 30, 2UL << 30, "FSIZE" },
};

#define STACK_SOFT (4UL << 20)
#define SLACK_NS 123456UL

static void must(int ok, const char *what)
{
	if (!ok) {
		say("FAIL: set-up: %s: %s", what, strerror(errno));
		exit(2);
	}
}

int main(int argc, char **argv)
{
	int tamper = argc > 2 && !strcmp(argv[2], "tamper");
	char cwd[4096], want_cwd[4096], cmdline[4096], want_cmd[4096], comm[32] = "";
	struct rlimit rl, stack_rl;
	size_t want_len = 0;
	ssize_t n;
	mode_t old;
	int fd, v;

	if (argc < 2) {
		say("usage: misc WORD [tamper]");
		return 2;
	}
	prog_trigger_init();
	umask(027);
	must(getcwd(want_cwd, sizeof(want_cwd) - 16) != NULL, "getcwd");
	strcat(want_cwd, "/sub/dir");
	must(mkdir("sub", 0755) == 0 && mkdir("sub/dir", 0755) == 0, "mkdir sub/dir");
	must(chdir("sub/dir") == 0, "chdir");
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		rl.rlim_cur = limits[i].cur;
		rl.rlim_max = limits[i].max;
		must(setrlimit(limits[i].res, &rl) == 0, limits[i].name);
	}
	must(getrlimit(RLIMIT_STACK, &stack_rl) == 0, "getrlimit STACK");
	stack_rl.rlim_cur = STACK_SOFT;
	must(setrlimit(RLIMIT_STACK, &stack_rl) == 0, "setrlimit STACK");
	must(prctl(PR_SET_NAME, "misc-renamed") == 0, "PR_SET_NAME");
	for (char *c = argv[1]; *c; c++)
		*c = toupper((unsigned char)*c);
	for (int i = 0; i < argc; i++) {
		memcpy(want_cmd + want_len, argv[i], strlen(argv[i]) + 1);
		want_len += strlen(argv[i]) + 1;
	}
	must(personality(ADDR_NO_RANDOMIZE) != -1, "personality");
	must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS");
	must(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER");
	must(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0, "PR_SET_THP_DISABLE");
	must(prctl(PR_SET_PDEATHSIG, SIGWINCH) == 0, "PR_SET_PDEATHSIG");
	must(prctl(PR_SET_TIMERSLACK, SLACK_NS) == 0, "PR_SET_TIMERSLACK");

	say("READY");
	prog_wait_trigger();
	if (tamper)
		prctl(PR_SET_NAME, "misc-tampered");

	old = umask(0);
	CHECK(old == 027, "umask %03o, expected 027", (unsigned)old);
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, want_cwd), "cwd %s, expected %s", cwd,
	      want_cwd);
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		getrlimit(limits[i].res, &rl);
		CHECK(rl.rlim_cur == limits[i].cur && rl.rlim_max == limits[i].max,
		      "RLIMIT_%s %llu/%llu, expected %llu/%llu", limits[i].name,
		      (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
		      (unsigned long long)limits[i].cur, (unsigned long long)limits[i].max);
	}
	getrlimit(RLIMIT_STACK, &rl);
	CHECK(rl.rlim_cur == STACK_SOFT && rl.rlim_max == stack_rl.rlim_max,
	      "RLIMIT_STACK %llu/%llu, expected %lu/%llu", (unsigned long long)rl.rlim_cur,
	      (unsigned long long)rl.rlim_max, STACK_SOFT, (unsigned long long)stack_rl.rlim_max);
	prctl(PR_GET_NAME, comm);
	CHECK(!strcmp(comm, "misc-renamed"), "comm %s, expected misc-renamed", comm);
	fd = open("/proc/self/cmdline", O_RDONLY);
	n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline)) : -1;
	CHECK(n == (ssize_t)want_len && !memcmp(cmdline, want_cmd, want_len),
	      "/proc/self/cmdline is not the rewritten argument list (%zd bytes, expected %zu)", n,
	      want_len);
	CHECK(personality(0xffffffff) == ADDR_NO_RANDOMIZE, "personality %#x, expected %#x",
	      personality(0xffffffff), ADDR_NO_RANDOMIZE);
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs is not set");
	v = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &v);
	CHECK(v == 1, "child subreaper is %d, expected 1", v);
	CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP is not disabled");
	v = 0;
	prctl(PR_GET_PDEATHSIG, &v);
	CHECK(v == SIGWINCH, "pdeath signal %d, expected SIGWINCH", v);
	CHECK(prctl(PR_GET_TIMERSLACK) == (int)SLACK_NS, "timer slack %d ns, expected %lu",
	      prctl(PR_GET_TIMERSLACK), SLACK_NS);
	CHECK(prctl(PR_GET_DUMPABLE) == 1, "dumpable is %d, expected 1", prctl(PR_GET_DUMPABLE));
	return prog_finish();
}
