/* Unit tests for the node selector: pure logic, time passed in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "platform/selector.h"

static const char *const three[] = { "a:1", "b:2", "c:3" };

static void
test_round_robin(void **state)
{
	struct selector s;

	(void)state;
	selector_init(&s, 1000);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(selector_pick(&s, three, 3, 100), 0);
		assert_int_equal(selector_pick(&s, three, 3, 100), 1);
		assert_int_equal(selector_pick(&s, three, 3, 100), 2);
	}
}

static void
test_empty(void **state)
{
	struct selector s;

	(void)state;
	selector_init(&s, 0);
	assert_int_equal(s.cooldown_ms, 2000);
	assert_int_equal(selector_pick(&s, NULL, 0, 100), -1);
	assert_int_equal(selector_pick(&s, three, 0, 100), -1);
	/* A single node is always it. */
	assert_int_equal(selector_pick(&s, three, 1, 100), 0);
	assert_int_equal(selector_pick(&s, three, 1, 100), 0);
}

static void
test_skips_failed(void **state)
{
	struct selector s;

	(void)state;
	selector_init(&s, 1000);
	selector_mark_failed(&s, "b:2", 100);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(selector_pick(&s, three, 3, 200), 0);
		assert_int_equal(selector_pick(&s, three, 3, 200), 2);
	}
}

static void
test_cooldown_expires(void **state)
{
	struct selector s;

	(void)state;
	selector_init(&s, 1000);
	selector_mark_failed(&s, "a:1", 100);
	assert_int_equal(selector_pick(&s, three, 3, 1099), 1);
	assert_int_equal(selector_pick(&s, three, 3, 1099), 2);
	assert_int_equal(selector_pick(&s, three, 3, 1099), 1);
	assert_int_equal(selector_pick(&s, three, 3, 1099), 2);
	/* At exactly cooldown_ms after the failure it is back. */
	assert_int_equal(selector_pick(&s, three, 3, 1100), 0);
	assert_int_equal(selector_pick(&s, three, 3, 1100), 1);
	assert_int_equal(selector_pick(&s, three, 3, 1100), 2);
	assert_int_equal(selector_pick(&s, three, 3, 1100), 0);
}

static void
test_all_failed_picks_oldest(void **state)
{
	struct selector s;

	(void)state;
	selector_init(&s, 1000);
	selector_mark_failed(&s, "a:1", 300);
	selector_mark_failed(&s, "b:2", 100);
	selector_mark_failed(&s, "c:3", 200);
	assert_int_equal(selector_pick(&s, three, 3, 400), 1);
	assert_int_equal(selector_pick(&s, three, 3, 400), 1);
	/* b fails again: c is now the oldest failure. */
	selector_mark_failed(&s, "b:2", 400);
	assert_int_equal(selector_pick(&s, three, 3, 450), 2);
}

static void
test_mark_ok_clears(void **state)
{
	struct selector s;

	(void)state;
	selector_init(&s, 1000);
	selector_mark_failed(&s, "a:1", 100);
	assert_int_equal(selector_pick(&s, three, 3, 200), 1);
	selector_mark_ok(&s, "a:1");
	assert_int_equal(selector_pick(&s, three, 3, 200), 2);
	assert_int_equal(selector_pick(&s, three, 3, 200), 0);
	/* Clearing an address never marked is harmless. */
	selector_mark_ok(&s, "z:9");
	assert_int_equal(selector_pick(&s, three, 3, 200), 1);
}

static void
test_node_list_changes(void **state)
{
	static const char *const two[] = { "a:1", "c:3" };
	struct selector s;

	(void)state;
	selector_init(&s, 1000);
	assert_int_equal(selector_pick(&s, three, 3, 100), 0);
	assert_int_equal(selector_pick(&s, three, 3, 100), 1);
	assert_int_equal(selector_pick(&s, three, 3, 100), 2);
	/* A shorter list never yields an index out of range. */
	for (int i = 0; i < 10; i++) {
		int k = selector_pick(&s, two, 2, 100);

		assert_true(k == 0 || k == 1);
	}
}

