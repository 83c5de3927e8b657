/*
 * handlers: sync-srv's gRPC methods over the store (store.h), the queue
 * of waiting calls (waiters.h) and the platform's change feed.
 *
 * Every input is checked before anything is read or written, so bad
 * input gets INVALID_ARGUMENT naming the field and changes nothing. A
 * change of holder is answered only after it committed; it then goes out
 * as a platform event. The feed (sync_changes, woken by NOTIFY and read
 * every second regardless) wakes this replica's waiters and feeds
 * Observe; a sweeper drops lapsed leases and what they held.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "grant.h"
#include "platform/events.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/pg.h"
#include "platform/server.h"
#include "platform/sync/v1/sync.pb-c.h"
#include "platform/xalloc.h"
#include "store.h"
#include "sync.h"
#include "waiters.h"
#include "writer.h"

#define TTL_MIN_MS 100
#define TTL_MAX_MS 86400000
#define LIMIT_MAX 10000
#define VALUE_MAX 65536
#define POOL_MIN 4
#define FEED_PAGE 1000
#define SWEEP_MS 250
#define STREAM_CALL_MS 5000     /* a KeepAlive's statement */

typedef Platform__Sync__V1__LeaderInfo LeaderInfo;

static struct {
	struct pg_store *store;
	struct plat_feed *feed;
	struct plat_feed_loop *sweeper;
	plat_events *events;
	plat_server *srv;
} S;

/* ---- small things ---- */

static int
store_error(plat_ctx *ctx, enum plat_code code, const char *err)
{
	return plat_error(ctx, code, "%s", err);
}

static int
check_name(plat_ctx *ctx, const char *field, const char *name)
{
	const char *why = sync_name_problem(name);

	if (why != NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: %s", field,
		    why);
	return PLAT_OK;
}

static int
check_lease(plat_ctx *ctx, int64_t lease)
{
	if (lease <= 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "lease_id: must be a lease from Grant (at least 1)");
	return PLAT_OK;
}

/* The platform events of committed changes. */
static void
emit_notes(struct sync_notes *notes)
{
	for (size_t i = 0; i < notes->n; i++) {
		const struct sync_note *n = &notes->v[i];
		char topic[64], type[72];
		json_t *data;

		if (n->kind == SYNC_KIND_LOCK) {
			snprintf(topic, sizeof(topic), "platform.sync.lock.%s",
			    n->event);
			data = json_pack("{s:s,s:I,s:I}", "name", n->name,
			    "lease_id", (json_int_t)n->lease, "token",
			    (json_int_t)n->token);
		} else {
			if (strcmp(n->event, "proclaimed") == 0)
				continue;
			snprintf(topic, sizeof(topic),
			    "platform.sync.leader.changed");
			data = json_pack("{s:s,s:s,s:I,s:I}", "election",
			    n->name, "change", n->event, "lease_id",
			    (json_int_t)n->lease, "token",
			    (json_int_t)n->token);
		}
		snprintf(type, sizeof(type), "%s.v1", topic);
		plat_event_emit_json(S.events, topic, type, data,
		    (const char *const[]){ "name", n->name, NULL });
	}
	sync_notes_free(notes);
}

static LeaderInfo *
leader_new(plat_ctx *ctx, const char *election, int64_t lease,
    int64_t token, const unsigned char *value, size_t vlen)
{
	LeaderInfo *l = plat_alloc(ctx, sizeof(*l));

	platform__sync__v1__leader_info__init(l);
	l->election = plat_strdup(ctx, election);
	l->lease_id = lease;
	l->token = token;
	if (vlen > 0) {
		l->value.data = plat_alloc(ctx, vlen);
		memcpy(l->value.data, value, vlen);
		l->value.len = vlen;
	}
	return l;
}

/* ---- leases ---- */

static int
sync_grant(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Sync__V1__GrantRequest *req = (const void *)m;
	Platform__Sync__V1__GrantResponse *resp;
	char err[256];
	enum plat_code code;
	int64_t id;

	if (req->ttl_ms < TTL_MIN_MS || req->ttl_ms > TTL_MAX_MS)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "ttl_ms: must be %d..%d", TTL_MIN_MS, TTL_MAX_MS);
	code = store_grant(S.store, req->ttl_ms,
	    plat_ctx_deadline_left_ms(ctx), &id, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp = plat_new(ctx, Platform__Sync__V1__GrantResponse,
	    &platform__sync__v1__grant_response__descriptor);
	resp->lease_id = id;
	resp->ttl_ms = req->ttl_ms;
	*out = &resp->base;
	return PLAT_OK;
}

