/*
 * writer: config-srv's writes through the group-commit batcher
 * (platform/batcher.h).
 *
 * Handlers submit a write job and return at once (plat_defer); the
 * batcher writes every job queued while the previous batch committed in
 * one transaction (store_write_batch), each write checked against the
 * ones before it, and calls each job's done callback once the batch
 * committed. Jobs commit in submission order.
 */
#ifndef CONFIG_WRITER_H
#define CONFIG_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "platform/batcher.h"
#include "store.h"

struct write_job {
	struct batcher_call call; /* deadline_ms set by the submitter */
	struct store_write w;     /* strings stay valid until done runs */
	/* Runs once, on the batcher's answerer thread. row (PLAT_OK only)
	 * is borrowed: take a reference to keep it. */
	void (*done)(struct write_job *job, enum plat_code code,
	    const char *err, struct cfg_row *row);
	struct cfg_row *row;      /* the writer's */
};

/* committed runs once per committed batch, before the jobs' done
 * callbacks, with the new versions in revision order (no gap). */
int writer_start(struct pg_store *s,
    void (*committed)(struct cfg_row *const *rows, size_t n));
/* Answers every queued job, then stops the threads. */
void writer_stop(void);
void writer_submit(struct write_job *job);
/* Jobs queued or being written, for a gauge. */
int64_t writer_pending(void);

#endif
