/*
 * Notify points (notify.h): action scripts and the RPC client.
 *
 * A script runs as "sh -c SCRIPT" with CRIU's environment: CRTOOLS_SCRIPT_ACTION
 * is the point, CRTOOLS_INIT_PID the root's pid where there is one, and
 * CRTOOLS_IMAGE_DIR the images directory. Its output goes to cryo's stderr.
 */
#define LOG_PREFIX "notify: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cryo.h"
#include "log.h"
#include "notify.h"
#include "seize.h"
#include "util.h"

static int run_script(const struct cryo_opts *o, const char *script, const char *point, pid_t pid)
{
	char buf[64];
	pid_t child;
	int st;

	child = fork();
	if (child < 0)
		return pr_perror("cannot fork to run action script %s", script);
	if (!child) {
		setenv("CRTOOLS_SCRIPT_ACTION", point, 1);
		setenv("CRTOOLS_IMAGE_DIR", o->images_dir, 1);
		if (pid > 0) {
			snprintf(buf, sizeof(buf), "%d", pid);
			setenv("CRTOOLS_INIT_PID", buf, 1);
		} else {
			unsetenv("CRTOOLS_INIT_PID");
		}
		execl("/bin/sh", "sh", "-c", script, (char *)NULL);
		_exit(127);
	}
	if (wait_task(child, &st, 0) < 0)
		return -ECHILD;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	pr_err("action script %s failed at %s: %s", script, point, describe_status(st, buf, sizeof(buf)));
	return -ECANCELED;
}

static int tell(const struct cryo_opts *o, const char *point, pid_t pid, int fd)
{
	int ret = 0;

	pr_debug("%s%s", point, pid > 0 ? "" : " (no pid)");
	for (size_t i = 0; i < o->action_scripts.n && !ret; i++)
		ret = run_script(o, o->action_scripts.v[i], point, pid);
	if (!ret && o->notify_fn)
		ret = o->notify_fn(o->notify_arg, point, pid, fd);
	return ret;
}

int notify(const struct cryo_opts *o, const char *point, pid_t pid)
{
	return tell(o, point, pid, -1);
}

int notify_fd(const struct cryo_opts *o, const char *point, int fd)
{
	return tell(o, point, 0, fd);
}
