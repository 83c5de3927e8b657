/*
 * secret: argon2id hashes, random secrets, SHA-256 (see secret.h).
 */
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "platform/jwk.h"
#include "platform/log.h"
#include "secret.h"

#define T_COST 2
#define M_COST_KIB 19456
#define PARALLELISM 1
#define SALT_BYTES 16
#define HASH_BYTES 32

static char decoy[SECRET_HASH_MAX];

int
secret_hash(const char *secret, char out[SECRET_HASH_MAX])
{
	unsigned char salt[SALT_BYTES];
	int rc;

	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -1;
	rc = argon2id_hash_encoded(T_COST, M_COST_KIB, PARALLELISM, secret,
	    strlen(secret), salt, sizeof(salt), HASH_BYTES, out,
	    SECRET_HASH_MAX);
	if (rc != ARGON2_OK) {
		log_error("auth: argon2id failed", "error",
		    argon2_error_message(rc));
		return -1;
	}
	return 0;
}

bool
secret_verify(const char *encoded, const char *secret)
{
	return argon2id_verify(encoded, secret, strlen(secret)) == ARGON2_OK;
}

int
secret_init(void)
{
	char *s = secret_random(32);
	int rc = s != NULL ? secret_hash(s, decoy) : -1;

	secret_free(s);
	return rc;
}

bool
secret_verify_none(const char *secret)
{
	(void)secret_verify(decoy, secret);
	return false;
}

char *
secret_random(size_t nbytes)
{
	unsigned char buf[64];
	char *out;

	if (nbytes > sizeof(buf) || RAND_bytes(buf, (int)nbytes) != 1)
		return NULL;
	out = jwk_b64url_encode(buf, nbytes);
	explicit_bzero(buf, sizeof(buf));
	return out;
}

void
secret_sha256_hex(const char *s, char out[SECRET_SHA256_HEX])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)s, strlen(s), md);
	for (size_t i = 0; i < sizeof(md); i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * sizeof(md)] = '\0';
}

void
secret_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}
