/*
 * Namespaces: which ones the dumped tree has of its own (its root's,
 * compared with cryo's), the pids inside its pid namespace, and the UTS
 * names. The mount tree is mnt.c's, the cgroups cgroup.c's.
 *
 * A container's tasks all share its namespaces; a task in other ones
 * (nested containers) is refused. In a user namespace, every uid and gid
 * the images hold is the one seen inside it.
 *
 * On restore cryo clones the root with the namespaces it needs (its pid 1
 * inside, its host pid outside), puts it into its cgroups, and the root
 * builds the rest in itself before it opens any file: the time namespace
 * with its offsets, the cgroup namespace, the UTS names, the IPC objects,
 * the mount tree, the loopback device.
 */
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/nsfs.h>

#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "ns.h"
#include "restore.h"
#include "util.h"
#include "validate.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static const struct {
	const char *name;
	uint32_t flag;
	bool supported;
} ns_kinds[] = {
	{ "user", CLONE_NEWUSER, true },
	{ "time", CLONE_NEWTIME, true },
	{ "pid", CLONE_NEWPID, true },
	{ "mnt", CLONE_NEWNS, true },
	{ "net", CLONE_NEWNET, true },
	{ "uts", CLONE_NEWUTS, true },
	{ "ipc", CLONE_NEWIPC, true },
	{ "cgroup", CLONE_NEWCGROUP, true },
};

static int ns_ino(pid_t pid, const char *name, ino_t *ino)
{
	char path[64];
	struct stat st;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, name);
	else
		snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	if (stat(path, &st))
		return pr_perror("cannot stat %s", path);
	*ino = st.st_ino;
	return 0;
}

/* ---------------------------------------------------------------- dump */

/* the tree's pids inside its own pid namespace, with a check that it is one */
static int collect_vpids(struct dump_ctx *ctx)
{
	int levels = 0;

	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct dump_task *t = ctx->tasks[i];
		struct proc_status st;
		int ret;

		t->vtids = calloc(t->zombie ? 1 : t->nr_tids, sizeof(*t->vtids));
		if (!t->vtids)
			return -ENOMEM;
		for (int k = 0; k < (t->zombie ? 1 : t->nr_tids); k++) {
			pid_t tid = t->zombie ? t->pid : t->tids[k];

			if (!(ctx->ns_flags & CLONE_NEWPID)) {
				t->vtids[k] = tid;
				continue;
			}
			if ((ret = proc_parse_status(tid, &st)))
				return ret;
			proc_status_free(&st);
			if (!levels)
				levels = st.ns_levels;
			if (st.ns_levels != levels) {
				pr_err("pid %d is in a pid namespace nested in its container's: not supported yet",
				       tid);
				return -ENOTSUP;
			}
			t->vtids[k] = st.ns_pid;
		}
		t->vpid = t->vtids[0];
	}
	if ((ctx->ns_flags & CLONE_NEWPID) && ctx->tasks[0]->vpid != 1) {
		pr_err("pid %d is pid %d in its pid namespace, not its init: dump the container from its init",
		       ctx->tasks[0]->pid, ctx->tasks[0]->vpid);
		return -ENOTSUP;
	}
	return 0;
}

static int read_map(pid_t pid, const char *name, struct id_map *m, int *nr)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *save = NULL;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	if ((ret = read_file(path, &buf, NULL))) {
		pr_err("pid %d: cannot read its %s: %s", pid, name, strerror(-ret));
		return ret;
	}
	*nr = 0;
	for (char *l = strtok_r(buf, "\n", &save); l && *nr < 16; l = strtok_r(NULL, "\n", &save))
		if (sscanf(l, "%u %u %u", &m[*nr].first, &m[*nr].lower, &m[*nr].count) == 3)
			(*nr)++;
	return 0;
}

static uint32_t map_id(const struct id_map *m, int nr, uint32_t id)
{
	if (!nr)
		return id;
	for (int i = 0; i < nr; i++)
		if (id >= m[i].lower && id - m[i].lower < m[i].count)
			return m[i].first + (id - m[i].lower);
	return 65534;	/* the overflow id, as the kernel shows it */
}

uint32_t ns_uid(const struct dump_ctx *ctx, uint32_t id)
{
	return map_id(ctx->uid_map, ctx->nr_uid_map, id);
}

