/*
 * Unit tests for the group-commit batcher (common/batcher.c) with fake
 * build/apply/answer callbacks: per-call outcomes, order, answers only
 * after the batch's apply, limits, deadlines, a failed apply, the
 * answerer overlapping the next batch, and stop draining the queue.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "platform/batcher.h"
#include "platform/clock.h"

#define MAX_CALLS 512
/* The callbacks run on the batcher's threads, where a cmocka assertion
 * cannot fail the test: they count what they found wrong instead. */
#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
		__atomic_add_fetch(&F.violations, 1, __ATOMIC_RELAXED); \
	} \
} while (0)
/* Waits on a condition give up after this: a hang fails the test instead
 * of blocking the suite (no test asserts a time). */
#define WAIT_MS 30000

struct tcall {
	struct batcher_call call;
	int id;
	int batch_seq;          /* which apply it went through; -1 none */
	int answered_at;        /* the event counter at its answer */
	enum plat_code answered;
	char err[BATCHER_ERR_MAX];
};

struct tbatch {
	int seq;
	size_t n;
	struct tcall **calls;
	int applied_at;         /* the event counter when apply returned */
};

/* The fake server: what each callback saw, under one lock. */
static struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int events;             /* counts applies and answers, in order */
	int batches;
	size_t sizes[MAX_CALLS];  /* calls per batch */
	size_t bytes[MAX_CALLS];  /* bytes per batch */
	size_t items[MAX_CALLS];  /* items per batch */
	int violations;           /* CHECKs that failed */
	int answers;
	int order[MAX_CALLS];     /* call ids in answer order */
	int released;
	/* Knobs. */
	int fail_every;         /* apply fails calls with id % fail_every == 1 */
	enum plat_code apply_code;      /* apply's return */
	int hold_apply;         /* apply waits while set */
	int in_apply;
	int hold_answer;        /* answer of the call with id hold_id waits */
	int hold_id;
	int in_answer;
} F;

static void
fake_reset(void)
{
	pthread_mutex_lock(&F.mu);
	F.events = F.batches = F.answers = F.released = 0;
	F.fail_every = 0;
	F.apply_code = PLAT_OK;
	F.hold_apply = F.in_apply = 0;
	F.hold_answer = F.in_answer = 0;
	F.hold_id = -1;
	F.violations = 0;
	memset(F.items, 0, sizeof(F.items));
	memset(F.sizes, 0, sizeof(F.sizes));
	memset(F.bytes, 0, sizeof(F.bytes));
	pthread_mutex_unlock(&F.mu);
}

/* Waits (F.mu held) until *v reaches at least want. */
static void
wait_for(const int *v, int want)
{
	int64_t end = plat_now_ms() + WAIT_MS;
	struct timespec ts;

	while (*v < want) {
		assert_true(plat_now_ms() < end);
		ts = plat_deadline_ts(100);
		pthread_cond_timedwait(&F.cv, &F.mu, &ts);
	}
}

static void *
fake_build(void *arg, struct batcher_call *const *calls, size_t n)
{
	struct tbatch *b = calloc(1, sizeof(*b));

	CHECK(arg == &F);
	CHECK(n >= 1);
	if (b == NULL)
		abort();
	b->n = n;
	if ((b->calls = calloc(n, sizeof(*b->calls))) == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		b->calls[i] = (struct tcall *)calls[i];
	return b;
}

static enum plat_code
fake_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct tbatch *b = batch;
	size_t bytes = 0, items = 0;

	(void)arg;
	CHECK(timeout_ms > 0 && timeout_ms <= 1000);
	pthread_mutex_lock(&F.mu);
	F.in_apply++;
	pthread_cond_broadcast(&F.cv);
	while (F.hold_apply)
		pthread_cond_wait(&F.cv, &F.mu);
	b->seq = F.batches++;
	F.sizes[b->seq] = b->n;
	for (size_t i = 0; i < b->n; i++) {
		struct tcall *c = b->calls[i];

		CHECK(c->call.code == PLAT_OK);
		CHECK(c->batch_seq == -1);
		c->batch_seq = b->seq;
		bytes += c->call.bytes;
		items += c->call.items;
		if (F.fail_every > 0 && c->id % F.fail_every == 1) {
			c->call.code = PLAT_FAILED_PRECONDITION;
			snprintf(c->call.err, sizeof(c->call.err),
			    "call %d conflicts", c->id);
		}
	}
	F.bytes[b->seq] = bytes;
	F.items[b->seq] = items;
	b->applied_at = F.events++;
	pthread_mutex_unlock(&F.mu);
	if (F.apply_code != PLAT_OK)
		snprintf(err, errlen, "%s", "database unavailable");
	return F.apply_code;
}

