/*
 * The cryo command line. Options follow CRIU's where the two overlap, so
 * that people and tools used to CRIU feel at home:
 *
 *	cryo dump -t PID -D DIR [--leave-running] [--shell-job] [--prev-images-dir P] [-o LOG] [-v]
 *	cryo pre-dump -t PID -D DIR [--prev-images-dir P]
 *	cryo page-server --port P [--address A] -D DIR --secret-file F [--once]
 *	cryo migrate -t PID|--cgroup DIR --to HOST:PORT --secret-file F [--mode precopy] [--json]
 *	cryo migrate-agent --port P [--address A] -D DIR --secret-file F
 *	cryo restore -D DIR [-d] [--shell-job] [--pidfile FILE]
 *	cryo check
 *	cryo show PATH
 */
#define LOG_PREFIX "cli: "
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cryo.h"
#include "log.h"
#include "util.h"

static void usage(FILE *f)
{
	fprintf(f,
"Usage: cryo COMMAND [OPTIONS]\n"
"\n"
"Commands:\n"
"  dump -t PID -D DIR     checkpoint process PID and its tree into image directory DIR;\n"
"                         a container (PID: its init as the host sees it) is frozen\n"
"                         through its cgroup and dumped with its namespaces\n"
"  pre-dump -t PID -D DIR copy the tree's memory while it runs on, and track what\n"
"                         it writes from now on; a later pre-dump or dump with\n"
"                         --prev-images-dir DIR saves only the pages written since\n"
"  restore -D DIR         restore the process saved in DIR\n"
"  page-server --port P -D DIR --secret-file F\n"
"                         receive the images of (pre-)dumps made with --page-server\n"
"                         into DIR/<their images dir's name>/\n"
"  migrate -t PID --to HOST:PORT --secret-file F\n"
"                         move the tree (or --cgroup DIR: the container) live to the\n"
"                         cryo migrate-agent at HOST:PORT: pre-copy rounds, then a\n"
"                         short freeze; the source is killed only once the target\n"
"                         runs it, and resumes if anything fails before that\n"
"  migrate-agent --port P -D DIR --secret-file F\n"
"                         receive migrations into DIR and restore them here\n"
"  check                  probe the kernel features cryo needs\n"
"  show PATH              print an image file or directory as JSON\n"
"\n"
"Options:\n"
"  -t, --tree PID         the process to dump\n"
"      --cgroup DIR       dump: the tree in this cgroup directory (a container's)\n"
"      --tcp-established  dump: established TCP connections too (TCP repair)\n"
"      --prev-images-dir P  (pre-)dump: build on the pre-dump in P (relative to -D,\n"
"                         as in CRIU): its pages unchanged since are linked, not copied\n"
"      --page-server HOST:PORT  (pre-)dump: stream the images to a page server (the\n"
"                         pages straight from the task, never stored here)\n"
"      --compress         with --page-server: zlib on the wire\n"
"      --secret-file F    the page server's shared secret (both ends)\n"
"      --address A, --port P  page-server: where to listen\n"
"      --once             page-server, migrate-agent: exit after one complete session\n"
"      --to HOST:PORT     migrate: the target's migrate-agent\n"
"      --mode M           migrate: precopy (the default), postcopy (the tree moves at\n"
"                         once, its memory follows) or hybrid (pre-copy rounds,\n"
"                         then post-copy for what is still dirty)\n"
"      --max-rounds N     migrate: at most N pre-copy rounds (default 8)\n"
"      --dirty-limit MIB  migrate: freeze once a round has no more than this to\n"
"                         send (default 16)\n"
"      --json             migrate: the summary as JSON on stdout\n"
"  -D, --images-dir DIR   image directory (default: .)\n"
"  -W, --work-dir DIR     where -o and --pidfile paths are relative to (default: -D)\n"
"  -o, --log-file FILE    write a full debug log to FILE\n"
"  -v[NUM]                more output on stderr (-v, -vv, ... or -v4)\n"
"  -R, --leave-running    dump: resume the process instead of killing it\n"
"  -j, --shell-job        the process belongs to a shell session (terminal, session\n"
"                         and group outside the dump); restore it into cryo's\n"
"  -d, --restore-detached restore: return once the process runs (default: wait\n"
"                         for it and exit with its status)\n"
"      --pidfile FILE     restore: write the restored pid to FILE\n"
"      --lazy-pages       restore: start the tree before its memory is in; a helper\n"
"                         process fills it in the background through userfaultfd\n"
"                         and serves each page the tree touches first (post-copy)\n"
"      --lazy-rate MIB    with --lazy-pages: fill at most MIB MiB/s in the background\n"
"      --auto-dedup       restore: free the pages images (and their chain's) as\n"
"                         they are read: less memory and faster on tmpfs, but the\n"
"                         images cannot be restored again\n"
"      --feature NAME     check: probe one feature (exit 0 if it works)\n"
"  -V, --version          print the version\n"
"  -h, --help             this help\n");
}

