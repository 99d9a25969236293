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
#include <sched.h>
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
"  lazy-pages --page-server HOST:PORT -D DIR --secret-file F\n"
"                         the restore side of a dump --lazy-pages at HOST:PORT: a\n"
"                         restore --lazy-pages of DIR hands it its tasks, and it\n"
"                         fills their memory, asking the dump for what it kept\n"
"  migrate-agent --port P -D DIR --secret-file F\n"
"                         receive migrations into DIR and restore them here\n"
"  swrk FD                serve CRIU's RPC on socket FD (what runc, crun and\n"
"                         Podman run as \"criu swrk 3\"): see README, Container runtimes\n"
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
"      --address A, --port P  page-server, dump --lazy-pages: where to listen\n"
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
"  -W, --work-dir DIR     where -o and --pidfile paths are relative to, and where\n"
"                         stats-dump and stats-restore go (default: -D)\n"
"      --display-stats    (pre-)dump, restore: print the statistics (CRIU's)\n"
"  -o, --log-file FILE    write a full debug log to FILE\n"
"  -v[NUM]                more output on stderr (-v, -vv, ... or -v4)\n"
"  -R, --leave-running    dump: resume the process instead of killing it\n"
"  -j, --shell-job        the process belongs to a shell session (terminal, session\n"
"                         and group outside the dump); restore it into cryo's\n"
"  -d, --restore-detached restore: return once the process runs (default: wait\n"
"                         for it and exit with its status)\n"
"      --pidfile FILE     restore: write the restored pid to FILE\n"
"      --lazy-pages       restore: start the tree before its memory is in; a helper\n"
"                         process (or cryo lazy-pages, if it waits in the work\n"
"                         directory) fills it in the background through\n"
"                         userfaultfd, each page the tree touches first at once;\n"
"                         dump: keep the memory in the stopped tree and serve it\n"
"                         on --address/--port to cryo lazy-pages, then kill the\n"
"                         tree (it runs on if the transfer fails) (post-copy)\n"
"      --lazy-rate MIB    with --lazy-pages: fill at most MIB MiB/s in the background\n"
"      --auto-dedup       restore: free the pages images (and their chain's) as\n"
"                         they are read: less memory and faster on tmpfs, but the\n"
"                         images cannot be restored again\n"
"      --feature NAME     check: probe one feature (exit 0 if it works)\n"
"      --root DIR         restore: the container's root directory (a bind mount)\n"
"      --restore-sibling  restore: the root a child of cryo's parent, not of cryo\n"
"                         (who takes the new masters of its terminals' ptys\n"
"                         that were outside: LXC's monitor)\n"
"      --lsm-profile L:P  restore: LXC's; refused where that LSM is active\n"
"      --action-script S  run S (sh -c) at each hook point, CRTOOLS_SCRIPT_ACTION\n"
"                         naming it (pre-dump, post-dump, post-restore, ...)\n"
"      --inherit-fd fd[N]:KEY  restore: the file KEY (pipe:[INODE], a path) is\n"
"                         cryo's fd N, e.g. a runtime's new stdio for the old\n"
"      --ext-mount-map A:B  dump: the mount at A is external, key B; restore: bind\n"
"                         B where the mount of key A was\n"
"      --manage-cgroups[=MODE]  restore: soft (limits only of the cgroups cryo\n"
"                         makes), full, strict (they must not exist), ignore\n"
"      --cgroup-root [CTRL:]PATH  restore: put the tree's cgroups at PATH\n"
"      --freeze-cgroup DIR  dump: the freezer cgroup to hold the tree still (its own)\n"
"      --external veth[IF]:HOST[@BR]  restore: the container's veth IF gets its\n"
"                         host end named HOST, in bridge BR (in none without)\n"
"      --external net[INODE]:KEY  dump: the network namespace is the caller's;\n"
"                         restore: join the one --inherit-fd gives for KEY\n"
"      --external tty[RDEV:DEV]  dump: that terminal (hex device numbers) is the\n"
"                         caller's; restore: --inherit-fd fd[N]:tty[RDEV:DEV] gives it\n"
"      --enable-fs FS     LXC's; a mount cryo cannot make is refused all the same\n"
"      --empty-ns net     the network namespace's devices are the caller's: not\n"
"                         dumped, not made again (loopback only)\n"
"      --file-locks, --link-remap, --track-mem, --skip-in-flight, --evasive-devices\n"
"                         CRIU's, for what cryo does anyway\n"
"  -V, --version          print the version\n"
"  -h, --help             this help\n");
}

