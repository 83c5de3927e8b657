/*
 * forward: what trace-srv keeps, also exported to an upstream OTLP/gRPC
 * endpoint (--forward host:port: a Jaeger, Tempo or OpenTelemetry
 * Collector a user already runs).
 *
 * Never in the way of ingest: each stored span is copied into an outbox
 * (platform/outbox.h, the one the platform's own exporter uses) and sent
 * in batches by its thread; while the upstream is away they wait, past
 * the bound they are dropped and counted (trace_forward_dropped_total).
 * Plaintext gRPC.
 */
#ifndef TRACE_FORWARD_H
#define TRACE_FORWARD_H

#include <stddef.h>

#include "span.h"

struct metrics;

/* 0, or -1 (logged). A NULL or "" address: forwarding is off. */
int forward_start(const char *address, struct metrics *metrics);
/* Sends what is queued for up to flush_ms, then stops and frees. */
void forward_stop(int flush_ms);
/* Queues copies of the rows not refused; never waits. */
void forward_rows(struct span_row *const *rows, size_t n);

#endif
