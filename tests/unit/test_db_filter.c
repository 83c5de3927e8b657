/*
 * test_db_filter: db-srv's filter compiler (services/db/filter.c): paths
 * and filters checked with the field at fault named, SQL made only of
 * whitelisted text with every value a bound parameter, the C evaluation
 * Watch uses, and the search statement with its cursor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filter.h"

typedef Platform__Db__V1__Filter F;
typedef Platform__Db__V1__Condition C;

/* Filters built on the heap, freed as one by tree_free. */
static F *
cond(const char *path, int op, const char *value)
{
	F *f = calloc(1, sizeof(*f));
	C *c = calloc(1, sizeof(*c));

	platform__db__v1__filter__init(f);
	platform__db__v1__condition__init(c);
	c->path = strdup(path);
	c->op = (Platform__Db__V1__Operator)op;
	c->value = strdup(value);
	f->condition = c;
	return f;
}

static F *
list(int any, int n, ...)
{
	F *f = calloc(1, sizeof(*f));
	va_list ap;

	platform__db__v1__filter__init(f);
	va_start(ap, n);
	if (any) {
		f->any = calloc((size_t)n, sizeof(*f->any));
		f->n_any = (size_t)n;
	} else {
		f->all = calloc((size_t)n, sizeof(*f->all));
		f->n_all = (size_t)n;
	}
	for (int i = 0; i < n; i++)
		(any ? f->any : f->all)[i] = va_arg(ap, F *);
	va_end(ap);
	return f;
}

static F *
not_(F *k)
{
	F *f = calloc(1, sizeof(*f));

	platform__db__v1__filter__init(f);
	f->not_ = k;
	return f;
}

static void
tree_free(F *f)
{
	if (f == NULL)
		return;
	if (f->condition != NULL) {
		free(f->condition->path);
		free(f->condition->value);
		free(f->condition);
	}
	for (size_t i = 0; i < f->n_all; i++)
		tree_free(f->all[i]);
	for (size_t i = 0; i < f->n_any; i++)
		tree_free(f->any[i]);
	free(f->all);
	free(f->any);
	tree_free(f->not_);
	free(f);
}

enum { EQ = 1, NE, LT, LE, GT, GE, IN, PREFIX, EXISTS, CONTAINS };

/* Whether f matches doc (JSON), in C. */
static bool
matches(F *f, const char *doc)
{
	struct dbf *t;
	char err[256];
	json_t *d = json_loads(doc, 0, NULL);
	bool m;

	assert_non_null(d);
	assert_int_equal(dbf_parse("filter", f, &t, err, sizeof(err)), 0);
	m = dbf_match(t, d);
	dbf_free(t);
	json_decref(d);
	tree_free(f);
	return m;
}

/* The error dbf_parse gives f. */
static void
parse_fails(F *f, const char *want)
{
	struct dbf *t = NULL;
	char err[256] = "";

	assert_int_equal(dbf_parse("filter", f, &t, err, sizeof(err)), -1);
	assert_null(t);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' lacks '%s'", err, want);
	tree_free(f);
}

static void
test_paths(void **state)
{
	struct db_path p;
	char err[256];

	(void)state;
	assert_int_equal(db_path_parse("f", "a.b.0", &p, err, sizeof(err)), 0);
	assert_int_equal(p.n, 3);
	assert_true(p.numeric);
	assert_string_equal(p.array, "{\"a\",\"b\",\"0\"}");
	db_path_free(&p);
	/* Quotes and backslashes stay inside the array literal. */
	assert_int_equal(db_path_parse("f", "x\"y\\z'", &p, err, sizeof(err)),
	    0);
	assert_string_equal(p.array, "{\"x\\\"y\\\\z'\"}");
	db_path_free(&p);
	assert_int_equal(db_path_parse("f", "", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "f: required"));
	assert_int_equal(db_path_parse("f", "a..b", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "segment 2 is empty"));
	assert_int_equal(db_path_parse("f", "a.-1", &p, err, sizeof(err)), -1);
	assert_int_equal(db_path_parse("f", "a\tb", &p, err, sizeof(err)), -1);
	assert_int_equal(db_path_parse("f", "1.2.3.4.5.6.7.8.9.10.11.12.13."
	    "14.15.16.17", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "more than 16"));
}

