/*
 * tcp-inject.c: TCP segments made up as if a peer had sent them.
 * tcp-queue.c: connections a listener holds that its task has not
 * accepted yet.
 */
#ifndef CRYO_TCP_H
#define CRYO_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "files.pb-c.h"

struct tcp_seg {
	const void *from, *to;		/* sockaddr_in or _in6; v4-mapped ones go as IPv4 */
	uint32_t seq, ack;
	uint8_t flags;			/* TH_SYN, TH_ACK, TH_FIN, TH_PUSH */
	uint16_t window;		/* as it goes on the wire (scaled) */
	const uint8_t *opts;		/* TCP options, padded to 4 bytes */
	size_t olen;
	const void *data;
	size_t len;
};

/* send seg through a raw socket of the current network namespace; what names the connection */
int tcp_inject(const struct tcp_seg *seg, const char *what);

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