static int
sync_revoke(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Sync__V1__RevokeRequest *req = (const void *)m;
	struct sync_notes notes = { 0 };
	char err[256];
	enum plat_code code;
	int rc;

	if ((rc = check_lease(ctx, req->lease_id)) != PLAT_OK)
		return rc;
	code = store_revoke(S.store, req->lease_id,
	    plat_ctx_deadline_left_ms(ctx), &notes, err, sizeof(err));
	if (code != PLAT_OK) {
		sync_notes_free(&notes);
		return store_error(ctx, code, err);
	}
	emit_notes(&notes);
	*out = (ProtobufCMessage *)plat_new(ctx,
	    Platform__Sync__V1__RevokeResponse,
	    &platform__sync__v1__revoke_response__descriptor);
	return PLAT_OK;
}

static int
sync_ttl(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Sync__V1__TimeToLiveRequest *req = (const void *)m;
	Platform__Sync__V1__TimeToLiveResponse *resp;
	char err[256];
	enum plat_code code;
	int64_t ttl, left;
	int rc;

	if ((rc = check_lease(ctx, req->lease_id)) != PLAT_OK)
		return rc;
	code = store_ttl(S.store, req->lease_id,
	    plat_ctx_deadline_left_ms(ctx), &ttl, &left, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp = plat_new(ctx, Platform__Sync__V1__TimeToLiveResponse,
	    &platform__sync__v1__time_to_live_response__descriptor);
	resp->lease_id = req->lease_id;
	resp->ttl_ms = ttl;
	resp->remaining_ms = left;
	*out = &resp->base;
	return PLAT_OK;
}

static int
keepalive_open(plat_ctx *ctx, plat_stream *st)
{
	(void)ctx;
	(void)st;
	return PLAT_STREAM_OPEN;
}

static int
keepalive_message(plat_ctx *ctx, plat_stream *st, const ProtobufCMessage *m)
{
	const Platform__Sync__V1__KeepAliveRequest *req = (const void *)m;
	Platform__Sync__V1__KeepAliveResponse resp =
	    PLATFORM__SYNC__V1__KEEP_ALIVE_RESPONSE__INIT;
	char err[256];
	enum plat_code code;
	int64_t left, timeout;
	int rc;

	if ((rc = check_lease(ctx, req->lease_id)) != PLAT_OK)
		return rc;
	timeout = plat_ctx_deadline_left_ms(ctx);
	code = store_keepalive(S.store, req->lease_id,
	    timeout < STREAM_CALL_MS ? timeout : STREAM_CALL_MS, &left, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	resp.lease_id = req->lease_id;
	resp.ttl_ms = left;
	/* A full queue ends the stream (the runtime's slow consumer). */
	(void)plat_stream_send(st, &resp.base);
	return PLAT_STREAM_OPEN;
}

static int
keepalive_half_close(plat_ctx *ctx, plat_stream *st)
{
	(void)ctx;
	(void)st;
	return PLAT_OK;
}

static const struct plat_bidi_handlers keepalive_handlers = {
	.on_open = keepalive_open,
	.on_message = keepalive_message,
	.on_half_close = keepalive_half_close,
};

/* ---- locks and elections ---- */

static struct sync_attempt *
attempt_new(int kind, const char *name, int64_t lease, int mode, int limit,
    bool wait, const ProtobufCBinaryData *value)
{
	struct sync_attempt *a = xcalloc(1, sizeof(*a));

	a->kind = kind;
	a->name = xstrdup(name);
	a->lease = lease;
	a->mode = mode;
	a->limit = limit;
	a->wait = wait;
	if (value != NULL) {
		/* Owned by a: the request goes with the handler's return
		 * while a waits on. */
		unsigned char *v = xcalloc(1, value->len + 1);

		memcpy(v, value->data, value->len);
		a->value = (struct sync_value){ true, v, value->len };
	}
	return a;
}

static void
attempt_free(struct sync_attempt *a)
{
	if (a == NULL)
		return;
	sync_notes_free(&a->notes);
	free((char *)a->name);
	free((void *)a->value.data);
	free(a);
}

/* The answer to a granted Lock or Campaign. */
static ProtobufCMessage *
granted_response(plat_ctx *ctx, struct sync_attempt *a)
{
	if (a->kind == SYNC_KIND_LOCK) {
		Platform__Sync__V1__LockResponse *r = plat_new(ctx,
		    Platform__Sync__V1__LockResponse,
		    &platform__sync__v1__lock_response__descriptor);

		r->name = plat_strdup(ctx, a->name);
		r->token = a->token;
		return &r->base;
	} else {
		Platform__Sync__V1__CampaignResponse *r = plat_new(ctx,
		    Platform__Sync__V1__CampaignResponse,
		    &platform__sync__v1__campaign_response__descriptor);
		r->leader = leader_new(ctx, a->name, a->lease, a->token,
		    a->value.data, a->value.len);
		return &r->base;
	}
}

/* A waiter's answer, from the waiters' thread. */
static void
waiter_done(plat_ctx *ctx, struct sync_attempt *a, enum plat_code code,
    const char *err)
{
	if (code == PLAT_OK && a->outcome == SYNC_GRANTED) {
		emit_notes(&a->notes);
		plat_reply(ctx, PLAT_OK, granted_response(ctx, a));
	} else {
		if (code == PLAT_OK)
			code = PLAT_INTERNAL;
		plat_reply(ctx, plat_error(ctx, code, "%s", err), NULL);
	}
	attempt_free(a);
}

/* A Lock, Campaign, Unlock or Resign once its batch committed: the
 * platform events of what it changed, then its answer; a Lock or
 * Campaign not granted waits (waiters.h) unless it was a try. */
static void
job_answer(struct sync_job *j)
{
	plat_ctx *ctx = j->ctx;
	struct sync_attempt *a = j->op.a;
	enum plat_code code = j->call.code;

	emit_notes(&j->op.notes);
	if (code != PLAT_OK) {
		plat_reply(ctx, plat_error(ctx, code, "%s", j->call.err), NULL);
		attempt_free(a);
	} else if (a == NULL) {
		waiters_kick();
		plat_reply(ctx, PLAT_OK, j->resp);
	} else if (a->outcome == SYNC_GRANTED) {
		plat_reply(ctx, PLAT_OK, granted_response(ctx, a));
		attempt_free(a);
	} else if (j->try_lock) {
		plat_reply(ctx, plat_error(ctx, PLAT_FAILED_PRECONDITION,
		    "%s %s is held", a->kind == SYNC_KIND_LOCK ? "lock" :
		    "election", a->name), NULL);
		attempt_free(a);
	} else {
		waiters_add(ctx, a);
	}
	free(j);
}

/* Queues an acquisition (a) or a release (a NULL, answered with resp)
 * for the next batch. */
static int
submit(plat_ctx *ctx, struct sync_attempt *a, int kind, const char *name,
    int64_t lease, bool try_lock, ProtobufCMessage *resp)
{
	struct sync_job *j;
	int rc;

	if (plat_server_stopping(S.srv)) {
		attempt_free(a);
		return plat_error(ctx, PLAT_UNAVAILABLE,
		    "sync-srv is shutting down");
	}
	j = xcalloc(1, sizeof(*j));
	j->op = (struct sync_op){ .a = a, .kind = kind, .name = name,
	    .lease = lease };
	j->ctx = ctx;
	j->try_lock = try_lock;
	j->resp = resp;
	rc = plat_defer(ctx);   /* before the writer can answer */
	writer_submit(j);
	return rc;
}

/* Lock and Campaign: granted, busy (try), or queued and answered later
 * by the waiters. */
static int
acquire(plat_ctx *ctx, struct sync_attempt *a, bool try_lock)
{
	return submit(ctx, a, a->kind, a->name, a->lease, try_lock, NULL);
}

static int
sync_lock(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Sync__V1__LockRequest *req = (const void *)m;
	int rc, limit = 0;

	if ((rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = check_lease(ctx, req->lease_id)) != PLAT_OK)
		return rc;
	switch (req->mode) {
	case PLATFORM__SYNC__V1__LOCK_MODE__LOCK_MODE_EXCLUSIVE:
	case PLATFORM__SYNC__V1__LOCK_MODE__LOCK_MODE_SHARED:
		if (req->limit != 0)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "limit: only for LOCK_MODE_SEMAPHORE");
		break;
	case PLATFORM__SYNC__V1__LOCK_MODE__LOCK_MODE_SEMAPHORE:
		if (req->limit < 1 || req->limit > LIMIT_MAX)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "limit: must be 1..%d for a semaphore", LIMIT_MAX);
		limit = req->limit;
		break;
	default:
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "mode: unknown lock mode %d", (int)req->mode);
	}
	return acquire(ctx, attempt_new(SYNC_KIND_LOCK, req->name,
	    req->lease_id, (int)req->mode, limit, !req->try_lock, NULL),
	    req->try_lock);
}

