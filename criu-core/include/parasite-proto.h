/*
 * The dumper <-> parasite protocol. Shared by cryo and the parasite blob, so
 * it uses fixed-size types only.
 *
 * The parasite lives in one shared anonymous mapping, mapped in the target
 * by an injected mmap and in the dumper through /proc/PID/map_files:
 *
 *	[ blob code/data/bss | struct parasite_area | stack ]
 *
 * To run a command the dumper fills the area, points the stopped thread's
 * registers at the blob entry (rdi = area, rsp = stack top) and resumes it.
 * The parasite executes the command, stores ret, sets done = 1, wakes the
 * futex on done and then sits in pause(). The dumper waits for done, then
 * interrupts the thread (PTRACE_INTERRUPT) to take it back. No signal is
 * ever raised in the target, so its signal state stays untouched.
 */
#ifndef CRYO_PARASITE_PROTO_H
#define CRYO_PARASITE_PROTO_H

#include <stdint.h>

#define PARASITE_STACK_SIZE	(64u << 10)
#define PARASITE_MAX_CHUNKS	1024u
#define PARASITE_MSG_LEN	256u

enum parasite_cmd {
	PARASITE_CMD_INIT = 1,		/* create the page pipe */
	PARASITE_CMD_DUMP_MISC,		/* signal, timer and prctl state */
	PARASITE_CMD_DUMP_PAGES,	/* vmsplice chunks into the page pipe */
};

struct parasite_ksigaction {
	uint64_t handler;
	uint64_t flags;
	uint64_t restorer;
	uint64_t mask;
};

struct parasite_itimer {
	uint64_t interval_sec, interval_usec;
	uint64_t value_sec, value_usec;
};

struct parasite_misc {
	struct parasite_ksigaction sa[64];	/* index: signal - 1 */
	int32_t dumpable;
	int32_t pdeath_sig;
	int32_t no_new_privs;
	int32_t child_subreaper;
	int32_t thp_disable;
	int32_t securebits;
	uint64_t timerslack_ns;
	uint64_t brk;
	struct parasite_itimer itimer[3];
};

#define PARASITE_CHUNK_UNREADABLE	1u	/* mprotect PROT_READ around the splice */

struct parasite_chunk {
	uint64_t addr;
	uint64_t len;
	uint32_t flags;		/* PARASITE_CHUNK_* */
	uint32_t prot;		/* original protection, restored afterwards */
	uint32_t crc;		/* out: crc32c of the bytes */
	uint32_t pad;
};

/* per-thread state, filled by syscalls cryo runs in each thread (infect.c) */
struct parasite_thread_state {
	uint64_t ss_sp;			/* stack_t, as the kernel lays it out */
	int32_t ss_flags;
	int32_t pad;
	uint64_t ss_size;
	uint64_t clear_tid;		/* PR_GET_TID_ADDRESS */
};

struct parasite_area {
	uint32_t cmd;
	int32_t ret;			/* 0 or -errno */
	uint32_t done;			/* futex word */
	uint32_t pad;
	char msg[PARASITE_MSG_LEN];	/* what failed, for the dumper's error */
	/* INIT */
	uint32_t pipe_size;		/* in: requested F_SETPIPE_SZ */
	int32_t pipe_rd, pipe_wr;	/* out: fds in the target */
	uint32_t nr_chunks;		/* DUMP_PAGES in */
	struct parasite_thread_state thread;
	union {
		struct parasite_misc misc;
		struct parasite_chunk chunks[PARASITE_MAX_CHUNKS];
	};
};

#endif
