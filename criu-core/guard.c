/*
 * The guardian (guard.h): the journal cryo writes, and the process that
 * reads it once cryo is gone.
 */
#define LOG_PREFIX "guardian: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "cgroup.h"
#include "cryo.h"
#include "dump-round.h"
#include "fault.h"
#include "guard.h"
#include "log.h"
#include "ns.h"
#include "parasite-proto.h"
#include "proc.h"
#include "seize.h"
#include "util.h"

#define GUARD_SLOTS	4096
#define GUARD_PATH	512
#define READY_TIMEOUT_MS 5000

enum guard_kind {
	GK_FREE,
	GK_FREEZER,
	GK_REGS,
	GK_PARASITE,
	GK_FD,
	GK_LINK,
	GK_TCP,
	GK_KILL,
	GK_UNTRACK,
	GK_REFREEZE,
};

/*
 * One entry, in memory shared with the guardian. cryo fills it, then sets
 * live (release); the guardian reads live entries only once cryo is gone.
 * Fields that change while live are written so that any prefix of the
 * updates reads as a consistent state (the flag after its value).
 */
struct guard_entry {
	uint32_t kind;
	uint32_t live;
	int32_t pid, tid;
	union {
		struct {
			char dir[GUARD_PATH];
			uint32_t v2;
		} fr;			/* GK_FREEZER, GK_REFREEZE */
		struct {
			struct user_regs_struct regs;	/* as before cryo changed them */
			uint64_t sigmask;
			uint32_t has_sigmask;
			uint32_t sc_undo;		/* GUARD_SC_* of the syscall in flight */
			int64_t sc_nr;			/* the syscall in flight, or -1 */
			uint64_t sc_gadget, sc_len;
		} rg;
		struct {
			uint64_t exec_addr, word;	/* the code word borrowed, as it was */
			uint64_t size, area_off, remote;
			uint32_t code_patched, mapped, area_ready, rseq_off;
			uint64_t rseq_ptr;
			uint32_t rseq_len, rseq_sig;
		} ps;
		struct {
			char name[16];
		} ln;
		struct {
			int32_t fd;
		} fd;			/* GK_FD, GK_TCP */
		struct {
			int32_t seq;			/* the pidfd sent to the guardian */
			uint32_t tree;			/* and every process below it */
		} kl;
	};
};

struct guard {
	pid_t pid;			/* the guardian */
	int sock;			/* to it: pidfds, and goodbye */
	struct guard_entry *slots;
	size_t hint;
	int32_t pidfds_sent;
};

uint64_t guard_gadget_word(uint64_t word)
{
	/* syscall (0f 05); jmp . (eb fe) */
	return (word & ~0xffffffffULL) | 0xfeeb050fULL;
}

pid_t guard_pid(const struct guard *g)
{
	return g ? g->pid : 0;
}

/* ------------------------------------------------------------ the journal */

static struct guard_entry *new_entry(struct guard *g, enum guard_kind kind, pid_t pid)
{
	if (!g)
		return NULL;
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &g->slots[(g->hint + i) % GUARD_SLOTS];

		if (e->kind != GK_FREE)
			continue;
		g->hint = (g->hint + i + 1) % GUARD_SLOTS;
		memset(e, 0, sizeof(*e));
		e->kind = kind;
		e->pid = pid;
		return e;
	}
	pr_err("the guardian's journal is full (%d entries)", GUARD_SLOTS);
	return NULL;
}

static struct guard_entry *arm(struct guard_entry *e)
{
	if (e)
		__atomic_store_n(&e->live, 1, __ATOMIC_RELEASE);
	return e;
}

void guard_done(struct guard_entry *e)
{
	if (!e)
		return;
	__atomic_store_n(&e->live, 0, __ATOMIC_RELEASE);
	e->kind = GK_FREE;
}

static struct guard_entry *freezer_entry(struct guard *g, enum guard_kind kind, const char *dir, bool v2)
{
	struct guard_entry *e = new_entry(g, kind, 0);

