/*
 * trace-srv's pure logic: the search compiler (services/trace/search.c)
 * and the checks that turn OTLP spans into rows (span.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "search.h"
#include "span.h"
#include "tail.h"

typedef Opentelemetry__Proto__Trace__V1__Span otlp_span;

static void
test_search_minimal(void **state)
{
	struct search_query q = { .start_ms = 1000, .end_ms = 2000,
	    .limit = 21 };
	struct search_sql s;

	(void)state;
	search_build(&q, &s);
	assert_int_equal(s.nparams, 3);
	assert_string_equal(s.values[0], "1000");
	assert_string_equal(s.values[1], "2000");
	assert_string_equal(s.values[2], "21");
	assert_null(strstr(s.sql, "service ="));
	assert_null(strstr(s.sql, "HAVING"));
	assert_non_null(strstr(s.sql, "start_at >= to_timestamp($1"));
	search_sql_free(&s);
}

static void
test_search_every_filter(void **state)
{
	const char *keys[] = { "user", "q\"uote" };
	const char *vals[] = { "ann'; DROP TABLE x; --", "v" };
	struct search_query q = {
		.service = "svc", .operation = "op",
		.attr_keys = keys, .attr_values = vals, .nattrs = 2,
		.min_duration_ns = 5, .max_duration_ns = 9,
		.errors_only = true, .start_ms = 1, .end_ms = 2, .limit = 4,
		.has_after = true, .after_t = 77,
		.after_trace = "0123456789abcdef0123456789abcdef",
	};
	struct search_sql s;

	(void)state;
	search_build(&q, &s);
	assert_int_equal(s.nparams, 10);
	assert_string_equal(s.values[2], "svc");
	assert_string_equal(s.values[3], "op");
	/* Attribute pairs become one JSON object, bound. */
	assert_string_equal(s.values[4],
	    "{\"user\":\"ann'; DROP TABLE x; --\",\"q\\\"uote\":\"v\"}");
	assert_string_equal(s.values[5], "5");
	assert_string_equal(s.values[6], "9");
	assert_string_equal(s.values[7], "77");
	assert_non_null(strstr(s.sql, " AND error"));
	assert_non_null(strstr(s.sql, "attributes @> $5::jsonb"));
	assert_non_null(strstr(s.sql, "HAVING (max(start_ns), trace_id) < ($8"));
	assert_non_null(strstr(s.sql, "LIMIT $10::integer"));
	/* Nothing the caller gave is in the text. */
	assert_null(strstr(s.sql, "DROP"));
	assert_null(strstr(s.sql, "svc"));
	search_sql_free(&s);
}

static void
test_page_keys(void **state)
{
	char key[96], id[33];
	int64_t t;

	(void)state;
	search_key_format(123, "0123456789abcdef0123456789abcdef", key,
	    sizeof(key));
	assert_int_equal(search_key_parse(key, &t, id), 0);
	assert_int_equal(t, 123);
	assert_string_equal(id, "0123456789abcdef0123456789abcdef");
	assert_int_equal(search_key_parse("x:0123", &t, id), -1);
	assert_int_equal(search_key_parse(":0123456789abcdef0123456789abcdef",
	    &t, id), -1);
	assert_int_equal(search_key_parse("-1:0123456789abcdef0123456789abcdef",
	    &t, id), -1);
	assert_int_equal(search_key_parse("5", &t, id), -1);
}

static void
test_hex_id(void **state)
{
	char out[33];

	(void)state;
	assert_int_equal(search_hex_id("ABCDEF0123456789abcdef0123456789", 32,
	    out), 0);
	assert_string_equal(out, "abcdef0123456789abcdef0123456789");
	assert_int_equal(search_hex_id("00000000000000000000000000000000", 32,
	    out), -1);
	assert_int_equal(search_hex_id("abc", 32, out), -1);
	assert_int_equal(search_hex_id("zbcdef0123456789abcdef0123456789", 32,
	    out), -1);
	assert_int_equal(search_hex_id(NULL, 32, out), -1);
}

