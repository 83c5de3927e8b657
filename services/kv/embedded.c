/*
 * embedded: kv-srv's own backend, entries in memory on a ring of kv-srv
 * nodes.
 *
 * Membership: every kv-srv registers as "kv" with discovery; a thread
 * reads the service's nodes every RING_POLL_MS and rebuilds the ring
 * (ring.h) when they change. This node is always a member.
 *
 * A call about a key runs on the key's primary: any other node forwards
 * it there (with the caller's own authorization, so the primary's guard
 * judges the caller) marked FORWARDED_MD, and a marked call is never
 * forwarded again. When the primary cannot be reached, the next owner
 * takes the call. The node that runs a write copies the entry as written
 * to the key's other owners (Replicate, versions kept) before it
 * answers, so a node that dies loses nothing another owner had.
 *
 * When the ring changes, each node sends the entries it holds to the
 * members that became their owners, and forgets those it no longer
 * owns once every new owner has them. A node that restarts with the same
 * id and address (kill -9, then back within its registration's TTL) is
 * no change of the ring to the others, yet it comes back empty: on its
 * first ring with peers it tells each of them (an empty Replicate marked
 * STARTED_MD), and each sends it the entries it owns as if it had joined.
 *
 * List and Watch span the ring: List merges every member's page; Watch
 * merges every member's stream of changes, passing a key's change on
 * only when its version is newer than the last one sent for that key
 * (each change reaches several owners).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "platform/client.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/paging.h"
#include "platform/xalloc.h"
#include "ring.h"
#include "store.h"

#define FORWARDED_MD "x-kv-forwarded"
#define STARTED_MD "x-kv-started"   /* value: the sender's node id */
#define RESEND_MAX 64
#define KV_PATH "/platform.kv.v1.KV/"
#define RING_POLL_MS 500
#define SWEEP_MS 100
#define PEER_CALL_MS 5000
#define REPLICATE_BATCH 256
#define WATCH_POLL_MS 200
#define POOL_THREADS 16
#define POOL_QUEUE_MAX 10000

/* A call waiting for a pool thread. */
struct job {
	struct job *next;
	struct kv_backend *b;
	plat_ctx *ctx;
	int (*run)(struct kv_backend *b, plat_ctx *ctx, const void *req,
	    void *resp);
	const void *req;
	ProtobufCMessage *resp;
};

struct pool {
	pthread_t threads[POOL_THREADS];
	int nthreads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *jobs, **tail;
	size_t njobs;
	int stop;
};

struct emb {
	struct kv_backend base;
	plat_server *srv;
	struct kv_store *store;
	int replicas;
	char *self_id, *self_addr;

	pthread_rwlock_t ring_lock;
	struct ring *ring;

	pthread_t thread;               /* sweeps, follows the ring */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	/* Under mu: ids of members that said they started, to be sent the
	 * entries they own by the ring thread. */
	char *resend[RESEND_MAX];
	size_t nresend;
	bool announced;                 /* ring thread: told the peers */

	/* Peer threads of Watch streams still running. */
	pthread_mutex_t peers_mu;
	pthread_cond_t peers_cv;
	int npeers;

	/* Calls that talk to other nodes run on pools, never on the
	 * runtime's pollers: a poller waiting on a peer whose pollers wait
	 * on this node would be a distributed deadlock. Calls from clients
	 * (which may forward) and calls forwarded here (which only copy to
	 * other owners, answered by their pollers) have a pool each, so no
	 * pool ever waits on a pool of its own kind. */
	struct pool client_pool, primary_pool;

	atomic_int stopping;            /* peer streams end */
	bool stopped;                   /* the ring thread joined */

	atomic_ullong forwarded, replicate_failures, moved;
};

static struct emb *E;

/* ---- entries ---- */

struct got {
	plat_ctx *ctx;
	kv_entry_pb *entry;
	bool deleted;
};

static void
got_entry(void *arg, const struct kv_view *v)
{
	struct got *g = arg;

	g->entry = kv_entry_new(g->ctx, v->table, v->key, v->value, v->vlen,
	    v->version, v->expires_ms);
	g->deleted = v->deleted;
}

/* A protobuf Entry copied into the call's memory. */
static kv_entry_pb *
entry_copy(plat_ctx *ctx, const kv_entry_pb *e)
{
	return e == NULL ? NULL : kv_entry_new(ctx, e->table, e->key,
	    e->value.data, e->value.len, e->version, e->expires_unix_ms);
}

/* ---- the ring ---- */

static int
forwarded(plat_ctx *ctx)
{
	return plat_ctx_metadata(ctx, FORWARDED_MD) != NULL;
}

/* The owners of a key, as addresses (NULL: this node), primary first. */
struct owners {
	size_t n;
	char *addr[RING_MAX_REPLICAS];
};

static void
owners_of(plat_ctx *ctx, const char *table, const char *key,
    struct owners *o)
{
	size_t idx[RING_MAX_REPLICAS];

	pthread_rwlock_rdlock(&E->ring_lock);
	o->n = ring_owners(E->ring, table, key, E->replicas, idx);
	for (size_t i = 0; i < o->n; i++) {
		const struct ring_member *m = ring_member(E->ring, idx[i]);

		o->addr[i] = strcmp(m->id, E->self_id) == 0 ? NULL :
		    plat_strdup(ctx, m->address);
	}
	pthread_rwlock_unlock(&E->ring_lock);
}

static int
peer_deadline(plat_ctx *ctx)
{
	int64_t left = ctx != NULL ? plat_ctx_deadline_left_ms(ctx) :
	    PEER_CALL_MS;

	return left < PEER_CALL_MS ? (int)(left > 1 ? left : 1) :
	    PEER_CALL_MS;
}

/* Calls method on a peer as the caller (its authorization passed on),
 * marked as forwarded. */
static int
peer_call(plat_ctx *ctx, const char *addr, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rdesc,
    ProtobufCMessage **resp, char *err, size_t errlen)
{
	plat_client *c = plat_server_client(E->srv);
	const char *auth = ctx != NULL ?
	    plat_ctx_metadata(ctx, "authorization") : NULL;
	const char *md[] = { FORWARDED_MD, "1",
	    auth != NULL ? "authorization" : NULL, auth, NULL };
	struct plat_call_opts o = {
		.deadline_ms = peer_deadline(ctx),
		.metadata = md,
	};

	if (c == NULL) {
		snprintf(err, errlen, "no client to reach other kv-srv nodes");
		return PLAT_UNAVAILABLE;
	}
	return plat_client_call_addr(c, addr, method, req, rdesc, resp, &o,
	    err, errlen);
}

