/*
 * tail: tail-based retention of the traces head sampling left out.
 *
 * With --trace-tail every platform server sends the spans of unsampled
 * traces too (their OTLP flags say so, span.h). trace-srv holds them
 * here, by trace, for a decision window counted from the trace's first
 * span: a trace any of whose spans is an error, or takes
 * slower_than_ns or more, is kept whole (flushed to the store, and its
 * spans arriving later for another window go straight after them); the
 * others are discarded at the window's end. The buffer is bounded in
 * spans: an unsampled span past it is refused and counted, never
 * dropped without a word.
 *
 * Every span of a trace must reach the same trace-srv for this to
 * decide on the whole trace: with several replicas, route spans by trace
 * id (README, Tracing).
 *
 * Pure logic under one lock, the clock given by the caller, so the unit
 * test drives it; the server ticks it from a loop.
 */
#ifndef TRACE_TAIL_H
#define TRACE_TAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

struct tail_opts {
	int64_t window_ms;
	int64_t slower_than_ns;         /* 0: latency never keeps a trace */
	size_t max_spans;
	/* Stores rows[0..n) (copies, valid during the call); may be called
	 * from tail_tick only, never under the lock. */
	void (*flush)(void *arg, struct span_row **rows, size_t n);
	void *arg;
};

struct tail_stats {
	uint64_t kept, discarded;       /* traces */
	uint64_t spans_refused;         /* the buffer was full */
	uint64_t spans_discarded;
	size_t traces_held, spans_held;
};

struct tail;

struct tail *tail_new(const struct tail_opts *o);
/* Discards what is held (counted). NULL is fine. */
void tail_free(struct tail *t);

/* Does this span make its trace worth keeping? */
bool tail_matters(const struct span_row *r, int64_t slower_than_ns);

/* Holds copies of rows[0..n) (each unsampled) at now_ms: how many were
 * refused because the buffer was full. */
size_t tail_offer(struct tail *t, const struct span_row *rows, size_t n,
    int64_t now_ms);
/* Decides every trace whose window ended by now_ms, and flushes what is
 * kept (the spans of kept traces that came since, too). */
void tail_tick(struct tail *t, int64_t now_ms);

void tail_stats(struct tail *t, struct tail_stats *out);

#endif
