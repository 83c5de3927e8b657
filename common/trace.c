/*
 * trace: W3C Trace Context, spans, and their OTLP exporter. See
 * platform/trace.h.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "platform/client.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/outbox.h"
#include "platform/server.h"
#include "platform/trace.h"
#include "platform/xalloc.h"

#define EXPORT_METHOD \
	"/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define SPANS_MAX 20000
#define SPANS_BYTES_MAX ((size_t)32 << 20)
#define BATCH_MAX 512
#define CALL_MS 3000
/* A fuller Export rather than one per span, as the OpenTelemetry
 * Collector's batch processor (200 ms): trace-srv's cost is per Export. */
#define LINGER_MS 200
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000

typedef Opentelemetry__Proto__Trace__V1__Span otlp_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue otlp_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue otlp_any;

/* A finished span on its way out. */
struct span_item {
	struct outbox_item item;        /* first */
	struct plat_span span;
};

static struct {
	char *service, *node, *endpoint;
	double sample;
	bool tail;              /* unsampled spans recorded and sent too */
	struct outbox *out;
	struct plat_client *client;
	bool connected;
} T;

static __thread struct plat_span *current;
static __thread uint64_t rng[2];

/* ---- ids ---- */

/* xorshift128+, seeded per thread from the kernel: ids must not repeat
 * across processes, and a syscall per id would cost more than the span. */
