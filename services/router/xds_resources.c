/*
 * xds_resources: router-srv's views as Listener, RouteConfiguration,
 * Cluster and ClusterLoadAssignment (see xds_resources.h for the shape).
 * Everything lives in the caller's arena.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xds_resources.h"
#include "outlier.h"
#include "view.h"

typedef Platform__Router__V1__ServiceView pb_view;
typedef Platform__Router__V1__NodeView pb_node;

static const struct {
	const char *url;
	const char *name;
} types[XDS_NTYPES] = {
	[XDS_LISTENER] = { XDS_TYPE_PREFIX "envoy.config.listener.v3.Listener",
	    "Listener" },
	[XDS_ROUTE] = { XDS_TYPE_PREFIX
	    "envoy.config.route.v3.RouteConfiguration", "RouteConfiguration" },
	[XDS_CLUSTER] = { XDS_TYPE_PREFIX "envoy.config.cluster.v3.Cluster",
	    "Cluster" },
	[XDS_ENDPOINTS] = { XDS_TYPE_PREFIX
	    "envoy.config.endpoint.v3.ClusterLoadAssignment",
	    "ClusterLoadAssignment" },
};

#define HCM_URL XDS_TYPE_PREFIX "envoy.extensions.filters.network." \
	"http_connection_manager.v3.HttpConnectionManager"
#define ROUTER_FILTER_URL XDS_TYPE_PREFIX \
	"envoy.extensions.filters.http.router.v3.Router"

/* Allocates and initialises one message of type T (its lower-case
 * protobuf-c prefix p) in arena a. */
#define NEW(a, T, p) ((T *)new_msg((a), sizeof(T), &p##__descriptor))

static void *
new_msg(struct arena *a, size_t size, const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = arena_calloc(a, size);

	protobuf_c_message_init(d, m);
	return m;
}

int
xds_type_of(const char *type_url)
{
	for (int t = 0; t < XDS_NTYPES; t++)
		if (strcmp(type_url, types[t].url) == 0)
			return t;
	return -1;
}

const char *
xds_type_url(enum xds_type t)
{
	return types[t].url;
}

const char *
xds_type_name(enum xds_type t)
{
	return types[t].name;
}

const char *
xds_name_service(enum xds_type t, const char *name, char *buf, size_t len,
    const char **version)
{
	const char *slash = strchr(name, '/');
	size_t n;

	*version = NULL;
	if (t == XDS_LISTENER || t == XDS_ROUTE) {
		if (slash != NULL || view_name_problem(name) != NULL)
			return NULL;
		n = strlen(name);
	} else {
		if (slash == NULL)
			return NULL;
		n = (size_t)(slash - name);
		*version = slash + 1;
	}
	if (n + 1 > len)
		return NULL;
	memcpy(buf, name, n);
	buf[n] = '\0';
	return view_name_problem(buf) == NULL ? buf : NULL;
}

static Google__Protobuf__Any *
to_any(struct arena *a, const char *url, const ProtobufCMessage *m)
{
	Google__Protobuf__Any *any = NEW(a, Google__Protobuf__Any,
	    google__protobuf__any);

	any->type_url = (char *)url;
	any->value.len = protobuf_c_message_get_packed_size(m);
	any->value.data = arena_alloc(a, any->value.len + 1);
	protobuf_c_message_pack(m, any->value.data);
	return any;
}

static Google__Protobuf__UInt32Value *
u32(struct arena *a, uint32_t v)
{
	Google__Protobuf__UInt32Value *w = NEW(a,
	    Google__Protobuf__UInt32Value, google__protobuf__uint32_value);

	w->value = v;
	return w;
}

static Google__Protobuf__Duration *
duration_ms(struct arena *a, int64_t ms)
{
	Google__Protobuf__Duration *d = NEW(a, Google__Protobuf__Duration,
	    google__protobuf__duration);

	d->seconds = ms / 1000;
	d->nanos = (int32_t)(ms % 1000) * 1000000;
	return d;
}

/* A node's share: its weight, except when every node of the service has
 * none (all drained or ejected): then each counts 1, the fail-open the
 * platform's own clients do too, rather than a route to nowhere. */
