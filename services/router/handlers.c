/*
 * handlers: router-srv's gRPC methods over its memory (state.h), its
 * rules store (store.h) and the platform's change feed.
 *
 * Every input is checked before anything is read or written, so bad
 * input gets INVALID_ARGUMENT naming the field and changes nothing. A
 * rules change is answered after it committed and is applied here at
 * once; the other replicas get it through the change feed (NOTIFY, and
 * a read every second regardless). Nodes come from discovery's Watch
 * (plat_client_on_discovery). One loop, the pusher, takes the outlier
 * decisions twice a second and sends every Watch the views that changed
 * (by a hash of each view as last sent to it), so streams are written
 * from one thread, in order.
 */
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/arena.h"
#include "platform/client.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/pg.h"
#include "platform/router/v1/router.pb-c.h"
#include "platform/server.h"
#include "platform/xalloc.h"
#include "router.h"
#include "state.h"
#include "store.h"
#include "rls.h"
#include "view.h"
#include "xds.h"

#define POOL_MIN 4
#define FEED_PAGE 1000
#define PUSH_MS 500
#define LABELS_MAX 32
#define TEXT_MAX 128
#define ADDRESS_MAX 255
#define METHOD_MAX 256
#define REPORT_MAX 10000
#define COUNT_MAX 1000000000ULL      /* per entry and report */

typedef Platform__Router__V1__Label pb_label;

struct sent {
	char *service;
	uint64_t hash;
	int seen;
};

struct watcher {
	plat_stream *st;
	char *service;                   /* "": every service */
	pb_label **labels;
	size_t nlabels;
	struct sent *sent;
	size_t nsent, cap;
	int synced;
	atomic_int dead;
	struct watcher *next;
};

static struct {
	struct pg_store *store;
	struct plat_feed *feed;
	struct plat_feed_loop *pusher;
	plat_server *srv;
	pthread_mutex_t mu;              /* watchers */
	struct watcher *watchers;
	size_t nwatchers;
	atomic_int need_load;            /* the full load of rules failed */
	atomic_ullong reports, dropped;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- checks ---- */

static const char *
text_problem(const char *s, size_t max, int empty_ok)
{
	size_t len = strlen(s);

	if (len == 0 && !empty_ok)
		return "must not be empty";
	if (len > max)
		return "too long";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 127)
			return "only printable ASCII without spaces";
	return NULL;
}

static int
check_service(plat_ctx *ctx, const char *field, const char *name)
{
	const char *why = view_name_problem(name);

	if (why != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: %s", field,
		    why);
	return PLAT_OK;
}

static int
check_caller(plat_ctx *ctx, const char *caller, pb_label *const *labels,
    size_t n)
{
	const char *why;

	if ((why = text_problem(caller, TEXT_MAX, 1)) != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "caller: %s",
		    why);
	if (n > LABELS_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "labels: at most %d", LABELS_MAX);
	for (size_t i = 0; i < n; i++) {
		if ((why = text_problem(labels[i]->key, TEXT_MAX, 0)) != NULL)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "labels[%zu].key: %s", i, why);
		if ((why = text_problem(labels[i]->value, TEXT_MAX, 1)) !=
		    NULL)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "labels[%zu].value: %s", i, why);
	}
	return PLAT_OK;
}

static int
check_method(const char *m)
{
	return m[0] == '/' && strchr(m + 1, '/') != NULL &&
	    m[strlen(m) - 1] != '/' &&
	    text_problem(m, METHOD_MAX, 0) == NULL;
}

