/*
 * view: the weights a caller gives a service's nodes, from the rules and
 * the outlier decisions. Pure logic (services/router/view.c), unit
 * tested in tests/unit/test_router_logic.c.
 *
 * Every node starts at VIEW_WEIGHT_BASE; a rule's weight for its version,
 * then one for its node id, replaces that; an ejected node gets 0 and a
 * degraded one a tenth (at least 1). Then the splits that match the
 * caller (by label, or every caller when a split names no label) divide
 * the total: the nodes of a split's version share its percent, in
 * proportion to their weights, and the nodes of no split's version share
 * the rest. A split whose version has no node with a weight gives its
 * share to the others (fail-open), and so does the rest when it has none.
 * Weights come out scaled to a total of VIEW_WEIGHT_TOTAL; a node with
 * a weight before the split keeps at least 1 unless its group's share
 * is none (a split of 100% leaves the others nothing).
 */
#ifndef ROUTER_VIEW_H
#define ROUTER_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "platform/router/v1/router.pb-c.h"

#define VIEW_WEIGHT_BASE 100
#define VIEW_WEIGHT_MAX 10000
#define VIEW_WEIGHT_TOTAL 10000

enum view_state {
	VIEW_ACTIVE = PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_ACTIVE,
	VIEW_DEGRADED = PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_DEGRADED,
	VIEW_EJECTED = PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_EJECTED,
};

struct view_node {
	const char *id;
	const char *address;
	const char *version;
	enum view_state state;
	uint32_t weight;                 /* out */
};

/* rules may be NULL; labels are the caller's. */
void view_weights(struct view_node *nodes, size_t n,
    const Platform__Router__V1__Rules *rules,
    Platform__Router__V1__Label *const *labels, size_t nlabels);

/* NULL when rules are valid, else "field: why" (static or in buf). */
const char *view_rules_problem(const Platform__Router__V1__Rules *rules,
    char *buf, size_t len);

/* NULL when name is a valid service name, else why. */
const char *view_name_problem(const char *name);

#endif
