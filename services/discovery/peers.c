/*
 * peers: discovery-srv replicas keeping each other's registrations.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peers.h"
#include "platform/client.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"

#define M_REGISTER "/platform.discovery.v1.Discovery/Register"
#define M_DEREGISTER "/platform.discovery.v1.Discovery/Deregister"
#define M_LIST "/platform.discovery.v1.Discovery/ListServices"
#define M_GET "/platform.discovery.v1.Discovery/GetService"
#define PEER_QUEUE_MAX 10000
#define PEER_CALL_MS 2000
#define PEER_BACKOFF_MAX_MS 2000
#define FILL_PAGE 1000

/* A change on its way to a peer: the request, packed. */
struct pmsg {
	struct pmsg *next;
	int deregister;
	size_t len;
	uint8_t buf[];
};

struct peer {
	char *addr;
	pthread_t thr;
	bool started;
	struct pmsg *head, **tail;
	size_t n;
	bool failing;
};

static struct {
	plat_server *srv;
	struct peer *p;
	size_t n;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int64_t flush_deadline;
	atomic_ullong sent, dropped, failures;
} P = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int
send_one(struct peer *p, const struct pmsg *m)
{
	const ProtobufCMessageDescriptor *rq = m->deregister ?
	    &platform__discovery__v1__deregister_request__descriptor :
	    &platform__discovery__v1__register_request__descriptor;
	const ProtobufCMessageDescriptor *rs = m->deregister ?
	    &platform__discovery__v1__deregister_response__descriptor :
	    &platform__discovery__v1__register_response__descriptor;
	const char *md[] = { PEERS_MD, "1", NULL };
	struct plat_call_opts o = { .deadline_ms = PEER_CALL_MS,
	    .metadata = md };
	ProtobufCMessage *req, *resp = NULL;
	char err[256];
	int rc;

	if ((req = protobuf_c_message_unpack(rq, NULL, m->len, m->buf)) ==
	    NULL)
		return 0;               /* cannot happen: we packed it */
	rc = plat_client_call_addr(plat_server_client(P.srv), p->addr,
	    m->deregister ? M_DEREGISTER : M_REGISTER, req, rs, &resp, &o,
	    err, sizeof(err));
	protobuf_c_message_free_unpacked(req, NULL);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	/* A refusal (NOT_FOUND for a node the peer expired already, say)
	 * is the peer's answer: only an unreachable peer is retried. */
	if (rc == PLAT_UNAVAILABLE || rc == PLAT_DEADLINE_EXCEEDED) {
		if (!p->failing)
			log_warn("discovery: a peer cannot be reached; "
			    "holding its changes", "peer", p->addr, "status",
			    plat_status_name(rc), "error", err);
		p->failing = true;
		atomic_fetch_add(&P.failures, 1);
		return -1;
	}
	if (p->failing)
		log_info("discovery: a peer takes changes again", "peer",
		    p->addr);
	p->failing = false;
	atomic_fetch_add(&P.sent, 1);
	return 0;
}

static void *
peer_main(void *arg)
{
	struct peer *p = arg;
	int64_t backoff = 100;

	pthread_mutex_lock(&P.mu);
	for (;;) {
		struct pmsg *m;

		while (p->head == NULL && !P.stop)
			pthread_cond_wait(&P.cv, &P.mu);
		if (p->head == NULL ||
		    (P.stop && plat_now_ms() >= P.flush_deadline))
			break;
		m = p->head;
		pthread_mutex_unlock(&P.mu);
		if (send_one(p, m) != 0) {
			pthread_mutex_lock(&P.mu);
			if (P.stop)
				break;
			(void)plat_cond_wait_ms(&P.cv, &P.mu, backoff,
			    &P.stop);
			backoff = backoff * 2 > PEER_BACKOFF_MAX_MS ?
			    PEER_BACKOFF_MAX_MS : backoff * 2;
			continue;
		}
		backoff = 100;
		pthread_mutex_lock(&P.mu);
		if ((p->head = m->next) == NULL)
			p->tail = &p->head;
		p->n--;
		free(m);
	}
	pthread_mutex_unlock(&P.mu);
	return NULL;
}

