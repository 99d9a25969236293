/*
 * The validation pass of a restore: every name, path and value of the
 * images that cryo will use to make something (a cgroup, a mount, a file,
 * a device, a socket name, a sysctl...) goes through the door (door.h)
 * right after the images are read, before anything is made. A refused
 * field fails the restore with one line naming the image, the record
 * (counted from 0, as `cryo show` lists them) and the field:
 *
 *	cgroup.img record 2: path '/../../tmp/x' is refused: it has a '..' component
 *
 * Each kind's validators live in its own module, next to its dump and
 * restore. They have no side effect but that one error line: a fuzzing
 * harness can call the per-record ones on any decoded record. The use
 * sites open beneath the directory the value belongs to all the same.
 */
#ifndef CRYO_VALIDATE_H
#define CRYO_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "image.h"

struct restore_ctx;

/* the whole pass, over what read_images() read and the images the root reads later */
int rst_validate(const struct restore_ctx *ctx);

/*
 * Every record of image (type, id) checked by check, one at a time; where
 * gets "NAME record N". A missing optional image has none.
 */
int validate_image(int dirfd, enum img_type type, unsigned id, bool optional,
		   int (*check)(const ProtobufCMessage *m, const char *where));

/* one record each; where names it in the error ("cgroup.img record 2"); 0 or -EINVAL */
int ns_validate_entry(const NsEntry *e, const char *where);
int cgroup_validate_entry(const CgroupEntry *e, const char *where);
int mnt_validate_entry(const MountEntry *e, const char *where);
int mnt_validate_node(const FsNodeEntry *e, const char *where);
/*
 * the records of one tmpfs image, in order: no node through a symlink
 * another one made; with userns (the container has its own user
 * namespace), no device node, which its root could not have made
 */
int mnt_validate_nodes(FsNodeEntry *const *nodes, size_t n, const char *img, bool userns);
int net_validate_entry(const NetEntry *e, const char *where);
int ipc_validate_entry(const IpcEntry *e, const char *where);
int memfd_validate_entry(const MemfdEntry *e, const char *where);
int files_validate_entry(const FileEntry *e, const char *where);
int task_validate_core(const CoreEntry *e, const char *where);
int mem_validate_mm(const MmEntry *e, const char *where);

/* each kind over a restore's images (rst_validate calls them) */
int ns_validate(const struct restore_ctx *ctx);
int cgroup_validate(const struct restore_ctx *ctx);
int mnt_validate(const struct restore_ctx *ctx);
int net_validate(const struct restore_ctx *ctx);
int ipc_validate(const struct restore_ctx *ctx);
int memfd_validate(const struct restore_ctx *ctx);
int files_validate(const struct restore_ctx *ctx);
int task_validate(const struct restore_ctx *ctx);
int mem_validate(const struct restore_ctx *ctx);

#endif
