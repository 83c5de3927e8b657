/*
 * fleet: the nodes, their checks and statuses, the probers, the sweeper
 * and the scraper. See fleet.h.
 *
 * One mutex (F.mu) guards the whole picture; nothing slow runs under it:
 * probes, scrapes and database writes copy what they need, let go, and
 * come back with the result. WatchStatus messages are queued under it
 * (the runtime's stream send never blocks), so every watcher sees the
 * changes in the order they were decided.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fleet.h"
#include "grpc/health/v1/health.pb-c.h"
#include "judge.h"
#include "platform/arena.h"
#include "platform/client.h"
#include "platform/clock.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/events.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"
#include "scrape.h"
#include "store.h"

#define OUTPUT_MAX 1024
#define PROBERS_MAX 16
#define SWEEP_MS 200
#define PROBE_CHECK "health"
#define M_HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define MONITOR_SERVICE "monitor"
#define EVENT_TOPIC "platform.monitor.status_changed"
#define EVENT_TYPE "platform.monitor.status_changed.v1"
#define STORE_CALL_MS 2000
#define PEER_CALL_MS 2000
#define MD_FORWARDED "x-monitor-forwarded"
#define M_PREFIX "/platform.monitor.v1.Monitor/"
#define M_REPORT M_PREFIX "ReportCheck"
#define M_GET_STATUS M_PREFIX "GetStatus"
#define M_LIST_CHECKS M_PREFIX "ListChecks"
#define M_STATS M_PREFIX "Stats"

typedef Platform__Monitor__V1__Check PbCheck;
typedef Platform__Monitor__V1__NodeStatus PbNode;
typedef Platform__Monitor__V1__StatusEvent PbEvent;

struct mcheck {
	struct mcheck *next;
	char *name;
	int pushed;
	int raw;                        /* the last result */
	struct mon_damper d;            /* d.status: what counts */
	char output[OUTPUT_MAX];
	int64_t updated_ms;             /* Unix ms */
	int64_t ttl_ms;                 /* pushed */
	int64_t expires_ms;             /* pushed: Unix ms */
	int dirty;                      /* to write behind */
};

struct mnode {
	struct mnode *next;
	char *id;
	char *service;
	char *address;                  /* NULL: not registered (yet) */
	char *metrics;                  /* its metrics endpoint, or NULL */
	unsigned gen;                   /* the watch snapshot that saw it */
	int status;                     /* damped: worst of its checks */
	int64_t since_ms;               /* Unix ms of the last change */
	int64_t due_ms;                 /* monotonic: the next probe */
	int inflight;
	int dirty;
	int owned;                      /* owned at the last sweep */
	int loading;                    /* taken over: its rows being read */
	struct mcheck *checks;
	int has_stats;
	struct mon_stats stats;
	int64_t scraped_ms;
	char scrape_err[256];
};

struct msettings {
	struct msettings *next;
	char *service;
	int64_t interval_ms, timeout_ms;
};

struct watcher {
	struct watcher *next;
	plat_stream *st;
	char *service;                  /* "" for all */
};

struct deleted {
	struct deleted *next;
	char *id;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;              /* wakes the probers */
	int stop;
	struct fleet_opts o;
	plat_server *srv;
	plat_client *client;
	plat_events *events;
	struct pg_store *store;
	const char *self;               /* this monitor's node id */
	struct mnode *nodes;
	struct msettings *settings;
	struct watcher *watchers;
	struct deleted *deleted;        /* node rows to delete behind */
	unsigned gen;                   /* the watch's current snapshot */
	int synced;                     /* the monitors are known */
	int loaded;                     /* the store's state read */
	plat_discovery_watch *watch;
	pthread_t probers[PROBERS_MAX];
	int nprobers;
	pthread_t scraper;
	int scraping;
	struct plat_feed_loop *sweeper;
	struct metrics_family *mx_probes;    /* by result */
	struct metrics_family *mx_changes;   /* by status */
} F = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- the picture ---- */

static int owned_locked(const struct mnode *n);

static struct mnode *
node_find_locked(const char *id)
{
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		if (strcmp(n->id, id) == 0)
			return n;
	return NULL;
}

static struct mnode *
node_get_locked(const char *id, const char *service)
{
	struct mnode *n = node_find_locked(id);

	if (n != NULL)
		return n;
	n = xcalloc(1, sizeof(*n));
	n->id = xstrdup(id);
	n->service = xstrdup(service);
	n->owned = owned_locked(n);     /* new here: nothing to take over */
	n->next = F.nodes;
	F.nodes = n;
	return n;
}

static void
node_free(struct mnode *n)
{
	struct mcheck *c, *next;

	for (c = n->checks; c != NULL; c = next) {
		next = c->next;
		free(c->name);
		free(c);
	}
	free(n->id);
	free(n->service);
	free(n->address);
	free(n->metrics);
	free(n);
}

static struct mcheck *
check_get_locked(struct mnode *n, const char *name, int pushed)
{
	struct mcheck *c;

	for (c = n->checks; c != NULL; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	c = xcalloc(1, sizeof(*c));
	c->name = xstrdup(name);
	c->pushed = pushed;
	c->next = n->checks;
	n->checks = c;
	return c;
}

/* Whether n has a check of that name. */
static int
node_check_known(const struct mnode *n, const char *name)
{
	for (const struct mcheck *c = n->checks; c != NULL; c = c->next)
		if (strcmp(c->name, name) == 0)
			return 1;
	return 0;
}

/* The service's settings, or the defaults (service NULL). */
static const struct msettings *
settings_of_locked(const char *service)
{
	static struct msettings def;

	for (struct msettings *s = F.settings; s != NULL; s = s->next)
		if (strcmp(s->service, service) == 0)
			return s;
	def.interval_ms = F.o.interval_ms;
	def.timeout_ms = F.o.timeout_ms;
	return &def;
}

static void
settings_put_locked(const char *service, int64_t interval_ms,
    int64_t timeout_ms)
{
	struct msettings *s;

	for (s = F.settings; s != NULL; s = s->next)
		if (strcmp(s->service, service) == 0)
			break;
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->service = xstrdup(service);
		s->next = F.settings;
		F.settings = s;
	}
	s->interval_ms = interval_ms;
	s->timeout_ms = timeout_ms;
}

/* The live monitor-srv node ids (registered, and this one always). */
static size_t
monitors_locked(const char **out, size_t max)
{
	size_t n = 0;
	int self = 0;

	for (struct mnode *m = F.nodes; m != NULL && n + 1 < max;
	    m = m->next)
		if (m->address != NULL &&
		    strcmp(m->service, MONITOR_SERVICE) == 0) {
			out[n++] = m->id;
			self |= strcmp(m->id, F.self) == 0;
		}
	if (!self)
		out[n++] = F.self;
	return n;
}

#define MONITORS_MAX 64

