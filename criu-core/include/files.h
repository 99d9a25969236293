/*
 * File descriptors. files.c walks a task's fd table, recognizes shared open
 * file descriptions and dispatches each one to the module of its kind
 * through struct fd_kind_ops; on restore it opens each description once
 * and installs it at every fd number that had it.
 */
#ifndef CRYO_FILES_H
#define CRYO_FILES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "image.h"

struct cryo_opts;
struct dump_ctx;
struct restore_ctx;
struct rst_task;

/* what files.c learned about one fd before handing it to its kind */
struct fd_parms {
	pid_t pid;
	int fd;			/* number in the task */
	int lfd;		/* cryo's reference to the same file (pidfd_getfd) */
	struct stat st;
	unsigned flags;		/* open(2) flags of the description, no O_CLOEXEC */
	bool cloexec;
	uint64_t pos;
	const char *link;	/* readlink of /proc/PID/fd/N */
	const char *fdinfo;	/* the text of /proc/PID/fdinfo/N */
};

struct fd_kind_ops {
	FdKind kind;
	const char *name;
	/* does this kind handle the fd? */
	bool (*match)(const struct fd_parms *p);
	/* fill the kind's part of fe */
	int (*dump)(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe);
	/* optional: every task's fds are collected; last checks before the images are written */
	int (*dump_done)(struct dump_ctx *ctx);
	/*
	 * optional: the names and paths of fe (of this kind) through the door
	 * (validate.h), before the restore makes anything; no side effect
	 */
	int (*validate)(const FileEntry *fe, const char *where);
	/* optional: before any description is opened (e.g. make every object of the kind) */
	int (*prepare)(struct restore_ctx *ctx);
	/* optional: true if fe can only be opened once the tree's processes exist */
	bool (*needs_tree)(const FileEntry *fe);
	/*
	 * open the description; returns an fd (any number) or -errno, logged.
	 * In cryo before the tree is forked, or with needs_tree in task pid.
	 */
	int (*open)(struct restore_ctx *ctx, pid_t pid, int fd, const FileEntry *fe);
	/* optional: every description the root opens is open (e.g. both ends of a connection) */
	int (*open_done)(struct restore_ctx *ctx);
	/* optional: in the task, once its fds are all installed */
	int (*task_done)(struct restore_ctx *ctx, struct rst_task *t);
	/*
	 * optional: the name --inherit-fd gives the file (CRIU's: pipe:[INO],
	 * a path); 0 if it has one
	 */
	int (*key)(const FileEntry *fe, char *buf, size_t len);
	/* optional: the tree has its files; drop what the kind kept */
	void (*restore_done)(struct restore_ctx *ctx);
};

extern const struct fd_kind_ops reg_fd_ops;
extern const struct fd_kind_ops chr_fd_ops;
extern const struct fd_kind_ops tty_fd_ops;
extern const struct fd_kind_ops pipe_fd_ops;
extern const struct fd_kind_ops eventfd_fd_ops;
extern const struct fd_kind_ops signalfd_fd_ops;
extern const struct fd_kind_ops timerfd_fd_ops;
extern const struct fd_kind_ops epoll_fd_ops;
extern const struct fd_kind_ops inotify_fd_ops;
extern const struct fd_kind_ops pidfd_fd_ops;
extern const struct fd_kind_ops unix_sk_fd_ops;
extern const struct fd_kind_ops inet_sk_fd_ops;
extern const struct fd_kind_ops mq_fd_ops;
extern const struct fd_kind_ops netlink_sk_fd_ops;
extern const struct fd_kind_ops packet_sk_fd_ops;
extern const struct fd_kind_ops pty_fd_ops;

/*
 * dump: fe (its kind and part filled) as the next file description, with
 * cryo's reference lfd to it (kept, closed with the rest), held by no fd
 * of the tree (a pty only a mount binds); gives fe its id
 */
int files_add_entry(struct dump_ctx *ctx, FileEntry *fe, int lfd, const struct stat *st);
/* restore: are the --inherit-fd options well formed, and are their fds cryo's? */
int files_check_inherit(const struct cryo_opts *o);
/* the fd --inherit-fd gives cryo for key, or -1 */
int files_inherited_key(const struct cryo_opts *o, const char *key);
/* the anon_inode kind of fd p, e.g. "[eventfd]" or "inotify" */
bool fd_is_anon(const struct fd_parms *p, const char *what);
/* the value after "key" in fdinfo text, or NULL */
const char *fdinfo_field(const char *fdinfo, const char *key);
/*
 * Restore: a file of the tree by its path (flags as open(2) takes them;
 * those that would make or truncate a file are dropped, and those
 * openat2(2) refuses that open(2) ignores), resolved by the door in the
 * root of the calling process: a
 * container's root once the restore pivoted into it (its absolute symlinks
 * resolved inside it); for a process restored on the host, the host's
 * files, which are its own by design (README: trust model). Never through
 * a magic link (/proc/PID/fd/N). An fd, or -errno logged naming what.
 */
int files_open_path(const char *path, int flags, const char *what);
/* in cryo during the restore: its fd for file id, or -1 */
int files_get_fd(struct restore_ctx *ctx, uint32_t id);
const FileEntry *files_find(struct restore_ctx *ctx, uint32_t id);

#endif
