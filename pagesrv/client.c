/*
 * The dump's side of the page server (pagesrv.h, PROTOCOL.md).
 */
#define LOG_PREFIX "pagesrv: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <dirent.h>
#include <zlib.h>

#include "log.h"
#include "pagesrv.h"
#include "util.h"

static int strcmp_ptr(const char **a, const char **b)
{
	return strcmp(*a, *b);
}

struct ps_client {
	int sock;
	bool compress;
	bool keyed;			/* the handshake is done: frames are sealed */
	char peer[128];
	struct ps_keys keys;
	/*
	 * Frames are sealed into obuf and gathered there, so that a small
	 * frame costs no syscall of its own; the frame being built (a page
	 * chunk coming from the pipe) begins at fr_off.
	 */
	uint8_t *obuf;
	size_t wlen;
	size_t fr_off;
	uint32_t fr_type, fr_cap, fr_filled;
	/*
	 * A file's small writes and its page chunks, one after the other,
	 * fill one DATA frame (data_open) until it holds DATA_SEAL_AT bytes or
	 * something else is sent: a page costs no frame of its own.
	 * Compressing, they gather in raw (PS_FRAME_MAX bytes), compressed and
	 * sealed together.
	 */
	bool data_open;
	uint8_t *raw;
	uint32_t raw_len;
	uint64_t sent;			/* bytes on the wire */
	uint8_t status[sizeof(int32_t) + PS_STATUS_MAX + 1];	/* the last STATUS frame's payload, NUL added */
};

/* a whole frame fits obuf; gathered bytes go out once there are this many */
#define OBUF_SIZE	PS_REC_MAX
#define SEND_AT		(256u << 10)
#define DATA_SEAL_AT	(1u << 20)
/* writes of this many bytes on are sealed into frames of their own, straight from the caller's buffer */
#define DIRECT_MIN	(64u << 10)

const char *ps_peer(const struct ps_client *c)
{
	return c->peer;
}

bool ps_compressing(const struct ps_client *c)
{
	return c->compress;
}

int ps_sock(const struct ps_client *c)
{
	return c->sock;
}

static int recv_status(struct ps_client *c, const char *when);

/* sending failed: the server may have said why before it closed */
static int server_said(struct ps_client *c, int err)
{
	struct timeval tv = { 1, 0 };

	setsockopt(c->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (recv_status(c, "the transfer") == 0) {
		errno = err;
		return pr_perror("page server %s: cannot send", c->peer);
	}
	return -err;
}

static int send_raw(struct ps_client *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(c->sock, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return server_said(c, errno);
		}
		p += n;
		len -= n;
		c->sent += n;
	}
	return 0;
}

static int seal_data(struct ps_client *c);

/* what is gathered goes out (the page chunks of a frame still open sealed first): before anything is awaited */
static int send_gathered(struct ps_client *c)
{
	int ret = seal_data(c);
	size_t n;

	if (ret)
		return ret;
	n = c->wlen;
	c->wlen = 0;
	return n ? send_raw(c, c->obuf, n) : 0;
}

/*
 * A frame of up to cap bytes of payload begins in obuf: its body, to be
 * filled before frame_end (nothing else is sent meanwhile), or NULL
 * (logged, *err set).
 */
static uint8_t *frame_begin(struct ps_client *c, uint32_t type, uint32_t cap, int *err)
{
	if ((*err = seal_data(c)))
		return NULL;
	if (!c->keyed || cap > PS_FRAME_MAX) {
		pr_err("page server %s: a frame of %u bytes is not for this session (at most %u, after the handshake)",
		       c->peer, cap, PS_FRAME_MAX);
		*err = -EMSGSIZE;
		return NULL;
	}
	if (c->wlen + sizeof(struct ps_hdr) + cap + PS_TAG_LEN > OBUF_SIZE && (*err = send_gathered(c)))
		return NULL;
	c->fr_off = c->wlen;
	c->fr_type = type;
	c->fr_cap = cap;
	c->fr_filled = 0;
	return c->obuf + c->fr_off + sizeof(struct ps_hdr);
}

