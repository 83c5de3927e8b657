/*
 * registrar: keeps one node registered with discovery-srv.
 * See platform/registrar.h.
 *
 * The RegisterRequest is built once from private copies of the
 * registration and sent again at every beat. A thread sleeps on a condvar
 * between beats so stop wakes it at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "platform/client.h"
#include "platform/clock.h"
#include "platform/xalloc.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/log.h"
#include "platform/registrar.h"

#define REG_DEFAULT_TTL_S 30
#define REG_MAX_TTL_S 3600
#define REG_MIN_INTERVAL_MS 200
#define REG_BACKOFF_MIN_MS 250
#define REG_CALL_MS 3000
#define REG_DEREGISTER_MS 2000

#define M_REGISTER "/platform.discovery.v1.Discovery/Register"
#define M_DEREGISTER "/platform.discovery.v1.Discovery/Deregister"

typedef Platform__Discovery__V1__Service__MetadataEntry pb_svc_md;
typedef Platform__Discovery__V1__Node__MetadataEntry pb_node_md;
typedef Platform__Discovery__V1__Endpoint pb_endpoint;
typedef Platform__Discovery__V1__Node pb_node;
typedef Platform__Discovery__V1__RegisterResponse pb_reg_resp;

enum reg_state {
	REG_UNKNOWN = 0,
	REG_OK,
	REG_FAILING,
};

struct plat_registrar {
	plat_client *c;
	char *discovery;                 /* as given, for the logs */
	struct plat_addrs disc;          /* its replicas: whichever answers */
	char *service;
	char *version;
	char *node_id;
	char *address;
	char **md;                       /* key, value, ... (2 * nmd) */
	size_t nmd;
	char **eps;
	size_t neps;

	/* The request, pointing into the copies above. */
	Platform__Discovery__V1__RegisterRequest req;
	Platform__Discovery__V1__Service svc;
	pb_node node;
	pb_node *nodep;
	pb_svc_md *svc_md;
	pb_svc_md **svc_mdp;
	pb_node_md *node_md;
	pb_node_md **node_mdp;
	pb_endpoint *ep;
	pb_endpoint **epp;

	int64_t interval_ms;             /* ttl / 3 */
	enum reg_state state;            /* only the beat thread after start */
	atomic_int registered;

	pthread_t thr;
	int thr_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
};



/* Uniform in [ms/2, ms], from a per-registrar seed. */
static int64_t
reg_jitter(int64_t ms, unsigned *seed)
{
	if (ms < 2)
		return ms;
	return ms / 2 + rand_r(seed) % (ms / 2 + 1);
}

static void
reg_copy(plat_registrar *r, const struct plat_registration *reg)
{
	size_t i;

	r->service = xstrdup(reg->service);
	r->version = xstrdup(reg->version);
	r->node_id = xstrdup(reg->node_id);
	r->address = xstrdup(reg->address);
	if (reg->metadata != NULL)
		while (reg->metadata[2 * r->nmd] != NULL &&
		    reg->metadata[2 * r->nmd + 1] != NULL)
			r->nmd++;
	r->md = xcalloc(2 * r->nmd, sizeof(char *));
	for (i = 0; i < 2 * r->nmd; i++)
		r->md[i] = xstrdup(reg->metadata[i]);
	if (reg->endpoints != NULL)
		while (reg->endpoints[r->neps] != NULL)
			r->neps++;
	r->eps = xcalloc(r->neps, sizeof(char *));
	for (i = 0; i < r->neps; i++)
		r->eps[i] = xstrdup(reg->endpoints[i]);
}

/* The metadata goes on both the service and the node: the service's is
 * shared by its version, the node's tells this instance apart. */