int open_images_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("cannot open image directory %s", path);
	return fd;
}

/* -o and --pidfile are relative to the work dir, as in CRIU */
static char *work_path(const struct cryo_opts *o, const char *p)
{
	const char *dir = o->work_dir ? o->work_dir : o->images_dir;
	char *out;

	if (!p || p[0] == '/' || !strcmp(p, "-"))
		return p ? xstrdup(p) : NULL;
	if (asprintf(&out, "%s/%s", dir, p) < 0)
		return NULL;
	return out;
}

enum { OPT_PIDFILE = 1000, OPT_FEATURE, OPT_CGROUP, OPT_TCP_ESTABLISHED, OPT_PREV_IMAGES_DIR, OPT_PAGE_SERVER,
       OPT_COMPRESS, OPT_SECRET_FILE, OPT_ADDRESS, OPT_PORT, OPT_ONCE,
       OPT_TO, OPT_MODE, OPT_MAX_ROUNDS, OPT_DIRTY_LIMIT, OPT_JSON, OPT_LAZY_PAGES, OPT_LAZY_RATE,
       OPT_LAZY_SOCK, OPT_AUTO_DEDUP };

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "tree", required_argument, NULL, 't' },
		{ "images-dir", required_argument, NULL, 'D' },
		{ "work-dir", required_argument, NULL, 'W' },
		{ "log-file", required_argument, NULL, 'o' },
		{ "verbosity", optional_argument, NULL, 'v' },
		{ "leave-running", no_argument, NULL, 'R' },
		{ "shell-job", no_argument, NULL, 'j' },
		{ "restore-detached", no_argument, NULL, 'd' },
		{ "pidfile", required_argument, NULL, OPT_PIDFILE },
		{ "feature", required_argument, NULL, OPT_FEATURE },
		{ "cgroup", required_argument, NULL, OPT_CGROUP },
		{ "tcp-established", no_argument, NULL, OPT_TCP_ESTABLISHED },
		{ "prev-images-dir", required_argument, NULL, OPT_PREV_IMAGES_DIR },
		{ "page-server", required_argument, NULL, OPT_PAGE_SERVER },
		{ "compress", no_argument, NULL, OPT_COMPRESS },
		{ "secret-file", required_argument, NULL, OPT_SECRET_FILE },
		{ "address", required_argument, NULL, OPT_ADDRESS },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "to", required_argument, NULL, OPT_TO },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "max-rounds", required_argument, NULL, OPT_MAX_ROUNDS },
		{ "dirty-limit", required_argument, NULL, OPT_DIRTY_LIMIT },
		{ "lazy-pages", no_argument, NULL, OPT_LAZY_PAGES },
		{ "lazy-rate", required_argument, NULL, OPT_LAZY_RATE },
		{ "lazy-sock", required_argument, NULL, OPT_LAZY_SOCK },
		{ "auto-dedup", no_argument, NULL, OPT_AUTO_DEDUP },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cryo_opts o = { .images_dir = ".", .verbosity = LOG_WARN, .lazy_sock = -1 };
	_cleanup_free_ char *log_path = NULL, *pidfile = NULL;
	int c, ret;

	while ((c = getopt_long(argc, argv, "t:D:W:o:v::RjdVh", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			o.pid = atoi(optarg);
			if (o.pid <= 0) {
				fprintf(stderr, "cryo: -t needs a process id, not '%s'\n", optarg);
				return 1;
			}
			break;
		case 'D':
			o.images_dir = optarg;
			break;
		case 'W':
			o.work_dir = optarg;
			break;
		case 'o':
			o.log_file = optarg;
			break;
		case 'v':
			if (!optarg)
				o.verbosity++;
			else if (optarg[0] == 'v')
				o.verbosity += 1 + strspn(optarg, "v");
			else
				o.verbosity = atoi(optarg);
			break;
		case 'R':
			o.leave_running = true;
			break;
		case 'j':
			o.shell_job = true;
			break;
		case 'd':
			o.detach = true;
			break;
		case OPT_PIDFILE:
			o.pidfile = optarg;
			break;
		case OPT_FEATURE:
			o.feature = optarg;
			break;
		case OPT_CGROUP:
			o.cgroup = optarg;
			break;
		case OPT_TCP_ESTABLISHED:
			o.tcp_established = true;
			break;
		case OPT_PREV_IMAGES_DIR:
			o.prev_images_dir = optarg;
			break;
		case OPT_PAGE_SERVER:
			o.page_server = optarg;
			break;
		case OPT_COMPRESS:
			o.compress = true;
			break;
		case OPT_SECRET_FILE:
			o.secret_file = optarg;
			break;
		case OPT_ADDRESS:
			o.address = optarg;
			break;
		case OPT_PORT:
			o.port = optarg;
			break;
		case OPT_ONCE:
			o.once = true;
			break;
		case OPT_TO:
			o.to = optarg;
			break;
		case OPT_MODE:
			o.mode = optarg;
			break;
		case OPT_MAX_ROUNDS:
			o.max_rounds = atoi(optarg);
			break;
		case OPT_DIRTY_LIMIT:
			o.dirty_limit_mib = atoi(optarg);
			break;
		case OPT_JSON:
			o.json = true;
			break;
		case OPT_LAZY_PAGES:
			o.lazy_pages = true;
			break;
		case OPT_LAZY_RATE:
			o.lazy_rate_mib = atoi(optarg);
			break;
		case OPT_LAZY_SOCK:
			o.lazy_sock = atoi(optarg);
			break;
		case OPT_AUTO_DEDUP:
			o.auto_dedup = true;
			break;
		case 'V':
			printf("Version: %s\n", CRYO_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 1;
	}
	o.command = argv[optind++];
	if (o.verbosity > LOG_DEBUG)
		o.verbosity = LOG_DEBUG;

	/* dump creates its directory (before the log file goes into it) */
	if ((!strcmp(o.command, "dump") || !strcmp(o.command, "pre-dump") ||
	     !strcmp(o.command, "page-server") || !strcmp(o.command, "migrate-agent")) && mkdir(o.images_dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "cryo: cannot create image directory %s: %s\n", o.images_dir, strerror(errno));
		return 1;
	}
	log_path = work_path(&o, o.log_file);
	pidfile = work_path(&o, o.pidfile);
	o.pidfile = pidfile;
	if (log_init(o.verbosity, log_path))
		return 1;
	pr_debug("cryo %s: %s", CRYO_VERSION, o.command);

	if (!strcmp(o.command, "dump"))
		ret = cmd_dump(&o);
	else if (!strcmp(o.command, "pre-dump"))
		ret = cmd_pre_dump(&o);
	else if (!strcmp(o.command, "page-server"))
		ret = cmd_page_server(&o);
	else if (!strcmp(o.command, "migrate-agent"))
		ret = cmd_migrate_agent(&o);
	else if (!strcmp(o.command, "migrate"))
		ret = cmd_migrate(&o);
	else if (!strcmp(o.command, "restore"))
		ret = cmd_restore(&o);
	else if (!strcmp(o.command, "check"))
		ret = cmd_check(&o, argc - optind, argv + optind);
	else if (!strcmp(o.command, "show"))
		ret = cmd_show(&o, argc - optind, argv + optind);
	else {
		fprintf(stderr, "cryo: unknown command '%s' (try cryo --help)\n", o.command);
		ret = 1;
	}
	log_fini();
	return ret;
}
