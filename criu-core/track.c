/*
 * Dirty-page tracking (track.h).
 *
 * A userfaultfd belongs to the address space of the process that made it,
 * so the task itself makes one, by a syscall the parasite runs. cryo takes
 * a reference with pidfd_getfd and does the rest from outside:
 * UFFDIO_API with UFFD_FEATURE_WP_ASYNC (the kernel resolves write faults
 * itself, only clearing the page's write-protect bit) and
 * UFFD_FEATURE_WP_UNPOPULATED (needed for anonymous memory), then
 * UFFDIO_REGISTER_MODE_WP over each private VMA. PAGEMAP_SCAN with
 * PM_SCAN_WP_MATCHING then reports each page as written (PAGE_IS_WRITTEN)
 * or not since the last scan and write-protects it again (mem.c).
 *
 * The task's copy is parked at a high fd (F_DUPFD_CLOEXEC) so that the
 * tracking outlives this cryo: the next `cryo pre-dump` or `cryo dump
 * --prev-images-dir` takes it over from the number the inventory names,
 * and the final dump closes it in the task before its fds are read.
 */
#define LOG_PREFIX "track: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "compat.h"
#include "infect.h"
#include "guard.h"
#include "log.h"
#include "proc.h"
#include "track.h"
#include "util.h"

#define TRACK_FEATURES	(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

bool track_fd_is_uffd(pid_t pid, int fd)
{
	_cleanup_free_ char *link = NULL;
	char name[32];

	snprintf(name, sizeof(name), "fd/%d", fd);
	return !proc_readlink(pid, name, &link) && !strcmp(link, "anon_inode:[userfaultfd]");
}

static int grab(pid_t pid, int task_fd)
{
	_cleanup_close_ int pidfd = sys_pidfd_open(pid, 0);
	int fd;

	if (pidfd < 0)
		return pr_perror("pid %d: pidfd_open", pid);
	fd = sys_pidfd_getfd(pidfd, task_fd, 0);
	if (fd < 0)
		return pr_perror("pid %d: cannot take its tracker at fd %d", pid, task_fd);
	return fd;
}

int track_take(pid_t pid, int task_fd, struct track *tr)
{
	int fd;

	*tr = (struct track){ .uffd = -1, .task_fd = -1 };
	if (!track_fd_is_uffd(pid, task_fd)) {
		pr_info("pid %d: its tracker at fd %d is gone: its pages are all dumped again", pid, task_fd);
		return -ENOENT;
	}
	fd = grab(pid, task_fd);
	if (fd < 0)
		return fd;
	tr->uffd = fd;
	tr->task_fd = task_fd;
	return 0;
}

/* the lowest fd the tracker may be parked at: well above what the task uses */
static long park_base(pid_t pid)
{
	struct proc_rlimit lim[PROC_NR_RLIMITS];

	if (proc_read_limits(pid, lim) || lim[RLIMIT_NOFILE].cur < 64)
		return 3;
	return lim[RLIMIT_NOFILE].cur - 32;
}

/*
 * Trackers cryo parked in the task: userfaultfds in write-protect async
 * mode, close-on-exec, in the top fds where cryo parks them. Some may be
 * left from a chain of pre-dumps that was given up, or inherited by a
 * child from its parent.
 */
int track_find_parked(pid_t pid, int *out, int max)
{
	_cleanup_free_ int *fds = NULL;
	long base = park_base(pid);
	int nr, n = 0;

	if (proc_list_fds(pid, &fds, &nr))
		return 0;
	for (int i = 0; i < nr && n < max; i++) {
		_cleanup_free_ char *text = NULL;
		unsigned long long api, features;
		unsigned flags;
		const char *p;

		if (fds[i] < base || !track_fd_is_uffd(pid, fds[i]) ||
		    proc_fdinfo(pid, fds[i], NULL, &flags, &text) || !(flags & O_CLOEXEC))
			continue;
		p = strstr(text, "API:");
		if (p && sscanf(p, "API:\t%llx:%llx", &api, &features) == 2 &&
		    (features & TRACK_FEATURES) == TRACK_FEATURES)
			out[n++] = fds[i];
	}
	return n;
}

int track_create(struct parasite_ctl *ctl, struct track *tr)
{
	struct uffdio_api api = { .api = UFFD_API, .features = TRACK_FEATURES };
	pid_t pid = ctl->pid;
	struct guard_entry *ge;
	long fd, parked, r;

	*tr = (struct track){ .uffd = -1, .task_fd = -1, .fresh = true };
	/* user faults only: an unprivileged task may make that one; async WP needs no more */
	if (parasite_syscall(ctl, __NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0, 0, 0, &fd))
		return -EIO;
	if (fd < 0) {
		pr_err("pid %d: cannot make a userfaultfd in it to track its writes: %s", pid, strerror(-fd));
		return (int)fd;
	}
	/* in the task's own fd range until parked: the guardian closes it should cryo die meanwhile */
	ge = guard_task_fd(ctl->g, pid, fd);
	if (parasite_syscall(ctl, __NR_fcntl, fd, F_DUPFD_CLOEXEC, park_base(pid), 0, &parked) ||
	    parasite_syscall(ctl, __NR_close, fd, 0, 0, 0, &r)) {
		guard_done(ge);
		return -EIO;
	}
	guard_done(ge);
	if (parked < 0) {
		pr_err("pid %d: no free fd to park its tracker at: %s", pid, strerror(-parked));
		return (int)parked;
	}
	tr->task_fd = parked;
	tr->uffd = grab(pid, parked);
	if (tr->uffd < 0 || ioctl(tr->uffd, UFFDIO_API, &api)) {
		if (tr->uffd >= 0)
			pr_perror("pid %d: UFFDIO_API with write-protect async mode", pid);
		track_unpark(ctl, tr);
		track_close(tr);
		return -EIO;
	}
	if ((api.features & TRACK_FEATURES) != TRACK_FEATURES) {
		pr_err("pid %d: the kernel has no userfaultfd write-protect async mode (features %#llx)", pid,
		       (unsigned long long)api.features);
		track_unpark(ctl, tr);
		track_close(tr);
		return -ENOTSUP;
	}
	pr_debug("pid %d: tracker made, parked at fd %ld", pid, parked);
	return 0;
}

int track_unpark(struct parasite_ctl *ctl, struct track *tr)
{
	long r;

	if (tr->task_fd < 0)
		return 0;
	if (parasite_syscall(ctl, __NR_close, tr->task_fd, 0, 0, 0, &r))
		return -EIO;
	if (r)
		pr_warn("pid %d: closing its tracker at fd %d: %s", ctl->pid, tr->task_fd, strerror(-r));
	tr->task_fd = -1;
	return 0;
}

void track_close(struct track *tr)
{
	if (tr->uffd >= 0)
		close(tr->uffd);
	tr->uffd = -1;
}

int track_register(struct track *tr, pid_t pid, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = end - start },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(tr->uffd, UFFDIO_REGISTER, &reg)) {
		int err = errno;

		pr_info("pid %d: VMA %lx-%lx cannot be tracked (%s): its pages are dumped whole", pid,
			(unsigned long)start, (unsigned long)end, strerror(err));
		return -err;
	}
	return 0;
}
