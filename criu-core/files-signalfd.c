/* signalfd: the signals it reads, from fdinfo's sigmask. */
#define LOG_PREFIX "files-signalfd: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>

#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

static bool signalfd_match(const struct fd_parms *p)
{
	return fd_is_anon(p, "[signalfd]");
}

static int signalfd_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	const char *mask = fdinfo_field(p->fdinfo, "sigmask:");
	SignalfdEntry *e = arena_new(&ctx->arena, SignalfdEntry);

	if (!e)
		return -ENOMEM;
	if (!mask) {
		pr_err("pid %d fd %d: its fdinfo lacks the signalfd mask", p->pid, p->fd);
		return -EINVAL;
	}
	signalfd_entry__init(e);
	e->flags = p->flags;
	e->mask = strtoull(mask, NULL, 16);
	fe->signalfd = e;
	return 0;
}

static int signalfd_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const SignalfdEntry *e = fe->signalfd;
	uint64_t mask;
	int fd;

	if (!e) {
		pr_err("files.img: entry %u is a signalfd without its details", fe->id);
		return -EINVAL;
	}
	/* the kernel's mask as is (glibc's sigaddset refuses its own signals 32 and 33) */
	mask = e->mask;
	fd = syscall(SYS_signalfd4, -1, &mask, sizeof(mask), SFD_CLOEXEC | (e->flags & O_NONBLOCK));
	if (fd < 0)
		return pr_perror("pid %d fd %d: signalfd with mask %#lx", pid, fdnum, e->mask);
	return fd;
}

const struct fd_kind_ops signalfd_fd_ops = {
	.kind = FD_KIND__SIGNALFD,
	.name = "signalfd",
	.match = signalfd_match,
	.dump = signalfd_dump,
	.open = signalfd_open,
};