/* tty[RDEV:DEV], hex: a terminal of the caller's (CRIU's --external tty, LXC's console) */
static bool is_tty_key(const char *e)
{
	size_t n = strncmp(e, "tty[", 4) ? 0 : strspn(e + 4, "0123456789abcdef");

	return n && e[4 + n] == ':' && strspn(e + 5 + n, "0123456789abcdef") &&
	       !strcmp(e + 5 + n + strspn(e + 5 + n, "0123456789abcdef"), "]");
}

int refuse_unsupported(const struct cryo_opts *o)
{
	bool restore = o->command && !strcmp(o->command, "restore");

	for (size_t i = 0; i < o->externals.n; i++) {
		const char *e = o->externals.v[i];

		if (!strncmp(e, "veth[", 5) && strstr(e, "]:") > e + 5 && strstr(e, "]:")[2]) {
			if (restore)
				continue;
			pr_err("--external %s: names the host end of a veth for a restore; a dump has no use for it", e);
			return -EINVAL;
		}
		if (is_tty_key(e))
			continue;
		/*
		 * At restore a plain KEY:VALUE names no object of the images, and
		 * CRIU lets it be: LXC 5 passes its console's path so
		 * (--external console:/dev/pts/N) for a network of type empty.
		 */
		if (restore && strchr(e, ':') && strcspn(e, "[") > (size_t)(strchr(e, ':') - e)) {
			pr_debug("--external %s: names nothing a restore uses", e);
			continue;
		}
		if (strncmp(e, "net[", 4) || !strstr(e, "]:")) {
			pr_err("--external %s: not supported yet (net[INODE]:KEY, the network namespace, tty[RDEV:DEV], a terminal, and at restore veth[IFNAME]:HOSTNAME[@BRIDGE])",
			       e);
			return -ENOTSUP;
		}
	}
	/*
	 * LXC passes its config's profile (Debian's default: apparmor:generated)
	 * whether or not the host runs that LSM; with none there is nothing to
	 * put the tasks under, else cryo cannot yet.
	 */
	if (o->lsm_profile && (!strncmp(o->lsm_profile, "apparmor:", 9) || !strncmp(o->lsm_profile, "selinux:", 8))) {
		bool aa = o->lsm_profile[0] == 'a';

		if (!access(aa ? "/sys/kernel/security/apparmor" : "/sys/fs/selinux/enforce", F_OK)) {
			pr_err("--lsm-profile %s: cryo does not put the restored tasks under a %s profile yet", o->lsm_profile,
			       aa ? "AppArmor" : "SELinux");
			return -ENOTSUP;
		}
		pr_info("--lsm-profile %s: %s is not active here, nothing to apply", o->lsm_profile,
			aa ? "AppArmor" : "SELinux");
	} else if (o->lsm_profile) {
		pr_err("--lsm-profile %s: not of the form apparmor:NAME or selinux:CONTEXT", o->lsm_profile);
		return -EINVAL;
	}
	if (o->empty_ns & ~CLONE_NEWNET) {
		pr_err("--empty-ns %#x: only the network namespace (net) can be left for the caller to fill",
		       o->empty_ns);
		return -ENOTSUP;
	}
	return 0;
}

const char *default_secret_file(void)
{
	const char *env = getenv("CRYO_SECRET_FILE");

	if (env && env[0])
		return env;
	return access(DEFAULT_SECRET_FILE, F_OK) ? NULL : DEFAULT_SECRET_FILE;
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
       OPT_LAZY_SOCK, OPT_AUTO_DEDUP, OPT_ROOT, OPT_ACTION_SCRIPT, OPT_INHERIT_FD, OPT_EXTERNAL, OPT_EXT_MOUNT_MAP,
       OPT_MANAGE_CGROUPS, OPT_FREEZE_CGROUP, OPT_CGROUP_ROOT, OPT_TRACK_MEM, OPT_FILE_LOCKS, OPT_LINK_REMAP,
       OPT_EXT_UNIX_SK, OPT_SKIP_IN_FLIGHT, OPT_EVASIVE_DEVICES, OPT_EMPTY_NS, OPT_RESTORE_SIBLING, OPT_DISPLAY_STATS,
       OPT_LSM_PROFILE, OPT_IGNORED,
       OPT_IGNORED_ARG };

