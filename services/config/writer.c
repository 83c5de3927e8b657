/*
 * writer: config-srv's callbacks for the batcher (see writer.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/log.h"
#include "platform/xalloc.h"
#include "writer.h"

/* A batch's limits: the writes of one transaction, and the documents'
 * bytes (each at most 256 KiB) so one batch stays a few MiB. */
#define BATCH_MAX_ITEMS 1024
#define BATCH_MAX_BYTES (8u << 20)
/* A batch waits for its slowest caller's deadline, up to this. */
#define BATCH_TIMEOUT_MAX_MS 30000

static struct {
	struct pg_store *store;
	void (*committed)(struct cfg_row *const *rows, size_t n);
	struct batcher *batcher;
} W;

/* One batch: the store's items, in the jobs' order. */
struct write_batch {
	size_t n;
	struct write_job **jobs;
	struct store_batch_item *items;
	struct cfg_row **rows;          /* the committed ones, for the feed */
};

static void *
writer_build(void *arg, struct batcher_call *const *calls, size_t n)
{
	struct write_batch *b = xcalloc(1, sizeof(*b));

	(void)arg;
	b->n = n;
	b->jobs = xcalloc(n, sizeof(*b->jobs));
	b->items = xcalloc(n, sizeof(*b->items));
	b->rows = xcalloc(n, sizeof(*b->rows));
	for (size_t i = 0; i < n; i++) {
		b->jobs[i] = (struct write_job *)calls[i];
		b->items[i].w = &b->jobs[i]->w;
	}
	return b;
}

static enum plat_code
writer_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct write_batch *b = batch;
	enum plat_code code;
	size_t nrows = 0;

	(void)arg;
	code = store_write_batch(W.store, b->items, b->n, timeout_ms, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < b->n; i++) {
		struct write_job *j = b->jobs[i];

		j->call.code = b->items[i].code;
		if (j->call.code != PLAT_OK) {
			snprintf(j->call.err, sizeof(j->call.err), "%s",
			    b->items[i].err);
			continue;
		}
		j->row = b->items[i].row;       /* the job's reference now */
		b->items[i].row = NULL;
		b->rows[nrows++] = j->row;
	}
	/* The cache and the watchers learn of the batch before any caller
	 * is answered. */
	if (nrows > 0)
		W.committed(b->rows, nrows);
	return PLAT_OK;
}

static void
writer_answer(void *arg, void *batch, struct batcher_call *call)
{
	struct write_job *j = (struct write_job *)call;
	struct cfg_row *row = j->row;   /* done may free the job */

	(void)arg;
	(void)batch;
	j->row = NULL;
	j->done(j, call->code, call->err, call->code == PLAT_OK ? row : NULL);
	cfg_row_unref(row);
}

static void
writer_release(void *arg, void *batch)
{
	struct write_batch *b = batch;

	(void)arg;
	for (size_t i = 0; i < b->n; i++)
		cfg_row_unref(b->items[i].row);
	free(b->rows);
	free(b->items);
	free(b->jobs);
	free(b);
}

static const struct batcher_ops writer_ops = {
	.build = writer_build,
	.apply = writer_apply,
	.answer = writer_answer,
	.release = writer_release,
};

int
writer_start(struct pg_store *s,
    void (*committed)(struct cfg_row *const *rows, size_t n))
{
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};

	W.store = s;
	W.committed = committed;
	W.batcher = batcher_new("config", &writer_ops, NULL, &limits);
	return W.batcher != NULL ? 0 : -1;
}

void
writer_stop(void)
{
	batcher_free(W.batcher);
	W.batcher = NULL;
}

void
writer_submit(struct write_job *job)
{
	job->call.items = 1;
	job->call.bytes = job->w.json != NULL ? strlen(job->w.json) : 0;
	job->row = NULL;
	batcher_submit(W.batcher, &job->call);
}

int64_t
writer_pending(void)
{
	return W.batcher != NULL ? batcher_pending(W.batcher) : 0;
}
