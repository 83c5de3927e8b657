/*
 * handlers: trace-srv's methods: OTLP Export (ingest.c) and the
 * platform.trace.v1.Trace queries over the store (store.h), plus the
 * maintenance loop that makes partitions ahead and drops those past the
 * retention.
 *
 * Every input is checked before anything is read, so bad input gets
 * INVALID_ARGUMENT naming the field.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "forward.h"
#include "ingest.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "platform/clock.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/paging.h"
#include "platform/pg.h"
#include "platform/server.h"
#include "platform/trace/v1/trace.pb-c.h"
#include "platform/xalloc.h"
#include "search.h"
#include "store.h"
#include "trace.h"

#define POOL_MIN 4
#define FORWARD_FLUSH_MS 2000
#define MAINTAIN_MS 60000
#define TRACE_SPANS_MAX 10000
#define PAGE_DEFAULT 20
#define PAGE_MAX 1000
#define NAME_MAX_LEN 1024
#define SEARCH_ATTRS_MAX 16
#define HOUR_MS 3600000LL
#define RETENTION_DEFAULT 7
#define RETENTION_MAX 3650

typedef Platform__Trace__V1__Span Span;

static struct {
	struct pg_store *store;
	struct plat_feed_loop *maintainer;
	int keep_days;
	int64_t max_trace_spans;
	struct ingest_tail tail;
	uint64_t dropped_partitions;
} S;

#define MAX_TRACE_SPANS_DEFAULT 10000
#define MAX_TRACE_SPANS_MAX 1000000

#define SLOWER_DEFAULT 1000
#define WINDOW_DEFAULT 5000
#define TAIL_SPANS_DEFAULT 200000

static char *retention_opt, *max_trace_spans_opt, *slower_opt, *window_opt,
    *tail_spans_opt, *forward_opt;

static const struct settings_option trace_options[] = {
	{ "--retention", "PLATFORM_RETENTION",
	  "days of spans kept, 1..3650, as N or Nd (default 7d): older "
	  "daily partitions are dropped", &retention_opt },
	{ "--max-trace-spans", "PLATFORM_MAX_TRACE_SPANS",
	  "the most spans kept of one trace, 1..1000000 (default 10000): "
	  "more are refused and counted", &max_trace_spans_opt },
	{ "--keep-slower-than", "PLATFORM_KEEP_SLOWER_THAN",
	  "ms: an unsampled trace with a span this slow is kept whole, "
	  "0..86400000, 0 for none (default 1000)", &slower_opt },
	{ "--tail-window-ms", "PLATFORM_TAIL_WINDOW_MS",
	  "how long an unsampled trace waits for its decision, from its "
	  "first span, 100..600000 (default 5000)", &window_opt },
	{ "--tail-buffer-spans", "PLATFORM_TAIL_BUFFER_SPANS",
	  "the most unsampled spans held, 100..10000000 (default 200000)",
	  &tail_spans_opt },
	{ "--forward", "PLATFORM_FORWARD",
	  "host:port of an OTLP/gRPC endpoint (Jaeger, Tempo, a Collector) "
	  "that also gets every span kept, plaintext", &forward_opt },
};

/* An integer setting in lo..hi (or the default when unset): 0, or -1
 * with err naming the flag. */
static int
int_setting(const char *flag, const char *v, long lo, long hi, long dflt,
    const char *suffix, long *out, char *err, size_t errlen)
{
	char *end;
	long n;

	*out = dflt;
	if (v == NULL)
		return 0;
	n = strtol(v, &end, 10);
	if (end != v && suffix != NULL && strcmp(end, suffix) == 0)
		end += strlen(suffix);
	if (end == v || *end != '\0' || n < lo || n > hi) {
		snprintf(err, errlen, "%s: must be %ld..%ld, not '%s'", flag,
		    lo, hi, v);
		return -1;
	}
	*out = n;
	return 0;
}

