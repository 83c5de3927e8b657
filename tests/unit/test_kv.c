/*
 * Unit tests of kv-srv's store (services/kv/store.c) on a clock of the
 * test's own, and of its consistent-hash ring (services/kv/ring.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "platform/server.h"
#include "ring.h"
#include "store.h"

static int64_t now_ms = 1700000000000LL;

static int64_t
test_clock(void)
{
	return now_ms;
}

struct seen {
	char value[64];
	int64_t version;
	int count;
};

static void
remember(void *arg, const struct kv_view *v)
{
	struct seen *s = arg;

	snprintf(s->value, sizeof(s->value), "%.*s", (int)v->vlen,
	    (const char *)v->value);
	s->version = v->version;
	s->count++;
}

static int
put(struct kv_store *st, const char *key, const char *value, int64_t ttl,
    int64_t expected, bool if_absent, struct seen *s)
{
	struct kv_put p = {
		.table = "t", .key = key, .value = (const uint8_t *)value,
		.vlen = strlen(value), .ttl_ms = ttl,
		.expected_version = expected, .if_absent = if_absent,
	};
	char err[256];

	return kv_store_put(st, &p, remember, s, err, sizeof(err));
}

static void
test_versions_grow_across_delete(void **state)
{
	struct kv_store *st = kv_store_new(1 << 20, test_clock);
	struct seen a = { 0 }, b = { 0 }, c = { 0 };
	char err[256];
	bool deleted;

	(void)state;
	assert_int_equal(put(st, "k", "1", 0, 0, false, &a), PLAT_OK);
	assert_int_equal(put(st, "k", "2", 0, 0, false, &b), PLAT_OK);
	assert_true(b.version > a.version);     /* same clock: +1 */
	assert_int_equal(kv_store_delete(st, "t", "k", a.version, &deleted,
	    NULL, NULL, err, sizeof(err)), PLAT_FAILED_PRECONDITION);
	assert_int_equal(kv_store_delete(st, "t", "k", b.version, &deleted,
	    NULL, NULL, err, sizeof(err)), PLAT_OK);
	assert_true(deleted);
	assert_int_equal(kv_store_get(st, "t", "k", remember, &c, err,
	    sizeof(err)), PLAT_NOT_FOUND);
	assert_int_equal(put(st, "k", "3", 0, 0, true, &c), PLAT_OK);
	assert_true(c.version > b.version + 1);
	assert_int_equal(put(st, "k", "4", 0, 0, true, &c),
	    PLAT_ALREADY_EXISTS);
	kv_store_free(st);
}

static void
test_ttl_lazy_and_swept(void **state)
{
	struct kv_store *st = kv_store_new(1 << 20, test_clock);
	struct kv_store_stats stats;
	struct seen s = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(put(st, "a", "x", 1000, 0, false, &s), PLAT_OK);
	assert_int_equal(put(st, "b", "y", 5000, 0, false, &s), PLAT_OK);
	now_ms += 1000;
	/* Due now: gone for a reader before any sweep. */
	assert_int_equal(kv_store_get(st, "t", "a", remember, &s, err,
	    sizeof(err)), PLAT_NOT_FOUND);
	now_ms += 4000;
	kv_store_sweep(st);
	kv_store_stats(st, &stats);
	assert_int_equal(stats.keys, 0);
	assert_int_equal(stats.expirations, 2);
	kv_store_free(st);
}

static void
test_lru_eviction(void **state)
{
	struct kv_store *st = kv_store_new(64 << 10, test_clock);
	struct kv_store_stats stats;
	struct seen s = { 0 };
	char big[1025], key[16], err[256];

	(void)state;
	memset(big, 'v', 1024);
	big[1024] = '\0';
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "k%03d", i);
		assert_int_equal(put(st, key, big, 0, 0, false, &s), PLAT_OK);
		if (i == 150)
			assert_int_equal(kv_store_get(st, "t", "k100",
			    remember, &s, err, sizeof(err)), PLAT_OK);
	}
	kv_store_stats(st, &stats);
	assert_true(stats.evictions > 0);
	assert_true(stats.bytes <= 64 << 10);
	assert_int_equal(kv_store_get(st, "t", "k000", remember, &s, err,
	    sizeof(err)), PLAT_NOT_FOUND);
	assert_int_equal(kv_store_get(st, "t", "k100", remember, &s, err,
	    sizeof(err)), PLAT_OK);
	assert_int_equal(kv_store_get(st, "t", "k199", remember, &s, err,
	    sizeof(err)), PLAT_OK);
	kv_store_free(st);
}

