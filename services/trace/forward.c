/*
 * forward: the upstream exporter (see forward.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "forward.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "platform/client.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/outbox.h"
#include "platform/xalloc.h"

#define EXPORT_METHOD \
	"/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define SPANS_MAX 50000
#define BYTES_MAX ((size_t)64 << 20)
#define BATCH_MAX 512
#define CALL_MS 5000

typedef Opentelemetry__Proto__Trace__V1__Span otlp_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue otlp_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue otlp_any;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans otlp_rs;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans otlp_ss;

struct fwd_item {
	struct outbox_item item;        /* first */
	struct span_row row;
	uint8_t trace_id[16], span_id[8], parent_id[8];
	char buf[];
};

static struct {
	char *address;
	plat_client *client;
	struct outbox *out;
} F;

static void
hex_decode(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;

		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];

			v = v << 4 | (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
		}
		out[i] = (uint8_t)v;
	}
}

static otlp_kv *
kv_new(const char *key, const char *value)
{
	otlp_kv *kv = xcalloc(1, sizeof(*kv));
	otlp_any *v = xcalloc(1, sizeof(*v));

	opentelemetry__proto__common__v1__key_value__init(kv);
	opentelemetry__proto__common__v1__any_value__init(v);
	kv->key = xstrdup(key);
	v->value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
	v->string_value = xstrdup(value);
	kv->value = v;
	return kv;
}

static void
kv_free(otlp_kv *kv)
{
	free(kv->value->string_value);
	free(kv->value);
	free(kv->key);
	free(kv);
}

/* The span of it (its attributes' text forms as strings). */
static void
to_otlp(struct fwd_item *it, otlp_span *o,
    Opentelemetry__Proto__Trace__V1__Status *st)
{
	const struct span_row *r = &it->row;
	json_t *a = json_loads(r->attrs, 0, NULL);
	const char *k;
	json_t *v;

	opentelemetry__proto__trace__v1__span__init(o);
	opentelemetry__proto__trace__v1__status__init(st);
	hex_decode(r->trace_id, it->trace_id, 16);
	hex_decode(r->span_id, it->span_id, 8);
	o->trace_id = (ProtobufCBinaryData){ 16, it->trace_id };
	o->span_id = (ProtobufCBinaryData){ 8, it->span_id };
	if (r->parent_id[0] != '\0') {
		hex_decode(r->parent_id, it->parent_id, 8);
		o->parent_span_id = (ProtobufCBinaryData){ 8, it->parent_id };
	}
	o->trace_state = (char *)r->trace_state;
	o->flags = 0x101;               /* kept: sampled */
	o->name = (char *)r->name;
	o->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)r->kind;
	o->start_time_unix_nano = (uint64_t)r->start_ns;
	o->end_time_unix_nano = (uint64_t)(r->start_ns + r->duration_ns);
	if (json_is_object(a)) {
		o->attributes = xcalloc(json_object_size(a) + 1,
		    sizeof(*o->attributes));
		json_object_foreach(a, k, v)
			o->attributes[o->n_attributes++] = kv_new(k,
			    json_is_string(v) ? json_string_value(v) : "");
	}
	json_decref(a);
	if (r->error) {
		st->code =
		    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
		st->message = (char *)r->status_message;
	}
	o->status = st;
}

