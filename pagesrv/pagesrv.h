/*
 * The page server: images streamed over TCP from a dump on one host into
 * an image directory on another. The wire format is in PROTOCOL.md.
 */
#ifndef CRYO_PAGESRV_H
#define CRYO_PAGESRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PS_MAGIC	"CRYOPS\0\2"	/* version 2: frames sealed with AES-256-GCM */
#define PS_NONCE_LEN	32
#define PS_MAC_LEN	32		/* HMAC-SHA256 */
#define PS_KEY_LEN	32		/* AES-256 */
#define PS_TAG_LEN	16		/* GCM */
#define PS_NAME_MAX	255
#define PS_SECRET_MAX	4096
/*
 * The one bound of the wire: no frame carries more than PS_FRAME_MAX bytes
 * of payload, raw or compressed (a frame is compressed only when that makes
 * it smaller). Every buffer for frames is sized from it (PS_REC_MAX).
 */
#define PS_FRAME_MAX	(4u << 20)
#define PS_STATUS_MAX	480		/* bytes of a status's message */
/* data unacknowledged this long, or a silent peer, ends a session */
#define PS_USER_TIMEOUT_S	10
#define PS_KEEPALIVE_IDLE_S	5
/* an unauthenticated peer has this long for the whole handshake */
#define PS_HANDSHAKE_S		5
/* connections waiting to be taken (sessions run side by side: listen.c) */
#define PS_BACKLOG		128

enum ps_type {
	PSF_FILE = 1,		/* payload: a file name; the DATA frames after it fill that file */
	PSF_DATA = 2,		/* payload: the file's next bytes (zlib if PS_F_ZLIB) */
	PSF_CLOSE = 3,		/* the file is complete */
	PSF_LINK = 4,		/* payload: "name\0target": a symbolic link (parent) */
	PSF_DONE = 5,		/* the round is complete: the server answers with its status */
	/* cryo migrate-agent only */
	PSF_MIGRATE = 6,	/* payload: the migration's ID: its rounds go into DIR/ID; status */
	PSF_RESTORE = 7,	/* payload: a round's name: restore it; status: "running as pid N" or why not */
	PSF_COMMIT = 8,		/* the source is let go: the restored tree stays; status */
	/* 9 was SYNC (version 1): pages are copied now, none is held by the socket */
	/* post-copy: a restore whose PE_LAZY pages stay at the source; frames go both ways after it */
	PSF_RESTORE_LAZY = 10,	/* payload: a round's name; status as RESTORE; COMMIT then gets no answer */
	PSF_PAGES = 11,		/* source: struct ps_pages, then the bytes */
	PSF_PAGE_REQ = 12,	/* agent: struct ps_page_req: a task touched these first */
	PSF_LAZY_DONE = 13,	/* agent: every page is in; the source may go */
	PSF_STATUS = 14,	/* server: int32 err (0, or an errno), then the message */
	PSF_TYPE_MAX = PSF_STATUS,
};

struct ps_pages {
	uint32_t vpid;		/* the task, by its pid in the images */
	uint32_t pad;
	uint64_t addr;
} __attribute__((packed));

struct ps_page_req {
	uint32_t vpid;
	uint32_t pad;
	uint64_t addr, len;
} __attribute__((packed));

#define PS_F_ZLIB	1u

/*
 * Every frame after the handshake: this header in clear (authenticated as
 * the AEAD's associated data), len bytes of payload sealed with the
 * direction's key, then the GCM tag.
 */
struct ps_hdr {
	uint32_t type;
	uint32_t len;		/* bytes of payload on the wire */
	uint32_t raw_len;	/* bytes once uncompressed */
	uint32_t flags;
} __attribute__((packed));

/* the largest frame on the wire, header and tag included */
#define PS_REC_MAX	(sizeof(struct ps_hdr) + PS_FRAME_MAX + PS_TAG_LEN)

/* the handshake's answer, in clear (before the keys): 0 and "ok", or an errno and why */
struct ps_status {
	int32_t err;
	uint32_t len;		/* then len bytes of message */
} __attribute__((packed));

/* aead.c: one direction of a session: its key, and the number of the next frame */
struct ps_aead {
	void *ctx;		/* EVP_CIPHER_CTX, keyed once */
	uint64_t seq;		/* the frame's nonce: never used twice */
	bool open;		/* deciphering (the receiving direction) */
};

struct ps_keys {
	struct ps_aead tx, rx;
};

/*
 * The session's keys (PROTOCOL.md): HKDF-SHA256 of the secret, salted with
 * both nonces, one key per direction. server: which end this is. 0, or
 * -errno (logged).
 */
int ps_keys_derive(struct ps_keys *k, const uint8_t *secret, size_t slen, const uint8_t *nonce_s,
		   const uint8_t *nonce_c, uint32_t flags, bool server);
void ps_keys_free(struct ps_keys *k);
/*
 * Seal len bytes of in into out (may be in) with h as associated data,
 * writing the tag; the direction's next nonce. 0, or -errno (logged).
 */
