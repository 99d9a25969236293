/*
 * The mount namespace: the mount tree as the container's root task sees it
 * (/proc/PID/mountinfo), made again in the restored root's new mount
 * namespace, which then pivots into it.
 *
 * Each mount is one of:
 *  - a file system cryo's own mount namespace shows too (the same device):
 *    the container's root directory, a host directory bind-mounted in. It
 *    is referenced by its host path, not copied; a path missing at restore
 *    is an error that names it;
 *  - a file system of the container's own that is mounted again from its
 *    type and options: proc, sysfs, devpts, mqueue, overlay (from the same
 *    layer directories), and tmpfs, whose files go into tmpfs-ID.img.
 * Anything else is refused at dump, naming the mount and its type.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cgroup.h"
#include "door.h"
#include "dump.h"
#include "log.h"
#include "ns.h"
#include "restore.h"
#include "util.h"
#include "validate.h"

/* file systems mounted again from their type and options */
static const char *const own_fs[] = { "proc", "sysfs", "devpts", "mqueue", "tmpfs", "overlay", NULL };

struct minfo {
	unsigned id, parent, major, minor;
	char root[PATH_MAX_LEN], mnt[PATH_MAX_LEN];
	char mopts[256], optional[256], type[64], source[PATH_MAX_LEN], sopts[4096];
};

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

static int parse_line(char *line, struct minfo *m)
{
	char *sep = strstr(line, " - ");
	int n = 0;

	if (!sep)
		return -EINVAL;
	*sep = 0;
	m->optional[0] = 0;
	if (sscanf(line, "%u %u %u:%u %4095s %4095s %255s %n", &m->id, &m->parent, &m->major, &m->minor, m->root,
		   m->mnt, m->mopts, &n) < 7)
		return -EINVAL;
	snprintf(m->optional, sizeof(m->optional), "%s", line + n);
	if (sscanf(sep + 3, "%63s %4095s %4095s", m->type, m->source, m->sopts) != 3)
		return -EINVAL;
	unescape(m->root);
	unescape(m->mnt);
	unescape(m->source);
	return 0;
}

static int read_mountinfo(const char *path, struct minfo **out, size_t *nr)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	struct minfo *v = NULL;
	size_t n = 0;
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return pr_perror("cannot read %s", path);
	while (getline(&line, &cap, f) > 0) {
		struct minfo *nv = xrealloc_array(v, n + 1, sizeof(*v));

		if (!nv) {
			free(line);
			free(v);
			return -ENOMEM;
		}
		v = nv;
		line[strcspn(line, "\n")] = 0;
		if (parse_line(line, &v[n])) {
			pr_err("%s: cannot parse '%s'", path, line);
			free(line);
			free(v);
			return -EINVAL;
		}
		n++;
	}
	free(line);
	*out = v;
	*nr = n;
	return 0;
}

static const struct {
	const char *name;
	unsigned long flag;
} mnt_flags[] = {
	{ "ro", MS_RDONLY }, { "nosuid", MS_NOSUID }, { "nodev", MS_NODEV }, { "noexec", MS_NOEXEC },
	{ "noatime", MS_NOATIME }, { "nodiratime", MS_NODIRATIME }, { "relatime", MS_RELATIME },
	{ "strictatime", MS_STRICTATIME },
};

static uint64_t parse_flags(const char *opts)
{
	char buf[256], *save = NULL;
	uint64_t f = 0;

	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *o = strtok_r(buf, ",", &save); o; o = strtok_r(NULL, ",", &save))
		for (size_t i = 0; i < ARRAY_SIZE(mnt_flags); i++)
			if (!strcmp(o, mnt_flags[i].name))
				f |= mnt_flags[i].flag;
	return f;
}

/* the file system's options without the leading rw/ro, which is the mount's */
static const char *fs_options(const char *sopts)
{
	if (!strncmp(sopts, "rw", 2) || !strncmp(sopts, "ro", 2))
		return sopts[2] == ',' ? sopts + 3 : sopts + 2;
	return sopts;
}

static bool is_own_fs(const char *type)
{
	for (size_t i = 0; own_fs[i]; i++)
		if (!strcmp(type, own_fs[i]))
			return true;
	return false;
}

/*
 * The host path of m's directory: a mount of the same device in cryo's
 * namespace whose root holds m's root.
 */
static bool host_path(const struct minfo *m, const struct minfo *host, size_t nr, char *out, size_t len)
{
	for (size_t i = 0; i < nr; i++) {
		const struct minfo *h = &host[i];
		size_t rl = strlen(h->root);
		const char *sub;

		if (h->major != m->major || h->minor != m->minor)
			continue;
		if (!strcmp(h->root, "/"))
			rl = 0;
		else if (strncmp(m->root, h->root, rl) || (m->root[rl] && m->root[rl] != '/'))
			continue;
		sub = m->root + rl;
		if (!strcmp(sub, "/"))
			sub = "";	/* the whole of h's file system: h's path, with no '/' after it */
		snprintf(out, len, "%s%s", strcmp(h->mnt, "/") || !*sub ? h->mnt : "", sub);
		return true;
	}
	return false;
}

