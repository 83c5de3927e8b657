/*
 * balancer: per-node stats, breakers and P2C+EWMA. See platform/balancer.h.
 *
 * Nodes live in one array in the order balancer_sync last gave them, with
 * two scratch arrays of the same capacity so a pick allocates nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "platform/balancer.h"
#include "platform/xalloc.h"

#define DEF_DECAY_MS 10000
#define DEF_CONSECUTIVE 5
#define DEF_ERROR_RATE 0.5
#define DEF_MIN_REQUESTS 20
#define DEF_WINDOW_MS 10000
#define DEF_BASE_EJECT_MS 1000
#define DEF_MAX_EJECT_MS 30000
#define DEF_FAIL_PENALTY_MS 1000.0
#define COST_RATIO 2.0
#define COST_SLACK_MS 5.0

struct balancer_scratch {
	size_t *idx;
	const char **addrs;
};

/* The scratch arrays hang off the node array's allocation: nodes, then
 * cap indexes, then cap address pointers. */
static struct balancer_scratch
balancer_scratch(const struct balancer *b)
{
	struct balancer_scratch s;

	s.idx = (size_t *)(void *)(b->nodes + b->cap);
	s.addrs = (const char **)(void *)(s.idx + b->cap);
	return s;
}

static void
balancer_reserve(struct balancer *b, size_t want)
{
	struct balancer_node *nodes;
	size_t cap = b->cap != 0 ? b->cap : 4;

	if (want <= b->cap)
		return;
	while (cap < want)
		cap *= 2;
	nodes = xcalloc(1, cap * (sizeof(*nodes) + sizeof(size_t) +
	    sizeof(char *)));
	if (b->n > 0)
		memcpy(nodes, b->nodes, b->n * sizeof(*nodes));
	free(b->nodes);
	b->nodes = nodes;
	b->cap = cap;
}

void
balancer_init(struct balancer *b, const struct balancer_opts *o,
    uint64_t seed)
{
	memset(b, 0, sizeof(*b));
	if (o != NULL)
		b->o = *o;
	if (b->o.decay_ms <= 0)
		b->o.decay_ms = DEF_DECAY_MS;
	if (b->o.consecutive_failures <= 0)
		b->o.consecutive_failures = DEF_CONSECUTIVE;
	if (b->o.error_rate <= 0 || b->o.error_rate > 1)
		b->o.error_rate = DEF_ERROR_RATE;
	if (b->o.min_requests <= 0)
		b->o.min_requests = DEF_MIN_REQUESTS;
	if (b->o.window_ms <= 0)
		b->o.window_ms = DEF_WINDOW_MS;
	if (b->o.base_eject_ms <= 0)
		b->o.base_eject_ms = DEF_BASE_EJECT_MS;
	if (b->o.max_eject_ms < b->o.base_eject_ms)
		b->o.max_eject_ms = b->o.base_eject_ms > DEF_MAX_EJECT_MS ?
		    b->o.base_eject_ms : DEF_MAX_EJECT_MS;
	if (b->o.fail_penalty_ms <= 0)
		b->o.fail_penalty_ms = DEF_FAIL_PENALTY_MS;
	b->rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
	selector_init(&b->sel, 0);
}

void
balancer_free(struct balancer *b)
{
	free(b->nodes);
	b->nodes = NULL;
	b->n = b->cap = 0;
}

/* xorshift64*: cheap, and a fixed seed makes the tests deterministic. */
static uint64_t
balancer_rand(struct balancer *b)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 0x2545f4914f6cdd1dULL;
}

int
balancer_find(const struct balancer *b, const char *addr)
{
	for (size_t i = 0; i < b->n; i++)
		if (strncmp(b->nodes[i].addr, addr, BALANCER_ADDR_MAX - 1) == 0)
			return (int)i;
	return -1;
}

static void
balancer_node_init(struct balancer_node *nd, const char *addr)
{
	size_t len = strnlen(addr, BALANCER_ADDR_MAX - 1);

	memset(nd, 0, sizeof(*nd));
	memcpy(nd->addr, addr, len);
	nd->weight = BALANCER_WEIGHT_DEFAULT;
}

void
balancer_sync(struct balancer *b, const char *const *addrs, size_t n)
{
	struct balancer_node *old;
	size_t oldn = b->n;
	int j;

	/* Build the new array in a copy of the old one's state. */
	old = xcalloc(oldn > 0 ? oldn : 1, sizeof(*old));
	if (oldn > 0)
		memcpy(old, b->nodes, oldn * sizeof(*old));
	balancer_reserve(b, n);
	for (size_t i = 0; i < n; i++) {
		j = -1;
		for (size_t k = 0; k < oldn; k++)
			if (strncmp(old[k].addr, addrs[i],
			    BALANCER_ADDR_MAX - 1) == 0) {
				j = (int)k;
				break;
			}
		if (j >= 0)
			b->nodes[i] = old[j];
		else
			balancer_node_init(&b->nodes[i], addrs[i]);
	}
	b->n = n;
	free(old);
}