static void
enqueue(const ProtobufCMessage *req, int deregister)
{
	size_t len = protobuf_c_message_get_packed_size(req);

	if (P.n == 0)
		return;
	pthread_mutex_lock(&P.mu);
	for (size_t i = 0; i < P.n; i++) {
		struct peer *p = &P.p[i];
		struct pmsg *m;

		if (p->n >= PEER_QUEUE_MAX) {
			/* A peer away for long fills itself from the others
			 * when it comes back; the newest heartbeats win. */
			struct pmsg *old = p->head;

			if ((p->head = old->next) == NULL)
				p->tail = &p->head;
			p->n--;
			free(old);
			atomic_fetch_add(&P.dropped, 1);
		}
		m = xcalloc(1, sizeof(*m) + len);
		m->deregister = deregister;
		m->len = protobuf_c_message_pack(req, m->buf);
		*p->tail = m;
		p->tail = &m->next;
		p->n++;
	}
	pthread_cond_broadcast(&P.cv);
	pthread_mutex_unlock(&P.mu);
}

void
peers_forward_register(const Platform__Discovery__V1__RegisterRequest *req)
{
	enqueue(&req->base, 0);
}

void
peers_forward_deregister(
    const Platform__Discovery__V1__DeregisterRequest *req)
{
	enqueue(&req->base, 1);
}

/* ---- filling from a peer ---- */

/* Every node of one service at peer, each applied with its remaining
 * time to live. */