static int
release(plat_ctx *ctx, int kind, const char *name, int64_t lease,
    ProtobufCMessage *resp)
{
	return submit(ctx, NULL, kind, plat_strdup(ctx, name), lease, false,
	    resp);
}

static int
sync_unlock(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Sync__V1__UnlockRequest *req = (const void *)m;
	int rc;

	if ((rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = check_lease(ctx, req->lease_id)) != PLAT_OK)
		return rc;
	return release(ctx, SYNC_KIND_LOCK, req->name, req->lease_id,
	    (ProtobufCMessage *)plat_new(ctx,
	    Platform__Sync__V1__UnlockResponse,
	    &platform__sync__v1__unlock_response__descriptor));
}

static int
check_value(plat_ctx *ctx, const ProtobufCBinaryData *v)
{
	if (v->len > VALUE_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "value: larger than %d bytes", VALUE_MAX);
	return PLAT_OK;
}

static int
sync_campaign(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Sync__V1__CampaignRequest *req = (const void *)m;
	int rc;

	if ((rc = check_name(ctx, "election", req->election)) != PLAT_OK ||
	    (rc = check_lease(ctx, req->lease_id)) != PLAT_OK ||
	    (rc = check_value(ctx, &req->value)) != PLAT_OK)
		return rc;
	return acquire(ctx, attempt_new(SYNC_KIND_ELECTION, req->election,
	    req->lease_id, SYNC_EXCLUSIVE, 0, true, &req->value), false);
}

