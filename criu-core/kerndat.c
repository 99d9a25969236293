/*
 * Kernel feature probes. Each probe uses the interface for real on cryo
 * itself or on a throwaway child, quickly, and leaves nothing behind: every
 * child is reaped, every fd closed, every mapping and cgroup removed. A
 * probe that fails is not an error of cryo: it is recorded in kd->f[] (ok
 * and a short detail) and logged at debug level; modules and `cryo check`
 * decide what it means.
 */
#define LOG_PREFIX "kerndat: "
#include <cpuid.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "compat.h"
#include "kerndat.h"
#include "log.h"
#include "util.h"

const struct kd_info kd_info[KD__MAX] = {
	[KD_PTRACE_SEIZE]	= { "ptrace-seize", "stop tasks without signals (PTRACE_SEIZE)", true },
	[KD_PTRACE_SIGMASK]	= { "ptrace-sigmask", "dump and restore blocked signals", true },
	[KD_PTRACE_RSEQ]	= { "ptrace-rseq", "dump the rseq registration of each thread", true },
	[KD_PTRACE_SECCOMP]	= { "ptrace-seccomp", "dump seccomp filters", false },
	[KD_PIDFD_GETFD]	= { "pidfd_getfd", "copy a task's fds into cryo to dump them", true },
	[KD_KCMP]		= { "kcmp", "find files shared between fds and tasks", true },
	[KD_PR_SET_MM_MAP]	= { "PR_SET_MM_MAP", "restore brk, args, env, auxv and exe link", true },
	[KD_CLONE3_SET_TID]	= { "clone3-set_tid", "restore tasks with their original PIDs", true },
	[KD_MAP_FILES]		= { "map_files", "open the files behind mappings", true },
	[KD_PAGEMAP_SCAN]	= { "PAGEMAP_SCAN", "find the present and dirty pages", true },
	[KD_UFFD]		= { "userfaultfd", "lazy restore (post-copy migration)", false },
	[KD_UFFD_WP_ASYNC]	= { "uffd-wp-async", "dirty page tracking for pre-copy", false },
	[KD_SOFT_DIRTY]		= { "soft-dirty", "dirty page tracking, the older way", false },
	[KD_TCP_REPAIR]		= { "TCP_REPAIR", "checkpoint established TCP connections", false },
	[KD_NS_USER]		= { "ns-user", "dump tasks in user namespaces", false },
	[KD_NS_PID]		= { "ns-pid", "dump tasks in PID namespaces", false },
	[KD_NS_MNT]		= { "ns-mnt", "dump tasks in mount namespaces", false },
	[KD_NS_NET]		= { "ns-net", "dump tasks in network namespaces", false },
	[KD_NS_IPC]		= { "ns-ipc", "dump tasks in IPC namespaces", false },
	[KD_NS_UTS]		= { "ns-uts", "dump tasks in UTS namespaces", false },
	[KD_NS_CGROUP]		= { "ns-cgroup", "dump tasks in cgroup namespaces", false },
	[KD_NS_TIME]		= { "ns-time", "dump tasks in time namespaces", false },
	[KD_FREEZER_V1]		= { "freezer-v1", "freeze containers (cgroup v1 freezer)", false },
	[KD_FREEZE_V2]		= { "freeze-v2", "freeze containers (cgroup v2 cgroup.freeze)", false },
	[KD_SSE42_CRC]		= { "sse4.2-crc32", "fast image checksums (else in software)", false },
};

