/*
 * store: db-srv's PostgreSQL tables and every statement on them.
 *
 *   db_revision     one row: the last revision handed out (and the
 *                   revision changes were compacted to)
 *   db_databases    the databases
 *   db_collections  the collections, with a count of their documents
 *   db_documents    the live documents (JSONB), one row each
 *   db_changes      every change in revision order, for Watch
 *   db_indexes      the indexes declared per collection
 *
 * Writes commit one transaction per call (a BatchWrite's writes
 * together): it locks the revision row first, so writers on every
 * replica serialise and revisions commit in increasing order (a reader
 * that sees revision R has seen every revision below R, which is what the
 * change feed needs), reads the documents it writes, checks each write
 * in order in C, then writes the documents, the changes, the counts and
 * the revision and notifies 'platform_db' with the COMMIT.
 */
#ifndef DB_STORE_H
#define DB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "filter.h"
#include "platform/pg.h"
#include "platform/server.h"

#define STORE_CHANNEL "platform_db"

enum db_change_kind { DB_CHANGE_PUT = 1, DB_CHANGE_DELETE = 2,
	DB_CHANGE_EXPIRED = 3 };

/* One change (and the document it left): immutable, shared by the feed
 * and every watcher. */
struct db_row {
	int refs;               /* atomic */
	int64_t revision;
	size_t size;
	int kind;               /* enum db_change_kind */
	char *database, *collection, *id;
	char *body;             /* the new document; a deletion's last */
	json_t *doc;            /* body parsed, for Watch filters */
	int64_t create_revision;
	int64_t expires_ms;
};

struct db_row *db_row_ref(struct db_row *r);
void db_row_unref(struct db_row *r);

struct db_doc {
	char *id;
	char *body;
	int64_t revision, create_revision, expires_ms;
};
void db_doc_clear(struct db_doc *d);

enum db_write_op { DB_W_CREATE, DB_W_REPLACE, DB_W_PATCH, DB_W_DELETE,
	DB_W_EXPIRE };

struct db_write {
	enum db_write_op op;
	const char *database, *collection, *id;
	const char *json;               /* create, replace: checked JSON */
	const json_t *patch;            /* patch */
	int64_t expected_revision;      /* > 0: only at it */
	int64_t ttl_ms;                 /* create: 0 none; update: 0 keep,
	                                 * -1 clear */
	/* out */
	struct db_doc doc;              /* the document written */
	int64_t revision;
	enum plat_code code;            /* store_write_each's outcome */
	char err[256];
};

struct store;

/* notify: each commit NOTIFYs 'platform_db' (off for engines without
 * LISTEN/NOTIFY: watchers then learn of changes by polling). */
struct store *store_new(const char *conninfo, int pool_size, bool notify);
bool store_notifies(const struct store *s);
void store_free(struct store *s);
enum plat_code store_migrate(struct store *s, char *err, size_t errlen);
struct pg_store *store_db(struct store *s);

/*
 * The writes in one transaction, in order: PLAT_OK when all applied
 * (each w[i].doc and revision set, and *rows the changes made, in
 * revision order, for the feed: free each with db_row_unref and the
 * array); otherwise nothing was written, *failed is the first failing
 * write and err its reason. An EXPIRE write that no longer applies is
 * skipped, not a failure.
 */
enum plat_code store_write(struct store *s, struct db_write *w, size_t n,
    int64_t timeout_ms, struct db_row ***rows, size_t *nrows,
    size_t *failed, char *err, size_t errlen);

/*
 * Each write on its own, in one transaction (group commit of single
 * writes): a write that fails its check gets its code and err, the
 * others apply. PLAT_OK when the transaction committed (or nothing was
 * left to write); otherwise nothing was written and err says why.
 */
enum plat_code store_write_each(struct store *s, struct db_write *w,
    size_t n, int64_t timeout_ms, struct db_row ***rows, size_t *nrows,
    char *err, size_t errlen);

/* Expired documents (at most limit) as EXPIRE writes, swept by
 * store_write; *n 0 when there are none. */
enum plat_code store_expired(struct store *s, int limit, struct db_write **w,
    size_t *n, char *err, size_t errlen);