uint32_t ns_gid(const struct dump_ctx *ctx, uint32_t id)
{
	return map_id(ctx->gid_map, ctx->nr_gid_map, id);
}

void ns_translate_creds(const struct dump_ctx *ctx, CredsEntry *c)
{
	c->uid = ns_uid(ctx, c->uid);
	c->euid = ns_uid(ctx, c->euid);
	c->suid = ns_uid(ctx, c->suid);
	c->fsuid = ns_uid(ctx, c->fsuid);
	c->gid = ns_gid(ctx, c->gid);
	c->egid = ns_gid(ctx, c->egid);
	c->sgid = ns_gid(ctx, c->sgid);
	c->fsgid = ns_gid(ctx, c->fsgid);
	for (size_t i = 0; i < c->n_groups; i++)
		c->groups[i] = ns_gid(ctx, c->groups[i]);
}

/* --external net[INODE]:KEY: the tree's network namespace (its inode its) is the caller's */
static int external_net(struct dump_ctx *ctx, ino_t its)
{
	const struct str_list *l = &ctx->opts->externals;

	for (size_t i = 0; i < l->n; i++) {
		char *end;
		unsigned long ino = strtoul(l->v[i] + 4, &end, 10);

		if (strncmp(l->v[i], "net[", 4) || strncmp(end, "]:", 2))
			continue;
		if (!(ctx->ns_flags & CLONE_NEWNET) || ino != its) {
			pr_err("--external %s: the tree's network namespace is net:[%lu]%s", l->v[i], (unsigned long)its,
			       ctx->ns_flags & CLONE_NEWNET ? "" : ", cryo's own");
			return -EINVAL;
		}
		ctx->net_ext_key = end + 2;
		pr_info("the network namespace net:[%lu] is external, key %s", ino, ctx->net_ext_key);
	}
	return 0;
}

int ns_collect(struct dump_ctx *ctx)
{
	pid_t root = ctx->tasks[0]->pid;

	for (size_t k = 0; k < ARRAY_SIZE(ns_kinds); k++) {
		ino_t mine, its;
		int ret;

		if ((ret = ns_ino(0, ns_kinds[k].name, &mine)) || (ret = ns_ino(root, ns_kinds[k].name, &its)))
			return ret;
		if (mine != its) {
			if (!ns_kinds[k].supported) {
				pr_err("pid %d is in a %s namespace of its own: not supported yet", root,
				       ns_kinds[k].name);
				return -ENOTSUP;
			}
			ctx->ns_flags |= ns_kinds[k].flag;
		}
		if (ns_kinds[k].flag == CLONE_NEWNET && (ret = external_net(ctx, its)))
			return ret;
		for (size_t i = 1; i < ctx->nr_tasks; i++) {
			const struct dump_task *t = ctx->tasks[i];
			ino_t other;

			if (t->zombie)
				continue;
			if ((ret = ns_ino(t->pid, ns_kinds[k].name, &other)))
				return ret;
			if (other != its) {
				pr_err("pid %d is in another %s namespace than its root pid %d: nested namespaces are not supported yet",
				       t->pid, ns_kinds[k].name, root);
				return -ENOTSUP;
			}
		}
	}
	if (ctx->ns_flags)
		pr_info("pid %d has namespaces of its own (%#x)", root, ctx->ns_flags);
	if (ctx->ns_flags & CLONE_NEWUSER) {
		int ret = read_map(root, "uid_map", ctx->uid_map, &ctx->nr_uid_map) ?:
			  read_map(root, "gid_map", ctx->gid_map, &ctx->nr_gid_map);

		if (ret)
			return ret;
	}
	return collect_vpids(ctx);
}

pid_t dump_vpid(struct dump_ctx *ctx, pid_t pid)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];

		for (int k = 0; k < (t->zombie ? 1 : t->nr_tids); k++)
			if ((t->zombie ? t->pid : t->tids[k]) == pid)
				return t->vtids[k];
	}
	return 0;
}

int ns_enter(pid_t pid, const char *name, int *saved)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	*saved = open(path, O_RDONLY | O_CLOEXEC);
	if (*saved < 0)
		return pr_perror("cannot open %s", path);
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, 0)) {
		int ret = pr_perror("cannot enter %s", path);

		if (fd >= 0)
			close(fd);
		close(*saved);
		*saved = -1;
		return ret;
	}
	close(fd);
	return 0;
}

