/*
 * The validation pass of a restore (validate.h): each kind's validator in
 * turn, over the images read and those read later by the restored root.
 */
#define LOG_PREFIX "validate: "
#include <errno.h>
#include <stdio.h>

#include "log.h"
#include "restore.h"
#include "validate.h"

int validate_image(int dirfd, enum img_type type, unsigned id, bool optional,
		   int (*check)(const ProtobufCMessage *m, const char *where))
{
	struct img *img = img_open(dirfd, type, id, optional);
	ProtobufCMessage *m;
	char name[64], where[96];
	size_t i = 0;
	int ret;

	if (!img)
		return optional && errno == ENOENT ? 0 : -EIO;
	img_name(type, id, name, sizeof(name));
	while ((ret = img_read(img, &m)) == 1) {
		snprintf(where, sizeof(where), "%s record %zu", name, i++);
		ret = check(m, where);
		img_free_msg(type, m);
		if (ret)
			break;
	}
	img_close(img);
	return ret < 0 ? ret : 0;
}

int rst_validate(const struct restore_ctx *ctx)
{
	return ns_validate(ctx) ?: cgroup_validate(ctx) ?: mnt_validate(ctx) ?: net_validate(ctx) ?:
	       ipc_validate(ctx) ?: memfd_validate(ctx) ?: files_validate(ctx) ?: task_validate(ctx) ?:
	       mem_validate(ctx);
}
