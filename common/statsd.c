/*
 * statsd: the metrics pushed to a statsd / DogStatsD agent (telegraf,
 * the Datadog agent, statsd_exporter) over UDP. See platform/metrics.h.
 *
 * One thread wakes every interval, reads every series as the Prometheus
 * endpoint does, and sends what changed since the last push in
 * DogStatsD lines (`name:value|type|#tag:v,...`), packed into datagrams
 * that fit one Ethernet frame. UDP never blocks the server and loses
 * nothing but the lines of a lost datagram, which is statsd's contract.
 */
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics_internal.h"
#include "platform/client.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/settings.h"
#include "platform/xalloc.h"

#define DATAGRAM_MAX 1432       /* a 1500-byte frame less IP and UDP */

/* What was pushed last, for deltas. */
struct last_method {
	unsigned long long codes[METRICS_CODES];
	unsigned long long buckets[METRICS_BUCKETS + 1];
	unsigned long long sum_us;
};

struct statsd {
	struct metrics *m;
	int fd;
	struct sockaddr_storage to;
	socklen_t tolen;
	int interval_ms;
	char tags[256];                 /* "service:x,node:y" */
	struct last_method last[METRICS_MAX_METHODS];
	double last_counter[METRICS_MAX_GAUGES];
	char buf[DATAGRAM_MAX];
	size_t len;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
};

static void
flush(struct statsd *sd)
{
	if (sd->len > 0)
		(void)sendto(sd->fd, sd->buf, sd->len, MSG_DONTWAIT,
		    (struct sockaddr *)&sd->to, sd->tolen);
	sd->len = 0;
}

/* One line; extra tags (may be "") after the common ones. */
static void
line(struct statsd *sd, const char *name, double v, const char *type,
    const char *extra)
{
	char l[512];
	int n = snprintf(l, sizeof(l), "%s:%.6g|%s|#%s%s%s", name, v, type,
	    sd->tags, extra[0] != '\0' ? "," : "", extra);

	if (n <= 0 || (size_t)n >= sizeof(l))
		return;
	if (sd->len > 0 && sd->len + 1 + (size_t)n > sizeof(sd->buf))
		flush(sd);
	if (sd->len > 0)
		sd->buf[sd->len++] = '\n';
	memcpy(sd->buf + sd->len, l, (size_t)n);
	sd->len += (size_t)n;
}

/* statsd tag values may not hold ',', '|' or '#'. */
static void
tag_value(char *out, size_t len, const char *v)
{
	size_t i = 0;

	for (; *v != '\0' && i + 1 < len; v++)
		out[i++] = strchr(",|#", *v) != NULL ? '_' : *v;
	out[i] = '\0';
}

static void
push_method(struct statsd *sd, size_t i)
{
	struct metrics_method *mm = &sd->m->methods[i];
	struct last_method *l = &sd->last[i];
	unsigned long long d[METRICS_BUCKETS + 1], count = 0, sum;
	char path[200], extra[300];

	tag_value(path, sizeof(path), mm->path);
	for (int c = 0; c < METRICS_CODES; c++) {
		unsigned long long v = atomic_load(&mm->codes[c]);

		if (v > l->codes[c]) {
			snprintf(extra, sizeof(extra), "method:%s,code:%s",
			    path, plat_status_name(c));
			line(sd, "platform.rpc.requests", (double)(v -
			    l->codes[c]), "c", extra);
		}
		l->codes[c] = v;
	}
	for (int b = 0; b <= METRICS_BUCKETS; b++) {
		unsigned long long v = atomic_load(&mm->buckets[b]);

		d[b] = v - l->buckets[b];
		l->buckets[b] = v;
		count += d[b];
	}
	sum = atomic_load(&mm->sum_us);
	snprintf(extra, sizeof(extra), "method:%s", path);
	if (count > 0) {
		/* The p99 is the upper bound of its bucket (10 s past the
		 * last one). */
		int b = metrics_bucket_quantile(d, count, 99);

		line(sd, "platform.rpc.duration_ms.avg", (double)(sum -
		    l->sum_us) / 1000.0 / (double)count, "g", extra);
		line(sd, "platform.rpc.duration_ms.p99",
		    (double)metrics_bucket_us[b] / 1000.0, "g", extra);
	}
	l->sum_us = sum;
	if (atomic_load(&mm->streams) != 0)
		line(sd, "platform.rpc.streams_open",
		    (double)atomic_load(&mm->streams), "g", extra);
}

static void
family_line(void *arg, const char *name, double v, const char *type,
    const char *tags)
{
	line(arg, name, v, type, tags);
}

static void
push(struct statsd *sd)
{
	struct metrics *m = sd->m;
	size_t n;

	pthread_mutex_lock(&m->mu);
	n = m->nmethods;
	pthread_mutex_unlock(&m->mu);
	for (size_t i = 0; i < n; i++)
		push_method(sd, i);
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->ngauges; i++) {
		struct metrics_gauge *g = &m->gauges[i];
		double v = g->fn(g->arg);

		if (strcmp(g->type, "counter") == 0) {
			if (v > sd->last_counter[i])
				line(sd, g->name, v - sd->last_counter[i], "c",
				    "");
			sd->last_counter[i] = v;
		} else {
			line(sd, g->name, v, "g", "");
		}
	}
	pthread_mutex_unlock(&m->mu);
	metrics_families_push(m, family_line, sd);
	flush(sd);
}

static void *
statsd_main(void *arg)
{
	struct statsd *sd = arg;

	pthread_mutex_lock(&sd->mu);
	while (!plat_cond_wait_ms(&sd->cv, &sd->mu, sd->interval_ms,
	    &sd->stop)) {
		pthread_mutex_unlock(&sd->mu);
		push(sd);
		pthread_mutex_lock(&sd->mu);
	}
	pthread_mutex_unlock(&sd->mu);
	push(sd);               /* what the last interval counted */
	return NULL;
}

int
metrics_statsd(struct metrics *m, const char *addr, int interval_s,
    const char *node)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *res = NULL;
	char host[256], svc[96], nd[96];
	const char *port = settings_split_address(addr, host, sizeof(host));
	struct statsd *sd;

	if (port == NULL || m->statsd != NULL)
		return -1;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	sd = xcalloc(1, sizeof(*sd));
	sd->m = m;
	memcpy(&sd->to, res->ai_addr, res->ai_addrlen);
	sd->tolen = res->ai_addrlen;
	sd->fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	freeaddrinfo(res);
	if (sd->fd < 0) {
		free(sd);
		return -1;
	}
	sd->interval_ms = interval_s * 1000;
	tag_value(svc, sizeof(svc), m->service);
	tag_value(nd, sizeof(nd), node);
	snprintf(sd->tags, sizeof(sd->tags), "service:%s,node:%s", svc, nd);
	pthread_mutex_init(&sd->mu, NULL);
	plat_cond_init(&sd->cv);
	if (pthread_create(&sd->thread, NULL, statsd_main, sd) != 0) {
		close(sd->fd);
		free(sd);
		return -1;
	}
	m->statsd = sd;
	return 0;
}

void
statsd_stop(struct statsd *sd)
{
	if (sd == NULL)
		return;
	pthread_mutex_lock(&sd->mu);
	sd->stop = 1;
	pthread_cond_broadcast(&sd->cv);
	pthread_mutex_unlock(&sd->mu);
	pthread_join(sd->thread, NULL);
	pthread_cond_destroy(&sd->cv);
	pthread_mutex_destroy(&sd->mu);
	close(sd->fd);
	free(sd);
}
