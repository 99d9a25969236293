/*
 * cryo restore: read the images, create the root task with its original
 * pid (clone3 set_tid), and let the tree rebuild itself: each task takes
 * its session, forks its children with their pids, joins its process group
 * once every task exists (zombies then exit with their status), opens its
 * files, premaps and fills its memory, and jumps into the restorer blob,
 * which moves everything into place. cryo traces each task from before it
 * does anything: it takes them over when their restorers are done, unmaps
 * the restorers, sets the dumped registers and lets them go. If anything
 * fails the whole tree is killed: no half-restored task is left behind.
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
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <stddef.h>

#include "cgroup.h"
#include "chain.h"
#include "compat.h"
#include "mem-flags.h"
#include "files.h"
#include "guard.h"
#include "lazy.h"
#include "fault.h"
#include "log.h"
#include "notify.h"
#include "ns.h"
#include "proc.h"
#include "restore.h"
#include "restorer-blob.h"
#include "seize.h"
#include "validate.h"

#define SCRATCH_SIZE	(256u << 10)
#define HOLE_MARGIN	(16UL << 20)

/*
 * Shared (MAP_SHARED) by cryo and every restoring task: two barriers, and
 * where each task put its restorer area.
 */
struct rst_shared {
	uint32_t born;		/* futex: tasks created, in their session */
	uint32_t grouped;	/* futex: tasks in their process group */
	uint64_t pages_restored, pages_inherited;	/* every task's, added (stats) */
	struct rst_slot {
		uint64_t area_start, area_len;
		int32_t exe_fd;		/* so that the owner of a shared fd table keeps it */
		uint32_t fds_done;	/* futex: it opens no more fds (see files_owner) */
	} slot[];
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

	ret = img_read_all(ctx->dirfd, IMG_PAGEMAP, t->pid, false, &t->pagemap, &t->nr_pagemap) ?:
	      img_read_all(ctx->dirfd, IMG_FDS, t->pid, false, &t->fds, &t->nr_fds);
	for (size_t i = 0; !ret && i < t->nr_pagemap; i++)
		if (t->pagemap[i]->flags & PE_IN_PREV) {
			if ((ret = chain_open(ctx->dirfd, ctx->opts->images_dir, t->pid, true, &t->chain)))
				return ret;
			/* post-copy: the lazy-pages handler reads them, and it frees them */
			if (ctx->opts->auto_dedup && !ctx->opts->lazy_pages)
				chain_consume(t->chain, ctx->dirfd, ctx->opts->images_dir, true);
			return 0;
		}
	return ret;
}

static int read_images(struct restore_ctx *ctx)
{
	ProtobufCMessage *m;
	struct img *img;
	int ret;

	/* first: the directory and those of its chain hold what their manifests list, and only that */
	if ((ret = chain_check(ctx->dirfd, ctx->opts->images_dir, NULL, true)))
		return ret;
	img = img_open(ctx->dirfd, IMG_INVENTORY, 0, true);
	if (!img) {
		if (errno == ENOENT)
			pr_err("%s holds no complete dump: inventory.img is missing", ctx->opts->images_dir);
		return -ENOENT;
	}
	ret = img_read(img, &m);
	if (ret == 1 && img->nr_records != 1) {
		pr_err("inventory.img: %lu records, where one is expected", (unsigned long)img->nr_records);
		img_free_msg(IMG_INVENTORY, m);
		ret = -EINVAL;
	}
	img_close(img);
	if (ret <= 0) {
		if (!ret)
			pr_err("inventory.img is empty");
		return -EINVAL;
	}
	ctx->inv = (InventoryEntry *)m;
	if (ctx->inv->pre_dump) {
		pr_err("%s holds a pre-dump, only memory: restore the dump made after it with --prev-images-dir",
		       ctx->opts->images_dir);
		return -EINVAL;
	}

	ret = pstree_read(ctx) ?: ns_read(ctx) ?: cgroup_read(ctx) ?: mnt_read(ctx) ?: net_read(ctx);
	if (ret)
		return ret;
	/*
	 * In a user namespace only cryo, cloning the root, can choose a pid
	 * outside the container: the others get whatever the host gives.
	 */
	if (ctx->ns && (ctx->ns->flags & CLONE_NEWUSER))
		for (size_t i = 0; i < ctx->nr_tasks; i++) {
			ctx->tasks[i]->pstree->n_host_threads = 0;
			if (i)
				ctx->tasks[i]->host_pid = 0;
		}

	ret = img_read_all(ctx->dirfd, IMG_FILES, 0, false, &ctx->files, &ctx->nr_files);
	for (size_t i = 0; !ret && i < ctx->nr_tasks; i++)
		if (!ctx->tasks[i]->zombie)
			ret = read_task_images(ctx, ctx->tasks[i]);
	return ret;
}

static void free_task(struct rst_task *t)
{
	for (size_t i = 0; i < t->nr_pagemap; i++)
		img_free_msg(IMG_PAGEMAP, &t->pagemap[i]->base);
	for (size_t i = 0; i < t->nr_fds; i++)
		img_free_msg(IMG_FDS, &t->fds[i]->base);
	free(t->pagemap);
	chain_close(t->chain);
	free(t->fds);
	free(t->tids);
	if (t->core)
		img_free_msg(IMG_CORE, &t->core->base);
	if (t->mm)
		img_free_msg(IMG_MM, &t->mm->base);
	pstree_free_task(t);
	for (int i = 0; i < 2; i++) {
		if (t->status[i] >= 0)
			close(t->status[i]);
		if (t->sync[i] >= 0)
			close(t->sync[i]);
	}
	free(t);
}