static void
test_failed_table_full(void **state)
{
	const char *addrs[SELECTOR_MAX_FAILED + 1];
	char names[SELECTOR_MAX_FAILED + 1][16];
	struct selector s;
	int used = 0;

	(void)state;
	selector_init(&s, 100000);
	for (int i = 0; i <= SELECTOR_MAX_FAILED; i++) {
		snprintf(names[i], sizeof(names[i]), "n%d:1", i);
		addrs[i] = names[i];
	}
	/* Fill the table: every slot holds a mark, oldest is n0. */
	for (int i = 0; i < SELECTOR_MAX_FAILED; i++)
		selector_mark_failed(&s, addrs[i], 10 + i);
	for (int i = 0; i < SELECTOR_MAX_FAILED; i++)
		if (s.failed[i].failed_at_ms != 0)
			used++;
	assert_int_equal(used, SELECTOR_MAX_FAILED);
	/* Only the unmarked node is eligible. */
	assert_int_equal(selector_pick(&s, addrs, SELECTOR_MAX_FAILED + 1,
	    1000), SELECTOR_MAX_FAILED);

	/* One more failure evicts the oldest mark (n0), which is then
	 * eligible again while n64 cools down. */
	selector_mark_failed(&s, addrs[SELECTOR_MAX_FAILED], 1000);
	assert_int_equal(selector_pick(&s, addrs, SELECTOR_MAX_FAILED + 1,
	    1001), 0);
	assert_int_equal(selector_pick(&s, addrs, SELECTOR_MAX_FAILED + 1,
	    1001), 0);

	/* Re-marking an address already present does not take a slot. */
	selector_mark_failed(&s, addrs[5], 1002);
	assert_int_equal(selector_pick(&s, addrs, SELECTOR_MAX_FAILED + 1,
	    1003), 0);
}

static void
test_long_address(void **state)
{
	char longa[300], longb[300];
	const char *addrs[2];
	struct selector s;

	(void)state;
	memset(longa, 'x', sizeof(longa) - 1);
	longa[sizeof(longa) - 1] = '\0';
	memcpy(longb, longa, sizeof(longb));
	longb[200] = 'y';
	addrs[0] = longa;
	addrs[1] = "b:2";
	selector_init(&s, 1000);
	selector_mark_failed(&s, longa, 100);
	assert_int_equal(selector_pick(&s, addrs, 2, 200), 1);
	assert_int_equal(selector_pick(&s, addrs, 2, 200), 1);
	selector_mark_ok(&s, longb);      /* same 127-byte prefix */
	assert_int_equal(selector_pick(&s, addrs, 2, 200), 0);
}

/* Keys: the same node every time, spread over the nodes, and a node
 * leaving moves only its own keys; a failed node passes its keys on. */
static void
test_pick_key(void **state)
{
	static const char *const two[] = { "a:1", "c:3" };
	struct selector s;
	int count[3] = { 0 }, pick[1000];

	(void)state;
	selector_init(&s, 1000);
	assert_int_equal(selector_pick_key(&s, three, 0, 1, 0), -1);
	for (uint64_t k = 0; k < 1000; k++) {
		pick[k] = selector_pick_key(&s, three, 3, k * 0x9e3779b97f4a7c15ULL,
		    0);
		assert_int_equal(selector_pick_key(&s, three, 3,
		    k * 0x9e3779b97f4a7c15ULL, 0), pick[k]);
		count[pick[k]]++;
	}
	for (int i = 0; i < 3; i++)
		assert_true(count[i] > 200);
	for (uint64_t k = 0; k < 1000; k++) {
		int p2 = selector_pick_key(&s, two, 2, k * 0x9e3779b97f4a7c15ULL,
		    0);

		if (pick[k] != 1)       /* not b's: stays where it was */
			assert_string_equal(two[p2], three[pick[k]]);
	}
	/* b failed: its keys go elsewhere until the cooldown ends. */
	selector_mark_failed(&s, "b:2", 100);
	for (uint64_t k = 0; k < 1000; k++) {
		int p = selector_pick_key(&s, three, 3,
		    k * 0x9e3779b97f4a7c15ULL, 500);

		assert_int_not_equal(p, 1);
		if (pick[k] != 1)
			assert_int_equal(p, pick[k]);
	}
	for (uint64_t k = 0; k < 1000; k++)
		assert_int_equal(selector_pick_key(&s, three, 3,
		    k * 0x9e3779b97f4a7c15ULL, 1100), pick[k]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_robin),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_skips_failed),
		cmocka_unit_test(test_cooldown_expires),
		cmocka_unit_test(test_all_failed_picks_oldest),
		cmocka_unit_test(test_mark_ok_clears),
		cmocka_unit_test(test_node_list_changes),
		cmocka_unit_test(test_failed_table_full),
		cmocka_unit_test(test_long_address),
		cmocka_unit_test(test_pick_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
