#define LOG_PREFIX "image: "
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
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
	[IMG_INVENTORY]	= { "inventory.img",	"INVT", 1, &inventory_entry__descriptor },
	[IMG_PSTREE]	= { "pstree.img",	"PSTR", 1, &pstree_entry__descriptor },
	[IMG_CORE]	= { "core-%u.img",	"CORE", 1, &core_entry__descriptor },
	[IMG_MM]	= { "mm-%u.img",	"MM  ", 1, &mm_entry__descriptor },
	[IMG_PAGEMAP]	= { "pagemap-%u.img",	"PMAP", 1, &pagemap_entry__descriptor },
	[IMG_PAGES]	= { "pages-%u.img",	"PAGE", 1, NULL },
	[IMG_FILES]	= { "files.img",	"FILE", 1, &file_entry__descriptor },
	[IMG_FDS]	= { "fds-%u.img",	"FDS ", 1, &fd_entry__descriptor },
	[IMG_MEMFDS]	= { "memfds.img",	"MFDS", 1, &memfd_entry__descriptor },
	[IMG_MEMFD_DATA] = { "memfd-%u.img",	"MFDD", 1, NULL },
	[IMG_NS]	= { "ns.img",		"NS  ", 1, &ns_entry__descriptor },
	[IMG_CGROUP]	= { "cgroup.img",	"CGRP", 1, &cgroup_entry__descriptor },
	[IMG_MNT]	= { "mnt.img",		"MNT ", 1, &mount_entry__descriptor },
	[IMG_TMPFS]	= { "tmpfs-%u.img",	"TMPF", 1, &fs_node_entry__descriptor },
	[IMG_IPC]	= { "ipc.img",		"IPC ", 1, &ipc_entry__descriptor },
	[IMG_NET]	= { "net.img",		"NET ", 1, &net_entry__descriptor },
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

struct img *img_create(int dirfd, enum img_type type, unsigned id)
{
	char pad[IMG_PAGES_HDR_LEN], name[64];
	struct img_hdr h;
	struct img *img;

	img_name(type, id, name, sizeof(name));
	img = img_alloc(type, name, true);
	if (!img)
		return NULL;
	img->fd = openat(dirfd, img->name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (img->fd < 0) {
		pr_perror("cannot create image %s", img->name);
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
		return img->werr;
	}
	buf = img->wbuf + img->wlen + 8;
	protobuf_c_message_pack(msg, buf);
	rec[0] = len;
	rec[1] = crc32c(0, buf, len);
	memcpy(img->wbuf + img->wlen, rec, sizeof(rec));
	img->wlen += 8 + len;
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

/*
 * Open `name` in dirfd for reading, of the given type or (type < 0) of the
 * type its header names. Message images are read whole into img->data; for
 * pages the fd is left at the first page.
 */
static struct img *img_load(int dirfd, const char *name, int type, bool optional, int fd)
{
	struct img *img = img_alloc(type < 0 ? 0 : type, name, false);
	struct stat st;
	size_t len;
	int ret, t;

	if (!img) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	img->fd = fd >= 0 ? fd : openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0) {
		ret = errno;
		if (!(optional && ret == ENOENT))
			pr_perror("cannot open image %s", name);
		img_free(img);
		errno = ret;
		return NULL;
	}
	if (fstat(img->fd, &st)) {
		pr_perror("cannot stat image %s", name);
		goto err;
	}
	if (!S_ISREG(st.st_mode)) {
		pr_err("image %s is not a regular file", name);
		goto err;
	}
	t = img_check_hdr(img, type, st.st_size);
	if (t < 0)
		goto err;
	img->type = t;
	len = st.st_size;
	if (lseek(img->fd, img_descs[t].pb ? IMG_HDR_LEN : IMG_PAGES_HDR_LEN, SEEK_SET) < 0) {
		pr_perror("cannot seek in image %s", name);
		goto err;
	}
	if (!img_descs[t].pb)
		return img;	/* pages: the caller reads from img->fd */

	len -= IMG_HDR_LEN;
	img->data = malloc(len ? len : 1);
	if (!img->data) {
		pr_err("out of memory reading image %s (%zu bytes)", name, len);
		goto err;
	}
	ret = read_all(img->fd, img->data, len);
	if (ret) {
		errno = -ret;
		pr_perror("cannot read image %s", name);
		goto err;
	}
	img->size = len;
	return img;
err:
	img_free(img);
	errno = EINVAL;
	return NULL;
}

struct img *img_open(int dirfd, enum img_type type, unsigned id, bool optional)
{
	char name[64];

	img_name(type, id, name, sizeof(name));
	return img_load(dirfd, name, type, optional, -1);
}

struct img *img_open_path(int dirfd, const char *name)
{
	return img_load(dirfd, name, -1, false, -1);
}

int img_read_all(int dirfd, enum img_type type, unsigned id, bool optional, void *out, size_t *n)
{
	struct img *img = img_open(dirfd, type, id, optional);
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
		fd = openat(dirfd, de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && min_fd > 0) {
			int moved = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);

			close(fd);
			fd = moved;
		}
		if (fd < 0) {
			ret = pr_perror("cannot open image %s", de->d_name);
			break;
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
		return img_load(dirfd, name, type, optional, fd);
	}
	if (!optional)
		pr_err("cannot open image %s: No such file or directory", name);
	errno = ENOENT;
	return NULL;
}

int img_read(struct img *img, ProtobufCMessage **msg)
{
	size_t rec_off = img->off + IMG_HDR_LEN;
	uint32_t rec[2];

	*msg = NULL;
	if (img->off == img->size)
		return 0;
	if (img->size - img->off < sizeof(rec)) {
		pr_err("image %s is truncated: partial record header at offset %zu", img->name, rec_off);
		return -EINVAL;
	}
	memcpy(rec, img->data + img->off, sizeof(rec));
	if (rec[0] > IMG_MAX_RECORD || rec[0] > img->size - img->off - sizeof(rec)) {
		pr_err("image %s is truncated or corrupted: record at offset %zu claims %u bytes, %zu remain",
		       img->name, rec_off, rec[0], img->size - img->off - sizeof(rec));
		return -EINVAL;
	}
	if (crc32c(0, img->data + img->off + sizeof(rec), rec[0]) != rec[1]) {
		pr_err("image %s is corrupted: checksum mismatch in record at offset %zu", img->name, rec_off);
		return -EINVAL;
	}
	*msg = protobuf_c_message_unpack(img_descs[img->type].pb, NULL, rec[0],
					 img->data + img->off + sizeof(rec));
	if (!*msg) {
		pr_err("image %s is corrupted: record at offset %zu does not decode as %s",
		       img->name, rec_off, img_descs[img->type].pb->name);
		return -EINVAL;
	}
	img->off += sizeof(rec) + rec[0];
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
	} else if (ret == 1 && img->off != img->size) {
		pr_err("image %s: unexpected data after the first record", img->name);
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
			ret = img_flush(img);
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
