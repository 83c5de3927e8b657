/*
 * metrics: call counters, latency histograms and a tiny HTTP endpoint for
 * Prometheus. See platform/metrics.h.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "platform/client.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/settings.h"

#include "metrics_internal.h"

const int64_t metrics_bucket_us[METRICS_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

struct metrics *
metrics_new(const char *service)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (m == NULL)
		abort();
	snprintf(m->service, sizeof(m->service), "%s", service);
	pthread_mutex_init(&m->mu, NULL);
	m->listen_fd = -1;
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	metrics_stop(m);
	metrics_families_free(m);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

struct metrics_method *
metrics_method(struct metrics *m, const char *path)
{
	struct metrics_method *mm = NULL;

	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->nmethods; i++)
		if (strcmp(m->methods[i].path, path) == 0) {
			mm = &m->methods[i];
			goto out;
		}
	/* Beyond the table, calls are folded into the last series. */
	if (m->nmethods == METRICS_MAX_METHODS) {
		mm = &m->methods[METRICS_MAX_METHODS - 1];
		goto out;
	}
	mm = &m->methods[m->nmethods++];
	snprintf(mm->path, sizeof(mm->path), "%s", path);
out:
	pthread_mutex_unlock(&m->mu);
	return mm;
}

int
metrics_bucket_of(int64_t micros)
{
	int b = 0;

	while (b < METRICS_BUCKETS && micros > metrics_bucket_us[b])
		b++;
	return b;
}

int
metrics_bucket_quantile(const unsigned long long *d, unsigned long long count,
    int q)
{
	unsigned long long seen = 0;
	int b = 0;

	for (; b < METRICS_BUCKETS; b++)
		if ((seen += d[b]) * 100 >= count * (unsigned long long)q)
			break;
	return b < METRICS_BUCKETS ? b : METRICS_BUCKETS - 1;
}

void
metrics_observe(struct metrics_method *mm, int code, int64_t micros)
{
	int b = metrics_bucket_of(micros);

	if (code < 0 || code >= METRICS_CODES)
		code = 2;       /* UNKNOWN */
	atomic_fetch_add_explicit(&mm->codes[code], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mm->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mm->sum_us, (unsigned long long)micros,
	    memory_order_relaxed);
}

void
metrics_stream_delta(struct metrics_method *mm, int delta)
{
	atomic_fetch_add_explicit(&mm->streams, delta, memory_order_relaxed);
}

static void
metrics_add_fn(struct metrics *m, const char *type, const char *name,
    const char *help, double (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&m->mu);
	if (m->ngauges < METRICS_MAX_GAUGES) {
		struct metrics_gauge *g = &m->gauges[m->ngauges++];

		snprintf(g->name, sizeof(g->name), "%s", name);
		snprintf(g->help, sizeof(g->help), "%s", help);
		g->type = type;
		g->fn = fn;
		g->arg = arg;
	} else {
		log_warn("metrics: no room for another series; not served",
		    "name", name);
	}
	pthread_mutex_unlock(&m->mu);
}

void
metrics_gauge_fn(struct metrics *m, const char *name, const char *help,
    double (*fn)(void *), void *arg)
{
	metrics_add_fn(m, "gauge", name, help, fn, arg);
}

void
metrics_counter_fn(struct metrics *m, const char *name, const char *help,
    double (*fn)(void *), void *arg)
{
	metrics_add_fn(m, "counter", name, help, fn, arg);
}

static long
rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

