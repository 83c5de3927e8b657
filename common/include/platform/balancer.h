/*
 * balancer: per-node stats, circuit breaking and the node choice of one
 * service, for the client.
 *
 * Each node keeps its stats (requests, errors by gRPC code, a peak EWMA
 * of its latency as in Finagle: a slower answer raises it at once, faster
 * ones pull it down with a decay time, and an idle node's cost decays
 * towards zero so it is tried again) and a breaker: after
 * `consecutive_failures` failures in a row, or an error rate of at least
 * `error_rate` over `min_requests` or more calls in a window, the node is
 * ejected for base_eject_ms * 2^(ejections - 1) (capped at max_eject_ms);
 * once that is over one probe call is let through (half-open): its
 * success closes the breaker, its failure ejects the node again for
 * twice as long. A breaker never opens on the last node still closed:
 * with every node ejected nothing would be tried at all.
 *
 * With weights from router-srv (balancer_set_weights) a node is chosen
 * by power of two choices: two distinct nodes drawn with probability
 * proportional to their weight; the second wins when its cost
 * (EWMA * (in flight + 1)) is clearly lower (less than half, by 5 ms
 * more), so weights decide between comparable nodes (a 90/10 split
 * holds through the odd slow answer) and latency moves load off a node
 * that is clearly slow. Without weights (router-srv unknown or
 * unreachable: fail-open) it is the plain selector's round robin over
 * the nodes whose breaker is closed.
 *
 * "Failure" is what says the node, not the caller, is at fault:
 * UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN, DATA_LOSS. A failure
 * counts in the EWMA as at least fail_penalty_ms, so a node that fails
 * fast does not look fast.
 *
 * Pure logic: the time and the random seed are passed in, so it is unit
 * tested without a clock. Not thread-safe: the caller holds its lock.
 */
#ifndef PLATFORM_BALANCER_H
#define PLATFORM_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#include "platform/selector.h"

#define BALANCER_CODES 17            /* gRPC status codes 0..16 */
#define BALANCER_ADDR_MAX 128
#define BALANCER_WEIGHT_DEFAULT 100  /* every node without weights */

struct balancer_opts {
	int64_t decay_ms;                /* EWMA decay time; 0: 10000 */
	int consecutive_failures;        /* 0: 5 */
	double error_rate;               /* 0: 0.5 */
	int min_requests;                /* 0: 20, in one window */
	int64_t window_ms;               /* 0: 10000 */
	int64_t base_eject_ms;           /* 0: 1000 */
	int64_t max_eject_ms;            /* 0: 30000 */
	double fail_penalty_ms;          /* 0: 1000 */
};

enum balancer_state {
	BALANCER_CLOSED = 0,
	BALANCER_OPEN,                   /* ejected until ejected_until_ms */
	BALANCER_HALF_OPEN,              /* one probe allowed */
};

struct balancer_node {
	char addr[BALANCER_ADDR_MAX];
	uint32_t weight;                 /* 0: no traffic while others have */
	/* stats */
	uint64_t requests;
	uint64_t errors[BALANCER_CODES]; /* by code; [0] stays 0 */
	double ewma_ms;
	int64_t ewma_at_ms;
	int inflight;
	/* breaker */
	int consecutive;
	uint32_t win_requests, win_failures;
	int64_t win_start_ms;
	int ejections;                   /* since the breaker last settled */
	int64_t ejected_until_ms;        /* 0: not ejected */
	int64_t closed_at_ms;
	int probing;                     /* the half-open probe is out */
};

struct balancer {
	struct balancer_opts o;
	struct balancer_node *nodes;
	size_t n, cap;
	int weighted;                    /* weights from router-srv known */
	uint64_t rng;
	struct selector sel;             /* the fallback */
};

void balancer_init(struct balancer *b, const struct balancer_opts *o,
    uint64_t seed);
void balancer_free(struct balancer *b);

/* Makes the node set exactly addrs (kept nodes keep their state; new
 * ones get BALANCER_WEIGHT_DEFAULT when weighted). */
void balancer_sync(struct balancer *b, const char *const *addrs, size_t n);

/* Weights from router-srv for the nodes it named; the others (just
 * joined) get the mean of those. Turns on the weighted choice. */
void balancer_set_weights(struct balancer *b, const char *const *addrs,
    const uint32_t *weights, size_t n);
/* Back to the round robin (router-srv gone): fail-open. */
void balancer_clear_weights(struct balancer *b);

/* The node for the next call, or -1 with no node. Counts it in flight
 * (and as the probe when half-open): balancer_done must follow. */
int balancer_pick(struct balancer *b, int64_t now_ms);

/* The node for key (rendezvous hashing: the same node for a key on
 * every caller while the nodes stay, whatever the weights), skipping
 * ejected nodes. A lookup: nothing is counted in flight, so no
 * balancer_done follows. -1 with no node. */
int balancer_pick_key(struct balancer *b, uint64_t key, int64_t now_ms);

/* The outcome of a call to addr picked before (code: a gRPC status). */
void balancer_done(struct balancer *b, const char *addr, int code,
    double latency_ms, int64_t now_ms);

/* A picked node's call was never made: no longer in flight (nor the
 * probe), and nothing counted. */
void balancer_release(struct balancer *b, const char *addr);

enum balancer_state balancer_state(const struct balancer *b, size_t i,
    int64_t now_ms);
/* The node's cost as the chooser sees it at now_ms. */
double balancer_cost(const struct balancer *b, size_t i, int64_t now_ms);
/* Index of addr, or -1. */
int balancer_find(const struct balancer *b, const char *addr);
/* 1 for the codes that count against the node. */
int balancer_is_failure(int code);

#endif