int ps_seal(struct ps_aead *a, const struct ps_hdr *h, uint8_t *out, const uint8_t *in, size_t len,
	    uint8_t tag[PS_TAG_LEN]);
/* the reverse, in place: 0, or -EBADMSG when the frame is not the next one the peer sealed */
int ps_unseal(struct ps_aead *a, const struct ps_hdr *h, uint8_t *buf, size_t len, const uint8_t tag[PS_TAG_LEN]);
/*
 * A frame header as the protocol allows it (compress: zlib was
 * negotiated): NULL, or why not.
 */
const char *ps_hdr_refused(const struct ps_hdr *h, bool compress);

/* auth.c */
/* read the shared secret from path: 0, or -errno (logged) */
int ps_read_secret(const char *path, uint8_t *secret, size_t *len);
void ps_mac(const uint8_t *secret, size_t slen, const char *role, const uint8_t *a, const uint8_t *b,
	    uint32_t flags, uint8_t out[PS_MAC_LEN]);
bool ps_mac_equal(const uint8_t *a, const uint8_t *b);
/* sock.c: TCP keepalive and user timeout: both ends notice a dead peer */
void ps_sock_liveness(int sock);
/* a listening TCP socket on addr (NULL: any) and port, or -errno (logged) */
int ps_listen(const char *addr, const char *port);
/* a TCP connection to "HOST:PORT", live-checked, or -errno (logged) */
int ps_dial(const char *where);

/* client.c: a dump's connection to a page server */
struct ps_client;
/* connect to "HOST:PORT" and authenticate: 0 and *out, or -errno (logged) */
int ps_connect(const char *where, const char *secret_file, bool compress, struct ps_client **out);
/*
 * The same on a connection the other end made (a lazy dump's: the restore
 * side connects to it, and is the session's server); sock is the session's.
 */
int ps_attach(int sock, const char *peer, const char *secret_file, bool compress, struct ps_client **out);
int ps_file(struct ps_client *c, const char *name);
int ps_write(struct ps_client *c, const void *buf, size_t len);
int ps_close_file(struct ps_client *c);
int ps_link(struct ps_client *c, const char *name, const char *target);
/* send a whole local file of dirfd under the name remote */
int ps_send_file(struct ps_client *c, int dirfd, const char *name, const char *remote);
/*
 * Every image of dirfd (but the pages, streamed already) into dir on the
 * server, its parent link first, inventory.img then manifest.img last,
 * then ps_done.
 */
int ps_send_images(struct ps_client *c, int dirfd, const char *dir);
/* the round is complete: 0 once the server says it has everything, or -errno (logged) */
int ps_done(struct ps_client *c);
/* a migration's frames: 0, or -errno (logged, and the server's reason in msg if it gave one) */
int ps_migrate(struct ps_client *c, const char *id);
int ps_restore(struct ps_client *c, const char *round, char *msg, size_t len);
int ps_commit(struct ps_client *c);
/* post-copy: the restore, the commit without an answer, pages, and the agent's frames */
int ps_restore_lazy(struct ps_client *c, const char *round, char *msg, size_t len);
/* the same in two steps, for a caller that waits on something else meanwhile */
int ps_ask_restore_lazy(struct ps_client *c, const char *round);
int ps_restore_answer(struct ps_client *c, char *msg, size_t len);
int ps_commit_nowait(struct ps_client *c);
/*
 * A PAGES frame of len bytes of vpid's memory at addr: where the caller
 * puts those bytes (straight into the frame), then ps_pages_send seals and
 * sends it. NULL if len is too large for a frame (logged).
 */
uint8_t *ps_pages_frame(struct ps_client *c, uint32_t vpid, uint64_t addr, uint32_t len);
int ps_pages_send(struct ps_client *c);
/* one frame from the agent into buf (max bytes): 0 with *type and *len, or -errno (logged) */
int ps_recv_frame(struct ps_client *c, uint32_t *type, void *buf, size_t max, size_t *len);
int ps_sock(const struct ps_client *c);
void ps_free(struct ps_client *c);

/*
 * For the parasite's page pipe: a chunk of len bytes coming through
 * pipe_fd, into the file begun with ps_file. ps_chunk_move takes what the
 * pipe has (up to max; as read(2), -1 and errno EAGAIN when it is empty)
 * straight into the DATA frame being filled; chunks one after the other
 * share a frame, sealed (compressed first, if the session is) once it is
 * full enough or anything else is sent. The crc the parasite computed
 * (ps_chunk_end) is not sent: it goes into the pagemap.
 */
int ps_chunk_begin(struct ps_client *c, uint32_t len);
ssize_t ps_chunk_move(struct ps_client *c, int pipe_fd, uint32_t max);
int ps_chunk_end(struct ps_client *c, uint32_t crc);
/* every frame gathered (the page chunks' too) sealed and sent */
int ps_flush(struct ps_client *c);
const char *ps_peer(const struct ps_client *c);
/* bytes sent on the wire so far */
uint64_t ps_sent(const struct ps_client *c);

#endif
