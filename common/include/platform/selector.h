/*
 * selector: picks the node for the next call among a service's nodes.
 *
 * Round robin over the nodes given, skipping a node marked failed within
 * the last `cooldown_ms`; when every node is cooling down it returns the
 * one whose failure is oldest, so a call is still tried. Pure logic with
 * the time passed in, so it is unit tested without a clock. Not
 * thread-safe: the caller holds its lock.
 */
#ifndef PLATFORM_SELECTOR_H
#define PLATFORM_SELECTOR_H

#include <stddef.h>
#include <stdint.h>

#define SELECTOR_MAX_FAILED 64

struct selector {
	uint64_t next;                       /* round-robin cursor */
	int64_t cooldown_ms;                 /* 0 means 2000 */
	struct {
		char addr[128];
		int64_t failed_at_ms;        /* 0: slot free */
	} failed[SELECTOR_MAX_FAILED];
};

void selector_init(struct selector *s, int64_t cooldown_ms);

/* Index into addrs of the node to call, or -1 when n == 0. */
int selector_pick(struct selector *s, const char *const *addrs, size_t n,
    int64_t now_ms);

/* Index of the node for key, by rendezvous hashing: the same node for
 * a key on every caller while the nodes stay the same, and only the
 * keys of a node that leaves move. A node cooling down passes its keys
 * to the next best; when all are, the best is still tried. -1 when
 * n == 0. The round-robin cursor is untouched. */
int selector_pick_key(struct selector *s, const char *const *addrs,
    size_t n, uint64_t key, int64_t now_ms);

/* Marks addr failed at now_ms (UNAVAILABLE, connect error, deadline). */
void selector_mark_failed(struct selector *s, const char *addr,
    int64_t now_ms);

/* Clears the mark after a success. */
void selector_mark_ok(struct selector *s, const char *addr);

#endif
