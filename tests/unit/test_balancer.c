/* Unit tests for the client's chooser and breakers (common/balancer.c):
 * pure logic, time and random seed passed in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "platform/balancer.h"

static const char *const three[] = { "a:1", "b:2", "c:3" };

#define UNAVAILABLE 14

static void
setup3(struct balancer *b, uint64_t seed)
{
	balancer_init(b, NULL, seed);
	balancer_sync(b, three, 3);
}

/* One call: pick, then answer with code after ms; returns the index. */
static int
call(struct balancer *b, int64_t now, int code, double ms)
{
	int i = balancer_pick(b, now);

	assert_true(i >= 0);
	balancer_done(b, b->nodes[i].addr, code, ms, now);
	return i;
}

static void
test_empty(void **state)
{
	struct balancer b;

	(void)state;
	balancer_init(&b, NULL, 1);
	assert_int_equal(balancer_pick(&b, 10), -1);
	balancer_done(&b, "nowhere:1", 0, 1, 10);     /* ignored */
	balancer_sync(&b, three, 1);
	assert_int_equal(balancer_pick(&b, 10), 0);
	balancer_free(&b);
}

static void
test_round_robin_without_weights(void **state)
{
	struct balancer b;

	(void)state;
	setup3(&b, 1);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 3; i++)
			assert_int_equal(call(&b, 100, 0, 1), i);
	balancer_free(&b);
}

static void
test_weights_set_the_share(void **state)
{
	static const char *const two[] = { "v1:1", "v2:1" };
	const uint32_t w[] = { 90, 10 };
	struct balancer b;
	int hits[2] = { 0, 0 };

	(void)state;
	balancer_init(&b, NULL, 42);
	balancer_sync(&b, two, 2);
	balancer_set_weights(&b, two, w, 2);
	for (int i = 0; i < 10000; i++)
		hits[call(&b, 1000 + i, 0, 5)]++;
	assert_in_range(hits[1], 800, 1200);
	balancer_free(&b);
}

static void
test_weight_zero_gets_nothing(void **state)
{
	const uint32_t w[] = { 100, 0, 100 };
	const uint32_t none[] = { 0, 0, 0 };
	struct balancer b;

	(void)state;
	setup3(&b, 7);
	balancer_set_weights(&b, three, w, 3);
	for (int i = 0; i < 1000; i++)
		assert_int_not_equal(call(&b, 1000 + i, 0, 1), 1);
	/* Every weight zero: still somewhere to go. */
	balancer_set_weights(&b, three, none, 3);
	assert_true(balancer_pick(&b, 5000) >= 0);
	balancer_free(&b);
}

static void
test_p2c_avoids_the_slow_node(void **state)
{
	const uint32_t w[] = { 100, 100, 100 };
	struct balancer b;
	int hits[3] = { 0, 0, 0 }, i;

	(void)state;
	setup3(&b, 3);
	balancer_set_weights(&b, three, w, 3);
	for (int n = 0; n < 3000; n++) {
		i = call(&b, 1000 + n, 0, 1);
		hits[i]++;
		/* Node b answers in 50 ms, the others in 1. */
		if (i == 1)
			balancer_done(&b, three[1], 0, 50, 1000 + n),
			    b.nodes[1].inflight++, b.nodes[1].requests--;
	}
	assert_true(hits[1] < 150);
	assert_true(hits[0] > 1000 && hits[2] > 1000);
	assert_true(balancer_cost(&b, 1, 4000) > balancer_cost(&b, 0, 4000));
	/* Idle long enough, its cost decays and it is tried again. */
	assert_true(balancer_cost(&b, 1, 4000 + 60000) <
	    balancer_cost(&b, 1, 4000));
	balancer_free(&b);
}

static void
test_failure_counts_as_slow(void **state)
{
	struct balancer b;

	(void)state;
	setup3(&b, 1);
	assert_int_equal(call(&b, 100, UNAVAILABLE, 0.1), 0);
	assert_true(b.nodes[0].ewma_ms >= 1000);
	assert_int_equal(b.nodes[0].errors[UNAVAILABLE], 1);
	assert_int_equal(b.nodes[0].requests, 1);
	/* A caller's mistake is no failure of the node. */
	assert_false(balancer_is_failure(3));
	assert_false(balancer_is_failure(5));
	assert_false(balancer_is_failure(8));
	assert_true(balancer_is_failure(4));
	assert_true(balancer_is_failure(13));
	balancer_free(&b);
}

