/*
 * The process tree: who is whose parent, and the sessions and process
 * groups, which can only be rebuilt in the right order.
 *
 * A process gets its session when it is born (its parent's) or by setsid,
 * which also makes a group. So every task is forked either before its
 * parent's setsid (when it kept the session its parent was born in) or
 * after (its parent's session); then it may setsid itself. Groups are
 * joined once every task exists. A group whose leader has exited needs a
 * process with the leader's pid to create it: a helper task, forked by the
 * parent of the group's first member, leads it while the members join and
 * then exits and is reaped. Zombies exit with their status once all groups
 * are made.
 */
#define LOG_PREFIX "pstree: "
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dump.h"
#include "log.h"
#include "ns.h"
#include "restore.h"

/* ---------------------------------------------------------------- dump */

struct dump_task *dump_find_task(struct dump_ctx *ctx, pid_t pid)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++)
		if (ctx->tasks[i]->pid == pid)
			return ctx->tasks[i];
	return NULL;
}

/* the group is led by a live process outside the tree */
static bool led_from_outside(pid_t pgid)
{
	struct proc_stat st;

	if (kill(pgid, 0) && errno == ESRCH)
		return false;
	return !proc_parse_stat(pgid, &st) && st.pgid == pgid && st.state != 'Z';
}

/*
 * Sessions and groups cryo can rebuild: a task's session is its own, its
 * parent's, or the one its parent was born in; its group is led by a task
 * of the tree, or its leader is gone (a helper recreates it), or, for a
 * shell job, it is the root's group, led from outside. Tasks come parents
 * first, so t's parent has its born_sid already.
 */
int pstree_check(struct dump_ctx *ctx, struct dump_task *t)
{
	struct dump_task *parent = t->ppid ? dump_find_task(ctx, t->ppid) : NULL;
	const struct dump_task *root = ctx->tasks[0];
	pid_t sid = t->stat.sid, pgid = t->stat.pgid;

	if (!parent) {
		t->born_sid = sid;
		if (ctx->opts->shell_job)
			return 0;
		if (sid != t->pid) {
			pr_err("pid %d belongs to session %d, led by a process outside the dump%s: dump it with --shell-job",
			       t->pid, sid, t->stat.tty_nr ? ", with a terminal" : "");
			return -ENOTSUP;
		}
		if (pgid != t->pid) {
			pr_err("pid %d belongs to process group %d, led by a process outside the dump: dump it with --shell-job",
			       t->pid, pgid);
			return -ENOTSUP;
		}
		return 0;
	}
	if (sid != t->pid && sid != parent->stat.sid && sid != parent->born_sid) {
		pr_err("pid %d is in session %d, which is neither its own, nor its parent's (%d), nor the one its parent %d was born in",
		       t->pid, sid, parent->stat.sid, parent->pid);
		return -ENOTSUP;
	}
	t->born_sid = (sid == parent->stat.sid || sid == t->pid) ? parent->stat.sid : parent->born_sid;
	if (!dump_find_task(ctx, pgid) && !(ctx->opts->shell_job && pgid == root->stat.pgid) &&
	    led_from_outside(pgid)) {
		pr_err("pid %d is in process group %d, led by a process outside the dump", t->pid, pgid);
		return -ENOTSUP;
	}
	return 0;
}

/*
 * A group or session id inside the tree's pid namespace. One led from
 * outside the namespace (a shell job's) has no id there: it keeps cryo's.
 */
pid_t pstree_tree_id(struct dump_ctx *ctx, pid_t id)
{
	pid_t v = dump_vpid(ctx, id);

	return v ? v : id;
}