static void kd_set(struct kerndat *kd, enum kd_feature f, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void kd_set(struct kerndat *kd, enum kd_feature f, bool ok, const char *fmt, ...)
{
	va_list ap;

	kd->f[f].ok = ok;
	va_start(ap, fmt);
	vsnprintf(kd->f[f].detail, sizeof(kd->f[f].detail), fmt, ap);
	va_end(ap);
	pr_debug("%s: %s%s%s", kd_info[f].name, ok ? "ok" : "no",
		 kd->f[f].detail[0] ? ", " : "", kd->f[f].detail);
}

/* the answer until a probe that depends on another one runs (not logged) */
static void kd_unprobed(struct kerndat *kd, enum kd_feature f, const char *needs)
{
	kd->f[f].ok = false;
	snprintf(kd->f[f].detail, sizeof(kd->f[f].detail), "needs %s", needs);
}

static void kd_ok(struct kerndat *kd, enum kd_feature f)
{
	kd_set(kd, f, true, "%s", "");
}

/* "EPERM" rather than a sentence: details are short */
static const char *errname(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "unknown errno";
}

/* what a failure with errno err usually means */
static const char *errhint(int err)
{
	switch (err) {
	case EPERM:
	case EACCES:
		return " (not permitted: needs root)";
	case ENOSYS:
		return " (no such syscall in this kernel)";
	case ENOTTY:
		return " (not supported by this kernel)";
	default:
		return "";
	}
}

static void kd_fail(struct kerndat *kd, enum kd_feature f, const char *op, int err)
{
	kd_set(kd, f, false, "%s%s%s%s", op ? op : "", op ? ": " : "", errname(err), errhint(err));
}

static void kill_reap(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	for (;;) {
		pid_t r = waitpid(pid, &st, __WALL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || WIFEXITED(st) || WIFSIGNALED(st))
			break;
	}
}

/* ---- ptrace, on a child that installs a trivial seccomp filter and waits ---- */

static __attribute__((noreturn)) void ptrace_child(int sync_fd)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &allow };
	char filtered = '0';

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) &&
	    !prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		filtered = '1';
	if (write(sync_fd, &filtered, 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

static void probe_ptrace_stopped(struct kerndat *kd, pid_t pid, bool filtered)
{
	struct cryo_rseq_config rseq;
	uint64_t mask, set, back;
	struct iovec iov;
	long n;

	if (ptrace(PTRACE_GETSIGMASK, pid, sizeof(mask), &mask))
		kd_fail(kd, KD_PTRACE_SIGMASK, "GETSIGMASK", errno);
	else {
		set = mask ^ (1ULL << (SIGUSR2 - 1));
		if (ptrace(PTRACE_SETSIGMASK, pid, sizeof(set), &set))
			kd_fail(kd, KD_PTRACE_SIGMASK, "SETSIGMASK", errno);
		else if (ptrace(PTRACE_GETSIGMASK, pid, sizeof(back), &back) || back != set)
			kd_set(kd, KD_PTRACE_SIGMASK, false, "SETSIGMASK did not take effect");
		else
			kd_ok(kd, KD_PTRACE_SIGMASK);
	}

	n = ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, sizeof(rseq), &rseq);
	if (n < 0)
		kd_fail(kd, KD_PTRACE_RSEQ, NULL, errno);
	else if (n < (long)offsetof(struct cryo_rseq_config, flags))
		kd_set(kd, KD_PTRACE_RSEQ, false, "short answer: %ld bytes", n);
	else
		kd_set(kd, KD_PTRACE_RSEQ, true, "%s", rseq.rseq_abi_pointer ?
		       "libc registers rseq" : "libc does not register rseq");

	/* the child has exactly one filter: index 0 has one instruction */
	n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, NULL);
	if (n == 1)
		kd_ok(kd, KD_PTRACE_SECCOMP);
	else if (n >= 0)
		kd_set(kd, KD_PTRACE_SECCOMP, false, "filter of %ld instructions, expected 1", n);
	else if (!filtered)
		kd_set(kd, KD_PTRACE_SECCOMP, false, "cannot install a seccomp filter to test it");
	else if (errno == EINVAL)
		kd_set(kd, KD_PTRACE_SECCOMP, false, "EINVAL (kernel without CONFIG_CHECKPOINT_RESTORE)");
	else if (errno == EIO)
		kd_set(kd, KD_PTRACE_SECCOMP, false, "EIO (not supported by this kernel)");
	else if (errno == EACCES)
		kd_set(kd, KD_PTRACE_SECCOMP, false, "EACCES (needs root, and cryo outside seccomp)");
	else
		kd_fail(kd, KD_PTRACE_SECCOMP, NULL, errno);

	/* the kernel trims iov_len to the size of the regset it fills */
	iov.iov_len = 1 << 16;
	iov.iov_base = malloc(iov.iov_len);
	if (iov.iov_base && !ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov)) {
		if (kd->xsave_size && kd->xsave_size != iov.iov_len)
			pr_debug("xsave: CPUID says %u bytes, the kernel's regset has %zu; using the latter",
				 kd->xsave_size, iov.iov_len);
		kd->xsave_size = iov.iov_len;
	}
	free(iov.iov_base);
}