static void
test_inflight(void **state)
{
	struct balancer b;
	int i;

	(void)state;
	setup3(&b, 1);
	i = balancer_pick(&b, 10);
	assert_int_equal(b.nodes[i].inflight, 1);
	balancer_done(&b, b.nodes[i].addr, 0, 1, 11);
	assert_int_equal(b.nodes[i].inflight, 0);
	balancer_free(&b);
}

/* Fails node b's calls n times at now. */
static void
fail_b(struct balancer *b, int n, int64_t now)
{
	for (int k = 0; k < n; k++) {
		b->nodes[1].inflight++;
		balancer_done(b, three[1], UNAVAILABLE, 1, now);
	}
}

/* By key: the same node for a key whatever the weights, nothing
 * counted in flight; an ejected node's keys move, and come back once
 * its ejection and the fallback selector's cooldown (2 s) are over. */
static void
test_pick_key(void **state)
{
	static const uint32_t w[] = { 1000, 1, 1 };
	struct balancer b;
	int home[64], moved = 0, spread[3] = { 0 };

	(void)state;
	setup3(&b, 1);
	for (uint64_t k = 0; k < 64; k++) {
		home[k] = balancer_pick_key(&b, k * 0x9e3779b97f4a7c15ULL, 10);
		assert_true(home[k] >= 0 && home[k] < 3);
		spread[home[k]]++;
	}
	for (int i = 0; i < 3; i++) {
		assert_true(spread[i] > 0);
		assert_int_equal(b.nodes[i].inflight, 0);
	}
	balancer_set_weights(&b, three, w, 3);
	for (uint64_t k = 0; k < 64; k++)
		assert_int_equal(balancer_pick_key(&b,
		    k * 0x9e3779b97f4a7c15ULL, 10), home[k]);
	fail_b(&b, 5, 100);
	assert_int_equal(balancer_state(&b, 1, 100), BALANCER_OPEN);
	for (uint64_t k = 0; k < 64; k++) {
		int i = balancer_pick_key(&b, k * 0x9e3779b97f4a7c15ULL, 200);

		assert_int_not_equal(i, 1);
		if (home[k] != 1)
			assert_int_equal(i, home[k]);
		moved += home[k] == 1;
	}
	assert_true(moved > 0);
	for (uint64_t k = 0; k < 64; k++)
		assert_int_equal(balancer_pick_key(&b,
		    k * 0x9e3779b97f4a7c15ULL, 2200), home[k]);
	balancer_free(&b);
	balancer_init(&b, NULL, 1);
	assert_int_equal(balancer_pick_key(&b, 7, 10), -1);
	balancer_free(&b);
}

static void
test_breaker_consecutive(void **state)
{
	struct balancer b;

	(void)state;
	setup3(&b, 1);
	fail_b(&b, 4, 100);
	assert_int_equal(balancer_state(&b, 1, 100), BALANCER_CLOSED);
	fail_b(&b, 1, 100);
	assert_int_equal(balancer_state(&b, 1, 100), BALANCER_OPEN);
	for (int k = 0; k < 20; k++)
		assert_int_not_equal(call(&b, 200 + k, 0, 1), 1);
	/* After the base ejection time: one probe, and only one. */
	assert_int_equal(balancer_state(&b, 1, 1100), BALANCER_HALF_OPEN);
	assert_int_equal(balancer_pick(&b, 1100), 1);
	for (int k = 0; k < 10; k++)
		assert_int_not_equal(call(&b, 1100, 0, 1), 1);
	/* The probe fails: out again, for twice as long. */
	balancer_done(&b, three[1], UNAVAILABLE, 1, 1100);
	assert_int_equal(balancer_state(&b, 1, 1100 + 1999), BALANCER_OPEN);
	assert_int_equal(balancer_state(&b, 1, 1100 + 2000),
	    BALANCER_HALF_OPEN);
	/* This probe succeeds: closed, in the rotation again, and its
	 * penalty forgotten. */
	assert_int_equal(balancer_pick(&b, 3100), 1);
	balancer_done(&b, three[1], 0, 2, 3100);
	assert_int_equal(balancer_state(&b, 1, 3100), BALANCER_CLOSED);
	assert_true(b.nodes[1].ewma_ms < 10);
	int seen = 0;
	for (int k = 0; k < 6; k++)
		seen |= call(&b, 3200, 0, 1) == 1;
	assert_true(seen);
	balancer_free(&b);
}

