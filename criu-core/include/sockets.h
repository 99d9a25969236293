/* sockets.c: what every kind of socket shares: its SOL_SOCKET options. */
#ifndef CRYO_SOCKETS_H
#define CRYO_SOCKETS_H

#include "files.h"
#include "util.h"

/* buffer sizes, credentials passing, timeouts, peek offset, filter of the socket p */
int sk_opts_dump(const struct fd_parms *p, SkOpts *o, struct arena *a);
/* set them on fd; what names the socket in errors */
int sk_opts_restore(int fd, const SkOpts *o, const char *what);

/*
 * Warn if socket p (of a kind the kernel cannot peek through, named kind)
 * has something queued: it is not kept.
 */
void sk_warn_queued(const struct fd_parms *p, const char *kind);

struct nlmsghdr;
/*
 * Ask sock_diag, in the network namespace of socket sk (cryo's fd), with
 * req (len bytes, starting with its nlmsghdr, which this fills in as a
 * SOCK_DIAG_BY_FAMILY dump), and give each answer to cb until it returns
 * non-zero: that is returned (< 0 an error), or 0 once the list ends.
 */
int sock_diag_walk(int sk, void *req, size_t len, int (*cb)(const struct nlmsghdr *h, void *arg), void *arg,
		   const char *what);

#endif
