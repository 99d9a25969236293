/*
 * Cgroups: the freezer that holds a container still while it is seized,
 * and the container's own cgroups, dumped with their limits and made again
 * before its tasks are put in them.
 *
 * A container found frozen (runc pause; containerd pauses before every
 * checkpoint) is seized as it is, thawed while cryo holds its tasks in
 * ptrace (a frozen task does not stop for it), and frozen again before
 * they are let go; killed after the dump, it is left thawed. Its images
 * say nothing of the pause: a restore runs it, as CRIU's does.
 *
 * A hierarchy counts as the tree's own when its root task is in a cgroup
 * there that is neither "/" nor cryo's own: that is the container's cgroup.
 * Paths are those of /proc/PID/cgroup, read from cryo's cgroup namespace.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "cryo.h"
#include "door.h"
#include "dump.h"
#include "fault.h"
#include "guard.h"
#include "log.h"
#include "restore.h"
#include "util.h"
#include "validate.h"

/* limits worth carrying over, per controller, in the order they are written */
static const char *const cg_props[] = {
	"cpuset.cpus", "cpuset.mems",
	"memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.swappiness",
	"memory.max", "memory.high", "memory.low", "memory.min",
	"pids.max",
	"cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.max", "cpu.weight",
	NULL
};

/* one line of /proc/PID/cgroup */
struct cg_line {
	char ctrls[128];
	char path[PATH_MAX_LEN];
};

static int parse_cgroups(pid_t pid, struct cg_line **out, int *nr)
{
	_cleanup_free_ char *buf = NULL;
	char file[64], *save = NULL;
	struct cg_line *v = NULL;
	int n = 0, ret;

	snprintf(file, sizeof(file), "/proc/%d/cgroup", pid);
	if ((ret = read_file(file, &buf, NULL)))
		return ret;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		struct cg_line *nv;

		if (!c2)
			continue;
		nv = xrealloc_array(v, n + 1, sizeof(*v));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		snprintf(v[n].ctrls, sizeof(v[n].ctrls), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
		snprintf(v[n].path, sizeof(v[n].path), "%s", c2 + 1);
		n++;
	}
	*out = v;
	*nr = n;
	return 0;
}

/*
 * Where the hierarchy of ctrls is mounted in cryo's mount namespace: the
 * cgroup (v1) mount whose options hold every one of ctrls, or the cgroup2
 * mount for "".
 */
static int cg_mount(const char *ctrls, char *out, size_t len)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];

	if (!f)
		return pr_perror("cannot read /proc/self/mountinfo");
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX_LEN], type[32], opts[1024];
		char *sep = strstr(line, " - ");
		bool all = true;

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%31s %*s %1023s", type, opts) != 2)
			continue;
		if (!*ctrls ? strcmp(type, "cgroup2") : strcmp(type, "cgroup"))
			continue;
		if (*ctrls) {
			char want[128], *save = NULL;

			snprintf(want, sizeof(want), "%s", ctrls);
			for (char *c = strtok_r(want, ",", &save); c && all; c = strtok_r(NULL, ",", &save)) {
				char *p = strstr(opts, c);
				size_t cl = strlen(c);

				all = false;
				for (; p && !all; p = strstr(p + 1, c))
					all = (p == opts || p[-1] == ',') && (p[cl] == ',' || !p[cl]);
			}
		}
		if (all) {
			snprintf(out, len, "%s", mnt);
			return 0;
		}
	}
	pr_err("cgroup hierarchy '%s' is not mounted in cryo's mount namespace", *ctrls ? ctrls : "v2");
	return -ENOENT;
}

static int cg_dir(const char *ctrls, const char *path, char *out, size_t len)
{
	char mnt[PATH_MAX_LEN];
	int ret = cg_mount(ctrls, mnt, sizeof(mnt));

	if (!ret && snprintf(out, len, "%s%s", mnt, path) >= (int)len) {
		pr_err("cgroup %s%s: path too long", mnt, path);
		ret = -ENAMETOOLONG;
	}
	return ret;
}

