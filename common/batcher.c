/*
 * batcher: group commit (see platform/batcher.h).
 *
 * The writer takes calls off the queue into a batch, builds and applies
 * it, and pushes the batch onto the answerer's list; the answerer answers
 * its calls in order and releases it. A call past its deadline when its
 * batch is taken goes to the answerer in a batch of its own making, never
 * built, so answers keep submission order.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/batcher.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/xalloc.h"

/* A batch on its way to its callers. */
struct answers {
	struct answers *next;
	void *batch;                    /* build's; NULL: none built */
	size_t n;
	struct batcher_call **calls;
};

struct batcher {
	const char *name;
	const struct batcher_ops *ops;
	void *arg;
	struct batcher_limits lim;

	/* The queue and the writer. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct batcher_call *head, **tail;
	int64_t pending;
	bool stopping;
	pthread_t writer;
	bool writer_running;

	/* The answerer's list. */
	pthread_mutex_t amu;
	pthread_cond_t acv;
	struct answers *ahead, **atail;
	bool adone;
	pthread_t answerer;
	bool answerer_running;

	atomic_uint_fast64_t batches, items;
};

static size_t
call_items(const struct batcher_call *c)
{
	return c->items > 0 ? c->items : 1;
}

/* Takes the calls at the head of the queue up to the limits, at least
 * one; mu held. */
static size_t
take_batch(struct batcher *b, struct batcher_call **calls)
{
	size_t n = 0, items = 0, bytes = 0;

	while (b->head != NULL && (n == 0 ||
	    (items + call_items(b->head) <= b->lim.max_items &&
	    bytes + b->head->bytes <= b->lim.max_bytes))) {
		items += call_items(b->head);
		bytes += b->head->bytes;
		calls[n++] = b->head;
		b->head = b->head->next;
	}
	if (b->head == NULL)
		b->tail = &b->head;
	return n;
}

/* Hands calls to the answerer; from then on they no longer count as
 * pending (before any of them can be answered). */
static void
answers_push(struct batcher *b, void *batch, struct batcher_call **calls,
    size_t n)
{
	struct answers *a = xcalloc(1, sizeof(*a));

	pthread_mutex_lock(&b->mu);
	b->pending -= (int64_t)n;
	pthread_mutex_unlock(&b->mu);

	a->batch = batch;
	a->n = n;
	a->calls = xcalloc(n, sizeof(*a->calls));
	memcpy(a->calls, calls, n * sizeof(*calls));
	pthread_mutex_lock(&b->amu);
	*b->atail = a;
	b->atail = &a->next;
	pthread_cond_signal(&b->acv);
	pthread_mutex_unlock(&b->amu);
}

static void *
answerer_main(void *arg)
{
	struct batcher *b = arg;
	struct answers *a;

	pthread_mutex_lock(&b->amu);
	for (;;) {
		while (b->ahead == NULL && !b->adone)
			pthread_cond_wait(&b->acv, &b->amu);
		if ((a = b->ahead) == NULL)
			break;
		if ((b->ahead = a->next) == NULL)
			b->atail = &b->ahead;
		pthread_mutex_unlock(&b->amu);
		for (size_t i = 0; i < a->n; i++)
			b->ops->answer(b->arg, a->batch, a->calls[i]);
		if (a->batch != NULL && b->ops->release != NULL)
			b->ops->release(b->arg, a->batch);
		free(a->calls);
		free(a);
		pthread_mutex_lock(&b->amu);
	}
	pthread_mutex_unlock(&b->amu);
	return NULL;
}

static void
call_fail(struct batcher_call *c, enum plat_code code, const char *err)
{
	c->code = code;
	snprintf(c->err, sizeof(c->err), "%s", err);
}

/*
 * Builds, applies and hands on the calls taken (calls, n: the writer's
 * array, reused; live: as many more for the calls within their
 * deadline).
 */
static void
write_batch(struct batcher *b, struct batcher_call **calls, size_t n,
    struct batcher_call **live)
{
	int64_t now = plat_now_ms(), latest = 0, timeout;
	size_t nlive = 0, nexpired = 0, items = 0;
	enum plat_code code;
	char err[BATCHER_ERR_MAX];
	void *batch;

