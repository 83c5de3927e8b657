/*
 * state: see state.h.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "outlier.h"
#include "platform/balancer.h"
#include "platform/clock.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/xalloc.h"
#include "state.h"
#include "view.h"

typedef Platform__Router__V1__Rules pb_rules;

struct rnode {
	char *id, *address, *version;
	int stale;                       /* not seen in the new snapshot */
	struct outlier_node o;
	struct rnode *next;
};

struct rcell {
	char *address, *method;
	struct win w;
	struct rcell *next;
};

struct rsvc {
	char *name;
	struct rnode *nodes;
	size_t nnodes;
	pb_rules *rules;                 /* unpacked, NULL: none */
	int64_t rules_version;           /* kept after a delete */
	struct outlier_cfg cfg;
	struct rcell *cells;
	struct rsvc *next;
};

static struct {
	pthread_mutex_t mu;
	struct rsvc *svcs;
	size_t nsvcs, ncells;
	int snapshot;
} S = { .mu = PTHREAD_MUTEX_INITIALIZER };

void
state_init(void)
{
	pthread_mutex_lock(&S.mu);
	S.svcs = NULL;
	S.nsvcs = S.ncells = 0;
	pthread_mutex_unlock(&S.mu);
}

static void
rnode_free(struct rnode *n)
{
	free(n->id);
	free(n->address);
	free(n->version);
	free(n);
}

void
state_free(void)
{
	struct rsvc *s, *snext;
	struct rnode *n, *nnext;
	struct rcell *c, *cnext;

	pthread_mutex_lock(&S.mu);
	for (s = S.svcs; s != NULL; s = snext) {
		snext = s->next;
		for (n = s->nodes; n != NULL; n = nnext) {
			nnext = n->next;
			rnode_free(n);
		}
		for (c = s->cells; c != NULL; c = cnext) {
			cnext = c->next;
			free(c->address);
			free(c->method);
			free(c);
		}
		if (s->rules != NULL)
			protobuf_c_message_free_unpacked(&s->rules->base, NULL);
		free(s->name);
		free(s);
	}
	S.svcs = NULL;
	S.nsvcs = S.ncells = 0;
	pthread_mutex_unlock(&S.mu);
}

