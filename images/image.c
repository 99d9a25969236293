#define LOG_PREFIX "image: "
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "image.h"
#include "log.h"
#include "util.h"

const struct img_desc img_descs[IMG__MAX] = {
	[IMG_INVENTORY]	= { "inventory.img",	"INVT", IMG_FORMAT_VERSION, &inventory_entry__descriptor },
	[IMG_PSTREE]	= { "pstree.img",	"PSTR", IMG_FORMAT_VERSION, &pstree_entry__descriptor },
	[IMG_CORE]	= { "core-%u.img",	"CORE", IMG_FORMAT_VERSION, &core_entry__descriptor },
	[IMG_MM]	= { "mm-%u.img",	"MM  ", IMG_FORMAT_VERSION, &mm_entry__descriptor },
	[IMG_PAGEMAP]	= { "pagemap-%u.img",	"PMAP", IMG_FORMAT_VERSION, &pagemap_entry__descriptor },
	[IMG_PAGES]	= { "pages-%u.img",	"PAGE", IMG_FORMAT_VERSION, NULL },
	[IMG_FILES]	= { "files.img",	"FILE", IMG_FORMAT_VERSION, &file_entry__descriptor },
	[IMG_FDS]	= { "fds-%u.img",	"FDS ", IMG_FORMAT_VERSION, &fd_entry__descriptor },
	[IMG_MEMFDS]	= { "memfds.img",	"MFDS", IMG_FORMAT_VERSION, &memfd_entry__descriptor },
	[IMG_MEMFD_DATA] = { "memfd-%u.img",	"MFDD", IMG_FORMAT_VERSION, NULL },
	[IMG_NS]	= { "ns.img",		"NS  ", IMG_FORMAT_VERSION, &ns_entry__descriptor },
	[IMG_CGROUP]	= { "cgroup.img",	"CGRP", IMG_FORMAT_VERSION, &cgroup_entry__descriptor },
	[IMG_MNT]	= { "mnt.img",		"MNT ", IMG_FORMAT_VERSION, &mount_entry__descriptor },
	[IMG_TMPFS]	= { "tmpfs-%u.img",	"TMPF", IMG_FORMAT_VERSION, &fs_node_entry__descriptor },
	[IMG_IPC]	= { "ipc.img",		"IPC ", IMG_FORMAT_VERSION, &ipc_entry__descriptor },
	[IMG_NET]	= { "net.img",		"NET ", IMG_FORMAT_VERSION, &net_entry__descriptor },
	[IMG_MANIFEST]	= { "manifest.img",	"MNFT", IMG_FORMAT_VERSION, &manifest_entry__descriptor },
};

struct img_hdr {
	char magic[8];
	uint32_t version;
	uint32_t hdr_len;
};

void img_name(enum img_type type, unsigned id, char *buf, size_t len)
{
	snprintf(buf, len, img_descs[type].name, id);
}

/* does name match pattern ("core-%u.img": an id in decimal, as img_name writes it)? */
static bool name_matches(const char *pattern, const char *name, unsigned *id)
{
	const char *pct = strstr(pattern, "%u");
	size_t pre, post, nl = strlen(name);
	unsigned long v = 0;

	if (!pct)
		return !strcmp(pattern, name);
	pre = pct - pattern;
	post = strlen(pct + 2);
	if (nl <= pre + post || strncmp(name, pattern, pre) || strcmp(name + nl - post, pct + 2))
		return false;
	/* digits only, no leading zero (but "0"): the one spelling img_name gives */
	if (name[pre] == '0' && nl - post - pre > 1)
		return false;
	for (size_t i = pre; i < nl - post; i++) {
		if (name[i] < '0' || name[i] > '9' || (v = v * 10 + (name[i] - '0')) > UINT32_MAX)
			return false;
	}
	*id = v;
	return true;
}

int img_type_of_name(const char *name, unsigned *id)
{
	unsigned dummy;

	for (int t = 0; t < IMG__MAX; t++)
		if (name_matches(img_descs[t].name, name, id ?: &dummy))
			return t;
	return -1;
}

static const char *file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFIFO:	return "a FIFO";
	case S_IFSOCK:	return "a socket";
	case S_IFDIR:	return "a directory";
	case S_IFCHR:	return "a character device";
	case S_IFBLK:	return "a block device";
	case S_IFLNK:	return "a symbolic link";
	default:	return "not a regular file";
	}
}

