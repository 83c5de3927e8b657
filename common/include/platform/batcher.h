/*
 * batcher: group commit for a server's durable writes.
 *
 * Handlers queue a call (batcher_submit) and return plat_defer(ctx). One
 * writer thread takes every call queued while the previous batch
 * committed (up to the limits), has the server build the batch's
 * statements and apply them in one transaction, and an answerer thread
 * then answers each call while the writer already commits the next
 * batch. Durable throughput is bounded by the batch size, not by one
 * fsync per write. Calls are built, applied and answered in submission
 * order. One writer, because a batch holds its store's sequence lock
 * until its commit: a second writer would only split the queue into
 * smaller batches waiting on that lock.
 *
 * The server embeds a struct batcher_call in its own per-call state (in
 * the call's arena, say) and gives three callbacks:
 *
 *   build   makes the batch's statements from its calls, in order;
 *   apply   runs them in one transaction and sets each call's outcome;
 *           once it committed, it hands the batch on to whatever must
 *           learn of it before any caller is answered (a change feed);
 *   answer  answers one call (plat_reply), after the commit.
 *
 * and release, which frees what build made once every call is answered.
 * A call is answered exactly once; after its answer the batcher never
 * touches it again (it may be freed with the call).
 */
#ifndef PLATFORM_BATCHER_H
#define PLATFORM_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "platform/server.h"

#define BATCHER_ERR_MAX 256

/* One call: the server sets the first three before batcher_submit. */
struct batcher_call {
	int64_t deadline_ms;    /* plat_now_ms() clock; INT64_MAX: none */
	size_t items;           /* its share of max_items (0 counts as 1) */
	size_t bytes;           /* its share of max_bytes */
	/* The outcome, PLAT_OK before apply: apply sets a call's own
	 * failure; the batcher sets every call's when apply fails, and
	 * PLAT_DEADLINE_EXCEEDED for a call past its deadline before its
	 * batch started (then it is answered without being built). */
	enum plat_code code;
	char err[BATCHER_ERR_MAX];
	struct batcher_call *next;      /* the batcher's */
};

struct batcher_ops {
	/* On the writer thread: the batch of calls (n >= 1, each within
	 * its deadline), as the server's state for apply and release. */
	void *(*build)(void *arg, struct batcher_call *const *calls,
	    size_t n);
	/* On the writer thread: one transaction of the batch within
	 * timeout_ms. PLAT_OK when it committed (each call then carries its
	 * own code); otherwise nothing (or, for an unknown commit outcome,
	 * maybe all) was written and every call gets the code and err. */
	enum plat_code (*apply)(void *arg, void *batch, int64_t timeout_ms,
	    char *err, size_t errlen);
	/* On the answerer thread, in order: answers call (its outcome in
	 * call->code / call->err). batch is NULL for a call never built
	 * (past its deadline). */
	void (*answer)(void *arg, void *batch, struct batcher_call *call);
	/* After the batch's last answer; may be NULL. */
	void (*release)(void *arg, void *batch);
};

struct batcher_limits {
	size_t max_items;       /* per batch (a single call may exceed it) */
	size_t max_bytes;       /* per batch (a single call may exceed it) */
	/* A batch's transaction gets its slowest caller's time left, up
	 * to this (all of it for callers without a deadline). */
	int64_t max_timeout_ms;
};

struct batcher;

/* Starts the writer and the answerer; NULL (logged) when a thread cannot
 * start. ops and arg must outlive the batcher. */
struct batcher *batcher_new(const char *name, const struct batcher_ops *ops,
    void *arg, const struct batcher_limits *limits);
/* Answers every queued call (each still applied), then stops both
 * threads. Submitting after it is a bug. Safe to call twice. */
void batcher_stop(struct batcher *b);
/* Stops it (if needed) and frees it; NULL is fine. */
void batcher_free(struct batcher *b);

/* A call's deadline_ms: its caller's deadline (ctx's) on the
 * plat_now_ms() clock, INT64_MAX for none. */
int64_t batcher_deadline_of(plat_ctx *ctx);

/* Queues a call; from any thread. Call plat_defer(ctx) before, as the
 * answer may come at once. */
void batcher_submit(struct batcher *b, struct batcher_call *call);

/* For metrics: calls queued or being written (until their batch goes
 * to the answerer). */
int64_t batcher_pending(struct batcher *b);
/* Transactions committed, and the items (a call's share) they held. */
uint64_t batcher_batches(struct batcher *b);
uint64_t batcher_items(struct batcher *b);

#endif
