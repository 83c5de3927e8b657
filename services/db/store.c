/*
 * store: db-srv's PostgreSQL tables and statements (see store.h).
 *
 * Every statement is prepared by name with its values bound, but for the
 * searches filters compile to (filter.c), sent with their values bound
 * and never prepared (pg_exec_dynamic). Names and ids are COLLATE "C" so
 * that listings and cursors page in byte order whatever the locale.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "store.h"

struct store {
	struct pg_store *db;
	bool notify;            /* NOTIFY with each commit */
};

static const struct pg_migration store_migrations[] = {
	{ 1, "create db tables",
	  "CREATE TABLE db_revision ("
	  " id integer PRIMARY KEY CHECK (id = 1),"
	  " rev bigint NOT NULL,"
	  " compacted bigint NOT NULL DEFAULT 0);"
	  "INSERT INTO db_revision (id, rev) VALUES (1, 0);"
	  "CREATE TABLE db_databases ("
	  " name text COLLATE \"C\" PRIMARY KEY,"
	  " created_at timestamptz NOT NULL DEFAULT now());"
	  "CREATE TABLE db_collections ("
	  " database text COLLATE \"C\" NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " documents bigint NOT NULL DEFAULT 0,"
	  " created_at timestamptz NOT NULL DEFAULT now(),"
	  " PRIMARY KEY (database, name));"
	  "CREATE TABLE db_documents ("
	  " database text COLLATE \"C\" NOT NULL,"
	  " collection text COLLATE \"C\" NOT NULL,"
	  " id text COLLATE \"C\" NOT NULL,"
	  " body jsonb NOT NULL,"
	  " revision bigint NOT NULL,"
	  " create_revision bigint NOT NULL,"
	  " expires_ms bigint,"
	  " PRIMARY KEY (database, collection, id));"
	  "CREATE INDEX db_documents_expiry ON db_documents (expires_ms)"
	  " WHERE expires_ms IS NOT NULL;"
	  "CREATE TABLE db_changes ("
	  " revision bigint PRIMARY KEY,"
	  " database text COLLATE \"C\" NOT NULL,"
	  " collection text COLLATE \"C\" NOT NULL,"
	  " id text COLLATE \"C\" NOT NULL,"
	  " kind smallint NOT NULL,"
	  " body jsonb NOT NULL,"
	  " create_revision bigint NOT NULL,"
	  " expires_ms bigint NOT NULL DEFAULT 0,"
	  " created_at timestamptz NOT NULL DEFAULT now());"
	  "CREATE INDEX db_changes_collection ON db_changes"
	  " (database, collection, revision);"
	  "CREATE TABLE db_indexes ("
	  " database text COLLATE \"C\" NOT NULL,"
	  " collection text COLLATE \"C\" NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " kind smallint NOT NULL,"
	  " paths jsonb NOT NULL,"
	  " arrays jsonb NOT NULL,"
	  " state smallint NOT NULL,"
	  " error text NOT NULL DEFAULT '',"
	  " sql_name text NOT NULL,"
	  " PRIMARY KEY (database, collection, name));" },
	{ 2, "index builders",
	  "ALTER TABLE db_indexes ADD COLUMN builder text NOT NULL"
	  " DEFAULT '';"
	  "ALTER TABLE db_indexes ADD COLUMN claimed_at timestamptz;" },
};

#define DOC_COLS "d.id, d.body::text, d.revision, d.create_revision," \
	" coalesce(d.expires_ms, 0)"

/* ---- rows ---- */

