/*
 * cryo dump: seize the task, read its state from outside, run the parasite
 * for what only the task can tell and for its memory, remove the parasite,
 * write the images, then kill the task (or let it run on). Any failure
 * before the end leaves the task running exactly as it was.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "cgroup.h"
#include "chain.h"
#include "compat.h"
#include "dump.h"
#include "dump-round.h"
#include "files.h"
#include "guard.h"
#include "fault.h"
#include "log.h"
#include "mem-flags.h"
#include "notify.h"
#include "ns.h"
#include "pagesrv.h"
#include "postcopy.h"
#include "seize.h"
#include "track.h"

static int write_one(struct dump_ctx *ctx, enum img_type type, unsigned id, const ProtobufCMessage *m)
{
	struct img *img = img_create(ctx->dirfd, type, id);
	int ret;

	if (!img)
		return -EIO;
	ret = img_write(img, m);
	return img_close(img) ?: ret;
}

/* where each task's tracker is parked, for the next round */
static int write_tracks(struct dump_ctx *ctx, InventoryEntry *inv)
{
	inv->tracks = arena_array(&ctx->arena, TrackEntry *, ctx->nr_tasks);
	if (!inv->tracks)
		return -ENOMEM;
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];
		TrackEntry *e;

		if (!t->track || t->track->task_fd < 0)
			continue;
		e = arena_new(&ctx->arena, TrackEntry);
		if (!e)
			return -ENOMEM;
		track_entry__init(e);
		e->pid = t->pid;
		e->vpid = t->vpid;
		e->fd = t->track->task_fd;
		inv->tracks[inv->n_tracks++] = e;
	}
	return 0;
}

static int write_inventory(struct dump_ctx *ctx)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	struct utsname u;
	struct timespec ts;

	uname(&u);
	clock_gettime(CLOCK_REALTIME, &ts);
	inv.format_version = IMG_FORMAT_VERSION;
	inv.root_pid = ctx->tasks[0]->vpid;
	inv.cryo_version = CRYO_VERSION;
	inv.kernel_release = u.release;
	inv.has_dump_time_ns = inv.has_shell_job = inv.has_page_size = inv.has_nr_tasks = true;
	inv.dump_time_ns = ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	inv.shell_job = ctx->opts->shell_job;
	inv.page_size = PAGE_SIZE;
	inv.nr_tasks = ctx->nr_tasks;
	inv.has_pre_dump = ctx->pre_dump;
	inv.pre_dump = ctx->pre_dump;
	return write_tracks(ctx, &inv) ?: write_one(ctx, IMG_INVENTORY, 0, &inv.base);
}

/* the images of the whole dump, once every task is done */
static int write_images(struct dump_ctx *ctx)
{
	int ret;

	if ((ret = pstree_write(ctx)) || (ret = files_write(ctx)) || (ret = memfd_write(ctx)) ||
	    (ret = ns_dump(ctx)) || (ret = cgroup_dump(ctx)) || (ret = mnt_dump(ctx)) || (ret = ipc_dump(ctx)) ||
	    (ret = net_dump(ctx)))
		return ret;
	/* last: inventory.img, then manifest.img, which vouches for everything before it */
	return write_inventory(ctx) ?: mem_write_manifest(ctx);
}

/* the leader's rseq registration, if it has one */
static const RseqEntry *leader_rseq(const struct dump_task *t)
{
	for (size_t i = 0; t->core->threads && i < t->core->n_threads; i++)
		if (t->core->threads[i]->tid == (uint32_t)t->pid)
			return t->core->threads[i]->rseq;
	return NULL;
}

/*
 * The pages, with the leader's rseq area unregistered meanwhile: the
 * kernel would write the CPU number there whenever the parasite is moved
 * or preempted, and the bytes written to the image would then not be the
 * ones the checksum was made from. The restore registers it again.
 */
