/* Unit tests for router-srv's xDS resources (services/router/
 * xds_resources.c): a view in, Envoy messages out, decoded back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "xds_resources.h"

typedef Platform__Router__V1__NodeView Node;
typedef Platform__Router__V1__ServiceView View;
typedef Envoy__Config__Endpoint__V3__ClusterLoadAssignment Cla;

#define ACTIVE PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_ACTIVE
#define EJECTED PLATFORM__ROUTER__V1__NODE_STATE__NODE_STATE_EJECTED

static Node nodes[4];
static Node *nodep[4];
static View view;

/* probe: n1, n2 of version 1, n3 of version 2, n4 of version 2
 * ejected; weights 3000, 0, 7000, 0. */
static View *
probe(void)
{
	static const char *ids[] = { "n1", "n2", "n3", "n4" };
	static const char *addrs[] = { "10.0.0.1:81", "10.0.0.2:82",
	    "[::1]:83", "10.0.0.4:84" };
	static const char *vers[] = { "1", "1", "2", "2" };
	static const uint32_t w[] = { 3000, 0, 7000, 0 };

	platform__router__v1__service_view__init(&view);
	view.service = "probe";
	for (int i = 0; i < 4; i++) {
		platform__router__v1__node_view__init(&nodes[i]);
		nodes[i].id = (char *)ids[i];
		nodes[i].address = (char *)addrs[i];
		nodes[i].version = (char *)vers[i];
		nodes[i].weight = w[i];
		nodes[i].state = i == 3 ? EJECTED : ACTIVE;
		nodep[i] = &nodes[i];
	}
	view.nodes = nodep;
	view.n_nodes = 4;
	return &view;
}

static void
test_names(void **state)
{
	char buf[64];
	const char *v;

	(void)state;
	assert_string_equal(xds_name_service(XDS_LISTENER, "probe", buf,
	    sizeof(buf), &v), "probe");
	assert_null(xds_name_service(XDS_LISTENER, "probe/1", buf,
	    sizeof(buf), &v));
	assert_null(xds_name_service(XDS_LISTENER, "bad name", buf,
	    sizeof(buf), &v));
	assert_string_equal(xds_name_service(XDS_CLUSTER, "probe/1/x", buf,
	    sizeof(buf), &v), "probe");
	assert_string_equal(v, "1/x");
	assert_null(xds_name_service(XDS_ENDPOINTS, "probe", buf,
	    sizeof(buf), &v));
	assert_null(xds_name_service(XDS_ENDPOINTS, "/1", buf, sizeof(buf),
	    &v));
	assert_int_equal(xds_type_of(xds_type_url(XDS_ENDPOINTS)),
	    XDS_ENDPOINTS);
	assert_int_equal(xds_type_of("type.googleapis.com/x.Y"), -1);
}

static void
test_route_weights_by_version(void **state)
{
	struct arena a;
	Google__Protobuf__Any *any;
	Envoy__Config__Route__V3__RouteConfiguration *rc;
	Envoy__Config__Route__V3__WeightedCluster *wc;

	(void)state;
	arena_init(&a);
	any = xds_resource(&a, XDS_ROUTE, "probe", probe(), NULL);
	assert_non_null(any);
	rc = envoy__config__route__v3__route_configuration__unpack(NULL,
	    any->value.len, any->value.data);
	assert_non_null(rc);
	assert_string_equal(rc->name, "probe");
	wc = rc->virtual_hosts[0]->routes[0]->route->weighted_clusters;
	assert_int_equal(wc->n_clusters, 2);
	assert_string_equal(wc->clusters[0]->name, "probe/1");
	assert_int_equal(wc->clusters[0]->weight->value, 3000);
	assert_string_equal(wc->clusters[1]->name, "probe/2");
	assert_int_equal(wc->clusters[1]->weight->value, 7000);
	envoy__config__route__v3__route_configuration__free_unpacked(rc,
	    NULL);
	/* No node, no listener or route; the assignment is there, empty. */
	assert_null(xds_resource(&a, XDS_LISTENER, "probe", NULL, NULL));
	assert_null(xds_resource(&a, XDS_CLUSTER, "probe/9", probe(), NULL));
	assert_non_null(xds_resource(&a, XDS_ENDPOINTS, "probe/9", NULL,
	    NULL));
	arena_reset(&a);
}

