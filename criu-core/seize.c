#define LOG_PREFIX "seize: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <elf.h>
#include <sys/syscall.h>

#include "compat.h"
#include "fault.h"
#include "log.h"
#include "proc.h"
#include "seize.h"
#include "util.h"

int wait_task(pid_t pid, int *status, int flags)
{
	pid_t r;

	do
		r = waitpid(pid, status, flags | __WALL);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return pr_perror("pid %d: waitpid", pid);
	return r;
}

const char *describe_status(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else if (WIFSTOPPED(st))
		snprintf(buf, len, "stopped with signal %d (%s), event %d", WSTOPSIG(st) & 0x7f,
			 strsignal(WSTOPSIG(st) & 0x7f), st >> 16);
	else
		snprintf(buf, len, "changed state 0x%x", st);
	return buf;
}

/*
 * Wait for the stop PTRACE_INTERRUPT asked for. A signal may be dequeued
 * first (signal-delivery-stop): deliver it as the task would have and wait
 * again; the interrupt stays pending and comes next. A task in group stop
 * (stopped by SIGSTOP & co.) reports its stop signal instead of SIGTRAP:
 * that goes to *group_stop, else 0.
 */
static int wait_interrupt_stop(pid_t pid, int *group_stop, bool may_exit)
{
	char why[96];
	int st;

	for (;;) {
		if (wait_task(pid, &st, 0) < 0)
			return -ECHILD;
		if (!WIFSTOPPED(st)) {
			pr_msg(may_exit ? LOG_DEBUG : LOG_ERROR, "pid %d %s while being seized", pid,
			       describe_status(st, why, sizeof(why)));
			return -ESRCH;
		}
		if ((st >> 16) == PTRACE_EVENT_STOP) {
			if (group_stop)
				*group_stop = WSTOPSIG(st) == SIGTRAP ? 0 : WSTOPSIG(st);
			return 0;
		}
		pr_debug("pid %d: delivering signal %d before the interrupt stop", pid, WSTOPSIG(st));
		if (ptrace(PTRACE_CONT, pid, 0, WSTOPSIG(st)))
			return pr_perror("pid %d: cannot resume to deliver signal %d", pid, WSTOPSIG(st));
	}
}

int seize_attach(pid_t pid, bool may_exit)
{
	if (ptrace(PTRACE_SEIZE, pid, 0, SEIZE_OPTIONS)) {
		int e = errno;
		struct proc_status st;

		if (e == ESRCH) {
			pr_msg(may_exit ? LOG_DEBUG : LOG_ERROR, "pid %d: no such process", pid);
			return -ESRCH;
		}
		if (e == EPERM && !proc_parse_status(pid, &st)) {
			proc_status_free(&st);
			if (st.tracer) {
				pr_err("pid %d: cannot seize: it is already traced by pid %d", pid, st.tracer);
				return -EBUSY;
			}
		}
		errno = e;
		return pr_perror("pid %d: cannot seize with ptrace", pid);
	}
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) {
		int ret = pr_perror("pid %d: cannot interrupt", pid);

		/* not stopped: detaching fails, but the tracer's exit lets it go */
		ptrace(PTRACE_DETACH, pid, 0, 0);
		return ret;
	}
	return 0;
}

int seize_wait(pid_t pid, int *group_stop, bool may_exit)
{
	if (wait_interrupt_stop(pid, group_stop, may_exit)) {
		ptrace(PTRACE_DETACH, pid, 0, 0);
		return -ESRCH;
	}
	return 0;
}

int seize_task(pid_t pid, int *group_stop, bool may_exit)
{
	return seize_attach(pid, may_exit) ?: seize_wait(pid, group_stop, may_exit);
}

void release_threads(const pid_t *tids, int from, int nr)
{
	for (int i = from; i < nr; i++)
		if (ptrace(PTRACE_DETACH, tids[i], 0, 0))
			pr_perror("tid %d: cannot let it go", tids[i]);
}

static bool has_tid(const pid_t *v, int n, pid_t tid)
{
	for (int i = 0; i < n; i++)
		if (v[i] == tid)
			return true;
	return false;
}

int seize_threads(pid_t pid, pid_t **tids, int *nr, bool frozen)
{
	pid_t *v = malloc(sizeof(*v));
	int n = 1, added;

	if (!v)
		return -ENOMEM;
	v[0] = pid;
	do {
		_cleanup_free_ pid_t *list = NULL;
		int nl, ret = proc_list_threads(pid, &list, &nl);

		added = 0;
		for (int i = 0; !ret && i < nl; i++) {
			pid_t *nv;

			if (has_tid(v, n, list[i]))
				continue;
			nv = xrealloc_array(v, n + 1, sizeof(*v));
			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			v = nv;
			/* a thread may exit meanwhile: it is gone, not dumped */
			ret = frozen ? seize_attach(list[i], true) : seize_task(list[i], NULL, true);
			if (!ret) {
				v[n++] = list[i];
				added++;
			} else if (ret == -ESRCH && list[i] != pid) {
				ret = 0;
			}
		}
		if (ret) {
			release_threads(v, 1, n);
			free(v);
			return ret;
		}
	} while (added && !frozen);
	*tids = v;
	*nr = n;
	return 0;
}