static void
test_checks(void **state)
{
	(void)state;
	parse_fails(cond("a", 0, "1"), "filter.condition.op");
	parse_fails(cond("a", 42, "1"), "filter.condition.op");
	parse_fails(cond("", EQ, "1"), "filter.condition.path");
	parse_fails(cond("a", EQ, ""), "filter.condition.value: required");
	parse_fails(cond("a", EQ, "{bad"), "filter.condition.value: not valid");
	parse_fails(cond("a", LT, "true"), "number or a string");
	parse_fails(cond("a", IN, "1"), "JSON array");
	parse_fails(cond("a", IN, "[]"), "JSON array");
	parse_fails(cond("a", PREFIX, "1"), "PREFIX takes a string");
	parse_fails(cond("a", EXISTS, "1"), "EXISTS takes");
	parse_fails(list(0, 2, cond("a", EQ, "1"), cond("b", EQ, "")),
	    "filter.all[1].condition.value");
	parse_fails(not_(list(1, 1, cond("a", 0, "1"))),
	    "filter.not.any[0].condition.op");
	{
		F *f = cond("a", EQ, "1");

		f->not_ = cond("b", EQ, "2");
		parse_fails(f, "only one of");
	}
	{
		F *f = cond("a", EQ, "1");

		for (int i = 0; i < DB_FILTER_DEPTH_MAX; i++)
			f = not_(f);
		parse_fails(f, "deeper than");
	}
}

static void
test_match(void **state)
{
	const char *doc = "{\"n\":5,\"s\":\"hello\",\"b\":true,\"z\":null,"
	    "\"tags\":[\"x\",\"y\"],\"o\":{\"k\":[1,2,{\"q\":1}]},\"f\":1.5}";

	(void)state;
	assert_true(matches(cond("n", EQ, "5.0"), doc));
	assert_false(matches(cond("b", EQ, "1"), doc));
	assert_true(matches(cond("missing", NE, "1"), doc));
	assert_false(matches(cond("n", NE, "5"), doc));
	assert_true(matches(cond("n", LT, "6"), doc));
	assert_false(matches(cond("s", LT, "6"), doc));   /* types differ */
	assert_true(matches(cond("s", GE, "\"hello\""), doc));
	assert_true(matches(cond("f", GT, "1"), doc));
	assert_true(matches(cond("n", IN, "[1,\"5\",5]"), doc));
	assert_true(matches(cond("s", PREFIX, "\"hel\""), doc));
	assert_false(matches(cond("n", PREFIX, "\"5\""), doc));
	assert_true(matches(cond("z", EXISTS, ""), doc));
	assert_true(matches(cond("nope", EXISTS, "false"), doc));
	assert_true(matches(cond("tags", CONTAINS, "\"x\""), doc));
	assert_true(matches(cond("tags", CONTAINS, "[\"y\",\"x\"]"), doc));
	assert_true(matches(cond("o", CONTAINS, "{\"k\":[{\"q\":1}]}"), doc));
	assert_false(matches(cond("o", CONTAINS, "{\"k\":1}"), doc));
	assert_true(matches(cond("o.k.1", EQ, "2"), doc));
	assert_true(matches(cond("tags.0", EQ, "\"x\""), doc));
	assert_true(matches(not_(cond("missing", EQ, "1")), doc));
	assert_true(matches(list(1, 2, cond("n", EQ, "0"), cond("b", EQ,
	    "true")), doc));
	assert_false(matches(list(0, 2, cond("n", EQ, "5"), cond("b", EQ,
	    "false")), doc));
}

