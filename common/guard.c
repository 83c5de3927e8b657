/*
 * guard: every call's authentication and authorization. See
 * platform/guard.h.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/auth/v1/auth.pb-c.h"
#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/guard.h"
#include "platform/log.h"
#include "platform/server.h"
#include "platform/xalloc.h"

#define M_PUBLIC_KEYS "/platform.auth.v1.Auth/PublicKeys"
#define M_WATCH_RULES "/platform.auth.v1.Auth/WatchRules"
#define GUARD_KEYS_DEADLINE_MS 3000
#define GUARD_POLL_MS 250
#define GUARD_RETRY_MIN_MS 250
#define GUARD_RETRY_MAX_MS 5000

/* Direct-mapped by a hash of the token; a newer token takes the slot. */
#define GUARD_CACHE_SLOTS 1024

struct verified {
	char *token;                     /* NULL: empty */
	struct jwt_claims claims;
};

struct plat_guard {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int kid_wanted;                  /* a token named an unknown kid */
	struct jwt_keyset *ks;           /* NULL until first read */
	struct rule_set *rs;             /* NULL until first read */
	/* Tokens whose signature and claims were checked, until they
	 * expire: a caller sends the same token with many calls, and its
	 * signature check costs more than the rest of a small call. Emptied
	 * whenever the keys change. Guarded by cache_mu. */
	pthread_mutex_t cache_mu;
	struct verified cache[GUARD_CACHE_SLOTS];
	int64_t keys_tried_ms;           /* last PublicKeys call; 0 never */
	char *auth, *issuer, *audience;
	plat_client *client;
	pthread_t thread;
	int started;
	/* The thread's own state. */
	int keys_failing, rules_failing;
	int64_t retry_ms, rules_at_ms;
	plat_client_stream *stream;
};

/* ---- the decision ---- */

int
guard_account_type(const char *claim)
{
	if (claim != NULL && strcmp(claim, "user") == 0)
		return RULE_USER;
	if (claim != NULL && strcmp(claim, "service") == 0)
		return RULE_SERVICE;
	return RULE_ANY_TYPE;
}

static int guard_authorize(const struct rule_set *rs, const char *service,
    const char *method, struct jwt_claims *claims, char *msg,
    size_t msglen);

/* Who the token says the caller is, checked: PLAT_OK with the claims, or
 * the status with msg set. */
static int
guard_verify(const struct jwt_keyset *ks, const char *authorization,
    const struct jwt_expect *expect, struct jwt_claims *claims,
    int *unknown_kid, char *msg, size_t msglen)
{
	const char *token;
	enum jwt_status st;
	char why[256];

	*unknown_kid = 0;
	memset(claims, 0, sizeof(*claims));
	if (authorization == NULL || authorization[0] == '\0') {
		errbuf_set(msg, msglen, "this call needs an access token: "
		    "authorization metadata \"Bearer <token>\"");
		return PLAT_UNAUTHENTICATED;
	}
	if ((token = jwt_bearer(authorization)) == NULL) {
		errbuf_set(msg, msglen, "authorization metadata is not "
		    "\"Bearer <token>\"");
		return PLAT_UNAUTHENTICATED;
	}
	if (ks == NULL) {
		errbuf_set(msg, msglen, "guard: signing keys not read from "
		    "auth-srv yet");
		return PLAT_UNAVAILABLE;
	}
	if ((st = jwt_verify(ks, token, expect, claims, why, sizeof(why))) !=
	    JWT_OK) {
		*unknown_kid = st == JWT_UNKNOWN_KEY;
		errbuf_set(msg, msglen, "access token refused: %s", why);
		return PLAT_UNAUTHENTICATED;
	}
	return PLAT_OK;
}

int
guard_decide(const struct jwt_keyset *ks, const struct rule_set *rs,
    const char *authorization, const struct jwt_expect *expect,
    const char *service, const char *method, struct jwt_claims *claims,
    int *unknown_kid, char *msg, size_t msglen)
{
	int code = guard_verify(ks, authorization, expect, claims,
	    unknown_kid, msg, msglen);

	if (code != PLAT_OK)
		return code;
	return guard_authorize(rs, service, method, claims, msg, msglen);
}

