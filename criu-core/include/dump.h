/* The dump side: context and per-task state shared by the dump modules. */
#ifndef CRYO_DUMP_H
#define CRYO_DUMP_H

#include <stdbool.h>
#include <sys/types.h>

#include "cryo.h"
#include "image.h"
#include "infect.h"
#include "kerndat.h"
#include "proc.h"
#include "stats.h"
#include "util.h"

struct dump_task {
	pid_t pid;			/* as cryo sees it */
	pid_t vpid;			/* in the tree's pid namespace (pstree.img, image names) */
	pid_t *vtids;			/* the same for tids[] */
	pid_t ppid;			/* its parent in the tree; 0 for the root */
	pid_t born_sid;			/* the session it was born in, as far as the tree tells */
	uint32_t clone_flags;		/* CLONE_FILES, CLONE_FS: shared with its parent */
	bool zombie;			/* only its pstree entry is dumped */
	bool gone;			/* exited and reaped while the tree was seized */
	pid_t *tids;			/* every thread, the leader first */
	int nr_tids;
	struct proc_stat stat;
	struct proc_status status;
	bool seized;
	bool settled;			/* in its ptrace stop (attached in a frozen cgroup: not until thawed) */
	int group_stop;			/* stop signal if it was stopped */
	struct parasite_ctl *parasite;

	CoreEntry *core;
	MmEntry *mm;
	FdEntry **fds;
	size_t nr_fds;

	/* pages to dump, planned before the parasite goes in */
	struct parasite_chunk *chunks;
	size_t nr_chunks;
	/* pages left out (sorted): the parent's, shared copy-on-write
	 * (PE_PARENT), or unchanged since the previous dump (PE_IN_PREV) */
	struct page_run { uint64_t addr, len; uint32_t flags; } *ref_runs;
	size_t nr_ref_runs;
	struct track *track;		/* its dirty tracker, or NULL */
	int parked[4];			/* fds of trackers parked in it (its own, or inherited) */
	int nr_parked;
	struct chain *prev;		/* the previous dumps' pages, or NULL */
	bool lazy;			/* as ctx->lazy */
	uint64_t pages_sent;		/* --page-server: the bytes of its pages image streamed (0: none) */
	unsigned long exec_addr;	/* a private executable address */
	struct guard_entry *g_kill;	/* being killed after the dump: the guardian finishes it */
	struct fence fence;		/* fenced in while cryo holds its TCP connections in repair mode */
};

/* a memfd some VMA maps, dumped once */
struct dump_memfd {
	dev_t dev;
	ino_t ino;
	MemfdEntry *e;
};

/* one open file description seen in the dump */
struct dump_file {
	uint32_t id;
	int local_fd;			/* our reference to it (pidfd_getfd) */
	dev_t dev;
	ino_t ino;
};

/* a connection cryo holds in repair mode from its dump to inet_dump_finish */
struct tcp_held {
	int fd;
	int netns;			/* accepted by cryo from its listener's queue: the listener's, else -1 */
	const TcpPendingEntry *pending;	/* and what it is, to go back there */
	struct guard_entry *g;		/* the guardian takes it out of repair mode should cryo die */
};

struct dump_ctx {
	const struct cryo_opts *opts;
	bool pre_dump;			/* only pages, with the task running meanwhile */
	bool lazy;			/* post-copy: private anonymous pages stay in the tasks (PE_LAZY) */
	InventoryEntry *prev_inv;	/* --prev-images-dir: what it holds */
	struct ps_client *ps;		/* --page-server: where the images go */
	bool ps_shared;			/* ps is a migration's: not closed with the dump */
	pid_t root;			/* the tree's root */
	const char *ps_dir;		/* their directory there: the images dir's name */
	char ps_dir_buf[4096];
	struct kerndat kd;
	int dirfd;
	struct arena arena;		/* every protobuf message of the dump */
	struct dump_task **tasks;	/* the tree, parents before children; [0] the root */
	size_t nr_tasks;

	CgroupEntry **cg_nested;	/* cgroup.c: cgroups below the root's that tasks are in */
	size_t nr_cg_nested;
	struct dump_file *files;	/* file descriptions, by id - 1 */
	FileEntry **file_entries;
	size_t nr_files;

	struct dump_memfd *memfds;
	size_t nr_memfds;