void store_writes_free(struct db_write *w, size_t n);

enum plat_code store_read(struct store *s, const char *database,
    const char *collection, const char *id, int64_t timeout_ms,
    struct db_doc *out, char *err, size_t errlen);

/* ---- databases and collections ---- */

struct db_info {
	char *database, *name;
	int64_t created_ms, documents;
};
void db_infos_free(struct db_info *v, size_t n);

enum plat_code store_database_create(struct store *s, const char *name,
    int64_t timeout_ms, struct db_info *out, char *err, size_t errlen);
enum plat_code store_database_drop(struct store *s, const char *name,
    int64_t timeout_ms, char *err, size_t errlen);
enum plat_code store_databases(struct store *s, const char *after, int limit,
    int64_t timeout_ms, struct db_info **out, size_t *n, char *err,
    size_t errlen);
enum plat_code store_collection_create(struct store *s, const char *database,
    const char *name, int64_t timeout_ms, struct db_info *out, char *err,
    size_t errlen);
enum plat_code store_collection_drop(struct store *s, const char *database,
    const char *name, int64_t timeout_ms, char *err, size_t errlen);
enum plat_code store_collections(struct store *s, const char *database,
    const char *after, int limit, int64_t timeout_ms, struct db_info **out,
    size_t *n, char *err, size_t errlen);

/* ---- searches ---- */

/* The ready indexes of a collection, for the search's plan. */
struct db_index_use {
	int kind;                       /* 0 expression, 1 GIN */
	char **paths;                   /* dotted */
	size_t npaths;
};

struct db_coll_plan {
	int64_t documents;
	struct db_index_use *ix;
	size_t nix;
};
void db_coll_plan_free(struct db_coll_plan *p);

/* NOT_FOUND naming the collection (or its database) when it does not
 * exist. */
enum plat_code store_collection_plan(struct store *s, const char *database,
    const char *collection, int64_t timeout_ms, struct db_coll_plan *out,
    char *err, size_t errlen);
/* Runs a statement made by db_search_sql; the result for the caller to
 * PQclear. */
enum plat_code store_query(struct store *s, const struct db_sql *q,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen);

/* ---- the change feed ---- */

enum plat_code store_head(struct store *s, int64_t timeout_ms, int64_t *rev,
    char *err, size_t errlen);
/* Changes after `after` (<= upto when upto > 0), of one collection when
 * database is not NULL. */
enum plat_code store_changes(struct store *s, int64_t after, int64_t upto,
    const char *database, const char *collection, int limit,
    int64_t timeout_ms, struct db_row ***rows, size_t *n, char *err,
    size_t errlen);

/* Drops the changes older than retention_ms (a prefix in revision
 * order, at most limit), raising the compacted revision; *n dropped. */
enum plat_code store_compact(struct store *s, int64_t retention_ms,
    int limit, int64_t *n, char *err, size_t errlen);
/* The highest revision whose change was compacted (0: none). */
enum plat_code store_compacted(struct store *s, int64_t timeout_ms,
    int64_t *rev, char *err, size_t errlen);

/* ---- indexes ---- */

struct db_index {
	char *database, *collection, *name;
	int kind, state;
	char **paths;
	size_t npaths;
	char *error;
};
void db_indexes_free(struct db_index *v, size_t n);

/* paths_json: a JSON array of dotted paths; arrays_json: of their
 * text[] literals. */
enum plat_code store_index_create(struct store *s, const char *database,
    const char *collection, const char *name, int kind,
    const char *paths_json, const char *arrays_json, int64_t timeout_ms,
    char *err, size_t errlen);
enum plat_code store_indexes(struct store *s, const char *database,
    const char *collection, int64_t timeout_ms, struct db_index **out,
    size_t *n, char *err, size_t errlen);
enum plat_code store_index_drop(struct store *s, const char *database,
    const char *collection, const char *name, int64_t timeout_ms,
    char *err, size_t errlen);
/* Builds every index still BUILDING that this replica (builder, its
 * node id) claims first (CREATE INDEX CONCURRENTLY), marking each READY
 * or FAILED. */
void store_index_work(struct store *s, const char *builder);

#endif
