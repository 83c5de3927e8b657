/*
 * waiters: the Lock and Campaign calls of this replica that wait for
 * their turn. Each is a deferred call whose lease has a row in the
 * name's FIFO queue (sync_waiters); a thread tries them again when the
 * change feed says a holder changed (waiters_kick), every second as the
 * fallback, and answers each when it is granted, when its lease is gone,
 * or just before its deadline (DEADLINE_EXCEEDED, leaving the queue).
 */
#ifndef SYNC_WAITERS_H
#define SYNC_WAITERS_H

#include "platform/server.h"
#include "store.h"

/* Answers a waiter: code PLAT_OK with a->outcome SYNC_GRANTED, or an
 * error with err. Owns a afterwards (frees it). */
typedef void (*waiter_done_fn)(plat_ctx *ctx, struct sync_attempt *a,
    enum plat_code code, const char *err);

int waiters_start(struct pg_store *s, waiter_done_fn done);
/* ctx is deferred already; a (heap, owned) is queued in the store. */
void waiters_add(plat_ctx *ctx, struct sync_attempt *a);
void waiters_kick(void);
/* Answers every waiter with UNAVAILABLE and leaves their queues. */
void waiters_stop(void);
size_t waiters_count(void);

#endif