/* One ResourceSpans per run of spans of one service and node. */
static int
send_spans(void *arg, struct outbox_item *first, size_t n, int deadline_ms,
    char *err, size_t errlen)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest
	    req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	otlp_span *spans = xcalloc(n, sizeof(*spans));
	otlp_span **spanp = xcalloc(n, sizeof(*spanp));
	Opentelemetry__Proto__Trace__V1__Status *sts = xcalloc(n, sizeof(*sts));
	otlp_rs *rs = xcalloc(n, sizeof(*rs)), **rsp = xcalloc(n, sizeof(*rsp));
	otlp_ss *ss = xcalloc(n, sizeof(*ss)), **ssp = xcalloc(n, sizeof(*ssp));
	Opentelemetry__Proto__Resource__V1__Resource *res = xcalloc(n,
	    sizeof(*res));
	otlp_kv **rkv = xcalloc(2 * n, sizeof(*rkv));
	struct plat_call_opts co = { .deadline_ms = deadline_ms };
	ProtobufCMessage *resp = NULL;
	struct outbox_item *it = first;
	const struct span_row *prev = NULL;
	size_t nrs = 0;
	int code;

	(void)arg;
	for (size_t i = 0; i < n; i++, it = it->next) {
		struct fwd_item *f = (struct fwd_item *)it;

		to_otlp(f, &spans[i], &sts[i]);
		spanp[i] = &spans[i];
		if (prev == NULL || strcmp(prev->service, f->row.service) != 0 ||
		    strcmp(prev->node, f->row.node) != 0) {
			size_t r = nrs++;

			opentelemetry__proto__trace__v1__resource_spans__init(
			    &rs[r]);
			opentelemetry__proto__trace__v1__scope_spans__init(&ss[r]);
			opentelemetry__proto__resource__v1__resource__init(
			    &res[r]);
			rkv[2 * r] = kv_new("service.name", f->row.service);
			rkv[2 * r + 1] = kv_new("service.instance.id",
			    f->row.node);
			res[r].attributes = &rkv[2 * r];
			res[r].n_attributes = f->row.node[0] != '\0' ? 2 : 1;
			rs[r].resource = &res[r];
			ssp[r] = &ss[r];
			rs[r].scope_spans = &ssp[r];
			rs[r].n_scope_spans = 1;
			ss[r].spans = &spanp[i];
			rsp[r] = &rs[r];
		}
		ss[nrs - 1].n_spans++;
		prev = &f->row;
	}
	req.resource_spans = rsp;
	req.n_resource_spans = nrs;
	code = plat_client_call_addr(F.client, F.address, EXPORT_METHOD,
	    &req.base,
	    &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor,
	    &resp, &co, err, errlen);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < spans[i].n_attributes; k++)
			kv_free(spans[i].attributes[k]);
		free(spans[i].attributes);
	}
	for (size_t r = 0; r < 2 * nrs; r++)
		kv_free(rkv[r]);
	free(rkv);
	free(res);
	free(ss);
	free(ssp);
	free(rs);
	free(rsp);
	free(sts);
	free(spanp);
	free(spans);
	return code;
}

static void
free_item(void *arg, struct outbox_item *it)
{
	(void)arg;
	free(it);
}

static const struct outbox_ops fwd_ops = {
	.what = "forwarded spans",
	.to = "the --forward endpoint",
	.send = send_spans,
	.free_item = free_item,
};

static double
stat(void *arg)
{
	struct outbox_stats st;

	outbox_stats(F.out, &st);
	switch ((int)(intptr_t)arg) {
	case 0: return (double)st.sent;
	case 1: return (double)st.dropped;
	case 2: return (double)st.send_failures;
	default: return (double)st.buffered;
	}
}

int
forward_start(const char *address, struct metrics *metrics)
{
	static const struct outbox_limits lim = {
		.max_items = SPANS_MAX,
		.max_bytes = BYTES_MAX,
		.batch_max = BATCH_MAX,
		.call_ms = CALL_MS,
		.backoff_min_ms = 250,
		.backoff_max_ms = 5000,
	};

	if (address == NULL || address[0] == '\0')
		return 0;
	F.address = xstrdup(address);
	F.client = plat_client_new(&(struct plat_client_opts){
	    .default_deadline_ms = CALL_MS });
	F.out = outbox_new(&fwd_ops, NULL, &lim);
	if (F.client == NULL || F.out == NULL || outbox_start(F.out) != 0) {
		log_error("trace: cannot start forwarding", "forward", address);
		forward_stop(0);
		return -1;
	}
	metrics_counter_fn(metrics, "trace_forward_spans_sent_total",
	    "Spans the --forward endpoint took.", stat, (void *)0);
	metrics_counter_fn(metrics, "trace_forward_spans_dropped_total",
	    "Spans not forwarded: the buffer was full (the endpoint away) "
	    "or trace-srv was stopping.", stat, (void *)1);
	metrics_counter_fn(metrics, "trace_forward_send_failures_total",
	    "Batches the --forward endpoint did not take; they are sent "
	    "again.", stat, (void *)2);
	metrics_gauge_fn(metrics, "trace_forward_spans_buffered",
	    "Spans waiting to be forwarded.", stat, (void *)3);
	return 0;
}

void
forward_stop(int flush_ms)
{
	if (F.out != NULL)
		outbox_stop(F.out, flush_ms);
	outbox_free(F.out);
	plat_client_free(F.client);
	free(F.address);
	memset(&F, 0, sizeof(F));
}

void
forward_rows(struct span_row *const *rows, size_t n)
{
	if (F.out == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct span_row *r = rows[i];
		size_t size = span_row_size(r);
		struct fwd_item *it;

		if (r->refused)
			continue;
		it = xcalloc(1, sizeof(*it) + size);
		span_row_copy(&it->row, r, it->buf);
		it->item.bytes = sizeof(*it) + size;
		(void)outbox_push(F.out, &it->item);
	}
}
