/*
 * The parasite: code that runs inside the dumped task, on the thread the
 * dumper stopped, to read what only the task itself can read, and to hand
 * its memory out through a pipe with vmsplice.
 */
#include <linux/fcntl.h>
#include <linux/futex.h>
#include <linux/mman.h>
#include <linux/prctl.h>

#include "crc32c.h"
#include "parasite-proto.h"
#include "pie.h"

#define SIGKILL 9
#define SIGSTOP 19

struct k_iovec {
	void *base;
	uint64_t len;
};

struct k_timeval {
	int64_t sec, usec;
};

struct k_itimerval {
	struct k_timeval interval, value;
};

static int fail(struct parasite_area *a, long err, const char *what)
{
	pie_snprintf(a->msg, sizeof(a->msg), "%s failed with error %ld", what, -err);
	return (int)err;
}

static int cmd_init(struct parasite_area *a)
{
	int fds[2];
	long ret;

	ret = sys2(__NR_pipe2, fds, O_CLOEXEC);
	if (ret)
		return fail(a, ret, "pipe2");
	/* a bigger pipe means fewer round trips; failure is not fatal */
	if (a->pipe_size)
		sys3(__NR_fcntl, fds[1], F_SETPIPE_SZ, a->pipe_size);
	a->pipe_rd = fds[0];
	a->pipe_wr = fds[1];
	return 0;
}

static int cmd_dump_misc(struct parasite_area *a)
{
	struct parasite_misc *m = &a->misc;
	long ret;

	for (int sig = 1; sig <= 64; sig++) {
		struct parasite_ksigaction *sa = &m->sa[sig - 1];

		if (sig == SIGKILL || sig == SIGSTOP) {
			memset(sa, 0, sizeof(*sa));
			continue;
		}
		ret = sys4(__NR_rt_sigaction, sig, 0, sa, 8);
		if (ret)
			return fail(a, ret, "rt_sigaction");
	}
	for (int i = 0; i < 3; i++) {
		struct k_itimerval it;

		ret = sys2(__NR_getitimer, i, &it);
		if (ret)
			return fail(a, ret, "getitimer");
		m->itimer[i].interval_sec = it.interval.sec;
		m->itimer[i].interval_usec = it.interval.usec;
		m->itimer[i].value_sec = it.value.sec;
		m->itimer[i].value_usec = it.value.usec;
	}

	m->dumpable = sys1(__NR_prctl, PR_GET_DUMPABLE);
	ret = sys2(__NR_prctl, PR_GET_PDEATHSIG, &m->pdeath_sig);
	if (ret)
		return fail(a, ret, "prctl(PR_GET_PDEATHSIG)");
	m->no_new_privs = sys1(__NR_prctl, PR_GET_NO_NEW_PRIVS);
	ret = sys2(__NR_prctl, PR_GET_CHILD_SUBREAPER, &m->child_subreaper);
	if (ret)
		return fail(a, ret, "prctl(PR_GET_CHILD_SUBREAPER)");
	m->thp_disable = sys1(__NR_prctl, PR_GET_THP_DISABLE);
	m->securebits = sys1(__NR_prctl, PR_GET_SECUREBITS);
	m->timerslack_ns = sys1(__NR_prctl, PR_GET_TIMERSLACK);
	m->brk = sys1(__NR_brk, 0);
	return 0;
}

static int splice_chunk(struct parasite_area *a, struct parasite_chunk *c)
{
	struct k_iovec iov = { (void *)c->addr, c->len };
	long ret = 0;

	if (c->flags & PARASITE_CHUNK_UNREADABLE) {
		ret = sys3(__NR_mprotect, c->addr, c->len, c->prot | PROT_READ);
		if (ret)
			return fail(a, ret, "mprotect");
	}
	c->crc = crc32c(0, (const void *)c->addr, c->len);
	while (iov.len) {
		ret = sys4(__NR_vmsplice, a->pipe_wr, &iov, 1, 0);
		if (ret == -4 /* EINTR */)
			continue;
		if (ret <= 0) {
			ret = fail(a, ret ? ret : -5, "vmsplice");
			break;
		}
		iov.base = (char *)iov.base + ret;
		iov.len -= ret;
		ret = 0;
	}
	if (c->flags & PARASITE_CHUNK_UNREADABLE)
		sys3(__NR_mprotect, c->addr, c->len, c->prot);
	return (int)ret;
}

static int cmd_dump_pages(struct parasite_area *a)
{
	if (a->nr_chunks > PARASITE_MAX_CHUNKS)
		return fail(a, -22, "chunk count check");
	for (uint32_t i = 0; i < a->nr_chunks; i++) {
		int ret = splice_chunk(a, &a->chunks[i]);

		if (ret) {
			/* let the dumper's splice see EOF instead of waiting forever */
			sys1(__NR_close, a->pipe_wr);
			a->pipe_wr = -1;
			return ret;
		}
	}
	return 0;
}

PIE_EXPORT void parasite_main(struct parasite_area *a)
{
	int ret;

	a->msg[0] = 0;
	switch (a->cmd) {
	case PARASITE_CMD_INIT:
		ret = cmd_init(a);
		break;
	case PARASITE_CMD_DUMP_MISC:
		ret = cmd_dump_misc(a);
		break;
	case PARASITE_CMD_DUMP_PAGES:
		ret = cmd_dump_pages(a);
		break;
	default:
		ret = fail(a, -22, "unknown command");
		break;
	}
	a->ret = ret;
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	sys6(__NR_futex, &a->done, FUTEX_WAKE, 1, 0, 0, 0);
}
