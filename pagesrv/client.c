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

#include "crc32c.h"
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
	char peer[128];
	/* compression: the raw bytes of the frame being built, and its output */
	uint8_t *raw, *out;
	size_t raw_len, raw_cap, out_cap;
	uint64_t sent;			/* bytes on the wire */
	/* small frames gather here, so that a page costs no syscall of its own */
	uint8_t *wbuf;
	size_t wlen;
	bool gather_chunk;		/* the chunk being sent goes through wbuf */
};

#define WBUF_SIZE	(256u << 10)
/* page chunks from this size on are spliced into the socket; smaller ones copied */
#define SPLICE_MIN	(64u << 10)

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

/* what is gathered goes out: before anything else is sent or awaited */
static int send_gathered(struct ps_client *c)
{
	size_t n = c->wlen;

	c->wlen = 0;
	return n ? send_raw(c, c->wbuf, n) : 0;
}

static int send_all(struct ps_client *c, const void *buf, size_t len)
{
	int ret;

	if (c->wbuf && c->wlen + len <= WBUF_SIZE) {
		memcpy(c->wbuf + c->wlen, buf, len);
		c->wlen += len;
		return 0;
	}
	if ((ret = send_gathered(c)))
		return ret;
	if (c->wbuf && len < WBUF_SIZE / 4) {
		memcpy(c->wbuf, buf, len);
		c->wlen = len;
		return 0;
	}
	return send_raw(c, buf, len);
}

static int recv_all(struct ps_client *c, void *buf, size_t len, const char *what)
{
	int ret = read_all(c->sock, buf, len);

	if (ret)
		pr_err("page server %s: %s: %s", c->peer, what,
		       ret == -ENODATA ? "the connection was closed" : strerror(-ret));
	return ret;
}

/* the server's verdict: 0, or its error (logged with its reason); its words in out if given */
static int recv_status_msg(struct ps_client *c, const char *when, char *out, size_t out_len)
{
	struct ps_status st;
	char msg[512];
	int ret = send_gathered(c) ?: recv_all(c, &st, sizeof(st), when);

	if (ret)
		return ret;
	if (st.len >= sizeof(msg)) {
		pr_err("page server %s: malformed status (%u bytes)", c->peer, st.len);
		return -EPROTO;
	}
	if ((ret = recv_all(c, msg, st.len, when)))
		return ret;
	msg[st.len] = 0;
	if (out)
		snprintf(out, out_len, "%s", msg);
	if (st.err) {
		pr_err("page server %s refused %s: %s", c->peer, when, msg);
		return st.err > 0 ? -st.err : -EPROTO;
	}
	return 0;
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
		pr_err("page server %s: not a cryo page server (bad greeting)", c->peer);
		return -EPROTO;
	}
	memcpy(auth, PS_MAGIC, 8);
	memcpy(auth + 8, &flags, 4);
	if (getrandom(nonce_c, PS_NONCE_LEN, 0) != PS_NONCE_LEN)
		return pr_perror("getrandom");
	ps_mac(secret, slen, "cryo-client", hello + 8, nonce_c, flags, auth + 12 + PS_NONCE_LEN);
	if ((ret = send_all(c, auth, sizeof(auth))) || (ret = recv_status(c, "the secret")) ||
	    (ret = recv_all(c, mac, sizeof(mac), "its proof of the secret")))
		return ret;
	ps_mac(secret, slen, "cryo-server", nonce_c, hello + 8, flags, want);
	if (!ps_mac_equal(mac, want)) {
		pr_err("page server %s does not know the secret: refusing to send it anything", c->peer);
		return -EACCES;
	}
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
	c->wbuf = malloc(WBUF_SIZE);
	if (!c->wbuf) {
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
	if (!ret)
		ret = handshake(c, secret, slen);
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
	free(c->raw);
	free(c->out);
	free(c->wbuf);
	free(c);
}

static int send_frame(struct ps_client *c, uint32_t type, const void *payload, uint32_t len,
		      uint32_t raw_len, uint32_t flags, uint32_t crc)
{
	struct ps_hdr h = { type, len, raw_len, flags };

	return send_all(c, &h, sizeof(h)) ?: send_all(c, payload, len) ?: send_all(c, &crc, sizeof(crc));
}

int ps_file(struct ps_client *c, const char *name)
{
	size_t len = strlen(name);

	return send_frame(c, PSF_FILE, name, len, len, 0, crc32c(0, name, len));
}

int ps_close_file(struct ps_client *c)
{
	return send_frame(c, PSF_CLOSE, NULL, 0, 0, 0, crc32c(0, NULL, 0));
}

