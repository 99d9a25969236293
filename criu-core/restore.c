/*
 * cryo restore: read the images, create the task with its original pid
 * (clone3 set_tid), and let it rebuild itself: the child opens the files,
 * premaps and fills the memory, then jumps into the restorer blob, which
 * moves everything into place. cryo traces the child from its first
 * instruction: it takes it over when the restorer is done, unmaps the
 * restorer, sets the dumped registers and lets it go. If anything fails
 * the child is killed: no half-restored task is left behind.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "compat.h"
#include "files.h"
#include "log.h"
#include "restore.h"
#include "restorer-blob.h"
#include "seize.h"

#define SCRATCH_SIZE	(256u << 10)
#define HOLE_MARGIN	(16UL << 20)

/* what the child tells the parent about its restorer area */
struct rst_shared {
	uint64_t area_start, area_len;
};

void *rst_area_alloc(struct rst_area *ra, size_t size)
{
	void *p;

	size = ALIGN_UP(size, 16);
	if (ra->len - ra->used < size) {
		pr_err("restorer area overflow: %zu more bytes needed", size);
		return NULL;
	}
	p = ra->base + ra->used;
	ra->used += size;
	return p;
}

/* ------------------------------------------------------ reading images */

static int read_task_images(struct restore_ctx *ctx, struct rst_task *t)
{
	ProtobufCMessage *m;
	struct img *img;
	int ret;

	if ((ret = img_read_one(ctx->dirfd, IMG_CORE, t->pid, &m)))
		return ret;
	t->core = (CoreEntry *)m;
	if ((ret = img_read_one(ctx->dirfd, IMG_MM, t->pid, &m)))
		return ret;
	t->mm = (MmEntry *)m;
	if (!t->core->task->creds) {
		pr_err("core-%d.img: no credentials", t->pid);
		return -EINVAL;
	}
	if (!t->core->n_threads || t->core->threads[0]->tid != (uint32_t)t->pid) {
		pr_err("core-%d.img: the first thread must be the leader, %d", t->pid, t->pid);
		return -EINVAL;
	}

	img = img_open(ctx->dirfd, IMG_PAGEMAP, t->pid, false);
	if (!img)
		return -EIO;
	while ((ret = img_read(img, &m)) == 1) {
		PagemapEntry **n = xrealloc_array(t->pagemap, t->nr_pagemap + 1, sizeof(*n));

		if (!n) {
			img_free_msg(IMG_PAGEMAP, m);
			ret = -ENOMEM;
			break;
		}
		t->pagemap = n;
		t->pagemap[t->nr_pagemap++] = (PagemapEntry *)m;
	}
	img_close(img);
	if (ret)
		return ret;

	img = img_open(ctx->dirfd, IMG_FDS, t->pid, false);
	if (!img)
		return -EIO;
	while ((ret = img_read(img, &m)) == 1) {
		FdEntry **n = xrealloc_array(t->fds, t->nr_fds + 1, sizeof(*n));

		if (!n) {
			img_free_msg(IMG_FDS, m);
			ret = -ENOMEM;
			break;
		}
		t->fds = n;
		t->fds[t->nr_fds++] = (FdEntry *)m;
	}
	img_close(img);
	return ret;
}