static bool has_ctrl(const char *ctrls, const char *c)
{
	size_t cl = strlen(c);

	for (const char *p = strstr(ctrls, c); p; p = strstr(p + 1, c))
		if ((p == ctrls || p[-1] == ',') && (p[cl] == ',' || !p[cl]))
			return true;
	return false;
}

/* ------------------------------------------------------------- freezer */

/*
 * v1: freezer.state FROZEN/THAWED (FREEZING on the way); v2: cgroup.freeze
 * 1/0, and cgroup.events says "frozen 1" once every task is.
 */
int cgroup_freezer_set(const char *dir, bool v2, bool frozen)
{
	char path[PATH_MAX_LEN + 32];
	const char *val = v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "cgroup.freeze" : "freezer.state");
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write_all(fd, val, strlen(val)))
		ret = pr_perror("cannot write %s to %s", val, path);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* 1 frozen, 0 not (yet), <0 error */
static int freezer_frozen(const char *dir, bool v2)
{
	char path[PATH_MAX_LEN + 32];
	_cleanup_free_ char *buf = NULL;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "cgroup.events" : "freezer.state");
	if ((ret = read_file(path, &buf, NULL)))
		return ret;
	if (v2)
		return strstr(buf, "frozen 1") != NULL;
	return !strncmp(buf, "FROZEN", 6);
}

/* the tree's own freezer cgroup: v1 if it has one, else v2; "" if none (ptrace alone then) */
static int own_freezer(pid_t root, char *dir, size_t len, bool *v2)
{
	_cleanup_free_ struct cg_line *mine = NULL, *its = NULL;
	int nm, ni, ret;

	dir[0] = 0;
	if ((ret = parse_cgroups(getpid(), &mine, &nm)))
		return ret;
	if (parse_cgroups(root, &its, &ni))
		return 0;	/* no such process: seizing it says so */
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < ni; i++) {
			bool own = strcmp(its[i].path, "/") != 0;

			if (pass ? its[i].ctrls[0] != 0 : !has_ctrl(its[i].ctrls, "freezer"))
				continue;
			for (int k = 0; k < nm && own; k++)
				own = strcmp(mine[k].ctrls, its[i].ctrls) || strcmp(mine[k].path, its[i].path);
			if (!own)
				break;		/* cryo's own, or the root: not this hierarchy */
			*v2 = pass;
			return cg_dir(its[i].ctrls, its[i].path, dir, len);
		}
	return 0;
}

/* --freeze-cgroup DIR: cryo freezes the tree's own freezer; DIR must be that one */
static int check_freeze_cgroup(const char *want, pid_t root, const char *dir)
{
	char a[PATH_MAX], b[PATH_MAX];

	if (!realpath(want, a))
		return pr_perror("--freeze-cgroup %s", want);
	if (!dir[0]) {
		pr_err("--freeze-cgroup %s: pid %d has no freezer cgroup of its own to freeze", want, root);
		return -EINVAL;
	}
	if (!realpath(dir, b) || strcmp(a, b)) {
		pr_err("--freeze-cgroup %s: pid %d is in freezer cgroup %s, not there", want, root, dir);
		return -EINVAL;
	}
	return 0;
}

