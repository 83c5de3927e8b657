/*
 * ring: the consistent-hash ring of kv-srv nodes (see ring.h).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "platform/hash.h"
#include "platform/xalloc.h"
#include "ring.h"

struct point {
	uint64_t at;
	size_t member;
};

struct ring {
	struct ring_member *m;
	size_t n;
	struct point *points;
	size_t npoints;
};

static int
cmp_points(const void *a, const void *b)
{
	const struct point *x = a, *y = b;

	return x->at < y->at ? -1 : x->at > y->at;
}

static int
cmp_members(const void *a, const void *b)
{
	return strcmp(((const struct ring_member *)a)->id,
	    ((const struct ring_member *)b)->id);
}

struct ring *
ring_new(const struct ring_member *members, size_t n)
{
	struct ring *r = xcalloc(1, sizeof(*r));

	r->m = xcalloc(n, sizeof(*r->m));
	for (size_t i = 0; i < n; i++) {
		r->m[i].id = xstrdup(members[i].id);
		r->m[i].address = xstrdup(members[i].address);
		r->m[i].incarnation = xstrdup(members[i].incarnation);
	}
	r->n = n;
	qsort(r->m, n, sizeof(*r->m), cmp_members);
	r->npoints = n * RING_VNODES;
	r->points = xcalloc(r->npoints, sizeof(*r->points));
	for (size_t i = 0; i < n; i++)
		for (uint32_t v = 0; v < RING_VNODES; v++) {
			uint64_t h = plat_fnv1a(1469598103934665603ULL,
			    r->m[i].id, strlen(r->m[i].id));

			h = plat_fnv1a(h, &v, sizeof(v));
			r->points[i * RING_VNODES + v] =
			    (struct point){ plat_mix64(h), i };
		}
	qsort(r->points, r->npoints, sizeof(*r->points), cmp_points);
	return r;
}

void
ring_free(struct ring *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->m[i].id);
		free(r->m[i].address);
		free(r->m[i].incarnation);
	}
	free(r->m);
	free(r->points);
	free(r);
}

size_t
ring_size(const struct ring *r)
{
	return r->n;
}

const struct ring_member *
ring_member(const struct ring *r, size_t i)
{
	return i < r->n ? &r->m[i] : NULL;
}

ssize_t
ring_find(const struct ring *r, const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->m[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

int
ring_same(const struct ring *r, const struct ring_member *members, size_t n)
{
	if (r->n != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		ssize_t j = ring_find(r, members[i].id);

		if (j < 0 || strcmp(r->m[j].address, members[i].address) != 0 ||
		    strcmp(r->m[j].incarnation, members[i].incarnation != NULL ?
		    members[i].incarnation : "") != 0)
			return 0;
	}
	return 1;
}

int
ring_kept(const struct ring *r, size_t i, const struct ring *other)
{
	ssize_t j = ring_find(other, r->m[i].id);

	return j >= 0 && strcmp(other->m[j].incarnation,
	    r->m[i].incarnation) == 0;
}

size_t
ring_owners(const struct ring *r, const char *table, const char *key,
    int replicas, size_t *out)
{
	uint64_t h = plat_fnv1a(1469598103934665603ULL, table, strlen(table));
	size_t lo = 0, hi = r->npoints, got = 0, want;

	if (r->n == 0 || replicas <= 0)
		return 0;
	want = (size_t)replicas < r->n ? (size_t)replicas : r->n;
	if (want > RING_MAX_REPLICAS)
		want = RING_MAX_REPLICAS;
	h = plat_fnv1a(h, "", 1);
	h = plat_mix64(plat_fnv1a(h, key, strlen(key)));
	while (lo < hi) {               /* the first point at or after h */
		size_t mid = lo + (hi - lo) / 2;

		if (r->points[mid].at < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = 0; got < want && i < r->npoints; i++) {
		size_t m = r->points[(lo + i) % r->npoints].member, k;

		for (k = 0; k < got && out[k] != m; k++)
			;
		if (k == got)
			out[got++] = m;
	}
	return got;
}