struct db_row *
db_row_ref(struct db_row *r)
{
	__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void
db_row_unref(struct db_row *r)
{
	if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	json_decref(r->doc);
	free(r);
}

static struct db_row *
row_new(int64_t revision, int kind, const char *database,
    const char *collection, const char *id, const char *body,
    int64_t create_revision, int64_t expires_ms)
{
	const char *s[] = { database, collection, id, body };
	size_t len[4], total = sizeof(struct db_row);
	struct db_row *r;
	char *p, **dst[4];

	for (int i = 0; i < 4; i++)
		total += (len[i] = strlen(s[i])) + 1;
	r = xcalloc(1, total);
	dst[0] = &r->database;
	dst[1] = &r->collection;
	dst[2] = &r->id;
	dst[3] = &r->body;
	p = (char *)(r + 1);
	for (int i = 0; i < 4; i++) {
		memcpy(p, s[i], len[i] + 1);
		*dst[i] = p;
		p += len[i] + 1;
	}
	r->refs = 1;
	r->revision = revision;
	r->kind = kind;
	r->create_revision = create_revision;
	r->expires_ms = expires_ms;
	r->doc = doc_load(body);
	r->size = total + 2 * len[3];
	return r;
}

void
db_doc_clear(struct db_doc *d)
{
	free(d->id);
	free(d->body);
	memset(d, 0, sizeof(*d));
}

static void
doc_from(struct db_doc *d, const PGresult *res, int i, int col)
{
	d->id = xstrdup(PQgetvalue(res, i, col));
	d->body = xstrdup(PQgetvalue(res, i, col + 1));
	d->revision = strtoll(PQgetvalue(res, i, col + 2), NULL, 10);
	d->create_revision = strtoll(PQgetvalue(res, i, col + 3), NULL, 10);
	d->expires_ms = strtoll(PQgetvalue(res, i, col + 4), NULL, 10);
}

/* ---- the store ---- */

struct store *
store_new(const char *conninfo, int pool_size, bool notify)
{
	struct pg_store *db;
	struct store *s;

	db = pg_store_new(conninfo, pool_size, "db", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
	if (db == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->db = db;
	s->notify = notify;
	return s;
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	pg_store_free(s->db);
	free(s);
}

enum plat_code
store_migrate(struct store *s, char *err, size_t errlen)
{
	return pg_store_migrate(s->db, err, errlen);
}

bool
store_notifies(const struct store *s)
{
	return s->notify;
}

struct pg_store *
store_db(struct store *s)
{
	return s->db;
}

/* ---- writes ---- */

/* The state of one document while a transaction checks its writes. */
struct wkey {
	const char *database, *collection, *id;
	bool exists;
	bool touched;
	char *body;             /* malloc'd */
	int64_t revision, create_revision, expires_ms;
};

struct wcoll {
	const char *database, *collection;
	bool exists;
	int64_t delta;
};

struct wtx {
	struct db_write *w;
	size_t n;
	struct wkey *keys;
	size_t nkeys;
	struct wcoll *colls;
	size_t ncolls;
	struct db_row **rows;
	size_t nrows;
	size_t failed;
	int64_t rev, now_ms;
	bool notify;
	bool each;              /* writes fail on their own */
};

static struct wkey *
wtx_key(struct wtx *t, const char *database, const char *collection,
    const char *id)
{
	for (size_t i = 0; i < t->nkeys; i++)
		if (strcmp(t->keys[i].id, id) == 0 &&
		    strcmp(t->keys[i].collection, collection) == 0 &&
		    strcmp(t->keys[i].database, database) == 0)
			return &t->keys[i];
	return NULL;
}

static struct wcoll *
wtx_coll(struct wtx *t, const char *database, const char *collection)
{
	for (size_t i = 0; i < t->ncolls; i++)
		if (strcmp(t->colls[i].collection, collection) == 0 &&
		    strcmp(t->colls[i].database, database) == 0)
			return &t->colls[i];
	return NULL;
}

static void
wtx_reset(struct wtx *t)
{
	for (size_t i = 0; i < t->nkeys; i++)
		free(t->keys[i].body);
	for (size_t i = 0; i < t->nrows; i++)
		db_row_unref(t->rows[i]);
	t->nkeys = t->ncolls = t->nrows = 0;
	for (size_t i = 0; i < t->n; i++) {
		db_doc_clear(&t->w[i].doc);
		t->w[i].revision = 0;
		t->w[i].code = PLAT_OK;
		t->w[i].err[0] = '\0';
	}
}

/* RFC 7386: the patch applied to target (stolen; NULL: none). */
static json_t *
merge_patch(json_t *target, const json_t *patch)
{
	const char *key;
	json_t *v;

	if (!json_is_object(patch)) {
		json_decref(target);
		return json_deep_copy(patch);
	}
	if (!json_is_object(target)) {
		json_decref(target);
		target = json_object();
	}
	json_object_foreach((json_t *)patch, key, v) {
		if (json_is_null(v))
			json_object_del(target, key);
		else
			json_object_set_new(target, key, merge_patch(
			    json_incref(json_object_get(target, key)), v));
	}
	return target;
}

/* Reads, in one round trip with BEGIN: the revision row's lock and the
 * database's time, the collections written and the documents. */
static enum plat_code
wtx_read(struct pg_conn *c, struct wtx *t, int64_t deadline, char *err,
    size_t errlen)
{
	struct pg_array a[5];
	const char *cv[2], *dv[3];
	struct pg_query q[3] = {
		{ "db_w_lock", "SELECT rev,"
		  " floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
		  " FROM db_revision WHERE id = 1 FOR UPDATE", 0, NULL, NULL,
		  NULL, NULL },
		{ "db_w_colls", "SELECT c.database, c.name"
		  " FROM unnest($1::text[], $2::text[]) AS k(db, coll)"
		  " JOIN db_collections c ON c.database = k.db"
		  " AND c.name = k.coll", 2, cv, NULL, NULL, NULL },
		{ "db_w_docs", "SELECT d.database, d.collection, " DOC_COLS
		  " FROM unnest($1::text[], $2::text[], $3::text[])"
		  "  AS k(db, coll, id)"
		  " CROSS JOIN LATERAL (SELECT * FROM db_documents"
		  "  WHERE database = k.db AND collection = k.coll"
		  "  AND id = k.id LIMIT 1) d", 3, dv, NULL, NULL, NULL },
	};
	enum plat_code code;
	PGresult *res;

	for (int i = 0; i < 5; i++)
		pg_array_init(&a[i]);
	for (size_t i = 0; i < t->ncolls; i++) {
		pg_array_add(&a[0], t->colls[i].database);
		pg_array_add(&a[1], t->colls[i].collection);
	}
	for (size_t i = 0; i < t->nkeys; i++) {
		pg_array_add(&a[2], t->keys[i].database);
		pg_array_add(&a[3], t->keys[i].collection);
		pg_array_add(&a[4], t->keys[i].id);
	}
	cv[0] = pg_array_str(&a[0]);
	cv[1] = pg_array_str(&a[1]);
	dv[0] = pg_array_str(&a[2]);
	dv[1] = pg_array_str(&a[3]);
	dv[2] = pg_array_str(&a[4]);
	code = pg_pipeline(c, q, 3, pg_left(deadline), err, errlen);
	for (int i = 0; i < 5; i++)
		pg_array_free(&a[i]);
	if (code != PLAT_OK)
		return code;
	res = q[0].result;
	if (PQntuples(res) != 1) {
		log_error("db: revision row missing");
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		code = PLAT_INTERNAL;
		goto out;
	}
	t->rev = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	t->now_ms = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	res = q[1].result;
	for (int i = 0; i < PQntuples(res); i++) {
		struct wcoll *wc = wtx_coll(t, PQgetvalue(res, i, 0),
		    PQgetvalue(res, i, 1));

		if (wc != NULL)
			wc->exists = true;
	}
	res = q[2].result;
	for (int i = 0; i < PQntuples(res); i++) {
		struct wkey *k = wtx_key(t, PQgetvalue(res, i, 0),
		    PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));

		if (k == NULL)
			continue;
		k->body = xstrdup(PQgetvalue(res, i, 3));
		k->revision = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		k->create_revision = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		k->expires_ms = strtoll(PQgetvalue(res, i, 6), NULL, 10);
		k->exists = true;
	}
out:
	for (int i = 0; i < 3; i++)
		PQclear(q[i].result);
	return code;
}

static void
wtx_change(struct wtx *t, int kind, const struct wkey *k)
{
	t->rows[t->nrows++] = row_new(k->revision, kind, k->database,
	    k->collection, k->id, k->body, k->create_revision, k->expires_ms);
}

/* Checks and applies write i against the state before it. PLAT_OK, or
 * its failure in err. */
static enum plat_code
wtx_apply(struct wtx *t, size_t i, char *err, size_t errlen)
{
	struct db_write *w = &t->w[i];
	struct wkey *k = wtx_key(t, w->database, w->collection, w->id);
	struct wcoll *wc = wtx_coll(t, w->database, w->collection);
	bool live = k->exists && (k->expires_ms == 0 ||
	    k->expires_ms > t->now_ms);
	char *body = NULL;
	int kind = DB_CHANGE_PUT;

	if (!wc->exists) {
		errbuf_set(err, errlen, "collection \"%s\" of database \"%s\" "
		    "does not exist", w->collection, w->database);
		return PLAT_NOT_FOUND;
	}
	if (w->op == DB_W_EXPIRE) {
		if (!k->exists || live || k->revision != w->expected_revision)
			return PLAT_OK;         /* changed since: skipped */
	} else if (w->op == DB_W_CREATE) {
		if (live) {
			errbuf_set(err, errlen, "document \"%s\" already "
			    "exists in collection \"%s\"", w->id,
			    w->collection);
			return PLAT_ALREADY_EXISTS;
		}
	} else {
		if (!live) {
			errbuf_set(err, errlen, "document \"%s\" does not "
			    "exist in collection \"%s\"", w->id,
			    w->collection);
			return PLAT_NOT_FOUND;
		}
		if (w->expected_revision > 0 &&
		    w->expected_revision != k->revision) {
			errbuf_set(err, errlen, "expected_revision %" PRId64
			    ": document \"%s\" is at revision %" PRId64,
			    w->expected_revision, w->id, k->revision);
			return PLAT_FAILED_PRECONDITION;
		}
	}
	switch (w->op) {
	case DB_W_CREATE:
		body = xstrdup(w->json);
		break;
	case DB_W_REPLACE:
		body = xstrdup(w->json);
		break;
	case DB_W_PATCH: {
		json_t *cur = doc_load(k->body), *next;

		if (cur == NULL) {
			log_error("db: a stored document does not parse",
			    "database", w->database, "collection",
			    w->collection, "id", w->id);
			errbuf_set(err, errlen, "%s",
			    pg_code_message(PLAT_INTERNAL));
			return PLAT_INTERNAL;
		}
		next = merge_patch(cur, w->patch);
		if (!json_is_object(next)) {
			json_decref(next);
			errbuf_set(err, errlen, "json: the merge patch leaves "
			    "no JSON object");
			return PLAT_INVALID_ARGUMENT;
		}
		body = doc_dump(next);
		json_decref(next);
		break;
	}
	case DB_W_DELETE:
		kind = DB_CHANGE_DELETE;
		break;
	case DB_W_EXPIRE:
		kind = DB_CHANGE_EXPIRED;
		break;
	}
	k->revision = ++t->rev;
	k->touched = true;
	if (body != NULL) {
		if (!live) {
			k->create_revision = k->revision;
			k->expires_ms = 0;
			if (!k->exists)
				wc->delta++;
		}
		if (w->ttl_ms > 0)
			k->expires_ms = t->now_ms + w->ttl_ms;
		else if (w->ttl_ms < 0)
			k->expires_ms = 0;
		free(k->body);
		k->body = body;
		k->exists = true;
	} else {
		k->exists = false;
		wc->delta--;
	}
	wtx_change(t, kind, k);
	w->revision = k->revision;
	if (body != NULL) {
		w->doc.id = xstrdup(k->id);
		w->doc.body = xstrdup(k->body);
		w->doc.revision = k->revision;
		w->doc.create_revision = k->create_revision;
		w->doc.expires_ms = k->expires_ms;
	}
	return PLAT_OK;
}

enum { A_PDB, A_PCOLL, A_PID, A_PBODY, A_PREV, A_PCREV, A_PEXP,
	A_DDB, A_DCOLL, A_DID,
	A_CREV, A_CDB, A_CCOLL, A_CID, A_CKIND, A_CBODY, A_CCREV, A_CEXP,
	A_NDB, A_NCOLL, A_NDELTA, A_N };

/* The documents, changes, counts and revision, then COMMIT: one round
 * trip. */
static enum plat_code
wtx_write(struct pg_conn *c, struct wtx *t, int64_t deadline, char *err,
    size_t errlen)
{
	struct pg_array a[A_N];
	const char *v[A_N + 1];
	char rev[24];
	struct pg_query q[5];
	size_t nq = 0;
	enum plat_code code;

	for (int i = 0; i < A_N; i++)
		pg_array_init(&a[i]);
	for (size_t i = 0; i < t->nkeys; i++) {
		const struct wkey *k = &t->keys[i];

		if (!k->touched)
			continue;
		if (k->exists) {
			pg_array_add(&a[A_PDB], k->database);
			pg_array_add(&a[A_PCOLL], k->collection);
			pg_array_add(&a[A_PID], k->id);
			pg_array_add(&a[A_PBODY], k->body);
			pg_array_add_int(&a[A_PREV], k->revision);
			pg_array_add_int(&a[A_PCREV], k->create_revision);
			pg_array_add_int(&a[A_PEXP], k->expires_ms);
		} else {
			pg_array_add(&a[A_DDB], k->database);
			pg_array_add(&a[A_DCOLL], k->collection);
			pg_array_add(&a[A_DID], k->id);
		}
	}
	for (size_t i = 0; i < t->nrows; i++) {
		const struct db_row *r = t->rows[i];

		pg_array_add_int(&a[A_CREV], r->revision);
		pg_array_add(&a[A_CDB], r->database);
		pg_array_add(&a[A_CCOLL], r->collection);
		pg_array_add(&a[A_CID], r->id);
		pg_array_add_int(&a[A_CKIND], r->kind);
		pg_array_add(&a[A_CBODY], r->body);
		pg_array_add_int(&a[A_CCREV], r->create_revision);
		pg_array_add_int(&a[A_CEXP], r->expires_ms);
	}
	for (size_t i = 0; i < t->ncolls; i++)
		if (t->colls[i].delta != 0) {
			pg_array_add(&a[A_NDB], t->colls[i].database);
			pg_array_add(&a[A_NCOLL], t->colls[i].collection);
			pg_array_add_int(&a[A_NDELTA], t->colls[i].delta);
		}
	for (int i = 0; i < A_N; i++)
		v[i] = pg_array_str(&a[i]);
	snprintf(rev, sizeof(rev), "%" PRId64, t->rev);
	v[A_N] = rev;
	if (a[A_PDB].n > 0)
		q[nq++] = (struct pg_query){ "db_w_put",
		    "INSERT INTO db_documents (database, collection, id, body,"
		    " revision, create_revision, expires_ms)"
		    " SELECT db, coll, id, body, rev, crev, nullif(exp, 0)"
		    " FROM unnest($1::text[], $2::text[], $3::text[],"
		    " $4::jsonb[], $5::bigint[], $6::bigint[], $7::bigint[])"
		    " AS k(db, coll, id, body, rev, crev, exp)"
		    " ON CONFLICT (database, collection, id) DO UPDATE SET"
		    " body = excluded.body, revision = excluded.revision,"
		    " create_revision = excluded.create_revision,"
		    " expires_ms = excluded.expires_ms",
		    7, &v[A_PDB], NULL, NULL, NULL };
	if (a[A_DDB].n > 0)
		q[nq++] = (struct pg_query){ "db_w_del",
		    "DELETE FROM db_documents d"
		    " USING unnest($1::text[], $2::text[], $3::text[])"
		    " AS k(db, coll, id) WHERE d.database = k.db"
		    " AND d.collection = k.coll AND d.id = k.id",
		    3, &v[A_DDB], NULL, NULL, NULL };
	if (a[A_NDB].n > 0)
		q[nq++] = (struct pg_query){ "db_w_count",
		    "UPDATE db_collections c SET documents = c.documents +"
		    " k.delta FROM unnest($1::text[], $2::text[], $3::bigint[])"
		    " AS k(db, coll, delta) WHERE c.database = k.db"
		    " AND c.name = k.coll", 3, &v[A_NDB], NULL, NULL, NULL };
	q[nq++] = (struct pg_query){ "db_w_changes",
	    "INSERT INTO db_changes (revision, database, collection, id,"
	    " kind, body, create_revision, expires_ms)"
	    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[],"
	    " $4::text[], $5::smallint[], $6::jsonb[], $7::bigint[],"
	    " $8::bigint[])", 8, &v[A_CREV], NULL, NULL, NULL };
	if (t->notify)
		q[nq++] = (struct pg_query){ "db_w_rev",
		    "WITH r AS (UPDATE db_revision SET rev = $1::bigint"
		    " WHERE id = 1)"
		    " SELECT pg_notify('" STORE_CHANNEL "', $1::text)",
		    1, &v[A_N], NULL, NULL, NULL };
	else
		q[nq++] = (struct pg_query){ "db_w_rev_quiet",
		    "UPDATE db_revision SET rev = $1::bigint WHERE id = 1",
		    1, &v[A_N], NULL, NULL, NULL };
	code = pg_pipeline_commit(c, q, nq, pg_left(deadline), err, errlen);
	for (int i = 0; i < A_N; i++)
		pg_array_free(&a[i]);
	if (code == PLAT_OK)
		for (size_t i = 0; i < nq; i++)
			PQclear(q[i].result);
	return code;
}

static enum plat_code
wtx_run(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct wtx *t = arg;
	int64_t deadline = pg_deadline(timeout_ms), first;
	enum plat_code code;

	wtx_reset(t);
	for (size_t i = 0; i < t->n; i++) {
		struct db_write *w = &t->w[i];
		struct wkey *k;

		if (wtx_key(t, w->database, w->collection, w->id) == NULL) {
			k = &t->keys[t->nkeys++];
			memset(k, 0, sizeof(*k));
			k->database = w->database;
			k->collection = w->collection;
			k->id = w->id;
		}
		if (wtx_coll(t, w->database, w->collection) == NULL)
			t->colls[t->ncolls++] = (struct wcoll){ w->database,
			    w->collection, false, 0 };
	}
	if ((code = wtx_read(c, t, deadline, err, errlen)) != PLAT_OK)
		return code;
	first = t->rev;
	for (size_t i = 0; i < t->n; i++) {
		/* A failing check changes nothing, so with each the others
		 * go on as if it had not been asked. */
		if (t->each)
			t->w[i].code = wtx_apply(t, i, t->w[i].err,
			    sizeof(t->w[i].err));
		else if ((code = wtx_apply(t, i, err, errlen)) != PLAT_OK) {
			t->failed = i;
			return code;
		}
	}
	if (t->rev == first)
		return PLAT_OK;         /* nothing to write (expiries) */
	return wtx_write(c, t, deadline, err, errlen);
}

static enum plat_code
write_run(struct store *s, struct db_write *w, size_t n, bool each,
    int64_t timeout_ms, struct db_row ***rows, size_t *nrows,
    size_t *failed, char *err, size_t errlen)
{
	struct wtx t = { .w = w, .n = n, .notify = s->notify, .each = each };
	enum plat_code code;

	t.keys = xcalloc(n, sizeof(*t.keys));
	t.colls = xcalloc(n, sizeof(*t.colls));
	t.rows = xcalloc(n, sizeof(*t.rows));
	t.failed = n;
	code = pg_store_tx(s->db, timeout_ms, wtx_run, &t, err, errlen);
	*failed = t.failed < n ? t.failed : 0;
	if (code != PLAT_OK) {
		wtx_reset(&t);
		free(t.rows);
		t.rows = NULL;
	}
	for (size_t i = 0; i < t.nkeys; i++)
		free(t.keys[i].body);
	free(t.keys);
	free(t.colls);
	*rows = t.rows;
	*nrows = code == PLAT_OK ? t.nrows : 0;
	return code;
}

enum plat_code
store_expired(struct store *s, int limit, struct db_write **out, size_t *n,
    char *err, size_t errlen)
{
	char lim[16];
	const char *v[] = { lim };
	PGresult *res;
	enum plat_code code;
	struct db_write *w;

	*out = NULL;
	*n = 0;
	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(s->db, "db_expired",
	    "SELECT database, collection, id, revision FROM db_documents"
	    " WHERE expires_ms IS NOT NULL AND expires_ms <="
	    " floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
	    " ORDER BY expires_ms LIMIT $1::int", 1, v, 10000, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	w = xcalloc((size_t)PQntuples(res) + 1, sizeof(*w));
	for (int i = 0; i < PQntuples(res); i++) {
		w[i].op = DB_W_EXPIRE;
		w[i].database = xstrdup(PQgetvalue(res, i, 0));
		w[i].collection = xstrdup(PQgetvalue(res, i, 1));
		w[i].id = xstrdup(PQgetvalue(res, i, 2));
		w[i].expected_revision = strtoll(PQgetvalue(res, i, 3), NULL,
		    10);
	}
	*n = (size_t)PQntuples(res);
	*out = w;
	PQclear(res);
	return PLAT_OK;
}

void
store_writes_free(struct db_write *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)w[i].database);
		free((char *)w[i].collection);
		free((char *)w[i].id);
		db_doc_clear(&w[i].doc);
	}
	free(w);
}