static int
trace_check_settings(const struct plat_settings *s, char *err,
    size_t errlen)
{
	long keep, max_spans, slower, window, tail_spans;

	if (pg_check_database(s, err, errlen) != 0 ||
	    int_setting("--retention", retention_opt, 1, RETENTION_MAX,
	    RETENTION_DEFAULT, "d", &keep, err, errlen) != 0 ||
	    int_setting("--max-trace-spans", max_trace_spans_opt, 1,
	    MAX_TRACE_SPANS_MAX, MAX_TRACE_SPANS_DEFAULT, NULL, &max_spans,
	    err, errlen) != 0 ||
	    int_setting("--keep-slower-than", slower_opt, 0, 86400000,
	    SLOWER_DEFAULT, NULL, &slower, err, errlen) != 0 ||
	    int_setting("--tail-window-ms", window_opt, 100, 600000,
	    WINDOW_DEFAULT, NULL, &window, err, errlen) != 0 ||
	    int_setting("--tail-buffer-spans", tail_spans_opt, 100, 10000000,
	    TAIL_SPANS_DEFAULT, NULL, &tail_spans, err, errlen) != 0)
		return -1;
	S.tail = (struct ingest_tail){ window, slower, (size_t)tail_spans };
	if (forward_opt != NULL && forward_opt[0] != '\0' &&
	    settings_check_address(forward_opt) != 0) {
		snprintf(err, errlen, "--forward: must be host:port, not '%s'",
		    forward_opt);
		return -1;
	}
	S.keep_days = (int)keep;
	S.max_trace_spans = max_spans;
	return 0;
}

static int
store_error(plat_ctx *ctx, enum plat_code code, const char *err)
{
	return plat_error(ctx, code, "%s", err);
}

static int64_t
num(PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static char *
text(plat_ctx *ctx, PGresult *res, int row, int col)
{
	return plat_strdup(ctx, PQgetvalue(res, row, col));
}

/* A window in Unix ms: 0 for end is now, 0 for start an hour before
 * end. */
static int
check_window(plat_ctx *ctx, int64_t *start, int64_t *end)
{
	if (*start < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "start_unix_ms: must not be negative");
	if (*end < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "end_unix_ms: must not be negative");
	if (*end == 0)
		*end = plat_wall_ms() + 1;
	if (*start == 0)
		*start = *end > HOUR_MS ? *end - HOUR_MS : 0;
	if (*start >= *end)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "start_unix_ms: must be before end_unix_ms");
	return PLAT_OK;
}

static int
check_name(plat_ctx *ctx, const char *field, const char *s, bool required)
{
	if (required && (s == NULL || s[0] == '\0'))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (s != NULL && strlen(s) > NAME_MAX_LEN)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "%s: longer than %d bytes", field, NAME_MAX_LEN);
	return PLAT_OK;
}

/* ---- GetTrace ---- */

static void
span_attrs(plat_ctx *ctx, Span *sp, const char *json)
{
	json_t *o = json_loads(json, 0, NULL);
	const char *k;
	json_t *v;
	size_t i = 0;

	if (!json_is_object(o)) {
		json_decref(o);
		return;
	}
	sp->attributes = plat_alloc(ctx, json_object_size(o) *
	    sizeof(*sp->attributes) + 1);
	json_object_foreach(o, k, v) {
		Platform__Trace__V1__Span__AttributesEntry *e =
		    plat_alloc(ctx, sizeof(*e));

		platform__trace__v1__span__attributes_entry__init(e);
		e->key = plat_strdup(ctx, k);
		e->value = plat_strdup(ctx, json_is_string(v) ?
		    json_string_value(v) : "");
		sp->attributes[i++] = e;
	}
	sp->n_attributes = i;
	json_decref(o);
}

