/*
 * xds: the ADS streams (see xds.h for the protocol as served).
 *
 * Each stream's state is behind its own lock, taken by the call's
 * message handler and by the pusher, so a response's version and nonce
 * always follow the one before on the wire. The list of streams has a
 * lock of its own; a stream is found by its plat_stream (ADS streams are
 * one per client process, few, so a list walk is cheap) and held by a
 * reference while in use: a client may hang up while its last request is
 * being answered.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/arena.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"
#include "state.h"
#include "xds.h"
#include "xds_resources.h"

#define XDS_NAMES_MAX 1000         /* per type and stream */
#define XDS_NAME_MAX 256
#define XDS_LABELS_MAX 32
#define XDS_LABEL_MAX 128

typedef Envoy__Service__Discovery__V3__DiscoveryRequest pb_request;
typedef Envoy__Service__Discovery__V3__DiscoveryResponse pb_response;
typedef Platform__Router__V1__Label pb_label;

struct xds_sub {
	int subscribed;                  /* a request of this type came */
	char **names;                    /* NULL with wildcard */
	size_t nnames;
	int wildcard;
	int sent;                        /* a response went out */
	uint64_t hash;                   /* of the resources last sent */
	uint64_t version;
	char nonce[24];
};

struct xds_stream {
	plat_stream *st;
	pthread_mutex_t mu;
	atomic_int refs;
	atomic_int dead;
	int have_node;
	char *node_id;
	pb_label **labels;               /* the caller's, for splits */
	size_t nlabels;
	uint64_t nonces;
	struct xds_sub sub[XDS_NTYPES];
	struct xds_stream *next;
};

static struct {
	pthread_mutex_t mu;              /* streams */
	struct xds_stream *streams;
	size_t nstreams;
	atomic_ullong responses, nacks;
} X = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- streams ---- */

static void
sub_clear(struct xds_sub *sub)
{
	for (size_t i = 0; i < sub->nnames; i++)
		free(sub->names[i]);
	free(sub->names);
	sub->names = NULL;
	sub->nnames = 0;
}

static void
stream_unref(struct xds_stream *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (int t = 0; t < XDS_NTYPES; t++)
		sub_clear(&s->sub[t]);
	for (size_t i = 0; i < s->nlabels; i++) {
		free(s->labels[i]->key);
		free(s->labels[i]->value);
		free(s->labels[i]);
	}
	free(s->labels);
	free(s->node_id);
	pthread_mutex_destroy(&s->mu);
	plat_stream_unref(s->st);
	free(s);
}

static struct xds_stream *
stream_find(plat_stream *st)
{
	struct xds_stream *s;

	pthread_mutex_lock(&X.mu);
	for (s = X.streams; s != NULL; s = s->next)
		if (s->st == st) {
			atomic_fetch_add(&s->refs, 1);
			break;
		}
	pthread_mutex_unlock(&X.mu);
	return s;
}

/* The runtime calls this once the stream ended; the pusher unlinks it. */
static void
ads_closed(plat_stream *st, void *arg)
{
	struct xds_stream *s = arg;

	(void)st;
	atomic_store(&s->dead, 1);
}

static int
ads_open(plat_ctx *ctx, plat_stream *st)
{
	struct xds_stream *s = xcalloc(1, sizeof(*s));

	(void)ctx;
	s->st = st;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->refs, 1);        /* the list's */
	atomic_init(&s->dead, 0);
	plat_stream_ref(st);
	plat_stream_on_close(st, ads_closed, s);
	pthread_mutex_lock(&X.mu);
	s->next = X.streams;
	X.streams = s;
	X.nstreams++;
	pthread_mutex_unlock(&X.mu);
	return PLAT_STREAM_OPEN;
}

static int
ads_half_close(plat_ctx *ctx, plat_stream *st)
{
	(void)ctx;
	(void)st;
	return PLAT_OK;
}

/* ---- the caller ---- */

static void
label_add(struct xds_stream *s, const char *key, const char *value)
{
	pb_label *l;

	if (s->nlabels == XDS_LABELS_MAX || value[0] == '\0' ||
	    strlen(value) > XDS_LABEL_MAX || strlen(key) > XDS_LABEL_MAX)
		return;
	l = xcalloc(1, sizeof(*l));
	platform__router__v1__label__init(l);
	l->key = xstrdup(key);
	l->value = xstrdup(value);
	s->labels[s->nlabels++] = l;
}

/* A client's labels, for router-srv's splits: its node's cluster as
 * "service", its id as "node", and each string of its metadata (the
 * bootstrap file's node.metadata: {"track": "canary"}). gRPC sends the
 * node in the first request only. */