/* The SQL holds no value of the caller's: each is a parameter. */
static void
test_sql_binds_everything(void **state)
{
	const char *evil = "\"'); DROP TABLE db_documents; --\"";
	F *f = list(0, 3, cond("a'b", EQ, evil), cond("c", PREFIX, evil),
	    not_(cond("d;--", IN, "[\"x'y\"]")));
	struct dbf *t;
	struct db_sql q;
	char err[256];

	(void)state;
	assert_int_equal(dbf_parse("filter", f, &t, err, sizeof(err)), 0);
	db_sql_init(&q);
	dbf_sql(t, &q, true);
	assert_null(strstr(q.text, "DROP"));
	assert_null(strstr(q.text, "'b"));
	assert_null(strstr(q.text, "x'y"));
	assert_null(strstr(q.text, "--"));
	assert_non_null(strstr(q.text, "(d.body #> $1::text[]) = $2::jsonb"));
	assert_non_null(strstr(q.text, "d.body @> $3::jsonb"));
	assert_non_null(strstr(q.text, "NOT coalesce("));
	assert_string_equal(q.params[0], "{\"a'b\"}");
	assert_string_equal(q.params[1], evil);
	assert_string_equal(q.params[2],
	    "{\"a'b\":\"'); DROP TABLE db_documents; --\"}");
	/* The prefix is bound as the text itself. */
	assert_string_equal(q.params[4], "'); DROP TABLE db_documents; --");
	db_sql_free(&q);
	dbf_free(t);
	tree_free(f);
}

static void
test_search_sql(void **state)
{
	struct db_search s = { 0 };
	struct db_order o[2];
	struct dbf *t;
	struct db_sql q;
	char err[256], *keys[2] = { "5", NULL };

	(void)state;
	assert_int_equal(dbf_parse("filter", NULL, &t, err, sizeof(err)), 0);
	assert_int_equal(db_path_parse("o", "n", &o[0].path, err, sizeof(err)),
	    0);
	assert_int_equal(db_path_parse("o", "m", &o[1].path, err, sizeof(err)),
	    0);
	o[0].desc = true;
	o[1].desc = false;
	s.database = "d";
	s.collection = "c";
	s.filter = t;
	s.order = o;
	s.norder = 2;
	s.limit = 11;
	s.after_keys = keys;
	s.after_id = "id'1";
	db_sql_init(&q);
	db_search_sql(&s, &q);
	assert_non_null(strstr(q.text, "ORDER BY (d.body #> $1::text[]) DESC "
	    "NULLS LAST, (d.body #> $2::text[]) ASC NULLS LAST, d.id LIMIT 11"));
	assert_non_null(strstr(q.text, "IS NULL AND d.id > $"));
	assert_null(strstr(q.text, "id'1"));
	assert_string_equal(q.params[q.n - 1], "id'1");
	db_sql_free(&q);
	s.count = true;
	db_sql_init(&q);
	db_search_sql(&s, &q);
	assert_non_null(strstr(q.text, "SELECT count(*)"));
	assert_null(strstr(q.text, "ORDER BY"));
	db_sql_free(&q);
	db_path_free(&o[0].path);
	db_path_free(&o[1].path);
	dbf_free(t);
}

static void
test_uses_path(void **state)
{
	const char *segs[] = { "a", "b" };
	F *f = list(0, 2, cond("a.b", EQ, "1"), cond("c", NE, "1"));
	struct dbf *t;
	char err[256];

	(void)state;
	assert_int_equal(dbf_parse("filter", f, &t, err, sizeof(err)), 0);
	assert_true(dbf_uses_path(t, segs, 2));
	assert_false(dbf_uses_path(t, segs, 1));
	dbf_free(t);
	tree_free(f);
	f = list(1, 2, cond("a.b", EQ, "1"), cond("c", EQ, "1"));
	assert_int_equal(dbf_parse("filter", f, &t, err, sizeof(err)), 0);
	assert_false(dbf_uses_path(t, segs, 2));   /* under an OR */
	dbf_free(t);
	tree_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_checks),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_sql_binds_everything),
		cmocka_unit_test(test_search_sql),
		cmocka_unit_test(test_uses_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
