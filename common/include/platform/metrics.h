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

/*
 * A server's own series with labels: a family (one name, help, kind and
 * a small fixed set of label names, "method,code") and, inside it, one
 * series per combination of label values, made on first use. Both
 * exporters show them: Prometheus as labels beside service="...", statsd
 * as DogStatsD tags (counters as deltas, gauges as values, histograms as
 * their mean and p99 over the interval, in the unit observed). Families
 * are made before serving (init) and live as long as m; recording takes
 * the family's lock, which is fine for a server's own events, not for a
 * per-byte path.
 */
#define METRICS_LABELS_MAX 4        /* label names per family */
#define METRICS_SERIES_MAX 64       /* label-value combinations per family */
#define METRICS_FAMILIES_MAX 32

enum metrics_kind {
	METRICS_COUNTER,
	METRICS_GAUGE,
	METRICS_HISTOGRAM,          /* buckets: 0.5 ms .. 10 s, in seconds */
};

struct metrics_family;

/* labels: comma-separated label names ("" or NULL: none), each
 * [a-zA-Z_][a-zA-Z0-9_]*, not "service" or "le". NULL when the name or a
 * label is malformed, or there is no room (logged). */
struct metrics_family *metrics_family(struct metrics *m,
    enum metrics_kind kind, const char *name, const char *help,
    const char *labels);

/* values: one per label name, in order (NULL for a family without
 * labels). A combination past METRICS_SERIES_MAX is folded into the
 * family's last series and counted in platform_metrics_series_dropped.
 * NULL f is fine (nothing happens). */
void plat_counter_add(struct metrics_family *f, const char *const *values,
    double n);
void plat_gauge_set(struct metrics_family *f, const char *const *values,
    double v);
void plat_histogram_observe(struct metrics_family *f,
    const char *const *values, double v);

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
