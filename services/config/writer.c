/*
 * writer: group commit for config-srv's writes (see writer.h).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/log.h"
#include "platform/xalloc.h"
#include "writer.h"

/* A batch's limits: the items of one transaction, and the documents'
 * bytes (each at most 256 KiB) so one batch stays a few MiB. */
#define BATCH_MAX_ITEMS 1024
#define BATCH_MAX_BYTES (8u << 20)
/* A batch waits for its slowest caller's deadline, up to this. */
#define BATCH_TIMEOUT_MAX_MS 30000

/* A committed batch on its way to its callers. */
struct answers {
	struct answers *next;
	size_t n;
	struct write_job **jobs;
	struct store_batch_item *items;
};

static struct {
	struct store *store;
	void (*committed)(struct cfg_row *const *rows, size_t n);
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct write_job *head, *tail;
	int64_t pending;
	bool stopping;

	/* The answerer: replies to a batch's callers while the writer
	 * already commits the next one. */
	pthread_t answerer;
	pthread_mutex_t amu;
	pthread_cond_t acv;
	struct answers *ahead, **atail;
	bool adone;
} W = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.amu = PTHREAD_MUTEX_INITIALIZER,
};

/* Takes the jobs at the head of the queue, up to the batch's limits. */
static size_t
take_batch(struct write_job **jobs)
{
	size_t n = 0, bytes = 0;

	while (W.head != NULL && n < BATCH_MAX_ITEMS &&
	    (n == 0 || bytes + W.head->bytes <= BATCH_MAX_BYTES)) {
		bytes += W.head->bytes;
		jobs[n++] = W.head;
		W.head = W.head->next;
	}
	if (W.head == NULL)
		W.tail = NULL;
	return n;
}

static void
answers_push(struct answers *a)
{
	pthread_mutex_lock(&W.amu);
	*W.atail = a;
	W.atail = &a->next;
	pthread_cond_signal(&W.acv);
	pthread_mutex_unlock(&W.amu);
}

static void *
answerer_main(void *arg)
{
	struct answers *a;

	(void)arg;
	pthread_mutex_lock(&W.amu);
	for (;;) {
		while (W.ahead == NULL && !W.adone)
			pthread_cond_wait(&W.acv, &W.amu);
		if ((a = W.ahead) == NULL)
			break;
		if ((W.ahead = a->next) == NULL)
			W.atail = &W.ahead;
		pthread_mutex_unlock(&W.amu);
		for (size_t i = 0; i < a->n; i++) {
			a->jobs[i]->done(a->jobs[i], a->items[i].code,
			    a->items[i].err, a->items[i].row);
			cfg_row_unref(a->items[i].row);
		}
		free(a->jobs);
		free(a->items);
		free(a);
		pthread_mutex_lock(&W.amu);
	}
	pthread_mutex_unlock(&W.amu);
	return NULL;
}

/* Commits the jobs taken (jobs, n: the writer's array, reused), then
 * hands the batch to the answerer. */
static void
write_batch(struct write_job **jobs, size_t n, struct cfg_row **rows)
{
	struct answers *a = xcalloc(1, sizeof(*a));
	int64_t now = plat_now_ms(), latest = 0;
	size_t nrows = 0;
	char err[256];

	a->jobs = xcalloc(n, sizeof(*a->jobs));
	a->items = xcalloc(n, sizeof(*a->items));
	/* A caller already gone past its deadline is not written for. */
	for (size_t i = 0; i < n; i++) {
		if (jobs[i]->deadline_ms <= now) {
			jobs[i]->done(jobs[i], PLAT_DEADLINE_EXCEEDED,
			    "deadline exceeded before the write started",
			    NULL);
			continue;
		}
		if (jobs[i]->deadline_ms > latest)
			latest = jobs[i]->deadline_ms;
		a->jobs[a->n] = jobs[i];
		a->items[a->n].w = &jobs[i]->w;
		a->n++;
	}
	if (a->n > 0) {
		latest -= now;
		(void)store_write_batch(W.store, a->items, a->n,
		    latest > BATCH_TIMEOUT_MAX_MS ? BATCH_TIMEOUT_MAX_MS :
		    latest, err, sizeof(err));
		for (size_t i = 0; i < a->n; i++)
			if (a->items[i].code == PLAT_OK)
				rows[nrows++] = a->items[i].row;
		/* The cache and the watchers learn of the batch before any
		 * caller is answered. */
		if (nrows > 0)
			W.committed(rows, nrows);
	}
	answers_push(a);
}

static void *
writer_main(void *arg)
{
	struct write_job **jobs = xcalloc(BATCH_MAX_ITEMS, sizeof(*jobs));
	struct cfg_row **rows = xcalloc(BATCH_MAX_ITEMS, sizeof(*rows));
	size_t n;

	(void)arg;
	pthread_mutex_lock(&W.mu);
	for (;;) {
		while (W.head == NULL && !W.stopping)
			pthread_cond_wait(&W.cv, &W.mu);
		if (W.head == NULL)
			break;
		n = take_batch(jobs);
		pthread_mutex_unlock(&W.mu);
		write_batch(jobs, n, rows);
		pthread_mutex_lock(&W.mu);
		W.pending -= (int64_t)n;
	}
	pthread_mutex_unlock(&W.mu);
	free(rows);
	free(jobs);
	return NULL;
}

/* Answers what is queued, then ends the answerer. */
static void
answerer_stop(void)
{
	pthread_mutex_lock(&W.amu);
	W.adone = true;
	pthread_cond_signal(&W.acv);
	pthread_mutex_unlock(&W.amu);
	pthread_join(W.answerer, NULL);
}

int
writer_start(struct store *s,
    void (*committed)(struct cfg_row *const *rows, size_t n))
{
	W.store = s;
	W.committed = committed;
	W.head = W.tail = NULL;
	W.pending = 0;
	W.stopping = false;
	W.ahead = NULL;
	W.atail = &W.ahead;
	W.adone = false;
	plat_cond_init(&W.cv);
	plat_cond_init(&W.acv);
	if (pthread_create(&W.answerer, NULL, answerer_main, NULL) != 0) {
		log_error("config: cannot start the answerer thread");
		goto fail;
	}
	if (pthread_create(&W.thread, NULL, writer_main, NULL) != 0) {
		log_error("config: cannot start the writer thread");
		answerer_stop();
		goto fail;
	}
	W.running = true;
	return 0;
fail:
	pthread_cond_destroy(&W.cv);
	pthread_cond_destroy(&W.acv);
	return -1;
}

void
writer_stop(void)
{
	if (!W.running)
		return;
	pthread_mutex_lock(&W.mu);
	W.stopping = true;
	pthread_cond_signal(&W.cv);
	pthread_mutex_unlock(&W.mu);
	pthread_join(W.thread, NULL);
	answerer_stop();        /* after the writer's last batch */
	pthread_cond_destroy(&W.cv);
	pthread_cond_destroy(&W.acv);
	W.running = false;
}

void
writer_submit(struct write_job *job)
{
	job->next = NULL;
	job->bytes = job->w.json != NULL ? strlen(job->w.json) : 0;
	pthread_mutex_lock(&W.mu);
	if (W.tail != NULL)
		W.tail->next = job;
	else
		W.head = job;
	W.tail = job;
	W.pending++;
	pthread_cond_signal(&W.cv);
	pthread_mutex_unlock(&W.mu);
}

int64_t
writer_pending(void)
{
	int64_t n;

	pthread_mutex_lock(&W.mu);
	n = W.pending;
	pthread_mutex_unlock(&W.mu);
	return n;
}
