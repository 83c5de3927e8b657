/*
 * outlier: windows and decisions. See outlier.h.
 */
#include <stdlib.h>
#include <string.h>

#include "outlier.h"

#define DEF_MIN_REQUESTS 20
#define DEF_ERROR_PERCENT 50
#define DEF_LATENCY_FACTOR 3.0
#define DEF_MAX_EJECTION_PERCENT 50
#define DEF_BASE_EJECTION_MS 10000
#define DEF_WINDOW_MS 10000
#define MAX_EJECTION_MS 300000
#define LATENCY_SLACK_MS 2.0
#define OUTLIER_MAX_NODES 1024

static void
counts_add(struct win_counts *a, const struct win_counts *d)
{
	a->requests += d->requests;
	a->errors += d->errors;
	for (int i = 0; i < OUTLIER_CODES; i++)
		a->codes[i] += d->codes[i];
	a->lat_sum_ms += d->lat_sum_ms;
	if (d->lat_max_ms > a->lat_max_ms)
		a->lat_max_ms = d->lat_max_ms;
}

/* Moves the halves on to now. */
static void
win_roll(struct win *w, int64_t window_ms, int64_t now)
{
	int64_t half = window_ms / 2 > 0 ? window_ms / 2 : 1;

	if (now - w->cur_start_ms < half)
		return;
	if (now - w->cur_start_ms < 2 * half)
		w->prev = w->cur;
	else
		memset(&w->prev, 0, sizeof(w->prev));
	memset(&w->cur, 0, sizeof(w->cur));
	/* Halves stay aligned to where the window began. */
	w->cur_start_ms += (now - w->cur_start_ms) / half * half;
}

void
win_add(struct win *w, int64_t window_ms, int64_t now,
    const struct win_counts *d)
{
	win_roll(w, window_ms, now);
	counts_add(&w->cur, d);
}

void
win_sum(struct win *w, int64_t window_ms, int64_t now,
    struct win_counts *out)
{
	win_roll(w, window_ms, now);
	*out = w->prev;
	counts_add(out, &w->cur);
}

void
win_clear(struct win *w, int64_t now)
{
	memset(w, 0, sizeof(*w));
	w->cur_start_ms = now;
}

void
outlier_cfg_from(struct outlier_cfg *c,
    const Platform__Router__V1__OutlierDetection *o)
{
	c->disabled = o != NULL && o->disabled;
	c->min_requests = o != NULL && o->min_requests > 0 ?
	    o->min_requests : DEF_MIN_REQUESTS;
	c->error_percent = o != NULL && o->error_percent > 0 ?
	    o->error_percent : DEF_ERROR_PERCENT;
	c->latency_factor = o != NULL && o->latency_factor > 0 ?
	    o->latency_factor : DEF_LATENCY_FACTOR;
	/* Unset is the default; an explicit 0 needs disabled or a rule
	 * that says so: proto3 cannot tell them apart, so 0 is 50 here
	 * and "no ejection" is disabled. */
	c->max_ejection_percent = o != NULL && o->max_ejection_percent > 0 ?
	    o->max_ejection_percent : DEF_MAX_EJECTION_PERCENT;
	c->base_ejection_ms = o != NULL && o->base_ejection_ms > 0 ?
	    o->base_ejection_ms : DEF_BASE_EJECTION_MS;
	c->window_ms = o != NULL && o->window_ms > 0 ? o->window_ms :
	    DEF_WINDOW_MS;
}

size_t
outlier_max_ejected(uint32_t percent, size_t n)
{
	size_t k;

	if (n < 2 || percent == 0)
		return 0;
	k = (size_t)percent * n / 100;
	if (k == 0)
		k = 1;                  /* envoy#3263: see outlier.h */
	if (k > n - 1)
		k = n - 1;
	return k;
}