static void parse_propagation(const char *optional, MountEntry *e)
{
	const char *p;

	if ((p = strstr(optional, "shared:"))) {
		e->has_propagation = e->has_shared_group = true;
		e->propagation = MS_SHARED;
		e->shared_group = atoi(p + 7);
	}
	if ((p = strstr(optional, "master:"))) {
		e->has_propagation = e->has_master_group = true;
		e->propagation = MS_SLAVE;
		e->master_group = atoi(p + 7);
	}
}

/* ---------------------------------------------------------------- dump */

/* uid= and gid= options (tmpfs, devpts) as the tree's user namespace sees them */
static char *ns_mount_options(struct dump_ctx *ctx, const char *opts)
{
	char *out = arena_alloc(&ctx->arena, strlen(opts) + 64), *o = out;
	_cleanup_free_ char *copy = xstrdup(opts);
	char *save = NULL;

	if (!out || !copy)
		return NULL;
	*o = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o != out)
			*o++ = ',';
		if (!strncmp(t, "uid=", 4))
			o += sprintf(o, "uid=%u", ns_uid(ctx, strtoul(t + 4, NULL, 10)));
		else if (!strncmp(t, "gid=", 4))
			o += sprintf(o, "gid=%u", ns_gid(ctx, strtoul(t + 4, NULL, 10)));
		else
			o += sprintf(o, "%s", t);
	}
	return out;
}

/*
 * --ext-mount-map A:B. At dump, A is a mountpoint in the tree and B its
 * key; at restore, A is a key and B the host path to bind there ("auto":
 * find them, which cryo does anyway). NULL if a is not mapped.
 */
static const char *ext_map(const struct cryo_opts *o, const char *a)
{
	size_t al = strlen(a);

	for (size_t i = 0; o && i < o->ext_mounts.n; i++) {
		const char *m = o->ext_mounts.v[i];

		if (!strncmp(m, a, al) && m[al] == ':')
			return m + al + 1;
	}
	return NULL;
}

/*
 * Where a host directory bound in comes from at restore: --root for the
 * root, what an external mount's key maps to, else where it was.
 */
static const char *bind_from(const struct restore_ctx *ctx, const MountEntry *e)
{
	const char *mapped = e->ext_key ? ext_map(ctx->opts, e->ext_key) : NULL;

	if (e == ctx->mounts[0] && ctx->opts->root)
		return ctx->opts->root;
	return mapped ?: e->bind_source;
}

/* is v[i]'s parent among v[0..i)? */
static bool dump_find_parent_mount(const struct minfo *v, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (v[j].id == v[i].parent)
			return true;
	return false;
}

/*
 * Parents before their children, as the restore mounts them. mountinfo
 * mostly lists them so, but not always: a mount made over a mountpoint
 * that already had mounts beneath it becomes their parent while listed
 * after them (LXC's proc:mixed binds /proc/sys/net, then /proc/sys over
 * it). Otherwise mountinfo's order is kept; the root stays first, and a
 * mount whose parent is not in the tree at all goes last, for the check
 * that refuses it.
 */
static int order_parents_first(struct minfo *v, size_t n)
{
	_cleanup_free_ struct minfo *out = xrealloc_array(NULL, n, sizeof(*v));
	_cleanup_free_ bool *placed = xzalloc(n ? n : 1);
	size_t k = 0;
	bool more = true;

	if (!out || !placed)
		return -ENOMEM;
	for (size_t pass = 0; n && more; pass++) {
		more = false;
		for (size_t i = 0; i < n; i++) {
			bool parent = !i;

			for (size_t j = 0; j < k && !parent; j++)
				parent = out[j].id == v[i].parent;
			if (placed[i] || !parent)
				continue;
			if (pass)
				pr_debug("mount %u at %s: listed before its parent %u, mounted after it", v[i].id,
					 v[i].mnt, v[i].parent);
			out[k++] = v[i];
			placed[i] = more = true;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (!placed[i])
			out[k++] = v[i];
	memcpy(v, out, n * sizeof(*v));
	return 0;
}

/*
 * m binds part of a file system the tree mounted itself (a file of its
 * /dev tmpfs over /proc/kcore, /proc/sys over itself read-only): an
 * earlier mount of the same one whose root holds m's.
 */
static int dump_inner_bind(const struct minfo *v, size_t i, MountEntry *e)
{
	const struct minfo *m = &v[i];

	for (size_t j = 0; j < i; j++) {
		const struct minfo *o = &v[j];
		size_t rl = strcmp(o->root, "/") ? strlen(o->root) : 0;

		if (o->major != m->major || o->minor != m->minor || strncmp(m->root, o->root, rl) ||
		    (m->root[rl] && m->root[rl] != '/'))
			continue;
		e->has_bind_of = true;
		e->bind_of = o->id;
		e->root = (char *)m->root + rl;
		pr_debug("mount %u at %s: bind of %s in mount %u at %s", m->id, m->mnt, e->root, o->id, o->mnt);
		return 0;
	}
	pr_err("mount %u at %s binds %s of a %s that is mounted nowhere else in the container: cannot mount it again",
	       m->id, m->mnt, m->root, m->type);
	return -ENOTSUP;
}

struct tmpfs_walk {
	struct dump_ctx *ctx;
	struct img *img;
	dev_t dev;
	unsigned id;
};

static int dump_node(struct tmpfs_walk *w, int dirfd, const char *name, const char *rel, const struct stat *st);

static int dump_dir(struct tmpfs_walk *w, int fd, const char *rel)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int ret = 0;

	if (!d) {
		close(fd);
		return pr_perror("tmpfs %u: cannot list %s", w->id, rel);
	}
	while (!ret && (de = readdir(d))) {
		char path[PATH_MAX_LEN];
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW)) {
			ret = pr_perror("tmpfs %u: cannot stat %s", w->id, path);
			break;
		}
		ret = dump_node(w, dirfd(d), de->d_name, path, &st);
	}
	closedir(d);
	return ret;
}

