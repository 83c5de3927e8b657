/* Unit tests for the client-side rate limiter (common/token_bucket.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "platform/token_bucket.h"

static int
take_all(struct token_bucket *tb, int64_t now)
{
	int n = 0;

	while (token_bucket_take(tb, now) && n < 100000)
		n++;
	return n;
}

static void
test_burst_then_rate(void **state)
{
	struct token_bucket tb;

	(void)state;
	token_bucket_init(&tb, 10, 5, 1000);
	assert_int_equal(take_all(&tb, 1000), 5);
	/* 10 a second: one every 100 ms. */
	assert_int_equal(take_all(&tb, 1099), 0);
	assert_int_equal(take_all(&tb, 1100), 1);
	assert_int_equal(take_all(&tb, 1400), 3);
	/* Idle for long: no more than the burst saved. */
	assert_int_equal(take_all(&tb, 100000), 5);
}

static void
test_default_burst(void **state)
{
	struct token_bucket tb;

	(void)state;
	token_bucket_init(&tb, 20, 0, 0);
	assert_int_equal(take_all(&tb, 0), 20);
	token_bucket_init(&tb, 0.5, 0, 0);
	assert_int_equal(take_all(&tb, 0), 1);
	assert_int_equal(take_all(&tb, 1999), 0);
	assert_int_equal(take_all(&tb, 2000), 1);
}

static void
test_unlimited(void **state)
{
	struct token_bucket tb;

	(void)state;
	token_bucket_init(&tb, 0, 0, 0);
	for (int i = 0; i < 1000; i++)
		assert_true(token_bucket_take(&tb, 0));
}

static void
test_set_keeps_tokens(void **state)
{
	struct token_bucket tb;

	(void)state;
	token_bucket_init(&tb, 10, 10, 0);
	assert_int_equal(take_all(&tb, 0) , 10);
	token_bucket_set(&tb, 100, 100, 0);
	assert_int_equal(take_all(&tb, 0), 0);
	assert_int_equal(take_all(&tb, 100), 10);
	/* A smaller burst cuts what was saved. */
	token_bucket_set(&tb, 1, 2, 10000);
	assert_int_equal(take_all(&tb, 10000), 2);
}

static void
test_clock_back(void **state)
{
	struct token_bucket tb;

	(void)state;
	token_bucket_init(&tb, 10, 1, 5000);
	assert_int_equal(take_all(&tb, 5000), 1);
	assert_int_equal(take_all(&tb, 1000), 0);
	assert_int_equal(take_all(&tb, 1100), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_rate),
		cmocka_unit_test(test_default_burst),
		cmocka_unit_test(test_unlimited),
		cmocka_unit_test(test_set_keeps_tokens),
		cmocka_unit_test(test_clock_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