	if (!e)
		return NULL;
	snprintf(e->fr.dir, sizeof(e->fr.dir), "%s", dir);
	e->fr.v2 = v2;
	return arm(e);
}

struct guard_entry *guard_freezer(struct guard *g, const char *dir, bool v2)
{
	return freezer_entry(g, GK_FREEZER, dir, v2);
}

struct guard_entry *guard_refreeze(struct guard *g, const char *dir, bool v2)
{
	return freezer_entry(g, GK_REFREEZE, dir, v2);
}

struct guard_entry *guard_regs(struct guard *g, pid_t pid, pid_t tid, const struct user_regs_struct *r,
			       const uint64_t *sigmask)
{
	struct guard_entry *e = new_entry(g, GK_REGS, pid);

	if (!e)
		return NULL;
	e->tid = tid;
	e->rg.regs = *r;
	e->rg.sc_nr = -1;
	if (sigmask) {
		e->rg.sigmask = *sigmask;
		e->rg.has_sigmask = 1;
	}
	return arm(e);
}

void guard_syscall(struct guard_entry *t, unsigned long gadget, long nr, unsigned undo, size_t len)
{
	if (!t)
		return;
	t->rg.sc_gadget = gadget;
	t->rg.sc_undo = undo;
	t->rg.sc_len = len;
	__atomic_store_n(&t->rg.sc_nr, nr, __ATOMIC_RELEASE);
}

void guard_syscall_done(struct guard_entry *t)
{
	if (t)
		__atomic_store_n(&t->rg.sc_nr, -1, __ATOMIC_RELEASE);
}

struct guard_entry *guard_parasite(struct guard *g, pid_t pid, unsigned long exec_addr, uint64_t word,
				   size_t size, size_t area_off)
{
	struct guard_entry *e = new_entry(g, GK_PARASITE, pid);

	if (!e)
		return NULL;
	e->ps.exec_addr = exec_addr;
	e->ps.word = word;
	e->ps.code_patched = 1;
	e->ps.size = size;
	e->ps.area_off = area_off;
	return arm(e);
}

void guard_parasite_mapped(struct guard_entry *p, unsigned long remote)
{
	if (!p)
		return;
	p->ps.remote = remote;
	__atomic_store_n(&p->ps.mapped, 1, __ATOMIC_RELEASE);
}

void guard_parasite_area(struct guard_entry *p)
{
	if (p)
		__atomic_store_n(&p->ps.area_ready, 1, __ATOMIC_RELEASE);
}

void guard_parasite_rseq(struct guard_entry *p, uint64_t ptr, uint32_t len, uint32_t sig, bool off)
{
	if (!p)
		return;
	p->ps.rseq_ptr = ptr;
	p->ps.rseq_len = len;
	p->ps.rseq_sig = sig;
	__atomic_store_n(&p->ps.rseq_off, off, __ATOMIC_RELEASE);
}

void guard_parasite_unmapped(struct guard_entry *p)
{
	if (p)
		__atomic_store_n(&p->ps.mapped, 0, __ATOMIC_RELEASE);
}

struct guard_entry *guard_task_fd(struct guard *g, pid_t pid, int fd)
{
	struct guard_entry *e = new_entry(g, GK_FD, pid);

	if (!e)
		return NULL;
	e->fd.fd = fd;
	return arm(e);
}

struct guard_entry *guard_link_down(struct guard *g, const char *ifname)
{
	struct guard_entry *e = new_entry(g, GK_LINK, 0);

	if (!e)
		return NULL;
	snprintf(e->ln.name, sizeof(e->ln.name), "%s", ifname);
	return arm(e);
}

struct guard_entry *guard_tcp_repair(struct guard *g, pid_t pid, int fd)
{
	struct guard_entry *e = new_entry(g, GK_TCP, pid);

	if (!e)
		return NULL;
	e->fd.fd = fd;
	return arm(e);
}

static struct guard_entry *kill_entry(struct guard *g, pid_t pid, bool tree)
{
	struct guard_entry *e;
	struct iovec iov = { "p", 1 };
	int pidfd;

