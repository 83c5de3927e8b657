/*
 * rls: Envoy's global rate limit service,
 * envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit, over
 * router-srv's rate-limit rules.
 *
 * A request's domain names the service whose rules apply (an entry
 * `service` in a descriptor overrides it); a descriptor's entry `method`
 * (a full path, "/pkg.Service/Method") picks that method's limit, else
 * the service's whole-service limit applies. Each distinct descriptor
 * (its service and every entry, in order) has a token bucket of its own
 * (platform/token_bucket.h), so a descriptor that carries the caller
 * (remote_address, say) limits per caller as router-srv's own clients
 * do. A descriptor no rule limits is OK. The buckets are this
 * router-srv node's: replicas each count their own.
 */
#ifndef ROUTER_RLS_H
#define ROUTER_RLS_H

#include "envoy_protos.h"
#include "platform/server.h"

#define RLS_PATH "/envoy.service.ratelimit.v3.RateLimitService/"

int rls_should_rate_limit(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out);

/* The method's entry in router-srv's table. */
#define RLS_METHOD PLAT_UNARY(RLS_PATH, "ShouldRateLimit",                \
	envoy__service__ratelimit__v3, rate_limit, rls_should_rate_limit, 0)

/* Metrics (rls_buckets, rls_over_limit_total). */
void rls_init(plat_server *srv);
void rls_fini(void);

#endif
