/*
 * router_follow: the thread applying router-srv's views and sending the
 * client's stats. See platform/router_follow.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/log.h"
#include "platform/router/v1/router.pb-c.h"
#include "platform/router_follow.h"
#include "platform/xalloc.h"

#define M_WATCH "/platform.router.v1.Router/Watch"
#define M_REPORT "/platform.router.v1.Router/Report"
#define REPORT_MS 1000
#define REPORT_DEADLINE_MS 1000
#define ROUTER_NODES_MAX 16
#define REPORT_MAX 10000        /* router-srv's limit per Report */

typedef Platform__Router__V1__ServiceView pb_view;
typedef Platform__Router__V1__MethodStats pb_mstats;

/* What the follower set on the client for one service, to undo. */
struct applied {
	char *service;
	char **methods;                 /* limits set ("" whole service) */
	size_t nmethods;
	struct applied *next;
};

struct plat_router_follow {
	plat_client *c;
	char *reporter;
	Platform__Router__V1__Label **labels;
	size_t nlabels;
	pthread_t thr;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	plat_client_stream *stream;     /* the open Watch, under mu */
	struct applied *applied;
	int64_t lost_at_ms;             /* 0: a router is there */
	atomic_ulong views;
	size_t next_router;
	/* the report being built */
	pb_mstats **stats;
	size_t nstats;
};

static void
applied_free(struct applied *a)
{
	for (size_t i = 0; i < a->nmethods; i++)
		free(a->methods[i]);
	free(a->methods);
	free(a->service);
	free(a);
}

static struct applied *
applied_get(struct plat_router_follow *f, const char *service)
{
	struct applied *a;

	for (a = f->applied; a != NULL; a = a->next)
		if (strcmp(a->service, service) == 0)
			return a;
	a = xcalloc(1, sizeof(*a));
	a->service = xstrdup(service);
	a->next = f->applied;
	f->applied = a;
	return a;
}

/* Takes the limits a set off the client. */
static void
applied_clear_limits(struct plat_router_follow *f, struct applied *a)
{
	for (size_t i = 0; i < a->nmethods; i++) {
		plat_client_set_limit(f->c, a->service, a->methods[i], 0, 0);
		free(a->methods[i]);
	}
	a->nmethods = 0;
}

static void
follow_apply(struct plat_router_follow *f, const pb_view *v)
{
	const char **addrs;
	uint32_t *w;
	struct applied *a;

	if (v == NULL || v->service == NULL || v->service[0] == '\0')
		return;
	addrs = xcalloc(v->n_nodes + 1, sizeof(*addrs));
	w = xcalloc(v->n_nodes + 1, sizeof(*w));
	for (size_t i = 0; i < v->n_nodes; i++) {
		addrs[i] = v->nodes[i]->address;
		w[i] = v->nodes[i]->weight;
	}
	plat_client_route_set(f->c, v->service, addrs, w, v->n_nodes);
	free(addrs);
	free(w);
	a = applied_get(f, v->service);
	applied_clear_limits(f, a);
	a->methods = xrealloc(a->methods, (v->n_limits + 1) *
	    sizeof(*a->methods));
	for (size_t i = 0; i < v->n_limits; i++) {
		plat_client_set_limit(f->c, v->service, v->limits[i]->method,
		    v->limits[i]->rate, v->limits[i]->burst);
		a->methods[a->nmethods++] = xstrdup(v->limits[i]->method);
	}
	atomic_fetch_add(&f->views, 1);
}

/* Undoes what was set for service (NULL: every service). */
static void
follow_forget(struct plat_router_follow *f, const char *service)
{
	struct applied **pp = &f->applied, *a;

	while ((a = *pp) != NULL) {
		if (service != NULL && strcmp(a->service, service) != 0) {
			pp = &a->next;
			continue;
		}
		*pp = a->next;
		plat_client_route_clear(f->c, a->service);
		applied_clear_limits(f, a);
		applied_free(a);
	}
}

/* ---- reports ---- */