static int read_images(struct restore_ctx *ctx, struct rst_task *t)
{
	ProtobufCMessage *m;
	struct img *img;
	int ret;

	img = img_open(ctx->dirfd, IMG_INVENTORY, 0, true);
	if (!img) {
		if (errno == ENOENT)
			pr_err("%s holds no complete dump: inventory.img is missing", ctx->opts->images_dir);
		return -ENOENT;
	}
	ret = img_read(img, &m);
	img_close(img);
	if (ret <= 0) {
		if (!ret)
			pr_err("inventory.img is empty");
		return -EINVAL;
	}
	ctx->inv = (InventoryEntry *)m;

	img = img_open(ctx->dirfd, IMG_PSTREE, 0, false);
	if (!img)
		return -EIO;
	ret = img_read(img, &m);
	if (ret == 1) {
		t->pstree = (PstreeEntry *)m;
		if ((ret = img_read(img, &m)) == 1) {
			img_free_msg(IMG_PSTREE, m);
			pr_err("pstree.img holds several processes: restoring process trees is not supported yet");
			ret = -ENOTSUP;
		}
	} else if (ret == 0) {
		pr_err("pstree.img is empty");
		ret = -EINVAL;
	}
	img_close(img);
	if (ret < 0)
		return ret;
	t->pid = t->pstree->pid;
	if ((uint32_t)t->pid != ctx->inv->root_pid) {
		pr_err("pstree.img starts with pid %d, inventory.img says %u", t->pid, ctx->inv->root_pid);
		return -EINVAL;
	}

	img = img_open(ctx->dirfd, IMG_FILES, 0, false);
	if (!img)
		return -EIO;
	while ((ret = img_read(img, &m)) == 1) {
		FileEntry **n = xrealloc_array(ctx->files, ctx->nr_files + 1, sizeof(*n));

		if (!n) {
			img_free_msg(IMG_FILES, m);
			ret = -ENOMEM;
			break;
		}
		ctx->files = n;
		ctx->files[ctx->nr_files++] = (FileEntry *)m;
	}
	img_close(img);
	if (ret)
		return ret;
	return read_task_images(ctx, t);
}

static void free_images(struct restore_ctx *ctx, struct rst_task *t)
{
	for (size_t i = 0; i < t->nr_pagemap; i++)
		img_free_msg(IMG_PAGEMAP, &t->pagemap[i]->base);
	for (size_t i = 0; i < t->nr_fds; i++)
		img_free_msg(IMG_FDS, &t->fds[i]->base);
	for (size_t i = 0; i < ctx->nr_files; i++)
		img_free_msg(IMG_FILES, &ctx->files[i]->base);
	free(t->pagemap);
	free(t->fds);
	free(ctx->files);
	if (t->core)
		img_free_msg(IMG_CORE, &t->core->base);
	if (t->mm)
		img_free_msg(IMG_MM, &t->mm->base);
	if (t->pstree)
		img_free_msg(IMG_PSTREE, &t->pstree->base);
	if (ctx->inv)
		img_free_msg(IMG_INVENTORY, &ctx->inv->base);
}

/* ------------------------------------------------------------ the child */

struct range {
	uint64_t start, end;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/*
 * The highest hole of len bytes, 2 MiB aligned, that neither the dumped
 * task nor this process uses, with a margin on both sides.
 */
static int find_hole(const struct rst_task *t, size_t len, uint64_t task_size, uint64_t *out)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/maps", "re");
	_cleanup_free_ struct range *r = NULL;
	size_t n = 0, cap = t->mm->n_vmas + 64;
	uint64_t top = task_size - HOLE_MARGIN;
	char line[512];

	if (!f)
		return pr_perror("cannot open /proc/self/maps");
	r = xzalloc(cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < t->mm->n_vmas; i++)
		r[n++] = (struct range){ t->mm->vmas[i]->start, t->mm->vmas[i]->end };
	while (fgets(line, sizeof(line), f)) {
		if (n == cap) {
			struct range *nr = xrealloc_array(r, cap * 2, sizeof(*r));

			if (!nr)
				return -ENOMEM;
			r = nr;
			cap *= 2;
		}
		if (sscanf(line, "%lx-%lx", &r[n].start, &r[n].end) == 2)
			n++;
	}
	qsort(r, n, sizeof(*r), cmp_range);
	for (size_t i = n; i-- > 0;) {
		uint64_t lo = r[i].end + HOLE_MARGIN, hi = top;

		if (r[i].start >= top)
			continue;
		if (i + 1 < n && r[i + 1].start < top)
			hi = r[i + 1].start - MIN(r[i + 1].start, HOLE_MARGIN);
		if (hi > lo && hi - lo >= len) {
			*out = (hi - len) & ~((2UL << 20) - 1);
			if (*out >= lo)
				return 0;
		}
		if (r[i].start < top)
			top = r[i].start;
	}
	pr_err("pid %d: no room for %zu bytes of restorer and premapped memory", t->pid, len);
	return -ENOMEM;
}