static void
take_node(struct xds_stream *s, const Envoy__Config__Core__V3__Node *n)
{
	const Google__Protobuf__Struct *md = n->metadata;

	s->have_node = 1;
	s->node_id = xstrdup(n->id);
	s->labels = xcalloc(XDS_LABELS_MAX, sizeof(*s->labels));
	label_add(s, "service", n->cluster);
	label_add(s, "node", n->id);
	for (size_t i = 0; md != NULL && i < md->n_fields; i++) {
		const Google__Protobuf__Value *v = md->fields[i]->value;

		if (v != NULL && v->kind_case ==
		    GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
			label_add(s, md->fields[i]->key, v->string_value);
	}
}

/* ---- responses ---- */

struct views {
	struct arena *a;
	struct xds_stream *s;
	const char *service[64];
	Platform__Router__V1__ServiceView *view[64];
	Platform__Router__V1__Rules *rules[64];
	size_t n;
};

/* service's view for this caller, read once per response. */
static size_t
views_get(struct views *vs, const char *service)
{
	for (size_t i = 0; i < vs->n; i++)
		if (strcmp(vs->service[i], service) == 0)
			return i;
	if (vs->n == 64)
		vs->n = 0;       /* many services: read again, still right */
	vs->service[vs->n] = arena_strdup(vs->a, service);
	vs->view[vs->n] = state_view(vs->a, service, vs->s->labels,
	    vs->s->nlabels);
	vs->rules[vs->n] = state_rules_get(vs->a, service);
	return vs->n++;
}

static uint64_t
hash_add(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ULL;
	return h;
}

/* The names a wildcard subscription stands for: every service's. */
static const char **
wildcard_names(struct views *vs, enum xds_type t, size_t *n)
{
	size_t nsvc, k = 0;
	char **svcs = state_services(vs->a, &nsvc);
	const char **names = arena_calloc(vs->a, (XDS_NAMES_MAX + 1) *
	    sizeof(*names));

	for (size_t i = 0; i < nsvc && k < XDS_NAMES_MAX; i++) {
		size_t j = views_get(vs, svcs[i]);

		k = xds_names_of(vs->a, t, vs->view[j], names, k,
		    XDS_NAMES_MAX);
	}
	*n = k;
	return names;
}

/* Sends type t's resources when they changed since the last response,
 * or always with force. Called with s->mu held. -1 when the stream
 * ended. */
static int
send_type(struct xds_stream *s, enum xds_type t, int force)
{
	struct xds_sub *sub = &s->sub[t];
	pb_response resp = ENVOY__SERVICE__DISCOVERY__V3__DISCOVERY_RESPONSE__INIT;
	struct arena a;
	struct views vs = { .a = &a, .s = s };
	const char **names;
	char version[24], buf[160];
	const char *v;
	size_t n;
	uint64_t h = 1469598103934665603ULL;
	int rc = 0;

	arena_init(&a);
	if (sub->wildcard) {
		names = wildcard_names(&vs, t, &n);
	} else {
		names = (const char **)sub->names;
		n = sub->nnames;
	}
	resp.resources = arena_calloc(&a, (n + 1) * sizeof(*resp.resources));
	for (size_t i = 0; i < n; i++) {
		const char *svc = xds_name_service(t, names[i], buf,
		    sizeof(buf), &v);
		Google__Protobuf__Any *any;
		size_t j;

		if (svc == NULL)
			continue;        /* not a name of ours: not there */
		j = views_get(&vs, svc);
		any = xds_resource(&a, t, names[i], vs.view[j], vs.rules[j]);
		if (any == NULL)
			continue;
		resp.resources[resp.n_resources++] = any;
		h = hash_add(h, names[i], strlen(names[i]) + 1);
		h = hash_add(h, any->value.data, any->value.len);
	}
	if (!force && sub->sent && h == sub->hash)
		goto out;
	sub->hash = h;
	sub->sent = 1;
	sub->version++;
	snprintf(version, sizeof(version), "%" PRIu64, sub->version);
	snprintf(sub->nonce, sizeof(sub->nonce), "%" PRIu64, ++s->nonces);
	resp.version_info = version;
	resp.nonce = sub->nonce;
	resp.type_url = (char *)xds_type_url(t);
	atomic_fetch_add(&X.responses, 1);
	if (plat_stream_send(s->st, &resp.base) != 0)
		rc = -1;
out:
	arena_reset(&a);
	return rc;
}

/* ---- requests ---- */

static int
names_equal(const struct xds_sub *sub, const pb_request *req, int wildcard)
{
	if (wildcard != sub->wildcard || sub->nnames != req->n_resource_names)
		return 0;
	for (size_t i = 0; i < sub->nnames; i++)
		if (strcmp(sub->names[i], req->resource_names[i]) != 0)
			return 0;
	return 1;
}

static int
check_request(plat_ctx *ctx, const pb_request *req, int *type)
{
	if (req->type_url[0] == '\0')
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "type_url: must be set (state of the world ADS)");
	if ((*type = xds_type_of(req->type_url)) < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "type_url: %.200s is not served (Listener, "
		    "RouteConfiguration, Cluster, ClusterLoadAssignment of "
		    "envoy.config.*.v3)", req->type_url);
	if (req->n_resource_names > XDS_NAMES_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "resource_names: at most %d", XDS_NAMES_MAX);
	for (size_t i = 0; i < req->n_resource_names; i++)
		if (strlen(req->resource_names[i]) > XDS_NAME_MAX ||
		    req->resource_names[i][0] == '\0')
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "resource_names[%zu]: 1 to %d bytes", i,
			    XDS_NAME_MAX);
	if (req->n_resource_locators > 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "resource_locators: xdstp:// locators are not served");
	return PLAT_OK;
}

