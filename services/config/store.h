/*
 * store: config-srv's PostgreSQL tables and every statement on them.
 *
 *   config_versions   every version of every path, immutable; revision is
 *                     the store-wide counter, one per change
 *   config_current    the latest version of each (namespace, path)
 *   config_revision   one row: the last revision handed out
 *
 * Writes (update, delete, rollback) commit in batches, one transaction
 * each (group commit): it locks the revision row first (so writers on
 * every replica serialise, and revisions commit in increasing order: a
 * reader that sees revision R has seen every revision below R), reads the
 * current versions of the paths it writes, checks each write in order,
 * inserts the versions, moves the current rows, and notifies channel
 * 'platform_config' with its last revision, then commits.
 *
 * Every call returns a gRPC code with a message in err (platform/pg.h).
 * Rows come back as cfg_row, immutable and reference counted, so the
 * cache and every watcher can share them.
 */
#ifndef CONFIG_STORE_H
#define CONFIG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/pg.h"
#include "platform/server.h"

#define STORE_CHANNEL "platform_config"

/* One version of one path. Immutable once made; shared by reference. */
struct cfg_row {
	int refs;               /* atomic */
	int64_t revision;
	int64_t version;
	int64_t created_ms;
	bool deleted;
	char *ns;
	char *path;
	char *json;             /* "" for a tombstone (and in List rows) */
	char *author;
	char *comment;
	size_t size;            /* bytes held, for buffer limits */
};

struct cfg_row *cfg_row_ref(struct cfg_row *r);
void cfg_row_unref(struct cfg_row *r);     /* NULL is fine */

/* A list of rows, each holding a reference. */
struct cfg_rows {
	struct cfg_row **v;
	size_t n;
};
void cfg_rows_free(struct cfg_rows *rows);

struct pg_store;

/* The store is a pg_store (pool and schema) with config's migrations
 * (component "config"): pg_store_migrate, pg_store_ready and pg_store_free
 * as for any; until the migrations applied every call below answers
 * PLAT_UNAVAILABLE. NULL when conninfo does not parse. */
struct pg_store *store_new(const char *conninfo, int pool_size);

enum store_op {
	STORE_UPDATE,
	STORE_DELETE,
	STORE_ROLLBACK,
};

struct store_write {
	enum store_op op;
	const char *ns;
	const char *path;
	const char *json;         /* STORE_UPDATE: the canonical document */
	int64_t expected_version; /* 0 any, N > 0 exactly, -1 absent */
	int64_t to_version;       /* STORE_ROLLBACK */
	const char *author;
	const char *comment;      /* STORE_ROLLBACK: "" gets a default */
};

/* One write of a batch and, after store_write_batch, its outcome. */
struct store_batch_item {
	const struct store_write *w;
	enum plat_code code;
	char err[256];            /* when code is not PLAT_OK */
	struct cfg_row *row;      /* PLAT_OK: the new version (a reference) */
};

/*
 * Writes a batch in one transaction (group commit), in order: each write
 * sees the ones before it, and one that fails its check fails alone:
 * PLAT_FAILED_PRECONDITION when the expected version does not match (or a
 * rollback target is a tombstone), PLAT_NOT_FOUND when a delete finds
 * nothing to delete or a rollback target does not exist. Returns PLAT_OK
 * when the transaction committed (each item then has its own code);
 * otherwise nothing was written (or, for an unknown commit outcome,
 * maybe all) and every item carries the returned code.
 */
enum plat_code store_write_batch(struct pg_store *s,
    struct store_batch_item *items, size_t n, int64_t timeout_ms, char *err,
    size_t errlen);

/* The latest version of a path, a tombstone included; *out NULL when the
 * path never existed. */
enum plat_code store_latest(struct pg_store *s, const char *ns,
    const char *path, int64_t timeout_ms, struct cfg_row **out, char *err,
    size_t errlen);
/* One version; *out NULL when it does not exist. */
enum plat_code store_version(struct pg_store *s, const char *ns,
    const char *path, int64_t version, int64_t timeout_ms,
    struct cfg_row **out, char *err, size_t errlen);
/* Versions of a path below before_version (0: from the latest), newest
 * first, at most limit. */
enum plat_code store_history(struct pg_store *s, const char *ns,
    const char *path, int64_t before_version, int limit, int64_t timeout_ms,
    struct cfg_rows *out, char *err, size_t errlen);
/* Latest versions of the paths of ns starting with prefix and after
 * after_path (byte order), in path order, at most limit; json is "". */
enum plat_code store_list(struct pg_store *s, const char *ns,
    const char *prefix, const char *after_path, bool include_deleted,
    int limit, int64_t timeout_ms, struct cfg_rows *out, char *err,
    size_t errlen);
/* Changes with after < revision (<= upto when upto > 0), in revision
 * order, at most limit; with namespaces (nns > 0) or a prefix, only
 * those. */
enum plat_code store_changes(struct pg_store *s, int64_t after, int64_t upto,
    const char *const *namespaces, size_t nns, const char *prefix,
    int limit, int64_t timeout_ms, struct cfg_rows *out, char *err,
    size_t errlen);
/* The last revision handed out. */
enum plat_code store_head(struct pg_store *s, int64_t timeout_ms,
    int64_t *rev, char *err, size_t errlen);

#endif
