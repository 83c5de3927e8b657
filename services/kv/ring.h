/*
 * ring: the consistent-hash ring of kv-srv nodes.
 *
 * Each member stands at RING_VNODES points of a 64-bit circle (hashes of
 * its id), so keys spread evenly and a member that joins or leaves moves
 * only the keys next to its points. A key's owners are the first
 * `replicas` distinct members clockwise from the key's hash; the first is
 * its primary. Pure logic: the caller keeps it current and locked.
 */
#ifndef KV_RING_H
#define KV_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_VNODES 64
#define RING_MAX_REPLICAS 5

struct ring_member {
	char *id;                       /* places it on the ring */
	char *address;
	/* Which run of the node (its start time; NULL counts as ""): a
	 * node restarted under the same id is empty, a member to fill
	 * again. */
	char *incarnation;
};

struct ring;

/* Copies the members (ids must differ); order does not matter. */
struct ring *ring_new(const struct ring_member *members, size_t n);
void ring_free(struct ring *r);

size_t ring_size(const struct ring *r);
const struct ring_member *ring_member(const struct ring *r, size_t i);
/* The index of the member with this id, or -1. */
ssize_t ring_find(const struct ring *r, const char *id);
/* 1 when r has exactly these members (by id, address and
 * incarnation). */
int ring_same(const struct ring *r, const struct ring_member *members,
    size_t n);

/* The owners of a key, primary first: member indexes into out (room for
 * replicas, at most RING_MAX_REPLICAS); returns how many (fewer when the
 * ring is smaller). */
size_t ring_owners(const struct ring *r, const char *table, const char *key,
    int replicas, size_t *out);

/* 1 when member i of r is in other as the same run of the node (id and
 * incarnation): it holds what it held there. */
int ring_kept(const struct ring *r, size_t i, const struct ring *other);

#endif
