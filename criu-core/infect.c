#define LOG_PREFIX "infect: "
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "fault.h"
#include "guard.h"
#include "infect.h"
#include "log.h"
#include "parasite-blob.h"
#include "seize.h"
#include "util.h"

#define POLL_MS 50

static int map_local(struct parasite_ctl *ctl)
{
	char path[96];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", ctl->pid, ctl->remote,
		 ctl->remote + ctl->size);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("pid %d: cannot open the parasite mapping %s", ctl->pid, path);
	ctl->local = mmap(NULL, ctl->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (ctl->local == MAP_FAILED) {
		ctl->local = NULL;
		return pr_perror("pid %d: cannot map the parasite locally", ctl->pid);
	}
	return 0;
}

/*
 * One syscall in thread tid (base: its registers) at the borrowed gadget,
 * journaled in the thread's guardian entry te while it is in flight.
 */
static int gadget_syscall(struct parasite_ctl *ctl, pid_t tid, struct guard_entry *te,
			  const struct user_regs_struct *base, long nr, long a1, long a2, long a3, long a4,
			  long a5, long a6, unsigned undo, long *ret)
{
	int r;

	guard_syscall(te, ctl->code.addr, nr, undo, undo & GUARD_SC_MAP ? (size_t)a2 : 0);
	r = remote_syscall(tid, base, ctl->code.addr, nr, a1, a2, a3, a4, a5, a6, ret);
	if (!r)
		guard_syscall_done(te);
	return r;
}

static int remote_munmap(struct parasite_ctl *ctl)
{
	long ret;

	if (gadget_syscall(ctl, ctl->pid, ctl->g_regs, &ctl->regs, __NR_munmap, ctl->remote, ctl->size, 0, 0, 0,
			   0, 0, &ret))
		return -EIO;
	if (ret) {
		pr_err("pid %d: cannot unmap the parasite at %#lx: error %ld", ctl->pid, ctl->remote, -ret);
		return -EIO;
	}
	ctl->remote = 0;
	guard_parasite_unmapped(ctl->code.g);
	return 0;
}

/*
 * Borrow the code word at exec_addr (the start of a private executable
 * mapping) for `syscall; jmp .`: every syscall cryo runs in the task runs
 * there, outside the parasite, until the word is given back. Should cryo
 * die, a thread that was sent there spins on the jmp (or waits in the
 * syscall) for the guardian instead of running the task's code with
 * registers it does not expect. size and area_off: the parasite's, for the
 * guardian's entry (0 for a fence).
 */
static int code_borrow(struct code_word *cw, pid_t pid, unsigned long exec_addr, size_t size, size_t area_off,
		       struct guard *g)
{
	if (!exec_addr)
		exec_addr = find_exec_addr(pid);
	if (!exec_addr) {
		pr_err("pid %d: no executable mapping to run cryo's syscalls from", pid);
		return -ENOEXEC;
	}
	errno = 0;
	cw->word = ptrace(PTRACE_PEEKTEXT, pid, exec_addr, 0);
	if (errno)
		return pr_perror("pid %d: cannot read code at %#lx", pid, exec_addr);
	cw->g = guard_parasite(g, pid, exec_addr, cw->word, size, area_off);
	if (g && !cw->g)
		return -ENOMEM;
	if (ptrace(PTRACE_POKETEXT, pid, exec_addr, guard_gadget_word(cw->word))) {
		int ret = pr_perror("pid %d: cannot write code at %#lx", pid, exec_addr);

		guard_done(cw->g);
		cw->g = NULL;
		return ret;
	}
	cw->pid = pid;
	cw->addr = exec_addr;
	fault_point("infect-gadget");
	return 0;
}

/* the word back; the guardian's entry stays for the caller to drop */
static int code_give_back(struct code_word *cw)
{
	if (!cw->addr)
		return 0;
	if (ptrace(PTRACE_POKETEXT, cw->pid, cw->addr, cw->word))
		return pr_perror("pid %d: cannot restore code at %#lx", cw->pid, cw->addr);
	cw->addr = 0;
	return 0;
}

