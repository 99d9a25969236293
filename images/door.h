/*
 * The door: every name and path that comes from outside cryo (an image
 * file, an RPC request, a network peer) goes through here before cryo
 * uses it, and is opened beneath the directory it belongs to, never from
 * the host's /.
 *
 * The checks refuse, with one error line naming the object and the
 * reason, and before anything was done with the value:
 *   - an empty value, or one longer than the limit given;
 *   - a NUL byte inside a value whose length is known (bytes fields);
 *   - '.' and '..' components and empty ones ("a//b"), in names and paths;
 *   - a '/' in a name; a leading '/' in a relative path, none in an
 *     absolute one;
 *   - a control character in text that is not a path (door_text);
 *   - a value not in the list of those cryo knows (door_oneof);
 *   - a node path through a symlink an earlier record made (door_not_via).
 * `what` (a printf format) names the object as the user knows it, e.g.
 * "cgroup.img record 3: path", and goes at the head of the error:
 *
 *	cgroup.img record 3: path '/../x' is refused: it has a '..' component
 *
 * A check of a caller's own (a flag, a mode) says it the same way through
 * door_refuse. Restore's validation pass (criu-core/include/validate.h)
 * runs these over every image before anything is made.
 *
 * The openers resolve with openat2(2): beneath the directory fd given
 * (RESOLVE_BENEATH, or RESOLVE_IN_ROOT where absolute symlinks inside are
 * the directory's own), never through a magic link (/proc/PID/fd/...),
 * and with DOOR_NO_SYMLINKS through no symlink at all. A path that tries
 * to leave the directory fails with EXDEV and an error saying so.
 */
#ifndef CRYO_DOOR_H
#define CRYO_DOOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define DOOR_NAME_MAX	255		/* one component, as NAME_MAX */
#define DOOR_PATH_MAX	4095		/* a path, as PATH_MAX without its NUL */

/* one component: no '/', not "." nor ".." */
int door_name(const char *s, size_t max, const char *what, ...) __attribute__((format(printf, 3, 4)));
/* components joined by single '/', none "." or "..", no leading '/' ("" refused) */
int door_relpath(const char *s, size_t max, const char *what, ...) __attribute__((format(printf, 3, 4)));
/* "/" or "/" followed by a relative path as above (a trailing '/' is refused too) */
int door_abspath(const char *s, size_t max, const char *what, ...) __attribute__((format(printf, 3, 4)));
/* a network device name as the kernel takes it: 1..15 bytes, no '/', ':' or white space, not . or .. */
int door_ifname(const char *s, const char *what, ...) __attribute__((format(printf, 2, 3)));
/* bytes (len known) that are to be used as a C string: no NUL inside, at most max */
int door_bytes_str(const void *p, size_t len, size_t max, const char *what, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * text that is not a path nor a name (a value to write, a host name, a key
 * to look up): there, at most max bytes (empty allowed), no control
 * character but tab
 */
int door_text(const char *s, size_t max, const char *what, ...) __attribute__((format(printf, 3, 4)));
/*
 * a path cryo follows as the one who gave it meant (a request's parent
 * images directory, "../1"): relative or absolute, '..' allowed, no empty
 * component and no '.' one
 */
int door_path(const char *s, size_t max, const char *what, ...) __attribute__((format(printf, 3, 4)));
/*
 * relative path is not link, a symlink an earlier record made, nor beneath
 * it (a node of a tmpfs image must not be made through another one)
 */
int door_not_via(const char *path, const char *link, const char *what, ...) __attribute__((format(printf, 3, 4)));
/* s is one of the NULL-terminated list allowed */
int door_oneof(const char *s, const char *const *allowed, const char *what, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * A value refused by a check of the caller's own (a flag, a mode, a
 * length), said as the checks above say it: "WHAT 'VALUE' is refused:
 * WHY". -EINVAL.
 */
int door_refuse(const char *value, const char *why, const char *what, ...) __attribute__((format(printf, 3, 4)));

/* how the openers resolve (flags, or'ed) */
#define DOOR_BENEATH		0u	/* beneath dirfd; an absolute path is taken from dirfd */
#define DOOR_IN_ROOT		1u	/* dirfd is a root: absolute symlinks resolve inside it */
#define DOOR_NO_SYMLINKS	2u	/* no symlink at all on the way (nor the last one) */
#define DOOR_QUIET_ENOENT	4u	/* a missing file is not logged (still -ENOENT) */

/*
 * openat2(dirfd, path, flags, mode) resolved as how says; path relative or
 * absolute (then taken from dirfd). An fd, or -errno (logged, naming what).
 */
int door_open(int dirfd, const char *path, int flags, mode_t mode, unsigned how, const char *what, ...)
	__attribute__((format(printf, 6, 7)));
/*
 * mkdir -p beneath dirfd, no component through a symlink: an O_DIRECTORY fd
 * of the last component, or -errno (logged). *made (if given): whether the
 * last component was made here.
 */
int door_mkdirs(int dirfd, const char *path, mode_t mode, bool *made, const char *what, ...)
	__attribute__((format(printf, 5, 6)));
/*
 * The directory path's last component goes into, opened beneath dirfd
 * with no symlink on the way (O_PATH|O_DIRECTORY), for the *at() call that
 * makes or removes that component; *last points into path. An fd, or
 * -errno (logged).
 */
int door_parent(int dirfd, const char *path, const char **last, const char *what, ...)
	__attribute__((format(printf, 4, 5)));
/*
 * As door_parent, resolved as how says (DOOR_IN_ROOT: a container's root,
 * whose own symlinks are followed inside it; DOOR_NO_SYMLINKS: none).
 */
int door_parent_how(int dirfd, const char *path, unsigned how, const char **last, const char *what, ...)
	__attribute__((format(printf, 5, 6)));

/*
 * s printable for an error message, non-printable bytes as \xNN, "..." if
 * cut: as many bytes as len holds at 4 each (DOOR_QUOTE_LEN: 64)
 */
const char *door_quote(const char *s, char *buf, size_t len);
#define DOOR_QUOTE_LEN	(64 * 4 + 8)

#endif
