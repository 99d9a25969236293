/*
 * Kernel features, probed once (kerndat_probe) into one struct that every
 * module consults instead of probing again. `cryo check` prints it.
 */
#ifndef CRYO_KERNDAT_H
#define CRYO_KERNDAT_H

#include <stdbool.h>
#include <stdint.h>

enum kd_feature {
	KD_PTRACE_SEIZE,	/* PTRACE_SEIZE + PTRACE_INTERRUPT */
	KD_PTRACE_SIGMASK,	/* PTRACE_GETSIGMASK / SETSIGMASK */
	KD_PTRACE_RSEQ,		/* PTRACE_GET_RSEQ_CONFIGURATION */
	KD_PTRACE_SECCOMP,	/* PTRACE_SECCOMP_GET_FILTER */
	KD_PIDFD_GETFD,		/* pidfd_open + pidfd_getfd */
	KD_KCMP,		/* kcmp(KCMP_FILE) */
	KD_PR_SET_MM_MAP,	/* prctl(PR_SET_MM, PR_SET_MM_MAP) */
	KD_CLONE3_SET_TID,	/* clone3() with set_tid */
	KD_MAP_FILES,		/* /proc/PID/map_files */
	KD_PAGEMAP_SCAN,	/* PAGEMAP_SCAN ioctl */
	KD_UFFD,		/* userfaultfd */
	KD_UFFD_WP_ASYNC,	/* UFFD_FEATURE_WP_ASYNC */
	KD_SOFT_DIRTY,		/* pagemap soft-dirty bit */
	KD_TCP_REPAIR,		/* TCP_REPAIR socket option */
	KD_NS_USER,
	KD_NS_PID,
	KD_NS_MNT,
	KD_NS_NET,
	KD_NS_IPC,
	KD_NS_UTS,
	KD_NS_CGROUP,
	KD_NS_TIME,
	KD_FREEZER_V1,		/* cgroup v1 freezer hierarchy */
	KD_FREEZE_V2,		/* cgroup v2 cgroup.freeze */
	KD_SSE42_CRC,		/* crc32 instruction for image checksums */
	KD__MAX
};

struct kd_result {
	bool ok;
	char detail[96];	/* why not, or what was found */
};

struct kerndat {
	bool probed;
	bool basics;			/* task_size, xsave_size, pipe_max_size */
	struct kd_result f[KD__MAX];
	unsigned long task_size;	/* top of the user address space */
	unsigned xsave_size;		/* bytes of NT_X86_XSTATE */
	unsigned long pipe_max_size;
	char v1_freezer_mnt[128];
	char v2_mnt[128];
};

struct kd_info {
	const char *name;
	const char *what;
	bool required;		/* dump/restore cannot work without it */
};

extern const struct kd_info kd_info[KD__MAX];

/* Probe every feature (idempotent). Returns 0; failures are in f[]. */
int kerndat_probe(struct kerndat *kd);
/* Only the cheap facts dump and restore need: sizes and limits. */
void kerndat_basics(struct kerndat *kd);

/*
 * CRIU's names for what its clients ask about (mem_dirty_track, mem_track,
 * uffd, uffd-noncoop, lazy_pages): 1 if cryo can do it here, 0 if not, -1
 * for a name it does not know (check.c)
 */
int check_criu_feature(const struct kerndat *kd, const char *name);

#endif
