/*
 * xds_resources: router-srv's decisions as xDS v3 resources, for
 * proxyless gRPC clients and Envoy (services/router/xds.c serves them
 * over ADS). Pure: each builder takes a service's view for the caller
 * (state_view) and its rules, and returns a google.protobuf.Any in the
 * arena given.
 *
 * For a service S (a client's target xds:///S):
 *   Listener S              api_listener: an HttpConnectionManager with
 *                           the router filter and S's RouteConfiguration
 *                           inline
 *   RouteConfiguration S    one virtual host, every path to the weighted
 *                           clusters "S/V", one per version V with a
 *                           weight: the sum of its nodes' weights, so
 *                           the splits hold
 *   Cluster S/V             type EDS over ADS, round robin, the outlier
 *                           detection of S's rules
 *   ClusterLoadAssignment   S/V's nodes with a weight (ejected and
 *                           drained ones left out), each in a locality
 *                           of its own whose weight is the node's:
 *                           gRPC weighs localities, not endpoints (the
 *                           endpoint carries the weight too, for Envoy)
 */
#ifndef ROUTER_XDS_RESOURCES_H
#define ROUTER_XDS_RESOURCES_H

#include <stddef.h>

#include "envoy_protos.h"
#include "platform/arena.h"
#include "platform/router/v1/router.pb-c.h"

#define XDS_TYPE_PREFIX "type.googleapis.com/"

enum xds_type {
	XDS_LISTENER,
	XDS_ROUTE,
	XDS_CLUSTER,
	XDS_ENDPOINTS,
	XDS_NTYPES
};

/* The type of a DiscoveryRequest's type_url, or -1. */
int xds_type_of(const char *type_url);
const char *xds_type_url(enum xds_type t);
/* "Listener", ... for messages. */
const char *xds_type_name(enum xds_type t);

/* The service a resource name of type t is about, into buf (len bytes);
 * for clusters and endpoints the part before the first '/' and *version
 * pointing into name after it. NULL when the name is not one of ours. */
const char *xds_name_service(enum xds_type t, const char *name, char *buf,
    size_t len, const char **version);

/* Resource name of type t for view v (NULL: the service has no node)
 * and rules (may be NULL). NULL when the resource does not exist. */
Google__Protobuf__Any *xds_resource(struct arena *a, enum xds_type t,
    const char *name, const Platform__Router__V1__ServiceView *v,
    const Platform__Router__V1__Rules *rules);

/* The names of every resource of type t for view v (wildcard
 * subscriptions: Listener and Cluster), appended to names (*n of them,
 * room for max). */
size_t xds_names_of(struct arena *a, enum xds_type t,
    const Platform__Router__V1__ServiceView *v, const char **names,
    size_t n, size_t max);

#endif
