/*
 * cache: the latest version of each (namespace, path), in memory, so a
 * repeated Read does not touch PostgreSQL.
 *
 * Entries come from two places: reads that missed (cache_put, with the
 * feed's position taken before the query) and the change feed plus this
 * replica's own writes (cache_apply, every change whether cached or not).
 * Each entry remembers the revision it is known correct as of ("asof");
 * the newer knowledge always wins, so a slow read can never overwrite a
 * newer change the feed applied meanwhile. Every replica applies the
 * whole feed, so the cache is correct across replicas up to the feed's
 * delay.
 *
 * Eviction is wholesale (the cache is cleared when over its limits); a
 * floor then rejects what was read before the clear, since it may be
 * older than a change the cleared entry held. Until cache_open the floor
 * is infinite: nothing is cached before the feed knows its position.
 *
 * Thread-safe.
 */
#ifndef CONFIG_CACHE_H
#define CONFIG_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

void cache_init(size_t max_entries, size_t max_bytes);
void cache_free(void);

/* Empties the cache and starts accepting entries known correct as of
 * revision floor or later: the feed calls it once it knows its start. */
void cache_open(int64_t floor);

/* 1 on a hit: *row is a new reference to the latest version (possibly a
 * tombstone), or NULL when the path does not exist. 0 on a miss. */
int cache_get(const char *ns, const char *path, struct cfg_row **row);

/* The result of a read of the latest version (row NULL: none), made after
 * the feed had reached feed_pos. Ignored when something newer is known. */
void cache_put(const char *ns, const char *path, struct cfg_row *row,
    int64_t feed_pos);

/* A committed change: the latest version of its path as of its revision. */
void cache_apply(struct cfg_row *row);

size_t cache_entries(void);

#endif
