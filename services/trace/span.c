/*
 * span: OTLP spans into rows (see span.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "platform/trace.h"
#include "platform/xalloc.h"
#include "span.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue any_value;
typedef Opentelemetry__Proto__Common__V1__KeyValue key_value;
typedef Opentelemetry__Proto__Trace__V1__Span otlp_span;

#define UNKNOWN_SERVICE "unknown_service"       /* OTel's default */

static bool
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* ---- values ---- */

static json_t *
value_json(const any_value *v)
{
	json_t *j;

	if (v == NULL)
		return json_null();
	switch (v->value_case) {
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
		return json_string(v->string_value);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
		return json_boolean(v->bool_value);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
		return json_integer((json_int_t)v->int_value);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
		return json_real(v->double_value);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
		j = json_array();
		for (size_t i = 0; v->array_value != NULL &&
		    i < v->array_value->n_values; i++)
			json_array_append_new(j,
			    value_json(v->array_value->values[i]));
		return j;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
		j = json_object();
		for (size_t i = 0; v->kvlist_value != NULL &&
		    i < v->kvlist_value->n_values; i++) {
			key_value *kv = v->kvlist_value->values[i];

			json_object_set_new(j, kv->key, value_json(kv->value));
		}
		return j;
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE: {
		char *hex = xcalloc(1, 2 * v->bytes_value.len + 1);

		plat_hex_encode(v->bytes_value.data, v->bytes_value.len, hex);
		j = json_string(hex);
		free(hex);
		return j;
	}
	default:
		return json_string("");
	}
}

char *
span_value_text(const any_value *v)
{
	char num[64];
	json_t *j;
	char *s;

	if (v == NULL)
		return xstrdup("");
	switch (v->value_case) {
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
		return xstrdup(v->string_value);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
		return xstrdup(v->bool_value ? "true" : "false");
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
		snprintf(num, sizeof(num), "%" PRId64, v->int_value);
		return xstrdup(num);
	case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
		snprintf(num, sizeof(num), "%.17g", v->double_value);
		return xstrdup(num);
	default:
		j = value_json(v);
		s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(j);
		return s != NULL ? s : xstrdup("");
	}
}

