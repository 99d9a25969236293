/*
 * udp-queue.c: the datagrams a UDP socket received and its task has not read.
 * udp-cork.c: the bytes it holds back for a datagram not sent yet.
 */
#ifndef CRYO_UDP_H
#define CRYO_UDP_H

#include "files.pb-c.h"
#include "util.h"

/* read the queue of fd into e->rqueue, leaving it in place; what names the socket */
int udp_queue_dump(int fd, InetSkEntry *e, struct arena *a, const char *what);
/* send e's queued datagrams to fd (bound, connected) again and check they are there */
int udp_queue_restore(int fd, const InetSkEntry *e, const char *what);

/*
 * fd holds bytes back (UDP_CORK or MSG_MORE): catch them into e->corked
 * by letting them go into a netfilter rule, and hold them back again
 */
int udp_cork_dump(int fd, InetSkEntry *e, struct arena *a, const char *what);
/* hold e->corked back in fd (bound, connected, options set) */
int udp_cork_restore(int fd, const InetSkEntry *e, const char *what);

#endif
