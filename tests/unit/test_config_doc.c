/* Unit tests for config-srv's document logic: input checks, canonical
 * JSON, selectors, the merge down a namespace chain, and diffs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "doc.h"

static json_t *
J(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);

	assert_non_null(v);
	return v;
}

/* Asserts the canonical text of v and drops it. */
static void
assert_dump(const json_t *v, const char *want)
{
	char *got = doc_dump(v);

	assert_string_equal(got, want);
	free(got);
}

/* ---- input checks ---- */

static void
test_namespace_syntax(void **state)
{
	static const char *const good[] = { "global", "prod", "prod/eu",
	    "a", "0", "a-b_c/d9", "x/y/z/w" };
	static const char *const bad[] = { "", "Prod", "/prod", "prod/",
	    "prod//eu", "-x", "_x", "prod/-eu", "prod eu", "prod.eu",
	    "x';drop", "é" };
	char err[256], big[DOC_NAMESPACE_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(doc_check_namespace("namespace", good[i], err,
		    sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(doc_check_namespace("namespace", bad[i], err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, "namespace"));
	}
	memset(big, 'a', sizeof(big) - 1);
	big[DOC_NAMESPACE_MAX] = '\0';
	assert_int_equal(doc_check_namespace("ns", big, err, sizeof(err)), 0);
	big[DOC_NAMESPACE_MAX] = 'a';
	big[DOC_NAMESPACE_MAX + 1] = '\0';
	assert_int_equal(doc_check_namespace("ns", big, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "at most 128"));
	/* The field name given is the one reported. */
	assert_int_equal(doc_check_namespace("namespaces[3]", "A", err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "namespaces[3]"));
}

static void
test_path_syntax(void **state)
{
	static const char *const good[] = { "payments/limits", "a", "A-b_C",
	    "x/Y/z-9", "-", "_" };
	static const char *const bad[] = { "", "/a", "a/", "a//b", "a.b",
	    "a b", "a;b", "a'b", "a\"b", "a%b" };
	char err[256], big[DOC_PATH_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(doc_check_path("path", good[i], err,
		    sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(doc_check_path("path", bad[i], err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, "path"));
	}
	assert_int_equal(doc_check_path("path", "a.b", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "'.'"));
	memset(big, 'p', sizeof(big) - 1);
	big[DOC_PATH_MAX] = '\0';
	assert_int_equal(doc_check_path("path", big, err, sizeof(err)), 0);
	big[DOC_PATH_MAX] = 'p';
	big[DOC_PATH_MAX + 1] = '\0';
	assert_int_equal(doc_check_path("path", big, err, sizeof(err)), -1);

	assert_int_equal(doc_check_prefix("prefix", "", err, sizeof(err)), 0);
	assert_int_equal(doc_check_prefix("prefix", "payments/", err,
	    sizeof(err)), 0);
	assert_int_equal(doc_check_prefix("prefix", "pay", err, sizeof(err)),
	    0);
	assert_int_equal(doc_check_prefix("prefix", "a.b", err, sizeof(err)),
	    -1);
	assert_int_equal(doc_check_prefix("prefix", "a'", err, sizeof(err)),
	    -1);
	assert_int_equal(doc_check_prefix("prefix", "/a", err, sizeof(err)),
	    -1);
	assert_int_equal(doc_check_prefix("prefix", "a//b", err,
	    sizeof(err)), -1);

	assert_int_equal(doc_check_length("author", "abc", 3, err,
	    sizeof(err)), 0);
	assert_int_equal(doc_check_length("author", "abcd", 3, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "author"));
}

static void
test_split_address(void **state)
{
	char path[DOC_PATH_MAX + 1], err[256];
	const char *sel;

	(void)state;
	assert_int_equal(doc_split_address("payments/limits", path, &sel, err,
	    sizeof(err)), 0);
	assert_string_equal(path, "payments/limits");
	assert_null(sel);
	assert_int_equal(doc_split_address("payments/limits.daily.max", path,
	    &sel, err, sizeof(err)), 0);
	assert_string_equal(path, "payments/limits");
	assert_string_equal(sel, "daily.max");
	assert_int_equal(doc_split_address("a.0", path, &sel, err,
	    sizeof(err)), 0);
	assert_string_equal(sel, "0");
	/* Empty selector segments, and a bad path before the selector. */
	assert_int_equal(doc_split_address("a.", path, &sel, err,
	    sizeof(err)), -1);
	assert_int_equal(doc_split_address("a..b", path, &sel, err,
	    sizeof(err)), -1);
	assert_int_equal(doc_split_address(".a", path, &sel, err,
	    sizeof(err)), -1);
	assert_int_equal(doc_split_address("a//b.c", path, &sel, err,
	    sizeof(err)), -1);
}

static void
test_chain(void **state)
{
	char chain[DOC_CHAIN_MAX][DOC_NAMESPACE_MAX + 1];
	size_t n;

	(void)state;
	n = doc_chain("prod/eu", chain);
	assert_int_equal(n, 3);
	assert_string_equal(chain[0], "global");
	assert_string_equal(chain[1], "prod");
	assert_string_equal(chain[2], "prod/eu");
	n = doc_chain("global", chain);
	assert_int_equal(n, 1);
	assert_string_equal(chain[0], "global");
	n = doc_chain("global/x", chain);
	assert_int_equal(n, 2);
	assert_string_equal(chain[1], "global/x");
	n = doc_chain("a/b/c/d", chain);
	assert_int_equal(n, 5);
	assert_string_equal(chain[4], "a/b/c/d");
}

/* ---- JSON ---- */

static void
test_parse_and_canonical(void **state)
{
	char err[256], *out, big[DOC_JSON_MAX + 2];
	json_t *v;

	(void)state;
	assert_int_equal(doc_canonical("json", " { \"b\" : [1, 2.5, true,"
	    " null] , \"a\" : \"x\" } ", &out, err, sizeof(err)), 0);
	assert_string_equal(out, "{\"b\":[1,2.5,true,null],\"a\":\"x\"}");
	free(out);
	/* Any JSON value, not only objects. */
	assert_int_equal(doc_canonical("json", "42", &out, err, sizeof(err)),
	    0);
	assert_string_equal(out, "42");
	free(out);
	assert_int_equal(doc_canonical("json", "\"s\"", &out, err,
	    sizeof(err)), 0);
	assert_string_equal(out, "\"s\"");
	free(out);
	/* Reals in their shortest form. */
	assert_int_equal(doc_canonical("json", "[0.1, 100.0, 1e300, 1E-7,"
	    " 0.30000000000000004, -0.0, 1.5]", &out, err, sizeof(err)), 0);
	assert_string_equal(out,
	    "[0.1,100.0,1e300,1e-7,0.30000000000000004,-0.0,1.5]");
	free(out);
	/* Quotes, control characters and SQL survive exactly. */
	assert_int_equal(doc_canonical("json", "\"it's \\\"q\\\"; DROP TABLE"
	    " x; --\\n\\u0001\\u00e9/\"", &out, err, sizeof(err)), 0);
	assert_string_equal(out, "\"it's \\\"q\\\"; DROP TABLE x; --\\n"
	    "\\u0001\xc3\xa9/\"");
	free(out);

	assert_int_equal(doc_parse("json", "", &v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "json"));
	assert_int_equal(doc_parse("json", "{", &v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not valid JSON"));
	assert_int_equal(doc_parse("json", "{\"a\":1,\"a\":2}", &v, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "duplicate"));
	assert_int_equal(doc_parse("json", "[1] x", &v, err, sizeof(err)), -1);

	memset(big, ' ', sizeof(big) - 1);
	big[0] = '1';
	big[DOC_JSON_MAX] = '\0';
	assert_int_equal(doc_parse("json", big, &v, err, sizeof(err)), 0);
	json_decref(v);
	big[DOC_JSON_MAX] = ' ';
	big[DOC_JSON_MAX + 1] = '\0';
	assert_int_equal(doc_parse("json", big, &v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "262144"));
}

static void
test_select(void **state)
{
	json_t *doc = J("{\"daily\":{\"max\":500,\"min\":1},"
	    "\"tiers\":[10,{\"name\":\"gold\"},[7,8]],\"n\":3,"
	    "\"0\":\"zero\"}");
	char err[256];
	json_t *v;

	(void)state;
	assert_non_null(v = doc_select(doc, "daily.max", err, sizeof(err)));
	assert_dump(v, "500");
	assert_non_null(v = doc_select(doc, "daily", err, sizeof(err)));
	assert_dump(v, "{\"max\":500,\"min\":1}");
	assert_non_null(v = doc_select(doc, "tiers.0", err, sizeof(err)));
	assert_dump(v, "10");
	assert_non_null(v = doc_select(doc, "tiers.1.name", err, sizeof(err)));
	assert_dump(v, "\"gold\"");
	assert_non_null(v = doc_select(doc, "tiers.2.1", err, sizeof(err)));
	assert_dump(v, "8");
	/* A numeric segment on an object is a key. */
	assert_non_null(v = doc_select(doc, "0", err, sizeof(err)));
	assert_dump(v, "\"zero\"");

	/* Missing: each names the selector. */
	assert_null(doc_select(doc, "daily.nope", err, sizeof(err)));
	assert_non_null(strstr(err, "daily.nope"));
	assert_non_null(strstr(err, "\"nope\""));
	assert_null(doc_select(doc, "nope", err, sizeof(err)));
	assert_null(doc_select(doc, "tiers.3", err, sizeof(err)));
	assert_non_null(strstr(err, "tiers.3"));
	assert_null(doc_select(doc, "tiers.x", err, sizeof(err)));
	assert_null(doc_select(doc, "tiers.01", err, sizeof(err)));
	assert_null(doc_select(doc, "tiers.-1", err, sizeof(err)));
	assert_null(doc_select(doc, "n.x", err, sizeof(err)));
	assert_non_null(strstr(err, "a number"));
	json_decref(doc);

	doc = J("[\"a\",\"b\"]");
	assert_non_null(v = doc_select(doc, "1", err, sizeof(err)));
	assert_dump(v, "\"b\"");
	json_decref(doc);
	doc = J("7");
	assert_null(doc_select(doc, "a", err, sizeof(err)));
	json_decref(doc);
}

/* ---- merge ---- */

static const char *
source_of(const struct doc_merge *m, const char *key)
{
	return json_string_value(json_object_get(m->sources, key));
}

static void
test_merge_three_levels(void **state)
{
	json_t *g = J("{\"daily\":{\"max\":100,\"min\":1},\"currency\":\"EUR\","
	    "\"rate\":0.5,\"tags\":[\"a\",\"b\"]}");
	json_t *p = J("{\"daily\":{\"max\":500},\"tags\":[\"p\"],"
	    "\"weekly\":7}");
	json_t *e = J("{\"currency\":\"SEK\",\"daily\":{\"min\":5}}");
	struct doc_merge m;

	(void)state;
	doc_merge_init(&m);
	doc_merge_add(&m, g, "global");
	doc_merge_add(&m, p, "prod");
	doc_merge_add(&m, e, "prod/eu");
	/* Most specific wins, objects merge deeply, arrays replace. */
	assert_dump(m.doc, "{\"daily\":{\"max\":500,\"min\":5},"
	    "\"currency\":\"SEK\",\"rate\":0.5,\"tags\":[\"p\"],\"weekly\":7}");
	assert_int_equal(json_object_size(m.sources), 5);
	assert_string_equal(source_of(&m, "daily"), "prod/eu");
	assert_string_equal(source_of(&m, "currency"), "prod/eu");
	assert_string_equal(source_of(&m, "rate"), "global");
	assert_string_equal(source_of(&m, "tags"), "prod");
	assert_string_equal(source_of(&m, "weekly"), "prod");
	/* The inputs are not changed. */
	assert_dump(g, "{\"daily\":{\"max\":100,\"min\":1},\"currency\":\"EUR\","
	    "\"rate\":0.5,\"tags\":[\"a\",\"b\"]}");
	doc_merge_free(&m);

	/* A level missing in the middle. */
	doc_merge_init(&m);
	doc_merge_add(&m, g, "global");
	doc_merge_add(&m, e, "prod/eu");
	assert_dump(m.doc, "{\"daily\":{\"max\":100,\"min\":5},"
	    "\"currency\":\"SEK\",\"rate\":0.5,\"tags\":[\"a\",\"b\"]}");
	assert_string_equal(source_of(&m, "daily"), "prod/eu");
	assert_string_equal(source_of(&m, "tags"), "global");
	doc_merge_free(&m);
	json_decref(g);
	json_decref(p);
	json_decref(e);
}

static void
test_merge_non_objects(void **state)
{
	json_t *obj = J("{\"a\":1}"), *num = J("5"), *obj2 = J("{\"b\":{}}");
	json_t *nested = J("{\"a\":{\"x\":1}}"), *flat = J("{\"a\":2}");
	struct doc_merge m;

	(void)state;
	/* A scalar replaces an object, and sources go with it. */
	doc_merge_init(&m);
	doc_merge_add(&m, obj, "global");
	doc_merge_add(&m, num, "prod");
	assert_dump(m.doc, "5");
	assert_int_equal(json_object_size(m.sources), 0);
	/* An object after a scalar starts afresh. */
	doc_merge_add(&m, obj2, "prod/eu");
	assert_dump(m.doc, "{\"b\":{}}");
	assert_int_equal(json_object_size(m.sources), 1);
	assert_string_equal(source_of(&m, "b"), "prod/eu");
	doc_merge_free(&m);

	/* A scalar replaces a nested object, and the other way round. */
	doc_merge_init(&m);
	doc_merge_add(&m, nested, "global");
	doc_merge_add(&m, flat, "prod");
	assert_dump(m.doc, "{\"a\":2}");
	doc_merge_add(&m, nested, "prod/eu");
	assert_dump(m.doc, "{\"a\":{\"x\":1}}");
	assert_string_equal(source_of(&m, "a"), "prod/eu");
	doc_merge_free(&m);
	json_decref(obj);
	json_decref(num);
	json_decref(obj2);
	json_decref(nested);
	json_decref(flat);
}

/* ---- diff ---- */

static void
assert_change(const struct doc_change *c, enum doc_op op, const char *ptr,
    const char *old_json, const char *new_json)
{
	assert_int_equal(c->op, op);
	assert_string_equal(c->pointer, ptr);
	assert_string_equal(c->old_json, old_json);
	assert_string_equal(c->new_json, new_json);
}

static void
test_diff_objects(void **state)
{
	json_t *a = J("{\"daily\":{\"max\":500,\"min\":1},\"tags\":[1,2],"
	    "\"gone\":true,\"same\":{\"x\":1}}");
	json_t *b = J("{\"daily\":{\"max\":600,\"min\":1,\"avg\":3},"
	    "\"tags\":[1,2,3],\"same\":{\"x\":1},\"new\":null}");
	struct doc_diff d;

	(void)state;
	doc_diff(a, b, &d);
	assert_int_equal(d.n, 5);
	/* In key order, recursing into objects; arrays compared whole. */
	assert_change(&d.changes[0], DOC_OP_ADDED, "daily.avg", "", "3");
	assert_change(&d.changes[1], DOC_OP_CHANGED, "daily.max", "500",
	    "600");
	assert_change(&d.changes[2], DOC_OP_REMOVED, "gone", "true", "");
	assert_change(&d.changes[3], DOC_OP_ADDED, "new", "", "null");
	assert_change(&d.changes[4], DOC_OP_CHANGED, "tags", "[1,2]",
	    "[1,2,3]");
	doc_diff_free(&d);

	doc_diff(a, a, &d);
	assert_int_equal(d.n, 0);
	doc_diff_free(&d);
	json_decref(a);
	json_decref(b);
}

static void
test_diff_whole(void **state)
{
	json_t *obj = J("{\"a\":1}"), *num = J("1"), *num2 = J("2");
	json_t *i1 = J("1"), *r1 = J("1.0");
	struct doc_diff d;

	(void)state;
	/* Tombstones: the whole document added or removed. */
	doc_diff(NULL, obj, &d);
	assert_int_equal(d.n, 1);
	assert_change(&d.changes[0], DOC_OP_ADDED, "", "", "{\"a\":1}");
	doc_diff_free(&d);
	doc_diff(obj, NULL, &d);
	assert_int_equal(d.n, 1);
	assert_change(&d.changes[0], DOC_OP_REMOVED, "", "{\"a\":1}", "");
	doc_diff_free(&d);
	doc_diff(NULL, NULL, &d);
	assert_int_equal(d.n, 0);
	doc_diff_free(&d);
	/* Different types or scalars: one change of the whole document. */
	doc_diff(obj, num, &d);
	assert_int_equal(d.n, 1);
	assert_change(&d.changes[0], DOC_OP_CHANGED, "", "{\"a\":1}", "1");
	doc_diff_free(&d);
	doc_diff(num, num2, &d);
	assert_int_equal(d.n, 1);
	assert_change(&d.changes[0], DOC_OP_CHANGED, "", "1", "2");
	doc_diff_free(&d);
	doc_diff(i1, r1, &d);
	assert_int_equal(d.n, 1);
	doc_diff_free(&d);
	json_decref(obj);
	json_decref(num);
	json_decref(num2);
	json_decref(i1);
	json_decref(r1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_namespace_syntax),
		cmocka_unit_test(test_path_syntax),
		cmocka_unit_test(test_split_address),
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_parse_and_canonical),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_merge_three_levels),
		cmocka_unit_test(test_merge_non_objects),
		cmocka_unit_test(test_diff_objects),
		cmocka_unit_test(test_diff_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