static int dump_node(struct tmpfs_walk *w, int dirfd, const char *name, const char *rel, const struct stat *st)
{
	FsNodeEntry e = FS_NODE_ENTRY__INIT;
	char target[PATH_MAX_LEN];
	bool other_fs = st->st_dev != w->dev;
	int ret;

	e.path = (char *)rel;
	e.mode = st->st_mode;
	e.uid = ns_uid(w->ctx, st->st_uid);
	e.gid = ns_gid(w->ctx, st->st_gid);
	e.has_mtime_ns = true;
	e.mtime_ns = st->st_mtim.tv_sec * 1000000000ULL + st->st_mtim.tv_nsec;
	if (other_fs) {
		/* a mount point: another mount covers it; keep an empty directory, or file */
		e.mode = S_ISDIR(st->st_mode) ? S_IFDIR | 0755 : S_IFREG | 0644;
		return img_write(w->img, &e.base);
	}
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
		e.has_rdev = true;
		e.rdev = st->st_rdev;
	} else if (S_ISLNK(st->st_mode)) {
		ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);

		if (n < 0)
			return pr_perror("tmpfs %u: cannot read link %s", w->id, rel);
		target[n] = 0;
		e.target = target;
	} else if (S_ISSOCK(st->st_mode)) {
		pr_warn("tmpfs %u: socket file %s is not kept (its socket is bound anew, if in the dump)", w->id, rel);
		return 0;
	}
	if (S_ISREG(st->st_mode)) {
		_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		_cleanup_free_ uint8_t *buf = malloc(1 << 20);
		uint64_t off = 0;

		if (fd < 0 || !buf)
			return fd < 0 ? pr_perror("tmpfs %u: cannot read %s", w->id, rel) : -ENOMEM;
		e.has_size = true;
		e.size = st->st_size;
		do {
			ssize_t n = pread(fd, buf, 1 << 20, off);

			if (n < 0)
				return pr_perror("tmpfs %u: cannot read %s", w->id, rel);
			e.has_data = e.has_offset = true;
			e.data.data = buf;
			e.data.len = n;
			e.offset = off;
			if ((ret = img_write(w->img, &e.base)))
				return ret;
			off += n;
			if (!n)
				break;
		} while (off < (uint64_t)st->st_size);
		return 0;
	}
	if ((ret = img_write(w->img, &e.base)))
		return ret;
	if (S_ISDIR(st->st_mode)) {
		int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

		if (fd < 0)
			return pr_perror("tmpfs %u: cannot open %s", w->id, rel);
		return dump_dir(w, fd, rel);
	}
	return 0;
}

static int dump_tmpfs(struct dump_ctx *ctx, pid_t pid, const struct minfo *m)
{
	struct tmpfs_walk w = { .ctx = ctx, .id = m->id };
	char path[PATH_MAX_LEN + 32];
	struct stat st;
	int fd, ret;

	snprintf(path, sizeof(path), "/proc/%d/root%s", pid, m->mnt);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = pr_perror("tmpfs %s of pid %d: cannot open it", m->mnt, pid);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	w.dev = st.st_dev;
	w.img = img_create(ctx->dirfd, IMG_TMPFS, m->id);
	if (!w.img) {
		close(fd);
		return -EIO;
	}
	ret = dump_dir(&w, fd, "");
	return img_close(w.img) ?: ret;
}