/*
 * Where a call about a key runs. 0: here (*fwd NULL); 1: it ran on a
 * peer, whose answer (or error status, set on ctx) is in *fwd / the
 * return value through *code.
 */
static int
route(plat_ctx *ctx, const char *table, const char *key,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rdesc, ProtobufCMessage **fwd,
    int *code)
{
	struct owners o;
	char err[512];

	*fwd = NULL;
	if (forwarded(ctx))
		return 0;
	owners_of(ctx, table, key, &o);
	for (size_t i = 0; i < o.n; i++) {
		int rc;

		if (o.addr[i] == NULL)
			return 0;       /* this node is the first one up */
		rc = peer_call(ctx, o.addr[i], method, req, rdesc, fwd, err,
		    sizeof(err));
		if (rc == PLAT_UNAVAILABLE || rc == PLAT_DEADLINE_EXCEEDED) {
			log_warn("kv: a key's owner cannot be reached; the "
			    "next one takes the call", "peer", o.addr[i],
			    "status", plat_status_name(rc), "error", err);
			if (*fwd != NULL)
				protobuf_c_message_free_unpacked(*fwd, NULL);
			*fwd = NULL;
			continue;       /* down: the next owner takes it */
		}
		atomic_fetch_add(&E->forwarded, 1);
		*code = rc == PLAT_OK ? PLAT_OK : plat_error(ctx, rc, "%s",
		    err);
		return 1;
	}
	*code = plat_error(ctx, PLAT_UNAVAILABLE, "no owner of key \"%s\" "
	    "can be reached", key);
	return 1;
}

/* The addresses of the ring's other members, in the call's memory: who a
 * List or Watch spanning the ring asks. */
static char **
ring_peers(plat_ctx *ctx, size_t *n)
{
	char **peers;

	*n = 0;
	pthread_rwlock_rdlock(&E->ring_lock);
	peers = plat_alloc(ctx, (ring_size(E->ring) + 1) * sizeof(*peers));
	for (size_t i = 0; i < ring_size(E->ring); i++) {
		const struct ring_member *m = ring_member(E->ring, i);

		if (strcmp(m->id, E->self_id) != 0)
			peers[(*n)++] = plat_strdup(ctx, m->address);
	}
	pthread_rwlock_unlock(&E->ring_lock);
	return peers;
}

/* Sends entries to a peer as written: PLAT_OK or the call's status. */
static int
send_replicas(const char *addr, Platform__Kv__V1__ReplicaEntry **entries,
    size_t n)
{
	Platform__Kv__V1__ReplicateRequest req =
	    PLATFORM__KV__V1__REPLICATE_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	plat_client *c = plat_server_client(E->srv);
	const char *md[] = { FORWARDED_MD, "1", NULL };
	struct plat_call_opts o = {
		.deadline_ms = PEER_CALL_MS,
		.idempotent = 1,        /* versions make a resend harmless */
		.metadata = md,
	};
	char err[256];
	int rc;

	if (c == NULL)
		return PLAT_UNAVAILABLE;
	req.n_entries = n;
	req.entries = entries;
	rc = plat_client_call_addr(c, addr, KV_PATH "Replicate", &req.base,
	    &platform__kv__v1__replicate_response__descriptor, &resp, &o,
	    err, sizeof(err));
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (rc != PLAT_OK) {
		atomic_fetch_add(&E->replicate_failures, 1);
		log_warn("kv: cannot copy entries to an owner", "peer", addr,
		    "status", plat_status_name(rc), "error", err);
	}
	return rc;
}

/* After a write here: the entry as written to the key's other owners. */
static void
replicate_write(plat_ctx *ctx, const kv_entry_pb *e, bool deleted)
{
	Platform__Kv__V1__ReplicaEntry re =
	    PLATFORM__KV__V1__REPLICA_ENTRY__INIT, *rp = &re;
	struct owners o;

	owners_of(ctx, e->table, e->key, &o);
	re.entry = (kv_entry_pb *)e;
	re.deleted = deleted;
	for (size_t i = 0; i < o.n; i++)
		if (o.addr[i] != NULL)
			(void)send_replicas(o.addr[i], &rp, 1);
}

/* A member said it started (empty): the ring thread sends it what it
 * owns. */
static void
resend_later(const char *id)
{
	pthread_mutex_lock(&E->mu);
	for (size_t i = 0; i < E->nresend; i++)
		if (strcmp(E->resend[i], id) == 0)
			goto out;
	if (E->nresend < RESEND_MAX) {
		E->resend[E->nresend++] = xstrdup(id);
		pthread_cond_broadcast(&E->cv);
	}
out:
	pthread_mutex_unlock(&E->mu);
}

/* Tells every peer of r that this node started with nothing: an empty
 * Replicate marked STARTED_MD. */
static void
announce_start(const struct ring *r)
{
	Platform__Kv__V1__ReplicateRequest req =
	    PLATFORM__KV__V1__REPLICATE_REQUEST__INIT;
	plat_client *c = plat_server_client(E->srv);
	const char *md[] = { FORWARDED_MD, "1", STARTED_MD, E->self_id,
	    NULL };
	struct plat_call_opts o = {
		.deadline_ms = PEER_CALL_MS,
		.idempotent = 1,
		.metadata = md,
	};
	char err[256];

	for (size_t i = 0; c != NULL && i < ring_size(r); i++) {
		const struct ring_member *m = ring_member(r, i);
		ProtobufCMessage *resp = NULL;

		if (strcmp(m->id, E->self_id) == 0)
			continue;
		if (plat_client_call_addr(c, m->address, KV_PATH "Replicate",
		    &req.base, &platform__kv__v1__replicate_response__descriptor,
		    &resp, &o, err, sizeof(err)) != PLAT_OK)
			log_warn("kv: cannot tell a peer this node started",
			    "peer", m->address, "error", err);
		if (resp != NULL)
			protobuf_c_message_free_unpacked(resp, NULL);
	}
}