static int
all_zero(const pb_view *v)
{
	for (size_t i = 0; i < v->n_nodes; i++)
		if (v->nodes[i]->weight > 0)
			return 0;
	return 1;
}

static uint32_t
node_weight(const pb_node *n, int zero)
{
	if (zero)
		return n->state == PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_EJECTED ? 0 : 1;
	return n->state == PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_EJECTED ? 0 : n->weight;
}

static uint32_t
version_weight(const pb_view *v, const char *version, int zero)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < v->n_nodes; i++)
		if (strcmp(v->nodes[i]->version, version) == 0)
			sum += node_weight(v->nodes[i], zero);
	return sum;
}

/* Whether version was already seen among the first i nodes. */
static int
version_before(const pb_view *v, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(v->nodes[j]->version, v->nodes[i]->version) == 0)
			return 1;
	return 0;
}

static int
has_version(const pb_view *v, const char *version)
{
	for (size_t i = 0; i < v->n_nodes; i++)
		if (strcmp(v->nodes[i]->version, version) == 0)
			return 1;
	return 0;
}

static char *
cluster_name(struct arena *a, const char *service, const char *version)
{
	return arena_printf(a, "%s/%s", service, version);
}

/* ---- RouteConfiguration ---- */

static Envoy__Config__Route__V3__RouteConfiguration *
route_config(struct arena *a, const pb_view *v)
{
	Envoy__Config__Route__V3__RouteConfiguration *rc;
	Envoy__Config__Route__V3__VirtualHost *vh;
	Envoy__Config__Route__V3__Route *r;
	Envoy__Config__Route__V3__RouteMatch *match;
	Envoy__Config__Route__V3__RouteAction *act;
	Envoy__Config__Route__V3__WeightedCluster *wc;
	int zero = all_zero(v);

	wc = NEW(a, Envoy__Config__Route__V3__WeightedCluster,
	    envoy__config__route__v3__weighted_cluster);
	wc->clusters = arena_calloc(a, (v->n_nodes + 1) *
	    sizeof(*wc->clusters));
	for (size_t i = 0; i < v->n_nodes; i++) {
		Envoy__Config__Route__V3__WeightedCluster__ClusterWeight *cw;
		uint32_t w;

		if (version_before(v, i))
			continue;
		/* A version whose nodes all have no weight gets no
		 * cluster in the route: gRPC refuses a weight of 0. */
		if ((w = version_weight(v, v->nodes[i]->version, zero)) == 0)
			continue;
		cw = NEW(a,
		    Envoy__Config__Route__V3__WeightedCluster__ClusterWeight,
		    envoy__config__route__v3__weighted_cluster__cluster_weight);
		cw->name = cluster_name(a, v->service, v->nodes[i]->version);
		cw->weight = u32(a, w);
		wc->clusters[wc->n_clusters++] = cw;
	}

	act = NEW(a, Envoy__Config__Route__V3__RouteAction,
	    envoy__config__route__v3__route_action);
	act->cluster_specifier_case =
	    ENVOY__CONFIG__ROUTE__V3__ROUTE_ACTION__CLUSTER_SPECIFIER_WEIGHTED_CLUSTERS;
	act->weighted_clusters = wc;
	match = NEW(a, Envoy__Config__Route__V3__RouteMatch,
	    envoy__config__route__v3__route_match);
	match->path_specifier_case =
	    ENVOY__CONFIG__ROUTE__V3__ROUTE_MATCH__PATH_SPECIFIER_PREFIX;
	match->prefix = "";
	r = NEW(a, Envoy__Config__Route__V3__Route,
	    envoy__config__route__v3__route);
	r->match = match;
	r->action_case = ENVOY__CONFIG__ROUTE__V3__ROUTE__ACTION_ROUTE;
	r->route = act;

	vh = NEW(a, Envoy__Config__Route__V3__VirtualHost,
	    envoy__config__route__v3__virtual_host);
	vh->name = v->service;
	vh->domains = arena_calloc(a, sizeof(*vh->domains));
	vh->domains[0] = "*";
	vh->n_domains = 1;
	vh->routes = arena_calloc(a, sizeof(*vh->routes));
	vh->routes[0] = r;
	vh->n_routes = 1;

	rc = NEW(a, Envoy__Config__Route__V3__RouteConfiguration,
	    envoy__config__route__v3__route_configuration);
	rc->name = v->service;
	rc->virtual_hosts = arena_calloc(a, sizeof(*rc->virtual_hosts));
	rc->virtual_hosts[0] = vh;
	rc->n_virtual_hosts = 1;
	return rc;
}

