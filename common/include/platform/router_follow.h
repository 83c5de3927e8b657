/*
 * router_follow: a client following router-srv's decisions.
 *
 * A thread that finds router-srv's nodes through the client's discovery
 * cache (the service "router"), keeps a Watch open on one of them and
 * applies each service's view to the client: the nodes' weights
 * (plat_client_route_set: P2C over them) and the rate limits
 * (plat_client_set_limit). Every second it drains the client's per
 * method call stats and sends them, in one Report, to every router-srv
 * node, so each replica sees every client (that is how replicas share
 * stats). The callers never wait for any of it.
 *
 * When router-srv goes (or never was), the client carries on with the
 * last view for PLAT_ROUTER_VIEW_KEEP_MS, then forgets it and routes
 * round robin (fail-open); a view comes back with router-srv.
 */
#ifndef PLATFORM_ROUTER_FOLLOW_H
#define PLATFORM_ROUTER_FOLLOW_H

#include "platform/client.h"

#define PLAT_ROUTER_SERVICE "router"
#define PLAT_ROUTER_VIEW_KEEP_MS 60000

struct plat_router_follow;

/* reporter names this client in Reports (its node id); labels are its
 * caller labels for splits, key, value, ..., NULL (may be NULL); both
 * copied. NULL when the thread cannot start. */
struct plat_router_follow *plat_router_follow_start(plat_client *c,
    const char *reporter, const char *const *labels);
/* Stops the thread (one last report first). NULL is fine. Before the
 * client is freed. */
void plat_router_follow_stop(struct plat_router_follow *f);

/* Views applied so far, for tests and logs. */
unsigned long plat_router_follow_views(struct plat_router_follow *f);

#endif