int cgroup_freeze(struct dump_ctx *ctx, pid_t root)
{
	char dir[PATH_MAX_LEN];
	bool v2 = false;
	uint64_t deadline;
	int ret = own_freezer(root, dir, sizeof(dir), &v2);

	if (!ret && ctx->opts && ctx->opts->freeze_cgroup && (ret = check_freeze_cgroup(ctx->opts->freeze_cgroup, root, dir)))
		return ret;
	if (ret || !dir[0])
		return ret;
	if ((ret = freezer_frozen(dir, v2)) < 0)
		return ret;
	ctx->freezer = xstrdup(dir);
	ctx->freezer_v2 = v2;
	if (!ctx->freezer)
		return -ENOMEM;
	if (ret > 0) {
		/* paused (runc pause, containerd before a checkpoint): seized as it is, frozen again after */
		ctx->freezer_found = true;
		pr_info("cgroup %s is frozen already: it is left frozen", dir);
		return 0;
	}
	/* should cryo die, its guardian thaws it */
	ctx->g_freezer = guard_freezer(ctx->opts ? ctx->opts->guard : NULL, dir, v2);
	if (!ctx->freezer || (ctx->opts && ctx->opts->guard && !ctx->g_freezer)) {
		guard_done(ctx->g_freezer);
		free(ctx->freezer);
		ctx->freezer = NULL;
		return -ENOMEM;
	}
	if ((ret = cgroup_freezer_set(dir, v2, true))) {
		cgroup_thaw(ctx);
		return ret;
	}
	deadline = now_ns() + 10ULL * 1000000000;
	while ((ret = freezer_frozen(dir, v2)) == 0) {
		if (now_ns() > deadline) {
			pr_err("cgroup %s did not freeze within 10 s", dir);
			ret = -ETIMEDOUT;
			break;
		}
		usleep(1000);
	}
	if (ret < 0) {
		cgroup_thaw(ctx);
		return ret;
	}
	pr_info("froze cgroup %s", dir);
	fault_point("dump-frozen");
	return 0;
}

int cgroup_thaw(struct dump_ctx *ctx)
{
	int ret;

	if (!ctx->freezer)
		return 0;
	if (ctx->freezer_found) {
		/* should cryo die now, its guardian freezes it again once the tasks are cured */
		ctx->g_refreeze = guard_refreeze(ctx->opts ? ctx->opts->guard : NULL, ctx->freezer, ctx->freezer_v2);
		ctx->refreeze = ctx->freezer;
		ctx->refreeze_v2 = ctx->freezer_v2;
		ctx->freezer = NULL;
		ctx->freezer_found = false;
		/* thawed even so: the tasks stop in ptrace, to be let go (frozen again) by the failed dump */
		ret = cgroup_freezer_set(ctx->refreeze, ctx->refreeze_v2, false);
		if (!ret)
			pr_info("thawed cgroup %s while its tasks are held (frozen again before they go)", ctx->refreeze);
		if (!ret && ctx->opts && ctx->opts->guard && !ctx->g_refreeze)
			ret = -ENOMEM;	/* the journal said why */
		return ret;
	}
	ret = cgroup_freezer_set(ctx->freezer, ctx->freezer_v2, false);
	if (!ret)
		pr_info("thawed cgroup %s", ctx->freezer);
	guard_done(ctx->g_freezer);
	ctx->g_freezer = NULL;
	free(ctx->freezer);
	ctx->freezer = NULL;
	return ret;
}

/* set dir's freezer and wait until it says so (10 s at most) */
static int freezer_set_wait(const char *dir, bool v2, bool frozen)
{
	uint64_t deadline = now_ns() + 10ULL * 1000000000;
	int ret = cgroup_freezer_set(dir, v2, frozen);

	while (!ret && (ret = freezer_frozen(dir, v2)) != frozen) {
		if (ret < 0)
			return ret;
		if (now_ns() > deadline) {
			pr_err("cgroup %s did not %s within 10 s", dir, frozen ? "freeze" : "thaw");
			return -ETIMEDOUT;
		}
		usleep(1000);
		ret = 0;
	}
	return ret < 0 ? ret : 0;
}

int cgroup_refreeze(struct dump_ctx *ctx)
{
	int ret;

	if (!ctx->refreeze)
		return 0;
	ret = freezer_set_wait(ctx->refreeze, ctx->refreeze_v2, true);
	if (!ret)
		pr_info("froze cgroup %s again, as it was found", ctx->refreeze);
	/* else the tasks go on thawed, and the dump fails saying why */
	cgroup_refreeze_drop(ctx);
	return ret;
}

void cgroup_refreeze_drop(struct dump_ctx *ctx)
{
	guard_done(ctx->g_refreeze);
	ctx->g_refreeze = NULL;
	free(ctx->refreeze);
	ctx->refreeze = NULL;
}