/*
 * The frame begun is complete with len bytes of payload (raw_len once
 * uncompressed): sealed, from src into its body, or in place if src is
 * NULL, and gathered.
 */
static int frame_end(struct ps_client *c, uint32_t len, uint32_t raw_len, uint32_t flags, const void *src)
{
	struct ps_hdr h = { c->fr_type, len, raw_len, flags };
	uint8_t *p = c->obuf + c->fr_off, *body = p + sizeof(h);
	int ret;

	memcpy(p, &h, sizeof(h));
	if ((ret = ps_seal(&c->keys.tx, &h, body, src ? src : body, len, body + len)))
		return ret;
	c->wlen = c->fr_off + sizeof(h) + len + PS_TAG_LEN;
	return c->wlen >= SEND_AT ? send_gathered(c) : 0;
}

static int send_frame(struct ps_client *c, uint32_t type, const void *payload, uint32_t len)
{
	int ret = 0;

	if (!frame_begin(c, type, len, &ret))
		return ret;
	return frame_end(c, len, len, 0, payload);
}

static int recv_all(struct ps_client *c, void *buf, size_t len, const char *what)
{
	int ret = read_all(c->sock, buf, len);

	if (ret == -EAGAIN)
		ret = -ETIMEDOUT;
	if (ret)
		pr_err("page server %s: %s: %s", c->peer, what,
		       ret == -ENODATA ? "the connection was closed" :
		       ret == -ETIMEDOUT ? "no answer in time" : strerror(-ret));
	return ret;
}

/*
 * One sealed frame from the server: a STATUS into c->status (its message
 * NUL-ended), any other into buf (max bytes). 0 and *h, or -errno (logged).
 */
static int recv_sealed(struct ps_client *c, struct ps_hdr *h, void *buf, size_t max, const char *what)
{
	uint8_t tag[PS_TAG_LEN];
	const char *why;
	int ret = recv_all(c, h, sizeof(*h), what);

	if (ret)
		return ret;
	if (h->type == PSF_STATUS) {
		buf = c->status;
		max = sizeof(c->status) - 1;
	}
	why = ps_hdr_refused(h, false);
	if (!why && h->len > max)
		why = "larger than expected";
	if (!why && h->type == PSF_STATUS && h->len < sizeof(int32_t))
		why = "a status without its error";
	if (why) {
		pr_err("page server %s: a malformed frame (type %u, %u bytes): %s", c->peer, h->type, h->len, why);
		return -EPROTO;
	}
	if ((ret = recv_all(c, buf, h->len, what)) || (ret = recv_all(c, tag, sizeof(tag), what)))
		return ret;
	if (ps_unseal(&c->keys.rx, h, buf, h->len, tag)) {
		pr_err("page server %s: a frame of type %u fails its authentication (altered, replayed, reordered or "
		       "injected on the way): ending the session", c->peer, h->type);
		return -EBADMSG;
	}
	if (h->type == PSF_STATUS)
		c->status[h->len] = 0;
	return 0;
}

/* a status's words: 0, or its error (logged with its reason); its words in out if given */
static int status_said(struct ps_client *c, int32_t err, const char *msg, const char *when, char *out,
		       size_t out_len)
{
	if (out)
		snprintf(out, out_len, "%s", msg);
	if (err) {
		pr_err("page server %s refused %s: %s", c->peer, when, msg);
		return err > 0 ? -err : -EPROTO;
	}
	return 0;
}

/* a STATUS frame received: what it says */
static int sealed_status(struct ps_client *c, const char *when, char *out, size_t out_len)
{
	int32_t err;

	memcpy(&err, c->status, sizeof(err));
	return status_said(c, err, (char *)c->status + sizeof(err), when, out, out_len);
}