enum plat_code
store_write(struct store *s, struct db_write *w, size_t n,
    int64_t timeout_ms, struct db_row ***rows, size_t *nrows,
    size_t *failed, char *err, size_t errlen)
{
	return write_run(s, w, n, false, timeout_ms, rows, nrows, failed, err,
	    errlen);
}

enum plat_code
store_write_each(struct store *s, struct db_write *w, size_t n,
    int64_t timeout_ms, struct db_row ***rows, size_t *nrows, char *err,
    size_t errlen)
{
	size_t failed;

	return write_run(s, w, n, true, timeout_ms, rows, nrows, &failed, err,
	    errlen);
}

/* ---- reads ---- */

enum plat_code
store_read(struct store *s, const char *database, const char *collection,
    const char *id, int64_t timeout_ms, struct db_doc *out, char *err,
    size_t errlen)
{
	const char *v[] = { database, collection, id };
	PGresult *res;
	enum plat_code code;

	memset(out, 0, sizeof(*out));
	code = pg_store_exec(s->db, "db_read",
	    "SELECT c.name, " DOC_COLS " FROM db_collections c"
	    " LEFT JOIN db_documents d ON d.database = c.database"
	    " AND d.collection = c.name AND d.id = $3"
	    " AND (d.expires_ms IS NULL OR d.expires_ms >"
	    " floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
	    " WHERE c.database = $1 AND c.name = $2", 3, v, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 0) {
		errbuf_set(err, errlen, "collection \"%s\" of database \"%s\" "
		    "does not exist", collection, database);
		code = PLAT_NOT_FOUND;
	} else if (PQgetisnull(res, 0, 1)) {
		errbuf_set(err, errlen, "document \"%s\" does not exist in "
		    "collection \"%s\"", id, collection);
		code = PLAT_NOT_FOUND;
	} else
		doc_from(out, res, 0, 1);
	PQclear(res);
	return code;
}

