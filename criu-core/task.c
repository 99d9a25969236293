/*
 * Task state other than memory and files: CPU registers, signals, timers,
 * limits, credentials, prctl state, seccomp. Dump and restore side by side.
 */
#define LOG_PREFIX "task: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include "compat.h"
#include "door.h"
#include "dump.h"
#include "log.h"
#include "restore.h"
#include "seize.h"
#include "validate.h"

#define SIGINFO_SIZE	128
#define XSAVE_MAX	(64u << 10)

/* ---------------------------------------------------------------- dump */

static void regs_to_image(const struct user_regs_struct *r, UserRegsEntry *e)
{
	user_regs_entry__init(e);
#define R(f) e->f = r->f
	R(r15); R(r14); R(r13); R(r12); R(rbp); R(rbx); R(r11); R(r10); R(r9); R(r8);
	R(rax); R(rcx); R(rdx); R(rsi); R(rdi); R(orig_rax); R(rip); R(cs); R(eflags);
	R(rsp); R(ss); R(fs_base); R(gs_base); R(ds); R(es); R(fs); R(gs);
#undef R
}

/* PTRACE_PEEKSIGINFO: the per-thread or the process-wide queue */
static int dump_pending(struct arena *a, pid_t tid, bool shared, ProtobufCBinaryData **out, size_t *nr)
{
	struct { uint64_t off; uint32_t flags; int32_t nr; } arg = { 0, shared ? 1 : 0, 16 };
	uint8_t buf[16 * SIGINFO_SIZE];
	ProtobufCBinaryData *v = NULL;
	size_t n = 0;

	for (;;) {
		long got = ptrace(PTRACE_PEEKSIGINFO, tid, &arg, buf);

		if (got < 0) {
			free(v);
			return pr_perror("tid %d: cannot read pending signals", tid);
		}
		if (got == 0)
			break;
		ProtobufCBinaryData *nv = xrealloc_array(v, n + got, sizeof(*v));
		if (!nv) {
			free(v);
			return -ENOMEM;
		}
		v = nv;
		for (long i = 0; i < got; i++) {
			v[n].len = SIGINFO_SIZE;
			v[n].data = arena_alloc(a, SIGINFO_SIZE);
			if (!v[n].data) {
				free(v);
				return -ENOMEM;
			}
			memcpy(v[n].data, buf + i * SIGINFO_SIZE, SIGINFO_SIZE);
			n++;
		}
		arg.off += got;
	}
	*out = n ? arena_array(a, ProtobufCBinaryData, n) : NULL;
	if (n) {
		if (!*out) {
			free(v);
			return -ENOMEM;
		}
		memcpy(*out, v, n * sizeof(*v));
	}
	free(v);
	*nr = n;
	return 0;
}

static int dump_thread(struct dump_ctx *ctx, pid_t tid, ThreadCoreEntry *th)
{
	struct arena *a = &ctx->arena;
	struct user_regs_struct r;
	struct cryo_rseq_config rseq;
	_cleanup_free_ void *xs = malloc(XSAVE_MAX);
	size_t xlen = XSAVE_MAX;
	long ret;

	thread_core_entry__init(th);
	th->tid = tid;
	if (!xs)
		return -ENOMEM;
	if (ptrace_get_regs(tid, &r) || ptrace_get_xstate(tid, xs, &xlen) ||
	    ptrace_get_sigmask(tid, &th->blocked))
		return -EIO;
	/* the task goes on as the kernel would resume it: restart its syscall */
	regs_apply_restart(&r, true);
	th->regs = arena_new(a, UserRegsEntry);
	th->xsave.data = arena_alloc(a, xlen);
	if (!th->regs || !th->xsave.data)
		return -ENOMEM;
	regs_to_image(&r, th->regs);
	th->xsave.len = xlen;
	memcpy(th->xsave.data, xs, xlen);

	ret = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, sizeof(rseq), &rseq);
	if (ret < 0)
		return pr_perror("tid %d: cannot read the rseq registration", tid);
	if (rseq.rseq_abi_pointer) {
		th->rseq = arena_new(a, RseqEntry);
		if (!th->rseq)
			return -ENOMEM;
		rseq_entry__init(th->rseq);
		th->rseq->ptr = rseq.rseq_abi_pointer;
		th->rseq->len = rseq.rseq_abi_size;
		th->rseq->sig = rseq.signature;
	}
	return dump_pending(a, tid, false, &th->pending, &th->n_pending);
}

