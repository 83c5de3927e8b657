/*
 * Unit tests for a server's own labelled series (common/metrics_family.c):
 * the Prometheus exposition shows them with their labels beside the
 * service's, and the statsd push sends them as DogStatsD tags (counters
 * as deltas) on a UDP socket the test reads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "platform/metrics.h"

static char *
exposition(struct metrics *m)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	metrics_write(m, out);
	fclose(out);
	return buf;
}

static void
test_exposition_with_labels(void **state)
{
	struct metrics *m = metrics_new("demo");
	struct metrics_family *c, *g, *h;
	char *text;

	(void)state;
	c = metrics_family(m, METRICS_COUNTER, "demo_jobs_total", "Jobs.",
	    "queue,result");
	g = metrics_family(m, METRICS_GAUGE, "demo_depth", "Depth.", "queue");
	h = metrics_family(m, METRICS_HISTOGRAM, "demo_job_seconds", "Time.",
	    "");
	assert_non_null(c);
	assert_non_null(g);
	assert_non_null(h);
	plat_counter_add(c, (const char *[]){ "mail", "ok" }, 2);
	plat_counter_add(c, (const char *[]){ "mail", "ok" }, 3);
	plat_counter_add(c, (const char *[]){ "a\"b", "failed" }, 1);
	plat_counter_add(c, (const char *[]){ "mail", "ok" }, -7); /* ignored */
	plat_gauge_set(g, (const char *[]){ "mail" }, 4);
	plat_gauge_set(g, (const char *[]){ "mail" }, 9);
	plat_histogram_observe(h, NULL, 0.003);
	plat_histogram_observe(h, NULL, 20);
	text = exposition(m);
	assert_non_null(strstr(text, "# TYPE demo_jobs_total counter\n"));
	assert_non_null(strstr(text, "demo_jobs_total{service=\"demo\","
	    "queue=\"mail\",result=\"ok\"} 5\n"));
	assert_non_null(strstr(text, "demo_jobs_total{service=\"demo\","
	    "queue=\"a\\\"b\",result=\"failed\"} 1\n"));
	assert_non_null(strstr(text, "demo_depth{service=\"demo\","
	    "queue=\"mail\"} 9\n"));
	assert_non_null(strstr(text, "demo_job_seconds_bucket{service="
	    "\"demo\",le=\"0.0025\"} 0\n"));
	assert_non_null(strstr(text, "demo_job_seconds_bucket{service="
	    "\"demo\",le=\"0.005\"} 1\n"));
	assert_non_null(strstr(text, "demo_job_seconds_bucket{service="
	    "\"demo\",le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(text, "demo_job_seconds_count{service="
	    "\"demo\"} 2\n"));
	/* The runtime's own series are still there. */
	assert_non_null(strstr(text, "process_resident_memory_bytes"));
	free(text);
	metrics_free(m);
}

static void
test_bad_families(void **state)
{
	struct metrics *m = metrics_new("demo");

	(void)state;
	assert_null(metrics_family(m, METRICS_GAUGE, "9x", "", ""));
	assert_null(metrics_family(m, METRICS_GAUGE, "x", "", "a,,b"));
	assert_null(metrics_family(m, METRICS_GAUGE, "x", "", "service"));
	assert_null(metrics_family(m, METRICS_GAUGE, "x", "", "le"));
	assert_null(metrics_family(m, METRICS_GAUGE, "x", "", "a-b"));
	assert_null(metrics_family(m, METRICS_GAUGE, "x", "", "a,b,c,d,e"));
	/* The wrong kind, or a NULL family, records nothing. */
	plat_counter_add(NULL, NULL, 1);
	plat_gauge_set(metrics_family(m, METRICS_COUNTER, "c_total", "", ""),
	    NULL, 5);
	metrics_free(m);
}

static void
test_series_past_the_room_are_folded(void **state)
{
	struct metrics *m = metrics_new("demo");
	struct metrics_family *c = metrics_family(m, METRICS_COUNTER,
	    "many_total", "", "k");
	char v[16], *text;

	(void)state;
	for (int i = 0; i < METRICS_SERIES_MAX + 3; i++) {
		snprintf(v, sizeof(v), "k%d", i);
		plat_counter_add(c, (const char *[]){ v }, 1);
	}
	text = exposition(m);
	assert_non_null(strstr(text, "platform_metrics_series_dropped{"
	    "service=\"demo\"} 3\n"));
	snprintf(v, sizeof(v), "k=\"k%d\"} 4\n", METRICS_SERIES_MAX - 1);
	assert_non_null(strstr(text, v));
	free(text);
	metrics_free(m);
}

/* Every datagram until the socket is quiet. */
static void
read_lines(int fd, char *buf, size_t len)
{
	size_t off = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (off + 1 < len && poll(&p, 1, 2000) > 0) {
		ssize_t n = recv(fd, buf + off, len - off - 1, 0);

		if (n <= 0)
			break;
		off += (size_t)n;
		buf[off++] = '\n';
	}
	buf[off < len ? off : len - 1] = '\0';
}

static void
test_statsd_tags(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct metrics *m = metrics_new("demo");
	struct metrics_family *c = metrics_family(m, METRICS_COUNTER,
	    "demo_jobs_total", "", "queue");
	struct metrics_family *h = metrics_family(m, METRICS_HISTOGRAM,
	    "demo_job_seconds", "", "queue");
	char addr[64], buf[8192];

	(void)state;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	plat_counter_add(c, (const char *[]){ "ma|l" }, 3);
	plat_histogram_observe(h, (const char *[]){ "mail" }, 0.002);
	plat_histogram_observe(h, (const char *[]){ "mail" }, 0.004);
	/* A long interval: the one push is the last, at stop. */
	assert_int_equal(metrics_statsd(m, addr, 3600, "n1"), 0);
	metrics_stop(m);
	read_lines(fd, buf, sizeof(buf));
	assert_non_null(strstr(buf, "demo_jobs_total:3|c|#service:demo,"
	    "node:n1,queue:ma_l\n"));
	assert_non_null(strstr(buf, "demo_job_seconds.count:2|c|#service:"
	    "demo,node:n1,queue:mail\n"));
	assert_non_null(strstr(buf, "demo_job_seconds.avg:0.003|g|#"));
	assert_non_null(strstr(buf, "demo_job_seconds.p99:0.005|g|#"));
	metrics_free(m);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exposition_with_labels),
		cmocka_unit_test(test_bad_families),
		cmocka_unit_test(test_series_past_the_room_are_folded),
		cmocka_unit_test(test_statsd_tags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
