#define LOG_PREFIX "proc: "
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proc.h"
#include "util.h"

int proc_read(pid_t pid, const char *name, char **buf, size_t *len)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	ret = read_file(path, buf, len);
	if (ret)
		pr_err("pid %d: cannot read %s: %s", pid, path, strerror(-ret));
	return ret;
}

int proc_readlink(pid_t pid, const char *name, char **out)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	ret = readlink_alloc(path, out);
	if (ret)
		pr_err("pid %d: cannot read link %s: %s", pid, path, strerror(-ret));
	return ret;
}

int proc_parse_stat(pid_t pid, struct proc_stat *st)
{
	_cleanup_free_ char *buf = NULL;
	unsigned long long f[52];
	char *open, *close, *p;
	int n = 0, ret;

	ret = proc_read(pid, "stat", &buf, NULL);
	if (ret)
		return ret;
	/* comm may hold spaces and parentheses: it ends at the last ')' */
	open = strchr(buf, '(');
	close = strrchr(buf, ')');
	if (!open || !close || close < open) {
		pr_err("pid %d: cannot parse /proc/%d/stat", pid, pid);
		return -EINVAL;
	}
	memset(st, 0, sizeof(*st));
	snprintf(st->comm, sizeof(st->comm), "%.*s", (int)(close - open - 1), open + 1);
	p = close + 2;
	st->state = *p;
	p += 2;
	/* fields 4.. are numbers; f[i] holds field i+4 */
	while (*p && n < (int)ARRAY_SIZE(f)) {
		f[n++] = strtoull(p, &p, 10);
		while (*p == ' ')
			p++;
	}
	if (n < 49) {
		pr_err("pid %d: /proc/%d/stat has only %d fields", pid, pid, n + 3);
		return -EINVAL;
	}
#define F(i) f[(i) - 4]
	st->ppid = F(4);
	st->pgid = F(5);
	st->sid = F(6);
	st->tty_nr = F(7);
	st->tpgid = (pid_t)F(8);
	st->num_threads = F(20);
	st->start_code = F(26);
	st->end_code = F(27);
	st->start_stack = F(28);
	st->start_data = F(45);
	st->end_data = F(46);
	st->start_brk = F(47);
	st->arg_start = F(48);
	st->arg_end = F(49);
	st->env_start = F(50);
	st->env_end = F(51);
	st->exit_code = F(52);
#undef F
	return 0;
}

static uint64_t parse_hex(const char *s)
{
	return strtoull(s, NULL, 16);
}

int proc_parse_status(pid_t pid, struct proc_status *st)
{
	_cleanup_free_ char *buf = NULL;
	char *line, *save = NULL;
	int ret;

	ret = proc_read(pid, "status", &buf, NULL);
	if (ret)
		return ret;
	memset(st, 0, sizeof(*st));
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, ':');

		if (!v)
			continue;
		*v++ = 0;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!strcmp(line, "Umask"))
			st->umask = strtoul(v, NULL, 8);
		else if (!strcmp(line, "Threads"))
			st->threads = atoi(v);
		else if (!strcmp(line, "TracerPid"))
			st->tracer = atoi(v);
		else if (!strcmp(line, "NSpid")) {
			/* its pid in each namespace, cryo's first: keep the innermost */
			for (char *p = v, *end; *p; p = end) {
				long n = strtol(p, &end, 10);

				if (end == p)
					break;
				st->ns_pid = n;
				st->ns_levels++;
			}
		}
		else if (!strcmp(line, "Uid"))
			sscanf(v, "%u %u %u %u", &st->uid[0], &st->uid[1], &st->uid[2], &st->uid[3]);
		else if (!strcmp(line, "Gid"))
			sscanf(v, "%u %u %u %u", &st->gid[0], &st->gid[1], &st->gid[2], &st->gid[3]);
		else if (!strcmp(line, "Groups")) {
			char *p = v;

			while (*p) {
				char *end;
				unsigned long g = strtoul(p, &end, 10);
				uint32_t *ng;

				if (end == p)
					break;
				ng = xrealloc_array(st->groups, st->nr_groups + 1, sizeof(*ng));
				if (!ng)
					return -ENOMEM;
				st->groups = ng;
				st->groups[st->nr_groups++] = g;
				p = end;
				while (*p == ' ')
					p++;
			}
		} else if (!strcmp(line, "CapInh"))
			st->cap_inh = parse_hex(v);
		else if (!strcmp(line, "CapPrm"))
			st->cap_prm = parse_hex(v);
		else if (!strcmp(line, "CapEff"))
			st->cap_eff = parse_hex(v);
		else if (!strcmp(line, "CapBnd"))
			st->cap_bnd = parse_hex(v);
		else if (!strcmp(line, "CapAmb"))
			st->cap_amb = parse_hex(v);
		else if (!strcmp(line, "SigBlk"))
			st->sig_blk = parse_hex(v);
		else if (!strcmp(line, "SigIgn"))
			st->sig_ign = parse_hex(v);
		else if (!strcmp(line, "SigCgt"))
			st->sig_cgt = parse_hex(v);
		else if (!strcmp(line, "SigPnd"))
			st->sig_pnd = parse_hex(v);
		else if (!strcmp(line, "ShdPnd"))
			st->shd_pnd = parse_hex(v);
		else if (!strcmp(line, "Seccomp"))
			st->seccomp = atoi(v);
		else if (!strcmp(line, "Seccomp_filters"))
			st->seccomp_filters = atoi(v);
		else if (!strcmp(line, "NoNewPrivs"))
			st->no_new_privs = atoi(v);
	}
	return 0;
}

