/*
 * Logging. The contract (see docs in README "Errors"):
 *  - a failing function logs ONE error where the failure is known, naming
 *    what was being done to which object and why, then returns a negative
 *    errno-style value; callers only propagate it;
 *  - stderr shows errors (and warnings) as one line each; -v adds info and
 *    debug lines with file:line; -o FILE writes everything to FILE.
 * Each .c file may define LOG_PREFIX before including this header.
 */
#ifndef CRYO_LOG_H
#define CRYO_LOG_H

#include <errno.h>
#include <string.h>

enum log_level {
	LOG_ERROR = 1,
	LOG_WARN = 2,
	LOG_INFO = 3,
	LOG_DEBUG = 4,
};

#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

int log_init(int stderr_level, const char *path);
void log_fini(void);
/* the log file is closed by another process sharing the fd table: just drop it */
void log_forget(void);
int log_get_fd(void);
/* send stderr-level lines to fd instead (a restoring child: to its parent) */
void log_set_err_fd(int fd);
int log_get_err_fd(void);
/* keep the log file open at a number >= min (the restore needs low fds) */
int log_move_file_fd(int min);
int log_level(void);
/*
 * The first error logged since log_error_reset(), as one line without the
 * prefix, and its errno (0 if it had none): what went wrong, for a caller
 * that reports it elsewhere (cryo swrk's cr_errmsg and cr_errno).
 */
void log_error_reset(void);
const char *log_first_error(int *err);
/* lines a restoring child sent its parent: to stderr (or err fd), and noted */
void log_child_lines(const char *lines);
void log_errno_next(int err);
void log_msg(int level, const char *prefix, const char *file, int line,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define pr_msg(lvl, fmt, ...) \
	log_msg(lvl, LOG_PREFIX, __FILE__, __LINE__, fmt, ##__VA_ARGS__)
#define pr_err(fmt, ...)	pr_msg(LOG_ERROR, fmt, ##__VA_ARGS__)
#define pr_warn(fmt, ...)	pr_msg(LOG_WARN, fmt, ##__VA_ARGS__)
#define pr_info(fmt, ...)	pr_msg(LOG_INFO, fmt, ##__VA_ARGS__)
#define pr_debug(fmt, ...)	pr_msg(LOG_DEBUG, fmt, ##__VA_ARGS__)
/* error with strerror(errno) appended; evaluates to -errno */
#define pr_perror(fmt, ...) ({						\
	int __e = errno;						\
	log_errno_next(__e);						\
	pr_err(fmt ": %s", ##__VA_ARGS__, strerror(__e));		\
	errno = __e;							\
	-__e;								\
})

#endif