static int dump_pages_quiet(struct dump_ctx *ctx, struct dump_task *t)
{
	const RseqEntry *rs = leader_rseq(t);
	int ret;

	if (rs && (ret = parasite_rseq(t->parasite, rs->ptr, rs->len, rs->sig, false)))
		return ret;
	ret = mem_dump_pages(ctx, t);
	if (rs && parasite_rseq(t->parasite, rs->ptr, rs->len, rs->sig, true) && !ret)
		ret = -EIO;
	return ret;
}

/* the trackers earlier rounds parked in the task: cryo's, not the task's */
static int close_parked(struct dump_task *t)
{
	for (int i = 0; i < t->nr_parked; i++) {
		long r;

		if (parasite_syscall(t->parasite, __NR_close, t->parked[i], 0, 0, 0, &r))
			return -EIO;
	}
	t->nr_parked = 0;
	if (t->track)
		t->track->task_fd = -1;
	return 0;
}

/*
 * The previous round's view of the task: the pages its images hold and the
 * tracker it parked there, taken over (and any tracker the task inherited
 * from its parent, to close).
 */
static int track_prepare(struct dump_ctx *ctx, struct dump_task *t)
{
	const InventoryEntry *inv = ctx->prev_inv;
	int ret;

	if (t->zombie)
		return 0;
	t->nr_parked = track_find_parked(t->pid, t->parked, ARRAY_SIZE(t->parked));
	if (!inv)
		return 0;
	if ((ret = chain_open(ctx->dirfd, ctx->opts->images_dir, t->vpid, false, &t->prev)))
		return ret;
	for (size_t i = 0; i < inv->n_tracks; i++) {
		const TrackEntry *e = inv->tracks[i];

		if (e->pid != (uint32_t)t->pid || e->vpid != (uint32_t)t->vpid || t->track ||
		    !track_is_parked(t, e->fd))
			continue;
		t->track = xzalloc(sizeof(*t->track));
		if (!t->track)
			return -ENOMEM;
		if (track_take(t->pid, e->fd, t->track)) {
			free(t->track);
			t->track = NULL;
		}
	}
	return 0;
}

/* everything that needs the task stopped and (for part of it) infected */
static int dump_seized(struct dump_ctx *ctx, struct dump_task *t)
{
	int ret;

	if ((ret = proc_parse_status(t->pid, &t->status)) || (ret = task_collect(ctx, t)) ||
	    (ret = mem_collect(ctx, t)) || (ret = files_collect(ctx, t)))
		return ret;

	t->parasite = parasite_infect(t->pid, t->exec_addr, ctx->kd.pipe_max_size, ctx->opts->guard);
	if (!t->parasite)
		return -EIO;
	ret = parasite_cmd(t->parasite, PARASITE_CMD_INIT) ?: close_parked(t);
	if (!ret)
		ret = task_collect_parasite(ctx, t);
	if (!ret)
		ret = dump_pages_quiet(ctx, t);
	if (parasite_cure(t->parasite) && !ret)
		ret = -EIO;
	t->parasite = NULL;
	if (ret)
		return ret;
	fault_point("cured");
	if (t->core->task && t->core->task->creds)
		ns_translate_creds(ctx, t->core->task->creds);
	/* the tids the tree knows, inside its pid namespace */
	for (size_t i = 0; i < t->core->n_threads; i++)
		t->core->threads[i]->tid = t->vtids[i];
	if ((ret = write_one(ctx, IMG_CORE, t->vpid, &t->core->base)) ||
	    (ret = write_one(ctx, IMG_MM, t->vpid, &t->mm->base)) || (ret = files_write_fds(ctx, t)))
		return ret;
	return 0;
}

/* After success: kill the task (the default) or let it go on. */
static int finish_task(struct dump_task *t, bool killed)
{
	char why[96];
	int st;

	if (!killed) {
		if (ptrace(PTRACE_DETACH, t->pid, 0, 0))
			return pr_perror("pid %d: cannot resume it after the dump", t->pid);
		release_threads(t->tids, 1, t->nr_tids);
		return 0;
	}
	if (kill(t->pid, SIGKILL))
		return pr_perror("pid %d: cannot kill it after the dump", t->pid);
	/*
	 * As their tracer we see each thread die (and release the others);
	 * the leader's parent still reaps the process.
	 */
	for (int i = t->nr_tids - 1; i >= 0; i--) {
		if (wait_task(t->tids[i], &st, 0) < 0)
			return -ECHILD;
		if (!WIFSIGNALED(st) && !WIFEXITED(st))
			pr_warn("tid %d %s after the dump", t->tids[i], describe_status(st, why, sizeof(why)));
	}
	return 0;
}