/* ---- Listener ---- */

static Google__Protobuf__Any *
listener(struct arena *a, const pb_view *v)
{
	Envoy__Config__Listener__V3__Listener *l;
	Envoy__Config__Listener__V3__ApiListener *api;
	Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager
	    *hcm;
	Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter
	    *router;
	Envoy__Extensions__Filters__Http__Router__V3__Router *rf;

	rf = NEW(a, Envoy__Extensions__Filters__Http__Router__V3__Router,
	    envoy__extensions__filters__http__router__v3__router);
	router = NEW(a,
	    Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpFilter,
	    envoy__extensions__filters__network__http_connection_manager__v3__http_filter);
	router->name = "envoy.filters.http.router";
	router->config_type_case =
	    ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_FILTER__CONFIG_TYPE_TYPED_CONFIG;
	router->typed_config = to_any(a, ROUTER_FILTER_URL, &rf->base);

	hcm = NEW(a,
	    Envoy__Extensions__Filters__Network__HttpConnectionManager__V3__HttpConnectionManager,
	    envoy__extensions__filters__network__http_connection_manager__v3__http_connection_manager);
	hcm->stat_prefix = v->service;
	/* Inline: one resource fewer to wait for, and the route changes
	 * with the view anyway. */
	hcm->route_specifier_case =
	    ENVOY__EXTENSIONS__FILTERS__NETWORK__HTTP_CONNECTION_MANAGER__V3__HTTP_CONNECTION_MANAGER__ROUTE_SPECIFIER_ROUTE_CONFIG;
	hcm->route_config = route_config(a, v);
	hcm->http_filters = arena_calloc(a, sizeof(*hcm->http_filters));
	hcm->http_filters[0] = router;
	hcm->n_http_filters = 1;

	api = NEW(a, Envoy__Config__Listener__V3__ApiListener,
	    envoy__config__listener__v3__api_listener);
	api->api_listener = to_any(a, HCM_URL, &hcm->base);
	l = NEW(a, Envoy__Config__Listener__V3__Listener,
	    envoy__config__listener__v3__listener);
	l->name = v->service;
	l->api_listener = api;
	return to_any(a, types[XDS_LISTENER].url, &l->base);
}

/* ---- Cluster ---- */

/* router-srv's outlier rules in Envoy's terms (gRFC A50: gRPC honours
 * the failure-percentage and success-rate algorithms only; success rate
 * is turned off, as router-srv judges by error percentage). Ejected
 * nodes are also left out of the endpoints: this is for what a client
 * sees between two of router-srv's decisions. */
static Envoy__Config__Cluster__V3__OutlierDetection *
outlier(struct arena *a, const Platform__Router__V1__Rules *rules)
{
	Envoy__Config__Cluster__V3__OutlierDetection *od;
	struct outlier_cfg cfg;

	outlier_cfg_from(&cfg, rules != NULL ? rules->outlier : NULL);
	if (cfg.disabled)
		return NULL;
	od = NEW(a, Envoy__Config__Cluster__V3__OutlierDetection,
	    envoy__config__cluster__v3__outlier_detection);
	od->interval = duration_ms(a, cfg.window_ms);
	od->base_ejection_time = duration_ms(a, cfg.base_ejection_ms);
	od->max_ejection_time = duration_ms(a, 300000);
	od->max_ejection_percent = u32(a, cfg.max_ejection_percent);
	od->enforcing_success_rate = u32(a, 0);
	od->failure_percentage_threshold = u32(a, cfg.error_percent);
	od->enforcing_failure_percentage = u32(a, 100);
	od->failure_percentage_request_volume = u32(a, cfg.min_requests);
	/* router-srv judges a service of two nodes too. */
	od->failure_percentage_minimum_hosts = u32(a, 2);
	od->enforcing_consecutive_5xx = u32(a, 0);
	od->enforcing_consecutive_gateway_failure = u32(a, 0);
	return od;
}

