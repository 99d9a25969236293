/* sockets.c: what every kind of socket shares: its SOL_SOCKET options. */
#ifndef CRYO_SOCKETS_H
#define CRYO_SOCKETS_H

#include "files.h"
#include "util.h"

/* buffer sizes, credentials passing, timeouts, peek offset, filter of the socket p */
int sk_opts_dump(const struct fd_parms *p, SkOpts *o, struct arena *a);
/* set them on fd; what names the socket in errors */
int sk_opts_restore(int fd, const SkOpts *o, const char *what);

#endif