static void
test_backoff_is_capped(void **state)
{
	struct balancer_opts o = { .base_eject_ms = 1000,
	    .max_eject_ms = 4000 };
	struct balancer b;
	int64_t now = 100;

	(void)state;
	balancer_init(&b, &o, 1);
	balancer_sync(&b, three, 3);
	fail_b(&b, 5, now);
	for (int k = 0; k < 6; k++) {
		now = b.nodes[1].ejected_until_ms;
		assert_int_equal(balancer_pick(&b, now), 1);
		balancer_done(&b, three[1], UNAVAILABLE, 1, now);
	}
	assert_int_equal(b.nodes[1].ejected_until_ms - now, 4000);
	balancer_free(&b);
}

static void
test_breaker_error_rate(void **state)
{
	struct balancer b;

	(void)state;
	setup3(&b, 1);
	/* Every other call fails: never five in a row, but half of 20. */
	for (int k = 0; k < 19; k++) {
		b.nodes[1].inflight++;
		balancer_done(&b, three[1], k % 2 ? 0 : UNAVAILABLE, 1, 100);
	}
	assert_int_equal(balancer_state(&b, 1, 100), BALANCER_CLOSED);
	b.nodes[1].inflight++;
	balancer_done(&b, three[1], 0, 1, 100);
	assert_int_equal(balancer_state(&b, 1, 100), BALANCER_OPEN);
	balancer_free(&b);
}

static void
test_error_rate_window_resets(void **state)
{
	struct balancer b;

	(void)state;
	setup3(&b, 1);
	for (int k = 0; k < 10; k++) {
		b.nodes[1].inflight++;
		balancer_done(&b, three[1], k % 2 ? 0 : UNAVAILABLE, 1, 100);
	}
	/* The next window starts afresh: 10 more do not trip it. */
	for (int k = 0; k < 10; k++) {
		b.nodes[1].inflight++;
		balancer_done(&b, three[1], k % 2 ? 0 : UNAVAILABLE, 1,
		    100 + 10000);
	}
	assert_int_equal(balancer_state(&b, 1, 10100), BALANCER_CLOSED);
	balancer_free(&b);
}

static void
test_never_ejects_all(void **state)
{
	static const char *const two[] = { "a:1", "b:2" };
	struct balancer b;

	(void)state;
	balancer_init(&b, NULL, 1);
	balancer_sync(&b, two, 2);
	for (int k = 0; k < 5; k++)
		balancer_done(&b, two[0], UNAVAILABLE, 1, 100);
	assert_int_equal(balancer_state(&b, 0, 100), BALANCER_OPEN);
	for (int k = 0; k < 50; k++)
		balancer_done(&b, two[1], UNAVAILABLE, 1, 100);
	assert_int_equal(balancer_state(&b, 1, 100), BALANCER_CLOSED);
	assert_int_equal(balancer_pick(&b, 100), 1);
	balancer_free(&b);
}

static void
test_sync_keeps_state(void **state)
{
	static const char *const next[] = { "c:3", "d:4", "b:2" };
	const uint32_t w[] = { 7 };
	struct balancer b;
	int i;

	(void)state;
	setup3(&b, 1);
	balancer_set_weights(&b, three + 1, w, 1);
	fail_b(&b, 5, 100);
	balancer_sync(&b, next, 3);
	assert_int_equal(b.n, 3);
	i = balancer_find(&b, "b:2");
	assert_int_equal(i, 2);
	assert_int_equal(b.nodes[i].weight, 7);
	assert_int_equal(balancer_state(&b, (size_t)i, 100), BALANCER_OPEN);
	assert_int_equal(b.nodes[balancer_find(&b, "d:4")].weight,
	    BALANCER_WEIGHT_DEFAULT);
	assert_int_equal(balancer_find(&b, "a:1"), -1);
	/* A call to a node that left meanwhile is forgotten. */
	balancer_done(&b, "a:1", UNAVAILABLE, 1, 100);
	/* Back to round robin: weights are the default again. */
	balancer_clear_weights(&b);
	assert_false(b.weighted);
	assert_int_equal(b.nodes[i].weight, BALANCER_WEIGHT_DEFAULT);
	balancer_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_round_robin_without_weights),
		cmocka_unit_test(test_weights_set_the_share),
		cmocka_unit_test(test_weight_zero_gets_nothing),
		cmocka_unit_test(test_p2c_avoids_the_slow_node),
		cmocka_unit_test(test_failure_counts_as_slow),
		cmocka_unit_test(test_inflight),
		cmocka_unit_test(test_pick_key),
		cmocka_unit_test(test_breaker_consecutive),
		cmocka_unit_test(test_backoff_is_capped),
		cmocka_unit_test(test_breaker_error_rate),
		cmocka_unit_test(test_error_rate_window_resets),
		cmocka_unit_test(test_never_ejects_all),
		cmocka_unit_test(test_sync_keeps_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