static int dump_seccomp(struct dump_ctx *ctx, struct dump_task *t, TaskCoreEntry *tc)
{
	int n = t->status.seccomp_filters;

	tc->seccomp_mode = t->status.seccomp;
	if (tc->seccomp_mode != 2 || n <= 0)
		return 0;
	tc->seccomp_filters = arena_array(&ctx->arena, SeccompFilterEntry *, n);
	if (!tc->seccomp_filters)
		return -ENOMEM;
	/* PTRACE_SECCOMP_GET_FILTER counts from the oldest filter, as the image keeps them */
	for (int i = 0; i < n; i++) {
		struct cryo_seccomp_metadata md = { .filter_off = i };
		SeccompFilterEntry *f = arena_new(&ctx->arena, SeccompFilterEntry);
		long len = ptrace(PTRACE_SECCOMP_GET_FILTER, t->pid, i, NULL);

		if (!f)
			return -ENOMEM;
		if (len < 0)
			return pr_perror("pid %d: cannot read seccomp filter %d", t->pid, i);
		seccomp_filter_entry__init(f);
		f->insns.len = len * 8;
		f->insns.data = arena_alloc(&ctx->arena, f->insns.len);
		if (!f->insns.data)
			return -ENOMEM;
		if (ptrace(PTRACE_SECCOMP_GET_FILTER, t->pid, i, f->insns.data) != len)
			return pr_perror("pid %d: cannot read seccomp filter %d", t->pid, i);
		if (ptrace(PTRACE_SECCOMP_GET_METADATA, t->pid, sizeof(md), &md) < 0)
			return pr_perror("pid %d: cannot read seccomp filter %d flags", t->pid, i);
		f->flags = md.flags;
		tc->seccomp_filters[i] = f;
	}
	tc->n_seccomp_filters = n;
	return 0;
}

static int dump_creds(struct dump_ctx *ctx, struct dump_task *t, TaskCoreEntry *tc)
{
	CredsEntry *c = arena_new(&ctx->arena, CredsEntry);
	const struct proc_status *st = &t->status;

	if (!c)
		return -ENOMEM;
	creds_entry__init(c);
	c->uid = st->uid[0];
	c->euid = st->uid[1];
	c->suid = st->uid[2];
	c->fsuid = st->uid[3];
	c->gid = st->gid[0];
	c->egid = st->gid[1];
	c->sgid = st->gid[2];
	c->fsgid = st->gid[3];
	c->n_groups = st->nr_groups;
	c->groups = arena_array(&ctx->arena, uint32_t, st->nr_groups);
	if (st->nr_groups && !c->groups)
		return -ENOMEM;
	if (st->nr_groups)
		memcpy(c->groups, st->groups, st->nr_groups * sizeof(uint32_t));
	c->cap_inh = st->cap_inh;
	c->cap_prm = st->cap_prm;
	c->cap_eff = st->cap_eff;
	c->cap_bnd = st->cap_bnd;
	c->cap_amb = st->cap_amb;
	tc->creds = c;
	return 0;
}

static int dump_rlimits(struct dump_ctx *ctx, struct dump_task *t, TaskCoreEntry *tc)
{
	struct proc_rlimit lim[PROC_NR_RLIMITS];
	int ret = proc_read_limits(t->pid, lim);

	if (ret)
		return ret;
	tc->rlimits = arena_array(&ctx->arena, RlimitEntry *, PROC_NR_RLIMITS);
	if (!tc->rlimits)
		return -ENOMEM;
	for (int i = 0; i < PROC_NR_RLIMITS; i++) {
		RlimitEntry *r = arena_new(&ctx->arena, RlimitEntry);

		if (!r)
			return -ENOMEM;
		rlimit_entry__init(r);
		r->resource = i;
		r->cur = lim[i].cur;
		r->max = lim[i].max;
		tc->rlimits[i] = r;
	}
	tc->n_rlimits = PROC_NR_RLIMITS;
	return 0;
}

