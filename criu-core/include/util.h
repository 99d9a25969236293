#ifndef CRYO_UTIL_H
#define CRYO_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/uio.h>

#define PAGE_SHIFT	12	/* spelled as in <sys/user.h> */
#define PAGE_SIZE	(1UL << PAGE_SHIFT)
#define PAGE_ALIGN(x)	(((x) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
#define ALIGN_UP(x, a)	(((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)	((a) < (b) ? (a) : (b))
#define MAX(a, b)	((a) > (b) ? (a) : (b))
#define PATH_MAX_LEN	4096

/* ownership helpers for __attribute__((cleanup)) */
static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); *fd = -1; }
static inline void fclosep(FILE **f) { if (*f) fclose(*f); *f = NULL; }
#define _cleanup_free_	 __attribute__((cleanup(freep)))
#define _cleanup_close_	 __attribute__((cleanup(closep)))
#define _cleanup_fclose_ __attribute__((cleanup(fclosep)))
#define steal_ptr(p)	({ __typeof__(p) __t = (p); (p) = NULL; __t; })
#define steal_fd(fd)	({ int __t = (fd); (fd) = -1; __t; })

void *xzalloc(size_t size);
void *xrealloc_array(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);

/* Read a whole small file (e.g. under /proc) into a NUL-terminated buffer. */
int read_file_at(int dirfd, const char *path, char **buf, size_t *len);
int read_file(const char *path, char **buf, size_t *len);
/* readlink into an allocated string */
int readlink_alloc(const char *path, char **out);
bool ends_with(const char *s, const char *suffix);
int write_all(int fd, const void *buf, size_t len);
int read_all(int fd, void *buf, size_t len);
/* remove name under dirfd, a directory with everything in it: 0 or -errno */
int rm_tree_at(int dirfd, const char *name);
int pread_all(int fd, void *buf, size_t len, off_t off);
/* free [off, off + len) of a file, its size kept: 0 or -errno */
int punch_hole(int fd, uint64_t off, uint64_t len);
/* the file of fd opened again for writing (to punch holes in): an fd or -errno */
int reopen_rw(int fd);

/* raw syscalls glibc 2.36 lacks wrappers for */
int sys_pidfd_open(pid_t pid, unsigned flags);
int sys_pidfd_getfd(int pidfd, int fd, unsigned flags);
long sys_kcmp(pid_t a, pid_t b, int type, unsigned long x, unsigned long y);

uint64_t now_ns(void);
/* move fd to a number >= min, closing the old one; returns the new fd */
int fd_move_above(int fd, int min, bool cloexec);
/* close every fd >= from except the keep ones (sorted) */
void close_fds_but(int from, const int *keep, int nr);


/*
 * A bump allocator for the protobuf messages a dump builds: everything is
 * freed at once with arena_free. Allocations are zeroed.
 */
struct arena_chunk;
struct arena {
	struct arena_chunk *head;
};
void *arena_alloc(struct arena *a, size_t size);
char *arena_strdup(struct arena *a, const char *s);
void *arena_grow(struct arena *a, void *old, size_t n, size_t size);
void arena_free(struct arena *a);
#define arena_new(a, type)		((type *)arena_alloc(a, sizeof(type)))
#define arena_array(a, type, n)		((type *)arena_alloc(a, sizeof(type) * (n)))

/* sendmsg() of iov with fd passed along (SCM_RIGHTS) if >= 0, MSG_NOSIGNAL */
ssize_t sendmsg_fd(int sock, struct iovec *iov, int iovlen, int fd);
/* recvmsg with one fd (SCM_RIGHTS, close-on-exec) taken into *fd, or -1 there */
ssize_t recvmsg_fd(int sock, struct iovec *iov, int iovlen, int *fd, int flags);

#endif
