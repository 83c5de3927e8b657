/*
 * span: OTLP spans checked and turned into the rows trace-srv stores.
 *
 * Pure logic, no I/O: every span of an ExportTraceServiceRequest is
 * either a row or a rejection with the reason (the caller's
 * partial_success), never dropped without a word.
 */
#ifndef TRACE_SPAN_H
#define TRACE_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#define SPAN_NAME_MAX 1024
#define SPAN_ATTRS_MAX 128
#define SPAN_ATTRS_JSON_MAX 65536

/* One span as stored: ids as lower-case hex. Strings point into the
 * request (valid while it is) except attrs, which the row owns. */
struct span_row {
	char trace_id[33], span_id[17], parent_id[17];  /* parent "" */
	const char *service, *node, *name, *status_message, *trace_state;
	int kind;
	int64_t start_ns, duration_ns;
	bool error;
	bool unsampled;                 /* by its flags: for the tail decision */
	bool refused;                   /* its trace is full (store.h) */
	char *attrs;                    /* JSON object, values as text */
};

/* The start times a span may have: [min_ns, max_ns). */
struct span_window {
	int64_t min_ns, max_ns;
};

struct span_batch {
	struct span_row *rows;
	size_t n, cap;
	int64_t rejected;
	char first_error[256];          /* the first rejection's reason */
};

/* OTLP Span.flags: bit 0 the W3C sampled flag, 0x100 "bit 0 is
 * known". A span with 0x100 and not bit 0 is one head sampling left out
 * that a platform server sent anyway (--trace-tail): trace-srv holds it
 * for its tail decision. Without 0x100 (most SDKs), it is sampled. */
#define SPAN_FLAGS_SAMPLED 0x1u
#define SPAN_FLAGS_KNOWN 0x100u

/* Every span of req, into b (zeroed by the caller): a row each, or a
 * rejection counted with its reason. */
void span_batch_add(struct span_batch *b,
    const Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req,
    const struct span_window *w);
void span_batch_free(struct span_batch *b);

/* A row copied with its strings (attrs too) into one block of its
 * owner: span_row_size bytes at buf, for span_row_copy. */
size_t span_row_size(const struct span_row *r);
void span_row_copy(struct span_row *dst, const struct span_row *src,
    char *buf);

/* One span's problem, or NULL when it can be stored. */
const char *span_problem(const Opentelemetry__Proto__Trace__V1__Span *s,
    const struct span_window *w);

/* The text form of an OTLP value (strings as they are, arrays and maps
 * as JSON), malloc'd. */
char *span_value_text(const Opentelemetry__Proto__Common__V1__AnyValue *v);

#endif
