/*
 * ingest: Export through the batcher into the store (see ingest.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "platform/batcher.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"
#include "span.h"
#include "store.h"

#define BATCH_MAX_ITEMS 4096
#define BATCH_MAX_BYTES (16u << 20)
#define BATCH_TIMEOUT_MAX_MS 30000
#define DAY_NS (86400LL * 1000000000LL)

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
    export_request;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse
    export_response;

/* One Export, in its call's arena. */
struct ingest_job {
	struct batcher_call call;       /* first */
	plat_ctx *ctx;
	struct span_batch spans;
};

struct ingest_batch {
	struct span_row **rows;
	size_t n;
};

static struct {
	struct pg_store *store;
	struct batcher *batcher;
	int keep_days;
	int64_t max_trace_spans;
	uint64_t stored, rejected, oversized;   /* atomics */
} I;

/* Start times a span may have: from the oldest day kept to the last day
 * with a partition made ahead (UTC days, as the partitions). */
static void
window_now(struct span_window *w)
{
	int64_t today = plat_wall_ms() / 86400000;

	w->min_ns = (today - I.keep_days) * DAY_NS;
	w->max_ns = (today + STORE_AHEAD_DAYS + 1) * DAY_NS;
}

/* The answer to a job whose spans are all stored or refused; frees
 * the job's rows. */
static export_response *
response_of(struct ingest_job *j)
{
	export_response *resp = plat_new(j->ctx, export_response,
	    &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor);
	Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess *ps;

	if (j->spans.rejected > 0) {
		ps = plat_alloc(j->ctx, sizeof(*ps));
		opentelemetry__proto__collector__trace__v1__export_trace_partial_success__init(ps);
		ps->rejected_spans = j->spans.rejected;
		ps->error_message = j->spans.rejected > 1 ?
		    plat_printf(j->ctx, "%s (and %lld more)",
		    j->spans.first_error,
		    (long long)(j->spans.rejected - 1)) :
		    plat_strdup(j->ctx, j->spans.first_error);
		resp->partial_success = ps;
		__atomic_add_fetch(&I.rejected, (uint64_t)j->spans.rejected,
		    __ATOMIC_RELAXED);
	}
	span_batch_free(&j->spans);
	return resp;
}

static void *
ingest_build(void *arg, struct batcher_call *const *calls, size_t n)
{
	struct ingest_batch *b = xcalloc(1, sizeof(*b));
	size_t total = 0;

	(void)arg;
	for (size_t i = 0; i < n; i++)
		total += ((struct ingest_job *)calls[i])->spans.n;
	b->rows = xcalloc(total, sizeof(*b->rows));
	for (size_t i = 0; i < n; i++) {
		struct ingest_job *j = (struct ingest_job *)calls[i];

		for (size_t k = 0; k < j->spans.n; k++)
			b->rows[b->n++] = &j->spans.rows[k];
	}
	return b;
}

static enum plat_code
ingest_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct ingest_batch *b = batch;
	enum plat_code code;

	(void)arg;
	code = store_insert(I.store, b->rows, b->n, I.max_trace_spans,
	    timeout_ms, err, errlen);
	if (code == PLAT_OK) {
		size_t kept = 0;

		for (size_t i = 0; i < b->n; i++)
			kept += !b->rows[i]->refused;
		__atomic_add_fetch(&I.stored, kept, __ATOMIC_RELAXED);
	}
	return code;
}

static void
ingest_answer(void *arg, void *batch, struct batcher_call *call)
{
	struct ingest_job *j = (struct ingest_job *)call;

	(void)arg;
	(void)batch;
	if (call->code != PLAT_OK) {
		span_batch_free(&j->spans);
		plat_error(j->ctx, (int)call->code, "%s", call->err);
		plat_reply(j->ctx, (int)call->code, NULL);
		return;
	}
	/* A full trace's spans are refused as any bad span is: counted and
	 * named in partial_success, never dropped without a word. */
	for (size_t i = 0; i < j->spans.n; i++) {
		const struct span_row *r = &j->spans.rows[i];

		if (!r->refused)
			continue;
		__atomic_add_fetch(&I.oversized, 1, __ATOMIC_RELAXED);
		if (j->spans.rejected++ == 0)
			snprintf(j->spans.first_error,
			    sizeof(j->spans.first_error), "span %s: trace %s "
			    "holds %lld spans, the most kept (--max-trace-"
			    "spans)", r->span_id, r->trace_id,
			    (long long)I.max_trace_spans);
	}
	plat_reply(j->ctx, PLAT_OK, &response_of(j)->base);
}

static void
ingest_release(void *arg, void *batch)
{
	struct ingest_batch *b = batch;

	(void)arg;
	free(b->rows);
	free(b);
}

static const struct batcher_ops ingest_ops = {
	.build = ingest_build,
	.apply = ingest_apply,
	.answer = ingest_answer,
	.release = ingest_release,
};

int
ingest_export(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const export_request *req = (const void *)m;
	struct ingest_job *j = plat_alloc(ctx, sizeof(*j));
	struct span_window w;
	int64_t left = plat_ctx_deadline_left_ms(ctx);
	size_t bytes = 0;

	j->ctx = ctx;
	window_now(&w);
	span_batch_add(&j->spans, req, &w);
	if (j->spans.n == 0) {
		*out = &response_of(j)->base;
		return PLAT_OK;
	}
	for (size_t i = 0; i < j->spans.n; i++)
		bytes += 256 + strlen(j->spans.rows[i].attrs);
	j->call.deadline_ms = left == INT64_MAX ? INT64_MAX :
	    plat_now_ms() + left;
	j->call.items = j->spans.n;
	j->call.bytes = bytes;
	plat_defer(ctx);
	batcher_submit(I.batcher, &j->call);
	return PLAT_DEFERRED;
}

static double
stat_value(void *arg)
{
	return (double)__atomic_load_n((uint64_t *)arg, __ATOMIC_RELAXED);
}

int
ingest_start(struct pg_store *store, int keep_days, int64_t max_trace_spans,
    struct metrics *metrics)
{
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};

	I.store = store;
	I.keep_days = keep_days;
	I.max_trace_spans = max_trace_spans;
	I.batcher = batcher_new("trace", &ingest_ops, NULL, &limits);
	if (I.batcher == NULL)
		return -1;
	metrics_counter_fn(metrics, "trace_spans_stored_total",
	    "Spans stored (committed).", stat_value, &I.stored);
	metrics_counter_fn(metrics, "trace_spans_rejected_total",
	    "Spans refused at Export (bad ids, times, names, attributes), "
	    "each answered in partial_success.", stat_value, &I.rejected);
	metrics_counter_fn(metrics, "trace_spans_oversized_total",
	    "Spans refused because their trace held --max-trace-spans "
	    "already (also in trace_spans_rejected_total).", stat_value,
	    &I.oversized);
	return 0;
}

void
ingest_stop(void)
{
	batcher_free(I.batcher);
	I.batcher = NULL;
}
