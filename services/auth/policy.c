/*
 * policy: the rule set in memory, kept current by the platform's change
 * feed (platform/feed.h), and the methods over it: CreateRule,
 * DeleteRule, ListRules, WatchRules and Verify.
 *
 * The set is reloaded whole from PostgreSQL (rule sets are small): right
 * after a write on this replica, and by the feed on the
 * 'platform_auth_rules' notification of every other one, on the
 * listener's reconnects and every second. A reload that finds a set
 * other than the last one makes a new generation: the feed's row is one
 * whole set, its revision the generation. Each watcher gets the whole
 * set when it starts and again with every new generation.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "platform/clock.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/paging.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "secret.h"

#define LIST_PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define RULE_ID_BYTES 12
#define RULE_BYTES 256          /* about, per rule, for buffer limits */

typedef Platform__Auth__V1__Rule Rule;

/* One generation of the rule set. */
struct rules_gen {
	int refs;               /* atomic */
	int64_t gen;
	size_t size;            /* about, for buffer limits */
	struct rule_set *rs;
};

/* mu guards cur; reload_mu makes reloads one at a time, so generations
 * follow the order the store's sets were read in. reload_mu is taken
 * first. */
static struct {
	pthread_mutex_t mu;
	pthread_mutex_t reload_mu;
	struct rules_gen *cur;  /* NULL until loaded */
	struct plat_feed *feed;
} P = { .mu = PTHREAD_MUTEX_INITIALIZER,
    .reload_mu = PTHREAD_MUTEX_INITIALIZER };

static struct rules_gen *
rules_gen_ref(struct rules_gen *g)
{
	__atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
	return g;
}

