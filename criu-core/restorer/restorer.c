/*
 * The restorer: the last code a restored task runs before it becomes the
 * dumped process again. It runs in the restored task itself, from an area
 * that no dumped mapping uses, after cryo's child has opened the files and
 * premapped and filled the memory. It tears down what is left of cryo,
 * moves the memory into place and sets what only the task can set on
 * itself. The registers, xstate and signal mask are then set by cryo with
 * ptrace, which also unmaps this area.
 */
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <linux/ioctl.h>
#include <linux/userfaultfd.h>
#include <stdbool.h>

#include "mem-flags.h"
#include "pie.h"
#include "restorer-proto.h"

#define MREMAP_MAYMOVE_ 1
#define MREMAP_FIXED_ 2
#define SIGKILL 9
#define SIGSTOP 19
#define MADV_HUGEPAGE_ 14
#define MADV_NOHUGEPAGE_ 15
#define MADV_DONTFORK_ 10
#define MADV_WIPEONFORK_ 18
#define MADV_DONTDUMP_ 16
#define MADV_MERGEABLE_ 12
#define MADV_RANDOM_ 1
#define MADV_SEQUENTIAL_ 2
#define MLOCK_ONFAULT_ 1

struct k_stack {
	uint64_t sp;
	int32_t flags;
	int32_t pad;
	uint64_t size;
};

struct k_itimerval {
	int64_t interval_sec, interval_usec, value_sec, value_usec;
};

/* struct sock_fprog: the pointer at offset 8 */
struct k_sock_fprog {
	uint16_t len;
	uint64_t filter;
};

static void __attribute__((noreturn)) die(struct restorer_args *a, const char *what, long err)
{
	char msg[256];
	int n;

	n = pie_snprintf(msg, sizeof(msg), "cryo: pid %d: restorer: %s failed: error %ld\n", a->pid, what, -err);
	if (n > (int)sizeof(msg) - 1)
		n = sizeof(msg) - 1;
	sys3(__NR_write, a->status_fd, msg, n);
	sys1(__NR_exit_group, 1);
	__builtin_unreachable();
}

#define CHECK(a, expr, what) do {		\
	long __r = (expr);			\
	if (__r < 0 && __r > -4096)		\
		die(a, what, __r);		\
} while (0)

static void move_specials_to_scratch(struct restorer_args *a)
{
	uint64_t off = 0;

	for (uint32_t i = 0; i < a->nr_specials; i++) {
		struct rst_special *s = &a->specials[i];
		long r = sys5(__NR_mremap, s->cur, s->size, s->size,
			      MREMAP_MAYMOVE_ | MREMAP_FIXED_, a->scratch + off);

		CHECK(a, r, "moving the vdso/vvar aside");
		s->cur = a->scratch + off;
		off += s->size;
	}
}

/* unmap everything but the restorer area and the premapped memory */
static void unmap_cryo(struct restorer_args *a)
{
	uint64_t keep[2][2] = {
		{ a->area_start, a->area_start + a->area_len },
		{ a->premap_start, a->premap_start + a->premap_len },
	};
	uint64_t cur = 0;

	if (keep[0][0] > keep[1][0]) {
		uint64_t t0 = keep[0][0], t1 = keep[0][1];

		keep[0][0] = keep[1][0];
		keep[0][1] = keep[1][1];
		keep[1][0] = t0;
		keep[1][1] = t1;
	}
	for (int i = 0; i < 2; i++) {
		if (keep[i][0] > cur)
			CHECK(a, sys2(__NR_munmap, cur, keep[i][0] - cur), "unmapping cryo");
		cur = keep[i][1];
	}
	if (cur < a->task_size)
		CHECK(a, sys2(__NR_munmap, cur, a->task_size - cur), "unmapping cryo");
}

