/*
 * feed: event-srv's live stream and the hub of Subscribe streams without a
 * group, on the platform's change feed (platform/feed.h).
 *
 * One per process: a thread that reads events in sequence order from the
 * last one it saw, woken by LISTEN 'platform_event' (the last sequence of
 * each committed batch, from any replica), by the listener's reconnects
 * and every second as a safety net. Batches this replica commits are
 * handed over directly (feed_committed) when they follow the last event
 * fanned out, so a local subscriber gets them without a read back. Each
 * event goes, in order, to every matching subscriber, and the consumer
 * groups are woken.
 *
 * Until the feed first reached the database (and while a read of it
 * fails) it is not healthy: the service reports NOT_SERVING.
 */
#ifndef EVENT_FEED_H
#define EVENT_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/server.h"
#include "store.h"

/* 0, or -1 when the listener or the thread cannot start. */
int feed_start(struct pg_store *store, const char *conninfo, plat_server *srv);
/* Stops the listener, the thread and waits for every replay; every
 * stream must have ended (the runtime ends them before fini). */
void feed_stop(void);

/* The feed (platform/feed.h: its position, health, kick and
 * subscribers); NULL before feed_start. */
struct plat_feed *feed_get(void);

/* A batch this replica committed, in sequence order; takes the rows'
 * references. */
void feed_committed(struct ev_row **rows, size_t n);

/*
 * The work of a Subscribe without a group once its request is checked:
 * on a thread of its own, replays the stored events of the subjects after
 * sequence `after` (-1: from the head, that is only new ones) up to every
 * event committed before the call, sends the caught_up marker, then goes
 * on with live events, neither gap nor duplicate at the seam. With
 * min_offset > 0 (a start at an offset of one topic), events of lower
 * offsets are skipped. Returns what the stream handler returns.
 */
int feed_subscribe(plat_ctx *ctx, plat_stream *st,
    const char *const *subjects, size_t n, int64_t after,
    int64_t min_offset);

/* Sends one event (delivery_count 0 outside groups): 0, or -1 when the
 * stream ended. */
int feed_send(plat_stream *st, const struct ev_row *row, int delivery_count);

/* A JSON array of the regexes of the subjects (malloc'd), for SQL. */
char *feed_regexes_json(const char *const *subjects, size_t n);

#endif