static int set_session(struct restore_ctx *ctx, struct rst_task *t)
{
	const PstreeEntry *p = t->pstree;

	if (p->sid == (uint32_t)t->pid) {
		if (setsid() < 0)
			return pr_perror("pid %d: setsid", t->pid);
	} else if (!ctx->opts->shell_job) {
		pr_err("pid %d was in session %u of a process outside the dump: restore it with --shell-job",
		       t->pid, p->sid);
		return -EINVAL;
	}
	if (p->pgid == (uint32_t)t->pid && getpgid(0) != t->pid && setpgid(0, 0))
		return pr_perror("pid %d: setpgid", t->pid);
	return 0;
}

/* glibc registered rseq for this thread at fork time; it must go first */
static int unregister_own_rseq(void)
{
	void *area;

	if (!__rseq_size)
		return 0;
	area = (char *)__builtin_thread_pointer() + __rseq_offset;
	if (syscall(SYS_rseq, area, __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG_X86) == 0 ||
	    syscall(SYS_rseq, area, 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG_X86) == 0)
		return 0;
	return pr_perror("cannot unregister cryo's own rseq area");
}

static void __attribute__((noreturn)) jump_to_restorer(unsigned long entry, struct restorer_args *a,
							unsigned long stack_top)
{
	asm volatile("jmp *%0" : : "r"(entry), "D"(a), "S"(stack_top) : "memory");
	__builtin_unreachable();
}