	if (!g)
		return NULL;
	pidfd = sys_pidfd_open(pid, 0);
	if (pidfd < 0) {
		pr_perror("pid %d: cannot open a pidfd for the guardian", pid);
		return NULL;
	}
	if (sendmsg_fd(g->sock, &iov, 1, pidfd) != 1) {
		pr_perror("pid %d: cannot hand it to the guardian", pid);
		close(pidfd);
		return NULL;
	}
	close(pidfd);
	e = new_entry(g, GK_KILL, pid);
	if (!e)
		return NULL;
	e->kl.seq = g->pidfds_sent++;
	e->kl.tree = tree;
	return arm(e);
}

struct guard_entry *guard_kill(struct guard *g, pid_t pid)
{
	return kill_entry(g, pid, false);
}

struct guard_entry *guard_kill_tree(struct guard *g, pid_t root)
{
	return kill_entry(g, root, true);
}

struct guard_entry *guard_untrack(struct guard *g, pid_t root)
{
	return arm(new_entry(g, GK_UNTRACK, root));
}

/* ----------------------------------------------------------- the guardian */

struct guardian {
	struct cryo_opts o;		/* cryo's, as it was when the guardian started */
	pid_t cryo;
	int sock;
	struct guard_entry *slots;
	int *pidfds;
	int nr_pidfds;
	unsigned undone;		/* entries acted on */
};

static bool live(const struct guard_entry *e, enum guard_kind kind)
{
	return e->kind == kind && __atomic_load_n(&e->live, __ATOMIC_ACQUIRE);
}

/* the messages cryo sent: pidfds to keep, or its goodbye (1) */
static int take_messages(struct guardian *gd, bool wait)
{
	for (;;) {
		char c = 0;
		struct iovec iov = { &c, 1 };
		int fd = -1, *nv;
		ssize_t n = recvmsg_fd(gd->sock, &iov, 1, &fd, wait ? 0 : MSG_DONTWAIT);

		if (n <= 0)
			return 0;
		if (c == 'b')
			return 1;
		if (c != 'p' || fd < 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		nv = realloc(gd->pidfds, (gd->nr_pidfds + 1) * sizeof(*nv));
		if (!nv) {
			close(fd);
			continue;
		}
		gd->pidfds = nv;
		gd->pidfds[gd->nr_pidfds++] = fd;
		if (wait)
			return 0;
	}
}

/*
 * Seize a thread cryo's death let go (the kernel detached it as cryo
 * exited) and stop it. 0, or -ESRCH if it is gone.
 */
static int grab(pid_t tid)
{
	for (int i = 0; i < 100; i++) {
		if (!ptrace(PTRACE_SEIZE, tid, 0, SEIZE_OPTIONS))
			return interrupt_task(tid) ? -ESRCH : 0;
		if (errno == ESRCH)
			return -ESRCH;
		usleep(10000);	/* still being detached */
	}
	return pr_perror("tid %d: cannot seize it again", tid);
}

/* a thread the guardian stopped: its entry, and where it stood */
struct stopped_thread {
	pid_t tid;
	struct guard_entry *e;		/* its registers as cryo found them, or NULL */
	struct user_regs_struct cur;	/* as stopped */
	bool in_cryo;			/* it stood in cryo's code: the gadget or the parasite */
};

struct stopped {
	struct stopped_thread t[64];
	int n;
};

static bool in_stopped(const struct stopped *s, pid_t tid)
{
	for (int i = 0; i < s->n; i++)
		if (s->t[i].tid == tid)
			return true;
	return false;
}

static int stop_thread(struct stopped *s, pid_t tid)
{
	int ret;

	if (in_stopped(s, tid))
		return 0;
	if (s->n == (int)ARRAY_SIZE(s->t)) {
		pr_err("tid %d: too many threads to cure at once", tid);
		return -E2BIG;
	}
	ret = grab(tid);
	if (!ret && ptrace_get_regs(tid, &s->t[s->n].cur)) {
		ptrace(PTRACE_DETACH, tid, 0, 0);
		ret = -EIO;
	}
	if (!ret)
		s->t[s->n++].tid = tid;
	return ret;
}

/* a syscall in the stopped leader at the borrowed gadget; its result, or -EIO */
static long run_syscall(pid_t pid, const struct user_regs_struct *base, unsigned long gadget, long nr, long a1,
			long a2, long a3, long a4)
{
	long res;

	if (remote_syscall(pid, base, gadget, nr, a1, a2, a3, a4, 0, 0, &res))
		return -EIO;
	return res;
}

/* what the parasite's area says: the fds it made, the pages it had made readable */
static void cure_area(pid_t pid, const struct user_regs_struct *base, unsigned long gadget,
		      const struct guard_entry *p)
{
	static struct parasite_area a;
	struct iovec local = { &a, sizeof(a) }, remote = { (void *)(p->ps.remote + p->ps.area_off), sizeof(a) };

	if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(a)) {
		pr_perror("pid %d: cannot read the parasite's area", pid);
		return;
	}
	if (a.pipe_rd >= 0)
		run_syscall(pid, base, gadget, __NR_close, a.pipe_rd, 0, 0, 0);
	if (a.pipe_wr >= 0)
		run_syscall(pid, base, gadget, __NR_close, a.pipe_wr, 0, 0, 0);
	if (a.cmd != PARASITE_CMD_DUMP_PAGES || a.nr_chunks > PARASITE_MAX_CHUNKS)
		return;
	for (uint32_t i = 0; i < a.nr_chunks; i++)
		if (a.chunks[i].flags & PARASITE_CHUNK_UNREADABLE)
			run_syscall(pid, base, gadget, __NR_mprotect, a.chunks[i].addr, a.chunks[i].len,
				    a.chunks[i].prot, 0);
}

