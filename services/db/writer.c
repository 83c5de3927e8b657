/*
 * writer: db-srv's callbacks for the batcher (see writer.h).
 */
#include <stdlib.h>
#include <string.h>

#include "feed.h"
#include "platform/xalloc.h"
#include "writer.h"

#define BATCH_MAX_ITEMS 512
#define BATCH_MAX_BYTES (8u << 20)
#define BATCH_TIMEOUT_MAX_MS 30000

struct db_writer {
	struct store *store;
	struct db_feed *feed;
	struct batcher *batcher;
};

struct write_batch {
	size_t n;
	struct db_job **jobs;
	struct db_write *w;     /* copies of the jobs' writes, in order */
};

static void *
writer_build(void *arg, struct batcher_call *const *calls, size_t n)
{
	struct write_batch *b = xcalloc(1, sizeof(*b));

	(void)arg;
	b->n = n;
	b->jobs = xcalloc(n, sizeof(*b->jobs));
	b->w = xcalloc(n, sizeof(*b->w));
	for (size_t i = 0; i < n; i++) {
		b->jobs[i] = (struct db_job *)calls[i];
		b->w[i] = b->jobs[i]->w;
	}
	return b;
}

static enum plat_code
writer_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct write_batch *b = batch;
	struct db_writer *wr = arg;
	struct db_row **rows;
	enum plat_code code;
	size_t nrows;

	code = store_write_each(wr->store, b->w, b->n, timeout_ms, &rows,
	    &nrows, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < b->n; i++) {
		struct db_job *j = b->jobs[i];

		j->w.doc = b->w[i].doc;         /* the job's now */
		memset(&b->w[i].doc, 0, sizeof(b->w[i].doc));
		j->w.revision = b->w[i].revision;
		j->call.code = b->w[i].code;
		memcpy(j->call.err, b->w[i].err, sizeof(b->w[i].err));
	}
	/* The watchers learn of the batch before any caller is answered. */
	feed_committed(wr->feed, rows, nrows);
	return PLAT_OK;
}

static void
writer_answer(void *arg, void *batch, struct batcher_call *call)
{
	struct db_job *j = (struct db_job *)call;

	(void)arg;
	(void)batch;
	j->done(j, call->code, call->err);
}

static void
writer_release(void *arg, void *batch)
{
	struct write_batch *b = batch;

	(void)arg;
	for (size_t i = 0; i < b->n; i++)
		db_doc_clear(&b->w[i].doc);
	free(b->w);
	free(b->jobs);
	free(b);
}

static const struct batcher_ops writer_ops = {
	.build = writer_build,
	.apply = writer_apply,
	.answer = writer_answer,
	.release = writer_release,
};

struct db_writer *
writer_start(struct store *s, struct db_feed *feed)
{
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};
	struct db_writer *wr = xcalloc(1, sizeof(*wr));

	wr->store = s;
	wr->feed = feed;
	wr->batcher = batcher_new("db", &writer_ops, wr, &limits);
	if (wr->batcher == NULL) {
		free(wr);
		return NULL;
	}
	return wr;
}

void
writer_stop(struct db_writer *wr)
{
	if (wr == NULL)
		return;
	batcher_free(wr->batcher);
	free(wr);
}

void
writer_submit(struct db_writer *wr, struct db_job *job)
{
	job->call.deadline_ms = batcher_deadline_of(job->ctx);
	job->call.items = 1;
	job->call.bytes = job->w.json != NULL ? strlen(job->w.json) : 0;
	batcher_submit(wr->batcher, &job->call);
}

uint64_t
writer_batches(struct db_writer *wr)
{
	return wr != NULL ? batcher_batches(wr->batcher) : 0;
}