static void
test_increment(void **state)
{
	struct kv_store *st = kv_store_new(1 << 20, test_clock);
	struct seen s = { 0 };
	char err[256];
	int64_t v = 0;

	(void)state;
	assert_int_equal(kv_store_increment(st, "t", "n", 5, 0, &v, remember,
	    &s, err, sizeof(err)), PLAT_OK);
	assert_int_equal(v, 5);
	assert_int_equal(kv_store_increment(st, "t", "n", -8, 0, &v, remember,
	    &s, err, sizeof(err)), PLAT_OK);
	assert_int_equal(v, -3);
	assert_string_equal(s.value, "-3");
	assert_int_equal(put(st, "x", " 7", 0, 0, false, &s), PLAT_OK);
	assert_int_equal(kv_store_increment(st, "t", "x", 1, 0, &v, remember,
	    &s, err, sizeof(err)), PLAT_FAILED_PRECONDITION);
	assert_int_equal(put(st, "m", "9223372036854775807", 0, 0, false, &s),
	    PLAT_OK);
	assert_int_equal(kv_store_increment(st, "t", "m", 1, 0, &v, remember,
	    &s, err, sizeof(err)), PLAT_FAILED_PRECONDITION);
	kv_store_free(st);
}

static void
test_apply_keeps_the_newest(void **state)
{
	struct kv_store *st = kv_store_new(1 << 20, test_clock);
	struct kv_view v = { .table = "t", .key = "r",
	    .value = (const uint8_t *)"new", .vlen = 3, .version = 500 };
	struct seen s = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(kv_store_apply(st, &v), 1);
	v.value = (const uint8_t *)"old";
	v.version = 400;
	assert_int_equal(kv_store_apply(st, &v), 0);    /* older: ignored */
	v.deleted = true;
	v.version = 600;
	assert_int_equal(kv_store_apply(st, &v), 1);
	v.deleted = false;
	v.version = 550;                /* behind the tombstone */
	assert_int_equal(kv_store_apply(st, &v), 0);
	assert_int_equal(kv_store_get(st, "t", "r", remember, &s, err,
	    sizeof(err)), PLAT_NOT_FOUND);
	/* Local writes go on above everything applied. */
	now_ms = 0;
	assert_int_equal(put(st, "r", "mine", 0, 0, false, &s), PLAT_OK);
	assert_true(s.version > 600);
	now_ms = 1700000000000LL;
	kv_store_free(st);
}

struct events {
	int puts, deletes, synced;
	char last[32];
};

static void
on_event(void *arg, enum kv_event type, const struct kv_view *v)
{
	struct events *e = arg;

	if (type == KV_EVENT_SYNCED) {
		e->synced++;
		return;
	}
	if (type == KV_EVENT_PUT)
		e->puts++;
	if (type == KV_EVENT_DELETE)
		e->deletes++;
	snprintf(e->last, sizeof(e->last), "%s", v->key);
}

static void
test_watch_current_state_then_changes(void **state)
{
	struct kv_store *st = kv_store_new(1 << 20, test_clock);
	struct events ev = { 0 };
	struct kv_watcher w = { .table = "t", .prefix = "p/",
	    .event = on_event, .arg = &ev };
	struct seen s = { 0 };
	char err[256];
	bool deleted;

	(void)state;
	put(st, "p/1", "a", 0, 0, false, &s);
	put(st, "p/2", "b", 0, 0, false, &s);
	put(st, "q/1", "c", 0, 0, false, &s);
	kv_store_watch(st, &w);
	assert_int_equal(ev.puts, 2);
	assert_int_equal(ev.synced, 1);
	put(st, "p/3", "d", 0, 0, false, &s);
	put(st, "q/2", "e", 0, 0, false, &s);
	assert_int_equal(ev.puts, 3);
	assert_string_equal(ev.last, "p/3");
	kv_store_delete(st, "t", "p/1", 0, &deleted, NULL, NULL, err,
	    sizeof(err));
	assert_int_equal(ev.deletes, 1);
	kv_store_unwatch(st, &w);
	put(st, "p/4", "f", 0, 0, false, &s);
	assert_int_equal(ev.puts, 3);
	kv_store_free(st);
}