static void
reg_build(plat_registrar *r, int ttl_s)
{
	static const pb_svc_md svc_md_init =
	    PLATFORM__DISCOVERY__V1__SERVICE__METADATA_ENTRY__INIT;
	static const pb_node_md node_md_init =
	    PLATFORM__DISCOVERY__V1__NODE__METADATA_ENTRY__INIT;
	static const pb_endpoint ep_init = PLATFORM__DISCOVERY__V1__ENDPOINT__INIT;
	size_t i;

	platform__discovery__v1__register_request__init(&r->req);
	platform__discovery__v1__service__init(&r->svc);
	platform__discovery__v1__node__init(&r->node);

	r->svc_md = xcalloc(r->nmd, sizeof(*r->svc_md));
	r->svc_mdp = xcalloc(r->nmd, sizeof(*r->svc_mdp));
	r->node_md = xcalloc(r->nmd, sizeof(*r->node_md));
	r->node_mdp = xcalloc(r->nmd, sizeof(*r->node_mdp));
	for (i = 0; i < r->nmd; i++) {
		r->svc_md[i] = svc_md_init;
		r->svc_md[i].key = r->md[2 * i];
		r->svc_md[i].value = r->md[2 * i + 1];
		r->svc_mdp[i] = &r->svc_md[i];
		r->node_md[i] = node_md_init;
		r->node_md[i].key = r->md[2 * i];
		r->node_md[i].value = r->md[2 * i + 1];
		r->node_mdp[i] = &r->node_md[i];
	}
	r->ep = xcalloc(r->neps, sizeof(*r->ep));
	r->epp = xcalloc(r->neps, sizeof(*r->epp));
	for (i = 0; i < r->neps; i++) {
		r->ep[i] = ep_init;
		r->ep[i].name = r->eps[i];
		r->epp[i] = &r->ep[i];
	}

	r->node.id = r->node_id;
	r->node.address = r->address;
	r->node.n_metadata = r->nmd;
	r->node.metadata = r->node_mdp;
	r->nodep = &r->node;

	r->svc.name = r->service;
	r->svc.version = r->version;
	r->svc.n_metadata = r->nmd;
	r->svc.metadata = r->svc_mdp;
	r->svc.n_endpoints = r->neps;
	r->svc.endpoints = r->epp;
	r->svc.n_nodes = 1;
	r->svc.nodes = &r->nodep;

	r->req.service = &r->svc;
	r->req.ttl_seconds = (uint32_t)ttl_s;
}

