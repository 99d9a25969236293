#define LOG_PREFIX "image: "
#include <errno.h>
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

static struct img *img_alloc(enum img_type type, unsigned id, bool writing)
{
	struct img *img = xzalloc(sizeof(*img));

	if (!img)
		return NULL;
	img->fd = -1;
	img->type = type;
	img->writing = writing;
	img_name(type, id, img->name, sizeof(img->name));
	return img;
}

static void img_free(struct img *img)
{
	if (img->fd >= 0)
		close(img->fd);
	free(img->data);
	free(img->wbuf);
	free(img);
}

struct img *img_create(int dirfd, enum img_type type, unsigned id)
{
	struct img *img = img_alloc(type, id, true);
	struct img_hdr h;
	char pad[IMG_PAGES_HDR_LEN];

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

struct img *img_open(int dirfd, enum img_type type, unsigned id, bool optional)
{
	struct img *img = img_alloc(type, id, false);
	struct img_hdr h, want;
	struct stat st;
	size_t len;
	int ret, t;

	if (!img)
		return NULL;
	img->fd = openat(dirfd, img->name, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0) {
		if (!(optional && errno == ENOENT))
			pr_perror("cannot open image %s", img->name);
		ret = errno;
		img_free(img);
		errno = ret;
		return NULL;
	}
	fill_hdr(&want, type);
	if (fstat(img->fd, &st) || st.st_size < (off_t)want.hdr_len) {
		pr_err("image %s is truncated: %lld bytes, less than its %u-byte header",
		       img->name, (long long)st.st_size, want.hdr_len);
		goto err;
	}
	if (read_all(img->fd, &h, sizeof(h))) {
		pr_perror("cannot read header of image %s", img->name);
		goto err;
	}
	t = img_identify(&h, sizeof(h), NULL);
	if (t != (int)type) {
		pr_err("image %s: bad magic %.8s, expected %.8s", img->name,
		       h.magic, want.magic);
		goto err;
	}
	if (h.version != want.version) {
		pr_err("image %s: format version %u, this cryo reads version %u",
		       img->name, h.version, want.version);
		goto err;
	}
	if (h.hdr_len != want.hdr_len) {
		pr_err("image %s: header length %u, expected %u", img->name, h.hdr_len, want.hdr_len);
		goto err;
	}
	if (lseek(img->fd, h.hdr_len, SEEK_SET) < 0)
		goto err;
	if (!img_descs[type].pb)
		return img;	/* pages: the caller reads from img->fd */

	len = st.st_size - h.hdr_len;
	img->data = malloc(len ? len : 1);
	if (!img->data)
		goto err;
	if (read_all(img->fd, img->data, len)) {
		pr_perror("cannot read image %s", img->name);
		goto err;
	}
	img->size = len;
	return img;
err:
	img_free(img);
	errno = EINVAL;
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
