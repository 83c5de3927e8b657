/*
 * store: config-srv's PostgreSQL tables and statements (see store.h).
 *
 * Every statement is prepared by name and takes its values as bound
 * parameters. namespace and path are COLLATE "C" so that List pages in
 * byte order whatever the database's locale.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "store.h"

struct store {
	struct pg_pool *pool;
	atomic_int ready;
};

static const struct pg_migration store_migrations[] = {
	{ 1, "create config tables",
	  "CREATE TABLE config_versions ("
	  " revision bigint PRIMARY KEY,"
	  " namespace text COLLATE \"C\" NOT NULL,"
	  " path text COLLATE \"C\" NOT NULL,"
	  " version bigint NOT NULL,"
	  " json text NOT NULL,"
	  " deleted boolean NOT NULL DEFAULT false,"
	  " author text NOT NULL DEFAULT '',"
	  " comment text NOT NULL DEFAULT '',"
	  " created_at timestamptz NOT NULL DEFAULT now(),"
	  " UNIQUE (namespace, path, version));"
	  "CREATE TABLE config_current ("
	  " namespace text COLLATE \"C\" NOT NULL,"
	  " path text COLLATE \"C\" NOT NULL,"
	  " version bigint NOT NULL,"
	  " revision bigint NOT NULL,"
	  " deleted boolean NOT NULL,"
	  " PRIMARY KEY (namespace, path));"
	  "CREATE TABLE config_revision ("
	  " id integer PRIMARY KEY CHECK (id = 1),"
	  " rev bigint NOT NULL);"
	  "INSERT INTO config_revision (id, rev) VALUES (1, 0);" },
};

/* The columns every row-returning statement selects, in cfg_row order. */
#define ROW_COLS \
	"v.revision, v.namespace, v.path, v.version, v.json, v.deleted," \
	" v.author, v.comment," \
	" floor(extract(epoch FROM v.created_at) * 1000)::bigint"
#define LIST_COLS \
	"v.revision, v.namespace, v.path, v.version, '', v.deleted," \
	" v.author, v.comment," \
	" floor(extract(epoch FROM v.created_at) * 1000)::bigint"

/* ---- rows ---- */

static struct cfg_row *
row_new(int64_t revision, const char *ns, const char *path, int64_t version,
    const char *json, bool deleted, const char *author, const char *comment,
    int64_t created_ms)
{
	const char *s[] = { ns, path, json, author, comment };
	size_t len[5], total = sizeof(struct cfg_row);
	struct cfg_row *r;
	char *p;

	for (int i = 0; i < 5; i++)
		total += (len[i] = strlen(s[i])) + 1;
	r = xcalloc(1, total);
	r->refs = 1;
	r->revision = revision;
	r->version = version;
	r->created_ms = created_ms;
	r->deleted = deleted;
	r->size = total;
	p = (char *)(r + 1);
	for (int i = 0; i < 5; i++) {
		char **dst[] = { &r->ns, &r->path, &r->json, &r->author,
		    &r->comment };

		memcpy(p, s[i], len[i] + 1);
		*dst[i] = p;
		p += len[i] + 1;
	}
	return r;
}

