/*
 * libFuzzer harness: the page server's session (pagesrv/server.c, store.c)
 * against a client that holds the secret, so that every frame reaches the
 * parser after its authentication. Each input is one session on a
 * socketpair, served by session_serve in a thread, into a fresh directory:
 *
 *	byte 0        session flags (bit 0: zlib)
 *	then frames:  struct ps_hdr (16 bytes) followed by the payload's bytes
 *
 * The harness seals each frame with the client's key as PROTOCOL.md says
 * (a frame declaring more than PS_FRAME_MAX goes as a bare header, which
 * the server must refuse from it alone; a zlib frame's payload is
 * compressed here, its raw_len kept as the input says one time in four).
 * Page-server mode only: a migration's RESTORE would run cryo restore.
 * Seeds: test/fuzz/corpus/frame (a round of a real dump's images).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cryo.h"
#include "log.h"
#include "pagesrv.h"
#include "session.h"
#include "util.h"

static const uint8_t secret[] = "fuzz-frame-secret-of-the-harness";
static char dir[64];
static int topfd = -1;
static uint8_t *frame;		/* header, payload and tag of one frame */
static uint8_t *zbuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/tmp/cryo-fuzz-frame.XXXXXX");
	if (!mkdtemp(dir) || (topfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		abort();
	frame = malloc(PS_REC_MAX);
	zbuf = malloc(compressBound(PS_FRAME_MAX));
	if (!frame || !zbuf)
		abort();
	log_init(0, NULL);
	return 0;
}

static void *serve(void *arg)
{
	struct session *s = arg;

	session_serve(s);
	/* the client reads to the end of what it says */
	shutdown(s->sock, SHUT_RDWR);
	return NULL;
}

/* write len bytes, reading (and dropping) what the server says meanwhile: false once it is gone */
static bool put(int sock, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	char sink[4096];

	while (len) {
		struct pollfd pf = { .fd = sock, .events = POLLIN | POLLOUT };
		ssize_t n;

		if (poll(&pf, 1, 5000) <= 0)
			return false;
		if (pf.revents & POLLIN)
			(void)!recv(sock, sink, sizeof(sink), MSG_DONTWAIT);
		if (pf.revents & (POLLERR | POLLHUP))
			return false;
		if (!(pf.revents & POLLOUT))
			continue;
		n = send(sock, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		if (n > 0) {
			p += n;
			len -= n;
		}
	}
	return true;
}

static bool get(int sock, void *buf, size_t len)
{
	return read_all(sock, buf, len) == 0;
}

/* the client's half of the handshake: its keys, or false */
static bool handshake(int sock, uint32_t flags, struct ps_keys *k)
{
	uint8_t hello[8 + PS_NONCE_LEN], auth[8 + 4 + PS_NONCE_LEN + PS_MAC_LEN];
	uint8_t ok[sizeof(struct ps_status) + 2 + PS_MAC_LEN];
	uint8_t *nonce_c = auth + 12;

	if (!get(sock, hello, sizeof(hello)))
		return false;
	memcpy(auth, PS_MAGIC, 8);
	memcpy(auth + 8, &flags, 4);
	memset(nonce_c, 0x5a, PS_NONCE_LEN);
	ps_mac(secret, sizeof(secret) - 1, "cryo-client", hello + 8, nonce_c, flags, auth + 12 + PS_NONCE_LEN);
	if (!put(sock, auth, sizeof(auth)) || !get(sock, ok, sizeof(ok)))
		return false;
	return !ps_keys_derive(k, secret, sizeof(secret) - 1, hello + 8, nonce_c, flags, false);
}

/* the frames of the input, sealed and sent */
static void send_frames(int sock, struct ps_keys *k, const uint8_t *in, size_t size, bool zlib)
{
	while (size >= sizeof(struct ps_hdr)) {
		struct ps_hdr h;
		size_t n;

		memcpy(&h, in, sizeof(h));
		in += sizeof(h);
		size -= sizeof(h);
		if (h.len > PS_FRAME_MAX) {
			/* refused from its header: nothing after it is read */
			put(sock, &h, sizeof(h));
			return;
		}
		n = MIN(h.len, size);
		memset(frame + sizeof(h), 0, h.len);
		memcpy(frame + sizeof(h), in, n);
		in += n;
		size -= n;
		if (zlib && (h.flags & PS_F_ZLIB)) {
			uLongf zlen = compressBound(PS_FRAME_MAX);

			if (compress2(zbuf, &zlen, frame + sizeof(h), h.len, 1) != Z_OK || zlen > PS_FRAME_MAX)
				return;
			if (h.raw_len % 4)
				h.raw_len = h.len;
			h.len = zlen;
			memcpy(frame + sizeof(h), zbuf, zlen);
		}
		memcpy(frame, &h, sizeof(h));
		if (ps_seal(&k->tx, &h, frame + sizeof(h), frame + sizeof(h), h.len, frame + sizeof(h) + h.len) ||
		    !put(sock, frame, sizeof(h) + h.len + PS_TAG_LEN))
			return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cryo_opts o = { .command = "page-server", .images_dir = dir, .lazy_sock = -1, .hangup_fd = -1 };
	struct session s = { .opts = &o, .fd = -1, .fdir = -1, .restore_listen = -1 };
	struct ps_keys k = { 0 };
	uint32_t flags = size ? data[0] & PS_F_ZLIB : 0;
	char sink[4096];
	pthread_t t;
	int sv[2];

	if (mkdirat(topfd, "run", 0700) ||
	    (s.dirfd = s.base_dirfd = openat(topfd, "run", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	memcpy(s.secret, secret, sizeof(secret) - 1);
	s.slen = sizeof(secret) - 1;
	s.sock = sv[0];
	snprintf(s.peer, sizeof(s.peer), "fuzz");
	if (pthread_create(&t, NULL, serve, &s))
		abort();
	if (handshake(sv[1], flags, &k) && size)
		send_frames(sv[1], &k, data + 1, size - 1, flags & PS_F_ZLIB);
	shutdown(sv[1], SHUT_WR);
	while (read(sv[1], sink, sizeof(sink)) > 0)
		;
	pthread_join(t, NULL);
	ps_keys_free(&k);
	close(sv[0]);
	close(sv[1]);
	close(s.dirfd);
	rm_tree_at(topfd, "run");
	log_error_reset();
	return 0;
}