/* a syscall cryo had started in a thread: if it ran, what it made goes */
static void undo_inflight(pid_t pid, struct guard_entry *t, const struct user_regs_struct *cur,
			  int *fds, int *nfds, struct guard_entry *p)
{
	long res = cur->rax;

	if (t->rg.sc_nr < 0 || cur->rip != t->rg.sc_gadget + 2 || (res < 0 && res > -4096))
		return;
	if ((t->rg.sc_undo & GUARD_SC_FD) && *nfds < 16)
		fds[(*nfds)++] = res;
	if ((t->rg.sc_undo & GUARD_SC_MAP) && p && !p->ps.mapped) {
		p->ps.remote = res;
		p->ps.mapped = 1;
	}
	pr_debug("pid %d: syscall %ld had run in tid %d (result %ld)", pid, (long)t->rg.sc_nr, t->tid, res);
}

/* the mask cryo gives a task while its parasite runs: every signal that can be blocked */
#define CRYO_MASK	(~0ULL & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1))))

/*
 * Where a thread stood tells whether cryo had changed its registers: a
 * thread cryo sent to the gadget or into the parasite never leaves it by
 * itself, and one that runs its own code has its own registers (cryo died
 * before it sent it anywhere, or after it put them back).
 */
static bool stood_in_cryo(const struct user_regs_struct *r, unsigned long gadget, const struct guard_entry *p)
{
	if (gadget && r->rip >= gadget && r->rip < gadget + 4)
		return true;
	return p && p->ps.mapped && r->rip >= p->ps.remote && r->rip < p->ps.remote + p->ps.size;
}

