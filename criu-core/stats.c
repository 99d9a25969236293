/*
 * CRIU's statistics files: stats-dump, written by every dump and pre-dump,
 * and stats-restore, by every restore, in the work directory, where CRIU's
 * clients look for them (Podman's checkpoint and restore --print-stats and
 * --export). The format is CRIU's, not cryo's image format (see
 * images/stats.proto): two magic numbers, the message's length, the
 * message. The numbers are what this run measured (include/stats.h).
 *
 * A file that cannot be written fails the command: a dump resumes its
 * tree, a restore kills the one it made (the client would report the
 * failure and leave it running otherwise).
 */
#define LOG_PREFIX "stats: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/statvfs.h>

#include "image.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define CRIU_SERVICE_MAGIC	0x55105940u
#define CRIU_STATS_MAGIC	0x57093306u
#define STATS_HDR_LEN		12
#define STATS_MAX_LEN		4096	/* a few dozen bytes in truth */

/* ns to CRIU's microseconds, which it keeps in 32 bits */
static uint32_t usec(uint64_t ns)
{
	uint64_t us = ns / 1000;

	return us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static const char *work_dir(const struct cryo_opts *o)
{
	return o->work_dir ?: o->images_dir ?: ".";
}

static int write_file(const struct cryo_opts *o, const char *name, const StatsEntry *e)
{
	uint8_t buf[STATS_HDR_LEN + STATS_MAX_LEN];
	size_t len = stats_entry__get_packed_size(e);
	_cleanup_close_ int dfd = -1, fd = -1;
	const char *dir = work_dir(o);
	struct statvfs sv;

	if (len > STATS_MAX_LEN) {
		pr_err("%s: %zu bytes of statistics, more than the %d a stats file holds", name, len, STATS_MAX_LEN);
		return -E2BIG;
	}
	put_le32(buf, CRIU_SERVICE_MAGIC);
	put_le32(buf + 4, CRIU_STATS_MAGIC);
	put_le32(buf + 8, (uint32_t)len);
	stats_entry__pack(e, buf + STATS_HDR_LEN);
	if ((dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		return pr_perror("cannot open the work directory %s to write %s in", dir, name);
	/* images restored from a read-only place: no statistics, unless a work directory is given */
	if (!o->work_dir && !fstatvfs(dfd, &sv) && (sv.f_flag & ST_RDONLY)) {
		pr_warn("%s is read-only: no %s written (give a work directory with -W to have one)", dir, name);
		return 0;
	}
	if ((fd = img_create_regular(dfd, name)) < 0)
		return fd;
	if (write_all(fd, buf, STATS_HDR_LEN + len) || fsync(fd))
		return pr_perror("cannot write %s/%s", dir, name);
	return 0;
}

static void print_count(const char *what, uint64_t n)
{
	printf("%s: %llu (0x%llx)\n", what, (unsigned long long)n, (unsigned long long)n);
}

static void display_dump(const DumpStatsEntry *d)
{
	printf("Displaying dump stats:\n");
	printf("Freezing time: %u us\n", d->freezing_time);
	printf("Frozen time: %u us\n", d->frozen_time);
	printf("Memory dump time: %u us\n", d->memdump_time);
	printf("Memory write time: %u us\n", d->memwrite_time);
	print_count("Memory pages scanned", d->pages_scanned);
	print_count("Memory pages skipped from parent dump", d->pages_skipped_parent);
	print_count("Memory pages written", d->pages_written);
	print_count("Lazy memory pages", d->pages_lazy);
	fflush(stdout);
}

static void display_restore(const RestoreStatsEntry *r)
{
	printf("Displaying restore stats:\n");
	print_count("Pages compared", r->pages_compared);
	print_count("Pages skipped COW", r->pages_skipped_cow);
	print_count("Pages restored", r->pages_restored);
	printf("Restore time: %u us\n", r->restore_time);
	printf("Forking time: %u us\n", r->forking_time);
	fflush(stdout);
}

int stats_write_dump(const struct cryo_opts *o, const struct dump_stats *s)
{
	DumpStatsEntry d = DUMP_STATS_ENTRY__INIT;
	StatsEntry e = STATS_ENTRY__INIT;
	uint64_t released = s->t_released ?: now_ns();
	int ret;

	d.freezing_time = usec(s->t_frozen - s->t_freeze);
	d.frozen_time = usec(released - s->t_frozen);
	d.memdump_time = usec(s->memdump_ns);
	d.memwrite_time = usec(s->memwrite_ns);
	d.pages_scanned = s->pages_scanned;
	d.pages_skipped_parent = s->pages_skipped_parent;
	d.pages_written = s->pages_written;
	d.pages_lazy = s->pages_lazy;
	e.dump = &d;
	ret = write_file(o, STATS_DUMP_FILE, &e);
	if (!ret && o->display_stats)
		display_dump(&d);
	return ret;
}

int stats_write_restore(const struct cryo_opts *o, const struct restore_stats *s)
{
	RestoreStatsEntry r = RESTORE_STATS_ENTRY__INIT;
	StatsEntry e = STATS_ENTRY__INIT;
	int ret;

	r.pages_compared = 0;
	r.pages_skipped_cow = s->pages_skipped_cow;
	r.forking_time = usec(s->forking_ns);
	r.restore_time = usec(now_ns() - s->t_start);
	r.has_pages_restored = true;
	r.pages_restored = s->pages_restored;
	e.restore = &r;
	ret = write_file(o, STATS_RESTORE_FILE, &e);
	if (!ret && o->display_stats)
		display_restore(&r);
	return ret;
}

/* the file's first bytes, up to len (fewer if it is shorter): how many, or -errno */
static ssize_t read_head(int dirfd, const char *name, uint8_t *buf, size_t len, struct stat *st)
{
	_cleanup_close_ int fd = img_open_regular(dirfd, name, name, false, st);
	ssize_t n;

	if (fd < 0)
		return fd;
	n = pread(fd, buf, len, 0);
	return n < 0 ? pr_perror("cannot read %s", name) : n;
}

int stats_identify(int dirfd, const char *name)
{
	uint8_t hdr[8];
	struct stat st;
	ssize_t n = read_head(dirfd, name, hdr, sizeof(hdr), &st);

	if (n < 0)
		return (int)n;
	return n == sizeof(hdr) && get_le32(hdr) == CRIU_SERVICE_MAGIC && get_le32(hdr + 4) == CRIU_STATS_MAGIC;
}

int stats_read(int dirfd, const char *name, StatsEntry **out)
{
	uint8_t buf[STATS_HDR_LEN + STATS_MAX_LEN + 1];
	struct stat st;
	ssize_t n = read_head(dirfd, name, buf, sizeof(buf), &st);
	uint32_t len;

	if (n < 0)
		return (int)n;
	if (n < STATS_HDR_LEN || get_le32(buf) != CRIU_SERVICE_MAGIC || get_le32(buf + 4) != CRIU_STATS_MAGIC) {
		pr_err("%s is not a stats file: it does not start with CRIU's magic numbers %#x %#x", name,
		       CRIU_SERVICE_MAGIC, CRIU_STATS_MAGIC);
		return -EINVAL;
	}
	len = get_le32(buf + 8);
	if (len > STATS_MAX_LEN || (size_t)n != STATS_HDR_LEN + len || st.st_size != n) {
		pr_err("%s: its message is said to be %u bytes, but %lld follow its header", name, len,
		       (long long)st.st_size - STATS_HDR_LEN);
		return -EINVAL;
	}
	if (img_wire_check(&stats_entry__descriptor, buf + STATS_HDR_LEN, len, name, STATS_HDR_LEN))
		return -EINVAL;
	*out = stats_entry__unpack(NULL, len, buf + STATS_HDR_LEN);
	if (!*out) {
		pr_err("%s: cannot unpack its message", name);
		return -EINVAL;
	}
	return 0;
}
