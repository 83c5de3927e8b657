/*
 * metrics_internal: the series metrics.c keeps, for its exporters in
 * common/ (the Prometheus endpoint there, the statsd push in statsd.c).
 */
#ifndef PLATFORM_METRICS_INTERNAL_H
#define PLATFORM_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "platform/metrics.h"

#define METRICS_MAX_METHODS 64
#define METRICS_MAX_GAUGES 64      /* a service's own, the runtime's, the exporters' */
#define METRICS_CODES 17

/* Upper bounds in microseconds: 0.5 ms .. 10 s (metrics.c). */
extern const int64_t metrics_bucket_us[METRICS_BUCKETS];
/* The bucket of a value in microseconds (METRICS_BUCKETS: +Inf). */
int metrics_bucket_of(int64_t micros);
/* The bucket holding the q-th percentile of count observations spread
 * over d (a histogram's per-bucket counts), capped at the last finite
 * one: its upper bound is the percentile's estimate. */
int metrics_bucket_quantile(const unsigned long long *d,
    unsigned long long count, int q);

struct metrics_method {
	char path[160];
	atomic_ullong codes[METRICS_CODES];
	atomic_ullong buckets[METRICS_BUCKETS + 1];  /* last: +Inf */
	atomic_ullong sum_us;
	atomic_llong streams;
};

struct metrics_gauge {
	char name[96];
	char help[160];
	const char *type;                 /* "gauge" or "counter" */
	double (*fn)(void *);
	void *arg;
};

/* A labelled series of a family (metrics_family.c). The pushed_* fields
 * belong to the statsd thread. */
struct metrics_series {
	char *values[METRICS_LABELS_MAX];
	double value;                     /* counter, gauge */
	unsigned long long buckets[METRICS_BUCKETS + 1];
	unsigned long long count;
	double sum;
	double pushed_value;
	unsigned long long pushed_buckets[METRICS_BUCKETS + 1];
	unsigned long long pushed_count;
	double pushed_sum;
};

struct metrics_family {
	char name[96];
	char help[160];
	enum metrics_kind kind;
	struct metrics *m;
	char *labels[METRICS_LABELS_MAX];
	size_t nlabels;
	pthread_mutex_t mu;               /* guards the series */
	struct metrics_series series[METRICS_SERIES_MAX];
	size_t nseries;
};

struct metrics {
	char service[64];
	pthread_mutex_t mu;               /* guards adding series */
	struct metrics_method methods[METRICS_MAX_METHODS];
	size_t nmethods;
	struct metrics_gauge gauges[METRICS_MAX_GAUGES];
	size_t ngauges;
	struct metrics_family *families[METRICS_FAMILIES_MAX];
	atomic_size_t nfamilies;
	atomic_ullong series_dropped;
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	int serving;
	struct statsd *statsd;            /* NULL: no push */
};

/* The families' part of each exporter (metrics_family.c). */
void metrics_families_write(struct metrics *m, FILE *out);
void metrics_families_free(struct metrics *m);
/* Calls line(arg, name, value, type, tags) for what changed since the
 * last call: tags are "label:value,..." (may be ""). */
void metrics_families_push(struct metrics *m,
    void (*line)(void *arg, const char *name, double v, const char *type,
    const char *tags), void *arg);

/* The statsd push (statsd.c), started by metrics_statsd. */
struct statsd;
void statsd_stop(struct statsd *sd);

#endif