void
metrics_write(struct metrics *m, FILE *out)
{
	size_t n;

	pthread_mutex_lock(&m->mu);
	n = m->nmethods;
	pthread_mutex_unlock(&m->mu);

	fprintf(out, "# HELP platform_rpc_requests_total Calls finished, by "
	    "method and gRPC status.\n# TYPE platform_rpc_requests_total "
	    "counter\n");
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < METRICS_CODES; c++) {
			unsigned long long v = atomic_load_explicit(
			    &m->methods[i].codes[c], memory_order_relaxed);

			if (v != 0)
				fprintf(out, "platform_rpc_requests_total{"
				    "service=\"%s\",method=\"%s\",code=\"%s\"} "
				    "%llu\n", m->service, m->methods[i].path,
				    plat_status_name(c), v);
		}
	fprintf(out, "# HELP platform_rpc_duration_seconds Call latency.\n"
	    "# TYPE platform_rpc_duration_seconds histogram\n");
	for (size_t i = 0; i < n; i++) {
		struct metrics_method *mm = &m->methods[i];
		unsigned long long cum = 0;

		for (int b = 0; b <= METRICS_BUCKETS; b++) {
			cum += atomic_load_explicit(&mm->buckets[b],
			    memory_order_relaxed);
			if (b < METRICS_BUCKETS)
				fprintf(out, "platform_rpc_duration_seconds_"
				    "bucket{service=\"%s\",method=\"%s\","
				    "le=\"%g\"} %llu\n", m->service, mm->path,
				    (double)metrics_bucket_us[b] / 1e6, cum);
			else
				fprintf(out, "platform_rpc_duration_seconds_"
				    "bucket{service=\"%s\",method=\"%s\","
				    "le=\"+Inf\"} %llu\n", m->service,
				    mm->path, cum);
		}
		fprintf(out, "platform_rpc_duration_seconds_sum{service=\"%s\","
		    "method=\"%s\"} %.6f\n", m->service, mm->path,
		    (double)atomic_load(&mm->sum_us) / 1e6);
		fprintf(out, "platform_rpc_duration_seconds_count{service="
		    "\"%s\",method=\"%s\"} %llu\n", m->service, mm->path, cum);
	}
	fprintf(out, "# HELP platform_rpc_streams_open Streams open now.\n"
	    "# TYPE platform_rpc_streams_open gauge\n");
	for (size_t i = 0; i < n; i++)
		fprintf(out, "platform_rpc_streams_open{service=\"%s\","
		    "method=\"%s\"} %lld\n", m->service, m->methods[i].path,
		    (long long)atomic_load(&m->methods[i].streams));
	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->ngauges; i++)
		fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s{service=\"%s\"}"
		    " %g\n", m->gauges[i].name, m->gauges[i].help,
		    m->gauges[i].name, m->gauges[i].type, m->gauges[i].name,
		    m->service,
		    m->gauges[i].fn(m->gauges[i].arg));
	pthread_mutex_unlock(&m->mu);
	metrics_families_write(m, out);
	fprintf(out, "# HELP process_resident_memory_bytes Resident memory.\n"
	    "# TYPE process_resident_memory_bytes gauge\n"
	    "process_resident_memory_bytes %ld\n", rss_bytes());
}

/* One request per connection, answered in full and closed: scrapes are
 * rare and small, so a thread of its own with blocking I/O suffices. */
static void
metrics_answer(struct metrics *m, int fd)
{
	char req[1024], *body = NULL, head[256];
	size_t len = 0;
	ssize_t n;
	FILE *out;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, 2000) <= 0 ||
	    (n = read(fd, req, sizeof(req) - 1)) <= 0)
		return;
	req[n] = '\0';
	if (strncmp(req, "GET /metrics", 12) != 0 &&
	    strncmp(req, "GET / ", 6) != 0) {
		static const char nf[] = "HTTP/1.0 404 Not Found\r\n"
		    "Content-Length: 0\r\nConnection: close\r\n\r\n";

		(void)!write(fd, nf, sizeof(nf) - 1);
		return;
	}
	if ((out = open_memstream(&body, &len)) == NULL)
		return;
	metrics_write(m, out);
	fclose(out);
	n = snprintf(head, sizeof(head), "HTTP/1.0 200 OK\r\nContent-Type: "
	    "text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n", len);
	if (write(fd, head, (size_t)n) == n) {
		size_t off = 0;

		while (off < len && (n = write(fd, body + off,
		    len - off)) > 0)
			off += (size_t)n;
	}
	free(body);
}

static void *
metrics_main(void *arg)
{
	struct metrics *m = arg;
	struct pollfd p[2] = {
		{ .fd = m->listen_fd, .events = POLLIN },
		{ .fd = m->stop_pipe[0], .events = POLLIN },
	};

	for (;;) {
		int fd;

		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			break;
		if ((fd = accept(m->listen_fd, NULL, NULL)) < 0)
			continue;
		metrics_answer(m, fd);
		close(fd);
	}
	return NULL;
}

int
metrics_serve(struct metrics *m, const char *addr)
{
	struct addrinfo hints, *res = NULL;
	char host[256];
	const char *port = settings_split_address(addr, host, sizeof(host));
	int one = 1, fd = -1;

	if (port == NULL)
		return -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	if ((fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
	    0)) < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, 16) != 0)
		goto fail;
	if (pipe(m->stop_pipe) != 0)
		goto fail;
	m->listen_fd = fd;
	if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
		close(m->stop_pipe[0]);
		close(m->stop_pipe[1]);
		m->listen_fd = -1;
		goto fail;
	}
	m->serving = 1;
	freeaddrinfo(res);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

void
metrics_stop(struct metrics *m)
{
	/* Before the series' owners go (the service's fini): the last push
	 * reads them. */
	statsd_stop(m->statsd);
	m->statsd = NULL;
	if (!m->serving)
		return;
	(void)!write(m->stop_pipe[1], "x", 1);
	pthread_join(m->thread, NULL);
	close(m->stop_pipe[0]);
	close(m->stop_pipe[1]);
	close(m->listen_fd);
	m->listen_fd = -1;
	m->serving = 0;
}