static void
fake_answer(void *arg, void *batch, struct batcher_call *call)
{
	struct tcall *c = (struct tcall *)call;
	struct tbatch *b = batch;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	if (b != NULL)
		/* Its batch's apply returned before this answer. */
		CHECK(b->applied_at < F.events);
	CHECK(c->answered_at == -1);   /* exactly once */
	if (F.hold_answer && c->id == F.hold_id) {
		F.in_answer++;
		pthread_cond_broadcast(&F.cv);
		while (F.hold_answer)
			pthread_cond_wait(&F.cv, &F.mu);
	}
	c->answered_at = F.events++;
	c->answered = call->code;
	snprintf(c->err, sizeof(c->err), "%s", call->err);
	F.order[F.answers++] = c->id;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

static void
fake_release(void *arg, void *batch)
{
	struct tbatch *b = batch;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	F.released++;
	pthread_mutex_unlock(&F.mu);
	free(b->calls);
	free(b);
}

static const struct batcher_ops fake_ops = {
	.build = fake_build,
	.apply = fake_apply,
	.answer = fake_answer,
	.release = fake_release,
};

static struct batcher *
start(size_t max_items, size_t max_bytes)
{
	struct batcher_limits lim = {
		.max_items = max_items,
		.max_bytes = max_bytes,
		.max_timeout_ms = 1000,
	};
	struct batcher *b;

	fake_reset();
	b = batcher_new("test", &fake_ops, &F, &lim);
	assert_non_null(b);
	return b;
}

static void
submit_by(struct batcher *b, struct tcall *c, int id, size_t items,
    size_t bytes, int64_t deadline_ms)
{
	memset(c, 0, sizeof(*c));
	c->id = id;
	c->batch_seq = -1;
	c->answered_at = -1;
	c->call.deadline_ms = deadline_ms;
	c->call.items = items;
	c->call.bytes = bytes;
	batcher_submit(b, &c->call);
}

static void
submit(struct batcher *b, struct tcall *c, int id, size_t items,
    size_t bytes)
{
	submit_by(b, c, id, items, bytes, INT64_MAX);
}

static void
set_knobs(int fail_every, enum plat_code apply_code)
{
	pthread_mutex_lock(&F.mu);
	F.fail_every = fail_every;
	F.apply_code = apply_code;
	pthread_mutex_unlock(&F.mu);
}

/* Stops and frees b; no callback found anything wrong. */
static void
finish(struct batcher *b)
{
	batcher_free(b);
	assert_int_equal(F.violations, 0);
}

/* Holds the writer in its first apply so the calls submitted meanwhile
 * queue up for the next batch. */
static void
hold_first_apply(struct batcher *b, struct tcall *first)
{
	pthread_mutex_lock(&F.mu);
	F.hold_apply = 1;
	pthread_mutex_unlock(&F.mu);
	submit(b, first, 0, 1, 0);
	pthread_mutex_lock(&F.mu);
	wait_for(&F.in_apply, 1);
	pthread_mutex_unlock(&F.mu);
}

static void
release_apply(void)
{
	pthread_mutex_lock(&F.mu);
	F.hold_apply = 0;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

static void
wait_answers(int n)
{
	pthread_mutex_lock(&F.mu);
	wait_for(&F.answers, n);
	pthread_mutex_unlock(&F.mu);
}

static void
test_outcomes_and_order(void **state)
{
	static struct tcall c[100];
	struct batcher *b = start(1000, 1 << 20);

	(void)state;
	hold_first_apply(b, &c[0]);
	set_knobs(3, PLAT_OK);
	for (int i = 1; i < 100; i++)
		submit(b, &c[i], i, 1, 10);
	release_apply();
	wait_answers(100);
	for (int i = 0; i < 100; i++) {
		/* Answered in submission order, each after its apply. */
		assert_int_equal(F.order[i], i);
		assert_true(c[i].answered_at > 0);
		if (i % 3 == 1) {
			/* A failed check fails its own call only. */
			assert_int_equal(c[i].answered,
			    PLAT_FAILED_PRECONDITION);
			char want[64];
			snprintf(want, sizeof(want), "call %d conflicts", i);
			assert_string_equal(c[i].err, want);
		} else {
			assert_int_equal(c[i].answered, PLAT_OK);
		}
	}
	/* The 99 calls queued while the first batch applied went as one. */
	assert_int_equal(F.batches, 2);
	assert_int_equal(F.sizes[0], 1);
	assert_int_equal(F.sizes[1], 99);
	assert_int_equal(c[0].batch_seq, 0);
	assert_int_equal(c[99].batch_seq, 1);
	finish(b);
	assert_int_equal(F.released, 2);
}

static void
test_limits(void **state)
{
	static struct tcall c[40];
	struct batcher *b = start(8, 100);
	size_t total = 0;

	(void)state;
	hold_first_apply(b, &c[0]);
	/* 20 calls of one item, then 10 of 3 items, then 9 of 60 bytes. */
	for (int i = 1; i < 21; i++)
		submit(b, &c[i], i, 1, 1);
	for (int i = 21; i < 31; i++)
		submit(b, &c[i], i, 3, 1);
	for (int i = 31; i < 40; i++)
		submit(b, &c[i], i, 1, 60);
	release_apply();
	wait_answers(40);
	for (int i = 0; i < 40; i++)
		assert_int_equal(F.order[i], i);
	for (int k = 0; k < F.batches; k++) {
		total += F.sizes[k];
		assert_true(F.bytes[k] <= 100);
		assert_true(F.items[k] <= 8);
	}
	assert_int_equal(total, 40);
	/* Whole calls: after 17..20 and 21, the 3-item ones go two to a
	 * batch; the 60-byte ones one to a batch. */
	assert_int_equal(c[17].batch_seq, c[21].batch_seq);
	assert_int_not_equal(c[21].batch_seq, c[22].batch_seq);
	assert_int_equal(c[22].batch_seq, c[23].batch_seq);
	assert_int_not_equal(c[23].batch_seq, c[24].batch_seq);
	assert_int_not_equal(c[32].batch_seq, c[33].batch_seq);
	/* One call over the limits still goes, alone. */
	submit(b, &c[0], 0, 50, 1000);
	wait_answers(41);
	assert_int_equal(c[0].answered, PLAT_OK);
	assert_int_equal(F.sizes[F.batches - 1], 1);
	assert_int_equal(batcher_batches(b), (uint64_t)F.batches);
	assert_int_equal(batcher_items(b), 1 + 20 + 30 + 9 + 50);
	assert_int_equal(batcher_pending(b), 0);
	finish(b);
}

static void
test_failed_apply_fails_all(void **state)
{
	static struct tcall c[10];
	struct batcher *b = start(100, 1 << 20);

	(void)state;
	hold_first_apply(b, &c[0]);
	/* The calls' own failures give way to the transaction's. */
	set_knobs(2, PLAT_UNAVAILABLE);
	for (int i = 1; i < 10; i++)
		submit(b, &c[i], i, 1, 1);
	release_apply();
	wait_answers(10);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(c[i].answered, PLAT_UNAVAILABLE);
		assert_string_equal(c[i].err, "database unavailable");
	}
	assert_int_equal(batcher_batches(b), 0);
	assert_int_equal(batcher_items(b), 0);
	finish(b);
}

static void
test_deadline_passed(void **state)
{
	static struct tcall c[4];
	struct batcher *b = start(100, 1 << 20);

	(void)state;
	hold_first_apply(b, &c[0]);
	submit_by(b, &c[1], 1, 1, 1, 0);        /* long gone: never built */
	submit_by(b, &c[2], 2, 1, 1, plat_now_ms() + 600000);
	release_apply();
	wait_answers(3);
	assert_int_equal(c[1].answered, PLAT_DEADLINE_EXCEEDED);
	assert_int_equal(c[1].batch_seq, -1);
	assert_int_equal(c[2].answered, PLAT_OK);
	assert_int_equal(c[2].batch_seq, 1);
	assert_int_equal(F.sizes[1], 1);
	finish(b);
}

/* The writer applies the next batch while the answerer still answers
 * the one before. */
static void
test_answerer_overlaps_writer(void **state)
{
	static struct tcall c[2];
	struct batcher *b = start(100, 1 << 20);

	(void)state;
	pthread_mutex_lock(&F.mu);
	F.hold_answer = 1;
	F.hold_id = 0;
	pthread_mutex_unlock(&F.mu);
	submit(b, &c[0], 0, 1, 1);
	pthread_mutex_lock(&F.mu);
	wait_for(&F.in_answer, 1);
	pthread_mutex_unlock(&F.mu);
	submit(b, &c[1], 1, 1, 1);
	pthread_mutex_lock(&F.mu);
	wait_for(&F.batches, 2);        /* applied while 0 is unanswered */
	assert_int_equal(F.answers, 0);
	F.hold_answer = 0;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	wait_answers(2);
	assert_int_equal(F.order[0], 0);
	assert_int_equal(F.order[1], 1);
	finish(b);
}

/* Stop answers every queued call (each applied), then returns. */
static void
test_stop_drains(void **state)
{
	static struct tcall c[300];
	struct batcher *b = start(16, 1 << 20);

	(void)state;
	hold_first_apply(b, &c[0]);
	for (int i = 1; i < 300; i++)
		submit(b, &c[i], i, 1, 1);
	assert_int_equal(batcher_pending(b), 300);
	release_apply();
	batcher_stop(b);
	assert_int_equal(F.answers, 300);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(F.order[i], i);
		assert_int_equal(c[i].answered, PLAT_OK);
		assert_true(c[i].batch_seq >= 0);
	}
	assert_int_equal(F.released, F.batches);
	assert_int_equal(batcher_pending(b), 0);
	batcher_stop(b);        /* twice is fine */
	finish(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes_and_order),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_failed_apply_fails_all),
		cmocka_unit_test(test_deadline_passed),
		cmocka_unit_test(test_answerer_overlaps_writer),
		cmocka_unit_test(test_stop_drains),
	};

	pthread_mutex_init(&F.mu, NULL);
	plat_cond_init(&F.cv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