/* The monitor that owns a node id (its node id). */
static const char *
owner_locked(const char *node_id)
{
	const char *mons[MONITORS_MAX];
	size_t k = monitors_locked(mons, MONITORS_MAX);

	return mons[mon_owner(mons, k, node_id)];
}

static int
owned_locked(const struct mnode *n)
{
	return strcmp(owner_locked(n->id), F.self) == 0;
}

/* ---- messages ---- */

static PbCheck *
check_msg(struct arena *a, const struct mnode *n, const struct mcheck *c)
{
	PbCheck *m = arena_calloc(a, sizeof(*m));

	platform__monitor__v1__check__init(m);
	m->node_id = n->id;
	m->service = n->service;
	m->name = c->name;
	m->status = (Platform__Monitor__V1__CheckStatus)c->d.status;
	m->output = (char *)c->output;
	m->pushed = c->pushed;
	m->updated_ms = c->updated_ms;
	m->ttl_ms = c->ttl_ms;
	return m;
}

static size_t
ncheck(const struct mnode *n)
{
	size_t k = 0;

	for (const struct mcheck *c = n->checks; c != NULL; c = c->next)
		k += c->d.status != MON_UNSPECIFIED;
	return k;
}

/* A node with its checks, those that decided its status first. */
static PbNode *
node_msg(struct arena *a, const struct mnode *n)
{
	PbNode *m = arena_calloc(a, sizeof(*m));
	size_t k = 0;

	platform__monitor__v1__node_status__init(m);
	m->node_id = n->id;
	m->service = n->service;
	m->address = n->address != NULL ? n->address : "";
	m->status = (Platform__Monitor__V1__CheckStatus)n->status;
	m->since_ms = n->since_ms;
	m->monitor = (char *)F.self;
	m->checks = arena_calloc(a, (ncheck(n) + 1) * sizeof(*m->checks));
	for (int pass = 0; pass < 2; pass++)
		for (const struct mcheck *c = n->checks; c != NULL;
		    c = c->next)
			if (c->d.status != MON_UNSPECIFIED &&
			    (c->d.status == n->status) == (pass == 0))
				m->checks[k++] = check_msg(a, n, c);
	m->n_checks = k;
	return m;
}

static int
watcher_wants(const struct watcher *w, const struct mnode *n)
{
	return w->service[0] == '\0' || strcmp(w->service, n->service) == 0;
}

/* A change of a node's status: to every watcher and as an event. */
static void
node_changed_locked(struct mnode *n, int previous, int removed)
{
	struct arena a;
	PbEvent ev = PLATFORM__MONITOR__V1__STATUS_EVENT__INIT;
	json_t *checks;

	arena_init(&a);
	ev.node = node_msg(&a, n);
	ev.previous = (Platform__Monitor__V1__CheckStatus)previous;
	ev.removed = removed;
	for (struct watcher *w = F.watchers; w != NULL; w = w->next)
		if (watcher_wants(w, n))
			(void)plat_stream_send(w->st, &ev.base);
	arena_reset(&a);
	if (removed)
		return;
	plat_counter_add(F.mx_changes, (const char *[]){
	    mon_status_name(n->status) }, 1);
	log_info("node status changed", "node", n->id, "service", n->service,
	    "status", mon_status_name(n->status), "previous",
	    mon_status_name(previous));
	checks = json_array();
	for (struct mcheck *c = n->checks; c != NULL; c = c->next)
		if (c->d.status != MON_UNSPECIFIED)
			json_array_append_new(checks, json_pack(
			    "{s:s,s:s,s:s,s:b}", "name", c->name, "status",
			    mon_status_name(c->d.status), "output", c->output,
			    "pushed", c->pushed));
	plat_event_emit_json(F.events, EVENT_TOPIC, EVENT_TYPE, json_pack(
	    "{s:s,s:s,s:s,s:s,s:I,s:o}", "node_id", n->id, "service",
	    n->service, "status", mon_status_name(n->status), "previous",
	    mon_status_name(previous), "since_ms", (json_int_t)n->since_ms,
	    "checks", checks),
	    (const char *const[]){ "service", n->service, "node", n->id,
	    NULL });
}

/* The node's status from its checks' damped ones. */
static void
node_eval_locked(struct mnode *n)
{
	int s = MON_UNSPECIFIED, previous = n->status;

	for (struct mcheck *c = n->checks; c != NULL; c = c->next)
		s = mon_worst(s, c->d.status);
	if (s == MON_UNSPECIFIED || s == n->status)
		return;
	n->status = s;
	n->since_ms = plat_wall_ms();
	n->dirty = 1;
	node_changed_locked(n, previous, 0);
}

/* A result of a check: damped, then the node judged again. */
static void
check_result_locked(struct mnode *n, struct mcheck *c, int status,
    const char *output)
{
	c->raw = status;
	snprintf(c->output, sizeof(c->output), "%s", output);
	c->updated_ms = plat_wall_ms();
	(void)mon_damper_feed(&c->d, status, F.o.flap_threshold);
	node_eval_locked(n);
}

static void
node_remove_locked(struct mnode *n)
{
	struct mnode **pp;
	struct deleted *d;

	for (pp = &F.nodes; *pp != NULL; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	if (n->status != MON_UNSPECIFIED)
		node_changed_locked(n, n->status, 1);
	d = xcalloc(1, sizeof(*d));
	d->id = xstrdup(n->id);
	d->next = F.deleted;
	F.deleted = d;
	if (n->inflight) {
		/* Its prober still holds it: it is freed there. */
		n->inflight = -1;
		return;
	}
	node_free(n);
}

static void owners_changed_locked(void);

/* ---- the discovery watch ---- */

static const char *
md_value(Platform__Discovery__V1__Node *node, const char *key)
{
	for (size_t i = 0; i < node->n_metadata; i++)
		if (strcmp(node->metadata[i]->key, key) == 0)
			return node->metadata[i]->value;
	return NULL;
}

static void
replace(char **dst, const char *src)
{
	if (src != NULL && *dst != NULL && strcmp(*dst, src) == 0)
		return;
	free(*dst);
	*dst = src != NULL ? xstrdup(src) : NULL;
}

static void
watch_begin(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&F.mu);
	F.gen++;
	pthread_mutex_unlock(&F.mu);
}