static Google__Protobuf__Any *
cluster(struct arena *a, const char *name,
    const Platform__Router__V1__Rules *rules)
{
	Envoy__Config__Cluster__V3__Cluster *c;
	Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig *eds;
	Envoy__Config__Core__V3__ConfigSource *src;

	src = NEW(a, Envoy__Config__Core__V3__ConfigSource,
	    envoy__config__core__v3__config_source);
	src->config_source_specifier_case =
	    ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS;
	src->ads = NEW(a, Envoy__Config__Core__V3__AggregatedConfigSource,
	    envoy__config__core__v3__aggregated_config_source);
	src->resource_api_version = ENVOY__CONFIG__CORE__V3__API_VERSION__V3;
	eds = NEW(a, Envoy__Config__Cluster__V3__Cluster__EdsClusterConfig,
	    envoy__config__cluster__v3__cluster__eds_cluster_config);
	eds->eds_config = src;
	eds->service_name = (char *)name;

	c = NEW(a, Envoy__Config__Cluster__V3__Cluster,
	    envoy__config__cluster__v3__cluster);
	c->name = (char *)name;
	c->cluster_discovery_type_case =
	    ENVOY__CONFIG__CLUSTER__V3__CLUSTER__CLUSTER_DISCOVERY_TYPE_TYPE;
	c->type = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS;
	c->eds_cluster_config = eds;
	c->lb_policy = ENVOY__CONFIG__CLUSTER__V3__CLUSTER__LB_POLICY__ROUND_ROBIN;
	c->connect_timeout = duration_ms(a, 5000);
	c->outlier_detection = outlier(a, rules);
	return to_any(a, types[XDS_CLUSTER].url, &c->base);
}

/* ---- ClusterLoadAssignment ---- */

/* host:port or [v6]:port into its parts; 0, or -1 when it is neither. */
static int
split_address(struct arena *a, const char *addr, char **host,
    uint32_t *port)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t hlen;
	unsigned long p;
	char *end;

	if (colon == NULL || colon == addr)
		return -1;
	hlen = (size_t)(colon - addr);
	if (addr[0] == '[') {
		if (hlen < 3 || addr[hlen - 1] != ']')
			return -1;
		h++;
		hlen -= 2;
	}
	p = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || p == 0 || p > 65535)
		return -1;
	*host = arena_strndup(a, h, hlen);
	*port = (uint32_t)p;
	return 0;
}

static Envoy__Config__Endpoint__V3__LocalityLbEndpoints *
locality(struct arena *a, const pb_node *n, uint32_t w)
{
	Envoy__Config__Endpoint__V3__LocalityLbEndpoints *le;
	Envoy__Config__Endpoint__V3__LbEndpoint *lb;
	Envoy__Config__Endpoint__V3__Endpoint *ep;
	Envoy__Config__Core__V3__Address *ad;
	Envoy__Config__Core__V3__SocketAddress *sa;
	Envoy__Config__Core__V3__Locality *loc;
	char *host;
	uint32_t port;

	if (split_address(a, n->address, &host, &port) != 0)
		return NULL;
	sa = NEW(a, Envoy__Config__Core__V3__SocketAddress,
	    envoy__config__core__v3__socket_address);
	sa->address = host;
	sa->port_specifier_case =
	    ENVOY__CONFIG__CORE__V3__SOCKET_ADDRESS__PORT_SPECIFIER_PORT_VALUE;
	sa->port_value = port;
	ad = NEW(a, Envoy__Config__Core__V3__Address,
	    envoy__config__core__v3__address);
	ad->address_case = ENVOY__CONFIG__CORE__V3__ADDRESS__ADDRESS_SOCKET_ADDRESS;
	ad->socket_address = sa;
	ep = NEW(a, Envoy__Config__Endpoint__V3__Endpoint,
	    envoy__config__endpoint__v3__endpoint);
	ep->address = ad;
	lb = NEW(a, Envoy__Config__Endpoint__V3__LbEndpoint,
	    envoy__config__endpoint__v3__lb_endpoint);
	lb->host_identifier_case =
	    ENVOY__CONFIG__ENDPOINT__V3__LB_ENDPOINT__HOST_IDENTIFIER_ENDPOINT;
	lb->endpoint = ep;
	lb->health_status = ENVOY__CONFIG__CORE__V3__HEALTH_STATUS__HEALTHY;
	lb->load_balancing_weight = u32(a, w);

	/* One locality per node, named after it: gRPC's weighted_target
	 * honours locality weights, and round robin within one would lose
	 * the node's weight. */
	loc = NEW(a, Envoy__Config__Core__V3__Locality,
	    envoy__config__core__v3__locality);
	loc->sub_zone = n->id;
	le = NEW(a, Envoy__Config__Endpoint__V3__LocalityLbEndpoints,
	    envoy__config__endpoint__v3__locality_lb_endpoints);
	le->locality = loc;
	le->lb_endpoints = arena_calloc(a, sizeof(*le->lb_endpoints));
	le->lb_endpoints[0] = lb;
	le->n_lb_endpoints = 1;
	le->load_balancing_weight = u32(a, w);
	return le;
}