struct parasite_ctl *parasite_infect(pid_t pid, unsigned long exec_addr, size_t pipe_size, struct guard *g)
{
	struct parasite_ctl *ctl = xzalloc(sizeof(*ctl));
	size_t area_off = PAGE_ALIGN(parasite_BLOB_SIZE);
	size_t area_len = PAGE_ALIGN(sizeof(struct parasite_area));
	long addr;

	if (!ctl)
		return NULL;
	ctl->pid = pid;
	ctl->pipe_rd = -1;
	ctl->pipe_size = pipe_size;
	ctl->g = g;
	ctl->size = area_off + area_len + PARASITE_STACK_SIZE;
	if (ptrace_get_regs(pid, &ctl->regs) || ptrace_get_sigmask(pid, &ctl->sigmask))
		goto err_free;
	ctl->g_regs = guard_regs(g, pid, pid, &ctl->regs, &ctl->sigmask);
	if (g && !ctl->g_regs)
		goto err_free;
	/*
	 * Block every signal while the parasite runs, so none is delivered
	 * into its code; what arrives stays pending for the task.
	 */
	if (ptrace_set_sigmask(pid, ~0ULL))
		goto err_free;
	if (code_borrow(&ctl->code, pid, exec_addr, ctl->size, area_off, g))
		goto err_regs;
	if (gadget_syscall(ctl, pid, ctl->g_regs, &ctl->regs, __NR_mmap, 0, ctl->size,
			   PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED | MAP_ANONYMOUS, -1, 0, GUARD_SC_MAP, &addr))
		goto err_regs;
	if (addr < 0 && addr > -4096) {
		pr_err("pid %d: mmap of %zu bytes for the parasite failed in the task: %s",
		       pid, ctl->size, strerror(-addr));
		goto err_regs;
	}
	ctl->remote = addr;
	guard_parasite_mapped(ctl->code.g, addr);
	fault_point("infect-mapped");
	if (map_local(ctl))
		goto err_unmap;
	memcpy(ctl->local, parasite_blob, sizeof(parasite_blob));
	ctl->area = (struct parasite_area *)((char *)ctl->local + area_off);
	ctl->remote_area = ctl->remote + area_off;
	ctl->remote_stack_top = ctl->remote + ctl->size - 16;
	ctl->area->pipe_rd = ctl->area->pipe_wr = -1;
	guard_parasite_area(ctl->code.g);
	pr_debug("pid %d: parasite at %#lx (%zu bytes)", pid, ctl->remote, ctl->size);
	fault_point("infected");
	return ctl;

err_unmap:
	remote_munmap(ctl);
err_regs:
	code_give_back(&ctl->code);
	ptrace_set_regs(pid, &ctl->regs);
	ptrace_set_sigmask(pid, ctl->sigmask);
err_free:
	guard_done(ctl->code.g);
	guard_done(ctl->g_regs);
	free(ctl);
	return NULL;
}

int parasite_thread_state(struct parasite_ctl *ctl, pid_t tid, struct parasite_thread_state *st)
{
	unsigned long buf = ctl->remote_area + offsetof(struct parasite_area, thread);
	struct parasite_thread_state *out = &ctl->area->thread;
	struct guard_entry *te = ctl->g_regs;
	struct user_regs_struct saved;
	long r1 = 0, r2 = 0;
	int ret;

	if (tid == ctl->pid) {
		saved = ctl->regs;
	} else {
		if (ptrace_get_regs(tid, &saved))
			return -EIO;
		te = guard_regs(ctl->g, ctl->pid, tid, &saved, NULL);
		if (ctl->g && !te)
			return -ENOMEM;
	}
	memset(out, 0, sizeof(*out));
	ret = gadget_syscall(ctl, tid, te, &saved, __NR_sigaltstack, 0, buf, 0, 0, 0, 0, 0, &r1);
	if (!ret)
		ret = gadget_syscall(ctl, tid, te, &saved, __NR_prctl, PR_GET_TID_ADDRESS,
				     buf + offsetof(struct parasite_thread_state, clear_tid), 0, 0, 0, 0, 0, &r2);
	/* the leader's registers are put back by parasite_cure */
	if (tid != ctl->pid) {
		regs_apply_restart(&saved, false);
		if (ptrace_set_regs(tid, &saved))
			ret = -EIO;
		else
			guard_done(te);
	}
	if (ret)
		return ret;
	if (r1 || r2) {
		pr_err("tid %d: cannot read its %s: error %ld", tid, r1 ? "sigaltstack" : "tid address",
		       -(r1 ? r1 : r2));
		return -EIO;
	}
	*st = *out;
	return 0;
}