/* ---- the pool ---- */

static __thread bool in_pool;

static void *
pool_main(void *arg)
{
	struct pool *p = arg;

	in_pool = true;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct job *j;
		int rc;

		while (p->jobs == NULL && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if ((j = p->jobs) == NULL)
			break;          /* stopping, and nothing is left */
		if ((p->jobs = j->next) == NULL)
			p->tail = &p->jobs;
		p->njobs--;
		pthread_mutex_unlock(&p->mu);
		rc = j->run(j->b, j->ctx, j->req, j->resp);
		plat_reply(j->ctx, rc, rc == PLAT_OK ? j->resp : NULL);
		free(j);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int
pool_start(struct pool *p)
{
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->tail = &p->jobs;
	for (; p->nthreads < POOL_THREADS; p->nthreads++)
		if (pthread_create(&p->threads[p->nthreads], NULL, pool_main,
		    p) != 0)
			return -1;
	return 0;
}

/* Runs what is queued, then joins the threads. */
static void
pool_stop(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
}

/* Answers the call from a pool thread: PLAT_DEFERRED, or
 * RESOURCE_EXHAUSTED when too many wait. */
static int
to_pool(struct kv_backend *b, plat_ctx *ctx,
    int (*run)(struct kv_backend *, plat_ctx *, const void *, void *),
    const void *req, ProtobufCMessage *resp)
{
	struct pool *p = forwarded(ctx) ? &E->primary_pool : &E->client_pool;
	struct job *j;

	pthread_mutex_lock(&p->mu);
	if (p->njobs >= POOL_QUEUE_MAX) {
		pthread_mutex_unlock(&p->mu);
		return plat_error(ctx, PLAT_RESOURCE_EXHAUSTED, "too many "
		    "calls wait for other kv-srv nodes");
	}
	j = xcalloc(1, sizeof(*j));
	j->b = b;
	j->ctx = ctx;
	j->run = run;
	j->req = req;
	j->resp = resp;
	p->njobs++;
	*p->tail = j;
	p->tail = &j->next;
	plat_defer(ctx);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return PLAT_DEFERRED;
}

/* Whether a call about a key can run here and now, on the poller: it
 * needs no other node (this node is the key's primary and, for a write,
 * its only owner), or it already runs on the pool. */
static bool
runs_inline(plat_ctx *ctx, const char *table, const char *key, bool write)
{
	struct owners o;

	if (in_pool || (forwarded(ctx) && !write))
		return true;
	owners_of(ctx, table, key, &o);
	return o.n == 0 || (o.addr[0] == NULL && (!write || o.n == 1));
}

/* A call that may span the ring (List, GetMany, PutMany): inline only on
 * the pool, when forwarded, or when this node is the whole ring. */
static bool
alone(plat_ctx *ctx)
{
	size_t n;

	if (in_pool || forwarded(ctx))
		return true;
	pthread_rwlock_rdlock(&E->ring_lock);
	n = ring_size(E->ring);
	pthread_rwlock_unlock(&E->ring_lock);
	return n <= 1;
}

/* ---- key operations ---- */

static int
get_sync(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetRequest *req,
    Platform__Kv__V1__GetResponse *resp)
{
	ProtobufCMessage *fwd;
	struct got g = { .ctx = ctx };
	char err[512];
	int rc;

	(void)b;
	if (route(ctx, req->table, req->key, KV_PATH "Get", &req->base,
	    &platform__kv__v1__get_response__descriptor, &fwd, &rc)) {
		if (fwd != NULL) {
			resp->entry = entry_copy(ctx,
			    ((Platform__Kv__V1__GetResponse *)fwd)->entry);
			protobuf_c_message_free_unpacked(fwd, NULL);
		}
		return rc;
	}
	if ((rc = kv_store_get(E->store, req->table, req->key, got_entry, &g,
	    err, sizeof(err))) != PLAT_OK)
		return plat_error(ctx, rc, "%s", err);
	resp->entry = g.entry;
	return PLAT_OK;
}

static int
put_sync(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutRequest *req,
    Platform__Kv__V1__PutResponse *resp)
{
	struct kv_put p = {
		.table = req->table,
		.key = req->key,
		.value = req->value.data,
		.vlen = req->value.len,
		.ttl_ms = req->ttl_ms,
		.expected_version = req->expected_version,
		.if_absent = req->if_absent,
	};
	ProtobufCMessage *fwd;
	struct got g = { .ctx = ctx };
	char err[512];
	int rc;

	(void)b;
	if (route(ctx, req->table, req->key, KV_PATH "Put", &req->base,
	    &platform__kv__v1__put_response__descriptor, &fwd, &rc)) {
		if (fwd != NULL) {
			resp->entry = entry_copy(ctx,
			    ((Platform__Kv__V1__PutResponse *)fwd)->entry);
			protobuf_c_message_free_unpacked(fwd, NULL);
		}
		return rc;
	}
	if ((rc = kv_store_put(E->store, &p, got_entry, &g, err,
	    sizeof(err))) != PLAT_OK)
		return plat_error(ctx, rc, "%s", err);
	replicate_write(ctx, g.entry, false);
	resp->entry = g.entry;
	return PLAT_OK;
}

static int
delete_sync(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__DeleteRequest *req,
    Platform__Kv__V1__DeleteResponse *resp)
{
	ProtobufCMessage *fwd;
	struct got g = { .ctx = ctx };
	char err[512];
	bool deleted;
	int rc;

	(void)b;
	if (route(ctx, req->table, req->key, KV_PATH "Delete", &req->base,
	    &platform__kv__v1__delete_response__descriptor, &fwd, &rc)) {
		if (fwd != NULL) {
			Platform__Kv__V1__DeleteResponse *d = (void *)fwd;

			resp->deleted = d->deleted;
			resp->version = d->version;
			protobuf_c_message_free_unpacked(fwd, NULL);
		}
		return rc;
	}
	if ((rc = kv_store_delete(E->store, req->table, req->key,
	    req->expected_version, &deleted, got_entry, &g, err,
	    sizeof(err))) != PLAT_OK)
		return plat_error(ctx, rc, "%s", err);
	resp->deleted = deleted;
	if (deleted) {
		resp->version = g.entry->version;
		replicate_write(ctx, g.entry, true);
	}
	return PLAT_OK;
}

static int
increment_sync(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__IncrementRequest *req,
    Platform__Kv__V1__IncrementResponse *resp)
{
	ProtobufCMessage *fwd;
	struct got g = { .ctx = ctx };
	char err[512];
	int64_t value;
	int rc;

	(void)b;
	if (route(ctx, req->table, req->key, KV_PATH "Increment", &req->base,
	    &platform__kv__v1__increment_response__descriptor, &fwd, &rc)) {
		if (fwd != NULL) {
			Platform__Kv__V1__IncrementResponse *r = (void *)fwd;

			resp->value = r->value;
			resp->entry = entry_copy(ctx, r->entry);
			protobuf_c_message_free_unpacked(fwd, NULL);
		}
		return rc;
	}
	if ((rc = kv_store_increment(E->store, req->table, req->key,
	    req->delta, req->ttl_ms, &value, got_entry, &g, err,
	    sizeof(err))) != PLAT_OK)
		return plat_error(ctx, rc, "%s", err);
	replicate_write(ctx, g.entry, false);
	resp->value = value;
	resp->entry = g.entry;
	return PLAT_OK;
}

static int
emb_replicate(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__ReplicateRequest *req,
    Platform__Kv__V1__ReplicateResponse *resp)
{
	const char *started = plat_ctx_metadata(ctx, STARTED_MD);

	(void)b;
	if (started != NULL)
		resend_later(started);
	for (size_t i = 0; i < req->n_entries; i++) {
		const kv_entry_pb *e = req->entries[i]->entry;
		struct kv_view v = {
			.table = e->table,
			.key = e->key,
			.value = e->value.data,
			.vlen = e->value.len,
			.version = e->version,
			.expires_ms = e->expires_unix_ms,
			.deleted = req->entries[i]->deleted,
		};

		resp->applied += kv_store_apply(E->store, &v);
	}
	return PLAT_OK;
}

/* ---- List across the ring ---- */

struct page {
	plat_ctx *ctx;
	kv_entry_pb **e;
	size_t n, cap;
	bool keys_only;
};

static void
page_add(struct page *p, kv_entry_pb *e)
{
	if (p->n == p->cap) {
		kv_entry_pb **ne;

		p->cap = p->cap ? p->cap * 2 : 64;
		ne = plat_alloc(p->ctx, p->cap * sizeof(*ne));
		if (p->n > 0)
			memcpy(ne, p->e, p->n * sizeof(*ne));
		p->e = ne;
	}
	p->e[p->n++] = e;
}

static void
page_visit(void *arg, const struct kv_view *v)
{
	struct page *p = arg;

	page_add(p, kv_entry_new(p->ctx, v->table, v->key, v->value,
	    p->keys_only ? 0 : v->vlen, v->version, v->expires_ms));
}

static int
cmp_entries(const void *a, const void *b)
{
	const kv_entry_pb *x = *(kv_entry_pb *const *)a;
	const kv_entry_pb *y = *(kv_entry_pb *const *)b;
	int c = strcmp(x->key, y->key);

	/* Newest first among copies of one key. */
	return c != 0 ? c : (x->version > y->version ? -1 :
	    x->version < y->version);
}

static int
list_sync(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__ListRequest *req, const char *after,
    size_t limit, Platform__Kv__V1__ListResponse *resp, bool *more)
{
	struct page p = { .ctx = ctx, .keys_only = req->keys_only };
	char **peers = NULL;
	size_t npeers = 0;
	bool m;

	(void)b;
	kv_store_list(E->store, req->table, req->prefix, after, limit,
	    page_visit, &p, &m);
	*more = m;
	if (!forwarded(ctx))
		peers = ring_peers(ctx, &npeers);
	/* Each member's first `limit` after `after`: their merge holds the
	 * ring's first `limit` (a member that is down is left out). */
	for (size_t i = 0; i < npeers; i++) {
		Platform__Kv__V1__ListRequest one = *req;
		ProtobufCMessage *fwd = NULL;
		Platform__Kv__V1__ListResponse *r;
		char err[256];
		int rc;

		one.page_size = (int32_t)limit;
		one.page_token = after[0] != '\0' ?
		    plat_page_token(ctx, 'k', after) : "";
		rc = peer_call(ctx, peers[i], KV_PATH "List", &one.base,
		    &platform__kv__v1__list_response__descriptor, &fwd, err,
		    sizeof(err));
		if (rc != PLAT_OK) {
			if (fwd != NULL)
				protobuf_c_message_free_unpacked(fwd, NULL);
			continue;
		}
		r = (void *)fwd;
		for (size_t j = 0; j < r->n_entries; j++)
			page_add(&p, entry_copy(ctx, r->entries[j]));
		*more = *more || r->next_page_token[0] != '\0';
		protobuf_c_message_free_unpacked(fwd, NULL);
	}
	if (p.n > 0)
		qsort(p.e, p.n, sizeof(*p.e), cmp_entries);
	resp->entries = plat_alloc(ctx, (p.n + 1) * sizeof(*resp->entries));
	for (size_t i = 0; i < p.n; i++) {
		if (resp->n_entries > 0 && strcmp(resp->entries[
		    resp->n_entries - 1]->key, p.e[i]->key) == 0)
			continue;       /* an older copy */
		if (resp->n_entries == limit) {
			*more = true;
			break;
		}
		resp->entries[resp->n_entries++] = p.e[i];
	}
	return PLAT_OK;
}

/* ---- the ops: inline when they need no other node, else pooled ---- */

#define POOLED(name)                                                     \
static int                                                              \
name##_run(struct kv_backend *b, plat_ctx *ctx, const void *req,        \
    void *resp)                                                         \
{                                                                       \
	return name##_sync(b, ctx, req, resp);                           \
}

POOLED(get)
POOLED(put)
POOLED(delete)
POOLED(increment)

static int
emb_get(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetRequest *req,
    Platform__Kv__V1__GetResponse *resp)
{
	if (runs_inline(ctx, req->table, req->key, false))
		return get_sync(b, ctx, req, resp);
	return to_pool(b, ctx, get_run, req, &resp->base);
}

static int
emb_put(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutRequest *req,
    Platform__Kv__V1__PutResponse *resp)
{
	if (runs_inline(ctx, req->table, req->key, true))
		return put_sync(b, ctx, req, resp);
	return to_pool(b, ctx, put_run, req, &resp->base);
}

static int
emb_delete(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__DeleteRequest *req,
    Platform__Kv__V1__DeleteResponse *resp)
{
	if (runs_inline(ctx, req->table, req->key, true))
		return delete_sync(b, ctx, req, resp);
	return to_pool(b, ctx, delete_run, req, &resp->base);
}

static int
emb_increment(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__IncrementRequest *req,
    Platform__Kv__V1__IncrementResponse *resp)
{
	if (runs_inline(ctx, req->table, req->key, true))
		return increment_sync(b, ctx, req, resp);
	return to_pool(b, ctx, increment_run, req, &resp->base);
}

static int
get_many_run(struct kv_backend *b, plat_ctx *ctx, const void *req,
    void *resp)
{
	return kv_get_many_each(b, ctx, req, resp);
}

static int
emb_get_many(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetManyRequest *req,
    Platform__Kv__V1__GetManyResponse *resp)
{
	if (alone(ctx))
		return kv_get_many_each(b, ctx, req, resp);
	return to_pool(b, ctx, get_many_run, req, &resp->base);
}

static int
put_many_run(struct kv_backend *b, plat_ctx *ctx, const void *req,
    void *resp)
{
	return kv_put_many_each(b, ctx, req, resp);
}

static int
emb_put_many(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutManyRequest *req,
    Platform__Kv__V1__PutManyResponse *resp)
{
	if (alone(ctx))
		return kv_put_many_each(b, ctx, req, resp);
	return to_pool(b, ctx, put_many_run, req, &resp->base);
}

/* List's page bounds travel with the job. */
struct list_job {
	const Platform__Kv__V1__ListRequest *req;
	const char *after;
	size_t limit;
	bool more;
};

static int
list_run(struct kv_backend *b, plat_ctx *ctx, const void *arg, void *resp)
{
	const struct list_job *lj = arg;
	Platform__Kv__V1__ListResponse *out = resp;
	bool more = false;
	int rc;

	if ((rc = list_sync(b, ctx, lj->req, lj->after, lj->limit, out,
	    &more)) == PLAT_OK && more && out->n_entries > 0)
		out->next_page_token = plat_page_token(ctx, 'k',
		    out->entries[out->n_entries - 1]->key);
	return rc;
}

static int
emb_list(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__ListRequest *req, const char *after,
    size_t limit, Platform__Kv__V1__ListResponse *resp, bool *more)
{
	struct list_job *lj;

	if (alone(ctx))
		return list_sync(b, ctx, req, after, limit, resp, more);
	/* The pool answers with the page token made here (the handler
	 * makes it only for an answer it returns itself). */
	lj = plat_alloc(ctx, sizeof(*lj));
	lj->req = req;
	lj->after = plat_strdup(ctx, after);
	lj->limit = limit;
	*more = false;
	return to_pool(b, ctx, list_run, lj, &resp->base);
}

/* ---- Watch across the ring ---- */

/* The last version passed on per key, so a change that reaches several
 * owners goes out once, and never older than one sent. */
struct seen {
	struct seen *next;
	int64_t version;
	char key[];
};

#define SEEN_BUCKETS 256

struct mwatch {
	plat_stream *st;
	char *table, *prefix;
	char *auth;                     /* the caller's, for the peers */
	struct kv_watcher local;
	pthread_mutex_t mu;
	struct seen *seen[SEEN_BUCKETS];
	int unsynced;                   /* sources yet to send SYNCED */
	bool synced;
	atomic_int closed;
	atomic_int refs;
};

struct mpeer {
	struct mwatch *w;
	char *addr;
};

static void
mwatch_unref(struct mwatch *w)
{
	if (atomic_fetch_sub(&w->refs, 1) != 1)
		return;
	for (size_t i = 0; i < SEEN_BUCKETS; i++)
		while (w->seen[i] != NULL) {
			struct seen *s = w->seen[i];

			w->seen[i] = s->next;
			free(s);
		}
	pthread_mutex_destroy(&w->mu);
	plat_stream_unref(w->st);
	free(w->table);
	free(w->prefix);
	free(w->auth);
	free(w);
}

/* 1 when version is newer than what went out for key (and records it). */
static int
seen_newer(struct mwatch *w, const char *key, int64_t version)
{
	uint64_t h = 1469598103934665603ULL;
	struct seen *s;

	for (const char *p = key; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	for (s = w->seen[h % SEEN_BUCKETS]; s != NULL; s = s->next)
		if (strcmp(s->key, key) == 0) {
			if (version <= s->version)
				return 0;
			s->version = version;
			return 1;
		}
	s = xcalloc(1, sizeof(*s) + strlen(key) + 1);
	strcpy(s->key, key);
	s->version = version;
	s->next = w->seen[h % SEEN_BUCKETS];
	w->seen[h % SEEN_BUCKETS] = s;
	return 1;
}

/* One source's event: passed on when new; the SYNCED marker once every
 * source has sent its own. */
static void
mwatch_deliver(struct mwatch *w, int type, const kv_entry_pb *e)
{
	Platform__Kv__V1__WatchResponse m =
	    PLATFORM__KV__V1__WATCH_RESPONSE__INIT;

	pthread_mutex_lock(&w->mu);
	if (type == PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_SYNCED) {
		if (--w->unsynced == 0 && !w->synced) {
			w->synced = true;
			m.type = type;
			(void)plat_stream_send(w->st, &m.base);
		}
	} else if (e != NULL && seen_newer(w, e->key, e->version)) {
		m.type = type;
		m.entry = (kv_entry_pb *)e;
		(void)plat_stream_send(w->st, &m.base);
	}
	pthread_mutex_unlock(&w->mu);
}

/* The local store's changes (under its lock). */
static void
mwatch_local(void *arg, enum kv_event type, const struct kv_view *v)
{
	kv_entry_pb e = PLATFORM__KV__V1__ENTRY__INIT;

	if (v != NULL) {
		e.table = (char *)v->table;
		e.key = (char *)v->key;
		e.value.data = (uint8_t *)v->value;
		e.value.len = v->deleted ? 0 : v->vlen;
		e.version = v->version;
		e.expires_unix_ms = v->expires_ms;
	}
	/* enum kv_event and the proto's EventType share their numbers. */
	mwatch_deliver(arg, (int)type, v != NULL ? &e : NULL);
}

static void *
mpeer_main(void *arg)
{
	struct mpeer *p = arg;
	struct mwatch *w = p->w;
	Platform__Kv__V1__WatchRequest req =
	    PLATFORM__KV__V1__WATCH_REQUEST__INIT;
	const char *md[] = { FORWARDED_MD, "1",
	    w->auth != NULL ? "authorization" : NULL, w->auth, NULL };
	plat_client_stream *s = NULL;
	plat_client *c = plat_server_client(E->srv);
	bool synced = false;
	char err[256];

	req.table = w->table;
	req.prefix = w->prefix;
	if (c != NULL && !atomic_load(&E->stopping) &&
	    plat_client_stream_open(c, p->addr, KV_PATH "Watch",
	    &req.base, 0, md, &s, err, sizeof(err)) == PLAT_OK) {
		while (!atomic_load(&w->closed) &&
		    !atomic_load(&E->stopping)) {
			ProtobufCMessage *msg = NULL;
			Platform__Kv__V1__WatchResponse *r;
			int got = plat_client_stream_next(s,
			    &platform__kv__v1__watch_response__descriptor,
			    &msg, WATCH_POLL_MS);

			if (got == PLAT_STREAM_TIMEOUT)
				continue;
			if (got != PLAT_STREAM_MESSAGE)
				break;
			r = (void *)msg;
			if (r->type ==
			    PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_SYNCED)
				synced = true;
			mwatch_deliver(w, r->type, r->entry);
			protobuf_c_message_free_unpacked(msg, NULL);
		}
		plat_client_stream_cancel(s);
		plat_client_stream_free(s);
	}
	/* A member that is down or went away counts as synced: its keys
	 * have other owners. */
	if (!synced)
		mwatch_deliver(w, PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_SYNCED,
		    NULL);
	free(p->addr);
	free(p);
	mwatch_unref(w);
	pthread_mutex_lock(&E->peers_mu);
	if (--E->npeers == 0)
		pthread_cond_broadcast(&E->peers_cv);
	pthread_mutex_unlock(&E->peers_mu);
	return NULL;
}

static void
mwatch_closed(plat_stream *st, void *arg)
{
	struct mwatch *w = arg;

	(void)st;
	atomic_store(&w->closed, 1);
	kv_store_unwatch(E->store, &w->local);
	mwatch_unref(w);
}

static int
emb_watch(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__WatchRequest *req, plat_stream *st)
{
	struct mwatch *w = xcalloc(1, sizeof(*w));
	char **peers = NULL;
	size_t npeers = 0;

	(void)b;
	w->st = st;
	plat_stream_ref(st);
	w->table = xstrdup(req->table);
	w->prefix = xstrdup(req->prefix);
	if (plat_ctx_metadata(ctx, "authorization") != NULL)
		w->auth = xstrdup(plat_ctx_metadata(ctx, "authorization"));
	pthread_mutex_init(&w->mu, NULL);
	atomic_init(&w->refs, 1);
	if (!forwarded(ctx))
		peers = ring_peers(ctx, &npeers);
	w->unsynced = 1 + (int)npeers;
	/* The peers first: their snapshots and this node's interleave, and
	 * the versions sort out which copy is newest. */
	for (size_t i = 0; i < npeers; i++) {
		struct mpeer *p = xcalloc(1, sizeof(*p));
		pthread_t t;

		p->w = w;
		p->addr = xstrdup(peers[i]);
		atomic_fetch_add(&w->refs, 1);
		pthread_mutex_lock(&E->peers_mu);
		E->npeers++;
		pthread_mutex_unlock(&E->peers_mu);
		if (pthread_create(&t, NULL, mpeer_main, p) != 0)
			abort();
		pthread_detach(t);
	}
	w->local.table = w->table;
	w->local.prefix = w->prefix;
	w->local.event = mwatch_local;
	w->local.arg = w;
	kv_store_watch(E->store, &w->local);
	plat_stream_on_close(st, mwatch_closed, w);
	return PLAT_STREAM_OPEN;
}

/* ---- membership and rebalancing ---- */

/* The kv nodes discovery knows, with this node: malloc'd members. */
static size_t
read_members(struct ring_member **out)
{
	Platform__Discovery__V1__GetServiceRequest req =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_REQUEST__INIT;
	Platform__Discovery__V1__GetServiceResponse *r = NULL;
	const struct plat_settings *set = plat_server_settings(E->srv);
	plat_client *c = plat_server_client(E->srv);
	struct plat_call_opts o = { .deadline_ms = 2000 };
	struct ring_member *m;
	size_t n = 1, cap = 8;
	char err[256];

	m = xcalloc(cap, sizeof(*m));
	m[0].id = xstrdup(E->self_id);
	m[0].address = xstrdup(E->self_addr);
	req.name = "kv";
	if (c != NULL && set->discovery != NULL && set->discovery[0] != '\0' &&
	    plat_client_call_discovery(c,
	    "/platform.discovery.v1.Discovery/GetService", &req.base,
	    &platform__discovery__v1__get_service_response__descriptor,
	    (ProtobufCMessage **)&r, &o, err, sizeof(err)) == PLAT_OK) {
		for (size_t i = 0; i < r->n_services; i++)
			for (size_t j = 0; j < r->services[i]->n_nodes; j++) {
				Platform__Discovery__V1__Node *nd =
				    r->services[i]->nodes[j];

				if (strcmp(nd->id, E->self_id) == 0)
					continue;
				if (n == cap)
					m = xrealloc(m, (cap *= 2) *
					    sizeof(*m));
				m[n].id = xstrdup(nd->id);
				m[n].address = xstrdup(nd->address);
				n++;
			}
	} else if (r == NULL) {
		n = 0;          /* unknown: keep the ring as it is */
	}
	if (r != NULL)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	if (n == 0) {
		free(m[0].id);
		free(m[0].address);
		free(m);
		m = NULL;
	}
	*out = m;
	return n;
}

static void
members_free(struct ring_member *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].id);
		free(m[i].address);
	}
	free(m);
}