void proc_status_free(struct proc_status *st)
{
	free(st->groups);
	st->groups = NULL;
}

static uint64_t parse_limit(const char *s)
{
	if (!strncmp(s, "unlimited", 9))
		return ~0ULL;
	return strtoull(s, NULL, 10);
}

int proc_read_limits(pid_t pid, struct proc_rlimit lim[PROC_NR_RLIMITS])
{
	_cleanup_free_ char *buf = NULL;
	char *line, *save = NULL;
	int n = 0, ret;

	ret = proc_read(pid, "limits", &buf, NULL);
	if (ret)
		return ret;
	/*
	 * "Limit  Soft Limit  Hard Limit  Units" then one line per resource in
	 * RLIMIT_* order. The name column is 26 characters wide, the soft and
	 * hard columns 21 each.
	 */
	line = strtok_r(buf, "\n", &save);
	for (line = strtok_r(NULL, "\n", &save); line && n < PROC_NR_RLIMITS;
	     line = strtok_r(NULL, "\n", &save)) {
		if (strlen(line) < 26 + 21) {
			pr_err("pid %d: cannot parse /proc/%d/limits line '%s'", pid, pid, line);
			return -EINVAL;
		}
		lim[n].cur = parse_limit(line + 26);
		lim[n].max = parse_limit(line + 26 + 21);
		n++;
	}
	if (n != PROC_NR_RLIMITS) {
		pr_err("pid %d: /proc/%d/limits lists %d limits, expected %d", pid, pid, n, PROC_NR_RLIMITS);
		return -EINVAL;
	}
	return 0;
}

bool vmflag_has(const struct proc_vma *v, const char *code)
{
	for (const char *p = v->vmflags; *p; p += 3) {
		if (p[0] == code[0] && p[1] == code[1])
			return true;
		if (!p[2])
			break;
	}
	return false;
}

static bool is_smaps_header(const char *line)
{
	/* "start-end perms ..." : hex digits then '-' */
	const char *p = line;

	while (isxdigit((unsigned char)*p))
		p++;
	return p != line && *p == '-';
}

static int parse_vma_header(const char *line, struct proc_vma *v)
{
	char perms[8];
	int off = 0;

	memset(v, 0, sizeof(*v));
	if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &v->start, &v->end, perms,
		   &v->pgoff, &v->dev_major, &v->dev_minor, &v->ino, &off) < 7)
		return -EINVAL;
	v->prot = (perms[0] == 'r' ? 1 : 0) | (perms[1] == 'w' ? 2 : 0) | (perms[2] == 'x' ? 4 : 0);
	v->shared = perms[3] == 's';
	if (off)
		snprintf(v->path, sizeof(v->path), "%s", line + off);
	return 0;
}

