/*
 * keys: signing keys sealed in PostgreSQL, rotated, published (keys.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "keys.h"
#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/jwk.h"
#include "platform/log.h"
#include "platform/xalloc.h"
#include "secret.h"

#define SEAL_VERSION 1
#define SEAL_NONCE 12
#define SEAL_TAG 16
#define KEK_FILE_MAX 4096
#define PERIOD_MIN_MS 100
#define PERIOD_MAX_MS 30000

struct keys {
	struct pg_store *store;
	unsigned char kek[32];
	const char *alg;
	int64_t rotate_ms;
	int64_t keep_ms;         /* a retired key is kept this long */
	pthread_rwlock_t lock;
	/* The signing key and the published set; under lock. */
	char *kid;
	char *pem;               /* the private key, PKCS#8 PEM */
	jwt_alg_t jalg;
	struct jwt_keyset *keyset;
	json_t *jwks;
};

/* ---- the key-encryption key ---- */

static int
kek_create(const char *path, char *err, size_t errlen)
{
	char *secret = secret_random(32);
	int fd, rc = -1;

	if (secret == NULL) {
		errbuf_set(err, errlen, "no randomness");
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		errbuf_set(err, errlen, "cannot create %s: %s", path,
		    strerror(errno));
	} else if (write(fd, secret, strlen(secret)) !=
	    (ssize_t)strlen(secret) || write(fd, "\n", 1) != 1 ||
	    fsync(fd) != 0) {
		errbuf_set(err, errlen, "cannot write %s: %s", path,
		    strerror(errno));
		unlink(path);
	} else {
		log_warn("auth: made a new key-encryption key; keep it with "
		    "the database: without it the signing keys are lost",
		    "path", path);
		rc = 0;
	}
	if (fd >= 0)
		close(fd);
	secret_free(secret);
	return rc;
}

int
keys_kek_load(const char *path, unsigned char kek[32], char *err,
    size_t errlen)
{
	unsigned char buf[KEK_FILE_MAX];
	struct stat st;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (kek_create(path, err, errlen) != 0)
			return -1;
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		errbuf_set(err, errlen, "cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (st.st_mode & 077) != 0) {
		errbuf_set(err, errlen, "%s must be a regular file readable "
		    "only by its owner (chmod 600)", path);
		close(fd);
		return -1;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n < KEYS_KEK_MIN) {
		errbuf_set(err, errlen, "%s holds fewer than %d bytes", path,
		    KEYS_KEK_MIN);
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	SHA256(buf, (size_t)n, kek);
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

/* ---- sealing ---- */

/* version | nonce | ciphertext | tag, base64url; NULL on failure. */
static char *
seal(const unsigned char kek[32], const char *kid, const char *plain)
{
	size_t n = strlen(plain), total = 1 + SEAL_NONCE + n + SEAL_TAG;
	unsigned char *buf = xcalloc(1, total), *ct = buf + 1 + SEAL_NONCE;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	char *out = NULL;
	int len = 0, fin = 0;

	buf[0] = SEAL_VERSION;
	if (ctx != NULL && RAND_bytes(buf + 1, SEAL_NONCE) == 1 &&
	    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, kek, buf + 1) ==
	    1 &&
	    EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)kid,
	    (int)strlen(kid)) == 1 &&
	    EVP_EncryptUpdate(ctx, ct, &len, (const unsigned char *)plain,
	    (int)n) == 1 &&
	    EVP_EncryptFinal_ex(ctx, ct + len, &fin) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG,
	    ct + n) == 1)
		out = jwk_b64url_encode(buf, total);
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(buf, total);
	free(buf);
	return out;
}

/* The plain text of a sealed key (malloc'd, wipe it), or NULL when the
 * KEK is not the one it was sealed with or the blob is damaged. */