static struct rsvc *
svc_find(const char *name)
{
	for (struct rsvc *s = S.svcs; s != NULL; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static struct rsvc *
svc_get(const char *name)
{
	struct rsvc *s;

	if ((s = svc_find(name)) != NULL)
		return s;
	if (S.nsvcs >= STATE_SERVICES_MAX)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	outlier_cfg_from(&s->cfg, NULL);
	s->next = S.svcs;
	S.svcs = s;
	S.nsvcs++;
	return s;
}

static struct rnode *
node_by_id(struct rsvc *s, const char *id)
{
	for (struct rnode *n = s->nodes; n != NULL; n = n->next)
		if (strcmp(n->id, id) == 0)
			return n;
	return NULL;
}

static struct rnode *
node_by_addr(struct rsvc *s, const char *addr)
{
	for (struct rnode *n = s->nodes; n != NULL; n = n->next)
		if (strcmp(n->address, addr) == 0)
			return n;
	return NULL;
}

static void
node_remove(struct rsvc *s, struct rnode *gone)
{
	for (struct rnode **pp = &s->nodes; *pp != NULL; pp = &(*pp)->next)
		if (*pp == gone) {
			*pp = gone->next;
			rnode_free(gone);
			s->nnodes--;
			return;
		}
}

/* ---- discovery ---- */

static void
nodes_upsert(const Platform__Discovery__V1__Service *svc, int64_t now)
{
	struct rsvc *s = svc_get(svc->name);
	struct rnode *n;

	if (s == NULL)
		return;
	for (size_t i = 0; i < svc->n_nodes; i++) {
		const Platform__Discovery__V1__Node *dn = svc->nodes[i];

		if (dn->id[0] == '\0' || dn->address[0] == '\0')
			continue;
		if ((n = node_by_id(s, dn->id)) == NULL) {
			n = xcalloc(1, sizeof(*n));
			n->id = xstrdup(dn->id);
			n->address = xstrdup(dn->address);
			n->version = xstrdup(svc->version);
			win_clear(&n->o.w, now);
			n->o.healthy_since_ms = now;
			n->next = s->nodes;
			s->nodes = n;
			s->nnodes++;
		} else {
			if (strcmp(n->address, dn->address) != 0) {
				free(n->address);
				n->address = xstrdup(dn->address);
				win_clear(&n->o.w, now);
			}
			if (strcmp(n->version, svc->version) != 0) {
				free(n->version);
				n->version = xstrdup(svc->version);
			}
		}
		n->stale = 0;
	}
}

void
state_discovery(const ProtobufCMessage *m)
{
	const Platform__Discovery__V1__WatchResponse *ev = (const void *)m;
	struct rsvc *s;
	struct rnode *n, *next;

	pthread_mutex_lock(&S.mu);
	if (ev == NULL) {
		for (s = S.svcs; s != NULL; s = s->next)
			for (n = s->nodes; n != NULL; n = n->next)
				n->stale = 1;
		S.snapshot = 1;
		goto out;
	}
	switch (ev->type) {
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED:
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_UPDATED:
		if (ev->service != NULL && ev->service->name[0] != '\0')
			nodes_upsert(ev->service, plat_now_ms());
		break;
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED:
		if (ev->service == NULL ||
		    (s = svc_find(ev->service->name)) == NULL)
			break;
		for (size_t i = 0; i < ev->service->n_nodes; i++)
			if ((n = node_by_id(s, ev->service->nodes[i]->id)) !=
			    NULL)
				node_remove(s, n);
		break;
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_SYNCED:
		if (!S.snapshot)
			break;
		/* Nodes the new snapshot did not name are gone; the others
		 * keep their stats and decisions. */
		for (s = S.svcs; s != NULL; s = s->next)
			for (n = s->nodes; n != NULL; n = next) {
				next = n->next;
				if (n->stale)
					node_remove(s, n);
			}
		S.snapshot = 0;
		break;
	default:
		break;
	}
out:
	pthread_mutex_unlock(&S.mu);
}

/* ---- rules ---- */

void
state_rules(const char *service, const uint8_t *body, size_t len,
    int64_t version)
{
	pb_rules *r = NULL;
	struct rsvc *s;

	if (body != NULL && (r = platform__router__v1__rules__unpack(NULL, len,
	    body)) == NULL)
		return;         /* the store only holds what SetRules packed */
	pthread_mutex_lock(&S.mu);
	if ((s = svc_get(service)) == NULL || version < s->rules_version) {
		pthread_mutex_unlock(&S.mu);
		if (r != NULL)
			protobuf_c_message_free_unpacked(&r->base, NULL);
		return;
	}
	if (s->rules != NULL)
		protobuf_c_message_free_unpacked(&s->rules->base, NULL);
	s->rules = r;
	s->rules_version = version;
	if (r != NULL)
		r->version = version;
	outlier_cfg_from(&s->cfg, r != NULL ? r->outlier : NULL);
	pthread_mutex_unlock(&S.mu);
}

/* A deep copy of m in a, through packing. */
static ProtobufCMessage *
copy_in(struct arena *a, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = arena_alloc(a, len + 1);

	protobuf_c_message_pack(m, buf);
	return protobuf_c_message_unpack(m->descriptor, arena_allocator(a),
	    len, buf);
}

pb_rules *
state_rules_get(struct arena *a, const char *service)
{
	struct rsvc *s;
	pb_rules *r = NULL;

	pthread_mutex_lock(&S.mu);
	if ((s = svc_find(service)) != NULL && s->rules != NULL)
		r = (pb_rules *)copy_in(a, &s->rules->base);
	pthread_mutex_unlock(&S.mu);
	return r;
}

/* ---- reports ---- */

static struct rcell *
cell_get(struct rsvc *s, const char *addr, const char *method, int64_t now)
{
	struct rcell *c;

	for (c = s->cells; c != NULL; c = c->next)
		if (strcmp(c->address, addr) == 0 &&
		    strcmp(c->method, method) == 0)
			return c;
	if (S.ncells >= STATE_CELLS_MAX)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->address = xstrdup(addr);
	c->method = xstrdup(method);
	win_clear(&c->w, now);
	c->next = s->cells;
	s->cells = c;
	S.ncells++;
	return c;
}

size_t
state_report(const Platform__Router__V1__ReportRequest *req, int64_t now)
{
	struct win_counts d;
	struct rsvc *s;
	struct rcell *c;
	struct rnode *n;
	size_t dropped = 0;

	pthread_mutex_lock(&S.mu);
	for (size_t i = 0; i < req->n_stats; i++) {
		const Platform__Router__V1__MethodStats *m = req->stats[i];

		memset(&d, 0, sizeof(d));
		d.requests = m->requests;
		d.lat_sum_ms = m->latency_ms_sum;
		d.lat_max_ms = m->latency_ms_max;
		for (size_t j = 0; j < m->n_errors; j++) {
			uint32_t code = m->errors[j]->key;

			d.codes[code] += m->errors[j]->value;
			if (balancer_is_failure((int)code))
				d.errors += m->errors[j]->value;
		}
		if ((s = svc_get(m->service)) == NULL ||
		    (c = cell_get(s, m->address, m->method, now)) == NULL) {
			dropped++;
			continue;
		}
		win_add(&c->w, s->cfg.window_ms, now, &d);
		if ((n = node_by_addr(s, m->address)) != NULL)
			win_add(&n->o.w, s->cfg.window_ms, now, &d);
	}
	pthread_mutex_unlock(&S.mu);
	return dropped;
}

void
state_decide(int64_t now)
{
	struct outlier_node *nodes[1024];
	size_t k;

	pthread_mutex_lock(&S.mu);
	for (struct rsvc *s = S.svcs; s != NULL; s = s->next) {
		k = 0;
		for (struct rnode *n = s->nodes; n != NULL && k < 1024;
		    n = n->next)
			nodes[k++] = &n->o;
		(void)outlier_decide(&s->cfg, nodes, k, now);
	}
	pthread_mutex_unlock(&S.mu);
}

/* ---- views ---- */

/* Nodes in a stable order (by address), so views compare equal. */
static int
cmp_view_node(const void *a, const void *b)
{
	return strcmp(((const struct view_node *)a)->address,
	    ((const struct view_node *)b)->address);
}

static struct view_node *
view_nodes(struct arena *a, struct rsvc *s,
    Platform__Router__V1__Label *const *labels, size_t nlabels)
{
	struct view_node *v = arena_calloc(a, (s->nnodes + 1) * sizeof(*v));
	size_t k = 0;

	for (struct rnode *n = s->nodes; n != NULL; n = n->next) {
		v[k].id = arena_strdup(a, n->id);
		v[k].address = arena_strdup(a, n->address);
		v[k].version = arena_strdup(a, n->version);
		v[k].state = n->o.state;
		k++;
	}
	qsort(v, k, sizeof(*v), cmp_view_node);
	view_weights(v, k, s->rules, labels, nlabels);
	return v;
}

Platform__Router__V1__ServiceView *
state_view(struct arena *a, const char *service,
    Platform__Router__V1__Label *const *labels, size_t nlabels)
{
	Platform__Router__V1__ServiceView *v = NULL;
	struct view_node *vn;
	struct rsvc *s;

	pthread_mutex_lock(&S.mu);
	if ((s = svc_find(service)) == NULL || s->nnodes == 0)
		goto out;
	vn = view_nodes(a, s, labels, nlabels);
	v = arena_calloc(a, sizeof(*v));
	platform__router__v1__service_view__init(v);
	v->service = arena_strdup(a, s->name);
	v->nodes = arena_calloc(a, s->nnodes * sizeof(*v->nodes));
	for (size_t i = 0; i < s->nnodes; i++) {
		Platform__Router__V1__NodeView *nv = arena_calloc(a,
		    sizeof(*nv));

		platform__router__v1__node_view__init(nv);
		nv->id = (char *)vn[i].id;
		nv->address = (char *)vn[i].address;
		nv->version = (char *)vn[i].version;
		nv->weight = vn[i].weight;
		nv->state = (Platform__Router__V1__NodeState)vn[i].state;
		v->nodes[v->n_nodes++] = nv;
	}
	if (s->rules != NULL) {
		pb_rules *r = (pb_rules *)copy_in(a, &s->rules->base);

		v->limits = r->limits;
		v->n_limits = r->n_limits;
		v->rules_version = s->rules_version;
	}
out:
	pthread_mutex_unlock(&S.mu);
	return v;
}

char **
state_services(struct arena *a, size_t *n)
{
	char **v;
	size_t k = 0;

	pthread_mutex_lock(&S.mu);
	v = arena_calloc(a, (S.nsvcs + 1) * sizeof(*v));
	for (struct rsvc *s = S.svcs; s != NULL; s = s->next)
		if (s->nnodes > 0 || s->rules != NULL)
			v[k++] = arena_strdup(a, s->name);
	pthread_mutex_unlock(&S.mu);
	*n = k;
	return v;
}

/* ---- stats ---- */

static Platform__Router__V1__MethodStats *
method_stats(struct arena *a, const struct rsvc *s, struct rcell *c,
    int64_t now)
{
	Platform__Router__V1__MethodStats *m = arena_calloc(a, sizeof(*m));
	struct win_counts sum;
	size_t ne = 0;

	platform__router__v1__method_stats__init(m);
	win_sum(&c->w, s->cfg.window_ms, now, &sum);
	m->service = arena_strdup(a, s->name);
	m->address = arena_strdup(a, c->address);
	m->method = arena_strdup(a, c->method);
	m->requests = sum.requests;
	m->latency_ms_sum = sum.lat_sum_ms;
	m->latency_ms_max = sum.lat_max_ms;
	m->errors = arena_calloc(a, OUTLIER_CODES * sizeof(*m->errors));
	for (uint32_t code = 1; code < OUTLIER_CODES; code++) {
		Platform__Router__V1__MethodStats__ErrorsEntry *e;

		if (sum.codes[code] == 0)
			continue;
		e = arena_calloc(a, sizeof(*e));
		platform__router__v1__method_stats__errors_entry__init(e);
		e->key = code;
		e->value = sum.codes[code];
		m->errors[ne++] = e;
	}
	m->n_errors = ne;
	return m;
}

static Platform__Router__V1__NodeStats *
node_stats_for(struct arena *a, Platform__Router__V1__StatsResponse *r,
    const char *addr, size_t cap)
{
	Platform__Router__V1__NodeStats *ns;

	for (size_t i = 0; i < r->n_nodes; i++)
		if (strcmp(r->nodes[i]->address, addr) == 0)
			return r->nodes[i];
	if (r->n_nodes >= cap)
		return NULL;
	ns = arena_calloc(a, sizeof(*ns));
	platform__router__v1__node_stats__init(ns);
	ns->address = arena_strdup(a, addr);
	r->nodes[r->n_nodes++] = ns;
	return ns;
}

Platform__Router__V1__StatsResponse *
state_stats(struct arena *a, const char *service, int64_t now)
{
	Platform__Router__V1__StatsResponse *r = NULL;
	Platform__Router__V1__NodeStats *ns;
	struct view_node *vn;
	struct win_counts sum;
	struct rsvc *s;
	size_t ncells = 0, cap;
	int64_t wall = plat_wall_ms();

	pthread_mutex_lock(&S.mu);
	if ((s = svc_find(service)) == NULL)
		goto out;
	for (struct rcell *c = s->cells; c != NULL; c = c->next)
		ncells++;
	cap = s->nnodes + ncells;
	r = arena_calloc(a, sizeof(*r));
	platform__router__v1__stats_response__init(r);
	r->service = arena_strdup(a, s->name);
	r->window_ms = (uint32_t)s->cfg.window_ms;
	r->nodes = arena_calloc(a, (cap + 1) * sizeof(*r->nodes));
	vn = view_nodes(a, s, NULL, 0);
	for (size_t i = 0; i < s->nnodes; i++) {
		struct rnode *n = node_by_addr(s, vn[i].address);

		ns = node_stats_for(a, r, vn[i].address, cap);
		ns->weight = vn[i].weight;
		ns->state = (Platform__Router__V1__NodeState)vn[i].state;
		win_sum(&n->o.w, s->cfg.window_ms, now, &sum);
		ns->requests = sum.requests;
		ns->errors = sum.errors;
		ns->mean_latency_ms = sum.requests > 0 ? sum.lat_sum_ms /
		    (double)sum.requests : 0;
		if (n->o.state == VIEW_EJECTED)
			ns->ejected_until_unix_ms = wall +
			    (n->o.ejected_until_ms - now);
		ns->methods = arena_calloc(a, (ncells + 1) *
		    sizeof(*ns->methods));
	}
	for (struct rcell *c = s->cells; c != NULL; c = c->next) {
		if ((ns = node_stats_for(a, r, c->address, cap)) == NULL)
			continue;
		if (ns->methods == NULL) {
			/* Reported, but not (or no longer) in discovery. */
			ns->methods = arena_calloc(a, (ncells + 1) *
			    sizeof(*ns->methods));
		}
		ns->methods[ns->n_methods] = method_stats(a, s, c, now);
		if (node_by_addr(s, c->address) == NULL) {
			ns->requests += ns->methods[ns->n_methods]->requests;
		}
		ns->n_methods++;
	}
out:
	pthread_mutex_unlock(&S.mu);
	return r;
}