static void free_images(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++)
		free_task(ctx->tasks[i]);
	free(ctx->tasks);
	for (size_t i = 0; i < ctx->nr_files; i++)
		img_free_msg(IMG_FILES, &ctx->files[i]->base);
	free(ctx->files);
	if (ctx->inv)
		img_free_msg(IMG_INVENTORY, &ctx->inv->base);
	if (ctx->ns)
		img_free_msg(IMG_NS, &ctx->ns->base);
	for (size_t i = 0; i < ctx->nr_cgroups; i++) {
		img_free_msg(IMG_CGROUP, &ctx->cgroups[i]->base);
		free(ctx->cg_dumped ? ctx->cg_dumped[i] : NULL);
	}
	free(ctx->cgroups);
	free(ctx->cg_dumped);
	for (size_t i = 0; i < ctx->nr_mounts; i++)
		img_free_msg(IMG_MNT, &ctx->mounts[i]->base);
	if (ctx->net)
		img_free_msg(IMG_NET, &ctx->net->base);
	free(ctx->mounts);
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

/*
 * A restoring task waits for the others; should cryo die meanwhile (it
 * kills the tree on any failure it sees), the task gives up too.
 */
static void futex_wait_for(struct restore_ctx *ctx, uint32_t *word, uint32_t target)
{
	struct timespec tick = { 0, 100 * 1000 * 1000 };
	uint32_t v;

	while ((v = __atomic_load_n(word, __ATOMIC_SEQ_CST)) < target) {
		struct pollfd gone = { .fd = ctx->cryo_pidfd, .events = POLLIN };

		syscall(SYS_futex, word, FUTEX_WAIT, v, &tick, NULL, 0);
		/* a pidfd: cryo's pid means nothing inside a pid namespace */
		if (poll(&gone, 1, 0) > 0)
			_exit(1);
	}
}

static void futex_add(uint32_t *word)
{
	__atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/*
 * Processes cloned with CLONE_FILES share one fd table. The first of them
 * up the tree, the owner, manages it for all: it closes the pipes none of
 * them needs, and installs the files once the others have opened their
 * last fd.
 */
static struct rst_task *files_owner(struct rst_task *t)
{
	while (t->parent && (t->pstree->clone_flags & CLONE_FILES))
		t = t->parent;
	return t;
}

/* is t's fd table shared with another task? */
static bool shares_files(struct restore_ctx *ctx, struct rst_task *t)
{
	if (t->pstree->clone_flags & CLONE_FILES)
		return true;
	for (size_t i = t->index + 1; i < ctx->nr_tasks; i++)
		if (ctx->tasks[i]->parent == t && (ctx->tasks[i]->pstree->clone_flags & CLONE_FILES))
			return true;
	return false;
}

/*
 * Before the task forks its children, who inherit it all: the restorer
 * area (blob, arguments, stack, scratch) and the premapped memory, filled.
 */
static int prepare_memory(struct restore_ctx *ctx, struct rst_task *t)
{
	size_t blob_len = PAGE_ALIGN(restorer_BLOB_SIZE);
	size_t args_len = PAGE_ALIGN(sizeof(struct restorer_args) + mem_args_size(t) + task_args_size(t));
	size_t area_len = blob_len + args_len + RESTORER_STACK_SIZE + SCRATCH_SIZE;
	size_t premap_len = mem_premap_size(t);
	uint64_t hole = 0, tsize = ctx->kd.task_size;
	struct restorer_args *a;
	int ret;
	void *p;

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
	t->ra = (struct rst_area){ .base = (char *)a, .len = args_len, .args = a };
	if (!rst_area_alloc(&t->ra, sizeof(*a)))
		return -ENOMEM;
	a->pid = t->pid;
	a->task_size = tsize;
	a->area_start = hole;
	a->area_len = area_len;
	a->premap_start = (uint64_t)p;
	a->premap_len = premap_len;
	a->uffd = -1;
	a->uffd_features = ctx->opts->lazy_pages ? LAZY_UFFD_FEATURES : 0;
	t->stack_top = hole + blob_len + args_len + RESTORER_STACK_SIZE;
	if ((ret = mem_premap(ctx, t, &t->ra, (unsigned long)p)))
		return ret;
	__atomic_add_fetch(&ctx->shared->pages_restored, t->pages_restored, __ATOMIC_RELAXED);
	__atomic_add_fetch(&ctx->shared->pages_inherited, t->pages_inherited, __ATOMIC_RELAXED);
	t->area_start = hole;
	t->area_len = area_len;
	t->premap_start = (uint64_t)p;
	t->premap_len = premap_len;
	return 0;
}

/*
 * The owner of an fd table installs the files once every task sharing it
 * has opened its last fd; their exe and status fds stay.
 */
static int install_files(struct restore_ctx *ctx, struct rst_task *t)
{
	int keep[2 * ctx->nr_tasks], n = 0;

	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct rst_task *m = ctx->tasks[i];

		if (m->zombie || files_owner(m) != t)
			continue;
		if (m != t)
			futex_wait_for(ctx, &ctx->shared->slot[i].fds_done, 1);
		keep[n++] = ctx->shared->slot[i].exe_fd;
		keep[n++] = m->status[1];
	}
	return files_restore(ctx, t, keep, n);
}

/* its working directory, in its root (files_open_path) */
static int enter_cwd(const struct rst_task *t)
{
	char what[64];
	_cleanup_close_ int fd = -1;

	snprintf(what, sizeof(what), "pid %d: its working directory", t->pid);
	fd = files_open_path(t->core->task->cwd, O_PATH | O_DIRECTORY, what);
	if (fd < 0)
		return fd;
	if (fchdir(fd))
		return pr_perror("pid %d: cannot change into its working directory %s", t->pid, t->core->task->cwd);
	return 0;
}