static void
watch_event(void *arg, const Platform__Discovery__V1__WatchResponse *ev,
    int live)
{
	Platform__Discovery__V1__Service *svc = ev->service;

	(void)arg;
	(void)live;
	if (svc == NULL || svc->name[0] == '\0')
		return;
	pthread_mutex_lock(&F.mu);
	for (size_t i = 0; i < svc->n_nodes; i++) {
		Platform__Discovery__V1__Node *node = svc->nodes[i];
		struct mnode *n;

		if (ev->type ==
		    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED) {
			if ((n = node_find_locked(node->id)) != NULL)
				node_remove_locked(n);
			continue;
		}
		n = node_get_locked(node->id, svc->name);
		if (n->address == NULL) {
			/* New to the probers: its first probe somewhere in
			 * the first interval, so a fleet that appears at
			 * once is not probed at once. */
			int64_t iv = settings_of_locked(svc->name)->interval_ms;

			n->due_ms = plat_now_ms() + random() % (iv > 0 ? iv : 1);
		}
		replace(&n->service, svc->name);
		replace(&n->address, node->address);
		replace(&n->metrics, md_value(node, PLAT_MD_METRICS));
		n->gen = F.gen;
	}
	if (strcmp(svc->name, MONITOR_SERVICE) == 0)
		owners_changed_locked();
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

/* The snapshot is whole: a node it did not show is gone (one restored
 * from the database whose node left while no monitor ran, say). A node
 * known only from its reports, never registered, goes too: its next
 * report brings it back. */
static void
watch_synced(void *arg)
{
	struct mnode *n, *next;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	for (n = F.nodes; n != NULL; n = next) {
		next = n->next;
		if (n->gen != F.gen)
			node_remove_locked(n);
	}
	F.synced = 1;
	owners_changed_locked();
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

/* A node's new status, stored at once (the lock let go meanwhile), so
 * a replica that takes the node over finds it: the sweeper writes it
 * later if this fails. */
static void
store_node_now_locked(struct mnode *n)
{
	char id[256], svc[256], err[256];
	int status = n->status;
	int64_t since = n->since_ms;

	snprintf(id, sizeof(id), "%s", n->id);
	snprintf(svc, sizeof(svc), "%s", n->service);
	n->dirty = 0;
	pthread_mutex_unlock(&F.mu);
	if (store_put_node(F.store, &(struct store_node){ .node_id = id,
	    .service = svc, .status = status, .since_ms = since },
	    STORE_CALL_MS, err, sizeof(err)) != PLAT_OK) {
		pthread_mutex_lock(&F.mu);
		if ((n = node_find_locked(id)) != NULL)
			n->dirty = 1;
		return;
	}
	pthread_mutex_lock(&F.mu);
}

/* ---- probers ---- */

static int64_t
jittered(int64_t iv)
{
	/* 90% .. 110% of the interval: nodes drift apart, not together. */
	return iv - iv / 10 + (iv > 5 ? random() % (iv / 5 + 1) : 0);
}

/* The owned, registered node due first, or NULL; *wait_ms until it is
 * due when that is later. */
static struct mnode *
next_due_locked(int64_t *wait_ms)
{
	struct mnode *best = NULL;
	int64_t now = plat_now_ms();

	/* Until the watch has shown the other monitors, whose nodes are
	 * whose is not known. */
	for (struct mnode *n = F.nodes; F.synced && n != NULL; n = n->next)
		if (n->address != NULL && !n->inflight && !n->loading &&
		    (best == NULL || n->due_ms < best->due_ms) && n->owned)
			best = n;
	*wait_ms = best == NULL ? 1000 : best->due_ms - now;
	return best;
}

static int
probe(const char *address, int64_t timeout_ms, char *out, size_t outlen)
{
	Grpc__Health__V1__HealthCheckRequest req =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	char err[256] = "";
	int code, serving = 0;

	req.service = "";
	code = plat_client_call_addr(F.client, address, M_HEALTH_CHECK,
	    &req.base, &grpc__health__v1__health_check_response__descriptor,
	    &resp, &(struct plat_call_opts){ .deadline_ms = (int)timeout_ms },
	    err, sizeof(err));
	if (resp != NULL) {
		serving = ((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	return mon_probe_status(code, serving, err, out, outlen);
}

static void *
prober_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&F.mu);
	while (!F.stop) {
		int64_t wait, timeout, interval;
		struct mnode *n = next_due_locked(&wait);
		char address[300], out[OUTPUT_MAX];
		int status;

		if (n == NULL || wait > 0) {
			plat_cond_wait_ms(&F.cv, &F.mu, wait > 1000 ? 1000 :
			    wait, &F.stop);
			continue;
		}
		timeout = settings_of_locked(n->service)->timeout_ms;
		n->inflight = 1;
		snprintf(address, sizeof(address), "%s", n->address);
		pthread_mutex_unlock(&F.mu);
		status = probe(address, timeout, out, sizeof(out));
		plat_counter_add(F.mx_probes, (const char *[]){
		    mon_status_name(status) }, 1);
		pthread_mutex_lock(&F.mu);
		if (n->inflight < 0) {          /* removed meanwhile */
			node_free(n);
			continue;
		}
		n->inflight = 0;
		interval = settings_of_locked(n->service)->interval_ms;
		n->due_ms = plat_now_ms() + jittered(interval);
		if (n->owned && !n->loading)
			check_result_locked(n, check_get_locked(n,
			    PROBE_CHECK, 0), status, out);
		if (n->dirty)
			store_node_now_locked(n);
	}
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

/* ---- the sweeper: TTLs, and the writes behind ---- */

struct pending_check {
	char node_id[256], service[256], name[80], output[OUTPUT_MAX];
	int status, damped;
	int64_t ttl_ms, reported_ms, expires_ms;
};

struct pending_node {
	char node_id[256], service[256];
	int status;
	int64_t since_ms;
};

static void
expire_locked(int64_t now)
{
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		for (struct mcheck *c = n->checks; c != NULL &&
		    !n->loading && n->owned; c = c->next) {
			char out[OUTPUT_MAX];

			if (!c->pushed || c->raw == MON_CRITICAL ||
			    c->expires_ms > now)
				continue;
			snprintf(out, sizeof(out), "TTL expired: no report "
			    "within %" PRId64 " ms (last: %s: %.900s)",
			    c->ttl_ms, mon_status_name(c->raw), c->output);
			/* An expired TTL is already a run of missed
			 * reports: no damping on top. */
			c->raw = MON_CRITICAL;
			c->d.status = MON_CRITICAL;
			c->d.count = 0;
			snprintf(c->output, sizeof(c->output), "%s", out);
			c->dirty = 1;
			node_eval_locked(n);
		}
}

static void
pending_of(const struct mnode *n, const struct mcheck *c,
    struct pending_check *p)
{
	snprintf(p->node_id, sizeof(p->node_id), "%s", n->id);
	snprintf(p->service, sizeof(p->service), "%s", n->service);
	snprintf(p->name, sizeof(p->name), "%s", c->name);
	snprintf(p->output, sizeof(p->output), "%s", c->output);
	p->status = c->raw;
	p->damped = c->d.status;
	p->ttl_ms = c->ttl_ms;
	p->reported_ms = c->updated_ms;
	p->expires_ms = c->expires_ms;
}

static enum plat_code
put_pending(const struct pending_check *p, int64_t timeout_ms, char *err,
    size_t errlen)
{
	return store_put_check(F.store, &(struct store_check){
	    .node_id = p->node_id, .service = p->service, .name = p->name,
	    .output = p->output, .status = p->status, .damped = p->damped,
	    .ttl_ms = p->ttl_ms, .reported_ms = p->reported_ms,
	    .expires_ms = p->expires_ms }, timeout_ms, err, errlen);
}

static void
write_behind(void)
{
	struct pending_check *pc = NULL;
	struct pending_node *pn = NULL;
	struct deleted *del;
	size_t npc = 0, npn = 0, cap_c = 0, cap_n = 0;
	char err[256];

	pthread_mutex_lock(&F.mu);
	del = F.deleted;
	F.deleted = NULL;
	for (struct mnode *n = F.nodes; n != NULL; n = n->next) {
		if (n->dirty) {
			if (npn == cap_n)
				pn = xrealloc(pn, (cap_n = cap_n * 2 + 8) *
				    sizeof(*pn));
			snprintf(pn[npn].node_id, sizeof(pn->node_id), "%s",
			    n->id);
			snprintf(pn[npn].service, sizeof(pn->service), "%s",
			    n->service);
			pn[npn].status = n->status;
			pn[npn++].since_ms = n->since_ms;
			n->dirty = 0;
		}
		for (struct mcheck *c = n->checks; c != NULL; c = c->next) {
			if (!c->dirty)
				continue;
			if (npc == cap_c)
				pc = xrealloc(pc, (cap_c = cap_c * 2 + 8) *
				    sizeof(*pc));
			pending_of(n, c, &pc[npc++]);
			c->dirty = 0;
		}
	}
	pthread_mutex_unlock(&F.mu);

	/* A write that fails is dropped: the next report or change writes
	 * the row again, and the log says the database is away. */
	while (del != NULL) {
		struct deleted *next = del->next;

		(void)store_delete_node(F.store, del->id, STORE_CALL_MS, err,
		    sizeof(err));
		free(del->id);
		free(del);
		del = next;
	}
	for (size_t i = 0; i < npn; i++)
		(void)store_put_node(F.store, &(struct store_node){
		    .node_id = pn[i].node_id, .service = pn[i].service,
		    .status = pn[i].status, .since_ms = pn[i].since_ms },
		    STORE_CALL_MS, err, sizeof(err));
	for (size_t i = 0; i < npc; i++)
		(void)put_pending(&pc[i], STORE_CALL_MS, err, sizeof(err));
	free(pc);
	free(pn);
}

/* Rows read from the store outside the lock, applied under it. */
struct rows {
	struct store_check *checks;
	size_t nchecks, capc;
	struct store_node *nodes;
	size_t nnodes, capn;
	struct store_settings *settings;
	size_t nsettings, caps;
};

#define GROW(arr, n, cap) do {                                          \
	if ((n) == (cap))                                               \
		(arr) = xrealloc((arr), ((cap) = (cap) * 2 + 8) *       \
		    sizeof(*(arr)));                                    \
} while (0)

static void
rows_check(void *arg, const struct store_check *c)
{
	struct rows *r = arg;
	struct store_check *k;

	GROW(r->checks, r->nchecks, r->capc);
	k = &r->checks[r->nchecks++];
	*k = *c;
	k->node_id = xstrdup(c->node_id);
	k->service = xstrdup(c->service);
	k->name = xstrdup(c->name);
	k->output = xstrdup(c->output);
}

static void
rows_node(void *arg, const struct store_node *n)
{
	struct rows *r = arg;

	GROW(r->nodes, r->nnodes, r->capn);
	r->nodes[r->nnodes] = *n;
	r->nodes[r->nnodes].node_id = xstrdup(n->node_id);
	r->nodes[r->nnodes++].service = xstrdup(n->service);
}

static void
rows_settings(void *arg, const struct store_settings *st)
{
	struct rows *r = arg;

	GROW(r->settings, r->nsettings, r->caps);
	r->settings[r->nsettings] = *st;
	r->settings[r->nsettings++].service = xstrdup(st->service);
}

static const struct store_loader *
rows_loader(struct rows *r, struct store_loader *l)
{
	*l = (struct store_loader){ .check = rows_check, .node = rows_node,
	    .settings = rows_settings, .arg = r };
	return l;
}

static void
rows_free(struct rows *r)
{
	for (size_t i = 0; i < r->nchecks; i++) {
		free((char *)r->checks[i].node_id);
		free((char *)r->checks[i].service);
		free((char *)r->checks[i].name);
		free((char *)r->checks[i].output);
	}
	for (size_t i = 0; i < r->nnodes; i++) {
		free((char *)r->nodes[i].node_id);
		free((char *)r->nodes[i].service);
	}
	for (size_t i = 0; i < r->nsettings; i++)
		free((char *)r->settings[i].service);
	free(r->checks);
	free(r->nodes);
	free(r->settings);
}

/* The rows into the picture. fill_only (the database came back after
 * a start without it): what is judged here since wins over them. */
static void
rows_apply_locked(const struct rows *r, int fill_only)
{
	for (size_t i = 0; i < r->nnodes; i++) {
		const struct store_node *sn = &r->nodes[i];
		struct mnode *n = node_get_locked(sn->node_id, sn->service);

		if (fill_only && n->status != MON_UNSPECIFIED)
			continue;
		n->status = sn->status;
		n->since_ms = sn->since_ms;
	}
	for (size_t i = 0; i < r->nchecks; i++) {
		const struct store_check *sc = &r->checks[i];
		struct mnode *n = node_get_locked(sc->node_id, sc->service);
		struct mcheck *c;

		if (fill_only && node_check_known(n, sc->name))
			continue;
		c = check_get_locked(n, sc->name, 1);
		c->raw = sc->status;
		c->d.status = sc->damped;
		c->d.candidate = sc->damped;
		snprintf(c->output, sizeof(c->output), "%s", sc->output);
		c->ttl_ms = sc->ttl_ms;
		c->updated_ms = sc->reported_ms;
		c->expires_ms = sc->expires_ms;
	}
	for (size_t i = 0; i < r->nsettings; i++) {
		const struct store_settings *st = &r->settings[i];

		if (!fill_only || settings_of_locked(st->service)->service ==
		    NULL)
			settings_put_locked(st->service, st->interval_ms,
			    st->timeout_ms);
	}
}

/* Replaces what this replica held of a node (stale, from before another
 * replica owned it) with the rows its last owner wrote. */
static void
take_over_one(const char *id)
{
	struct rows r = { .nchecks = 0 };
	struct store_loader l;
	struct mnode *n;
	struct mcheck *c, *next;
	char err[256];
	enum plat_code code;

	code = store_load_node(F.store, id, rows_loader(&r, &l),
	    STORE_CALL_MS, err, sizeof(err));
	pthread_mutex_lock(&F.mu);
	if ((n = node_find_locked(id)) != NULL) {
		for (c = n->checks; c != NULL; c = next) {
			next = c->next;
			free(c->name);
			free(c);
		}
		n->checks = NULL;
		n->status = MON_UNSPECIFIED;
		n->since_ms = 0;
		rows_apply_locked(&r, 0);
		n->loading = 0;
		n->due_ms = plat_now_ms();
		pthread_cond_broadcast(&F.cv);
	}
	pthread_mutex_unlock(&F.mu);
	if (code != PLAT_OK)
		log_warn("monitor: taking a node over without its last state",
		    "node", id, "error", err);
	else
		log_info("monitor: node taken over", "node", id);
	rows_free(&r);
}

/* After the monitors changed: the nodes this replica has just come to
 * own are held back (not probed, judged or answered for) until their
 * last owner's rows are read; those it no longer owns it leaves. */
static void
owners_changed_locked(void)
{
	for (struct mnode *n = F.nodes; n != NULL; n = n->next) {
		int o = owned_locked(n);

		if (o && !n->owned)
			n->loading = 1;
		n->owned = o;
	}
}

/* The nodes waiting for their rows (a monitor left). */
static void
take_over(void)
{
	char **ids = NULL;
	size_t k = 0, cap = 0;

	pthread_mutex_lock(&F.mu);
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		if (n->loading) {
			if (k == cap)
				ids = xrealloc(ids, (cap = cap * 2 + 8) *
				    sizeof(*ids));
			ids[k++] = xstrdup(n->id);
		}
	pthread_mutex_unlock(&F.mu);
	for (size_t i = 0; i < k; i++) {
		take_over_one(ids[i]);
		free(ids[i]);
	}
	free(ids);
}

static int load_state(int fill_only);

/* A database that was away at start: its schema brought up to date,
 * and the last state read, once it answers (every 2 s until then). */
static void
store_recover(void)
{
	static int64_t next;
	char err[256];

	if (F.loaded || plat_now_ms() < next)
		return;
	next = plat_now_ms() + 2000;
	if (!pg_store_ready(F.store) &&
	    pg_store_migrate(F.store, err, sizeof(err)) != PLAT_OK)
		return;
	if (load_state(1) == 0)
		log_info("monitor: database back; the last state read");
}

static void
sweep(void *arg)
{
	(void)arg;
	store_recover();
	take_over();
	pthread_mutex_lock(&F.mu);
	expire_locked(plat_wall_ms());
	pthread_mutex_unlock(&F.mu);
	write_behind();
}

/* ---- the scraper ---- */

static void *
scraper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&F.mu);
	while (!F.stop) {
		/* One node at a time, oldest scrape first. */
		struct mnode *pick = NULL;
		int64_t now = plat_wall_ms();
		char addr[300], err[256] = "", *body = NULL;
		char id[256];
		struct mon_stats st;
		int rc;

		for (struct mnode *n = F.nodes; n != NULL; n = n->next)
			if (n->metrics != NULL && n->owned &&
			    now - n->scraped_ms >= F.o.scrape_interval_ms &&
			    (pick == NULL || n->scraped_ms < pick->scraped_ms))
				pick = n;
		if (pick == NULL) {
			plat_cond_wait_ms(&F.cv, &F.mu, 500, &F.stop);
			continue;
		}
		snprintf(addr, sizeof(addr), "%s", pick->metrics);
		snprintf(id, sizeof(id), "%s", pick->id);
		pick->scraped_ms = now;
		pthread_mutex_unlock(&F.mu);
		rc = scrape_metrics(addr, 2000, &body, err, sizeof(err));
		if (rc == 0)
			mon_stats_parse(body, &st);
		free(body);
		pthread_mutex_lock(&F.mu);
		if ((pick = node_find_locked(id)) == NULL)
			continue;
		pick->scraped_ms = plat_wall_ms();
		if (rc == 0) {
			pick->stats = st;
			pick->has_stats = 1;
			pick->scrape_err[0] = '\0';
		} else {
			snprintf(pick->scrape_err, sizeof(pick->scrape_err),
			    "%s", err);
		}
	}
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

/* ---- start and stop ---- */

/* The last state from the store (at start, and once the database is
 * back after a start without it): 0, or -1 when it could not be read. */
static int
load_state(int fill_only)
{
	struct rows r = { .nchecks = 0 };
	struct store_loader l;
	char err[256];
	enum plat_code code;

	code = store_load(F.store, rows_loader(&r, &l), STORE_CALL_MS, err,
	    sizeof(err));
	if (code == PLAT_OK) {
		pthread_mutex_lock(&F.mu);
		rows_apply_locked(&r, fill_only);
		F.loaded = 1;
		pthread_mutex_unlock(&F.mu);
	} else if (!fill_only) {
		log_warn("monitor: cannot read the last state; starting "
		    "without it (read once the database is back)", "error",
		    err);
	}
	rows_free(&r);
	return code == PLAT_OK ? 0 : -1;
}

static double
gauge_nodes(void *arg)
{
	size_t n = 0;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	for (struct mnode *m = F.nodes; m != NULL; m = m->next)
		n += m->address != NULL && m->owned;
	pthread_mutex_unlock(&F.mu);
	return (double)n;
}

int
fleet_start(plat_server *srv, struct pg_store *store,
    const struct fleet_opts *o)
{
	static const struct plat_discovery_watch_cb cb = {
		.begin = watch_begin,
		.event = watch_event,
		.synced = watch_synced,
	};
	struct metrics *m = plat_server_metrics(srv);

	F.o = *o;
	F.srv = srv;
	F.store = store;
	F.client = plat_server_client(srv);
	F.events = plat_server_events(srv);
	F.self = plat_server_settings(srv)->node_id;
	plat_cond_init(&F.cv);
	F.stop = 0;
	srandom((unsigned)plat_now_us());
	/* What the last run (or the other replicas) knew: a check keeps its
	 * status across a restart; one whose TTL passed meanwhile is found
	 * by the first sweep. */
	(void)load_state(0);
	F.mx_probes = metrics_family(m, METRICS_COUNTER,
	    "monitor_probes_total", "Health probes this monitor made, by "
	    "result.", "result");
	F.mx_changes = metrics_family(m, METRICS_COUNTER,
	    "monitor_status_changes_total", "Node status changes, by the new "
	    "status.", "status");
	metrics_gauge_fn(m, "monitor_nodes_owned", "Registered nodes this "
	    "monitor probes.", gauge_nodes, NULL);
	F.nprobers = o->probers < 1 ? 1 : o->probers > PROBERS_MAX ?
	    PROBERS_MAX : o->probers;
	for (int i = 0; i < F.nprobers; i++)
		if (pthread_create(&F.probers[i], NULL, prober_main, NULL) !=
		    0) {
			F.nprobers = i;
			fleet_stopping();
			return -1;
		}
	if (pthread_create(&F.scraper, NULL, scraper_main, NULL) != 0) {
		fleet_stopping();
		return -1;
	}
	F.scraping = 1;
	F.sweeper = plat_feed_loop_start(SWEEP_MS, sweep, NULL);
	F.watch = plat_discovery_watch_start(F.client, "", &cb, NULL);
	if (F.watch == NULL) {
		fleet_stopping();
		return -1;
	}
	return 0;
}

void
fleet_stopping(void)
{
	plat_discovery_watch_stop(F.watch);
	F.watch = NULL;
	pthread_mutex_lock(&F.mu);
	F.stop = 1;
	pthread_cond_broadcast(&F.cv);
	for (struct watcher *w = F.watchers; w != NULL; w = w->next)
		plat_stream_finish(w->st, PLAT_UNAVAILABLE,
		    "monitor-srv shutting down");
	pthread_mutex_unlock(&F.mu);
	for (int i = 0; i < F.nprobers; i++)
		pthread_join(F.probers[i], NULL);
	F.nprobers = 0;
	if (F.scraping)
		pthread_join(F.scraper, NULL);
	F.scraping = 0;
	plat_feed_loop_stop(F.sweeper);
	F.sweeper = NULL;
	if (F.store != NULL)
		write_behind();         /* the last changes */
}

void
fleet_free(void)
{
	struct mnode *n, *next;
	struct msettings *s, *snext;
	struct deleted *d, *dnext;

	for (n = F.nodes; n != NULL; n = next) {
		next = n->next;
		node_free(n);
	}
	F.nodes = NULL;
	for (s = F.settings; s != NULL; s = snext) {
		snext = s->next;
		free(s->service);
		free(s);
	}
	F.settings = NULL;
	for (d = F.deleted; d != NULL; d = dnext) {
		dnext = d->next;
		free(d->id);
		free(d);
	}
	F.deleted = NULL;
	pthread_cond_destroy(&F.cv);
}

/* ---- the handlers' work ---- */

/* The owner's address when another replica owns node_id, else NULL. */
static char *
owner_address_locked(const char *node_id)
{
	const char *owner = owner_locked(node_id);
	struct mnode *m;

	if (strcmp(owner, F.self) == 0 ||
	    (m = node_find_locked(owner)) == NULL || m->address == NULL)
		return NULL;
	return xstrdup(m->address);
}

/* A report another replica took, handed to the owner as it came. */
static int
forward_report(plat_ctx *ctx, const char *addr,
    const Platform__Monitor__V1__ReportCheckRequest *r)
{
	static const char *const md[] = { MD_FORWARDED, "1", NULL };
	ProtobufCMessage *resp = NULL;
	char err[256];
	int code;

	code = plat_client_call_addr(F.client, addr, M_REPORT, &r->base,
	    &platform__monitor__v1__report_check_response__descriptor, &resp,
	    &(struct plat_call_opts){ .deadline_ms = PEER_CALL_MS,
	    .metadata = md }, err, sizeof(err));
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (code == PLAT_OK)
		return PLAT_OK;
	if (code == PLAT_INVALID_ARGUMENT || code == PLAT_FAILED_PRECONDITION)
		return plat_error(ctx, code, "%s", err);
	return plat_error(ctx, PLAT_UNAVAILABLE, "the monitor-srv that owns "
	    "node \"%s\" (%s) did not take the report: %s: %s", r->node_id,
	    addr, plat_status_name(code), err);
}

int
fleet_report(plat_ctx *ctx, const Platform__Monitor__V1__ReportCheckRequest *r)
{
	struct mnode *n;
	struct mcheck *c;
	struct pending_check *pending;
	char *owner, err[256];
	int code;

	pthread_mutex_lock(&F.mu);
	if (!F.synced) {
		pthread_mutex_unlock(&F.mu);
		return plat_error(ctx, PLAT_UNAVAILABLE, "monitor-srv is "
		    "starting (the fleet is not known yet): report again");
	}
	/* Taken by the one that owns the node; one forwarded here is ours
	 * even if our views of the monitors differ for a moment. */
	if (plat_ctx_metadata(ctx, MD_FORWARDED) == NULL &&
	    (owner = owner_address_locked(r->node_id)) != NULL) {
		pthread_mutex_unlock(&F.mu);
		code = forward_report(ctx, owner, r);
		free(owner);
		return code;
	}
	n = node_get_locked(r->node_id, r->service);
	if (strcmp(n->service, r->service) != 0) {
		pthread_mutex_unlock(&F.mu);
		return plat_error(ctx, PLAT_FAILED_PRECONDITION, "node_id: "
		    "node \"%s\" is registered as service \"%s\", not \"%s\"",
		    r->node_id, n->service, r->service);
	}
	c = check_get_locked(n, r->name, 1);
	c->ttl_ms = r->ttl_ms;
	c->expires_ms = plat_wall_ms() + r->ttl_ms;
	check_result_locked(n, c, (int)r->status, r->output);
	pending = xcalloc(1, sizeof(*pending));
	pending_of(n, c, pending);
	c->dirty = 0;
	pthread_mutex_unlock(&F.mu);
	/* Stored before the answer, so the report outlives this replica
	 * (a take-over reads it). A database away still leaves the check
	 * judged here: the sweeper writes it once it is back. */
	code = put_pending(pending, plat_ctx_deadline_left_ms(ctx), err,
	    sizeof(err));
	free(pending);
	if (code == PLAT_OK)
		return PLAT_OK;
	pthread_mutex_lock(&F.mu);
	if ((n = node_find_locked(r->node_id)) != NULL)
		check_get_locked(n, r->name, 1)->dirty = 1;
	pthread_mutex_unlock(&F.mu);
	return plat_error(ctx, code, "judged, but not stored: %s", err);
}

/* ---- answers for the whole fleet: this replica's and the others' ---- */

struct peer_answers {
	ProtobufCMessage *resp[MONITORS_MAX];
	size_t n;
};

/* Asks every other live monitor-srv for its own part (req has local
 * set). One that does not answer is left out, and logged. */
static void
ask_peers(const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, struct peer_answers *pa)
{
	char *addrs[MONITORS_MAX], err[256];
	size_t k = 0;

	pa->n = 0;
	pthread_mutex_lock(&F.mu);
	for (struct mnode *m = F.nodes; m != NULL && k < MONITORS_MAX;
	    m = m->next)
		if (m->address != NULL &&
		    strcmp(m->service, MONITOR_SERVICE) == 0 &&
		    strcmp(m->id, F.self) != 0)
			addrs[k++] = xstrdup(m->address);
	pthread_mutex_unlock(&F.mu);
	for (size_t i = 0; i < k; i++) {
		ProtobufCMessage *resp = NULL;
		int code = plat_client_call_addr(F.client, addrs[i], method,
		    req, desc, &resp, &(struct plat_call_opts){
		    .deadline_ms = PEER_CALL_MS, .idempotent = 1 }, err,
		    sizeof(err));

		if (code == PLAT_OK && resp != NULL)
			pa->resp[pa->n++] = resp;
		else
			log_warn("monitor: a replica's part left out", "replica",
			    addrs[i], "code", plat_status_name(code), "error",
			    err);
		free(addrs[i]);
	}
}

/* The repeated field items of answer m: its elements, their number in
 * *n (through the descriptor, so one merge serves every answer). */
static void **
items_of(const ProtobufCMessage *m, const char *items, size_t *n)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
	    items);

	*n = *(const size_t *)((const char *)m + f->quantifier_offset);
	return *(void ***)((char *)m + f->offset);
}