/* A copy of an entry, out of the store. */
struct held {
	struct kv_view v;
	char *table, *key;
	uint8_t *value;
};

struct held_list {
	struct held *h;
	size_t n, cap;
};

static void
hold(void *arg, const struct kv_view *v)
{
	struct held_list *l = arg;
	struct held *h;

	if (l->n == l->cap)
		l->h = xrealloc(l->h, (l->cap = l->cap ? l->cap * 2 : 256) *
		    sizeof(*l->h));
	h = &l->h[l->n++];
	h->table = xstrdup(v->table);
	h->key = xstrdup(v->key);
	h->value = xrealloc(NULL, v->vlen + 1);
	memcpy(h->value, v->value, v->vlen);
	h->v = *v;
	h->v.table = h->table;
	h->v.key = h->key;
	h->v.value = h->value;
}

/* Indexes of a key's owners in r. */
static size_t
owner_set(const struct ring *r, const struct held *h, size_t *idx)
{
	return ring_owners(r, h->table, h->key, E->replicas, idx);
}

static bool
has_owner(const struct ring *r, const size_t *idx, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(ring_member(r, idx[i])->id, id) == 0)
			return true;
	return false;
}

/*
 * The ring went from old to new: each entry held here goes to the
 * members that own it now and did not before; one this node no longer
 * owns is forgotten once all of them took it.
 */
