/*
 * The target's side of a migration: restore the last round the driver
 * sent, and kill what was restored if the driver never commits.
 *
 * The restore is cryo's own, run as a child (cryo restore -d), so that the
 * agent stays clean whatever happens to it: the child's stderr is the
 * reason the driver hears when it fails, and a failed restore leaves no
 * task behind.
 */
#define LOG_PREFIX "agent: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <stdint.h>

#include "log.h"
#include "migrate.h"
#include "proc.h"
#include "util.h"

/* where cryo restore writes the pid: a name no peer can send (it begins with '.') */
#define AGENT_PIDFILE	".restored.pid"

/* cryo's lines on stderr, "cryo: " dropped, joined with "; " */
static void restore_reason(const char *out, size_t n, char *msg, size_t len)
{
	size_t used = 0;

	msg[0] = 0;
	while (n && used + 1 < len) {
		const char *nl = memchr(out, '\n', n);
		size_t ll = nl ? (size_t)(nl - out) : n;
		const char *line = out;

		out += ll + !!nl;
		n -= ll + !!nl;
		if (ll > 6 && !strncmp(line, "cryo: ", 6)) {
			line += 6;
			ll -= 6;
		}
		if (!ll)
			continue;
		used += snprintf(msg + used, len - used, "%s%.*s", used ? "; " : "", (int)ll, line);
	}
	if (!msg[0])
		snprintf(msg, len, "cryo restore failed without saying why");
}

bool agent_images_in_memory(const char *dir)
{
	struct statfs st;

	return !statfs(dir, &st) && (st.f_type == TMPFS_MAGIC || st.f_type == RAMFS_MAGIC);
}

/* gone, or dead and not reaped yet (a zombie holds its pid: it is not used again meanwhile) */
static bool dead(pid_t pid)
{
	char path[64], *buf = NULL, *paren;
	size_t len;
	bool z;

	if (kill(pid, 0) && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_file(path, &buf, &len))
		return true;
	paren = strrchr(buf, ')');
	z = paren && (paren[2] == 'Z' || paren[2] == 'X');
	free(buf);
	return z;
}

int agent_kill_tree(pid_t root)
{
	uint64_t until = now_ns() + 10 * 1000000000ULL;
	pid_t *v = NULL;
	size_t n = 0, left;

	/* stopped first, so that none forks meanwhile; then all killed */
	if (proc_stop_tree(root, &v, &n)) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		kill(v[i], SIGKILL);
	/* and gone before anyone hears that it is: the dead come to this subreaper, which reaps them */
	do {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		left = 0;
		for (size_t i = 0; i < n; i++)
			left += !dead(v[i]);
		if (left)
			usleep(10000);
	} while (left && now_ns() < until);
	if (left)
		pr_err("pid %d: %zu of the %zu processes of its tree are still there after SIGKILL", root, left, n);
	free(v);
	return left ? -ETIMEDOUT : 0;
}

/*
 * Every tree this process is the parent of (the agent is a subreaper: a
 * restored tree's root comes to it once cryo restore exits), killed: a
 * restore that failed, or whose pid is not known for sure, leaves nothing.
 */
static int kill_restored(pid_t guardian)
{
	_cleanup_free_ pid_t *v = NULL;
	int n = 0, ret = 0;

	if (proc_list_children(getpid(), &v, &n))
		return -EIO;
	for (int i = 0; i < n; i++) {
		if (v[i] == guardian)
			continue;
		pr_warn("killing pid %d, which the failed restore left", v[i]);
		ret = agent_kill_tree(v[i]) ?: ret;
	}
	return ret;
}

/* is pid a child of this process (the root of what the restore left)? */
static bool own_child(pid_t pid)
{
	_cleanup_free_ pid_t *v = NULL;
	int n = 0;

	if (proc_list_children(getpid(), &v, &n))
		return false;
	for (int i = 0; i < n; i++)
		if (v[i] == pid)
			return true;
	return false;
}