/* Unless local, the other replicas' answers to method (req has local
 * set) in pa; the number of their items, for the room to merge them. */
static size_t
peers_fetch(int local, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, const char *items,
    struct peer_answers *pa)
{
	size_t k = 0, n;

	pa->n = 0;
	if (local)
		return 0;
	ask_peers(method, req, desc, pa);
	for (size_t i = 0; i < pa->n; i++) {
		(void)items_of(pa->resp[i], items, &n);
		k += n;
	}
	return k;
}

static void
peer_answers_free(struct peer_answers *pa)
{
	for (size_t i = 0; i < pa->n; i++)
		protobuf_c_message_free_unpacked(pa->resp[i], NULL);
	pa->n = 0;
}

static int
respond(plat_ctx *ctx, const ProtobufCMessage *m)
{
	if (plat_respond_now(ctx, m) != 0)
		return plat_error(ctx, PLAT_RESOURCE_EXHAUSTED, "the answer "
		    "is over the message size limit: ask for one service");
	return PLAT_OK;
}

/* The nodes a replica answers for: those it owns (registered or known
 * only from their reports). */
static int
answers_for_locked(const struct mnode *n)
{
	return n->status != MON_UNSPECIFIED && !n->loading && n->owned;
}

/* The service's entry in svcs (made with room for cap nodes). */
static Platform__Monitor__V1__ServiceStatus *
service_entry(struct arena *a, Platform__Monitor__V1__ServiceStatus **svcs,
    size_t *ns, const char *name, size_t cap)
{
	Platform__Monitor__V1__ServiceStatus *s;

	for (size_t i = 0; i < *ns; i++)
		if (strcmp(svcs[i]->service, name) == 0)
			return svcs[i];
	s = arena_calloc(a, sizeof(*s));
	platform__monitor__v1__service_status__init(s);
	s->service = (char *)name;
	s->nodes = arena_calloc(a, (cap + 1) * sizeof(*s->nodes));
	svcs[(*ns)++] = s;
	return s;
}

