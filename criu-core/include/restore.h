/* The restore side: context and per-task state shared by the restore modules. */
#ifndef CRYO_RESTORE_H
#define CRYO_RESTORE_H

#include <stdbool.h>
#include <sys/types.h>

#include "cryo.h"
#include "image.h"
#include "kerndat.h"
#include "restorer-proto.h"
#include "stats.h"
#include "util.h"

struct rst_shared;
struct rst_pipe;
struct rst_unix;
struct rst_pty;

/*
 * Building the restorer's area in the child: a bump allocator over the
 * space after struct restorer_args.
 */
struct rst_area {
	char *base;			/* == address in the restored task */
	size_t len, used;
	struct restorer_args *args;
};

struct rst_task {
	pid_t pid;			/* in the tree's pid namespace */
	pid_t host_pid;			/* as cryo sees it */
	size_t index;			/* in ctx->tasks */
	struct rst_task *parent;	/* NULL for the root */
	bool zombie;			/* only its pstree entry exists */
	bool helper;			/* (a zombie too) leads a group whose leader is gone, then is reaped */
	bool before_setsid;		/* forked before its parent's setsid: born in its parent's old session */
	pid_t born_sid;
	bool traced;
	struct guard_entry *g_kill;	/* the guardian kills it should cryo die before the tree runs */
	int status[2];			/* its errors, then EOF when its restorer is done */
	int sync[2];			/* cryo says "go" once it traces the task */
	pid_t *tids;			/* its threads once taken over, the leader first */
	/* its restorer area and premapped memory, which its children inherit */
	uint64_t area_start, area_len, premap_start, premap_len;
	struct rst_area ra;		/* the arguments in the area */
	uint64_t stack_top;
	struct rst_vma *premapped;
	size_t nr_premapped;
	PstreeEntry *pstree;
	PstreeEntry *own_pstree;	/* a helper's, made up */
	CoreEntry *core;
	MmEntry *mm;
	PagemapEntry **pagemap;
	size_t nr_pagemap;
	struct chain *chain;		/* the previous dumps, if pages are left to them */
	int uffd;			/* post-copy: its userfaultfd's number in the task, or -1 */
	FdEntry **fds;
	size_t nr_fds;
	/* mem.c, in the task: its pages filled from the images, and those kept from its parent (stats) */
	uint64_t pages_restored, pages_inherited;
};

/* a memfd recreated for the VMAs that map it */
struct rst_memfd {
	uint32_t id;
	int fd;
	uint32_t seals;			/* added once everything is mapped */
};

struct restore_ctx {
	const struct cryo_opts *opts;
	struct kerndat kd;
	int dirfd;
	InventoryEntry *inv;
	FileEntry **files;
	size_t nr_files;
	int *file_fds;			/* cryo's open file for each of files[], inherited by the tasks */
	int files_base;			/* above every fd number of every task */
	int files_top;			/* above the files cryo opened */
	struct rst_pipe *pipes;		/* files-pipe.c: the pipes made so far */
	size_t nr_pipes;
	struct rst_pty *ptys;		/* pty.c: the tree's pseudo-terminals */
	int pty_sock[2];		/* pty.c: orphans' new masters, from the root to cryo; or -1 */
	size_t nr_ptys;
	struct rst_unix *unix_sks;	/* sk-unix.c: the unix sockets, made before the tree */
	uint32_t *tcp_repairing;	/* sk-inet.c: files of connections still in repair mode */
	size_t nr_tcp_repairing;
	uint32_t *tcp_listeners;	/* sk-inet.c: files of listeners whose queues are to fill */
	size_t nr_tcp_listeners;
	size_t nr_unix_sks;
	struct rst_task **tasks;	/* pstree.img order: parents first, [0] the root */
	size_t nr_tasks;
	struct rst_shared *shared;	/* barriers and restorer areas, shared with the tasks */
	int cryo_pidfd;			/* the restoring tasks give up when cryo is gone */
	int fg_tty;			/* terminal given to a restored shell job, or -1 */
	struct rst_memfd *memfds;
	size_t nr_memfds;
	NsEntry *ns;			/* ns.img: NULL if the tree has no namespace of its own */
	CgroupEntry **cgroups;		/* cgroup.c */
	size_t nr_cgroups;
	char **cg_made;			/* the cgroup directories cryo made, by index */
	char **cg_dumped;		/* the paths of cgroups[] as dumped (before --cgroup-root) */
	NetEntry *net;			/* net.c */
	int net_ext_fd;			/* the caller's network namespace (ns->net_external), or -1 */
	MountEntry **mounts;		/* mnt.c */
	size_t nr_mounts;
	char mnt_stage[64];		/* where the root builds the container's root */
	struct img_preopened pre_imgs;	/* a user namespace's: images its tasks read, opened by cryo */
	struct arena arena;		/* messages read from the images */
	struct restore_stats stats;	/* stats-restore */
};

