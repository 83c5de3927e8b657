/*
 * commit: group commit of published events, through the batcher
 * (platform/batcher.h).
 *
 * Publish handlers check their input, queue it here and return
 * plat_defer(ctx). The batcher stores everything queued (up to
 * COMMIT_MAX_EVENTS events) in one transaction (store_publish), hands the
 * new events to the feed, then answers each call with plat_reply. Under
 * load, many calls share one transaction and one WAL flush; alone, a call
 * waits for nothing but its own commit.
 */
#ifndef EVENT_COMMIT_H
#define EVENT_COMMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "platform/event/v1/event.pb-c.h"
#include "platform/server.h"
#include "store.h"

int commit_start(struct pg_store *store);
/* Answers anything still queued (the runtime waits for every deferred
 * call before fini, so normally nothing is) and stops the threads. */
void commit_stop(void);

/* Queues checked events of one call; the batcher answers ctx with a
 * PublishResponse (batch false, n 1) or a PublishBatchResponse. */
void commit_enqueue(plat_ctx *ctx, Platform__Event__V1__PublishRequest
    *const *events, size_t n, bool batch);

/* Transactions and events committed, for metrics. */
double commit_batches(void);
double commit_events(void);

#endif
