/*
 * store: auth-srv's PostgreSQL tables and every statement on them.
 *
 *   auth_accounts        users and services: id, type, argon2id hash of
 *                        the secret, scopes (space-separated), metadata
 *                        (a JSON object of strings), disabled, times
 *   auth_refresh_tokens  SHA-256 of each refresh token, its family (the
 *                        grant it descends from), account, scopes,
 *                        expiry, used/revoked; a token is used once
 *   auth_revoked         jti of revoked access tokens, until their exp
 *   auth_signing_keys    signing keys: the private key sealed with the
 *                        key-encryption key (keys.h), the public JWK,
 *                        created and retired times
 *   auth_rules           access rules (platform/rules.h)
 *   auth_bootstrap       one row once the first start has bootstrapped
 *
 * Rule changes notify channel 'platform_auth_rules' in their
 * transaction, so every replica reloads its rule set.
 *
 * Every call returns a gRPC code with a message in err (platform/pg.h);
 * messages never hold a secret, a hash or a token.
 */
#ifndef AUTH_STORE_H
#define AUTH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "platform/server.h"
#include "platform/rules.h"

#define STORE_RULES_CHANNEL "platform_auth_rules"

struct account {
	char *id;
	int type;               /* RULE_USER or RULE_SERVICE */
	char *scopes;           /* space-separated, sorted, unique */
	json_t *metadata;       /* object of strings */
	bool disabled;
	int64_t created_ms;
	int64_t updated_ms;
	char *secret_hash;      /* argon2id, PHC format */
};
void account_free(struct account *a);          /* NULL is fine */

struct store;

struct store *store_new(const char *conninfo, int pool_size);
void store_free(struct store *s);
/* Applies the migrations (component "auth"); PLAT_UNAVAILABLE while the
 * database is down. */
enum plat_code store_migrate(struct store *s, char *err, size_t errlen);
bool store_ready(struct store *s);
/* The store underneath, for the runtime's database check. */
struct pg_store *store_db(struct store *s);

/* ---- accounts ---- */

/* PLAT_ALREADY_EXISTS when the id is taken. */
enum plat_code store_account_create(struct store *s, const struct account *a,
    int64_t timeout_ms, char *err, size_t errlen);
/* *out NULL when there is no such account. */
enum plat_code store_account_get(struct store *s, const char *id,
    int64_t timeout_ms, struct account **out, char *err, size_t errlen);

/* Fields of an update; each only when its flag is set. */
struct account_update {
	bool scopes_set, metadata_set, disabled_set, secret_set;
	const char *scopes;
	const char *metadata_json;
	bool disabled;
	const char *secret_hash;
};
/* The updated account in *out; PLAT_NOT_FOUND when there is none. A
 * disabled account's refresh tokens are revoked with it. */
enum plat_code store_account_update(struct store *s, const char *id,
    const struct account_update *u, int64_t timeout_ms,
    struct account **out, char *err, size_t errlen);
/* PLAT_NOT_FOUND when there is none; its refresh tokens go with it. */
enum plat_code store_account_delete(struct store *s, const char *id,
    int64_t timeout_ms, char *err, size_t errlen);
/* Accounts with id > after, in id order, at most limit. */
enum plat_code store_account_list(struct store *s, const char *after,
    int limit, int64_t timeout_ms, struct account ***out, size_t *n,
    char *err, size_t errlen);

/* ---- refresh tokens ---- */

struct refresh_grant {
	const char *hash;       /* SHA-256 hex of the token */
	const char *family;
	const char *account;
	const char *scopes;
	int64_t expires_ms;
};
enum plat_code store_refresh_insert(struct store *s,
    const struct refresh_grant *g, int64_t timeout_ms, char *err,
    size_t errlen);

enum refresh_outcome {
	REFRESH_OK,             /* used now; *acct and *scopes are set */
	REFRESH_INVALID,        /* unknown, expired, revoked, or account
	                           gone or disabled */
	REFRESH_REUSED,         /* used before: its family is now revoked */
};
/* Uses the token with hash `hash` once and stores its successor `next`
 * in one transaction: the same family, account and scopes (those of
 * next are ignored), its own hash and expiry. */
enum plat_code store_refresh_use(struct store *s, const char *hash,
    const struct refresh_grant *next, int64_t now_ms, int64_t timeout_ms,
    enum refresh_outcome *outcome, struct account **acct, char **scopes,
    char *err, size_t errlen);

/* For Inspect: the live token's account and scopes, or *acct NULL when
 * the token is not active. *expires_ms and *created_ms too. */
enum plat_code store_refresh_inspect(struct store *s, const char *hash,
    int64_t now_ms, int64_t timeout_ms, struct account **acct,
    char **scopes, int64_t *created_ms, int64_t *expires_ms, char *err,
    size_t errlen);
/* Revokes the family of the token with hash `hash`, when it belongs to
 * `owner` (NULL: anyone's). *found says whether such a token exists
 * (of anyone); *owned whether it was revoked. */
enum plat_code store_refresh_revoke(struct store *s, const char *hash,
    const char *owner, int64_t timeout_ms, bool *found, bool *owned,
    char *err, size_t errlen);

/* ---- access tokens ---- */

enum plat_code store_revoke_jti(struct store *s, const char *jti,
    int64_t exp_ms, int64_t timeout_ms, char *err, size_t errlen);
enum plat_code store_jti_revoked(struct store *s, const char *jti,
    int64_t timeout_ms, bool *revoked, char *err, size_t errlen);
/* Drops revocations and refresh tokens past their expiry. */
enum plat_code store_purge(struct store *s, int64_t now_ms, char *err,
    size_t errlen);

/* ---- rules ---- */

/* r->id and r->created_ms are set by the caller. */
enum plat_code store_rule_create(struct store *s, const struct rule *r,
    int64_t timeout_ms, char *err, size_t errlen);
enum plat_code store_rule_delete(struct store *s, const char *id,
    int64_t timeout_ms, char *err, size_t errlen);
/* Every rule (malloc'd array of rule_free-able rules). */
enum plat_code store_rules_all(struct store *s, int64_t timeout_ms,
    struct rule ***out, size_t *n, char *err, size_t errlen);

/* ---- signing keys ---- */

struct key_row {
	char *kid;
	char *alg;
	char *sealed;           /* base64url of the sealed private key */
	char *jwk;              /* public JWK, JSON */
	int64_t created_ms;
	int64_t retired_ms;     /* 0 while it signs */
};
void key_rows_free(struct key_row *rows, size_t n);

/* Makes a new key for key_sync: fills *out (malloc'd strings), 0 or -1. */
typedef int (*key_new_fn)(void *arg, struct key_row *out);

/*
 * The key lifecycle, in one transaction under an advisory lock so
 * replicas agree: when no key signs or the signing one was created at
 * or before rotate_before_ms, new_key makes one that signs from now on
 * and the old one is retired now; keys retired at or before
 * drop_before_ms are deleted. The keys left, newest first, in *rows.
 */
enum plat_code store_keys_sync(struct store *s, int64_t now_ms,
    int64_t rotate_before_ms, int64_t drop_before_ms, key_new_fn new_key,
    void *arg, struct key_row **rows, size_t *n, char *err, size_t errlen);

/* ---- bootstrap ---- */

/* On the very first start (no bootstrap row, no account), in one
 * transaction: the admin account and the rules, and the bootstrap row.
 * *done says whether this call did it. */
enum plat_code store_bootstrap(struct store *s, const struct account *admin,
    struct rule *const *rules, size_t nrules, bool *done, char *err,
    size_t errlen);

#endif