static void
service_add(Platform__Monitor__V1__ServiceStatus *s, PbNode *n)
{
	s->nodes[s->n_nodes++] = n;
	s->status = (Platform__Monitor__V1__CheckStatus)mon_worst(
	    (int)s->status, (int)n->status);
}

int
fleet_get_status(plat_ctx *ctx, const char *service, int local)
{
	Platform__Monitor__V1__GetStatusResponse out =
	    PLATFORM__MONITOR__V1__GET_STATUS_RESPONSE__INIT;
	Platform__Monitor__V1__GetStatusRequest q =
	    PLATFORM__MONITOR__V1__GET_STATUS_REQUEST__INIT;
	Platform__Monitor__V1__ServiceStatus **svcs;
	struct peer_answers pa = { .n = 0 };
	struct arena a;
	size_t nn = 0, ns = 0;
	int code;

	q.service = (char *)service;
	q.local = 1;
	(void)peers_fetch(local, M_GET_STATUS, &q.base,
	    &platform__monitor__v1__get_status_response__descriptor,
	    "services", &pa);
	for (size_t i = 0; i < pa.n; i++) {
		Platform__Monitor__V1__GetStatusResponse *r = (void *)pa.resp[i];

		for (size_t j = 0; j < r->n_services; j++)
			nn += r->services[j]->n_nodes;
	}
	arena_init(&a);
	pthread_mutex_lock(&F.mu);
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		nn++;
	svcs = arena_calloc(&a, (nn + 1) * sizeof(*svcs));
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		if (answers_for_locked(n) && (service[0] == '\0' ||
		    strcmp(service, n->service) == 0))
			service_add(service_entry(&a, svcs, &ns, n->service,
			    nn), node_msg(&a, n));
	for (size_t i = 0; i < pa.n; i++) {
		Platform__Monitor__V1__GetStatusResponse *r = (void *)pa.resp[i];

		for (size_t j = 0; j < r->n_services; j++)
			for (size_t k = 0; k < r->services[j]->n_nodes; k++)
				service_add(service_entry(&a, svcs, &ns,
				    r->services[j]->service, nn),
				    r->services[j]->nodes[k]);
	}
	out.services = svcs;
	out.n_services = ns;
	code = respond(ctx, &out.base);
	pthread_mutex_unlock(&F.mu);
	arena_reset(&a);
	peer_answers_free(&pa);
	return code;
}

