/*
 * store: config-srv's PostgreSQL tables and statements (see store.h).
 *
 * Every statement is prepared by name and takes its values as bound
 * parameters. namespace and path are COLLATE "C" so that List pages in
 * byte order whatever the database's locale.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "store.h"

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

/* ---- the store ---- */

struct pg_store *
store_new(const char *conninfo, int pool_size)
{
	return pg_store_new(conninfo, pool_size, "config", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
}

/* A statement expected to give zero or one row. */
static enum plat_code
store_query_row(struct pg_store *s, const char *name, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    struct cfg_row **out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*out = NULL;
	code = pg_store_exec(s, name, sql, nparams, values, timeout_ms,
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) > 0)
		*out = row_from_result(res, 0);
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
store_query_rows(struct pg_store *s, const char *name, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    struct cfg_rows *out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	out->v = NULL;
	out->n = 0;
	code = pg_store_exec(s, name, sql, nparams, values, timeout_ms,
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	rows_from_result(res, out);
	PQclear(res);
	return PLAT_OK;
}

/* ---- writes: one transaction per batch ---- */

/*
 * A batch commits under the revision row's lock, taken first: writers on
 * every replica serialise on it, so the current rows read next stay true
 * until the commit, and revisions commit in increasing order. Each write
 * is then checked in C against the state left by the writes before it in
 * the batch; the ones that pass are inserted, the current rows moved and
 * one notification sent with the last revision, all in one statement.
 * Two round trips in all: BEGIN with the reads, the write with COMMIT.
 */

/* The state of one (namespace, path) while a batch is checked. */
struct batch_key {
	const char *ns, *path;
	int64_t version;        /* 0: never existed */
	bool deleted;
	bool touched;           /* written by this batch */
	int64_t revision;       /* of this batch's last write to it */
};

struct batch {
	struct store_batch_item *items;
	size_t n;
	struct batch_key *keys; /* open addressing, nkeys a power of two */
	size_t nkeys;
	PGresult *sources;      /* rollback targets read from the database */
	int64_t created_ms;
	int64_t first_rev;      /* the last revision before the batch */
};

static uint64_t
key_hash(const char *ns, const char *path)
{
	uint64_t h = 1469598103934665603ull;     /* FNV-1a */

	for (const char *p = ns; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;      /* a byte no text holds */
	for (const char *p = path; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

/* The slot of (ns, path), claimed if it is new. */
static struct batch_key *
batch_key(struct batch *b, const char *ns, const char *path)
{
	size_t mask = b->nkeys - 1, i = (size_t)key_hash(ns, path) & mask;

	for (;; i = (i + 1) & mask) {
		struct batch_key *k = &b->keys[i];

		if (k->ns == NULL) {
			k->ns = ns;
			k->path = path;
			return k;
		}
		if (strcmp(k->ns, ns) == 0 && strcmp(k->path, path) == 0)
			return k;
	}
}

static void
item_fail(struct store_batch_item *it, enum plat_code code, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static void
item_fail(struct store_batch_item *it, enum plat_code code, const char *fmt,
    ...)
{
	va_list ap;

	it->code = code;
	va_start(ap, fmt);
	vsnprintf(it->err, sizeof(it->err), fmt, ap);
	va_end(ap);
}

/*
 * The batch's reads, sent together in one round trip with the
 * transaction's BEGIN (pg_pipeline): the revision row's lock, then the
 * current version of every path the batch writes (one index lookup per
 * path: LATERAL ... LIMIT 1 keeps the planner from turning it into a hash
 * join over the whole table), then, when the batch rolls back, the
 * documents its rollbacks copy. The statements run in order, so the
 * reads see the state under the lock.
 */
enum { R_LOCK, R_CURRENT, R_SOURCES, R_QUERIES };
enum { R_NS, R_PATH, R_SRC_NS, R_SRC_PATH, R_SRC_VERSION, R_ARRAYS };

static enum plat_code
batch_read(struct pg_conn *c, struct batch *b, int64_t deadline, int64_t *rev,
    char *err, size_t errlen)
{
	struct pg_array arr[R_ARRAYS];
	const char *cur[2], *src[3];
	struct pg_query q[R_QUERIES] = {
		[R_LOCK] = { "config_w_lock",
		    "SELECT rev, floor(extract(epoch FROM now()) * 1000)::bigint"
		    " FROM config_revision WHERE id = 1 FOR UPDATE",
		    0, NULL, NULL, NULL, NULL },
		[R_CURRENT] = { "config_w_current",
		    "SELECT c.namespace, c.path, c.version, c.deleted"
		    " FROM unnest($1::text[], $2::text[]) AS k(ns, path)"
		    " CROSS JOIN LATERAL (SELECT * FROM config_current"
		    "  WHERE namespace = k.ns COLLATE \"C\""
		    "  AND path = k.path COLLATE \"C\" LIMIT 1) c",
		    2, cur, NULL, NULL, NULL },
		[R_SOURCES] = { "config_w_sources",
		    "SELECT v.namespace, v.path, v.version, v.json, v.deleted"
		    " FROM unnest($1::text[], $2::text[], $3::bigint[])"
		    "  AS k(ns, path, version)"
		    " CROSS JOIN LATERAL (SELECT * FROM config_versions"
		    "  WHERE namespace = k.ns COLLATE \"C\""
		    "  AND path = k.path COLLATE \"C\" AND version = k.version"
		    "  LIMIT 1) v",
		    3, src, NULL, NULL, NULL },
	};
	PGresult *res;
	enum plat_code code;

	for (int i = 0; i < R_ARRAYS; i++)
		pg_array_init(&arr[i]);
	for (size_t i = 0; i < b->nkeys; i++)
		if (b->keys[i].ns != NULL) {
			pg_array_add(&arr[R_NS], b->keys[i].ns);
			pg_array_add(&arr[R_PATH], b->keys[i].path);
		}
	for (size_t i = 0; i < b->n; i++) {
		const struct store_write *w = b->items[i].w;

		if (w->op == STORE_ROLLBACK) {
			pg_array_add(&arr[R_SRC_NS], w->ns);
			pg_array_add(&arr[R_SRC_PATH], w->path);
			pg_array_add_int(&arr[R_SRC_VERSION], w->to_version);
		}
	}
	cur[0] = pg_array_str(&arr[R_NS]);
	cur[1] = pg_array_str(&arr[R_PATH]);
	src[0] = pg_array_str(&arr[R_SRC_NS]);
	src[1] = pg_array_str(&arr[R_SRC_PATH]);
	src[2] = pg_array_str(&arr[R_SRC_VERSION]);
	code = pg_pipeline(c, q, arr[R_SRC_NS].n > 0 ? R_QUERIES : R_SOURCES,
	    pg_left(deadline), err, errlen);
	for (int i = 0; i < R_ARRAYS; i++)
		pg_array_free(&arr[i]);
	if (code != PLAT_OK)
		return code;
	res = q[R_LOCK].result;
	if (PQntuples(res) != 1) {
		PQclear(q[R_LOCK].result);
		PQclear(q[R_CURRENT].result);
		PQclear(q[R_SOURCES].result);
		log_error("config: revision row missing");
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	*rev = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	/* created_at: the transaction's start, as the column default. */
	b->created_ms = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	res = q[R_CURRENT].result;
	for (int i = 0; i < PQntuples(res); i++) {
		struct batch_key *k = batch_key(b, PQgetvalue(res, i, 0),
		    PQgetvalue(res, i, 1));

		/* batch_key found the slot the batch's own strings claimed;
		 * the result's strings are never kept. */
		k->version = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		k->deleted = PQgetvalue(res, i, 3)[0] == 't';
	}
	PQclear(res);
	b->sources = q[R_SOURCES].result;       /* NULL without rollbacks */
	return PLAT_OK;
}

/* The document version to_version of (ns, path) held, written earlier in
 * this batch or read from the database; NULL when there is none. */
static const struct cfg_row *
batch_source(struct batch *b, size_t upto, const struct store_write *w,
    const char **json, bool *deleted)
{
	static const struct cfg_row none;

	for (size_t i = upto; i-- > 0;) {
		const struct cfg_row *r = b->items[i].row;

		if (r != NULL && r->version == w->to_version &&
		    strcmp(r->ns, w->ns) == 0 && strcmp(r->path, w->path) == 0) {
			*json = r->json;
			*deleted = r->deleted;
			return r;
		}
	}
	for (int i = 0; b->sources != NULL && i < PQntuples(b->sources); i++) {
		if (strtoll(PQgetvalue(b->sources, i, 2), NULL, 10) ==
		    w->to_version &&
		    strcmp(PQgetvalue(b->sources, i, 0), w->ns) == 0 &&
		    strcmp(PQgetvalue(b->sources, i, 1), w->path) == 0) {
			*json = PQgetvalue(b->sources, i, 3);
			*deleted = PQgetvalue(b->sources, i, 4)[0] == 't';
			return &none;
		}
	}
	return NULL;
}

/* Checks item i against the state before it; on success makes its row
 * with revision *rev + 1 and moves the state on. */
static void
batch_apply(struct batch *b, size_t i, int64_t *rev)
{
	struct store_batch_item *it = &b->items[i];
	const struct store_write *w = it->w;
	struct batch_key *k = batch_key(b, w->ns, w->path);
	bool exists = k->version > 0 && !k->deleted, deleted = false;
	const char *json = "", *comment = w->comment;
	char rb_comment[64];

	if (w->expected_version > 0 && w->expected_version != k->version) {
		if (k->version == 0)
			item_fail(it, PLAT_FAILED_PRECONDITION,
			    "expected_version %" PRId64 ": the path does not "
			    "exist", w->expected_version);
		else
			item_fail(it, PLAT_FAILED_PRECONDITION,
			    "expected_version %" PRId64 ": the path is at "
			    "version %" PRId64, w->expected_version,
			    k->version);
		return;
	}
	if (w->expected_version == -1 && exists) {
		item_fail(it, PLAT_FAILED_PRECONDITION, "expected_version -1: "
		    "the path exists at version %" PRId64, k->version);
		return;
	}
	switch (w->op) {
	case STORE_UPDATE:
		json = w->json;
		break;
	case STORE_DELETE:
		if (!exists) {
			if (k->version == 0)
				item_fail(it, PLAT_NOT_FOUND, "namespace \"%s\" "
				    "path \"%s\" does not exist", w->ns,
				    w->path);
			else
				item_fail(it, PLAT_NOT_FOUND, "namespace \"%s\" "
				    "path \"%s\" is already deleted (version %"
				    PRId64 ")", w->ns, w->path, k->version);
			return;
		}
		deleted = true;
		break;
	case STORE_ROLLBACK: {
		bool src_deleted;

		if (batch_source(b, i, w, &json, &src_deleted) == NULL) {
			item_fail(it, PLAT_NOT_FOUND, "to_version %" PRId64
			    ": no such version of namespace \"%s\" path \"%s\"",
			    w->to_version, w->ns, w->path);
			return;
		}
		if (src_deleted) {
			item_fail(it, PLAT_FAILED_PRECONDITION, "to_version %"
			    PRId64 ": that version is a deletion, with no "
			    "value to roll back to", w->to_version);
			return;
		}
		if (comment[0] == '\0') {
			snprintf(rb_comment, sizeof(rb_comment),
			    "rollback to version %" PRId64, w->to_version);
			comment = rb_comment;
		}
		break;
	}
	}
	it->code = PLAT_OK;
	it->row = row_new(++*rev, w->ns, w->path, k->version + 1, json,
	    deleted, w->author, comment, b->created_ms);
	k->version++;
	k->deleted = deleted;
	k->touched = true;
	k->revision = *rev;
}

/* Inserts the batch's new versions, moves the current rows, sets the
 * revision and notifies: one statement, every column an array, sent with
 * the COMMIT. */
enum { V_REVISION, V_NS, V_PATH, V_VERSION, V_JSON, V_DELETED, V_AUTHOR,
	V_COMMENT, C_NS, C_PATH, C_VERSION, C_REVISION, C_DELETED, INSERT_ARRAYS };

static enum plat_code
batch_insert(struct pg_conn *c, struct batch *b, int64_t rev,
    int64_t deadline, char *err, size_t errlen)
{
	struct pg_array arr[INSERT_ARRAYS];
	const char *values[INSERT_ARRAYS + 1];
	char revs[24];
	struct pg_query q;
	enum plat_code code;

	for (int i = 0; i < INSERT_ARRAYS; i++)
		pg_array_init(&arr[i]);
	for (size_t i = 0; i < b->n; i++) {
		const struct cfg_row *r = b->items[i].row;

		if (r == NULL)
			continue;
		pg_array_add_int(&arr[V_REVISION], r->revision);
		pg_array_add(&arr[V_NS], r->ns);
		pg_array_add(&arr[V_PATH], r->path);
		pg_array_add_int(&arr[V_VERSION], r->version);
		pg_array_add(&arr[V_JSON], r->json);
		pg_array_add_bool(&arr[V_DELETED], r->deleted);
		pg_array_add(&arr[V_AUTHOR], r->author);
		pg_array_add(&arr[V_COMMENT], r->comment);
	}
	for (size_t i = 0; i < b->nkeys; i++) {
		const struct batch_key *k = &b->keys[i];

		if (k->ns == NULL || !k->touched)
			continue;
		pg_array_add(&arr[C_NS], k->ns);
		pg_array_add(&arr[C_PATH], k->path);
		pg_array_add_int(&arr[C_VERSION], k->version);
		pg_array_add_int(&arr[C_REVISION], k->revision);
		pg_array_add_bool(&arr[C_DELETED], k->deleted);
	}
	for (int i = 0; i < INSERT_ARRAYS; i++)
		values[i] = pg_array_str(&arr[i]);
	snprintf(revs, sizeof(revs), "%" PRId64, rev);
	values[INSERT_ARRAYS] = revs;
	q = (struct pg_query){ "config_w_insert",
	    "WITH v AS (INSERT INTO config_versions (revision, namespace,"
	    "  path, version, json, deleted, author, comment)"
	    "  SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[],"
	    "  $4::bigint[], $5::text[], $6::boolean[], $7::text[],"
	    "  $8::text[])),"
	    " c AS (INSERT INTO config_current (namespace, path, version,"
	    "  revision, deleted)"
	    "  SELECT * FROM unnest($9::text[], $10::text[], $11::bigint[],"
	    "  $12::bigint[], $13::boolean[])"
	    "  ON CONFLICT (namespace, path) DO UPDATE SET"
	    "  version = excluded.version, revision = excluded.revision,"
	    "  deleted = excluded.deleted),"
	    " r AS (UPDATE config_revision SET rev = $14::bigint WHERE id = 1)"
	    " SELECT pg_notify('" STORE_CHANNEL "', $14::text)",
	    INSERT_ARRAYS + 1, values, NULL, NULL, NULL };
	/* The commit goes in the same round trip. */
	code = pg_pipeline_commit(c, &q, 1, pg_left(deadline), err, errlen);
	for (int i = 0; i < INSERT_ARRAYS; i++)
		pg_array_free(&arr[i]);
	if (code == PLAT_OK)
		PQclear(q.result);
	return code;
}

static void
batch_reset(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		cfg_row_unref(b->items[i].row);
		b->items[i].row = NULL;
		b->items[i].code = PLAT_OK;
		b->items[i].err[0] = '\0';
	}
	memset(b->keys, 0, b->nkeys * sizeof(*b->keys));
	PQclear(b->sources);
	b->sources = NULL;
}

/* One attempt at the batch's transaction (pg_tx may repeat it). */
static enum plat_code
batch_tx(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct batch *b = arg;
	int64_t deadline = pg_deadline(timeout_ms), rev;
	enum plat_code code;

	batch_reset(b);
	for (size_t i = 0; i < b->n; i++)
		(void)batch_key(b, b->items[i].w->ns, b->items[i].w->path);
	if ((code = batch_read(c, b, deadline, &rev, err, errlen)) != PLAT_OK)
		return code;
	b->first_rev = rev;
	for (size_t i = 0; i < b->n; i++)
		batch_apply(b, i, &rev);
	if (rev == b->first_rev)
		return PLAT_OK;         /* every write failed its check */
	return batch_insert(c, b, rev, deadline, err, errlen);
}

enum plat_code
store_write_batch(struct pg_store *s, struct store_batch_item *items, size_t n,
    int64_t timeout_ms, char *err, size_t errlen)
{
	struct batch b = { .items = items, .n = n };
	enum plat_code code;

	for (b.nkeys = 16; b.nkeys < 2 * n; b.nkeys *= 2)
		;
	b.keys = xcalloc(b.nkeys, sizeof(*b.keys));
	code = pg_store_tx(s, timeout_ms, batch_tx, &b, err, errlen);
	PQclear(b.sources);
	free(b.keys);
	if (code == PLAT_OK)
		return PLAT_OK;
	for (size_t i = 0; i < n; i++) {
		cfg_row_unref(items[i].row);
		items[i].row = NULL;
		items[i].code = code;
		snprintf(items[i].err, sizeof(items[i].err), "%s", err);
	}
	return code;
}

/* ---- reads ---- */

enum plat_code
store_latest(struct pg_store *s, const char *ns, const char *path,
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
store_version(struct pg_store *s, const char *ns, const char *path,
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
store_history(struct pg_store *s, const char *ns, const char *path,
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
store_list(struct pg_store *s, const char *ns, const char *prefix,
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
store_changes(struct pg_store *s, int64_t after, int64_t upto,
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
store_head(struct pg_store *s, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*rev = 0;
	code = pg_store_exec(s, "config_head",
	    "SELECT rev FROM config_revision WHERE id = 1", 0, NULL,
	    timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1)
		*rev = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PLAT_OK;
}
