/*
 * ingest: OTLP TraceService/Export into trace_spans.
 *
 * Every span is checked (span.h); what can be stored goes through the
 * platform's group-commit batcher, so concurrent exports share one
 * transaction, and the call is answered after the commit: OK with a
 * partial_success naming what was refused (rejected_spans and the first
 * reason), as OTLP has it, or UNAVAILABLE while the database is away
 * (OTLP exporters retry on it). Spans of unsampled traces (span.h) wait
 * in the tail buffer instead (tail.h), and are stored only when their
 * trace turns out to matter.
 */
#ifndef TRACE_INGEST_H
#define TRACE_INGEST_H

#include "platform/pg.h"
#include "platform/server.h"

struct metrics;

/* The tail decision (tail.h). */
struct ingest_tail {
	int64_t window_ms;
	int64_t slower_than_ms;         /* 0: latency keeps nothing */
	size_t max_spans;
};

/* keep_days: the retention, which bounds the start times taken;
 * max_trace_spans: the most spans kept of one trace. */
int ingest_start(struct pg_store *store, int keep_days,
    int64_t max_trace_spans, const struct ingest_tail *tail,
    struct metrics *metrics);
/* Answers whatever is queued, then stops. */
void ingest_stop(void);

int ingest_export(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp);

#endif