/* Everything readable from outside, before the parasite goes in. */
int task_collect(struct dump_ctx *ctx, struct dump_task *t)
{
	struct arena *a = &ctx->arena;
	_cleanup_free_ char *pers = NULL, *comm = NULL, *cwd = NULL, *root = NULL;
	TaskCoreEntry *tc;
	CoreEntry *core;
	int ret;

	core = arena_new(a, CoreEntry);
	tc = arena_new(a, TaskCoreEntry);
	if (!core || !tc)
		return -ENOMEM;
	core_entry__init(core);
	task_core_entry__init(tc);
	core->task = tc;
	t->core = core;

	if ((ret = proc_read(t->pid, "personality", &pers, NULL)) ||
	    (ret = proc_read(t->pid, "comm", &comm, NULL)) ||
	    (ret = proc_readlink(t->pid, "cwd", &cwd)) ||
	    (ret = proc_readlink(t->pid, "root", &root)))
		return ret;
	comm[strcspn(comm, "\n")] = 0;
	tc->comm = arena_strdup(a, comm);
	tc->personality = strtoul(pers, NULL, 16);
	tc->umask = t->status.umask;
	tc->has_stopped = tc->stopped = t->group_stop != 0;
	tc->cwd = arena_strdup(a, cwd);
	tc->root = arena_strdup(a, root);
	if (strcmp(root, "/")) {
		pr_err("pid %d: its root is %s: chroot'ed tasks are not supported yet", t->pid, root);
		return -ENOTSUP;
	}
	if ((ret = dump_creds(ctx, t, tc)) || (ret = dump_rlimits(ctx, t, tc)) ||
	    (ret = dump_seccomp(ctx, t, tc)) ||
	    (ret = dump_pending(a, t->pid, true, &tc->shared_pending, &tc->n_shared_pending)))
		return ret;

	core->n_threads = t->nr_tids;
	core->threads = arena_array(a, ThreadCoreEntry *, t->nr_tids);
	if (!core->threads)
		return -ENOMEM;
	for (int i = 0; i < t->nr_tids; i++) {
		_cleanup_free_ char *tcomm = NULL;
		char name[64];

		core->threads[i] = arena_new(a, ThreadCoreEntry);
		if (!core->threads[i])
			return -ENOMEM;
		ret = dump_thread(ctx, t->tids[i], core->threads[i]);
		if (ret)
			return ret;
		snprintf(name, sizeof(name), "task/%d/comm", t->tids[i]);
		if ((ret = proc_read(t->pid, name, &tcomm, NULL)))
			return ret;
		tcomm[strcspn(tcomm, "\n")] = 0;
		core->threads[i]->comm = arena_strdup(a, tcomm);
	}
	return 0;
}

/* sigaltstack and clear_child_tid of each thread, run in the thread */
static int dump_thread_states(struct dump_ctx *ctx, struct dump_task *t)
{
	for (int i = 0; i < t->nr_tids; i++) {
		ThreadCoreEntry *th = t->core->threads[i];
		struct parasite_thread_state st;
		int ret = parasite_thread_state(t->parasite, t->tids[i], &st);

		if (ret)
			return ret;
		th->altstack = arena_new(&ctx->arena, SigaltstackEntry);
		if (!th->altstack)
			return -ENOMEM;
		sigaltstack_entry__init(th->altstack);
		th->altstack->sp = st.ss_sp;
		th->altstack->size = st.ss_size;
		th->altstack->flags = st.ss_flags;
		th->has_clear_tid = true;
		th->clear_tid = st.clear_tid;
	}
	return 0;
}