struct cfg_row *
cfg_row_ref(struct cfg_row *r)
{
	__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void
cfg_row_unref(struct cfg_row *r)
{
	if (r != NULL && __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(r);
}

void
cfg_rows_free(struct cfg_rows *rows)
{
	for (size_t i = 0; i < rows->n; i++)
		cfg_row_unref(rows->v[i]);
	free(rows->v);
	rows->v = NULL;
	rows->n = 0;
}

/* Row i of a result selecting ROW_COLS or LIST_COLS. */
static struct cfg_row *
row_from_result(const PGresult *res, int i)
{
	return row_new(strtoll(PQgetvalue(res, i, 0), NULL, 10),
	    PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
	    strtoll(PQgetvalue(res, i, 3), NULL, 10), PQgetvalue(res, i, 4),
	    PQgetvalue(res, i, 5)[0] == 't', PQgetvalue(res, i, 6),
	    PQgetvalue(res, i, 7), strtoll(PQgetvalue(res, i, 8), NULL, 10));
}

static void
rows_from_result(const PGresult *res, struct cfg_rows *out)
{
	int n = PQntuples(res);

	out->n = 0;
	out->v = xcalloc((size_t)n, sizeof(*out->v));
	for (int i = 0; i < n; i++)
		out->v[out->n++] = row_from_result(res, i);
}

/* ---- deadlines ---- */

static int64_t
deadline_of(int64_t timeout_ms)
{
	return timeout_ms == INT64_MAX ? INT64_MAX :
	    plat_now_ms() + timeout_ms;
}

static int64_t
left_of(int64_t deadline)
{
	return deadline == INT64_MAX ? INT64_MAX : deadline - plat_now_ms();
}

/* ---- the store ---- */

struct store *
store_new(const char *conninfo, int pool_size)
{
	struct store *s;
	struct pg_pool *pool;

	if ((pool = pg_pool_new(conninfo, pool_size)) == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->pool = pool;
	atomic_init(&s->ready, 0);
	return s;
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	pg_pool_free(s->pool);
	free(s);
}

enum plat_code
store_migrate(struct store *s, char *err, size_t errlen)
{
	enum plat_code code;

	code = pg_migrate(s->pool, "config", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]), err,
	    errlen);
	if (code == PLAT_OK)
		atomic_store(&s->ready, 1);
	return code;
}

bool
store_ready(struct store *s)
{
	return atomic_load(&s->ready) != 0;
}

/* One statement on a pooled connection. */
static enum plat_code
store_query(struct store *s, const char *name, const char *sql, int nparams,
    const char *const *values, int64_t timeout_ms, PGresult **res,
    char *err, size_t errlen)
{
	struct pg_conn *c;
	enum plat_code code;

	*res = NULL;
	if (!store_ready(s)) {
		errbuf_set(err, errlen, "%s", pg_code_message(
		    PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	if ((code = pg_acquire(s->pool, timeout_ms, &c)) != PLAT_OK) {
		errbuf_set(err, errlen, "%s", pg_code_message(code));
		return code;
	}
	code = pg_exec(c, name, sql, nparams, values, NULL, NULL, timeout_ms,
	    res, err, errlen);
	pg_release(s->pool, c);
	return code;
}

/* A statement expected to give zero or one row. */
static enum plat_code
store_query_row(struct store *s, const char *name, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    struct cfg_row **out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*out = NULL;
	code = store_query(s, name, sql, nparams, values, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) > 0)
		*out = row_from_result(res, 0);
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
store_query_rows(struct store *s, const char *name, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    struct cfg_rows *out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	out->v = NULL;
	out->n = 0;
	code = store_query(s, name, sql, nparams, values, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	rows_from_result(res, out);
	PQclear(res);
	return PLAT_OK;
}

/* ---- writes ---- */

struct write_ctx {
	const struct store_write *w;
	struct cfg_row *row;
};

/* Locks the path's current row, creating a placeholder (version 0) for a
 * new path, and reads its version. */
static enum plat_code
write_lock(struct pg_conn *c, const struct store_write *w, int64_t deadline,
    int64_t *version, bool *deleted, char *err, size_t errlen)
{
	const char *values[] = { w->ns, w->path };
	PGresult *res;
	enum plat_code code;

	code = pg_exec(c, "config_w_placeholder",
	    "INSERT INTO config_current (namespace, path, version, revision,"
	    " deleted) VALUES ($1, $2, 0, 0, true) ON CONFLICT DO NOTHING",
	    2, values, NULL, NULL, left_of(deadline), NULL, err, errlen);
	if (code != PLAT_OK)
		return code;
	code = pg_exec(c, "config_w_lock",
	    "SELECT version, deleted FROM config_current"
	    " WHERE namespace = $1 AND path = $2 FOR UPDATE",
	    2, values, NULL, NULL, left_of(deadline), &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) != 1) {
		PQclear(res);
		log_error("config: current row missing after insert",
		    "namespace", w->ns, "path", w->path);
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	*version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	*deleted = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
write_check_expected(const struct store_write *w, int64_t version,
    bool exists, char *err, size_t errlen)
{
	if (w->expected_version > 0 && w->expected_version != version) {
		if (version == 0)
			errbuf_set(err, errlen, "expected_version %" PRId64
			    ": the path does not exist", w->expected_version);
		else
			errbuf_set(err, errlen, "expected_version %" PRId64
			    ": the path is at version %" PRId64,
			    w->expected_version, version);
		return PLAT_FAILED_PRECONDITION;
	}
	if (w->expected_version == -1 && exists) {
		errbuf_set(err, errlen, "expected_version -1: the path exists "
		    "at version %" PRId64, version);
		return PLAT_FAILED_PRECONDITION;
	}
	return PLAT_OK;
}

/* The document a rollback writes: a copy of to_version's (malloc'd). */
static enum plat_code
write_rollback_source(struct pg_conn *c, const struct store_write *w,
    int64_t deadline, char **json, char *err, size_t errlen)
{
	char to[24];
	const char *values[] = { w->ns, w->path, to };
	PGresult *res;
	enum plat_code code;

	snprintf(to, sizeof(to), "%" PRId64, w->to_version);
	code = pg_exec(c, "config_w_rollback_source",
	    "SELECT json, deleted FROM config_versions"
	    " WHERE namespace = $1 AND path = $2 AND version = $3",
	    3, values, NULL, NULL, left_of(deadline), &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 0) {
		errbuf_set(err, errlen, "to_version %" PRId64 ": no such "
		    "version of namespace \"%s\" path \"%s\"", w->to_version,
		    w->ns, w->path);
		code = PLAT_NOT_FOUND;
	} else if (PQgetvalue(res, 0, 1)[0] == 't') {
		errbuf_set(err, errlen, "to_version %" PRId64 ": that version "
		    "is a deletion, with no value to roll back to",
		    w->to_version);
		code = PLAT_FAILED_PRECONDITION;
	} else {
		*json = xstrdup(PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return code;
}

/*
 * Takes the next revision (holding the revision row's lock to commit, so
 * revisions commit in order), writes the version, moves the current row
 * and notifies: one statement, so the lock is held for as few round trips
 * as possible.
 */
static enum plat_code
write_version(struct pg_conn *c, const struct store_write *w,
    int64_t version, const char *json, bool deleted, const char *comment,
    int64_t deadline, struct cfg_row **out, char *err, size_t errlen)
{
	char ver[24];
	const char *values[] = { w->ns, w->path, ver, json,
	    deleted ? "true" : "false", w->author, comment };
	PGresult *res;
	enum plat_code code;

	snprintf(ver, sizeof(ver), "%" PRId64, version);
	code = pg_exec(c, "config_w_version",
	    "WITH r AS (UPDATE config_revision SET rev = rev + 1"
	    "  WHERE id = 1 RETURNING rev),"
	    " v AS (INSERT INTO config_versions (revision, namespace, path,"
	    "  version, json, deleted, author, comment)"
	    "  SELECT r.rev, $1::text, $2::text, $3::bigint, $4::text,"
	    "  $5::boolean, $6::text, $7::text FROM r"
	    "  RETURNING revision, created_at),"
	    " c AS (UPDATE config_current SET version = $3::bigint,"
	    "  revision = (SELECT rev FROM r), deleted = $5::boolean"
	    "  WHERE namespace = $1 AND path = $2)"
	    " SELECT v.revision,"
	    "  floor(extract(epoch FROM v.created_at) * 1000)::bigint,"
	    "  pg_notify('" STORE_CHANNEL "', v.revision::text) FROM v",
	    7, values, NULL, NULL, left_of(deadline), &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) != 1) {
		PQclear(res);
		log_error("config: revision row missing");
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	*out = row_new(strtoll(PQgetvalue(res, 0, 0), NULL, 10), w->ns,
	    w->path, version, json, deleted, w->author, comment,
	    strtoll(PQgetvalue(res, 0, 1), NULL, 10));
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
write_tx(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct write_ctx *x = arg;
	const struct store_write *w = x->w;
	int64_t deadline = deadline_of(timeout_ms), version;
	const char *json = "", *comment = w->comment;
	char *rb_json = NULL, rb_comment[64];
	bool deleted, exists;
	enum plat_code code;

	cfg_row_unref(x->row);  /* from an attempt that did not commit */
	x->row = NULL;
	code = write_lock(c, w, deadline, &version, &deleted, err, errlen);
	if (code != PLAT_OK)
		return code;
	exists = version > 0 && !deleted;
	code = write_check_expected(w, version, exists, err, errlen);
	if (code != PLAT_OK)
		return code;
	switch (w->op) {
	case STORE_UPDATE:
		json = w->json;
		break;
	case STORE_DELETE:
		if (!exists) {
			if (version == 0)
				errbuf_set(err, errlen, "namespace \"%s\" path "
				    "\"%s\" does not exist", w->ns, w->path);
			else
				errbuf_set(err, errlen, "namespace \"%s\" path "
				    "\"%s\" is already deleted (version %"
				    PRId64 ")", w->ns, w->path, version);
			return PLAT_NOT_FOUND;
		}
		break;
	case STORE_ROLLBACK:
		code = write_rollback_source(c, w, deadline, &rb_json, err,
		    errlen);
		if (code != PLAT_OK)
			return code;
		json = rb_json;
		if (comment[0] == '\0') {
			snprintf(rb_comment, sizeof(rb_comment),
			    "rollback to version %" PRId64, w->to_version);
			comment = rb_comment;
		}
		break;
	}
	code = write_version(c, w, version + 1, json, w->op == STORE_DELETE,
	    comment, deadline, &x->row, err, errlen);
	free(rb_json);
	return code;
}

enum plat_code
store_write(struct store *s, const struct store_write *w,
    int64_t timeout_ms, struct cfg_row **out, char *err, size_t errlen)
{
	struct write_ctx x = { .w = w, .row = NULL };
	enum plat_code code;

	*out = NULL;
	if (!store_ready(s)) {
		errbuf_set(err, errlen, "%s", pg_code_message(
		    PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	code = pg_tx(s->pool, timeout_ms, write_tx, &x, err, errlen);
	if (code != PLAT_OK) {
		cfg_row_unref(x.row);
		return code;
	}
	*out = x.row;
	return PLAT_OK;
}

/* ---- reads ---- */

enum plat_code
store_latest(struct store *s, const char *ns, const char *path,
    int64_t timeout_ms, struct cfg_row **out, char *err, size_t errlen)
{
	const char *values[] = { ns, path };

	return store_query_row(s, "config_latest",
	    "SELECT " ROW_COLS " FROM config_current c"
	    " JOIN config_versions v ON v.revision = c.revision"
	    " WHERE c.namespace = $1 AND c.path = $2 AND c.version > 0",
	    2, values, timeout_ms, out, err, errlen);
}

enum plat_code
store_version(struct store *s, const char *ns, const char *path,
    int64_t version, int64_t timeout_ms, struct cfg_row **out, char *err,
    size_t errlen)
{
	char ver[24];
	const char *values[] = { ns, path, ver };

	snprintf(ver, sizeof(ver), "%" PRId64, version);
	return store_query_row(s, "config_version",
	    "SELECT " ROW_COLS " FROM config_versions v"
	    " WHERE v.namespace = $1 AND v.path = $2 AND v.version = $3",
	    3, values, timeout_ms, out, err, errlen);
}

enum plat_code
store_history(struct store *s, const char *ns, const char *path,
    int64_t before_version, int limit, int64_t timeout_ms,
    struct cfg_rows *out, char *err, size_t errlen)
{
	char before[24], lim[16];
	const char *values[] = { ns, path, before, lim };

	snprintf(before, sizeof(before), "%" PRId64, before_version);
	snprintf(lim, sizeof(lim), "%d", limit);
	return store_query_rows(s, "config_history",
	    "SELECT " ROW_COLS " FROM config_versions v"
	    " WHERE v.namespace = $1 AND v.path = $2"
	    " AND ($3::bigint = 0 OR v.version < $3::bigint)"
	    " ORDER BY v.version DESC LIMIT $4",
	    4, values, timeout_ms, out, err, errlen);
}

enum plat_code
store_list(struct store *s, const char *ns, const char *prefix,
    const char *after_path, bool include_deleted, int limit,
    int64_t timeout_ms, struct cfg_rows *out, char *err, size_t errlen)
{
	char lim[16];
	const char *values[] = { ns, prefix, after_path,
	    include_deleted ? "true" : "false", lim };

	snprintf(lim, sizeof(lim), "%d", limit);
	return store_query_rows(s, "config_list",
	    "SELECT " LIST_COLS " FROM config_current c"
	    " JOIN config_versions v ON v.revision = c.revision"
	    " WHERE c.namespace = $1 AND c.path >= $2"
	    " AND left(c.path, length($2)) = $2 AND c.path > $3"
	    " AND c.version > 0 AND ($4::boolean OR NOT c.deleted)"
	    " ORDER BY c.path LIMIT $5",
	    5, values, timeout_ms, out, err, errlen);
}

/* A text[] literal of validated namespaces ([a-z0-9_/-] only), bound as
 * one parameter. */
static char *
namespaces_literal(const char *const *namespaces, size_t nns)
{
	size_t len = 3, o = 0;
	char *lit;

	for (size_t i = 0; i < nns; i++)
		len += strlen(namespaces[i]) + 3;
	lit = xcalloc(1, len);
	lit[o++] = '{';
	for (size_t i = 0; i < nns; i++)
		o += (size_t)sprintf(lit + o, "%s\"%s\"", i > 0 ? "," : "",
		    namespaces[i]);
	lit[o++] = '}';
	lit[o] = '\0';
	return lit;
}

enum plat_code
store_changes(struct store *s, int64_t after, int64_t upto,
    const char *const *namespaces, size_t nns, const char *prefix,
    int limit, int64_t timeout_ms, struct cfg_rows *out, char *err,
    size_t errlen)
{
	char a[24], u[24], lim[16];
	char *nslit = namespaces_literal(namespaces, nns);
	const char *values[] = { a, u, nslit, prefix, lim };
	enum plat_code code;

	snprintf(a, sizeof(a), "%" PRId64, after);
	snprintf(u, sizeof(u), "%" PRId64, upto);
	snprintf(lim, sizeof(lim), "%d", limit);
	code = store_query_rows(s, "config_changes",
	    "SELECT " ROW_COLS " FROM config_versions v"
	    " WHERE v.revision > $1::bigint"
	    " AND ($2::bigint = 0 OR v.revision <= $2::bigint)"
	    " AND (cardinality($3::text[]) = 0"
	    "  OR v.namespace = ANY($3::text[]))"
	    " AND left(v.path, length($4)) = $4"
	    " ORDER BY v.revision LIMIT $5",
	    5, values, timeout_ms, out, err, errlen);
	free(nslit);
	return code;
}

enum plat_code
store_head(struct store *s, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*rev = 0;
	code = store_query(s, "config_head",
	    "SELECT rev FROM config_revision WHERE id = 1", 0, NULL,
	    timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1)
		*rev = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PLAT_OK;
}