int pstree_write(struct dump_ctx *ctx)
{
	struct img *img = img_create(ctx->dirfd, IMG_PSTREE, 0);
	bool pidns = ctx->ns_flags & CLONE_NEWPID;
	int ret = 0;

	if (!img)
		return -EIO;
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++) {
		const struct dump_task *t = ctx->tasks[i];
		PstreeEntry e = PSTREE_ENTRY__INIT;
		uint32_t tid = t->vpid, host_tid = t->pid;

		e.pid = t->vpid;
		e.ppid = i ? dump_vpid(ctx, t->ppid) : 0;
		e.pgid = pstree_tree_id(ctx, t->stat.pgid);
		e.sid = pstree_tree_id(ctx, t->stat.sid);
		e.has_tty_foreground = true;
		e.tty_foreground = t->stat.tty_nr && t->stat.tpgid == t->stat.pgid;
		e.has_clone_flags = t->clone_flags != 0;
		e.clone_flags = t->clone_flags;
		if (t->zombie) {
			e.n_threads = 1;
			e.threads = &tid;
			e.has_zombie_status = true;
			e.zombie_status = t->stat.exit_code;
		} else {
			e.n_threads = t->nr_tids;
			e.threads = (uint32_t *)t->vtids;
		}
		if (pidns) {
			e.has_host_pid = true;
			e.host_pid = t->pid;
			e.n_host_threads = e.n_threads;
			e.host_threads = t->zombie ? &host_tid : (uint32_t *)t->tids;
		}
		ret = img_write(img, &e.base);
	}
	return img_close(img) ?: ret;
}

/* ------------------------------------------------------------- restore */

static struct rst_task *new_task(struct restore_ctx *ctx)
{
	struct rst_task **nv = xrealloc_array(ctx->tasks, ctx->nr_tasks + 1, sizeof(*nv));
	struct rst_task *t = xzalloc(sizeof(*t));

	if (!nv || !t) {
		free(t);
		return NULL;
	}
	ctx->tasks = nv;
	ctx->tasks[ctx->nr_tasks++] = t;
	t->index = ctx->nr_tasks - 1;
	t->status[0] = t->status[1] = t->sync[0] = t->sync[1] = -1;
	return t;
}

static struct rst_task *find_live(struct restore_ctx *ctx, pid_t pid, size_t before)
{
	for (size_t j = 0; j < before; j++)
		if (ctx->tasks[j]->pid == pid && !ctx->tasks[j]->zombie)
			return ctx->tasks[j];
	return NULL;
}

/* which session each task is born in, and so whether it is forked before its parent's setsid */
static int plan_sessions(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct rst_task *t = ctx->tasks[i];
		const struct rst_task *p = t->parent;
		pid_t sid = t->pstree->sid;

		if (!p) {
			t->born_sid = sid;
			continue;
		}
		if (sid == t->pid || sid == (pid_t)p->pstree->sid) {
			t->born_sid = p->pstree->sid;
		} else if (sid == p->born_sid && p->pstree->sid == (uint32_t)p->pid) {
			t->born_sid = sid;
			t->before_setsid = true;
		} else {
			pr_err("pstree.img: pid %d is in session %d, which is neither its own, nor its parent's, nor the one its parent %d was born in",
			       t->pid, sid, p->pid);
			return -EINVAL;
		}
	}
	return 0;
}

/* a helper for each group whose leader is not in the tree (it had exited) */
static int plan_group_helpers(struct restore_ctx *ctx)
{
	size_t n = ctx->nr_tasks;
	pid_t root_pgid = ctx->tasks[0]->pstree->pgid;

	for (size_t i = 1; i < n; i++) {
		const struct rst_task *m = ctx->tasks[i];
		pid_t pgid = m->pstree->pgid;
		struct rst_task *h;
		bool known = false;

		for (size_t j = 0; j < ctx->nr_tasks && !known; j++)
			known = ctx->tasks[j]->pid == pgid;
		if (known || (ctx->opts->shell_job && pgid == root_pgid))
			continue;
		h = new_task(ctx);
		if (!h)
			return -ENOMEM;
		h->helper = h->zombie = true;
		h->pid = pgid;
		/* in a pid namespace its pid outside is free to be any */
		h->host_pid = ctx->tasks[0]->pstree->has_host_pid ? 0 : pgid;
		h->parent = m->parent;
		h->born_sid = m->born_sid;
		h->before_setsid = m->before_setsid;
		h->own_pstree = xzalloc(sizeof(*h->own_pstree));
		if (!h->own_pstree)
			return -ENOMEM;
		pstree_entry__init(h->own_pstree);
		h->pstree = h->own_pstree;
		h->pstree->pid = h->pstree->pgid = pgid;
		h->pstree->ppid = m->parent->pid;
		h->pstree->sid = m->pstree->sid;
		pr_debug("pid %d: helper leading process group %d for pid %d, its leader is gone", pgid,
			 pgid, m->pid);
	}
	return 0;
}