/* What only the task can tell: asked through the parasite. */
int task_collect_parasite(struct dump_ctx *ctx, struct dump_task *t)
{
	struct arena *a = &ctx->arena;
	TaskCoreEntry *tc = t->core->task;
	const struct parasite_misc *m = &t->parasite->area->misc;
	int ret, n = 0;

	ret = parasite_cmd(t->parasite, PARASITE_CMD_DUMP_MISC);
	if (ret)
		return ret;
	tc->sigactions = arena_array(a, SigactionEntry *, 64);
	if (!tc->sigactions)
		return -ENOMEM;
	for (int sig = 1; sig <= 64; sig++) {
		const struct parasite_ksigaction *k = &m->sa[sig - 1];
		SigactionEntry *s;

		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		s = arena_new(a, SigactionEntry);
		if (!s)
			return -ENOMEM;
		sigaction_entry__init(s);
		s->sig = sig;
		s->handler = k->handler;
		s->flags = k->flags;
		s->restorer = k->restorer;
		s->mask = k->mask;
		tc->sigactions[n++] = s;
	}
	tc->n_sigactions = n;

	tc->itimers = arena_array(a, ItimerEntry *, 3);
	if (!tc->itimers)
		return -ENOMEM;
	for (int i = 0; i < 3; i++) {
		ItimerEntry *it = arena_new(a, ItimerEntry);

		if (!it)
			return -ENOMEM;
		itimer_entry__init(it);
		it->which = i;
		it->interval_us = m->itimer[i].interval_sec * 1000000 + m->itimer[i].interval_usec;
		it->value_us = m->itimer[i].value_sec * 1000000 + m->itimer[i].value_usec;
		tc->itimers[i] = it;
	}
	tc->n_itimers = 3;

	tc->dumpable = m->dumpable;
	tc->pdeath_sig = m->pdeath_sig;
	tc->no_new_privs = m->no_new_privs;
	tc->child_subreaper = m->child_subreaper;
	tc->thp_disable = m->thp_disable;
	tc->has_timerslack_ns = true;
	tc->timerslack_ns = m->timerslack_ns;
	tc->creds->securebits = m->securebits;
	t->mm->brk = m->brk;
	return dump_thread_states(ctx, t);
}

/* ------------------------------------------------------------- restore */

size_t task_args_size(const struct rst_task *t)
{
	const TaskCoreEntry *tc = t->core->task;
	size_t n = 256;

	for (size_t i = 0; i < t->core->n_threads; i++)
		n += t->core->threads[i]->n_pending * sizeof(struct rst_siginfo);
	n += t->core->n_threads * sizeof(struct rst_thread) + 16;
	n += (t->core->n_threads - 1) * (RESTORER_THREAD_STACK + 16);
	n += tc->n_shared_pending * sizeof(struct rst_siginfo);
	n += tc->creds->n_groups * sizeof(uint32_t) + 16;
	for (size_t i = 0; i < tc->n_seccomp_filters; i++)
		n += sizeof(struct rst_seccomp_filter) + tc->seccomp_filters[i]->insns.len + 16;
	return n;
}

/* tid: the thread whose queue it was, 0 for the process-wide queue */
static int add_pending(struct rst_siginfo *out, const ProtobufCBinaryData *in, pid_t tid, pid_t pid)
{
	int32_t signo;

	if (in->len != SIGINFO_SIZE) {
		pr_err("core-%d.img: pending siginfo of %zu bytes, expected %d", pid, in->len, SIGINFO_SIZE);
		return -EINVAL;
	}
	memcpy(&signo, in->data, sizeof(signo));	/* si_signo comes first */
	if (signo < 1 || signo > 64) {
		pr_err("core-%d.img: pending signal %d is out of range", pid, signo);
		return -EINVAL;
	}
	out->tid = tid;
	out->sig = signo;
	memcpy(out->info, in->data, SIGINFO_SIZE);
	return 0;
}

static int prepare_signals(struct rst_task *t, struct rst_area *ra)
{
	struct restorer_args *a = ra->args;
	const TaskCoreEntry *tc = t->core->task;
	size_t n = tc->n_shared_pending, k = 0;
	struct rst_siginfo *p;
	int ret;

	for (size_t i = 0; i < t->core->n_threads; i++)
		n += t->core->threads[i]->n_pending;
	p = rst_area_alloc(ra, n * sizeof(*p));
	if (n && !p)
		return -ENOMEM;
	for (size_t i = 0; i < tc->n_sigactions; i++) {
		const SigactionEntry *s = tc->sigactions[i];

		if (s->sig < 1 || s->sig > 64) {
			pr_err("core-%d.img: sigaction for signal %u is out of range", t->pid, s->sig);
			return -EINVAL;
		}
		a->sa[s->sig - 1] = (struct parasite_ksigaction){ s->handler, s->flags, s->restorer, s->mask };
	}
	for (size_t i = 0; i < t->core->n_threads; i++) {
		const ThreadCoreEntry *th = t->core->threads[i];

		for (size_t j = 0; j < th->n_pending; j++)
			if ((ret = add_pending(&p[k++], &th->pending[j], th->tid, t->pid)))
				return ret;
	}
	for (size_t i = 0; i < tc->n_shared_pending; i++)
		if ((ret = add_pending(&p[k++], &tc->shared_pending[i], 0, t->pid)))
			return ret;
	a->pending = (uint64_t)p;
	a->nr_pending = n;
	for (size_t i = 0; i < tc->n_itimers && i < 3; i++) {
		const ItimerEntry *it = tc->itimers[i];

		if (it->which > 2)
			continue;
		a->itimer[it->which].interval_sec = it->interval_us / 1000000;
		a->itimer[it->which].interval_usec = it->interval_us % 1000000;
		a->itimer[it->which].value_sec = it->value_us / 1000000;
		a->itimer[it->which].value_usec = it->value_us % 1000000;
	}
	return 0;
}

