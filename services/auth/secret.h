/*
 * secret: what auth-srv does with secrets: argon2id hashes of account
 * secrets (Debian's libargon2), random secrets and tokens, SHA-256 of
 * refresh tokens, and wiping.
 *
 * Hashes use argon2id with t=2, m=19 MiB, p=1 (OWASP's minimum) and a
 * 16-byte random salt, in the PHC string format, so the parameters can
 * be raised later without breaking stored hashes.
 */
#ifndef AUTH_SECRET_H
#define AUTH_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#define SECRET_HASH_MAX 128      /* bytes of an encoded hash, NUL included */
#define SECRET_SHA256_HEX 65

/* One-time start-up: the decoy hash secret_verify_none checks against. */
int secret_init(void);

/* The argon2id hash of secret into out; 0, or -1. */
int secret_hash(const char *secret, char out[SECRET_HASH_MAX]);
/* Whether secret matches an encoded hash. */
bool secret_verify(const char *encoded, const char *secret);
/* The same work as secret_verify for an account that does not exist, so
 * a wrong id cannot be told from a wrong secret by the time it takes.
 * Always false. */
bool secret_verify_none(const char *secret);

/* nbytes random bytes as base64url (malloc'd); NULL when the system's
 * randomness fails. */
char *secret_random(size_t nbytes);
/* SHA-256 of s as lower-case hex. */
void secret_sha256_hex(const char *s, char out[SECRET_SHA256_HEX]);
/* Wipes and frees a secret string; NULL is fine. */
void secret_free(char *s);

#endif