int str_list_add(struct str_list *l, const char *s)
{
	const char **v = xrealloc_array(l->v, l->n + 1, sizeof(*v));

	if (!v)
		return -ENOMEM;
	v[l->n++] = s;
	l->v = v;
	return 0;
}

static const char *const cg_mode_names[] = {
	[CG_MODE_IGNORE] = "ignore", [CG_MODE_NONE] = "none", [CG_MODE_PROPS] = "props",
	[CG_MODE_SOFT] = "soft", [CG_MODE_FULL] = "full", [CG_MODE_STRICT] = "strict",
};

static int parse_cg_mode(const char *s, enum cg_mode *out)
{
	if (!s) {
		*out = CG_MODE_DEFAULT;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cg_mode_names); i++)
		if (cg_mode_names[i] && !strcmp(s, cg_mode_names[i])) {
			*out = i;
			return 0;
		}
	fprintf(stderr, "cryo: --manage-cgroups: unknown mode '%s' (ignore, none, props, soft, full or strict)\n", s);
	return -EINVAL;
}

/* CRIU's --empty-ns takes namespace names; only net may be left for the caller to fill */
static int parse_empty_ns(const char *s, unsigned *out)
{
	if (!strcmp(s, "net")) {
		*out |= CLONE_NEWNET;
		return 0;
	}
	fprintf(stderr, "cryo: --empty-ns: only 'net' is supported, not '%s'\n", s);
	return -EINVAL;
}

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
		{ "page-server", optional_argument, NULL, OPT_PAGE_SERVER },
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
		{ "root", required_argument, NULL, OPT_ROOT },
		{ "action-script", required_argument, NULL, OPT_ACTION_SCRIPT },
		{ "inherit-fd", required_argument, NULL, OPT_INHERIT_FD },
		{ "external", required_argument, NULL, OPT_EXTERNAL },
		{ "ext-mount-map", required_argument, NULL, OPT_EXT_MOUNT_MAP },
		{ "manage-cgroups", optional_argument, NULL, OPT_MANAGE_CGROUPS },
		{ "freeze-cgroup", required_argument, NULL, OPT_FREEZE_CGROUP },
		{ "cgroup-root", required_argument, NULL, OPT_CGROUP_ROOT },
		{ "track-mem", no_argument, NULL, OPT_TRACK_MEM },
		{ "file-locks", no_argument, NULL, OPT_FILE_LOCKS },
		{ "link-remap", no_argument, NULL, OPT_LINK_REMAP },
		{ "ext-unix-sk", no_argument, NULL, OPT_EXT_UNIX_SK },
		{ "tcp-skip-in-flight", no_argument, NULL, OPT_SKIP_IN_FLIGHT },
		{ "skip-in-flight", no_argument, NULL, OPT_SKIP_IN_FLIGHT },
		{ "evasive-devices", no_argument, NULL, OPT_EVASIVE_DEVICES },
		{ "empty-ns", required_argument, NULL, OPT_EMPTY_NS },
		{ "restore-sibling", no_argument, NULL, OPT_RESTORE_SIBLING },
		{ "display-stats", no_argument, NULL, OPT_DISPLAY_STATS },
		{ "lsm-profile", required_argument, NULL, OPT_LSM_PROFILE },
		/* CRIU's tuning knobs with nothing to tune here */
		{ "force-irmap", no_argument, NULL, OPT_IGNORED },
		{ "enable-external-masters", no_argument, NULL, OPT_IGNORED },
		{ "enable-external-sharing", no_argument, NULL, OPT_IGNORED },
		{ "ghost-limit", required_argument, NULL, OPT_IGNORED_ARG },
		/* LXC's: mounts of these types may be dumped; cryo still refuses one it cannot make, by name */
		{ "enable-fs", required_argument, NULL, OPT_IGNORED_ARG },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cryo_opts o = { .images_dir = ".", .verbosity = LOG_WARN, .lazy_sock = -1, .hangup_fd = -1 };
	_cleanup_free_ char *log_path = NULL, *pidfile = NULL, *ps_addr = NULL;
	int c, ret = 0;

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
			/* --page-server HOST:PORT, or CRIU's --page-server with --address and --port */
			if (!optarg && optind < argc && argv[optind][0] != '-' && strchr(argv[optind], ':'))
				optarg = argv[optind++];
			o.page_server = optarg ?: "";
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
		case OPT_ROOT:
			o.root = optarg;
			break;
		case OPT_ACTION_SCRIPT:
			ret = str_list_add(&o.action_scripts, optarg);
			break;
		case OPT_INHERIT_FD:
			ret = str_list_add(&o.inherit_fds, optarg);
			break;
		case OPT_EXTERNAL:
			ret = str_list_add(&o.externals, optarg);
			break;
		case OPT_EXT_MOUNT_MAP:
			ret = str_list_add(&o.ext_mounts, optarg);
			break;
		case OPT_CGROUP_ROOT:
			ret = str_list_add(&o.cg_roots, optarg);
			break;
		case OPT_MANAGE_CGROUPS:
			ret = parse_cg_mode(optarg, &o.manage_cgroups);
			if (!ret && !optarg)
				o.manage_cgroups = CG_MODE_SOFT;
			break;
		case OPT_FREEZE_CGROUP:
			o.freeze_cgroup = optarg;
			break;
		case OPT_FILE_LOCKS:
			o.file_locks = true;
			break;
		case OPT_LINK_REMAP:
			o.link_remap = true;
			break;
		case OPT_EXT_UNIX_SK:
			o.ext_unix_sk = true;
			break;
		case OPT_SKIP_IN_FLIGHT:
			o.tcp_skip_in_flight = true;
			break;
		case OPT_EVASIVE_DEVICES:
			o.evasive_devices = true;
			break;
		case OPT_EMPTY_NS:
			ret = parse_empty_ns(optarg, &o.empty_ns);
			break;
		case OPT_RESTORE_SIBLING:
			o.rst_sibling = true;
			break;
		case OPT_DISPLAY_STATS:
			o.display_stats = true;
			break;
		case OPT_LSM_PROFILE:
			o.lsm_profile = optarg;
			break;
		case OPT_TRACK_MEM:	/* pre-dumps always track */
		case OPT_IGNORED:
		case OPT_IGNORED_ARG:
			break;
		case 'V':
			/* CRIU's form, which LXC reads: the CRIU whose interfaces cryo speaks */
			printf("Version: %d.%d\nGitID: cryo-%s\n", CRIU_COMPAT_MAJOR, CRIU_COMPAT_MINOR, CRYO_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
		if (ret)
			return 1;
	}
	/* CRIU's --page-server (no value) with --address and --port */
	if (o.page_server && !o.page_server[0]) {
		if (!o.port) {
			fprintf(stderr, "cryo: --page-server needs HOST:PORT, or --address and --port\n");
			return 1;
		}
		if (asprintf(&ps_addr, "%s:%s", o.address ?: "127.0.0.1", o.port) < 0)
			return 1;
		o.page_server = ps_addr;
	}
	/* CRIU's clients cannot pass a secret: take it from the environment or /etc/cryo */
	if (!o.secret_file)
		o.secret_file = default_secret_file();
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
	else if (!strcmp(o.command, "lazy-pages"))
		ret = cmd_lazy_pages(&o);
	else if (!strcmp(o.command, "migrate"))
		ret = cmd_migrate(&o);
	else if (!strcmp(o.command, "restore"))
		ret = cmd_restore(&o);
	else if (!strcmp(o.command, "check"))
		ret = cmd_check(&o, argc - optind, argv + optind);
	else if (!strcmp(o.command, "swrk"))
		ret = cmd_swrk(&o, argc - optind, argv + optind);
	else if (!strcmp(o.command, "show"))
		ret = cmd_show(&o, argc - optind, argv + optind);
	else {
		fprintf(stderr, "cryo: unknown command '%s' (try cryo --help)\n", o.command);
		ret = 1;
	}
	log_fini();
	return ret;
}
