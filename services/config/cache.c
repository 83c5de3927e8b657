/*
 * cache: latest versions by (namespace, path) (see cache.h).
 *
 * A chained hash table under one rwlock: hits share it, changes take it
 * exclusively. Entries hold a reference on an immutable cfg_row, so a hit
 * hands out a reference and answers outside the lock.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "platform/xalloc.h"

#define CACHE_BUCKETS_MIN 1024

struct entry {
	struct entry *next;
	uint64_t hash;
	int64_t asof;           /* known correct as of this revision */
	struct cfg_row *row;    /* NULL: the path does not exist */
	size_t nslen;
	size_t pathlen;
	char key[];             /* ns '\0' path '\0' */
};

static struct {
	pthread_rwlock_t lock;
	struct entry **buckets;
	size_t nbuckets;
	size_t n;
	size_t bytes;
	size_t max_entries;
	size_t max_bytes;
	int64_t floor;          /* reject what is known only before this */
	int64_t max_asof;       /* the newest knowledge ever accepted */
} C = {
	.lock = PTHREAD_RWLOCK_INITIALIZER,
};

static uint64_t
key_hash(const char *ns, const char *path)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = ns; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *p = path; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static struct entry *
find(const char *ns, const char *path, uint64_t h)
{
	struct entry *e;

	if (C.nbuckets == 0)
		return NULL;
	for (e = C.buckets[h & (C.nbuckets - 1)]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->key, ns) == 0 &&
		    strcmp(e->key + e->nslen + 1, path) == 0)
			return e;
	return NULL;
}

static size_t
entry_bytes(const struct entry *e)
{
	return sizeof(*e) + e->nslen + e->pathlen + 2 +
	    (e->row != NULL ? e->row->size : 0);
}

static void
clear_locked(void)
{
	for (size_t i = 0; i < C.nbuckets; i++) {
		struct entry *e = C.buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			cfg_row_unref(e->row);
			free(e);
		}
		C.buckets[i] = NULL;
	}
	C.n = 0;
	C.bytes = 0;
}

static void
grow_locked(void)
{
	size_t nb = C.nbuckets * 2;
	struct entry **b = xcalloc(nb, sizeof(*b));

	for (size_t i = 0; i < C.nbuckets; i++) {
		struct entry *e = C.buckets[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	}
	free(C.buckets);
	C.buckets = b;
	C.nbuckets = nb;
}

/* Sets (ns, path) to row as of asof unless newer is known. */
static void
upsert(const char *ns, const char *path, struct cfg_row *row, int64_t asof)
{
	uint64_t h = key_hash(ns, path);
	struct entry *e;
	size_t nslen, pathlen;

	pthread_rwlock_wrlock(&C.lock);
	if (C.nbuckets == 0 || asof < C.floor)
		goto out;
	if (asof > C.max_asof)
		C.max_asof = asof;
	if ((e = find(ns, path, h)) != NULL) {
		if (asof <= e->asof)
			goto out;
		C.bytes -= entry_bytes(e);
		cfg_row_unref(e->row);
		e->row = row != NULL ? cfg_row_ref(row) : NULL;
		e->asof = asof;
		C.bytes += entry_bytes(e);
		goto out;
	}
	if (C.n >= C.max_entries || C.bytes >= C.max_bytes) {
		/* Whatever was read before now may be older than what the
		 * cleared entries knew. */
		clear_locked();
		C.floor = C.max_asof;
		if (asof < C.floor)
			goto out;
	}
	if (C.n >= C.nbuckets)
		grow_locked();
	nslen = strlen(ns);
	pathlen = strlen(path);
	e = xcalloc(1, sizeof(*e) + nslen + pathlen + 2);
	e->hash = h;
	e->asof = asof;
	e->row = row != NULL ? cfg_row_ref(row) : NULL;
	e->nslen = nslen;
	e->pathlen = pathlen;
	memcpy(e->key, ns, nslen + 1);
	memcpy(e->key + nslen + 1, path, pathlen + 1);
	e->next = C.buckets[h & (C.nbuckets - 1)];
	C.buckets[h & (C.nbuckets - 1)] = e;
	C.n++;
	C.bytes += entry_bytes(e);
out:
	pthread_rwlock_unlock(&C.lock);
}

void
cache_init(size_t max_entries, size_t max_bytes)
{
	pthread_rwlock_wrlock(&C.lock);
	C.nbuckets = CACHE_BUCKETS_MIN;
	C.buckets = xcalloc(C.nbuckets, sizeof(*C.buckets));
	C.n = C.bytes = 0;
	C.max_entries = max_entries;
	C.max_bytes = max_bytes;
	C.floor = INT64_MAX;
	C.max_asof = 0;
	pthread_rwlock_unlock(&C.lock);
}

void
cache_free(void)
{
	pthread_rwlock_wrlock(&C.lock);
	clear_locked();
	free(C.buckets);
	C.buckets = NULL;
	C.nbuckets = 0;
	pthread_rwlock_unlock(&C.lock);
}

void
cache_open(int64_t floor)
{
	pthread_rwlock_wrlock(&C.lock);
	clear_locked();
	C.floor = floor;
	C.max_asof = floor;
	pthread_rwlock_unlock(&C.lock);
}

int
cache_get(const char *ns, const char *path, struct cfg_row **row)
{
	struct entry *e;
	int hit = 0;

	*row = NULL;
	pthread_rwlock_rdlock(&C.lock);
	if ((e = find(ns, path, key_hash(ns, path))) != NULL) {
		hit = 1;
		if (e->row != NULL)
			*row = cfg_row_ref(e->row);
	}
	pthread_rwlock_unlock(&C.lock);
	return hit;
}

void
cache_put(const char *ns, const char *path, struct cfg_row *row,
    int64_t feed_pos)
{
	if (feed_pos < 0)
		return;
	upsert(ns, path, row, row != NULL && row->revision > feed_pos ?
	    row->revision : feed_pos);
}

void
cache_apply(struct cfg_row *row)
{
	upsert(row->ns, row->path, row, row->revision);
}

size_t
cache_entries(void)
{
	size_t n;

	pthread_rwlock_rdlock(&C.lock);
	n = C.n;
	pthread_rwlock_unlock(&C.lock);
	return n;
}