int img_open_regular(int dirfd, const char *name, const char *what, bool quiet_enoent, struct stat *st)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW), fl, err;
	struct stat lst;

	if (fd < 0) {
		err = errno;
		if (err == ELOOP && !fstatat(dirfd, name, &lst, AT_SYMLINK_NOFOLLOW) && S_ISLNK(lst.st_mode)) {
			pr_err("image %s is a symbolic link: refused (an image must be a regular file)", what);
		} else if (!(quiet_enoent && err == ENOENT)) {
			errno = err;
			pr_perror("cannot open image %s", what);
		}
		errno = err;
		return -err;
	}
	if (fstat(fd, st)) {
		err = pr_perror("cannot stat image %s", what);
		close(fd);
		return err;
	}
	if (!S_ISREG(st->st_mode)) {
		pr_err("image %s is %s: refused (an image must be a regular file)", what, file_kind(st->st_mode));
		close(fd);
		errno = EINVAL;
		return -EINVAL;
	}
	/* a regular file never blocks; cleared all the same for whoever reads it next */
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)) {
		err = pr_perror("image %s: cannot clear O_NONBLOCK", what);
		close(fd);
		return err;
	}
	return fd;
}

static void fill_hdr(struct img_hdr *h, enum img_type type)
{
	memcpy(h->magic, "CRYO", 4);
	memcpy(h->magic + 4, img_descs[type].tag, 4);
	h->version = img_descs[type].version;
	h->hdr_len = img_descs[type].pb ? IMG_HDR_LEN : IMG_PAGES_HDR_LEN;
}

size_t img_header(enum img_type type, uint8_t buf[IMG_PAGES_HDR_LEN])
{
	struct img_hdr h;

	fill_hdr(&h, type);
	memset(buf, 0, h.hdr_len);
	memcpy(buf, &h, sizeof(h));
	return h.hdr_len;
}

int img_identify(const void *buf, size_t len, uint32_t *version)
{
	const struct img_hdr *h = buf;

	if (len < sizeof(*h) || memcmp(h->magic, "CRYO", 4))
		return -1;
	for (int t = 0; t < IMG__MAX; t++)
		if (!memcmp(h->magic + 4, img_descs[t].tag, 4)) {
			if (version)
				*version = h->version;
			return t;
		}
	return -1;
}

static struct img *img_alloc(enum img_type type, const char *name, bool writing)
{
	struct img *img = xzalloc(sizeof(*img));

	if (!img)
		return NULL;
	img->fd = -1;
	img->type = type;
	img->writing = writing;
	img->name = xstrdup(name);
	if (!img->name) {
		free(img);
		return NULL;
	}
	return img;
}

static void img_free(struct img *img)
{
	if (img->fd >= 0)
		close(img->fd);
	free(img->data);
	free(img->wbuf);
	free(img->name);
	free(img);
}

/*
 * Create name in dirfd, or take the regular file there, emptied: never
 * through a symlink (a dump runs as root: a link planted in the directory
 * would have it overwrite what the link names), nor waiting on a FIFO.
 */
int img_create_regular(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600), err, fl;
	struct stat st;

	if (fd < 0) {
		err = errno;
		if ((err == ELOOP || err == ENXIO) && !fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) &&
		    !S_ISREG(st.st_mode)) {
			pr_err("cannot create image %s: %s is in its place", name, file_kind(st.st_mode));
			return -EEXIST;
		}
		errno = err;
		return pr_perror("cannot create image %s", name);
	}
	if (fstat(fd, &st)) {
		err = pr_perror("cannot stat image %s", name);
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("cannot create image %s: %s is in its place", name, file_kind(st.st_mode));
		close(fd);
		return -EEXIST;
	}
	if (ftruncate(fd, 0) || (fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK)) {
		err = pr_perror("cannot empty image %s", name);
		close(fd);
		return err;
	}
	return fd;
}

struct img *img_create(int dirfd, enum img_type type, unsigned id)
{
	char pad[IMG_PAGES_HDR_LEN], name[64];
	struct img_hdr h;
	struct img *img;