int
fleet_list_checks(plat_ctx *ctx, const char *service, const char *node,
    int local)
{
	Platform__Monitor__V1__ListChecksResponse out =
	    PLATFORM__MONITOR__V1__LIST_CHECKS_RESPONSE__INIT;
	Platform__Monitor__V1__ListChecksRequest q =
	    PLATFORM__MONITOR__V1__LIST_CHECKS_REQUEST__INIT;
	struct peer_answers pa = { .n = 0 };
	struct arena a;
	size_t k = 0;
	int code;

	q.service = (char *)service;
	q.node_id = (char *)node;
	q.local = 1;
	k = peers_fetch(local, M_LIST_CHECKS, &q.base,
	    &platform__monitor__v1__list_checks_response__descriptor, "checks",
	    &pa);
	arena_init(&a);
	pthread_mutex_lock(&F.mu);
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		k += ncheck(n);
	out.checks = arena_calloc(&a, (k + 1) * sizeof(*out.checks));
	for (struct mnode *n = F.nodes; n != NULL; n = n->next) {
		if (!answers_for_locked(n) ||
		    (service[0] != '\0' && strcmp(service, n->service) != 0) ||
		    (node[0] != '\0' && strcmp(node, n->id) != 0))
			continue;
		for (struct mcheck *c = n->checks; c != NULL; c = c->next)
			if (c->d.status != MON_UNSPECIFIED)
				out.checks[out.n_checks++] = check_msg(&a, n,
				    c);
	}
	for (size_t i = 0; i < pa.n; i++) {
		size_t n;
		void **v = items_of(pa.resp[i], "checks", &n);

		for (size_t j = 0; j < n; j++)
			out.checks[out.n_checks++] = v[j];
	}
	code = respond(ctx, &out.base);
	pthread_mutex_unlock(&F.mu);
	arena_reset(&a);
	peer_answers_free(&pa);
	return code;
}