static void
report_add(void *arg, const struct plat_call_stats *st)
{
	struct plat_router_follow *f = arg;
	pb_mstats *m;
	size_t nerr = 0;

	if (f->nstats >= REPORT_MAX)
		return;
	m = xcalloc(1, sizeof(*m));
	platform__router__v1__method_stats__init(m);
	m->service = xstrdup(st->service);
	m->address = xstrdup(st->address);
	m->method = xstrdup(st->method);
	m->requests = st->requests;
	m->latency_ms_sum = st->latency_ms_sum;
	m->latency_ms_max = st->latency_ms_max;
	for (int i = 1; i < 17; i++)
		nerr += st->codes[i] != 0;
	m->errors = xcalloc(nerr + 1, sizeof(*m->errors));
	for (uint32_t i = 1; i < 17; i++) {
		Platform__Router__V1__MethodStats__ErrorsEntry *e;

		if (st->codes[i] == 0)
			continue;
		e = xcalloc(1, sizeof(*e));
		platform__router__v1__method_stats__errors_entry__init(e);
		e->key = i;
		e->value = st->codes[i];
		m->errors[m->n_errors++] = e;
	}
	f->stats = xrealloc(f->stats, (f->nstats + 1) * sizeof(*f->stats));
	f->stats[f->nstats++] = m;
}

static void
report_free(struct plat_router_follow *f)
{
	for (size_t i = 0; i < f->nstats; i++) {
		pb_mstats *m = f->stats[i];

		for (size_t j = 0; j < m->n_errors; j++)
			free(m->errors[j]);
		free(m->errors);
		free(m->service);
		free(m->address);
		free(m->method);
		free(m);
	}
	free(f->stats);
	f->stats = NULL;
	f->nstats = 0;
}

/* The router-srv nodes the client knows now, into addrs. */
static size_t
follow_routers(struct plat_router_follow *f,
    struct plat_node_stats *nodes)
{
	size_t n = plat_client_node_stats(f->c, PLAT_ROUTER_SERVICE, nodes,
	    ROUTER_NODES_MAX);

	return n > ROUTER_NODES_MAX ? ROUTER_NODES_MAX : n;
}

/* One Report with the stats since the last, to every router node. */
static void
follow_report(struct plat_router_follow *f, struct plat_node_stats *nodes,
    size_t n)
{
	Platform__Router__V1__ReportRequest req =
	    PLATFORM__ROUTER__V1__REPORT_REQUEST__INIT;
	struct plat_call_opts co = { .deadline_ms = REPORT_DEADLINE_MS };
	ProtobufCMessage *resp;
	char err[256];

	plat_client_drain_stats(f->c, report_add, f);
	if (f->nstats == 0 || n == 0) {
		report_free(f);
		return;
	}
	req.client = f->reporter;
	req.stats = f->stats;
	req.n_stats = f->nstats;
	for (size_t i = 0; i < n; i++) {
		/* A router that is down misses this second's stats: they
		 * are soft state, and the next report comes soon. */
		if (plat_client_call_addr(f->c, nodes[i].addr, M_REPORT,
		    &req.base, &platform__router__v1__report_response__descriptor,
		    &resp, &co, err, sizeof(err)) == 0)
			protobuf_c_message_free_unpacked(resp, NULL);
		else
			log_debug("router report failed", "router",
			    nodes[i].addr, "error", err);
	}
	report_free(f);
}

/* ---- the thread ---- */

static int
follow_stopping(struct plat_router_follow *f)
{
	int stop;

	pthread_mutex_lock(&f->mu);
	stop = f->stop;
	pthread_mutex_unlock(&f->mu);
	return stop;
}

static void
follow_lost(struct plat_router_follow *f, int64_t now)
{
	if (f->lost_at_ms == 0) {
		f->lost_at_ms = now;
		return;
	}
	if (f->applied != NULL && now - f->lost_at_ms >=
	    PLAT_ROUTER_VIEW_KEEP_MS) {
		log_warn("router-srv gone too long: routing round robin "
		    "until it is back");
		follow_forget(f, NULL);
	}
}

