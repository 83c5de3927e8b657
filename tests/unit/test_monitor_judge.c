/*
 * Unit tests for monitor-srv's pure decisions (services/monitor/judge.c):
 * the probe mapping, flap damping, rendezvous ownership and the reading
 * of a Prometheus exposition into a node's summary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "judge.h"

static void
test_probe_mapping(void **state)
{
	char out[128];

	(void)state;
	assert_int_equal(mon_probe_status(0, MON_HEALTH_SERVING, "", out,
	    sizeof(out)), MON_PASSING);
	assert_int_equal(mon_probe_status(0, MON_HEALTH_NOT_SERVING, "", out,
	    sizeof(out)), MON_CRITICAL);
	assert_string_equal(out, "NOT_SERVING");
	assert_int_equal(mon_probe_status(0, MON_HEALTH_SERVICE_UNKNOWN, "",
	    out, sizeof(out)), MON_CRITICAL);
	assert_int_equal(mon_probe_status(5, 0, "no such service", out,
	    sizeof(out)), MON_CRITICAL);
	assert_int_equal(mon_probe_status(14, 0, "connection refused", out,
	    sizeof(out)), MON_CRITICAL);
	assert_non_null(strstr(out, "unreachable"));
	assert_int_equal(mon_probe_status(4, 0, NULL, out, sizeof(out)),
	    MON_CRITICAL);
	assert_non_null(strstr(out, "timeout"));
	assert_int_equal(mon_probe_status(12, 0, "", out, sizeof(out)),
	    MON_CRITICAL);
}

static void
test_damping(void **state)
{
	struct mon_damper d = { 0 };

	(void)state;
	/* The first result counts at once. */
	assert_int_equal(mon_damper_feed(&d, MON_PASSING, 3), 1);
	assert_int_equal(d.status, MON_PASSING);
	/* Two criticals, a passing in between: no change. */
	assert_int_equal(mon_damper_feed(&d, MON_CRITICAL, 3), 0);
	assert_int_equal(mon_damper_feed(&d, MON_CRITICAL, 3), 0);
	assert_int_equal(mon_damper_feed(&d, MON_PASSING, 3), 0);
	assert_int_equal(mon_damper_feed(&d, MON_CRITICAL, 3), 0);
	assert_int_equal(mon_damper_feed(&d, MON_CRITICAL, 3), 0);
	assert_int_equal(d.status, MON_PASSING);
	/* The third in a row changes it. */
	assert_int_equal(mon_damper_feed(&d, MON_CRITICAL, 3), 1);
	assert_int_equal(d.status, MON_CRITICAL);
	/* A warning then criticals: the run starts again. */
	assert_int_equal(mon_damper_feed(&d, MON_WARNING, 2), 0);
	assert_int_equal(mon_damper_feed(&d, MON_PASSING, 2), 0);
	assert_int_equal(mon_damper_feed(&d, MON_PASSING, 2), 1);
	assert_int_equal(d.status, MON_PASSING);
	/* Threshold 1 (and below): every change at once. */
	assert_int_equal(mon_damper_feed(&d, MON_CRITICAL, 0), 1);
	assert_int_equal(mon_damper_feed(&d, MON_PASSING, 1), 1);
}

static void
test_worst(void **state)
{
	(void)state;
	assert_int_equal(mon_worst(MON_PASSING, MON_WARNING), MON_WARNING);
	assert_int_equal(mon_worst(MON_CRITICAL, MON_WARNING), MON_CRITICAL);
	assert_int_equal(mon_worst(MON_UNSPECIFIED, MON_PASSING), MON_PASSING);
}

static void
test_rendezvous(void **state)
{
	const char *three[] = { "mon-a", "mon-b", "mon-c" };
	const char *two[] = { "mon-a", "mon-c" };
	const char *rev[] = { "mon-c", "mon-b", "mon-a" };
	int per[3] = { 0 }, moved = 0;
	char node[32];

	(void)state;
	for (int i = 0; i < 300; i++) {
		size_t o3, o2;

		snprintf(node, sizeof(node), "config-%d", i);
		o3 = mon_owner(three, 3, node);
		per[o3]++;
		/* The order of the list does not matter. */
		assert_string_equal(three[o3], rev[mon_owner(rev, 3, node)]);
		/* Without mon-b, only mon-b's nodes move. */
		o2 = mon_owner(two, 2, node);
		if (o3 != 1)
			assert_string_equal(two[o2], three[o3]);
		else
			moved++;
	}
	assert_int_equal(moved, per[1]);
	/* A fair share each (300 / 3 = 100, loosely). */
	for (int i = 0; i < 3; i++)
		assert_in_range(per[i], 60, 140);
	assert_int_equal(mon_owner(three, 1, "x"), 0);
}

static void
test_stats_parse(void **state)
{
	const char *text =
	    "# HELP platform_rpc_requests_total Calls finished.\n"
	    "# TYPE platform_rpc_requests_total counter\n"
	    "platform_rpc_requests_total{service=\"x\",method=\"/a\","
	    "code=\"OK\"} 90\n"
	    "platform_rpc_requests_total{service=\"x\",method=\"/a\","
	    "code=\"NOT_FOUND\"} 6\n"
	    "platform_rpc_requests_total{service=\"x\",method=\"/b\","
	    "code=\"UNAVAILABLE\"} 4\n"
	    "platform_rpc_duration_seconds_bucket{service=\"x\",method=\"/a\","
	    "le=\"0.001\"} 50\n"
	    "platform_rpc_duration_seconds_bucket{service=\"x\",method=\"/a\","
	    "le=\"0.01\"} 90\n"
	    "platform_rpc_duration_seconds_bucket{service=\"x\",method=\"/a\","
	    "le=\"+Inf\"} 96\n"
	    "platform_rpc_duration_seconds_bucket{service=\"x\",method=\"/b\","
	    "le=\"0.001\"} 0\n"
	    "platform_rpc_duration_seconds_bucket{service=\"x\",method=\"/b\","
	    "le=\"0.01\"} 2\n"
	    "platform_rpc_duration_seconds_bucket{service=\"x\",method=\"/b\","
	    "le=\"+Inf\"} 4\n"
	    "process_resident_memory_bytes 1234567\n"
	    "garbage line\n";
	struct mon_stats s;

	(void)state;
	mon_stats_parse(text, &s);
	assert_true(s.requests == 100);
	assert_true(s.errors == 10);
	assert_true(s.memory_bytes == 1234567);
	/* 100 observations: 50 under 1 ms, 92 under 10 ms, 8 past. */
	assert_true(s.p50_ms == 1.0);
	assert_true(s.p90_ms == 10.0);
	assert_true(s.p99_ms == 10.0);  /* past the last bound: that bound */
	mon_stats_parse("", &s);
	assert_true(s.requests == 0 && s.p99_ms == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_mapping),
		cmocka_unit_test(test_damping),
		cmocka_unit_test(test_worst),
		cmocka_unit_test(test_rendezvous),
		cmocka_unit_test(test_stats_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