int parasite_syscall(struct parasite_ctl *ctl, long nr, unsigned long a1, unsigned long a2,
		     unsigned long a3, unsigned long a4, long *ret)
{
	/* should cryo die with it done, the guardian closes the fd it made */
	unsigned undo = nr == __NR_userfaultfd || (nr == __NR_fcntl && (a2 == F_DUPFD || a2 == F_DUPFD_CLOEXEC)) ?
			GUARD_SC_FD : 0;

	/* the leader's registers are put back by parasite_cure */
	return gadget_syscall(ctl, ctl->pid, ctl->g_regs, &ctl->regs, nr, a1, a2, a3, a4, 0, 0, undo, ret) ? -EIO : 0;
}

int parasite_rseq(struct parasite_ctl *ctl, uint64_t ptr, uint32_t len, uint32_t sig, bool reg)
{
	long r = 0;

	if (!reg)
		guard_parasite_rseq(ctl->code.g, ptr, len, sig, true);
	if (parasite_syscall(ctl, __NR_rseq, ptr, len, reg ? 0 : RSEQ_FLAG_UNREGISTER, sig, &r))
		return -EIO;
	if (r) {
		pr_err("pid %d: cannot %sregister its rseq area at %#lx: error %ld", ctl->pid, reg ? "" : "un",
		       (unsigned long)ptr, -r);
		return -EIO;
	}
	if (reg)
		guard_parasite_rseq(ctl->code.g, ptr, len, sig, false);
	else
		fault_point("rseq-off");
	return 0;
}

static const char *cmd_name(enum parasite_cmd cmd)
{
	switch (cmd) {
	case PARASITE_CMD_INIT: return "init";
	case PARASITE_CMD_DUMP_MISC: return "dump-misc";
	case PARASITE_CMD_DUMP_PAGES: return "dump-pages";
	}
	return "?";
}

static int start_cmd(struct parasite_ctl *ctl, enum parasite_cmd cmd)
{
	struct user_regs_struct r = ctl->regs;

	ctl->area->cmd = cmd;
	ctl->area->ret = -EINPROGRESS;
	ctl->area->msg[0] = 0;
	__atomic_store_n(&ctl->area->done, 0, __ATOMIC_RELEASE);
	r.rip = ctl->remote + parasite_off_entry;
	r.rsp = ctl->remote_stack_top;
	r.rdi = ctl->remote_area;
	r.orig_rax = -1;
	r.eflags &= ~(1UL << 10);	/* DF clear, as the ABI wants */
	if (ptrace_set_regs(ctl->pid, &r))
		return -EIO;
	if (ptrace(PTRACE_CONT, ctl->pid, 0, 0))
		return pr_perror("pid %d: cannot start parasite command %s", ctl->pid, cmd_name(cmd));
	fault_point("parasite-cmd");
	return 0;
}

/* Did the task stop or die on its own (a crash in the parasite)? */
static int check_crash(struct parasite_ctl *ctl, enum parasite_cmd cmd)
{
	struct user_regs_struct r;
	char why[96];
	int st;
	pid_t p = waitpid(ctl->pid, &st, WNOHANG | __WALL);

	if (p == 0)
		return 0;
	if (p < 0)
		return pr_perror("pid %d: waitpid", ctl->pid);
	if (is_retrap(st)) {
		if (ptrace(PTRACE_CONT, ctl->pid, 0, 0))
			return pr_perror("pid %d: cannot resume the parasite", ctl->pid);
		return 0;
	}
	ctl->crashed = true;
	if (WIFSTOPPED(st) && !ptrace_get_regs(ctl->pid, &r))
		pr_err("pid %d: parasite command %s: the task %s at rip %#llx",
		       ctl->pid, cmd_name(cmd), describe_status(st, why, sizeof(why)), r.rip);
	else
		pr_err("pid %d: parasite command %s: the task %s", ctl->pid, cmd_name(cmd),
		       describe_status(st, why, sizeof(why)));
	return -EIO;
}