/* every live entry of process pid for its registers, parasite and fds: undone */
static int cure_process(struct guardian *gd, pid_t pid)
{
	struct guard_entry *p = NULL;
	struct user_regs_struct base;
	struct stopped s = { .n = 0 };
	unsigned long gadget;
	uint64_t word;
	int fds[16], nfds = 0, ret = 0;

	/* the leader first: without it the process is gone, and there is nothing to cure */
	if ((ret = stop_thread(&s, pid)))
		return ret == -ESRCH ? 0 : ret;
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (e->pid != pid)
			continue;
		if (live(e, GK_PARASITE))
			p = e;
		/* a thread that exited meanwhile has nothing to put back */
		if (live(e, GK_REGS) && (ret = stop_thread(&s, e->tid)) && ret != -ESRCH)
			goto out;
		ret = 0;
	}
	gadget = p ? p->ps.exec_addr : find_exec_addr(pid);
	for (int k = 0; k < s.n; k++) {
		struct stopped_thread *t = &s.t[k];

		for (size_t i = 0; i < GUARD_SLOTS && !t->e; i++)
			if (gd->slots[i].pid == pid && live(&gd->slots[i], GK_REGS) && gd->slots[i].tid == t->tid)
				t->e = &gd->slots[i];
		t->in_cryo = t->e && stood_in_cryo(&t->cur, p ? gadget : 0, p);
		if (t->e)
			undo_inflight(pid, t->e, &t->cur, fds, &nfds, p);
	}
	/* the borrowed code word serves the guardian too; then it goes back */
	base = s.t[0].cur;
	errno = 0;
	word = p ? p->ps.word : (uint64_t)ptrace(PTRACE_PEEKTEXT, pid, gadget, 0);
	if (!gadget || errno || ptrace(PTRACE_POKETEXT, pid, gadget, guard_gadget_word(word))) {
		ret = pr_perror("pid %d: no code to run the cure's syscalls from", pid);
		goto out;
	}
	if (p && p->ps.mapped && p->ps.area_ready)
		cure_area(pid, &base, gadget, p);
	for (int i = 0; i < nfds; i++)
		run_syscall(pid, &base, gadget, __NR_close, fds[i], 0, 0, 0);
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (e->pid == pid && live(e, GK_FD)) {
			run_syscall(pid, &base, gadget, __NR_close, e->fd.fd, 0, 0, 0);
			gd->undone++;
		}
	}
	if (p && p->ps.mapped && run_syscall(pid, &base, gadget, __NR_munmap, p->ps.remote, p->ps.size, 0, 0))
		pr_warn("pid %d: cannot unmap the parasite at %#lx", pid, (unsigned long)p->ps.remote);
	if (p && p->ps.rseq_off) {
		long r = run_syscall(pid, &base, gadget, __NR_rseq, p->ps.rseq_ptr, p->ps.rseq_len, 0,
				     p->ps.rseq_sig);

		if (r && r != -EBUSY)
			pr_warn("pid %d: cannot register its rseq area again: error %ld", pid, -r);
	}
	if (ptrace(PTRACE_POKETEXT, pid, gadget, word))
		ret = pr_perror("pid %d: cannot give back its code at %#lx", pid, gadget);
	for (int k = 0; k < s.n; k++) {
		struct stopped_thread *t = &s.t[k];
		struct user_regs_struct r = t->in_cryo ? t->e->rg.regs : t->cur;
		uint64_t mask;

		/* the leader ran the cure's syscalls: its registers go back in any case */
		if ((t->in_cryo || k == 0)) {
			regs_apply_restart(&r, false);
			if (ptrace_set_regs(t->tid, &r))
				ret = -EIO;
		}
		/* the mask cryo set, unless the task changed it since */
		if (t->e && t->e->rg.has_sigmask && !ptrace_get_sigmask(t->tid, &mask) && mask == CRYO_MASK &&
		    ptrace_set_sigmask(t->tid, t->e->rg.sigmask))
			ret = -EIO;
		if (t->e)
			gd->undone++;
	}
	if (p)
		gd->undone++;
out:
	for (int i = s.n - 1; i >= 0; i--)
		ptrace(PTRACE_DETACH, s.t[i].tid, 0, 0);
	if (!ret)
		pr_warn("pid %d resumed as it was before the dump", pid);
	return ret;
}

static void tcp_off(struct guardian *gd, struct guard_entry *e)
{
	int off = TCP_REPAIR_OFF_NO_WP, pidfd = sys_pidfd_open(e->pid, 0);
	int fd = pidfd < 0 ? -1 : sys_pidfd_getfd(pidfd, e->fd.fd, 0);

	if (fd < 0 || setsockopt(fd, SOL_TCP, TCP_REPAIR, &off, sizeof(off)))
		pr_perror("pid %d fd %d: cannot take its TCP connection out of repair mode", e->pid, e->fd.fd);
	else
		gd->undone++;
	if (fd >= 0)
		close(fd);
	if (pidfd >= 0)
		close(pidfd);
}