int mnt_dump(struct dump_ctx *ctx)
{
	_cleanup_free_ struct minfo *its = NULL, *host = NULL;
	pid_t root = ctx->tasks[0]->pid;
	size_t ni, nh;
	char path[64];
	struct img *img;
	int ret;

	if (!(ctx->ns_flags & CLONE_NEWNS))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", root);
	if ((ret = read_mountinfo(path, &its, &ni)) || (ret = read_mountinfo("/proc/self/mountinfo", &host, &nh)))
		return ret;
	if (!ni || strcmp(its[0].mnt, "/")) {
		pr_err("pid %d: its mountinfo does not start with its root", root);
		return -EINVAL;
	}
	if ((ret = order_parents_first(its, ni)))
		return ret;
	img = img_create(ctx->dirfd, IMG_MNT, 0);
	if (!img)
		return -EIO;
	for (size_t i = 0; i < ni && !ret; i++) {
		const struct minfo *m = &its[i];
		MountEntry e = MOUNT_ENTRY__INIT;
		char src[PATH_MAX_LEN];

		e.id = m->id;
		e.parent_id = i ? m->parent : 0;
		e.mountpoint = (char *)m->mnt;
		e.fstype = (char *)m->type;
		e.source = (char *)m->source;
		e.flags = parse_flags(m->mopts);
		e.options = ns_mount_options(ctx, fs_options(m->sopts));
		if (!e.options) {
			ret = -ENOMEM;
			break;
		}
		parse_propagation(m->optional, &e);
		if (i && !dump_find_parent_mount(its, i)) {
			pr_err("pid %d: mount %u at %s: its parent %u is not in its mount tree", root, m->id, m->mnt,
			       m->parent);
			ret = -EINVAL;
		} else if (host_path(m, host, nh, src, sizeof(src))) {
			e.bind_source = src;
			e.ext_key = (char *)ext_map(ctx->opts, m->mnt);
			pr_debug("mount %u at %s: bind of %s%s%s", m->id, m->mnt, src, e.ext_key ? ", external key " : "",
				 e.ext_key ?: "");
		} else if (!is_own_fs(m->type)) {
			pr_err("pid %d: mount %u at %s (%s from %s): file system type %s is not supported", root,
			       m->id, m->mnt, m->type, m->source, m->type);
			ret = -ENOTSUP;
		} else if (strcmp(m->root, "/")) {
			ret = dump_inner_bind(its, i, &e);
		} else if (!strcmp(m->type, "tmpfs")) {
			e.has_contents = e.contents = true;
			ret = dump_tmpfs(ctx, root, m);
		}
		if (!ret)
			ret = img_write(img, &e.base);
	}
	return img_close(img) ?: ret;
}

/* ------------------------------------------------------------- restore */

/* the layer directories of an overlay mount (lowerdir=a:b,upperdir=c,workdir=d), each to check */
static int each_layer(const MountEntry *e, int (*fn)(const MountEntry *e, const char *dir, const void *arg),
		      const void *arg)
{
	_cleanup_free_ char *opts = xstrdup(e->options);
	char *save = NULL;
	int ret = 0;

	if (!opts)
		return -ENOMEM;
	for (char *o = strtok_r(opts, ",", &save); o && !ret; o = strtok_r(NULL, ",", &save)) {
		char *v = strchr(o, '='), *save2 = NULL;

		if (!v || (strncmp(o, "lowerdir=", 9) && strncmp(o, "upperdir=", 9) && strncmp(o, "workdir=", 8)))
			continue;
		for (char *d = strtok_r(v + 1, ":", &save2); d && !ret; d = strtok_r(NULL, ":", &save2))
			ret = fn(e, d, arg);
	}
	return ret;
}

static int layer_here(const MountEntry *e, const char *dir, const void *arg)
{
	struct stat st;

	(void)arg;
	if (stat(dir, &st))
		return pr_perror("mount %s of the container is an overlay on %s, which is missing here", e->mountpoint,
				 dir);
	return 0;
}

static int check_layers(const MountEntry *e)
{
	return each_layer(e, layer_here, NULL);
}

int mnt_read(struct restore_ctx *ctx)
{
	int ret;

	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWNS)) {
		if (!ctx->opts->root)
			return 0;
		pr_err("--root %s: the tree has no mount namespace of its own to root there", ctx->opts->root);
		return -EINVAL;
	}
	ret = img_read_all(ctx->dirfd, IMG_MNT, 0, false, &ctx->mounts, &ctx->nr_mounts);
	if (!ret && (!ctx->nr_mounts || strcmp(ctx->mounts[0]->mountpoint, "/"))) {
		pr_err("mnt.img does not start with the root mount");
		ret = -EINVAL;
	}
	if (!ret && ctx->opts->root && !ctx->mounts[0]->bind_source) {
		pr_err("--root %s: the container's root was a %s mount, made again from the images, not a directory",
		       ctx->opts->root, ctx->mounts[0]->fstype);
		ret = -ENOTSUP;
	}
	/* every directory it refers to must be there before anything starts */
	for (size_t i = 0; i < ctx->nr_mounts && !ret; i++) {
		MountEntry *e = ctx->mounts[i];
		char cg[PATH_MAX_LEN];
		struct stat st;

		/* a bind of the tree's own cgroup (runc's, cgroup v1) shows its restored cgroup, whatever the key maps to */
		if (e->bind_source && cgroup_follow_bind(ctx, e->fstype, e->options, e->bind_source, cg, sizeof(cg))) {
			char *dup = xstrdup(cg);

			if (!dup)
				return -ENOMEM;
			free(e->bind_source);
			e->bind_source = dup;
			free(e->ext_key);
			e->ext_key = NULL;
			continue;
		}
		if (e->bind_source && stat(bind_from(ctx, e), &st)) {
			ret = pr_perror("mount %s of the container binds %s%s%s%s, which is missing here", e->mountpoint,
					bind_from(ctx, e), e->ext_key ? " (external, key " : "", e->ext_key ?: "",
					e->ext_key ? ": --ext-mount-map KEY:PATH says where it is)" : "");
		}
		/* an overlay bound from the host (the runtime's root, --root) is never mounted from its layers */
		if (!ret && !e->bind_source && !strcmp(e->fstype, "overlay"))
			ret = check_layers(e);
	}
	return ret;
}

