/*
 * timerfd: clock, interval, the time left and the expirations not read
 * yet. The time left is counted from a reading of the timer's clock at
 * the dump, so that on the same clock (a wall clock, or a monotonic one
 * of the same boot) the timer keeps its schedule: expirations missed while
 * it was not running are added to its count.
 */
#define LOG_PREFIX "files-timerfd: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>

#include "compat.h"
#include "door.h"
#include "dump.h"
#include "files.h"
#include "log.h"
#include "restore.h"

#define NSEC	1000000000ULL

static bool timerfd_match(const struct fd_parms *p)
{
	return fd_is_anon(p, "[timerfd]");
}

/* the clock a timer of clockid can be read with */
static clockid_t readable_clock(int clockid)
{
	if (clockid == CLOCK_REALTIME_ALARM)
		return CLOCK_REALTIME;
	if (clockid == CLOCK_BOOTTIME_ALARM)
		return CLOCK_BOOTTIME;
	return clockid;
}

static uint64_t clock_ns(int clockid)
{
	struct timespec ts;

	clock_gettime(readable_clock(clockid), &ts);
	return ts.tv_sec * NSEC + ts.tv_nsec;
}

static char *boot_id(struct arena *a)
{
	_cleanup_free_ char *id = NULL;

	if (read_file("/proc/sys/kernel/random/boot_id", &id, NULL))
		return NULL;
	id[strcspn(id, "\n")] = 0;
	return arena_strdup(a, id);
}

static int timerfd_dump(struct dump_ctx *ctx, const struct fd_parms *p, FileEntry *fe)
{
	const char *clk = fdinfo_field(p->fdinfo, "clockid:"), *ticks = fdinfo_field(p->fdinfo, "ticks:");
	const char *sflags = fdinfo_field(p->fdinfo, "settime flags:");
	const char *val = fdinfo_field(p->fdinfo, "it_value:"), *ival = fdinfo_field(p->fdinfo, "it_interval:");
	TimerfdEntry *e = arena_new(&ctx->arena, TimerfdEntry);
	unsigned long long vs, vn, is, in;

	if (!e)
		return -ENOMEM;
	if (!clk || !ticks || !sflags || !val || !ival || sscanf(val, " (%llu, %llu)", &vs, &vn) != 2 ||
	    sscanf(ival, " (%llu, %llu)", &is, &in) != 2) {
		pr_err("pid %d fd %d: cannot parse the timerfd state in its fdinfo", p->pid, p->fd);
		return -EINVAL;
	}
	timerfd_entry__init(e);
	e->flags = p->flags;
	e->clockid = atoi(clk);
	e->ticks = strtoull(ticks, NULL, 10);
	e->settime_flags = strtoul(sflags, NULL, 8);
	e->value_ns = vs * NSEC + vn;
	e->interval_ns = is * NSEC + in;
	e->dump_ns = clock_ns(e->clockid);
	e->boot_id = boot_id(&ctx->arena);
	fe->timerfd = e;
	return 0;
}

/* the time left now, and the expirations missed since the dump */
static void time_left(const TimerfdEntry *e, uint64_t *left, uint64_t *missed)
{
	bool wall = readable_clock(e->clockid) == CLOCK_REALTIME;
	_cleanup_free_ char *id = NULL;
	uint64_t now, due;

	*left = e->value_ns;
	*missed = 0;
	if (!wall && (!e->boot_id || !e->boot_id[0] || read_file("/proc/sys/kernel/random/boot_id", &id, NULL) ||
		      strncmp(id, e->boot_id, strlen(e->boot_id))))
		return;	/* another boot: its monotonic clocks started again */
	now = clock_ns(e->clockid);
	due = e->dump_ns + e->value_ns;
	if (due > now) {
		*left = due - now;
	} else if (e->interval_ns) {
		*missed = (now - due) / e->interval_ns + 1;
		*left = e->interval_ns - (now - due) % e->interval_ns;
	} else {
		*missed = 1;
		*left = 0;
	}
}

static int timerfd_open(struct restore_ctx *ctx, pid_t pid, int fdnum, const FileEntry *fe)
{
	const TimerfdEntry *e = fe->timerfd;
	struct itimerspec its = { 0 };
	uint64_t left, missed, ticks;
	int fd, flags = 0;

	if (!e) {
		pr_err("files.img: entry %u is a timerfd without its details", fe->id);
		return -EINVAL;
	}
	fd = timerfd_create(e->clockid, TFD_CLOEXEC | (e->flags & O_NONBLOCK));
	if (fd < 0)
		return pr_perror("pid %d fd %d: timerfd_create(clock %d)", pid, fdnum, e->clockid);
	missed = 0;
	if (e->value_ns) {
		time_left(e, &left, &missed);
		its.it_interval.tv_sec = e->interval_ns / NSEC;
		its.it_interval.tv_nsec = e->interval_ns % NSEC;
		if (e->settime_flags & TFD_TIMER_ABSTIME) {
			left += clock_ns(e->clockid);
			flags = e->settime_flags;
		}
		its.it_value.tv_sec = left / NSEC;
		its.it_value.tv_nsec = left % NSEC;
		if (left && timerfd_settime(fd, flags, &its, NULL)) {
			close(fd);
			return pr_perror("pid %d fd %d: cannot arm the timerfd", pid, fdnum);
		}
	}
	ticks = e->ticks + missed;
	if (ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks)) {
		close(fd);
		return pr_perror("pid %d fd %d: cannot set the timerfd's %lu expirations", pid, fdnum, ticks);
	}
	return fd;
}

/* files.img: the boot a timerfd's monotonic clock counted from */
static int timerfd_validate(const FileEntry *fe, const char *where)
{
	return fe->timerfd && fe->timerfd->boot_id ?
	       door_text(fe->timerfd->boot_id, 64, "%s: timerfd.boot_id", where) : 0;
}

const struct fd_kind_ops timerfd_fd_ops = {
	.kind = FD_KIND__TIMERFD,
	.name = "timerfd",
	.match = timerfd_match,
	.dump = timerfd_dump,
	.validate = timerfd_validate,
	.open = timerfd_open,
};