/* The resource's attribute key as a string, or NULL. */
static const char *
resource_string(const Opentelemetry__Proto__Resource__V1__Resource *r,
    const char *key)
{
	for (size_t i = 0; r != NULL && i < r->n_attributes; i++) {
		const key_value *kv = r->attributes[i];

		if (kv->key != NULL && strcmp(kv->key, key) == 0 &&
		    kv->value != NULL && kv->value->value_case ==
		    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
			return kv->value->string_value;
	}
	return NULL;
}

/* ---- checks ---- */

const char *
span_problem(const otlp_span *s, const struct span_window *w)
{
	if (s->trace_id.len != 16)
		return "trace_id: must be 16 bytes";
	if (all_zero(s->trace_id.data, 16))
		return "trace_id: must not be all zero";
	if (s->span_id.len != 8)
		return "span_id: must be 8 bytes";
	if (all_zero(s->span_id.data, 8))
		return "span_id: must not be all zero";
	if (s->parent_span_id.len != 0 && s->parent_span_id.len != 8)
		return "parent_span_id: must be empty or 8 bytes";
	if (s->name == NULL || s->name[0] == '\0')
		return "name: required";
	if (strlen(s->name) > SPAN_NAME_MAX)
		return "name: longer than 1024 bytes";
	if (s->kind < 0 || s->kind > 5)
		return "kind: not a SpanKind";
	if (s->start_time_unix_nano == 0)
		return "start_time_unix_nano: required";
	if (s->end_time_unix_nano < s->start_time_unix_nano)
		return "end_time_unix_nano: before start_time_unix_nano";
	if (s->start_time_unix_nano > (uint64_t)INT64_MAX ||
	    s->end_time_unix_nano > (uint64_t)INT64_MAX)
		return "start_time_unix_nano: out of range";
	if ((int64_t)s->start_time_unix_nano < w->min_ns)
		return "start_time_unix_nano: older than the retention";
	if ((int64_t)s->start_time_unix_nano >= w->max_ns)
		return "start_time_unix_nano: too far in the future";
	if (s->n_attributes > SPAN_ATTRS_MAX)
		return "attributes: more than 128";
	for (size_t i = 0; i < s->n_attributes; i++)
		if (s->attributes[i]->key == NULL ||
		    s->attributes[i]->key[0] == '\0')
			return "attributes: a key is empty";
	return NULL;
}

static void
reject(struct span_batch *b, const char *why, const otlp_span *s)
{
	char id[33] = "";

	if (s != NULL && s->span_id.len == 8)
		plat_hex_encode(s->span_id.data, 8, id);
	if (b->rejected++ == 0)
		snprintf(b->first_error, sizeof(b->first_error), "span %s: %s",
		    id[0] != '\0' ? id : "?", why);
}

/* The attributes as a JSON object of text values; NULL when too big. */
static char *
attrs_json(const otlp_span *s)
{
	json_t *o = json_object();
	char *out;

	for (size_t i = 0; i < s->n_attributes; i++) {
		const key_value *kv = s->attributes[i];
		char *text;

		text = span_value_text(kv->value);
		json_object_set_new(o, kv->key, json_string(text));
		free(text);
	}
	out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (out != NULL && strlen(out) > SPAN_ATTRS_JSON_MAX) {
		free(out);
		return NULL;
	}
	return out;
}

static void
add_span(struct span_batch *b, const otlp_span *s, const char *service,
    const char *node, const struct span_window *w)
{
	const char *why = span_problem(s, w);
	struct span_row *r;
	char *attrs;

	if (why != NULL) {
		reject(b, why, s);
		return;
	}
	if ((attrs = attrs_json(s)) == NULL) {
		reject(b, "attributes: over 64 KiB", s);
		return;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->rows = xrealloc(b->rows, b->cap * sizeof(*b->rows));
	}
	r = &b->rows[b->n++];
	memset(r, 0, sizeof(*r));
	plat_hex_encode(s->trace_id.data, 16, r->trace_id);
	plat_hex_encode(s->span_id.data, 8, r->span_id);
	if (s->parent_span_id.len == 8 && !all_zero(s->parent_span_id.data, 8))
		plat_hex_encode(s->parent_span_id.data, 8, r->parent_id);
	r->service = service;
	r->node = node != NULL ? node : "";
	r->name = s->name;
	r->kind = (int)s->kind;
	r->start_ns = (int64_t)s->start_time_unix_nano;
	r->duration_ns = (int64_t)(s->end_time_unix_nano -
	    s->start_time_unix_nano);
	r->error = s->status != NULL && s->status->code ==
	    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
	r->status_message = s->status != NULL && s->status->message != NULL ?
	    s->status->message : "";
	r->trace_state = s->trace_state != NULL ? s->trace_state : "";
	r->unsampled = (s->flags & SPAN_FLAGS_KNOWN) != 0 &&
	    (s->flags & SPAN_FLAGS_SAMPLED) == 0;
	r->attrs = attrs;
}

void
span_batch_add(struct span_batch *b,
    const Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req,
    const struct span_window *w)
{
	for (size_t i = 0; i < req->n_resource_spans; i++) {
		const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs =
		    req->resource_spans[i];
		const char *service = resource_string(rs->resource,
		    "service.name");
		const char *node = resource_string(rs->resource,
		    "service.instance.id");

		if (service == NULL || service[0] == '\0')
			service = UNKNOWN_SERVICE;
		for (size_t j = 0; j < rs->n_scope_spans; j++)
			for (size_t k = 0; k < rs->scope_spans[j]->n_spans; k++)
				add_span(b, rs->scope_spans[j]->spans[k],
				    service, node, w);
	}
}

#define ROW_STRINGS 6

static void
row_strings(const struct span_row *r, const char **s)
{
	s[0] = r->service;
	s[1] = r->node;
	s[2] = r->name;
	s[3] = r->status_message;
	s[4] = r->trace_state;
	s[5] = r->attrs;
}

size_t
span_row_size(const struct span_row *r)
{
	const char *s[ROW_STRINGS];
	size_t total = 0;

	row_strings(r, s);
	for (size_t i = 0; i < ROW_STRINGS; i++)
		total += strlen(s[i]) + 1;
	return total;
}

void
span_row_copy(struct span_row *dst, const struct span_row *src, char *buf)
{
	const char *s[ROW_STRINGS];
	char *d[ROW_STRINGS];

	row_strings(src, s);
	*dst = *src;
	for (size_t i = 0; i < ROW_STRINGS; i++) {
		size_t n = strlen(s[i]) + 1;

		memcpy(buf, s[i], n);
		d[i] = buf;
		buf += n;
	}
	dst->service = d[0];
	dst->node = d[1];
	dst->name = d[2];
	dst->status_message = d[3];
	dst->trace_state = d[4];
	dst->attrs = d[5];
}

void
span_batch_free(struct span_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->rows[i].attrs);
	free(b->rows);
	memset(b, 0, sizeof(*b));
}
