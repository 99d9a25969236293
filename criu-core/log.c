#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/*
 * The logger is the one piece of process-wide state: every module logs and
 * threading a context through printf-like calls would buy nothing.
 */
static struct {
	int stderr_level;
	int file_fd;
	int err_fd;		/* where the stderr-level lines go */
	struct timespec start;
	char first_err[512];	/* the first error since log_error_reset() */
	int first_errno, next_errno;
} lg = { .stderr_level = LOG_WARN, .file_fd = -1, .err_fd = STDERR_FILENO };

int log_init(int stderr_level, const char *path)
{
	lg.stderr_level = stderr_level;
	/* not CLOCK_MONOTONIC: a task restored into a time namespace sees it shifted */
	clock_gettime(CLOCK_REALTIME, &lg.start);
	if (path) {
		lg.file_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
		if (lg.file_fd < 0) {
			fprintf(stderr, "cryo: cannot open log file %s: %s\n", path, strerror(errno));
			return -errno;
		}
	}
	return 0;
}

void log_fini(void)
{
	if (lg.file_fd >= 0)
		close(lg.file_fd);
	lg.file_fd = -1;
}

int log_get_fd(void)
{
	return lg.file_fd;
}

int log_level(void)
{
	return lg.file_fd >= 0 ? LOG_DEBUG : lg.stderr_level;
}

static const char *level_name[] = {
	[LOG_ERROR] = "Error", [LOG_WARN] = "Warn", [LOG_INFO] = "Info", [LOG_DEBUG] = "Debug",
};

/* nowhere to report a failure to write a log line: ignore it */
static void log_write(int fd, const char *buf, int len)
{
	ssize_t r = write(fd, buf, len);

	(void)r;
}

void log_msg(int level, const char *prefix, const char *file, int line, const char *fmt, ...)
{
	char msg[2048], out[2400];
	int saved = errno, n;
	va_list ap;

	if (level > lg.stderr_level && lg.file_fd < 0 && (level != LOG_ERROR || lg.first_err[0]))
		return;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (level == LOG_ERROR && !lg.first_err[0]) {
		size_t n = strnlen(msg, sizeof(lg.first_err) - 1);

		memcpy(lg.first_err, msg, n);
		lg.first_err[n] = 0;
		lg.first_errno = lg.next_errno;
	}
	if (level == LOG_ERROR)
		lg.next_errno = 0;

	if (level <= lg.stderr_level) {
		if (lg.stderr_level >= LOG_INFO)
			n = snprintf(out, sizeof(out), "(%s:%d) %s%s%s\n", file, line,
				     level <= LOG_WARN ? level_name[level] : "",
				     level <= LOG_WARN ? ": " : "", msg);
		else
			n = snprintf(out, sizeof(out), "cryo: %s%s\n",
				     level == LOG_WARN ? "warning: " : "", msg);
		if (n > 0)
			log_write(lg.err_fd, out, n > (int)sizeof(out) ? (int)sizeof(out) : n);
	}
	if (lg.file_fd >= 0) {
		struct timespec now;
		long us;

		clock_gettime(CLOCK_REALTIME, &now);
		us = (now.tv_sec - lg.start.tv_sec) * 1000000 + (now.tv_nsec - lg.start.tv_nsec) / 1000;
		n = snprintf(out, sizeof(out), "(%3ld.%06ld) %d %-5s %s%s (%s:%d)\n", us / 1000000, us % 1000000,
			     getpid(), level_name[level], prefix, msg, file, line);
		if (n > 0)
			log_write(lg.file_fd, out, n > (int)sizeof(out) ? (int)sizeof(out) : n);
	}
	errno = saved;
}

void log_set_err_fd(int fd)
{
	lg.err_fd = fd;
}

int log_get_err_fd(void)
{
	return lg.err_fd;
}

static int move_fd(int *fdp, int min)
{
	int fd;

	if (*fdp < 0 || *fdp >= min)
		return 0;
	fd = fcntl(*fdp, F_DUPFD_CLOEXEC, min);
	if (fd < 0)
		return -errno;
	close(*fdp);
	*fdp = fd;
	return 0;
}

int log_move_file_fd(int min)
{
	int ret = move_fd(&lg.file_fd, min);

	if (ret)
		pr_err("cannot move the log file fd above %d: %s", min, strerror(-ret));
	return ret;
}

void log_forget(void)
{
	lg.file_fd = -1;
}

void log_errno_next(int err)
{
	lg.next_errno = err;
}

void log_error_reset(void)
{
	lg.first_err[0] = 0;
	lg.first_errno = lg.next_errno = 0;
}

const char *log_first_error(int *err)
{
	if (err)
		*err = lg.first_errno;
	return lg.first_err[0] ? lg.first_err : NULL;
}

/* a line that pr_perror() ended with ": strerror(e)": e, else 0 */
static int errno_of(const char *line)
{
	size_t ll = strlen(line);

	for (int e = 1; e < 134; e++) {
		const char *s = strerror(e);
		size_t sl = strlen(s);

		if (ll > sl + 2 && !strcmp(line + ll - sl, s) && !strncmp(line + ll - sl - 2, ": ", 2))
			return e;
	}
	return 0;
}

void log_child_lines(const char *lines)
{
	static const char tag[] = "cryo: ";
	const char *l = lines;

	log_write(lg.err_fd, lines, strlen(lines));
	/* the child's first error line, as it logged it at the stderr level */
	for (; *l && !lg.first_err[0]; l += strcspn(l, "\n"), l += !!*l) {
		size_t n = strcspn(l, "\n");

		if (strncmp(l, tag, sizeof(tag) - 1) || !strncmp(l + sizeof(tag) - 1, "warning: ", 9))
			continue;
		n = MIN(n - (sizeof(tag) - 1), sizeof(lg.first_err) - 1);
		memcpy(lg.first_err, l + sizeof(tag) - 1, n);
		lg.first_err[n] = 0;
		lg.first_errno = errno_of(lg.first_err);
	}
}
