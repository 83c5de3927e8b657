/*
 * Unit tests for the PostgreSQL layer, against a real PostgreSQL:
 *
 *   scripts/pg start
 *   PLATFORM_TEST_DATABASE=$(scripts/pg url) build/tests/test_pg
 *
 * Without PLATFORM_TEST_DATABASE the test says so and exits 0, so the unit
 * suite runs anywhere. Everything happens in a schema of its own
 * (test_pg_<pid>), dropped at the end.
 *
 * With PLATFORM_TEST_PG_CTL set to a command taking stop and start
 * (scripts/pg), the database is also stopped and started under a live
 * pool and listener: UNAVAILABLE meanwhile, recovery after.
 */
#include <inttypes.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "platform/log.h"
#include "platform/pg.h"

#define T_DEADLINE_MS	10000	/* for statements that should be quick */

static const char *base_conninfo;	/* $PLATFORM_TEST_DATABASE */
static char conninfo[4096];		/* the same with our schema first */
static char schema[32];

/* ---- helpers ---- */

/* The connection string with search_path set to our schema, as a URL
 * parameter or as a key=value pair depending on its form. */
static void
make_conninfo(void)
{
	if (strstr(base_conninfo, "://") != NULL)
		snprintf(conninfo, sizeof(conninfo),
		    "%s%soptions=-csearch_path%%3D%s", base_conninfo,
		    strchr(base_conninfo, '?') != NULL ? "&" : "?", schema);
	else
		snprintf(conninfo, sizeof(conninfo),
		    "%s options='-csearch_path=%s'", base_conninfo, schema);
}

static struct pg_pool *
pool_new(int size)
{
	struct pg_pool *p = pg_pool_new(conninfo, size);

	assert_non_null(p);
	return p;
}

/* Runs one statement on a pooled connection; the code, and the result
 * when wanted. */
static enum plat_code
run(struct pg_pool *p, const char *name, const char *sql, int n,
    const char *const *values, PGresult **res)
{
	struct pg_conn *c;
	enum plat_code code;
	char err[256];

	code = pg_acquire(p, T_DEADLINE_MS, &c);
	if (code != PLAT_OK)
		return code;
	code = pg_exec(c, name, sql, n, values, NULL, NULL, T_DEADLINE_MS, res,
	    err, sizeof(err));
	pg_release(p, c);
	return code;
}

static void
run_ok(struct pg_pool *p, const char *name, const char *sql, int n,
    const char *const *values)
{
	assert_int_equal(run(p, name, sql, n, values, NULL), PLAT_OK);
}