struct listed {
	char keys[16][16];
	int n;
};

static void
list_key(void *arg, const struct kv_view *v)
{
	struct listed *l = arg;

	snprintf(l->keys[l->n++], 16, "%s", v->key);
}

static void
test_list_sorted_paged(void **state)
{
	struct kv_store *st = kv_store_new(1 << 20, test_clock);
	struct listed l = { 0 };
	struct seen s = { 0 };
	bool more;

	(void)state;
	put(st, "b", "1", 0, 0, false, &s);
	put(st, "a", "1", 0, 0, false, &s);
	put(st, "c", "1", 0, 0, false, &s);
	put(st, "d", "1", 100, 0, false, &s);
	kv_store_list(st, "t", "", "", 2, list_key, &l, &more);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.keys[0], "a");
	assert_string_equal(l.keys[1], "b");
	assert_true(more);
	now_ms += 100;          /* d expires */
	l.n = 0;
	kv_store_list(st, "t", "", "b", 2, list_key, &l, &more);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.keys[0], "c");
	assert_false(more);
	kv_store_free(st);
}

static void
test_ring_owners(void **state)
{
	struct ring_member m[4] = {
		{ "kv-a", "h:1" }, { "kv-b", "h:2" }, { "kv-c", "h:3" },
		{ "kv-d", "h:4" },
	};
	struct ring *r3 = ring_new(m, 3), *r4 = ring_new(m, 4);
	size_t o[RING_MAX_REPLICAS], o4[RING_MAX_REPLICAS];
	int primary[3] = { 0 }, moved = 0;
	char key[16];

	(void)state;
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "key%d", i);
		assert_int_equal(ring_owners(r3, "t", key, 2, o), 2);
		assert_true(o[0] != o[1]);
		primary[o[0]]++;
		ring_owners(r4, "t", key, 1, o4);
		/* A fourth member takes only keys it now owns. */
		if (strcmp(ring_member(r4, o4[0])->id,
		    ring_member(r3, o[0])->id) != 0) {
			assert_string_equal(ring_member(r4, o4[0])->id, "kv-d");
			moved++;
		}
	}
	for (int i = 0; i < 3; i++)
		assert_true(primary[i] > 600);  /* about 1000 each */
	assert_true(moved > 300 && moved < 1200);       /* about 750 */
	assert_int_equal(ring_owners(r3, "t", "k", 5, o), 3);
	assert_true(ring_same(r3, m, 3));
	assert_false(ring_same(r4, m, 3));
	assert_int_equal(ring_find(r4, "kv-d"), 3);
	ring_free(r3);
	ring_free(r4);
}

/* A member back under its id after a restart is the same place on the
 * ring, but a changed member: it lost what it held. */
static void
test_ring_incarnations(void **state)
{
	struct ring_member before[2] = {
		{ "kv-a", "h:1", "100" }, { "kv-b", "h:2", "100" },
	};
	struct ring_member after[2] = {
		{ "kv-a", "h:1", "100" }, { "kv-b", "h:2", "250" },
	};
	struct ring *r1 = ring_new(before, 2), *r2 = ring_new(after, 2);
	size_t o1[2], o2[2];

	(void)state;
	assert_false(ring_same(r1, after, 2));
	assert_true(ring_same(r2, after, 2));
	assert_true(ring_kept(r2, (size_t)ring_find(r2, "kv-a"), r1));
	assert_false(ring_kept(r2, (size_t)ring_find(r2, "kv-b"), r1));
	ring_owners(r1, "t", "k", 2, o1);
	ring_owners(r2, "t", "k", 2, o2);
	assert_string_equal(ring_member(r1, o1[0])->id,
	    ring_member(r2, o2[0])->id);
	ring_free(r1);
	ring_free(r2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_versions_grow_across_delete),
		cmocka_unit_test(test_ring_incarnations),
		cmocka_unit_test(test_ttl_lazy_and_swept),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_increment),
		cmocka_unit_test(test_apply_keeps_the_newest),
		cmocka_unit_test(test_watch_current_state_then_changes),
		cmocka_unit_test(test_list_sorted_paged),
		cmocka_unit_test(test_ring_owners),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
