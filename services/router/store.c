/*
 * store: router-srv's tables and statements (see store.h). Every
 * statement is prepared by name with its values bound; the packed Rules
 * travel as a binary parameter.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/errbuf.h"
#include "platform/xalloc.h"
#include "store.h"

static const struct pg_migration store_migrations[] = {
	{ 1, "create router tables",
	  "CREATE TABLE router_revision ("
	  " id integer PRIMARY KEY CHECK (id = 1),"
	  " rev bigint NOT NULL);"
	  "INSERT INTO router_revision (id, rev) VALUES (1, 0);"
	  "CREATE TABLE router_rules ("
	  " service text COLLATE \"C\" PRIMARY KEY,"
	  " body bytea,"
	  " version bigint NOT NULL,"
	  " revision bigint NOT NULL,"
	  " updated_at timestamptz NOT NULL DEFAULT now());"
	  "CREATE INDEX router_rules_revision ON router_rules (revision);" },
};

#define ROW_COLS "revision, service, body, version"

void
rules_row_ref(struct rules_row *r)
{
	__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
}

void
rules_row_unref(struct rules_row *r)
{
	if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL))
		return;
	free(r->service);
	PQfreemem(r->body);
	free(r);
}

static int64_t
int_at(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Row r of a result with ROW_COLS. */
static struct rules_row *
row_at(const PGresult *res, int r)
{
	struct rules_row *row = xcalloc(1, sizeof(*row));

	row->refs = 1;
	row->revision = int_at(res, r, 0);
	row->service = xstrdup(PQgetvalue(res, r, 1));
	if (!PQgetisnull(res, r, 2))
		row->body = PQunescapeBytea(
		    (const unsigned char *)PQgetvalue(res, r, 2), &row->len);
	row->version = int_at(res, r, 3);
	row->size = sizeof(*row) + strlen(row->service) + row->len;
	return row;
}

static enum plat_code
rows_of(PGresult *res, struct rules_row ***rows, size_t *n)
{
	*n = (size_t)PQntuples(res);
	*rows = xcalloc(*n + 1, sizeof(**rows));
	for (size_t i = 0; i < *n; i++)
		(*rows)[i] = row_at(res, (int)i);
	PQclear(res);
	return PLAT_OK;
}