int interrupt_task(pid_t pid)
{
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0))
		return pr_perror("pid %d: cannot interrupt", pid);
	return wait_interrupt_stop(pid, NULL, false);
}

bool is_retrap(int st)
{
	return WIFSTOPPED(st) && (st >> 16) == PTRACE_EVENT_STOP;
}

int ptrace_step_syscall(pid_t pid)
{
	char why[96];
	int st;

	for (int stage = 0; stage < 2; stage++) {
		if (ptrace(PTRACE_SYSCALL, pid, 0, 0))
			return pr_perror("pid %d: PTRACE_SYSCALL", pid);
		if (wait_task(pid, &st, 0) < 0)
			return -ECHILD;
		if (is_retrap(st)) {
			stage--;
			continue;
		}
		if (!WIFSTOPPED(st) || WSTOPSIG(st) != (SIGTRAP | 0x80)) {
			pr_err("pid %d: injected syscall did not stop at its %s: the task %s", pid,
			       stage ? "exit" : "entry", describe_status(st, why, sizeof(why)));
			return -EIO;
		}
		fault_point(stage ? "syscall-exit" : "syscall-entry");
	}
	return 0;
}

int ptrace_get_regs(pid_t tid, struct user_regs_struct *r)
{
	struct iovec iov = { r, sizeof(*r) };

	if (ptrace(PTRACE_GETREGSET, tid, NT_PRSTATUS, &iov))
		return pr_perror("tid %d: cannot read registers", tid);
	return 0;
}

int ptrace_set_regs(pid_t tid, const struct user_regs_struct *r)
{
	struct iovec iov = { (void *)r, sizeof(*r) };

	if (ptrace(PTRACE_SETREGSET, tid, NT_PRSTATUS, &iov))
		return pr_perror("tid %d: cannot set registers", tid);
	return 0;
}

int ptrace_get_xstate(pid_t tid, void *buf, size_t *len)
{
	struct iovec iov = { buf, *len };

	if (ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov))
		return pr_perror("tid %d: cannot read FPU/xstate registers", tid);
	*len = iov.iov_len;
	return 0;
}

int ptrace_set_xstate(pid_t tid, const void *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };

	if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov))
		return pr_perror("tid %d: cannot set FPU/xstate registers (%zu bytes)", tid, len);
	return 0;
}

int ptrace_get_sigmask(pid_t tid, uint64_t *mask)
{
	if (ptrace(PTRACE_GETSIGMASK, tid, sizeof(*mask), mask))
		return pr_perror("tid %d: cannot read the signal mask", tid);
	return 0;
}

int ptrace_set_sigmask(pid_t tid, uint64_t mask)
{
	if (ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask))
		return pr_perror("tid %d: cannot set the signal mask", tid);
	return 0;
}

#define ERESTARTSYS		512
#define ERESTARTNOINTR		513
#define ERESTARTNOHAND		514
#define ERESTART_RESTARTBLOCK	516

void regs_apply_restart(struct user_regs_struct *r, bool for_restore)
{
	if ((long)r->orig_rax >= 0) {
		switch ((long)r->rax) {
		case -ERESTARTSYS:
		case -ERESTARTNOINTR:
		case -ERESTARTNOHAND:
			r->rax = r->orig_rax;
			r->rip -= 2;
			break;
		case -ERESTART_RESTARTBLOCK:
			if (for_restore) {
				r->rax = -EINTR;
			} else {
				r->rax = __NR_restart_syscall;
				r->rip -= 2;
			}
			break;
		}
	}
	r->orig_rax = -1;
}

int remote_syscall(pid_t tid, const struct user_regs_struct *base, unsigned long gadget, long nr, long a1,
		   long a2, long a3, long a4, long a5, long a6, long *ret)
{
	struct user_regs_struct r = *base;

	r.rip = gadget;
	r.rax = nr;
	r.orig_rax = -1;
	r.rdi = a1;
	r.rsi = a2;
	r.rdx = a3;
	r.r10 = a4;
	r.r8 = a5;
	r.r9 = a6;
	if (ptrace_set_regs(tid, &r))
		return -EIO;
	fault_point("syscall-set");
	if (ptrace_step_syscall(tid) || ptrace_get_regs(tid, &r))
		return -EIO;
	*ret = r.rax;
	return 0;
}

unsigned long find_exec_addr(pid_t pid)
{
	char path[64], line[512];
	unsigned long start = 0, s, e;
	char perms[8];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (!start && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 && !strcmp(perms, "r-xp"))
			start = s;
	fclose(f);
	return start;
}