int cgroup_root_task(const char *path, pid_t *root)
{
	char dir[PATH_MAX_LEN + 32];
	_cleanup_free_ char *buf = NULL;
	pid_t *pids = NULL, found = 0;
	int n = 0, ret;

	snprintf(dir, sizeof(dir), "%s/cgroup.procs", path);
	if ((ret = read_file(dir, &buf, NULL)))
		return ret;
	for (char *p = buf; *p; p += strcspn(p, "\n"), p += !!*p) {
		pid_t *nv = xrealloc_array(pids, n + 1, sizeof(*pids));

		if (!nv) {
			free(pids);
			return -ENOMEM;
		}
		pids = nv;
		pids[n++] = atoi(p);
	}
	/* the one whose parent is not in the cgroup */
	for (int i = 0; i < n && ret == 0; i++) {
		struct proc_stat st;
		bool inside = false;

		if (proc_parse_stat(pids[i], &st))
			continue;
		for (int k = 0; k < n && !inside; k++)
			inside = pids[k] == st.ppid;
		if (inside)
			continue;
		if (found) {
			pr_err("cgroup %s holds two trees, of pid %d and pid %d: dump one with --tree", path, found,
			       pids[i]);
			ret = -EINVAL;
		}
		found = pids[i];
	}
	free(pids);
	if (!ret && !found) {
		pr_err("cgroup %s has no process", path);
		ret = -ESRCH;
	}
	*root = found;
	return ret;
}

