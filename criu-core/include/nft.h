/*
 * net-lock.c: nftables through libnftnl and libmnl, for the network lock
 * of a namespace the caller owns and for udp-cork.c.
 */
#ifndef CRYO_NFT_H
#define CRYO_NFT_H

#include <stdbool.h>

struct mnl_socket;

/* a netfilter netlink socket of the network namespace nsfd (bound); NULL, logged, on failure */
struct mnl_socket *nft_socket_in(int nsfd, const char *what);
/* the kernel's answers to n requests: 0, or -errno of the first that failed */
int nft_acks(struct mnl_socket *nl, int n);

/*
 * The lock of a network namespace that is not the tree's to make again
 * (--external net[INODE]:KEY): a table of cryo's in it whose input and
 * output chains drop every packet, from the dump to the restore, so that
 * peers of its TCP connections only retransmit. It outlives cryo.
 */
int netns_lock(int nsfd, bool on, const char *what);

#endif
