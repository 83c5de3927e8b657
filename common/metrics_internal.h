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

struct metrics {
	char service[64];
	pthread_mutex_t mu;               /* guards adding series */
	struct metrics_method methods[METRICS_MAX_METHODS];
	size_t nmethods;
	struct metrics_gauge gauges[METRICS_MAX_GAUGES];
	size_t ngauges;
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	int serving;
	struct statsd *statsd;            /* NULL: no push */
};

/* The statsd push (statsd.c), started by metrics_statsd. */
struct statsd;
void statsd_stop(struct statsd *sd);

#endif
