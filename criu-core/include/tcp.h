/*
 * tcp-queue.c: connections a listener holds that its task has not
 * accepted yet.
 */
#ifndef CRYO_TCP_H
#define CRYO_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "files.pb-c.h"
#include "inject.h"

/* a socket in repair mode, not connected yet: the sequence numbers its queues start from */
int tcp_repair_seqs(int fd, uint32_t rcv, uint32_t snd, const char *what);

/*
 * Put connection p back at the end of its listener's accept queue, in the
 * current network namespace: the listener is listening, and the peer is
 * not told. peer_ts: the peer's timestamp clock, or NULL if it is not
 * known (the connection then comes back without timestamps).
 */
int tcp_requeue(const TcpPendingEntry *p, const uint32_t *peer_ts, const char *what);

#endif