/* the server's verdict: before the keys in clear, after them a sealed STATUS frame */
static int recv_status_msg(struct ps_client *c, const char *when, char *out, size_t out_len)
{
	char msg[PS_STATUS_MAX + 1];
	struct ps_status st;
	struct ps_hdr h;
	int ret;

	/* what the caller says should no answer come (the connection cut) */
	if (out && out_len)
		snprintf(out, out_len, "%s %s got no answer: the connection ended", c->peer, when);
	if ((ret = send_gathered(c)))
		return ret;
	if (!c->keyed) {
		if ((ret = recv_all(c, &st, sizeof(st), when)))
			return ret;
		if (st.len > PS_STATUS_MAX) {
			pr_err("page server %s: malformed status (%u bytes)", c->peer, st.len);
			return -EPROTO;
		}
		if ((ret = recv_all(c, msg, st.len, when)))
			return ret;
		msg[st.len] = 0;
		return status_said(c, st.err, msg, when, out, out_len);
	}
	if ((ret = recv_sealed(c, &h, NULL, 0, when)))
		return ret;
	if (h.type != PSF_STATUS) {
		pr_err("page server %s: a frame of type %u came instead of its status on %s", c->peer, h.type, when);
		return -EPROTO;
	}
	return sealed_status(c, when, out, out_len);
}

static int recv_status(struct ps_client *c, const char *when)
{
	return recv_status_msg(c, when, NULL, 0);
}

static int handshake(struct ps_client *c, const uint8_t *secret, size_t slen)
{
	uint8_t hello[8 + PS_NONCE_LEN], auth[8 + 4 + PS_NONCE_LEN + PS_MAC_LEN], mac[PS_MAC_LEN],
		want[PS_MAC_LEN];
	uint8_t *nonce_c = auth + 12;
	uint32_t flags = c->compress ? PS_F_ZLIB : 0;
	int ret;

	if ((ret = recv_all(c, hello, sizeof(hello), "its greeting")))
		return ret;
	if (memcmp(hello, PS_MAGIC, 8)) {
		pr_err("page server %s: not a cryo page server of this version (bad greeting)", c->peer);
		return -EPROTO;
	}
	memcpy(auth, PS_MAGIC, 8);
	memcpy(auth + 8, &flags, 4);
	if (getrandom(nonce_c, PS_NONCE_LEN, 0) != PS_NONCE_LEN)
		return pr_perror("getrandom");
	ps_mac(secret, slen, "cryo-client", hello + 8, nonce_c, flags, auth + 12 + PS_NONCE_LEN);
	if ((ret = send_raw(c, auth, sizeof(auth))) || (ret = recv_status(c, "the secret")) ||
	    (ret = recv_all(c, mac, sizeof(mac), "its proof of the secret")))
		return ret;
	ps_mac(secret, slen, "cryo-server", nonce_c, hello + 8, flags, want);
	if (!ps_mac_equal(mac, want)) {
		pr_err("page server %s does not know the secret: refusing to send it anything", c->peer);
		return -EACCES;
	}
	if ((ret = ps_keys_derive(&c->keys, secret, slen, hello + 8, nonce_c, flags, false)))
		return ret;
	c->keyed = true;
	return 0;
}

static struct ps_client *client_new(int sock, const char *peer, bool compress)
{
	struct ps_client *c = xzalloc(sizeof(*c));

	if (!c)
		return NULL;
	c->sock = sock;
	c->compress = compress;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->obuf = malloc(OBUF_SIZE);
	if (!c->obuf) {
		free(c);
		return NULL;
	}
	return c;
}

int ps_attach(int sock, const char *peer, const char *secret_file, bool compress, struct ps_client **out)
{
	uint8_t secret[PS_SECRET_MAX];
	struct ps_client *c = NULL;
	size_t slen;
	int ret;

	*out = NULL;
	ret = ps_read_secret(secret_file, secret, &slen);
	if (!ret && !(c = client_new(sock, peer, compress)))
		ret = -ENOMEM;
	if (!ret) {
		/* a peer that says nothing holds nothing here either (a lazy dump's tree stays stopped meanwhile) */
		struct timeval tv = { PS_HANDSHAKE_S, 0 }, none = { 0, 0 };

		setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		ret = handshake(c, secret, slen);
		setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
		setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
	}
	explicit_bzero(secret, sizeof(secret));
	if (ret) {
		if (c)
			ps_free(c);
		else
			close(sock);
		return ret;
	}
	pr_info("page server %s: connected%s", c->peer, compress ? ", compressing" : "");
	*out = c;
	return 0;
}

