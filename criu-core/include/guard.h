/*
 * The guardian: a small process cryo starts before it touches a workload,
 * which undoes what cryo leaves half-done should cryo die (SIGKILL, the
 * OOM killer, a reboot script): a dump's workload runs on as it was, a
 * restore's half-made tree is killed, a migration's source runs on.
 *
 * cryo writes a journal in memory it shares with the guardian: before each
 * change to a workload, an entry that says how to undo it; once the change
 * is undone, or made for good, the entry is dropped. The guardian reads the
 * journal only once cryo is gone (its pidfd tells it), and then:
 *   1. thaws the cgroups cryo froze, and takes the TCP connections cryo
 *      put in repair mode out of it (their tasks are fenced in meanwhile:
 *      parked at cryo's code, they run none of their own);
 *   2. seizes each task with a live entry again, puts back its registers
 *      and signal mask, closes what cryo opened in it, restores the
 *      protections of pages the parasite was reading, unmaps the parasite,
 *      registers its rseq area again, and gives back the code word cryo
 *      borrowed for its syscalls; a syscall cryo had started in a thread
 *      ends in a `jmp .` right after the syscall instruction, so the guardian
 *      finds it there, its result in rax;
 *   3. lets the tasks go, and sets the network devices it took down up again;
 *   4. kills the tasks marked to die: a restore's tree that was not
 *      committed, or a dump's tree whose kill had begun;
 *   5. closes the dirty trackers a migration parked in its tree;
 *   6. freezes again the cgroups it found frozen (a paused container) and
 *      had thawed to hold their tasks in ptrace: their tasks run meanwhile,
 *      from cryo's death until then, since the kernel lets a dead
 *      tracer's tasks go.
 * It runs in its own session, ignoring the signals a terminal or a
 * process group would send, and exits once cryo says it is done.
 */
#ifndef CRYO_GUARD_H
#define CRYO_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

struct cryo_opts;
struct guard;
struct guard_entry;

/*
 * Start the guardian of o's command (o->guard; nothing if it has one).
 * 0, or -errno (logged): then cryo must not touch the workload.
 */
int guard_start(struct cryo_opts *o);
/* The command is over and every entry dropped: the guardian exits. */
void guard_stop(struct cryo_opts *o);
/* the same for a guardian of one's own (a migration agent's session): 0 and *g, or -errno (logged) */
int guard_open(const struct cryo_opts *o, struct guard **g);
void guard_close(struct guard *g);
/* fn(o) (a command: 0 or 1) under a guardian started for it (1 if it cannot be) */
int guard_run(struct cryo_opts *o, int (*fn)(struct cryo_opts *o));
/* the guardian's pid (0 without one), for a parent that waits on its children */
pid_t guard_pid(const struct guard *g);

/*
 * Journal entries. Each returns NULL without a guardian (g NULL), and
 * every setter takes NULL as a no-op. An entry counts from its making.
 */
/* a cgroup cryo is about to freeze */
struct guard_entry *guard_freezer(struct guard *g, const char *dir, bool v2);
/* a cgroup found frozen that cryo is about to thaw while it holds the tasks: frozen again, last */
struct guard_entry *guard_refreeze(struct guard *g, const char *dir, bool v2);
/* a thread whose registers (and signal mask, if given) cryo is about to change: r, *sigmask as they are */
struct guard_entry *guard_regs(struct guard *g, pid_t pid, pid_t tid, const struct user_regs_struct *r,
			       const uint64_t *sigmask);
/*
 * A syscall cryo runs in that thread at gadget (a `syscall; jmp .`):
 * what the guardian undoes if it ran: GUARD_SC_FD closes the fd it
 * returned, GUARD_SC_MAP unmaps the mapping (of len bytes) it returned.
 */
#define GUARD_SC_FD	1u
#define GUARD_SC_MAP	2u
void guard_syscall(struct guard_entry *thread, unsigned long gadget, long nr, unsigned undo, size_t len);
/* ...it ran, and cryo has its result */
void guard_syscall_done(struct guard_entry *thread);
/*
 * A parasite about to go into pid: the code word at exec_addr cryo is about
 * to borrow for its syscalls (word: as it is), the parasite's size and
 * where its shared area lies in it.
 */
struct guard_entry *guard_parasite(struct guard *g, pid_t pid, unsigned long exec_addr, uint64_t word,
				   size_t size, size_t area_off);
/* its mapping is at remote; its area is set up (the fds it lists are real) */
void guard_parasite_mapped(struct guard_entry *p, unsigned long remote);
void guard_parasite_area(struct guard_entry *p);
/* the task's rseq area is about to be unregistered (off) / was registered again */
void guard_parasite_rseq(struct guard_entry *p, uint64_t ptr, uint32_t len, uint32_t sig, bool off);
/* the mapping is gone (cure); the code word is back */
void guard_parasite_unmapped(struct guard_entry *p);
/* pid's fd, which cryo made in it: closed */
struct guard_entry *guard_task_fd(struct guard *g, pid_t pid, int fd);
/* a network device (in cryo's namespace) cryo is about to set down */
struct guard_entry *guard_link_down(struct guard *g, const char *ifname);
/* pid's fd, a TCP socket cryo is about to put in repair mode */
struct guard_entry *guard_tcp_repair(struct guard *g, pid_t pid, int fd);
/* a task to kill should cryo die (a restore's task, a dump's tree being killed) */
struct guard_entry *guard_kill(struct guard *g, pid_t pid);
/* ...with every process below it (a migration's restored tree the agent holds until the commit) */
struct guard_entry *guard_kill_tree(struct guard *g, pid_t root);
/* the dirty trackers parked in root's tree (a migration's) */
struct guard_entry *guard_untrack(struct guard *g, pid_t root);
/* the change is undone, or stands for good: forget it */
void guard_done(struct guard_entry *e);

/* the code word that makes exec_addr `syscall; jmp .` (the other bytes kept) */
uint64_t guard_gadget_word(uint64_t word);

#endif