/* the rest of the task, once the whole tree exists; then into the restorer */
static int restore_child(struct restore_ctx *ctx, struct rst_task *t, struct rst_slot *slot)
{
	struct restorer_args *a = t->ra.args;
	size_t scratch_len = SCRATCH_SIZE;
	bool owner = files_owner(t) == t;
	int ret;

	if ((ret = enter_cwd(t)))
		return ret;
	if ((ret = mem_prepare_specials(t, a, t->stack_top, &scratch_len)) ||
	    (ret = task_prepare_args(ctx, t, &t->ra)))
		return ret;
	if (owner && (ret = install_files(ctx, t)))
		return ret;
	a->mm.exe_fd = slot->exe_fd;
	a->status_fd = log_get_err_fd();
	slot->area_start = t->area_start;
	slot->area_len = t->area_len;
	if ((ret = unregister_own_rseq()))
		return ret;
	pr_debug("pid %d: jumping into the restorer at %#lx", t->pid, t->area_start);
	if (owner) {
		log_fini();
	} else {
		/* the log file is the owner's to close; it may install the files now */
		log_forget();
		futex_add(&slot->fds_done);
	}
	jump_to_restorer(t->area_start + restorer_off_entry, a, t->stack_top);
}

/* ----------------------------------------------------------- the parent */

/*
 * A task of the tree died or stopped while cryo waited: print what it said
 * on its status pipe (it is gone, or stopped: no blocking), or how it ended.
 */
/* what the task (pid in the tree) said on its status pipe before it went: logged; false if nothing */
static bool drain_status(struct restore_ctx *ctx, pid_t pid)
{
	bool said = false;
	char buf[4096];

	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		int fd = ctx->tasks[i]->status[0];
		ssize_t n;

		if (ctx->tasks[i]->pid != pid || fd < 0)
			continue;
		fcntl(fd, F_SETFL, O_NONBLOCK);
		while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
			buf[n] = 0;
			log_child_lines(buf);
			said = true;
		}
	}
	return said;
}

static int task_failed(struct restore_ctx *ctx, pid_t pid, int st)
{
	char buf[64];

	if (!drain_status(ctx, pid))
		pr_err("pid %d: the restoring task %s", pid, describe_status(st, buf, sizeof(buf)));
	if (WIFSTOPPED(st))
		pr_debug("it stopped with signal %d", WSTOPSIG(st));
	return -ECHILD;
}

/*
 * Collect what task t writes on its status pipe until it closes it,
 * watching that no task of the tree dies or stops on a signal meanwhile
 * (one that fails early leaves the others waiting for it at a barrier).
 * Returns 0 when the pipe closed with t alive.
 */