static void
rules_gen_unref(struct rules_gen *g)
{
	if (g == NULL || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	rule_set_unref(g->rs);
	free(g);
}

struct rule_set *
auth_rules(void)
{
	struct rule_set *rs;

	pthread_mutex_lock(&P.mu);
	rs = P.cur != NULL ? rule_set_ref(P.cur->rs) : NULL;
	pthread_mutex_unlock(&P.mu);
	return rs;
}

/* ---- the wire ---- */

static void
rule_fill(Rule *out, const struct rule *r)
{
	platform__auth__v1__rule__init(out);
	out->id = r->id;
	out->service = r->service;
	out->method = r->method;
	out->account = r->account;
	out->scope = r->scope;
	out->account_type = (Platform__Auth__V1__AccountType)r->account_type;
	out->effect = (Platform__Auth__V1__Effect)r->effect;
	out->priority = r->priority;
	out->description = r->description;
	out->created_unix_ms = r->created_ms;
}

/* A copy of r in the call's arena. */
static Rule *
rule_out(plat_ctx *ctx, const struct rule *r)
{
	Rule *w = plat_alloc(ctx, sizeof(*w));

	rule_fill(w, r);
	w->id = plat_strdup(ctx, r->id);
	w->service = plat_strdup(ctx, r->service);
	w->method = plat_strdup(ctx, r->method);
	w->account = plat_strdup(ctx, r->account);
	w->scope = plat_strdup(ctx, r->scope);
	w->description = plat_strdup(ctx, r->description);
	return w;
}

/* Packs the whole set for watchers: a malloc'd array of n Rules pointing
 * into rs (keep rs referenced while it is used). */
static Rule **
rules_wire(const struct rule_set *rs, Rule **storage)
{
	size_t n = rule_set_size(rs);
	Rule **v = xcalloc(n + 1, sizeof(*v));

	*storage = xcalloc(n + 1, sizeof(**storage));
	for (size_t i = 0; i < n; i++) {
		rule_fill(&(*storage)[i], rule_set_at(rs, i));
		v[i] = &(*storage)[i];
	}
	return v;
}

/* Sends the set to one watcher: 0, or -1 when the stream ended. */
static int
watcher_send(plat_stream *st, const struct rule_set *rs)
{
	Platform__Auth__V1__WatchRulesResponse m =
	    PLATFORM__AUTH__V1__WATCH_RULES_RESPONSE__INIT;
	Rule *storage;
	int rc;

	m.rules = rules_wire(rs, &storage);
	m.n_rules = rule_set_size(rs);
	rc = plat_stream_send(st, &m.base);
	free(m.rules);
	free(storage);
	return rc;
}

/* ---- reloads ---- */

static bool
str_eq(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

static bool
rule_eq(const struct rule *a, const struct rule *b)
{
	return str_eq(a->id, b->id) && str_eq(a->service, b->service) &&
	    str_eq(a->method, b->method) && str_eq(a->account, b->account) &&
	    str_eq(a->scope, b->scope) &&
	    a->account_type == b->account_type && a->effect == b->effect &&
	    a->priority == b->priority &&
	    str_eq(a->description, b->description) &&
	    a->created_ms == b->created_ms;
}

/* Both sets are in evaluation order, so equal sets are equal rule by
 * rule. */
static bool
rule_set_eq(const struct rule_set *a, const struct rule_set *b)
{
	size_t n = rule_set_size(a);

	if (n != rule_set_size(b))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!rule_eq(rule_set_at(a, i), rule_set_at(b, i)))
			return false;
	return true;
}

/* Reads the set from the store: *out (a reference) is the current
 * generation, *changed whether this read made it. */
static enum plat_code
rules_load(int64_t timeout_ms, struct rules_gen **out, bool *changed,
    char *err, size_t errlen)
{
	struct rules_gen *g, *old = NULL;
	struct rule_set *rs;
	enum plat_code code;
	struct rule **v;
	size_t n;

	*changed = false;
	pthread_mutex_lock(&P.reload_mu);
	code = store_rules_all(A.store, timeout_ms, &v, &n, err, errlen);
	if (code != PLAT_OK) {
		pthread_mutex_unlock(&P.reload_mu);
		return code;
	}
	rs = rule_set_new(v, n);
	pthread_mutex_lock(&P.mu);
	if (P.cur != NULL && rule_set_eq(P.cur->rs, rs)) {
		rule_set_unref(rs);
	} else {
		g = xcalloc(1, sizeof(*g));
		g->refs = 1;
		g->rs = rs;
		g->gen = P.cur != NULL ? P.cur->gen + 1 : 1;
		g->size = n * RULE_BYTES;
		old = P.cur;
		P.cur = g;
		*changed = true;
	}
	*out = rules_gen_ref(P.cur);
	pthread_mutex_unlock(&P.mu);
	pthread_mutex_unlock(&P.reload_mu);
	rules_gen_unref(old);
	return PLAT_OK;
}

enum plat_code
auth_rules_reload(char *err, size_t errlen)
{
	struct rules_gen *g;
	enum plat_code code;
	bool changed;

	code = rules_load(INT64_MAX, &g, &changed, err, errlen);
	if (code != PLAT_OK)
		return code;
	/* A set of this replica's making goes to the watchers at once. */
	if (changed && P.feed != NULL)
		plat_feed_committed(P.feed, (void *const[]){ g }, 1);
	rules_gen_unref(g);
	return PLAT_OK;
}

/* ---- the feed's callbacks ---- */

static enum plat_code
rules_head(void *arg, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	struct rules_gen *g;
	enum plat_code code;
	bool changed;

	(void)arg;
	pthread_mutex_lock(&P.mu);
	*rev = P.cur != NULL ? P.cur->gen : -1;
	pthread_mutex_unlock(&P.mu);
	if (*rev >= 0)
		return PLAT_OK;
	if ((code = rules_load(timeout_ms, &g, &changed, err, errlen)) !=
	    PLAT_OK)
		return code;
	*rev = g->gen;
	rules_gen_unref(g);
	return PLAT_OK;
}

/* The current set when its generation is in (after, upto]. */
static enum plat_code
rules_read(void *arg, const void *watch, int64_t after, int64_t upto,
    int limit, int64_t timeout_ms, struct plat_feed_page *out, char *err,
    size_t errlen)
{
	struct rules_gen *g;
	enum plat_code code;
	bool changed;

	(void)arg;
	(void)watch;
	(void)limit;
	if ((code = rules_load(timeout_ms, &g, &changed, err, errlen)) !=
	    PLAT_OK)
		return code;
	if (g->gen > after && (upto <= 0 || g->gen <= upto)) {
		plat_feed_page_push(out, g);
		return PLAT_OK;
	}
	/* A replay's read found a set newer than it covers: the feed
	 * hands it over live. */
	if (changed && P.feed != NULL)
		plat_feed_kick(P.feed);
	rules_gen_unref(g);
	return PLAT_OK;
}

static void
rules_ref(void *row)
{
	rules_gen_ref(row);
}

static void
rules_unref(void *row)
{
	rules_gen_unref(row);
}

static bool
rules_match(const void *watch, const void *row)
{
	(void)watch;
	(void)row;
	return true;
}

static int
rules_send(plat_stream *st, const void *row)
{
	return watcher_send(st, ((const struct rules_gen *)row)->rs);
}

static const struct plat_feed_ops rules_feed_ops = {
	.name = "auth",
	.channel = STORE_RULES_CHANNEL,
	.page = 16,
	.start_wait_ms = 5000,        /* a watch during the start */
	.head = rules_head,
	.read = rules_read,
	.revision_at = offsetof(struct rules_gen, gen),
	.size_at = offsetof(struct rules_gen, size),
	.ref = rules_ref,
	.unref = rules_unref,
	.match = rules_match,
	.send = rules_send,
};

int
auth_rules_start(const char *conninfo)
{
	P.feed = plat_feed_start(&rules_feed_ops, NULL, conninfo, NULL,
	    NULL);
	return P.feed != NULL ? 0 : -1;
}

void
auth_rules_fini(void)
{
	plat_feed_free(P.feed);
	P.feed = NULL;
	pthread_mutex_lock(&P.mu);
	rules_gen_unref(P.cur);
	P.cur = NULL;
	pthread_mutex_unlock(&P.mu);
}

/* ---- CreateRule, DeleteRule, ListRules ---- */

static int
reload_after_write(plat_ctx *ctx)
{
	char err[256];
	enum plat_code code = auth_rules_reload(err, sizeof(err));

	/* The write committed; the listener catches up if this failed. */
	if (code != PLAT_OK)
		log_warn("auth: cannot reload the rules", "error", err);
	(void)ctx;
	return PLAT_OK;
}

int
auth_create_rule(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__CreateRuleRequest *req = (const void *)msg;
	Platform__Auth__V1__CreateRuleResponse *out = plat_new(ctx,
	    Platform__Auth__V1__CreateRuleResponse,
	    &platform__auth__v1__create_rule_response__descriptor);
	const Rule *in = req->rule;
	struct jwt_claims caller;
	char err[256], *id;
	enum plat_code code;
	struct rule r;
	int rc;

	if (in == NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "rule: required");
	r = (struct rule){
		.service = in->service,
		.method = in->method,
		.account = in->account,
		.scope = in->scope,
		.account_type = (int)in->account_type,
		.effect = (int)in->effect,
		.priority = in->priority,
		.description = in->description,
		.created_ms = plat_wall_ms(),
	};
	if (rule_check(&r, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "rule.%s", err);
	if ((rc = auth_caller(ctx, true, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	if ((id = secret_random(RULE_ID_BYTES)) == NULL)
		return plat_error(ctx, PLAT_INTERNAL, "no randomness");
	r.id = plat_printf(ctx, "r-%s", id);
	free(id);
	code = store_rule_create(A.store, &r, plat_ctx_deadline_left_ms(ctx),
	    err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	reload_after_write(ctx);
	out->rule = rule_out(ctx, &r);
	*resp = &out->base;
	return PLAT_OK;
}

static int
check_rule_id(plat_ctx *ctx, const char *field, const char *id)
{
	return auth_check_id(ctx, field, id);
}

int
auth_delete_rule(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__DeleteRuleRequest *req = (const void *)msg;
	struct jwt_claims caller;
	char err[256];
	enum plat_code code;
	int rc;

	if ((rc = check_rule_id(ctx, "id", req->id)) != PLAT_OK ||
	    (rc = auth_caller(ctx, true, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	code = store_rule_delete(A.store, req->id,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	reload_after_write(ctx);
	*resp = plat_new_message(ctx,
	    &platform__auth__v1__delete_rule_response__descriptor);
	return PLAT_OK;
}

/* A page token is "<priority> <effect> <id>" of the last rule served:
 * the next page starts after it in evaluation order, whatever changed. */
static int
parse_rule_token(plat_ctx *ctx, const char *token, struct rule *last)
{
	char buf[RULE_PATTERN_MAX + 64], *id;
	int prio, effect, used = 0;
	int rc;

	if ((rc = plat_page_token_parse(ctx, token, 'r', buf, sizeof(buf))) !=
	    PLAT_OK)
		return rc;
	if (sscanf(buf, "%d %d %n", &prio, &effect, &used) != 2 || used == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "page_token: not "
		    "a token this server gave for this call");
	id = buf + used;
	if ((rc = check_rule_id(ctx, "page_token", id)) != PLAT_OK)
		return rc;
	last->priority = prio;
	last->effect = effect;
	last->id = plat_strdup(ctx, id);
	return PLAT_OK;
}

/* Reading the rules (ListRules, WatchRules) takes the admin scope or a
 * service account: every server's guard reads them with its own
 * identity. */
static int
rules_reader(plat_ctx *ctx)
{
	struct jwt_claims caller;
	bool ok;
	int rc;

	if ((rc = auth_caller(ctx, false, &caller)) != PLAT_OK)
		return rc;
	ok = jwt_claims_has_scope(&caller, AUTH_ADMIN_SCOPE) ||
	    (caller.account_type != NULL &&
	    strcmp(caller.account_type, "service") == 0);
	jwt_claims_free(&caller);
	if (!ok)
		return plat_error(ctx, PLAT_PERMISSION_DENIED, "reading the "
		    "rules needs the scope \"%s\" or a service account",
		    AUTH_ADMIN_SCOPE);
	return PLAT_OK;
}

int
auth_list_rules(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__ListRulesRequest *req = (const void *)msg;
	Platform__Auth__V1__ListRulesResponse *out = plat_new(ctx,
	    Platform__Auth__V1__ListRulesResponse,
	    &platform__auth__v1__list_rules_response__descriptor);
	struct rule last = { 0 };
	struct rule_set *rs;
	size_t i = 0, n;
	int page = 0, rc;

	if ((rc = plat_page_size(ctx, req->page_size, LIST_PAGE_DEFAULT,
	    PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0' &&
	    (rc = parse_rule_token(ctx, req->page_token, &last)) != PLAT_OK)
		return rc;
	if ((rc = rules_reader(ctx)) != PLAT_OK)
		return rc;
	if ((rs = auth_rules()) == NULL)
		return plat_error(ctx, PLAT_UNAVAILABLE, "rules not loaded yet "
		    "(database unavailable)");
	n = rule_set_size(rs);
	if (last.id != NULL)
		while (i < n && rule_order(rule_set_at(rs, i), &last) <= 0)
			i++;
	out->rules = plat_alloc(ctx, ((size_t)page + 1) * sizeof(*out->rules));
	for (; i < n && out->n_rules < (size_t)page; i++) {
		out->rules[out->n_rules++] = rule_out(ctx,
		    rule_set_at(rs, i));
	}
	if (i < n) {
		const Rule *l = out->rules[out->n_rules - 1];

		out->next_page_token = plat_page_token(ctx, 'r',
		    plat_printf(ctx, "%" PRId32 " %d %s", l->priority,
		    (int)l->effect, l->id));
	}
	rule_set_unref(rs);
	*resp = &out->base;
	return PLAT_OK;
}

/* ---- WatchRules ---- */

int
auth_watch_rules(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	int64_t gen;
	int rc;

	(void)msg;
	if ((rc = rules_reader(ctx)) != PLAT_OK)
		return rc;
	pthread_mutex_lock(&P.mu);
	gen = P.cur != NULL ? P.cur->gen : -1;
	pthread_mutex_unlock(&P.mu);
	if (gen < 0)
		return plat_error(ctx, PLAT_UNAVAILABLE, "rules not loaded yet "
		    "(database unavailable)");
	/* From just before the current set: it is the first message. */
	return plat_feed_watch(P.feed, ctx, st, NULL, gen - 1);
}

/* ---- Verify ---- */

static int
check_name(plat_ctx *ctx, const char *field, const char *v)
{
	struct rule r = { .service = (char *)v, .method = "*",
	    .account = "*", .scope = "", .effect = RULE_ALLOW,
	    .description = "" };
	char err[256];

	if (v[0] == '\0')
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (strchr(v, '*') != NULL || rule_check(&r, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: a gRPC name "
		    "(letters, digits and ._-:/@)", field);
	return PLAT_OK;
}

static int
verify_subject(plat_ctx *ctx, const Platform__Auth__V1__VerifyRequest *req,
    struct rule_subject *who, bool *disabled)
{
	struct account *a = NULL;
	char err[256], field[32];
	enum plat_code code;
	size_t n;
	int rc;

	*disabled = false;
	if (req->account[0] == '\0') {
		for (size_t i = 0; i < req->n_scopes; i++) {
			snprintf(field, sizeof(field), "scopes[%zu]", i);
			if ((rc = auth_check_scope(ctx, field,
			    req->scopes[i])) != PLAT_OK)
				return rc;
		}
		if ((int)req->account_type < RULE_ANY_TYPE ||
		    (int)req->account_type > RULE_SERVICE)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "account_type: unknown value");
		who->scopes = (const char *const *)req->scopes;
		who->nscopes = req->n_scopes;
		who->account_type = (int)req->account_type;
		return PLAT_OK;
	}
	if ((rc = auth_check_id(ctx, "account", req->account)) != PLAT_OK)
		return rc;
	if (req->n_scopes > 0 || req->account_type != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "scopes: give an "
		    "account or scopes and account_type, not both");
	code = store_account_get(A.store, req->account,
	    plat_ctx_deadline_left_ms(ctx), &a, err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	if (a == NULL)
		return plat_error(ctx, PLAT_NOT_FOUND, "account \"%s\" not "
		    "found", req->account);
	who->account = plat_strdup(ctx, a->id);
	who->scopes = (const char *const *)auth_words(ctx, a->scopes, &n);
	who->nscopes = n;
	who->account_type = a->type;
	*disabled = a->disabled;
	account_free(a);
	return PLAT_OK;
}

int
auth_verify(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__VerifyRequest *req = (const void *)msg;
	Platform__Auth__V1__VerifyResponse *out = plat_new(ctx,
	    Platform__Auth__V1__VerifyResponse,
	    &platform__auth__v1__verify_response__descriptor);
	struct rule_subject who = { 0 };
	struct jwt_claims caller;
	const struct rule *r;
	struct rule_set *rs;
	bool allowed, disabled;
	int rc;

	if ((rc = check_name(ctx, "service", req->service)) != PLAT_OK ||
	    (rc = check_name(ctx, "method", req->method)) != PLAT_OK ||
	    (rc = auth_caller(ctx, false, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	if ((rc = verify_subject(ctx, req, &who, &disabled)) != PLAT_OK)
		return rc;
	if (disabled) {
		out->allowed = false;
		out->reason = "account is disabled";
		*resp = &out->base;
		return PLAT_OK;
	}
	if ((rs = auth_rules()) == NULL)
		return plat_error(ctx, PLAT_UNAVAILABLE, "rules not loaded yet "
		    "(database unavailable)");
	r = rule_evaluate(rs, &who, req->service, req->method, &allowed);
	out->allowed = allowed;
	if (r == NULL) {
		out->reason = "no rule applies: denied by default";
	} else {
		out->rule = rule_out(ctx, r);
		out->reason = plat_printf(ctx, "%s by rule %s", allowed ?
		    "allowed" : "denied", r->id);
	}
	rule_set_unref(rs);
	*resp = &out->base;
	return PLAT_OK;
}