/* ---- databases and collections ---- */

void
db_infos_free(struct db_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].database);
		free(v[i].name);
	}
	free(v);
}

static void
infos_from(const PGresult *res, struct db_info **out, size_t *n)
{
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n + 1, sizeof(**out));
	for (size_t i = 0; i < *n; i++) {
		(*out)[i].database = xstrdup(PQgetvalue(res, (int)i, 0));
		(*out)[i].name = xstrdup(PQgetvalue(res, (int)i, 1));
		(*out)[i].created_ms = strtoll(PQgetvalue(res, (int)i, 2),
		    NULL, 10);
		(*out)[i].documents = strtoll(PQgetvalue(res, (int)i, 3),
		    NULL, 10);
	}
}

#define MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"

static enum plat_code
one_info(struct store *s, const char *name, const char *sql, int nv,
    const char *const *v, int64_t timeout_ms, struct db_info *out,
    char *err, size_t errlen)
{
	struct db_info *infos;
	PGresult *res;
	enum plat_code code;
	size_t n;

	code = pg_store_exec(s->db, name, sql, nv, v, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	infos_from(res, &infos, &n);
	PQclear(res);
	if (n == 0) {
		free(infos);
		return PLAT_NOT_FOUND;
	}
	*out = infos[0];
	free(infos);
	return PLAT_OK;
}

enum plat_code
store_database_create(struct store *s, const char *name, int64_t timeout_ms,
    struct db_info *out, char *err, size_t errlen)
{
	const char *v[] = { name };
	enum plat_code code;

	code = one_info(s, "db_database_create",
	    "INSERT INTO db_databases (name) VALUES ($1)"
	    " RETURNING '', name, " MS("created_at") ", 0", 1, v, timeout_ms,
	    out, err, errlen);
	if (code == PLAT_ALREADY_EXISTS)
		errbuf_set(err, errlen, "database \"%s\" already exists",
		    name);
	return code;
}

enum plat_code
store_databases(struct store *s, const char *after, int limit,
    int64_t timeout_ms, struct db_info **out, size_t *n, char *err,
    size_t errlen)
{
	char lim[16];
	const char *v[] = { after, lim };
	PGresult *res;
	enum plat_code code;

	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(s->db, "db_databases",
	    "SELECT '', name, " MS("created_at") ", 0 FROM db_databases"
	    " WHERE name > $1 ORDER BY name LIMIT $2::int", 2, v, timeout_ms,
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	infos_from(res, out, n);
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_collection_create(struct store *s, const char *database,
    const char *name, int64_t timeout_ms, struct db_info *out, char *err,
    size_t errlen)
{
	const char *v[] = { database, name };
	enum plat_code code;

	code = one_info(s, "db_collection_create",
	    "INSERT INTO db_collections (database, name)"
	    " SELECT name, $2 FROM db_databases WHERE name = $1"
	    " RETURNING database, name, " MS("created_at") ", documents",
	    2, v, timeout_ms, out, err, errlen);
	if (code == PLAT_ALREADY_EXISTS)
		errbuf_set(err, errlen, "collection \"%s\" already exists in "
		    "database \"%s\"", name, database);
	else if (code == PLAT_NOT_FOUND)
		errbuf_set(err, errlen, "database \"%s\" does not exist",
		    database);
	return code;
}

enum plat_code
store_collections(struct store *s, const char *database, const char *after,
    int limit, int64_t timeout_ms, struct db_info **out, size_t *n,
    char *err, size_t errlen)
{
	char lim[16];
	const char *v[] = { database, after, lim };
	PGresult *res;
	enum plat_code code;

	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(s->db, "db_collections",
	    "SELECT c.database, c.name, " MS("c.created_at") ", c.documents"
	    " FROM db_databases b LEFT JOIN db_collections c"
	    " ON c.database = b.name AND c.name > $2"
	    " WHERE b.name = $1 ORDER BY c.name LIMIT $3::int", 3, v,
	    timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		errbuf_set(err, errlen, "database \"%s\" does not exist",
		    database);
		return PLAT_NOT_FOUND;
	}
	if (PQgetisnull(res, 0, 1)) {   /* a database with none (left) */
		PQclear(res);
		*out = xcalloc(1, sizeof(**out));
		*n = 0;
		return PLAT_OK;
	}
	infos_from(res, out, n);
	PQclear(res);
	return PLAT_OK;
}

struct query_arg {
	const struct db_sql *q;
	PGresult *res;
};

static enum plat_code
query_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct query_arg *a = arg;

	return pg_exec_dynamic(c, a->q->text, a->q->n,
	    (const char *const *)a->q->params, timeout_ms, &a->res, err,
	    errlen);
}

enum plat_code
store_query(struct store *s, const struct db_sql *q, int64_t timeout_ms,
    PGresult **res, char *err, size_t errlen)
{
	struct query_arg a = { q, NULL };
	enum plat_code code;

	code = pg_store_conn(s->db, timeout_ms, query_fn, &a, err, errlen);
	*res = a.res;
	return code;
}

static void
ddl_drop_index(struct store *s, const char *sql_name)
{
	struct db_sql q;
	PGresult *res;
	char err[256];

	/* The name is ours ("dbx_" and hex digits), never the caller's. */
	db_sql_init(&q);
	db_sql_add(&q, "DROP INDEX CONCURRENTLY IF EXISTS %s", sql_name);
	if (store_query(s, &q, 600000, &res, err, sizeof(err)) == PLAT_OK)
		PQclear(res);
	else
		log_warn("db: cannot drop an index", "index", sql_name,
		    "error", err);
	db_sql_free(&q);
}

/* A drop: under the revision lock (so no write lands in what is being
 * dropped), documents, changes and index rows go; the indexes'
 * SQL names come back to be dropped concurrently after the commit. */
struct drop {
	const char *database, *collection;      /* collection NULL: all */
	PGresult *ix;
	bool found;
};

static enum plat_code
drop_tx(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct drop *d = arg;
	int64_t deadline = pg_deadline(timeout_ms);
	const char *v[] = { d->database, d->collection != NULL ?
	    d->collection : "" };
	const char *all = d->collection == NULL ? "true" : "false";
	const char *v3[] = { v[0], v[1], all };
	struct pg_query q[2] = {
		{ "db_drop_lock", "SELECT rev FROM db_revision WHERE id = 1"
		  " FOR UPDATE", 0, NULL, NULL, NULL, NULL },
		{ "db_drop_ix", "SELECT sql_name FROM db_indexes"
		  " WHERE database = $1 AND ($3::boolean OR collection = $2)",
		  3, v3, NULL, NULL, NULL },
	};
	struct pg_query w[4] = {
		{ "db_drop_docs", "DELETE FROM db_documents WHERE database = $1"
		  " AND ($3::boolean OR collection = $2)", 3, v3, NULL, NULL,
		  NULL },
		{ "db_drop_changes", "DELETE FROM db_changes WHERE database = $1"
		  " AND ($3::boolean OR collection = $2)", 3, v3, NULL, NULL,
		  NULL },
		{ "db_drop_ixrows", "DELETE FROM db_indexes WHERE database = $1"
		  " AND ($3::boolean OR collection = $2)", 3, v3, NULL, NULL,
		  NULL },
		{ "db_drop_colls", "WITH c AS (DELETE FROM db_collections"
		  " WHERE database = $1 AND ($3::boolean OR name = $2)"
		  " RETURNING 1), b AS (DELETE FROM db_databases"
		  " WHERE name = $1 AND $3::boolean RETURNING 1)"
		  " SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM b)",
		  3, v3, NULL, NULL, NULL },
	};
	enum plat_code code;

	PQclear(d->ix);
	d->ix = NULL;
	code = pg_pipeline(c, q, 2, pg_left(deadline), err, errlen);
	if (code != PLAT_OK)
		return code;
	PQclear(q[0].result);
	d->ix = q[1].result;
	code = pg_pipeline(c, w, 4, pg_left(deadline), err, errlen);
	if (code != PLAT_OK)
		return code;
	d->found = d->collection == NULL ?
	    strcmp(PQgetvalue(w[3].result, 0, 1), "0") != 0 :
	    strcmp(PQgetvalue(w[3].result, 0, 0), "0") != 0;
	for (int i = 0; i < 4; i++)
		PQclear(w[i].result);
	if (!d->found) {
		errbuf_set(err, errlen, d->collection == NULL ?
		    "database \"%s\" does not exist" :
		    "collection \"%2$s\" of database \"%1$s\" does not exist",
		    d->database, d->collection);
		return PLAT_NOT_FOUND;
	}
	return PLAT_OK;
}

static enum plat_code
drop_run(struct store *s, struct drop *d, int64_t timeout_ms, char *err,
    size_t errlen)
{
	enum plat_code code;

	code = pg_store_tx(s->db, timeout_ms, drop_tx, d, err, errlen);
	if (code == PLAT_OK && d->ix != NULL)
		for (int i = 0; i < PQntuples(d->ix); i++)
			ddl_drop_index(s, PQgetvalue(d->ix, i, 0));
	PQclear(d->ix);
	return code;
}

enum plat_code
store_database_drop(struct store *s, const char *name, int64_t timeout_ms,
    char *err, size_t errlen)
{
	struct drop d = { .database = name };

	return drop_run(s, &d, timeout_ms, err, errlen);
}

enum plat_code
store_collection_drop(struct store *s, const char *database,
    const char *name, int64_t timeout_ms, char *err, size_t errlen)
{
	struct drop d = { .database = database, .collection = name };

	return drop_run(s, &d, timeout_ms, err, errlen);
}

/* ---- searches ---- */

void
db_coll_plan_free(struct db_coll_plan *p)
{
	for (size_t i = 0; i < p->nix; i++) {
		for (size_t j = 0; j < p->ix[i].npaths; j++)
			free(p->ix[i].paths[j]);
		free(p->ix[i].paths);
	}
	free(p->ix);
	memset(p, 0, sizeof(*p));
}

/* A JSON array of strings into a malloc'd vector. */
static char **
strings_of(const char *json, size_t *n)
{
	json_t *a = doc_load(json);
	char **v;

	*n = json_array_size(a);
	v = xcalloc(*n + 1, sizeof(*v));
	for (size_t i = 0; i < *n; i++)
		v[i] = xstrdup(json_string_value(json_array_get(a, i)) != NULL ?
		    json_string_value(json_array_get(a, i)) : "");
	json_decref(a);
	return v;
}

enum plat_code
store_collection_plan(struct store *s, const char *database,
    const char *collection, int64_t timeout_ms, struct db_coll_plan *out,
    char *err, size_t errlen)
{
	const char *v[] = { database, collection };
	PGresult *res;
	enum plat_code code;
	int n;

	memset(out, 0, sizeof(*out));
	code = pg_store_exec(s->db, "db_plan",
	    "SELECT c.documents, i.kind, i.paths::text FROM db_collections c"
	    " LEFT JOIN db_indexes i ON i.database = c.database"
	    " AND i.collection = c.name AND i.state = 2"
	    " WHERE c.database = $1 AND c.name = $2", 2, v, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	if ((n = PQntuples(res)) == 0) {
		PQclear(res);
		errbuf_set(err, errlen, "collection \"%s\" of database \"%s\" "
		    "does not exist", collection, database);
		return PLAT_NOT_FOUND;
	}
	out->documents = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	out->ix = xcalloc((size_t)n, sizeof(*out->ix));
	for (int i = 0; i < n; i++) {
		struct db_index_use *u;

		if (PQgetisnull(res, i, 1))
			continue;
		u = &out->ix[out->nix++];
		u->kind = atoi(PQgetvalue(res, i, 1));
		u->paths = strings_of(PQgetvalue(res, i, 2), &u->npaths);
	}
	PQclear(res);
	return PLAT_OK;
}

/* ---- the change feed ---- */

/* The one number a one-row statement selects (0 without a row). */
static enum plat_code
query_int64(struct store *s, const char *name, const char *sql,
    int64_t timeout_ms, int64_t *out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*out = 0;
	code = pg_store_exec(s->db, name, sql, 0, NULL, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1)
		*out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_head(struct store *s, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	return query_int64(s, "db_head",
	    "SELECT rev FROM db_revision WHERE id = 1", timeout_ms, rev, err,
	    errlen);
}

enum plat_code
store_changes(struct store *s, int64_t after, int64_t upto,
    const char *database, const char *collection, int limit,
    int64_t timeout_ms, struct db_row ***rows, size_t *n, char *err,
    size_t errlen)
{
	char a[24], u[24], lim[16];
	const char *v[] = { a, u, database != NULL ? database : "",
	    collection != NULL ? collection : "", lim };
	PGresult *res;
	enum plat_code code;

	*rows = NULL;
	*n = 0;
	snprintf(a, sizeof(a), "%" PRId64, after);
	snprintf(u, sizeof(u), "%" PRId64, upto);
	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(s->db, "db_changes",
	    "SELECT revision, kind, database, collection, id, body::text,"
	    " create_revision, expires_ms FROM db_changes"
	    " WHERE revision > $1::bigint"
	    " AND ($2::bigint = 0 OR revision <= $2::bigint)"
	    " AND ($3 = '' OR (database = $3 AND collection = $4))"
	    " ORDER BY revision LIMIT $5::int", 5, v, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	*rows = xcalloc((size_t)PQntuples(res) + 1, sizeof(**rows));
	for (int i = 0; i < PQntuples(res); i++)
		(*rows)[(*n)++] = row_new(strtoll(PQgetvalue(res, i, 0), NULL,
		    10), atoi(PQgetvalue(res, i, 1)), PQgetvalue(res, i, 2),
		    PQgetvalue(res, i, 3), PQgetvalue(res, i, 4),
		    PQgetvalue(res, i, 5), strtoll(PQgetvalue(res, i, 6), NULL,
		    10), strtoll(PQgetvalue(res, i, 7), NULL, 10));
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_compact(struct store *s, int64_t retention_ms, int limit, int64_t *n,
    char *err, size_t errlen)
{
	char ret[24], lim[16];
	const char *v[] = { ret, lim };
	PGresult *res;
	enum plat_code code;

	*n = 0;
	snprintf(ret, sizeof(ret), "%" PRId64, retention_ms);
	snprintf(lim, sizeof(lim), "%d", limit);
	/* created_at is not in revision order (it is the transaction's
	 * start), so the cut is the highest old revision and everything
	 * up to it goes: what is left is always a suffix. */
	code = pg_store_exec(s->db, "db_compact",
	    "WITH o AS (SELECT revision, created_at FROM db_changes"
	    "  ORDER BY revision LIMIT $2::int),"
	    " cut AS (SELECT max(revision) AS rev FROM o WHERE created_at <"
	    "  now() - $1::bigint * interval '1 millisecond'),"
	    " d AS (DELETE FROM db_changes WHERE revision <="
	    "  (SELECT rev FROM cut) RETURNING 1),"
	    " r AS (UPDATE db_revision SET compacted = (SELECT rev FROM cut)"
	    "  WHERE id = 1 AND (SELECT rev FROM cut) > compacted)"
	    " SELECT count(*) FROM d", 2, v, 60000, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_compacted(struct store *s, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	return query_int64(s, "db_compacted",
	    "SELECT compacted FROM db_revision WHERE id = 1", timeout_ms, rev,
	    err, errlen);
}

/* ---- indexes ---- */

void
db_indexes_free(struct db_index *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].database);
		free(v[i].collection);
		free(v[i].name);
		for (size_t j = 0; j < v[i].npaths; j++)
			free(v[i].paths[j]);
		free(v[i].paths);
		free(v[i].error);
	}
	free(v);
}

enum plat_code
store_index_create(struct store *s, const char *database,
    const char *collection, const char *name, int kind,
    const char *paths_json, const char *arrays_json, int64_t timeout_ms,
    char *err, size_t errlen)
{
	char k[8];
	const char *v[] = { database, collection, name, k, paths_json,
	    arrays_json };
	PGresult *res;
	enum plat_code code;

	snprintf(k, sizeof(k), "%d", kind);
	/* The SQL name: ours, from a digest of the three names. */
	code = pg_store_exec(s->db, "db_index_create",
	    "INSERT INTO db_indexes (database, collection, name, kind, paths,"
	    " arrays, state, sql_name)"
	    " SELECT database, name, $3, $4::smallint, $5::jsonb, $6::jsonb,"
	    " 1, 'dbx_' || left(md5(database || '/' || name || '/' || $3), 24)"
	    " FROM db_collections WHERE database = $1 AND name = $2"
	    " RETURNING 1", 6, v, timeout_ms, &res, err, errlen);
	if (code == PLAT_ALREADY_EXISTS)
		errbuf_set(err, errlen, "index \"%s\" already exists on "
		    "collection \"%s\"", name, collection);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 0) {
		errbuf_set(err, errlen, "collection \"%s\" of database \"%s\" "
		    "does not exist", collection, database);
		code = PLAT_NOT_FOUND;
	}
	PQclear(res);
	return code;
}

enum plat_code
store_indexes(struct store *s, const char *database, const char *collection,
    int64_t timeout_ms, struct db_index **out, size_t *n, char *err,
    size_t errlen)
{
	const char *v[] = { database, collection };
	PGresult *res;
	enum plat_code code;

	*out = NULL;
	*n = 0;
	code = pg_store_exec(s->db, "db_indexes",
	    "SELECT c.name, i.name, i.kind, i.paths::text, i.state, i.error"
	    " FROM db_collections c LEFT JOIN db_indexes i"
	    " ON i.database = c.database AND i.collection = c.name"
	    " WHERE c.database = $1 AND c.name = $2 ORDER BY i.name",
	    2, v, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		errbuf_set(err, errlen, "collection \"%s\" of database \"%s\" "
		    "does not exist", collection, database);
		return PLAT_NOT_FOUND;
	}
	*out = xcalloc((size_t)PQntuples(res), sizeof(**out));
	for (int i = 0; i < PQntuples(res); i++) {
		struct db_index *x;

		if (PQgetisnull(res, i, 1))
			continue;
		x = &(*out)[(*n)++];
		x->database = xstrdup(database);
		x->collection = xstrdup(collection);
		x->name = xstrdup(PQgetvalue(res, i, 1));
		x->kind = atoi(PQgetvalue(res, i, 2));
		x->paths = strings_of(PQgetvalue(res, i, 3), &x->npaths);
		x->state = atoi(PQgetvalue(res, i, 4));
		x->error = xstrdup(PQgetvalue(res, i, 5));
	}
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_index_drop(struct store *s, const char *database,
    const char *collection, const char *name, int64_t timeout_ms,
    char *err, size_t errlen)
{
	const char *v[] = { database, collection, name };
	PGresult *res;
	enum plat_code code;

	code = pg_store_exec(s->db, "db_index_drop",
	    "DELETE FROM db_indexes WHERE database = $1 AND collection = $2"
	    " AND name = $3 RETURNING sql_name", 3, v, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 0) {
		errbuf_set(err, errlen, "index \"%s\" does not exist on "
		    "collection \"%s\"", name, collection);
		code = PLAT_NOT_FOUND;
	} else
		ddl_drop_index(s, PQgetvalue(res, 0, 0));
	PQclear(res);
	return code;
}

/* Builds one index: its DDL formatted by the database itself (%I, %L),
 * so nothing of the caller's is spliced into SQL text here. */
static void
index_build(struct store *s, const char *database, const char *collection,
    const char *name, const char *builder)
{
	const char *v[] = { database, collection, name };
	const char *c[] = { database, collection, name, builder };
	const char *state;
	char err[512];
	struct db_sql q;
	PGresult *res;
	enum plat_code code;

	/* One replica builds it: the one whose claim lands (again after an
	 * hour, when its builder went away mid-build). */
	code = pg_store_exec(s->db, "db_index_claim",
	    "UPDATE db_indexes SET builder = $4, claimed_at = now()"
	    " WHERE database = $1 AND collection = $2 AND name = $3"
	    " AND state = 1 AND (builder = '' OR claimed_at <"
	    " now() - interval '1 hour') RETURNING 1", 4, c, 10000, &res, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return;
	}
	PQclear(res);
	code = pg_store_exec(s->db, "db_index_ddl",
	    "SELECT format('CREATE INDEX CONCURRENTLY IF NOT EXISTS %I"
	    " ON db_documents %s WHERE database = %L AND collection = %L',"
	    " i.sql_name, CASE WHEN i.kind = 1"
	    " THEN 'USING gin (body jsonb_path_ops)'"
	    " ELSE '(' || (SELECT string_agg(format('(body #> %L::text[])',"
	    " p), ', ') FROM jsonb_array_elements_text(i.arrays) AS p) || ')'"
	    " END, i.database, i.collection) FROM db_indexes i"
	    " WHERE i.database = $1 AND i.collection = $2 AND i.name = $3",
	    3, v, 10000, &res, err, sizeof(err));
	if (code != PLAT_OK || PQntuples(res) != 1) {
		if (code == PLAT_OK)
			PQclear(res);
		return;
	}
	db_sql_init(&q);
	db_sql_add(&q, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	code = store_query(s, &q, INT64_MAX, &res, err, sizeof(err));
	db_sql_free(&q);
	if (code == PLAT_OK) {
		PQclear(res);
		state = "2";
		err[0] = '\0';
		log_info("db: index ready", "database", database,
		    "collection", collection, "index", name);
	} else {
		state = "3";
		log_warn("db: index build failed", "database", database,
		    "collection", collection, "index", name, "error", err);
		/* A failed concurrent build leaves an invalid index. */
		if (pg_store_exec(s->db, "db_index_sql_name",
		    "SELECT sql_name FROM db_indexes WHERE database = $1"
		    " AND collection = $2 AND name = $3", 3, v, 10000, &res,
		    NULL, 0) == PLAT_OK) {
			if (PQntuples(res) == 1)
				ddl_drop_index(s, PQgetvalue(res, 0, 0));
			PQclear(res);
		}
	}
	{
		const char *u[] = { database, collection, name, state, err };

		(void)pg_store_exec(s->db, "db_index_state",
		    "UPDATE db_indexes SET state = $4::smallint, error = $5"
		    " WHERE database = $1 AND collection = $2 AND name = $3",
		    5, u, 10000, NULL, err, sizeof(err));
	}
}

void
store_index_work(struct store *s, const char *builder)
{
	PGresult *res;
	char err[256];

	if (pg_store_exec(s->db, "db_index_pending",
	    "SELECT database, collection, name FROM db_indexes"
	    " WHERE state = 1 ORDER BY database, collection, name",
	    0, NULL, 10000, &res, err, sizeof(err)) != PLAT_OK)
		return;
	for (int i = 0; i < PQntuples(res); i++)
		index_build(s, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
		    PQgetvalue(res, i, 2), builder);
	PQclear(res);
}