/* cryo restore -d of dir, as a child whose stderr comes back on err_fd */
static pid_t run_restore(const char *dir, int lazy_sock, int err_fd)
{
	pid_t child = fork();

	if (child)
		return child;
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	dup2(null, STDIN_FILENO);
	dup2(null, STDOUT_FILENO);
	dup2(err_fd, STDERR_FILENO);
	const char *argv[16] = { "cryo", "restore", "-D", dir, "-d", "--pidfile", AGENT_PIDFILE, "-o", "restore.log" };
	int argc = 9;

	if (agent_images_in_memory(dir))
		argv[argc++] = "--auto-dedup";
	if (lazy_sock >= 0) {
		/* post-copy: the tasks' userfaultfds come back to the agent on fd 3 */
		if (lazy_sock == 3)
			fcntl(3, F_SETFD, 0);
		else
			dup2(lazy_sock, 3);
		argv[argc++] = "--lazy-pages";
		argv[argc++] = "--lazy-sock";
		argv[argc++] = "3";
	}
	execv("/proc/self/exe", (char *const *)argv);
	dprintf(STDERR_FILENO, "cryo: cannot run cryo restore: %s\n", strerror(errno));
	_exit(127);
}

/* the restore's stderr, its tail kept: the reason comes last */
static size_t read_reason(int fd, char *out, size_t size)
{
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, out + n, size - 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += r;
		if (n == size - 1)
			n = 0;
	}
	return n;
}

/* the pid the restore wrote: 0 and *pid, or -errno with msg saying why */
static int restored_pid(const char *dir, pid_t *pid, char *msg, size_t len)
{
	char pidfile[PATH_MAX], *buf = NULL, *end;
	size_t blen;
	long v;
	int ret;

	snprintf(pidfile, sizeof(pidfile), "%s/%s", dir, AGENT_PIDFILE);
	ret = read_file(pidfile, &buf, &blen);
	if (ret) {
		snprintf(msg, len, "restored, but its pid file %s cannot be read (%s)", pidfile, strerror(-ret));
		return ret;
	}
	v = strtol(buf, &end, 10);
	ret = end == buf || (*end && *end != '\n') || v <= 0 || v > INT32_MAX ? -EINVAL : 0;
	free(buf);
	if (ret) {
		snprintf(msg, len, "restored, but its pid file %s does not hold a pid", pidfile);
		return ret;
	}
	if (!own_child(v)) {
		snprintf(msg, len, "restored, but the pid its pid file names (%ld) is not the tree it left here", v);
		return -ESRCH;
	}
	*pid = v;
	return 0;
}

int agent_restore(const char *dir, int lazy_sock, pid_t guardian, pid_t *pid, char *msg, size_t len)
{
	char out[4096];
	uint64_t t0 = now_ns();
	size_t n;
	int p[2], st, ret;
	pid_t child;

	*pid = 0;
	/* the restored tree's root comes to this process once cryo restore exits: it is known for sure */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1)) {
		snprintf(msg, len, "cannot become a subreaper: %s", strerror(errno));
		return -errno;
	}
	if (pipe2(p, O_CLOEXEC)) {
		snprintf(msg, len, "pipe: %s", strerror(errno));
		return -errno;
	}
	child = run_restore(dir, lazy_sock, p[1]);
	if (child < 0) {
		ret = -errno;
		snprintf(msg, len, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return ret;
	}
	close(p[1]);
	n = read_reason(p[0], out, sizeof(out));
	close(p[0]);
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		restore_reason(out, n, msg, len);
		ret = -EAGAIN;
	} else {
		ret = restored_pid(dir, pid, msg, len);
	}
	if (ret) {
		/* whatever it left runs no more, before the driver hears of the failure (its source resumes) */
		*pid = 0;
		if (kill_restored(guardian)) {
			size_t ml = strlen(msg);

			snprintf(msg + ml, len - ml, "; and what it left could not all be killed");
		}
		return ret;
	}
	snprintf(msg, len, "running as pid %d, restored in %lu ms", *pid, (now_ns() - t0) / 1000000);
	return 0;
}