int proc_for_each_vma(pid_t pid, int (*cb)(const struct proc_vma *v, void *arg), void *arg)
{
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	struct proc_vma *v = NULL;
	char path[64];
	size_t cap = 0;
	bool have = false;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	f = fopen(path, "re");
	if (!f)
		return pr_perror("pid %d: cannot open %s", pid, path);
	v = xzalloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	while (getline(&line, &cap, f) > 0) {
		line[strcspn(line, "\n")] = 0;
		if (is_smaps_header(line)) {
			if (have) {
				pr_err("pid %d: %s: VMA %lx-%lx has no VmFlags line", pid, path, v->start, v->end);
				ret = -EINVAL;
				break;
			}
			if (parse_vma_header(line, v)) {
				pr_err("pid %d: cannot parse %s line '%s'", pid, path, line);
				ret = -EINVAL;
				break;
			}
			have = true;
		} else if (have && !strncmp(line, "VmFlags:", 8)) {
			const char *p = line + 8;

			while (*p == ' ')
				p++;
			snprintf(v->vmflags, sizeof(v->vmflags), "%s", p);
			have = false;
			ret = cb(v, arg);
			if (ret)
				break;
		}
	}
	if (!ret && have) {
		pr_err("pid %d: %s ends inside VMA %lx-%lx", pid, path, v->start, v->end);
		ret = -EINVAL;
	}
	free(v);
	return ret;
}

int proc_fdinfo(pid_t pid, int fd, uint64_t *pos, unsigned *flags, char **text)
{
	_cleanup_free_ char *buf = NULL;
	char name[32], *p;
	int ret;

	snprintf(name, sizeof(name), "fdinfo/%d", fd);
	ret = proc_read(pid, name, &buf, NULL);
	if (ret)
		return ret;
	p = strstr(buf, "pos:");
	if (pos)
		*pos = p ? strtoull(p + 4, NULL, 10) : 0;
	p = strstr(buf, "flags:");
	if (flags)
		*flags = p ? strtoul(p + 6, NULL, 8) : 0;
	if (text)
		*text = steal_ptr(buf);
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* numeric entries of a /proc directory */
static int list_numeric_dir(const char *path, int **out, int *nr)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int *v = NULL, n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		int *nv;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		nv = xrealloc_array(v, n + 1, sizeof(*v));
		if (!nv) {
			free(v);
			closedir(d);
			return -ENOMEM;
		}
		v = nv;
		v[n++] = atoi(de->d_name);
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_int);
	*out = v;
	*nr = n;
	return 0;
}

int proc_list_threads(pid_t pid, pid_t **tids, int *nr)
{
	char path[64];
	int ret, i;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	ret = list_numeric_dir(path, tids, nr);
	if (ret) {
		pr_err("pid %d: cannot list %s: %s", pid, path, strerror(-ret));
		return ret;
	}
	/* the leader first */
	for (i = 0; i < *nr; i++)
		if ((*tids)[i] == pid) {
			(*tids)[i] = (*tids)[0];
			(*tids)[0] = pid;
			break;
		}
	return 0;
}

int proc_list_fds(pid_t pid, int **fds, int *nr)
{
	char path[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	ret = list_numeric_dir(path, fds, nr);
	if (ret)
		pr_err("pid %d: cannot list %s: %s", pid, path, strerror(-ret));
	return ret;
}

int proc_list_children(pid_t pid, pid_t **kids, int *nr)
{
	_cleanup_free_ pid_t *tids = NULL;
	int nt, ret, n = 0;
	pid_t *v = NULL;

	ret = proc_list_threads(pid, &tids, &nt);
	if (ret)
		return ret;
	for (int i = 0; i < nt; i++) {
		_cleanup_free_ char *buf = NULL;
		char name[64], *p;

		snprintf(name, sizeof(name), "task/%d/children", tids[i]);
		ret = proc_read(pid, name, &buf, NULL);
		if (ret) {
			free(v);
			return ret;
		}
		for (p = buf; *p;) {
			char *end;
			long k = strtol(p, &end, 10);
			pid_t *nv;

			if (end == p)
				break;
			nv = xrealloc_array(v, n + 1, sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			v[n++] = k;
			p = end;
			while (*p == ' ')
				p++;
		}
	}
	*kids = v;
	*nr = n;
	return 0;
}

int proc_stop_tree(pid_t root, pid_t **out, size_t *n)
{
	pid_t *v = malloc(sizeof(*v));

	*out = v;
	*n = 0;
	if (!v)
		return -ENOMEM;
	v[(*n)++] = root;
	for (size_t i = 0; i < *n; i++) {
		_cleanup_free_ pid_t *kids = NULL;
		int nk = 0;
		pid_t *nv;

		kill(v[i], SIGSTOP);
		if (proc_list_children(v[i], &kids, &nk) || !nk)
			continue;	/* gone meanwhile, or childless */
		nv = xrealloc_array(v, *n + nk, sizeof(*v));
		if (!nv)
			return -ENOMEM;
		*out = v = nv;
		memcpy(v + *n, kids, nk * sizeof(*v));
		*n += nk;
	}
	return 0;
}
