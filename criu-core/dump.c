/*
 * cryo dump: seize the task, read its state from outside, run the parasite
 * for what only the task can tell and for its memory, remove the parasite,
 * write the images, then kill the task (or let it run on). Any failure
 * before the end leaves the task running exactly as it was.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "dump.h"
#include "files.h"
#include "log.h"
#include "seize.h"

static int check_dumpable(struct dump_ctx *ctx, struct dump_task *t)
{
	_cleanup_free_ pid_t *kids = NULL;
	int nr, ret;

	ret = proc_list_children(t->pid, &kids, &nr);
	if (ret)
		return ret;
	if (nr) {
		pr_err("pid %d has %d child process%s (pid %d%s): dumping process trees is not supported yet",
		       t->pid, nr, nr > 1 ? "es" : "", kids[0], nr > 1 ? ", ..." : "");
		return -ENOTSUP;
	}
	if (ctx->opts->shell_job)
		return 0;
	if (t->stat.sid != t->pid) {
		pr_err("pid %d belongs to session %d, led by a process outside the dump%s: dump it with --shell-job",
		       t->pid, t->stat.sid, t->stat.tty_nr ? ", with a terminal" : "");
		return -ENOTSUP;
	}
	if (t->stat.pgid != t->pid) {
		pr_err("pid %d belongs to process group %d, led by a process outside the dump: dump it with --shell-job",
		       t->pid, t->stat.pgid);
		return -ENOTSUP;
	}
	return 0;
}

static int write_pstree(struct dump_ctx *ctx, struct dump_task *t)
{
	PstreeEntry e = PSTREE_ENTRY__INIT;
	struct img *img = img_create(ctx->dirfd, IMG_PSTREE, 0);
	int ret;

	if (!img)
		return -EIO;
	e.pid = t->pid;
	e.ppid = 0;
	e.pgid = t->stat.pgid;
	e.has_tty_foreground = true;
	e.tty_foreground = t->stat.tty_nr && t->stat.tpgid == t->stat.pgid;
	e.sid = t->stat.sid;
	e.n_threads = t->nr_tids;
	e.threads = (uint32_t *)t->tids;
	ret = img_write(img, &e.base);
	return img_close(img) ?: ret;
}

static int write_one(struct dump_ctx *ctx, enum img_type type, unsigned id, const ProtobufCMessage *m)
{
	struct img *img = img_create(ctx->dirfd, type, id);
	int ret;

	if (!img)
		return -EIO;
	ret = img_write(img, m);
	return img_close(img) ?: ret;
}

static int write_inventory(struct dump_ctx *ctx)
{
	InventoryEntry inv = INVENTORY_ENTRY__INIT;
	struct utsname u;
	struct timespec ts;

	uname(&u);
	clock_gettime(CLOCK_REALTIME, &ts);
	inv.format_version = 1;
	inv.root_pid = ctx->root->pid;
	inv.cryo_version = CRYO_VERSION;
	inv.kernel_release = u.release;
	inv.has_dump_time_ns = inv.has_shell_job = inv.has_page_size = inv.has_nr_tasks = true;
	inv.dump_time_ns = ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	inv.shell_job = ctx->opts->shell_job;
	inv.page_size = PAGE_SIZE;
	inv.nr_tasks = 1;
	return write_one(ctx, IMG_INVENTORY, 0, &inv.base);
}

static int write_images(struct dump_ctx *ctx, struct dump_task *t)
{
	int ret;

	if ((ret = write_pstree(ctx, t)) ||
	    (ret = write_one(ctx, IMG_CORE, t->pid, &t->core->base)) ||
	    (ret = write_one(ctx, IMG_MM, t->pid, &t->mm->base)) ||
	    (ret = files_write(ctx)) || (ret = memfd_write(ctx)))
		return ret;
	/* last: its presence says the directory holds a complete dump */
	return write_inventory(ctx);
}

/* everything that needs the task stopped and (for part of it) infected */
static int dump_seized(struct dump_ctx *ctx, struct dump_task *t)
{
	int ret;

	if ((ret = proc_parse_stat(t->pid, &t->stat)) || (ret = proc_parse_status(t->pid, &t->status)) ||
	    (ret = check_dumpable(ctx, t)) || (ret = task_collect(ctx, t)) ||
	    (ret = mem_collect(ctx, t)) || (ret = files_collect(ctx, t)))
		return ret;

	t->parasite = parasite_infect(t->pid, t->exec_addr, ctx->kd.pipe_max_size);
	if (!t->parasite)
		return -EIO;
	ret = parasite_cmd(t->parasite, PARASITE_CMD_INIT);
	if (!ret)
		ret = task_collect_parasite(ctx, t);
	if (!ret)
		ret = mem_dump_pages(ctx, t);
	if (parasite_cure(t->parasite) && !ret)
		ret = -EIO;
	t->parasite = NULL;
	if (ret)
		return ret;
	return write_images(ctx, t);
}

/* After success: kill the task (the default) or let it go on. */
static int finish_task(struct dump_ctx *ctx, struct dump_task *t)
{
	char why[96];
	int st;

	if (ctx->opts->leave_running) {
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

int cmd_dump(struct cryo_opts *o)
{
	struct dump_ctx ctx = { .opts = o, .dirfd = -1 };
	struct dump_task t = { .pid = o->pid };
	uint64_t t0 = now_ns();
	int ret;

	if (o->pid <= 0) {
		pr_err("dump: which process? Give its pid with -t PID");
		return 1;
	}
	kerndat_basics(&ctx.kd);
	ctx.dirfd = open_images_dir(o->images_dir);
	if (ctx.dirfd < 0)
		return 1;
	/* the old inventory would vouch for a directory we are about to change */
	if (unlinkat(ctx.dirfd, "inventory.img", 0) && errno != ENOENT) {
		pr_perror("cannot remove %s/inventory.img", o->images_dir);
		close(ctx.dirfd);
		return 1;
	}
	ctx.root = &t;

	ret = seize_task(t.pid, &t.group_stop);
	if (!ret) {
		ret = seize_threads(t.pid, &t.tids, &t.nr_tids);
		if (ret)
			ptrace(PTRACE_DETACH, t.pid, 0, 0);
	}
	if (!ret) {
		t.seized = true;
		ret = dump_seized(&ctx, &t);
		if (ret) {
			release_threads(t.tids, 1, t.nr_tids);
			if (ptrace(PTRACE_DETACH, t.pid, 0, 0))
				pr_perror("pid %d: cannot resume it after the failed dump", t.pid);
			else
				pr_info("pid %d resumed after the failed dump", t.pid);
		} else {
			ret = finish_task(&ctx, &t);
		}
	}
	if (!ret)
		pr_info("dumped pid %d to %s in %lu ms", t.pid, o->images_dir, (now_ns() - t0) / 1000000);
	files_release(&ctx);
	proc_status_free(&t.status);
	free(t.chunks);
	free(t.tids);
	free(ctx.memfds);
	arena_free(&ctx.arena);
	close(ctx.dirfd);
	return ret ? 1 : 0;
}
