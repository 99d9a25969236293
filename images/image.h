/*
 * Image files. Every file starts with a header:
 *
 *	char     magic[8];	"CRYO" + 4-character kind tag, e.g. "CRYOCORE"
 *	uint32_t version;	format version of that kind
 *	uint32_t hdr_len;	bytes before the first record (16, or 4096 for pages)
 *
 * then, for message images, records:
 *
 *	uint32_t len; uint32_t crc32c(payload); uint8_t payload[len]  (a protobuf message)
 *
 * and for the pages image, raw page bytes from offset 4096 (page aligned);
 * their checksums live in the pagemap image. All integers little endian.
 * Files are created mode 0600: they hold process memory.
 */
#ifndef CRYO_IMAGE_H
#define CRYO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "inventory.pb-c.h"
#include "pstree.pb-c.h"
#include "core.pb-c.h"
#include "mm.pb-c.h"
#include "pagemap.pb-c.h"
#include "files.pb-c.h"
#include "memfd.pb-c.h"
#include "ns.pb-c.h"
#include "ipc.pb-c.h"
#include "net.pb-c.h"

enum img_type {
	IMG_INVENTORY,
	IMG_PSTREE,
	IMG_CORE,
	IMG_MM,
	IMG_PAGEMAP,
	IMG_PAGES,
	IMG_FILES,
	IMG_FDS,
	IMG_MEMFDS,
	IMG_MEMFD_DATA,
	IMG_NS,
	IMG_CGROUP,
	IMG_MNT,
	IMG_TMPFS,
	IMG_IPC,
	IMG_NET,
	IMG__MAX
};

#define IMG_HDR_LEN		16
#define IMG_PAGES_HDR_LEN	4096
#define IMG_MAX_RECORD		(64u << 20)

struct img_desc {
	const char *name;	/* file name, "%u" replaced by the id (pid) */
	char tag[5];		/* magic suffix */
	uint32_t version;
	const ProtobufCMessageDescriptor *pb;	/* NULL: raw data (pages) */
};

extern const struct img_desc img_descs[IMG__MAX];

struct img {
	int fd;
	enum img_type type;
	bool writing;
	char *name;		/* as given: a file name in the image dir, or a path */
	/* reading: the whole file (message images) */
	uint8_t *data;
	size_t size, off;
	/* writing: buffered */
	uint8_t *wbuf;
	size_t wlen;
	int werr;
};

/* Create (mode 0600, truncating) an image in dirfd. NULL on error (logged). */
struct img *img_create(int dirfd, enum img_type type, unsigned id);
/*
 * Open an image for reading and check its header. If optional and the file
 * does not exist, returns NULL with errno ENOENT and logs nothing.
 */
struct img *img_open(int dirfd, enum img_type type, unsigned id, bool optional);
/*
 * Open the image `name` (relative to dirfd, or a path) whatever its kind:
 * the type comes from its header (img->type), then it is checked and read
 * as by img_open. NULL on error (logged: not an image, truncated, ...).
 */
struct img *img_open_path(int dirfd, const char *name);
/*
 * Every image of dirfd opened ahead (at fd numbers >= min_fd), for
 * processes whose credentials will not let them open the files (a restored
 * user namespace's); img_open_pre then takes them from there (or, with
 * none, opens as img_open does).
 */
struct img_preopened {
	size_t n;
	struct { char name[64]; int fd; } *v;
};
int img_preopen(int dirfd, struct img_preopened *p, int min_fd);
void img_preopened_close(struct img_preopened *p);
struct img *img_open_pre(const struct img_preopened *p, int dirfd, enum img_type type, unsigned id, bool optional);
/* Append one message; errors are reported by img_close. */
int img_write(struct img *img, const ProtobufCMessage *msg);
/* Read the next message: 1 and *msg set, 0 at the end, <0 on error (logged). */
int img_read(struct img *img, ProtobufCMessage **msg);
/*
 * Every message of an image into a malloc'ed array: out is the address of
 * a pointer to an array of message pointers (e.g. FileEntry ***). A missing
 * optional image gives none. On error what was read is in *out, to free.
 */
int img_read_all(int dirfd, enum img_type type, unsigned id, bool optional, void *out, size_t *n);
/* Read exactly one message (the whole image must be that one record). */
int img_read_one(int dirfd, enum img_type type, unsigned id, ProtobufCMessage **msg);
/* Flush (when writing) and close; returns <0 if any write failed. */
int img_close(struct img *img);
void img_free_msg(enum img_type type, ProtobufCMessage *msg);

/* The header bytes an image of type starts with (for a stream): their length. */
size_t img_header(enum img_type type, uint8_t buf[IMG_PAGES_HDR_LEN]);
/* Identify an image from its first bytes; returns type or -1. */
int img_identify(const void *hdr, size_t len, uint32_t *version);
/* Build the file name of an image. */
void img_name(enum img_type type, unsigned id, char *buf, size_t len);

#endif