static int
check_stats(plat_ctx *ctx, size_t i, const Platform__Router__V1__MethodStats *m)
{
	const char *why;
	uint64_t errs = 0;

	if ((why = view_name_problem(m->service)) != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats[%zu].service: %s", i, why);
	if ((why = text_problem(m->address, ADDRESS_MAX, 0)) != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats[%zu].address: %s", i, why);
	if (!check_method(m->method))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats[%zu].method: a full path, \"/pkg.Service/Method\"",
		    i);
	if (m->requests > COUNT_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats[%zu].requests: at most %llu", i, COUNT_MAX);
	for (size_t j = 0; j < m->n_errors; j++) {
		if (m->errors[j]->key < 1 || m->errors[j]->key > 16)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "stats[%zu].errors: %u is not a gRPC error code "
			    "(1..16)", i, m->errors[j]->key);
		errs += m->errors[j]->value;
	}
	if (errs > m->requests)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats[%zu].errors: %" PRIu64 " errors in %" PRIu64
		    " requests", i, errs, m->requests);
	if (!isfinite(m->latency_ms_sum) || m->latency_ms_sum < 0 ||
	    !isfinite(m->latency_ms_max) || m->latency_ms_max < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats[%zu].latency_ms: must be finite and not negative",
		    i);
	return PLAT_OK;
}

/* ---- views and stats ---- */

static int
router_select(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Router__V1__SelectRequest *req = (const void *)m;
	Platform__Router__V1__SelectResponse resp =
	    PLATFORM__ROUTER__V1__SELECT_RESPONSE__INIT;
	struct arena a;
	int rc;

	if ((rc = check_service(ctx, "service", req->service)) != PLAT_OK ||
	    (rc = check_caller(ctx, req->caller, req->labels,
	    req->n_labels)) != PLAT_OK)
		return rc;
	arena_init(&a);
	resp.view = state_view(&a, req->service, req->labels, req->n_labels);
	if (resp.view == NULL)
		rc = plat_error(ctx, PLAT_NOT_FOUND,
		    "service %s has no live node", req->service);
	else if (plat_respond_now(ctx, &resp.base) != 0)
		rc = plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "the view of %s is over the message size limit",
		    req->service);
	arena_reset(&a);
	*out = NULL;
	return rc;
}

static int
router_report(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Router__V1__ReportRequest *req = (const void *)m;
	const char *why;
	int rc;

	if ((why = text_problem(req->client, TEXT_MAX, 1)) != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "client: %s",
		    why);
	if (req->n_stats > REPORT_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "stats: at most %d entries in one report", REPORT_MAX);
	for (size_t i = 0; i < req->n_stats; i++)
		if ((rc = check_stats(ctx, i, req->stats[i])) != PLAT_OK)
			return rc;
	atomic_fetch_add(&R.reports, 1);
	atomic_fetch_add(&R.dropped, state_report(req, plat_now_ms()));
	*out = (ProtobufCMessage *)plat_new(ctx,
	    Platform__Router__V1__ReportResponse,
	    &platform__router__v1__report_response__descriptor);
	return PLAT_OK;
}

static int
router_stats(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Router__V1__StatsRequest *req = (const void *)m;
	Platform__Router__V1__StatsResponse *resp;
	struct arena a;
	int rc;

	if ((rc = check_service(ctx, "service", req->service)) != PLAT_OK)
		return rc;
	arena_init(&a);
	resp = state_stats(&a, req->service, plat_now_ms());
	if (resp == NULL)
		rc = plat_error(ctx, PLAT_NOT_FOUND,
		    "nothing is known of service %s", req->service);
	else if (plat_respond_now(ctx, &resp->base) != 0)
		rc = plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "the stats of %s are over the message size limit",
		    req->service);
	else
		rc = PLAT_OK;
	arena_reset(&a);
	*out = NULL;
	return rc;
}

/* ---- rules ---- */

static void
apply_row(const struct rules_row *row)
{
	state_rules(row->service, row->body, row->len, row->version);
}

static int
router_get_rules(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Router__V1__GetRulesRequest *req = (const void *)m;
	Platform__Router__V1__GetRulesResponse resp =
	    PLATFORM__ROUTER__V1__GET_RULES_RESPONSE__INIT;
	struct arena a;
	int rc;

	if ((rc = check_service(ctx, "service", req->service)) != PLAT_OK)
		return rc;
	arena_init(&a);
	resp.rules = state_rules_get(&a, req->service);
	if (resp.rules == NULL)
		rc = plat_error(ctx, PLAT_NOT_FOUND,
		    "service %s has no rules", req->service);
	else if (plat_respond_now(ctx, &resp.base) != 0)
		rc = plat_error(ctx, PLAT_INTERNAL, "rules too large");
	arena_reset(&a);
	*out = NULL;
	return rc;
}