static int restore_child(struct restore_ctx *ctx, struct rst_task *t, struct rst_shared *sh)
{
	size_t blob_len = PAGE_ALIGN(restorer_BLOB_SIZE);
	size_t args_len = PAGE_ALIGN(sizeof(struct restorer_args) + mem_args_size(t) + task_args_size(t));
	size_t scratch_len = SCRATCH_SIZE;
	size_t area_len = blob_len + args_len + RESTORER_STACK_SIZE + scratch_len;
	size_t premap_len = mem_premap_size(t);
	struct restorer_args *a;
	struct rst_area ra;
	uint64_t hole = 0, tsize = ctx->kd.task_size;
	unsigned long stack_top;
	int keep[1], ret;
	void *p;

	if ((ret = set_session(ctx, t)))
		return ret;
	if (chdir(t->core->task->cwd))
		return pr_perror("pid %d: cannot change into its working directory %s", t->pid,
				 t->core->task->cwd);
	if ((ret = find_hole(t, area_len + premap_len + (2UL << 20), tsize, &hole)))
		return ret;
	p = mmap((void *)hole, area_len, PROT_READ | PROT_WRITE | PROT_EXEC,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return pr_perror("cannot map the restorer area at %#lx", hole);
	p = mmap((void *)ALIGN_UP(hole + area_len, 2UL << 20), premap_len, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return pr_perror("cannot reserve %zu bytes for the premapped memory", premap_len);

	memcpy((void *)hole, restorer_blob, sizeof(restorer_blob));
	a = (struct restorer_args *)(hole + blob_len);
	ra = (struct rst_area){ .base = (char *)a, .len = args_len, .args = a };
	if (!rst_area_alloc(&ra, sizeof(*a)))
		return -ENOMEM;
	a->pid = t->pid;
	a->task_size = tsize;
	a->area_start = hole;
	a->area_len = area_len;
	a->premap_start = (uint64_t)p;
	a->premap_len = premap_len;
	stack_top = hole + blob_len + args_len + RESTORER_STACK_SIZE;

	if ((ret = memfd_restore(ctx)) || (ret = mem_premap(ctx, t, &ra, (unsigned long)p)) ||
	    (ret = memfd_seal_and_close(ctx)) ||
	    (ret = mem_prepare_specials(t, a, stack_top, &scratch_len)) ||
	    (ret = task_prepare_args(ctx, t, &ra)))
		return ret;
	keep[0] = mem_exe_fd(ctx, t);
	if (keep[0] < 0)
		return keep[0];
	if ((ret = files_restore(ctx, t, keep, 1)))
		return ret;
	a->mm.exe_fd = keep[0];
	a->status_fd = log_get_err_fd();
	sh->area_start = hole;
	sh->area_len = area_len;
	if ((ret = unregister_own_rseq()))
		return ret;
	pr_debug("pid %d: jumping into the restorer at %#lx", t->pid, hole);
	log_fini();
	jump_to_restorer(hole + restorer_off_entry, a, stack_top);
}

/* ----------------------------------------------------------- the parent */

/*
 * Collect what the child writes on the status pipe until it closes it,
 * watching that the child does not die or stop on a signal meanwhile.
 * Returns 0 when the pipe closed with the child alive.
 */
static int wait_child_ready(pid_t pid, int status_fd, char *msg, size_t len)
{
	size_t used = 0;

	msg[0] = 0;
	for (;;) {
		struct pollfd pfd = { .fd = status_fd, .events = POLLIN };
		int st, r = poll(&pfd, 1, 100);

		if (r > 0) {
			ssize_t n = read(status_fd, msg + used, len - 1 - used);

			if (n > 0) {
				used += n;
				msg[used] = 0;
				if (used == len - 1)
					used = 0;	/* keep the tail only */
				continue;
			}
			if (n == 0)
				return 0;
		}
		if (r < 0 && errno != EINTR)
			return pr_perror("poll");
		r = waitpid(pid, &st, WNOHANG | __WALL);
		if (r == pid) {
			char why[96];

			if (!msg[0])
				pr_err("pid %d: the restoring task %s", pid, describe_status(st, why, sizeof(why)));
			if (WIFSTOPPED(st))
				pr_debug("it stopped with signal %d", WSTOPSIG(st));
			return -ECHILD;
		}
	}
}

/*
 * The restorer closed the status pipe: it is done and waits in pause(), or
 * it died after writing why. Take it over with ptrace.
 */
static int take_over(pid_t pid, bool reported)
{
	char why[96];
	int st;

	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) && errno != ESRCH)
		return pr_perror("pid %d: cannot interrupt the restored task", pid);
	if (wait_task(pid, &st, 0) < 0)
		return -ECHILD;
	if (WIFSTOPPED(st) && (st >> 16) == PTRACE_EVENT_STOP)
		return 0;
	if (!reported)
		pr_err("pid %d: the restoring task %s", pid, describe_status(st, why, sizeof(why)));
	return -ECHILD;
}

/*
 * The other threads wait in pause() too, untraced: seize them. tids[0] is
 * the leader, taken over already.
 */
static int take_over_threads(const struct rst_task *t, pid_t *tids)
{
	tids[0] = t->pid;
	for (size_t i = 1; i < t->core->n_threads; i++) {
		tids[i] = t->core->threads[i]->tid;
		if (seize_task(tids[i], NULL)) {
			release_threads(tids, 1, i);
			return -ECHILD;
		}
	}
	return 0;
}

/* A thread's dumped registers, FPU state and signal mask. */
static int set_thread_state(pid_t tid, const ThreadCoreEntry *th)
{
	const UserRegsEntry *e = th->regs;
	struct user_regs_struct r;

	if (ptrace_get_regs(tid, &r))
		return -EIO;
#define R(f) r.f = e->f
	R(r15); R(r14); R(r13); R(r12); R(rbp); R(rbx); R(r11); R(r10); R(r9); R(r8);
	R(rax); R(rcx); R(rdx); R(rsi); R(rdi); R(rip); R(cs); R(eflags);
	R(rsp); R(ss); R(fs_base); R(gs_base); R(ds); R(es); R(fs); R(gs);
#undef R
	r.orig_rax = -1;
	if (ptrace_set_regs(tid, &r) || ptrace_set_xstate(tid, th->xsave.data, th->xsave.len) ||
	    ptrace_set_sigmask(tid, th->blocked))
		return -EIO;
	return 0;
}