static uint64_t
rand64(void)
{
	uint64_t x, y;

	if (rng[0] == 0 && rng[1] == 0) {
		if (getrandom(rng, sizeof(rng), 0) != sizeof(rng)) {
			rng[0] = (uint64_t)plat_now_us() ^ (uint64_t)&x;
			rng[1] = (uint64_t)plat_wall_ms() * 0x9e3779b97f4a7c15ULL;
		}
		rng[0] |= 1;
	}
	x = rng[0];
	y = rng[1];
	rng[0] = y;
	x ^= x << 23;
	rng[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
	return rng[1] + y;
}

static void
rand_bytes(uint8_t *p, size_t n)
{
	while (n > 0) {
		uint64_t v = rand64();
		size_t k = n < sizeof(v) ? n : sizeof(v);

		memcpy(p, &v, k);
		p += k;
		n -= k;
	}
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* ---- traceparent ---- */

static int
hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;              /* upper case is invalid in traceparent */
}

static int
hex_bytes(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

void
plat_hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int
plat_traceparent_parse(const char *s, struct plat_span_ctx *out)
{
	uint8_t version, flags;
	size_t n;

	if (s == NULL || (n = strlen(s)) < PLAT_TRACEPARENT_LEN ||
	    hex_bytes(s, &version, 1) != 0 || version == 0xff || s[2] != '-' ||
	    hex_bytes(s + 3, out->trace_id, PLAT_TRACE_ID_LEN) != 0 ||
	    s[35] != '-' ||
	    hex_bytes(s + 36, out->span_id, PLAT_SPAN_ID_LEN) != 0 ||
	    s[52] != '-' || hex_bytes(s + 53, &flags, 1) != 0)
		return -1;
	/* Version 00 is exactly this long; a later one may add fields
	 * after a dash. */
	if ((version == 0 && n != PLAT_TRACEPARENT_LEN) ||
	    (n > PLAT_TRACEPARENT_LEN && s[PLAT_TRACEPARENT_LEN] != '-'))
		return -1;
	if (all_zero(out->trace_id, PLAT_TRACE_ID_LEN) ||
	    all_zero(out->span_id, PLAT_SPAN_ID_LEN))
		return -1;
	out->sampled = (flags & 1) != 0;
	return 0;
}

void
plat_traceparent_format(const struct plat_span_ctx *c, char *out)
{
	memcpy(out, "00-", 3);
	plat_hex_encode(c->trace_id, PLAT_TRACE_ID_LEN, out + 3);
	out[35] = '-';
	plat_hex_encode(c->span_id, PLAT_SPAN_ID_LEN, out + 36);
	out[52] = '-';
	memcpy(out + 53, c->sampled ? "01" : "00", 3);
}

/* ---- spans ---- */

static int64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
plat_span_start(struct plat_span *s, enum plat_span_kind kind,
    const char *name, const struct plat_span_ctx *parent,
    const char *parent_header, const char *tracestate)
{
	struct plat_span_ctx from;

	/* Everything but the attributes and the name, which only a
	 * recorded span fills: a call pays little for tracing it does not
	 * record. */
	memset(s, 0, offsetof(struct plat_span, name));
	s->tracestate[0] = '\0';
	s->nattrs = 0;
	s->kind = kind;
	if (parent_header != NULL &&
	    plat_traceparent_parse(parent_header, &from) == 0)
		parent = &from;
	if (parent != NULL) {
		memcpy(s->ctx.trace_id, parent->trace_id, PLAT_TRACE_ID_LEN);
		memcpy(s->parent_id, parent->span_id, PLAT_SPAN_ID_LEN);
		s->has_parent = true;
		s->ctx.sampled = parent->sampled;
		if (tracestate != NULL)
			snprintf(s->tracestate, sizeof(s->tracestate), "%s",
			    tracestate);
	} else {
		do
			rand_bytes(s->ctx.trace_id, PLAT_TRACE_ID_LEN);
		while (all_zero(s->ctx.trace_id, PLAT_TRACE_ID_LEN));
		s->ctx.sampled = T.sample >= 1.0 || (T.sample > 0 &&
		    (double)(rand64() >> 11) / 9007199254740992.0 < T.sample);
	}
	do
		rand_bytes(s->ctx.span_id, PLAT_SPAN_ID_LEN);
	while (all_zero(s->ctx.span_id, PLAT_SPAN_ID_LEN));
	s->recording = (s->ctx.sampled || T.tail) && T.out != NULL;
	s->open = true;
	if (s->recording) {
		snprintf(s->name, sizeof(s->name), "%s", name);
		s->start_ns = wall_ns();
	}
}

static struct plat_span_attr *
attr_slot(struct plat_span *s, const char *key)
{
	if (!s->recording || s->nattrs == PLAT_SPAN_ATTRS)
		return NULL;
	s->attrs[s->nattrs].key = key;
	return &s->attrs[s->nattrs++];
}

void
plat_span_attr(struct plat_span *s, const char *key, const char *value)
{
	struct plat_span_attr *a = attr_slot(s, key);

	if (a != NULL)
		snprintf(a->value, sizeof(a->value), "%s", value);
}

void
plat_span_attr_int(struct plat_span *s, const char *key, int64_t v)
{
	struct plat_span_attr *a = attr_slot(s, key);

	if (a != NULL)
		snprintf(a->value, sizeof(a->value), "%" PRId64, v);
}

void
plat_span_end(struct plat_span *s, int status, const char *message)
{
	struct span_item *it;

	if (!s->open)
		return;
	s->open = false;
	if (!s->recording)
		return;
	s->end_ns = wall_ns();
	s->status = status;
	snprintf(s->message, sizeof(s->message), "%s",
	    message != NULL ? message : "");
	it = xcalloc(1, sizeof(*it));
	it->span = *s;
	it->item.bytes = sizeof(*it);
	(void)outbox_push(T.out, &it->item);
}

struct plat_span *
plat_span_current(void)
{
	return current;
}

struct plat_span *
plat_span_enter(struct plat_span *s)
{
	struct plat_span *prev = current;

	current = s;
	return prev;
}

void
plat_span_leave(struct plat_span *prev)
{
	current = prev;
}

bool
plat_trace_log_ids(char trace_id[2 * PLAT_TRACE_ID_LEN + 1],
    char span_id[2 * PLAT_SPAN_ID_LEN + 1])
{
	if (current == NULL)
		return false;
	plat_hex_encode(current->ctx.trace_id, PLAT_TRACE_ID_LEN, trace_id);
	plat_hex_encode(current->ctx.span_id, PLAT_SPAN_ID_LEN, span_id);
	return true;
}

/* ---- the exporter ---- */

static void
kv_string(otlp_kv *kv, otlp_any *v, const char *key, const char *value)
{
	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(v);
	kv->key = (char *)key;
	kv->value = v;
	v->value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
	v->string_value = (char *)value;
}

/* One span as OTLP, its pieces in the arrays given. */
static void
to_otlp(const struct plat_span *s, otlp_span *o, otlp_kv *kvs,
    otlp_kv **kvp, otlp_any *vals,
    Opentelemetry__Proto__Trace__V1__Status *st)
{
	opentelemetry__proto__trace__v1__span__init(o);
	o->trace_id.data = (uint8_t *)s->ctx.trace_id;
	o->trace_id.len = PLAT_TRACE_ID_LEN;
	o->span_id.data = (uint8_t *)s->ctx.span_id;
	o->span_id.len = PLAT_SPAN_ID_LEN;
	if (s->has_parent) {
		o->parent_span_id.data = (uint8_t *)s->parent_id;
		o->parent_span_id.len = PLAT_SPAN_ID_LEN;
	}
	o->trace_state = (char *)s->tracestate;
	/* Flags known (0x100), and the sampled bit: with --trace-tail a
	 * span without it is one head sampling left out, which trace-srv
	 * keeps only when its trace turns out to matter. */
	o->flags = 0x100 | (s->ctx.sampled ? 1 : 0);
	o->name = (char *)s->name;
	o->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
	o->start_time_unix_nano = (uint64_t)s->start_ns;
	o->end_time_unix_nano = (uint64_t)s->end_ns;
	for (size_t i = 0; i < s->nattrs; i++) {
		kv_string(&kvs[i], &vals[i], s->attrs[i].key,
		    s->attrs[i].value);
		kvp[i] = &kvs[i];
	}
	o->attributes = kvp;
	o->n_attributes = s->nattrs;
	opentelemetry__proto__trace__v1__status__init(st);
	/* OTLP's rule for RPC spans: a server span is an error for a server
	 * fault, a client span for any status but OK. */
	if (s->status != 0 && (s->kind != PLAT_SPAN_SERVER ||
	    s->status == PLAT_UNKNOWN || s->status == PLAT_DEADLINE_EXCEEDED ||
	    s->status == PLAT_UNIMPLEMENTED || s->status == PLAT_INTERNAL ||
	    s->status == PLAT_UNAVAILABLE || s->status == PLAT_DATA_LOSS)) {
		st->code =
		    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
		st->message = (char *)s->message;
	}
	o->status = st;
}

/* One Export of spans[0..n) to addr. */
static int
export_spans(struct span_item **items, size_t n, const char *addr,
    int deadline_ms, char *err, size_t errlen)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	    req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	Opentelemetry__Proto__Trace__V1__ResourceSpans rs =
	    OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
	Opentelemetry__Proto__Resource__V1__Resource res =
	    OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	Opentelemetry__Proto__Trace__V1__ScopeSpans ss =
	    OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT, *ssp = &ss;
	Opentelemetry__Proto__Common__V1__InstrumentationScope scope =
	    OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	otlp_kv rkv[2], *rkvp[2];
	otlp_any rval[2];
	otlp_span *spans = xcalloc(n, sizeof(*spans));
	otlp_span **spanp = xcalloc(n, sizeof(*spanp));
	otlp_kv *kvs = xcalloc(n * PLAT_SPAN_ATTRS + 1, sizeof(*kvs));
	otlp_kv **kvp = xcalloc(n * PLAT_SPAN_ATTRS + 1, sizeof(*kvp));
	otlp_any *vals = xcalloc(n * PLAT_SPAN_ATTRS + 1, sizeof(*vals));
	Opentelemetry__Proto__Trace__V1__Status *sts = xcalloc(n,
	    sizeof(*sts));
	struct plat_call_opts co = { .deadline_ms = deadline_ms };
	ProtobufCMessage *resp = NULL;
	int code;

	kv_string(&rkv[0], &rval[0], "service.name", T.service);
	kv_string(&rkv[1], &rval[1], "service.instance.id", T.node);
	rkvp[0] = &rkv[0];
	rkvp[1] = &rkv[1];
	res.attributes = rkvp;
	res.n_attributes = 2;
	rs.resource = &res;
	scope.name = "platform";
	scope.version = PLATFORM_VERSION;
	ss.scope = &scope;
	for (size_t i = 0; i < n; i++) {
		to_otlp(&items[i]->span, &spans[i],
		    &kvs[i * PLAT_SPAN_ATTRS], &kvp[i * PLAT_SPAN_ATTRS],
		    &vals[i * PLAT_SPAN_ATTRS], &sts[i]);
		spanp[i] = &spans[i];
	}
	ss.spans = spanp;
	ss.n_spans = n;
	rs.scope_spans = &ssp;
	rs.n_scope_spans = 1;
	req.resource_spans = &rsp;
	req.n_resource_spans = 1;
	code = plat_client_call_addr(T.client, addr,
	    EXPORT_METHOD, &req.base,
	    &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor,
	    &resp, &co, err, errlen);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	free(spans);
	free(spanp);
	free(kvs);
	free(kvp);
	free(vals);
	free(sts);
	return code;
}

/* The trace id's first 8 bytes: already random. */
static uint64_t
trace_key(const struct plat_span *s)
{
	uint64_t k;

	memcpy(&k, s->ctx.trace_id, sizeof(k));
	return k;
}

/*
 * A batch to the endpoint. With "discovery" and several trace-srv
 * nodes, every span of a trace must reach the same node (its tail
 * decision needs the whole trace): spans are grouped by the node their
 * trace id routes to (plat_client_route), one Export per node. Any
 * failure leaves the whole batch queued for a resend, which trace-srv
 * stores once.
 */
static int
send_spans(void *arg, struct outbox_item *first, size_t n, int deadline_ms,
    char *err, size_t errlen)
{
	struct span_item **items = xcalloc(n, sizeof(*items));
	struct span_item **grouped;
	char **addrs;
	size_t *group, naddrs = 0;
	struct outbox_item *it = first;
	int code = 0;

	(void)arg;
	for (size_t i = 0; i < n; i++, it = it->next)
		items[i] = (struct span_item *)it;
	if (strcmp(T.endpoint, "discovery") != 0) {
		code = export_spans(items, n, T.endpoint, deadline_ms, err,
		    errlen);
		free(items);
		return code;
	}
	addrs = xcalloc(n, sizeof(*addrs));
	group = xcalloc(n, sizeof(*group));
	for (size_t i = 0; i < n && code == 0; i++) {
		char *a = NULL;
		size_t g;

		code = plat_client_route(T.client, "trace",
		    trace_key(&items[i]->span), deadline_ms, &a, err, errlen);
		if (code != 0)
			break;
		for (g = 0; g < naddrs && strcmp(addrs[g], a) != 0; g++)
			;
		if (g == naddrs)
			addrs[naddrs++] = a;
		else
			free(a);
		group[i] = g;
	}
	grouped = xcalloc(n, sizeof(*grouped));
	for (size_t g = 0; g < naddrs && code == 0; g++) {
		size_t m = 0;

		for (size_t i = 0; i < n; i++)
			if (group[i] == g)
				grouped[m++] = items[i];
		code = export_spans(grouped, m, addrs[g], deadline_ms, err,
		    errlen);
	}
	for (size_t g = 0; g < naddrs; g++)
		free(addrs[g]);
	free(grouped);
	free(addrs);
	free(group);
	free(items);
	return code;
}

static void
free_span(void *arg, struct outbox_item *it)
{
	(void)arg;
	free(it);
}

static const struct outbox_ops span_ops = {
	.what = "spans",
	.to = "the trace endpoint",
	.send = send_spans,
	.free_item = free_span,
};

static double
gauge_stat(void *arg)
{
	struct outbox_stats st;

	if (T.out == NULL)
		return 0;
	outbox_stats(T.out, &st);
	switch ((int)(intptr_t)arg) {
	case 0: return (double)st.sent;
	case 1: return (double)st.dropped;
	case 2: return (double)st.send_failures;
	default: return (double)st.buffered;
	}
}

void
plat_trace_setup(const char *service, const char *node,
    const char *endpoint, double sample, bool tail, struct metrics *metrics)
{
	static const struct outbox_limits lim = {
		.max_items = SPANS_MAX,
		.max_bytes = SPANS_BYTES_MAX,
		.batch_max = BATCH_MAX,
		.call_ms = CALL_MS,
		.backoff_min_ms = BACKOFF_MIN_MS,
		.backoff_max_ms = BACKOFF_MAX_MS,
		.linger_ms = LINGER_MS,
	};

	T.service = xstrdup(service);
	T.node = xstrdup(node);
	T.endpoint = xstrdup(endpoint);
	T.sample = sample;
	T.tail = tail;
	if (endpoint == NULL || endpoint[0] == '\0')
		return;         /* context only: nothing is recorded */
	T.out = outbox_new(&span_ops, NULL, &lim);
	if (metrics == NULL)
		return;
	metrics_counter_fn(metrics, "platform_trace_spans_sent_total",
	    "Spans the trace endpoint took.", gauge_stat, (void *)0);
	metrics_counter_fn(metrics, "platform_trace_spans_dropped_total",
	    "Spans dropped: the buffer was full (the trace endpoint away) or "
	    "the server was stopping.", gauge_stat, (void *)1);
	metrics_counter_fn(metrics, "platform_trace_send_failures_total",
	    "Batches of spans the trace endpoint did not take; they stay "
	    "buffered and are sent again.", gauge_stat, (void *)2);
	metrics_gauge_fn(metrics, "platform_trace_spans_buffered",
	    "Spans waiting to be sent.", gauge_stat, (void *)3);
}

void
plat_trace_connect(struct plat_client *client)
{
	if (T.out == NULL || client == NULL || T.connected)
		return;
	T.client = client;
	T.connected = outbox_start(T.out) == 0;
}

void
plat_trace_stop(int flush_ms)
{
	if (T.out != NULL)
		outbox_stop(T.out, flush_ms);
}

void
plat_trace_free(void)
{
	outbox_free(T.out);
	free(T.service);
	free(T.node);
	free(T.endpoint);
	memset(&T, 0, sizeof(T));
}