static int
ads_message(plat_ctx *ctx, plat_stream *st, const ProtobufCMessage *m)
{
	const pb_request *req = (const void *)m;
	struct xds_stream *s;
	struct xds_sub *sub;
	int t = 0, rc, wildcard, changed;

	if ((rc = check_request(ctx, req, &t)) != PLAT_OK)
		return rc;
	if ((s = stream_find(st)) == NULL)
		return plat_error(ctx, PLAT_UNAVAILABLE, "stream ended");
	pthread_mutex_lock(&s->mu);
	if (!s->have_node && req->node != NULL)
		take_node(s, req->node);
	sub = &s->sub[t];
	/* Stale: an answer to a response before the last one. */
	if (req->response_nonce[0] != '\0' &&
	    strcmp(req->response_nonce, sub->nonce) != 0)
		goto out;
	if (req->error_detail != NULL) {
		atomic_fetch_add(&X.nacks, 1);
		log_warn("xds: a client rejected a response", "node",
		    s->node_id != NULL ? s->node_id : "", "type",
		    xds_type_name(t), "version", req->version_info,
		    "error", req->error_detail->message);
	}
	/* No names is every resource for Listener and Cluster, none for
	 * the others (their names come from those). */
	wildcard = req->n_resource_names == 0 &&
	    (t == XDS_LISTENER || t == XDS_CLUSTER);
	changed = !sub->subscribed || !names_equal(sub, req, wildcard);
	if (changed) {
		sub_clear(sub);
		sub->wildcard = wildcard;
		sub->names = xcalloc(req->n_resource_names + 1,
		    sizeof(*sub->names));
		for (size_t i = 0; i < req->n_resource_names; i++)
			sub->names[i] = xstrdup(req->resource_names[i]);
		sub->nnames = req->n_resource_names;
		sub->subscribed = 1;
	}
	/* A NACK is not answered with the same resources again. */
	if (send_type(s, (enum xds_type)t, changed) != 0)
		rc = PLAT_RESOURCE_EXHAUSTED;
out:
	pthread_mutex_unlock(&s->mu);
	stream_unref(s);
	return rc == PLAT_OK ? PLAT_STREAM_OPEN : plat_error(ctx, rc,
	    "the client is not reading its responses");
}

const struct plat_bidi_handlers xds_ads_handlers = {
	.on_open = ads_open,
	.on_message = ads_message,
	.on_half_close = ads_half_close,
};

/* ---- pushes ---- */

void
xds_push(void)
{
	struct xds_stream **pp, **v, *s, *dead = NULL;
	size_t n = 0;

	/* Unlink the ended streams, and take a reference on the others
	 * so they are written to without the list's lock. */
	pthread_mutex_lock(&X.mu);
	v = xcalloc(X.nstreams + 1, sizeof(*v));
	for (pp = &X.streams; (s = *pp) != NULL;) {
		if (atomic_load(&s->dead)) {
			*pp = s->next;
			X.nstreams--;
			s->next = dead;
			dead = s;
			continue;
		}
		atomic_fetch_add(&s->refs, 1);
		v[n++] = s;
		pp = &s->next;
	}
	pthread_mutex_unlock(&X.mu);
	while ((s = dead) != NULL) {
		dead = s->next;
		stream_unref(s);
	}
	for (size_t i = 0; i < n; i++) {
		s = v[i];
		pthread_mutex_lock(&s->mu);
		for (int t = 0; t < XDS_NTYPES; t++)
			if (!atomic_load(&s->dead) && s->sub[t].subscribed)
				(void)send_type(s, (enum xds_type)t, 0);
		pthread_mutex_unlock(&s->mu);
		stream_unref(s);
	}
	free(v);
}

/* ---- metrics ---- */

static double
gauge_streams(void *arg)
{
	size_t n;

	(void)arg;
	pthread_mutex_lock(&X.mu);
	n = X.nstreams;
	pthread_mutex_unlock(&X.mu);
	return (double)n;
}

static double
counter_responses(void *arg)
{
	(void)arg;
	return (double)atomic_load(&X.responses);
}

static double
counter_nacks(void *arg)
{
	(void)arg;
	return (double)atomic_load(&X.nacks);
}

void
xds_init(plat_server *srv)
{
	metrics_gauge_fn(plat_server_metrics(srv), "xds_streams",
	    "Open ADS streams.", gauge_streams, NULL);
	metrics_counter_fn(plat_server_metrics(srv), "xds_responses_total",
	    "DiscoveryResponses sent.", counter_responses, NULL);
	metrics_counter_fn(plat_server_metrics(srv), "xds_nacks_total",
	    "Responses a client rejected (NACK).", counter_nacks, NULL);
}

void
xds_fini(void)
{
	struct xds_stream *s;

	/* Every stream has ended by now. */
	while ((s = X.streams) != NULL) {
		X.streams = s->next;
		stream_unref(s);
	}
	X.nstreams = 0;
}