static int add_task(struct dump_ctx *ctx, pid_t pid, pid_t ppid, struct dump_task **out)
{
	struct dump_task **nv = xrealloc_array(ctx->tasks, ctx->nr_tasks + 1, sizeof(*nv));
	struct dump_task *t = xzalloc(sizeof(*t));

	if (!nv || !t) {
		free(t);
		return -ENOMEM;
	}
	ctx->tasks = nv;
	t->pid = pid;
	t->ppid = ppid;
	ctx->tasks[ctx->nr_tasks++] = t;
	*out = t;
	return 0;
}

/*
 * Seize a live task with all its threads; a zombie is only recorded. In a
 * frozen cgroup the task and its threads are only attached: they stop once
 * thawed (settle_tree).
 */
static int seize_one(struct dump_task *t, bool frozen)
{
	int ret;

	if (kill(t->pid, 0) && errno == ESRCH) {
		pr_err("pid %d: no such process", t->pid);
		return -ESRCH;
	}
	if ((ret = proc_parse_stat(t->pid, &t->stat)))
		return ret;
	if (t->stat.state == 'Z') {
		t->zombie = true;
		return 0;
	}
	ret = frozen ? seize_attach(t->pid, false) : seize_task(t->pid, &t->group_stop, t->ppid != 0);
	if (ret == -ESRCH && t->ppid && !frozen) {
		/* it exited on its own meanwhile: a zombie now, its parent is frozen (or reaped already) */
		t->gone = kill(t->pid, 0) && errno == ESRCH;
		if (t->gone)
			return 0;
		if ((ret = proc_parse_stat(t->pid, &t->stat)))
			return ret;
		t->zombie = t->stat.state == 'Z';
		if (!t->zombie)
			pr_err("pid %d: cannot seize it, yet it is neither gone nor a zombie", t->pid);
		return t->zombie ? 0 : -ESRCH;
	}
	if (ret)
		return ret;
	if ((ret = seize_threads(t->pid, &t->tids, &t->nr_tids, frozen))) {
		ptrace(PTRACE_DETACH, t->pid, 0, 0);
		return ret;
	}
	t->seized = true;
	t->settled = !frozen;
	/* stat again: now it cannot change its group or session any more */
	return frozen ? 0 : proc_parse_stat(t->pid, &t->stat);
}

/* thawed: wait for the stop of every task and thread attached while frozen */
static int settle_tree(struct dump_ctx *ctx)
{
	int ret = 0;

	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct dump_task *t = ctx->tasks[i];
		int r;

		if (!t->seized || t->settled)
			continue;
		r = seize_wait(t->pid, &t->group_stop, false);
		for (int k = 1; k < t->nr_tids; k++)
			if (seize_wait(t->tids[k], NULL, false) && !r)
				r = -ESRCH;
		if (r) {
			/* seize_wait let go of what did not stop */
			t->seized = false;
			ret = ret ?: r;
			continue;
		}
		t->settled = true;
		if (!ret)
			ret = proc_parse_stat(t->pid, &t->stat);
	}
	return ret;
}

/*
 * Seize the tree top-down: a seized task forks no more, so its children
 * listed afterwards are all there are.
 */