/* each thread's own settings, and a stack for every thread but the leader */
static int prepare_threads(struct rst_task *t, struct rst_area *ra)
{
	struct restorer_args *a = ra->args;
	size_t n = t->core->n_threads;
	struct rst_thread *v = rst_area_alloc(ra, n * sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const ThreadCoreEntry *th = t->core->threads[i];
		struct rst_thread *r = &v[i];

		r->tid = th->tid;
		r->host_tid = i < t->pstree->n_host_threads ? (int32_t)t->pstree->host_threads[i] : 0;
		snprintf(r->comm, sizeof(r->comm), "%s", th->comm ? th->comm : t->core->task->comm);
		if (th->altstack) {
			r->altstack_sp = th->altstack->sp;
			r->altstack_size = th->altstack->size;
			r->altstack_flags = th->altstack->flags;
		} else {
			r->altstack_flags = 2;	/* SS_DISABLE */
		}
		r->clear_tid = th->has_clear_tid ? th->clear_tid : 0;
		if (th->rseq) {
			r->rseq_ptr = th->rseq->ptr;
			r->rseq_len = th->rseq->len;
			r->rseq_sig = th->rseq->sig;
		}
		if (i) {
			char *stack = rst_area_alloc(ra, RESTORER_THREAD_STACK);

			if (!stack)
				return -ENOMEM;
			r->stack_top = (uint64_t)stack + RESTORER_THREAD_STACK;
		}
	}
	a->threads = (uint64_t)v;
	a->nr_threads = n;
	return 0;
}

static int prepare_creds(struct rst_task *t, struct rst_area *ra)
{
	const CredsEntry *c = t->core->task->creds;
	struct rst_creds *rc = &ra->args->creds;
	uint32_t *groups = rst_area_alloc(ra, c->n_groups * sizeof(uint32_t) + 4);

	if (!groups)
		return -ENOMEM;
	if (c->n_groups)
		memcpy(groups, c->groups, c->n_groups * sizeof(uint32_t));
	rc->uid[0] = c->uid;
	rc->uid[1] = c->euid;
	rc->uid[2] = c->suid;
	rc->uid[3] = c->fsuid;
	rc->gid[0] = c->gid;
	rc->gid[1] = c->egid;
	rc->gid[2] = c->sgid;
	rc->gid[3] = c->fsgid;
	rc->nr_groups = c->n_groups;
	rc->groups = (uint64_t)groups;
	rc->securebits = c->securebits;
	rc->cap_inh = c->cap_inh;
	rc->cap_prm = c->cap_prm;
	rc->cap_eff = c->cap_eff;
	rc->cap_bnd = c->cap_bnd;
	rc->cap_amb = c->cap_amb;
	return 0;
}

static int prepare_seccomp(struct rst_task *t, struct rst_area *ra)
{
	const TaskCoreEntry *tc = t->core->task;
	struct restorer_args *a = ra->args;
	struct rst_seccomp_filter *f;

	a->seccomp_mode = tc->seccomp_mode;
	if (!tc->n_seccomp_filters)
		return 0;
	f = rst_area_alloc(ra, tc->n_seccomp_filters * sizeof(*f));
	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < tc->n_seccomp_filters; i++) {
		const SeccompFilterEntry *e = tc->seccomp_filters[i];
		void *insns = rst_area_alloc(ra, e->insns.len);

		if (!insns || e->insns.len % 8) {
			pr_err("core-%d.img: bad seccomp filter %zu", t->pid, i);
			return -EINVAL;
		}
		memcpy(insns, e->insns.data, e->insns.len);
		f[i].flags = e->flags;
		f[i].insns = (uint64_t)insns;
		f[i].len = e->insns.len / 8;
	}
	a->seccomp = (uint64_t)f;
	a->nr_seccomp = tc->n_seccomp_filters;
	return 0;
}