static int
trace_get(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Trace__V1__GetTraceRequest *req = (const void *)m;
	Platform__Trace__V1__GetTraceResponse *resp;
	char id[33], err[256];
	enum plat_code code;
	PGresult *res;
	int n;

	if (search_hex_id(req->trace_id, 32, id) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "trace_id: must "
		    "be 32 hex digits, not all zero");
	code = store_get_trace(S.store, id, TRACE_SPANS_MAX + 1,
	    plat_ctx_deadline_left_ms(ctx), &res, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	if ((n = PQntuples(res)) == 0) {
		PQclear(res);
		return plat_error(ctx, PLAT_NOT_FOUND, "trace %s: not found",
		    id);
	}
	resp = plat_new(ctx, Platform__Trace__V1__GetTraceResponse,
	    &platform__trace__v1__get_trace_response__descriptor);
	if (n > TRACE_SPANS_MAX) {
		n = TRACE_SPANS_MAX;
		resp->truncated = true;
	}
	resp->spans = plat_alloc(ctx, (size_t)n * sizeof(*resp->spans));
	for (int i = 0; i < n; i++) {
		Span *sp = plat_new(ctx, Span,
		    &platform__trace__v1__span__descriptor);

		sp->trace_id = plat_strdup(ctx, id);
		sp->span_id = text(ctx, res, i, 0);
		sp->parent_span_id = text(ctx, res, i, 1);
		sp->service = text(ctx, res, i, 2);
		sp->node = text(ctx, res, i, 3);
		sp->name = text(ctx, res, i, 4);
		sp->kind = (Platform__Trace__V1__SpanKind)num(res, i, 5);
		sp->start_unix_nano = num(res, i, 6);
		sp->duration_ns = num(res, i, 7);
		sp->error = PQgetvalue(res, i, 8)[0] == 't';
		sp->status_message = text(ctx, res, i, 9);
		sp->trace_state = text(ctx, res, i, 10);
		span_attrs(ctx, sp, PQgetvalue(res, i, 11));
		resp->spans[i] = sp;
	}
	resp->n_spans = (size_t)n;
	PQclear(res);
	*out = &resp->base;
	return PLAT_OK;
}

/* ---- Search ---- */

static int
search_check(plat_ctx *ctx, const Platform__Trace__V1__SearchRequest *req,
    struct search_query *q, int *page)
{
	char key[128];
	int rc;

	memset(q, 0, sizeof(*q));
	if ((rc = plat_page_size(ctx, req->page_size, PAGE_DEFAULT, PAGE_MAX,
	    page)) != PLAT_OK)
		return rc;
	if ((rc = check_name(ctx, "service", req->service, false)) != PLAT_OK ||
	    (rc = check_name(ctx, "operation", req->operation, false)) !=
	    PLAT_OK)
		return rc;
	if (req->min_duration_us < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "min_duration_us: must not be negative");
	if (req->max_duration_us < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "max_duration_us: must not be negative");
	if (req->max_duration_us > 0 &&
	    req->min_duration_us > req->max_duration_us)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "min_duration_us: above max_duration_us");
	if (req->min_duration_us > INT64_MAX / 1000 ||
	    req->max_duration_us > INT64_MAX / 1000)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "max_duration_us: out of range");
	if (req->n_attributes > SEARCH_ATTRS_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "attributes: at most %d", SEARCH_ATTRS_MAX);
	q->attr_keys = plat_alloc(ctx, (req->n_attributes + 1) *
	    sizeof(char *));
	q->attr_values = plat_alloc(ctx, (req->n_attributes + 1) *
	    sizeof(char *));
	for (size_t i = 0; i < req->n_attributes; i++) {
		const char *k = req->attributes[i]->key;

		if (k == NULL || k[0] == '\0')
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "attributes: a key is empty");
		if ((rc = check_name(ctx, "attributes", k, true)) != PLAT_OK)
			return rc;
		((const char **)q->attr_keys)[i] = k;
		((const char **)q->attr_values)[i] =
		    req->attributes[i]->value != NULL ?
		    req->attributes[i]->value : "";
	}
	q->nattrs = req->n_attributes;
	q->start_ms = req->start_unix_ms;
	q->end_ms = req->end_unix_ms;
	if ((rc = check_window(ctx, &q->start_ms, &q->end_ms)) != PLAT_OK)
		return rc;
	if (req->page_token != NULL && req->page_token[0] != '\0') {
		if ((rc = plat_page_token_parse(ctx, req->page_token, 's', key,
		    sizeof(key))) != PLAT_OK)
			return rc;
		if (search_key_parse(key, &q->after_t, q->after_trace) != 0)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "page_token: not one this call gave");
		q->has_after = true;
	}
	q->service = req->service;
	q->operation = req->operation;
	q->min_duration_ns = req->min_duration_us * 1000;
	q->max_duration_ns = req->max_duration_us * 1000;
	q->errors_only = req->errors_only;
	q->limit = *page + 1;
	return PLAT_OK;
}

