#define LOG_PREFIX "util: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "log.h"
#include "util.h"

void *xzalloc(size_t size)
{
	void *p = calloc(1, size ? size : 1);

	if (!p)
		pr_err("out of memory allocating %zu bytes", size);
	return p;
}

void *xrealloc_array(void *p, size_t nmemb, size_t size)
{
	void *n = reallocarray(p, nmemb ? nmemb : 1, size);

	if (!n)
		pr_err("out of memory allocating %zu x %zu bytes", nmemb, size);
	return n;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");

	if (!p)
		pr_err("out of memory");
	return p;
}

int read_file_at(int dirfd, const char *path, char **buf, size_t *len)
{
	_cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096, n = 0;
	char *b;

	if (fd < 0)
		return -errno;
	b = malloc(cap + 1);
	if (!b)
		return -ENOMEM;
	for (;;) {
		ssize_t r = read(fd, b + n, cap - n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			free(b);
			return r;
		}
		if (r == 0)
			break;
		n += r;
		if (n == cap) {
			char *nb = realloc(b, cap * 2 + 1);

			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
	}
	b[n] = 0;
	*buf = b;
	if (len)
		*len = n;
	return 0;
}

int read_file(const char *path, char **buf, size_t *len)
{
	return read_file_at(AT_FDCWD, path, buf, len);
}

int readlink_alloc(const char *path, char **out)
{
	char buf[PATH_MAX_LEN];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	if (n < 0)
		return -errno;
	buf[n] = 0;
	*out = strdup(buf);
	return *out ? 0 : -ENOMEM;
}

bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= n;
	}
	return 0;
}

int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		len -= n;
	}
	return 0;
}

int punch_hole(int fd, uint64_t off, uint64_t len)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) ? -errno : 0;
}

int reopen_rw(int fd)
{
	char path[32];
	int rw;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rw = open(path, O_WRONLY | O_CLOEXEC);
	return rw < 0 ? -errno : rw;
}

int pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int sys_pidfd_open(pid_t pid, unsigned flags)
{
	return syscall(SYS_pidfd_open, pid, flags);
}

int sys_pidfd_getfd(int pidfd, int fd, unsigned flags)
{
	return syscall(SYS_pidfd_getfd, pidfd, fd, flags);
}

long sys_kcmp(pid_t a, pid_t b, int type, unsigned long x, unsigned long y)
{
	return syscall(SYS_kcmp, a, b, type, x, y);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

int fd_move_above(int fd, int min, bool cloexec)
{
	int nfd;

	if (fd >= min)
		return fd;
	nfd = fcntl(fd, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, min);
	if (nfd < 0)
		return -errno;
	close(fd);
	return nfd;
}

struct arena_chunk {
	struct arena_chunk *next;
	size_t size, used;
	max_align_t data[];
};

#define ARENA_CHUNK (64u << 10)

void *arena_alloc(struct arena *a, size_t size)
{
	struct arena_chunk *c = a->head;
	void *p;

	size = ALIGN_UP(size ? size : 1, sizeof(max_align_t));
	if (!c || c->size - c->used < size) {
		size_t cap = MAX(size, ARENA_CHUNK);

		c = calloc(1, sizeof(*c) + cap);
		if (!c) {
			pr_err("out of memory allocating %zu bytes", size);
			return NULL;
		}
		c->size = cap;
		c->next = a->head;
		a->head = c;
	}
	p = (char *)c->data + c->used;
	c->used += size;
	return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
	size_t n = strlen(s ? s : "") + 1;
	char *p = arena_alloc(a, n);

	if (p)
		memcpy(p, s ? s : "", n);
	return p;
}

/* old (n elements of size) copied into room for n + 1; old stays in the arena */
void *arena_grow(struct arena *a, void *old, size_t n, size_t size)
{
	void *p = arena_alloc(a, (n + 1) * size);

	if (p && n)
		memcpy(p, old, n * size);
	return p;
}

void arena_free(struct arena *a)
{
	while (a->head) {
		struct arena_chunk *c = a->head;

		a->head = c->next;
		free(c);
	}
}

/* remove name under at and, if it is a directory, everything in it */
int rm_tree_at(int at, const char *name)
{
	struct dirent *de;
	int fd, ret = 0;
	DIR *d;

	if (!unlinkat(at, name, 0) || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		return ret;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			ret = rm_tree_at(dirfd(d), de->d_name) ?: ret;
	closedir(d);
	if (unlinkat(at, name, AT_REMOVEDIR))
		ret = -errno;
	return ret;
}

void close_fds_but(int from, const int *keep, int nr)
{
	int cur = from;

	for (int i = 0; i < nr; i++) {
		if (keep[i] < cur)
			continue;
		if (keep[i] > cur)
			syscall(SYS_close_range, cur, keep[i] - 1, 0);
		cur = keep[i] + 1;
	}
	syscall(SYS_close_range, cur, ~0U, 0);
}

ssize_t sendmsg_fd(int sock, struct iovec *iov, int iovlen, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = iovlen };

	if (fd >= 0) {
		struct cmsghdr *c;

		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

ssize_t recvmsg_fd(int sock, struct iovec *iov, int iovlen, int *fd, int flags)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = iovlen, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);

	*fd = -1;
	for (struct cmsghdr *c = n < 0 ? NULL : CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}