static void probe_ptrace(struct kerndat *kd)
{
	static const enum kd_feature dep[] = {
		KD_PTRACE_SIGMASK, KD_PTRACE_RSEQ, KD_PTRACE_SECCOMP,
	};
	int sync[2], st;
	char filtered = 0;
	pid_t pid;

	for (size_t i = 0; i < ARRAY_SIZE(dep); i++)
		kd_unprobed(kd, dep[i], kd_info[KD_PTRACE_SEIZE].name);
	if (pipe2(sync, O_CLOEXEC)) {
		kd_fail(kd, KD_PTRACE_SEIZE, "pipe", errno);
		return;
	}
	pid = fork();
	if (pid == 0)
		ptrace_child(sync[1]);
	close(sync[1]);
	if (pid < 0) {
		kd_fail(kd, KD_PTRACE_SEIZE, "fork", errno);
		close(sync[0]);
		return;
	}
	if (read(sync[0], &filtered, 1) != 1) {
		close(sync[0]);
		kd_set(kd, KD_PTRACE_SEIZE, false, "the test child died");
		kill_reap(pid);
		return;
	}
	close(sync[0]);

	if (ptrace(PTRACE_SEIZE, pid, 0, 0)) {
		kd_fail(kd, KD_PTRACE_SEIZE, "SEIZE", errno);
	} else if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) {
		kd_fail(kd, KD_PTRACE_SEIZE, "INTERRUPT", errno);
	} else if (waitpid(pid, &st, __WALL) != pid) {
		kd_fail(kd, KD_PTRACE_SEIZE, "waitpid", errno);
	} else if (!WIFSTOPPED(st) || st >> 16 != PTRACE_EVENT_STOP) {
		kd_set(kd, KD_PTRACE_SEIZE, false, "no PTRACE_EVENT_STOP: wait status 0x%x", st);
	} else {
		kd_ok(kd, KD_PTRACE_SEIZE);
		probe_ptrace_stopped(kd, pid, filtered == '1');
	}
	kill_reap(pid);
}

/* ---- fds and processes ---- */

static void probe_pidfd_getfd(struct kerndat *kd)
{
	_cleanup_close_ int pidfd = sys_pidfd_open(getpid(), 0);
	_cleanup_close_ int fd = -1;

	if (pidfd < 0)
		kd_fail(kd, KD_PIDFD_GETFD, "pidfd_open", errno);
	else if ((fd = sys_pidfd_getfd(pidfd, pidfd, 0)) < 0)
		kd_fail(kd, KD_PIDFD_GETFD, NULL, errno);
	else
		kd_ok(kd, KD_PIDFD_GETFD);
}

