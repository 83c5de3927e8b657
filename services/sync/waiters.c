/*
 * waiters: see waiters.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "platform/feed.h"
#include "platform/log.h"
#include "platform/xalloc.h"
#include "waiters.h"

#define TICK_MS 100             /* deadlines are checked this often */
#define POLL_TICKS 10           /* the fallback: a retry every second */
#define DEADLINE_MARGIN_MS 150  /* answered this long before the deadline */
#define ATTEMPT_MAX_MS 5000

struct waiter {
	plat_ctx *ctx;
	struct sync_attempt *a;
	struct waiter *next;
};

static struct {
	pthread_mutex_t mu;
	struct waiter *head, **tail;
	size_t n;
	bool stopped;
	atomic_bool kicked;
	unsigned ticks;
	struct pg_store *store;
	waiter_done_fn done;
	struct plat_feed_loop *loop;
} W = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
finish(struct waiter *w, enum plat_code code, const char *err)
{
	W.done(w->ctx, w->a, code, err);
	free(w);
}

static void
leave_queue(struct waiter *w)
{
	char err[256];

	(void)store_dequeue(W.store, w->a->kind, w->a->name, w->a->lease,
	    1000, err, sizeof(err));
}

static void
loop_fn(void *arg)
{
	struct waiter *list, *w, *next, *kept = NULL, **kt = &kept;
	bool poll;
	char err[256];

	(void)arg;
	poll = atomic_exchange(&W.kicked, false) ||
	    ++W.ticks % POLL_TICKS == 0;
	pthread_mutex_lock(&W.mu);
	list = W.head;
	W.head = NULL;
	W.tail = &W.head;
	pthread_mutex_unlock(&W.mu);

	for (w = list; w != NULL; w = next) {
		int64_t left = plat_ctx_deadline_left_ms(w->ctx);
		enum plat_code code;

		next = w->next;
		w->next = NULL;
		if (left <= DEADLINE_MARGIN_MS) {
			leave_queue(w);
			pthread_mutex_lock(&W.mu);
			W.n--;
			pthread_mutex_unlock(&W.mu);
			finish(w, PLAT_DEADLINE_EXCEEDED,
			    "deadline exceeded while waiting for the lock");
			continue;
		}
		if (poll) {
			left -= DEADLINE_MARGIN_MS;
			code = store_acquire(W.store, w->a,
			    left < ATTEMPT_MAX_MS ? left : ATTEMPT_MAX_MS, err,
			    sizeof(err));
			if ((code == PLAT_OK &&
			    w->a->outcome == SYNC_GRANTED) ||
			    (code != PLAT_OK && code != PLAT_UNAVAILABLE &&
			    code != PLAT_DEADLINE_EXCEEDED &&
			    code != PLAT_ABORTED)) {
				pthread_mutex_lock(&W.mu);
				W.n--;
				pthread_mutex_unlock(&W.mu);
				finish(w, code, err);
				continue;
			}
		}
		*kt = w;
		kt = &w->next;
	}
	if (kept == NULL)
		return;
	/* The ones still waiting go before those that came meanwhile. */
	pthread_mutex_lock(&W.mu);
	*kt = W.head;
	if (W.head == NULL)
		W.tail = kt;
	W.head = kept;
	pthread_mutex_unlock(&W.mu);
}

int
waiters_start(struct pg_store *s, waiter_done_fn done)
{
	W.store = s;
	W.done = done;
	W.head = NULL;
	W.tail = &W.head;
	W.loop = plat_feed_loop_start(TICK_MS, loop_fn, NULL);
	return W.loop != NULL ? 0 : -1;
}

void
waiters_add(plat_ctx *ctx, struct sync_attempt *a)
{
	struct waiter *w = xcalloc(1, sizeof(*w));

	w->ctx = ctx;
	w->a = a;
	pthread_mutex_lock(&W.mu);
	if (W.stopped) {
		pthread_mutex_unlock(&W.mu);
		leave_queue(w);
		finish(w, PLAT_UNAVAILABLE, "sync-srv is shutting down");
		return;
	}
	*W.tail = w;
	W.tail = &w->next;
	W.n++;
	pthread_mutex_unlock(&W.mu);
	/* A release may have come between its attempt and now. */
	waiters_kick();
}

void
waiters_kick(void)
{
	atomic_store(&W.kicked, true);
	if (W.loop != NULL)
		plat_feed_loop_kick(W.loop);
}

void
waiters_stop(void)
{
	struct waiter *w, *next;

	plat_feed_loop_stop(W.loop);
	W.loop = NULL;
	pthread_mutex_lock(&W.mu);
	W.stopped = true;
	w = W.head;
	W.head = NULL;
	W.tail = &W.head;
	W.n = 0;
	pthread_mutex_unlock(&W.mu);
	for (; w != NULL; w = next) {
		next = w->next;
		leave_queue(w);
		finish(w, PLAT_UNAVAILABLE, "sync-srv is shutting down");
	}
}

size_t
waiters_count(void)
{
	size_t n;

	pthread_mutex_lock(&W.mu);
	n = W.n;
	pthread_mutex_unlock(&W.mu);
	return n;
}