int ns_leave(const char *name, int *saved)
{
	int ret = 0;

	if (*saved < 0)
		return 0;
	if (setns(*saved, 0))
		ret = pr_perror("cannot go back to cryo's %s namespace", name);
	close(*saved);
	*saved = -1;
	return ret;
}

/*
 * The pid namespace's last pid, which only a process in it can read: a
 * child of a helper that entered it. Being the newest there, its own pid P
 * says it: every pid from the last one up to P was taken, so a cursor at
 * P - 1 hands out the same next pid.
 */
static int dump_last_pid(pid_t root, NsEntry *e)
{
	char path[64];
	int fd, st, pfd[2];
	pid_t helper, got = 0;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", root);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pipe2(pfd, O_CLOEXEC)) {
		int ret = pr_perror("pid %d: cannot reach its pid namespace", root);

		if (fd >= 0)
			close(fd);
		return ret;
	}
	helper = fork();
	if (helper == 0) {
		pid_t kid;

		if (setns(fd, CLONE_NEWPID))
			_exit(1);
		kid = fork();
		if (kid == 0) {
			pid_t me = getpid();

			_exit(write(pfd[1], &me, sizeof(me)) == sizeof(me) ? 0 : 1);
		}
		_exit(kid > 0 && waitpid(kid, &st, 0) == kid && WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : 1);
	}
	close(fd);
	close(pfd[1]);
	if (helper > 0 && (read(pfd[0], &got, sizeof(got)) != sizeof(got)))
		got = 0;
	close(pfd[0]);
	if (helper > 0)
		waitpid(helper, &st, 0);
	if (got <= 1) {
		pr_err("pid %d: cannot learn the last pid of its pid namespace", root);
		return -EIO;
	}
	e->has_last_pid = true;
	e->last_pid = got - 1;
	return 0;
}

/* /proc/PID/timens_offsets: "monotonic S NS" and "boottime S NS" lines */
static int dump_time_offsets(pid_t pid, NsEntry *e)
{
	_cleanup_free_ char *buf = NULL;
	char path[64], *save = NULL;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/timens_offsets", pid);
	if ((ret = read_file(path, &buf, NULL))) {
		pr_err("pid %d: cannot read its time namespace offsets: %s", pid, strerror(-ret));
		return ret;
	}
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char clock[32];
		long long sec, nsec;

		if (sscanf(l, "%31s %lld %lld", clock, &sec, &nsec) != 3)
			continue;
		if (!strcmp(clock, "monotonic")) {
			e->has_monotonic_sec = e->has_monotonic_nsec = true;
			e->monotonic_sec = sec;
			e->monotonic_nsec = nsec;
		} else if (!strcmp(clock, "boottime")) {
			e->has_boottime_sec = e->has_boottime_nsec = true;
			e->boottime_sec = sec;
			e->boottime_nsec = nsec;
		}
	}
	return 0;
}

static int maps_to_entries(struct dump_ctx *ctx, const struct id_map *m, int nr, IdMapEntry ***out, size_t *n)
{
	*out = arena_array(&ctx->arena, IdMapEntry *, nr + 1);
	if (!*out)
		return -ENOMEM;
	for (int i = 0; i < nr; i++) {
		IdMapEntry *e = arena_new(&ctx->arena, IdMapEntry);

		if (!e)
			return -ENOMEM;
		id_map_entry__init(e);
		e->first = m[i].first;
		e->lower = m[i].lower;
		e->count = m[i].count;
		(*out)[i] = e;
	}
	*n = nr;
	return 0;
}

static int dump_maps(struct dump_ctx *ctx, NsEntry *e)
{
	if (!(ctx->ns_flags & CLONE_NEWUSER))
		return 0;
	return maps_to_entries(ctx, ctx->uid_map, ctx->nr_uid_map, &e->uid_map, &e->n_uid_map) ?:
	       maps_to_entries(ctx, ctx->gid_map, ctx->nr_gid_map, &e->gid_map, &e->n_gid_map);
}

