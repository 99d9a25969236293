/* Command-line options and the subcommand entry points. */
#ifndef CRYO_H
#define CRYO_H

#include <stdbool.h>
#include <sys/types.h>

#define CRYO_VERSION "0.1"
/* the CRIU release whose interfaces (command line, RPC) cryo answers for */
#define CRIU_COMPAT_MAJOR 3
#define CRIU_COMPAT_MINOR 19
/* the page server's secret when CRIU's clients, who cannot pass one, drive cryo */
#define DEFAULT_SECRET_FILE "/etc/cryo/page-server.secret"

struct guard;

/* an option given more than once */
struct str_list {
	const char **v;
	size_t n;
};

/* CRIU's --manage-cgroups modes */
enum cg_mode { CG_MODE_DEFAULT, CG_MODE_IGNORE, CG_MODE_NONE, CG_MODE_PROPS, CG_MODE_SOFT, CG_MODE_FULL, CG_MODE_STRICT };

struct cryo_opts {
	const char *command;
	pid_t pid;			/* -t/--tree */
	const char *cgroup;		/* --cgroup: dump the tree in this cgroup directory */
	const char *images_dir;		/* -D/--images-dir (default ".") */
	const char *work_dir;		/* -W/--work-dir (default: images dir) */
	const char *log_file;		/* -o/--log-file, relative to the work dir */
	const char *pidfile;		/* --pidfile, relative to the work dir */
	int verbosity;			/* 0..4; -v adds one, -vN sets N */
	bool leave_running;		/* --leave-running */
	bool shell_job;			/* -j/--shell-job */
	bool orphan_pts_master;		/* RPC: a pty whose master is the caller's is dumped; on restore
					   its new master goes to the caller (orphan-pts-master) */
	bool detach;			/* -d/--restore-detached */
	bool tcp_established;		/* --tcp-established: dump established TCP connections */
	const char *feature;		/* check --feature NAME */
	const char *prev_images_dir;	/* --prev-images-dir: the dump to build on (relative to -D) */
	const char *page_server;	/* (pre-)dump --page-server HOST:PORT: send the images there */
	bool compress;			/* --compress: zlib on the wire */
	const char *secret_file;	/* --secret-file: the page server's shared secret */
	const char *address;		/* page-server --address */
	const char *port;		/* page-server --port */
	bool once;			/* page-server, migrate-agent --once: exit after one complete session */
	const char *to;			/* migrate --to HOST:PORT: the target's agent */
	const char *mode;		/* migrate --mode: precopy (default), postcopy, hybrid */
	int max_rounds;			/* migrate --max-rounds: pre-copy rounds at most (0: default) */
	int dirty_limit_mib;		/* migrate --dirty-limit: freeze when a round sends no more (0: default) */
	bool json;			/* migrate --json: the summary as JSON */
	bool lazy_pages;		/* restore --lazy-pages: run before the memory is in (post-copy) */
	int lazy_rate_mib;		/* restore --lazy-rate: background fill in MiB/s at most (0: no limit) */
	int lazy_sock;			/* restore --lazy-sock FD: hand the userfaultfds to the agent (-1: no) */
	int hangup_fd;			/* RPC: the client's socket, readable once it is gone; or -1 */
	bool auto_dedup;		/* restore --auto-dedup: free the pages images as they are read */
	bool rst_sibling;		/* restore --restore-sibling: the root a child of cryo's parent */
	const char *lsm_profile;	/* restore --lsm-profile apparmor:NAME|selinux:CTX (LXC's) */
	const char *root;		/* restore --root: the container's root directory */
	struct str_list action_scripts;	/* --action-script: run at each notify point (notify.h) */
	struct str_list inherit_fds;	/* --inherit-fd fd[N]:KEY: restore the file KEY as cryo's fd N */
	struct str_list externals;	/* --external KIND[ID]:KEY: objects outside the tree */
	struct str_list ext_mounts;	/* --ext-mount-map KEY:VAL (dump: mountpoint:KEY; restore: KEY:path) */
	struct str_list cg_roots;	/* --cgroup-root [CTRL:]PATH: where the tree's cgroups go */
	enum cg_mode manage_cgroups;	/* --manage-cgroups[=MODE] */
	const char *freeze_cgroup;	/* --freeze-cgroup DIR: the freezer to hold the tree with */
	bool file_locks;		/* --file-locks */
	bool link_remap;		/* --link-remap */
	bool ext_unix_sk;		/* --ext-unix-sk */
	bool tcp_skip_in_flight;	/* --tcp-skip-in-flight */
	bool evasive_devices;		/* --evasive-devices */
	bool display_stats;		/* --display-stats: print what stats-dump (stats-restore) holds */
	unsigned empty_ns;		/* --empty-ns: CLONE_NEW* of namespaces left empty (net) */
	/* the RPC client (rpc.c), told each notify point; non-zero stops there */
	int (*notify_fn)(void *arg, const char *point, pid_t pid, int fd);
	void *notify_arg;
	pid_t restored_pid;		/* out: the restored root, as cryo sees it */
	struct guard *guard;		/* the command's guardian (guard.h), or NULL */
};

/* options parsed (CRIU's) that cryo cannot honour yet: an error naming the first */
int refuse_unsupported(const struct cryo_opts *o);
/* $CRYO_SECRET_FILE, else DEFAULT_SECRET_FILE if it exists, else NULL */
const char *default_secret_file(void);
/* open the image directory (-D), logging why not; returns an fd or -errno */
int open_images_dir(const char *path);

int cmd_check(struct cryo_opts *o, int argc, char **argv);
int cmd_show(struct cryo_opts *o, int argc, char **argv);
int cmd_dump(struct cryo_opts *o);
int cmd_pre_dump(struct cryo_opts *o);
int cmd_page_server(struct cryo_opts *o);
/*
 * A page server in a child process for one complete session (RPC
 * PAGE_SERVER): listening (on the port the kernel picks if o->port is "0")
 * when this returns 0; close_in_child is closed in it.
 */
int page_server_spawn(struct cryo_opts *o, int close_in_child, pid_t *pid, int *port);
int cmd_restore(struct cryo_opts *o);
int cmd_migrate(struct cryo_opts *o);
int cmd_migrate_agent(struct cryo_opts *o);
/* the restore side of a lazy dump (pagesrv/server.c) */
int cmd_lazy_pages(struct cryo_opts *o);
int cmd_swrk(struct cryo_opts *o, int argc, char **argv);
/* append to an option list */
int str_list_add(struct str_list *l, const char *s);

#endif
