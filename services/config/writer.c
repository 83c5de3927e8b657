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
} W = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
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
write_batch(struct write_job **jobs, size_t n,
    struct store_batch_item *items, struct cfg_row **rows)
{
	int64_t now = plat_now_ms(), latest = 0;
	size_t live = 0, nrows = 0;
	char err[256];

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
		jobs[live] = jobs[i];
		memset(&items[live], 0, sizeof(items[live]));
		items[live].w = &jobs[live]->w;
		live++;
	}
	if (live == 0)
		return;
	latest -= now;
	(void)store_write_batch(W.store, items, live,
	    latest > BATCH_TIMEOUT_MAX_MS ? BATCH_TIMEOUT_MAX_MS : latest,
	    err, sizeof(err));
	for (size_t i = 0; i < live; i++)
		if (items[i].code == PLAT_OK)
			rows[nrows++] = items[i].row;
	if (nrows > 0)
		W.committed(rows, nrows);
	for (size_t i = 0; i < live; i++) {
		jobs[i]->done(jobs[i], items[i].code, items[i].err,
		    items[i].row);
		cfg_row_unref(items[i].row);
	}
}

static void *
writer_main(void *arg)
{
	struct write_job **jobs = xcalloc(BATCH_MAX_ITEMS, sizeof(*jobs));
	struct store_batch_item *items = xcalloc(BATCH_MAX_ITEMS,
	    sizeof(*items));
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
		write_batch(jobs, n, items, rows);
		pthread_mutex_lock(&W.mu);
		W.pending -= (int64_t)n;
	}
	pthread_mutex_unlock(&W.mu);
	free(rows);
	free(items);
	free(jobs);
	return NULL;
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
	plat_cond_init(&W.cv);
	if (pthread_create(&W.thread, NULL, writer_main, NULL) != 0) {
		log_error("config: cannot start the writer thread");
		pthread_cond_destroy(&W.cv);
		return -1;
	}
	W.running = true;
	return 0;
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
	pthread_cond_destroy(&W.cv);
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
