/*
 * store: one kv-srv node's entries in memory.
 *
 * Entries live in one hash table keyed by table and key, under one mutex
 * (every operation is a few pointer moves; the mutex is never held across
 * I/O). Past max_memory the least recently used entries are evicted
 * (counted); an entry past its time to live is gone for every reader at
 * once (lazily) and removed by kv_store_sweep.
 *
 * Versions: every change takes a version larger than any this store has
 * seen, in microseconds of the wall clock where that is larger (a hybrid
 * logical clock), so a key deleted and made again, or written by another
 * node of the ring after a failover, still gets a larger version. A
 * deleted key leaves a tombstone with its version for a while, so a late
 * replica of an older write cannot bring it back. An expiry takes the
 * entry's version plus one, the same on every owner of the key.
 *
 * Watchers see every change under the store's lock, in the order the
 * changes were made; kv_store_watch hands a new watcher the current
 * entries first, so nothing falls between the two.
 */
#ifndef KV_STORE_H
#define KV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_store;

/* An entry as the store shows it: valid only during the callback. */
struct kv_view {
	const char *table;
	const char *key;
	const uint8_t *value;
	size_t vlen;
	int64_t version;
	int64_t expires_ms;     /* wall clock, ms; 0: no time to live */
	bool deleted;           /* a tombstone (value empty) */
};

/* Called under the store's lock: must not call back into the store. */
typedef void (*kv_visit_fn)(void *arg, const struct kv_view *v);

enum kv_event {
	KV_EVENT_PUT = 1,
	KV_EVENT_DELETE = 2,
	KV_EVENT_EXPIRED = 3,
	KV_EVENT_EVICTED = 4,
	KV_EVENT_SYNCED = 5,    /* the current entries were all sent */
};

struct kv_watcher {
	const char *table;
	const char *prefix;
	size_t prefix_len;
	/* Under the store's lock; v is NULL for KV_EVENT_SYNCED. */
	void (*event)(void *arg, enum kv_event type, const struct kv_view *v);
	void *arg;
	struct kv_watcher *next;        /* the store's */
};

struct kv_put {
	const char *table;
	const char *key;
	const uint8_t *value;
	size_t vlen;
	int64_t ttl_ms;                 /* 0: none */
	int64_t expected_version;       /* > 0: compare-and-set */
	bool if_absent;
};

struct kv_store_stats {
	size_t keys;                    /* live entries */
	size_t bytes;                   /* accounted memory */
	uint64_t evictions;
	uint64_t expirations;
};

/* wall_ms NULL: the real clock (tests give their own). */
struct kv_store *kv_store_new(size_t max_memory, int64_t (*wall_ms)(void));
void kv_store_free(struct kv_store *s);

/*
 * Each returns a gRPC status (platform/server.h): PLAT_OK, or with err
 * filled: NOT_FOUND (get), ALREADY_EXISTS (if_absent), FAILED_PRECONDITION
 * (a version that does not match, a counter that is not an integer or
 * would overflow), RESOURCE_EXHAUSTED (one entry larger than the memory
 * limit). fn sees the entry as it is after the call.
 */
int kv_store_get(struct kv_store *s, const char *table, const char *key,
    kv_visit_fn fn, void *arg, char *err, size_t errlen);
int kv_store_put(struct kv_store *s, const struct kv_put *p,
    kv_visit_fn fn, void *arg, char *err, size_t errlen);
/* *deleted false (and PLAT_OK) when the key had no entry. fn, if not
 * NULL, sees the tombstone. */
int kv_store_delete(struct kv_store *s, const char *table, const char *key,
    int64_t expected_version, bool *deleted, kv_visit_fn fn, void *arg,
    char *err, size_t errlen);
int kv_store_increment(struct kv_store *s, const char *table,
    const char *key, int64_t delta, int64_t ttl_ms, int64_t *value,
    kv_visit_fn fn, void *arg, char *err, size_t errlen);

/* Live entries of table whose key starts with prefix and sorts after
 * `after` ("" : from the start), in key order, at most limit; *more when
 * there are others after them. */
void kv_store_list(struct kv_store *s, const char *table, const char *prefix,
    const char *after, size_t limit, kv_visit_fn fn, void *arg, bool *more);

/* Every live entry and tombstone, in no order (what a rebalance moves). */
void kv_store_scan(struct kv_store *s, kv_visit_fn fn, void *arg);

/* An entry as another node wrote it (replication, rebalancing): taken
 * when its version is larger than the one here (tombstones count), with
 * its version; later local versions stay above it. 1 when taken. */
int kv_store_apply(struct kv_store *s, const struct kv_view *e);

/* Forgets a live entry or tombstone this node no longer holds a copy of,
 * after a rebalance moved it elsewhere (no event: it still exists). */
void kv_store_forget(struct kv_store *s, const char *table, const char *key,
    int64_t version);

/* Removes entries past their time to live (each an EXPIRED event) and
 * old tombstones. */
void kv_store_sweep(struct kv_store *s);

void kv_store_watch(struct kv_store *s, struct kv_watcher *w);
void kv_store_unwatch(struct kv_store *s, struct kv_watcher *w);

void kv_store_stats(struct kv_store *s, struct kv_store_stats *out);

#endif
