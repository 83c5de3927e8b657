/*
 * commit: event-srv's callbacks for the batcher (see commit.h).
 *
 * A job is one Publish or PublishBatch call, counting its events against
 * the batch's limit: a transaction takes whole jobs, so a batch's events
 * stay together and in order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "feed.h"
#include "platform/batcher.h"
#include "platform/log.h"
#include "platform/xalloc.h"

#define COMMIT_MAX_EVENTS 2000
#define COMMIT_MAX_BYTES (32u << 20)
#define COMMIT_TIMEOUT_MS 10000

typedef Platform__Event__V1__PublishRequest pub_req;
typedef Platform__Event__V1__PublishResponse pub_resp;

struct job {
	struct batcher_call call;
	plat_ctx *ctx;
	pub_req *const *events;
	size_t n;
	bool batch;
	const struct ev_receipt *out;   /* its receipts, once committed */
};

/* One transaction's input and receipts, every job's events in order. */
struct commit_batch {
	size_t n;
	struct ev_input *in;
	struct ev_receipt *out;
	struct job **jobs;
	size_t njobs;
};

static struct {
	struct pg_store *store;
	struct batcher *batcher;
} C;

static size_t
req_bytes(const pub_req *r)
{
	size_t n = r->data.len + strlen(r->topic) + strlen(r->type) +
	    strlen(r->source) + 64;

	for (size_t i = 0; i < r->n_metadata; i++)
		n += strlen(r->metadata[i]->key) +
		    strlen(r->metadata[i]->value) + 16;
	return n;
}

void
commit_enqueue(plat_ctx *ctx, pub_req *const *events, size_t n, bool batch)
{
	struct job *j = plat_alloc(ctx, sizeof(*j));

	memset(j, 0, sizeof(*j));
	j->ctx = ctx;
	j->events = events;
	j->n = n;
	j->batch = batch;
	/* No deadline: a publish is stored once queued, as before. */
	j->call.deadline_ms = INT64_MAX;
	j->call.items = n;
	for (size_t i = 0; i < n; i++)
		j->call.bytes += req_bytes(events[i]);
	batcher_submit(C.batcher, &j->call);
}

static void
input_of(struct ev_input *in, const pub_req *r)
{
	const char **kv = xcalloc(2 * r->n_metadata, sizeof(*kv));

	for (size_t i = 0; i < r->n_metadata; i++) {
		kv[i] = r->metadata[i]->key;
		kv[r->n_metadata + i] = r->metadata[i]->value;
	}
	in->topic = r->topic;
	in->type = r->type;
	in->source = r->source;
	in->idem = r->idempotency_key;
	in->data = r->data.data;
	in->ndata = r->data.len;
	in->keys = kv;
	in->values = kv + r->n_metadata;
	in->nmeta = r->n_metadata;
}

static void *
commit_build(void *arg, struct batcher_call *const *calls, size_t ncalls)
{
	struct commit_batch *b = xcalloc(1, sizeof(*b));
	size_t k = 0;

	(void)arg;
	b->jobs = xcalloc(ncalls, sizeof(*b->jobs));
	b->njobs = ncalls;
	for (size_t i = 0; i < ncalls; i++) {
		b->jobs[i] = (struct job *)calls[i];
		b->n += b->jobs[i]->n;
	}
	b->in = xcalloc(b->n, sizeof(*b->in));
	b->out = xcalloc(b->n, sizeof(*b->out));
	for (size_t i = 0; i < ncalls; i++) {
		struct job *j = b->jobs[i];

		j->out = b->out + k;
		for (size_t e = 0; e < j->n; e++)
			input_of(&b->in[k++], j->events[e]);
	}
	return b;
}

static enum plat_code
commit_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct commit_batch *b = batch;
	struct ev_row **rows = xcalloc(b->n, sizeof(*rows));
	const struct ev_input *in = b->in;
	const struct ev_receipt *out = b->out;
	enum plat_code code;
	size_t nrows = 0;

	(void)arg;
	code = store_publish(C.store, in, b->n, timeout_ms, b->out, err,
	    errlen);
	if (code == PLAT_UNAVAILABLE || code == PLAT_DEADLINE_EXCEEDED)
		/* Maybe committed: a retry with the idempotency key is
		 * safe. */
		snprintf(err, errlen, "%s", "database unavailable; the "
		    "events may have been stored: retry with an "
		    "idempotency_key to be sure");
	if (code == PLAT_OK)
		/* The rows are made before the answers, which free the
		 * requests they are copied from. */
		for (size_t k = 0; k < b->n; k++)
			if (!out[k].duplicate)
				rows[nrows++] = ev_row_new(out[k].seq,
				    out[k].offset, out[k].time_ms, out[k].id,
				    in[k].topic, in[k].type, in[k].source,
				    in[k].idem, in[k].data, in[k].ndata,
				    in[k].keys, in[k].values, in[k].nmeta);
	feed_committed(rows, nrows);
	free(rows);
	return code;
}

static void
commit_answer(void *arg, void *batch, struct batcher_call *call)
{
	struct job *j = (struct job *)call;
	Platform__Event__V1__PublishBatchResponse *br;
	pub_resp **res;

	(void)arg;
	(void)batch;
	if (call->code != PLAT_OK) {
		plat_reply(j->ctx, plat_error(j->ctx, call->code, "%s",
		    call->err), NULL);
		return;
	}
	res = plat_alloc(j->ctx, j->n * sizeof(*res));
	for (size_t i = 0; i < j->n; i++) {
		res[i] = plat_new(j->ctx, pub_resp,
		    &platform__event__v1__publish_response__descriptor);
		res[i]->id = plat_strdup(j->ctx, j->out[i].id);
		res[i]->offset = j->out[i].offset;
		res[i]->sequence = j->out[i].seq;
		res[i]->time_unix_ms = j->out[i].time_ms;
		res[i]->duplicate = j->out[i].duplicate;
	}
	if (!j->batch) {
		plat_reply(j->ctx, PLAT_OK, &res[0]->base);
		return;
	}
	br = plat_new(j->ctx, Platform__Event__V1__PublishBatchResponse,
	    &platform__event__v1__publish_batch_response__descriptor);
	br->results = res;
	br->n_results = j->n;
	plat_reply(j->ctx, PLAT_OK, &br->base);
}

static void
commit_release(void *arg, void *batch)
{
	struct commit_batch *b = batch;

	(void)arg;
	for (size_t k = 0; k < b->n; k++)
		free((void *)b->in[k].keys);
	free(b->in);
	free(b->out);
	free(b->jobs);
	free(b);
}

static const struct batcher_ops commit_ops = {
	.build = commit_build,
	.apply = commit_apply,
	.answer = commit_answer,
	.release = commit_release,
};

int
commit_start(struct pg_store *store)
{
	static const struct batcher_limits limits = {
		.max_items = COMMIT_MAX_EVENTS,
		.max_bytes = COMMIT_MAX_BYTES,
		.max_timeout_ms = COMMIT_TIMEOUT_MS,
	};

	C.store = store;
	C.batcher = batcher_new("event", &commit_ops, NULL, &limits);
	return C.batcher != NULL ? 0 : -1;
}

void
commit_stop(void)
{
	batcher_free(C.batcher);
	C.batcher = NULL;
}

double
commit_batches(void)
{
	return C.batcher != NULL ? (double)batcher_batches(C.batcher) : 0;
}

double
commit_events(void)
{
	return C.batcher != NULL ? (double)batcher_items(C.batcher) : 0;
}