static long
count(struct pg_pool *p, const char *name, const char *sql, int n,
    const char *const *values)
{
	PGresult *res;
	long v;

	assert_int_equal(run(p, name, sql, n, values, &res), PLAT_OK);
	v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* ---- group setup: a schema of our own ---- */

static int
group_setup(void **state)
{
	struct pg_pool *p;
	char sql[128];

	(void)state;
	snprintf(schema, sizeof(schema), "test_pg_%ld", (long)getpid());
	if ((p = pg_pool_new(base_conninfo, 1)) == NULL)
		return -1;
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", schema);
	if (run(p, "create_schema", sql, 0, NULL, NULL) != PLAT_OK) {
		fprintf(stderr, "test_pg: cannot create schema %s in %s\n",
		    schema, "PLATFORM_TEST_DATABASE");
		pg_pool_free(p);
		return -1;
	}
	pg_pool_free(p);
	make_conninfo();
	return 0;
}

static int
group_teardown(void **state)
{
	struct pg_pool *p;
	char sql[128];

	(void)state;
	if ((p = pg_pool_new(base_conninfo, 1)) == NULL)
		return -1;
	snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
	(void)run(p, "drop_schema", sql, 0, NULL, NULL);
	pg_pool_free(p);
	return 0;
}

/* ---- values are bound, never spliced ---- */

static void
test_text_roundtrip(void **state)
{
	static const char *const nasty[] = {
		"'; DROP TABLE kv; --",
		"O'Reilly \"quoted\" `back` $1 $$dollar$$ ; ;; \\ \\\\ \\x00",
		"E'\\n' || chr(0) /* comment */ -- trailing",
		"line\nbreak\ttab\rreturn",
		"ünïcødé ✓ 𝄞",
		"",
	};
	struct pg_pool *p = pool_new(2);
	char ascii[128];
	PGresult *res;
	size_t i;

	(void)state;
	run_ok(p, "kv_create",
	    "CREATE TABLE kv (k text PRIMARY KEY, v text)", 0, NULL);
	/* Every ASCII character but NUL, which text cannot hold. */
	for (i = 0; i < 127; i++)
		ascii[i] = (char)(i + 1);
	ascii[127] = '\0';
	for (i = 0; i <= sizeof(nasty) / sizeof(nasty[0]); i++) {
		const char *v = i < sizeof(nasty) / sizeof(nasty[0]) ?
		    nasty[i] : ascii;
		const char *put[] = { v, v };
		const char *get[] = { v };

		run_ok(p, "kv_put", "INSERT INTO kv (k, v) VALUES ($1, $2)",
		    2, put);
		assert_int_equal(run(p, "kv_get",
		    "SELECT v FROM kv WHERE k = $1", 1, get, &res), PLAT_OK);
		assert_int_equal(PQntuples(res), 1);
		assert_string_equal(PQgetvalue(res, 0, 0), v);
		PQclear(res);
	}
	/* The table survived its name inside a value. */
	assert_int_equal(count(p, "kv_count", "SELECT count(*) FROM kv", 0,
	    NULL), (long)(sizeof(nasty) / sizeof(nasty[0]) + 1));
	/* NULL binds as SQL NULL. */
	{
		const char *put[] = { "null", NULL };
		const char *get[] = { "null" };

		run_ok(p, "kv_put", "INSERT INTO kv (k, v) VALUES ($1, $2)",
		    2, put);
		assert_int_equal(run(p, "kv_get",
		    "SELECT v FROM kv WHERE k = $1", 1, get, &res), PLAT_OK);
		assert_true(PQgetisnull(res, 0, 0));
		PQclear(res);
	}
	pg_pool_free(p);
}

/* Array parameters (pg_array): every element comes back out of unnest
 * exactly, whatever quotes, braces, commas or backslashes it holds. */
static void
test_array_roundtrip(void **state)
{
	static const char *const nasty[] = {
		"plain", "", "NULL", "null", "{a,b}", "\"quoted\"", "back\\slash",
		"\\\"", "comma, and space ", " lead", "'; DROP TABLE kv; --",
		"line\nbreak\ttab", "ünïcødé ✓ 𝄞", "}", "{", ",",
	};
	size_t n = sizeof(nasty) / sizeof(nasty[0]);
	struct pg_pool *p = pool_new(1);
	struct pg_array texts, ints, bools;
	const char *values[3];
	PGresult *res;

	(void)state;
	pg_array_init(&texts);
	pg_array_init(&ints);
	pg_array_init(&bools);
	values[0] = pg_array_str(&texts);      /* empty: {} */
	assert_int_equal(run(p, "arr_empty",
	    "SELECT count(*) FROM unnest($1::text[])", 1, values, &res),
	    PLAT_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "0");
	PQclear(res);
	for (size_t i = 0; i < n; i++) {
		pg_array_add(&texts, nasty[i]);
		pg_array_add_int(&ints, i % 2 ? -(int64_t)i : INT64_MAX - (int64_t)i);
		pg_array_add_bool(&bools, i % 3 == 0);
	}
	assert_int_equal(texts.n, n);
	values[0] = pg_array_str(&texts);
	values[1] = pg_array_str(&ints);
	values[2] = pg_array_str(&bools);
	assert_int_equal(run(p, "arr_unnest",
	    "SELECT t, i, b FROM unnest($1::text[], $2::bigint[],"
	    " $3::boolean[]) WITH ORDINALITY AS x(t, i, b, o) ORDER BY o",
	    3, values, &res), PLAT_OK);
	assert_int_equal(PQntuples(res), (int)n);
	for (size_t i = 0; i < n; i++) {
		char num[24];

		snprintf(num, sizeof(num), "%" PRId64,
		    i % 2 ? -(int64_t)i : INT64_MAX - (int64_t)i);
		assert_false(PQgetisnull(res, (int)i, 0));
		assert_string_equal(PQgetvalue(res, (int)i, 0), nasty[i]);
		assert_string_equal(PQgetvalue(res, (int)i, 1), num);
		assert_string_equal(PQgetvalue(res, (int)i, 2),
		    i % 3 == 0 ? "t" : "f");
	}
	PQclear(res);
	pg_array_free(&texts);
	pg_array_free(&ints);
	pg_array_free(&bools);
	pg_pool_free(p);
}

/* Binary parameters, every byte value, sent in binary format; and one big
 * enough (4 MiB) to go out in several writes of a non-blocking socket. */
static void
check_bytea(struct pg_pool *p, const unsigned char *data, int len)
{
	const char *values[] = { (const char *)data };
	int lengths[] = { len }, formats[] = { 1 };
	struct pg_conn *c;
	unsigned char *back;
	PGresult *res;
	size_t n;
	char err[256];

	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_exec(c, "echo_bytea", "SELECT $1::bytea", 1,
	    values, lengths, formats, T_DEADLINE_MS, &res, err, sizeof(err)),
	    PLAT_OK);
	pg_release(p, c);
	back = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 0),
	    &n);
	assert_non_null(back);
	assert_int_equal(n, (size_t)len);
	assert_memory_equal(back, data, (size_t)len);
	PQfreemem(back);
	PQclear(res);
}

