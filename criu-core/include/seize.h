/* Seizing tasks with ptrace, and the register/state accessors built on it. */
#ifndef CRYO_SEIZE_H
#define CRYO_SEIZE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#define SEIZE_OPTIONS	(PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP)

/*
 * PTRACE_SEIZE + PTRACE_INTERRUPT and wait until the task is in a ptrace
 * stop. *group_stop: the stop signal if the task was stopped (T), else 0.
 */
int seize_task(pid_t pid, int *group_stop, bool may_exit);
/*
 * The two halves of it, for a frozen cgroup: PTRACE_SEIZE + PTRACE_INTERRUPT
 * while the task cannot run, then (once thawed) wait for the stop.
 */
int seize_attach(pid_t pid, bool may_exit);
int seize_wait(pid_t pid, int *group_stop, bool may_exit);
/*
 * Seize every other thread of pid, whose leader is seized already, listing
 * /proc/PID/task until a pass finds no thread it has not seized (a seized
 * thread creates no more). *tids: every thread, the leader first. On
 * failure the threads seized here are let go again. frozen: the task's
 * cgroup is frozen, so one pass lists every thread, and each is only
 * attached (seize_wait once thawed).
 */
int seize_threads(pid_t pid, pid_t **tids, int *nr, bool frozen);
/* PTRACE_DETACH each of tids[from..nr) */
void release_threads(const pid_t *tids, int from, int nr);
/* Interrupt an already seized, running task and wait for the stop. */
int interrupt_task(pid_t pid);
/* waitpid(__WALL) that retries on EINTR; logs and returns -errno on failure. */
int wait_task(pid_t pid, int *status, int flags);
/* Describe a wait status for error messages ("killed by signal 9", ...). */
const char *describe_status(int status, char *buf, size_t len);
/*
 * A task seized in group stop (stopped by SIGSTOP & co.) traps once more,
 * before running anything, the first time it is resumed: such a stop is
 * to be answered by resuming it again.
 */
bool is_retrap(int status);
/* Resume the task to syscall entry and on to syscall exit. */
int ptrace_step_syscall(pid_t pid);

int ptrace_get_regs(pid_t tid, struct user_regs_struct *r);
int ptrace_set_regs(pid_t tid, const struct user_regs_struct *r);
/* xstate buffer: *len in = size of buf, out = bytes the kernel filled */
int ptrace_get_xstate(pid_t tid, void *buf, size_t *len);
int ptrace_set_xstate(pid_t tid, const void *buf, size_t len);
int ptrace_get_sigmask(pid_t tid, uint64_t *mask);
int ptrace_set_sigmask(pid_t tid, uint64_t mask);

/*
 * Run one syscall in the stopped thread tid at a syscall instruction at
 * gadget (which cryo makes `syscall; jmp .`: should cryo die, the thread
 * spins there for the guardian), stepping it with PTRACE_SYSCALL so that
 * no signal is involved; base gives the other registers. 0 and *ret, or -EIO.
 */
int remote_syscall(pid_t tid, const struct user_regs_struct *base, unsigned long gadget, long nr, long a1,
		   long a2, long a3, long a4, long a5, long a6, long *ret);
/* the start of the task's first private executable mapping, from its maps; 0 if none */
unsigned long find_exec_addr(pid_t pid);

/*
 * Syscall restart, as the kernel would do it when the interrupted task goes
 * back to user mode without running a signal handler. for_restore: a fresh
 * task has no restart_block, so a restart_syscall() there would fail; the
 * syscall returns -EINTR instead (the same thing the kernel does after a
 * sigreturn).
 */
void regs_apply_restart(struct user_regs_struct *r, bool for_restore);

#endif