static void probe_kcmp(struct kerndat *kd)
{
	_cleanup_close_ int dup_fd = -1;
	int p[2];
	long same, other;

	if (pipe2(p, O_CLOEXEC)) {
		kd_fail(kd, KD_KCMP, "pipe", errno);
		return;
	}
	dup_fd = fcntl(p[0], F_DUPFD_CLOEXEC, 0);
	if (dup_fd < 0) {
		kd_fail(kd, KD_KCMP, "dup", errno);
		goto out;
	}
	same = sys_kcmp(getpid(), getpid(), KCMP_FILE, p[0], dup_fd);
	other = sys_kcmp(getpid(), getpid(), KCMP_FILE, p[0], p[1]);
	if (same < 0 || other < 0)
		kd_fail(kd, KD_KCMP, NULL, errno);
	else if (same != 0 || other == 0)
		kd_set(kd, KD_KCMP, false, "wrong answers: %ld for one file, %ld for two", same, other);
	else
		kd_ok(kd, KD_KCMP);
out:
	close(p[0]);
	close(p[1]);
}

static void probe_mm_map(struct kerndat *kd)
{
	unsigned int size = 0;

	if (prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, (unsigned long)&size, 0, 0))
		kd_fail(kd, KD_PR_SET_MM_MAP, NULL, errno);
	else if (size != sizeof(struct prctl_mm_map))
		kd_set(kd, KD_PR_SET_MM_MAP, false, "struct prctl_mm_map is %u bytes, cryo knows %zu",
		       size, sizeof(struct prctl_mm_map));
	else
		kd_ok(kd, KD_PR_SET_MM_MAP);
}

/* Ask for a child with our own PID: EEXIST means set_tid was understood. */
static void probe_clone3(struct kerndat *kd)
{
	pid_t tid = getpid();
	struct clone_args args = {
		.exit_signal = SIGCHLD,
		.set_tid = (uintptr_t)&tid,
		.set_tid_size = 1,
	};
	long ret = syscall(SYS_clone3, &args, sizeof(args));

	if (ret == 0)
		_exit(0);	/* cannot happen: our PID is taken */
	if (ret > 0) {
		kill_reap(ret);
		kd_set(kd, KD_CLONE3_SET_TID, false, "set_tid ignored: got pid %ld", ret);
	} else if (errno == EEXIST) {
		kd_ok(kd, KD_CLONE3_SET_TID);
	} else if (errno == EINVAL || errno == E2BIG) {
		kd_set(kd, KD_CLONE3_SET_TID, false, "%s (set_tid not supported)", errname(errno));
	} else {
		kd_fail(kd, KD_CLONE3_SET_TID, NULL, errno);
	}
}

static void probe_map_files(struct kerndat *kd)
{
	DIR *d = opendir("/proc/self/map_files");
	struct dirent *de;
	int fd = -1;

	if (!d) {
		kd_fail(kd, KD_MAP_FILES, NULL, errno);
		return;
	}
	while ((de = readdir(d)) && de->d_name[0] == '.')
		;
	if (!de)
		kd_set(kd, KD_MAP_FILES, false, "no entries");
	else if ((fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC)) < 0)
		kd_fail(kd, KD_MAP_FILES, "open", errno);
	else
		kd_ok(kd, KD_MAP_FILES);
	if (fd >= 0)
		close(fd);
	closedir(d);
}

/* ---- memory ---- */

static void probe_pagemap_scan(struct kerndat *kd)
{
	_cleanup_close_ int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	size_t len = 4 * PAGE_SIZE;
	struct page_region r[4];
	struct pm_scan_arg arg;
	char *p;
	long n;

	if (fd < 0) {
		kd_fail(kd, KD_PAGEMAP_SCAN, "open pagemap", errno);
		return;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		kd_fail(kd, KD_PAGEMAP_SCAN, "mmap", errno);
		return;
	}
	p[0] = p[PAGE_SIZE] = 1;	/* pages 0 and 1 present, 2 and 3 not */
	arg = (struct pm_scan_arg) {
		.size = sizeof(arg),
		.start = (uintptr_t)p,
		.end = (uintptr_t)p + len,
		.vec = (uintptr_t)r,
		.vec_len = ARRAY_SIZE(r),
		.category_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};
	n = ioctl(fd, PAGEMAP_SCAN, &arg);
	if (n < 0)
		kd_fail(kd, KD_PAGEMAP_SCAN, NULL, errno);
	else if (n != 1 || r[0].start != (uintptr_t)p || r[0].end != (uintptr_t)p + 2 * PAGE_SIZE)
		kd_set(kd, KD_PAGEMAP_SCAN, false, "wrong answer: %ld regions for 2 present pages", n);
	else
		kd_ok(kd, KD_PAGEMAP_SCAN);
	munmap(p, len);
}