static int
fill_service(const char *addr, const char *name,
    void (*apply)(const Platform__Discovery__V1__RegisterRequest *))
{
	Platform__Discovery__V1__GetServiceRequest req =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_REQUEST__INIT;
	Platform__Discovery__V1__GetServiceResponse *r = NULL;
	struct plat_call_opts o = { .deadline_ms = PEER_CALL_MS };
	int64_t now = plat_wall_ms();
	char err[256];
	int rc;

	req.name = (char *)name;
	if ((rc = plat_client_call_addr(plat_server_client(P.srv), addr,
	    M_GET, &req.base,
	    &platform__discovery__v1__get_service_response__descriptor,
	    (ProtobufCMessage **)&r, &o, err, sizeof(err))) != PLAT_OK)
		return rc == PLAT_NOT_FOUND ? 0 : -1;
	for (size_t i = 0; i < r->n_services; i++) {
		Platform__Discovery__V1__Service svc = *r->services[i];

		for (size_t j = 0; j < r->services[i]->n_nodes; j++) {
			Platform__Discovery__V1__RegisterRequest rr =
			    PLATFORM__DISCOVERY__V1__REGISTER_REQUEST__INIT;
			Platform__Discovery__V1__Node *nd =
			    r->services[i]->nodes[j];
			int64_t left = nd->expires_unix_ms - now;

			if (left <= 0)
				continue;
			svc.n_nodes = 1;
			svc.nodes = &nd;
			rr.service = &svc;
			rr.ttl_seconds = (uint32_t)((left + 999) / 1000);
			if (rr.ttl_seconds > 3600)
				rr.ttl_seconds = 3600;
			apply(&rr);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* Every registration one peer holds: 0, or -1 when it does not answer. */
static int
fill_from(const char *addr,
    void (*apply)(const Platform__Discovery__V1__RegisterRequest *))
{
	Platform__Discovery__V1__ListServicesRequest req =
	    PLATFORM__DISCOVERY__V1__LIST_SERVICES_REQUEST__INIT;
	struct plat_call_opts o = { .deadline_ms = PEER_CALL_MS };
	char err[256], *token = NULL;
	size_t names = 0;

	req.page_size = FILL_PAGE;
	for (;;) {
		Platform__Discovery__V1__ListServicesResponse *r = NULL;

		req.page_token = token != NULL ? token : "";
		if (plat_client_call_addr(plat_server_client(P.srv), addr,
		    M_LIST, &req.base,
		    &platform__discovery__v1__list_services_response__descriptor,
		    (ProtobufCMessage **)&r, &o, err, sizeof(err)) != PLAT_OK) {
			free(token);
			return -1;
		}
		for (size_t i = 0; i < r->n_services; i++, names++)
			(void)fill_service(addr, r->services[i]->name, apply);
		free(token);
		token = r->next_page_token[0] != '\0' ?
		    xstrdup(r->next_page_token) : NULL;
		protobuf_c_message_free_unpacked(&r->base, NULL);
		if (token == NULL)
			break;
	}
	{
		char n[24];

		snprintf(n, sizeof(n), "%zu", names);
		log_info("discovery: filled from a peer", "peer", addr,
		    "services", n);
	}
	return 0;
}

/* ---- lifecycle ---- */

static double
gauge_sent(void *arg)
{
	(void)arg;
	return (double)atomic_load(&P.sent);
}

static double
gauge_dropped(void *arg)
{
	(void)arg;
	return (double)atomic_load(&P.dropped);
}

static double
gauge_failures(void *arg)
{
	(void)arg;
	return (double)atomic_load(&P.failures);
}

int
peers_start(plat_server *srv, const char *list,
    void (*apply)(const Platform__Discovery__V1__RegisterRequest *))
{
	struct plat_addrs l;
	struct metrics *mx = plat_server_metrics(srv);

	P.srv = srv;
	P.stop = 0;
	if (list == NULL || list[0] == '\0')
		return 0;
	if (plat_addrs_parse(&l, list) != 0 || plat_server_client(srv) ==
	    NULL)
		return -1;
	plat_cond_init(&P.cv);
	P.p = xcalloc(l.n, sizeof(*P.p));
	/* Every replica may be given the same list: its own address in it
	 * is skipped. */
	for (size_t i = 0; i < l.n; i++) {
		if (strcmp(l.addr[i], plat_server_advertised(srv)) == 0)
			continue;
		P.p[P.n].addr = xstrdup(l.addr[i]);
		P.p[P.n].tail = &P.p[P.n].head;
		P.n++;
	}
	plat_addrs_free(&l);
	/* A replica that starts takes what a peer holds first. */
	for (size_t i = 0; i < P.n; i++)
		if (fill_from(P.p[i].addr, apply) == 0)
			break;
	for (size_t i = 0; i < P.n; i++) {
		if (pthread_create(&P.p[i].thr, NULL, peer_main, &P.p[i]) != 0)
			return -1;
		P.p[i].started = true;
	}
	metrics_counter_fn(mx, "discovery_peer_sent_total", "Changes copied "
	    "to peer replicas.", gauge_sent, NULL);
	metrics_counter_fn(mx, "discovery_peer_dropped_total", "Changes for a "
	    "peer dropped: its queue was full.", gauge_dropped, NULL);
	metrics_counter_fn(mx, "discovery_peer_failures_total", "Sends to a "
	    "peer that could not reach it.", gauge_failures, NULL);
	return 0;
}

void
peers_stop(int flush_ms)
{
	pthread_mutex_lock(&P.mu);
	P.stop = 1;
	P.flush_deadline = plat_now_ms() + flush_ms;
	pthread_cond_broadcast(&P.cv);
	pthread_mutex_unlock(&P.mu);
	for (size_t i = 0; i < P.n; i++) {
		struct pmsg *m;

		if (P.p[i].started)
			pthread_join(P.p[i].thr, NULL);
		while ((m = P.p[i].head) != NULL) {
			P.p[i].head = m->next;
			free(m);
		}
		free(P.p[i].addr);
	}
	free(P.p);
	P.p = NULL;
	P.n = 0;
}