int ns_dump(struct dump_ctx *ctx)
{
	NsEntry e = NS_ENTRY__INIT;
	struct utsname u;
	struct img *img;
	int saved = -1, ret = 0;

	if (!ctx->ns_flags)
		return 0;
	e.flags = ctx->ns_flags;
	if (ctx->ns_flags & CLONE_NEWUTS) {
		if ((ret = ns_enter(ctx->tasks[0]->pid, "uts", &saved)))
			return ret;
		if (uname(&u))
			ret = pr_perror("pid %d: cannot read its UTS names", ctx->tasks[0]->pid);
		ret = ns_leave("uts", &saved) ?: ret;
		if (ret)
			return ret;
		e.hostname = u.nodename;
		e.domainname = u.domainname;
	}
	if ((ctx->ns_flags & CLONE_NEWTIME) && (ret = dump_time_offsets(ctx->tasks[0]->pid, &e)))
		return ret;
	if ((ctx->ns_flags & CLONE_NEWPID) && (ret = dump_last_pid(ctx->tasks[0]->pid, &e)))
		return ret;
	if ((ret = dump_maps(ctx, &e)))
		return ret;
	e.net_external = (char *)ctx->net_ext_key;
	img = img_create(ctx->dirfd, IMG_NS, 0);
	if (!img)
		return -EIO;
	ret = img_write(img, &e.base);
	return img_close(img) ?: ret;
}

/* ------------------------------------------------------------- restore */

/* the caller's network namespace, given with --inherit-fd fd[N]:KEY */
static int external_net_fd(struct restore_ctx *ctx)
{
	const char *key = ctx->ns->net_external;
	int fd = files_inherited_key(ctx->opts, key);

	if (fd < 0) {
		pr_err("the tree's network namespace is external (key %s): give one with --inherit-fd fd[N]:%s",
		       key, key);
		return -ENOENT;
	}
	if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
		pr_err("--inherit-fd fd[%d]:%s: not a network namespace", fd, key);
		return -EINVAL;
	}
	ctx->net_ext_fd = fd;
	return 0;
}

int ns_read(struct restore_ctx *ctx)
{
	struct img *img = img_open(ctx->dirfd, IMG_NS, 0, true);
	ProtobufCMessage *m;
	int ret;

	if (!img)
		return errno == ENOENT ? 0 : -EIO;
	ret = img_read(img, &m);
	if (ret == 1 && img->nr_records != 1) {
		pr_err("ns.img: %lu records, where one is expected", (unsigned long)img->nr_records);
		img_free_msg(IMG_NS, m);
		ret = -EINVAL;
	}
	img_close(img);
	if (ret == 0) {
		pr_err("ns.img is empty");
		return -EINVAL;
	}
	if (ret < 0)
		return ret;
	ctx->ns = (NsEntry *)m;
	for (size_t k = 0; k < ARRAY_SIZE(ns_kinds); k++)
		if ((ctx->ns->flags & ns_kinds[k].flag) && !ns_kinds[k].supported) {
			pr_err("ns.img: a %s namespace, which this cryo cannot restore", ns_kinds[k].name);
			return -ENOTSUP;
		}
	return ctx->ns->net_external ? external_net_fd(ctx) : 0;
}

/* ns.img: the host and domain names (HOST_NAME_MAX), the key of an external network namespace */
int ns_validate_entry(const NsEntry *e, const char *where)
{
	return (e->hostname ? door_text(e->hostname, 64, "%s: hostname", where) : 0) ?:
	       (e->domainname ? door_text(e->domainname, 64, "%s: domainname", where) : 0) ?:
	       (e->net_external ? door_text(e->net_external, DOOR_PATH_MAX, "%s: net_external", where) : 0);
}

int ns_validate(const struct restore_ctx *ctx)
{
	return ctx->ns ? ns_validate_entry(ctx->ns, "ns.img record 0") : 0;
}

uint64_t ns_clone_flags(const struct restore_ctx *ctx)
{
	/*
	 * The cgroup namespace waits until the root is in its cgroups, the time
	 * namespace for its offsets. With a user namespace, the others made in
	 * the same clone are its own.
	 */
	uint64_t flags = ctx->ns ? ctx->ns->flags & (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET |
						     CLONE_NEWUTS | CLONE_NEWIPC) : 0;

	/* the caller's network namespace is joined instead (ns_restore_root) */
	return ctx->net_ext_fd >= 0 ? flags & ~CLONE_NEWNET : flags;
}

