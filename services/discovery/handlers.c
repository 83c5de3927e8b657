/*
 * handlers: discovery-srv's gRPC methods over the registry.
 *
 * One rwlock guards the registry: lookups share it, changes take it
 * exclusively. Watch takes it exclusively while it sends the snapshot and
 * joins the watcher list, so no change can fall between the two; events
 * are sent to watchers under the same lock, so they arrive in revision
 * order.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "discovery.h"
#include "platform/client.h"
#include "platform/events.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/paging.h"
#include "platform/server.h"
#include "peers.h"
#include "registry.h"

/* How long a stopping replica keeps sending its peers what is queued
 * (its own deregistration among it). */
#define PEERS_FLUSH_MS 1000

static char *peers_opt;

static const struct settings_option discovery_options[] = {
	{ "--peers", "PLATFORM_PEERS",
	  "the other discovery-srv replicas, host:port,host:port: "
	  "registrations are copied to them and filled from them at start",
	  &peers_opt },
};

#define LIST_PAGE_DEFAULT 100
#define LIST_PAGE_MAX 1000

struct watcher {
	struct watcher *next;
	plat_stream *st;
	char service[REGISTRY_NAME_MAX + 1];   /* "" for every service */
};

static struct {
	pthread_rwlock_t lock;
	struct registry *reg;
	pthread_mutex_t hub_mu;                /* guards watchers */
	struct watcher *watchers;
	plat_events *events;
	struct metrics_family *mx_changes;     /* by change */