/* ------------------------------------------------------------ validate */

static int layer_path(const MountEntry *e, const char *dir, const void *where)
{
	(void)e;
	return door_abspath(dir, DOOR_PATH_MAX, "%s: options: overlay layer", (const char *)where);
}

/*
 * One record of mnt.img. Its mountpoint is a path in the container's root,
 * a bind's source a host directory (the container's own, by design: the
 * trust model in README), a file system mounted again one of those cryo
 * knows, with no more than the flags cryo dumps.
 */
int mnt_validate_entry(const MountEntry *e, const char *where)
{
	char val[32];
	uint64_t flags = 0;
	int ret;

	for (size_t k = 0; k < ARRAY_SIZE(mnt_flags); k++)
		flags |= mnt_flags[k].flag;
	ret = door_abspath(e->mountpoint, DOOR_PATH_MAX, "%s: mountpoint", where) ?:
	      door_text(e->fstype, sizeof(((struct minfo *)0)->type) - 1, "%s: fstype", where) ?:
	      door_text(e->source, DOOR_PATH_MAX, "%s: source", where) ?:
	      door_text(e->options, sizeof(((struct minfo *)0)->sopts) - 1, "%s: options", where) ?:
	      (e->bind_source ? door_abspath(e->bind_source, DOOR_PATH_MAX, "%s: bind_source", where) : 0) ?:
	      (e->root && e->root[0] ? door_abspath(e->root, DOOR_PATH_MAX, "%s: root", where) : 0) ?:
	      (e->ext_key ? door_text(e->ext_key, DOOR_PATH_MAX, "%s: ext_key", where) : 0) ?:
	      (e->bind_source ? 0 : door_oneof(e->fstype, own_fs, "%s: fstype", where));
	if (!ret && !e->bind_source && !strcmp(e->fstype, "overlay"))
		ret = each_layer(e, layer_path, where);
	if (!ret && (e->flags & ~flags)) {
		snprintf(val, sizeof(val), "%#lx", (unsigned long)e->flags);
		ret = door_refuse(val, "it holds flags that are not the mount flags cryo dumps", "%s: flags", where);
	}
	if (!ret && e->propagation && e->propagation != MS_SHARED && e->propagation != MS_SLAVE) {
		snprintf(val, sizeof(val), "%#x", e->propagation);
		ret = door_refuse(val, "it is neither shared nor a slave", "%s: propagation", where);
	}
	return ret;
}

/* one node of a tmpfs image: a path in its tmpfs, a kind of file cryo makes */
int mnt_validate_node(const FsNodeEntry *e, const char *where)
{
	mode_t t = e->mode & S_IFMT;
	int ret = door_relpath(e->path, DOOR_PATH_MAX, "%s: path", where);

	if (!ret && t != S_IFDIR && t != S_IFREG && t != S_IFLNK && t != S_IFCHR && t != S_IFBLK && t != S_IFIFO &&
	    t != S_IFSOCK) {
		char val[16];

		snprintf(val, sizeof(val), "%#o", e->mode);
		ret = door_refuse(val, "not a kind of file", "%s: mode", where);
	}
	if (!ret && t == S_IFLNK)
		ret = door_text(e->target, DOOR_PATH_MAX, "%s: target", where);
	return ret;
}

/*
 * A record's bytes against the file it fills: bytes only for a regular
 * file of a known size, inside it; a piece after the first right after the
 * piece before, of the same file (prev: the record before).
 */
static int check_node_data(const FsNodeEntry *e, const FsNodeEntry *prev, const char *where)
{
	uint64_t len = e->has_data ? e->data.len : 0;

	if (!e->has_data && !e->offset)
		return 0;
	if (!S_ISREG(e->mode) || !e->has_size || e->offset > e->size || len > e->size - e->offset) {
		pr_err("%s (%s): %lu bytes at offset %lu, outside the file (%lu bytes)", where, e->path,
		       (unsigned long)len, (unsigned long)e->offset, (unsigned long)e->size);
		return -EINVAL;
	}
	if (e->offset && (!prev || strcmp(prev->path, e->path) || !prev->has_data ||
			  prev->offset + prev->data.len != e->offset || prev->size != e->size)) {
		pr_err("%s (%s): its bytes at offset %lu do not follow the record before", where, e->path,
		       (unsigned long)e->offset);
		return -EINVAL;
	}
	return 0;
}

int mnt_validate_nodes(FsNodeEntry *const *nodes, size_t n, const char *img, bool userns)
{
	char where[96];

	for (size_t i = 0; i < n; i++) {
		const FsNodeEntry *e = nodes[i];

		snprintf(where, sizeof(where), "%s record %zu", img, i);
		if (mnt_validate_node(e, where) || check_node_data(e, i ? nodes[i - 1] : NULL, where))
			return -EINVAL;
		/* cryo makes it as root: not a device the container's own root could not have made */
		if (userns && (S_ISCHR(e->mode) || S_ISBLK(e->mode)) && e->has_rdev && e->rdev &&
		    door_refuse(e->path, "a device node, which the container's user namespace cannot make", "%s: path",
				where))
			return -EINVAL;
		for (size_t j = 0; j < i; j++)
			if (S_ISLNK(nodes[j]->mode) && door_not_via(nodes[i]->path, nodes[j]->path, "%s: path", where))
				return -EINVAL;
	}
	return 0;
}

