/*
 * metrics: per-method call counters and latency histograms, served in the
 * Prometheus text format on --metrics-listen (GET /metrics).
 *
 * The runtime records every call; services may add their own gauges with
 * metrics_gauge_fn. Recording is lock-free (relaxed atomics).
 */
#ifndef PLATFORM_METRICS_H
#define PLATFORM_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_BUCKETS 14

struct metrics_method;
struct metrics;

struct metrics *metrics_new(const char *service);
void metrics_free(struct metrics *m);

/* One series per method path; the pointer lives as long as m. */
struct metrics_method *metrics_method(struct metrics *m, const char *path);
void metrics_observe(struct metrics_method *mm, int code, int64_t micros);
void metrics_stream_delta(struct metrics_method *mm, int delta);

/* A service-level gauge, read when the metrics are scraped. */
void metrics_gauge_fn(struct metrics *m, const char *name, const char *help,
    double (*fn)(void *), void *arg);
/* The same for a count that only goes up (name ends in _total). */
void metrics_counter_fn(struct metrics *m, const char *name,
    const char *help, double (*fn)(void *), void *arg);

/* Pushes every series to a statsd / DogStatsD agent at addr (UDP
 * host:port) every interval_s seconds, tagged with the service and
 * node: counts as deltas (|c), gauges as values (|g), each method's
 * latency over the interval as its mean and p99 in ms (|g). 0, or -1
 * when addr cannot be resolved. Stopped (after a last push) by
 * metrics_stop. */
int metrics_statsd(struct metrics *m, const char *addr, int interval_s,
    const char *node);

/* Writes every series in the Prometheus text format. */
void metrics_write(struct metrics *m, FILE *out);

/* Serves GET /metrics on addr (host:port) from a thread of its own:
 * 0, or -1 when it cannot listen. */
int metrics_serve(struct metrics *m, const char *addr);
void metrics_stop(struct metrics *m);

#endif