/* every process below root (stopped): stopped in turn, then killed */
static void kill_below(pid_t root)
{
	pid_t *v = NULL;
	size_t n = 0;

	proc_stop_tree(root, &v, &n);
	for (size_t i = 1; i < n; i++)
		kill(v[i], SIGKILL);
	free(v);
}

/* an entry undone inside its task, stopped */
static bool in_task(const struct guard_entry *e)
{
	return live(e, GK_REGS) || live(e, GK_PARASITE) || live(e, GK_FD);
}

/* cryo is gone: undo what its journal says, in order */
static int cure(struct guardian *gd)
{
	int ret = 0;

	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (live(e, GK_FREEZER)) {
			ret |= cgroup_freezer_set(e->fr.dir, e->fr.v2, false);
			pr_warn("cgroup %s thawed", e->fr.dir);
			gd->undone++;
		}
	}
	/* the tasks holding them are fenced in (or seized): out of repair mode before they run */
	for (size_t i = 0; i < GUARD_SLOTS; i++)
		if (live(&gd->slots[i], GK_TCP))
			tcp_off(gd, &gd->slots[i]);
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];
		bool first = true;

		if (!in_task(e))
			continue;
		for (size_t k = 0; k < i && first; k++)
			if (gd->slots[k].pid == e->pid && in_task(&gd->slots[k]))
				first = false;
		if (first)
			ret |= cure_process(gd, e->pid);
	}
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (live(e, GK_LINK)) {
			ret |= net_link_set_up(e->ln.name);
			gd->undone++;
		}
	}
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (!live(e, GK_KILL))
			continue;
		/* the pidfd says it is still the very process: then what is below it is its own */
		if (e->kl.seq < gd->nr_pidfds &&
		    !syscall(SYS_pidfd_send_signal, gd->pidfds[e->kl.seq], e->kl.tree ? SIGSTOP : SIGKILL, NULL, 0)) {
			if (e->kl.tree)
				kill_below(e->pid);
			syscall(SYS_pidfd_send_signal, gd->pidfds[e->kl.seq], SIGKILL, NULL, 0);
			pr_warn("pid %d killed%s: cryo left it half done", e->pid, e->kl.tree ? " with its tree" : "");
		}
		gd->undone++;
	}
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (live(e, GK_UNTRACK)) {
			ret |= dump_untrack(&gd->o, e->pid);
			gd->undone++;
		}
	}
	/* last: the tasks had to run to be cured (a frozen one stops in ptrace no more) */
	for (size_t i = 0; i < GUARD_SLOTS; i++) {
		struct guard_entry *e = &gd->slots[i];

		if (live(e, GK_REFREEZE)) {
			ret |= cgroup_freezer_set(e->fr.dir, e->fr.v2, true);
			pr_warn("cgroup %s frozen again, as it was found", e->fr.dir);
			gd->undone++;
		}
	}
	return ret ? 1 : 0;
}