static int seize_tree(struct dump_ctx *ctx, pid_t root)
{
	bool frozen = ctx->freezer != NULL;
	struct dump_task *t;
	int ret = add_task(ctx, root, 0, &t);

	if (!ret)
		ret = seize_one(t, frozen);
	if (!ret && t->zombie) {
		pr_err("pid %d is a zombie: there is nothing to dump", root);
		ret = -ESRCH;
	}
	for (size_t i = 0; !ret && i < ctx->nr_tasks; i++) {
		_cleanup_free_ pid_t *kids = NULL;
		int nr;

		t = ctx->tasks[i];
		if (t->zombie)
			continue;
		ret = proc_list_children(t->pid, &kids, &nr);
		for (int k = 0; !ret && k < nr; k++) {
			struct dump_task *c;

			ret = add_task(ctx, kids[k], t->pid, &c);
			if (!ret)
				ret = seize_one(c, frozen);
			if (!ret && c->gone)	/* exited and reaped before we got it */
				free(ctx->tasks[--ctx->nr_tasks]);
		}
	}
	return ret;
}

int dump_fence_tree(struct dump_ctx *ctx)
{
	int ret = 0;

	for (size_t i = 0; i < ctx->nr_tasks && !ret && !ctx->fenced; i++) {
		struct dump_task *t = ctx->tasks[i];

		if (t->seized && !t->zombie)
			ret = task_fence(&t->fence, t->pid, t->tids, t->nr_tids, t->exec_addr, ctx->opts->guard);
	}
	ctx->fenced = true;
	if (!ret)
		fault_point("fenced");
	return ret;
}

/* every task's threads as they were before the fence */
static int unfence_tree(struct dump_ctx *ctx)
{
	int ret = 0;

	for (size_t i = 0; i < ctx->nr_tasks; i++)
		if (task_unfence(&ctx->tasks[i]->fence)) {
			pr_err("pid %d: cannot put its threads' registers back", ctx->tasks[i]->pid);
			ret = -EIO;
		}
	ctx->fenced = false;
	return ret;
}

/* let every seized task go, as it was (into the freezer, if found frozen); how many there were */
static size_t release_tree(struct dump_ctx *ctx)
{
	size_t n = 0;

	unfence_tree(ctx);
	cgroup_refreeze(ctx);
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct dump_task *t = ctx->tasks[i];

		if (!t->seized)
			continue;
		release_threads(t->tids, 1, t->nr_tids);
		if (ptrace(PTRACE_DETACH, t->pid, 0, 0))
			pr_perror("pid %d: cannot resume it after the failed dump", t->pid);
		t->seized = false;
		n++;
	}
	return n;
}

/*
 * What clone() can share between processes (not threads). An fd table or
 * fs info shared with the parent (and so perhaps with siblings the parent
 * cloned alike) is rebuilt by cloning the same way; any other sharing is
 * refused. Each task is compared with every one before it.
 */
static int check_sharing(struct dump_ctx *ctx, size_t i)
{
	static const struct {
		int type;
		uint32_t flag;		/* 0: cannot be rebuilt */
		const char *what;
	} res[] = {
		{ KCMP_VM, 0, "its address space (CLONE_VM)" },
		{ KCMP_FILES, CLONE_FILES, "its fd table (CLONE_FILES)" },
		{ KCMP_FS, CLONE_FS, "its root, cwd and umask (CLONE_FS)" },
		{ KCMP_SIGHAND, 0, "its signal handlers (CLONE_SIGHAND)" },
	};
	struct dump_task *t = ctx->tasks[i];

	if (t->zombie)
		return 0;
	for (size_t k = 0; k < ARRAY_SIZE(res) && i; k++)
		if (res[k].flag && sys_kcmp(t->pid, t->ppid, res[k].type, 0, 0) == 0)
			t->clone_flags |= res[k].flag;
	for (size_t j = 0; j < i; j++) {
		const struct dump_task *o = ctx->tasks[j];

		for (size_t k = 0; k < ARRAY_SIZE(res) && !o->zombie; k++) {
			if (sys_kcmp(t->pid, o->pid, res[k].type, 0, 0))
				continue;
			if (res[k].flag && (t->clone_flags & res[k].flag))
				continue;	/* the parent's, shared with o too */
			pr_err("pid %d shares %s with pid %d%s: not supported yet", t->pid, res[k].what,
			       o->pid, res[k].flag ? ", not its parent" : "");
			return -ENOTSUP;
		}
	}
	return 0;
}