	img_name(type, id, name, sizeof(name));
	img = img_alloc(type, name, true);
	if (!img)
		return NULL;
	img->fd = img_create_regular(dirfd, img->name);
	if (img->fd < 0) {
		img_free(img);
		return NULL;
	}
	/* an older file of the same name may have had a wider mode */
	if (fchmod(img->fd, 0600)) {
		pr_perror("cannot chmod image %s", img->name);
		img_free(img);
		return NULL;
	}
	fill_hdr(&h, type);
	memset(pad, 0, h.hdr_len);
	memcpy(pad, &h, sizeof(h));
	if (write_all(img->fd, pad, h.hdr_len)) {
		pr_perror("cannot write header of %s", img->name);
		img_free(img);
		return NULL;
	}
	if (img_descs[type].pb) {
		img->wbuf = malloc(1 << 16);
		if (!img->wbuf) {
			img_free(img);
			return NULL;
		}
	}
	return img;
}

static int img_flush(struct img *img)
{
	int ret;

	if (!img->wlen || img->werr)
		return img->werr;
	ret = write_all(img->fd, img->wbuf, img->wlen);
	if (ret) {
		errno = -ret;
		pr_perror("cannot write image %s", img->name);
		img->werr = ret;
	}
	img->wlen = 0;
	return ret;
}

int img_write(struct img *img, const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint32_t rec[2];
	uint8_t *buf;

	if (img->werr)
		return img->werr;
	if (len > IMG_MAX_RECORD) {
		pr_err("%s: record of %zu bytes is too large", img->name, len);
		return img->werr = -EFBIG;
	}
	if (img->wlen + 8 + len > (1 << 16) && img_flush(img))
		return img->werr;
	if (8 + len > (1 << 16)) {
		buf = malloc(len);
		if (!buf)
			return img->werr = -ENOMEM;
		protobuf_c_message_pack(msg, buf);
		rec[0] = len;
		rec[1] = crc32c(0, buf, len);
		if (write_all(img->fd, rec, sizeof(rec)) || write_all(img->fd, buf, len)) {
			pr_perror("cannot write image %s", img->name);
			img->werr = -EIO;
		}
		free(buf);
		if (!img->werr)
			img->nr_written++;
		return img->werr;
	}
	buf = img->wbuf + img->wlen + 8;
	protobuf_c_message_pack(msg, buf);
	rec[0] = len;
	rec[1] = crc32c(0, buf, len);
	memcpy(img->wbuf + img->wlen, rec, sizeof(rec));
	img->wlen += 8 + len;
	img->nr_written++;
	return 0;
}

/* the end marker after the last record: the file is complete */
static int img_write_end(struct img *img)
{
	uint8_t end[IMG_END_LEN];
	uint32_t mark = IMG_END_MARK, crc;
	uint64_t n = img->nr_written;

	if (img->werr)
		return img->werr;
	memcpy(end + 8, &n, sizeof(n));
	crc = crc32c(0, end + 8, 8);
	memcpy(end, &mark, 4);
	memcpy(end + 4, &crc, 4);
	if (img->wlen + sizeof(end) > (1 << 16) && img_flush(img))
		return img->werr;
	memcpy(img->wbuf + img->wlen, end, sizeof(end));
	img->wlen += sizeof(end);
	return 0;
}

/* The first n bytes of a magic, printable whatever the file holds. */
static const char *magic_str(const char *m, size_t n, char out[33])
{
	char *p = out;

	for (size_t i = 0; i < n && i < 8; i++) {
		unsigned char c = m[i];

		if (c >= 0x20 && c < 0x7f)
			*p++ = c;
		else
			p += sprintf(p, "\\x%02x", c);
	}
	*p = 0;
	return out;
}

/*
 * Check the header of an open image: its kind (any kind when type < 0), version
 * and length, against the file size. Returns the type, or -1 (logged).
 */