static int uffd_open(struct uffdio_api *api)
{
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	if (fd < 0)
		return -errno;
	api->api = UFFD_API;
	if (ioctl(fd, UFFDIO_API, api)) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

/* UFFDIO_API may be called once per uffd: each try takes a fresh one. */
static void probe_uffd(struct kerndat *kd)
{
	struct uffdio_api api = { .features = 0 };
	struct uffdio_register reg;
	int fd = uffd_open(&api);
	void *p;

	kd_unprobed(kd, KD_UFFD_WP_ASYNC, kd_info[KD_UFFD].name);
	if (fd < 0) {
		kd_fail(kd, KD_UFFD, NULL, -fd);
		return;
	}
	close(fd);
	kd_set(kd, KD_UFFD, true, "features 0x%llx", (unsigned long long)api.features);

	api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
	fd = uffd_open(&api);
	if (fd == -EINVAL) {
		kd_set(kd, KD_UFFD_WP_ASYNC, false, "EINVAL (feature not offered)");
		return;
	}
	if (fd < 0) {
		kd_fail(kd, KD_UFFD_WP_ASYNC, NULL, -fd);
		return;
	}
	p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		kd_fail(kd, KD_UFFD_WP_ASYNC, "mmap", errno);
		goto out;
	}
	reg = (struct uffdio_register) {
		.range = { .start = (uintptr_t)p, .len = PAGE_SIZE },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		kd_fail(kd, KD_UFFD_WP_ASYNC, "register for write-protect", errno);
	else
		kd_ok(kd, KD_UFFD_WP_ASYNC);
	munmap(p, PAGE_SIZE);	/* unregisters it */
out:
	close(fd);
}

#define PM_SOFT_DIRTY	(1ULL << 55)	/* Documentation/admin-guide/mm/pagemap.rst */

static void probe_soft_dirty(struct kerndat *kd)
{
	_cleanup_close_ int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int cr = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	volatile char *p;
	uint64_t off, before = 0, after = 0;
	int ret;

	if (pm < 0) {
		kd_fail(kd, KD_SOFT_DIRTY, "open pagemap", errno);
		return;
	}
	if (cr < 0) {
		kd_fail(kd, KD_SOFT_DIRTY, "open clear_refs", errno);
		return;
	}
	p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		kd_fail(kd, KD_SOFT_DIRTY, "mmap", errno);
		return;
	}
	/* present, then clean, then dirty again: the bit must follow */
	p[0] = 1;
	if (write(cr, "4", 1) != 1) {
		kd_fail(kd, KD_SOFT_DIRTY, "clear_refs", errno);
		goto out;
	}
	off = (uintptr_t)p / PAGE_SIZE * sizeof(uint64_t);
	ret = pread_all(pm, &before, sizeof(before), off);
	p[0] = 2;
	if (!ret)
		ret = pread_all(pm, &after, sizeof(after), off);
	if (ret)
		kd_fail(kd, KD_SOFT_DIRTY, "read pagemap", -ret);
	else if (!(after & PM_SOFT_DIRTY))
		kd_set(kd, KD_SOFT_DIRTY, false, "bit 55 stays clear after a write (no CONFIG_MEM_SOFT_DIRTY)");
	else if (before & PM_SOFT_DIRTY)
		kd_set(kd, KD_SOFT_DIRTY, false, "clear_refs does not clear bit 55");
	else
		kd_ok(kd, KD_SOFT_DIRTY);
out:
	munmap((void *)p, PAGE_SIZE);
}

