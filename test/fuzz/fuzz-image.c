/*
 * libFuzzer harness: one image file, read the way `cryo show FILE` and
 * `cryo restore` read it. The input is written to a file of a private
 * directory, opened by its header's kind (img_open_path: end marker,
 * schema walk of every record before protobuf-c unpacks it), and then
 *   - every record goes through the validator its kind has at restore
 *     (validate.h: names and paths through the door; the pagemap's ranges
 *     and checksums; a tmpfs image's nodes as a whole);
 *   - cryo show prints the file as JSON (to /dev/null).
 * Seeds: test/fuzz/corpus/image (message images of real dumps). The
 * record checksums and the end marker's are made right before the file is
 * written (but for one input in seven, which keeps them as mutated): a
 * mutation then reaches the schema walk, protobuf-c and the validators
 * instead of stopping at the first checksum.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "crc32c.h"
#include "cryo.h"
#include "image.h"
#include "log.h"
#include "util.h"
#include "validate.h"

static char dir[64], path[96];
static int dirfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/tmp/cryo-fuzz-image.XXXXXX");
	if (!mkdtemp(dir) || (dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		abort();
	snprintf(path, sizeof(path), "%s/fuzz.img", dir);
	/* cryo show's JSON goes nowhere; refusals are not logged */
	dup2(null, STDOUT_FILENO);
	log_init(0, NULL);
	return 0;
}

static int check_record(enum img_type type, ProtobufCMessage *m, const char *where)
{
	switch (type) {
	case IMG_CORE:		return task_validate_core((CoreEntry *)m, where);
	case IMG_MM:		return mem_validate_mm((MmEntry *)m, where);
	case IMG_FILES:		return files_validate_entry((FileEntry *)m, where);
	case IMG_MEMFDS:	return memfd_validate_entry((MemfdEntry *)m, where);
	case IMG_NS:		return ns_validate_entry((NsEntry *)m, where);
	case IMG_CGROUP:	return cgroup_validate_entry((CgroupEntry *)m, where);
	case IMG_MNT:		return mnt_validate_entry((MountEntry *)m, where);
	case IMG_TMPFS:		return mnt_validate_node((FsNodeEntry *)m, where);
	case IMG_IPC:		return ipc_validate_entry((IpcEntry *)m, where);
	case IMG_NET:		return net_validate_entry((NetEntry *)m, where);
	default:		return 0;
	}
}

/* every record of the image through its kind's checks, as the restore's validation pass does */
static void read_and_validate(void)
{
	struct img *img = img_open_path(dirfd, "fuzz.img");
	ProtobufCMessage **v = NULL, *m;
	size_t n = 0;
	int ret;

	if (!img)
		return;
	while ((ret = img_read(img, &m)) == 1) {
		char where[64];
		ProtobufCMessage **nv = realloc(v, (n + 1) * sizeof(*v));

		if (!nv) {
			img_free_msg(img->type, m);
			break;
		}
		v = nv;
		v[n] = m;
		snprintf(where, sizeof(where), "fuzz.img record %zu", n);
		n++;
		if (check_record(img->type, m, where))
			break;
	}
	if (ret == 0 && img->type == IMG_TMPFS)
		mnt_validate_nodes((FsNodeEntry *const *)v, n, "fuzz.img", n % 2);
	if (ret == 0 && img->type == IMG_PAGEMAP)
		pagemap_check(NULL, 1, (PagemapEntry *const *)v, n, -1);
	for (size_t i = 0; i < n; i++)
		img_free_msg(img->type, v[i]);
	free(v);
	img_close(img);
}

/* the checksums of a message image's records and end marker, recomputed in place */
static void fix_checksums(uint8_t *p, size_t size)
{
	size_t off = 16;

	if (size < 16 || p[12] != 16 || p[13] || p[14] || p[15])
		return;	/* not a message image's header */
	while (size - off >= 8) {
		uint32_t len, crc;

		memcpy(&len, p + off, 4);
		if (len == 0xffffffffu) {
			if (size - off >= 16) {
				crc = crc32c(0, p + off + 8, 8);
				memcpy(p + off + 4, &crc, 4);
			}
			return;
		}
		if (len > size - off - 8)
			return;
		crc = crc32c(0, p + off + 8, len);
		memcpy(p + off + 4, &crc, 4);
		off += 8 + len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	uint8_t *data = malloc(size ? size : 1);
	struct cryo_opts o = { .command = "show", .lazy_sock = -1, .hangup_fd = -1 };
	char *argv[] = { path, NULL };
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (!data || fd < 0)
		abort();
	memcpy(data, in, size);
	if (size % 7)
		fix_checksums(data, size);
	if (write_all(fd, data, size))
		abort();
	close(fd);
	free(data);
	read_and_validate();
	cmd_show(&o, 1, argv);
	log_error_reset();
	return 0;
}