	uint32_t ns_flags;		/* CLONE_NEW* of the namespaces the tree has of its own */
	struct id_map { uint32_t first, lower, count; } uid_map[16], gid_map[16];
	int nr_uid_map, nr_gid_map;	/* the tree's user namespace: 0, ids are cryo's */
	char *freezer;			/* the frozen cgroup's directory, while frozen */
	bool freezer_v2;		/* it is cgroup v2's (cgroup.freeze) */
	struct guard_entry *g_freezer;	/* the guardian thaws it should cryo die */
	bool freezer_found;		/* frozen before cryo came (a paused container): not cryo's to thaw */
	char *refreeze;			/* such a cgroup, thawed while its tasks are seized: frozen again before they go */
	bool refreeze_v2;
	struct guard_entry *g_refreeze;	/* the guardian freezes it again should cryo die */
	const char *net_ext_key;	/* the network namespace is the caller's: --external net[INODE]:KEY */
	bool net_ext_locked;		/* net-lock.c: its nftables lock is on */
	char **net_locked;		/* net.c: host veth ends taken down by the network lock */
	size_t nr_net_locked;
	struct guard_entry **g_net_locked;	/* for each, its guardian entry */
	struct tcp_held *tcp_held;	/* sk-inet.c: connections cryo holds in repair mode */
	size_t nr_tcp_held;
	/*
	 * sk-inet.c: TCP connections and listeners' queues, read in repair
	 * mode once every task's state is in and the tree is fenced in
	 * (inet_dump_done); each with cryo's own reference to its socket
	 */
	struct tcp_later {
		pid_t pid;
		int fd, lfd;
		InetSkEntry *e;		/* e->tcp, or its queue */
		uint32_t queued;	/* a listener's queued connections, or 0: a connection */
		char src[80], dst[80];
	} *tcp_later;
	size_t nr_tcp_later;
	bool fenced;			/* every seized task fenced in (dump_fence_tree) */
	struct dump_stats stats;	/* what the round measures (mem.c adds its part) */

	/* sk-unix.c: every unix socket sock_diag lists, read once in each network namespace */
	struct unix_sk_info *unix_sks;
	size_t nr_unix_sks;
	uint64_t *unix_netns;		/* the inodes of the network namespaces read */
	size_t nr_unix_netns;
};

/*
 * dump.c: every seized task fenced in (infect.h), until the tree is let go
 * or killed: before anything in it is changed that its own code must not
 * see should cryo die (a TCP connection put in repair mode)
 */
int dump_fence_tree(struct dump_ctx *ctx);

/* pstree.c */
struct dump_task *dump_find_task(struct dump_ctx *ctx, pid_t pid);
int pstree_check(struct dump_ctx *ctx, struct dump_task *t);
/* a group or session id as the tree's pid namespace knows it (cryo's if led from outside) */
pid_t pstree_tree_id(struct dump_ctx *ctx, pid_t id);
int pstree_write(struct dump_ctx *ctx);
/* mem.c */
int mem_collect(struct dump_ctx *ctx, struct dump_task *t);
int mem_dump_pages(struct dump_ctx *ctx, struct dump_task *t);
/* pre-dump: the pages mem_collect found, read while the task runs */
int mem_predump_pages(struct dump_ctx *ctx, struct dump_task *t);
/* manifest.img, the last image of a round: every image of the directory, and the pages streamed */
int mem_write_manifest(struct dump_ctx *ctx);
/* files.c */
int files_collect(struct dump_ctx *ctx, struct dump_task *t);
int files_write(struct dump_ctx *ctx);
int files_write_fds(struct dump_ctx *ctx, struct dump_task *t);
void files_release(struct dump_ctx *ctx);
/* sk-inet.c: TCP connections out of repair mode if their tasks run on; closed */
void inet_dump_finish(struct dump_ctx *ctx, bool resumed);
/* memfd.c */
bool memfd_is_mapping(const char *path);
/* the memfd VMA v maps: its data dumped the first time; *id for VmaEntry.memfd_id */
int memfd_dump_vma(struct dump_ctx *ctx, pid_t pid, const VmaEntry *v, uint32_t *id);
/* the same for a memfd or deleted file pid holds open at fd (link: its /proc link) */
int memfd_dump_fd(struct dump_ctx *ctx, pid_t pid, int fd, const char *link, uint32_t *id);
/* memfds and deleted files: files whose bytes go into the images */
bool memfd_handles(const char *path);
int memfd_write(struct dump_ctx *ctx);
/* track.c: is fd one of the trackers parked in t? */
static inline bool track_is_parked(const struct dump_task *t, int fd)
{
	for (int i = 0; i < t->nr_parked; i++)
		if (t->parked[i] == fd)
			return true;
	return false;
}

/* task.c */
int task_collect(struct dump_ctx *ctx, struct dump_task *t);
int task_collect_parasite(struct dump_ctx *ctx, struct dump_task *t);

#endif
