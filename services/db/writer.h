/*
 * writer: group commit of db-srv's single-document writes (Create,
 * Update, Delete) through the platform's batcher (platform/batcher.h):
 * every call waiting while the previous transaction committed shares the
 * next one, each write still checked and answered on its own. A
 * BatchWrite, all or nothing, runs as its own transaction instead.
 */
#ifndef DB_WRITER_H
#define DB_WRITER_H

#include <stdint.h>

#include "platform/batcher.h"
#include "platform/server.h"
#include "store.h"

/* One call's write, in its arena. done answers it (plat_reply) once the
 * outcome is known (in w.code / w.err, or call.code for the batch). */
struct db_job {
	struct batcher_call call;
	struct db_write w;
	plat_ctx *ctx;
	void (*done)(struct db_job *job, enum plat_code code,
	    const char *err);
};

/* One per backend, handing its commits to the backend's feed. */
struct db_writer;
struct db_feed;

struct db_writer *writer_start(struct store *s, struct db_feed *feed);
void writer_stop(struct db_writer *wr);     /* NULL is fine */
/* After plat_defer(job->ctx). */
void writer_submit(struct db_writer *wr, struct db_job *job);
uint64_t writer_batches(struct db_writer *wr);

#endif