static char *
unseal(const unsigned char kek[32], const char *kid, const char *sealed)
{
	size_t total = 0, n;
	unsigned char *buf = jwk_b64url_decode(sealed, strlen(sealed), &total);
	EVP_CIPHER_CTX *ctx = NULL;
	char *plain = NULL;
	int len = 0, fin = 0, ok = 0;

	if (buf == NULL || total < 1 + SEAL_NONCE + SEAL_TAG ||
	    buf[0] != SEAL_VERSION)
		goto done;
	n = total - 1 - SEAL_NONCE - SEAL_TAG;
	plain = xcalloc(1, n + 1);
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
	    EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, kek, buf + 1) ==
	    1 &&
	    EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)kid,
	    (int)strlen(kid)) == 1 &&
	    EVP_DecryptUpdate(ctx, (unsigned char *)plain, &len,
	    buf + 1 + SEAL_NONCE, (int)n) == 1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG,
	    buf + 1 + SEAL_NONCE + n) == 1 &&
	    EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + len, &fin) == 1;
done:
	EVP_CIPHER_CTX_free(ctx);
	if (buf != NULL) {
		explicit_bzero(buf, total);
		free(buf);
	}
	if (!ok) {
		secret_free(plain);
		return NULL;
	}
	return plain;
}

/* ---- new keys ---- */

static char *
pem_of(EVP_PKEY *pkey)
{
	BIO *bio = BIO_new(BIO_s_secmem());
	char *data, *out = NULL;
	long n;

	if (bio != NULL && PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0,
	    NULL, NULL) == 1 && (n = BIO_get_mem_data(bio, &data)) > 0) {
		out = xcalloc(1, (size_t)n + 1);
		memcpy(out, data, (size_t)n);
	}
	BIO_free(bio);
	return out;
}

static int
new_key(void *arg, struct key_row *out)
{
	struct keys *k = arg;
	EVP_PKEY *pkey;
	json_t *jwk = NULL;
	char err[128], *pem = NULL;

	if (strcmp(k->alg, "ES256") == 0)
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	else
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (pkey == NULL || (jwk = jwk_from_pkey(pkey, err, sizeof(err))) ==
	    NULL || (pem = pem_of(pkey)) == NULL)
		goto fail;
	out->kid = xstrdup(json_string_value(json_object_get(jwk, "kid")));
	out->alg = xstrdup(k->alg);
	out->jwk = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	if ((out->sealed = seal(k->kek, out->kid, pem)) == NULL)
		goto fail;
	log_info("auth: new signing key", "kid", out->kid, "alg", k->alg);
	secret_free(pem);
	json_decref(jwk);
	EVP_PKEY_free(pkey);
	return 0;
fail:
	log_error("auth: cannot make a signing key", "alg", k->alg);
	secret_free(pem);
	json_decref(jwk);
	EVP_PKEY_free(pkey);
	return -1;
}

/* ---- the keys ---- */

struct keys *
keys_new(struct pg_store *st, const unsigned char kek[32], const char *alg,
    int64_t rotate_s, int64_t ttl_s, int64_t slack_ms)
{
	struct keys *k = xcalloc(1, sizeof(*k));

	k->store = st;
	memcpy(k->kek, kek, sizeof(k->kek));
	k->alg = strcmp(alg, "ES256") == 0 ? "ES256" : "RS256";
	k->rotate_ms = rotate_s * 1000;
	k->keep_ms = ttl_s * 1000 + slack_ms;
	pthread_rwlock_init(&k->lock, NULL);
	return k;
}

void
keys_free(struct keys *k)
{
	if (k == NULL)
		return;
	explicit_bzero(k->kek, sizeof(k->kek));
	free(k->kid);
	secret_free(k->pem);
	jwt_keyset_unref(k->keyset);
	json_decref(k->jwks);
	pthread_rwlock_destroy(&k->lock);
	free(k);
}

int64_t
keys_period_ms(const struct keys *k)
{
	int64_t p = k->rotate_ms / 10;

	return p < PERIOD_MIN_MS ? PERIOD_MIN_MS :
	    p > PERIOD_MAX_MS ? PERIOD_MAX_MS : p;
}

/* Loads the rows: the published set from every key, the signing key
 * from the newest. */