static int
router_set_rules(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Router__V1__SetRulesRequest *req = (const void *)m;
	Platform__Router__V1__SetRulesResponse *resp;
	Platform__Router__V1__Rules copy;
	struct rules_row *row;
	const char *why;
	char buf[256], err[256];
	unsigned char *body;
	size_t len;
	enum plat_code code;

	if ((why = view_rules_problem(req->rules, buf, sizeof(buf))) != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", why);
	if (req->expected_version < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "expected_version: must not be negative");
	/* version is output only: the store's, not the caller's. */
	copy = *req->rules;
	copy.version = 0;
	len = protobuf_c_message_get_packed_size(&copy.base);
	body = plat_alloc(ctx, len + 1);
	protobuf_c_message_pack(&copy.base, body);
	code = store_set(R.store, copy.service, body, len,
	    req->expected_version, plat_ctx_deadline_left_ms(ctx), &row, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	apply_row(row);
	resp = plat_new(ctx, Platform__Router__V1__SetRulesResponse,
	    &platform__router__v1__set_rules_response__descriptor);
	/* The request's rules with the stored version (the request
	 * outlives the answer's packing). */
	resp->rules = plat_alloc(ctx, sizeof(*resp->rules));
	*resp->rules = copy;
	resp->rules->version = row->version;
	rules_row_unref(row);
	plat_feed_loop_kick(R.pusher);
	*out = &resp->base;
	return PLAT_OK;
}

static int
router_delete_rules(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Router__V1__DeleteRulesRequest *req = (const void *)m;
	struct rules_row *row;
	char err[256];
	enum plat_code code;
	int rc;

	if ((rc = check_service(ctx, "service", req->service)) != PLAT_OK)
		return rc;
	if (req->expected_version < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "expected_version: must not be negative");
	code = store_delete(R.store, req->service, req->expected_version,
	    plat_ctx_deadline_left_ms(ctx), &row, err, sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	apply_row(row);
	rules_row_unref(row);
	plat_feed_loop_kick(R.pusher);
	*out = (ProtobufCMessage *)plat_new(ctx,
	    Platform__Router__V1__DeleteRulesResponse,
	    &platform__router__v1__delete_rules_response__descriptor);
	return PLAT_OK;
}

static int
router_list_rules(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	Platform__Router__V1__ListRulesResponse resp =
	    PLATFORM__ROUTER__V1__LIST_RULES_RESPONSE__INIT;
	struct arena a;
	char **names;
	size_t n;
	int rc = PLAT_OK;

	(void)m;
	arena_init(&a);
	names = state_services(&a, &n);
	resp.rules = arena_calloc(&a, (n + 1) * sizeof(*resp.rules));
	for (size_t i = 0; i < n; i++)
		if ((resp.rules[resp.n_rules] = state_rules_get(&a,
		    names[i])) != NULL)
			resp.n_rules++;
	if (plat_respond_now(ctx, &resp.base) != 0)
		rc = plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "the rules are over the message size limit");
	arena_reset(&a);
	*out = NULL;
	return rc;
}

/* ---- Watch ---- */

static void
watcher_free(struct watcher *w)
{
	for (size_t i = 0; i < w->nlabels; i++) {
		free(w->labels[i]->key);
		free(w->labels[i]->value);
		free(w->labels[i]);
	}
	free(w->labels);
	for (size_t i = 0; i < w->nsent; i++)
		free(w->sent[i].service);
	free(w->sent);
	free(w->service);
	free(w);
}

/* The runtime calls this once the stream ended; the pusher frees it. */
static void
watch_closed(plat_stream *st, void *arg)
{
	struct watcher *w = arg;

	(void)st;
	atomic_store(&w->dead, 1);
}

static int
router_watch(plat_ctx *ctx, const ProtobufCMessage *m, plat_stream *st)
{
	const Platform__Router__V1__WatchRequest *req = (const void *)m;
	struct watcher *w;
	int rc;

	if ((req->service[0] != '\0' &&
	    (rc = check_service(ctx, "service", req->service)) != PLAT_OK) ||
	    (rc = check_caller(ctx, req->caller, req->labels,
	    req->n_labels)) != PLAT_OK)
		return rc;
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->service = xstrdup(req->service);
	w->labels = xcalloc(req->n_labels + 1, sizeof(*w->labels));
	for (size_t i = 0; i < req->n_labels; i++) {
		w->labels[i] = xcalloc(1, sizeof(*w->labels[i]));
		platform__router__v1__label__init(w->labels[i]);
		w->labels[i]->key = xstrdup(req->labels[i]->key);
		w->labels[i]->value = xstrdup(req->labels[i]->value);
	}
	w->nlabels = req->n_labels;
	atomic_init(&w->dead, 0);
	plat_stream_ref(st);
	plat_stream_on_close(st, watch_closed, w);
	pthread_mutex_lock(&R.mu);
	w->next = R.watchers;
	R.watchers = w;
	R.nwatchers++;
	pthread_mutex_unlock(&R.mu);
	/* The pusher sends the first views at once. */
	plat_feed_loop_kick(R.pusher);
	return PLAT_STREAM_OPEN;
}

static uint64_t
hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

static struct sent *
sent_get(struct watcher *w, const char *service)
{
	for (size_t i = 0; i < w->nsent; i++)
		if (strcmp(w->sent[i].service, service) == 0)
			return &w->sent[i];
	if (w->nsent == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 8;
		w->sent = xrealloc(w->sent, w->cap * sizeof(*w->sent));
	}
	w->sent[w->nsent] = (struct sent){ xstrdup(service), 0, 0 };
	return &w->sent[w->nsent++];
}

/* Sends w what changed since its last push; -1 when its stream ended. */
static int
watcher_push(struct watcher *w, struct arena *a, char **names, size_t n)
{
	Platform__Router__V1__WatchResponse ev;
	Platform__Router__V1__ServiceView *v;
	struct sent *s;
	uint8_t *buf;
	size_t len;
	uint64_t h;

	for (size_t i = 0; i < w->nsent; i++)
		w->sent[i].seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (w->service[0] != '\0' && strcmp(w->service, names[i]) != 0)
			continue;
		if ((v = state_view(a, names[i], w->labels, w->nlabels)) ==
		    NULL)
			continue;
		len = platform__router__v1__service_view__get_packed_size(v);
		buf = arena_alloc(a, len + 1);
		platform__router__v1__service_view__pack(v, buf);
		h = hash_bytes(buf, len);
		s = sent_get(w, names[i]);
		s->seen = 1;
		if (s->hash == h)
			continue;
		s->hash = h;
		platform__router__v1__watch_response__init(&ev);
		ev.view = v;
		if (plat_stream_send(w->st, &ev.base) != 0)
			return -1;
	}
	/* Services gone since the last push. */
	for (size_t i = 0; i < w->nsent;) {
		if (w->sent[i].seen) {
			i++;
			continue;
		}
		platform__router__v1__watch_response__init(&ev);
		ev.removed = w->sent[i].service;
		if (plat_stream_send(w->st, &ev.base) != 0)
			return -1;
		free(w->sent[i].service);
		w->sent[i] = w->sent[--w->nsent];
	}
	if (!w->synced) {
		platform__router__v1__watch_response__init(&ev);
		ev.synced = 1;
		if (plat_stream_send(w->st, &ev.base) != 0)
			return -1;
		w->synced = 1;
	}
	return 0;
}

static void load_rules(void);

static void
push(void *arg)
{
	struct watcher **pp, *w, *dead = NULL;
	struct arena a;
	char **names;
	size_t n;

	(void)arg;
	if (atomic_load(&R.need_load))
		load_rules();
	state_decide(plat_now_ms());
	arena_init(&a);
	names = state_services(&a, &n);
	pthread_mutex_lock(&R.mu);
	for (pp = &R.watchers; (w = *pp) != NULL;) {
		if (!atomic_load(&w->dead))
			(void)watcher_push(w, &a, names, n);
		/* A failed send ended the stream: its close callback has
		 * run (or will) and marked it. */
		if (atomic_load(&w->dead)) {
			*pp = w->next;
			R.nwatchers--;
			w->next = dead;
			dead = w;
			continue;
		}
		pp = &w->next;
	}
	pthread_mutex_unlock(&R.mu);
	arena_reset(&a);
	xds_push();
	while ((w = dead) != NULL) {
		dead = w->next;
		plat_stream_unref(w->st);
		watcher_free(w);
	}
}

/* ---- discovery and the change feed ---- */

static void
on_discovery(void *arg, const ProtobufCMessage *ev)
{
	(void)arg;
	state_discovery(ev);
	if (R.pusher != NULL)
		plat_feed_loop_kick(R.pusher);
}

static void
load_rules(void)
{
	struct rules_row **rows;
	char err[256];
	size_t n;

	if (store_list(R.store, 5000, &rows, &n, err, sizeof(err)) !=
	    PLAT_OK) {
		atomic_store(&R.need_load, 1);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		apply_row(rows[i]);
		rules_row_unref(rows[i]);
	}
	free(rows);
	atomic_store(&R.need_load, 0);
}

static enum plat_code
feed_head(void *arg, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	(void)arg;
	return store_head(R.store, timeout_ms, rev, err, errlen);
}

static enum plat_code
feed_read(void *arg, const void *watch, int64_t after, int64_t upto,
    int limit, int64_t timeout_ms, struct plat_feed_page *out, char *err,
    size_t errlen)
{
	struct rules_row **rows;
	enum plat_code code;
	size_t n;

	(void)arg;
	(void)watch;
	code = store_changes(R.store, after, upto, limit, timeout_ms, &rows,
	    &n, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < n; i++)
		plat_feed_page_push(out, rows[i]);
	free(rows);
	return PLAT_OK;
}

static void
feed_ref(void *row)
{
	rules_row_ref(row);
}

static void
feed_unref(void *row)
{
	rules_row_unref(row);
}

/* The feed has no watchers of its own: Watch streams views, which the
 * pusher computes. */
static bool
feed_match(const void *watch, const void *row)
{
	(void)watch;
	(void)row;
	return false;
}

static int
feed_send(plat_stream *st, const void *row)
{
	(void)st;
	(void)row;
	return 0;
}

static void
feed_watch_free(void *watch)
{
	(void)watch;
}

/* Where the feed starts, every stored rule is loaded: the rows after it
 * come through read_rows (a row read twice is applied twice, which is
 * harmless: state_rules keeps the newest version). */
static void
feed_started(void *arg, int64_t rev)
{
	(void)arg;
	(void)rev;
	load_rules();
}

static void
feed_read_rows(void *arg, void *const *rows, size_t n)
{
	(void)arg;
	for (size_t i = 0; i < n; i++)
		apply_row(rows[i]);
	if (n > 0 && R.pusher != NULL)
		plat_feed_loop_kick(R.pusher);
}

static const struct plat_feed_ops router_feed_ops = {
	.name = "router",
	.channel = STORE_CHANNEL,
	.health_service = "platform.router.v1.Router",
	.page = FEED_PAGE,
	.start_wait_ms = 5000,
	.head = feed_head,
	.read = feed_read,
	.revision_at = offsetof(struct rules_row, revision),
	.size_at = offsetof(struct rules_row, size),
	.ref = feed_ref,
	.unref = feed_unref,
	.match = feed_match,
	.send = feed_send,
	.watch_free = feed_watch_free,
	.started = feed_started,
	.read_rows = feed_read_rows,
};

/* ---- the service ---- */

static double
gauge_watchers(void *arg)
{
	size_t n;

	(void)arg;
	pthread_mutex_lock(&R.mu);
	n = R.nwatchers;
	pthread_mutex_unlock(&R.mu);
	return (double)n;
}

static double
counter_reports(void *arg)
{
	(void)arg;
	return (double)atomic_load(&R.reports);
}

static double
counter_dropped(void *arg)
{
	(void)arg;
	return (double)atomic_load(&R.dropped);
}

static int
router_init(plat_server *srv, const struct plat_settings *s)
{
	char err[512];
	enum plat_code code;
	int pool;

	R.srv = srv;
	state_init();
	atomic_store(&R.need_load, 1);
	pool = s->workers * 2 < POOL_MIN ? POOL_MIN : s->workers * 2;
	if ((R.store = store_new(s->database, pool)) == NULL)
		return -1;
	code = pg_store_migrate(R.store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("router: database unavailable at start; rules "
		    "answer UNAVAILABLE until it is reachable", "error", err);
	} else if (code != PLAT_OK) {
		log_error("router: cannot bring the database schema up to "
		    "date", "error", err);
		fprintf(stderr, "router-srv: %s\n", err);
		goto fail;
	}
	R.pusher = plat_feed_loop_start(PUSH_MS, push, NULL);
	R.feed = plat_feed_start(&router_feed_ops, NULL, s->database, srv,
	    R.store);
	if (R.feed == NULL) {
		log_error("router: cannot start the change feed");
		goto fail;
	}
	if (plat_server_client(srv) != NULL && s->discovery != NULL)
		plat_client_on_discovery(plat_server_client(srv),
		    on_discovery, NULL);
	else
		log_warn("router: no --discovery: no node to route to");
	xds_init(srv);
	rls_init(srv);
	metrics_gauge_fn(plat_server_metrics(srv), "router_watchers",
	    "Open Watch streams.", gauge_watchers, NULL);
	metrics_counter_fn(plat_server_metrics(srv), "router_reports_total",
	    "Reports received.", counter_reports, NULL);
	metrics_counter_fn(plat_server_metrics(srv),
	    "router_report_entries_dropped_total",
	    "Report entries dropped for want of room.", counter_dropped,
	    NULL);
	return 0;
fail:
	plat_feed_loop_stop(R.pusher);
	R.pusher = NULL;
	pg_store_free(R.store);
	R.store = NULL;
	return -1;
}

static void
router_fini(plat_server *srv)
{
	struct watcher *w;

	(void)srv;
	plat_feed_loop_stop(R.pusher);
	R.pusher = NULL;
	plat_feed_free(R.feed);
	R.feed = NULL;
	/* Every stream has ended by now. */
	while ((w = R.watchers) != NULL) {
		R.watchers = w->next;
		plat_stream_unref(w->st);
		watcher_free(w);
	}
	R.nwatchers = 0;
	xds_fini();
	rls_fini();
	pg_store_free(R.store);
	R.store = NULL;
	state_free();
}

#define ROUTER_PATH "/platform.router.v1.Router/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(ROUTER_PATH, name, platform__router__v1, type, fn, idem)

static const struct plat_method router_methods[] = {
	UNARY("Select", router_select, select, 1),
	{
		.path = ROUTER_PATH "Watch",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__router__v1__watch_request__descriptor,
		.response = &platform__router__v1__watch_response__descriptor,
		.stream = router_watch,
	},
	UNARY("Report", router_report, report, 0),
	UNARY("Stats", router_stats, stats, 1),
	UNARY("GetRules", router_get_rules, get_rules, 1),
	UNARY("SetRules", router_set_rules, set_rules, 0),
	UNARY("DeleteRules", router_delete_rules, delete_rules, 0),
	UNARY("ListRules", router_list_rules, list_rules, 1),
	XDS_ADS_METHOD,
	RLS_METHOD,
};

const struct plat_service router_service = {
	.name = "router",
	.grpc_service = "platform.router.v1.Router",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7078",
	.methods = router_methods,
	.nmethods = PLAT_COUNT(router_methods),
	.check_settings = pg_check_database,
	.init = router_init,
	.fini = router_fini,
	.self_router = 1,
};