static int finish_cmd(struct parasite_ctl *ctl, enum parasite_cmd cmd)
{
	struct timespec ts = { 0, POLL_MS * 1000000L };

	while (!__atomic_load_n(&ctl->area->done, __ATOMIC_ACQUIRE)) {
		syscall(SYS_futex, &ctl->area->done, FUTEX_WAIT, 0, &ts, NULL, 0);
		if (!__atomic_load_n(&ctl->area->done, __ATOMIC_ACQUIRE) && check_crash(ctl, cmd))
			return -EIO;
	}
	/* it now sits in pause(): take it back */
	if (interrupt_task(ctl->pid)) {
		ctl->crashed = true;
		return -EIO;
	}
	if (ctl->area->ret) {
		pr_err("pid %d: parasite command %s: %s", ctl->pid, cmd_name(cmd),
		       ctl->area->msg[0] ? ctl->area->msg : strerror(-ctl->area->ret));
		return ctl->area->ret;
	}
	return 0;
}

int parasite_cmd(struct parasite_ctl *ctl, enum parasite_cmd cmd)
{
	int ret;

	if (cmd == PARASITE_CMD_INIT)
		ctl->area->pipe_size = ctl->pipe_size;
	ret = start_cmd(ctl, cmd);
	if (!ret)
		ret = finish_cmd(ctl, cmd);
	if (ret)
		return ret;
	if (cmd == PARASITE_CMD_INIT) {
		_cleanup_close_ int pidfd = sys_pidfd_open(ctl->pid, 0);

		ctl->pipe_open = true;
		if (pidfd < 0)
			return pr_perror("pid %d: pidfd_open", ctl->pid);
		ctl->pipe_rd = sys_pidfd_getfd(pidfd, ctl->area->pipe_rd, 0);
		if (ctl->pipe_rd < 0)
			return pr_perror("pid %d: cannot take the page pipe (fd %d)", ctl->pid,
					 ctl->area->pipe_rd);
		ctl->pipe_size = fcntl(ctl->pipe_rd, F_GETPIPE_SZ);
	}
	return 0;
}

/* splice from the page pipe into a file, at its offset */
static ssize_t move_to_fd(void *arg, int pipe_fd, size_t max)
{
	return splice(pipe_fd, NULL, *(int *)arg, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

int parasite_dump_pages(struct parasite_ctl *ctl, struct parasite_chunk *chunks, unsigned nr,
			const struct page_sink *sink_in)
{
	const struct page_sink sink = *sink_in;
	_cleanup_close_ int devnull = -1;
	int ret = 0, err = 0;
	unsigned i = 0;
	uint64_t left = 0;

	if (nr > PARASITE_MAX_CHUNKS)
		return -E2BIG;
	memcpy(ctl->area->chunks, chunks, nr * sizeof(*chunks));
	ctl->area->nr_chunks = nr;
	ret = start_cmd(ctl, PARASITE_CMD_DUMP_PAGES);
	if (ret)
		return ret;
	for (; i < nr; i++) {
		left = chunks[i].len;
		if (sink.begin && (err = sink.begin(sink.arg, left)))
			break;
		while (left) {
			ssize_t n = sink.move(sink.arg, ctl->pipe_rd, left);

			if (n > 0) {
				left -= n;
				continue;
			}
			if (n == 0)	/* the parasite closed its end: it failed */
				break;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = ctl->pipe_rd, .events = POLLIN };

				if (poll(&p, 1, POLL_MS) == 0 && check_crash(ctl, PARASITE_CMD_DUMP_PAGES))
					return -EIO;
				continue;
			}
			if (errno == EINTR)
				continue;
			err = pr_perror("pid %d: cannot write pages to %s", ctl->pid, sink.name);
			break;
		}
		if (err || left)
			break;
		/* the parasite wrote the chunk's crc before its bytes */
		chunks[i].crc = __atomic_load_n(&ctl->area->chunks[i].crc, __ATOMIC_ACQUIRE);
		fault_point("pages-chunk");
		if (sink.end && (err = sink.end(sink.arg, chunks[i].crc)))
			break;
	}
	if (err) {
		/* drain what is still to come into /dev/null, so that the parasite can finish */
		for (unsigned k = i + 1; k < nr; k++)
			left += chunks[k].len;
		devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		while (left && devnull >= 0) {
			ssize_t n = move_to_fd(&devnull, ctl->pipe_rd, left);
			struct pollfd p = { .fd = ctl->pipe_rd, .events = POLLIN };

			if (n > 0)
				left -= n;
			else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				break;
			else if (poll(&p, 1, POLL_MS) == 0 && check_crash(ctl, PARASITE_CMD_DUMP_PAGES))
				return -EIO;
		}
	}
	if (finish_cmd(ctl, PARASITE_CMD_DUMP_PAGES))
		return -EIO;
	if (err)
		return err;
	if (i < nr) {
		pr_err("pid %d: page pipe ended with %lu bytes of chunk %u still expected", ctl->pid, left, i);
		return -EIO;
	}
	return 0;
}