/* --page-server: the images (but the pages, streamed already) go there too */
static int ship_images(struct dump_ctx *ctx)
{
	uint64_t t0 = now_ns();
	int ret;

	if (!ctx->ps)
		return 0;
	ret = ps_send_images(ctx->ps, ctx->dirfd, ctx->ps_dir);
	if (!ret)
		pr_info("page server %s has the images in %s/ (%lu MiB sent, the last part in %lu ms)",
			ps_peer(ctx->ps), ctx->ps_dir, ps_sent(ctx->ps) >> 20, (now_ns() - t0) / 1000000);
	return ret;
}

static int dump_tree(struct dump_ctx *ctx)
{
	int ret = ns_collect(ctx) ?: net_lock(ctx) ?: notify(ctx->opts, "network-lock", ctx->root);

	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		ret = pstree_check(ctx, ctx->tasks[i]) ?: check_sharing(ctx, i) ?: track_prepare(ctx, ctx->tasks[i]);
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		if (!ctx->tasks[i]->zombie)
			ret = dump_seized(ctx, ctx->tasks[i]);
	if (!ret && !(ret = write_images(ctx)))
		fault_point("images-written");
	return ret ?: ship_images(ctx);
}

static void free_tree(struct dump_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct dump_task *t = ctx->tasks[i];

		proc_status_free(&t->status);
		free(t->vtids);
		free(t->chunks);
		free(t->ref_runs);
		if (t->track)
			track_close(t->track);
		free(t->track);
		chain_close(t->prev);
		free(t->tids);
		free(t);
	}
	free(ctx->tasks);
}

/*
 * Freeze the tree's own cgroup if it has one, seize every task, and thaw:
 * the tasks stop in ptrace as they leave the freezer, none having run a
 * single instruction meanwhile.
 */
static int seize_all(struct dump_ctx *ctx, pid_t root)
{
	int ret = cgroup_freeze(ctx, root);

	if (ret)
		return ret;
	ret = seize_tree(ctx, root);
	if (!ret)
		ret = cgroup_check_members(ctx);
	fault_point("dump-seized");
	if (ctx->freezer) {
		int r = cgroup_thaw(ctx);

		ret = ret ?: r;
		r = settle_tree(ctx);
		ret = ret ?: r;
	}
	return ret;
}

/*
 * What a dump and a pre-dump begin with: the tree's root, the images
 * directory (its old manifest and inventory removed: they would vouch for a directory
 * about to change), and the previous dump to build on.
 */