int pstree_read(struct restore_ctx *ctx)
{
	struct img *img = img_open(ctx->dirfd, IMG_PSTREE, 0, false);
	ProtobufCMessage *m;
	int ret;

	if (!img)
		return -EIO;
	while ((ret = img_read(img, &m)) == 1) {
		struct rst_task *t = new_task(ctx);

		if (!t) {
			img_free_msg(IMG_PSTREE, m);
			ret = -ENOMEM;
			break;
		}
		t->pstree = (PstreeEntry *)m;
		t->pid = t->pstree->pid;
		t->host_pid = t->pstree->has_host_pid ? (pid_t)t->pstree->host_pid : t->pid;
		t->zombie = t->pstree->has_zombie_status;
	}
	img_close(img);
	if (ret < 0)
		return ret;
	if (!ctx->nr_tasks) {
		pr_err("pstree.img is empty");
		return -EINVAL;
	}
	if ((uint32_t)ctx->tasks[0]->pid != ctx->inv->root_pid || ctx->tasks[0]->zombie) {
		pr_err("pstree.img starts with pid %d, inventory.img says %u", ctx->tasks[0]->pid,
		       ctx->inv->root_pid);
		return -EINVAL;
	}
	for (size_t i = 1; i < ctx->nr_tasks; i++) {
		struct rst_task *t = ctx->tasks[i];

		/* parents come first */
		t->parent = find_live(ctx, t->pstree->ppid, i);
		if (!t->parent) {
			pr_err("pstree.img: the parent %u of pid %d is not before it", t->pstree->ppid, t->pid);
			return -EINVAL;
		}
	}
	return plan_sessions(ctx) ?: plan_group_helpers(ctx);
}

void pstree_free_task(struct rst_task *t)
{
	if (t->own_pstree)
		free(t->own_pstree);
	else if (t->pstree)
		img_free_msg(IMG_PSTREE, &t->pstree->base);
}

/*
 * Before the task forks its later children: lead its session if it did
 * (they inherit it), lead its group if it did. Groups led by another task
 * are joined later, once every task exists.
 */
int pstree_set_session(struct restore_ctx *ctx, struct rst_task *t)
{
	const PstreeEntry *p = t->pstree;

	if (p->sid == (uint32_t)t->pid) {
		if (setsid() < 0)
			return pr_perror("pid %d: setsid", t->pid);
		if (pty_take_ctty(ctx, t))
			return -EIO;
	} else if (!t->parent && !ctx->opts->shell_job) {
		pr_err("pid %d was in session %u of a process outside the dump: restore it with --shell-job",
		       t->pid, p->sid);
		return -EINVAL;
	}
	if (p->pgid == (uint32_t)t->pid && getpgid(0) != t->pid && setpgid(0, 0))
		return pr_perror("pid %d: setpgid", t->pid);
	return 0;
}

/* once every task exists (and every helper leads its group) */
int pstree_join_group(struct restore_ctx *ctx, struct rst_task *t)
{
	pid_t pgid = t->pstree->pgid;
	const PstreeEntry *root = ctx->tasks[0]->pstree;

	/* a shell job stays in the group cryo runs in */
	if (!t->parent || pgid == t->pid ||
	    (ctx->opts->shell_job && pgid == (pid_t)root->pgid && root->pgid != root->pid))
		return 0;
	if (getpgid(0) != pgid && setpgid(0, pgid))
		return pr_perror("pid %d: cannot join process group %d", t->pid, pgid);
	return 0;
}