static uint8_t tid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16 };
static uint8_t sid[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void
good_span(otlp_span *s)
{
	opentelemetry__proto__trace__v1__span__init(s);
	s->trace_id.data = tid;
	s->trace_id.len = 16;
	s->span_id.data = sid;
	s->span_id.len = 8;
	s->name = "op";
	s->start_time_unix_nano = 1000;
	s->end_time_unix_nano = 2000;
}

static void
test_span_problems(void **state)
{
	struct span_window w = { 500, 5000 };
	uint8_t zero[16] = { 0 };
	otlp_span s;

	(void)state;
	good_span(&s);
	assert_null(span_problem(&s, &w));
	s.trace_id.len = 15;
	assert_string_equal(span_problem(&s, &w), "trace_id: must be 16 bytes");
	good_span(&s);
	s.trace_id.data = zero;
	assert_non_null(strstr(span_problem(&s, &w), "all zero"));
	good_span(&s);
	s.span_id.data = zero;
	assert_non_null(strstr(span_problem(&s, &w), "span_id"));
	good_span(&s);
	s.parent_span_id.len = 4;
	s.parent_span_id.data = sid;
	assert_non_null(strstr(span_problem(&s, &w), "parent_span_id"));
	good_span(&s);
	s.name = "";
	assert_string_equal(span_problem(&s, &w), "name: required");
	good_span(&s);
	s.end_time_unix_nano = 999;
	assert_non_null(strstr(span_problem(&s, &w), "end_time_unix_nano"));
	good_span(&s);
	s.start_time_unix_nano = 100;
	assert_non_null(strstr(span_problem(&s, &w), "retention"));
	good_span(&s);
	s.start_time_unix_nano = 5000;
	s.end_time_unix_nano = 6000;
	assert_non_null(strstr(span_problem(&s, &w), "future"));
	good_span(&s);
	s.kind = 7;
	assert_non_null(strstr(span_problem(&s, &w), "kind"));
}

static void
test_value_text(void **state)
{
	Opentelemetry__Proto__Common__V1__AnyValue v, a[2], *ap[2];
	Opentelemetry__Proto__Common__V1__ArrayValue arr;
	char *t;

	(void)state;
	opentelemetry__proto__common__v1__any_value__init(&v);
	v.value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
	v.int_value = -42;
	assert_string_equal(t = span_value_text(&v), "-42");
	free(t);
	v.value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
	v.bool_value = 1;
	assert_string_equal(t = span_value_text(&v), "true");
	free(t);
	for (int i = 0; i < 2; i++) {
		opentelemetry__proto__common__v1__any_value__init(&a[i]);
		a[i].value_case =
		    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
		a[i].string_value = i ? "b" : "a";
		ap[i] = &a[i];
	}
	opentelemetry__proto__common__v1__array_value__init(&arr);
	arr.values = ap;
	arr.n_values = 2;
	v.value_case =
	    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
	v.array_value = &arr;
	assert_string_equal(t = span_value_text(&v), "[\"a\",\"b\"]");
	free(t);
	assert_string_equal(t = span_value_text(NULL), "");
	free(t);
}

/* ---- the tail decision ---- */

static size_t flushed;
static char flushed_trace[33];

static void
count_flush(void *arg, struct span_row **rows, size_t n)
{
	(void)arg;
	flushed += n;
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(rows[i]->service, "svc");
		assert_string_equal(rows[i]->attrs, "{\"k\":\"v\"}");
		memcpy(flushed_trace, rows[i]->trace_id, 33);
	}
}

static struct span_row
row(const char *trace, bool error, int64_t duration_ns)
{
	struct span_row r = { .service = "svc", .node = "n", .name = "op",
	    .status_message = "", .trace_state = "", .attrs = "{\"k\":\"v\"}",
	    .error = error, .duration_ns = duration_ns, .unsampled = true };

	snprintf(r.trace_id, sizeof(r.trace_id), "%s", trace);
	snprintf(r.span_id, sizeof(r.span_id), "0000000000000001");
	return r;
}

