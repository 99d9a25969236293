/*
 * cryo migrate -t PID|--cgroup DIR --to HOST:PORT --secret-file F
 *              [--mode precopy] [--max-rounds N] [--dirty-limit MIB] [--json]
 *
 * The driver: move a process tree or a container, running, to the cryo
 * migrate-agent on another host, over one authenticated connection.
 *
 *  1. Pre-copy rounds. The first copies all memory while the tree runs;
 *     each next one only what the tree wrote since the last (dirty
 *     tracking with userfaultfd write-protect, see criu-core/track.c). The
 *     tree is stopped only for each round's scan.
 *  2. The convergence rule: the rounds stop, and the tree is frozen, when
 *     the last round sent no more than --dirty-limit MiB (default 16: the
 *     freeze then lasts about as long as sending that), or when a round
 *     sent more than 80% of the one before (the tree writes about as fast
 *     as the wire carries: more rounds would send the same pages again), or
 *     after --max-rounds rounds (default 8).
 *  3. The final dump: the tree is frozen and its network locked, what it
 *     wrote since the last round and every other image goes to the target,
 *     and the tree stays stopped here, its TCP connections in repair mode.
 *  4. The agent restores it there (namespaces, the veth into the target's
 *     bridge, TCP connections) and says once it runs. Only then is the
 *     migration committed and the source killed. Should anything fail
 *     before, the source is let go as it was and the target kills what it
 *     restored and removes the images.
 *
 * The downtime is from the freeze to the target's word that the tree runs.
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cgroup.h"
#include "cryo.h"
#include "dump-round.h"
#include "guard.h"
#include "fault.h"
#include "log.h"
#include "pagesrv.h"
#include "postcopy.h"
#include "util.h"

#define DEFAULT_MAX_ROUNDS	8
#define DEFAULT_DIRTY_LIMIT_MIB	16
#define MAX_ROUNDS_LIMIT	64
#define PAGE_BYTES		4096ULL

struct round_stat {
	uint64_t pages;
	uint64_t bytes;			/* on the wire */
	uint64_t send_ns;		/* the round, start to end */
	uint64_t stopped_ns;		/* the tree stopped for its scan */
	uint64_t since_ns;		/* since the previous round's scan: what the dirty rate is over */
};

struct migration {
	struct cryo_opts *o;
	pid_t root;
	char id[128];
	char local[PATH_MAX];		/* the images that are not pages, here */
	struct ps_client *ps;
	struct round_stat rounds[MAX_ROUNDS_LIMIT + 1];
	int nr_rounds;			/* pre-copy rounds done; the final one follows */
	const char *stage;		/* what failed */
	char stage_buf[48];
	uint64_t last_scan;		/* when the last round scanned the tree */
	bool tracked;			/* a round began: trackers may be parked in the tree */
	struct guard_entry *g_untrack;	/* the guardian closes them should cryo die first */
	char why[512];
	pid_t target_pid;
	uint64_t t0, t_frozen, t_running;
	bool lazy;			/* postcopy or hybrid: the last round leaves memory at the source */
	uint64_t lazy_pushed, lazy_asked, lazy_ns;	/* post-copy: bytes pushed, asked for; how long */
	uint64_t lazy_wire;		/* post-copy: bytes on the wire, frames included */
};

static double mib(uint64_t bytes)
{
	return bytes / 1048576.0;
}

static double rate(uint64_t bytes, uint64_t ns)
{
	return ns ? mib(bytes) / (ns / 1e9) : 0;
}

