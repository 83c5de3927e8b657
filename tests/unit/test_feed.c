/*
 * test_feed: the change feed's hand-off logic (common/feed.c) over an
 * in-memory store and fake streams: a local commit handed over when it
 * follows, a kick after a gap, health, and a watcher's seam between the
 * replay and live rows (neither gap nor duplicate, caught_up once), also
 * when its buffer overflows during the replay.
 *
 * Waits poll a condition with a generous bound; nothing asserts a time.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "feed_internal.h"
#include "platform/xalloc.h"

#define MAX_ROWS 20000

/* ---- rows and the store ---- */

struct trow {
	int refs;               /* atomic */
	int64_t rev;
	size_t size;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct trow *rows[MAX_ROWS + 1];        /* by revision */
	int64_t head;
	bool fail;              /* reads answer UNAVAILABLE */
	bool gate;              /* replay reads wait for it to open */
	bool gated;             /* a replay read is waiting */
} T = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void
trow_ref(void *r)
{
	__atomic_add_fetch(&((struct trow *)r)->refs, 1, __ATOMIC_RELAXED);
}

static void
trow_unref(void *r)
{
	struct trow *t = r;

	if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(t);
}

/* Stores rows head+1 .. head+n; returns the first. */
static int64_t
store_append(int n)
{
	int64_t first;

	pthread_mutex_lock(&T.mu);
	first = T.head + 1;
	for (int i = 0; i < n; i++) {
		struct trow *r = xcalloc(1, sizeof(*r));

		r->refs = 1;
		r->size = 1;
		r->rev = ++T.head;
		T.rows[r->rev] = r;
	}
	pthread_mutex_unlock(&T.mu);
	return first;
}

static void
store_reset(void)
{
	pthread_mutex_lock(&T.mu);
	for (int64_t i = 1; i <= T.head; i++) {
		trow_unref(T.rows[i]);
		T.rows[i] = NULL;
	}
	T.head = 0;
	T.fail = T.gate = T.gated = false;
	pthread_mutex_unlock(&T.mu);
}

static void
gate_set(bool closed)
{
	pthread_mutex_lock(&T.mu);
	T.gate = closed;
	pthread_cond_broadcast(&T.cv);
	pthread_mutex_unlock(&T.mu);
}

static enum plat_code
t_head(void *arg, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	enum plat_code code = PLAT_OK;

	(void)arg;
	(void)timeout_ms;
	pthread_mutex_lock(&T.mu);
	if (T.fail) {
		snprintf(err, errlen, "store down");
		code = PLAT_UNAVAILABLE;
	}
	*rev = T.head;
	pthread_mutex_unlock(&T.mu);
	return code;
}

static enum plat_code
t_read(void *arg, const void *watch, int64_t after, int64_t upto,
    int limit, int64_t timeout_ms, struct plat_feed_page *out, char *err,
    size_t errlen)
{
	(void)arg;
	(void)timeout_ms;
	pthread_mutex_lock(&T.mu);
	while (watch != NULL && T.gate) {
		T.gated = true;
		pthread_cond_wait(&T.cv, &T.mu);
	}
	if (T.fail) {
		pthread_mutex_unlock(&T.mu);
		snprintf(err, errlen, "store down");
		return PLAT_UNAVAILABLE;
	}
	for (int64_t r = after + 1; r <= T.head && (upto <= 0 || r <= upto) &&
	    out->n < (size_t)limit; r++) {
		trow_ref(T.rows[r]);
		plat_feed_page_push(out, T.rows[r]);
	}
	pthread_mutex_unlock(&T.mu);
	return PLAT_OK;
}

/* A watch is a divisor: the revisions it matches. */
static bool
t_match(const void *watch, const void *row)
{
	return ((const struct trow *)row)->rev % *(const int *)watch == 0;
}

/* ---- fake streams ---- */

