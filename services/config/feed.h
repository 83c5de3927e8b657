/*
 * feed: config-srv's change feed and the hub of Watch streams, on the
 * platform's change feed (platform/feed.h).
 *
 * One per process: a thread that reads config_versions in revision order
 * from the last revision it saw, woken by LISTEN 'platform_config' (the
 * revision of each commit), by the listener's reconnects, by this
 * replica's own writes, and every second as a safety net. Each change is
 * applied to the cache and fanned out, in order, to the matching
 * watchers. Every replica runs its own feed from the shared table, so a
 * change written through one reaches watchers and caches on all.
 *
 * The feed starts at the revision the store is at when it first reaches
 * the database; until then (and while a read of the feed fails) it is not
 * healthy: reads bypass the cache and the service reports NOT_SERVING.
 */
#ifndef CONFIG_FEED_H
#define CONFIG_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/server.h"
#include "store.h"

/* 0, or -1 when the listener or the thread cannot start. */
int feed_start(struct pg_store *store, const char *conninfo, plat_server *srv);
/* Stops the listener and the thread; every watch stream must have ended
 * (the runtime drains them before fini). */
void feed_stop(void);

/* The feed (platform/feed.h: its position, health, kick and watchers);
 * NULL before feed_start. */
struct plat_feed *feed_get(void);
/*
 * A local writer's committed batch: rows in revision order with no gap,
 * the first following every revision committed before the batch. When
 * the feed stands right before it, the rows go to the cache and the
 * watchers at once, saving the read of the table; otherwise (another
 * replica's changes came between) the feed is kicked to read them all.
 */
void feed_committed(struct cfg_row *const *rows, size_t n);

/*
 * The work of a Watch call once its request is checked: replays the
 * stored changes after after_revision (0: from the store's current
 * revision) up to every change committed before the call, sends the
 * caught_up marker, then goes on with live changes, with neither gap nor
 * duplicate at the seam. Returns what the stream
 * handler returns.
 */
int feed_watch(plat_ctx *ctx, plat_stream *st,
    const char *const *namespaces, size_t nns, const char *prefix,
    int64_t after_revision);

#endif
