/*
 * outlier: windowed counts of what clients reported, and the fleet-wide
 * outlier decisions over them. Pure logic with the time passed in
 * (services/router/outlier.c), unit tested in test_router_logic.c.
 *
 * A window is two halves: counts go to the current half, which becomes
 * the previous one every window_ms / 2, so a sum covers between half a
 * window and a whole one of the latest reports.
 *
 * outlier_decide judges each node of a service that has min_requests
 * or more in its window:
 * - an error percentage at or above error_percent ejects it (weight 0)
 *   for base_ejection_ms * 2^(times ejected before), at most 300 s;
 * - a mean latency latency_factor times the median of the others' (and
 *   at least 2 ms above it) degrades it (a tenth of its weight) until it
 *   is judged fast again;
 * a node without enough requests keeps its state (a degraded node gets
 * few calls), and an ejection ends when its time is over, with its
 * window cleared so it is judged on fresh calls.
 *
 * At most max_ejection_percent of the service's nodes are ejected at
 * once, rounded down, worst error rate first; when that rounds to zero
 * it is still one (envoy#3263: Envoy settled on the same, so a small
 * service is not left without protection), and never every node: with
 * fewer than two nodes nothing is ejected. max_ejection_percent 0 turns
 * ejection off.
 */
#ifndef ROUTER_OUTLIER_H
#define ROUTER_OUTLIER_H

#include <stddef.h>
#include <stdint.h>

#include "platform/router/v1/router.pb-c.h"
#include "view.h"

#define OUTLIER_CODES 17

struct win_counts {
	uint64_t requests;
	uint64_t errors;                 /* codes that are the node's fault */
	uint64_t codes[OUTLIER_CODES];   /* every non-OK code */
	double lat_sum_ms;
	double lat_max_ms;
};

struct win {
	struct win_counts cur, prev;
	int64_t cur_start_ms;
};

void win_add(struct win *w, int64_t window_ms, int64_t now_ms,
    const struct win_counts *d);
/* The counts of the window at now_ms into out. */
void win_sum(struct win *w, int64_t window_ms, int64_t now_ms,
    struct win_counts *out);
void win_clear(struct win *w, int64_t now_ms);

struct outlier_cfg {
	int disabled;
	uint32_t min_requests;
	uint32_t error_percent;
	double latency_factor;           /* 0: no latency judgement */
	uint32_t max_ejection_percent;
	int64_t base_ejection_ms;
	int64_t window_ms;
};

/* The rules' settings with the defaults filled in (o may be NULL). */
void outlier_cfg_from(struct outlier_cfg *cfg,
    const Platform__Router__V1__OutlierDetection *o);

struct outlier_node {
	struct win w;                    /* its calls, every method */
	enum view_state state;
	int64_t ejected_until_ms;
	int times;                       /* ejections so far */
	int64_t healthy_since_ms;        /* judged healthy since */
};

/* How many of n nodes may be ejected at once. */
size_t outlier_max_ejected(uint32_t percent, size_t n);

/* Judges a service's nodes at now_ms, in place; 1 when a state changed. */
int outlier_decide(const struct outlier_cfg *cfg,
    struct outlier_node *const *nodes, size_t n, int64_t now_ms);

#endif