static int
sync_proclaim(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Sync__V1__ProclaimRequest *req = (const void *)m;
	struct sync_notes notes = { 0 };
	struct sync_value v = { true, req->value.data, req->value.len };
	char err[256];
	enum plat_code code;
	int rc;

	if ((rc = check_name(ctx, "election", req->election)) != PLAT_OK ||
	    (rc = check_lease(ctx, req->lease_id)) != PLAT_OK ||
	    (rc = check_value(ctx, &req->value)) != PLAT_OK)
		return rc;
	if (req->token <= 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "token: must be the term's token from Campaign");
	code = store_proclaim(S.store, req->election, req->lease_id,
	    req->token, &v, plat_ctx_deadline_left_ms(ctx), &notes, err,
	    sizeof(err));
	if (code != PLAT_OK) {
		sync_notes_free(&notes);
		return store_error(ctx, code, err);
	}
	emit_notes(&notes);
	*out = (ProtobufCMessage *)plat_new(ctx,
	    Platform__Sync__V1__ProclaimResponse,
	    &platform__sync__v1__proclaim_response__descriptor);
	return PLAT_OK;
}

static int
sync_resign(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Sync__V1__ResignRequest *req = (const void *)m;
	int rc;

	if ((rc = check_name(ctx, "election", req->election)) != PLAT_OK ||
	    (rc = check_lease(ctx, req->lease_id)) != PLAT_OK)
		return rc;
	return release(ctx, SYNC_KIND_ELECTION, req->election, req->lease_id,
	    (ProtobufCMessage *)plat_new(ctx,
	    Platform__Sync__V1__ResignResponse,
	    &platform__sync__v1__resign_response__descriptor));
}