/* ---- network, namespaces ---- */

static void probe_tcp_repair(struct kerndat *kd)
{
	_cleanup_close_ int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int on = 1, off = 0;

	if (s < 0) {
		kd_fail(kd, KD_TCP_REPAIR, "socket", errno);
		return;
	}
	if (setsockopt(s, SOL_TCP, TCP_REPAIR, &on, sizeof(on))) {
		if (errno == EPERM)
			kd_set(kd, KD_TCP_REPAIR, false, "EPERM (needs CAP_NET_ADMIN)");
		else
			kd_fail(kd, KD_TCP_REPAIR, NULL, errno);
		return;
	}
	setsockopt(s, SOL_TCP, TCP_REPAIR, &off, sizeof(off));
	kd_ok(kd, KD_TCP_REPAIR);
}

static void probe_namespaces(struct kerndat *kd)
{
	static const struct { enum kd_feature f; const char *name, *config; } ns[] = {
		{ KD_NS_USER, "user", "USER" },		{ KD_NS_PID, "pid", "PID" },
		{ KD_NS_MNT, "mnt", NULL },		{ KD_NS_NET, "net", "NET" },
		{ KD_NS_IPC, "ipc", "IPC" },		{ KD_NS_UTS, "uts", "UTS" },
		{ KD_NS_CGROUP, "cgroup", "CGROUP" },	{ KD_NS_TIME, "time", "TIME" },
	};
	char path[64], link[64];

	for (size_t i = 0; i < ARRAY_SIZE(ns); i++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i].name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n >= 0) {
			link[n] = 0;
			kd_set(kd, ns[i].f, true, "%s", link);
		} else if (errno == ENOENT && ns[i].config) {
			kd_set(kd, ns[i].f, false, "ENOENT (kernel without CONFIG_%s_NS)", ns[i].config);
		} else {
			kd_fail(kd, ns[i].f, NULL, errno);
		}
	}
}

/* ---- cgroup freezers ---- */

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape_octal(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0');
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = 0;
}

static bool has_option(const char *opts, const char *want)
{
	size_t n = strlen(want);

	for (const char *p = opts; p; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (!strncmp(p, want, n) && (p[n] == ',' || p[n] == 0))
			return true;
	}
	return false;
}

/*
 * Find the first mount of the cgroup v1 hierarchy with the freezer and of
 * the cgroup2 hierarchy in /proc/self/mountinfo:
 *   ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
 */
static int find_cgroup_mounts(char *v1, size_t v1_len, char *v2, size_t v2_len)
{
	_cleanup_free_ char *buf = NULL;
	char *line, *save = NULL;
	int ret = read_file("/proc/self/mountinfo", &buf, NULL);

	if (ret)
		return ret;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char mnt[PATH_MAX_LEN], fstype[32], super[512];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%31s %*s %511s", fstype, super) != 2)
			continue;
		unescape_octal(mnt);
		if (!v1[0] && !strcmp(fstype, "cgroup") && has_option(super, "freezer") &&
		    strlen(mnt) < v1_len)
			strcpy(v1, mnt);
		if (!v2[0] && !strcmp(fstype, "cgroup2") && strlen(mnt) < v2_len)
			strcpy(v2, mnt);
	}
	return 0;
}