static int img_check_hdr(struct img *img, int type, off_t size)
{
	struct img_hdr h = { 0 }, want;
	size_t n = MIN((size_t)size, sizeof(h));
	char got[33], exp[33];
	int ret, t;

	ret = read_all(img->fd, &h, n);
	if (ret) {
		errno = -ret;
		pr_perror("cannot read header of image %s", img->name);
		return -1;
	}
	if (memcmp(h.magic, "CRYO", MIN(n, 4))) {
		pr_err("image %s: bad magic %s, not a cryo image", img->name,
		       magic_str(h.magic, n, got));
		return -1;
	}
	if (n < sizeof(h)) {
		pr_err("image %s is truncated: %zu bytes, less than its %zu-byte header",
		       img->name, n, sizeof(h));
		return -1;
	}
	t = img_identify(&h, sizeof(h), NULL);
	if (t < 0 || (type >= 0 && t != type)) {
		magic_str(h.magic, 8, got);
		if (type < 0) {
			pr_err("image %s: bad magic %s, not a kind of image this cryo knows",
			       img->name, got);
		} else {
			fill_hdr(&want, type);
			pr_err("image %s: bad magic %s, expected %s", img->name, got,
			       magic_str(want.magic, 8, exp));
		}
		return -1;
	}
	fill_hdr(&want, t);
	if (h.version != want.version) {
		pr_err("image %s: format version %u, this cryo reads version %u",
		       img->name, h.version, want.version);
		return -1;
	}
	if (h.hdr_len != want.hdr_len) {
		pr_err("image %s: header length %u, expected %u", img->name, h.hdr_len, want.hdr_len);
		return -1;
	}
	if (size < (off_t)want.hdr_len) {
		pr_err("image %s is truncated: %lld bytes, less than its %u-byte header",
		       img->name, (long long)size, want.hdr_len);
		return -1;
	}
	return t;
}

/* a record header, or the end marker, at data offset off: the file offset for messages */
static size_t file_off(size_t off)
{
	return off + IMG_HDR_LEN;
}

/*
 * The end marker at off: it must count the n records before it and end
 * the file.
 */
static int img_check_end(struct img *img, size_t off, uint64_t n)
{
	uint32_t crc;
	uint64_t count;

	if (img->size - off < IMG_END_LEN) {
		pr_err("image %s is truncated: its end marker at offset %zu is cut short", img->name, file_off(off));
		return -EINVAL;
	}
	memcpy(&crc, img->data + off + 4, 4);
	memcpy(&count, img->data + off + 8, 8);
	if (crc32c(0, img->data + off + 8, 8) != crc) {
		pr_err("image %s is corrupted: checksum mismatch in its end marker at offset %zu", img->name,
		       file_off(off));
		return -EINVAL;
	}
	if (count != n) {
		pr_err("image %s is corrupted: its end marker at offset %zu counts %lu records, %lu precede it",
		       img->name, file_off(off), (unsigned long)count, (unsigned long)n);
		return -EINVAL;
	}
	if (img->size - off != IMG_END_LEN) {
		pr_err("image %s: %zu bytes after its end marker at offset %zu: refused", img->name,
		       img->size - off - IMG_END_LEN, file_off(off));
		return -EINVAL;
	}
	img->end = off;
	img->nr_records = n;
	return 0;
}

/*
 * Every record of a message image read in: each length within the file
 * and IMG_MAX_RECORD, each checksum right, and the end marker after the
 * last, counting them. A file cut anywhere fails here, before a single
 * record is used.
 */
static int img_check_records(struct img *img)
{
	size_t off = 0;
	uint64_t n = 0;
	uint32_t rec[2];

	for (;;) {
		size_t left = img->size - off;

		if (left == 0) {
			pr_err("image %s is truncated: it ends at offset %zu, after %lu records, without its end marker",
			       img->name, file_off(off), (unsigned long)n);
			return -EINVAL;
		}
		if (left < sizeof(rec)) {
			pr_err("image %s is truncated: partial record header at offset %zu", img->name, file_off(off));
			return -EINVAL;
		}
		memcpy(rec, img->data + off, sizeof(rec));
		if (rec[0] == IMG_END_MARK)
			return img_check_end(img, off, n);
		if (rec[0] > IMG_MAX_RECORD || rec[0] > left - sizeof(rec)) {
			pr_err("image %s is truncated or corrupted: record at offset %zu claims %u bytes, %zu remain",
			       img->name, file_off(off), rec[0], left - sizeof(rec));
			return -EINVAL;
		}
		if (crc32c(0, img->data + off + sizeof(rec), rec[0]) != rec[1]) {
			pr_err("image %s is corrupted: checksum mismatch in record at offset %zu", img->name,
			       file_off(off));
			return -EINVAL;
		}
		off += sizeof(rec) + rec[0];
		n++;
	}
}