static void apply_madvise(struct restorer_args *a, const struct rst_vma *v)
{
	static const struct { uint32_t bit; int advice; } map[] = {
		{ VMA_MADV_DONTFORK, MADV_DONTFORK_ },
		{ VMA_MADV_WIPEONFORK, MADV_WIPEONFORK_ },
		{ VMA_MADV_DONTDUMP, MADV_DONTDUMP_ },
		{ VMA_MADV_MERGEABLE, MADV_MERGEABLE_ },
		{ VMA_MADV_RANDOM, MADV_RANDOM_ },
		{ VMA_MADV_SEQUENTIAL, MADV_SEQUENTIAL_ },
	};

	for (unsigned i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (v->madv & map[i].bit)
			CHECK(a, sys3(__NR_madvise, v->start, v->end - v->start, map[i].advice), "madvise");
	/* still with cryo's CAP_IPC_LOCK: no RLIMIT_MEMLOCK in the way */
	if (v->madv & VMA_MADV_LOCKED)
		CHECK(a, sys3(__NR_mlock2, v->start, v->end - v->start,
			      (v->madv & VMA_MADV_LOCKONFAULT) ? MLOCK_ONFAULT_ : 0), "mlock");
	if (v->anon_name)
		sys5(__NR_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, v->start, v->end - v->start, v->anon_name);
}

static void move_vmas(struct restorer_args *a)
{
	struct rst_vma *v = (struct rst_vma *)a->vmas;

	/*
	 * The premap range overlaps no target address, so the moves cannot
	 * clobber each other and their order does not matter.
	 */
	for (uint32_t i = 0; i < a->nr_vmas; i++) {
		uint64_t size = v[i].end - v[i].start;

		if (v[i].premap != v[i].start)
			CHECK(a, sys5(__NR_mremap, v[i].premap, size, size,
				      MREMAP_MAYMOVE_ | MREMAP_FIXED_, v[i].start), "moving a VMA into place");
		apply_madvise(a, &v[i]);
	}
	/* what is left of the reservation is alignment padding */
	CHECK(a, sys2(__NR_munmap, a->premap_start, a->premap_len), "dropping the premap reservation");

	for (uint32_t i = 0; i < a->nr_specials; i++) {
		struct rst_special *s = &a->specials[i];

		if (s->dst)
			CHECK(a, sys5(__NR_mremap, s->cur, s->size, s->size,
				      MREMAP_MAYMOVE_ | MREMAP_FIXED_, s->dst), "moving the vdso/vvar into place");
		else
			CHECK(a, sys2(__NR_munmap, s->cur, s->size), "dropping the vdso/vvar");
	}
}

/*
 * Post-copy: the VMAs whose pages come later are registered with a
 * userfaultfd of the task's own, right where they now are, before anything
 * could touch them: from here a first touch waits for the lazy-pages
 * handler, which gets the fd from cryo (it reads a->uffd).
 */
static void register_lazy(struct restorer_args *a)
{
	struct rst_vma *v = (struct rst_vma *)a->vmas;
	struct uffdio_api api = { .api = UFFD_API, .features = a->uffd_features };
	long fd = -1;

	for (uint32_t i = 0; i < a->nr_vmas; i++) {
		struct uffdio_register r = {
			.range = { .start = v[i].start, .len = v[i].end - v[i].start },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};

		if (!v[i].lazy)
			continue;
		if (fd < 0) {
			fd = sys1(__NR_userfaultfd, 02000000 /* O_CLOEXEC */ | 04000 /* O_NONBLOCK */);
			CHECK(a, fd, "userfaultfd (for --lazy-pages)");
			CHECK(a, sys3(__NR_ioctl, fd, UFFDIO_API, &api), "UFFDIO_API (for --lazy-pages)");
		}
		CHECK(a, sys3(__NR_ioctl, fd, UFFDIO_REGISTER, &r), "UFFDIO_REGISTER of a lazy VMA");
	}
	a->uffd = fd;
}

static void restore_mm(struct restorer_args *a)
{
	CHECK(a, sys5(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof(a->mm), 0),
	      "prctl(PR_SET_MM_MAP)");
	sys1(__NR_close, a->mm.exe_fd);
}

static void restore_sigactions(struct restorer_args *a)
{
	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		CHECK(a, sys4(__NR_rt_sigaction, sig, &a->sa[sig - 1], 0, 8), "rt_sigaction");
	}
}

/* once every thread exists: each queue gets its signals back */
static void restore_pending(struct restorer_args *a)
{
	struct rst_siginfo *p = (struct rst_siginfo *)a->pending;

	for (uint32_t i = 0; i < a->nr_pending; i++) {
		long r;

		if (!p[i].tid)
			r = sys3(__NR_rt_sigqueueinfo, a->pid, p[i].sig, p[i].info);
		else
			r = sys4(__NR_rt_tgsigqueueinfo, a->pid, p[i].tid, p[i].sig, p[i].info);
		CHECK(a, r, "queueing a pending signal");
	}
}

static void restore_timers(struct restorer_args *a)
{
	for (int i = 0; i < 3; i++) {
		struct k_itimerval it = {
			a->itimer[i].interval_sec, a->itimer[i].interval_usec,
			a->itimer[i].value_sec, a->itimer[i].value_usec,
		};

		CHECK(a, sys3(__NR_setitimer, i, &it, 0), "setitimer");
	}
}

static void restore_rlimits(struct restorer_args *a)
{
	for (int i = 0; i < RESTORER_NR_RLIMITS; i++) {
		char what[48];

		long r = sys4(__NR_prlimit64, 0, i, &a->rlim[i], 0);
		if (r < 0) {
			pie_snprintf(what, sizeof(what), "setting resource limit %d", i);
			die(a, what, r);
		}
	}
}

