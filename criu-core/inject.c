/*
 * Packets made up as if a peer had sent them: a TCP segment or a UDP
 * datagram with its header and checksum, sent through a raw socket of the
 * current network namespace bound to the peer's address (which needs
 * CAP_NET_RAW and CAP_NET_ADMIN there). This is how a restored socket gets
 * what the kernel has no setter for: the peer's FIN (CLOSE_WAIT and after),
 * the handshake of a connection that must be back in its listener's
 * queue, and the datagrams a UDP socket had received and not read.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "inject.h"
#include "util.h"

/* ones' complement sum of n bytes, added to s */
static uint32_t csum_add(uint32_t s, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (b[i] << 8) | b[i + 1];
	if (n & 1)
		s += b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return s;
}

/* an IPv4 address of a (possibly v4-mapped IPv6) socket address, or false */
static bool v4_of(const void *sa, struct in_addr *a)
{
	const struct sockaddr_in *in = sa;
	const struct sockaddr_in6 *in6 = sa;

	if (in->sin_family == AF_INET) {
		*a = in->sin_addr;
		return true;
	}
	if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return false;
	memcpy(a, &in6->sin6_addr.s6_addr[12], 4);
	return true;
}

/*
 * Send the transport header and data pkt (tlen bytes, protocol proto, its
 * checksum field at csum_off still 0) from one socket address to another.
 */
static int l4_inject(int proto, const void *from, const void *to, uint8_t *pkt, size_t tlen, size_t csum_off,
		     const char *what)
{
	struct in_addr s4, d4;
	bool v4 = v4_of(from, &s4) && v4_of(to, &d4);
	union {
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} src = { 0 }, dst = { 0 };
	socklen_t alen = v4 ? sizeof(src.in) : sizeof(src.in6);
	_cleanup_close_ int raw = -1;
	int on = 1;
	uint16_t sum;
	uint32_t s;

	if (v4) {
		struct { struct in_addr s, d; uint8_t z, p; uint16_t l; } __attribute__((packed)) ph =
			{ s4, d4, 0, proto, htons(tlen) };

		s = csum_add(0, &ph, sizeof(ph));
		src.in = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr = s4 };
		dst.in = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr = d4 };
	} else {
		const struct in6_addr *s6 = &((const struct sockaddr_in6 *)from)->sin6_addr;
		const struct in6_addr *d6 = &((const struct sockaddr_in6 *)to)->sin6_addr;
		struct { struct in6_addr s, d; uint32_t l; uint8_t z[3], n; } __attribute__((packed)) ph =
			{ *s6, *d6, htonl(tlen), { 0 }, proto };

		s = csum_add(0, &ph, sizeof(ph));
		src.in6 = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_addr = *s6 };
		dst.in6 = (struct sockaddr_in6){ .sin6_family = AF_INET6, .sin6_addr = *d6 };
	}
	sum = ~csum_add(s, pkt, tlen) & 0xffff;
	if (proto == IPPROTO_UDP && !sum)
		sum = 0xffff;	/* 0 would say "no checksum" */
	sum = htons(sum);
	memcpy(pkt + csum_off, &sum, sizeof(sum));
	/*
	 * The kernel makes the IP header, from the peer's address (transparent:
	 * it need not be one of ours), and a big packet gets its data in page
	 * fragments like a real one: the receiver's buffer then holds as much.
	 */
	raw = socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, proto);
	if (raw < 0)
		return pr_perror("%s: cannot open a raw socket to send it a packet from its peer", what);
	if (setsockopt(raw, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_TRANSPARENT : IPV6_TRANSPARENT, &on, sizeof(on)) ||
	    bind(raw, (void *)&src, alen))
		return pr_perror("%s: cannot send from its peer's address", what);
	if (sendto(raw, pkt, tlen, 0, (void *)&dst, alen) != (ssize_t)tlen)
		return pr_perror("%s: cannot send it a packet from its peer", what);
	return 0;
}

int tcp_inject(const struct tcp_seg *seg, const char *what)
{
	/* the port sits at the same place in sockaddr_in and sockaddr_in6 */
	const struct sockaddr_in *from = seg->from, *to = seg->to;
	size_t tlen = sizeof(struct tcphdr) + seg->olen + seg->len;
	struct tcphdr th = {
		.source = from->sin_port, .dest = to->sin_port, .seq = htonl(seg->seq), .ack_seq = htonl(seg->ack),
		.doff = (sizeof(th) + seg->olen) / 4, .window = htons(seg->window),
	};
	_cleanup_free_ uint8_t *pkt = NULL;

	if (seg->olen % 4 || tlen > 0xffff - sizeof(struct ip6_hdr)) {
		pr_err("%s: a TCP segment of %zu option and %zu data bytes cannot be made", what, seg->olen, seg->len);
		return -EINVAL;
	}
	if (!(pkt = malloc(tlen)))
		return -ENOMEM;
	th.syn = !!(seg->flags & TH_SYN);
	th.ack = !!(seg->flags & TH_ACK);
	th.fin = !!(seg->flags & TH_FIN);
	th.psh = !!(seg->flags & TH_PUSH);
	memcpy(pkt, &th, sizeof(th));
	if (seg->olen)
		memcpy(pkt + sizeof(th), seg->opts, seg->olen);
	if (seg->len)
		memcpy(pkt + sizeof(th) + seg->olen, seg->data, seg->len);
	return l4_inject(IPPROTO_TCP, from, to, pkt, tlen, offsetof(struct tcphdr, check), what);
}

int udp_inject(const void *from, const void *to, const void *data, size_t len, const char *what)
{
	const struct sockaddr_in *f = from, *t = to;
	size_t tlen = sizeof(struct udphdr) + len;
	struct udphdr uh = { .source = f->sin_port, .dest = t->sin_port, .len = htons(tlen) };
	_cleanup_free_ uint8_t *pkt = NULL;

	if (tlen > 0xffff) {
		pr_err("%s: a datagram of %zu bytes cannot be made", what, len);
		return -EINVAL;
	}
	if (!(pkt = malloc(tlen)))
		return -ENOMEM;
	memcpy(pkt, &uh, sizeof(uh));
	if (len)
		memcpy(pkt + sizeof(uh), data, len);
	return l4_inject(IPPROTO_UDP, from, to, pkt, tlen, offsetof(struct udphdr, check), what);
}