	/* A caller already gone past its deadline is not written for; it
	 * is answered first, its call being over anyway. */
	for (size_t i = 0; i < n; i++) {
		struct batcher_call *c = calls[i];

		c->code = PLAT_OK;
		c->err[0] = '\0';
		if (c->deadline_ms <= now) {
			call_fail(c, PLAT_DEADLINE_EXCEEDED,
			    "deadline exceeded before the write started");
			calls[nexpired++] = c;
			continue;
		}
		if (c->deadline_ms > latest)
			latest = c->deadline_ms;
		items += call_items(c);
		live[nlive++] = c;
	}
	if (nexpired > 0)
		answers_push(b, NULL, calls, nexpired);
	if (nlive == 0)
		return;
	timeout = latest - now;
	if (timeout > b->lim.max_timeout_ms)
		timeout = b->lim.max_timeout_ms;
	batch = b->ops->build(b->arg, live, nlive);
	err[0] = '\0';
	code = b->ops->apply(b->arg, batch, timeout, err, sizeof(err));
	if (code == PLAT_OK) {
		atomic_fetch_add(&b->batches, 1);
		atomic_fetch_add(&b->items, items);
	} else {
		for (size_t i = 0; i < nlive; i++)
			call_fail(live[i], code, err);
	}
	answers_push(b, batch, live, nlive);
}

static void *
writer_main(void *arg)
{
	struct batcher *b = arg;
	size_t cap = b->lim.max_items > 0 ? b->lim.max_items : 1, n;
	struct batcher_call **calls = xcalloc(cap, sizeof(*calls));
	struct batcher_call **live = xcalloc(cap, sizeof(*live));

	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (b->head == NULL && !b->stopping)
			pthread_cond_wait(&b->cv, &b->mu);
		if (b->head == NULL)
			break;
		n = take_batch(b, calls);
		pthread_mutex_unlock(&b->mu);
		write_batch(b, calls, n, live);
		pthread_mutex_lock(&b->mu);
	}
	pthread_mutex_unlock(&b->mu);
	free(live);
	free(calls);
	return NULL;
}

/* Answers what is on the list, then ends the answerer. */
static void
answerer_stop(struct batcher *b)
{
	if (!b->answerer_running)
		return;
	pthread_mutex_lock(&b->amu);
	b->adone = true;
	pthread_cond_signal(&b->acv);
	pthread_mutex_unlock(&b->amu);
	pthread_join(b->answerer, NULL);
	b->answerer_running = false;
}

struct batcher *
batcher_new(const char *name, const struct batcher_ops *ops, void *arg,
    const struct batcher_limits *limits)
{
	struct batcher *b = xcalloc(1, sizeof(*b));

	b->name = name;
	b->ops = ops;
	b->arg = arg;
	b->lim = *limits;
	/* take_batch fills at most max_items calls (each counts 1 or
	 * more), the writer's arrays hold that many. */
	if (b->lim.max_items == 0)
		b->lim.max_items = 1;
	b->tail = &b->head;
	b->atail = &b->ahead;
	pthread_mutex_init(&b->mu, NULL);
	pthread_mutex_init(&b->amu, NULL);
	plat_cond_init(&b->cv);
	plat_cond_init(&b->acv);
	atomic_init(&b->batches, 0);
	atomic_init(&b->items, 0);
	if (pthread_create(&b->answerer, NULL, answerer_main, b) != 0) {
		log_error("batcher: cannot start the answerer thread",
		    "batcher", name);
		goto fail;
	}
	b->answerer_running = true;
	if (pthread_create(&b->writer, NULL, writer_main, b) != 0) {
		log_error("batcher: cannot start the writer thread",
		    "batcher", name);
		goto fail;
	}
	b->writer_running = true;
	return b;
fail:
	batcher_free(b);
	return NULL;
}

void
batcher_stop(struct batcher *b)
{
	if (b->writer_running) {
		pthread_mutex_lock(&b->mu);
		b->stopping = true;
		pthread_cond_signal(&b->cv);
		pthread_mutex_unlock(&b->mu);
		pthread_join(b->writer, NULL);
		b->writer_running = false;
	}
	answerer_stop(b);       /* after the writer's last batch */
}

void
batcher_free(struct batcher *b)
{
	if (b == NULL)
		return;
	batcher_stop(b);
	pthread_cond_destroy(&b->cv);
	pthread_cond_destroy(&b->acv);
	pthread_mutex_destroy(&b->mu);
	pthread_mutex_destroy(&b->amu);
	free(b);
}

void
batcher_submit(struct batcher *b, struct batcher_call *call)
{
	call->next = NULL;
	pthread_mutex_lock(&b->mu);
	*b->tail = call;
	b->tail = &call->next;
	b->pending++;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

int64_t
batcher_pending(struct batcher *b)
{
	int64_t n;

	pthread_mutex_lock(&b->mu);
	n = b->pending;
	pthread_mutex_unlock(&b->mu);
	return n;
}

uint64_t
batcher_batches(struct batcher *b)
{
	return atomic_load(&b->batches);
}

uint64_t
batcher_items(struct batcher *b)
{
	return atomic_load(&b->items);
}

int64_t
batcher_deadline_of(plat_ctx *ctx)
{
	int64_t left = plat_ctx_deadline_left_ms(ctx);

	return left == INT64_MAX ? INT64_MAX : plat_now_ms() + left;
}
