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

struct k_stack {
	uint64_t sp;
	int32_t flags;
	int32_t pad;
	uint64_t size;
};

struct k_itimerval {
	int64_t interval_sec, interval_usec, value_sec, value_usec;
};

struct k_sock_fprog {
	uint16_t len;
	uint64_t filter;
} __attribute__((packed, aligned(8)));

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

static void restore_mm(struct restorer_args *a)
{
	CHECK(a, sys5(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof(a->mm), 0),
	      "prctl(PR_SET_MM_MAP)");
	sys1(__NR_close, a->mm.exe_fd);
	CHECK(a, sys2(__NR_prctl, PR_SET_NAME, a->comm), "prctl(PR_SET_NAME)");
}

static void restore_signals(struct restorer_args *a)
{
	struct rst_siginfo *p = (struct rst_siginfo *)a->pending;
	struct k_stack ss = { a->altstack_sp, a->altstack_flags, 0, a->altstack_size };

	for (int sig = 1; sig <= 64; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		CHECK(a, sys4(__NR_rt_sigaction, sig, &a->sa[sig - 1], 0, 8), "rt_sigaction");
	}
	/* SS_ONSTACK is a status, not a setting; SS_DISABLE and SS_AUTODISARM are */
	ss.flags &= ~1;
	CHECK(a, sys2(__NR_sigaltstack, &ss, 0), "sigaltstack");

	for (uint32_t i = 0; i < a->nr_pending; i++) {
		long r;

		if (p[i].shared)
			r = sys3(__NR_rt_sigqueueinfo, a->pid, p[i].sig, p[i].info);
		else
			r = sys4(__NR_rt_tgsigqueueinfo, a->pid, a->pid, p[i].sig, p[i].info);
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

static void restore_seccomp(struct restorer_args *a)
{
	struct rst_seccomp_filter *f = (struct rst_seccomp_filter *)a->seccomp;

	for (uint32_t i = 0; i < a->nr_seccomp; i++) {
		struct k_sock_fprog prog = { (uint16_t)f[i].len, f[i].insns };

		CHECK(a, sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER, f[i].flags, &prog), "seccomp filter");
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

/* prctl state that a change of credentials resets: set it afterwards */
static void restore_prctl(struct restorer_args *a)
{
	CHECK(a, sys2(__NR_prctl, PR_SET_DUMPABLE, a->dumpable), "prctl(PR_SET_DUMPABLE)");
	CHECK(a, sys2(__NR_prctl, PR_SET_PDEATHSIG, a->pdeath_sig), "prctl(PR_SET_PDEATHSIG)");
	CHECK(a, sys2(__NR_prctl, PR_SET_CHILD_SUBREAPER, a->child_subreaper), "prctl(PR_SET_CHILD_SUBREAPER)");
	CHECK(a, sys2(__NR_prctl, PR_SET_THP_DISABLE, a->thp_disable), "prctl(PR_SET_THP_DISABLE)");
	if (a->timerslack_ns)
		CHECK(a, sys2(__NR_prctl, PR_SET_TIMERSLACK, a->timerslack_ns), "prctl(PR_SET_TIMERSLACK)");
	if (a->no_new_privs)
		CHECK(a, sys5(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)");
}

PIE_EXPORT void restorer_main(struct restorer_args *a)
{
	uint64_t all = ~0ULL;

	/* nothing may be delivered until cryo sets the real mask */
	sys4(__NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &all, 0, 8);

	move_specials_to_scratch(a);
	unmap_cryo(a);
	move_vmas(a);
	restore_mm(a);
	CHECK(a, sys1(__NR_personality, a->personality), "personality");
	sys1(__NR_umask, a->umask);
	restore_signals(a);
	restore_timers(a);
	restore_rlimits(a);
	if (a->rseq_ptr)
		CHECK(a, sys4(__NR_rseq, a->rseq_ptr, a->rseq_len, 0, a->rseq_sig), "rseq");
	/* seccomp is suspended for us while cryo traces us */
	restore_seccomp(a);
	restore_creds(a);
	restore_prctl(a);

	sys1(__NR_close, a->status_fd);	/* success: cryo sees EOF */
}