struct page_sink page_sink_fd(int *fd, const char *name)
{
	return (struct page_sink){ .move = move_to_fd, .arg = fd, .name = name };
}

/* close the page pipe INIT opened in the task */
static int remote_close_pipe(struct parasite_ctl *ctl)
{
	int fds[2] = { ctl->area->pipe_rd, ctl->area->pipe_wr };
	long ret;

	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0)
			continue;
		if (parasite_syscall(ctl, __NR_close, fds[i], 0, 0, 0, &ret))
			return -EIO;
		if (ret)
			pr_warn("pid %d: closing parasite fd %d: error %ld", ctl->pid, fds[i], -ret);
	}
	ctl->pipe_open = false;
	return 0;
}

int parasite_cure(struct parasite_ctl *ctl)
{
	struct user_regs_struct r;
	int ret = 0;

	if (!ctl)
		return 0;
	r = ctl->regs;
	if (ctl->crashed) {
		/*
		 * The task stopped on a signal inside the parasite (or died).
		 * Regs and memory are put back below; the signal is dropped
		 * when the caller resumes it with signal 0.
		 */
		pr_warn("pid %d: removing a parasite that crashed", ctl->pid);
	}
	if (ctl->pipe_open && remote_close_pipe(ctl))
		ret = -EIO;
	if (ctl->pipe_rd >= 0)
		close(ctl->pipe_rd);
	if (ctl->remote && remote_munmap(ctl))
		ret = -EIO;
	if (ctl->local)
		munmap(ctl->local, ctl->size);
	if (code_give_back(&ctl->code))
		ret = -EIO;
	regs_apply_restart(&r, false);
	if (ptrace_set_regs(ctl->pid, &r) || ptrace_set_sigmask(ctl->pid, ctl->sigmask))
		ret = -EIO;
	/* all put back: what is left (a task that died) is nothing the guardian can mend */
	if (!ret || ctl->crashed) {
		guard_done(ctl->code.g);
		guard_done(ctl->g_regs);
	}
	free(ctl);
	return ret;
}

int task_fence(struct fence *f, pid_t pid, const pid_t *tids, int nr, unsigned long exec_addr, struct guard *g)
{
	int ret;

	memset(f, 0, sizeof(*f));
	f->t = xzalloc(nr * sizeof(*f->t));
	if (!f->t)
		return -ENOMEM;
	if ((ret = code_borrow(&f->code, pid, exec_addr, 0, 0, g))) {
		free(f->t);
		f->t = NULL;
		return ret;
	}
	for (int i = 0; i < nr; i++) {
		struct fence_thread *t = &f->t[i];
		struct user_regs_struct r;

		t->tid = tids[i];
		if (ptrace_get_regs(t->tid, &t->regs) || ptrace_get_sigmask(t->tid, &t->mask)) {
			ret = -EIO;
			break;
		}
		t->g = guard_regs(g, pid, t->tid, &t->regs, &t->mask);
		if (g && !t->g) {
			ret = -ENOMEM;
			break;
		}
		f->nr = i + 1;
		r = t->regs;
		r.rip = f->code.addr;
		r.rax = __NR_pause;
		r.orig_rax = -1;
		if (ptrace_set_sigmask(t->tid, ~0ULL) || ptrace_set_regs(t->tid, &r)) {
			ret = -EIO;
			break;
		}
	}
	if (ret)
		task_unfence(f);
	return ret;
}

