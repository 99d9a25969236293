/* inject.c: packets made up as if a peer had sent them. */
#ifndef CRYO_INJECT_H
#define CRYO_INJECT_H

#include <stddef.h>
#include <stdint.h>

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

/* a UDP datagram from one socket address to another (v4-mapped ones go as IPv4) */
int udp_inject(const void *from, const void *to, const void *data, size_t len, const char *what);

#endif
