/*
 * Unit tests for the outbox (common/outbox.c) with a fake sender: items
 * go out in order and in batches, a failed send keeps them for the next
 * try, a full buffer drops (counted) instead of blocking, stop sends
 * what is left, and a lingering outbox sends full batches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <pthread.h>
#include <cmocka.h>

#include "platform/clock.h"
#include "platform/outbox.h"

#define WAIT_MS 10000           /* a hang fails instead of blocking */

struct item {
	struct outbox_item head;
	int value;
	uint64_t seq;
};

static struct {
	pthread_mutex_t mu;
	int fail;                       /* sends to refuse */
	int got[64], ngot, sends;
	size_t largest;
	int freed;
} F = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int
fake_send(void *arg, struct outbox_item *first, size_t n, int deadline_ms,
    char *err, size_t errlen)
{
	int rc = 0;

	(void)arg;
	(void)deadline_ms;
	pthread_mutex_lock(&F.mu);
	F.sends++;
	if (F.fail > 0) {
		F.fail--;
		rc = 14;        /* UNAVAILABLE */
		snprintf(err, errlen, "away");
	} else {
		for (struct outbox_item *it = first; n > 0; it = it->next, n--)
			if (F.ngot < 64)
				F.got[F.ngot++] = ((struct item *)it)->value;
	}
	pthread_mutex_unlock(&F.mu);
	return rc;
}

static void
fake_free(void *arg, struct outbox_item *it)
{
	(void)arg;
	__atomic_add_fetch(&F.freed, 1, __ATOMIC_RELAXED);
	free(it);
}

static void
fake_accepted(void *arg, struct outbox_item *it, uint64_t seq)
{
	(void)arg;
	((struct item *)it)->seq = seq;
}

static const struct outbox_ops ops = {
	.what = "test items",
	.to = "the fake",
	.send = fake_send,
	.free_item = fake_free,
	.accepted = fake_accepted,
};

static struct item *
item_new(int v)
{
	struct item *it = calloc(1, sizeof(*it));

	assert_non_null(it);
	it->value = v;
	it->head.bytes = 10;
	return it;
}

static int
got(void)
{
	int n;

	pthread_mutex_lock(&F.mu);
	n = F.ngot;
	pthread_mutex_unlock(&F.mu);
	return n;
}

static void
wait_got(int n)
{
	int64_t end = plat_now_ms() + WAIT_MS;

	while (got() < n && plat_now_ms() < end)
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	assert_int_equal(got(), n);
}

static void
test_in_order_kept_across_failures_and_bounded(void **state)
{
	struct outbox_limits lim = { .max_items = 5, .max_bytes = 1000,
	    .batch_max = 2, .call_ms = 100, .backoff_min_ms = 1,
	    .backoff_max_ms = 4 };
	struct outbox *o = outbox_new(&ops, NULL, &lim);
	struct outbox_stats st;
	struct item *first = item_new(0);

	(void)state;
	F.fail = 3;
	/* Before the sender starts: five fit, the sixth is dropped. */
	assert_true(outbox_push(o, &first->head));
	for (int i = 1; i < 5; i++)
		assert_true(outbox_push(o, &item_new(i)->head));
	assert_false(outbox_push(o, &item_new(99)->head));
	assert_int_equal(first->seq, 1);
	assert_int_equal(outbox_start(o), 0);
	wait_got(5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(F.got[i], i);
	outbox_stats(o, &st);
	assert_int_equal(st.sent, 5);
	assert_int_equal(st.dropped, 1);
	assert_int_equal(st.send_failures, 3);
	assert_int_equal(st.buffered, 0);
	assert_int_equal(F.sends, 3 + 3);       /* batches of 2, 2, 1 */
	/* Stop sends what is left, then drops. */
	assert_true(outbox_push(o, &item_new(5)->head));
	outbox_stop(o, WAIT_MS);
	assert_int_equal(got(), 6);
	assert_false(outbox_push(o, &item_new(6)->head));
	outbox_free(o);
	assert_int_equal(F.freed, 8);
}

/* With a linger far longer than the test, items wait for a full batch:
 * five items go out as one batch of four, and stop sends the fifth. */
static void
test_linger_sends_full_batches(void **state)
{
	struct outbox_limits lim = { .max_items = 10, .max_bytes = 1000,
	    .batch_max = 4, .call_ms = 100, .backoff_min_ms = 1,
	    .backoff_max_ms = 4, .linger_ms = 10 * WAIT_MS };
	struct outbox *o = outbox_new(&ops, NULL, &lim);

	(void)state;
	pthread_mutex_lock(&F.mu);
	F.ngot = F.sends = F.freed = 0;
	pthread_mutex_unlock(&F.mu);
	assert_int_equal(outbox_start(o), 0);
	for (int i = 0; i < 5; i++)
		assert_true(outbox_push(o, &item_new(i)->head));
	wait_got(4);
	assert_int_equal(F.sends, 1);
	outbox_stop(o, WAIT_MS);
	assert_int_equal(got(), 5);
	assert_int_equal(F.sends, 2);
	outbox_free(o);
	assert_int_equal(F.freed, 5);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_kept_across_failures_and_bounded),
		cmocka_unit_test(test_linger_sends_full_batches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