static void
rebalance(const struct ring *old, const struct ring *new)
{
	struct held_list l = { 0 };
	size_t nm = ring_size(new);
	bool *failed;

	kv_store_scan(E->store, hold, &l);
	failed = xcalloc(l.n + 1, sizeof(*failed));
	for (size_t t = 0; t < nm; t++) {
		const struct ring_member *target = ring_member(new, t);
		Platform__Kv__V1__ReplicaEntry *re, **batch;
		kv_entry_pb *pe;
		size_t nb = 0, *which;

		if (strcmp(target->id, E->self_id) == 0)
			continue;
		re = xcalloc(REPLICATE_BATCH, sizeof(*re));
		pe = xcalloc(REPLICATE_BATCH, sizeof(*pe));
		batch = xcalloc(REPLICATE_BATCH, sizeof(*batch));
		which = xcalloc(REPLICATE_BATCH, sizeof(*which));
		for (size_t i = 0; i <= l.n; i++) {
			size_t ni[RING_MAX_REPLICAS], oi[RING_MAX_REPLICAS];
			size_t nn, on;

			if (i < l.n) {
				nn = owner_set(new, &l.h[i], ni);
				on = owner_set(old, &l.h[i], oi);
				if (has_owner(new, ni, nn, target->id) &&
				    !has_owner(old, oi, on, target->id)) {
					struct held *h = &l.h[i];

					platform__kv__v1__entry__init(&pe[nb]);
					platform__kv__v1__replica_entry__init(
					    &re[nb]);
					pe[nb].table = h->table;
					pe[nb].key = h->key;
					pe[nb].value.data = h->value;
					pe[nb].value.len = h->v.vlen;
					pe[nb].version = h->v.version;
					pe[nb].expires_unix_ms =
					    h->v.expires_ms;
					re[nb].entry = &pe[nb];
					re[nb].deleted = h->v.deleted;
					batch[nb] = &re[nb];
					which[nb++] = i;
				}
			}
			if (nb > 0 && (nb == REPLICATE_BATCH || i == l.n)) {
				bool bad = send_replicas(target->address,
				    batch, nb) != PLAT_OK;

				for (size_t k = 0; k < nb; k++)
					failed[which[k]] |= bad;
				if (!bad)
					atomic_fetch_add(&E->moved, nb);
				nb = 0;
			}
		}
		free(re);
		free(pe);
		free(batch);
		free(which);
	}
	for (size_t i = 0; i < l.n; i++) {
		size_t ni[RING_MAX_REPLICAS];
		size_t nn = owner_set(new, &l.h[i], ni);

		if (!failed[i] && !has_owner(new, ni, nn, E->self_id))
			kv_store_forget(E->store, l.h[i].table, l.h[i].key,
			    l.h[i].v.version);
		free(l.h[i].table);
		free(l.h[i].key);
		free(l.h[i].value);
	}
	free(l.h);
	free(failed);
}

