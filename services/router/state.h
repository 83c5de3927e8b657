/*
 * state: router-srv's memory: each service's nodes (from discovery's
 * Watch), its rules (from the store, through the change feed), the
 * stats every client reported (windows per node and per method) and the
 * outlier decisions over them. One lock; every function takes it.
 * Messages built here live in the arena given.
 */
#ifndef ROUTER_STATE_H
#define ROUTER_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "platform/arena.h"
#include "platform/router/v1/router.pb-c.h"

#define STATE_SERVICES_MAX 10000
#define STATE_CELLS_MAX 200000

void state_init(void);
void state_free(void);

/* A discovery WatchResponse; NULL: a fresh snapshot follows. */
void state_discovery(const ProtobufCMessage *event);

/* The stored rules of service at version (packed Rules; NULL: deleted).
 * Older versions than the one held are ignored. */
void state_rules(const char *service, const uint8_t *body, size_t len,
    int64_t version);
/* A copy of service's rules in a, or NULL. */
Platform__Router__V1__Rules *state_rules_get(struct arena *a,
    const char *service);

/* Adds a checked Report's stats at now_ms. Returns how many entries
 * were dropped for want of room. */
size_t state_report(const Platform__Router__V1__ReportRequest *req,
    int64_t now_ms);

/* Outlier decisions for every service at now_ms. */
void state_decide(int64_t now_ms);

/* Service's view for a caller with labels, or NULL when it has no node.
 * *gen (may be NULL) is the service's generation. */
Platform__Router__V1__ServiceView *state_view(struct arena *a,
    const char *service, Platform__Router__V1__Label *const *labels,
    size_t nlabels);

/* The names of every service with a node or rules, in a. */
char **state_services(struct arena *a, size_t *n);

/* The aggregated stats of service at now_ms, or NULL when nothing is
 * known of it. */
Platform__Router__V1__StatsResponse *state_stats(struct arena *a,
    const char *service, int64_t now_ms);

#endif
