/*
 * events: the platform's own events (service registered, config changed,
 * login, ...), published to event-srv by every server.
 *
 * plat_event_emit never blocks a request: it copies the event into a
 * bounded buffer and returns. One thread per server sends what the buffer
 * holds to event-srv (resolved by name through discovery) in batches,
 * each event with an idempotency key so a batch retried after a lost
 * answer is not stored twice. While event-srv is away the buffer holds
 * events; when it is full new events are dropped, counted (metric
 * platform_events_dropped_total) and logged once per outage.
 *
 * The runtime owns one publisher per server (plat_server_events); a
 * server without --discovery has nowhere to send and drops silently.
 */
#ifndef PLATFORM_EVENTS_H
#define PLATFORM_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "platform/client.h"

struct metrics;

struct plat_events_opts {
	const char *source;       /* "config-srv" */
	size_t max_events;        /* 0 means 10000 */
	size_t max_bytes;         /* 0 means 8 MiB */
};

typedef struct plat_events plat_events;

/* A buffer that accepts events at once; nothing is sent until
 * plat_events_connect. metrics may be NULL. */
plat_events *plat_events_new(const struct plat_events_opts *opts,
    struct metrics *metrics);
/* Starts sending through client (which must outlive plat_events_stop). */
void plat_events_connect(plat_events *ev, plat_client *client);
/* Sends what is buffered for up to flush_ms, then stops the sender;
 * later events are dropped. */
void plat_events_stop(plat_events *ev, int flush_ms);
void plat_events_free(plat_events *ev);

/*
 * Queues one event: topic ("platform.config.changed"), type
 * ("platform.config.changed.v1"), data (JSON text, may be NULL) and
 * metadata (key, value, ..., NULL; may be NULL). Copies everything.
 * Thread-safe; NULL ev is fine (nothing happens).
 */
void plat_event_emit(plat_events *ev, const char *topic, const char *type,
    const char *data, const char *const *metadata);

/* The same with data as a JSON value, which it takes (decrefs). */
void plat_event_emit_json(plat_events *ev, const char *topic,
    const char *type, json_t *data, const char *const *metadata);

/* Counters, for tests and gauges. */
struct plat_events_stats {
	uint64_t published;
	uint64_t dropped;
	uint64_t send_failures;         /* batches not taken, sent again */
	size_t buffered;
};
void plat_events_stats(plat_events *ev, struct plat_events_stats *out);

#endif
