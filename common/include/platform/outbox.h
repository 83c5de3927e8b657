/*
 * outbox: what a server sends to another in the background (its platform
 * events to event-srv, its spans to trace-srv) without ever blocking the
 * request that made it.
 *
 * outbox_push copies nothing and never waits: it links the caller's item
 * into a bounded FIFO (items and bytes) and returns. One sender thread
 * takes up to batch_max items from the head, hands them to the owner's
 * send, and removes them only once send says they were taken, so an
 * outage of the other side loses nothing that fits in the buffer. While
 * it is full, new items are dropped, counted, and logged once per outage;
 * failed sends back off (doubling up to backoff_max_ms). With linger_ms
 * a batch waits that long for company, so a steady trickle goes out as
 * a few full sends rather than one send per item. Stopping sends what
 * is left for a bounded time.
 */
#ifndef PLATFORM_OUTBOX_H
#define PLATFORM_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The head of the owner's item (embed it first). */
struct outbox_item {
	struct outbox_item *next;
	size_t bytes;                   /* its share of max_bytes */
};

struct outbox_ops {
	const char *what;               /* for the log: "platform events" */
	const char *to;                 /* for the log: "event-srv" */
	/* On the sender thread: sends the n items from first (follow
	 * ->next) within deadline_ms; 0 when they were taken, else a gRPC
	 * status with err. They stay queued meanwhile. */
	int (*send)(void *arg, struct outbox_item *first, size_t n,
	    int deadline_ms, char *err, size_t errlen);
	void (*free_item)(void *arg, struct outbox_item *it);
	/* Under the outbox's lock, as an item is accepted: its sequence
	 * number (1, 2, ...); may be NULL. */
	void (*accepted)(void *arg, struct outbox_item *it, uint64_t seq);
};

struct outbox_limits {
	size_t max_items, max_bytes;
	size_t batch_max;
	int call_ms;                    /* each send's deadline */
	int backoff_min_ms, backoff_max_ms;
	/* Up to this long after an item arrives the sender waits for a
	 * fuller batch (batch_max sends at once): 0 sends at once. */
	int linger_ms;
};

struct outbox_stats {
	uint64_t sent;                  /* items taken */
	uint64_t dropped;               /* full, stopping, or left at exit */
	uint64_t send_failures;         /* sends not taken (items kept) */
	size_t buffered;
};

struct outbox;

/* ops and arg outlive it. Nothing is sent before outbox_start. */
struct outbox *outbox_new(const struct outbox_ops *ops, void *arg,
    const struct outbox_limits *limits);
/* Queues it, or drops it (freed by free_item) when full or stopping:
 * false then. From any thread. */
bool outbox_push(struct outbox *o, struct outbox_item *it);
/* Starts the sender thread: 0, or -1 (logged). */
int outbox_start(struct outbox *o);
/* Sends what is queued for up to flush_ms, then stops the sender; later
 * pushes are dropped. Safe to call twice. */
void outbox_stop(struct outbox *o, int flush_ms);
/* Stops it and frees what is left (counted as dropped, logged when a
 * sender ran). NULL is fine. */
void outbox_free(struct outbox *o);
void outbox_stats(struct outbox *o, struct outbox_stats *out);

#endif