static double
mean_ms(const struct win_counts *c)
{
	return c->requests > 0 ? c->lat_sum_ms / (double)c->requests : 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The median mean latency of the judged nodes other than skip; -1 with
 * none. */
static double
median_others(const struct win_counts *sums, const int *judged, size_t n,
    size_t skip)
{
	double v[OUTLIER_MAX_NODES];
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (i != skip && judged[i])
			v[k++] = mean_ms(&sums[i]);
	if (k == 0)
		return -1;
	qsort(v, k, sizeof(v[0]), cmp_double);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static void
outlier_eject(const struct outlier_cfg *cfg, struct outlier_node *nd,
    int64_t now)
{
	int64_t d = cfg->base_ejection_ms;

	for (int i = 0; i < nd->times && d < MAX_EJECTION_MS; i++)
		d *= 2;
	if (d > MAX_EJECTION_MS)
		d = MAX_EJECTION_MS;
	nd->times++;
	nd->state = VIEW_EJECTED;
	nd->ejected_until_ms = now + d;
	win_clear(&nd->w, now);
}

int
outlier_decide(const struct outlier_cfg *cfg,
    struct outlier_node *const *nodes, size_t n, int64_t now)
{
	struct win_counts sums[OUTLIER_MAX_NODES];
	int judged[OUTLIER_MAX_NODES], changed = 0;
	size_t ejected = 0, cap;
	double med;

	if (n > OUTLIER_MAX_NODES)
		n = OUTLIER_MAX_NODES;
	/* Ejections that are over first: those nodes count as back. */
	for (size_t i = 0; i < n; i++) {
		struct outlier_node *nd = nodes[i];

		if (nd->state == VIEW_EJECTED &&
		    (cfg->disabled || now >= nd->ejected_until_ms)) {
			nd->state = VIEW_ACTIVE;
			nd->ejected_until_ms = 0;
			nd->healthy_since_ms = now;
			win_clear(&nd->w, now);
			changed = 1;
		}
		if (nd->state == VIEW_EJECTED)
			ejected++;
	}
	if (cfg->disabled) {
		for (size_t i = 0; i < n; i++)
			if (nodes[i]->state != VIEW_ACTIVE) {
				nodes[i]->state = VIEW_ACTIVE;
				changed = 1;
			}
		return changed;
	}
	for (size_t i = 0; i < n; i++) {
		win_sum(&nodes[i]->w, cfg->window_ms, now, &sums[i]);
		judged[i] = nodes[i]->state != VIEW_EJECTED &&
		    sums[i].requests >= cfg->min_requests;
	}
	/* Ejections, worst error rate first, within the cap. */
	cap = outlier_max_ejected(cfg->max_ejection_percent, n);
	while (ejected < cap) {
		double worst = -1, rate;
		size_t w = 0;

		for (size_t i = 0; i < n; i++) {
			if (!judged[i])
				continue;
			rate = 100.0 * (double)sums[i].errors /
			    (double)sums[i].requests;
			if (rate >= cfg->error_percent && rate > worst) {
				worst = rate;
				w = i;
			}
		}
		if (worst < 0)
			break;
		outlier_eject(cfg, nodes[w], now);
		judged[w] = 0;
		ejected++;
		changed = 1;
	}
	/* Latency: against the others' median, each judged node. */
	for (size_t i = 0; i < n; i++) {
		struct outlier_node *nd = nodes[i];
		enum view_state want;

		if (!judged[i])
			continue;
		med = median_others(sums, judged, n, i);
		want = VIEW_ACTIVE;
		if (cfg->latency_factor > 0 && med >= 0 &&
		    mean_ms(&sums[i]) >= med * cfg->latency_factor &&
		    mean_ms(&sums[i]) - med >= LATENCY_SLACK_MS)
			want = VIEW_DEGRADED;
		if (want != nd->state) {
			nd->state = want;
			changed = 1;
		}
		/* Healthy for a whole window: past ejections are forgiven,
		 * one at a time (Envoy lowers its multiplier likewise). */
		if (want == VIEW_ACTIVE && nd->times > 0 &&
		    now - nd->healthy_since_ms >= cfg->window_ms) {
			nd->times--;
			nd->healthy_since_ms = now;
		}
	}
	return changed;
}