static void
follow_ring(void)
{
	struct ring_member *m;
	struct ring *old, *new;
	size_t n = read_members(&m);
	char count[24];

	if (n == 0)
		return;
	pthread_rwlock_rdlock(&E->ring_lock);
	if (ring_same(E->ring, m, n)) {
		pthread_rwlock_unlock(&E->ring_lock);
		members_free(m, n);
		return;
	}
	pthread_rwlock_unlock(&E->ring_lock);
	new = ring_new(m, n);
	members_free(m, n);
	pthread_rwlock_wrlock(&E->ring_lock);
	old = E->ring;
	E->ring = new;
	pthread_rwlock_unlock(&E->ring_lock);
	snprintf(count, sizeof(count), "%zu", n);
	log_info("kv: ring changed", "members", count);
	/* Only this thread replaces the ring: new stays valid here. */
	rebalance(old, new);
	ring_free(old);
	if (!E->announced && n > 1) {
		E->announced = true;
		announce_start(new);
	}
}

/* Members that said they started get the entries they own, as if they
 * had joined a ring without them. */
static void
resend_started(void)
{
	char *ids[RESEND_MAX];
	size_t n;

	pthread_mutex_lock(&E->mu);
	n = E->nresend;
	memcpy(ids, E->resend, n * sizeof(*ids));
	E->nresend = 0;
	pthread_mutex_unlock(&E->mu);
	for (size_t i = 0; i < n; i++) {
		/* Only this thread replaces the ring: no lock to read it. */
		const struct ring *cur = E->ring;
		ssize_t at = ring_find(cur, ids[i]);

		if (at >= 0 && strcmp(ids[i], E->self_id) != 0) {
			size_t nm = ring_size(cur), k = 0;
			struct ring_member *m = xcalloc(nm, sizeof(*m));
			struct ring *without;

			for (size_t j = 0; j < nm; j++)
				if ((ssize_t)j != at)
					m[k++] = *ring_member(cur, j);
			without = ring_new(m, k);
			free(m);
			log_info("kv: a member started again, sending it its "
			    "entries", "node", ids[i]);
			rebalance(without, cur);
			ring_free(without);
		}
		free(ids[i]);
	}
}

