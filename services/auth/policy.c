/*
 * policy: the rule set in memory, kept current by the store's change
 * notifications, and the methods over it: CreateRule, DeleteRule,
 * ListRules, WatchRules and Verify.
 *
 * The set is reloaded whole from PostgreSQL after every change (rule sets
 * are small), right after a write on this replica and on the
 * 'platform_auth_rules' notification on every other one. Each watcher
 * gets the whole set when it starts and again after every reload.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/paging.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "secret.h"

#define LIST_PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define RULE_ID_BYTES 12

typedef Platform__Auth__V1__Rule Rule;

struct watcher {
	struct watcher *next;
	plat_stream *st;
};

/* mu guards the set and the watcher list; send_mu orders the sends, so a
 * watcher sees the sets in the order they were loaded. send_mu is taken
 * first; a stream's close callback takes only mu. */
static struct {
	pthread_mutex_t mu;
	pthread_mutex_t send_mu;
	struct rule_set *set;
	struct watcher *watchers;
	struct pg_listener *listener;
} P = { .mu = PTHREAD_MUTEX_INITIALIZER,
    .send_mu = PTHREAD_MUTEX_INITIALIZER };

struct rule_set *
auth_rules(void)
{
	struct rule_set *rs;

	pthread_mutex_lock(&P.mu);
	rs = P.set != NULL ? rule_set_ref(P.set) : NULL;
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

/* Sends the set to one watcher; send_mu held. */
static void
watcher_send(plat_stream *st, const struct rule_set *rs)
{
	Platform__Auth__V1__WatchRulesResponse m =
	    PLATFORM__AUTH__V1__WATCH_RULES_RESPONSE__INIT;
	Rule *storage;

	m.rules = rules_wire(rs, &storage);
	m.n_rules = rule_set_size(rs);
	(void)plat_stream_send(st, &m.base);
	free(m.rules);
	free(storage);
}

/* ---- reloads ---- */

enum plat_code
auth_rules_reload(char *err, size_t errlen)
{
	struct rule **v;
	struct rule_set *rs, *old;
	plat_stream **to = NULL;
	enum plat_code code;
	size_t n, nto = 0;

	code = store_rules_all(A.store, INT64_MAX, &v, &n, err, errlen);
	if (code != PLAT_OK)
		return code;
	rs = rule_set_new(v, n);
	pthread_mutex_lock(&P.send_mu);
	pthread_mutex_lock(&P.mu);
	old = P.set;
	P.set = rule_set_ref(rs);
	for (struct watcher *w = P.watchers; w != NULL; w = w->next)
		nto++;
	to = xcalloc(nto + 1, sizeof(*to));
	nto = 0;
	for (struct watcher *w = P.watchers; w != NULL; w = w->next) {
		plat_stream_ref(w->st);
		to[nto++] = w->st;
	}
	pthread_mutex_unlock(&P.mu);
	for (size_t i = 0; i < nto; i++)
		watcher_send(to[i], rs);
	pthread_mutex_unlock(&P.send_mu);
	for (size_t i = 0; i < nto; i++)
		plat_stream_unref(to[i]);
	free(to);
	rule_set_unref(old);
	rule_set_unref(rs);
	return PLAT_OK;
}

static void
on_notify(const char *payload, void *arg)
{
	char err[256];

	(void)payload;
	(void)arg;
	if (auth_rules_reload(err, sizeof(err)) != PLAT_OK)
		log_warn("auth: cannot reload the rules", "error", err);
}

static void
on_reconnect(void *arg)
{
	on_notify("", arg);
}

int
auth_rules_start(const char *conninfo)
{
	P.listener = pg_listener_start(conninfo, STORE_RULES_CHANNEL,
	    on_notify, on_reconnect, NULL);
	return P.listener != NULL ? 0 : -1;
}

void
auth_rules_fini(void)
{
	pg_listener_stop(P.listener);
	P.listener = NULL;
	pthread_mutex_lock(&P.mu);
	rule_set_unref(P.set);
	P.set = NULL;
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

static void
watcher_closed(plat_stream *st, void *arg)
{
	struct watcher **pp, *w = NULL;

	(void)arg;
	pthread_mutex_lock(&P.mu);
	for (pp = &P.watchers; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->st == st) {
			w = *pp;
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&P.mu);
	free(w);
	plat_stream_unref(st);
}

int
auth_watch_rules(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	struct rule_set *rs;
	struct watcher *w;
	int rc;

	(void)msg;
	if ((rc = rules_reader(ctx)) != PLAT_OK)
		return rc;
	pthread_mutex_lock(&P.send_mu);
	pthread_mutex_lock(&P.mu);
	if ((rs = P.set) == NULL) {
		pthread_mutex_unlock(&P.mu);
		pthread_mutex_unlock(&P.send_mu);
		return plat_error(ctx, PLAT_UNAVAILABLE, "rules not loaded yet "
		    "(database unavailable)");
	}
	rule_set_ref(rs);
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	plat_stream_ref(st);
	w->next = P.watchers;
	P.watchers = w;
	plat_stream_on_close(st, watcher_closed, NULL);
	pthread_mutex_unlock(&P.mu);
	watcher_send(st, rs);
	pthread_mutex_unlock(&P.send_mu);
	rule_set_unref(rs);
	return PLAT_STREAM_OPEN;
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