static void progress(const struct migration *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(const struct migration *m, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cryo migrate: pid %d: ", m->root);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* the options of one round, its images in local/NAME, its parent local/PREV */
static void round_opts(const struct migration *m, struct cryo_opts *ro, char *dir, size_t len, int n,
		       char *prev, size_t plen)
{
	*ro = *m->o;
	snprintf(dir, len, "%s/%d", m->local, n);
	ro->images_dir = dir;
	ro->pid = m->root;
	ro->cgroup = NULL;
	ro->page_server = NULL;
	ro->leave_running = false;
	/* a migration keeps the connections: that is what it is for */
	ro->tcp_established = true;
	ro->lazy_pages = false;
	ro->prev_images_dir = NULL;
	if (n > 1) {
		snprintf(prev, plen, "../%d", n - 1);
		ro->prev_images_dir = prev;
	}
}

static int fail_at(struct migration *m, const char *stage, int err)
{
	m->stage = stage;
	if (!m->why[0])
		snprintf(m->why, sizeof(m->why), "%s (see the lines above)", strerror(err > 0 ? err : -err));
	return err ? err : -EIO;
}

/* one pre-copy round: 0, or -errno (the tree runs on either way) */
static int precopy_round(struct migration *m)
{
	struct round_stat *rs = &m->rounds[m->nr_rounds];
	struct dump_round dr = { .ps = m->ps };
	char dir[PATH_MAX + 16], prev[32];
	uint64_t t0 = now_ns(), sent0 = ps_sent(m->ps);
	struct cryo_opts ro;
	int n = m->nr_rounds + 1, ret;

	round_opts(m, &ro, dir, sizeof(dir), n, prev, sizeof(prev));
	if (mkdir(dir, 0700))
		return pr_perror("cannot create %s", dir);
	if (!m->tracked && !(m->g_untrack = guard_untrack(m->o->guard, m->root)) && m->o->guard)
		return -ENOMEM;
	m->tracked = true;
	if ((ret = pre_dump_round(&ro, &dr)))
		return ret;
	fault_point("migrate-round");
	rs->pages = dr.pages;
	rs->bytes = ps_sent(m->ps) - sent0;
	rs->send_ns = now_ns() - t0;
	rs->stopped_ns = dr.frozen_ns;
	rs->since_ns = n > 1 ? dr.t_frozen - m->last_scan : 0;
	m->last_scan = dr.t_frozen;
	m->nr_rounds = n;
	if (n == 1)
		progress(m, "round 1: %lu pages (%.1f MiB), all its memory, sent in %.2f s (%.0f MiB/s on the wire), stopped %lu ms",
			 rs->pages, mib(rs->pages * PAGE_BYTES), rs->send_ns / 1e9, rate(rs->bytes, rs->send_ns),
			 rs->stopped_ns / 1000000);
	else
		progress(m, "round %d: %lu pages (%.1f MiB) written in the last %.2f s (dirty rate %.0f MiB/s), sent in %.2f s (%.0f MiB/s), stopped %lu ms",
			 n, rs->pages, mib(rs->pages * PAGE_BYTES), rs->since_ns / 1e9,
			 rate(rs->pages * PAGE_BYTES, rs->since_ns), rs->send_ns / 1e9, rate(rs->bytes, rs->send_ns),
			 rs->stopped_ns / 1000000);
	return 0;
}

/* the convergence rule (above): why the rounds stop, or NULL to go on */
static const char *converged(const struct migration *m)
{
	const struct round_stat *last = &m->rounds[m->nr_rounds - 1];
	int max = m->o->max_rounds > 0 ? MIN(m->o->max_rounds, MAX_ROUNDS_LIMIT) : DEFAULT_MAX_ROUNDS;
	uint64_t limit = (m->o->dirty_limit_mib > 0 ? m->o->dirty_limit_mib : DEFAULT_DIRTY_LIMIT_MIB) * 1048576ULL;

	if (m->nr_rounds > 1 && last->pages * PAGE_BYTES <= limit)
		return "the dirty set is under the limit";
	if (m->nr_rounds > 1 && last->pages * 5 > m->rounds[m->nr_rounds - 2].pages * 4)
		return "the dirty set stopped shrinking";
	if (m->nr_rounds >= max)
		return "the round limit is reached";
	return NULL;
}

/* post-copy: every page left in the stopped tree to the target (postcopy.c) */
static int serve_pages(struct migration *m, const struct dump_round *dr)
{
	struct postcopy_stat st = { 0 };
	int ret;

	progress(m, "post-copy: the memory follows the tree");
	ret = postcopy_serve(m->ps, dr, m->o->lazy_rate_mib, &st);
	m->lazy_pushed = st.pushed;
	m->lazy_asked = st.asked;
	m->lazy_ns = st.ns;
	m->lazy_wire = st.wire;
	if (!ret)
		progress(m, "post-copy: every page is in on the target after %.2f s (%.1f MiB pushed, %.1f MiB asked for first)",
			 m->lazy_ns / 1e9, mib(m->lazy_pushed), mib(m->lazy_asked));
	return ret;
}

/*
 * Freeze, send the rest, have the target restore it, and only then kill
 * the source; on any failure the source goes on.
 */
static int final_round(struct migration *m)
{
	struct round_stat *rs = &m->rounds[m->nr_rounds];
	struct dump_round dr = { .ps = m->ps };
	char dir[PATH_MAX + 16], prev[32], name[16], msg[480];
	uint64_t sent0 = ps_sent(m->ps);
	struct cryo_opts ro;
	int n = m->nr_rounds + 1, ret;

	round_opts(m, &ro, dir, sizeof(dir), n, prev, sizeof(prev));
	ro.lazy_pages = m->lazy;
	if (mkdir(dir, 0700))
		return fail_at(m, "the final dump", pr_perror("cannot create %s", dir));
	if ((ret = dump_hold(&ro, &dr)))
		return fail_at(m, "the final dump", ret);
	m->t_frozen = dr.t_frozen;
	/* the final dump closed the trackers */
	guard_done(m->g_untrack);
	m->g_untrack = NULL;
	rs->pages = dr.pages;
	rs->bytes = ps_sent(m->ps) - sent0;
	rs->send_ns = now_ns() - dr.t_frozen;
	progress(m, "frozen: the last %lu pages (%.1f MiB) and its other images sent in %lu ms", rs->pages,
		 mib(rs->pages * PAGE_BYTES), rs->send_ns / 1000000);

	snprintf(name, sizeof(name), "%d", n);
	ret = m->lazy ? ps_restore_lazy(m->ps, name, msg, sizeof(msg)) : ps_restore(m->ps, name, msg, sizeof(msg));
	if (ret) {
		snprintf(m->why, sizeof(m->why), "%s", msg);
		dump_release(&dr, false);
		return fail_at(m, "the restore on the target", ret);
	}
	m->t_running = now_ns();
	fault_point("migrate-restored");
	sscanf(msg, "running as pid %d", &m->target_pid);
	progress(m, "the target has it: %s", msg);
	if (m->lazy) {
		/*
		 * Post-copy: the target runs the tree already, and its memory
		 * is here. Committed at once; should the pages not all get
		 * there, the target kills its copy and this one goes on, as the
		 * only whole one (its peers may have seen the other meanwhile).
		 */
		if ((ret = ps_commit_nowait(m->ps)) || (ret = serve_pages(m, &dr))) {
			snprintf(m->why, sizeof(m->why), "post-copy broke after %.1f MiB: the target's copy is killed",
				 mib(m->lazy_pushed + m->lazy_asked));
			dump_release(&dr, false);
			return fail_at(m, "post-copy", ret);
		}
		if ((ret = dump_release(&dr, true)))
			pr_warn("pid %d: the source could not be killed cleanly after the migration", m->root);
		return 0;
	}
	/*
	 * Committed, the target keeps it; until then it kills it if we go.
	 * Should the answer be lost, the source goes on (and the target, if
	 * it heard the commit, too: the one window where both run).
	 */
	if ((ret = ps_commit(m->ps))) {
		dump_release(&dr, false);
		return fail_at(m, "the commit", ret);
	}
	if ((ret = dump_release(&dr, true)))
		pr_warn("pid %d: the source could not be killed cleanly after the migration", m->root);
	return 0;
}

/* s as a JSON string: what is not printable ASCII (a peer's bytes among them) as \u00XX */
static void json_str(const char *s)
{
	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p > 0x7e)
			printf("\\u%04x", *p);
		else
			putchar(*p);
	putchar('"');
}

static void print_summary(const struct migration *m, int ret)
{
	uint64_t total = now_ns() - m->t0, bytes = m->lazy_wire;
	int nr = m->nr_rounds + (m->t_frozen ? 1 : 0);

	for (int i = 0; i < nr; i++)
		bytes += m->rounds[i].bytes;
	if (m->o->json) {
		printf("{\"pid\": %d, \"to\": ", m->root);
		json_str(m->o->to);
		printf(", \"mode\": \"%s\", \"result\": \"%s\"", m->o->mode ? m->o->mode : "precopy",
		       ret ? "failed" : "migrated");
		if (ret) {
			printf(", \"stage\": ");
			json_str(m->stage);
			printf(", \"error\": ");
			json_str(m->why);
			printf(", \"source\": \"running\"");
		} else {
			printf(", \"target_pid\": %d, \"downtime_ms\": %.3f", m->target_pid,
			       (m->t_running - m->t_frozen) / 1e6);
			if (m->lazy)
				printf(", \"postcopy_ms\": %.3f, \"postcopy_pushed\": %lu, \"postcopy_asked\": %lu, "
				       "\"postcopy_bytes\": %lu", m->lazy_ns / 1e6, m->lazy_pushed, m->lazy_asked,
				       m->lazy_wire);
		}
		printf(", \"total_ms\": %.3f, \"bytes_sent\": %lu, \"rounds\": [", total / 1e6, bytes);
		for (int i = 0; i < nr; i++) {
			const struct round_stat *r = &m->rounds[i];

			printf("%s{\"round\": %d, \"final\": %s, \"pages\": %lu, \"bytes\": %lu, \"ms\": %.3f, "
			       "\"stopped_ms\": %.3f, \"dirty_rate_mib_s\": %.1f}",
			       i ? ", " : "", i + 1, i == m->nr_rounds ? "true" : "false", r->pages, r->bytes,
			       r->send_ns / 1e6, (i == m->nr_rounds ? r->send_ns : r->stopped_ns) / 1e6,
			       rate(r->pages * PAGE_BYTES, r->since_ns));
		}
		printf("]}\n");
		fflush(stdout);
		return;
	}
	if (ret) {
		fprintf(stderr, "cryo: migration of pid %d to %s failed in %s: %s; pid %d runs on here\n", m->root,
			m->o->to, m->stage, m->why, m->root);
		return;
	}
	printf("migrated pid %d to %s (pid %d there): downtime %.1f ms, total %.2f s, %.1f MiB sent in %d rounds",
	       m->root, m->o->to, m->target_pid, (m->t_running - m->t_frozen) / 1e6, total / 1e9, mib(bytes), nr);
	if (m->lazy)
		printf(" and %.2f s of post-copy", m->lazy_ns / 1e9);
	printf("\n");
	fflush(stdout);
}

static int check_opts(struct cryo_opts *o, pid_t *root)
{
	if (o->mode && strcmp(o->mode, "precopy") && strcmp(o->mode, "postcopy") && strcmp(o->mode, "hybrid")) {
		pr_err("migrate --mode %s: not a mode (precopy, postcopy or hybrid)", o->mode);
		return -EINVAL;
	}
	if (!o->to || !o->secret_file) {
		pr_err("migrate: where to? Give the target's agent with --to HOST:PORT and the secret with --secret-file F");
		return -EINVAL;
	}
	*root = o->pid;
	if (o->cgroup && cgroup_root_task(o->cgroup, root))
		return -EINVAL;
	if (*root <= 0) {
		pr_err("migrate: which process? Give its pid with -t PID, or its container's cgroup with --cgroup DIR");
		return -EINVAL;
	}
	if (kill(*root, 0) && errno == ESRCH) {
		pr_err("migrate: pid %d: no such process", *root);
		return -ESRCH;
	}
	return 0;
}

static int migrate(struct migration *m)
{
	char host[64] = "host";
	const char *why;
	int ret;

	gethostname(host, sizeof(host) - 1);
	for (char *p = host; *p; p++)
		if (!(*p == '-' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z')))
			*p = '_';
	snprintf(m->id, sizeof(m->id), "%s-%d-%lu", host, m->root, (unsigned long)time(NULL));
	if ((ret = ps_connect(m->o->to, m->o->secret_file, m->o->compress, &m->ps)))
		return fail_at(m, "connecting to the agent", ret);
	if ((ret = ps_migrate(m->ps, m->id)))
		return fail_at(m, "starting the migration", ret);
	progress(m, "migrating to %s as %s", m->o->to, m->id);
	m->lazy = m->o->mode && strcmp(m->o->mode, "precopy");
	if (m->o->mode && !strcmp(m->o->mode, "postcopy")) {
		/* no round: the tree moves at once, all its memory after it */
		progress(m, "post-copy: freezing");
		return final_round(m);
	}
	do {
		if ((ret = precopy_round(m))) {
			snprintf(m->stage_buf, sizeof(m->stage_buf), "pre-copy round %d", m->nr_rounds + 1);
			return fail_at(m, m->stage_buf, ret);
		}
	} while (!(why = converged(m)));
	progress(m, "%s after %d rounds: freezing", why, m->nr_rounds);
	return final_round(m);
}

static int migrate_command(struct cryo_opts *o)
{
	struct migration m = { .o = o, .t0 = now_ns() };
	const char *tmp = getenv("TMPDIR");
	int ret;

	if (check_opts(o, &m.root))
		return 1;
	/* a peer that goes away must be an error, not the end of cryo */
	signal(SIGPIPE, SIG_IGN);
	snprintf(m.local, sizeof(m.local), "%s/cryo-migrate.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(m.local)) {
		pr_perror("cannot create a directory for the images in %s", tmp && tmp[0] ? tmp : "/tmp");
		return 1;
	}
	ret = migrate(&m);
	/* the session ends: uncommitted, the target drops what it has */
	ps_free(m.ps);
	/* given up before the final dump (which closes them): the trackers go */
	if (ret && m.tracked && !m.t_frozen && dump_untrack(o, m.root))
		pr_warn("pid %d: its dirty trackers could not all be closed", m.root);
	guard_done(m.g_untrack);
	print_summary(&m, ret);
	if (rm_tree_at(AT_FDCWD, m.local))
		pr_warn("cannot remove %s", m.local);
	return ret ? 1 : 0;
}

int cmd_migrate(struct cryo_opts *o)
{
	return guard_run(o, migrate_command);
}