/* The live leader of an election (NULL: none) and the revision read. */
static int
leader_now(plat_ctx *ctx, const char *election, LeaderInfo **out,
    int64_t *rev)
{
	char err[256];
	enum plat_code code;
	bool found;
	int64_t lease = 0, token = 0;
	unsigned char *v;
	size_t vlen;

	code = store_leader(S.store, election, plat_ctx_deadline_left_ms(ctx),
	    &found, &lease, &token, &v, &vlen, rev, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	*out = found ? leader_new(ctx, election, lease, token, v, vlen) :
	    NULL;
	PQfreemem(v);
	return PLAT_OK;
}

static int
sync_leader(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const Platform__Sync__V1__LeaderRequest *req = (const void *)m;
	Platform__Sync__V1__LeaderResponse *resp;
	int64_t rev;
	int rc;

	if ((rc = check_name(ctx, "election", req->election)) != PLAT_OK)
		return rc;
	resp = plat_new(ctx, Platform__Sync__V1__LeaderResponse,
	    &platform__sync__v1__leader_response__descriptor);
	if ((rc = leader_now(ctx, req->election, &resp->leader, &rev)) !=
	    PLAT_OK)
		return rc;
	*out = &resp->base;
	return PLAT_OK;
}

static int
sync_observe(plat_ctx *ctx, const ProtobufCMessage *m, plat_stream *st)
{
	const Platform__Sync__V1__ObserveRequest *req = (const void *)m;
	Platform__Sync__V1__ObserveResponse resp =
	    PLATFORM__SYNC__V1__OBSERVE_RESPONSE__INIT;
	int64_t rev;
	int rc;

	if ((rc = check_name(ctx, "election", req->election)) != PLAT_OK)
		return rc;
	/* The leader and the revision it was read at in one snapshot:
	 * every change after it follows, with no gap. */
	if ((rc = leader_now(ctx, req->election, &resp.leader, &rev)) !=
	    PLAT_OK)
		return rc;
	if (plat_stream_send(st, &resp.base) != 0)
		return PLAT_OK;
	return plat_feed_watch(S.feed, ctx, st, xstrdup(req->election), rev);
}

/* ---- the change feed ---- */

static enum plat_code
feed_head(void *arg, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	(void)arg;
	return store_head(S.store, timeout_ms, rev, err, errlen);
}

static enum plat_code
feed_read(void *arg, const void *watch, int64_t after, int64_t upto,
    int limit, int64_t timeout_ms, struct plat_feed_page *out, char *err,
    size_t errlen)
{
	struct sync_change **rows;
	enum plat_code code;
	size_t n;

	(void)arg;
	code = store_changes(S.store, after, upto, watch, limit, timeout_ms,
	    &rows, &n, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < n; i++)
		plat_feed_page_push(out, rows[i]);
	free(rows);
	return PLAT_OK;
}

static void
feed_ref(void *row)
{
	sync_change_ref(row);
}

static void
feed_unref(void *row)
{
	sync_change_unref(row);
}

static bool
feed_match(const void *watch, const void *row)
{
	const struct sync_change *c = row;

	return c->kind == SYNC_KIND_ELECTION && strcmp(c->name, watch) == 0;
}

static int
feed_send(plat_stream *st, const void *row)
{
	const struct sync_change *c = row;
	Platform__Sync__V1__ObserveResponse resp =
	    PLATFORM__SYNC__V1__OBSERVE_RESPONSE__INIT;
	LeaderInfo l = PLATFORM__SYNC__V1__LEADER_INFO__INIT;

	if (strcmp(c->event, "acquired") == 0 ||
	    strcmp(c->event, "proclaimed") == 0) {
		l.election = c->name;
		l.lease_id = c->lease;
		l.token = c->token;
		l.value.data = c->value;
		l.value.len = c->vlen;
		resp.leader = &l;
	}
	return plat_stream_send(st, &resp.base);
}

static void
feed_watch_free(void *watch)
{
	free(watch);
}

/* Any change of holder may let a waiter in. */
static void
feed_read_rows(void *arg, void *const *rows, size_t n)
{
	(void)arg;
	(void)rows;
	if (n > 0)
		waiters_kick();
}

static const struct plat_feed_ops sync_feed_ops = {
	.name = "sync",
	.channel = STORE_CHANNEL,
	.health_service = "platform.sync.v1.Sync",
	.page = FEED_PAGE,
	.start_wait_ms = 5000,         /* an Observe just after the start */
	.head = feed_head,
	.read = feed_read,
	.revision_at = offsetof(struct sync_change, revision),
	.size_at = offsetof(struct sync_change, size),
	.ref = feed_ref,
	.unref = feed_unref,
	.match = feed_match,
	.send = feed_send,
	.watch_free = feed_watch_free,
	.read_rows = feed_read_rows,
};

/* ---- the sweeper ---- */

static void
sweep(void *arg)
{
	struct sync_notes notes = { 0 };
	char err[256];

	(void)arg;
	if (store_sweep(S.store, 5000, &notes, err, sizeof(err)) != PLAT_OK)
		return;         /* the next tick tries again */
	if (notes.n > 0)
		waiters_kick();
	emit_notes(&notes);
}

/* ---- the service ---- */

static double
gauge_waiters(void *arg)
{
	(void)arg;
	return (double)waiters_count();
}

static double
gauge_write_queue(void *arg)
{
	(void)arg;
	return (double)writer_pending();
}

static double
gauge_observers(void *arg)
{
	(void)arg;
	return (double)plat_feed_watchers(S.feed);
}

static int
sync_init(plat_server *srv, const struct plat_settings *s)
{
	char err[512];
	enum plat_code code;
	int pool;

	S.srv = srv;
	S.events = plat_server_events(srv);
	pool = s->workers * 2 < POOL_MIN ? POOL_MIN : s->workers * 2;
	if ((S.store = store_new(s->database, pool)) == NULL)
		return -1;
	code = pg_store_migrate(S.store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("sync: database unavailable at start; answering "
		    "UNAVAILABLE until it is reachable", "error", err);
	} else if (code != PLAT_OK) {
		log_error("sync: cannot bring the database schema up to date",
		    "error", err);
		fprintf(stderr, "sync-srv: %s\n", err);
		goto fail;
	}
	if (waiters_start(S.store, waiter_done) != 0)
		goto fail;
	if (writer_start(S.store, job_answer) != 0) {
		waiters_stop();
		goto fail;
	}
	S.feed = plat_feed_start(&sync_feed_ops, NULL, s->database, srv,
	    S.store);
	if (S.feed == NULL) {
		log_error("sync: cannot start the change feed");
		writer_stop();
		waiters_stop();
		goto fail;
	}
	S.sweeper = plat_feed_loop_start(SWEEP_MS, sweep, NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "sync_waiters",
	    "Lock and Campaign calls waiting for their turn.", gauge_waiters,
	    NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "sync_write_queue",
	    "Lock, Campaign, Unlock and Resign calls queued or being "
	    "written.", gauge_write_queue, NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "sync_observers",
	    "Open Observe streams.", gauge_observers, NULL);
	return 0;
fail:
	pg_store_free(S.store);
	S.store = NULL;
	return -1;
}

/* Waiting calls are answered (UNAVAILABLE) before the drain, which
 * waits for every deferred call. */
static void
sync_stopping(plat_server *srv)
{
	(void)srv;
	plat_feed_loop_stop(S.sweeper);
	S.sweeper = NULL;
	waiters_stop();
}

static void
sync_fini(plat_server *srv)
{
	(void)srv;
	writer_stop();          /* the drain answered every job */
	plat_feed_free(S.feed);
	S.feed = NULL;
	pg_store_free(S.store);
	S.store = NULL;
}

#define SYNC_PATH "/platform.sync.v1.Sync/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(SYNC_PATH, name, platform__sync__v1, type, fn, idem)

static const struct plat_method sync_methods[] = {
	UNARY("Grant", sync_grant, grant, 0),
	{
		.path = SYNC_PATH "KeepAlive",
		.kind = PLAT_METHOD_BIDI,
		.request = &platform__sync__v1__keep_alive_request__descriptor,
		.response =
		    &platform__sync__v1__keep_alive_response__descriptor,
		.bidi = &keepalive_handlers,
	},
	UNARY("Revoke", sync_revoke, revoke, 0),
	UNARY("TimeToLive", sync_ttl, time_to_live, 1),
	UNARY("Lock", sync_lock, lock, 0),
	UNARY("Unlock", sync_unlock, unlock, 0),
	UNARY("Campaign", sync_campaign, campaign, 0),
	UNARY("Proclaim", sync_proclaim, proclaim, 0),
	UNARY("Resign", sync_resign, resign, 0),
	UNARY("Leader", sync_leader, leader, 1),
	{
		.path = SYNC_PATH "Observe",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__sync__v1__observe_request__descriptor,
		.response = &platform__sync__v1__observe_response__descriptor,
		.stream = sync_observe,
	},
};

/* --database is required: checked with the other settings, so a missing
 * or malformed one is a one-line error and exit 2. */
const struct plat_service sync_service = {
	.name = "sync",
	.grpc_service = "platform.sync.v1.Sync",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7075",
	.methods = sync_methods,
	.nmethods = PLAT_COUNT(sync_methods),
	.check_settings = pg_check_database,
	.init = sync_init,
	.stopping = sync_stopping,
	.fini = sync_fini,
};