/*
 * Open `name` in dirfd for reading (or take fd, opened so already), of the
 * given type or (type < 0) of the type its header names. Message images
 * are read whole into img->data and their records checked; for raw images
 * the fd is left at the first page.
 */
static struct img *img_load(int dirfd, const char *dir, const char *name, int type, bool optional, int fd)
{
	char shown[PATH_MAX];
	struct img *img;
	struct stat st;
	size_t len;
	int ret, t;

	/* messages name it as the user knows it: in dir, if given */
	snprintf(shown, sizeof(shown), "%s%s%s", dir ?: "", dir ? "/" : "", name);
	img = img_alloc(type < 0 ? 0 : type, shown, false);
	if (!img) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	img->fd = fd >= 0 ? fd : img_open_regular(dirfd, name, img->name, optional, &st);
	if (img->fd < 0) {
		ret = -img->fd;
		img->fd = -1;
		img_free(img);
		errno = ret;
		return NULL;
	}
	if (fstat(img->fd, &st)) {
		pr_perror("cannot stat image %s", img->name);
		goto err;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("image %s is not a regular file: refused", img->name);
		goto err;
	}
	t = img_check_hdr(img, type, st.st_size);
	if (t < 0)
		goto err;
	img->type = t;
	len = st.st_size;
	if (lseek(img->fd, img_descs[t].pb ? IMG_HDR_LEN : IMG_PAGES_HDR_LEN, SEEK_SET) < 0) {
		pr_perror("cannot seek in image %s", img->name);
		goto err;
	}
	if (!img_descs[t].pb)
		return img;	/* raw: the caller reads from img->fd */

	len -= IMG_HDR_LEN;
	img->data = malloc(len ? len : 1);
	if (!img->data) {
		pr_err("out of memory reading image %s (%zu bytes)", img->name, len);
		goto err;
	}
	ret = read_all(img->fd, img->data, len);
	if (ret) {
		errno = -ret;
		pr_perror("cannot read image %s", img->name);
		goto err;
	}
	img->size = len;
	if (img_check_records(img))
		goto err;
	return img;
err:
	img_free(img);
	errno = EINVAL;
	return NULL;
}

struct img *img_open_in(int dirfd, const char *dir, enum img_type type, unsigned id, bool optional)
{
	char name[64];

	img_name(type, id, name, sizeof(name));
	return img_load(dirfd, dir, name, type, optional, -1);
}

struct img *img_open(int dirfd, enum img_type type, unsigned id, bool optional)
{
	return img_open_in(dirfd, NULL, type, id, optional);
}

struct img *img_open_path(int dirfd, const char *name)
{
	return img_load(dirfd, NULL, name, -1, false, -1);
}

int img_read_all(int dirfd, enum img_type type, unsigned id, bool optional, void *out, size_t *n)
{
	return img_read_all_in(dirfd, NULL, type, id, optional, out, n);
}

int img_read_all_in(int dirfd, const char *dir, enum img_type type, unsigned id, bool optional, void *out,
		    size_t *n)
{
	struct img *img = img_open_in(dirfd, dir, type, id, optional);
	ProtobufCMessage **v = NULL, *m;
	int ret;

	*(ProtobufCMessage ***)out = NULL;
	*n = 0;
	if (!img)
		return optional && errno == ENOENT ? 0 : -EIO;
	while ((ret = img_read(img, &m)) == 1) {
		ProtobufCMessage **nv = realloc(v, (*n + 1) * sizeof(*v));

		if (!nv) {
			img_free_msg(type, m);
			ret = -ENOMEM;
			break;
		}
		v = nv;
		v[(*n)++] = m;
	}
	img_close(img);
	*(ProtobufCMessage ***)out = v;
	return ret;
}

