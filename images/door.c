/*
 * The one door for names and paths from images, requests and peers
 * (door.h says what it refuses and how it opens).
 */
#define LOG_PREFIX ""
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "door.h"
#include "log.h"

const char *door_quote(const char *s, char *buf, size_t len)
{
	size_t o = 0, i, most = len > 8 ? (len - 8) / 4 : 0;

	if (!s)
		return "(none)";
	for (i = 0; s[i] && i < most && o + 8 < len; i++) {
		unsigned char c = s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = c;
		else
			o += snprintf(buf + o, len - o, "\\x%02x", c);
	}
	if (s[i] && o + 4 < len)
		o += snprintf(buf + o, len - o, "...");
	buf[o < len ? o : len - 1] = 0;
	return buf;
}

/* one error: "WHAT 'VALUE' is refused: WHY" */
static int refuse(const char *s, const char *why, const char *what, va_list ap)
{
	char obj[512], q[DOOR_QUOTE_LEN];

	vsnprintf(obj, sizeof(obj), what, ap);
	pr_err("%s '%s' is refused: %s", obj, door_quote(s, q, sizeof(q)), why);
	return -EINVAL;
}

/* why s (of known length) is not a clean sequence of components, or NULL; '..' if dotdot */
static const char *components(const char *s, size_t n, bool dotdot)
{
	const char *p = s, *end = s + n;

	while (p < end) {
		const char *slash = memchr(p, '/', end - p);
		size_t cl = (slash ? slash : end) - p;

		if (cl == 0)
			return "it has an empty component ('//' or a trailing '/')";
		if (cl == 2 && p[0] == '.' && p[1] == '.' && !dotdot)
			return "it has a '..' component";
		if (cl == 1 && p[0] == '.')
			return "it has a '.' component";
		if (cl > DOOR_NAME_MAX)
			return "a component is longer than 255 bytes";
		if (!slash)
			break;
		p = slash + 1;
		if (p == end)
			return "it has an empty component ('//' or a trailing '/')";
	}
	return NULL;
}

/* the checks every value passes: there, not empty, not too long */
static const char *bad_value(const char *s, size_t max, size_t *n)
{
	if (!s)
		return "it is missing";
	*n = strnlen(s, max + 1);
	if (!*n)
		return "it is empty";
	if (*n > max)
		return "it is too long";
	return NULL;
}

#define DOOR_CHECK(s, why, what)					\
	({								\
		int __r = 0;						\
		if (why) {						\
			va_list ap;					\
			va_start(ap, what);				\
			__r = refuse(s, why, what, ap);			\
			va_end(ap);					\
		}							\
		__r;							\
	})

int door_name(const char *s, size_t max, const char *what, ...)
{
	size_t n = 0;
	const char *why = bad_value(s, max, &n);

	if (!why && memchr(s, '/', n))
		why = "a name cannot hold a '/'";
	if (!why)
		why = components(s, n, false);
	return DOOR_CHECK(s, why, what);
}

int door_relpath(const char *s, size_t max, const char *what, ...)
{
	size_t n = 0;
	const char *why = bad_value(s, max, &n);

	if (!why && s[0] == '/')
		why = "it must be relative (it begins with '/')";
	if (!why)
		why = components(s, n, false);
	return DOOR_CHECK(s, why, what);
}

int door_abspath(const char *s, size_t max, const char *what, ...)
{
	size_t n = 0;
	const char *why = bad_value(s, max, &n);

	if (!why && s[0] != '/')
		why = "it must be absolute (begin with '/')";
	if (!why && n > 1)
		why = components(s + 1, n - 1, false);
	return DOOR_CHECK(s, why, what);
}

int door_ifname(const char *s, const char *what, ...)
{
	size_t n = 0;
	const char *why = bad_value(s, 15, &n);

	for (size_t i = 0; !why && i < n; i++)
		if (s[i] == '/' || s[i] == ':' || s[i] <= ' ' || s[i] == 0x7f)
			why = "a device name cannot hold '/', ':', white space or control characters";
	if (!why && (!strcmp(s, ".") || !strcmp(s, "..")))
		why = "a device name cannot be '.' or '..'";
	return DOOR_CHECK(s, why, what);
}

int door_bytes_str(const void *p, size_t len, size_t max, const char *what, ...)
{
	char shown[80];
	const char *why = NULL;

	snprintf(shown, sizeof(shown), "%.*s", (int)(len < 64 ? len : 64), (const char *)(p ? p : ""));
	if (!p || !len)
		why = "it is empty";
	else if (len > max)
		why = "it is too long";
	else if (memchr(p, 0, len))
		why = "it holds a NUL byte";
	return DOOR_CHECK(shown, why, what);
}