/* Can we make a cgroup under mnt, and has it the control file `file`? */
static void probe_cgroup_dir(struct kerndat *kd, enum kd_feature f, const char *mnt,
			     const char *file)
{
	char dir[PATH_MAX_LEN], ctl[PATH_MAX_LEN + 32];

	if (!mnt[0]) {
		kd_set(kd, f, false, "not mounted");
		return;
	}
	snprintf(dir, sizeof(dir), "%s/cryo-probe-%d", mnt, getpid());
	if (mkdir(dir, 0700) && !(errno == EEXIST && !rmdir(dir) && !mkdir(dir, 0700))) {
		kd_fail(kd, f, "mkdir", errno);
		return;
	}
	snprintf(ctl, sizeof(ctl), "%s/%s", dir, file);
	if (access(ctl, W_OK))
		kd_set(kd, f, false, "no writable %s in a new cgroup", file);
	else
		kd_set(kd, f, true, "%s", mnt);
	if (rmdir(dir))
		pr_warn("cannot remove the probe cgroup %s: %s", dir, strerror(errno));
}

static void probe_freezers(struct kerndat *kd)
{
	int ret = find_cgroup_mounts(kd->v1_freezer_mnt, sizeof(kd->v1_freezer_mnt),
				     kd->v2_mnt, sizeof(kd->v2_mnt));

	if (ret) {
		kd_fail(kd, KD_FREEZER_V1, "read mountinfo", -ret);
		kd_fail(kd, KD_FREEZE_V2, "read mountinfo", -ret);
		return;
	}
	probe_cgroup_dir(kd, KD_FREEZER_V1, kd->v1_freezer_mnt, "freezer.state");
	probe_cgroup_dir(kd, KD_FREEZE_V2, kd->v2_mnt, "cgroup.freeze");
}

/* ---- CPU and limits ---- */

static void probe_cpu(struct kerndat *kd)
{
	unsigned a, b, c, d;

	if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2))
		kd_ok(kd, KD_SSE42_CRC);
	else
		kd_set(kd, KD_SSE42_CRC, false, "no SSE4.2 (CPUID.1:ECX bit 20)");

	/* the size of the XSAVE area for the features enabled in XCR0 */
	if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_OSXSAVE) &&
	    __get_cpuid_count(0xd, 0, &a, &b, &c, &d))
		kd->xsave_size = b;

	/* 5-level paging: the CPU can do it and the kernel honours a high hint */
	kd->task_size = TASK_SIZE_47;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 16))) {
		void *p = mmap((void *)(1UL << 48), PAGE_SIZE, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p != MAP_FAILED) {
			if ((uintptr_t)p > TASK_SIZE_47)
				kd->task_size = TASK_SIZE_56;
			munmap(p, PAGE_SIZE);
		}
	}
}

static void probe_pipe_max(struct kerndat *kd)
{
	_cleanup_free_ char *buf = NULL;

	kd->pipe_max_size = 1 << 20;	/* the kernel's default */
	if (!read_file("/proc/sys/fs/pipe-max-size", &buf, NULL) && strtoul(buf, NULL, 10))
		kd->pipe_max_size = strtoul(buf, NULL, 10);
}

void kerndat_basics(struct kerndat *kd)
{
	if (kd->basics)
		return;
	probe_cpu(kd);
	probe_pipe_max(kd);
	kd->basics = true;
}

int kerndat_probe(struct kerndat *kd)
{
	uint64_t t0 = now_ns();

	if (kd->probed)
		return 0;
	kerndat_basics(kd);	/* before ptrace: it checks xsave_size */
	probe_ptrace(kd);
	probe_pidfd_getfd(kd);
	probe_kcmp(kd);
	probe_mm_map(kd);
	probe_clone3(kd);
	probe_map_files(kd);
	probe_pagemap_scan(kd);
	probe_uffd(kd);
	probe_soft_dirty(kd);
	probe_tcp_repair(kd);
	probe_namespaces(kd);
	probe_freezers(kd);
	kd->probed = true;
	pr_debug("probed in %llu us: task size 0x%lx, xsave %u bytes, pipe max %lu",
		 (unsigned long long)(now_ns() - t0) / 1000, kd->task_size, kd->xsave_size,
		 kd->pipe_max_size);
	return 0;
}