void *rst_area_alloc(struct rst_area *ra, size_t size);

/* pstree.c: read and plan the tree; sessions and groups in each task */
int pstree_read(struct restore_ctx *ctx);
void pstree_free_task(struct rst_task *t);
int pstree_set_session(struct restore_ctx *ctx, struct rst_task *t);
int pstree_join_group(struct restore_ctx *ctx, struct rst_task *t);
/* mem.c: map and fill every VMA in the premap reservation */
size_t mem_premap_size(const struct rst_task *t);
/* post-copy: does v get its pages later, through userfaultfd? */
bool mem_vma_lazy(const VmaEntry *v);
/* post-copy: must the page at page be filled at once all the same (a thread's rseq area)? */
bool mem_page_eager(const struct rst_task *const *tasks, size_t nr, uint64_t page);
/* post-copy: the [start, end) pairs of t's VMAs the restorer registers; their number */
uint32_t mem_lazy_vmas(const struct restore_ctx *ctx, const struct rst_task *t, uint64_t **out);
size_t mem_args_size(const struct rst_task *t);
int mem_premap(struct restore_ctx *ctx, struct rst_task *t, struct rst_area *ra,
	       unsigned long premap_start);
int mem_prepare_specials(struct rst_task *t, struct restorer_args *a, unsigned long scratch,
			 size_t *scratch_len);
int mem_exe_fd(struct restore_ctx *ctx, struct rst_task *t);
/* memfd.c: cryo creates the memfds of memfds.img, the tasks map them by id */
int memfd_restore(struct restore_ctx *ctx);
int memfd_get(struct restore_ctx *ctx, uint32_t id);
int memfd_seal(struct restore_ctx *ctx);
void memfd_close_all(struct restore_ctx *ctx);
/* files.c: the root opens every file once; each task installs its fds from those */
int files_plan(struct restore_ctx *ctx);
int files_open_all(struct restore_ctx *ctx);
int files_set_owners(struct restore_ctx *ctx);
void files_close_all(struct restore_ctx *ctx);
int files_restore(struct restore_ctx *ctx, struct rst_task *t, const int *keep_fds, int nr_keep);
/* task.c: fill the non-memory part of the restorer args */
size_t task_args_size(const struct rst_task *t);
int task_prepare_args(struct restore_ctx *ctx, struct rst_task *t, struct rst_area *ra);
/* tty.c: a shell job that was in the foreground gets cryo's terminal's foreground */
void tty_give_foreground(struct restore_ctx *ctx, const struct rst_task *t);
void tty_take_back_foreground(struct restore_ctx *ctx);
/* pty.c: a session leader's controlling terminal, and its foreground group */
int pty_take_ctty(struct restore_ctx *ctx, const struct rst_task *t);
int pty_set_foreground(struct restore_ctx *ctx, const struct rst_task *t);
/* pty.c: ptys with their master outside (orphan_pts_master), and those a mount binds */
int pty_plan(struct restore_ctx *ctx);
int pty_make_bound(struct restore_ctx *ctx, const MountEntry *m, const char *path);
int pty_hand_over_orphans(struct restore_ctx *ctx);

#endif