static void
watch_closed(plat_stream *st, void *arg)
{
	struct watcher *w = arg, **pp;

	pthread_mutex_lock(&F.mu);
	for (pp = &F.watchers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&F.mu);
	plat_stream_unref(st);
	free(w->service);
	free(w);
}

int
fleet_watch(plat_ctx *ctx, const char *service, plat_stream *st)
{
	PbEvent ev = PLATFORM__MONITOR__V1__STATUS_EVENT__INIT;
	struct watcher *w;
	struct arena a;

	(void)ctx;
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->service = xstrdup(service);
	plat_stream_ref(st);
	arena_init(&a);
	pthread_mutex_lock(&F.mu);
	if (F.stop) {
		pthread_mutex_unlock(&F.mu);
		plat_stream_unref(st);
		free(w->service);
		free(w);
		return plat_error(ctx, PLAT_UNAVAILABLE, "monitor-srv is "
		    "shutting down");
	}
	/* The current state, then every change: both under the lock, so
	 * none falls between. */
	ev.initial = 1;
	for (struct mnode *n = F.nodes; n != NULL; n = n->next) {
		if (!answers_for_locked(n) || !watcher_wants(w, n))
			continue;
		ev.node = node_msg(&a, n);
		(void)plat_stream_send(st, &ev.base);
		arena_reset(&a);
	}
	ev.node = NULL;
	ev.caught_up = 1;
	(void)plat_stream_send(st, &ev.base);
	w->next = F.watchers;
	F.watchers = w;
	pthread_mutex_unlock(&F.mu);
	plat_stream_on_close(st, watch_closed, w);
	return PLAT_STREAM_OPEN;
}