int door_text(const char *s, size_t max, const char *what, ...)
{
	const char *why = NULL;
	size_t n = 0;

	if (!s)
		why = "it is missing";
	else if ((n = strnlen(s, max + 1)) > max)
		why = "it is too long";
	for (size_t i = 0; !why && i < n; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			why = "it holds a control character";
	return DOOR_CHECK(s, why, what);
}

int door_path(const char *s, size_t max, const char *what, ...)
{
	size_t n = 0;
	const char *why = bad_value(s, max, &n);

	if (!why && n > 1)
		why = s[0] == '/' ? components(s + 1, n - 1, true) : components(s, n, true);
	return DOOR_CHECK(s, why, what);
}

int door_not_via(const char *path, const char *link, const char *what, ...)
{
	size_t ll = strlen(link);
	char buf[DOOR_QUOTE_LEN + 64], q[DOOR_QUOTE_LEN];
	const char *why = buf;

	if (strncmp(path, link, ll) || (path[ll] && path[ll] != '/'))
		return 0;
	snprintf(buf, sizeof(buf), "it goes through '%s', a symbolic link made before it", door_quote(link, q, sizeof(q)));
	return DOOR_CHECK(path, why, what);
}

int door_refuse(const char *value, const char *why, const char *what, ...)
{
	return DOOR_CHECK(value, why, what);
}

int door_oneof(const char *s, const char *const *allowed, const char *what, ...)
{
	const char *why = "it is not one cryo knows";

	for (size_t i = 0; s && allowed[i]; i++)
		if (!strcmp(s, allowed[i]))
			why = NULL;
	return DOOR_CHECK(s, why, what);
}

/* an error of the openers: EXDEV and ELOOP from openat2 are an escape, said as such */
static int open_failed(const char *path, int err, const char *what, va_list ap)
{
	/* a path that was to be opened: shown whole, as far as a line goes */
	char obj[512], q[1024 * 4 + 8];
	const char *why = strerror(err);

	vsnprintf(obj, sizeof(obj), what, ap);
	if (err == EXDEV)
		why = "it leads outside the directory it belongs to";
	else if (err == ELOOP)
		why = "it goes through a symbolic link";
	log_errno_next(err);
	pr_err("%s '%s': %s", obj, door_quote(path, q, sizeof(q)), why);
	return -err;
}

static int openat2_how(int dirfd, const char *path, int flags, mode_t mode, unsigned how)
{
	struct open_how oh = {
		.flags = (unsigned)flags | O_CLOEXEC,
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_NO_MAGICLINKS,
	};
	int fd;

	oh.resolve |= (how & DOOR_IN_ROOT) ? RESOLVE_IN_ROOT : RESOLVE_BENEATH;
	if (how & DOOR_NO_SYMLINKS)
		oh.resolve |= RESOLVE_NO_SYMLINKS;
	while (*path == '/')
		path++;
	if (!*path)
		path = ".";
	do
		fd = syscall(SYS_openat2, dirfd, path, &oh, sizeof(oh));
	while (fd < 0 && errno == EAGAIN);
	return fd < 0 ? -errno : fd;
}

int door_open(int dirfd, const char *path, int flags, mode_t mode, unsigned how, const char *what, ...)
{
	int fd = openat2_how(dirfd, path, flags, mode, how);

	if (fd >= 0 || (fd == -ENOENT && (how & DOOR_QUIET_ENOENT)))
		return fd;
	va_list ap;
	va_start(ap, what);
	fd = open_failed(path, -fd, what, ap);
	va_end(ap);
	return fd;
}

int door_mkdirs(int dirfd, const char *path, mode_t mode, bool *made, const char *what, ...)
{
	char comp[DOOR_NAME_MAX + 1];
	const char *p = path;
	int cur, err = 0;

	if (made)
		*made = false;
	cur = openat2_how(dirfd, ".", O_PATH | O_DIRECTORY, 0, DOOR_BENEATH);
	while (cur >= 0 && *p) {
		size_t cl;
		int next;

		while (*p == '/')
			p++;
		cl = strcspn(p, "/");
		if (!cl)
			break;
		if (cl > DOOR_NAME_MAX) {
			err = ENAMETOOLONG;
			break;
		}
		memcpy(comp, p, cl);
		comp[cl] = 0;
		p += cl;
		if (made)
			*made = false;
		if (mkdirat(cur, comp, mode) == 0) {
			if (made)
				*made = true;
		} else if (errno != EEXIST) {
			err = errno;
			break;
		}
		next = openat2_how(cur, comp, O_PATH | O_DIRECTORY, 0, DOOR_BENEATH | DOOR_NO_SYMLINKS);
		close(cur);
		cur = next;
	}
	if (cur < 0 && !err)
		err = -cur;
	if (err) {
		va_list ap;

		if (cur >= 0)
			close(cur);
		va_start(ap, what);
		cur = open_failed(path, err, what, ap);
		va_end(ap);
	}
	return cur;
}

static int parent_open(int dirfd, const char *path, unsigned how, const char **last, const char *what, va_list ap)
{
	char dir[DOOR_PATH_MAX + 1];
	const char *slash = strrchr(path, '/');
	int fd;

	*last = slash ? slash + 1 : path;
	if ((size_t)(*last - path) > DOOR_PATH_MAX) {
		fd = -ENAMETOOLONG;
	} else if (!**last) {
		fd = -EISDIR;	/* "a/" or "/": no last component to make */
	} else {
		snprintf(dir, sizeof(dir), "%.*s", (int)(*last - path), path);
		fd = openat2_how(dirfd, dir, O_PATH | O_DIRECTORY, 0, how & ~DOOR_QUIET_ENOENT);
	}
	return fd >= 0 ? fd : open_failed(path, -fd, what, ap);
}

int door_parent(int dirfd, const char *path, const char **last, const char *what, ...)
{
	va_list ap;
	int fd;

	va_start(ap, what);
	fd = parent_open(dirfd, path, DOOR_BENEATH | DOOR_NO_SYMLINKS, last, what, ap);
	va_end(ap);
	return fd;
}

int door_parent_how(int dirfd, const char *path, unsigned how, const char **last, const char *what, ...)
{
	va_list ap;
	int fd;

	va_start(ap, what);
	fd = parent_open(dirfd, path, how, last, what, ap);
	va_end(ap);
	return fd;
}