static Cla *
assignment(struct arena *a, const char *name)
{
	Google__Protobuf__Any *any = xds_resource(a, XDS_ENDPOINTS, name,
	    &view, NULL);

	assert_non_null(any);
	return envoy__config__endpoint__v3__cluster_load_assignment__unpack(
	    NULL, any->value.len, any->value.data);
}

static void
test_endpoints_leave_out_drained_and_ejected(void **state)
{
	struct arena a;
	Cla *cla;
	Envoy__Config__Core__V3__SocketAddress *sa;

	(void)state;
	arena_init(&a);
	probe();
	cla = assignment(&a, "probe/1");
	assert_int_equal(cla->n_endpoints, 1);        /* n2 drained */
	assert_string_equal(cla->endpoints[0]->locality->sub_zone, "n1");
	assert_int_equal(cla->endpoints[0]->load_balancing_weight->value,
	    3000);
	sa = cla->endpoints[0]->lb_endpoints[0]->endpoint->address->
	    socket_address;
	assert_string_equal(sa->address, "10.0.0.1");
	assert_int_equal(sa->port_value, 81);
	envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(
	    cla, NULL);
	cla = assignment(&a, "probe/2");
	assert_int_equal(cla->n_endpoints, 1);        /* n4 ejected */
	sa = cla->endpoints[0]->lb_endpoints[0]->endpoint->address->
	    socket_address;
	assert_string_equal(sa->address, "::1");
	envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(
	    cla, NULL);
	/* Every node without a weight: each counts 1, ejected ones not. */
	nodes[0].weight = nodes[2].weight = 0;
	cla = assignment(&a, "probe/1");
	assert_int_equal(cla->n_endpoints, 2);
	assert_int_equal(cla->endpoints[0]->load_balancing_weight->value, 1);
	envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(
	    cla, NULL);
	/* A node whose address is not host:port is left out. */
	probe();
	nodes[0].address = "nowhere";
	cla = assignment(&a, "probe/1");
	assert_int_equal(cla->n_endpoints, 0);
	envoy__config__endpoint__v3__cluster_load_assignment__free_unpacked(
	    cla, NULL);
	arena_reset(&a);
}

static void
test_cluster_outlier(void **state)
{
	struct arena a;
	Google__Protobuf__Any *any;
	Envoy__Config__Cluster__V3__Cluster *c;
	Platform__Router__V1__Rules rules = PLATFORM__ROUTER__V1__RULES__INIT;
	Platform__Router__V1__OutlierDetection od =
	    PLATFORM__ROUTER__V1__OUTLIER_DETECTION__INIT;

	(void)state;
	arena_init(&a);
	od.error_percent = 30;
	od.base_ejection_ms = 2500;
	rules.outlier = &od;
	any = xds_resource(&a, XDS_CLUSTER, "probe/2", probe(), &rules);
	c = envoy__config__cluster__v3__cluster__unpack(NULL, any->value.len,
	    any->value.data);
	assert_string_equal(c->name, "probe/2");
	assert_int_equal(c->type,
	    ENVOY__CONFIG__CLUSTER__V3__CLUSTER__DISCOVERY_TYPE__EDS);
	assert_string_equal(c->eds_cluster_config->service_name, "probe/2");
	assert_int_equal(c->eds_cluster_config->eds_config->
	    config_source_specifier_case,
	    ENVOY__CONFIG__CORE__V3__CONFIG_SOURCE__CONFIG_SOURCE_SPECIFIER_ADS);
	assert_int_equal(c->outlier_detection->failure_percentage_threshold->
	    value, 30);
	assert_int_equal(c->outlier_detection->base_ejection_time->seconds, 2);
	assert_int_equal(c->outlier_detection->base_ejection_time->nanos,
	    500000000);
	assert_int_equal(c->outlier_detection->enforcing_success_rate->value,
	    0);
	envoy__config__cluster__v3__cluster__free_unpacked(c, NULL);
	od.disabled = 1;
	any = xds_resource(&a, XDS_CLUSTER, "probe/2", probe(), &rules);
	c = envoy__config__cluster__v3__cluster__unpack(NULL, any->value.len,
	    any->value.data);
	assert_null(c->outlier_detection);
	envoy__config__cluster__v3__cluster__free_unpacked(c, NULL);
	arena_reset(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_route_weights_by_version),
		cmocka_unit_test(test_endpoints_leave_out_drained_and_ejected),
		cmocka_unit_test(test_cluster_outlier),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
