/*
 * xds: envoy.service.discovery.v3.AggregatedDiscoveryService, state of
 * the world: router-srv's views for proxyless gRPC clients
 * (xds:///service) and Envoy, as the resources of xds_resources.h.
 *
 * Per stream and type URL: the names subscribed (none, for Listener and
 * Cluster, is every one), the version and nonce last sent and a hash of
 * what was sent. A request whose response_nonce is not the last one sent
 * is stale and ignored; one with error_detail is a NACK (logged and
 * counted; the same resources are not sent again, a change is); a new
 * subscription is always answered, even when nothing it names exists,
 * so a client learns at once that a Listener or Cluster does not exist.
 * The pusher (handlers.c) calls xds_push after each decision round and
 * on every change, and each stream gets the types whose resources
 * changed.
 */
#ifndef ROUTER_XDS_H
#define ROUTER_XDS_H

#include "envoy_protos.h"
#include "platform/server.h"

#define XDS_ADS_PATH "/envoy.service.discovery.v3." \
	"AggregatedDiscoveryService/StreamAggregatedResources"

extern const struct plat_bidi_handlers xds_ads_handlers;

/* The method's entry in router-srv's table. */
#define XDS_ADS_METHOD {                                                 \
	.path = XDS_ADS_PATH,                                            \
	.kind = PLAT_METHOD_BIDI,                                        \
	.request =                                                       \
	    &envoy__service__discovery__v3__discovery_request__descriptor, \
	.response =                                                      \
	    &envoy__service__discovery__v3__discovery_response__descriptor, \
	.bidi = &xds_ads_handlers,                                       \
}

/* Metrics (xds_streams, xds_responses_total, xds_nacks_total). */
void xds_init(plat_server *srv);
/* Sends every stream what changed; frees the streams that ended. */
void xds_push(void);
/* After the last call drained. */
void xds_fini(void);

#endif
