/*
 * store: one kv-srv node's entries in memory (see store.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "platform/clock.h"
#include "platform/server.h"
#include "platform/xalloc.h"
#include "store.h"

/* What an entry costs beyond its bytes: the item, its bucket and heap
 * slots, malloc's headers. An estimate, as Redis's used_memory is. */
#define ITEM_OVERHEAD 96
/* How long a tombstone keeps a deleted key's version. */
#define TOMBSTONE_MS 60000
#define BUCKETS_MIN 1024

struct item {
	struct item *hnext;             /* hash chain */
	struct item *prev, *next;       /* LRU (live) or tombstone list */
	uint64_t hash;
	char *name;                     /* table '\0' key '\0' */
	size_t tlen, klen;
	uint8_t *value;
	size_t vlen;
	int64_t version;
	int64_t expires_ms;
	int64_t deleted_ms;             /* tombstones: when */
	ssize_t heap;                   /* index in the TTL heap, -1: none */
	bool deleted;
};

struct list {
	struct item *head, *tail;       /* head: most recent */
};

struct kv_store {
	pthread_mutex_t mu;
	int64_t (*wall_ms)(void);
	size_t max_memory, bytes, live;
	struct item **buckets;
	size_t nbuckets, nitems;
	struct list lru, tombs;
	struct item **heap;             /* min-heap on expires_ms */
	size_t nheap, heapcap;
	int64_t last_version;
	uint64_t evictions, expirations;
	struct kv_watcher *watchers;
};

/* ---- helpers ---- */

static uint64_t
hash_name(const char *table, size_t tlen, const char *key, size_t klen)
{
	uint64_t h = 1469598103934665603ULL;   /* FNV-1a */

	for (size_t i = 0; i < tlen; i++)
		h = (h ^ (uint8_t)table[i]) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (size_t i = 0; i < klen; i++)
		h = (h ^ (uint8_t)key[i]) * 1099511628211ULL;
	return h;
}

static size_t
item_bytes(const struct item *it)
{
	return ITEM_OVERHEAD + it->tlen + it->klen + it->vlen;
}

static void
view_of(const struct item *it, struct kv_view *v)
{
	v->table = it->name;
	v->key = it->name + it->tlen + 1;
	v->value = it->value != NULL ? it->value : (const uint8_t *)"";
	v->vlen = it->vlen;
	v->version = it->version;
	v->expires_ms = it->expires_ms;
	v->deleted = it->deleted;
}

static int
fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return code;
}

/* The next version: above every version seen, the wall clock's
 * microseconds where those are larger. */
static int64_t
next_version(struct kv_store *s)
{
	int64_t now = s->wall_ms() * 1000;

	s->last_version = now > s->last_version ? now : s->last_version + 1;
	return s->last_version;
}

/* ---- lists ---- */

static void
list_unlink(struct list *l, struct item *it)
{
	if (it->prev != NULL)
		it->prev->next = it->next;
	else
		l->head = it->next;
	if (it->next != NULL)
		it->next->prev = it->prev;
	else
		l->tail = it->prev;
	it->prev = it->next = NULL;
}

static void
list_push_head(struct list *l, struct item *it)
{
	it->prev = NULL;
	it->next = l->head;
	if (l->head != NULL)
		l->head->prev = it;
	else
		l->tail = it;
	l->head = it;
}

/* Takes an item out of the list it is in: the LRU when live, the
 * tombstones when it is one (a new item is in neither yet). */
static void
unlink_any(struct kv_store *s, struct item *it)
{
	if (!it->deleted) {
		list_unlink(&s->lru, it);
		s->live--;
	} else if (it->prev != NULL || it->next != NULL ||
	    s->tombs.head == it) {
		list_unlink(&s->tombs, it);
	}
}

/* ---- the TTL heap ---- */

static void
heap_swap(struct kv_store *s, size_t a, size_t b)
{
	struct item *t = s->heap[a];

	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap = (ssize_t)a;
	s->heap[b]->heap = (ssize_t)b;
}