int ps_connect(const char *where, const char *secret_file, bool compress, struct ps_client **out)
{
	uint8_t secret[PS_SECRET_MAX];
	size_t slen;
	int sock, ret;

	*out = NULL;
	/* no secret, no connection */
	ret = ps_read_secret(secret_file, secret, &slen);
	explicit_bzero(secret, sizeof(secret));
	if (ret)
		return ret;
	sock = ps_dial(where);
	return sock < 0 ? sock : ps_attach(sock, where, secret_file, compress, out);
}

void ps_free(struct ps_client *c)
{
	if (!c)
		return;
	if (c->sock >= 0)
		close(c->sock);
	ps_keys_free(&c->keys);
	if (c->obuf)
		explicit_bzero(c->obuf, OBUF_SIZE);
	free(c->obuf);
	if (c->raw)
		explicit_bzero(c->raw, PS_FRAME_MAX);
	free(c->raw);
	free(c);
}

int ps_file(struct ps_client *c, const char *name)
{
	return send_frame(c, PSF_FILE, name, strlen(name));
}

int ps_close_file(struct ps_client *c)
{
	return send_frame(c, PSF_CLOSE, NULL, 0);
}

int ps_link(struct ps_client *c, const char *name, const char *target)
{
	char buf[2 * PS_NAME_MAX + 2];
	int n = snprintf(buf, sizeof(buf), "%s%c%s", name, 0, target);

	if (n < 0 || n >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	return send_frame(c, PSF_LINK, buf, n);
}

/* one DATA frame of len raw bytes, compressed if the session is and that makes it smaller */
static int send_data(struct ps_client *c, const uint8_t *buf, uint32_t len)
{
	uLongf clen = len ? len - 1 : 0;
	uint8_t *body;
	int ret = 0;

	if (!(body = frame_begin(c, PSF_DATA, len, &ret)))
		return ret;
	if (c->compress && clen && compress2(body, &clen, buf, len, Z_BEST_SPEED) == Z_OK)
		return frame_end(c, clen, len, PS_F_ZLIB, NULL);
	return frame_end(c, len, len, 0, buf);
}

static uint8_t *data_room(struct ps_client *c, uint32_t len, int *err);
static int data_filled(struct ps_client *c, uint32_t n);

int ps_write(struct ps_client *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		uint32_t n = MIN(len, PS_FRAME_MAX);
		uint8_t *to;
		int ret = 0;

		if (n >= DIRECT_MIN) {
			ret = send_data(c, p, n);
		} else if ((to = data_room(c, n, &ret))) {
			memcpy(to, p, n);
			ret = data_filled(c, n);
		}
		if (ret)
			return ret;
		p += n;
		len -= n;
	}
	return 0;
}

int ps_send_file(struct ps_client *c, int dirfd, const char *name, const char *remote)
{
	_cleanup_free_ uint8_t *buf = malloc(PS_FRAME_MAX);
	_cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	int ret;

	if (!buf)
		return -ENOMEM;
	if (fd < 0)
		return pr_perror("cannot open %s to send it", name);
	if ((ret = ps_file(c, remote)))
		return ret;
	for (;;) {
		ssize_t n = read(fd, buf, PS_FRAME_MAX);

		if (n < 0)
			return pr_perror("cannot read %s", name);
		if (n == 0)
			break;
		if ((ret = ps_write(c, buf, n)))
			return ret;
	}
	return ps_close_file(c);
}

/*
 * The open DATA frame: a file's small writes and its page chunks, many to
 * a frame, sealed in place once full enough (DATA_SEAL_AT) or when anything
 * else is sent. Page chunks are read from the pipe straight into it. The
 * parasite's crc of a chunk is not sent: the tag authenticates the bytes
 * on the way, and the crc goes into the pagemap, against which the
 * restore checks the chunk.
 */
static int seal_data(struct ps_client *c)
{
	if (!c->data_open)
		return 0;
	c->data_open = false;
	if (c->compress)
		return c->raw_len ? send_data(c, c->raw, c->raw_len) : 0;
	return frame_end(c, c->fr_filled, c->fr_filled, 0, NULL);
}