int img_preopen(int dirfd, struct img_preopened *p, int min_fd)
{
	int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	struct dirent *de;
	struct stat st;
	int ret = 0;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return pr_perror("cannot list the image directory");
	}
	while (!ret && (de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		void *nv;
		int fd;

		if (nl < 5 || nl >= sizeof(p->v[0].name) || strcmp(de->d_name + nl - 4, ".img"))
			continue;
		nv = realloc(p->v, (p->n + 1) * sizeof(*p->v));
		if (!nv) {
			ret = -ENOMEM;
			break;
		}
		p->v = nv;
		fd = img_open_regular(dirfd, de->d_name, de->d_name, false, &st);
		if (fd < 0) {
			ret = fd;
			break;
		}
		if (min_fd > 0) {
			int moved = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);

			close(fd);
			if (moved < 0) {
				ret = pr_perror("cannot move image %s above fd %d", de->d_name, min_fd);
				break;
			}
			fd = moved;
		}
		snprintf(p->v[p->n].name, sizeof(p->v[p->n].name), "%s", de->d_name);
		p->v[p->n++].fd = fd;
	}
	closedir(d);
	return ret;
}

void img_preopened_close(struct img_preopened *p)
{
	for (size_t i = 0; i < p->n; i++)
		close(p->v[i].fd);
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

struct img *img_open_pre(const struct img_preopened *p, int dirfd, enum img_type type, unsigned id, bool optional)
{
	char name[64];

	if (!p || !p->n)
		return img_open(dirfd, type, id, optional);
	img_name(type, id, name, sizeof(name));
	for (size_t i = 0; i < p->n; i++) {
		int fd;

		if (strcmp(p->v[i].name, name))
			continue;
		/*
		 * A dup shares the offset: fine, as each image is read by one
		 * process at a time, from a set position (message images are
		 * read whole, pages with pread).
		 */
		fd = fcntl(p->v[i].fd, F_DUPFD_CLOEXEC, 0);
		if (fd >= 0 && lseek(fd, 0, SEEK_SET) < 0) {
			close(fd);
			fd = -1;
		}
		if (fd < 0) {
			pr_perror("cannot reopen image %s", name);
			return NULL;
		}
		return img_load(dirfd, NULL, name, type, optional, fd);
	}
	if (!optional)
		pr_err("cannot open image %s: No such file or directory", name);
	errno = ENOENT;
	return NULL;
}

int img_read(struct img *img, ProtobufCMessage **msg)
{
	const ProtobufCMessageDescriptor *d = img_descs[img->type].pb;
	size_t rec_off = file_off(img->off);
	const uint8_t *payload;
	uint32_t len;

	*msg = NULL;
	if (img->off == img->end)
		return 0;
	/* img_check_records vouched for the framing and the checksum */
	memcpy(&len, img->data + img->off, sizeof(len));
	payload = img->data + img->off + 8;
	if (img_wire_check(d, payload, len, img->name, rec_off))
		return -EINVAL;
	*msg = protobuf_c_message_unpack(d, NULL, len, payload);
	if (!*msg) {
		pr_err("image %s is corrupted: record at offset %zu does not decode as %s", img->name, rec_off,
		       d->name);
		return -EINVAL;
	}
	img->off += 8 + len;
	img->nr_read++;
	return 1;
}

int img_read_one(int dirfd, enum img_type type, unsigned id, ProtobufCMessage **msg)
{
	struct img *img = img_open(dirfd, type, id, false);
	int ret;

	if (!img)
		return -EINVAL;
	ret = img_read(img, msg);
	if (ret == 0) {
		pr_err("image %s is empty", img->name);
		ret = -EINVAL;
	} else if (ret == 1 && img->nr_records != 1) {
		pr_err("image %s: %lu records, where one is expected", img->name, (unsigned long)img->nr_records);
		img_free_msg(type, *msg);
		*msg = NULL;
		ret = -EINVAL;
	}
	img_close(img);
	return ret < 0 ? ret : 0;
}

int img_close(struct img *img)
{
	int ret = 0;

	if (!img)
		return 0;
	if (img->writing) {
		if (img->wbuf)
			ret = img_write_end(img) ?: img_flush(img);
		if (!ret)
			ret = img->werr;
		if (!ret && close(img->fd)) {
			ret = pr_perror("cannot close image %s", img->name);
		}
		img->fd = -1;
	}
	img_free(img);
	return ret;
}

void img_free_msg(enum img_type type, ProtobufCMessage *msg)
{
	(void)type;
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}