static struct tail *
new_tail(size_t max_spans)
{
	flushed = 0;
	return tail_new(&(struct tail_opts){ .window_ms = 100,
	    .slower_than_ns = 1000, .max_spans = max_spans,
	    .flush = count_flush });
}

static void
test_tail_matters(void **state)
{
	struct span_row ok = row("a", false, 999), err = row("a", true, 1),
	    slow = row("a", false, 1000);

	(void)state;
	assert_false(tail_matters(&ok, 1000));
	assert_true(tail_matters(&err, 1000));
	assert_true(tail_matters(&slow, 1000));
	assert_false(tail_matters(&slow, 0));   /* 0: latency keeps none */
}

static void
test_tail_ordinary_discarded(void **state)
{
	struct tail *t = new_tail(100);
	struct span_row r[2] = { row("a", false, 5), row("a", false, 6) };
	struct tail_stats st;

	(void)state;
	assert_int_equal(tail_offer(t, r, 2, 0), 0);
	tail_tick(t, 50);               /* within the window: held */
	tail_stats(t, &st);
	assert_int_equal(st.traces_held, 1);
	assert_int_equal(st.spans_held, 2);
	tail_tick(t, 100);
	tail_stats(t, &st);
	assert_int_equal(flushed, 0);
	assert_int_equal(st.discarded, 1);
	assert_int_equal(st.spans_discarded, 2);
	assert_int_equal(st.traces_held, 0);
	assert_int_equal(st.spans_held, 0);
	tail_free(t);
}

static void
test_tail_error_keeps_whole_trace(void **state)
{
	struct tail *t = new_tail(100);
	struct span_row a[2] = { row("a", false, 5), row("a", true, 5) };
	struct span_row b = row("b", false, 5), late = row("a", false, 1);
	struct tail_stats st;

	(void)state;
	tail_offer(t, &a[0], 1, 0);
	tail_offer(t, &b, 1, 0);
	tail_offer(t, &a[1], 1, 10);
	tail_tick(t, 20);               /* kept at once, both spans */
	assert_int_equal(flushed, 2);
	assert_string_equal(flushed_trace, "a");
	/* A span of it arriving late follows it. */
	tail_offer(t, &late, 1, 30);
	tail_tick(t, 40);
	assert_int_equal(flushed, 3);
	tail_tick(t, 200);
	tail_stats(t, &st);
	assert_int_equal(st.kept, 1);
	assert_int_equal(st.discarded, 1);      /* b */
	assert_int_equal(st.traces_held, 0);
	assert_int_equal(flushed, 3);
	tail_free(t);
}

static void
test_tail_slow_kept_and_bounded(void **state)
{
	struct tail *t = new_tail(3);
	struct span_row r[5] = { row("a", false, 5000), row("b", false, 1),
	    row("c", false, 1), row("d", false, 1), row("e", false, 1) };
	struct tail_stats st;

	(void)state;
	assert_int_equal(tail_offer(t, r, 5, 0), 2);    /* d, e: no room */
	tail_tick(t, 1000);
	tail_stats(t, &st);
	assert_int_equal(flushed, 1);
	assert_int_equal(st.kept, 1);
	assert_int_equal(st.discarded, 2);
	assert_int_equal(st.spans_refused, 2);
	/* Room again. */
	assert_int_equal(tail_offer(t, &r[3], 1, 1000), 0);
	tail_free(t);                   /* held spans freed */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_search_minimal),
		cmocka_unit_test(test_search_every_filter),
		cmocka_unit_test(test_page_keys),
		cmocka_unit_test(test_hex_id),
		cmocka_unit_test(test_span_problems),
		cmocka_unit_test(test_value_text),
		cmocka_unit_test(test_tail_matters),
		cmocka_unit_test(test_tail_ordinary_discarded),
		cmocka_unit_test(test_tail_error_keeps_whole_trace),
		cmocka_unit_test(test_tail_slow_kept_and_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
