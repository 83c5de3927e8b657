/*
 * selector: round robin that skips nodes which failed recently.
 * See platform/selector.h.
 *
 * The failed table is keyed by address (the first 127 bytes; longer
 * addresses share a slot with their prefix, which at worst cools down a
 * sibling). An expired mark is cleared when it is next looked at.
 */
#include <string.h>

#include "platform/hash.h"
#include "platform/selector.h"

#define SELECTOR_DEFAULT_COOLDOWN_MS 2000

static int
selector_slot_is(const struct selector *s, size_t i, const char *addr)
{
	return s->failed[i].failed_at_ms != 0 &&
	    strncmp(s->failed[i].addr, addr,
	    sizeof(s->failed[i].addr) - 1) == 0;
}

static int
selector_find(const struct selector *s, const char *addr)
{
	for (size_t i = 0; i < SELECTOR_MAX_FAILED; i++)
		if (selector_slot_is(s, i, addr))
			return (int)i;
	return -1;
}

static int64_t
selector_cooldown(const struct selector *s)
{
	return s->cooldown_ms > 0 ? s->cooldown_ms :
	    SELECTOR_DEFAULT_COOLDOWN_MS;
}

/* When addr failed, if it is still cooling down; 0 otherwise. */
static int64_t
selector_failed_at(struct selector *s, const char *addr, int64_t now_ms)
{
	int i;

	if ((i = selector_find(s, addr)) < 0)
		return 0;
	if (now_ms - s->failed[i].failed_at_ms >= selector_cooldown(s)) {
		s->failed[i].failed_at_ms = 0;
		return 0;
	}
	return s->failed[i].failed_at_ms;
}

void
selector_init(struct selector *s, int64_t cooldown_ms)
{
	memset(s, 0, sizeof(*s));
	s->cooldown_ms = cooldown_ms > 0 ? cooldown_ms :
	    SELECTOR_DEFAULT_COOLDOWN_MS;
}

int
selector_pick(struct selector *s, const char *const *addrs, size_t n,
    int64_t now_ms)
{
	size_t start, idx, oldest = 0;
	int64_t at, oldest_at = 0;

	if (n == 0)
		return -1;
	start = (size_t)(s->next % n);
	for (size_t i = 0; i < n; i++) {
		idx = (start + i) % n;
		at = selector_failed_at(s, addrs[idx], now_ms);
		if (at == 0) {
			s->next = idx + 1;
			return (int)idx;
		}
		if (i == 0 || at < oldest_at) {
			oldest = idx;
			oldest_at = at;
		}
	}
	/* Everything is cooling down: still try the node that has had the
	 * longest time to recover. */
	s->next = oldest + 1;
	return (int)oldest;
}

/* addr's hash mixed with key. */
static uint64_t
weight(const char *addr, uint64_t key)
{
	uint64_t h = plat_fnv1a_str(14695981039346656037ULL, addr);

	return plat_mix64(h ^ (key + 0x9e3779b97f4a7c15ULL));
}

int
selector_pick_key(struct selector *s, const char *const *addrs, size_t n,
    uint64_t key, int64_t now_ms)
{
	int best = -1, best_any = -1;
	uint64_t w, bw = 0, bw_any = 0;

	for (size_t i = 0; i < n; i++) {
		w = weight(addrs[i], key);
		if (best_any < 0 || w > bw_any) {
			best_any = (int)i;
			bw_any = w;
		}
		if (selector_failed_at(s, addrs[i], now_ms) == 0 &&
		    (best < 0 || w > bw)) {
			best = (int)i;
			bw = w;
		}
	}
	return best >= 0 ? best : best_any;
}

void
selector_mark_failed(struct selector *s, const char *addr, int64_t now_ms)
{
	size_t len;
	int i;

	if (now_ms <= 0)
		now_ms = 1;             /* 0 means a free slot */
	if ((i = selector_find(s, addr)) < 0) {
		/* A free slot, else evict the oldest mark. */
		i = 0;
		for (int j = 0; j < SELECTOR_MAX_FAILED; j++) {
			if (s->failed[j].failed_at_ms == 0) {
				i = j;
				break;
			}
			if (s->failed[j].failed_at_ms <
			    s->failed[i].failed_at_ms)
				i = j;
		}
		len = strnlen(addr, sizeof(s->failed[i].addr) - 1);
		memcpy(s->failed[i].addr, addr, len);
		s->failed[i].addr[len] = '\0';
	}
	s->failed[i].failed_at_ms = now_ms;
}

void
selector_mark_ok(struct selector *s, const char *addr)
{
	int i;

	if ((i = selector_find(s, addr)) >= 0)
		s->failed[i].failed_at_ms = 0;
}