static uint32_t data_len(const struct ps_client *c)
{
	return c->compress ? c->raw_len : c->fr_filled;
}

/* where len more bytes of the file go, in the open DATA frame (opened if need be); or NULL, *err set */
static uint8_t *data_room(struct ps_client *c, uint32_t len, int *err)
{
	*err = 0;
	if (len > PS_FRAME_MAX) {
		pr_err("page server %s: %u bytes are more than a frame holds", c->peer, len);
		*err = -EMSGSIZE;
		return NULL;
	}
	if (!c->data_open || data_len(c) + len > PS_FRAME_MAX) {
		if ((*err = seal_data(c)))
			return NULL;
		if (c->compress) {
			if (!c->raw && !(c->raw = malloc(PS_FRAME_MAX))) {
				*err = -ENOMEM;
				return NULL;
			}
			c->raw_len = 0;
		} else if (!frame_begin(c, PSF_DATA, PS_FRAME_MAX, err)) {
			return NULL;
		}
		c->data_open = true;
	}
	return c->compress ? c->raw + c->raw_len : c->obuf + c->fr_off + sizeof(struct ps_hdr) + c->fr_filled;
}

/* n bytes were put where data_room said */
static int data_filled(struct ps_client *c, uint32_t n)
{
	if (c->compress)
		c->raw_len += n;
	else
		c->fr_filled += n;
	return data_len(c) >= DATA_SEAL_AT ? seal_data(c) : 0;
}

int ps_chunk_begin(struct ps_client *c, uint32_t len)
{
	int ret;

	data_room(c, len, &ret);
	return ret;
}

ssize_t ps_chunk_move(struct ps_client *c, int pipe_fd, uint32_t max)
{
	int ret;
	uint8_t *to = data_room(c, max, &ret);
	ssize_t n = to ? read(pipe_fd, to, max) : -1;

	if (!to) {
		errno = -ret;
		return -1;
	}
	if (n > 0) {
		/* sealed only at the chunk's end: its rest is still in the pipe */
		if (c->compress)
			c->raw_len += n;
		else
			c->fr_filled += n;
	}
	return n;
}

uint64_t ps_sent(const struct ps_client *c)
{
	return c->sent;
}

int ps_chunk_end(struct ps_client *c, uint32_t crc)
{
	(void)crc;
	return data_filled(c, 0);
}

int ps_done(struct ps_client *c)
{
	return send_frame(c, PSF_DONE, NULL, 0) ?: recv_status(c, "the transfer");
}

int ps_migrate(struct ps_client *c, const char *id)
{
	return send_frame(c, PSF_MIGRATE, id, strlen(id)) ?: recv_status(c, "the migration");
}

static int restore_frame(struct ps_client *c, uint32_t type, const char *round, char *msg, size_t msg_len)
{
	int ret = send_frame(c, type, round, strlen(round));

	if (ret)
		snprintf(msg, msg_len, "the restore could not be asked for");
	return ret ?: recv_status_msg(c, "the restore", msg, msg_len);
}

int ps_commit(struct ps_client *c)
{
	return send_frame(c, PSF_COMMIT, NULL, 0) ?: recv_status(c, "the commit");
}

int ps_restore(struct ps_client *c, const char *round, char *msg, size_t msg_len)
{
	return restore_frame(c, PSF_RESTORE, round, msg, msg_len);
}

int ps_restore_lazy(struct ps_client *c, const char *round, char *msg, size_t msg_len)
{
	return restore_frame(c, PSF_RESTORE_LAZY, round, msg, msg_len);
}

int ps_ask_restore_lazy(struct ps_client *c, const char *round)
{
	return send_frame(c, PSF_RESTORE_LAZY, round, strlen(round)) ?: send_gathered(c);
}

int ps_restore_answer(struct ps_client *c, char *msg, size_t msg_len)
{
	return recv_status_msg(c, "the restore", msg, msg_len);
}

int ps_commit_nowait(struct ps_client *c)
{
	return send_frame(c, PSF_COMMIT, NULL, 0) ?: send_gathered(c);
}