static void
summary_fill(plat_ctx *ctx, Platform__Trace__V1__TraceSummary *t,
    PGresult *res, int row)
{
	json_t *a;
	size_t i;
	json_t *v;

	t->span_count = (int32_t)num(res, row, 1);
	t->error_count = (int32_t)num(res, row, 2);
	t->start_unix_nano = num(res, row, 3);
	t->duration_ns = num(res, row, 4) - t->start_unix_nano;
	t->root_service = text(ctx, res, row, 5);
	t->root_name = text(ctx, res, row, 6);
	a = json_loads(PQgetvalue(res, row, 7), 0, NULL);
	if (json_is_array(a)) {
		t->services = plat_alloc(ctx, json_array_size(a) *
		    sizeof(char *) + 1);
		json_array_foreach(a, i, v)
			t->services[t->n_services++] = plat_strdup(ctx,
			    json_is_string(v) ? json_string_value(v) : "");
	}
	json_decref(a);
}

static int
trace_search(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Trace__V1__SearchRequest *req = (const void *)m;
	Platform__Trace__V1__SearchResponse *resp;
	struct search_query q;
	struct pg_array ids;
	PGresult *res, *sum;
	char err[256], key[96];
	enum plat_code code;
	int page, rc, n;

	if ((rc = search_check(ctx, req, &q, &page)) != PLAT_OK)
		return rc;
	code = store_search(S.store, &q, plat_ctx_deadline_left_ms(ctx), &res,
	    err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp = plat_new(ctx, Platform__Trace__V1__SearchResponse,
	    &platform__trace__v1__search_response__descriptor);
	n = PQntuples(res);
	if (n > page) {
		n = page;
		search_key_format(num(res, n - 1, 1), PQgetvalue(res, n - 1, 0),
		    key, sizeof(key));
		resp->next_page_token = plat_page_token(ctx, 's', key);
	}
	if (n == 0) {
		PQclear(res);
		*out = &resp->base;
		return PLAT_OK;
	}
	pg_array_init(&ids);
	resp->traces = plat_alloc(ctx, (size_t)n * sizeof(*resp->traces));
	for (int i = 0; i < n; i++) {
		Platform__Trace__V1__TraceSummary *t = plat_new(ctx,
		    Platform__Trace__V1__TraceSummary,
		    &platform__trace__v1__trace_summary__descriptor);

		t->trace_id = text(ctx, res, i, 0);
		pg_array_add(&ids, t->trace_id);
		resp->traces[i] = t;
	}
	resp->n_traces = (size_t)n;
	PQclear(res);
	code = store_summaries(S.store, pg_array_str(&ids),
	    plat_ctx_deadline_left_ms(ctx), &sum, err, sizeof(err));
	pg_array_free(&ids);
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	for (int r = 0; r < PQntuples(sum); r++)
		for (size_t i = 0; i < resp->n_traces; i++)
			if (strcmp(resp->traces[i]->trace_id,
			    PQgetvalue(sum, r, 0)) == 0)
				summary_fill(ctx, resp->traces[i], sum, r);
	PQclear(sum);
	*out = &resp->base;
	return PLAT_OK;
}

/* ---- Services, Operations, Dependencies ---- */

static int
trace_services(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	Platform__Trace__V1__ServicesResponse *resp;
	char err[256];
	enum plat_code code;
	PGresult *res;
	int n;

	(void)m;
	code = store_services(S.store, plat_ctx_deadline_left_ms(ctx), &res,
	    err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp = plat_new(ctx, Platform__Trace__V1__ServicesResponse,
	    &platform__trace__v1__services_response__descriptor);
	n = PQntuples(res);
	resp->services = plat_alloc(ctx, (size_t)n * sizeof(char *) + 1);
	for (int i = 0; i < n; i++)
		resp->services[i] = text(ctx, res, i, 0);
	resp->n_services = (size_t)n;
	PQclear(res);
	*out = &resp->base;
	return PLAT_OK;
}

static int
trace_operations(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Trace__V1__OperationsRequest *req = (const void *)m;
	Platform__Trace__V1__OperationsResponse *resp;
	char err[256];
	enum plat_code code;
	PGresult *res;
	int n, rc;

	if ((rc = check_name(ctx, "service", req->service, true)) != PLAT_OK)
		return rc;
	code = store_operations(S.store, req->service,
	    plat_ctx_deadline_left_ms(ctx), &res, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp = plat_new(ctx, Platform__Trace__V1__OperationsResponse,
	    &platform__trace__v1__operations_response__descriptor);
	n = PQntuples(res);
	resp->operations = plat_alloc(ctx, (size_t)n * sizeof(void *) + 1);
	for (int i = 0; i < n; i++) {
		Platform__Trace__V1__Operation *o = plat_new(ctx,
		    Platform__Trace__V1__Operation,
		    &platform__trace__v1__operation__descriptor);

		o->name = text(ctx, res, i, 0);
		o->kind = (Platform__Trace__V1__SpanKind)num(res, i, 1);
		resp->operations[i] = o;
	}
	resp->n_operations = (size_t)n;
	PQclear(res);
	*out = &resp->base;
	return PLAT_OK;
}

static int
trace_dependencies(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Trace__V1__DependenciesRequest *req = (const void *)m;
	Platform__Trace__V1__DependenciesResponse *resp;
	int64_t start = req->start_unix_ms, end = req->end_unix_ms;
	char err[256];
	enum plat_code code;
	PGresult *res;
	int n, rc;

	if ((rc = check_window(ctx, &start, &end)) != PLAT_OK)
		return rc;
	code = store_dependencies(S.store, start, end,
	    plat_ctx_deadline_left_ms(ctx), &res, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp = plat_new(ctx, Platform__Trace__V1__DependenciesResponse,
	    &platform__trace__v1__dependencies_response__descriptor);
	n = PQntuples(res);
	resp->dependencies = plat_alloc(ctx, (size_t)n * sizeof(void *) + 1);
	for (int i = 0; i < n; i++) {
		Platform__Trace__V1__Dependency *d = plat_new(ctx,
		    Platform__Trace__V1__Dependency,
		    &platform__trace__v1__dependency__descriptor);

		d->parent = text(ctx, res, i, 0);
		d->child = text(ctx, res, i, 1);
		d->call_count = num(res, i, 2);
		d->error_count = num(res, i, 3);
		d->error_rate = d->call_count > 0 ?
		    (double)d->error_count / (double)d->call_count : 0;
		resp->dependencies[i] = d;
	}
	resp->n_dependencies = (size_t)n;
	PQclear(res);
	*out = &resp->base;
	return PLAT_OK;
}

/* ---- maintenance ---- */

static void
maintain(void *arg)
{
	char err[512];
	int64_t dropped;

	(void)arg;
	if (!pg_store_ready(S.store) &&
	    pg_store_migrate(S.store, err, sizeof(err)) != PLAT_OK)
		return;                 /* the next tick tries again */
	if (store_maintain(S.store, S.keep_days, &dropped, err,
	    sizeof(err)) != PLAT_OK) {
		log_warn("trace: partition maintenance failed", "error", err);
		return;
	}
	if (dropped > 0) {
		char n[24];

		snprintf(n, sizeof(n), "%" PRId64, dropped);
		__atomic_add_fetch(&S.dropped_partitions, (uint64_t)dropped,
		    __ATOMIC_RELAXED);
		log_info("trace: dropped partitions past the retention",
		    "count", n);
	}
}

static double
stat_value(void *arg)
{
	return (double)__atomic_load_n((uint64_t *)arg, __ATOMIC_RELAXED);
}

static int
trace_init(plat_server *srv, const struct plat_settings *s)
{
	char err[512];
	enum plat_code code;
	int pool;

	pool = s->workers * 2 < POOL_MIN ? POOL_MIN : s->workers * 2;
	if ((S.store = store_new(s->database, pool)) == NULL)
		return -1;
	code = pg_store_migrate(S.store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("trace: database unavailable at start; answering "
		    "UNAVAILABLE until it is reachable", "error", err);
	} else if (code != PLAT_OK) {
		log_error("trace: cannot bring the database schema up to date",
		    "error", err);
		fprintf(stderr, "trace-srv: %s\n", err);
		goto fail;
	} else {
		/* Partitions exist before the first Export. */
		maintain(NULL);
	}
	if (forward_start(forward_opt, plat_server_metrics(srv)) != 0)
		goto fail;
	if (ingest_start(S.store, S.keep_days, S.max_trace_spans,
	    &S.tail, plat_server_metrics(srv)) != 0)
		goto fail;
	S.maintainer = plat_feed_loop_start(MAINTAIN_MS, maintain, NULL);
	metrics_counter_fn(plat_server_metrics(srv),
	    "trace_partitions_dropped_total",
	    "Daily span partitions dropped past the retention.", stat_value,
	    &S.dropped_partitions);
	return 0;
fail:
	forward_stop(0);
	pg_store_free(S.store);
	S.store = NULL;
	return -1;
}

static void
trace_stopping(plat_server *srv)
{
	(void)srv;
	plat_feed_loop_stop(S.maintainer);
	S.maintainer = NULL;
}

static void
trace_fini(plat_server *srv)
{
	(void)srv;
	ingest_stop();
	forward_stop(FORWARD_FLUSH_MS);
	pg_store_free(S.store);
	S.store = NULL;
}

#define TRACE_PATH "/platform.trace.v1.Trace/"

#define UNARY(name, fn, type) \
	PLAT_UNARY(TRACE_PATH, name, platform__trace__v1, type, fn, 1)

static const struct plat_method trace_methods[] = {
	PLAT_UNARY("/opentelemetry.proto.collector.trace.v1.TraceService/",
	    "Export", opentelemetry__proto__collector__trace__v1,
	    export_trace_service, ingest_export, 1),
	UNARY("GetTrace", trace_get, get_trace),
	UNARY("Search", trace_search, search),
	UNARY("Services", trace_services, services),
	UNARY("Operations", trace_operations, operations),
	UNARY("Dependencies", trace_dependencies, dependencies),
};

const struct plat_service trace_service = {
	.name = "trace",
	.grpc_service = "platform.trace.v1.Trace",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7077",
	.methods = trace_methods,
	.nmethods = PLAT_COUNT(trace_methods),
	.options = trace_options,
	.noptions = PLAT_COUNT(trace_options),
	.check_settings = trace_check_settings,
	.init = trace_init,
	.stopping = trace_stopping,
	.fini = trace_fini,
};