/* Reads the open Watch until the next report is due; 0 when it ended. */
static int
follow_read(struct plat_router_follow *f, plat_client_stream *s,
    int64_t until)
{
	Platform__Router__V1__WatchResponse *ev;
	ProtobufCMessage *m;
	int64_t left;
	int r;

	while ((left = until - plat_now_ms()) > 0) {
		r = plat_client_stream_next(s,
		    &platform__router__v1__watch_response__descriptor, &m,
		    (int)left);
		if (r == PLAT_STREAM_TIMEOUT)
			return 1;
		if (r != PLAT_STREAM_MESSAGE)
			return 0;
		ev = (Platform__Router__V1__WatchResponse *)m;
		if (ev->view != NULL)
			follow_apply(f, ev->view);
		if (ev->removed != NULL && ev->removed[0] != '\0')
			follow_forget(f, ev->removed);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return 1;
}

static plat_client_stream *
follow_open(struct plat_router_follow *f, struct plat_node_stats *nodes,
    size_t n)
{
	Platform__Router__V1__WatchRequest req =
	    PLATFORM__ROUTER__V1__WATCH_REQUEST__INIT;
	plat_client_stream *s = NULL;
	const char *addr = nodes[f->next_router++ % n].addr;
	char err[256];

	req.caller = f->reporter;
	req.labels = f->labels;
	req.n_labels = f->nlabels;
	if (plat_client_stream_open(f->c, addr, M_WATCH, &req.base, 0, NULL,
	    &s, err, sizeof(err)) != 0) {
		log_debug("cannot watch router-srv", "router", addr, "error",
		    err);
		return NULL;
	}
	pthread_mutex_lock(&f->mu);
	f->stream = s;
	if (f->stop)
		plat_client_stream_cancel(s);
	pthread_mutex_unlock(&f->mu);
	return s;
}

static void
follow_close(struct plat_router_follow *f, plat_client_stream *s)
{
	pthread_mutex_lock(&f->mu);
	f->stream = NULL;
	pthread_mutex_unlock(&f->mu);
	plat_client_stream_free(s);
}

static void *
follow_main(void *arg)
{
	struct plat_router_follow *f = arg;
	struct plat_node_stats nodes[ROUTER_NODES_MAX];
	plat_client_stream *s = NULL;
	int64_t next = plat_now_ms() + REPORT_MS;
	size_t n;

	while (!follow_stopping(f)) {
		n = follow_routers(f, nodes);
		if (s == NULL && n > 0)
			s = follow_open(f, nodes, n);
		if (s != NULL) {
			f->lost_at_ms = 0;
			if (!follow_read(f, s, next)) {
				follow_close(f, s);
				s = NULL;
				follow_lost(f, plat_now_ms());
			}
		} else {
			follow_lost(f, plat_now_ms());
			pthread_mutex_lock(&f->mu);
			plat_cond_wait_ms(&f->cv, &f->mu,
			    next - plat_now_ms(), &f->stop);
			pthread_mutex_unlock(&f->mu);
		}
		if (plat_now_ms() >= next) {
			follow_report(f, nodes, n);
			next = plat_now_ms() + REPORT_MS;
		}
	}
	if (s != NULL)
		follow_close(f, s);
	/* The last second's stats are not lost at a clean stop. */
	follow_report(f, nodes, follow_routers(f, nodes));
	return NULL;
}

struct plat_router_follow *
plat_router_follow_start(plat_client *c, const char *reporter,
    const char *const *labels)
{
	struct plat_router_follow *f;
	size_t n = 0;

	if (c == NULL)
		return NULL;
	f = xcalloc(1, sizeof(*f));
	f->c = c;
	f->reporter = xstrdup(reporter != NULL ? reporter : "");
	while (labels != NULL && labels[2 * n] != NULL &&
	    labels[2 * n + 1] != NULL)
		n++;
	f->labels = xcalloc(n + 1, sizeof(*f->labels));
	for (size_t i = 0; i < n; i++) {
		f->labels[i] = xcalloc(1, sizeof(*f->labels[i]));
		platform__router__v1__label__init(f->labels[i]);
		f->labels[i]->key = xstrdup(labels[2 * i]);
		f->labels[i]->value = xstrdup(labels[2 * i + 1]);
	}
	f->nlabels = n;
	atomic_init(&f->views, 0);
	pthread_mutex_init(&f->mu, NULL);
	plat_cond_init(&f->cv);
	/* Counting starts now, so the first report has a full second. */
	plat_client_drain_stats(c, report_add, f);
	report_free(f);
	if (pthread_create(&f->thr, NULL, follow_main, f) != 0) {
		log_warn("cannot start the router-srv follower");
		f->stop = 1;
		plat_router_follow_stop(f);
		return NULL;
	}
	return f;
}

void
plat_router_follow_stop(struct plat_router_follow *f)
{
	int started;

	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	started = !f->stop;
	f->stop = 1;
	if (f->stream != NULL)
		plat_client_stream_cancel(f->stream);
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	if (started)
		pthread_join(f->thr, NULL);
	while (f->applied != NULL) {
		struct applied *a = f->applied;

		f->applied = a->next;
		applied_free(a);
	}
	for (size_t i = 0; i < f->nlabels; i++) {
		free(f->labels[i]->key);
		free(f->labels[i]->value);
		free(f->labels[i]);
	}
	free(f->labels);
	free(f->reporter);
	report_free(f);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

unsigned long
plat_router_follow_views(struct plat_router_follow *f)
{
	return f != NULL ? atomic_load(&f->views) : 0;
}
