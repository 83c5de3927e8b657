/*
 * feed: the change feed every Watch over stored state goes through.
 *
 * A server's store keeps changes in revision order (a revision or a
 * sequence, counting up from 1). One plat_feed per store runs a thread
 * that reads the rows after the last revision it saw, woken by LISTEN on
 * the server's channel (a payload is the revision a commit reached), by
 * the listener's reconnects, by plat_feed_kick and every second as a
 * safety net, and fans each row out, in order, to the matching watchers
 * through their plat_stream (bounded queue: a slow consumer is ended with
 * RESOURCE_EXHAUSTED by the runtime). Batches committed by this process
 * are handed over with plat_feed_committed, which fans them out at once
 * when they follow the last revision fanned out, else kicks the thread.
 *
 * A watcher joins with plat_feed_watch: on a thread of its own the stored
 * rows after its revision are replayed up to every change committed
 * before the call, then the caught_up marker (the server's message) goes
 * out and live rows follow, with neither gap nor duplicate at the seam.
 *
 * The feed is not healthy until its first read succeeded, nor while a
 * read fails; with a health service name it sets that service's gRPC
 * health accordingly.
 *
 * Rows are the server's, reference counted through the ops; the feed
 * holds a reference on each row it keeps.
 */
#ifndef PLATFORM_FEED_H
#define PLATFORM_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/pg.h"
#include "platform/server.h"

/* A page of rows, each holding a reference the page owns. */
struct plat_feed_page {
	void **v;
	size_t n, cap;
};

/* Appends row, taking the caller's reference. */
void plat_feed_page_push(struct plat_feed_page *p, void *row);
/* Drops every row's reference (unref) and the array. */
void plat_feed_page_free(struct plat_feed_page *p, void (*unref)(void *));

/*
 * What a server gives its feed. Callbacks run on the feed thread, on a
 * replay thread or on a committing one, without the feed's locks held,
 * except match and send, which run under the feed's hub lock (they must
 * only filter and queue on the stream).
 */
struct plat_feed_ops {
	const char *name;             /* for the log: "config" */
	const char *channel;          /* LISTEN channel; NULL: none */
	const char *health_service;   /* NULL: health left alone */
	int page;                     /* rows per read (> 0) */
	int64_t start_wait_ms;        /* a watch during the start waits */

	/* The last revision committed. */
	enum plat_code (*head)(void *arg, int64_t timeout_ms, int64_t *rev,
	    char *err, size_t errlen);
	/* Rows with after < revision (<= upto when upto > 0), in revision
	 * order, at most limit, into out; for a watch (watch not NULL),
	 * only the ones it may match. */
	enum plat_code (*read)(void *arg, const void *watch, int64_t after,
	    int64_t upto, int limit, int64_t timeout_ms,
	    struct plat_feed_page *out, char *err, size_t errlen);

	/* Where a row keeps its revision (int64_t) and the bytes it holds
	 * (size_t, for the bound on what a catching-up watcher buffers):
	 * offsetof(struct my_row, revision). */
	size_t revision_at;
	size_t size_at;
	void (*ref)(void *row);
	void (*unref)(void *row);

	bool (*match)(const void *watch, const void *row);
	/* 0, or -1 when the stream ended. */
	int (*send)(plat_stream *st, const void *row);
	/* Optional: the message marking the end of the replay. */
	const ProtobufCMessage *caught_up;
	void (*watch_free)(void *watch);

	/* Optional: the feed knows where it starts (before any fan-out). */
	void (*started)(void *arg, int64_t rev);
	/* Optional: rows the thread read, before they are fanned out. */
	void (*read_rows)(void *arg, void *const *rows, size_t n);
	/* Optional: rows past the last position were fanned out. */
	void (*advanced)(void *arg);
};

struct plat_feed;

/* NULL when the listener or the thread cannot start. ops must outlive
 * the feed; arg goes to every callback; conninfo is for LISTEN (unused
 * without a channel); srv may be NULL when health_service is. With db,
 * the feed brings its schema up to date (pg_store_migrate) before it
 * reads, retrying at every wake-up. */
struct plat_feed *plat_feed_start(const struct plat_feed_ops *ops,
    void *arg, const char *conninfo, plat_server *srv, struct pg_store *db);
/* Stops the listener and the thread and waits for every replay; every
 * stream must have ended (the runtime ends them before fini). NULL is
 * fine. */
void plat_feed_free(struct plat_feed *f);

/* The last revision fanned out; -1 before the feed knows where it is. */
int64_t plat_feed_position(const struct plat_feed *f);
bool plat_feed_healthy(const struct plat_feed *f);
/* Asks for a read now. */
void plat_feed_kick(struct plat_feed *f);
size_t plat_feed_watchers(struct plat_feed *f);

/*
 * Rows this process committed, in revision order with no gap, the first
 * following every revision committed before them. Fanned out at once when
 * they follow the last revision fanned out; otherwise (another writer's
 * rows came between) the thread is kicked to read them all. The caller
 * keeps its references.
 */
void plat_feed_committed(struct plat_feed *f, void *const *rows, size_t n);

/*
 * A watcher on st from revision after (< 0: from the head, only new
 * changes), taking watch (freed by ops->watch_free): replays on a thread
 * of its own, then goes live. Returns what a stream handler returns:
 * PLAT_STREAM_OPEN, or an error status (UNAVAILABLE before the feed
 * started).
 */
int plat_feed_watch(struct plat_feed *f, plat_ctx *ctx, plat_stream *st,
    void *watch, int64_t after);

/*
 * plat_feed_loop: a thread that runs fn when kicked and every tick_ms,
 * never two at once; the feed's own loop, also for a server's work woken
 * by its feed (event-srv's consumer groups).
 */
struct plat_feed_loop;

struct plat_feed_loop *plat_feed_loop_start(int64_t tick_ms,
    void (*fn)(void *arg), void *arg);
void plat_feed_loop_kick(struct plat_feed_loop *l);
/* Waits for a running fn. NULL is fine. */
void plat_feed_loop_stop(struct plat_feed_loop *l);

#endif
