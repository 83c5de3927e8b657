/*
 * auth: auth-srv's method table, lifecycle hooks, settings and what its
 * modules share.
 */
#ifndef AUTH_H
#define AUTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "platform/auth/v1/auth.pb-c.h"
#include "platform/jwt_verify.h"
#include "platform/server.h"
#include "platform/rules.h"
#include "store.h"

#define AUTH_ADMIN_SCOPE "platform:admin"
#define AUTH_ID_MAX 128
#define AUTH_SECRET_MIN 8
#define AUTH_SECRET_MAX 1024
#define AUTH_SCOPE_MAX 128
#define AUTH_SCOPES_MAX 100
#define AUTH_GENERATED_SECRET_BYTES 32

/* auth-srv's own settings, checked in main before anything starts. */
struct auth_settings {
	int64_t token_ttl_s;
	int64_t refresh_ttl_s;
	int64_t key_rotation_s;
	const char *key_alg;
	const char *kek_file;
	const char *bootstrap_file;
	const char *issuer;
	const char *audience;
	int lockout_failures;
	int lockout_peer_failures;
	int64_t lockout_s;
};

/* Fills s from the parsed options: 0, or -1 with a line naming the
 * setting in err. */
int auth_settings_load(struct auth_settings *s, char *err, size_t errlen);

/* The method table (handlers.c), sized here so the service descriptor
 * in main.c is a constant: a table of another size does not compile. */
#define AUTH_NMETHODS 14
extern const struct plat_method auth_methods[AUTH_NMETHODS];

int auth_init(plat_server *srv, const struct plat_settings *s);
void auth_fini(plat_server *srv);

/* What every module reaches. */
struct auth_state {
	struct auth_settings set;
	struct pg_store *store;
	struct keys *keys;
};
extern struct auth_state A;

/* The caller's access token, verified: active (signature, exp, nbf, iss,
 * aud, not revoked, account present and enabled), and with admin, the
 * admin scope. PLAT_OK with *out to free with jwt_claims_free, or the
 * status already set on ctx. */
int auth_caller(plat_ctx *ctx, bool admin, struct jwt_claims *out);

/* Whether token is an active access token (see auth_caller): PLAT_OK
 * with *out (free it), PLAT_UNAUTHENTICATED with the reason in err, or
 * a store error (on ctx already). */
int auth_token_active(plat_ctx *ctx, const char *token,
    struct jwt_claims *out, char *err, size_t errlen);

/* A store error for the caller. */
int auth_store_error(plat_ctx *ctx, enum plat_code code, const char *err);

/* Input checks: 0, or INVALID_ARGUMENT set on ctx naming field. */
int auth_check_id(plat_ctx *ctx, const char *field, const char *id);
int auth_check_scope(plat_ctx *ctx, const char *field, const char *scope);

/* Account fields for the wire, pointing into a (arena-owned arrays). */
void auth_account_fill(plat_ctx *ctx, Platform__Auth__V1__Account *out,
    const struct account *a);
/* Splits a space-separated list in the call's arena. */
char **auth_words(plat_ctx *ctx, const char *s, size_t *n);

/* The rule set in force (a reference: unref it). */
struct rule_set *auth_rules(void);
/* Reloads the rules from the store and tells the watchers. */
enum plat_code auth_rules_reload(char *err, size_t errlen);
void auth_rules_fini(void);
int auth_rules_start(const char *conninfo);

/* Handlers in tokens.c, accounts.c and policy.c. */
int auth_token(plat_ctx *, const ProtobufCMessage *, ProtobufCMessage **);
int auth_inspect(plat_ctx *, const ProtobufCMessage *, ProtobufCMessage **);
int auth_revoke(plat_ctx *, const ProtobufCMessage *, ProtobufCMessage **);
int auth_public_keys(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_verify(plat_ctx *, const ProtobufCMessage *, ProtobufCMessage **);
int auth_create_account(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_get_account(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_update_account(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_delete_account(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_list_accounts(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_create_rule(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_delete_rule(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_list_rules(plat_ctx *, const ProtobufCMessage *,
    ProtobufCMessage **);
int auth_watch_rules(plat_ctx *, const ProtobufCMessage *, plat_stream *);

#endif
