/* cgroup.c: the freezer around a dump, and the tree's own cgroups with their limits. */
#ifndef CRYO_CGROUP_H
#define CRYO_CGROUP_H

#include <stdbool.h>
#include <sys/types.h>

struct dump_ctx;
struct restore_ctx;

/*
 * Freeze the freezer cgroup of root if it is the tree's own (not "/", not
 * cryo's): v1's freezer hierarchy if it is in one, else cgroup v2's.
 * ctx->freezer is then its directory. Nothing to do otherwise. One found
 * frozen already (a paused container) is taken as it is: ctx->freezer_found.
 */
int cgroup_freeze(struct dump_ctx *ctx, pid_t root);
/*
 * Thaw it once its tasks are seized (they stop in ptrace as they leave the
 * freezer). One found frozen is thawed too, for as long as cryo holds its
 * tasks: ctx->refreeze, and the guardian freezes it again should cryo die.
 */
int cgroup_thaw(struct dump_ctx *ctx);
/*
 * Before the seized tasks are let go: the cgroup found frozen is frozen
 * again (they stay in the freezer once detached), as the caller had it.
 */
int cgroup_refreeze(struct dump_ctx *ctx);
/* the tasks are killed instead: the cgroup stays thawed (a restore may put tasks into it) */
void cgroup_refreeze_drop(struct dump_ctx *ctx);
/* write dir's freezer: frozen or thawed (v2: cgroup.freeze) */
int cgroup_freezer_set(const char *dir, bool v2, bool frozen);
/* every process of the frozen cgroup must be in the tree */
int cgroup_check_members(struct dump_ctx *ctx);
/* --cgroup DIR: the one process of DIR whose parent is outside it */
int cgroup_root_task(const char *dir, pid_t *root);
/* cgroup.img: the root's cgroups that are its own, with their limits */
int cgroup_dump(struct dump_ctx *ctx);

int cgroup_read(struct restore_ctx *ctx);
/*
 * mnt.c: a bind mount of a cgroup hierarchy (fstype, its options naming
 * the controllers) from dir: if dir was the tree's own cgroup there, its
 * restored cgroup's directory into out (made by cgroup_prepare), and true
 */
bool cgroup_follow_bind(struct restore_ctx *ctx, const char *fstype, const char *opts, const char *dir, char *out,
			size_t len);
/* make the cgroups (refusing ones with processes in them) and set their limits */
int cgroup_prepare(struct restore_ctx *ctx);
/*
 * put pid (cryo's view) into its cgroups: vpid 0, the root, into every one
 * of the root's; another task (vpid: in the tree) into those below them
 * that list it
 */
int cgroup_attach(struct restore_ctx *ctx, pid_t pid, pid_t vpid);
/* after a failed restore: remove the cgroups cryo made */
void cgroup_cleanup(struct restore_ctx *ctx, bool failed);

#endif