int cgroup_check_members(struct dump_ctx *ctx)
{
	char path[PATH_MAX_LEN + 32];
	_cleanup_free_ char *buf = NULL;
	int ret;

	if (!ctx->freezer)
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", ctx->freezer);
	if ((ret = read_file(path, &buf, NULL)))
		return ret;
	for (char *p = buf; *p; p += strcspn(p, "\n"), p += !!*p) {
		pid_t pid = atoi(p);

		if (!dump_find_task(ctx, pid)) {
			pr_err("pid %d is in the container's cgroup %s but not in the tree of pid %d: it would be lost",
			       pid, ctx->freezer, ctx->tasks[0]->pid);
			return -ENOTSUP;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- dump */

static int dump_props(struct dump_ctx *ctx, const char *dir, CgroupEntry *e)
{
	e->props = arena_alloc(&ctx->arena, ARRAY_SIZE(cg_props) * sizeof(*e->props));
	if (!e->props)
		return -ENOMEM;
	for (size_t i = 0; cg_props[i]; i++) {
		char path[PATH_MAX_LEN + 64];
		_cleanup_free_ char *val = NULL;
		CgroupPropEntry *p;

		snprintf(path, sizeof(path), "%s/%s", dir, cg_props[i]);
		if (access(path, F_OK) || read_file(path, &val, NULL))
			continue;
		val[strcspn(val, "\n")] = 0;
		p = arena_alloc(&ctx->arena, sizeof(*p));
		if (!p)
			return -ENOMEM;
		cgroup_prop_entry__init(p);
		p->name = (char *)cg_props[i];
		p->value = arena_strdup(&ctx->arena, val);
		if (!p->value)
			return -ENOMEM;
		e->props[e->n_props++] = p;
	}
	return 0;
}

/*
 * Task t is in cgroup o, not its root's r of the same hierarchy: below it
 * (LXC's lxc-attach puts what it starts in .lxc of the container's cgroup
 * v2), a cgroup of the tree's made again with t in it; anywhere else, the
 * tree has no one place to go back to.
 */
static int nested_add(struct dump_ctx *ctx, const struct dump_task *t, const struct cg_line *o,
		      const struct cg_line *r)
{
	size_t rl = strcmp(r->path, "/") ? strlen(r->path) : 0;
	CgroupEntry *e = NULL, **nv;

	if (strcmp(o->ctrls, r->ctrls) || strncmp(o->path, r->path, rl) || o->path[rl] != '/' || !o->path[rl + 1]) {
		pr_err("pid %d is in cgroup %s:%s, outside its root pid %d's %s: the tree has no one cgroup to go back to",
		       t->pid, o->ctrls, o->path, ctx->tasks[0]->pid, r->path);
		return -ENOTSUP;
	}
	for (size_t k = 0; k < ctx->nr_cg_nested && !e; k++)
		if (!strcmp(ctx->cg_nested[k]->controllers, o->ctrls) && !strcmp(ctx->cg_nested[k]->path, o->path))
			e = ctx->cg_nested[k];
	if (!e) {
		if (!(e = arena_new(&ctx->arena, CgroupEntry)) ||
		    !(nv = xrealloc_array(ctx->cg_nested, ctx->nr_cg_nested + 1, sizeof(*nv))))
			return -ENOMEM;
		cgroup_entry__init(e);
		e->controllers = arena_strdup(&ctx->arena, o->ctrls);
		e->path = arena_strdup(&ctx->arena, o->path);
		e->sub = arena_strdup(&ctx->arena, o->path + rl + 1);
		if (!e->controllers || !e->path || !e->sub)
			return -ENOMEM;
		ctx->cg_nested = nv;
		ctx->cg_nested[ctx->nr_cg_nested++] = e;
	}
	e->members = arena_grow(&ctx->arena, e->members, e->n_members, sizeof(*e->members));
	if (!e->members)
		return -ENOMEM;
	e->members[e->n_members++] = t->vpid;
	return 0;
}

int cgroup_dump(struct dump_ctx *ctx)
{
	_cleanup_free_ struct cg_line *mine = NULL, *its = NULL;
	struct img *img = NULL;
	int nm, ni, ret;
	pid_t root = ctx->tasks[0]->pid;

	if ((ret = parse_cgroups(getpid(), &mine, &nm)) || (ret = parse_cgroups(root, &its, &ni)))
		return ret;
	/* every task in the root's cgroups or below them (nested_add) */
	for (size_t t = 1; t < ctx->nr_tasks && !ret; t++) {
		_cleanup_free_ struct cg_line *other = NULL;
		int no;

		if (ctx->tasks[t]->zombie || parse_cgroups(ctx->tasks[t]->pid, &other, &no))
			continue;
		for (int i = 0; i < no && i < ni && !ret; i++)
			if (strcmp(other[i].path, its[i].path))
				ret = nested_add(ctx, ctx->tasks[t], &other[i], &its[i]);
	}
	for (int i = 0; i < ni && !ret; i++) {
		CgroupEntry e = CGROUP_ENTRY__INIT;
		char dir[PATH_MAX_LEN];
		bool own = strcmp(its[i].path, "/") != 0;

		for (int k = 0; k < nm && own; k++)
			own = strcmp(mine[k].ctrls, its[i].ctrls) || strcmp(mine[k].path, its[i].path);
		if (!own)
			continue;
		if (cg_dir(its[i].ctrls, its[i].path, dir, sizeof(dir)))
			continue;	/* not mounted here: nothing to restore into either */
		if (!img && !(img = img_create(ctx->dirfd, IMG_CGROUP, 0)))
			return -EIO;
		e.controllers = its[i].ctrls;
		e.path = its[i].path;
		ret = dump_props(ctx, dir, &e) ?: img_write(img, &e.base);
		pr_debug("cgroup %s:%s with %zu limits", e.controllers, e.path, e.n_props);
		/* the cgroups below it, after it */
		for (size_t k = 0; k < ctx->nr_cg_nested && !ret; k++) {
			CgroupEntry *n = ctx->cg_nested[k];

			if (strcmp(n->controllers, its[i].ctrls))
				continue;
			ret = (cg_dir(n->controllers, n->path, dir, sizeof(dir)) ?: dump_props(ctx, dir, n)) ?:
			      img_write(img, &n->base);
			pr_debug("cgroup %s:%s below the root's, with %zu tasks", n->controllers, n->path, n->n_members);
		}
	}
	if (img)
		ret = img_close(img) ?: ret;
	free(ctx->cg_nested);
	ctx->cg_nested = NULL;
	ctx->nr_cg_nested = 0;
	return ret;
}

/* ------------------------------------------------------------- restore */

/*
 * --cgroup-root [CTRL:]PATH: the tree goes into PATH in CTRL's hierarchy
 * (every one without CTRL: and "" is cgroup v2's). The images hold only
 * the root's own cgroups, so PATH replaces each one's path.
 */
static int apply_cg_roots(struct restore_ctx *ctx)
{
	const struct str_list *l = &ctx->opts->cg_roots;

	for (size_t k = 0; k < l->n; k++) {
		const char *arg = l->v[k], *colon = arg[0] == '/' ? NULL : strchr(arg, ':');
		const char *path = colon ? colon + 1 : arg;
		size_t cl = colon ? (size_t)(colon - arg) : 0;
		bool used = false;

		if (door_abspath(path, DOOR_PATH_MAX, "--cgroup-root %s: path", arg))
			return -EINVAL;
		for (size_t i = 0; i < ctx->nr_cgroups; i++) {
			CgroupEntry *e = ctx->cgroups[i];
			bool match = !colon;

			/* CTRL names the hierarchy or one of its controllers (cpu of cpu,cpuacct) */
			for (const char *c = e->controllers; colon && !match && c;) {
				size_t n = strcspn(c, ",");

				match = n == cl && !strncmp(c, arg, cl);
				c = c[n] ? c + n + 1 : NULL;
			}
			if (!match)
				continue;
			pr_debug("cgroup %s:%s goes to %s%s%s", e->controllers, e->path, path, e->sub ? "/" : "",
				 e->sub ?: "");
			/* the unpacked message owns its strings */
			free(e->path);
			if (asprintf(&e->path, "%s%s%s", path, e->sub ? "/" : "", e->sub ?: "") < 0) {
				e->path = NULL;
				return -ENOMEM;
			}
			used = true;
		}
		if (!used)
			pr_info("--cgroup-root %s: the tree has no cgroup of its own there", arg);
	}
	return 0;
}

int cgroup_read(struct restore_ctx *ctx)
{
	int ret;

	if (ctx->opts->manage_cgroups == CG_MODE_IGNORE || ctx->opts->manage_cgroups == CG_MODE_NONE)
		return 0;
	if ((ret = img_read_all(ctx->dirfd, IMG_CGROUP, 0, true, &ctx->cgroups, &ctx->nr_cgroups)))
		return ret;
	ctx->cg_dumped = calloc(ctx->nr_cgroups + 1, sizeof(char *));
	for (size_t i = 0; ctx->cg_dumped && i < ctx->nr_cgroups; i++)
		if (!(ctx->cg_dumped[i] = xstrdup(ctx->cgroups[i]->path)))
			return -ENOMEM;
	return ctx->cg_dumped ? apply_cg_roots(ctx) : -ENOMEM;
}

/* does a cgroup mount with options opts hold every controller of ctrls? */
static bool mount_has_ctrls(const char *opts, const char *ctrls)
{
	char want[128], *save = NULL;

	snprintf(want, sizeof(want), "%s", ctrls);
	for (char *c = strtok_r(want, ",", &save); c; c = strtok_r(NULL, ",", &save))
		if (!has_ctrl(opts, c))
			return false;
	return true;
}

bool cgroup_follow_bind(struct restore_ctx *ctx, const char *fstype, const char *opts, const char *dir, char *out,
			size_t len)
{
	bool v2 = !strcmp(fstype, "cgroup2");

	if (!v2 && strcmp(fstype, "cgroup"))
		return false;
	for (size_t i = 0; ctx->cg_dumped && i < ctx->nr_cgroups; i++) {
		const CgroupEntry *e = ctx->cgroups[i];
		char was[PATH_MAX_LEN];

		if (v2 != !e->controllers[0] || (!v2 && !mount_has_ctrls(opts, e->controllers)))
			continue;
		if (cg_dir(e->controllers, ctx->cg_dumped[i], was, sizeof(was)) || strcmp(was, dir) ||
		    cg_dir(e->controllers, e->path, out, len))
			continue;
		pr_info("the bind of cgroup %s:%s follows it to %s", e->controllers, ctx->cg_dumped[i], out);
		return true;
	}
	return false;
}

/* the first pid in a cgroup.procs text that is not cryo's own (0 if none) */
/* a process in procs other than cryo and its guardian (which follows cryo where the runtime puts it) */
static pid_t other_process(const char *procs, pid_t guardian)
{
	for (const char *p = procs; *p; p += strcspn(p, "\n"), p += !!*p)
		if (atoi(p) != getpid() && atoi(p) != guardian)
			return atoi(p);
	return 0;
}

/*
 * One record of cgroup.img: a path in its hierarchy, and limits by the
 * names cryo dumps, each one file of the cgroup's directory.
 */
int cgroup_validate_entry(const CgroupEntry *e, const char *where)
{
	int ret = door_text(e->controllers, sizeof(((struct cg_line *)0)->ctrls) - 1, "%s: controllers", where) ?:
		  door_abspath(e->path, DOOR_PATH_MAX, "%s: path", where) ?:
		  (e->sub ? door_relpath(e->sub, DOOR_PATH_MAX, "%s: sub", where) : 0);

	for (size_t k = 0; !ret && k < e->n_props; k++)
		ret = door_name(e->props[k]->name, DOOR_NAME_MAX, "%s: props[%zu].name", where, k) ?:
		      door_oneof(e->props[k]->name, cg_props, "%s: props[%zu].name", where, k) ?:
		      door_text(e->props[k]->value, 4096, "%s: props[%zu].value", where, k);
	return ret;
}

int cgroup_validate(const struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_cgroups; i++) {
		/* as the image has it: --cgroup-root's path was checked as an option */
		CgroupEntry e = *ctx->cgroups[i];
		char where[64];

		e.path = ctx->cg_dumped ? ctx->cg_dumped[i] : e.path;
		snprintf(where, sizeof(where), "cgroup.img record %zu", i);
		if (cgroup_validate_entry(&e, where))
			return -EINVAL;
	}
	return 0;
}

/*
 * The directory of cgroup e, opened (made, with make) beneath its
 * hierarchy's mount, through no symlink; dir gets its path for messages.
 */
static int cg_open(const CgroupEntry *e, bool make, bool *made, char *dir, size_t len)
{
	char mnt[PATH_MAX_LEN];
	_cleanup_close_ int mfd = -1;
	int ret = cg_dir(e->controllers, e->path, dir, len) ?: cg_mount(e->controllers, mnt, sizeof(mnt));

	if (ret)
		return ret;
	mfd = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0)
		return pr_perror("cgroup hierarchy %s: cannot open it", mnt);
	if (make)
		return door_mkdirs(mfd, e->path, 0755, made, "cannot create cgroup %s: path", mnt);
	return door_open(mfd, e->path, O_PATH | O_DIRECTORY, 0, DOOR_BENEATH | DOOR_NO_SYMLINKS, "cgroup %s: path",
			 mnt);
}

/* its limits, each a file of the directory cgfd, by name */
static int set_props(const CgroupEntry *e, int cgfd, const char *dir)
{
	for (size_t k = 0; k < e->n_props; k++) {
		const CgroupPropEntry *p = e->props[k];
		int fd = door_open(cgfd, p->name, O_WRONLY, 0, DOOR_BENEATH | DOOR_NO_SYMLINKS,
				   "cgroup %s: limit", dir);

		if (fd < 0)
			return fd;
		if (write_all(fd, p->value, strlen(p->value))) {
			int ret = pr_perror("cgroup %s: cannot set %s to %s", dir, p->name, p->value);

			close(fd);
			return ret;
		}
		close(fd);
	}
	return 0;
}

int cgroup_prepare(struct restore_ctx *ctx)
{
	enum cg_mode mode = ctx->opts->manage_cgroups;

	ctx->cg_made = calloc(ctx->nr_cgroups + 1, sizeof(*ctx->cg_made));
	if (!ctx->cg_made)
		return -ENOMEM;
	for (size_t i = 0; i < ctx->nr_cgroups; i++) {
		const CgroupEntry *e = ctx->cgroups[i];
		char dir[PATH_MAX_LEN];
		_cleanup_free_ char *procs = NULL;
		_cleanup_close_ int cgfd = -1;
		bool made = false;
		int ret;

		if ((cgfd = cg_open(e, true, &made, dir, sizeof(dir))) < 0)
			return cgfd;
		if (made && !(ctx->cg_made[i] = xstrdup(dir)))
			return -ENOMEM;
		if (!made && mode == CG_MODE_STRICT) {
			pr_err("cgroup %s exists already (--manage-cgroups=strict)", dir);
			return -EEXIST;
		}
		/* cryo itself may be there: the runtime that runs it made the cgroup for the restore */
		if (!made && !read_file_at(cgfd, "cgroup.procs", &procs, NULL) &&
		    other_process(procs, guard_pid(ctx->opts->guard))) {
			pr_err("cgroup %s has processes already (pid %d): is the container running?", dir,
			       other_process(procs, guard_pid(ctx->opts->guard)));
			return -EBUSY;
		}
		/* soft: the limits of the cgroups cryo made; those it found are someone else's to set */
		if ((made || mode != CG_MODE_SOFT) && (ret = set_props(e, cgfd, dir)))
			return ret;
	}
	return 0;
}

static bool is_member(const CgroupEntry *e, pid_t vpid)
{
	for (size_t k = 0; k < e->n_members; k++)
		if (e->members[k] == vpid)
			return true;
	return false;
}

/* the root (vpid 0: every cgroup of the root's), or a task in a cgroup below (its own) */
int cgroup_attach(struct restore_ctx *ctx, pid_t pid, pid_t vpid)
{
	for (size_t i = 0; i < ctx->nr_cgroups; i++) {
		char dir[PATH_MAX_LEN], buf[16];
		_cleanup_close_ int cgfd = -1, fd = -1;
		int n = snprintf(buf, sizeof(buf), "%d", pid);

		if (vpid ? !ctx->cgroups[i]->sub || !is_member(ctx->cgroups[i], vpid) : !!ctx->cgroups[i]->sub)
			continue;
		if ((cgfd = cg_open(ctx->cgroups[i], false, NULL, dir, sizeof(dir))) < 0)
			return cgfd;
		fd = door_open(cgfd, "cgroup.procs", O_WRONLY, 0, DOOR_BENEATH | DOOR_NO_SYMLINKS, "pid %d: cgroup %s",
			       pid, dir);
		if (fd < 0)
			return fd;
		if (write_all(fd, buf, n))
			return pr_perror("pid %d: cannot join cgroup %s", pid, dir);
	}
	return 0;
}

/* the cgroup cryo made for e, removed: the last component of its path, beneath its hierarchy */
static void cg_remove(const CgroupEntry *e, const char *dir)
{
	char mnt[PATH_MAX_LEN];
	_cleanup_close_ int mfd = -1, pfd = -1;
	const char *last;

	if (cg_mount(e->controllers, mnt, sizeof(mnt)) ||
	    (mfd = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (pfd = door_parent(mfd, e->path, &last, "cgroup %s: path", mnt)) < 0 || unlinkat(pfd, last, AT_REMOVEDIR))
		pr_perror("cannot remove cgroup %s after the failed restore", dir);
}

void cgroup_cleanup(struct restore_ctx *ctx, bool failed)
{
	/* the cgroups below the root's, listed after it, go first */
	for (size_t i = ctx->nr_cgroups; ctx->cg_made && i-- > 0;) {
		if (failed && ctx->cg_made[i])
			cg_remove(ctx->cgroups[i], ctx->cg_made[i]);
		free(ctx->cg_made[i]);
	}
	free(ctx->cg_made);
	ctx->cg_made = NULL;
}
