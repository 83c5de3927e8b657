/*
 * pg: PostgreSQL through libpq, the way every server keeps its state.
 *
 * A bounded pool of connections opened lazily (a server starts while the
 * database is down), statements prepared once per connection and every
 * value bound as a parameter, deadlines from the caller, transactions,
 * versioned schema migrations and a LISTEN/NOTIFY helper.
 *
 * Every call returns a gRPC code (enum plat_code) and, when it is not
 * PLAT_OK, a short message in err fit to hand to the caller:
 *
 *   PLAT_UNAVAILABLE         the database is down or the connection was lost
 *                            ("database unavailable"; logged once per
 *                            outage, not once per call)
 *   PLAT_DEADLINE_EXCEEDED   the deadline passed while waiting for a pooled
 *                            connection or for a statement (SQLSTATE 57014)
 *   PLAT_ALREADY_EXISTS      unique_violation (23505)
 *   PLAT_ABORTED             serialization failure (40001), deadlock
 *                            (40P01), lock not available (55P03): retry
 *   PLAT_FAILED_PRECONDITION other integrity violations (23xxx: check,
 *                            foreign key, not null, exclusion)
 *   PLAT_INTERNAL            anything else; the server's message is logged,
 *                            the caller gets "internal database error"
 *
 * Deadlines: every timeout_ms is the time left of the caller's deadline,
 * as plat_ctx_deadline_left_ms() gives it: INT64_MAX for none, <= 0 for a
 * deadline already passed (PLAT_DEADLINE_EXCEEDED at once). A statement
 * still running at its deadline is cancelled on the server (PQcancel), so
 * it stops holding locks; this costs no round trip on the normal path, as
 * a per-statement SET statement_timeout would.
 *
 * Typical use in a handler:
 *
 *     struct pg_conn *c;
 *     PGresult *res;
 *     int64_t left = plat_ctx_deadline_left_ms(ctx);
 *
 *     if ((code = pg_acquire(pool, left, &c)) != PLAT_OK)
 *         return plat_error(ctx, code, "%s", pg_code_message(code));
 *     code = pg_exec(c, "config_get",
 *         "SELECT value FROM config WHERE ns = $1 AND path = $2",
 *         2, (const char *[]){ ns, path }, NULL, NULL,
 *         plat_ctx_deadline_left_ms(ctx), &res, err, sizeof(err));
 *     pg_release(pool, c);
 *     if (code != PLAT_OK)
 *         return plat_error(ctx, code, "%s", err);
 *     ... PQgetvalue(res, 0, 0) ..., then PQclear(res);
 */
#ifndef PLATFORM_PG_H
#define PLATFORM_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "platform/server.h"

struct pg_pool;
struct pg_conn;

/* Pool: at most size connections to conninfo (a libpq key=value string or
 * postgresql:// URL). Nothing connects here; connections open on first
 * use. NULL when conninfo does not parse (the reason is logged; check it
 * earlier with pg_conninfo_check to name the setting) or size < 1. */
struct pg_pool *pg_pool_new(const char *conninfo, int size);
/* Closes every connection; none may be acquired any more. NULL is fine. */
void pg_pool_free(struct pg_pool *pool);

/* 0 when conninfo parses, else -1 with libpq's reason in err. */
int pg_conninfo_check(const char *conninfo, char *err, size_t errlen);

/*
 * For a server that cannot run without --database, as its
 * check_settings: the setting is given and parses, so a missing or
 * malformed one is a one-line error naming it (never quoting the
 * password) and exit code 2 like every bad setting. 0, or -1 with err.
 */
int pg_check_database(const struct plat_settings *s, char *err,
    size_t errlen);

/*
 * Takes a connection, waiting up to timeout_ms for one to be free.
 * PLAT_OK: *conn is yours until pg_release. PLAT_DEADLINE_EXCEEDED: every
 * connection stayed busy until the deadline (the pool is exhausted; the
 * caller's deadline is spent, so retrying makes no sense). PLAT_UNAVAILABLE:
 * the database cannot be reached; after a failed connect the pool does
 * not try again for a backoff (100 ms doubling to 5 s) and fails fast.
 */
enum plat_code pg_acquire(struct pg_pool *pool, int64_t timeout_ms,
    struct pg_conn **conn);
/* The message for a code from pg_acquire: "database unavailable", ... */
const char *pg_code_message(enum plat_code code);
/* Gives it back. A transaction left open is rolled back; a connection in
 * an unknown state is closed and reopened on next use. */
