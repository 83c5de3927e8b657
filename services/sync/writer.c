/*
 * writer: sync-srv's callbacks for the batcher (see writer.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "platform/xalloc.h"
#include "writer.h"

/* Lock and Unlock statements are small: a batch is bounded by its
 * calls, and one slow caller's deadline holds it at most this long. */
#define BATCH_MAX_ITEMS 256
#define BATCH_MAX_BYTES (16u << 20)
#define BATCH_TIMEOUT_MAX_MS 10000

static struct {
	struct pg_store *store;
	void (*answer)(struct sync_job *job);
	struct batcher *batcher;
} W;

struct op_batch {
	size_t n;
	struct sync_job **jobs;
	struct sync_op **ops;           /* each job's, for store_apply */
};

static void *
writer_build(void *arg, struct batcher_call *const *calls, size_t n)
{
	struct op_batch *b = xcalloc(1, sizeof(*b));

	(void)arg;
	b->n = n;
	b->jobs = xcalloc(n, sizeof(*b->jobs));
	b->ops = xcalloc(n, sizeof(*b->ops));
	for (size_t i = 0; i < n; i++) {
		b->jobs[i] = (struct sync_job *)calls[i];
		b->ops[i] = &b->jobs[i]->op;
	}
	return b;
}

static enum plat_code
writer_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct op_batch *b = batch;
	enum plat_code code;

	(void)arg;
	code = store_apply(W.store, b->ops, b->n, timeout_ms, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < b->n; i++) {
		struct sync_job *j = b->jobs[i];

		j->call.code = j->op.code;
		if (j->op.code != PLAT_OK)
			snprintf(j->call.err, sizeof(j->call.err), "%s",
			    j->op.err);
	}
	return PLAT_OK;
}

static void
writer_answer(void *arg, void *batch, struct batcher_call *call)
{
	(void)arg;
	(void)batch;
	W.answer((struct sync_job *)call);
}

static void
writer_release(void *arg, void *batch)
{
	struct op_batch *b = batch;

	(void)arg;
	free(b->jobs);
	free(b->ops);
	free(b);
}

static const struct batcher_ops writer_ops = {
	.build = writer_build,
	.apply = writer_apply,
	.answer = writer_answer,
	.release = writer_release,
};

int
writer_start(struct pg_store *s, void (*answer)(struct sync_job *job))
{
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};

	W.store = s;
	W.answer = answer;
	W.batcher = batcher_new("sync", &writer_ops, NULL, &limits);
	return W.batcher != NULL ? 0 : -1;
}

void
writer_stop(void)
{
	batcher_free(W.batcher);
	W.batcher = NULL;
}

void
writer_submit(struct sync_job *job)
{
	job->call.deadline_ms = batcher_deadline_of(job->ctx);
	job->call.items = 1;
	job->call.bytes = job->op.a != NULL ? job->op.a->value.len : 0;
	batcher_submit(W.batcher, &job->call);
}

int64_t
writer_pending(void)
{
	return W.batcher != NULL ? batcher_pending(W.batcher) : 0;
}
