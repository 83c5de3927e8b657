/*
 * health: the standard grpc.health.v1 service on every server.
 *
 * Check answers the status of "" (the whole server) or a gRPC service
 * name; Watch sends the current status and then every change, through the
 * runtime's stream primitive. An unknown service is NOT_FOUND for Check
 * and SERVICE_UNKNOWN for Watch, as the protocol asks.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "platform/server.h"
#include "server_internal.h"

#define HEALTH_MAX_SERVICES 16
#define HEALTH_NAME_MAX 128

struct health_watcher {
	struct health_watcher *next;
	struct health_state *h;
	plat_stream *st;
	char service[HEALTH_NAME_MAX];
	int last;                         /* last status sent */
};

struct health_state {
	pthread_mutex_t mu;
	struct {
		char name[HEALTH_NAME_MAX];
		int status;
	} services[HEALTH_MAX_SERVICES];
	size_t n;
	struct health_watcher *watchers;
};

struct health_state *
health_new(void)
{
	struct health_state *h = calloc(1, sizeof(*h));

	if (h == NULL)
		abort();
	pthread_mutex_init(&h->mu, NULL);
	return h;
}

void
health_free(struct health_state *h)
{
	if (h == NULL)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

/* Status of a service name, or SERVICE_UNKNOWN. Caller holds h->mu. */
static int
health_lookup_locked(struct health_state *h, const char *service)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->services[i].name, service) == 0)
			return h->services[i].status;
	return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

static int
health_send(plat_stream *st, int status)
{
	Grpc__Health__V1__HealthCheckResponse resp =
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;

	resp.status = status;
	return plat_stream_send(st, &resp.base);
}

void
plat_health_set(plat_server *srv, const char *service,
    enum plat_health status)
{
	struct health_state *h = server_health(srv);
	struct health_watcher *w;
	size_t i;

	pthread_mutex_lock(&h->mu);
	for (i = 0; i < h->n; i++)
		if (strcmp(h->services[i].name, service) == 0)
			break;
	if (i == h->n) {
		if (h->n == HEALTH_MAX_SERVICES ||
		    strlen(service) >= HEALTH_NAME_MAX) {
			pthread_mutex_unlock(&h->mu);
			return;
		}
		strcpy(h->services[h->n++].name, service);
	}
	h->services[i].status = (int)status;
	for (w = h->watchers; w != NULL; w = w->next)
		if (strcmp(w->service, service) == 0 &&
		    w->last != (int)status) {
			w->last = (int)status;
			health_send(w->st, (int)status);
		}
	pthread_mutex_unlock(&h->mu);
}

void
health_close_watchers(struct health_state *h)
{
	struct health_watcher *w;

	pthread_mutex_lock(&h->mu);
	for (w = h->watchers; w != NULL; w = w->next)
		plat_stream_finish(w->st, PLAT_UNAVAILABLE,
		    "server shutting down");
	pthread_mutex_unlock(&h->mu);
}

static int
health_check(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
	struct health_state *h = server_health(plat_ctx_server(ctx));
	Grpc__Health__V1__HealthCheckResponse *out;
	int status;

	pthread_mutex_lock(&h->mu);
	status = health_lookup_locked(h, r->service);
	pthread_mutex_unlock(&h->mu);
	if (status ==
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN)
		return plat_error(ctx, PLAT_NOT_FOUND,
		    "service \"%s\" is unknown to this server", r->service);
	out = plat_new(ctx, Grpc__Health__V1__HealthCheckResponse,
	    &grpc__health__v1__health_check_response__descriptor);
	out->status = status;
	*resp = &out->base;
	return PLAT_OK;
}

static void
health_watch_closed(plat_stream *st, void *arg)
{
	struct health_watcher *w = arg, **pp;
	struct health_state *h = w->h;

	pthread_mutex_lock(&h->mu);
	for (pp = &h->watchers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&h->mu);
	plat_stream_unref(w->st);
	free(w);
}

static int
health_watch(plat_ctx *ctx, const ProtobufCMessage *req, plat_stream *st)
{
	const Grpc__Health__V1__HealthCheckRequest *r = (const void *)req;
	struct health_state *h = server_health(plat_ctx_server(ctx));
	struct health_watcher *w;

	if (strlen(r->service) >= HEALTH_NAME_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "service: longer than %d bytes", HEALTH_NAME_MAX - 1);
	if ((w = calloc(1, sizeof(*w))) == NULL)
		abort();
	w->h = h;
	strcpy(w->service, r->service);
	w->st = st;
	plat_stream_ref(st);
	pthread_mutex_lock(&h->mu);
	w->last = health_lookup_locked(h, r->service);
	health_send(st, w->last);
	w->next = h->watchers;
	h->watchers = w;
	pthread_mutex_unlock(&h->mu);
	plat_stream_on_close(st, health_watch_closed, w);
	return PLAT_STREAM_OPEN;
}

const struct plat_method health_methods[] = {
	{
		.path = "/grpc.health.v1.Health/Check",
		.kind = PLAT_METHOD_UNARY,
		.request = &grpc__health__v1__health_check_request__descriptor,
		.response = &grpc__health__v1__health_check_response__descriptor,
		.unary = health_check,
		.idempotent = 1,
	},
	{
		.path = "/grpc.health.v1.Health/Watch",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &grpc__health__v1__health_check_request__descriptor,
		.response = &grpc__health__v1__health_check_response__descriptor,
		.stream = health_watch,
	},
};
const size_t health_nmethods =
    sizeof(health_methods) / sizeof(health_methods[0]);
