/*
 * The page server's frames after the handshake: sealed with AES-256-GCM,
 * one key per direction derived from the shared secret and both nonces,
 * the nonce of each frame its number in that direction (PROTOCOL.md). A
 * frame altered, replayed, reordered, dropped or injected fails its tag.
 */
#define LOG_PREFIX "pagesrv: "
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "log.h"
#include "pagesrv.h"

#define IV_LEN		12
#define LABEL_C2S	"cryo-ps2 client to server"
#define LABEL_S2C	"cryo-ps2 server to client"

/* HKDF-SHA256(ikm = secret, salt = nonce_s || nonce_c, info = label || flags) */
static int hkdf(const uint8_t *secret, size_t slen, const uint8_t *salt, const char *label, uint32_t flags,
		uint8_t out[PS_KEY_LEN])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	uint8_t info[64];
	size_t ilen = strlen(label);
	OSSL_PARAM params[5];
	int ok;

	memcpy(info, label, ilen);
	memcpy(info + ilen, &flags, sizeof(flags));
	ilen += sizeof(flags);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, slen);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, 2 * PS_NONCE_LEN);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, ilen);
	params[4] = OSSL_PARAM_construct_end();
	ok = kctx && EVP_KDF_derive(kctx, out, PS_KEY_LEN, params) == 1;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	if (!ok) {
		pr_err("cannot derive the session's keys: OpenSSL's HKDF failed");
		return -EIO;
	}
	return 0;
}

static int aead_init(struct ps_aead *a, const uint8_t key[PS_KEY_LEN], bool open)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int ok = ctx != NULL;

	if (ok)
		ok = open ? EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL) == 1 :
			    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL) == 1;
	if (!ok) {
		EVP_CIPHER_CTX_free(ctx);
		pr_err("cannot set up AES-256-GCM: OpenSSL failed");
		return -EIO;
	}
	a->ctx = ctx;
	a->seq = 0;
	a->open = open;
	return 0;
}

int ps_keys_derive(struct ps_keys *k, const uint8_t *secret, size_t slen, const uint8_t *nonce_s,
		   const uint8_t *nonce_c, uint32_t flags, bool server)
{
	uint8_t salt[2 * PS_NONCE_LEN], c2s[PS_KEY_LEN], s2c[PS_KEY_LEN];
	int ret;

	memset(k, 0, sizeof(*k));
	memcpy(salt, nonce_s, PS_NONCE_LEN);
	memcpy(salt + PS_NONCE_LEN, nonce_c, PS_NONCE_LEN);
	ret = hkdf(secret, slen, salt, LABEL_C2S, flags, c2s) ?: hkdf(secret, slen, salt, LABEL_S2C, flags, s2c);
	if (!ret)
		ret = aead_init(&k->tx, server ? s2c : c2s, false) ?: aead_init(&k->rx, server ? c2s : s2c, true);
	explicit_bzero(c2s, sizeof(c2s));
	explicit_bzero(s2c, sizeof(s2c));
	if (ret)
		ps_keys_free(k);
	return ret;
}

void ps_keys_free(struct ps_keys *k)
{
	/* the contexts clear their key schedules as they go */
	EVP_CIPHER_CTX_free(k->tx.ctx);
	EVP_CIPHER_CTX_free(k->rx.ctx);
	k->tx.ctx = k->rx.ctx = NULL;
}

/* the nonce of the direction's next frame: 4 zero bytes, then its number (LE) */
static int next_iv(struct ps_aead *a, uint8_t iv[IV_LEN])
{
	if (!a->ctx || a->seq == UINT64_MAX) {
		pr_err("the session has no key, or has used every nonce: it must end");
		return -EOVERFLOW;
	}
	memset(iv, 0, 4);
	memcpy(iv + 4, &a->seq, sizeof(a->seq));
	a->seq++;
	return 0;
}

int ps_seal(struct ps_aead *a, const struct ps_hdr *h, uint8_t *out, const uint8_t *in, size_t len,
	    uint8_t tag[PS_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = a->ctx;
	uint8_t iv[IV_LEN];
	int n, ret = next_iv(a, iv);

	if (ret)
		return ret;
	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &n, (const uint8_t *)h, sizeof(*h)) != 1 ||
	    (len && EVP_EncryptUpdate(ctx, out, &n, in, (int)len) != 1) || EVP_EncryptFinal_ex(ctx, out + len, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, PS_TAG_LEN, tag) != 1) {
		pr_err("AES-256-GCM could not seal a frame of %zu bytes", len);
		return -EIO;
	}
	return 0;
}

int ps_unseal(struct ps_aead *a, const struct ps_hdr *h, uint8_t *buf, size_t len, const uint8_t tag[PS_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx = a->ctx;
	uint8_t iv[IV_LEN];
	int n, ret = next_iv(a, iv);

	if (ret)
		return ret;
	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &n, (const uint8_t *)h, sizeof(*h)) != 1 ||
	    (len && EVP_DecryptUpdate(ctx, buf, &n, buf, (int)len) != 1) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, PS_TAG_LEN, (void *)tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, buf + len, &n) != 1) {
		/* what was deciphered is not to be trusted, nor kept */
		explicit_bzero(buf, len);
		return -EBADMSG;
	}
	return 0;
}

const char *ps_hdr_refused(const struct ps_hdr *h, bool compress)
{
	if (!h->type || h->type > PSF_TYPE_MAX)
		return "unknown frame type";
	if (h->raw_len > PS_FRAME_MAX || h->len > PS_FRAME_MAX)
		return "larger than a frame may be";
	if (h->flags & ~PS_F_ZLIB)
		return "unknown frame flags";
	if (!(h->flags & PS_F_ZLIB))
		return h->len == h->raw_len ? NULL : "its lengths differ, uncompressed";
	if (!compress)
		return "compressed, which the session did not negotiate";
	if (h->type != PSF_DATA)
		return "compressed, which only data frames may be";
	return h->len && h->len < h->raw_len ? NULL : "compressed to no fewer bytes than its own";
}