static void __attribute__((noreturn)) guardian_main(struct guardian *gd)
{
	static const int quiet[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU,
				     SIGUSR1, SIGUSR2, SIGALRM };
	int keep[2], nk = 0, null = open("/dev/null", O_RDWR | O_CLOEXEC), logfd = log_get_fd();
	int pidfd, ret;

	/* its own session: a terminal's ^C or a process group's kill is not for it */
	setsid();
	fault_off();
	prctl(PR_SET_NAME, "cryo-guardian");
	for (size_t i = 0; i < ARRAY_SIZE(quiet); i++)
		signal(quiet[i], SIG_IGN);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
	}
	/* nothing of cryo's: a pipe it shares with a restoring task must close when cryo goes */
	if (logfd >= 3 && logfd < gd->sock)
		keep[nk++] = logfd;
	keep[nk++] = gd->sock;
	if (logfd > gd->sock)
		keep[nk++] = logfd;
	close_fds_but(3, keep, nk);
	pidfd = sys_pidfd_open(gd->cryo, 0);
	if (pidfd < 0 || getppid() != gd->cryo)
		_exit(0);	/* cryo is gone before it touched anything */
	if (send(gd->sock, "r", 1, MSG_NOSIGNAL) != 1)
		_exit(0);
	for (;;) {
		struct pollfd pf[2] = { { .fd = gd->sock, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		if ((pf[0].revents & POLLIN) && take_messages(gd, true) == 1)
			_exit(0);
		if (pf[0].revents & (POLLHUP | POLLERR))
			break;
	}
	/* cryo is gone: what it sent last is still queued */
	if (take_messages(gd, false) == 1)
		_exit(0);
	ret = cure(gd);
	if (gd->undone)
		pr_warn("cryo (pid %d) died before it was done: what it had left half done is undone", gd->cryo);
	log_fini();
	_exit(ret);
}

int guard_open(const struct cryo_opts *o, struct guard **out)
{
	struct guard *g;
	struct guardian gd = { .o = *o, .cryo = getpid() };
	struct pollfd pf;
	int sv[2], memfd;
	char c;

	*out = NULL;
	gd.o.guard = NULL;
	g = xzalloc(sizeof(*g));
	if (!g)
		return -ENOMEM;
	memfd = memfd_create("cryo-guard", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, GUARD_SLOTS * sizeof(struct guard_entry)) ||
	    (g->slots = mmap(NULL, GUARD_SLOTS * sizeof(struct guard_entry), PROT_READ | PROT_WRITE, MAP_SHARED,
			     memfd, 0)) == MAP_FAILED) {
		int ret = pr_perror("cannot make the guardian's journal");

		if (memfd >= 0)
			close(memfd);
		free(g);
		return ret;
	}
	close(memfd);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		int ret = pr_perror("cannot make the guardian's socket");

		munmap(g->slots, GUARD_SLOTS * sizeof(struct guard_entry));
		free(g);
		return ret;
	}
	g->pid = fork();
	if (g->pid == 0) {
		close(sv[0]);
		gd.sock = sv[1];
		gd.slots = g->slots;
		guardian_main(&gd);
	}
	close(sv[1]);
	g->sock = sv[0];
	pf = (struct pollfd){ .fd = g->sock, .events = POLLIN };
	if (g->pid < 0 || poll(&pf, 1, READY_TIMEOUT_MS) != 1 || recv(g->sock, &c, 1, 0) != 1 || c != 'r') {
		int ret = g->pid < 0 ? pr_perror("cannot start the guardian") : -EIO;

		if (g->pid > 0) {
			pr_err("the guardian (pid %d) did not start", g->pid);
			kill(g->pid, SIGKILL);
			waitpid(g->pid, NULL, 0);
		}
		close(g->sock);
		munmap(g->slots, GUARD_SLOTS * sizeof(struct guard_entry));
		free(g);
		return ret;
	}
	*out = g;
	pr_debug("guardian started: pid %d", g->pid);
	return 0;
}

int guard_start(struct cryo_opts *o)
{
	return o->guard ? 0 : guard_open(o, &o->guard);
}

int guard_run(struct cryo_opts *o, int (*fn)(struct cryo_opts *o))
{
	bool mine = !o->guard;
	int ret;

	if (guard_start(o))
		return 1;
	ret = fn(o);
	if (mine)
		guard_stop(o);
	return ret;
}

void guard_close(struct guard *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < GUARD_SLOTS; i++)
		if (g->slots[i].kind != GK_FREE && g->slots[i].live)
			pr_warn("the guardian's entry %zu (kind %u, pid %d) was left live", i, g->slots[i].kind,
				g->slots[i].pid);
	if (send(g->sock, "b", 1, MSG_NOSIGNAL) != 1)
		pr_perror("cannot tell the guardian (pid %d) to go", g->pid);
	close(g->sock);
	while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
		;
	munmap(g->slots, GUARD_SLOTS * sizeof(struct guard_entry));
	free(g);
}

void guard_stop(struct cryo_opts *o)
{
	guard_close(o->guard);
	o->guard = NULL;
}
