/*
 * keys: auth-srv's signing keys: made with OpenSSL, kept in PostgreSQL
 * sealed with a key-encryption key, rotated, published, used to sign.
 *
 * The key-encryption key (KEK) comes from a file (--kek-file): its
 * content, at least 32 bytes, hashed with SHA-256, is an AES-256-GCM key
 * that seals every private key (the key id is the additional data, so a
 * sealed key cannot be moved to another row). The file must not be
 * readable by group or others; when it does not exist it is made, with
 * 32 random bytes and mode 0600. Every replica needs the same file.
 *
 * Lifecycle (store_keys_sync, under an advisory lock): the first start
 * makes a key; the newest key signs; once it is older than the rotation
 * period a new one takes over and the old one is retired; a retired key
 * stays in the published set (and verifies) until every token it signed
 * has expired (retired + token TTL + slack for clock skew), then is
 * deleted. A thread re-syncs every tenth of the rotation period (at
 * least every 30 s), so replicas follow each other's rotations.
 */
#ifndef AUTH_KEYS_H
#define AUTH_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "platform/jwt_verify.h"
#include "platform/server.h"
#include "store.h"

#define KEYS_KEK_MIN 32

struct keys;

/* The KEK from path, made first when the file does not exist; 0, or -1
 * with the reason in err. */
int keys_kek_load(const char *path, unsigned char kek[32], char *err,
    size_t errlen);

/* alg is "RS256" or "ES256", for new keys. rotate_s and ttl_s in
 * seconds; a retired key is kept ttl_s plus slack_ms. Copies kek.
 * Nothing is loaded yet. */
struct keys *keys_new(struct pg_store *st, const unsigned char kek[32],
    const char *alg, int64_t rotate_s, int64_t ttl_s, int64_t slack_ms);
void keys_free(struct keys *k);

/* Runs the lifecycle once and loads the result. */
enum plat_code keys_sync(struct keys *k, char *err, size_t errlen);
/* The thread's tick: keys_sync every period. */
int64_t keys_period_ms(const struct keys *k);

/* Signs claims with the current key: a compact JWS (malloc'd), or NULL
 * when no key is loaded yet (the database was never reached). */
char *keys_sign(struct keys *k, const json_t *claims);

/* The current verification key set (a reference: unref it) and JWKS
 * (a reference: decref it); NULL before the first sync. */
struct jwt_keyset *keys_keyset(struct keys *k);
json_t *keys_jwks(struct keys *k);

#endif
