/*
 * store: router-srv's rules in PostgreSQL (pg_store, with migrations).
 *
 * router_rules holds one row per service: the packed Rules, its version
 * (counting up from 1 per service, kept through a delete, which leaves
 * the row as a tombstone) and the revision of its last change. Every
 * change takes the next revision from router_revision (its row lock
 * orders writers, so revisions commit in order) and NOTIFYs
 * STORE_CHANNEL: the change feed of every replica reads the rows past
 * its last revision and applies them (handlers.c).
 */
#ifndef ROUTER_STORE_H
#define ROUTER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "platform/pg.h"
#include "platform/server.h"

#define STORE_CHANNEL "platform_router"

struct rules_row {
	int64_t revision;
	size_t size;                     /* for the feed's bound */
	int refs;
	char *service;
	unsigned char *body;             /* NULL: deleted */
	size_t len;
	int64_t version;
};

void rules_row_ref(struct rules_row *r);
void rules_row_unref(struct rules_row *r);

struct pg_store *store_new(const char *conninfo, int pool_size);

/* Replaces service's rules (packed) unless expected (> 0) is not the
 * live version: FAILED_PRECONDITION. *row is the new row. */
enum plat_code store_set(struct pg_store *db, const char *service,
    const unsigned char *body, size_t len, int64_t expected,
    int64_t timeout_ms, struct rules_row **row, char *err, size_t errlen);
/* NOT_FOUND without live rules; FAILED_PRECONDITION as store_set. */
enum plat_code store_delete(struct pg_store *db, const char *service,
    int64_t expected, int64_t timeout_ms, struct rules_row **row, char *err,
    size_t errlen);
/* The live rules of every service (rows, n): for a full load. */
enum plat_code store_list(struct pg_store *db, int64_t timeout_ms,
    struct rules_row ***rows, size_t *n, char *err, size_t errlen);

/* The feed's two reads. */
enum plat_code store_head(struct pg_store *db, int64_t timeout_ms,
    int64_t *rev, char *err, size_t errlen);
enum plat_code store_changes(struct pg_store *db, int64_t after,
    int64_t upto, int limit, int64_t timeout_ms, struct rules_row ***rows,
    size_t *n, char *err, size_t errlen);

#endif