/* The rules' word on a verified caller; claims are freed unless OK. */
static int
guard_authorize(const struct rule_set *rs, const char *service,
    const char *method, struct jwt_claims *claims, char *msg, size_t msglen)
{
	const struct rule *r;
	struct rule_subject who;
	bool allowed;

	if (rs == NULL) {
		jwt_claims_free(claims);
		errbuf_set(msg, msglen, "guard: access rules not read from "
		    "auth-srv yet");
		return PLAT_UNAVAILABLE;
	}
	who = (struct rule_subject){
		.account = claims->sub,
		.scopes = claims->scopes,
		.nscopes = claims->nscopes,
		.account_type = guard_account_type(claims->account_type),
	};
	r = rule_evaluate(rs, &who, service, method, &allowed);
	if (allowed)
		return PLAT_OK;
	if (r != NULL)
		errbuf_set(msg, msglen, "%s may not call %s/%s: denied by rule "
		    "%s", claims->sub, service, method, r->id);
	else
		errbuf_set(msg, msglen, "%s may not call %s/%s: no rule "
		    "allows it", claims->sub, service, method);
	jwt_claims_free(claims);
	return PLAT_PERMISSION_DENIED;
}

static struct verified *
cache_slot(struct plat_guard *g, const char *token)
{
	uint64_t h = 1469598103934665603ull;     /* FNV-1a */

	for (const char *p = token; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return &g->cache[h % GUARD_CACHE_SLOTS];
}

/* A copy of token's claims when it was verified and is still alive. */
static bool
cache_get(struct plat_guard *g, const char *token, int64_t now,
    struct jwt_claims *out)
{
	struct verified *v = cache_slot(g, token);
	bool hit;

	pthread_mutex_lock(&g->cache_mu);
	hit = v->token != NULL && strcmp(v->token, token) == 0 &&
	    now <= v->claims.exp + GUARD_LEEWAY_S;
	if (hit)
		jwt_claims_copy(out, &v->claims);
	pthread_mutex_unlock(&g->cache_mu);
	return hit;
}

static void
cache_put(struct plat_guard *g, const char *token,
    const struct jwt_claims *claims)
{
	struct verified *v = cache_slot(g, token);

	pthread_mutex_lock(&g->cache_mu);
	if (v->token != NULL) {
		free(v->token);
		jwt_claims_free(&v->claims);
	}
	v->token = xstrdup(token);
	jwt_claims_copy(&v->claims, claims);
	pthread_mutex_unlock(&g->cache_mu);
}

static void
cache_clear(struct plat_guard *g)
{
	pthread_mutex_lock(&g->cache_mu);
	for (size_t i = 0; i < GUARD_CACHE_SLOTS; i++)
		if (g->cache[i].token != NULL) {
			free(g->cache[i].token);
			g->cache[i].token = NULL;
			jwt_claims_free(&g->cache[i].claims);
		}
	pthread_mutex_unlock(&g->cache_mu);
}

int
plat_guard_check(struct plat_guard *g, const char *authorization,
    const char *service, const char *method, struct jwt_claims *claims,
    char *msg, size_t msglen)
{
	struct jwt_expect expect = {
		.issuer = g->issuer,
		.audience = g->audience,
		.now = plat_wall_ms() / 1000,
		.leeway = GUARD_LEEWAY_S,
	};
	struct jwt_keyset *ks;
	struct rule_set *rs;
	const char *token;
	int code, unknown_kid;

	pthread_mutex_lock(&g->mu);
	ks = g->ks != NULL ? jwt_keyset_ref(g->ks) : NULL;
	rs = g->rs != NULL ? rule_set_ref(g->rs) : NULL;
	pthread_mutex_unlock(&g->mu);
	token = authorization != NULL ? jwt_bearer(authorization) : NULL;
	unknown_kid = 0;
	if (ks != NULL && token != NULL &&
	    cache_get(g, token, expect.now, claims)) {
		code = guard_authorize(rs, service, method, claims, msg,
		    msglen);
	} else {
		code = guard_verify(ks, authorization, &expect, claims,
		    &unknown_kid, msg, msglen);
		if (code == PLAT_OK) {
			cache_put(g, token, claims);
			code = guard_authorize(rs, service, method, claims, msg,
			    msglen);
		}
	}
	jwt_keyset_unref(ks);
	rule_set_unref(rs);
	if (unknown_kid) {
		/* A new signing key, or a forged kid: the thread reads the
		 * keys again, at most once a second either way. */
		pthread_mutex_lock(&g->mu);
		if (!g->kid_wanted) {
			g->kid_wanted = 1;
			pthread_cond_signal(&g->cv);
		}
		pthread_mutex_unlock(&g->mu);
	}
	return code;
}

/* ---- keys ---- */

static void
guard_fetch_keys(struct plat_guard *g)
{
	Platform__Auth__V1__PublicKeysRequest req =
	    PLATFORM__AUTH__V1__PUBLIC_KEYS_REQUEST__INIT;
	struct plat_call_opts co = { .deadline_ms = GUARD_KEYS_DEADLINE_MS };
	Platform__Auth__V1__PublicKeysResponse *resp;
	ProtobufCMessage *m = NULL;
	struct jwt_keyset *ks = NULL, *old;
	char err[256], n[16];
	int rc;

	rc = plat_client_call_addr(g->client, g->auth, M_PUBLIC_KEYS,
	    &req.base, &platform__auth__v1__public_keys_response__descriptor,
	    &m, &co, err, sizeof(err));
	resp = (Platform__Auth__V1__PublicKeysResponse *)m;
	if (rc == PLAT_OK && (ks = jwt_keyset_from_jwks(resp->jwks_json, err,
	    sizeof(err))) == NULL)
		rc = PLAT_INTERNAL;
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	if (rc != PLAT_OK) {
		if (!g->keys_failing)
			log_warn("guard: cannot read the signing keys from "
			    "auth-srv; keeping the last good ones", "auth",
			    g->auth, "status", plat_status_name(rc),
			    "message", err);
		g->keys_failing = 1;
		return;
	}
	pthread_mutex_lock(&g->mu);
	old = g->ks;
	g->ks = ks;
	pthread_mutex_unlock(&g->mu);
	cache_clear(g);         /* a key may be gone: verify again */
	snprintf(n, sizeof(n), "%zu", jwt_keyset_size(ks));
	if (old == NULL || g->keys_failing)
		log_info("guard: signing keys read", "auth", g->auth, "keys",
		    n);
	g->keys_failing = 0;
	jwt_keyset_unref(old);
}

/* ---- rules ---- */

static struct rule_set *
guard_rule_set(const Platform__Auth__V1__WatchRulesResponse *m)
{
	struct rule **v = m->n_rules > 0 ?
	    xcalloc(m->n_rules, sizeof(*v)) : NULL;

	for (size_t i = 0; i < m->n_rules; i++) {
		const Platform__Auth__V1__Rule *p = m->rules[i];
		struct rule r = {
			.id = p->id,
			.service = p->service,
			.method = p->method,
			.account = p->account,
			.scope = p->scope,
			.account_type = (int)p->account_type,
			.effect = (int)p->effect,
			.priority = p->priority,
			.description = p->description,
			.created_ms = p->created_unix_ms,
		};

		v[i] = rule_copy(&r);
	}
	return rule_set_new(v, m->n_rules);
}

static void
guard_rules_failed(struct plat_guard *g, int rc, const char *err)
{
	if (!g->rules_failing)
		log_warn("guard: cannot watch the access rules on auth-srv; "
		    "keeping the last good ones", "auth", g->auth, "status",
		    plat_status_name(rc), "message", err);
	g->rules_failing = 1;
	g->rules_at_ms = plat_now_ms() + g->retry_ms;
	if ((g->retry_ms *= 2) > GUARD_RETRY_MAX_MS)
		g->retry_ms = GUARD_RETRY_MAX_MS;
}

/* One step of the rules watch: open it, or read from it. */
static void
guard_watch_rules(struct plat_guard *g)
{
	Platform__Auth__V1__WatchRulesRequest req =
	    PLATFORM__AUTH__V1__WATCH_RULES_REQUEST__INIT;
	ProtobufCMessage *m;
	struct rule_set *rs, *old;
	char err[256], n[16];
	int r, rc;

	if (g->stream == NULL) {
		err[0] = '\0';
		rc = plat_client_stream_open(g->client, g->auth, M_WATCH_RULES,
		    &req.base, 0, NULL, &g->stream, err, sizeof(err));
		if (rc != PLAT_OK) {
			guard_rules_failed(g, rc, err);
			return;
		}
	}
	r = plat_client_stream_next(g->stream,
	    &platform__auth__v1__watch_rules_response__descriptor, &m,
	    GUARD_POLL_MS);
	if (r == PLAT_STREAM_TIMEOUT)
		return;
	if (r == PLAT_STREAM_END) {
		rc = plat_client_stream_status(g->stream, err, sizeof(err));
		plat_client_stream_free(g->stream);
		g->stream = NULL;
		guard_rules_failed(g, rc != PLAT_OK ? rc : PLAT_UNAVAILABLE,
		    rc != PLAT_OK ? err : "the watch ended");
		return;
	}
	rs = guard_rule_set((Platform__Auth__V1__WatchRulesResponse *)m);
	protobuf_c_message_free_unpacked(m, NULL);
	pthread_mutex_lock(&g->mu);
	old = g->rs;
	g->rs = rs;
	pthread_mutex_unlock(&g->mu);
	snprintf(n, sizeof(n), "%zu", rule_set_size(rs));
	if (old == NULL || g->rules_failing)
		log_info("guard: access rules read", "auth", g->auth, "rules",
		    n);
	else
		log_debug("guard: access rules changed", "rules", n);
	g->rules_failing = 0;
	g->retry_ms = GUARD_RETRY_MIN_MS;
	rule_set_unref(old);
}

/* ---- the thread ---- */

static int
guard_keys_due_locked(struct plat_guard *g, int64_t now)
{
	int64_t since = now - g->keys_tried_ms;

	if (g->keys_tried_ms == 0)
		return 1;
	if (g->ks == NULL || g->kid_wanted)
		return since >= GUARD_KID_REFETCH_MS;
	return since >= GUARD_KEYS_REFRESH_MS;
}

static void *
guard_main(void *arg)
{
	struct plat_guard *g = arg;
	int64_t now;
	int keys;

	pthread_mutex_lock(&g->mu);
	while (!g->stop) {
		now = plat_now_ms();
		if ((keys = guard_keys_due_locked(g, now)) != 0) {
			g->keys_tried_ms = now;
			g->kid_wanted = 0;
		}
		pthread_mutex_unlock(&g->mu);
		if (keys)
			guard_fetch_keys(g);
		if (g->stream != NULL || now >= g->rules_at_ms)
			guard_watch_rules(g);
		pthread_mutex_lock(&g->mu);
		if (g->stream == NULL && !g->stop)
			plat_cond_wait_ms(&g->cv, &g->mu, GUARD_POLL_MS,
			    &g->stop);
	}
	pthread_mutex_unlock(&g->mu);
	plat_client_stream_free(g->stream);
	g->stream = NULL;
	return NULL;
}

struct plat_guard *
plat_guard_start(const struct plat_guard_opts *o)
{
	struct plat_guard *g = xcalloc(1, sizeof(*g));

	pthread_mutex_init(&g->mu, NULL);
	pthread_mutex_init(&g->cache_mu, NULL);
	plat_cond_init(&g->cv);
	g->auth = xstrdup(o->auth);
	g->issuer = xstrdup(o->issuer);
	g->audience = xstrdup(o->audience);
	g->client = o->client;
	g->retry_ms = GUARD_RETRY_MIN_MS;
	if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
		log_error("guard: cannot start its thread");
		plat_guard_free(g);
		return NULL;
	}
	g->started = 1;
	return g;
}

void
plat_guard_stop(struct plat_guard *g)
{
	if (g == NULL || !g->started)
		return;
	pthread_mutex_lock(&g->mu);
	g->stop = 1;
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
	pthread_join(g->thread, NULL);
	g->started = 0;
}

void
plat_guard_free(struct plat_guard *g)
{
	if (g == NULL)
		return;
	plat_guard_stop(g);
	cache_clear(g);
	pthread_mutex_destroy(&g->cache_mu);
	jwt_keyset_unref(g->ks);
	rule_set_unref(g->rs);
	free(g->auth);
	free(g->issuer);
	free(g->audience);
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
	free(g);
}