struct fstream {
	pthread_mutex_t mu;
	int refs;
	int64_t got[MAX_ROWS];
	size_t ngot;
	size_t caught_up_at;    /* rows before the marker; -1: none */
	int ncaught_up;
	bool closed;
	int finished;           /* the code it was ended with */
	void (*on_close)(plat_stream *, void *);
	void *on_close_arg;
};

static struct fstream *
fs_new(void)
{
	struct fstream *s = xcalloc(1, sizeof(*s));

	pthread_mutex_init(&s->mu, NULL);
	s->refs = 1;
	s->caught_up_at = (size_t)-1;
	return s;
}

#define FS(st) ((struct fstream *)(void *)(st))
#define ST(s) ((plat_stream *)(void *)(s))

static void
fs_ref(plat_stream *st)
{
	__atomic_add_fetch(&FS(st)->refs, 1, __ATOMIC_RELAXED);
}

static void
fs_unref(plat_stream *st)
{
	struct fstream *s = FS(st);

	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		pthread_mutex_destroy(&s->mu);
		free(s);
	}
}

static void
fs_on_close(plat_stream *st, void (*cb)(plat_stream *, void *), void *arg)
{
	FS(st)->on_close = cb;
	FS(st)->on_close_arg = arg;
}

static int
fs_closed(plat_stream *st)
{
	int c;

	pthread_mutex_lock(&FS(st)->mu);
	c = FS(st)->closed;
	pthread_mutex_unlock(&FS(st)->mu);
	return c;
}

static size_t
fs_queued(plat_stream *st)
{
	(void)st;
	return 0;
}

static void
fs_finish(plat_stream *st, int code, const char *message)
{
	(void)message;
	pthread_mutex_lock(&FS(st)->mu);
	FS(st)->finished = code;
	FS(st)->closed = true;
	pthread_mutex_unlock(&FS(st)->mu);
}

/* What the runtime does when the client goes: the close callback. */
static void
fs_close(struct fstream *s)
{
	pthread_mutex_lock(&s->mu);
	s->closed = true;
	pthread_mutex_unlock(&s->mu);
	if (s->on_close != NULL)
		s->on_close(ST(s), s->on_close_arg);
}

