/*
 * Image files: the format's reference (format version 2).
 *
 * Every file starts with a header:
 *
 *	char     magic[8];	"CRYO" + 4-character kind tag, e.g. "CRYOCORE"
 *	uint32_t version;	format version of that kind (IMG_FORMAT_VERSION: 2)
 *	uint32_t hdr_len;	bytes before the first record (16, or 4096 for raw images)
 *
 * then, for message images, records:
 *
 *	uint32_t len; uint32_t crc32c(payload); uint8_t payload[len]  (a protobuf message)
 *
 * with len <= IMG_MAX_RECORD, and after the last record the end marker:
 *
 *	uint32_t 0xffffffff (IMG_END_MARK); uint32_t crc32c(next 8 bytes); uint64_t nr_records
 *
 * which must be the file's last 16 bytes and count the records before it.
 * A file cut at a record boundary (no end marker), with bytes after its end
 * marker, or whose count is wrong, is refused when it is opened.
 *
 * Raw images (pages-N.img, memfd-N.img) hold raw bytes from offset 4096
 * (page aligned), no records and no end marker; their checksums live in
 * the records that describe them (pagemap-N.img, memfds.img), which must
 * account for every byte of the file: entries in address order, without
 * overlap, their PE_PRESENT chunks adding up to the file's size exactly.
 *
 * manifest.img (kind "MNFT", manifest.proto) is written last by every dump
 * and pre-dump round (after inventory.img; a page server receives it last
 * too) and lists every *.img of the directory but itself, one
 * ManifestEntry per file, sorted by name (strcmp), no name twice:
 *
 *	name	the file's name, a name this cryo knows (core-%u.img, ...)
 *	size	its size in bytes
 *	crc32c	message images: CRC-32C of the whole file, header and end
 *		marker included; raw images: absent (restore --auto-dedup
 *		punches holes in pages images: their size stays, their bytes
 *		change; each chunk is checked against its pagemap's crc instead)
 *
 * A dump streamed to a page server lists its pages-N.img with the size it
 * sent. Restore and `cryo show DIR` check the manifest first, and that of
 * every directory up the chain of `parent` links: a missing, extra (an
 * *.img the manifest does not list), cut, grown or changed image is
 * refused, naming it.
 *
 * Before a record is unpacked, its wire format is walked against the
 * message's descriptor (wire.c): a field this cryo does not know (state it
 * would drop), a wrong wire type, a cut or overlong value, a string with a
 * NUL inside, an enum value outside the enum, a missing required field, or
 * a record whose unpacked size would pass IMG_UNPACK_MAX or
 * IMG_UNPACK_RATIO times its own size (plus IMG_UNPACK_FLOOR) is refused,
 * the error naming the file, the offset and the reason.
 *
 * Image files must be regular files: they are opened (and created) with
 * O_NOFOLLOW and O_NONBLOCK, so a symlink or a FIFO in place of one is
 * refused at once, never followed nor waited on.
 * All integers little endian. Files are created mode 0600: they hold
 * process memory.
 */
#ifndef CRYO_IMAGE_H
#define CRYO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
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
#include "manifest.pb-c.h"

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
	IMG_MANIFEST,
	IMG__MAX
};

#define IMG_HDR_LEN		16
#define IMG_PAGES_HDR_LEN	4096
#define IMG_MAX_RECORD		(64u << 20)
#define IMG_FORMAT_VERSION	2
#define IMG_END_MARK		0xffffffffu
#define IMG_END_LEN		16
/* what unpacking one record may allocate (wire.c) */
#define IMG_UNPACK_MAX		(256u << 20)
#define IMG_UNPACK_RATIO	128
#define IMG_UNPACK_FLOOR	(1u << 20)

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
	/* reading: the whole file but its header (message images) */
	uint8_t *data;
	size_t size, off;
	size_t end;		/* where the end marker begins (records end) */
	uint64_t nr_records;	/* as the end marker counts them */
	uint64_t nr_read;
	/* writing: buffered */
	uint8_t *wbuf;
	size_t wlen;
	int werr;
	uint64_t nr_written;
};

/* Create (mode 0600, truncating) an image in dirfd. NULL on error (logged). */
struct img *img_create(int dirfd, enum img_type type, unsigned id);
/*
 * Open an image for reading and check its header. If optional and the file
 * does not exist, returns NULL with errno ENOENT and logs nothing.
 */
struct img *img_open(int dirfd, enum img_type type, unsigned id, bool optional);
/* The same, the image named dir/NAME in messages (dir: where dirfd is, as the user knows it). */
struct img *img_open_in(int dirfd, const char *dir, enum img_type type, unsigned id, bool optional);
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
int img_read_all_in(int dirfd, const char *dir, enum img_type type, unsigned id, bool optional, void *out,
		    size_t *n);
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
/* The kind of image a file name is (and its id in *id), or -1 if none. */
int img_type_of_name(const char *name, unsigned *id);
/*
 * Open the file name of dirfd (what names it in messages) for reading, as
 * an image must be: a regular file, not through a symlink, never blocking
 * (a FIFO is refused, not waited on). An fd (O_NONBLOCK cleared), or
 * -errno: logged, but for a missing file when quiet_enoent.
 */
int img_open_regular(int dirfd, const char *name, const char *what, bool quiet_enoent, struct stat *st);

/*
 * Create (or empty) the file name of dirfd for writing, mode 0600, as an
 * image is: never through a symlink (refused), never waiting on a FIFO, a
 * directory or any other non-regular file in its place refused (logged).
 * An fd or -errno.
 */
int img_create_regular(int dirfd, const char *name);

/*
 * wire.c: the record at file offset off of image name (payload buf, len
 * bytes) walked against d before it is unpacked: 0, or -EINVAL (logged).
 */
int img_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, const char *name,
		   size_t off);

#endif
