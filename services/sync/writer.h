/*
 * writer: sync-srv's acquisitions and releases through the group-commit
 * batcher (platform/batcher.h).
 *
 * Lock, Campaign, Unlock and Resign submit a job and return at once
 * (plat_defer); the batcher applies every job queued while the previous
 * batch committed in one transaction (store_apply), so concurrent calls
 * share one commit instead of queueing on the revision row one commit
 * after another, and answers each job once its batch committed, in
 * submission order.
 */
#ifndef SYNC_WRITER_H
#define SYNC_WRITER_H

#include <stdbool.h>

#include "platform/batcher.h"
#include "platform/server.h"
#include "store.h"

struct sync_job {
	struct batcher_call call;       /* its outcome: code, err */
	struct sync_op op;              /* op.a owned by the job's answer */
	plat_ctx *ctx;                  /* deferred */
	bool try_lock;
	ProtobufCMessage *resp;         /* a release's answer */
};

/* answer runs once per job, on the batcher's answerer thread, after its
 * batch committed (or failed: call.code); it frees the job. */
int writer_start(struct pg_store *s, void (*answer)(struct sync_job *job));
/* Answers every queued job, then stops the threads. */
void writer_stop(void);
/* Call plat_defer(job->ctx) first: the answer may come at once. */
void writer_submit(struct sync_job *job);
/* Jobs queued or being written, for a gauge. */
int64_t writer_pending(void);

#endif
