/*
 * guard: authentication and authorization of every call a server
 * answers, run by the server runtime before any handler.
 *
 * A call passes when its "authorization" metadata is "Bearer <jwt>" and
 * the token verifies (platform/jwt_verify.h: signature against auth-srv's
 * published keys with the algorithm pinned to the key, exp, nbf, iss,
 * aud), and the access rules (platform/rules.h) allow its account,
 * account type and scopes to call the gRPC service and method. No valid
 * token is UNAUTHENTICATED, a token without the right PERMISSION_DENIED
 * naming the deciding rule; until the keys or the rules have been read
 * from auth-srv once, UNAVAILABLE. Messages never quote a token.
 *
 * The keys (PublicKeys) and the rules (WatchRules) are kept in memory by
 * one thread: the keys are read again every GUARD_KEYS_REFRESH_MS and,
 * at most once a second, when a token names a kid not in the set; the
 * rules arrive whole after every change. Both are immutable sets swapped
 * under a lock, so a check holds the ones it started with; when auth-srv
 * is away the last good sets stay in force.
 */
#ifndef PLATFORM_GUARD_H
#define PLATFORM_GUARD_H

#include <stddef.h>

#include "platform/client.h"
#include "platform/jwt_verify.h"
#include "platform/rules.h"

#define GUARD_KEYS_REFRESH_MS 60000
#define GUARD_KID_REFETCH_MS 1000
#define GUARD_LEEWAY_S 5

/*
 * The decision for one call, with no I/O: keys and rules as they are now
 * (NULL: not loaded), the authorization metadata value (NULL: none), the
 * gRPC service ("platform.config.v1.Config") and method ("Update").
 * PLAT_OK with the token's claims in *claims (free with
 * jwt_claims_free), or a status code with its message in msg;
 * *unknown_kid is set when the token named a key the set lacks.
 */
int guard_decide(const struct jwt_keyset *ks, const struct rule_set *rs,
    const char *authorization, const struct jwt_expect *expect,
    const char *service, const char *method, struct jwt_claims *claims,
    int *unknown_kid, char *msg, size_t msglen);

/* "user" → RULE_USER, "service" → RULE_SERVICE, else RULE_ANY_TYPE. */
int guard_account_type(const char *claim);

struct plat_guard_opts {
	const char *auth;               /* auth-srv host:port */
	const char *issuer;
	const char *audience;
	plat_client *client;            /* sends this server's token */
};

struct plat_guard;

/* Starts the thread that reads keys and rules from auth-srv (it does not
 * wait for them). NULL when the thread cannot start. */
struct plat_guard *plat_guard_start(const struct plat_guard_opts *o);
/* Stops the thread (before the client it calls with goes); checks go on
 * with the last keys and rules. NULL is a no-op. */
void plat_guard_stop(struct plat_guard *g);
/* Stops it if need be and frees everything. NULL is a no-op. */
void plat_guard_free(struct plat_guard *g);

/* guard_decide with the guard's current sets, the time now, and a key
 * refetch asked for on an unknown kid. */
int plat_guard_check(struct plat_guard *g, const char *authorization,
    const char *service, const char *method, struct jwt_claims *claims,
    char *msg, size_t msglen);

#endif