static enum plat_code
keys_load(struct keys *k, const struct key_row *rows, size_t n, char *err,
    size_t errlen)
{
	json_t *jwks = json_object(), *arr = json_array();
	struct jwt_keyset *ks;
	char *pem = NULL, *old_kid, *old_pem;
	struct jwt_keyset *old_ks;
	json_t *old_jwks;
	int same;

	json_object_set_new(jwks, "keys", arr);
	for (size_t i = 0; i < n; i++) {
		json_t *jwk = json_loads(rows[i].jwk, 0, NULL);

		if (jwk != NULL)
			json_array_append_new(arr, jwk);
	}
	ks = jwt_keyset_from_json(jwks, NULL, 0);
	pthread_rwlock_rdlock(&k->lock);
	same = k->kid != NULL && n > 0 && strcmp(k->kid, rows[0].kid) == 0;
	pthread_rwlock_unlock(&k->lock);
	if (n > 0 && !same &&
	    (pem = unseal(k->kek, rows[0].kid, rows[0].sealed)) == NULL) {
		errbuf_set(err, errlen, "signing key %s cannot be unsealed: "
		    "not the key-encryption key it was sealed with "
		    "(--kek-file)", rows[0].kid);
		jwt_keyset_unref(ks);
		json_decref(jwks);
		return PLAT_FAILED_PRECONDITION;
	}
	pthread_rwlock_wrlock(&k->lock);
	old_kid = NULL;
	old_pem = NULL;
	if (pem != NULL) {
		old_kid = k->kid;
		old_pem = k->pem;
		k->kid = xstrdup(rows[0].kid);
		k->pem = pem;
		k->jalg = strcmp(rows[0].alg, "ES256") == 0 ? JWT_ALG_ES256 :
		    JWT_ALG_RS256;
	}
	old_ks = k->keyset;
	old_jwks = k->jwks;
	k->keyset = ks;
	k->jwks = jwks;
	pthread_rwlock_unlock(&k->lock);
	free(old_kid);
	secret_free(old_pem);
	jwt_keyset_unref(old_ks);
	json_decref(old_jwks);
	return PLAT_OK;
}

enum plat_code
keys_sync(struct keys *k, char *err, size_t errlen)
{
	int64_t now = plat_wall_ms();
	struct key_row *rows = NULL;
	size_t n = 0;
	enum plat_code code;

	code = store_keys_sync(k->store, now, now - k->rotate_ms,
	    now - k->keep_ms, new_key, k, &rows, &n, err, errlen);
	if (code == PLAT_OK)
		code = keys_load(k, rows, n, err, errlen);
	key_rows_free(rows, n);
	return code;
}

char *
keys_sign(struct keys *k, const json_t *claims)
{
	char *text = json_dumps(claims, JSON_COMPACT), *out = NULL;
	jwt_t *jwt = NULL;

	if (text == NULL)
		return NULL;
	pthread_rwlock_rdlock(&k->lock);
	if (k->pem != NULL && jwt_new(&jwt) == 0 &&
	    jwt_add_grants_json(jwt, text) == 0 &&
	    jwt_add_header(jwt, "kid", k->kid) == 0 &&
	    jwt_set_alg(jwt, k->jalg, (const unsigned char *)k->pem,
	    (int)strlen(k->pem)) == 0)
		out = jwt_encode_str(jwt);
	pthread_rwlock_unlock(&k->lock);
	jwt_free(jwt);
	free(text);
	return out;         /* libjwt's default allocator is malloc */
}

struct jwt_keyset *
keys_keyset(struct keys *k)
{
	struct jwt_keyset *ks;

	pthread_rwlock_rdlock(&k->lock);
	ks = k->keyset != NULL ? jwt_keyset_ref(k->keyset) : NULL;
	pthread_rwlock_unlock(&k->lock);
	return ks;
}

json_t *
keys_jwks(struct keys *k)
{
	json_t *j;

	pthread_rwlock_rdlock(&k->lock);
	j = json_incref(k->jwks);
	pthread_rwlock_unlock(&k->lock);
	return j;
}
