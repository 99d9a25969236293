/*
 * cryo check: probe the kernel and say, feature by feature, what works,
 * what it is for, and why not. Exits 0 when every feature that dump and
 * restore need is there, 1 otherwise.
 *
 *	cryo check			the whole table
 *	cryo check --feature NAME	one feature: exit 0 if it works
 */
#define LOG_PREFIX "check: "
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "compat.h"
#include "cryo.h"
#include "kerndat.h"
#include "log.h"
#include "util.h"

static const char *status_word(const struct kerndat *kd, int f)
{
	if (kd->f[f].ok)
		return "ok";
	return kd_info[f].required ? "MISSING" : "unavailable";
}

static int feature_by_name(const char *name)
{
	for (int f = 0; f < KD__MAX; f++)
		if (!strcasecmp(kd_info[f].name, name))
			return f;
	return -1;
}

int check_criu_feature(const struct kerndat *kd, const char *name)
{
	if (!strcmp(name, "mem_dirty_track") || !strcmp(name, "mem_track"))
		return kd->f[KD_SOFT_DIRTY].ok || (kd->f[KD_UFFD_WP_ASYNC].ok && kd->f[KD_PAGEMAP_SCAN].ok);
	if (!strcmp(name, "uffd") || !strcmp(name, "uffd-noncoop") || !strcmp(name, "lazy_pages"))
		return kd->f[KD_UFFD].ok;
	return -1;
}

static int check_one(const struct kerndat *kd, const char *name)
{
	int f = feature_by_name(name), ok = check_criu_feature(kd, name);

	if (f < 0 && ok >= 0) {
		printf("%s: %s\n", name, ok ? "ok" : "unavailable");
		return ok ? 0 : 1;
	}
	if (f < 0) {
		pr_err("unknown feature '%s' (cryo check lists them)", name);
		return 1;
	}
	printf("%s: %s%s%s\n", kd_info[f].name, status_word(kd, f),
	       kd->f[f].detail[0] ? ": " : "", kd->f[f].detail);
	return kd->f[f].ok ? 0 : 1;
}

static void print_table(const struct kerndat *kd)
{
	int wname = strlen("FEATURE"), wwhat = strlen("USED FOR"), wstat = strlen("unavailable");
	struct utsname u;

	for (int f = 0; f < KD__MAX; f++) {
		wname = MAX(wname, (int)strlen(kd_info[f].name));
		wwhat = MAX(wwhat, (int)strlen(kd_info[f].what));
	}
	if (!uname(&u))
		printf("Kernel %s %s\n\n", u.release, u.machine);
	printf("%-*s  %-*s  %-*s  %s\n", wname, "FEATURE", wstat, "STATUS", wwhat, "USED FOR", "DETAIL");
	for (int f = 0; f < KD__MAX; f++) {
		const char *detail = kd->f[f].detail;

		/* no trailing blanks when there is no detail */
		printf("%-*s  %-*s  %-*s%s%s\n", wname, kd_info[f].name, wstat, status_word(kd, f),
		       detail[0] ? wwhat : 0, kd_info[f].what, detail[0] ? "  " : "", detail);
	}
	printf("\nAddress space top 0x%lx (%s-bit), xsave area %u bytes, pipe max %lu bytes\n",
	       kd->task_size, kd->task_size == TASK_SIZE_56 ? "56" : "47", kd->xsave_size,
	       kd->pipe_max_size);
}

int cmd_check(struct cryo_opts *o, int argc, char **argv)
{
	struct kerndat kd = { 0 };
	int missing = 0, opt_missing = 0, opt = 0, req = 0;
	char list[256] = "";

	if (argc) {
		pr_err("unexpected argument '%s' (usage: cryo check [--feature NAME])", argv[0]);
		return 1;
	}
	kerndat_probe(&kd);
	if (o->feature)
		return check_one(&kd, o->feature);

	print_table(&kd);
	for (int f = 0; f < KD__MAX; f++) {
		if (kd_info[f].required) {
			req++;
			if (!kd.f[f].ok) {
				missing++;
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
					 list[0] ? ", " : "", kd_info[f].name);
			}
		} else {
			opt++;
			opt_missing += !kd.f[f].ok;
		}
	}
	if (missing)
		printf("\n%d of %d required features MISSING (%s): dump and restore will not work.\n",
		       missing, req, list);
	else
		printf("\nAll %d required features are present; %d of %d optional features are unavailable.\n",
		       req, opt_missing, opt);
	return missing ? 1 : 0;
}
