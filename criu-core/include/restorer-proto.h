/*
 * What cryo hands to the restorer blob. Shared by cryo and the blob: fixed
 * size types only; pointers are absolute addresses inside the restorer
 * area, which is mapped at the same address in cryo's child and in the
 * restored task (it is the same process).
 *
 * The restorer area, placed in a hole of both the target's layout and the
 * child's current one:
 *
 *	[ blob | struct restorer_args + arrays | stack | scratch for vdso/vvar ]
 *
 * The premapped VMAs sit in a second reserved range, also such a hole.
 */
#ifndef CRYO_RESTORER_PROTO_H
#define CRYO_RESTORER_PROTO_H

#include <stdint.h>

#include "parasite-proto.h"	/* struct parasite_ksigaction, parasite_itimer */

#define RESTORER_STACK_SIZE	(128u << 10)
#define RESTORER_MAX_SPECIAL	4
#define RESTORER_NR_RLIMITS	16
#define RESTORER_THREAD_STACK	(16u << 10)	/* each thread but the leader */

struct rst_vma {
	uint64_t start, end;	/* where it goes */
	uint64_t premap;	/* where it is now */
	uint32_t prot;
	uint32_t madv;		/* VMA_MADV_* applied after the move */
	uint64_t anon_name;	/* NUL-terminated name for PR_SET_VMA, or 0 */
	uint32_t lazy;		/* registered with the task's userfaultfd: its pages come later */
	uint32_t pad;
};

/* vdso/vvar: the child's own, moved to where the dumped task had them */
struct rst_special {
	uint64_t cur;		/* address in the child now */
	uint64_t size;
	uint64_t dst;		/* target address; 0: drop it */
	char name[16];
};

struct rst_mm_map {		/* struct prctl_mm_map */
	uint64_t start_code, end_code, start_data, end_data;
	uint64_t start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

struct rst_siginfo {
	int32_t tid;		/* the thread's queue; 0: the process-wide one */
	int32_t sig;
	uint8_t info[128];
};

struct rst_seccomp_filter {
	uint64_t flags;
	uint64_t insns;		/* struct sock_filter[] */
	uint32_t len;		/* number of instructions */
	uint32_t pad;
};

/* what each thread sets on itself */
struct rst_thread {
	int32_t tid;
	int32_t host_tid;			/* outside its pid namespace, or 0 */
	int32_t altstack_flags;
	int32_t pad;
	uint64_t altstack_sp, altstack_size;
	uint64_t clear_tid;			/* set_tid_address */
	uint64_t rseq_ptr;
	uint32_t rseq_len, rseq_sig;
	uint64_t stack_top;			/* its restorer stack (not the leader's) */
	char comm[16];
};

struct rst_creds {
	uint32_t uid[4], gid[4];	/* real, effective, saved, fs */
	uint32_t nr_groups;
	uint32_t securebits;
	uint64_t groups;		/* uint32_t[] */
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
};

struct restorer_args {
	int32_t pid;
	int32_t status_fd;	/* errors are written here; closed on success */
	uint64_t task_size;

	uint64_t area_start, area_len;		/* the restorer area */
	uint64_t premap_start, premap_len;	/* the premap reservation */
	uint64_t scratch;			/* room for the specials */

	uint32_t nr_vmas;
	uint32_t nr_specials;
	uint64_t vmas;				/* struct rst_vma[] */
	struct rst_special specials[RESTORER_MAX_SPECIAL];

	struct rst_mm_map mm;
	uint32_t personality;
	uint32_t umask;

	struct parasite_ksigaction sa[64];
	uint32_t nr_pending;
	uint32_t nr_threads;
	uint64_t threads;			/* struct rst_thread[], the leader first */
	uint32_t threads_ready;			/* futex word: threads done setting up */
	uint32_t pad0;
	uint64_t pending;			/* struct rst_siginfo[] */
	struct parasite_itimer itimer[3];
	struct { uint64_t cur, max; } rlim[RESTORER_NR_RLIMITS];

	struct rst_creds creds;
	int32_t dumpable, pdeath_sig, no_new_privs, child_subreaper, thp_disable;
	int32_t seccomp_mode;
	uint64_t timerslack_ns;
	uint32_t nr_seccomp;
	uint32_t pad;
	uint64_t seccomp;			/* struct rst_seccomp_filter[], oldest first */

	/* post-copy: the features asked of the task's userfaultfd, and its fd (-1: none) */
	uint64_t uffd_features;
	int32_t uffd;
	int32_t pad1;
};

#endif