static int dump_begin(struct dump_ctx *ctx, struct cryo_opts *o, pid_t *root)
{
	ProtobufCMessage *m;
	int pfd, ret;

	*root = o->pid;
	if (refuse_unsupported(o))
		return -ENOTSUP;
	if (o->cgroup && cgroup_root_task(o->cgroup, root))
		return -EINVAL;
	if (*root <= 0) {
		pr_err("%s: which process? Give its pid with -t PID, or its container's cgroup with --cgroup DIR",
		       o->command);
		return -EINVAL;
	}
	kerndat_basics(&ctx->kd);
	ctx->dirfd = open_images_dir(o->images_dir);
	if (ctx->dirfd < 0)
		return ctx->dirfd;
	if (o->page_server || ctx->ps) {
		if (!realpath(o->images_dir, ctx->ps_dir_buf))
			return pr_perror("cannot resolve %s", o->images_dir);
		ctx->ps_dir = strrchr(ctx->ps_dir_buf, '/') + 1;
		if (!ctx->ps_dir[0]) {
			pr_err("--page-server: the images directory needs a name, not /");
			return -EINVAL;
		}
		if (!ctx->ps && (ret = ps_connect(o->page_server, o->secret_file, o->compress, &ctx->ps)))
			return ret;
	}
	if (unlinkat(ctx->dirfd, "manifest.img", 0) && errno != ENOENT)
		return pr_perror("cannot remove %s/manifest.img", o->images_dir);
	if (unlinkat(ctx->dirfd, "inventory.img", 0) && errno != ENOENT)
		return pr_perror("cannot remove %s/inventory.img", o->images_dir);
	if (!o->prev_images_dir) {
		if (unlinkat(ctx->dirfd, "parent", 0) && errno != ENOENT)
			return pr_perror("cannot remove %s/parent", o->images_dir);
		return 0;
	}
	if ((ret = chain_link(ctx->dirfd, o->images_dir, o->prev_images_dir)))
		return ret;
	pfd = openat(ctx->dirfd, "parent", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return pr_perror("%s/parent: cannot open it", o->images_dir);
	ret = img_read_one(pfd, IMG_INVENTORY, 0, &m);
	close(pfd);
	if (ret)
		return ret;
	ctx->prev_inv = (InventoryEntry *)m;
	return 0;
}

static void dump_end(struct dump_ctx *ctx)
{
	cgroup_refreeze_drop(ctx);
	if (!ctx->ps_shared)
		ps_free(ctx->ps);
	files_release(ctx);
	free_tree(ctx);
	free(ctx->memfds);
	arena_free(&ctx->arena);
	if (ctx->prev_inv)
		img_free_msg(IMG_INVENTORY, &ctx->prev_inv->base);
	if (ctx->dirfd >= 0)
		close(ctx->dirfd);
}

/*
 * The pages a round dumped (and sends) of every task, and those it left to
 * the previous dump or to post-copy, into its stats; the first returned.
 */
static uint64_t round_pages(struct dump_ctx *ctx)
{
	struct dump_stats *s = &ctx->stats;

	s->pages_written = s->pages_skipped_parent = s->pages_lazy = 0;
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];

		for (size_t k = 0; k < t->nr_chunks; k++)
			s->pages_written += t->chunks[k].len / PAGE_SIZE;
		for (size_t k = 0; k < t->nr_ref_runs; k++) {
			if (t->ref_runs[k].flags & PE_IN_PREV)
				s->pages_skipped_parent += t->ref_runs[k].len / PAGE_SIZE;
			if (t->ref_runs[k].flags & PE_LAZY)
				s->pages_lazy += t->ref_runs[k].len / PAGE_SIZE;
		}
	}
	return s->pages_written;
}

static struct dump_ctx *round_ctx(struct cryo_opts *o, struct dump_round *r, bool pre_dump)
{
	struct dump_ctx *ctx = xzalloc(sizeof(*ctx));

	if (!ctx)
		return NULL;
	ctx->opts = o;
	ctx->dirfd = -1;
	ctx->pre_dump = pre_dump;
	ctx->lazy = o->lazy_pages && !pre_dump;
	ctx->ps = r->ps;
	ctx->ps_shared = r->ps != NULL;
	return ctx;
}

static void round_end(struct dump_ctx *ctx)
{
	dump_end(ctx);
	free(ctx);
}

int dump_hold(struct cryo_opts *o, struct dump_round *r)
{
	struct dump_ctx *ctx = round_ctx(o, r, false);
	uint64_t t0 = now_ns();
	int ret;

	r->held = NULL;
	if (!ctx)
		return -ENOMEM;
	if ((ret = dump_begin(ctx, o, &ctx->root)) || (ret = notify(o, "pre-dump", ctx->root))) {
		round_end(ctx);
		return ret;
	}
	r->t_frozen = ctx->stats.t_freeze = now_ns();
	ret = seize_all(ctx, ctx->root);
	ctx->stats.t_frozen = now_ns();
	if (!ret)
		ret = dump_tree(ctx);
	r->pages = round_pages(ctx);
	r->stats = ctx->stats;
	if (ret) {
		size_t n;

		/* connections leave repair mode before their tasks run again, then the network opens */
		inet_dump_finish(ctx, true);
		net_unlock(ctx, true);
		n = release_tree(ctx);
		if (n)
			pr_info("pid %d and its tree (%zu processes) resumed after the failed dump", ctx->root, n);
		inet_dump_finish(ctx, false);
		net_unlock(ctx, false);
		notify(o, "network-unlock", ctx->root);
		round_end(ctx);
		return ret;
	}
	pr_info("dumped pid %d (%zu processes) to %s in %lu ms", ctx->root, ctx->nr_tasks, o->images_dir,
		(now_ns() - t0) / 1000000);
	r->held = ctx;
	r->root = ctx->root;
	return 0;
}