static int loopback_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (s < 0)
		return pr_perror("socket");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr))
			ret = pr_perror("cannot bring up the container's loopback device");
	}
	close(s);
	return ret;
}

/*
 * A time namespace takes its offsets before any task is in it: make it for
 * the children, set them, then step into it (the vDSO's data follows).
 */
static int restore_time(const NsEntry *e)
{
	char buf[128];
	int fd, n, ret = 0;

	if (unshare(CLONE_NEWTIME))
		return pr_perror("cannot make the container's time namespace");
	n = snprintf(buf, sizeof(buf), "monotonic %lld %lld\nboottime %lld %lld\n", (long long)e->monotonic_sec,
		     (long long)e->monotonic_nsec, (long long)e->boottime_sec, (long long)e->boottime_nsec);
	fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, buf, n) != n)
		ret = pr_perror("cannot set the time namespace offsets (monotonic %llds, boottime %llds)",
				(long long)e->monotonic_sec, (long long)e->boottime_sec);
	if (fd >= 0)
		close(fd);
	if (ret)
		return ret;
	fd = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWTIME))
		ret = pr_perror("cannot enter the container's time namespace");
	if (fd >= 0)
		close(fd);
	return ret;
}

/* in the pid namespace: clone3 with set_tid leaves the cursor where this puts it */
static int set_last_pid(uint32_t last)
{
	char buf[16];
	int n = snprintf(buf, sizeof(buf), "%u", last), fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	int ret = 0;

	if (fd < 0 || write(fd, buf, n) != n)
		ret = pr_perror("cannot set the pid namespace's last pid to %u", last);
	if (fd >= 0)
		close(fd);
	return ret;
}

static int write_map(pid_t pid, const char *name, IdMapEntry **m, size_t n)
{
	char path[64], buf[1024];
	int fd, len = 0, ret = 0;

	for (size_t i = 0; i < n && len < (int)sizeof(buf) - 40; i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", m[i]->first, m[i]->lower, m[i]->count);
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, buf, len) != len)
		ret = pr_perror("cannot write the container's %s (%.*s)", name, (int)strcspn(buf, "\n"), buf);
	if (fd >= 0)
		close(fd);
	return ret;
}

int ns_write_maps(struct restore_ctx *ctx, pid_t pid)
{
	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWUSER))
		return 0;
	return write_map(pid, "uid_map", ctx->ns->uid_map, ctx->ns->n_uid_map) ?:
	       write_map(pid, "gid_map", ctx->ns->gid_map, ctx->ns->n_gid_map);
}

int ns_restore_root(struct restore_ctx *ctx)
{
	const NsEntry *e = ctx->ns;
	int ret;

	if (!e)
		return 0;
	if (ctx->net_ext_fd >= 0 && setns(ctx->net_ext_fd, CLONE_NEWNET))
		return pr_perror("cannot join the network namespace given for key %s%s", e->net_external,
				 e->flags & CLONE_NEWUSER ? " (from the container's user namespace)" : "");
	/* cryo wrote the maps: become the container's root (its caps stay, ids now mapped) */
	if ((e->flags & CLONE_NEWUSER) && (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0)))
		return pr_perror("cannot become root in the container's user namespace");
	/* changing ids made it undumpable: its /proc files would be the host root's */
	if ((e->flags & CLONE_NEWUSER) && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		return pr_perror("PR_SET_DUMPABLE");
	if ((e->flags & CLONE_NEWTIME) && (ret = restore_time(e)))
		return ret;
	if (e->has_last_pid && (ret = set_last_pid(e->last_pid)))
		return ret;
	if ((e->flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP))
		return pr_perror("cannot make the container's cgroup namespace");
	if (e->flags & CLONE_NEWUTS) {
		if (e->hostname && sethostname(e->hostname, strlen(e->hostname)))
			return pr_perror("cannot set the host name %s", e->hostname);
		if (e->domainname && setdomainname(e->domainname, strlen(e->domainname)))
			return pr_perror("cannot set the domain name %s", e->domainname);
	}
	if ((ret = ipc_restore(ctx)))
		return ret;
	if ((e->flags & CLONE_NEWNS) && (ret = mnt_restore(ctx)))
		return ret;
	if ((e->flags & CLONE_NEWNET) && ctx->net_ext_fd < 0)
		return loopback_up();
	return 0;
}