int task_unfence(struct fence *f)
{
	int ret = 0;

	for (int i = 0; i < f->nr; i++) {
		struct fence_thread *t = &f->t[i];
		struct user_regs_struct r = t->regs;

		regs_apply_restart(&r, false);
		if (ptrace_set_regs(t->tid, &r) || ptrace_set_sigmask(t->tid, t->mask))
			ret = -EIO;
		else
			guard_done(t->g);
	}
	if (code_give_back(&f->code))
		ret = -EIO;
	else
		guard_done(f->code.g);
	free(f->t);
	f->t = NULL;
	f->nr = 0;
	return ret;
}

/*
 * cryo's fds into task pid, outside the tree (the parent it was restored
 * under): seized, the task runs pidfd_open(cryo) and pidfd_getfd() of each
 * at a borrowed code word, then goes on as it was. Each syscall is in the
 * guardian's journal while it runs (the fd it made closed should cryo die
 * then); what the task has at the end it keeps.
 */
int task_give_fds(pid_t pid, const int *fds, int nr, int *out, struct guard *g)
{
	struct parasite_ctl ctl = { .pid = pid };
	struct guard_entry *te = NULL;
	int stop = 0, ret = -EIO;
	long pidfd = -EIO, r;

	for (int i = 0; i < nr; i++)
		out[i] = -1;
	if (seize_task(pid, &stop, false))
		return -EIO;
	if (ptrace_get_regs(pid, &ctl.regs) || ptrace_get_sigmask(pid, &ctl.sigmask))
		goto out_detach;
	te = guard_regs(g, pid, pid, &ctl.regs, &ctl.sigmask);
	if ((g && !te) || ptrace_set_sigmask(pid, ~0ULL) || code_borrow(&ctl.code, pid, 0, 0, 0, g))
		goto out_regs;
	if (gadget_syscall(&ctl, pid, te, &ctl.regs, __NR_pidfd_open, getpid(), 0, 0, 0, 0, 0, GUARD_SC_FD,
			   &pidfd) || pidfd < 0) {
		pr_err("pid %d: cannot open a pidfd of cryo in it: %s", pid, strerror(pidfd < 0 ? -pidfd : EIO));
		goto out_code;
	}
	ret = 0;
	for (int i = 0; i < nr && !ret; i++) {
		long fd = -EIO;

		if (gadget_syscall(&ctl, pid, te, &ctl.regs, __NR_pidfd_getfd, pidfd, fds[i], 0, 0, 0, 0, GUARD_SC_FD,
				   &fd) || fd < 0) {
			pr_err("pid %d: cannot give it cryo's fd %d: %s", pid, fds[i], strerror(fd < 0 ? -fd : EIO));
			ret = -EIO;
		} else {
			out[i] = fd;
		}
	}
	if (gadget_syscall(&ctl, pid, te, &ctl.regs, __NR_close, pidfd, 0, 0, 0, 0, 0, 0, &r) || r)
		pr_warn("pid %d: cannot close the pidfd of cryo given to it", pid);
	/* a failure takes back what it got */
	for (int i = 0; i < nr && ret; i++)
		if (out[i] >= 0 && !gadget_syscall(&ctl, pid, te, &ctl.regs, __NR_close, out[i], 0, 0, 0, 0, 0, 0, &r))
			out[i] = -1;
out_code:
	if (code_give_back(&ctl.code))
		ret = -EIO;
	else
		guard_done(ctl.code.g);
out_regs:
	regs_apply_restart(&ctl.regs, false);
	if (ptrace_set_regs(pid, &ctl.regs) || ptrace_set_sigmask(pid, ctl.sigmask))
		ret = -EIO;
	else
		guard_done(te);
out_detach:
	if (ptrace(PTRACE_DETACH, pid, 0, stop))
		ret = pr_perror("pid %d: cannot let it go", pid);
	return ret;
}
