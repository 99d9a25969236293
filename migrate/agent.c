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
#include <sys/statfs.h>
#include <sys/wait.h>
#include <linux/magic.h>

#include "log.h"
#include "migrate.h"
#include "util.h"

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

int agent_restore(const char *dir, int lazy_sock, pid_t *pid, char *msg, size_t len)
{
	char out[4096], pidfile[PATH_MAX], *buf = NULL;
	uint64_t t0 = now_ns();
	size_t n = 0, blen;
	int p[2], st, ret;
	pid_t child;

	*pid = 0;
	if (pipe2(p, O_CLOEXEC)) {
		snprintf(msg, len, "pipe: %s", strerror(errno));
		return -errno;
	}
	child = fork();
	if (child < 0) {
		ret = -errno;
		snprintf(msg, len, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return ret;
	}
	if (!child) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(p[1], STDERR_FILENO);
		const char *argv[16] = { "cryo", "restore", "-D", dir, "-d", "--pidfile", "restored.pid",
					 "-o", "restore.log" };
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
	close(p[1]);
	for (;;) {
		ssize_t r = read(p[0], out + n, sizeof(out) - 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += r;
		if (n == sizeof(out) - 1)
			n = 0;	/* keep the tail: the reason comes last */
	}
	close(p[0]);
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		restore_reason(out, n, msg, len);
		return -EAGAIN;
	}
	snprintf(pidfile, sizeof(pidfile), "%s/restored.pid", dir);
	if (read_file(pidfile, &buf, &blen) || (*pid = atoi(buf)) <= 0) {
		snprintf(msg, len, "restored, but %s does not say which pid", pidfile);
		free(buf);
		return -EIO;
	}
	free(buf);
	snprintf(msg, len, "running as pid %d, restored in %lu ms", *pid, (now_ns() - t0) / 1000000);
	return 0;
}

/* pid's children, every thread's, appended to *v */
static void add_children(pid_t pid, pid_t **v, size_t *n)
{
	char path[64];
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d))) {
		char cpath[320], *buf = NULL, *s, *end;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", pid, de->d_name);
		if (read_file(cpath, &buf, &len))
			continue;
		for (s = buf; *s; s = end) {
			long c = strtol(s, &end, 10);
			pid_t *nv;

			if (end == s)
				break;
			nv = xrealloc_array(*v, *n + 1, sizeof(**v));
			if (!nv)
				break;
			*v = nv;
			(*v)[(*n)++] = c;
		}
		free(buf);
	}
	closedir(d);
}

void agent_kill_tree(pid_t root)
{
	pid_t *v = xzalloc(sizeof(*v));
	size_t n = 1;

	if (!v)
		return;
	v[0] = root;
	/* stopped first, so that none forks meanwhile; then all killed */
	for (size_t i = 0; i < n; i++) {
		kill(v[i], SIGSTOP);
		add_children(v[i], &v, &n);
	}
	for (size_t i = 0; i < n; i++)
		kill(v[i], SIGKILL);
	free(v);
}