static Google__Protobuf__Any *
endpoints(struct arena *a, const char *name, const pb_view *v,
    const char *version)
{
	Envoy__Config__Endpoint__V3__ClusterLoadAssignment *cla;
	int zero = v != NULL && all_zero(v);

	cla = NEW(a, Envoy__Config__Endpoint__V3__ClusterLoadAssignment,
	    envoy__config__endpoint__v3__cluster_load_assignment);
	cla->cluster_name = (char *)name;
	if (v == NULL)
		return to_any(a, types[XDS_ENDPOINTS].url, &cla->base);
	cla->endpoints = arena_calloc(a, (v->n_nodes + 1) *
	    sizeof(*cla->endpoints));
	for (size_t i = 0; i < v->n_nodes; i++) {
		Envoy__Config__Endpoint__V3__LocalityLbEndpoints *le;
		uint32_t w;

		if (strcmp(v->nodes[i]->version, version) != 0 ||
		    (w = node_weight(v->nodes[i], zero)) == 0)
			continue;
		if ((le = locality(a, v->nodes[i], w)) != NULL)
			cla->endpoints[cla->n_endpoints++] = le;
	}
	return to_any(a, types[XDS_ENDPOINTS].url, &cla->base);
}

/* ---- lookups ---- */

Google__Protobuf__Any *
xds_resource(struct arena *a, enum xds_type t, const char *name,
    const pb_view *v, const Platform__Router__V1__Rules *rules)
{
	char buf[160];
	const char *version;

	if (xds_name_service(t, name, buf, sizeof(buf), &version) == NULL)
		return NULL;
	switch (t) {
	case XDS_LISTENER:
		return v != NULL ? listener(a, v) : NULL;
	case XDS_ROUTE:
		return v != NULL ? to_any(a, types[XDS_ROUTE].url,
		    &route_config(a, v)->base) : NULL;
	case XDS_CLUSTER:
		return v != NULL && has_version(v, version) ?
		    cluster(a, name, rules) : NULL;
	case XDS_ENDPOINTS:
		/* Always there (empty when nothing is left): a client
		 * waits for an assignment it cannot be told is gone. */
		return endpoints(a, name, v, version);
	default:
		return NULL;
	}
}

size_t
xds_names_of(struct arena *a, enum xds_type t, const pb_view *v,
    const char **names, size_t n, size_t max)
{
	if (v == NULL)
		return n;
	if (t == XDS_LISTENER || t == XDS_ROUTE) {
		if (n < max)
			names[n++] = v->service;
		return n;
	}
	for (size_t i = 0; i < v->n_nodes && n < max; i++)
		if (!version_before(v, i))
			names[n++] = cluster_name(a, v->service,
			    v->nodes[i]->version);
	return n;
}