void pg_release(struct pg_pool *pool, struct pg_conn *conn);

/*
 * Runs one statement: prepared under name on first use on this connection
 * (PQprepare, parameter types inferred by the server: cast in the SQL,
 * "$1::bytea"), then PQexecPrepared with the values bound. The same name
 * must always come with the same sql. values[i] NULL is SQL NULL; lengths
 * and formats (1 = binary) may be NULL for all-text parameters. On
 * PLAT_OK, *result (if result is not NULL) is the result of the statement,
 * text format, freed by the caller with PQclear; otherwise *result is NULL.
 */
enum plat_code pg_exec(struct pg_conn *conn, const char *name,
    const char *sql, int nparams, const char *const *values,
    const int *lengths, const int *formats, int64_t timeout_ms,
    PGresult **result, char *err, size_t errlen);

/*
 * A statement whose text is made per call (a search compiled from a
 * caller's filter, DDL text the database itself formatted): sent with
 * its values bound as pg_exec does, but never prepared (the unnamed
 * statement, planned with the values at hand), so statements of many
 * shapes leave nothing behind on the connection. Not as the first
 * statement of a pg_tx (PLAT_INTERNAL: run a pg_exec first); outside a
 * transaction it may be a statement that cannot run in one (CREATE
 * INDEX CONCURRENTLY).
 */
enum plat_code pg_exec_dynamic(struct pg_conn *conn, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    PGresult **result, char *err, size_t errlen);

/*
 * Pipelines: several statements sent at once and their results read back
 * in order, in one round trip (libpq's pipeline mode), for statements
 * whose values do not depend on each other's results. Each is as pg_exec
 * (prepared under its name on first use, in the same round trip). On
 * PLAT_OK every q[i].result is a result for the caller to PQclear;
 * otherwise each is NULL and the first failure is the outcome (in a
 * transaction, the statements after it did not run).
 */
struct pg_query {
	const char *name;
	const char *sql;
	int nparams;
	const char *const *values;
	const int *lengths;             /* NULL: all text */
	const int *formats;             /* NULL: all text */
	PGresult *result;               /* out */
};
enum plat_code pg_pipeline(struct pg_conn *conn, struct pg_query *q,
    size_t n, int64_t timeout_ms, char *err, size_t errlen);
/* In a pg_tx fn, as its last step: q then COMMIT in one round trip, and
 * fn returns this code (pg_tx then has nothing left to commit). As for
 * pg_commit, PLAT_DEADLINE_EXCEEDED or PLAT_UNAVAILABLE mean the outcome
 * is unknown. */
enum plat_code pg_pipeline_commit(struct pg_conn *conn, struct pg_query *q,
    size_t n, int64_t timeout_ms, char *err, size_t errlen);

/* Transactions on one acquired connection. A failed pg_exec inside leaves
 * the transaction aborted: pg_rollback it (pg_release does too). */
enum plat_code pg_begin(struct pg_conn *conn, int64_t timeout_ms,
    char *err, size_t errlen);
/* PLAT_DEADLINE_EXCEEDED or PLAT_UNAVAILABLE from a commit mean the
 * outcome is unknown: it may have committed. */
enum plat_code pg_commit(struct pg_conn *conn, int64_t timeout_ms,
    char *err, size_t errlen);
enum plat_code pg_rollback(struct pg_conn *conn, int64_t timeout_ms,
    char *err, size_t errlen);

/*
 * Whole transaction: acquires, BEGIN, fn, COMMIT (or ROLLBACK when fn does
 * not return PLAT_OK), releases. BEGIN is sent with fn's first statement,
 * in the same round trip, and fn may commit with its last
 * (pg_pipeline_commit). A transaction aborted by a serialization
 * failure or deadlock (PLAT_ABORTED) is run again, up to 3 times in all
 * while the deadline allows, so fn must do nothing outside the database
 * that it cannot repeat. fn gets the time left and writes err itself.
 */
typedef enum plat_code (*pg_tx_fn)(struct pg_conn *conn, int64_t timeout_ms,
    void *arg, char *err, size_t errlen);
enum plat_code pg_tx(struct pg_pool *pool, int64_t timeout_ms, pg_tx_fn fn,
    void *arg, char *err, size_t errlen);

/*
 * Versioned schema migrations. Each component (one per server: "config",
 * "auth", ...) lists its migrations in ascending version order, versions
 * >= 1; a migration never changes once released: a change is a new one.
 */
