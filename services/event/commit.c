/*
 * commit: the committer thread (see commit.h).
 *
 * A job is one Publish or PublishBatch call. Jobs queue in arrival order;
 * a transaction takes whole jobs, so a batch's events stay together and
 * in order.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "commit.h"
#include "feed.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/xalloc.h"

#define COMMIT_MAX_EVENTS 2000
#define COMMIT_MAX_BYTES (32u << 20)
#define COMMIT_TIMEOUT_MS 10000

typedef Platform__Event__V1__PublishRequest pub_req;
typedef Platform__Event__V1__PublishResponse pub_resp;

struct job {
	struct job *next;
	plat_ctx *ctx;
	pub_req *const *events;
	size_t n;
	bool batch;
};

static struct {
	struct store *store;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, **tail;
	int stop;
	atomic_uint_fast64_t batches, events;
} C = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.tail = &C.head,
};

void
commit_enqueue(plat_ctx *ctx, pub_req *const *events, size_t n, bool batch)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->ctx = ctx;
	j->events = events;
	j->n = n;
	j->batch = batch;
	pthread_mutex_lock(&C.mu);
	*C.tail = j;
	C.tail = &j->next;
	pthread_cond_signal(&C.cv);
	pthread_mutex_unlock(&C.mu);
}

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

/* Takes whole jobs off the queue up to the caps (at least one); mu held. */
static struct job *
take_jobs(size_t *nevents)
{
	struct job *first = C.head, *j = first, *last = NULL;
	size_t bytes = 0;

	*nevents = 0;
	while (j != NULL && (last == NULL ||
	    (*nevents + j->n <= COMMIT_MAX_EVENTS &&
	    bytes < COMMIT_MAX_BYTES))) {
		*nevents += j->n;
		for (size_t i = 0; i < j->n; i++)
			bytes += req_bytes(j->events[i]);
		last = j;
		j = j->next;
	}
	C.head = j;
	if (j == NULL)
		C.tail = &C.head;
	last->next = NULL;
	return first;
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

static void
answer(struct job *j, const struct ev_receipt *out)
{
	Platform__Event__V1__PublishBatchResponse *br;
	pub_resp **res = plat_alloc(j->ctx, j->n * sizeof(*res));

	for (size_t i = 0; i < j->n; i++) {
		res[i] = plat_new(j->ctx, pub_resp,
		    &platform__event__v1__publish_response__descriptor);
		res[i]->id = plat_strdup(j->ctx, out[i].id);
		res[i]->offset = out[i].offset;
		res[i]->sequence = out[i].seq;
		res[i]->time_unix_ms = out[i].time_ms;
		res[i]->duplicate = out[i].duplicate;
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

/* Stores the jobs' events in one transaction and answers every job. */
static void
commit_jobs(struct job *jobs, size_t n)
{
	struct ev_input *in = xcalloc(n, sizeof(*in));
	struct ev_receipt *out = xcalloc(n, sizeof(*out));
	struct ev_row **rows = xcalloc(n, sizeof(*rows));
	enum plat_code code;
	size_t k = 0, nrows = 0;
	struct job *j, *next;
	char err[256];

	for (j = jobs; j != NULL; j = j->next)
		for (size_t i = 0; i < j->n; i++)
			input_of(&in[k++], j->events[i]);
	code = store_publish(C.store, in, n, COMMIT_TIMEOUT_MS, out, err,
	    sizeof(err));
	if (code == PLAT_UNAVAILABLE || code == PLAT_DEADLINE_EXCEEDED)
		/* Maybe committed: a retry with the idempotency key is
		 * safe. */
		snprintf(err, sizeof(err), "%s", "database unavailable; the "
		    "events may have been stored: retry with an "
		    "idempotency_key to be sure");
	if (code == PLAT_OK) {
		atomic_fetch_add(&C.batches, 1);
		atomic_fetch_add(&C.events, n);
		/* The rows are made before the answers, which free the
		 * requests they are copied from. */
		for (k = 0; k < n; k++)
			if (!out[k].duplicate)
				rows[nrows++] = ev_row_new(out[k].seq,
				    out[k].offset, out[k].time_ms, out[k].id,
				    in[k].topic, in[k].type, in[k].source,
				    in[k].idem, in[k].data, in[k].ndata,
				    in[k].keys, in[k].values, in[k].nmeta);
	}
	for (k = 0; k < n; k++)
		free((void *)in[k].keys);
	feed_committed(rows, nrows);
	for (j = jobs, k = 0; j != NULL; j = next) {
		next = j->next;
		if (code == PLAT_OK)
			answer(j, out + k);
		else
			plat_reply(j->ctx, plat_error(j->ctx, code, "%s", err),
			    NULL);
		k += j->n;
		free(j);
	}
	free(rows);
	free(in);
	free(out);
}

static void *
commit_main(void *arg)
{
	struct job *jobs;
	size_t n;

	(void)arg;
	pthread_mutex_lock(&C.mu);
	for (;;) {
		while (C.head == NULL && !C.stop)
			pthread_cond_wait(&C.cv, &C.mu);
		if (C.head == NULL)
			break;
		jobs = take_jobs(&n);
		pthread_mutex_unlock(&C.mu);
		commit_jobs(jobs, n);
		pthread_mutex_lock(&C.mu);
	}
	pthread_mutex_unlock(&C.mu);
	return NULL;
}

int
commit_start(struct store *store)
{
	C.store = store;
	C.stop = 0;
	plat_cond_init(&C.cv);
	if (pthread_create(&C.thread, NULL, commit_main, NULL) != 0)
		return -1;
	C.running = true;
	return 0;
}

void
commit_stop(void)
{
	if (!C.running)
		return;
	pthread_mutex_lock(&C.mu);
	C.stop = 1;
	pthread_cond_signal(&C.cv);
	pthread_mutex_unlock(&C.mu);
	pthread_join(C.thread, NULL);
	C.running = false;
	pthread_cond_destroy(&C.cv);
}

double
commit_batches(void)
{
	return (double)atomic_load(&C.batches);
}

double
commit_events(void)
{
	return (double)atomic_load(&C.events);
}
