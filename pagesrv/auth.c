/*
 * The page server's handshake: both ends prove they hold the shared secret
 * with an HMAC-SHA256 over the two nonces (PROTOCOL.md).
 */
#define LOG_PREFIX "pagesrv: "
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "log.h"
#include "pagesrv.h"
#include "util.h"

int ps_read_secret(const char *path, uint8_t *secret, size_t *len)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	ssize_t n;

	if (!path) {
		pr_err("the page server needs a shared secret: give it with --secret-file FILE");
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pr_perror("cannot open the secret file %s", path);
	/* as ssh does with a key: a secret others could read is no secret */
	if (fstat(fd, &st))
		return pr_perror("cannot stat the secret file %s", path);
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077) || (st.st_uid != geteuid() && st.st_uid != 0)) {
		pr_err("the secret file %s must be a regular file of root's (or cryo's user's), mode 0600 or "
		       "stricter: it is mode %04o, owned by uid %u", path, st.st_mode & 07777, st.st_uid);
		return -EACCES;
	}
	n = read(fd, secret, PS_SECRET_MAX);
	if (n < 0)
		return pr_perror("cannot read the secret file %s", path);
	while (n > 0 && (secret[n - 1] == '\n' || secret[n - 1] == '\r'))
		n--;
	if (n < 16) {
		pr_err("the secret in %s is too short: %zd bytes, at least 16 are needed", path, n);
		return -EINVAL;
	}
	*len = n;
	return 0;
}

void ps_mac(const uint8_t *secret, size_t slen, const char *role, const uint8_t *a, const uint8_t *b,
	    uint32_t flags, uint8_t out[PS_MAC_LEN])
{
	uint8_t msg[16 + 2 * PS_NONCE_LEN + 4] = { 0 };
	unsigned int olen = PS_MAC_LEN;

	strncpy((char *)msg, role, 15);
	memcpy(msg + 16, a, PS_NONCE_LEN);
	memcpy(msg + 16 + PS_NONCE_LEN, b, PS_NONCE_LEN);
	memcpy(msg + 16 + 2 * PS_NONCE_LEN, &flags, 4);
	HMAC(EVP_sha256(), secret, (int)slen, msg, sizeof(msg), out, &olen);
}

bool ps_mac_equal(const uint8_t *a, const uint8_t *b)
{
	return CRYPTO_memcmp(a, b, PS_MAC_LEN) == 0;
}
