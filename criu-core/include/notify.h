/*
 * notify.c: the points of a dump and a restore where CRIU runs its action
 * scripts, under CRIU's names, told to whoever asked for them: each
 * --action-script, and the RPC client (a NOTIFY message it acknowledges).
 *
 * dump:    pre-dump, network-lock, post-dump, network-unlock (resumed or failed)
 * restore: pre-restore, setup-namespaces (root pid), post-setup-namespaces,
 *          post-restore (root pid), pre-resume, network-unlock, post-resume,
 *          orphan-pts-master (the fd of a pty master made for the client)
 *
 * A failing script or a client that says no stops the dump or restore at
 * that point, as a failure would, with the point named.
 */
#ifndef CRYO_NOTIFY_H
#define CRYO_NOTIFY_H

#include <sys/types.h>

struct cryo_opts;

int notify(const struct cryo_opts *o, const char *point, pid_t pid);
/* the same, with an fd for the RPC client (scripts cannot take one) */
int notify_fd(const struct cryo_opts *o, const char *point, int fd);

#endif