int dump_lazy_runs(const struct dump_round *r, dump_lazy_fn fn, void *arg)
{
	const struct dump_ctx *ctx = r->held;

	for (size_t i = 0; ctx && i < ctx->nr_tasks; i++) {
		const struct dump_task *t = ctx->tasks[i];

		for (size_t k = 0; k < t->nr_ref_runs; k++) {
			int ret;

			if (!(t->ref_runs[k].flags & PE_LAZY))
				continue;
			if ((ret = fn(arg, t->pid, t->vpid, t->ref_runs[k].addr, t->ref_runs[k].len)))
				return ret;
		}
	}
	return 0;
}

int dump_release(struct dump_round *r, bool kill)
{
	struct dump_ctx *ctx = r->held;
	int ret = 0;

	if (!ctx)
		return 0;
	r->held = NULL;
	/*
	 * Once one task is killed there is no going back: should cryo die
	 * meanwhile, its guardian kills the rest.
	 */
	for (size_t i = 0; i < ctx->nr_tasks && kill; i++)
		if (ctx->tasks[i]->seized && !(ctx->tasks[i]->g_kill = guard_kill(ctx->opts->guard, ctx->tasks[i]->pid)) &&
		    ctx->opts->guard) {
			pr_err("pid %d: cannot make sure its tree dies whole: it runs on", ctx->root);
			kill = false;
			ret = -EIO;
		}
	if (!kill) {
		inet_dump_finish(ctx, true);
		net_unlock(ctx, true);
	}
	/* out of repair mode (or about to die in it): their registers go back */
	if (unfence_tree(ctx) && !kill)
		ret = -EIO;
	/* a cgroup found frozen: frozen again before its tasks go on, thawed for them to die */
	if (!kill)
		ret = cgroup_refreeze(ctx) ?: ret;
	else
		cgroup_refreeze_drop(ctx);
	/*
	 * Children first: the init of a pid namespace, killed, waits for
	 * every other task there to be reaped, which as their tracer we must
	 * let happen first.
	 */
	for (size_t i = ctx->nr_tasks; i-- > 0;)
		if (ctx->tasks[i]->seized) {
			ret = finish_task(ctx->tasks[i], kill) ?: ret;
			fault_point(kill ? "dump-kill" : "dump-release");
		}
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		guard_done(ctx->tasks[i]->g_kill);
		ctx->tasks[i]->g_kill = NULL;
	}
	inet_dump_finish(ctx, false);
	net_unlock(ctx, false);
	if (!kill)
		notify(ctx->opts, "network-unlock", ctx->root);
	round_end(ctx);
	return ret;
}

static int dump_command(struct cryo_opts *o)
{
	struct dump_round r = { 0 };

	/* post-copy: the memory stays in the stopped tree until the restore side has it */
	if (o->lazy_pages)
		return dump_lazily(o) ? 1 : 0;
	if (dump_hold(o, &r))
		return 1;
	/*
	 * Whoever is told may still say no: the tree then runs on. So it does
	 * when stats-dump cannot be written (its frozen time ends here, a
	 * moment before the tree is let go or killed).
	 */
	if (notify(o, "post-dump", r.held->root) || stats_write_dump(o, &r.stats)) {
		dump_release(&r, false);
		return 1;
	}
	return dump_release(&r, !o->leave_running) ? 1 : 0;
}

/*
 * A pre-dump round, seized: the task's tracker (taken over from the last
 * round, or made now and parked in it), and which pages to copy: those
 * written since the last round, write-protected again by the same scan.
 */