static int validate_tmpfs(const struct restore_ctx *ctx, const MountEntry *m)
{
	FsNodeEntry **nodes = NULL;
	size_t n = 0;
	char name[64];
	int ret = img_read_all(ctx->dirfd, IMG_TMPFS, m->id, false, &nodes, &n);

	img_name(IMG_TMPFS, m->id, name, sizeof(name));
	if (!ret)
		ret = mnt_validate_nodes(nodes, n, name, ctx->ns && (ctx->ns->flags & CLONE_NEWUSER));
	for (size_t i = 0; i < n; i++)
		img_free_msg(IMG_TMPFS, &nodes[i]->base);
	free(nodes);
	return ret;
}

int mnt_validate(const struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_mounts; i++) {
		char where[64];

		snprintf(where, sizeof(where), "mnt.img record %zu", i);
		if (mnt_validate_entry(ctx->mounts[i], where))
			return -EINVAL;
		if (ctx->mounts[i]->contents && validate_tmpfs(ctx, ctx->mounts[i]))
			return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------- restore */

/*
 * A node of a tmpfs image, made beneath the tmpfs's root top, with no
 * symlink on the way (not even one the image made) and none followed at
 * its end.
 */
static int restore_node(int top, const FsNodeEntry *e, unsigned id)
{
	const char *p = e->path, *last;
	mode_t perm = e->mode & 07777;
	_cleanup_close_ int dir = door_parent(top, p, &last, "tmpfs %u: node", id), fd = -1;
	int ret = 0;

	if (dir < 0)
		return dir;
	if (S_ISDIR(e->mode)) {
		if (mkdirat(dir, last, perm) && errno != EEXIST)
			return pr_perror("tmpfs %u: cannot make directory %s", id, p);
		if ((fd = openat(dir, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
			return pr_perror("tmpfs %u: cannot open directory %s", id, p);
	} else if (S_ISLNK(e->mode)) {
		if (symlinkat(e->target ? e->target : "", dir, last))
			return pr_perror("tmpfs %u: cannot make symlink %s", id, p);
	} else if (S_ISREG(e->mode)) {
		if ((fd = openat(dir, last, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, perm)) < 0)
			return pr_perror("tmpfs %u: cannot create %s", id, p);
		if (e->has_data && e->data.len && pwrite(fd, e->data.data, e->data.len, e->offset) != (ssize_t)e->data.len)
			ret = pr_perror("tmpfs %u: cannot write %s", id, p);
		if (!ret && e->has_size && ftruncate(fd, e->size))
			ret = pr_perror("tmpfs %u: cannot size %s", id, p);
		if (ret || e->offset)
			return ret;	/* the rest of a file made by its first chunk */
	} else if (mknodat(dir, last, e->mode, e->has_rdev ? e->rdev : 0)) {
		return pr_perror("tmpfs %u: cannot make node %s", id, p);
	}
	/* through the fd where there is one; else the node just made, which no symlink can be */
	if (fd >= 0 ? fchown(fd, e->uid, e->gid) : fchownat(dir, last, e->uid, e->gid, AT_SYMLINK_NOFOLLOW))
		return pr_perror("tmpfs %u: cannot give %s to %u:%u", id, p, e->uid, e->gid);
	if (!S_ISLNK(e->mode) && (fd >= 0 ? fchmod(fd, perm) : fchmodat(dir, last, perm, 0)))
		return pr_perror("tmpfs %u: cannot chmod %s", id, p);
	return 0;
}

static int set_mtime(int top, const FsNodeEntry *e, unsigned id)
{
	struct timespec ts[2] = {
		{ .tv_nsec = UTIME_OMIT },
		{ .tv_sec = e->mtime_ns / 1000000000, .tv_nsec = e->mtime_ns % 1000000000 },
	};
	const char *last;
	_cleanup_close_ int dir = -1;

	if (!e->has_mtime_ns)
		return 0;
	if ((dir = door_parent(top, e->path, &last, "tmpfs %u: node", id)) < 0)
		return dir;
	utimensat(dir, last, ts, AT_SYMLINK_NOFOLLOW);
	return 0;
}

static int restore_tmpfs(struct restore_ctx *ctx, const MountEntry *m, int top)
{
	struct img *img = img_open_pre(&ctx->pre_imgs, ctx->dirfd, IMG_TMPFS, m->id, false);
	FsNodeEntry **nodes = NULL;
	size_t n = 0;
	ProtobufCMessage *msg;
	int ret;

	if (!img)
		return -EIO;
	while ((ret = img_read(img, &msg)) == 1) {
		FsNodeEntry **nv = xrealloc_array(nodes, n + 1, sizeof(*nv));

		if (!nv) {
			img_free_msg(IMG_TMPFS, msg);
			ret = -ENOMEM;
			break;
		}
		nodes = nv;
		nodes[n++] = (FsNodeEntry *)msg;
		ret = restore_node(top, nodes[n - 1], m->id);
		if (ret)
			break;
	}
	img_close(img);
	/* times last, deepest first: making what a directory holds changes its own */
	for (size_t i = n; !ret && i-- > 0;)
		ret = set_mtime(top, nodes[i], m->id);
	for (size_t i = 0; i < n; i++)
		img_free_msg(IMG_TMPFS, &nodes[i]->base);
	free(nodes);
	return ret;
}

/* a path for mount(2) to what fd holds, resolved by the door before */
#define FD_PATH_LEN	32
static const char *fd_path(int fd, char buf[FD_PATH_LEN])
{
	snprintf(buf, FD_PATH_LEN, "/proc/self/fd/%d", fd);
	return buf;
}

/* the container's root as built so far (the root mount once it is on the stage) */
static int stage_open(const struct restore_ctx *ctx)
{
	int fd = open(ctx->mnt_stage, O_PATH | O_DIRECTORY | O_CLOEXEC);

	return fd >= 0 ? fd : pr_perror("cannot open the container's root %s", ctx->mnt_stage);
}

/*
 * Where mount j is, and sub beneath it, in the container's root (root),
 * for mount i: an O_PATH fd. Its symlinks are followed inside it.
 */
static int stage_path(const struct restore_ctx *ctx, int root, size_t i, size_t j, const char *sub)
{
	char path[PATH_MAX_LEN * 2];

	snprintf(path, sizeof(path), "%s%s", j ? ctx->mounts[j]->mountpoint : "", sub ?: "");
	return door_open(root, path[0] ? path : "/", O_PATH, 0, DOOR_IN_ROOT, "mnt.img: %s of mount %u",
			 i == j ? "the mountpoint" : "the source", ctx->mounts[i]->id);
}

/*
 * An earlier mount of the same peer group that m can be bound from (a peer
 * of a shared mount is a bind of it): both binds of host directories, m's
 * inside the other's. Its index and what of it m binds, or false.
 */
static bool peer_of(struct restore_ctx *ctx, size_t i, size_t *j, const char **sub)
{
	const MountEntry *m = ctx->mounts[i];

	if (!m->has_shared_group || !m->bind_source)
		return false;
	for (*j = 0; *j < i; (*j)++) {
		const MountEntry *o = ctx->mounts[*j];
		size_t ol = o->bind_source ? strlen(o->bind_source) : 0;

		if (!o->has_shared_group || o->shared_group != m->shared_group || !ol ||
		    strncmp(m->bind_source, o->bind_source, ol) || (m->bind_source[ol] && m->bind_source[ol] != '/'))
			continue;
		*sub = m->bind_source + ol;
		return true;
	}
	return false;
}

/* the earlier mount of the tree's that m binds part of (bind_of) */
static int inner_of(struct restore_ctx *ctx, size_t i, size_t *j)
{
	const MountEntry *m = ctx->mounts[i];

	for (*j = 0; *j < i; (*j)++)
		if (ctx->mounts[*j]->id == m->bind_of)
			return 0;
	pr_err("mnt.img: mount %s binds mount %u, which is not before it", m->mountpoint, m->bind_of);
	return -EINVAL;
}

/*
 * Where mount i comes from, if it is a bind: *src an O_PATH fd of a place
 * in the container's root (a part of an earlier mount, a peer), or *host a
 * host directory; *peer if bound from its peer group.
 */
static int bind_source_of(struct restore_ctx *ctx, size_t i, int root, int *src, const char **host, bool *peer)
{
	const MountEntry *m = ctx->mounts[i];
	const char *sub = NULL;
	size_t j;
	int ret;

	*src = -1;
	*host = NULL;
	*peer = false;
	if (m->has_bind_of) {
		if ((ret = inner_of(ctx, i, &j)))
			return ret;
		/* a pty of its devpts bound on a file (runc's /dev/console) is made first */
		if (!strcmp(m->fstype, "devpts") && m->root && m->root[0] && strcmp(m->root, "/")) {
			char pts[FD_PATH_LEN + PATH_MAX_LEN];
			_cleanup_close_ int dev = stage_path(ctx, root, i, j, NULL);

			if (dev < 0)
				return dev;
			snprintf(pts, sizeof(pts), "/proc/self/fd/%d%s", dev, m->root);
			if ((ret = pty_make_bound(ctx, m, pts)))
				return ret;
		}
		*src = stage_path(ctx, root, i, j, m->root);
		return *src < 0 ? *src : 0;
	}
	if (!m->bind_source)
		return 0;
	if (i && peer_of(ctx, i, &j, &sub)) {
		*peer = true;
		*src = stage_path(ctx, root, i, j, sub);
		return *src < 0 ? *src : 0;
	}
	*host = bind_from(ctx, m);
	return 0;
}

/* an inner bind in the shared group of the mount it binds */
static bool same_group_as_source(struct restore_ctx *ctx, size_t i)
{
	const MountEntry *m = ctx->mounts[i];
	size_t j;

	return m->has_shared_group && !inner_of(ctx, i, &j) && ctx->mounts[j]->has_shared_group &&
	       ctx->mounts[j]->shared_group == m->shared_group;
}

/*
 * Mount i of the tree, on its mountpoint beneath the container's root
 * (through /proc/self/fd/N of the fd the door opened), its files in, then
 * its flags and propagation.
 */
static int mount_at(struct restore_ctx *ctx, size_t i)
{
	const MountEntry *m = ctx->mounts[i];
	unsigned long keep = m->flags & ~MS_RDONLY, prop = m->propagation ? m->propagation : MS_PRIVATE;
	char tp[FD_PATH_LEN], sp[FD_PATH_LEN];
	_cleanup_close_ int root = -1, target = -1, src = -1, top = -1;
	const char *host;
	bool peer;
	int ret;

	if (i && (root = stage_open(ctx)) < 0)
		return root;
	target = i ? stage_path(ctx, root, i, i, NULL) : stage_open(ctx);
	if (target < 0)
		return target;
	if ((ret = bind_source_of(ctx, i, root, &src, &host, &peer)))
		return ret;
	if (src >= 0 || host) {
		if (mount(src >= 0 ? fd_path(src, sp) : host, fd_path(target, tp), NULL, MS_BIND, NULL))
			return pr_perror("cannot bind %s%s on the container's %s", host ? "" : "the container's ",
					 host ?: m->has_bind_of ? m->root : m->bind_source, m->mountpoint);
	} else if (mount(m->source, fd_path(target, tp), m->fstype, keep, m->options)) {
		return pr_perror("cannot mount %s (%s, %s) on the container's %s", m->source, m->fstype, m->options,
				 m->mountpoint);
	}
	/* what is there now: the new mount */
	top = i ? stage_path(ctx, root, i, i, NULL) : stage_open(ctx);
	if (top < 0)
		return top;
	if (m->contents && (ret = restore_tmpfs(ctx, m, top)))
		return ret;
	/* the mount's own flags, read-only last: the files are in by now */
	if (mount(NULL, fd_path(top, tp), NULL, MS_REMOUNT | MS_BIND | m->flags, NULL))
		return pr_perror("cannot set the flags %#lx of the container's %s", (unsigned long)m->flags,
				 m->mountpoint);
	/*
	 * A peer bound from its group keeps it; a slave keeps its master. The
	 * root is made shared only once pivoted into (mnt_restore): pivot_root
	 * refuses a shared new root.
	 */
	if (!i && prop == MS_SHARED)
		return 0;
	/*
	 * A bind of part of the tree's own shared mount joins that mount's
	 * peer group; it stays there only if it was in it (LXC's /dev tmpfs
	 * and its boot_id), else it is shared in a group of its own (LXC's
	 * /proc/sys over /proc), or whatever is mounted beneath one shows
	 * beneath the other too.
	 */
	if (m->has_bind_of && prop == MS_SHARED && !same_group_as_source(ctx, i) &&
	    mount(NULL, fd_path(top, tp), NULL, MS_PRIVATE, NULL))
		return pr_perror("cannot take the container's %s out of the peer group of what it binds",
				 m->mountpoint);
	if (!peer && mount(NULL, fd_path(top, tp), NULL, prop, NULL))
		return pr_perror("cannot make the container's %s %s", m->mountpoint,
				 prop == MS_SHARED ? "shared" : prop == MS_SLAVE ? "a slave" : "private");
	return 0;
}

int mnt_restore(struct restore_ctx *ctx)
{
	const char *stage = ctx->mnt_stage;
	int ret = 0;

	/*
	 * Slaves of cryo's mounts: a bind of a host directory that was a
	 * slave of a host peer group is one again; the rest is made private
	 * or shared below, as it was.
	 */
	if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL))
		return pr_perror("cannot make the new mount namespace a slave of cryo's");
	for (size_t i = 0; i < ctx->nr_mounts && !ret; i++)
		ret = mount_at(ctx, i);
	/* pivot_root(".", "."): the old root ends up on top of the new one, and goes */
	if (!ret && (chdir(stage) || syscall(SYS_pivot_root, ".", ".")))
		ret = pr_perror("cannot pivot_root into the container's root %s", stage);
	if (!ret && (umount2(".", MNT_DETACH) || chdir("/")))
		ret = pr_perror("cannot let go of cryo's root in the container");
	if (!ret && ctx->mounts[0]->propagation == MS_SHARED && mount(NULL, "/", NULL, MS_SHARED, NULL))
		ret = pr_perror("cannot make the container's root shared");
	return ret;
}

int mnt_make_stage(struct restore_ctx *ctx)
{
	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWNS))
		return 0;
	snprintf(ctx->mnt_stage, sizeof(ctx->mnt_stage), "/tmp/.cryo-root-XXXXXX");
	if (!mkdtemp(ctx->mnt_stage)) {
		ctx->mnt_stage[0] = 0;
		return pr_perror("cannot make a directory to build the container's root in");
	}
	return 0;
}

void mnt_remove_stage(struct restore_ctx *ctx)
{
	if (ctx->mnt_stage[0] && rmdir(ctx->mnt_stage))
		pr_warn("cannot remove %s: %s", ctx->mnt_stage, strerror(errno));
	ctx->mnt_stage[0] = 0;
}
