/* Readers for /proc/PID files. Each returns 0 or a negative errno (logged). */
#ifndef CRYO_PROC_H
#define CRYO_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_stat {
	char comm[64];
	char state;
	pid_t ppid, pgid, sid;
	int tty_nr;
	pid_t tpgid;		/* foreground group of its terminal, or -1 */
	int num_threads;
	uint64_t start_code, end_code, start_stack;
	uint64_t start_data, end_data, start_brk;
	uint64_t arg_start, arg_end, env_start, env_end;
	int exit_code;
};

struct proc_status {
	unsigned umask;
	int threads;
	pid_t tracer;
	pid_t ns_pid;		/* in its innermost pid namespace (NSpid) */
	int ns_levels;		/* pid namespaces from cryo's down to its own */
	uint32_t uid[4], gid[4];	/* real, effective, saved, fs */
	uint32_t *groups;		/* malloc'ed */
	int nr_groups;
	uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
	uint64_t sig_blk, sig_ign, sig_cgt, sig_pnd, shd_pnd;
	int seccomp;
	int seccomp_filters;
	bool no_new_privs;
};

#define PROC_NR_RLIMITS 16
struct proc_rlimit {
	uint64_t cur, max;
};

/* One line of /proc/PID/smaps with the parts cryo uses. */
struct proc_vma {
	uint64_t start, end, pgoff;
	unsigned prot;
	bool shared;
	unsigned dev_major, dev_minor;
	uint64_t ino;
	char path[4096];	/* empty for anonymous mappings */
	char vmflags[128];	/* the two-letter VmFlags codes, space separated */
};

int proc_parse_stat(pid_t pid, struct proc_stat *st);
int proc_parse_status(pid_t pid, struct proc_status *st);
void proc_status_free(struct proc_status *st);
int proc_read_limits(pid_t pid, struct proc_rlimit lim[PROC_NR_RLIMITS]);
/* Calls cb for every VMA of pid, in address order; stops on a non-zero return. */
int proc_for_each_vma(pid_t pid, int (*cb)(const struct proc_vma *v, void *arg), void *arg);
bool vmflag_has(const struct proc_vma *v, const char *code);
/* Read a binary /proc/PID/<name> file (e.g. auxv) */
int proc_read(pid_t pid, const char *name, char **buf, size_t *len);
int proc_readlink(pid_t pid, const char *name, char **out);
/* fdinfo: pos and flags (octal in the file) of one fd; its whole text if text */
int proc_fdinfo(pid_t pid, int fd, uint64_t *pos, unsigned *flags, char **text);
/* List the TIDs of pid's threads (sorted, leader first). */
int proc_list_threads(pid_t pid, pid_t **tids, int *nr);
/* List the children of every thread of pid. */
int proc_list_children(pid_t pid, pid_t **kids, int *nr);
/*
 * root and every process below it, each stopped (SIGSTOP) before its
 * children are listed, so that none forks meanwhile: *out, root first
 * (to free). 0, or -ENOMEM with what was listed in *out.
 */
int proc_stop_tree(pid_t root, pid_t **out, size_t *n);
/* List numeric entries of /proc/PID/fd (sorted). */
int proc_list_fds(pid_t pid, int **fds, int *nr);

#endif
