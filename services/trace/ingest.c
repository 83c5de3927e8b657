/*
 * ingest: Export through the batcher into the store (see ingest.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "ingest.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "platform/batcher.h"
#include "platform/clock.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"
#include "span.h"
#include "store.h"
#include "tail.h"

#define BATCH_MAX_ITEMS 4096
#define BATCH_MAX_BYTES (16u << 20)
#define BATCH_TIMEOUT_MAX_MS 30000
#define DAY_NS (86400LL * 1000000000LL)
#define TAIL_TICK_MS 100
#define TAIL_STORE_MS 10000

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
	uint64_t tail_lost;             /* kept by the tail, not stored */
	struct tail *tail;
	struct plat_feed_loop *ticker;
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
		forward_rows(b->rows, b->n);
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

/* The unsampled rows leave the batch for the tail buffer; those it
 * has no room for are refused like any span. */
static void
hold_unsampled(struct span_batch *b)
{
	size_t kept = 0, refused;

	for (size_t i = 0; i < b->n; i++) {
		struct span_row *r = &b->rows[i];

		if (!r->unsampled) {
			b->rows[kept++] = *r;
			continue;
		}
		refused = tail_offer(I.tail, r, 1, plat_now_ms());
		if (refused > 0 && b->rejected++ == 0)
			snprintf(b->first_error, sizeof(b->first_error),
			    "span %s: unsampled, and the tail buffer is full "
			    "(--tail-buffer-spans)", r->span_id);
		free(r->attrs);
	}
	b->n = kept;
}

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
	hold_unsampled(&j->spans);
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

/* The tail's kept traces, on the ticker's thread: one transaction per
 * tick. */
static void
tail_flush(void *arg, struct span_row **rows, size_t n)
{
	char err[256];
	size_t kept = 0;

	(void)arg;
	if (store_insert(I.store, rows, n, I.max_trace_spans, TAIL_STORE_MS,
	    err, sizeof(err)) != PLAT_OK) {
		log_warn("trace: spans of traces the tail kept were lost",
		    "error", err);
		__atomic_add_fetch(&I.tail_lost, n, __ATOMIC_RELAXED);
		return;
	}
	for (size_t i = 0; i < n; i++)
		kept += !rows[i]->refused;
	__atomic_add_fetch(&I.stored, kept, __ATOMIC_RELAXED);
	__atomic_add_fetch(&I.oversized, n - kept, __ATOMIC_RELAXED);
	forward_rows(rows, n);
}

static void
tail_ticker(void *arg)
{
	(void)arg;
	tail_tick(I.tail, plat_now_ms());
}

static double
tail_value(void *arg)
{
	struct tail_stats st;

	tail_stats(I.tail, &st);
	switch ((int)(intptr_t)arg) {
	case 0: return (double)st.kept;
	case 1: return (double)st.discarded;
	case 2: return (double)st.spans_refused;
	case 3: return (double)st.spans_discarded;
	case 4: return (double)st.traces_held;
	default: return (double)st.spans_held;
	}
}

int
ingest_start(struct pg_store *store, int keep_days, int64_t max_trace_spans,
    const struct ingest_tail *tail, struct metrics *metrics)
{
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};

	I.store = store;
	I.keep_days = keep_days;
	I.max_trace_spans = max_trace_spans;
	I.tail = tail_new(&(struct tail_opts){
	    .window_ms = tail->window_ms,
	    .slower_than_ns = tail->slower_than_ms * 1000000,
	    .max_spans = tail->max_spans,
	    .flush = tail_flush,
	});
	I.batcher = batcher_new("trace", &ingest_ops, NULL, &limits);
	if (I.batcher == NULL) {
		tail_free(I.tail);
		return -1;
	}
	I.ticker = plat_feed_loop_start(TAIL_TICK_MS, tail_ticker, NULL);
	metrics_counter_fn(metrics, "trace_tail_traces_kept_total",
	    "Unsampled traces kept whole: a span was an error or over "
	    "--keep-slower-than.", tail_value, (void *)0);
	metrics_counter_fn(metrics, "trace_tail_traces_discarded_total",
	    "Unsampled traces discarded at the end of their window.",
	    tail_value, (void *)1);
	metrics_counter_fn(metrics, "trace_tail_spans_refused_total",
	    "Unsampled spans refused: the tail buffer was full.", tail_value,
	    (void *)2);
	metrics_counter_fn(metrics, "trace_tail_spans_discarded_total",
	    "Spans of the discarded unsampled traces.", tail_value, (void *)3);
	metrics_gauge_fn(metrics, "trace_tail_traces_held",
	    "Unsampled traces waiting for their decision.", tail_value,
	    (void *)4);
	metrics_gauge_fn(metrics, "trace_tail_spans_held",
	    "Spans in the tail buffer.", tail_value, (void *)5);
	metrics_counter_fn(metrics, "trace_tail_spans_lost_total",
	    "Spans of kept traces the store did not take (it was away).",
	    stat_value, &I.tail_lost);
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
	plat_feed_loop_stop(I.ticker);
	I.ticker = NULL;
	/* What held traces are owed: the kept stored, the rest counted. */
	if (I.tail != NULL)
		tail_tick(I.tail, INT64_MAX / 2);
	batcher_free(I.batcher);
	I.batcher = NULL;
	tail_free(I.tail);
	I.tail = NULL;
}