static int predump_seized(struct dump_ctx *ctx, struct dump_task *t)
{
	struct parasite_ctl *ctl;
	int ret;

	if (!t->track) {
		t->track = xzalloc(sizeof(*t->track));
		if (!t->track)
			return -ENOMEM;
		ctl = parasite_infect(t->pid, t->exec_addr, ctx->kd.pipe_max_size, ctx->opts->guard);
		if (!ctl)
			return -EIO;
		/* trackers of a chain given up hold the VMAs: they go first */
		t->parasite = ctl;
		ret = close_parked(t);
		t->parasite = NULL;
		if (!ret)
			ret = track_create(ctl, t->track);
		if (parasite_cure(ctl) && !ret)
			ret = -EIO;
		if (ret) {
			free(t->track);
			t->track = NULL;
			return ret;
		}
	}
	return mem_collect(ctx, t);
}

/*
 * cryo pre-dump: copy the tree's memory while it runs on. The tree is
 * stopped only to scan which pages changed; they are read afterwards,
 * through /proc/PID/mem. A page written after the scan is caught by the
 * next round, whose write-protect bit the write cleared.
 */
int pre_dump_round(struct cryo_opts *o, struct dump_round *r)
{
	struct dump_ctx *ctx = round_ctx(o, r, true);
	uint64_t t0 = now_ns();
	pid_t root;
	int ret;

	if (!ctx)
		return -ENOMEM;
	if ((ret = dump_begin(ctx, o, &root)) || (ret = notify(o, "pre-dump", root))) {
		round_end(ctx);
		return ret;
	}
	r->t_frozen = ctx->stats.t_freeze = now_ns();
	ret = seize_all(ctx, root);
	ctx->stats.t_frozen = now_ns();
	ret = ret ?: ns_collect(ctx);
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		ret = pstree_check(ctx, ctx->tasks[i]) ?: track_prepare(ctx, ctx->tasks[i]);
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		if (!ctx->tasks[i]->zombie)
			ret = predump_seized(ctx, ctx->tasks[i]);
	release_tree(ctx);
	ctx->stats.t_released = now_ns();
	r->frozen_ns = ctx->stats.t_released - r->t_frozen;
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		if (!ctx->tasks[i]->zombie)
			ret = mem_predump_pages(ctx, ctx->tasks[i]);
	r->pages = round_pages(ctx);
	r->stats = ctx->stats;
	if (!ret)
		ret = write_inventory(ctx) ?: mem_write_manifest(ctx) ?: ship_images(ctx);
	if (!ret)
		pr_info("pre-dumped pid %d (%zu processes) to %s in %lu ms, stopped for %lu ms", root,
			ctx->nr_tasks, o->images_dir, (now_ns() - t0) / 1000000, r->frozen_ns / 1000000);
	round_end(ctx);
	return ret;
}

int dump_untrack(struct cryo_opts *o, pid_t root)
{
	struct dump_ctx ctx = { .opts = o, .dirfd = -1 };
	size_t n = 0;
	int ret = seize_all(&ctx, root);

	for (size_t i = 0; i < ctx.nr_tasks && !ret; i++) {
		struct dump_task *t = ctx.tasks[i];

		if (t->zombie || !(t->nr_parked = track_find_parked(t->pid, t->parked, ARRAY_SIZE(t->parked))))
			continue;
		t->parasite = parasite_infect(t->pid, t->exec_addr, 0, ctx.opts->guard);
		if (!t->parasite) {
			ret = -EIO;
			break;
		}
		n += t->nr_parked;
		ret = close_parked(t);
		if (parasite_cure(t->parasite) && !ret)
			ret = -EIO;
		t->parasite = NULL;
	}
	release_tree(&ctx);
	if (!ret && n)
		pr_info("pid %d: %zu dirty trackers closed", root, n);
	dump_end(&ctx);
	return ret;
}

int cmd_dump(struct cryo_opts *o)
{
	return guard_run(o, dump_command);
}

static int pre_dump_command(struct cryo_opts *o)
{
	struct dump_round r = { 0 };

	return pre_dump_round(o, &r) || stats_write_dump(o, &r.stats) ? 1 : 0;
}

int cmd_pre_dump(struct cryo_opts *o)
{
	return guard_run(o, pre_dump_command);
}