static void
heap_up(struct kv_store *s, size_t i)
{
	while (i > 0 && s->heap[(i - 1) / 2]->expires_ms >
	    s->heap[i]->expires_ms) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void
heap_down(struct kv_store *s, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->nheap && s->heap[l]->expires_ms <
		    s->heap[m]->expires_ms)
			m = l;
		if (r < s->nheap && s->heap[r]->expires_ms <
		    s->heap[m]->expires_ms)
			m = r;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

static void
heap_remove(struct kv_store *s, struct item *it)
{
	size_t i;

	if (it->heap < 0)
		return;
	i = (size_t)it->heap;
	it->heap = -1;
	if (i == --s->nheap)
		return;
	s->heap[i] = s->heap[s->nheap];
	s->heap[i]->heap = (ssize_t)i;
	heap_up(s, i);
	heap_down(s, (size_t)s->heap[i]->heap);
}

static void
heap_set(struct kv_store *s, struct item *it)
{
	heap_remove(s, it);
	if (it->expires_ms == 0 || it->deleted)
		return;
	if (s->nheap == s->heapcap) {
		s->heapcap = s->heapcap ? s->heapcap * 2 : 64;
		s->heap = xrealloc(s->heap, s->heapcap * sizeof(*s->heap));
	}
	s->heap[s->nheap] = it;
	it->heap = (ssize_t)s->nheap;
	heap_up(s, s->nheap++);
}

/* ---- the hash table ---- */

static struct item **
slot_of(struct kv_store *s, uint64_t hash, const char *table, size_t tlen,
    const char *key, size_t klen)
{
	struct item **pp = &s->buckets[hash & (s->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->hnext) {
		struct item *it = *pp;

		if (it->hash == hash && it->tlen == tlen && it->klen == klen &&
		    memcmp(it->name, table, tlen) == 0 &&
		    memcmp(it->name + tlen + 1, key, klen) == 0)
			return pp;
	}
	return pp;
}

static struct item *
lookup(struct kv_store *s, const char *table, const char *key)
{
	size_t tlen = strlen(table), klen = strlen(key);

	return *slot_of(s, hash_name(table, tlen, key, klen), table, tlen, key,
	    klen);
}

static void
grow(struct kv_store *s)
{
	size_t n = s->nbuckets * 2;
	struct item **b = xcalloc(n, sizeof(*b));

	for (size_t i = 0; i < s->nbuckets; i++) {
		struct item *it, *next;

		for (it = s->buckets[i]; it != NULL; it = next) {
			next = it->hnext;
			it->hnext = b[it->hash & (n - 1)];
			b[it->hash & (n - 1)] = it;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static struct item *
item_new(struct kv_store *s, const char *table, const char *key)
{
	size_t tlen = strlen(table), klen = strlen(key);
	struct item *it = xcalloc(1, sizeof(*it));

	it->tlen = tlen;
	it->klen = klen;
	it->name = xrealloc(NULL, tlen + klen + 2);
	memcpy(it->name, table, tlen + 1);
	memcpy(it->name + tlen + 1, key, klen + 1);
	it->hash = hash_name(table, tlen, key, klen);
	it->heap = -1;
	it->deleted = true;             /* no value until one is set */
	if (s->nitems >= s->nbuckets)
		grow(s);
	it->hnext = s->buckets[it->hash & (s->nbuckets - 1)];
	s->buckets[it->hash & (s->nbuckets - 1)] = it;
	s->nitems++;
	s->bytes += item_bytes(it);
	return it;
}

/* Unlinks and frees an item, live or tombstone. */
static void
item_drop(struct kv_store *s, struct item *it)
{
	struct item **pp = slot_of(s, it->hash, it->name, it->tlen,
	    it->name + it->tlen + 1, it->klen);

	*pp = it->hnext;
	s->nitems--;
	unlink_any(s, it);
	heap_remove(s, it);
	s->bytes -= item_bytes(it);
	free(it->value);
	free(it->name);
	free(it);
}

/* ---- watchers ---- */

static void
notify(struct kv_store *s, enum kv_event type, const struct item *it)
{
	struct kv_view v;
	bool viewed = false;

	for (struct kv_watcher *w = s->watchers; w != NULL; w = w->next) {
		if (strcmp(w->table, it->name) != 0 ||
		    it->klen < w->prefix_len ||
		    memcmp(it->name + it->tlen + 1, w->prefix,
		    w->prefix_len) != 0)
			continue;
		if (!viewed) {
			view_of(it, &v);
			viewed = true;
		}
		w->event(w->arg, type, &v);
	}
}

/* ---- state changes ---- */

/* An item (live, a tombstone or new) becomes a tombstone at version; its
 * value is freed. */
static void
make_tombstone(struct kv_store *s, struct item *it, int64_t version)
{
	unlink_any(s, it);
	heap_remove(s, it);
	s->bytes -= item_bytes(it);
	free(it->value);
	it->value = NULL;
	it->vlen = 0;
	it->expires_ms = 0;
	it->version = version;
	it->deleted = true;
	it->deleted_ms = s->wall_ms();
	s->bytes += item_bytes(it);
	list_push_head(&s->tombs, it);
}

/* Evicts least recently used entries (tombstones first, they are only
 * bookkeeping) until the memory fits, never `keep`. */
static void
evict(struct kv_store *s, const struct item *keep)
{
	while (s->bytes > s->max_memory) {
		struct item *it = s->tombs.tail;

		if (it != NULL && it != keep) {
			item_drop(s, it);
			continue;
		}
		it = s->lru.tail;
		if (it == keep)
			it = it->prev;
		if (it == NULL)
			return;
		s->evictions++;
		notify(s, KV_EVENT_EVICTED, it);
		item_drop(s, it);
	}
}

/* Sets a (possibly new or tombstone) item's value and version. */
static void
set_value(struct kv_store *s, struct item *it, const uint8_t *value,
    size_t vlen, int64_t version, int64_t expires_ms)
{
	uint8_t *copy = xrealloc(NULL, vlen > 0 ? vlen : 1);

	if (vlen > 0)
		memcpy(copy, value, vlen);
	s->bytes -= item_bytes(it);
	unlink_any(s, it);
	it->deleted = false;
	s->live++;
	free(it->value);
	it->value = copy;
	it->vlen = vlen;
	it->version = version;
	it->expires_ms = expires_ms;
	s->bytes += item_bytes(it);
	list_push_head(&s->lru, it);
	heap_set(s, it);
}

/* An entry whose time to live ran out becomes a tombstone at its own
 * version plus one: every owner of the key expires it on its own, and the
 * same version everywhere makes those one change, not one per owner (a
 * Watch across the ring passes on each version once). Later local writes
 * stay above it. */
static void
expire(struct kv_store *s, struct item *it)
{
	int64_t version = it->version + 1;

	if (version > s->last_version)
		s->last_version = version;
	s->expirations++;
	make_tombstone(s, it, version);
	notify(s, KV_EVENT_EXPIRED, it);
}

/* The item of a key if it is live now; an expired one becomes a
 * tombstone first (an EXPIRED event), so every reader agrees. */
static struct item *
live_item(struct kv_store *s, const char *table, const char *key)
{
	struct item *it = lookup(s, table, key);

	if (it == NULL || it->deleted)
		return NULL;
	if (it->expires_ms != 0 && it->expires_ms <= s->wall_ms()) {
		expire(s, it);
		return NULL;
	}
	return it;
}

static void
visit(kv_visit_fn fn, void *arg, const struct item *it)
{
	struct kv_view v;

	if (fn == NULL)
		return;
	view_of(it, &v);
	fn(arg, &v);
}

/* ---- the API ---- */

static int64_t
real_wall_ms(void)
{
	return plat_wall_ms();
}

struct kv_store *
kv_store_new(size_t max_memory, int64_t (*wall_ms)(void))
{
	struct kv_store *s = xcalloc(1, sizeof(*s));

	pthread_mutex_init(&s->mu, NULL);
	s->wall_ms = wall_ms != NULL ? wall_ms : real_wall_ms;
	s->max_memory = max_memory;
	s->nbuckets = BUCKETS_MIN;
	s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
	return s;
}

void
kv_store_free(struct kv_store *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct item *it, *next;

		for (it = s->buckets[i]; it != NULL; it = next) {
			next = it->hnext;
			free(it->value);
			free(it->name);
			free(it);
		}
	}
	free(s->buckets);
	free(s->heap);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int
kv_store_get(struct kv_store *s, const char *table, const char *key,
    kv_visit_fn fn, void *arg, char *err, size_t errlen)
{
	struct item *it;
	int rc = PLAT_OK;

	pthread_mutex_lock(&s->mu);
	if ((it = live_item(s, table, key)) == NULL) {
		rc = fail(err, errlen, PLAT_NOT_FOUND, "key \"%s\" not found "
		    "in table \"%s\"", key, table);
	} else {
		list_unlink(&s->lru, it);
		list_push_head(&s->lru, it);
		visit(fn, arg, it);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* Checks a write's condition against the live item (NULL: none). */
static int
check_condition(const struct item *it, int64_t expected, bool if_absent,
    const char *key, char *err, size_t errlen)
{
	if (if_absent && it != NULL)
		return fail(err, errlen, PLAT_ALREADY_EXISTS, "key \"%s\" "
		    "exists (version %" PRId64 ")", key, it->version);
	if (expected > 0 && it == NULL)
		return fail(err, errlen, PLAT_FAILED_PRECONDITION,
		    "expected_version %" PRId64 ", but key \"%s\" does not "
		    "exist", expected, key);
	if (expected > 0 && it->version != expected)
		return fail(err, errlen, PLAT_FAILED_PRECONDITION,
		    "expected_version %" PRId64 ", but key \"%s\" is at "
		    "version %" PRId64, expected, key, it->version);
	return PLAT_OK;
}

/* Sets the key's value (the condition already checked); RESOURCE_EXHAUSTED
 * when the entry alone is over the memory limit. */
static int
write_value(struct kv_store *s, struct item *it, const char *table,
    const char *key, const uint8_t *value, size_t vlen, int64_t ttl_ms,
    char *err, size_t errlen)
{
	size_t need = ITEM_OVERHEAD + strlen(table) + strlen(key) + vlen;

	if (need > s->max_memory)
		return fail(err, errlen, PLAT_RESOURCE_EXHAUSTED, "an entry "
		    "of %zu bytes is over the memory limit (%zu bytes)", need,
		    s->max_memory);
	if (it == NULL && (it = lookup(s, table, key)) == NULL)
		it = item_new(s, table, key);
	set_value(s, it, value, vlen, next_version(s),
	    ttl_ms > 0 ? s->wall_ms() + ttl_ms : 0);
	notify(s, KV_EVENT_PUT, it);
	evict(s, it);
	return PLAT_OK;
}

int
kv_store_put(struct kv_store *s, const struct kv_put *p, kv_visit_fn fn,
    void *arg, char *err, size_t errlen)
{
	struct item *it;
	int rc;

	pthread_mutex_lock(&s->mu);
	it = live_item(s, p->table, p->key);
	if ((rc = check_condition(it, p->expected_version, p->if_absent,
	    p->key, err, errlen)) == PLAT_OK &&
	    (rc = write_value(s, it, p->table, p->key, p->value, p->vlen,
	    p->ttl_ms, err, errlen)) == PLAT_OK)
		visit(fn, arg, lookup(s, p->table, p->key));
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int
kv_store_delete(struct kv_store *s, const char *table, const char *key,
    int64_t expected_version, bool *deleted, kv_visit_fn fn, void *arg,
    char *err, size_t errlen)
{
	struct item *it;
	int rc;

	*deleted = false;
	pthread_mutex_lock(&s->mu);
	it = live_item(s, table, key);
	if ((rc = check_condition(it, expected_version, false, key, err,
	    errlen)) == PLAT_OK && it != NULL) {
		make_tombstone(s, it, next_version(s));
		notify(s, KV_EVENT_DELETE, it);
		*deleted = true;
		visit(fn, arg, it);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* A whole decimal int64 and nothing else: 0, or -1. */
static int
parse_counter(const uint8_t *v, size_t n, int64_t *out)
{
	char buf[24], *end;
	long long x;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	errno = 0;
	x = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0' || end == buf ||
	    buf[0] == ' ' || buf[0] == '+')
		return -1;
	*out = x;
	return 0;
}

int
kv_store_increment(struct kv_store *s, const char *table, const char *key,
    int64_t delta, int64_t ttl_ms, int64_t *value, kv_visit_fn fn,
    void *arg, char *err, size_t errlen)
{
	struct item *it;
	int64_t cur = 0, ttl = ttl_ms;
	char buf[24];
	int rc = PLAT_OK;

	pthread_mutex_lock(&s->mu);
	it = live_item(s, table, key);
	if (it != NULL && parse_counter(it->value, it->vlen, &cur) != 0) {
		rc = fail(err, errlen, PLAT_FAILED_PRECONDITION, "key \"%s\" "
		    "does not hold a decimal integer", key);
		goto out;
	}
	if ((delta > 0 && cur > INT64_MAX - delta) ||
	    (delta < 0 && cur < INT64_MIN - delta)) {
		rc = fail(err, errlen, PLAT_FAILED_PRECONDITION, "key \"%s\": "
		    "%" PRId64 " + %" PRId64 " overflows a 64-bit integer",
		    key, cur, delta);
		goto out;
	}
	cur += delta;
	/* An existing counter keeps its expiry, as Redis's INCRBY does. */
	if (it != NULL)
		ttl = it->expires_ms != 0 ? it->expires_ms - s->wall_ms() : 0;
	if (ttl < 0)
		ttl = 1;
	snprintf(buf, sizeof(buf), "%" PRId64, cur);
	if ((rc = write_value(s, it, table, key, (const uint8_t *)buf,
	    strlen(buf), ttl, err, errlen)) == PLAT_OK) {
		*value = cur;
		visit(fn, arg, lookup(s, table, key));
	}
out:
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int
cmp_items(const void *a, const void *b)
{
	const struct item *x = *(struct item *const *)a;
	const struct item *y = *(struct item *const *)b;

	return strcmp(x->name + x->tlen + 1, y->name + y->tlen + 1);
}

void
kv_store_list(struct kv_store *s, const char *table, const char *prefix,
    const char *after, size_t limit, kv_visit_fn fn, void *arg, bool *more)
{
	size_t tlen = strlen(table), plen = strlen(prefix), n = 0, cap = 0;
	struct item **found = NULL;
	int64_t now;

	*more = false;
	pthread_mutex_lock(&s->mu);
	now = s->wall_ms();
	/* A scan of every entry: fine for the tables of a platform's
	 * services; a sorted index per table is the step after. */
	for (struct item *it = s->lru.head; it != NULL; it = it->next) {
		const char *key = it->name + it->tlen + 1;

		if (it->tlen != tlen || memcmp(it->name, table, tlen) != 0 ||
		    strncmp(key, prefix, plen) != 0 ||
		    strcmp(key, after) <= 0 ||
		    (it->expires_ms != 0 && it->expires_ms <= now))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			found = xrealloc(found, cap * sizeof(*found));
		}
		found[n++] = it;
	}
	if (n > 0)
		qsort(found, n, sizeof(*found), cmp_items);
	for (size_t i = 0; i < n && i < limit; i++)
		visit(fn, arg, found[i]);
	*more = n > limit;
	pthread_mutex_unlock(&s->mu);
	free(found);
}

void
kv_store_scan(struct kv_store *s, kv_visit_fn fn, void *arg)
{
	pthread_mutex_lock(&s->mu);
	for (struct item *it = s->lru.head; it != NULL; it = it->next)
		visit(fn, arg, it);
	for (struct item *it = s->tombs.head; it != NULL; it = it->next)
		visit(fn, arg, it);
	pthread_mutex_unlock(&s->mu);
}

int
kv_store_apply(struct kv_store *s, const struct kv_view *e)
{
	struct item *it;
	int taken = 0;

	pthread_mutex_lock(&s->mu);
	it = lookup(s, e->table, e->key);
	if (e->version > s->last_version)
		s->last_version = e->version;
	if (it != NULL && it->version >= e->version)
		goto out;
	if (e->deleted) {
		bool was_live = it != NULL && !it->deleted;

		if (it == NULL)
			it = item_new(s, e->table, e->key);
		make_tombstone(s, it, e->version);
		if (was_live)
			notify(s, KV_EVENT_DELETE, it);
	} else {
		if (it == NULL)
			it = item_new(s, e->table, e->key);
		set_value(s, it, e->value, e->vlen, e->version, e->expires_ms);
		notify(s, KV_EVENT_PUT, it);
		evict(s, it);
	}
	taken = 1;
out:
	pthread_mutex_unlock(&s->mu);
	return taken;
}

void
kv_store_forget(struct kv_store *s, const char *table, const char *key,
    int64_t version)
{
	struct item *it;

	pthread_mutex_lock(&s->mu);
	if ((it = lookup(s, table, key)) != NULL && it->version == version)
		item_drop(s, it);
	pthread_mutex_unlock(&s->mu);
}

void
kv_store_sweep(struct kv_store *s)
{
	int64_t now;

	pthread_mutex_lock(&s->mu);
	now = s->wall_ms();
	while (s->nheap > 0 && s->heap[0]->expires_ms <= now)
		expire(s, s->heap[0]);
	while (s->tombs.tail != NULL &&
	    s->tombs.tail->deleted_ms + TOMBSTONE_MS <= now)
		item_drop(s, s->tombs.tail);
	pthread_mutex_unlock(&s->mu);
}

void
kv_store_watch(struct kv_store *s, struct kv_watcher *w)
{
	int64_t now;

	w->prefix_len = strlen(w->prefix);
	pthread_mutex_lock(&s->mu);
	now = s->wall_ms();
	for (struct item *it = s->lru.head; it != NULL; it = it->next) {
		struct kv_view v;

		if (strcmp(w->table, it->name) != 0 ||
		    it->klen < w->prefix_len ||
		    memcmp(it->name + it->tlen + 1, w->prefix,
		    w->prefix_len) != 0 ||
		    (it->expires_ms != 0 && it->expires_ms <= now))
			continue;
		view_of(it, &v);
		w->event(w->arg, KV_EVENT_PUT, &v);
	}
	w->event(w->arg, KV_EVENT_SYNCED, NULL);
	w->next = s->watchers;
	s->watchers = w;
	pthread_mutex_unlock(&s->mu);
}

void
kv_store_unwatch(struct kv_store *s, struct kv_watcher *w)
{
	pthread_mutex_lock(&s->mu);
	for (struct kv_watcher **pp = &s->watchers; *pp != NULL;
	    pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&s->mu);
}

void
kv_store_stats(struct kv_store *s, struct kv_store_stats *out)
{
	pthread_mutex_lock(&s->mu);
	out->keys = s->live;
	out->bytes = s->bytes;
	out->evictions = s->evictions;
	out->expirations = s->expirations;
	pthread_mutex_unlock(&s->mu);
}
