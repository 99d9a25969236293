/* ns.c, mnt.c: the namespaces a container has of its own. */
#ifndef CRYO_NS_H
#define CRYO_NS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

struct dump_ctx;
struct restore_ctx;

/* which namespaces the tree has of its own (ctx->ns_flags), its pids inside them */
int ns_collect(struct dump_ctx *ctx);
/* the pid inside the tree's pid namespace of a pid or tid of the tree (cryo's view); 0 if none */
pid_t dump_vpid(struct dump_ctx *ctx, pid_t pid);
/* a uid or gid as cryo sees it, as the tree's user namespace sees it (65534 if unmapped) */
uint32_t ns_uid(const struct dump_ctx *ctx, uint32_t id);
uint32_t ns_gid(const struct dump_ctx *ctx, uint32_t id);
/* the credentials of a task, made the tree's view */
void ns_translate_creds(const struct dump_ctx *ctx, CredsEntry *c);
/* ns.img: the flags and the UTS names */
int ns_dump(struct dump_ctx *ctx);
/* cryo's own namespace name (e.g. "uts") switched to pid's and back */
int ns_enter(pid_t pid, const char *name, int *saved);
int ns_leave(const char *name, int *saved);

int ns_read(struct restore_ctx *ctx);
/* cryo: the user namespace's maps, for the root (pid) just cloned into it */
int ns_write_maps(struct restore_ctx *ctx, pid_t pid);
/* the CLONE_NEW* flags the root is cloned with */
uint64_t ns_clone_flags(const struct restore_ctx *ctx);
/* in the root, in its new namespaces: cgroup namespace, UTS, mounts, loopback */
int ns_restore_root(struct restore_ctx *ctx);

/* ipc.c: SysV objects and POSIX message queues; restored in the root */
int ipc_dump(struct dump_ctx *ctx);
int ipc_restore(struct restore_ctx *ctx);

/* net.c: devices, addresses, routes, sysctls; cryo restores them once the root exists (pid) */
int net_dump(struct dump_ctx *ctx);
int net_read(struct restore_ctx *ctx);
int net_restore(struct restore_ctx *ctx, pid_t pid);
/* the network lock: host veth ends down while the dump reads the sockets; up if the tree runs on */
int net_lock(struct dump_ctx *ctx);
void net_unlock(struct dump_ctx *ctx, bool resume);
/* set the network device name (in cryo's namespace) up: 0 or -errno (logged) */
int net_link_set_up(const char *name);
/* the restore is done: the host veth ends up */
int net_restore_unlock(struct restore_ctx *ctx);

/* mnt.c: the mount tree as the tree's root sees it, tmpfs contents included */
int mnt_dump(struct dump_ctx *ctx);
int mnt_read(struct restore_ctx *ctx);
/* in the root, in its new mount namespace: mount everything and pivot_root into it */
int mnt_restore(struct restore_ctx *ctx);
/* cryo: the empty directory (in /tmp) the root builds the container's root on, and its removal */
int mnt_make_stage(struct restore_ctx *ctx);
void mnt_remove_stage(struct restore_ctx *ctx);

#endif