uint8_t *ps_pages_frame(struct ps_client *c, uint32_t vpid, uint64_t addr, uint32_t len)
{
	struct ps_pages p = { .vpid = vpid, .addr = addr };
	uint8_t *body;
	int ret;

	if (len > PS_FRAME_MAX - sizeof(p)) {
		pr_err("page server %s: %u bytes of pages do not fit a frame", c->peer, len);
		return NULL;
	}
	if (!(body = frame_begin(c, PSF_PAGES, sizeof(p) + len, &ret)))
		return NULL;
	memcpy(body, &p, sizeof(p));
	c->fr_filled = sizeof(p) + len;
	return body + sizeof(p);
}

int ps_pages_send(struct ps_client *c)
{
	return frame_end(c, c->fr_filled, c->fr_filled, 0, NULL) ?: send_gathered(c);
}

int ps_recv_frame(struct ps_client *c, uint32_t *type, void *buf, size_t max, size_t *len)
{
	struct ps_hdr h;
	int ret = recv_sealed(c, &h, buf, max, "the agent's frame");

	if (ret)
		return ret;
	if (h.type == PSF_STATUS) {
		/* the agent's last word: why it ends the session */
		ret = sealed_status(c, "to go on", NULL, 0);
		return ret ? ret : -EPROTO;
	}
	*type = h.type;
	*len = h.len;
	return 0;
}

/*
 * image files of a directory, sorted, inventory.img then manifest.img last
 * (a round whose manifest is there is complete); pages-N.img were streamed
 */
static int list_images(int dirfd, char ***out, size_t *n)
{
	static const char *const last[] = { "inventory.img", "manifest.img" };
	DIR *d;
	struct dirent *de;
	int fd = dup(dirfd);
	char **v = NULL;
	bool seen[2] = { false, false };

	*n = 0;
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return pr_perror("cannot list the images directory");
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		char **nv;

		if (!ends_with(de->d_name, ".img") || !strncmp(de->d_name, "pages-", 6))
			continue;
		if (!strcmp(de->d_name, last[0]) || !strcmp(de->d_name, last[1])) {
			seen[strcmp(de->d_name, last[0]) != 0] = true;
			continue;
		}
		nv = xrealloc_array(v, *n + 3, sizeof(*v));
		if (!nv)
			break;
		v = nv;
		v[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (!v && !(v = calloc(2, sizeof(*v))))
		return -ENOMEM;
	qsort(v, *n, sizeof(*v), (int (*)(const void *, const void *))strcmp_ptr);
	for (int i = 0; i < 2; i++)
		if (seen[i])
			v[(*n)++] = xstrdup(last[i]);
	*out = v;
	return 0;
}

int ps_send_images(struct ps_client *c, int dirfd, const char *dir)
{
	char **names = NULL, link[PS_NAME_MAX + 1], target[PS_NAME_MAX + 4], remote[2 * PS_NAME_MAX + 2];
	size_t n = 0;
	ssize_t ll;
	int ret = list_images(dirfd, &names, &n);

	/* the parent link first: the round is read through it */
	ll = readlinkat(dirfd, "parent", link, sizeof(link) - 1);
	if (!ret && ll > 0) {
		char *base;

		link[ll] = 0;
		while (ll > 1 && link[ll - 1] == '/')
			link[--ll] = 0;
		base = strrchr(link, '/');
		snprintf(remote, sizeof(remote), "%s/parent", dir);
		snprintf(target, sizeof(target), "../%s", base ? base + 1 : link);
		ret = ps_link(c, remote, target);
	}
	for (size_t i = 0; i < n; i++) {
		if (!ret) {
			snprintf(remote, sizeof(remote), "%s/%s", dir, names[i]);
			ret = ps_send_file(c, dirfd, names[i], remote);
		}
		free(names[i]);
	}
	free(names);
	return ret ?: ps_done(c);
}

/*
 * The frames gathered go out. (Pages are copied out of the parasite's pipe
 * as they are sealed: once ps_chunk_end returns, nothing of the task's
 * memory is referenced here any more.)
 */
int ps_flush(struct ps_client *c)
{
	return send_gathered(c);
}