static const char *const rlimit_names[RESTORER_NR_RLIMITS] = {
	"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
	"RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
	"RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
	"RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

/* A hard limit above ours could only be set with CAP_SYS_RESOURCE: say so early. */
static int check_rlimits(const struct rst_task *t, const struct restorer_args *a)
{
	for (int i = 0; i < RESTORER_NR_RLIMITS; i++) {
		struct rlimit cur;

		if (getrlimit(i, &cur))
			return pr_perror("getrlimit(%s)", rlimit_names[i]);
		if (a->rlim[i].max > cur.rlim_max) {
			pr_err("pid %d: cannot restore the %s hard limit %lu: cryo runs with %lu and raising it needs CAP_SYS_RESOURCE",
			       t->pid, rlimit_names[i], a->rlim[i].max, cur.rlim_max);
			return -EPERM;
		}
	}
	return 0;
}

int task_prepare_args(struct restore_ctx *ctx, struct rst_task *t, struct rst_area *ra)
{
	const TaskCoreEntry *tc = t->core->task;
	struct restorer_args *a = ra->args;
	int ret;

	a->personality = tc->personality;
	a->umask = tc->umask;
	for (size_t i = 0; i < tc->n_rlimits; i++) {
		const RlimitEntry *r = tc->rlimits[i];

		if (r->resource >= RESTORER_NR_RLIMITS) {
			pr_err("core-%d.img: resource limit %u is out of range", t->pid, r->resource);
			return -EINVAL;
		}
		a->rlim[r->resource].cur = r->cur;
		a->rlim[r->resource].max = r->max;
	}
	if (tc->n_rlimits != RESTORER_NR_RLIMITS) {
		pr_err("core-%d.img: %zu resource limits, expected %d", t->pid, tc->n_rlimits,
		       RESTORER_NR_RLIMITS);
		return -EINVAL;
	}
	if ((ret = check_rlimits(t, a)))
		return ret;
	a->dumpable = tc->dumpable;
	a->pdeath_sig = tc->pdeath_sig;
	a->no_new_privs = tc->no_new_privs;
	a->child_subreaper = tc->child_subreaper;
	a->thp_disable = tc->thp_disable;
	a->timerslack_ns = tc->has_timerslack_ns ? tc->timerslack_ns : 0;
	if ((ret = prepare_signals(t, ra)) || (ret = prepare_threads(t, ra)) ||
	    (ret = prepare_creds(t, ra)) ||
	    (ret = prepare_seccomp(t, ra)))
		return ret;
	return 0;
}

/* ----------------------------------------------------------- validate */

/* a name the kernel keeps in TASK_COMM_LEN (it is cut to that at restore) */
static int comm_ok(const char *comm, const char *where, const char *field)
{
	return comm && comm[0] ? door_bytes_str(comm, strlen(comm), 15, "%s: %s", where, field) : 0;
}

/* core-PID.img: its names, and the directories it was in (its cwd is made its own again) */
int task_validate_core(const CoreEntry *c, const char *where)
{
	int ret = 0;

	if (c->task)
		ret = comm_ok(c->task->comm, where, "task.comm") ?:
		      door_abspath(c->task->cwd, DOOR_PATH_MAX, "%s: task.cwd", where) ?:
		      door_abspath(c->task->root, DOOR_PATH_MAX, "%s: task.root", where);
	for (size_t i = 0; !ret && i < c->n_threads; i++) {
		char field[48];

		snprintf(field, sizeof(field), "threads[%zu].comm", i);
		ret = comm_ok(c->threads[i]->comm, where, field);
	}
	return ret;
}

int task_validate(const struct restore_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nr_tasks; i++) {
		const struct rst_task *t = ctx->tasks[i];
		char where[64];

		snprintf(where, sizeof(where), "core-%d.img record 0", t->pid);
		if (t->core && task_validate_core(t->core, where))
			return -EINVAL;
	}
	return 0;
}