static void *
emb_main(void *arg)
{
	int64_t next_ring = 0;

	(void)arg;
	pthread_mutex_lock(&E->mu);
	while (!plat_cond_wait_ms(&E->cv, &E->mu, SWEEP_MS, &E->stop)) {
		pthread_mutex_unlock(&E->mu);
		kv_store_sweep(E->store);
		if (plat_now_ms() >= next_ring) {
			follow_ring();
			next_ring = plat_now_ms() + RING_POLL_MS;
		}
		resend_started();
		pthread_mutex_lock(&E->mu);
	}
	pthread_mutex_unlock(&E->mu);
	return NULL;
}

/* ---- metrics and lifecycle ---- */

static double
gauge_keys(void *arg)
{
	struct kv_store_stats st;

	(void)arg;
	kv_store_stats(E->store, &st);
	return (double)st.keys;
}

static double
gauge_bytes(void *arg)
{
	struct kv_store_stats st;

	(void)arg;
	kv_store_stats(E->store, &st);
	return (double)st.bytes;
}

static double
gauge_evictions(void *arg)
{
	struct kv_store_stats st;

	(void)arg;
	kv_store_stats(E->store, &st);
	return (double)st.evictions;
}

static double
gauge_expirations(void *arg)
{
	struct kv_store_stats st;

	(void)arg;
	kv_store_stats(E->store, &st);
	return (double)st.expirations;
}

