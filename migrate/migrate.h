/*
 * Live migration: the driver (migrate.c, cryo migrate) on the source and
 * the agent's restore (agent.c, for cryo migrate-agent, whose sessions
 * pagesrv/server.c runs).
 */
#ifndef CRYO_MIGRATE_H
#define CRYO_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Restore the images in dir as a detached tree: 0 with *pid its root and
 * msg saying so, or -errno with msg the restore's own reason. The calling
 * process becomes a subreaper, so that the tree's root is its child once
 * cryo restore exits; any step that fails (the restore, its pid file, the
 * pid in it not that child's) has every tree the caller is the parent of
 * killed before this returns: a failed restore leaves no task behind. With
 * lazy_sock >= 0 (post-copy) it is restored with --lazy-pages, and each
 * task's userfaultfd comes back on lazy_sock for lazy_serve. guardian: the
 * caller's guardian (a child of its own, not killed), or 0.
 */
int agent_restore(const char *dir, int lazy_sock, pid_t guardian, pid_t *pid, char *msg, size_t len);
/*
 * Are the images in dir in memory (tmpfs)? Then the restore frees them as
 * it reads them (--auto-dedup): the memory each chunk frees is the next
 * one's, and the target never holds a tree's memory twice. (On a disk,
 * punching holes costs more than it saves.)
 */
bool agent_images_in_memory(const char *dir);
/*
 * kill a restored tree the driver did not commit: its root and every
 * descendant, and wait until they are dead. 0, or -errno (logged) if some
 * are still there after 10 s.
 */
int agent_kill_tree(pid_t root);

#endif