/*
 * Run by the leader once the other threads are set up and wait in pause():
 * with more than one thread the filters go to all of them at once (TSYNC),
 * so that no thread runs its own set-up under a filter (only the leader,
 * traced, has seccomp suspended).
 */
static void restore_seccomp(struct restorer_args *a)
{
	struct rst_seccomp_filter *f = (struct rst_seccomp_filter *)a->seccomp;
	uint64_t sync = a->nr_threads > 1 ? SECCOMP_FILTER_FLAG_TSYNC : 0;

	for (uint32_t i = 0; i < a->nr_seccomp; i++) {
		struct k_sock_fprog prog = { (uint16_t)f[i].len, f[i].insns };
		long r = sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, f[i].flags | sync, &prog);

		if (r > 0)	/* TSYNC: the tid of a thread that could not follow */
			die(a, "seccomp filter (thread sync)", -r);
		CHECK(a, r, "seccomp filter");
	}
	if (a->seccomp_mode == SECCOMP_MODE_STRICT)
		CHECK(a, sys2(__NR_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT), "seccomp strict mode");
}

struct k_cap_header {
	uint32_t version;
	int32_t pid;
};

struct k_cap_data {
	uint32_t effective, permitted, inheritable;
};

#define SECBIT_KEEP_CAPS_ (1 << 4)

static void restore_creds(struct restorer_args *a)
{
	struct rst_creds *c = &a->creds;
	struct k_cap_header hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct k_cap_data data[2];

	CHECK(a, sys2(__NR_setgroups, c->nr_groups, c->groups), "setgroups");
	CHECK(a, sys3(__NR_setresgid, c->gid[0], c->gid[1], c->gid[2]), "setresgid");
	sys1(__NR_setfsgid, c->gid[3]);

	for (int cap = 0; cap < 64; cap++)
		if (!(c->cap_bnd & (1ULL << cap)) && sys2(__NR_prctl, PR_CAPBSET_READ, cap) == 1)
			CHECK(a, sys2(__NR_prctl, PR_CAPBSET_DROP, cap), "dropping a bounding capability");
	if ((uint32_t)sys1(__NR_prctl, PR_GET_SECUREBITS) != c->securebits)
		CHECK(a, sys2(__NR_prctl, PR_SET_SECUREBITS, c->securebits), "prctl(PR_SET_SECUREBITS)");
	/* keep the permitted set across the uid change, set it exactly below */
	if (!(c->securebits & SECBIT_KEEP_CAPS_))
		CHECK(a, sys2(__NR_prctl, PR_SET_KEEPCAPS, 1), "prctl(PR_SET_KEEPCAPS)");

	CHECK(a, sys3(__NR_setresuid, c->uid[0], c->uid[1], c->uid[2]), "setresuid");
	sys1(__NR_setfsuid, c->uid[3]);

	data[0].effective = c->cap_eff;
	data[1].effective = c->cap_eff >> 32;
	data[0].permitted = c->cap_prm;
	data[1].permitted = c->cap_prm >> 32;
	data[0].inheritable = c->cap_inh;
	data[1].inheritable = c->cap_inh >> 32;
	CHECK(a, sys2(__NR_capset, &hdr, data), "capset");
	for (int cap = 0; cap < 64; cap++)
		if (c->cap_amb & (1ULL << cap))
			CHECK(a, sys5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0),
			      "raising an ambient capability");
	if (!(c->securebits & SECBIT_KEEP_CAPS_))
		CHECK(a, sys2(__NR_prctl, PR_SET_KEEPCAPS, 0), "prctl(PR_SET_KEEPCAPS)");
}

/*
 * What each thread sets on itself, the leader included: its name, stack,
 * tid address and rseq, then the per-thread part of the task's state
 * (credentials, and the prctl state that a change of credentials resets).
 * The leader also installs the seccomp filters, for every thread.
 */