static int wait_child_ready(struct restore_ctx *ctx, struct rst_task *t, char *msg, size_t len)
{
	size_t used = 0;

	msg[0] = 0;
	for (;;) {
		struct pollfd pfd = { .fd = t->status[0], .events = POLLIN };
		int st, r = poll(&pfd, 1, 100);

		if (r > 0) {
			ssize_t n = read(t->status[0], msg + used, len - 1 - used);

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
		r = waitpid(-1, &st, WNOHANG | __WALL);
		if (r > 0 && r == guard_pid(ctx->opts->guard)) {
			pr_err("cryo's guardian (pid %d) died: the restore cannot go on safely", r);
			return -ECHILD;
		}
		if (r > 0) {
			if (r == t->host_pid && msg[0])
				return -ECHILD;	/* it said why */
			return task_failed(ctx, r, st);
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
 * Thread i of t as cryo sees it: the same tid outside a pid namespace, the
 * dumped host tid where it was restored, 0 where it could not be (a user
 * namespace's tasks cannot choose pids outside it).
 */
static pid_t known_host_tid(const struct restore_ctx *ctx, const struct rst_task *t, size_t i)
{
	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWPID))
		return t->core->threads[i]->tid;
	if (!i)
		return t->host_pid;
	return i < t->pstree->n_host_threads ? (pid_t)t->pstree->host_threads[i] : 0;
}

/* among host's children (or threads), the one whose innermost pid is ns_id; 0 if none */
static pid_t find_by_nspid(pid_t host, bool children, pid_t ns_id)
{
	_cleanup_free_ pid_t *v = NULL;
	int n = 0;

	if ((children ? proc_list_children(host, &v, &n) : proc_list_threads(host, &v, &n)))
		return 0;
	for (int k = 0; k < n; k++) {
		struct proc_status st;

		if (proc_parse_status(v[k], &st))
			continue;
		proc_status_free(&st);
		if (st.ns_pid == ns_id)
			return v[k];
	}
	return 0;
}

/*
 * The other threads wait in pause() too, untraced: seize them. tids[0] is
 * the leader, taken over already.
 */
static int take_over_threads(const struct restore_ctx *ctx, const struct rst_task *t, pid_t *tids)
{
	tids[0] = t->host_pid;
	for (size_t i = 1; i < t->core->n_threads; i++) {
		tids[i] = known_host_tid(ctx, t, i) ?: find_by_nspid(t->host_pid, false, t->core->threads[i]->tid);
		if (!tids[i]) {
			pr_err("pid %d: its thread %u is not there", t->pid, t->core->threads[i]->tid);
			release_threads(tids, 1, i);
			return -ECHILD;
		}
		if (seize_task(tids[i], NULL, false)) {
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

/* a syscall in the leader, stopped after its restorer: through the restorer's syscall instruction */
static int task_syscall(pid_t pid, const struct rst_slot *sh, long nr, long a0, long a1, long *res)
{
	struct user_regs_struct r;

	if (ptrace_get_regs(pid, &r))
		return -EIO;
	r.rip = sh->area_start + restorer_off_syscall;
	r.rax = nr;
	r.rdi = a0;
	r.rsi = a1;
	r.orig_rax = -1;
	if (ptrace_set_regs(pid, &r) || ptrace_step_syscall(pid) || ptrace_get_regs(pid, &r))
		return -EIO;
	*res = r.rax;
	return 0;
}

/*
 * The restorer is done: give every thread its registers, close the
 * userfaultfd the handler has a copy of, unmap the restorer from the
 * leader (no thread runs in it any more), and let them go.
 */
static int finalize(struct restore_ctx *ctx, struct rst_task *t, const struct rst_slot *sh,
		    const pid_t *tids)
{
	long res;

	for (size_t i = 1; i < t->core->n_threads; i++)
		if (set_thread_state(tids[i], t->core->threads[i]))
			return -EIO;
	if (ctx->opts->lazy_pages && t->uffd >= 0 && (task_syscall(t->host_pid, sh, __NR_close, t->uffd, 0, &res) || res)) {
		pr_err("pid %d: cannot close its userfaultfd (fd %d)", t->pid, t->uffd);
		return -EIO;
	}
	if (task_syscall(t->host_pid, sh, __NR_munmap, sh->area_start, sh->area_len, &res))
		return -EIO;
	if (res) {
		pr_err("pid %d: cannot unmap the restorer: error %ld", t->pid, -res);
		return -EIO;
	}
	if (set_thread_state(t->host_pid, t->core->threads[0]))
		return -EIO;
	release_threads(tids, 1, t->core->n_threads);
	/* a task that was stopped goes back to its stop right away */
	if (ptrace(PTRACE_DETACH, t->host_pid, 0, t->core->task->stopped ? SIGSTOP : 0))
		return pr_perror("pid %d: cannot let it go", t->pid);
	return 0;
}

static int cmp_fd(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* post-copy: the userfaultfd the restorer made, from its arguments in the task; -1 if none */
static int take_uffd(struct rst_task *t, const struct rst_slot *sh)
{
	uint64_t at = sh->area_start + PAGE_ALIGN(restorer_BLOB_SIZE) + offsetof(struct restorer_args, uffd);
	struct iovec local = { &t->uffd, sizeof(t->uffd) }, remote = { (void *)at, sizeof(t->uffd) };
	int pidfd, fd;

	if (process_vm_readv(t->host_pid, &local, 1, &remote, 1, 0) != sizeof(t->uffd)) {
		pr_perror("pid %d: cannot read which fd its userfaultfd is", t->pid);
		return -EIO;
	}
	if (t->uffd < 0)
		return -1;
	pidfd = sys_pidfd_open(t->host_pid, 0);
	fd = pidfd < 0 ? -1 : sys_pidfd_getfd(pidfd, t->uffd, 0);
	if (fd < 0)
		pr_perror("pid %d: cannot take its userfaultfd", t->pid);
	if (pidfd >= 0)
		close(pidfd);
	return fd < 0 ? -EIO : fd;
}

/* pages a lazy dump left at the source: only a handler that reaches it can restore them */
static int remote_pages(const struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++)
		for (size_t k = 0; k < ctx->tasks[i]->nr_pagemap; k++)
			if (ctx->tasks[i]->pagemap[k]->flags & PE_LAZY) {
				pr_err("pid %d: pages at %#lx are still at the source (a lazy dump): start cryo lazy-pages on these images, then restore",
				       ctx->tasks[i]->pid, (unsigned long)ctx->tasks[i]->pagemap[k]->vaddr);
				return -ENOENT;
			}
	return 0;
}

/*
 * Post-copy: every task's userfaultfd and lazy VMAs to the handler: a
 * child of cryo's (the pages are in the images), cryo lazy-pages (it
 * listens in the work directory: some are still at a lazy dump), or the
 * agent that asked for this restore (--lazy-sock: some are still at the
 * source). The tasks
 * wait in their restorer meanwhile; their first touch of a lazy page
 * will wait for the handler.
 */
static int start_lazy(struct restore_ctx *ctx)
{
	int sv[2] = { -1, -1 }, sock = ctx->opts->lazy_sock, ret = 0;
	pid_t handler = 0;

	if (sock < 0) {
		if ((ret = remote_pages(ctx)))
			return ret;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
			return pr_perror("socketpair");
		handler = fork();
		if (handler < 0) {
			close(sv[0]);
			close(sv[1]);
			return pr_perror("cannot start the lazy-pages handler");
		}
		if (!handler) {
			int keep[3] = { sv[1], ctx->dirfd, log_get_fd() }, null = open("/dev/null", O_RDWR);

			/* nothing of the tree's: its pipes and sockets must see their ends */
			setsid();
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			qsort(keep, 3, sizeof(int), cmp_fd);
			close_fds_but(3, keep, 3);
			ret = lazy_serve(ctx->dirfd, ctx->opts->images_dir, sv[1], NULL, ctx->opts->lazy_rate_mib,
					 ctx->opts->auto_dedup);
			_exit(ret ? 1 : 0);
		}
		close(sv[1]);
		sock = sv[0];
		pr_info("the lazy pages are filled by pid %d", handler);
	}
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++) {
		struct rst_task *t = ctx->tasks[i];
		struct lazy_task_desc d = { .vpid = t->pid, .ppid = t->parent ? t->parent->pid : 0,
					    .host = t->host_pid };
		_cleanup_free_ uint64_t *vmas = NULL;
		int fd = -1;

		t->uffd = -1;
		if (t->zombie)
			continue;
		fd = take_uffd(t, &ctx->shared->slot[i]);
		if (fd < -1) {
			ret = fd;
			break;
		}
		d.nr_vmas = mem_lazy_vmas(ctx, t, &vmas);
		ret = vmas || !d.nr_vmas ? lazy_send(sock, &d, vmas, fd) : -ENOMEM;
		if (fd >= 0)
			close(fd);
	}
	if (sv[0] >= 0)
		close(sv[0]);
	if (ret && handler > 0)
		kill(handler, SIGKILL);
	return ret;
}

/*
 * The child is born with every signal blocked: a signal sent to the pid
 * while it is being rebuilt (by a supervisor, or whoever saw the pid come
 * back) stays pending and reaches the process once it runs, under the
 * dumped mask, instead of hitting cryo's code in the child.
 */
static pid_t clone_with_pid(const struct restore_ctx *ctx, const struct rst_task *t, uint64_t flags)
{
	bool pidns = ctx->ns && (ctx->ns->flags & CLONE_NEWPID);
	/* its pid in each pid namespace, innermost first; cryo's too if known */
	pid_t pids[2] = { t->pid, t->host_pid };
	struct clone_args args = {
		.flags = flags,
		/* a sibling signals cryo's parent as cryo would (clone3 wants 0 here then) */
		.exit_signal = flags & CLONE_PARENT ? 0 : SIGCHLD,
		.set_tid = (uint64_t)pids,
		.set_tid_size = pidns && t->host_pid ? 2 : 1,
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
static int check_ids_free(const struct restore_ctx *ctx, const struct rst_task *t)
{
	for (size_t i = 0; i < t->core->n_threads; i++) {
		pid_t tid = known_host_tid(ctx, t, i);
		_cleanup_free_ char *comm = NULL;
		char path[64], what[64];

		if (!tid || (kill(tid, 0) && errno == ESRCH))
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

static bool in_subtree(const struct rst_task *t, const struct rst_task *top)
{
	for (; t; t = t->parent)
		if (t == top)
			return true;
	return false;
}

/*
 * Every task inherits every pipe cryo made. It keeps its own status write
 * and sync read ends (and those of the tasks sharing its fd table), and
 * those of its descendants until they are forked (descendants_too false);
 * then those go too.
 */
static void close_other_pipes(struct restore_ctx *ctx, struct rst_task *self, bool descendants_too)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct rst_task *t = ctx->tasks[i];
		int *fds[4] = { &t->status[0], &t->status[1], &t->sync[0], &t->sync[1] };
		bool mine = files_owner(t) == files_owner(self), below = !mine && in_subtree(t, self);

		for (int k = 0; k < 4; k++) {
			bool needed = k == 1 || k == 2;

			if (*fds[k] < 0 || (mine && needed) || (below && needed && !descendants_too))
				continue;
			/* once: the number may be another fd's by the next pass */
			close(*fds[k]);
			*fds[k] = -1;
		}
	}
}

/* a zombie: it exits as the dumped one did, once every task has its group */
static void __attribute__((noreturn)) become_zombie(struct restore_ctx *ctx, struct rst_task *t)
{
	int st = t->pstree->zombie_status;
	struct rlimit no_core = { 0, 0 };
	sigset_t all;

	futex_wait_for(ctx, &ctx->shared->grouped, ctx->nr_tasks);
	if (WIFSIGNALED(st)) {
		setrlimit(RLIMIT_CORE, &no_core);
		signal(WTERMSIG(st), SIG_DFL);
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		kill(getpid(), WTERMSIG(st));
	}
	_exit(WEXITSTATUS(st));
}

static void __attribute__((noreturn)) run_task(struct restore_ctx *ctx, struct rst_task *t);

/* fork the children of t born before (or after) its setsid, each with its pid; they run run_task */
static int fork_children(struct restore_ctx *ctx, struct rst_task *t, bool before_setsid)
{
	for (size_t i = t->index + 1; i < ctx->nr_tasks; i++) {
		struct rst_task *c = ctx->tasks[i];
		pid_t pid;

		if (c->parent != t || c->before_setsid != before_setsid)
			continue;
		pid = clone_with_pid(ctx, c, c->pstree->clone_flags & (CLONE_FILES | CLONE_FS));
		if (pid == 0)
			run_task(ctx, c);
		if (pid < 0)
			return pr_perror("cannot create pid %d (clone3 set_tid)", c->pid);
	}
	return 0;
}

/* the zombie children must have exited (not been reaped), the helpers reaped, before we go on */
static int wait_zombie_children(struct restore_ctx *ctx, struct rst_task *t)
{
	sigset_t chld;
	struct timespec zero = { 0, 0 };

	for (size_t i = t->index + 1; i < ctx->nr_tasks; i++) {
		struct rst_task *c = ctx->tasks[i];
		siginfo_t si;
		int r;

		if (c->parent != t || !c->zombie)
			continue;
		while ((r = waitid(P_PID, c->pid, &si, WEXITED | (c->helper ? 0 : WNOWAIT))) && errno == EINTR)
			;
		if (r)
			return pr_perror("pid %d: waiting for %s %d", t->pid, c->helper ? "helper" : "zombie",
					 c->pid);
	}
	/* their SIGCHLD was not pending at the dump: drop it */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	while (sigtimedwait(&chld, NULL, &zero) == SIGCHLD)
		;
	return 0;
}

/*
 * A task of the tree, in cryo's code still: wait until cryo traces it,
 * premap its memory, fork its children (who inherit the pages they share
 * with it) before and after taking its session, join its group once every
 * task exists, then rebuild the rest of itself and jump into the restorer.
 */
static void __attribute__((noreturn)) run_task(struct restore_ctx *ctx, struct rst_task *t)
{
	bool shared = !t->zombie && shares_files(ctx, t), owner = files_owner(t) == t;
	char c;
	int ret;

	if (owner)
		close_other_pipes(ctx, t, false);
	if (!t->zombie) {
		log_set_err_fd(t->status[1]);
		if (read(t->sync[0], &c, 1) != 1)
			_exit(1);
		close(t->sync[0]);
		t->sync[0] = -1;
	}
	/* the root: the container's namespaces, then the objects every task inherits */
	ret = t->parent ? 0 : ns_restore_root(ctx) ?: memfd_restore(ctx) ?: files_open_all(ctx);
	if (!ret && !t->zombie)
		ret = prepare_memory(ctx, t);
	if (!ret)
		ret = fork_children(ctx, t, true);
	if (!ret)
		ret = pstree_set_session(ctx, t);
	if (!ret)
		ret = fork_children(ctx, t, false);
	if (ret)
		_exit(1);
	if (!shared)
		close_other_pipes(ctx, t, true);
	futex_add(&ctx->shared->born);
	futex_wait_for(ctx, &ctx->shared->born, ctx->nr_tasks);
	/* every task has mapped its memfds, and every owner exists */
	if (!t->parent && (memfd_seal(ctx) || files_set_owners(ctx)))
		_exit(1);
	/* a shared table: once every task sharing it has forked its children */
	if (shared && owner)
		close_other_pipes(ctx, t, true);
	if (pstree_join_group(ctx, t))
		_exit(1);
	if (!t->zombie) {
		ctx->shared->slot[t->index].exe_fd = mem_exe_fd(ctx, t);
		if (ctx->shared->slot[t->index].exe_fd < 0)
			_exit(1);
	}
	futex_add(&ctx->shared->grouped);
	if (t->zombie)
		become_zombie(ctx, t);
	if (t->pstree->sid == (uint32_t)t->pid) {
		/* the foreground group of its terminal exists once every task is in its group */
		futex_wait_for(ctx, &ctx->shared->grouped, ctx->nr_tasks);
		if (pty_set_foreground(ctx, t))
			_exit(1);
	}
	if (wait_zombie_children(ctx, t))
		_exit(1);
	restore_child(ctx, t, &ctx->shared->slot[t->index]);
	_exit(1);
}

/* dead or dying (a zombie not yet reaped counts as gone) */
static bool task_gone(pid_t pid)
{
	struct proc_stat st;

	return kill(pid, 0) || proc_parse_stat(pid, &st) || st.state == 'Z' || st.state == 'X';
}

/* cryo: trace each task as it appears and let it start */
static int start_tasks(struct restore_ctx *ctx)
{
	int ret;

	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct rst_task *t = ctx->tasks[i];
		uint64_t deadline = now_ns() + 30ULL * 1000000000;

		if (t->zombie)
			continue;
		while (!t->host_pid || kill(t->host_pid, 0)) {
			const struct rst_task *p = t->parent;

			/* its pid outside could not be chosen: find it among its parent's children */
			if (!t->host_pid && p && (t->host_pid = find_by_nspid(p->host_pid, true, t->pid)))
				continue;
			if (p || ctx->opts->rst_sibling ? task_gone(p ? p->host_pid : ctx->tasks[0]->host_pid) :
			    waitpid(ctx->tasks[0]->host_pid, NULL, WNOHANG | __WALL) < 0) {
				/* it said why on its status pipe */
				drain_status(ctx, p ? p->pid : ctx->tasks[0]->pid);
				pr_err("pid %d: its parent %d is gone before creating it", t->pid, p ? p->pid : 0);
				return -ECHILD;
			}
			if (now_ns() > deadline) {
				pr_err("pid %d did not appear within 30 s", t->pid);
				return -ETIMEDOUT;
			}
			usleep(200);
		}
		if (ptrace(PTRACE_SEIZE, t->host_pid, 0, SEIZE_OPTIONS | PTRACE_O_EXITKILL))
			return pr_perror("pid %d: cannot trace the restoring task", t->pid);
		t->traced = true;
		/* traced, it dies with cryo; once let go, the guardian kills it unless the tree was committed */
		if (!(t->g_kill = guard_kill(ctx->opts->guard, t->host_pid)) && ctx->opts->guard)
			return -EIO;
		fault_point("restore-traced");
		/* a task in a cgroup below the root's goes there before it runs (it inherited the root's) */
		if (i && (ret = cgroup_attach(ctx, t->host_pid, t->pid)))
			return ret;
		if (!i && ((ret = ns_write_maps(ctx, t->host_pid)) || (ret = cgroup_attach(ctx, t->host_pid, 0)) ||
			   (ret = net_restore(ctx, t->host_pid)) ||
			   (ret = notify(ctx->opts, "setup-namespaces", t->host_pid)) ||
			   (ret = notify(ctx->opts, "post-setup-namespaces", t->host_pid))))
			return ret;
		if (write(t->sync[1], "g", 1) != 1)
			return pr_perror("pid %d: cannot start the restoring task", t->pid);
	}
	return 0;
}

/* cryo: every task has jumped into its restorer and waits; take them over */
static int finish_tasks(struct restore_ctx *ctx)
{
	char msg[4096];
	int ret = 0;

	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++) {
		struct rst_task *t = ctx->tasks[i];

		if (t->zombie)
			continue;
		ret = wait_child_ready(ctx, t, msg, sizeof(msg));
		/* the child's own errors (and warnings), already formatted */
		if (msg[0])
			log_child_lines(msg);
		if (!ret)
			ret = take_over(t->host_pid, msg[0]);
		if (!ret) {
			t->tids = calloc(t->core->n_threads, sizeof(*t->tids));
			ret = t->tids ? take_over_threads(ctx, t, t->tids) : -ENOMEM;
		}
	}
	if (ret)
		return ret;
	if (ctx->opts->lazy_pages && (ret = start_lazy(ctx)))
		return ret;
	if ((ret = pty_hand_over_orphans(ctx)) ||
	    (ret = notify(ctx->opts, "post-restore", ctx->tasks[0]->host_pid)) ||
	    (ret = notify(ctx->opts, "pre-resume", ctx->tasks[0]->host_pid)))
		return ret;
	tty_give_foreground(ctx, ctx->tasks[0]);
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		if (!ctx->tasks[i]->zombie)
			if (!(ret = finalize(ctx, ctx->tasks[i], &ctx->shared->slot[i], ctx->tasks[i]->tids)))
				fault_point("restore-released");
	if (ret)
		tty_take_back_foreground(ctx);
	return ret;
}

/* the tree runs, whatever happens to cryo now: the guardian lets it be */
static void commit_tree(struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		guard_done(ctx->tasks[i]->g_kill);
		ctx->tasks[i]->g_kill = NULL;
	}
}

/* a child of cryo other than its guardian (which outlives cryo's work) */
static bool has_other_children(pid_t guardian)
{
	_cleanup_free_ pid_t *kids = NULL;
	int n = 0;

	if (proc_list_children(getpid(), &kids, &n))
		return true;
	for (int i = 0; i < n; i++)
		if (kids[i] != guardian)
			return true;
	return false;
}

/* after a failure: no task of the tree is left (cryo is their subreaper) */
static void kill_tree(struct restore_ctx *ctx)
{
	pid_t guardian = guard_pid(ctx->opts->guard);

	for (size_t i = 0; i < ctx->nr_tasks; i++)
		if (ctx->tasks[i]->host_pid)
			kill(ctx->tasks[i]->host_pid, SIGKILL);
	/* dead for sure now */
	commit_tree(ctx);
	while (has_other_children(guardian) && (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR))
		;
}

/*
 * A tree in its own pid namespace keeps its pids there. Outside it, it gets
 * its old ones back when they are all free; when one is taken (by the tree
 * itself, stopped on this host by a lazy dump until its memory is here),
 * the host gives it others. Zombies and threads alike.
 */
static void host_ids_or_none(struct restore_ctx *ctx)
{
	pid_t taken = 0;

	if (!ctx->ns || !(ctx->ns->flags & CLONE_NEWPID))
		return;
	for (size_t i = 0; i < ctx->nr_tasks && !taken; i++) {
		const struct rst_task *t = ctx->tasks[i];
		size_t n = t->zombie ? 1 : t->core->n_threads;

		for (size_t k = 0; k < n && !taken; k++) {
			pid_t id = t->zombie ? t->host_pid : known_host_tid(ctx, t, k);

			if (id && !(kill(id, 0) && errno == ESRCH))
				taken = id;
		}
	}
	if (!taken)
		return;
	pr_warn("pid %d is taken on this host: the tree gets other pids outside its pid namespace (inside it, its own)",
		taken);
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		ctx->tasks[i]->host_pid = 0;
		ctx->tasks[i]->pstree->n_host_threads = 0;
	}
}

static int restore_tree(struct restore_ctx *ctx)
{
	size_t shared_len = PAGE_ALIGN(sizeof(struct rst_shared) + ctx->nr_tasks * sizeof(struct rst_slot));
	pid_t root;
	int ret = 0;

	host_ids_or_none(ctx);
	for (size_t i = 0; i < ctx->nr_tasks && !ret; i++)
		if (!ctx->tasks[i]->zombie)
			ret = check_ids_free(ctx, ctx->tasks[i]);
		else if (ctx->tasks[i]->host_pid && (!kill(ctx->tasks[i]->host_pid, 0) || errno != ESRCH))
			ret = -EEXIST, pr_err("pid %d (%s) is already in use: cannot restore it",
					      ctx->tasks[i]->host_pid, ctx->tasks[i]->helper ?
					      "to lead again the process group its exited leader left" : "a zombie");
	/* the root makes the objects tasks share, above every fd number they use */
	if (!ret)
		ret = files_plan(ctx) ?: pty_plan(ctx);
	/* the container's root may not open cryo's images: they are opened for it, above its fds */
	if (!ret && ctx->ns && (ctx->ns->flags & CLONE_NEWUSER)) {
		ret = img_preopen(ctx->dirfd, &ctx->pre_imgs, ctx->files_top);
		for (size_t i = 0; i < ctx->pre_imgs.n; i++)
			ctx->files_top = MAX(ctx->files_top, ctx->pre_imgs.v[i].fd + 1);
	}
	if (!ret)
		ret = cgroup_prepare(ctx) ?: mnt_make_stage(ctx);
	if (ret)
		goto out_files;
	ctx->shared = mmap(NULL, shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ctx->shared == MAP_FAILED) {
		ctx->shared = NULL;
		ret = pr_perror("mmap");
		goto out_files;
	}
	/* cryo's fds the tasks keep for a while go above every file: nothing moves them later */
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct rst_task *t = ctx->tasks[i];
		int *fds[4] = { &t->status[0], &t->status[1], &t->sync[0], &t->sync[1] };

		if (t->zombie)
			continue;
		if (pipe2(t->status, O_CLOEXEC) || pipe2(t->sync, O_CLOEXEC)) {
			ret = pr_perror("pipe");
			goto out;
		}
		for (int k = 0; k < 4; k++)
			if ((*fds[k] = fd_move_above(*fds[k], ctx->files_top, true)) < 0) {
				ret = pr_perror("cannot move a pipe above fd %d", ctx->files_top);
				goto out;
			}
	}
	if ((ret = log_move_file_fd(ctx->files_top)))
		goto out;
	ctx->cryo_pidfd = sys_pidfd_open(getpid(), 0);
	if (ctx->cryo_pidfd < 0 || (ctx->cryo_pidfd = fd_move_above(ctx->cryo_pidfd, ctx->files_top, true)) < 0) {
		ret = pr_perror("cannot open a pidfd of cryo for the restoring tasks");
		goto out;
	}
	/* orphans of a failed restore come back to us to be reaped */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	/* --restore-sibling: the root is a child of cryo's parent (the runtime that asked) */
	ctx->stats.forking_ns = now_ns();
	root = clone_with_pid(ctx, ctx->tasks[0], ns_clone_flags(ctx) | (ctx->opts->rst_sibling ? CLONE_PARENT : 0));
	if (root == 0)
		run_task(ctx, ctx->tasks[0]);
	if (root > 0 && !ctx->tasks[0]->host_pid)
		ctx->tasks[0]->host_pid = root;
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		struct rst_task *t = ctx->tasks[i];

		if (t->status[1] >= 0)
			close(t->status[1]);
		if (t->sync[0] >= 0)
			close(t->sync[0]);
		t->status[1] = t->sync[0] = -1;
	}
	if (root < 0) {
		if (errno == EEXIST)
			pr_err("pid %d is already in use: cannot restore it", ctx->tasks[0]->pid);
		else
			pr_perror("cannot create a process with pid %d (clone3 set_tid)", ctx->tasks[0]->pid);
		ret = -EIO;
		goto out;
	}
	ret = start_tasks(ctx);
	ctx->stats.forking_ns = now_ns() - ctx->stats.forking_ns;
	if (!ret)
		ret = finish_tasks(ctx);
	/* everything runs: the network lock goes */
	if (!ret)
		ret = net_restore_unlock(ctx) ?: notify(ctx->opts, "network-unlock", root);
	if (!ret)
		fault_point("restore-unlocked");
	/* whoever reads stats-restore or the pid file must find the tree running, or none */
	if (!ret) {
		ctx->stats.pages_restored = __atomic_load_n(&ctx->shared->pages_restored, __ATOMIC_RELAXED);
		ctx->stats.pages_skipped_cow = __atomic_load_n(&ctx->shared->pages_inherited, __ATOMIC_RELAXED);
		ret = stats_write_restore(ctx->opts, &ctx->stats);
	}
	if (!ret && ctx->opts->pidfile)
		ret = write_pidfile(ctx->opts, root);
	if (ret) {
		kill_tree(ctx);
	} else {
		commit_tree(ctx);
		pr_info("restored pid %d (%zu processes)", root, ctx->nr_tasks);
		/* too late to say no: it runs */
		if (notify(ctx->opts, "post-resume", root))
			pr_warn("pid %d runs on though post-resume failed", root);
	}
out:
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	munmap(ctx->shared, shared_len);
	ctx->shared = NULL;
	if (ctx->cryo_pidfd >= 0)
		close(ctx->cryo_pidfd);
out_files:
	memfd_close_all(ctx);
	files_close_all(ctx);
	mnt_remove_stage(ctx);
	cgroup_cleanup(ctx, ret != 0);
	img_preopened_close(&ctx->pre_imgs);
	return ret;
}

static int restore_command(struct cryo_opts *o);

int cmd_restore(struct cryo_opts *o)
{
	return guard_run(o, restore_command);
}

static int restore_command(struct cryo_opts *o)
{
	struct restore_ctx ctx = { .opts = o, .dirfd = -1, .fg_tty = -1, .cryo_pidfd = -1, .net_ext_fd = -1,
				   .pty_sock = { -1, -1 } };
	uint64_t t0 = ctx.stats.t_start = now_ns();
	int ret, daemon = -1;
	pid_t root;

	kerndat_basics(&ctx.kd);
	/* a task that dies early closes its pipes: that is an error, not a reason to die */
	signal(SIGPIPE, SIG_IGN);
	if (refuse_unsupported(o) || files_check_inherit(o))
		return 1;
	ctx.dirfd = open_images_dir(o->images_dir);
	if (ctx.dirfd < 0)
		return 1;
	/* post-copy from a lazy dump: cryo lazy-pages waits in the work directory */
	if (o->lazy_pages && o->lazy_sock < 0) {
		if (lazy_daemon_connect(o, &daemon)) {
			close(ctx.dirfd);
			return 1;
		}
		o->lazy_sock = daemon;
	}
	/* every name and path of the images through the door before anything is made */
	ret = notify(o, "pre-restore", 0) ?: read_images(&ctx) ?: rst_validate(&ctx);
	if (!ret)
		ret = restore_tree(&ctx);
	/* the handler outside (cryo lazy-pages, the agent) hears that the tree runs */
	if (!ret && o->lazy_pages && o->lazy_sock >= 0)
		ret = lazy_commit(o->lazy_sock);
	/* the daemon has every task: it reads them to the end */
	if (daemon >= 0) {
		close(daemon);
		o->lazy_sock = -1;
	}
	/* nothing of a failed restore is left, the lock of the caller's network namespace neither */
	if (ret && ctx.net_ext_fd >= 0)
		net_restore_unlock(&ctx);
	close(ctx.dirfd);
	if (!ret)
		pr_info("restore took %lu ms", (now_ns() - t0) / 1000000);
	root = ctx.nr_tasks ? ctx.tasks[0]->host_pid : 0;
	o->restored_pid = ret ? 0 : root;
	free_images(&ctx);
	/* the tree runs (or nothing is left): the guardian has nothing more to do */
	if (!o->detach)
		guard_stop(o);
	if (!ret && !o->detach) {
		ret = wait_restored(root);
		tty_take_back_foreground(&ctx);
		return ret;
	}
	if (ctx.fg_tty >= 0)
		close(ctx.fg_tty);
	return ret ? 1 : 0;
}