/*
 * The restorer is done: give every thread its registers, unmap the
 * restorer from the leader (no thread runs in it any more), and let them go.
 */
static int finalize(struct restore_ctx *ctx, struct rst_task *t, const struct rst_shared *sh,
		    const pid_t *tids)
{
	struct user_regs_struct r;

	for (size_t i = 1; i < t->core->n_threads; i++)
		if (set_thread_state(tids[i], t->core->threads[i]))
			return -EIO;
	if (ptrace_get_regs(t->pid, &r))
		return -EIO;
	r.rip = sh->area_start + restorer_off_syscall;
	r.rax = __NR_munmap;
	r.rdi = sh->area_start;
	r.rsi = sh->area_len;
	r.orig_rax = -1;
	if (ptrace_set_regs(t->pid, &r) || ptrace_step_syscall(t->pid) || ptrace_get_regs(t->pid, &r))
		return -EIO;
	if (r.rax) {
		pr_err("pid %d: cannot unmap the restorer: error %lld", t->pid, -(long long)r.rax);
		return -EIO;
	}
	if (set_thread_state(t->pid, t->core->threads[0]))
		return -EIO;
	release_threads(tids, 1, t->core->n_threads);
	/* a task that was stopped goes back to its stop right away */
	if (ptrace(PTRACE_DETACH, t->pid, 0, t->core->task->stopped ? SIGSTOP : 0))
		return pr_perror("pid %d: cannot let it go", t->pid);
	return 0;
}

/*
 * The child is born with every signal blocked: a signal sent to the pid
 * while it is being rebuilt (by a supervisor, or whoever saw the pid come
 * back) stays pending and reaches the process once it runs, under the
 * dumped mask, instead of hitting cryo's code in the child.
 */
static pid_t clone_with_pid(pid_t pid)
{
	struct clone_args args = {
		.exit_signal = SIGCHLD,
		.set_tid = (uint64_t)&pid,
		.set_tid_size = 1,
	};
	uint64_t all = ~0ULL, old;
	pid_t child;

	/* raw: glibc's sigprocmask leaves its own two signals unblocked */
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(all));
	child = syscall(SYS_clone3, &args, sizeof(args));
	if (child != 0)
		syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof(old));
	return child;
}