void
balancer_set_weights(struct balancer *b, const char *const *addrs,
    const uint32_t *weights, size_t n)
{
	uint64_t sum = 0;
	uint32_t mean = BALANCER_WEIGHT_DEFAULT;
	int j;

	/* A node router-srv did not name yet (it just joined) gets the
	 * mean weight, as if it were one more of the others. */
	for (size_t i = 0; i < n; i++)
		sum += weights[i];
	if (n > 0)
		mean = (uint32_t)(sum / n);
	for (size_t i = 0; i < b->n; i++)
		b->nodes[i].weight = mean;
	for (size_t i = 0; i < n; i++)
		if ((j = balancer_find(b, addrs[i])) >= 0)
			b->nodes[j].weight = weights[i];
	b->weighted = 1;
}

void
balancer_clear_weights(struct balancer *b)
{
	for (size_t i = 0; i < b->n; i++)
		b->nodes[i].weight = BALANCER_WEIGHT_DEFAULT;
	b->weighted = 0;
}

int
balancer_is_failure(int code)
{
	switch (code) {
	case 2:         /* UNKNOWN */
	case 4:         /* DEADLINE_EXCEEDED */
	case 13:        /* INTERNAL */
	case 14:        /* UNAVAILABLE */
	case 15:        /* DATA_LOSS */
		return 1;
	default:
		return 0;
	}
}

enum balancer_state
balancer_state(const struct balancer *b, size_t i, int64_t now_ms)
{
	const struct balancer_node *nd = &b->nodes[i];

	if (nd->ejected_until_ms == 0)
		return BALANCER_CLOSED;
	return now_ms < nd->ejected_until_ms ? BALANCER_OPEN :
	    BALANCER_HALF_OPEN;
}

double
balancer_cost(const struct balancer *b, size_t i, int64_t now_ms)
{
	const struct balancer_node *nd = &b->nodes[i];
	double dt = (double)(now_ms - nd->ewma_at_ms);
	double ewma = nd->ewma_ms;

	/* An idle node's cost decays towards zero, so it is tried again
	 * and its estimate refreshed (Finagle's peak EWMA does the same). */
	if (dt > 0)
		ewma *= exp(-dt / (double)b->o.decay_ms);
	return ewma * (double)(nd->inflight + 1);
}

/* Power of two choices among the k candidates in idx. */
static size_t
balancer_p2c(struct balancer *b, const size_t *idx, size_t k, int64_t now)
{
	uint64_t total = 0, r;
	size_t a = 0, c = 0;
	int unweighted;

	if (k == 1)
		return idx[0];
	for (size_t i = 0; i < k; i++)
		total += b->nodes[idx[i]].weight;
	/* Every candidate at weight 0: treat them alike rather than send
	 * nothing (fail-open). */
	unweighted = total == 0;
	if (unweighted)
		total = k;
#define W(i) (unweighted ? 1u : b->nodes[idx[i]].weight)
	r = balancer_rand(b) % total;
	for (a = 0; a < k; a++) {
		if (r < W(a))
			break;
		r -= W(a);
	}
	if (total == W(a))
		return idx[a];          /* the only one with a weight */
	r = balancer_rand(b) % (total - W(a));
	for (c = 0; c < k; c++) {
		if (c == a)
			continue;
		if (r < W(c))
			break;
		r -= W(c);
	}
#undef W
	/* The second draw wins only when clearly cheaper: between
	 * comparable nodes the weights alone decide, so a 90/10 split
	 * holds while load still leaves a node that is clearly slower. */
	return balancer_cost(b, idx[c], now) * COST_RATIO + COST_SLACK_MS <
	    balancer_cost(b, idx[a], now) ? idx[c] : idx[a];
}

int
balancer_pick(struct balancer *b, int64_t now_ms)
{
	struct balancer_scratch s = balancer_scratch(b);
	enum balancer_state st;
	size_t k = 0, pick;
	int j;

	if (b->n == 0)
		return -1;
	for (size_t i = 0; i < b->n; i++) {
		st = balancer_state(b, i, now_ms);
		/* A node whose ejection is over gets its one probe first. */
		if (st == BALANCER_HALF_OPEN && !b->nodes[i].probing) {
			b->nodes[i].probing = 1;
			b->nodes[i].inflight++;
			return (int)i;
		}
		if (st == BALANCER_CLOSED)
			s.idx[k++] = i;
	}
	if (k == 0) {
		/* Nothing closed (breakers never open the last one, so only
		 * probes are out): still try a node. */
		for (size_t i = 0; i < b->n; i++)
			s.idx[i] = i;
		k = b->n;
	}
	if (b->weighted)
		pick = balancer_p2c(b, s.idx, k, now_ms);
	else {
		for (size_t i = 0; i < k; i++)
			s.addrs[i] = b->nodes[s.idx[i]].addr;
		j = selector_pick(&b->sel, s.addrs, k, now_ms);
		pick = s.idx[j];
	}
	b->nodes[pick].inflight++;
	return (int)pick;
}

