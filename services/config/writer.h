/*
 * writer: group commit for config-srv's writes.
 *
 * Handlers submit a write job and return at once (plat_defer); one
 * writer thread takes every job queued while the previous batch
 * committed, writes them in one transaction (store_write_batch), and an
 * answerer thread calls each job's done callback with its outcome while
 * the writer already commits the next batch. Durable throughput is then
 * bounded by the batch size, not by one fsync per write. Jobs commit in
 * submission order. One writer, because every batch (of every replica)
 * holds the store's revision lock until its commit: a second writer only
 * splits the queue into smaller batches waiting on that lock (measured:
 * fewer writes per second and more CPU per write).
 */
#ifndef CONFIG_WRITER_H
#define CONFIG_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct write_job {
	struct store_write w;     /* strings stay valid until done runs */
	int64_t deadline_ms;      /* plat_now_ms() clock; INT64_MAX: none */
	/* Runs once, on the answerer thread (or the writer's, for a job
	 * past its deadline). row (PLAT_OK only) is borrowed: take a
	 * reference to keep it. */
	void (*done)(struct write_job *job, enum plat_code code,
	    const char *err, struct cfg_row *row);
	struct write_job *next;   /* the writer's */
	size_t bytes;             /* the writer's */
};

/* committed runs once per committed batch, before the jobs' done
 * callbacks, with the new versions in revision order (no gap). */
int writer_start(struct store *s,
    void (*committed)(struct cfg_row *const *rows, size_t n));
/* Answers every queued job, then stops the thread. */
void writer_stop(void);
void writer_submit(struct write_job *job);
/* Jobs queued or being written, for a gauge. */
int64_t writer_pending(void);

#endif