static Platform__Monitor__V1__ServiceSettings *
settings_msg(plat_ctx *ctx, const char *service, int64_t iv, int64_t to)
{
	Platform__Monitor__V1__ServiceSettings *m = plat_alloc(ctx,
	    sizeof(*m));

	platform__monitor__v1__service_settings__init(m);
	m->service = plat_strdup(ctx, service);
	m->interval_ms = iv;
	m->timeout_ms = to;
	return m;
}

int
fleet_set_settings(plat_ctx *ctx,
    const Platform__Monitor__V1__ServiceSettings *s)
{
	Platform__Monitor__V1__SetServiceSettingsResponse *out;
	char err[256];
	enum plat_code code;

	/* Stored first: answered OK only once it outlives a restart. */
	code = store_put_settings(F.store, &(struct store_settings){
	    .service = s->service, .interval_ms = s->interval_ms,
	    .timeout_ms = s->timeout_ms }, plat_ctx_deadline_left_ms(ctx), err,
	    sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	pthread_mutex_lock(&F.mu);
	settings_put_locked(s->service, s->interval_ms, s->timeout_ms);
	/* Nodes waiting out a longer interval are due by the new one. */
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		if (strcmp(n->service, s->service) == 0 &&
		    n->due_ms > plat_now_ms() + s->interval_ms)
			n->due_ms = plat_now_ms() + jittered(s->interval_ms);
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	out = plat_new(ctx, Platform__Monitor__V1__SetServiceSettingsResponse,
	    &platform__monitor__v1__set_service_settings_response__descriptor);
	out->settings = settings_msg(ctx, s->service, s->interval_ms,
	    s->timeout_ms);
	return plat_respond_now(ctx, &out->base) == 0 ? PLAT_OK :
	    PLAT_INTERNAL;
}

int
fleet_get_settings(plat_ctx *ctx, const char *service)
{
	Platform__Monitor__V1__GetServiceSettingsResponse *out;
	const struct msettings *s;
	int64_t iv, to;

	pthread_mutex_lock(&F.mu);
	s = settings_of_locked(service);
	iv = s->interval_ms;
	to = s->timeout_ms;
	pthread_mutex_unlock(&F.mu);
	out = plat_new(ctx, Platform__Monitor__V1__GetServiceSettingsResponse,
	    &platform__monitor__v1__get_service_settings_response__descriptor);
	out->settings = settings_msg(ctx, service, iv, to);
	return plat_respond_now(ctx, &out->base) == 0 ? PLAT_OK :
	    PLAT_INTERNAL;
}

/* Each service's sums over its nodes' summaries (the worst p99). */
static void
service_stats(struct arena *a, Platform__Monitor__V1__StatsResponse *out)
{
	out->services = arena_calloc(a, (out->n_nodes + 1) *
	    sizeof(*out->services));
	for (size_t i = 0; i < out->n_nodes; i++) {
		const Platform__Monitor__V1__NodeStats *n = out->nodes[i];
		Platform__Monitor__V1__ServiceStats *s = NULL;

		if (n->scraped_ms == 0)
			continue;
		for (size_t j = 0; j < out->n_services; j++)
			if (strcmp(out->services[j]->service, n->service) == 0)
				s = out->services[j];
		if (s == NULL) {
			s = arena_calloc(a, sizeof(*s));
			platform__monitor__v1__service_stats__init(s);
			s->service = n->service;
			out->services[out->n_services++] = s;
		}
		s->nodes++;
		s->requests += n->requests;
		s->errors += n->errors;
		s->memory_bytes += n->memory_bytes;
		if (n->p99_ms > s->p99_ms)
			s->p99_ms = n->p99_ms;
	}
}

int
fleet_stats(plat_ctx *ctx, const char *service, const char *node, int local)
{
	Platform__Monitor__V1__StatsResponse out =
	    PLATFORM__MONITOR__V1__STATS_RESPONSE__INIT;
	Platform__Monitor__V1__StatsRequest q =
	    PLATFORM__MONITOR__V1__STATS_REQUEST__INIT;
	struct peer_answers pa = { .n = 0 };
	struct arena a;
	size_t k = 0;
	int code;

	q.service = (char *)service;
	q.node_id = (char *)node;
	q.local = 1;
	k = peers_fetch(local, M_STATS, &q.base,
	    &platform__monitor__v1__stats_response__descriptor, "nodes", &pa);
	arena_init(&a);
	pthread_mutex_lock(&F.mu);
	for (struct mnode *n = F.nodes; n != NULL; n = n->next)
		k++;
	out.nodes = arena_calloc(&a, (k + 1) * sizeof(*out.nodes));
	for (struct mnode *n = F.nodes; n != NULL; n = n->next) {
		Platform__Monitor__V1__NodeStats *s;

		if (n->metrics == NULL || !n->owned ||
		    (service[0] != '\0' && strcmp(service, n->service) != 0) ||
		    (node[0] != '\0' && strcmp(node, n->id) != 0))
			continue;
		s = arena_calloc(&a, sizeof(*s));
		platform__monitor__v1__node_stats__init(s);
		s->node_id = n->id;
		s->service = n->service;
		if (n->has_stats) {
			s->requests = n->stats.requests;
			s->errors = n->stats.errors;
			s->p50_ms = n->stats.p50_ms;
			s->p90_ms = n->stats.p90_ms;
			s->p99_ms = n->stats.p99_ms;
			s->memory_bytes = n->stats.memory_bytes;
			s->scraped_ms = n->scraped_ms;
		}
		s->error = n->scrape_err;
		out.nodes[out.n_nodes++] = s;
	}
	for (size_t i = 0; i < pa.n; i++) {
		size_t n;
		void **v = items_of(pa.resp[i], "nodes", &n);

		for (size_t j = 0; j < n; j++)
			out.nodes[out.n_nodes++] = v[j];
	}
	service_stats(&a, &out);
	code = respond(ctx, &out.base);
	pthread_mutex_unlock(&F.mu);
	arena_reset(&a);
	peer_answers_free(&pa);
	return code;
}