static int
t_send(plat_stream *st, const void *row)
{
	struct fstream *s = FS(st);
	int rc = -1;

	pthread_mutex_lock(&s->mu);
	if (!s->closed && s->ngot < MAX_ROWS) {
		s->got[s->ngot++] = ((const struct trow *)row)->rev;
		rc = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Only the marker goes through the streams' send. */
static int
fs_send(plat_stream *st, const ProtobufCMessage *msg)
{
	struct fstream *s = FS(st);

	(void)msg;
	pthread_mutex_lock(&s->mu);
	s->ncaught_up++;
	s->caught_up_at = s->ngot;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static void
t_watch_free(void *watch)
{
	free(watch);
}

static const ProtobufCMessage caught_up_marker;

static const struct plat_feed_ops t_ops = {
	.name = "test",
	.page = 7,              /* several pages per replay */
	.head = t_head,
	.read = t_read,
	.revision_at = offsetof(struct trow, rev),
	.size_at = offsetof(struct trow, size),
	.ref = trow_ref,
	.unref = trow_unref,
	.match = t_match,
	.send = t_send,
	.caught_up = &caught_up_marker,
	.watch_free = t_watch_free,
};

/* ---- helpers ---- */

/* Polls cond up to a generous bound: whether it came true. */
static bool
wait_until(bool (*cond)(void *), void *arg)
{
	struct timespec ts = { 0, 1000 * 1000 };

	for (int i = 0; i < 30000; i++) {
		if (cond(arg))
			return true;
		nanosleep(&ts, NULL);
	}
	return cond(arg);
}

static struct plat_feed *feed;
static int64_t want_pos;

static bool
at_position(void *arg)
{
	(void)arg;
	return plat_feed_position(feed) == want_pos;
}

static bool
is_healthy(void *arg)
{
	return plat_feed_healthy(feed) == *(bool *)arg;
}

static bool
gated(void *arg)
{
	bool g;

	(void)arg;
	pthread_mutex_lock(&T.mu);
	g = T.gated;
	pthread_mutex_unlock(&T.mu);
	return g;
}

struct until_rev {
	struct fstream *s;
	int64_t rev;
};

static bool
got_through(void *arg)
{
	struct until_rev *u = arg;
	bool done;

	pthread_mutex_lock(&u->s->mu);
	done = u->s->ncaught_up > 0 && u->s->ngot > 0 &&
	    u->s->got[u->s->ngot - 1] >= u->rev;
	pthread_mutex_unlock(&u->s->mu);
	return done;
}

static void
commit_range(int64_t first, int64_t last)
{
	void **v = xcalloc((size_t)(last - first + 1), sizeof(*v));

	pthread_mutex_lock(&T.mu);
	for (int64_t r = first; r <= last; r++)
		v[r - first] = T.rows[r];
	pthread_mutex_unlock(&T.mu);
	plat_feed_committed(feed, v, (size_t)(last - first + 1));
	free(v);
}

static void
start_at(int rows)
{
	bool yes = true;

	store_append(rows);
	feed = plat_feed_start(&t_ops, NULL, NULL, NULL, NULL);
	assert_non_null(feed);
	want_pos = rows;
	assert_true(wait_until(at_position, NULL));
	assert_true(wait_until(is_healthy, &yes));
}

static int
setup(void **state)
{
	(void)state;
	plat_feed__streams = (struct plat_feed__streams){
		.send = fs_send, .ref = fs_ref, .unref = fs_unref, .on_close = fs_on_close,
		.closed = fs_closed, .queued = fs_queued, .finish = fs_finish,
	};
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	plat_feed_free(feed);
	feed = NULL;
	store_reset();
	return 0;
}

/* Opens a watch of every `divisor`th revision after `after`. */
static struct fstream *
watch(int divisor, int64_t after)
{
	struct fstream *s = fs_new();
	int *w = xcalloc(1, sizeof(*w));
	char err[128];

	*w = divisor;
	assert_int_equal(plat_feed__watch(feed, ST(s), w, after, INT64_MAX,
	    err, sizeof(err)), PLAT_STREAM_OPEN);
	return s;
}

/* The stream got exactly the matching revisions in (after, last], in
 * order, and caught_up once, after every one up to `covered`. */
static void
assert_seamless(struct fstream *s, int divisor, int64_t after, int64_t last,
    int64_t covered)
{
	size_t k = 0;

	pthread_mutex_lock(&s->mu);
	assert_int_equal(s->ncaught_up, 1);
	for (int64_t r = after + 1; r <= last; r++) {
		if (r % divisor != 0)
			continue;
		assert_true(k < s->ngot);
		assert_int_equal(s->got[k], r);
		if (r <= covered)
			assert_true(k < s->caught_up_at);
		k++;
	}
	assert_int_equal(s->ngot, k);
	pthread_mutex_unlock(&s->mu);
}

/* ---- the tests ---- */

static void
test_committed_follows(void **state)
{
	int64_t first;

	(void)state;
	start_at(3);
	first = store_append(2);
	commit_range(first, first + 1);
	/* Handed over in the call, not by a later read. */
	assert_int_equal(plat_feed_position(feed), 5);
}

static void
test_committed_after_gap(void **state)
{
	(void)state;
	start_at(5);
	/* Another writer's row 6 came first; ours is 7. */
	store_append(2);
	commit_range(7, 7);
	want_pos = 7;
	assert_true(wait_until(at_position, NULL));
}

static void
test_health(void **state)
{
	bool no = false, yes = true;

	(void)state;
	T.fail = true;
	feed = plat_feed_start(&t_ops, NULL, NULL, NULL, NULL);
	assert_non_null(feed);
	assert_false(plat_feed_healthy(feed));
	assert_int_equal(plat_feed_position(feed), -1);
	pthread_mutex_lock(&T.mu);
	T.fail = false;
	pthread_mutex_unlock(&T.mu);
	plat_feed_kick(feed);
	assert_true(wait_until(is_healthy, &yes));
	pthread_mutex_lock(&T.mu);
	T.fail = true;
	pthread_mutex_unlock(&T.mu);
	plat_feed_kick(feed);
	assert_true(wait_until(is_healthy, &no));
	pthread_mutex_lock(&T.mu);
	T.fail = false;
	pthread_mutex_unlock(&T.mu);
	plat_feed_kick(feed);
	assert_true(wait_until(is_healthy, &yes));
}

/* Rows committed here and read from the store while the replay is under
 * way reach the watcher once each, in order, the seam included. */
static void
test_watch_seam(void **state)
{
	struct fstream *s;
	struct until_rev u;
	int64_t first;

	(void)state;
	start_at(50);
	gate_set(true);
	s = watch(2, 10);
	assert_true(wait_until(gated, NULL));
	first = store_append(10);               /* 51..60, ours */
	commit_range(first, first + 9);
	store_append(2);                        /* 61..62, another's */
	plat_feed_kick(feed);
	want_pos = 62;
	assert_true(wait_until(at_position, NULL));
	gate_set(false);
	u = (struct until_rev){ s, 62 };
	assert_true(wait_until(got_through, &u));
	/* Live after the marker. */
	first = store_append(2);
	commit_range(first, first + 1);
	u.rev = 64;
	assert_true(wait_until(got_through, &u));
	assert_seamless(s, 2, 10, 64, 50);
	assert_int_equal(plat_feed_watchers(feed), 1);
	fs_close(s);
	assert_int_equal(plat_feed_watchers(feed), 0);
	fs_unref(ST(s));
}

static bool
caught_up(void *arg)
{
	struct fstream *s = arg;
	bool c;

	pthread_mutex_lock(&s->mu);
	c = s->ncaught_up > 0;
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* From the head (the store's as the replay starts): nothing before the
 * marker, then the new rows. */
static void
test_watch_from_head(void **state)
{
	struct fstream *s;
	struct until_rev u;
	int64_t first;

	(void)state;
	start_at(20);
	s = watch(1, -1);
	assert_true(wait_until(caught_up, s));
	first = store_append(3);
	commit_range(first, first + 2);
	u = (struct until_rev){ s, 23 };
	assert_true(wait_until(got_through, &u));
	assert_seamless(s, 1, 20, 23, 20);
	fs_close(s);
	fs_unref(ST(s));
}

/* More live rows than the buffer holds while replaying: the replay reads
 * on past them from the store, still without gap or duplicate. */
static void
test_watch_overflow(void **state)
{
	struct fstream *s;
	struct until_rev u;
	int64_t first;

	(void)state;
	start_at(30);
	gate_set(true);
	s = watch(1, 0);
	assert_true(wait_until(gated, NULL));
	first = store_append(10050);
	for (int64_t r = first; r < first + 10050; r += 50)
		commit_range(r, r + 49);
	assert_int_equal(plat_feed_position(feed), 10080);
	gate_set(false);
	u = (struct until_rev){ s, 10080 };
	assert_true(wait_until(got_through, &u));
	assert_seamless(s, 1, 0, 10080, 30);
	fs_close(s);
	fs_unref(ST(s));
}

/* A watch before the feed knows where it starts: UNAVAILABLE, and the
 * watch is freed (ASan checks). */
static void
test_watch_not_started(void **state)
{
	struct fstream *s = fs_new();
	int *w = xcalloc(1, sizeof(*w));
	char err[128];

	(void)state;
	T.fail = true;
	feed = plat_feed_start(&t_ops, NULL, NULL, NULL, NULL);
	assert_non_null(feed);
	*w = 1;
	assert_int_equal(plat_feed__watch(feed, ST(s), w, 0, INT64_MAX, err,
	    sizeof(err)), PLAT_UNAVAILABLE);
	fs_unref(ST(s));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_committed_follows, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_committed_after_gap,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_seam, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_watch_from_head, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_watch_overflow, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_watch_not_started, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
