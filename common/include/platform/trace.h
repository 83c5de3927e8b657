/*
 * trace: distributed tracing in every server, W3C Trace Context in and
 * out, spans out by OTLP.
 *
 * The runtime opens a server span for each call, a child of the
 * caller's `traceparent` (or the root of a new trace), and makes it the
 * thread's current span while the handler runs: log lines written then
 * carry trace_id and span_id, and every call the server's client makes
 * meanwhile gets a client span, a child of it, whose context goes out as
 * `traceparent` (with the caller's `tracestate`). Handlers may add
 * attributes and child spans.
 *
 * Sampling is decided at the root (--trace-sample, a rate) and honoured
 * after: a caller's sampled flag is kept. Only a sampled span is
 * recorded (with tail, --trace-tail, every span: those of unsampled
 * traces go out without the sampled bit in their OTLP flags, for
 * trace-srv's tail decision), and only when there is somewhere to send it
 * (--trace-endpoint): spans leave through an outbox (platform/outbox.h),
 * batched as OTLP ExportTraceServiceRequest to
 * opentelemetry.proto.collector.trace.v1.TraceService/Export, so
 * trace-srv, an OpenTelemetry Collector, Jaeger or Tempo all take them.
 * A full buffer drops spans, counted (platform_trace_spans_dropped_total);
 * nothing ever blocks a call. Context goes out and log lines carry ids
 * whether or not a span is recorded.
 */
#ifndef PLATFORM_TRACE_H
#define PLATFORM_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct plat_client;

#define PLAT_TRACE_ID_LEN 16
#define PLAT_SPAN_ID_LEN 8
#define PLAT_TRACEPARENT_LEN 55         /* 00-<32>-<16>-<2> */
#define PLAT_TRACESTATE_MAX 256
#define PLAT_SPAN_ATTRS 12

/* A span's identity, as traceparent carries it. */
struct plat_span_ctx {
	uint8_t trace_id[PLAT_TRACE_ID_LEN];
	uint8_t span_id[PLAT_SPAN_ID_LEN];
	bool sampled;
};

/* Parses a W3C traceparent (version 00, or a later one read as 00):
 * 0, or -1 for anything invalid (all-zero ids included). */
int plat_traceparent_parse(const char *s, struct plat_span_ctx *out);
/* out: at least PLAT_TRACEPARENT_LEN + 1 bytes. */
void plat_traceparent_format(const struct plat_span_ctx *c, char *out);
/* n bytes as lower-case hex, NUL-terminated: out has 2n + 1 bytes. */
void plat_hex_encode(const uint8_t *p, size_t n, char *out);

enum plat_span_kind {
	PLAT_SPAN_INTERNAL = 1,
	PLAT_SPAN_SERVER = 2,
	PLAT_SPAN_CLIENT = 3,
};

struct plat_span_attr {
	const char *key;
	char value[96];
};

/* A span in the caller's memory (a call's, a stack frame's). */
struct plat_span {
	struct plat_span_ctx ctx;
	uint8_t parent_id[PLAT_SPAN_ID_LEN];
	bool has_parent;
	bool recording;                 /* sampled (or tail), with an exporter */
	bool open;
	enum plat_span_kind kind;
	int64_t start_ns, end_ns;       /* Unix time */
	int status;                     /* a gRPC code */
	/* From here on, filled only as needed (not cleared at the start). */
	char name[128];                 /* recorded spans only */
	char tracestate[PLAT_TRACESTATE_MAX];
	char message[128];
	struct plat_span_attr attrs[PLAT_SPAN_ATTRS];
	size_t nattrs;
};

/*
 * The process's tracer: service and node name the spans' resource;
 * endpoint: "" for none (nothing is recorded), "discovery" for the
 * service "trace" found through discovery, or host:port; sample: the
 * rate of new traces recorded, 0..1; tail: unsampled spans are recorded
 * and sent too (marked). Metrics may be NULL. Once, before any span.
 */
void plat_trace_setup(const char *service, const char *node,
    const char *endpoint, double sample, bool tail, struct metrics *metrics);
/* Starts sending (through client, which outlives plat_trace_stop). */
void plat_trace_connect(struct plat_client *client);
/* Sends what is buffered for up to flush_ms, then stops. */
void plat_trace_stop(int flush_ms);
void plat_trace_free(void);

/* Starts s: a child of parent (NULL: the root of a new trace, sampled at
 * the rate), or of traceparent text when parent_header is given and
 * valid. */
void plat_span_start(struct plat_span *s, enum plat_span_kind kind,
    const char *name, const struct plat_span_ctx *parent,
    const char *parent_header, const char *tracestate);
void plat_span_attr(struct plat_span *s, const char *key, const char *value);
void plat_span_attr_int(struct plat_span *s, const char *key, int64_t v);
/* Ends s with a gRPC status (0: OK) and sends it when recorded. */
void plat_span_end(struct plat_span *s, int status, const char *message);

/* The thread's current span (NULL: none), which the client's calls and
 * log lines use. enter makes s current and returns the one before,
 * which leave puts back (a span may be current on several threads). */
struct plat_span *plat_span_current(void);
struct plat_span *plat_span_enter(struct plat_span *s);
void plat_span_leave(struct plat_span *prev);

/* The current span's ids as hex, for log lines: false when none. */
bool plat_trace_log_ids(char trace_id[2 * PLAT_TRACE_ID_LEN + 1],
    char span_id[2 * PLAT_SPAN_ID_LEN + 1]);

#endif