int ps_link(struct ps_client *c, const char *name, const char *target)
{
	char buf[2 * PS_NAME_MAX + 2];
	int n = snprintf(buf, sizeof(buf), "%s%c%s", name, 0, target);

	if (n < 0 || n >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	return send_frame(c, PSF_LINK, buf, n, n, 0, crc32c(0, buf, n));
}

static int grow(uint8_t **p, size_t *cap, size_t want)
{
	uint8_t *n;

	if (*cap >= want)
		return 0;
	n = realloc(*p, want);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = want;
	return 0;
}

/* one DATA frame of raw bytes, compressed if the session is */
static int send_data(struct ps_client *c, const uint8_t *buf, uint32_t len, uint32_t crc)
{
	uLongf clen;
	int ret;

	if (!c->compress)
		return send_frame(c, PSF_DATA, buf, len, len, 0, crc);
	if ((ret = grow(&c->out, &c->out_cap, compressBound(len))))
		return ret;
	clen = c->out_cap;
	if (compress2(c->out, &clen, buf, len, Z_BEST_SPEED) != Z_OK) {
		pr_err("page server %s: zlib could not compress %u bytes", c->peer, len);
		return -EIO;
	}
	return send_frame(c, PSF_DATA, c->out, clen, len, PS_F_ZLIB, crc);
}

int ps_write(struct ps_client *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		uint32_t n = MIN(len, PS_FRAME_MAX);
		int ret = send_data(c, p, n, crc32c(0, p, n));

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

int ps_chunk_begin(struct ps_client *c, uint32_t len)
{
	struct ps_hdr h = { PSF_DATA, len, len, 0 };
	int ret;

	if (c->compress) {
		c->raw_len = 0;
		return grow(&c->raw, &c->raw_cap, len);
	}
	/* a small chunk is gathered whole with its header: no syscall of its own to send it */
	c->gather_chunk = len <= SPLICE_MIN && c->wbuf;
	if (c->gather_chunk && c->wlen + sizeof(h) + len + sizeof(uint32_t) > WBUF_SIZE &&
	    (ret = send_gathered(c)))
		return ret;
	return send_all(c, &h, sizeof(h));
}

ssize_t ps_chunk_move(struct ps_client *c, int pipe_fd, uint32_t max)
{
	ssize_t n;

	if (c->compress) {
		n = read(pipe_fd, c->raw + c->raw_len, max);
		if (n > 0)
			c->raw_len += n;
		return n;
	}
	if (c->gather_chunk) {
		n = read(pipe_fd, c->wbuf + c->wlen, max);
		if (n > 0)
			c->wlen += n;
		return n;
	}
	if (c->wlen && (n = send_gathered(c))) {
		errno = -n;
		return -1;
	}
	n = splice(pipe_fd, NULL, c->sock, NULL, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0)
		c->sent += n;
	return n;
}

uint64_t ps_sent(const struct ps_client *c)
{
	return c->sent;
}

int ps_chunk_end(struct ps_client *c, uint32_t crc)
{
	if (c->compress)
		return send_data(c, c->raw, c->raw_len, crc);
	return send_all(c, &crc, sizeof(crc));
}

int ps_done(struct ps_client *c)
{
	int ret = send_frame(c, PSF_DONE, NULL, 0, 0, 0, crc32c(0, NULL, 0));

	return ret ?: recv_status(c, "the transfer");
}

int ps_migrate(struct ps_client *c, const char *id)
{
	size_t len = strlen(id);

	return send_frame(c, PSF_MIGRATE, id, len, len, 0, crc32c(0, id, len)) ?:
	       recv_status(c, "the migration");
}

static int restore_frame(struct ps_client *c, uint32_t type, const char *round, char *msg, size_t msg_len)
{
	size_t len = strlen(round);
	int ret = send_frame(c, type, round, len, len, 0, crc32c(0, round, len));

	if (ret)
		snprintf(msg, msg_len, "the restore could not be asked for");
	return ret ?: recv_status_msg(c, "the restore", msg, msg_len);
}

int ps_commit(struct ps_client *c)
{
	return send_frame(c, PSF_COMMIT, NULL, 0, 0, 0, crc32c(0, NULL, 0)) ?: recv_status(c, "the commit");
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
	size_t len = strlen(round);

	return send_frame(c, PSF_RESTORE_LAZY, round, len, len, 0, crc32c(0, round, len)) ?: send_gathered(c);
}

int ps_restore_answer(struct ps_client *c, char *msg, size_t msg_len)
{
	return recv_status_msg(c, "the restore", msg, msg_len);
}

int ps_commit_nowait(struct ps_client *c)
{
	return send_frame(c, PSF_COMMIT, NULL, 0, 0, 0, crc32c(0, NULL, 0)) ?: send_gathered(c);
}

int ps_send_pages(struct ps_client *c, uint32_t vpid, uint64_t addr, const void *buf, uint32_t len)
{
	struct ps_pages p = { .vpid = vpid, .addr = addr };
	struct ps_hdr h = { PSF_PAGES, sizeof(p) + len, sizeof(p) + len, 0 };
	uint32_t crc = crc32c(crc32c(0, &p, sizeof(p)), buf, len);

	return send_all(c, &h, sizeof(h)) ?: send_all(c, &p, sizeof(p)) ?: send_all(c, buf, len) ?:
	       send_all(c, &crc, sizeof(crc)) ?: send_gathered(c);
}

int ps_recv_frame(struct ps_client *c, uint32_t *type, void *buf, size_t max, size_t *len)
{
	struct ps_hdr h;
	uint32_t crc;
	int ret = recv_all(c, &h, sizeof(h), "the agent's frame");

	if (ret)
		return ret;
	if (h.len != h.raw_len || h.len > max || h.flags) {
		pr_err("page server %s: a malformed frame (type %u, %u bytes)", c->peer, h.type, h.len);
		return -EPROTO;
	}
	if ((ret = recv_all(c, buf, h.len, "the agent's frame")) || (ret = recv_all(c, &crc, sizeof(crc), "the agent's frame")))
		return ret;
	if (crc32c(0, buf, h.len) != crc) {
		pr_err("page server %s: checksum mismatch in a frame of type %u", c->peer, h.type);
		return -EBADMSG;
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
 * Spliced pages go into the socket by reference, and stay referenced until
 * the server has read them: an acknowledgement is not enough, since over a
 * veth the receiving socket queues the very same pages. Before the task may
 * change them (the rseq area registered again, the task resumed), the
 * server must have read every byte: it answers a SYNC frame only then.
 */
int ps_flush(struct ps_client *c)
{
	return send_frame(c, PSF_SYNC, NULL, 0, 0, 0, crc32c(0, NULL, 0)) ?:
	       recv_status(c, "the pages");
}