static int write_pidfile(const struct cryo_opts *o, pid_t pid)
{
	char buf[32];
	int fd, n = snprintf(buf, sizeof(buf), "%d", pid);

	fd = open(o->pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return pr_perror("cannot create pid file %s", o->pidfile);
	if (write_all(fd, buf, n)) {
		close(fd);
		return pr_perror("cannot write pid file %s", o->pidfile);
	}
	close(fd);
	return 0;
}

static int wait_restored(pid_t pid)
{
	int st;

	if (wait_task(pid, &st, 0) < 0)
		return 1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

/* Every pid and tid of the task must be free before anything starts. */
static int check_ids_free(const struct rst_task *t)
{
	for (size_t i = 0; i < t->core->n_threads; i++) {
		pid_t tid = t->core->threads[i]->tid;
		_cleanup_free_ char *comm = NULL;
		char path[64], what[64];

		if (kill(tid, 0) && errno == ESRCH)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/comm", tid);
		read_file(path, &comm, NULL);
		if (comm)
			comm[strcspn(comm, "\n")] = 0;
		if (i)
			snprintf(what, sizeof(what), "tid %d of pid %d", tid, t->pid);
		else
			snprintf(what, sizeof(what), "pid %d", tid);
		pr_err("%s is already in use%s%s%s: cannot restore it", what,
		       comm ? " (by " : "", comm ? comm : "", comm ? ")" : "");
		return -EEXIST;
	}
	return 0;
}

static int restore_task(struct restore_ctx *ctx, struct rst_task *t)
{
	_cleanup_free_ pid_t *tids = calloc(t->core->n_threads, sizeof(*tids));
	int status[2], sync[2], ret;
	struct rst_shared *sh;
	char msg[4096];
	pid_t pid;

	if (!tids)
		return -ENOMEM;
	if ((ret = check_ids_free(t)))
		return ret;
	sh = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return pr_perror("mmap");
	if (pipe2(status, O_CLOEXEC) || pipe2(sync, O_CLOEXEC)) {
		munmap(sh, PAGE_SIZE);
		return pr_perror("pipe");
	}

	pid = clone_with_pid(t->pid);
	if (pid == 0) {
		char c;

		close(status[0]);
		close(sync[1]);
		log_set_err_fd(status[1]);
		/* wait until the parent traces us */
		if (read(sync[0], &c, 1) != 1)
			_exit(1);
		close(sync[0]);
		restore_child(ctx, t, sh);
		_exit(1);
	}
	close(status[1]);
	close(sync[0]);
	if (pid < 0) {
		ret = -errno;
		if (errno == EEXIST)
			pr_err("pid %d is already in use: cannot restore it", t->pid);
		else
			pr_perror("cannot create a process with pid %d (clone3 set_tid)", t->pid);
		goto out;
	}
	if (ptrace(PTRACE_SEIZE, pid, 0, SEIZE_OPTIONS | PTRACE_O_EXITKILL)) {
		ret = pr_perror("pid %d: cannot trace the restoring task", pid);
		kill(pid, SIGKILL);
		goto reap;
	}
	if (write(sync[1], "g", 1) != 1) {
		ret = pr_perror("pid %d: cannot start the restoring task", pid);
		goto fail_kill;
	}
	ret = wait_child_ready(pid, status[0], msg, sizeof(msg));
	/* the child's own errors (and warnings), already formatted */
	if (msg[0])
		write_all(STDERR_FILENO, msg, strlen(msg));
	if (!ret)
		ret = take_over(pid, msg[0]);
	if (!ret)
		ret = take_over_threads(t, tids);
	if (!ret) {
		tty_give_foreground(ctx, t);
		ret = finalize(ctx, t, sh, tids);
		if (ret)
			tty_take_back_foreground(ctx);
	}
	if (!ret) {
		pr_info("restored pid %d", pid);
		if (ctx->opts->pidfile)
			write_pidfile(ctx->opts, pid);
		goto out;
	}
fail_kill:
	kill(pid, SIGKILL);
reap:
	while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
		;
	if (!ret)
		ret = -EIO;
out:
	close(sync[1]);
	close(status[0]);
	munmap(sh, PAGE_SIZE);
	return ret;
}

int cmd_restore(struct cryo_opts *o)
{
	struct restore_ctx ctx = { .opts = o, .dirfd = -1, .fg_tty = -1 };
	struct rst_task t = { 0 };
	uint64_t t0 = now_ns();
	int ret;

	kerndat_basics(&ctx.kd);
	ctx.dirfd = open_images_dir(o->images_dir);
	if (ctx.dirfd < 0)
		return 1;
	ctx.root = &t;
	ret = read_images(&ctx, &t);
	if (!ret)
		ret = restore_task(&ctx, &t);
	close(ctx.dirfd);
	if (!ret)
		pr_info("restore took %lu ms", (now_ns() - t0) / 1000000);
	if (!ret && !o->detach) {
		free_images(&ctx, &t);
		ret = wait_restored(t.pid);
		tty_take_back_foreground(&ctx);
		return ret;
	}
	if (ctx.fg_tty >= 0)
		close(ctx.fg_tty);
	free_images(&ctx, &t);
	return ret ? 1 : 0;
}