	pthread_t sweeper;
	pthread_mutex_t sweep_mu;
	pthread_cond_t sweep_cv;
	int stop;
} D = {
	.lock = PTHREAD_RWLOCK_INITIALIZER,
	.hub_mu = PTHREAD_MUTEX_INITIALIZER,
	.sweep_mu = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- watch events ---- */

static int
watch_send(plat_stream *st, Platform__Discovery__V1__EventType type,
    const struct reg_version *v, const struct reg_node *n,
    const char *reason, uint64_t revision)
{
	Platform__Discovery__V1__WatchResponse ev =
	    PLATFORM__DISCOVERY__V1__WATCH_RESPONSE__INIT;
	Platform__Discovery__V1__Service svc;
	Platform__Discovery__V1__Node *node;

	ev.type = type;
	ev.revision = revision;
	ev.reason = (char *)(reason != NULL ? reason : "");
	if (v != NULL) {
		svc = *v->svc;
		node = n->node;
		svc.n_nodes = 1;
		svc.nodes = &node;
		ev.service = &svc;
	}
	return plat_stream_send(st, &ev.base);
}

/* A node that appeared or went, as a platform event:
 * platform.discovery.registered / .deregistered / .expired. */
static void
emit_node_event(Platform__Discovery__V1__EventType type,
    const struct reg_version *v, const struct reg_node *n,
    const char *reason, uint64_t revision)
{
	const char *what;
	char topic[64], etype[80];

	if (type == PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED)
		what = "registered";
	else if (type == PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED)
		what = reason != NULL && strcmp(reason, "expired") == 0 ?
		    "expired" : "deregistered";
	else
		return;
	plat_counter_add(D.mx_changes, (const char *const[]){ what }, 1);
	snprintf(topic, sizeof(topic), "platform.discovery.%s", what);
	snprintf(etype, sizeof(etype), "platform.discovery.node.%s.v1", what);
	plat_event_emit_json(D.events, topic, etype, json_pack(
	    "{s:s,s:s,s:s,s:s,s:I}", "service", v->svc->name,
	    "version", v->svc->version, "node", n->node->id,
	    "address", n->node->address, "revision", (json_int_t)revision),
	    (const char *const[]){ "service", v->svc->name, NULL });
}

/* The registry's listener: runs under the exclusive lock. */
static void
on_registry_event(void *arg, Platform__Discovery__V1__EventType type,
    const struct reg_version *v, const struct reg_node *n,
    const char *reason, uint64_t revision)
{
	struct watcher *w;

	(void)arg;
	if (type == PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED ||
	    type == PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED) {
		char rev[24];

		snprintf(rev, sizeof(rev), "%llu",
		    (unsigned long long)revision);
		log_info(type ==
		    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED ?
		    "node registered" : "node removed", "service",
		    v->svc->name, "version", v->svc->version, "node",
		    n->node->id, "address", n->node->address, "reason",
		    reason, "revision", rev);
	}
	emit_node_event(type, v, n, reason, revision);
	pthread_mutex_lock(&D.hub_mu);
	for (w = D.watchers; w != NULL; w = w->next)
		if (w->service[0] == '\0' ||
		    strcmp(w->service, v->svc->name) == 0)
			watch_send(w->st, type, v, n, reason, revision);
	pthread_mutex_unlock(&D.hub_mu);
}

static void
watch_closed(plat_stream *st, void *arg)
{
	struct watcher *w = arg, **pp;

	pthread_mutex_lock(&D.hub_mu);
	for (pp = &D.watchers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&D.hub_mu);
	plat_stream_unref(st);
	free(w);
}

static void
watch_snapshot_name(plat_stream *st, const struct reg_name *name,
    uint64_t revision)
{
	for (size_t i = 0; i < name->nversions; i++) {
		const struct reg_version *v = name->versions[i];

		for (size_t j = 0; j < v->nnodes; j++)
			watch_send(st,
			    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED,
			    v, v->nodes[j], "", revision);
	}
}

static int
discovery_watch(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	const Platform__Discovery__V1__WatchRequest *req = (const void *)msg;
	const struct reg_name *name;
	struct watcher *w;
	uint64_t rev;

	if (req->service[0] != '\0' && registry_check_name(req->service) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "service: not a valid service name");
	if ((w = calloc(1, sizeof(*w))) == NULL)
		abort();
	strcpy(w->service, req->service);
	w->st = st;
	plat_stream_ref(st);

	pthread_rwlock_wrlock(&D.lock);
	rev = registry_revision(D.reg);
	if (req->service[0] != '\0') {
		if ((name = registry_lookup(D.reg, req->service)) != NULL)
			watch_snapshot_name(st, name, rev);
	} else {
		for (size_t i = 0; (name = registry_at(D.reg, i)) != NULL;
		    i++)
			watch_snapshot_name(st, name, rev);
	}
	watch_send(st, PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_SYNCED,
	    NULL, NULL, "", rev);
	pthread_mutex_lock(&D.hub_mu);
	w->next = D.watchers;
	D.watchers = w;
	pthread_mutex_unlock(&D.hub_mu);
	pthread_rwlock_unlock(&D.lock);

	plat_stream_on_close(st, watch_closed, w);
	return PLAT_STREAM_OPEN;
}

/* ---- unary methods ---- */

static int
discovery_register(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Discovery__V1__RegisterRequest *req =
	    (const void *)msg;
	Platform__Discovery__V1__RegisterResponse *out;
	char err[256];
	uint32_t ttl = 0;
	int rc;

	if (registry_validate(req, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	out = plat_new(ctx, Platform__Discovery__V1__RegisterResponse,
	    &platform__discovery__v1__register_response__descriptor);
	pthread_rwlock_wrlock(&D.lock);
	rc = registry_register(D.reg, req, plat_now_ms(), plat_wall_ms(), &ttl,
	    err, sizeof(err));
	out->revision = registry_revision(D.reg);
	pthread_rwlock_unlock(&D.lock);
	if (rc != PLAT_OK)
		return plat_error(ctx, rc, "%s", err);
	if (plat_ctx_metadata(ctx, PEERS_MD) == NULL)
		peers_forward_register(req);
	out->ttl_seconds = ttl;
	*resp = &out->base;
	return PLAT_OK;
}

static int
discovery_deregister(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Discovery__V1__DeregisterRequest *req =
	    (const void *)msg;
	Platform__Discovery__V1__DeregisterResponse *out;
	size_t removed;

	if (registry_check_name(req->name) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "name: not a valid service name");
	pthread_rwlock_wrlock(&D.lock);
	removed = registry_deregister(D.reg, req->name, req->version,
	    req->node_id, "deregistered");
	pthread_rwlock_unlock(&D.lock);
	/* Copied even when nothing was here: a peer may hold it. */
	if (plat_ctx_metadata(ctx, PEERS_MD) == NULL)
		peers_forward_deregister(req);
	if (removed == 0)
		return plat_error(ctx, PLAT_NOT_FOUND,
		    "no node %s%s%sof service \"%s\" version \"%s\"",
		    req->node_id[0] ? "\"" : "", req->node_id,
		    req->node_id[0] ? "\" " : "", req->name, req->version);
	out = plat_new(ctx, Platform__Discovery__V1__DeregisterResponse,
	    &platform__discovery__v1__deregister_response__descriptor);
	out->removed = (uint32_t)removed;
	*resp = &out->base;
	return PLAT_OK;
}

static int
discovery_get_service(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Discovery__V1__GetServiceRequest *req =
	    (const void *)msg;
	Platform__Discovery__V1__GetServiceResponse out =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_RESPONSE__INIT;
	const struct reg_name *name;
	int rc = PLAT_OK;

	if (registry_check_name(req->name) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "name: not a valid service name");
	pthread_rwlock_rdlock(&D.lock);
	if ((name = registry_lookup(D.reg, req->name)) == NULL) {
		rc = plat_error(ctx, PLAT_NOT_FOUND,
		    "service \"%s\" is not registered", req->name);
		goto out;
	}
	/* The response points into the registry: pack it under the lock. */
	out.n_services = name->nversions;
	out.services = plat_alloc(ctx, name->nversions *
	    sizeof(*out.services));
	for (size_t i = 0; i < name->nversions; i++) {
		const struct reg_version *v = name->versions[i];
		Platform__Discovery__V1__Service *s = plat_alloc(ctx,
		    sizeof(*s));

		*s = *v->svc;
		s->n_nodes = v->nnodes;
		s->nodes = plat_alloc(ctx, v->nnodes * sizeof(*s->nodes));
		for (size_t j = 0; j < v->nnodes; j++)
			s->nodes[j] = v->nodes[j]->node;
		out.services[i] = s;
	}
	if (plat_respond_now(ctx, &out.base) != 0)
		rc = plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "response over the maximum message size");
out:
	pthread_rwlock_unlock(&D.lock);
	*resp = NULL;
	return rc;
}

static int
discovery_list_services(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Discovery__V1__ListServicesRequest *req =
	    (const void *)msg;
	Platform__Discovery__V1__ListServicesResponse out =
	    PLATFORM__DISCOVERY__V1__LIST_SERVICES_RESPONSE__INIT;
	char after[REGISTRY_NAME_MAX + 1] = "";
	const struct reg_name *name;
	size_t idx;
	int page = 0, rc = PLAT_OK;

	if ((rc = plat_page_size(ctx, req->page_size, LIST_PAGE_DEFAULT,
	    LIST_PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0' &&
	    ((rc = plat_page_token_parse(ctx, req->page_token, 's', after,
	    sizeof(after))) != PLAT_OK || registry_check_name(after) != 0))
		return rc != PLAT_OK ? rc : plat_error(ctx,
		    PLAT_INVALID_ARGUMENT, "page_token: not a token this "
		    "server gave for this call");

	pthread_rwlock_rdlock(&D.lock);
	name = registry_next_after(D.reg, after, &idx);
	out.services = plat_alloc(ctx, (size_t)page * sizeof(*out.services));
	for (; name != NULL && out.n_services < (size_t)page;
	    name = registry_at(D.reg, ++idx)) {
		Platform__Discovery__V1__ServiceSummary *s;
		uint32_t nodes = 0;

		s = plat_new(ctx, Platform__Discovery__V1__ServiceSummary,
		    &platform__discovery__v1__service_summary__descriptor);
		s->name = name->name;
		s->n_versions = name->nversions;
		s->versions = plat_alloc(ctx, name->nversions *
		    sizeof(char *));
		for (size_t i = 0; i < name->nversions; i++) {
			s->versions[i] = name->versions[i]->svc->version;
			nodes += (uint32_t)name->versions[i]->nnodes;
		}
		s->node_count = nodes;
		out.services[out.n_services++] = s;
	}
	if (name != NULL && out.n_services > 0)
		out.next_page_token = plat_page_token(ctx, 's',
		    out.services[out.n_services - 1]->name);
	if (plat_respond_now(ctx, &out.base) != 0)
		rc = plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "response over the maximum message size");
	pthread_rwlock_unlock(&D.lock);
	*resp = NULL;
	return rc;
}

/* ---- TTL sweeper ---- */

static void *
sweeper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&D.sweep_mu);
	while (!plat_cond_wait_ms(&D.sweep_cv, &D.sweep_mu, 200, &D.stop)) {
		pthread_mutex_unlock(&D.sweep_mu);
		pthread_rwlock_wrlock(&D.lock);
		registry_expire(D.reg, plat_now_ms());
		pthread_rwlock_unlock(&D.lock);
		pthread_mutex_lock(&D.sweep_mu);
	}
	pthread_mutex_unlock(&D.sweep_mu);
	return NULL;
}

static double
gauge_nodes(void *arg)
{
	size_t n;

	(void)arg;
	pthread_rwlock_rdlock(&D.lock);
	n = D.reg != NULL ? registry_node_count(D.reg) : 0;
	pthread_rwlock_unlock(&D.lock);
	return (double)n;
}

static double
gauge_services(void *arg)
{
	size_t n;

	(void)arg;
	pthread_rwlock_rdlock(&D.lock);
	n = D.reg != NULL ? registry_count(D.reg) : 0;
	pthread_rwlock_unlock(&D.lock);
	return (double)n;
}

/* A registration a peer holds, taken at start. */
static void
apply_from_peer(const Platform__Discovery__V1__RegisterRequest *req)
{
	char err[256];
	uint32_t ttl;

	if (registry_validate(req, err, sizeof(err)) != 0)
		return;
	pthread_rwlock_wrlock(&D.lock);
	(void)registry_register(D.reg, req, plat_now_ms(), plat_wall_ms(),
	    &ttl, err, sizeof(err));
	pthread_rwlock_unlock(&D.lock);
}

static void discovery_fini(plat_server *srv);

static int
discovery_check_settings(const struct plat_settings *s, char *err,
    size_t errlen)
{
	struct plat_addrs l;

	(void)s;
	if (peers_opt == NULL || peers_opt[0] == '\0')
		return 0;
	if (plat_addrs_parse(&l, peers_opt) != 0)
		goto bad;
	for (size_t i = 0; i < l.n; i++)
		if (settings_check_address(l.addr[i]) != 0) {
			plat_addrs_free(&l);
			goto bad;
		}
	plat_addrs_free(&l);
	return 0;
bad:
	snprintf(err, errlen, "--peers: host:port addresses separated by "
	    "commas, not '%s'", peers_opt);
	return -1;
}

static int
discovery_init(plat_server *srv, const struct plat_settings *s)
{
	(void)s;
	metrics_gauge_fn(plat_server_metrics(srv), "discovery_nodes",
	    "Live registered nodes.", gauge_nodes, NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "discovery_services",
	    "Registered service names.", gauge_services, NULL);
	D.mx_changes = metrics_family(plat_server_metrics(srv),
	    METRICS_COUNTER, "discovery_node_changes_total", "Nodes "
	    "registered, deregistered and expired.", "change");
	D.events = plat_server_events(srv);
	D.reg = registry_new();
	registry_set_listener(D.reg, on_registry_event, NULL);
	D.stop = 0;
	plat_cond_init(&D.sweep_cv);
	if (pthread_create(&D.sweeper, NULL, sweeper_main, NULL) != 0) {
		registry_free(D.reg);
		D.reg = NULL;
		return -1;
	}
	if (peers_start(srv, peers_opt, apply_from_peer) != 0) {
		log_error("discovery: cannot start copying to its peers");
		discovery_fini(srv);
		return -1;
	}
	return 0;
}

/* Its own deregistration is queued by now: the peers get it. */
static void
discovery_stopping(plat_server *srv)
{
	(void)srv;
	peers_stop(PEERS_FLUSH_MS);
}

static void
discovery_fini(plat_server *srv)
{
	(void)srv;
	peers_stop(0);          /* a no-op unless init failed half-way */
	pthread_mutex_lock(&D.sweep_mu);
	D.stop = 1;
	pthread_cond_signal(&D.sweep_cv);
	pthread_mutex_unlock(&D.sweep_mu);
	pthread_join(D.sweeper, NULL);
	pthread_cond_destroy(&D.sweep_cv);
	pthread_rwlock_wrlock(&D.lock);
	registry_free(D.reg);
	D.reg = NULL;
	pthread_rwlock_unlock(&D.lock);
}

#define DISCOVERY_PATH "/platform.discovery.v1.Discovery/"

static const struct plat_method discovery_methods[] = {
	{
		.path = DISCOVERY_PATH "Register",
		.kind = PLAT_METHOD_UNARY,
		.request = &platform__discovery__v1__register_request__descriptor,
		.response = &platform__discovery__v1__register_response__descriptor,
		.unary = discovery_register,
		.idempotent = 1,
	},
	{
		.path = DISCOVERY_PATH "Deregister",
		.kind = PLAT_METHOD_UNARY,
		.request = &platform__discovery__v1__deregister_request__descriptor,
		.response = &platform__discovery__v1__deregister_response__descriptor,
		.unary = discovery_deregister,
	},
	{
		.path = DISCOVERY_PATH "GetService",
		.kind = PLAT_METHOD_UNARY,
		.request = &platform__discovery__v1__get_service_request__descriptor,
		.response = &platform__discovery__v1__get_service_response__descriptor,
		.unary = discovery_get_service,
		.idempotent = 1,
	},
	{
		.path = DISCOVERY_PATH "ListServices",
		.kind = PLAT_METHOD_UNARY,
		.request = &platform__discovery__v1__list_services_request__descriptor,
		.response = &platform__discovery__v1__list_services_response__descriptor,
		.unary = discovery_list_services,
		.idempotent = 1,
	},
	{
		.path = DISCOVERY_PATH "Watch",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__discovery__v1__watch_request__descriptor,
		.response = &platform__discovery__v1__watch_response__descriptor,
		.stream = discovery_watch,
	},
};
/* With no --discovery it registers with itself, so `platformctl
 * services` lists it. */
const struct plat_service discovery_service = {
	.name = "discovery",
	.grpc_service = "platform.discovery.v1.Discovery",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7070",
	.methods = discovery_methods,
	.nmethods = PLAT_COUNT(discovery_methods),
	.self_discovery = 1,
	.options = discovery_options,
	.noptions = PLAT_COUNT(discovery_options),
	.check_settings = discovery_check_settings,
	.stopping = discovery_stopping,
	.init = discovery_init,
	.fini = discovery_fini,
};
