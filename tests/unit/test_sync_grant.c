/*
 * sync-srv's pure decisions (services/sync/grant.c): who may take a lock
 * beside its holders and the waiters ahead, and the checks on names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "grant.h"

#define X { SYNC_EXCLUSIVE, 0 }
#define S { SYNC_SHARED, 0 }
#define SEM(n) { SYNC_SEMAPHORE, n }

static enum sync_verdict
decide(struct sync_claim me, const struct sync_claim *held, size_t nheld,
    const struct sync_claim *ahead, size_t nahead)
{
	return sync_decide(&me, held, nheld, ahead, nahead);
}

static void
test_exclusive(void **state)
{
	struct sync_claim x[] = { X }, s[] = { S };

	(void)state;
	assert_int_equal(decide((struct sync_claim)X, NULL, 0, NULL, 0),
	    SYNC_GRANT);
	assert_int_equal(decide((struct sync_claim)X, x, 1, NULL, 0),
	    SYNC_WAIT);
	assert_int_equal(decide((struct sync_claim)X, s, 1, NULL, 0),
	    SYNC_WAIT);
	/* FIFO: a free lock with a waiter ahead is not taken. */
	assert_int_equal(decide((struct sync_claim)X, NULL, 0, x, 1),
	    SYNC_WAIT);
}

static void
test_shared(void **state)
{
	struct sync_claim x[] = { X }, s[] = { S, S, S };

	(void)state;
	assert_int_equal(decide((struct sync_claim)S, s, 3, NULL, 0),
	    SYNC_GRANT);
	assert_int_equal(decide((struct sync_claim)S, x, 1, NULL, 0),
	    SYNC_WAIT);
	/* A reader does not overtake a queued writer. */
	assert_int_equal(decide((struct sync_claim)S, s, 2, x, 1),
	    SYNC_WAIT);
	assert_int_equal(decide((struct sync_claim)S, NULL, 0, s, 2),
	    SYNC_GRANT);
}

static void
test_semaphore(void **state)
{
	struct sync_claim three[] = { SEM(3), SEM(3), SEM(3) },
	    other[] = { SEM(2) }, x[] = { X };

	(void)state;
	assert_int_equal(decide((struct sync_claim)SEM(3), three, 2, NULL, 0),
	    SYNC_GRANT);
	assert_int_equal(decide((struct sync_claim)SEM(3), three, 3, NULL, 0),
	    SYNC_WAIT);
	assert_int_equal(decide((struct sync_claim)SEM(3), three, 2, three,
	    1), SYNC_WAIT);
	assert_int_equal(decide((struct sync_claim)SEM(3), other, 1, NULL, 0),
	    SYNC_MISMATCH);
	assert_int_equal(decide((struct sync_claim)SEM(3), NULL, 0, other, 1),
	    SYNC_MISMATCH);
	assert_int_equal(decide((struct sync_claim)SEM(3), x, 1, NULL, 0),
	    SYNC_WAIT);
	assert_int_equal(decide((struct sync_claim)X, three, 1, NULL, 0),
	    SYNC_WAIT);
	assert_int_equal(decide((struct sync_claim)SEM(1), NULL, 0, NULL, 0),
	    SYNC_GRANT);
}

static void
test_names(void **state)
{
	char long_name[SYNC_NAME_MAX + 2];

	(void)state;
	assert_null(sync_name_problem("jobs/nightly"));
	assert_null(sync_name_problem("caf\xc3\xa9"));
	assert_non_null(sync_name_problem(""));
	assert_non_null(sync_name_problem(NULL));
	assert_non_null(sync_name_problem("a\nb"));
	assert_non_null(sync_name_problem("\xff"));
	assert_non_null(sync_name_problem("\xc3"));
	assert_non_null(sync_name_problem("\xc0\xaf"));     /* overlong */
	assert_non_null(sync_name_problem("\xed\xa0\x80")); /* surrogate */
	memset(long_name, 'a', SYNC_NAME_MAX);
	long_name[SYNC_NAME_MAX] = '\0';
	assert_null(sync_name_problem(long_name));
	long_name[SYNC_NAME_MAX] = 'a';
	long_name[SYNC_NAME_MAX + 1] = '\0';
	assert_non_null(sync_name_problem(long_name));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exclusive),
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_semaphore),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