static void restore_thread(struct restorer_args *a, const struct rst_thread *th, bool leader)
{
	/* SS_ONSTACK is a status, not a setting; SS_DISABLE and SS_AUTODISARM are */
	struct k_stack ss = { th->altstack_sp, th->altstack_flags & ~1, 0, th->altstack_size };

	CHECK(a, sys2(__NR_prctl, PR_SET_NAME, th->comm), "prctl(PR_SET_NAME)");
	CHECK(a, sys2(__NR_sigaltstack, &ss, 0), "sigaltstack");
	sys1(__NR_set_tid_address, th->clear_tid);
	if (th->rseq_ptr)
		CHECK(a, sys4(__NR_rseq, th->rseq_ptr, th->rseq_len, 0, th->rseq_sig), "rseq");
	/* before the credentials: installing a filter may need CAP_SYS_ADMIN */
	if (leader)
		restore_seccomp(a);
	restore_creds(a);
	CHECK(a, sys2(__NR_prctl, PR_SET_PDEATHSIG, a->pdeath_sig), "prctl(PR_SET_PDEATHSIG)");
	if (a->timerslack_ns)
		CHECK(a, sys2(__NR_prctl, PR_SET_TIMERSLACK, a->timerslack_ns), "prctl(PR_SET_TIMERSLACK)");
	if (a->no_new_privs)
		CHECK(a, sys5(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)");
}

/* process-wide prctl state, set once every thread has its credentials */
static void restore_prctl(struct restorer_args *a)
{
	CHECK(a, sys2(__NR_prctl, PR_SET_DUMPABLE, a->dumpable), "prctl(PR_SET_DUMPABLE)");
	CHECK(a, sys2(__NR_prctl, PR_SET_CHILD_SUBREAPER, a->child_subreaper), "prctl(PR_SET_CHILD_SUBREAPER)");
	CHECK(a, sys2(__NR_prctl, PR_SET_THP_DISABLE, a->thp_disable), "prctl(PR_SET_THP_DISABLE)");
}

#define FUTEX_WAIT_PRIVATE_ 128
#define FUTEX_WAKE_PRIVATE_ 129

/* A thread other than the leader: set itself up, say so, wait for cryo. */
static void __attribute__((noreturn, used)) thread_main(struct restorer_args *a, struct rst_thread *th)
{
	restore_thread(a, th, false);
	__atomic_add_fetch(&a->threads_ready, 1, __ATOMIC_SEQ_CST);
	sys6(__NR_futex, &a->threads_ready, FUTEX_WAKE_PRIVATE_, 1, 0, 0, 0);
	for (;;)
		sys0(__NR_pause);
}

struct k_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal;
	uint64_t stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

#define CLONE_THREAD_FLAGS (0x100 /* VM */ | 0x200 /* FS */ | 0x400 /* FILES */ | \
			    0x800 /* SIGHAND */ | 0x10000 /* THREAD */ | 0x40000 /* SYSVSEM */)

/*
 * clone3 a thread with the dumped tid onto its own stack. The child comes
 * back from the syscall on that stack with a copy of our registers: the
 * callee-saved ones carry what it needs to call thread_main.
 */
static void create_thread(struct restorer_args *a, struct rst_thread *th)
{
	/* its tid in each pid namespace, innermost first */
	int32_t tid[2] = { th->tid, th->host_tid };
	struct k_clone_args ca = {
		.flags = CLONE_THREAD_FLAGS,
		.stack = th->stack_top - RESTORER_THREAD_STACK,
		.stack_size = RESTORER_THREAD_STACK,
		.set_tid = (uint64_t)tid,
		.set_tid_size = th->host_tid ? 2 : 1,
	};
	register uint64_t r12 asm("r12") = (uint64_t)thread_main;
	register uint64_t r13 asm("r13") = (uint64_t)a;
	register uint64_t r14 asm("r14") = (uint64_t)th;
	long ret;

	asm volatile("	syscall\n"
		     "	test	%%rax, %%rax\n"
		     "	jnz	1f\n"
		     "	xor	%%ebp, %%ebp\n"
		     "	mov	%%r13, %%rdi\n"
		     "	mov	%%r14, %%rsi\n"
		     "	call	*%%r12\n"
		     "	ud2\n"
		     "1:\n"
		     : "=a"(ret)
		     : "0"((long)__NR_clone3), "D"(&ca), "S"(sizeof(ca)), "r"(r12), "r"(r13), "r"(r14)
		     : "rcx", "r11", "memory");
	CHECK(a, ret, "clone3 of a thread");
}

static void restore_threads(struct restorer_args *a)
{
	struct rst_thread *th = (struct rst_thread *)a->threads;
	uint32_t ready;

	for (uint32_t i = 1; i < a->nr_threads; i++)
		create_thread(a, &th[i]);
	restore_pending(a);
	while ((ready = __atomic_load_n(&a->threads_ready, __ATOMIC_SEQ_CST)) < a->nr_threads - 1)
		sys6(__NR_futex, &a->threads_ready, FUTEX_WAIT_PRIVATE_, ready, 0, 0, 0);
	restore_thread(a, &th[0], true);
}

PIE_EXPORT void restorer_main(struct restorer_args *a)
{
	uint64_t all = ~0ULL;

	/* nothing may be delivered until cryo sets the real mask */
	sys4(__NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &all, 0, 8);

	move_specials_to_scratch(a);
	unmap_cryo(a);
	move_vmas(a);
	register_lazy(a);
	restore_mm(a);
	CHECK(a, sys1(__NR_personality, a->personality), "personality");
	sys1(__NR_umask, a->umask);
	restore_sigactions(a);
	restore_timers(a);
	restore_rlimits(a);
	restore_threads(a);
	restore_prctl(a);

	sys1(__NR_close, a->status_fd);	/* success: cryo sees EOF */
}