static double
gauge_members(void *arg)
{
	size_t n;

	(void)arg;
	pthread_rwlock_rdlock(&E->ring_lock);
	n = ring_size(E->ring);
	pthread_rwlock_unlock(&E->ring_lock);
	return (double)n;
}

static double
gauge_forwarded(void *arg)
{
	(void)arg;
	return (double)atomic_load(&E->forwarded);
}

static double
gauge_replicate_failures(void *arg)
{
	(void)arg;
	return (double)atomic_load(&E->replicate_failures);
}

static double
gauge_moved(void *arg)
{
	(void)arg;
	return (double)atomic_load(&E->moved);
}

/* The ring thread and the Watch peers call other nodes: they stop before
 * the client closes. The pools go on answering the calls that drain. */
static void
emb_stopping(struct kv_backend *b)
{
	(void)b;
	if (E->stopped)
		return;
	pthread_mutex_lock(&E->mu);
	E->stop = 1;
	pthread_cond_broadcast(&E->cv);
	pthread_mutex_unlock(&E->mu);
	pthread_join(E->thread, NULL);
	E->stopped = true;
	atomic_store(&E->stopping, 1);
	pthread_mutex_lock(&E->peers_mu);
	while (E->npeers > 0)
		pthread_cond_wait(&E->peers_cv, &E->peers_mu);
	pthread_mutex_unlock(&E->peers_mu);
}

static void
emb_free(struct kv_backend *b)
{
	emb_stopping(b);
	/* The runtime waited for every deferred call: the pool is idle. */
	pool_stop(&E->client_pool);
	pool_stop(&E->primary_pool);
	/* Every stream has ended: its peer threads stop within a poll. */
	pthread_mutex_lock(&E->peers_mu);
	while (E->npeers > 0)
		pthread_cond_wait(&E->peers_cv, &E->peers_mu);
	pthread_mutex_unlock(&E->peers_mu);
	ring_free(E->ring);
	kv_store_free(E->store);
	for (size_t i = 0; i < E->nresend; i++)
		free(E->resend[i]);
	free(E->self_id);
	free(E->self_addr);
	free(E);
	E = NULL;
}

static const struct kv_backend_ops emb_ops = {
	.get = emb_get,
	.put = emb_put,
	.del = emb_delete,
	.increment = emb_increment,
	.get_many = emb_get_many,
	.put_many = emb_put_many,
	.list = emb_list,
	.watch = emb_watch,
	.replicate = emb_replicate,
	.stopping = emb_stopping,
	.free = emb_free,
};

struct kv_backend *
kv_embedded_new(plat_server *srv, const struct kv_settings *set)
{
	struct metrics *mx = plat_server_metrics(srv);
	struct ring_member self;

	E = xcalloc(1, sizeof(*E));
	E->base.ops = &emb_ops;
	E->base.name = "memory";
	E->srv = srv;
	E->replicas = set->replicas;
	E->store = kv_store_new(set->max_memory, NULL);
	E->self_id = xstrdup(plat_server_settings(srv)->node_id);
	E->self_addr = xstrdup(plat_server_advertised(srv));
	self.id = E->self_id;
	self.address = E->self_addr;
	E->ring = ring_new(&self, 1);
	pthread_rwlock_init(&E->ring_lock, NULL);
	pthread_mutex_init(&E->mu, NULL);
	plat_cond_init(&E->cv);
	pthread_mutex_init(&E->peers_mu, NULL);
	pthread_cond_init(&E->peers_cv, NULL);
	if (pool_start(&E->client_pool) != 0 ||
	    pool_start(&E->primary_pool) != 0 ||
	    pthread_create(&E->thread, NULL, emb_main, NULL) != 0) {
		log_error("kv: cannot start its threads");
		return NULL;
	}
	metrics_gauge_fn(mx, "kv_keys", "Live entries held by this node.",
	    gauge_keys, NULL);
	metrics_gauge_fn(mx, "kv_memory_bytes", "Memory the entries take "
	    "(as accounted against --max-memory).", gauge_bytes, NULL);
	metrics_counter_fn(mx, "kv_evictions_total", "Entries evicted by the "
	    "memory limit.", gauge_evictions, NULL);
	metrics_counter_fn(mx, "kv_expirations_total", "Entries whose time to "
	    "live ran out.", gauge_expirations, NULL);
	metrics_gauge_fn(mx, "kv_ring_members", "kv-srv nodes in this node's "
	    "ring.", gauge_members, NULL);
	metrics_counter_fn(mx, "kv_forwarded_total", "Calls forwarded to a "
	    "key's owner.", gauge_forwarded, NULL);
	metrics_counter_fn(mx, "kv_replicate_failures_total", "Copies to "
	    "another owner that failed.", gauge_replicate_failures, NULL);
	metrics_counter_fn(mx, "kv_moved_total", "Entries sent to new owners "
	    "when the ring changed.", gauge_moved, NULL);
	return &E->base;
}