struct pg_migration {
	int		 version;
	const char	*name;		/* "create config tables" */
	/* One or more statements; no BEGIN/COMMIT and nothing that cannot
	 * run in a transaction (CREATE INDEX CONCURRENTLY). */
	const char	*sql;
};

/*
 * Brings component's schema up to the last migration: each pending one is
 * applied in its own transaction with its row in
 * platform_schema_migrations(component, version, name, applied_at),
 * under an advisory lock per component, so replicas starting together
 * apply each migration exactly once. A database already at a version
 * newer than the last one given gets PLAT_FAILED_PRECONDITION and "database
 * schema for <component> is at version N, newer than this server knows
 * (M)". PLAT_UNAVAILABLE when the database cannot be reached: the server
 * decides whether to wait or to exit. Statements run without a deadline.
 */
enum plat_code pg_migrate(struct pg_pool *pool, const char *component,
    const struct pg_migration *migrations, size_t n, char *err,
    size_t errlen);

/*
 * LISTEN/NOTIFY: a thread with its own connection that calls on_notify
 * with each payload sent on channel (NOTIFY channel, 'payload' or
 * pg_notify(channel, payload)). The connection comes back by itself with
 * backoff after an outage; on_reconnect (may be NULL) is called each time
 * LISTEN is in place again, the first time included: notifications sent
 * before that were missed, so a watcher re-reads the state there. Both
 * callbacks run on the listener thread, never at the same time.
 */
struct pg_listener;
typedef void (*pg_notify_fn)(const char *payload, void *arg);
typedef void (*pg_reconnect_fn)(void *arg);

/* NULL when conninfo does not parse or the thread cannot start. */
struct pg_listener *pg_listener_start(const char *conninfo,
    const char *channel, pg_notify_fn on_notify,
    pg_reconnect_fn on_reconnect, void *arg);
/* Stops promptly (no callback runs after it returns) and frees. NULL is
 * fine. Not from inside a callback. */
void pg_listener_stop(struct pg_listener *l);

/*
 * A server's database in one handle: its pool and its schema (the
 * migrations of one component). Until pg_store_migrate has succeeded
 * every call answers PLAT_UNAVAILABLE, so a server that started while the
 * database was away serves errors, not a missing schema, and recovers by
 * migrating again later. migrations must outlive the store.
 */
struct pg_store;

struct pg_store *pg_store_new(const char *conninfo, int pool_size,
    const char *component, const struct pg_migration *migrations,
    size_t nmigrations);
void pg_store_free(struct pg_store *s);           /* NULL is fine */
enum plat_code pg_store_migrate(struct pg_store *s, char *err,
    size_t errlen);
bool pg_store_ready(struct pg_store *s);
/* One statement on a pooled connection, as pg_exec with text
 * parameters; res may be NULL to drop the result. */
enum plat_code pg_store_exec(struct pg_store *s, const char *name,
    const char *sql, int nparams, const char *const *values,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen);
/* pg_tx on the store's pool. */
enum plat_code pg_store_tx(struct pg_store *s, int64_t timeout_ms,
    pg_tx_fn fn, void *arg, char *err, size_t errlen);
/* fn on a pooled connection outside a transaction (several statements
 * that need no atomicity). */
enum plat_code pg_store_conn(struct pg_store *s, int64_t timeout_ms,
    pg_tx_fn fn, void *arg, char *err, size_t errlen);

/* An absolute plat_now_ms() deadline for a timeout (INT64_MAX: none),
 * and the time left until one, for functions running several statements
 * under one timeout. */
int64_t pg_deadline(int64_t timeout_ms);
int64_t pg_left(int64_t deadline);

/*
 * Array parameters: many values bound as one ($1::text[]), unnested in
 * the statement, so a batch of rows is one statement whatever its size.
 * pg_array builds the text form of an array literal, {"a","b\\"c"}:
 * every element quoted and escaped, so any text round-trips.
 */
struct pg_array {
	char *buf;
	size_t len, cap;
	size_t n;               /* elements */
};

void pg_array_init(struct pg_array *a);
void pg_array_add(struct pg_array *a, const char *s);
void pg_array_add_int(struct pg_array *a, int64_t v);
void pg_array_add_bool(struct pg_array *a, bool v);
/* The literal, valid until the next add or free. */
const char *pg_array_str(struct pg_array *a);
void pg_array_free(struct pg_array *a);

#endif
