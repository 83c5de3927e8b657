/*
 * feed: db-srv's Watch on the platform's change feed (platform/feed.h)
 * over db_changes: every replica runs its own feed from the shared
 * table, woken by LISTEN 'platform_db', by its own commits and every
 * second (the polling that keeps Watch correct where LISTEN/NOTIFY is
 * missing).
 */
#ifndef DB_FEED_H
#define DB_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h"
#include "platform/feed.h"
#include "platform/server.h"
#include "store.h"

/* One per backend (store). health_service: the gRPC health name it
 * sets (NULL: none; one backend's feed speaks for the service). */
struct db_feed;

struct db_feed *feed_start(struct store *store, const char *conninfo,
    plat_server *srv, const char *health_service);
void feed_stop(struct db_feed *f);          /* NULL is fine */
struct plat_feed *feed_get(struct db_feed *f);
/* A committed transaction's changes, in revision order with no gap, to
 * the watchers; takes the rows' references and the array. */
void feed_committed(struct db_feed *f, struct db_row **rows, size_t n);
/* Watch of one collection, changes matching filter (taken) after
 * after_revision (0: only new ones). */
int feed_watch(struct db_feed *f, plat_ctx *ctx, plat_stream *st,
    const char *database, const char *collection, struct dbf *filter,
    int64_t after_revision);
/* Fills a Document from a row (pointing into it). */
void feed_document(Platform__Db__V1__Document *d, const struct db_row *r);

#endif