static void
reg_free(plat_registrar *r)
{
	size_t i;

	for (i = 0; i < 2 * r->nmd; i++)
		free(r->md[i]);
	for (i = 0; i < r->neps; i++)
		free(r->eps[i]);
	free(r->md);
	free(r->eps);
	free(r->svc_md);
	free(r->svc_mdp);
	free(r->node_md);
	free(r->node_mdp);
	free(r->ep);
	free(r->epp);
	free(r->service);
	free(r->version);
	free(r->node_id);
	free(r->address);
	free(r->discovery);
	plat_addrs_free(&r->disc);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static void
reg_set_interval(plat_registrar *r, int64_t ttl_s)
{
	r->interval_ms = ttl_s * 1000 / 3;
	if (r->interval_ms < REG_MIN_INTERVAL_MS)
		r->interval_ms = REG_MIN_INTERVAL_MS;
}

/* One Register; logs only when the outcome differs from the last one. */
static int
reg_once(plat_registrar *r)
{
	struct plat_call_opts co = { .deadline_ms = REG_CALL_MS };
	ProtobufCMessage *m;
	char err[256] = "", ttl[16];
	int rc;

	if (co.deadline_ms > r->interval_ms)
		co.deadline_ms = (int)r->interval_ms;
	rc = plat_client_call_any(r->c, &r->disc, M_REGISTER,
	    &r->req.base, &platform__discovery__v1__register_response__descriptor,
	    &m, &co, err, sizeof(err));
	if (rc == 0) {
		const pb_reg_resp *resp = (const pb_reg_resp *)m;

		/* Beat within the TTL the server actually applied. */
		if (resp->ttl_seconds > 0)
			reg_set_interval(r, resp->ttl_seconds);
		snprintf(ttl, sizeof(ttl), "%u", resp->ttl_seconds);
		protobuf_c_message_free_unpacked(m, NULL);
		if (r->state != REG_OK)
			log_info("registered", "service", r->service,
			    "version", r->version, "node", r->node_id,
			    "address", r->address, "discovery", r->discovery,
			    "ttl_s", ttl);
		r->state = REG_OK;
		atomic_store(&r->registered, 1);
		return 0;
	}
	atomic_store(&r->registered, 0);
	if (r->state != REG_FAILING)
		log_warn("registration failed; retrying", "service",
		    r->service, "node", r->node_id, "discovery", r->discovery,
		    "status", plat_status_name(rc), "message", err);
	r->state = REG_FAILING;
	return rc;
}

/* Waits ms or until stop; returns stop. Called with mu held. */
static int
reg_wait_locked(plat_registrar *r, int64_t ms)
{
	return plat_cond_wait_ms(&r->cv, &r->mu, ms, &r->stop);
}

static void *
reg_main(void *arg)
{
	plat_registrar *r = arg;
	int64_t backoff = REG_BACKOFF_MIN_MS, cap, wait_ms;
	unsigned seed = (unsigned)(uintptr_t)r ^ (unsigned)time(NULL);

	wait_ms = r->state == REG_OK ? r->interval_ms :
	    reg_jitter(backoff, &seed);
	pthread_mutex_lock(&r->mu);
	while (!reg_wait_locked(r, wait_ms)) {
		pthread_mutex_unlock(&r->mu);
		if (reg_once(r) == 0) {
			backoff = REG_BACKOFF_MIN_MS;
			wait_ms = r->interval_ms;
		} else {
			/* Retry faster than the beat, so one lost
			 * heartbeat does not cost the registration. */
			cap = r->interval_ms / 2;
			if (cap < REG_BACKOFF_MIN_MS)
				cap = REG_BACKOFF_MIN_MS;
			if ((backoff *= 2) > cap)
				backoff = cap;
			wait_ms = reg_jitter(backoff, &seed);
		}
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

plat_registrar *
plat_registrar_start(plat_client *c, const char *discovery,
    const struct plat_registration *reg)
{
	struct plat_addrs disc;
	plat_registrar *r;
	int ttl;

	if (c == NULL || reg == NULL || reg->service == NULL ||
	    reg->node_id == NULL || reg->address == NULL ||
	    plat_addrs_parse(&disc, discovery) != 0) {
		log_error("registrar: no client, discovery address or "
		    "registration; not registering");
		return NULL;
	}
	ttl = reg->ttl_s > 0 ? reg->ttl_s : REG_DEFAULT_TTL_S;
	if (ttl > REG_MAX_TTL_S)
		ttl = REG_MAX_TTL_S;

	r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->discovery = xstrdup(discovery);
	r->disc = disc;
	pthread_mutex_init(&r->mu, NULL);
	plat_cond_init(&r->cv);
	atomic_init(&r->registered, 0);
	reg_copy(r, reg);
	reg_build(r, ttl);
	reg_set_interval(r, ttl);

	reg_once(r);
	if (pthread_create(&r->thr, NULL, reg_main, r) != 0)
		log_error("registrar: cannot start the heartbeat thread",
		    "service", r->service, "node", r->node_id);
	else
		r->thr_started = 1;
	return r;
}

static void
reg_deregister(plat_registrar *r)
{
	Platform__Discovery__V1__DeregisterRequest req =
	    PLATFORM__DISCOVERY__V1__DEREGISTER_REQUEST__INIT;
	struct plat_call_opts co = { .deadline_ms = REG_DEREGISTER_MS };
	ProtobufCMessage *m;
	char err[256] = "";
	int rc;

	req.name = r->service;
	req.version = r->version;
	req.node_id = r->node_id;
	rc = plat_client_call_any(r->c, &r->disc, M_DEREGISTER,
	    &req.base, &platform__discovery__v1__deregister_response__descriptor,
	    &m, &co, err, sizeof(err));
	if (rc == 0) {
		protobuf_c_message_free_unpacked(m, NULL);
		log_info("deregistered", "service", r->service, "node",
		    r->node_id, "discovery", r->discovery);
	} else
		log_warn("deregistration failed; the node expires with its "
		    "TTL", "service", r->service, "node", r->node_id,
		    "discovery", r->discovery, "status", plat_status_name(rc),
		    "message", err);
}

void
plat_registrar_stop(plat_registrar *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (r->thr_started)
		pthread_join(r->thr, NULL);
	atomic_store(&r->registered, 0);
	reg_deregister(r);
	reg_free(r);
}

int
plat_registrar_registered(plat_registrar *r)
{
	return r != NULL && atomic_load(&r->registered);
}