int
balancer_pick_key(struct balancer *b, uint64_t key, int64_t now_ms)
{
	struct balancer_scratch s = balancer_scratch(b);
	size_t k = 0;

	if (b->n == 0)
		return -1;
	/* Rendezvous over the nodes not ejected, so a key keeps its node
	 * and an ejected node's keys move to the next best until it is
	 * back. */
	for (size_t i = 0; i < b->n; i++)
		if (balancer_state(b, i, now_ms) != BALANCER_OPEN)
			s.idx[k++] = i;
	if (k == 0)
		for (size_t i = 0; i < b->n; i++)
			s.idx[k++] = i;
	for (size_t i = 0; i < k; i++)
		s.addrs[i] = b->nodes[s.idx[i]].addr;
	return (int)s.idx[selector_pick_key(&b->sel, s.addrs, k, key,
	    now_ms)];
}

static void
balancer_ewma(struct balancer *b, struct balancer_node *nd, double ms,
    int64_t now)
{
	double dt = (double)(now - nd->ewma_at_ms), w;

	if (nd->ewma_at_ms == 0 || ms > nd->ewma_ms)
		nd->ewma_ms = ms;       /* peak: a slow answer counts at once */
	else {
		w = dt > 0 ? exp(-dt / (double)b->o.decay_ms) : 1.0;
		/* At least a small step per sample, so a burst of fast
		 * answers within one millisecond still pulls it down. */
		if (w > 0.99)
			w = 0.99;
		nd->ewma_ms = nd->ewma_ms * w + ms * (1 - w);
	}
	nd->ewma_at_ms = now > 0 ? now : 1;
}

/* Closed breakers other than node i's. */
static size_t
balancer_others_closed(const struct balancer *b, size_t i, int64_t now)
{
	size_t k = 0;

	for (size_t j = 0; j < b->n; j++)
		if (j != i && balancer_state(b, j, now) == BALANCER_CLOSED)
			k++;
	return k;
}

static void
balancer_window_reset(struct balancer_node *nd, int64_t now)
{
	nd->win_start_ms = now;
	nd->win_requests = nd->win_failures = 0;
}

static void
balancer_eject(struct balancer *b, struct balancer_node *nd, int64_t now)
{
	int64_t d = b->o.base_eject_ms;

	nd->ejections++;
	for (int i = 1; i < nd->ejections && d < b->o.max_eject_ms; i++)
		d *= 2;
	if (d > b->o.max_eject_ms)
		d = b->o.max_eject_ms;
	nd->ejected_until_ms = now + d;
	nd->consecutive = 0;
	balancer_window_reset(nd, now);
}

void
balancer_release(struct balancer *b, const char *addr)
{
	int i;

	if ((i = balancer_find(b, addr)) < 0)
		return;
	if (b->nodes[i].inflight > 0)
		b->nodes[i].inflight--;
	b->nodes[i].probing = 0;
}

void
balancer_done(struct balancer *b, const char *addr, int code,
    double latency_ms, int64_t now_ms)
{
	struct balancer_node *nd;
	int i, fail = balancer_is_failure(code), trip;

	if ((i = balancer_find(b, addr)) < 0)
		return;                 /* the node left meanwhile */
	nd = &b->nodes[i];
	if (nd->inflight > 0)
		nd->inflight--;
	nd->requests++;
	if (code > 0 && code < BALANCER_CODES)
		nd->errors[code]++;
	if (latency_ms < 0)
		latency_ms = 0;
	balancer_ewma(b, nd, fail && latency_ms < b->o.fail_penalty_ms ?
	    b->o.fail_penalty_ms : latency_ms, now_ms);
	/* The fallback's cooldown, exactly as before there was a breaker:
	 * only for a node that did not answer. */
	if (code == 14 || code == 4)
		selector_mark_failed(&b->sel, addr, now_ms);
	else
		selector_mark_ok(&b->sel, addr);

	if (nd->probing) {
		nd->probing = 0;
		if (fail)
			balancer_eject(b, nd, now_ms);
		else {
			/* Healthy again: the penalty samples of before the
			 * ejection no longer describe it. */
			nd->ejected_until_ms = 0;
			nd->closed_at_ms = now_ms;
			nd->consecutive = 0;
			nd->ewma_ms = latency_ms;
			balancer_window_reset(nd, now_ms);
		}
		return;
	}
	if (balancer_state(b, (size_t)i, now_ms) != BALANCER_CLOSED)
		return;                 /* in flight when it was ejected */
	/* A node that stayed up a full max backoff starts afresh. */
	if (nd->ejections > 0 && now_ms - nd->closed_at_ms >= b->o.max_eject_ms)
		nd->ejections = 0;
	if (now_ms - nd->win_start_ms >= b->o.window_ms)
		balancer_window_reset(nd, now_ms);
	nd->win_requests++;
	nd->win_failures += (uint32_t)fail;
	nd->consecutive = fail ? nd->consecutive + 1 : 0;
	trip = nd->consecutive >= b->o.consecutive_failures ||
	    (nd->win_requests >= (uint32_t)b->o.min_requests &&
	    (double)nd->win_failures >=
	    b->o.error_rate * (double)nd->win_requests);
	if (trip && balancer_others_closed(b, (size_t)i, now_ms) > 0)
		balancer_eject(b, nd, now_ms);
}
