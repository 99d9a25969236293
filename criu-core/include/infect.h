/*
 * Parasite control: inject the parasite blob into a seized task, run its
 * commands, and remove it leaving the task exactly as it was.
 */
#ifndef CRYO_INFECT_H
#define CRYO_INFECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "parasite-proto.h"

struct guard;
struct guard_entry;

/* a code word of the task borrowed for cryo's syscalls (`syscall; jmp .`) */
struct code_word {
	pid_t pid;
	unsigned long addr;		/* 0: not borrowed (or given back) */
	uint64_t word;			/* what it held */
	struct guard_entry *g;		/* the guardian's entry (the parasite's, if one) */
};

struct parasite_ctl {
	pid_t pid;
	struct user_regs_struct regs;	/* as seized: put back by parasite_cure */
	uint64_t sigmask;		/* as seized */
	unsigned long remote;		/* parasite mapping in the task */
	size_t size;
	void *local;			/* the same mapping in cryo */
	struct parasite_area *area;	/* local view of the shared area */
	unsigned long remote_area;
	unsigned long remote_stack_top;
	int pipe_rd;			/* page pipe read end, in cryo */
	size_t pipe_size;
	bool pipe_open;			/* INIT ran: cure closes the pipe */
	bool crashed;			/* parasite died on a signal */
	struct code_word code;		/* the gadget; its entry also tells of the parasite's mapping */
	struct guard *g;		/* the command's guardian, or NULL */
	struct guard_entry *g_regs;	/* the leader's registers and mask, as seized */
};

/*
 * Inject into a task in a ptrace stop. exec_addr: the start of a private
 * executable mapping of the task, whose first code word is borrowed for
 * cryo's syscalls until the cure (0: found in its maps). Every change is
 * journaled for g, the command's guardian, if any. Returns NULL on error
 * (logged; the task is left as it was).
 */
struct parasite_ctl *parasite_infect(pid_t pid, unsigned long exec_addr, size_t pipe_size, struct guard *g);
int parasite_cmd(struct parasite_ctl *ctl, enum parasite_cmd cmd);
/*
 * Where the page pipe's bytes go: move takes up to max bytes from the pipe
 * (as splice(2) with SPLICE_F_NONBLOCK: -1 and EAGAIN when it is empty);
 * begin and end, if set, frame each chunk (end gets its crc32c).
 */
struct page_sink {
	int (*begin)(void *arg, uint32_t len);
	ssize_t (*move)(void *arg, int pipe_fd, size_t max);
	int (*end)(void *arg, uint32_t crc);
	void *arg;
	const char *name;		/* for errors */
};
/* a file: spliced at its offset */
struct page_sink page_sink_fd(int *fd, const char *name);
/* vmsplice the chunks through the page pipe into sink; fills chunks[i].crc */
int parasite_dump_pages(struct parasite_ctl *ctl, struct parasite_chunk *chunks, unsigned nr,
			const struct page_sink *sink);
/*
 * Per-thread state no /proc file or ptrace request gives (sigaltstack,
 * clear_child_tid address): the syscalls are run in thread tid itself, at
 * the parasite's syscall instruction, with the parasite area (the task's
 * threads share it) as their buffer. The thread is left as it was.
 */
int parasite_thread_state(struct parasite_ctl *ctl, pid_t tid, struct parasite_thread_state *st);
/* One syscall run by the leader at the parasite's syscall instruction: 0 and *ret, or -EIO. */
int parasite_syscall(struct parasite_ctl *ctl, long nr, unsigned long a1, unsigned long a2,
		     unsigned long a3, unsigned long a4, long *ret);
/*
 * Unregister (reg false) or register again (reg true) the leader's rseq
 * area (ptr, len, sig), by a syscall in the leader. While the parasite
 * runs there the kernel would write the CPU number into that area, in
 * memory being dumped, whenever the thread is moved or preempted.
 */
int parasite_rseq(struct parasite_ctl *ctl, uint64_t ptr, uint32_t len, uint32_t sig, bool reg);
/* Remove the parasite and put registers and signal mask back. Frees ctl. */
int parasite_cure(struct parasite_ctl *ctl);

/*
 * A task fenced in: every thread of it sent to a borrowed code word, into
 * pause() with every signal blocked, its registers and mask kept here and
 * in the guardian's journal (g). Should cryo die while the task holds what
 * it must not see (a TCP connection in repair mode), it runs none of its
 * own code before the guardian has put that back, and then its registers.
 * Unfenced, its threads are as they were. 0 or -errno (logged; not fenced).
 */
struct fence {
	struct code_word code;
	struct fence_thread {
		pid_t tid;
		struct user_regs_struct regs;
		uint64_t mask;
		struct guard_entry *g;
	} *t;
	int nr;
};
int task_fence(struct fence *f, pid_t pid, const pid_t *tids, int nr, unsigned long exec_addr, struct guard *g);
/* its threads as they were (nothing if not fenced): 0, or -EIO */
int task_unfence(struct fence *f);

/*
 * Copies of cryo's fds[0..nr) into task pid, a process outside any tree
 * (the parent a tree is restored under, who takes the masters of its
 * terminals): out[i] the number it got (close-on-exec). The task is seized
 * for it and left as it was. 0, or -errno (logged; it got none of them).
 */
int task_give_fds(pid_t pid, const int *fds, int nr, int *out, struct guard *g);

#endif