static void
test_binary_roundtrip(void **state)
{
	struct pg_pool *p = pool_new(1);
	unsigned char all[256], *big;
	int i, big_len = 4 << 20;

	(void)state;
	for (i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	check_bytea(p, all, sizeof(all));
	big = malloc((size_t)big_len);
	assert_non_null(big);
	for (i = 0; i < big_len; i++)
		big[i] = (unsigned char)(i * 131 + (i >> 9));
	check_bytea(p, big, big_len);
	free(big);
	pg_pool_free(p);
}

/* ---- prepared statements ---- */

static void
test_prepared_once_per_connection(void **state)
{
	struct pg_pool *p = pool_new(1);
	const char *values[] = { "answer_q" };
	const char *arg[] = { "41" };
	struct pg_conn *c;
	PGresult *res;
	char err[256];
	int i;

	(void)state;
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	for (i = 0; i < 3; i++) {
		assert_int_equal(pg_exec(c, "answer_q", "SELECT $1::int + 1",
		    1, arg, NULL, NULL, T_DEADLINE_MS, &res, err, sizeof(err)),
		    PLAT_OK);
		assert_string_equal(PQgetvalue(res, 0, 0), "42");
		PQclear(res);
	}
	/* The server holds it once on this session. */
	assert_int_equal(pg_exec(c, "prepared_count",
	    "SELECT count(*) FROM pg_prepared_statements WHERE name = $1", 1,
	    values, NULL, NULL, T_DEADLINE_MS, &res, err, sizeof(err)),
	    PLAT_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	/* The same name for other SQL is a bug, not another statement. */
	assert_int_equal(pg_exec(c, "answer_q", "SELECT 2", 0, NULL, NULL,
	    NULL, T_DEADLINE_MS, &res, err, sizeof(err)), PLAT_INTERNAL);
	assert_null(res);
	/* A statement that does not parse is INTERNAL, and the connection
	 * stays usable. */
	assert_int_equal(pg_exec(c, "bad_sql", "SELEC 1", 0, NULL, NULL,
	    NULL, T_DEADLINE_MS, &res, err, sizeof(err)), PLAT_INTERNAL);
	assert_string_equal(err, "internal database error");
	assert_int_equal(pg_exec(c, "answer_q", "SELECT $1::int + 1", 1, arg,
	    NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	pg_release(p, c);
	pg_pool_free(p);
}

/* Dynamic statements: values bound, nothing prepared, DDL that cannot
 * run in a transaction allowed. */
static void
test_exec_dynamic(void **state)
{
	struct pg_pool *p = pool_new(1);
	const char *arg[] = { "x'); DROP TABLE t; --" };
	struct pg_conn *c;
	PGresult *res;
	char err[256];

	(void)state;
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_exec_dynamic(c, "SELECT $1::text || '!'", 1, arg,
	    T_DEADLINE_MS, &res, err, sizeof(err)), PLAT_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "x'); DROP TABLE t; --!");
	PQclear(res);
	assert_int_equal(pg_exec_dynamic(c, "CREATE TABLE dyn_t (v int)", 0,
	    NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec_dynamic(c,
	    "CREATE INDEX CONCURRENTLY dyn_i ON dyn_t (v)", 0, NULL,
	    T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec(c, "dyn_prepared",
	    "SELECT count(*) FROM pg_prepared_statements", 0, NULL, NULL,
	    NULL, T_DEADLINE_MS, &res, err, sizeof(err)), PLAT_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	assert_int_equal(pg_exec_dynamic(c, "SELEC 1", 0, NULL,
	    T_DEADLINE_MS, &res, err, sizeof(err)), PLAT_INTERNAL);
	assert_null(res);
	assert_int_equal(pg_exec_dynamic(c, "SELECT 1", 0, NULL, 0, &res,
	    err, sizeof(err)), PLAT_DEADLINE_EXCEEDED);
	pg_release(p, c);
	pg_pool_free(p);
}

/* ---- error mapping ---- */

static void
test_constraint_errors(void **state)
{
	struct pg_pool *p = pool_new(1);
	const char *one[] = { "1", "10" };
	const char *neg[] = { "2", "-1" };
	struct pg_conn *c;
	char err[256];

	(void)state;
	run_ok(p, "acct_create", "CREATE TABLE acct (id int PRIMARY KEY,"
	    " balance int NOT NULL CONSTRAINT acct_balance_positive"
	    " CHECK (balance >= 0))", 0, NULL);
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_exec(c, "acct_put",
	    "INSERT INTO acct (id, balance) VALUES ($1, $2)", 2, one, NULL,
	    NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec(c, "acct_put",
	    "INSERT INTO acct (id, balance) VALUES ($1, $2)", 2, one, NULL,
	    NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_ALREADY_EXISTS);
	assert_string_equal(err, "already exists (acct_pkey)");
	assert_int_equal(pg_exec(c, "acct_put",
	    "INSERT INTO acct (id, balance) VALUES ($1, $2)", 2, neg, NULL,
	    NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_FAILED_PRECONDITION);
	assert_string_equal(err, "constraint violated (acct_balance_positive)");
	pg_release(p, c);
	pg_pool_free(p);
}

/* Two serializable transactions reading what the other writes: one of
 * them must fail with a serialization failure, mapped to ABORTED. */
static void
test_serialization_failure(void **state)
{
	static const char set_serializable[] =
	    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE";
	static const char sum[] = "SELECT coalesce(sum(n), 0) FROM ssi";
	static const char add[] = "INSERT INTO ssi (n) VALUES (1)";
	struct pg_pool *p = pool_new(2);
	struct pg_conn *a, *b;
	enum plat_code ca, cb;
	char err[256];

	(void)state;
	run_ok(p, "ssi_create", "CREATE TABLE ssi (n int)", 0, NULL);
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &a), PLAT_OK);
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &b), PLAT_OK);
	assert_int_equal(pg_begin(a, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_begin(b, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_exec(a, "ssi_iso", set_serializable, 0, NULL,
	    NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec(b, "ssi_iso", set_serializable, 0, NULL,
	    NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec(a, "ssi_sum", sum, 0, NULL, NULL, NULL,
	    T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec(b, "ssi_sum", sum, 0, NULL, NULL, NULL,
	    T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(pg_exec(a, "ssi_add", add, 0, NULL, NULL, NULL,
	    T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	cb = pg_exec(b, "ssi_add", add, 0, NULL, NULL, NULL, T_DEADLINE_MS,
	    NULL, err, sizeof(err));
	ca = pg_commit(a, T_DEADLINE_MS, err, sizeof(err));
	if (cb == PLAT_OK)
		cb = pg_commit(b, T_DEADLINE_MS, err, sizeof(err));
	assert_int_equal(ca, PLAT_OK);
	assert_int_equal(cb, PLAT_ABORTED);
	pg_release(p, a);
	pg_release(p, b);	/* rolls back b's failed transaction */
	assert_int_equal(count(p, "ssi_count", "SELECT count(*) FROM ssi", 0,
	    NULL), 1);
	pg_pool_free(p);
}

static void
test_statement_timeout(void **state)
{
	struct pg_pool *p = pool_new(1);
	struct pg_conn *c;
	PGresult *res;
	char err[256];

	(void)state;
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	/* Cancelled on the server at the deadline. */
	assert_int_equal(pg_exec(c, "sleep", "SELECT pg_sleep(30)", 0, NULL,
	    NULL, NULL, 200, &res, err, sizeof(err)), PLAT_DEADLINE_EXCEEDED);
	assert_null(res);
	assert_string_equal(err, "database deadline exceeded");
	/* The connection goes on. */
	assert_int_equal(pg_exec(c, "one", "SELECT 1", 0, NULL, NULL, NULL,
	    T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	/* Inside a transaction: it is aborted, rollback works. */
	assert_int_equal(pg_begin(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_exec(c, "sleep", "SELECT pg_sleep(30)", 0, NULL,
	    NULL, NULL, 200, NULL, err, sizeof(err)), PLAT_DEADLINE_EXCEEDED);
	assert_int_equal(pg_rollback(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	/* A deadline already gone costs no round trip. */
	assert_int_equal(pg_exec(c, "one", "SELECT 1", 0, NULL, NULL, NULL, 0,
	    NULL, err, sizeof(err)), PLAT_DEADLINE_EXCEEDED);
	assert_int_equal(pg_exec(c, "one", "SELECT 1", 0, NULL, NULL, NULL,
	    T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	pg_release(p, c);
	pg_pool_free(p);
}

/* ---- transactions ---- */

static enum plat_code
tx_insert_two(struct pg_conn *c, int64_t left, void *arg, char *err,
    size_t errlen)
{
	const char *values[] = { arg };
	enum plat_code code;

	code = pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES ($1)", 1,
	    values, NULL, NULL, left, NULL, err, errlen);
	if (code != PLAT_OK)
		return code;
	/* The second insert of the same key fails: nothing stays. */
	return pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES ($1)", 1,
	    values, NULL, NULL, left, NULL, err, errlen);
}

static enum plat_code
tx_insert_one(struct pg_conn *c, int64_t left, void *arg, char *err,
    size_t errlen)
{
	const char *values[] = { arg };

	return pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES ($1)", 1,
	    values, NULL, NULL, left, NULL, err, errlen);
}

static void
test_transactions(void **state)
{
	struct pg_pool *p = pool_new(1);
	const char *a[] = { "a" }, *b[] = { "b" }, *c2[] = { "c" };
	struct pg_conn *c;
	char err[256];

	(void)state;
	run_ok(p, "txt_create", "CREATE TABLE txt (k text PRIMARY KEY)", 0,
	    NULL);
	/* Rolled back: gone. */
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_begin(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES "
	    "($1)", 1, a, NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_rollback(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	/* Left open at release: rolled back too. */
	assert_int_equal(pg_begin(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES "
	    "($1)", 1, b, NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_OK);
	pg_release(p, c);
	assert_int_equal(count(p, "txt_count", "SELECT count(*) FROM txt", 0,
	    NULL), 0);
	/* Committed: there. */
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_begin(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES "
	    "($1)", 1, c2, NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_commit(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	/* COMMIT of a failed transaction is not a success. */
	assert_int_equal(pg_begin(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	assert_int_equal(pg_exec(c, "txt_put", "INSERT INTO txt (k) VALUES "
	    "($1)", 1, c2, NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_ALREADY_EXISTS);
	assert_int_not_equal(pg_commit(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	pg_release(p, c);
	/* pg_tx: all or nothing. */
	assert_int_equal(pg_tx(p, T_DEADLINE_MS, tx_insert_two, "d", err,
	    sizeof(err)), PLAT_ALREADY_EXISTS);
	assert_int_equal(pg_tx(p, T_DEADLINE_MS, tx_insert_one, "e", err,
	    sizeof(err)), PLAT_OK);
	assert_int_equal(count(p, "txt_count", "SELECT count(*) FROM txt", 0,
	    NULL), 2);	/* c and e */
	pg_pool_free(p);
}

/* ---- pipelines ---- */

/* Reads, then a write with the COMMIT in the same round trip. */
static enum plat_code
tx_pipeline_commit(struct pg_conn *c, int64_t left, void *arg, char *err,
    size_t errlen)
{
	const char *values[] = { arg };
	struct pg_query q[2] = {
		{ "pl_count", "SELECT count(*) FROM pl", 0, NULL, NULL, NULL,
		    NULL },
		{ "pl_put", "INSERT INTO pl (k) VALUES ($1)", 1, values, NULL,
		    NULL, NULL },
	};
	enum plat_code code;

	if ((code = pg_pipeline(c, q, 1, left, err, errlen)) != PLAT_OK)
		return code;
	PQclear(q[0].result);
	code = pg_pipeline_commit(c, &q[1], 1, left, err, errlen);
	if (code == PLAT_OK)
		PQclear(q[1].result);
	return code;
}

static void
test_pipeline(void **state)
{
	struct pg_pool *p = pool_new(1);
	const char *x[] = { "x" }, *y[] = { "y" };
	struct pg_query q[3] = {
		{ "pl_put", "INSERT INTO pl (k) VALUES ($1)", 1, x, NULL,
		    NULL, NULL },
		{ "pl_count", "SELECT count(*) FROM pl", 0, NULL, NULL, NULL,
		    NULL },
		{ "pl_put", "INSERT INTO pl (k) VALUES ($1)", 1, y, NULL,
		    NULL, NULL },
	};
	struct pg_conn *c;
	char err[256];

	(void)state;
	run_ok(p, "pl_create", "CREATE TABLE pl (k text PRIMARY KEY)", 0,
	    NULL);
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	/* In order, each result back, statements prepared on the way (the
	 * same one twice). */
	assert_int_equal(pg_pipeline(c, q, 3, T_DEADLINE_MS, err,
	    sizeof(err)), PLAT_OK);
	assert_string_equal(PQgetvalue(q[1].result, 0, 0), "1");
	for (int i = 0; i < 3; i++)
		PQclear(q[i].result);
	/* A failure in the middle is the outcome; no result is left. */
	assert_int_equal(pg_begin(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	q[0].values = (const char *[]){ "z" };
	q[2].values = x;
	assert_int_equal(pg_pipeline(c, q, 3, T_DEADLINE_MS, err,
	    sizeof(err)), PLAT_ALREADY_EXISTS);
	for (int i = 0; i < 3; i++)
		assert_null(q[i].result);
	assert_int_equal(pg_rollback(c, T_DEADLINE_MS, err, sizeof(err)),
	    PLAT_OK);
	/* The connection goes on as usual. */
	assert_int_equal(pg_exec(c, "pl_count", "SELECT count(*) FROM pl", 0,
	    NULL, NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)), PLAT_OK);
	/* Another statement under a name in use is a bug, refused. */
	q[1].sql = "SELECT 1";
	assert_int_equal(pg_pipeline(c, &q[1], 1, T_DEADLINE_MS, err,
	    sizeof(err)), PLAT_INTERNAL);
	pg_release(p, c);
	assert_int_equal(count(p, "pl_count", "SELECT count(*) FROM pl", 0,
	    NULL), 2);          /* x and y */
	/* pg_tx with BEGIN sent with the first statement and COMMIT with
	 * the last; a failed commit pipeline keeps nothing. */
	assert_int_equal(pg_tx(p, T_DEADLINE_MS, tx_pipeline_commit, "w", err,
	    sizeof(err)), PLAT_OK);
	assert_int_equal(pg_tx(p, T_DEADLINE_MS, tx_pipeline_commit, "w", err,
	    sizeof(err)), PLAT_ALREADY_EXISTS);
	assert_int_equal(count(p, "pl_count", "SELECT count(*) FROM pl", 0,
	    NULL), 3);
	pg_pool_free(p);
}

/* ---- migrations ---- */

static const struct pg_migration mig_v2[] = {
	{ 1, "create m_items", "CREATE TABLE m_items (id int PRIMARY KEY)" },
	{ 2, "add m_items.name",
	  "ALTER TABLE m_items ADD COLUMN name text NOT NULL DEFAULT '';"
	  "INSERT INTO m_items (id, name) VALUES (1, 'it''s; seeded')" },
};

static void
test_migrations(void **state)
{
	const struct pg_migration broken[] = {
		mig_v2[0], mig_v2[1],
		{ 3, "half done", "CREATE TABLE m_half (x int);"
		  "SELECT no_such_column FROM m_items" },
	};
	const char *comp[] = { "mtest" };
	struct pg_pool *p = pool_new(2);
	char err[256];
	int i;

	(void)state;
	for (i = 0; i < 2; i++) {	/* the second time changes nothing */
		assert_int_equal(pg_migrate(p, "mtest", mig_v2, 2, err,
		    sizeof(err)), PLAT_OK);
		assert_int_equal(count(p, "mig_count", "SELECT count(*) FROM "
		    "platform_schema_migrations WHERE component = $1", 1,
		    comp), 2);
		assert_int_equal(count(p, "items_count",
		    "SELECT count(*) FROM m_items", 0, NULL), 1);
	}
	/* A server that knows only version 1 refuses the database. */
	assert_int_equal(pg_migrate(p, "mtest", mig_v2, 1, err, sizeof(err)),
	    PLAT_FAILED_PRECONDITION);
	assert_string_equal(err, "database schema for mtest is at version 2, "
	    "newer than this server knows (1)");
	/* A failing migration leaves nothing behind and is not recorded. */
	assert_int_not_equal(pg_migrate(p, "mtest", broken, 3, err,
	    sizeof(err)), PLAT_OK);
	assert_non_null(strstr(err, "schema migration 3 (half done)"));
	assert_int_equal(count(p, "mig_max", "SELECT max(version) FROM "
	    "platform_schema_migrations WHERE component = $1", 1, comp), 2);
	assert_int_equal(count(p, "half_exists",
	    "SELECT count(*) FROM pg_tables WHERE tablename = 'm_half'", 0,
	    NULL), 0);
	/* Versions out of order are the server's bug. */
	{
		const struct pg_migration backwards[] = { mig_v2[1],
		    mig_v2[0] };

		assert_int_equal(pg_migrate(p, "mtest", backwards, 2, err,
		    sizeof(err)), PLAT_INTERNAL);
	}
	pg_pool_free(p);
}

/* Non-idempotent migrations: applied twice, the second CREATE TABLE would
 * fail and the INSERT would leave two rows. */
static const struct pg_migration mig_race[] = {
	{ 1, "create race", "CREATE TABLE race (n int)" },
	{ 2, "slow seed", "SELECT pg_sleep(0.3); INSERT INTO race VALUES (1)" },
	{ 3, "more", "INSERT INTO race VALUES (2)" },
};

struct migrator {
	pthread_barrier_t	*start;
	enum plat_code		 code;
	char			 err[256];
};

static void *
migrator_main(void *arg)
{
	struct migrator *m = arg;
	struct pg_pool *p = pg_pool_new(conninfo, 1);

	pthread_barrier_wait(m->start);
	m->code = pg_migrate(p, "race", mig_race, 3, m->err, sizeof(m->err));
	pg_pool_free(p);
	return NULL;
}

static void
test_migrations_concurrent(void **state)
{
	pthread_barrier_t start;
	struct migrator m[2];
	pthread_t t[2];
	const char *comp[] = { "race" };
	struct pg_pool *p = pool_new(1);
	int i;

	(void)state;
	pthread_barrier_init(&start, NULL, 2);
	for (i = 0; i < 2; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].start = &start;
		assert_int_equal(pthread_create(&t[i], NULL, migrator_main,
		    &m[i]), 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		if (m[i].code != PLAT_OK)
			fprintf(stderr, "migrator %d: %s\n", i, m[i].err);
		assert_int_equal(m[i].code, PLAT_OK);
	}
	pthread_barrier_destroy(&start);
	assert_int_equal(count(p, "race_rows", "SELECT count(*) FROM race", 0,
	    NULL), 2);
	assert_int_equal(count(p, "mig_count", "SELECT count(*) FROM "
	    "platform_schema_migrations WHERE component = $1", 1, comp), 3);
	pg_pool_free(p);
}

/* ---- the pool ---- */

/* Exhausted: pg_acquire gives PLAT_DEADLINE_EXCEEDED (the caller's time
 * went waiting for a connection), and a release wakes a waiter. */
static void
test_pool_exhausted(void **state)
{
	struct pg_pool *p = pool_new(1);
	struct pg_conn *c, *d;

	(void)state;
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_acquire(p, 100, &d), PLAT_DEADLINE_EXCEEDED);
	assert_null(d);
	pg_release(p, c);
	assert_int_equal(pg_acquire(p, 100, &d), PLAT_OK);
	assert_ptr_equal(c, d);		/* the open one, not a new one */
	pg_release(p, d);
	pg_pool_free(p);
}

struct hammer {
	struct pg_pool	*pool;
	int		 id;
	int		 failures;
};

static void *
hammer_main(void *arg)
{
	struct hammer *h = arg;
	char id[16];
	const char *values[] = { id };
	PGresult *res;
	int i;

	snprintf(id, sizeof(id), "%d", h->id);
	for (i = 0; i < 50; i++) {
		if (run(h->pool, "hammer", "SELECT $1::int * 2", 1, values,
		    &res) != PLAT_OK) {
			h->failures++;
			continue;
		}
		if (atoi(PQgetvalue(res, 0, 0)) != h->id * 2)
			h->failures++;
		PQclear(res);
	}
	return NULL;
}

/* Eight threads on three connections: every call gets one in turn. */
static void
test_pool_threads(void **state)
{
	struct pg_pool *p = pool_new(3);
	struct hammer h[8];
	pthread_t t[8];
	int i;

	(void)state;
	for (i = 0; i < 8; i++) {
		h[i] = (struct hammer){ .pool = p, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, hammer_main,
		    &h[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(h[i].failures, 0);
	}
	pg_pool_free(p);
}

struct killer {
	struct pg_pool	*pool;
	char		 pid[16];
};

static void *
killer_main(void *arg)
{
	struct killer *k = arg;
	const char *values[] = { k->pid };

	sleep_ms(300);
	run_ok(k->pool, "terminate", "SELECT pg_terminate_backend($1::int)",
	    1, values);
	return NULL;
}

/* The server ends a connection: between calls the pool notices and
 * reconnects quietly; under a statement that call gets UNAVAILABLE and
 * the next one a new connection, its statements prepared again. */
static void
test_connection_killed(void **state)
{
	struct pg_pool *p = pool_new(1), *admin = pool_new(1);
	struct killer k = { .pool = admin };
	struct pg_conn *c;
	PGresult *res;
	pthread_t t;
	char err[256];

	(void)state;
	/* Between calls. */
	assert_int_equal(run(p, "backend_pid", "SELECT pg_backend_pid()", 0,
	    NULL, &res), PLAT_OK);
	snprintf(k.pid, sizeof(k.pid), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	run_ok(admin, "terminate", "SELECT pg_terminate_backend($1::int)", 1,
	    (const char *[]){ k.pid });
	sleep_ms(100);
	assert_int_equal(run(p, "backend_pid", "SELECT pg_backend_pid()", 0,
	    NULL, &res), PLAT_OK);
	assert_string_not_equal(PQgetvalue(res, 0, 0), k.pid);
	snprintf(k.pid, sizeof(k.pid), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);

	/* Under a statement. */
	assert_int_equal(pthread_create(&t, NULL, killer_main, &k), 0);
	assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c), PLAT_OK);
	assert_int_equal(pg_exec(c, "sleep", "SELECT pg_sleep(30)", 0, NULL,
	    NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_UNAVAILABLE);
	assert_string_equal(err, "database unavailable");
	/* Later calls in the same acquisition fail alike, no crash. */
	assert_int_equal(pg_exec(c, "backend_pid", "SELECT pg_backend_pid()",
	    0, NULL, NULL, NULL, T_DEADLINE_MS, NULL, err, sizeof(err)),
	    PLAT_UNAVAILABLE);
	pg_release(p, c);
	pthread_join(t, NULL);
	assert_int_equal(run(p, "backend_pid", "SELECT pg_backend_pid()", 0,
	    NULL, &res), PLAT_OK);
	assert_string_not_equal(PQgetvalue(res, 0, 0), k.pid);
	PQclear(res);
	pg_pool_free(admin);
	pg_pool_free(p);
}

/* A port nobody listens on: bound then closed. */
static int
closed_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd, port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static void
test_database_down(void **state)
{
	struct pg_pool *p;
	struct pg_conn *c;
	char ci[256], err[256];
	int i;

	(void)state;
	snprintf(ci, sizeof(ci),
	    "postgresql://platform:secret@127.0.0.1:%d/platform",
	    closed_port());
	p = pg_pool_new(ci, 2);		/* lazily: no error yet */
	assert_non_null(p);
	for (i = 0; i < 5; i++) {	/* backoff: later ones fail fast */
		assert_int_equal(pg_acquire(p, T_DEADLINE_MS, &c),
		    PLAT_UNAVAILABLE);
		assert_null(c);
	}
	assert_int_equal(pg_tx(p, T_DEADLINE_MS, tx_insert_one, "x", err,
	    sizeof(err)), PLAT_UNAVAILABLE);
	assert_string_equal(err, "database unavailable");
	assert_int_equal(pg_migrate(p, "down", mig_v2, 2, err, sizeof(err)),
	    PLAT_UNAVAILABLE);
	pg_pool_free(p);
}

static void
test_bad_conninfo(void **state)
{
	char err[256];

	(void)state;
	assert_null(pg_pool_new("postgresql://[::1", 2));
	assert_null(pg_pool_new("host=127.0.0.1 nonsense", 2));
	assert_null(pg_pool_new(conninfo, 0));
	assert_int_equal(pg_conninfo_check("host=x bogus_key=1", err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "bogus_key"));
	assert_int_equal(pg_conninfo_check(conninfo, err, sizeof(err)), 0);
	assert_null(pg_listener_start("port=notanumber=", "ch", NULL, NULL,
	    NULL));
}

/* ---- LISTEN/NOTIFY ---- */

struct heard {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 notifies;
	int		 reconnects;
	char		 last[256];
};

static void
heard_notify(const char *payload, void *arg)
{
	struct heard *h = arg;

	pthread_mutex_lock(&h->mu);
	h->notifies++;
	snprintf(h->last, sizeof(h->last), "%s", payload);
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void
heard_reconnect(void *arg)
{
	struct heard *h = arg;

	pthread_mutex_lock(&h->mu);
	h->reconnects++;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void
heard_init(struct heard *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
}

static void
heard_destroy(struct heard *h)
{
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
}

/* Waits until *counter reaches want, up to ms; its value then. */
static int
heard_wait(struct heard *h, const int *counter, int want, int ms)
{
	struct timespec ts;
	int v;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&h->mu);
	while (*counter < want &&
	    pthread_cond_timedwait(&h->cv, &h->mu, &ts) == 0)
		;
	v = *counter;
	pthread_mutex_unlock(&h->mu);
	return v;
}

static void
notify(struct pg_pool *p, const char *channel, const char *payload)
{
	const char *values[] = { channel, payload };

	run_ok(p, "notify", "SELECT pg_notify($1, $2)", 2, values);
}

static void
test_listener(void **state)
{
	static const char payload[] = "{\"k\": \"it's; \\\"quoted\\\"\"}";
	struct pg_pool *p = pool_new(1);
	struct pg_listener *l;
	struct heard h;
	char channel[64];

	(void)state;
	heard_init(&h);
	/* A channel name that needs quoting as an identifier. */
	snprintf(channel, sizeof(channel), "Test Chan\"%s", schema);
	l = pg_listener_start(conninfo, channel, heard_notify,
	    heard_reconnect, &h);
	assert_non_null(l);
	/* on_reconnect says LISTEN is in place; only then is a
	 * notification sure to arrive. */
	assert_int_equal(heard_wait(&h, &h.reconnects, 1, T_DEADLINE_MS), 1);
	notify(p, channel, payload);
	assert_int_equal(heard_wait(&h, &h.notifies, 1, T_DEADLINE_MS), 1);
	assert_string_equal(h.last, payload);
	notify(p, "some other channel", "x");
	notify(p, channel, "second");
	assert_int_equal(heard_wait(&h, &h.notifies, 2, T_DEADLINE_MS), 2);
	assert_string_equal(h.last, "second");
	pg_listener_stop(l);
	heard_destroy(&h);
	pg_pool_free(p);
}

/* A listener on a dead port keeps retrying and stops promptly. */
static void
test_listener_down(void **state)
{
	struct pg_listener *l;
	struct heard h;
	char ci[256];

	(void)state;
	heard_init(&h);
	snprintf(ci, sizeof(ci), "postgresql://x:y@127.0.0.1:%d/x",
	    closed_port());
	l = pg_listener_start(ci, "ch", heard_notify, heard_reconnect, &h);
	assert_non_null(l);
	sleep_ms(400);		/* a few attempts with backoff */
	pg_listener_stop(l);
	assert_int_equal(h.reconnects, 0);
	heard_destroy(&h);
}

/* ---- outage and recovery (PLATFORM_TEST_PG_CTL) ---- */

static void
pg_ctl(const char *what)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "%s %s", getenv("PLATFORM_TEST_PG_CTL"),
	    what);
	assert_int_equal(system(cmd), 0);
}

static void
test_outage(void **state)
{
	const char *ctl = getenv("PLATFORM_TEST_PG_CTL");
	struct pg_pool *p;
	struct pg_listener *l;
	struct heard h;
	char channel[64];

	(void)state;
	if (ctl == NULL || ctl[0] == '\0') {
		fprintf(stderr, "test_pg: PLATFORM_TEST_PG_CTL unset, "
		    "outage test skipped\n");
		skip();
	}
	heard_init(&h);
	snprintf(channel, sizeof(channel), "outage_%s", schema);
	p = pool_new(2);
	l = pg_listener_start(conninfo, channel, heard_notify,
	    heard_reconnect, &h);
	assert_non_null(l);
	assert_int_equal(heard_wait(&h, &h.reconnects, 1, T_DEADLINE_MS), 1);
	run_ok(p, "one", "SELECT 1", 0, NULL);

	pg_ctl("stop");
	/* The pooled connection is stale, and no new one opens. */
	assert_int_equal(run(p, "one", "SELECT 1", 0, NULL, NULL),
	    PLAT_UNAVAILABLE);
	assert_int_equal(run(p, "one", "SELECT 1", 0, NULL, NULL),
	    PLAT_UNAVAILABLE);

	pg_ctl("start");
	/* The backoff (at most 200 ms after two failures) is shorter than
	 * a start: the very next call reconnects, same pool. */
	run_ok(p, "one", "SELECT 1", 0, NULL);
	/* The listener is back (its backoff is at most 5 s) and said so,
	 * so a watcher re-reads what it missed; notifications flow. */
	assert_int_equal(heard_wait(&h, &h.reconnects, 2, 15000), 2);
	notify(p, channel, "after");
	assert_int_equal(heard_wait(&h, &h.notifies, 1, T_DEADLINE_MS), 1);
	assert_string_equal(h.last, "after");
	pg_listener_stop(l);
	heard_destroy(&h);
	pg_pool_free(p);
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_conninfo),
		cmocka_unit_test(test_text_roundtrip),
		cmocka_unit_test(test_array_roundtrip),
		cmocka_unit_test(test_binary_roundtrip),
		cmocka_unit_test(test_prepared_once_per_connection),
		cmocka_unit_test(test_exec_dynamic),
		cmocka_unit_test(test_constraint_errors),
		cmocka_unit_test(test_serialization_failure),
		cmocka_unit_test(test_statement_timeout),
		cmocka_unit_test(test_transactions),
		cmocka_unit_test(test_pipeline),
		cmocka_unit_test(test_migrations),
		cmocka_unit_test(test_migrations_concurrent),
		cmocka_unit_test(test_pool_exhausted),
		cmocka_unit_test(test_pool_threads),
		cmocka_unit_test(test_connection_killed),
		cmocka_unit_test(test_database_down),
		cmocka_unit_test(test_listener),
		cmocka_unit_test(test_listener_down),
		cmocka_unit_test(test_outage),
	};

	base_conninfo = getenv("PLATFORM_TEST_DATABASE");
	if (base_conninfo == NULL || base_conninfo[0] == '\0') {
		printf("test_pg: PLATFORM_TEST_DATABASE unset, skipped "
		    "(scripts/pg start; export "
		    "PLATFORM_TEST_DATABASE=$(scripts/pg url))\n");
		return 0;
	}
	log_setup(LOG_FORMAT_TEXT, LOG_LEVEL_WARN, "test_pg");
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