struct pg_store *
store_new(const char *conninfo, int pool_size)
{
	return pg_store_new(conninfo, pool_size, "router", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
}

/* ---- writes ---- */

struct write {
	const char *service;
	const unsigned char *body;       /* NULL: delete */
	size_t len;
	int64_t expected;
	struct rules_row *row;           /* out */
};

static enum plat_code
write_tx(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct write *w = arg;
	int64_t deadline = pg_deadline(timeout_ms), live = 0, version = 0;
	char ver[24];
	const char *vals[3];
	int lengths[3] = { 0 }, formats[3] = { 0 };
	PGresult *res;
	enum plat_code code;

	/* One writer at a time: revisions then commit in order. */
	code = pg_exec(c, "router_lock", "SELECT rev FROM router_revision "
	    "WHERE id = 1 FOR UPDATE", 0, NULL, NULL, NULL, pg_left(deadline),
	    NULL, err, errlen);
	if (code != PLAT_OK)
		return code;
	code = pg_exec(c, "router_current", "SELECT version, body IS NOT NULL"
	    " FROM router_rules WHERE service = $1", 1,
	    (const char *[]){ w->service }, NULL, NULL, pg_left(deadline),
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1) {
		version = int_at(res, 0, 0);
		live = strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? version : 0;
	}
	PQclear(res);
	if (w->body == NULL && live == 0) {
		errbuf_set(err, errlen, "service %s has no rules", w->service);
		return PLAT_NOT_FOUND;
	}
	if (w->expected > 0 && w->expected != live) {
		if (live == 0)
			errbuf_set(err, errlen, "expected_version: %" PRId64
			    " but service %s has no rules", w->expected,
			    w->service);
		else
			errbuf_set(err, errlen, "expected_version: %" PRId64
			    " but the rules of %s are at version %" PRId64,
			    w->expected, w->service, live);
		return PLAT_FAILED_PRECONDITION;
	}
	snprintf(ver, sizeof(ver), "%" PRId64, version + 1);
	vals[0] = w->service;
	vals[1] = w->body != NULL ? (const char *)w->body : NULL;
	if (w->body != NULL && w->len == 0)
		vals[1] = "";
	lengths[1] = (int)w->len;
	formats[1] = 1;
	vals[2] = ver;
	code = pg_exec(c, "router_write",
	    "WITH r AS (UPDATE router_revision SET rev = rev + 1 WHERE id = 1"
	    "  RETURNING rev),"
	    " w AS (INSERT INTO router_rules (service, body, version, revision)"
	    "  SELECT $1, $2::bytea, $3::bigint, r.rev FROM r"
	    "  ON CONFLICT (service) DO UPDATE SET body = excluded.body,"
	    "  version = excluded.version, revision = excluded.revision,"
	    "  updated_at = now()"
	    "  RETURNING " ROW_COLS ")"
	    " SELECT w.*, pg_notify('" STORE_CHANNEL "', w.revision::text)"
	    " FROM w", 3, vals, lengths, formats, pg_left(deadline), &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1)
		w->row = row_at(res, 0);
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
store_write(struct pg_store *db, struct write *w, int64_t timeout_ms,
    struct rules_row **row, char *err, size_t errlen)
{
	enum plat_code code;

	*row = NULL;
	code = pg_store_tx(db, timeout_ms, write_tx, w, err, errlen);
	if (code != PLAT_OK) {
		rules_row_unref(w->row);
		return code;
	}
	*row = w->row;
	return PLAT_OK;
}

enum plat_code
store_set(struct pg_store *db, const char *service, const unsigned char *body,
    size_t len, int64_t expected, int64_t timeout_ms, struct rules_row **row,
    char *err, size_t errlen)
{
	struct write w = { service, body != NULL ? body :
	    (const unsigned char *)"", len, expected, NULL };

	return store_write(db, &w, timeout_ms, row, err, errlen);
}

enum plat_code
store_delete(struct pg_store *db, const char *service, int64_t expected,
    int64_t timeout_ms, struct rules_row **row, char *err, size_t errlen)
{
	struct write w = { service, NULL, 0, expected, NULL };

	return store_write(db, &w, timeout_ms, row, err, errlen);
}

/* ---- reads ---- */

enum plat_code
store_list(struct pg_store *db, int64_t timeout_ms, struct rules_row ***rows,
    size_t *n, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*rows = NULL;
	*n = 0;
	code = pg_store_exec(db, "router_list", "SELECT " ROW_COLS
	    " FROM router_rules WHERE body IS NOT NULL ORDER BY service", 0,
	    NULL, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	return rows_of(res, rows, n);
}

enum plat_code
store_head(struct pg_store *db, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	code = pg_store_exec(db, "router_head",
	    "SELECT rev FROM router_revision WHERE id = 1", 0, NULL,
	    timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*rev = PQntuples(res) == 1 ? int_at(res, 0, 0) : 0;
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_changes(struct pg_store *db, int64_t after, int64_t upto, int limit,
    int64_t timeout_ms, struct rules_row ***rows, size_t *n, char *err,
    size_t errlen)
{
	char a[24], u[24], lim[16];
	PGresult *res;
	enum plat_code code;

	*rows = NULL;
	*n = 0;
	snprintf(a, sizeof(a), "%" PRId64, after);
	snprintf(u, sizeof(u), "%" PRId64, upto);
	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(db, "router_changes", "SELECT " ROW_COLS
	    " FROM router_rules WHERE revision > $1::bigint"
	    " AND ($2::bigint <= 0 OR revision <= $2::bigint)"
	    " ORDER BY revision LIMIT $3::integer", 3,
	    (const char *[]){ a, u, lim }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	return rows_of(res, rows, n);
}
