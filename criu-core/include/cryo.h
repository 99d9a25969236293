/* Command-line options and the subcommand entry points. */
#ifndef CRYO_H
#define CRYO_H

#include <stdbool.h>
#include <sys/types.h>

#define CRYO_VERSION "0.1"

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
	bool auto_dedup;		/* restore --auto-dedup: free the pages images as they are read */
};

/* open the image directory (-D), logging why not; returns an fd or -errno */
int open_images_dir(const char *path);

int cmd_check(struct cryo_opts *o, int argc, char **argv);
int cmd_show(struct cryo_opts *o, int argc, char **argv);
int cmd_dump(struct cryo_opts *o);
int cmd_pre_dump(struct cryo_opts *o);
int cmd_page_server(struct cryo_opts *o);
int cmd_restore(struct cryo_opts *o);
int cmd_migrate(struct cryo_opts *o);
int cmd_migrate_agent(struct cryo_opts *o);

#endif
