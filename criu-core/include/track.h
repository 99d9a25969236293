/*
 * Dirty-page tracking between dump rounds, for a kernel without
 * soft-dirty bits: a userfaultfd in write-protect async mode over the
 * task's private memory. The kernel clears a page's write-protect bit on
 * the first write to it, with no fault to handle; PAGEMAP_SCAN reads the
 * bits back and sets them again in one pass.
 */
#ifndef CRYO_TRACK_H
#define CRYO_TRACK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct parasite_ctl;

struct track {
	int uffd;		/* cryo's reference */
	int task_fd;		/* the same file parked in the task, or -1 */
	bool fresh;		/* made this round: no page is known to be unchanged */
};

/*
 * Take over the tracker a previous round parked in task pid at task_fd:
 * 0, or -ENOENT if that fd is no longer a userfaultfd (logged as info).
 */
int track_take(pid_t pid, int task_fd, struct track *tr);
/* is fd of task pid a userfaultfd? */
bool track_fd_is_uffd(pid_t pid, int fd);
/* the fds of trackers cryo parked in task pid (up to max): how many */
int track_find_parked(pid_t pid, int *out, int max);
/* Make a tracker for the seized task ctl->pid and park it there. */
int track_create(struct parasite_ctl *ctl, struct track *tr);
/* Close the parked copy in the task (it stays alive through tr->uffd). */
int track_unpark(struct parasite_ctl *ctl, struct track *tr);
void track_close(struct track *tr);

/*
 * Register [start, end), one VMA, for tracking: 0, or -errno if the kernel
 * cannot track that mapping (its pages then always count as written).
 */
int track_register(struct track *tr, pid_t pid, uint64_t start, uint64_t end);

#endif
