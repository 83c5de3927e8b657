/*
 * store: trace-srv's tables and statements in PostgreSQL.
 *
 * trace_spans holds every span, range-partitioned by day on its start
 * (trace_spans_YYYYMMDD, UTC), so retention drops whole partitions
 * instead of deleting rows; trace_maintain() (a function the migration
 * makes) creates the days ahead and drops those past the retention.
 * trace_operations keeps each (service, span name, kind) once, so
 * Services and Operations read a small table, not the spans.
 *
 * Query results come back as libpq results for the handlers to read
 * (PQclear them).
 */
#ifndef TRACE_STORE_H
#define TRACE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "platform/pg.h"
#include "search.h"
#include "span.h"

#define STORE_AHEAD_DAYS 2

struct pg_store *store_new(const char *conninfo, int pool_size);

/* Partitions for [today - keep_days, today + STORE_AHEAD_DAYS], those
 * before dropped: *dropped is how many. */
enum plat_code store_maintain(struct pg_store *s, int keep_days,
    int64_t *dropped, char *err, size_t errlen);

/* rows[0..n) in one transaction (rows reordered); a span stored
 * before (a resent export) is kept once. A row that would take its
 * trace past max_spans is not stored and marked refused. */
enum plat_code store_insert(struct pg_store *s, struct span_row **rows,
    size_t n, int64_t max_spans, int64_t timeout_ms, char *err,
    size_t errlen);

/* Columns: span_id, parent_id, service, node, name, kind, start_ns,
 * duration_ns, error, status_message, trace_state, attributes (JSON). */
enum plat_code store_get_trace(struct pg_store *s, const char *trace_id,
    int limit, int64_t timeout_ms, PGresult **res, char *err,
    size_t errlen);

/* Rows as search.h says. */
enum plat_code store_search(struct pg_store *s, const struct search_query *q,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen);

/* For each trace id of ids (a text[] literal of hex ids): trace_id,
 * span_count, error_count, min start_ns, max end_ns, root service,
 * root name, services (a JSON array). */
enum plat_code store_summaries(struct pg_store *s, const char *ids,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen);

enum plat_code store_services(struct pg_store *s, int64_t timeout_ms,
    PGresult **res, char *err, size_t errlen);
/* name, kind */
enum plat_code store_operations(struct pg_store *s, const char *service,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen);
/* parent, child, calls, errors */
enum plat_code store_dependencies(struct pg_store *s, int64_t start_ms,
    int64_t end_ms, int64_t timeout_ms, PGresult **res, char *err,
    size_t errlen);

#endif
