/*
 * One page-server session, inside the page server (server.c: the frames,
 * store.c: the files and links it writes, listen.c: the listening process
 * that runs each session in a child of its own).
 */
#ifndef CRYO_PAGESRV_SESSION_H
#define CRYO_PAGESRV_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pagesrv.h"

struct cryo_opts;
struct lazy;

/* names a client may not send (they begin with '.'): the agent's own */
#define MIGRATION_MARK		".cryo-migration"	/* in a migration's directory */
#define GONE_PREFIX		".gone-"		/* a migration's directory being removed */
/* store.c: a file's small DATA frames gather in a buffer of this size */
#define FBUF_SIZE		(1u << 20)

/* something a session made, removed if it fails before its round is whole */
struct made {
	char *name;			/* ROUND/NAME, or ROUND: beneath the session's directory */
	bool dir;
};

struct session {
	const struct cryo_opts *opts;
	bool agent;			/* cryo migrate-agent: migrations welcome */
	int sock;
	int dirfd;			/* where names go: DIR, or DIR/ID in a migration */
	int base_dirfd;			/* DIR */
	char mig[PS_NAME_MAX + 1];	/* the migration's ID, or "" */
	pid_t restored;			/* the migration's tree, restored here */
	struct guard *guard;		/* kills it should the session die before the commit */
	struct guard_entry *g_tree;
	bool committed;			/* the driver let its source go: the tree stays */
	struct lazy *lazy;		/* post-copy: the handler, while pages still come */
	bool lazy_mode;			/* post-copy: the tree stays only once every page is in */
	bool lazy_done;
	int restore_listen;		/* cryo lazy-pages: where the restore hands over its tasks, or -1 */
	const char *restore_path;	/* its path */
	unsigned rounds;		/* DONE frames so far */
	char peer[80];
	uint8_t secret[PS_SECRET_MAX];
	size_t slen;
	bool compress;
	bool keyed;			/* authenticated: frames are sealed both ways */
	struct ps_keys keys;
	/* the file being written: its hidden name in its directory until it is whole */
	int fd;				/* or -1 */
	int fdir;			/* its directory (O_PATH), or -1 */
	char name[PS_NAME_MAX + 1];	/* as the peer named it */
	char part[32];
	struct made *made;		/* made by this session since its last whole round */
	size_t nr_made;
	uint8_t *payload;		/* a frame's payload and tag: PS_FRAME_MAX + PS_TAG_LEN */
	uint8_t *raw;			/* a compressed frame's bytes, uncompressed: PS_FRAME_MAX */
	uint8_t *fbuf;			/* the open file's bytes not written yet */
	size_t flen;
	uint8_t *rbuf;			/* what came in and is not read yet: rbuf[rpos, rlen) */
	size_t rpos, rlen;
	uint64_t bytes;
	char err[256];			/* why the session failed: the peer hears it */
};

/* the session fails: err (positive) and why, logged naming the peer and kept for the peer; -err */
int session_fail(struct session *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* the session fails for what the door (or another module) logged already: ret */
int session_refused(struct session *s, int ret);
/*
 * A name from the peer, as the protocol allows it: 1..max_parts components
 * of [A-Za-z0-9._-], none beginning with '.' (so neither '.' nor '..'; the
 * agent's own names begin with one), through the door; copied with its NUL
 * into out (PS_NAME_MAX + 1 bytes). 0, or the session failed.
 */
int session_name(struct session *s, const void *name, size_t len, int max_parts, const char *what, char *out);

/* store.c: the FILE, DATA, CLOSE and LINK frames */
int store_file(struct session *s, const char *name, size_t len);
int store_data(struct session *s, const uint8_t *data, size_t len);
int store_close(struct session *s);
int store_link(struct session *s, const char *payload, size_t len);
/* the round is whole: what it made stays */
void store_keep(struct session *s);
/* the session failed: what it made since its last whole round goes */
void store_undo(struct session *s);

/* server.c: one connection, start to end: 0 if everything it sent is in place */
int session_serve(struct session *s);
/* the session's buffers, once its peer is authenticated: 0, or -ENOMEM */
int session_buffers(struct session *s);
void session_free(struct session *s);

#endif
