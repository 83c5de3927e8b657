/*
 * redis: kv-srv as a stateless gRPC front to Redis or Redis Cluster
 * (--backend redis://HOST:PORT), same proto and meanings as the
 * embedded ring. redis.h has the layout of keys and the other pieces;
 * here each call becomes one command (a script for every write) and its
 * reply becomes the answer.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"
#include "redis.h"

static int64_t
call_deadline(plat_ctx *ctx)
{
	int64_t left = plat_ctx_deadline_left_ms(ctx);

	return left == INT64_MAX ? INT64_MAX : plat_now_ms() + left;
}

/* Submits a gRPC call's command about table (a is freed), answered by
 * done; PLAT_DEFERRED. */
static int
submit_call(plat_ctx *ctx, struct rargs *a, const char *table,
    rcall_done done, const void *req, ProtobufCMessage *resp, void *arg)
{
	struct rcall *c = plat_alloc(ctx, sizeof(*c));

	memset(c, 0, sizeof(*c));
	c->done = done;
	c->ctx = ctx;
	c->req = req;
	c->resp = resp;
	c->arg = arg;
	plat_defer(ctx);        /* before the answerer can answer */
	redis_submit(c, a, table, call_deadline(ctx));
	return PLAT_DEFERRED;
}

/* ---- replies ---- */

static bool
reply_is(const redisReply *r, size_t i, const char *s)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements > i &&
	    r->element[i]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[i]->str, s) == 0;
}

/* The status of c, PLAT_OK when its reply is an array of at least min
 * elements; else the error set on the call. */
static int
reply_status(struct rcall *c, size_t min)
{
	char msg[BATCHER_ERR_MAX + 16];
	int code;

	if (c->bc.code != PLAT_OK)
		return plat_error(c->ctx, (int)c->bc.code, "%s", c->bc.err);
	if (c->reply->type == REDIS_REPLY_ERROR) {
		code = redis_status(c->reply, msg, sizeof(msg));
		return plat_error(c->ctx, code, "%s", msg);
	}
	if (c->reply->type != REDIS_REPLY_ARRAY || c->reply->elements < min)
		return plat_error(c->ctx, PLAT_INTERNAL,
		    "redis: unexpected reply");
	return PLAT_OK;
}

/* Answers a gRPC call with rc (its message set by plat_error) and frees
 * what the command held. */
static void
finish_call(struct rcall *c, int rc)
{
	rcall_clear(c);
	plat_reply(c->ctx, rc, rc == PLAT_OK ? c->resp : NULL);
}

/* A write's refusal by its script: {'EXISTS', v}, {'ABSENT'},
 * {'MISMATCH', v}. */
static int
refused(struct rcall *c, const char *key, int64_t expected)
{
	const redisReply *r = c->reply;

	if (reply_is(r, 0, "EXISTS"))
		return plat_error(c->ctx, PLAT_ALREADY_EXISTS, "key \"%s\" "
		    "exists (version %s)", key, r->element[1]->str);
	if (reply_is(r, 0, "ABSENT"))
		return plat_error(c->ctx, PLAT_FAILED_PRECONDITION,
		    "expected_version %" PRId64 ", but key \"%s\" does not "
		    "exist", expected, key);
	if (reply_is(r, 0, "MISMATCH"))
		return plat_error(c->ctx, PLAT_FAILED_PRECONDITION,
		    "expected_version %" PRId64 ", but key \"%s\" is at "
		    "version %s", expected, key, r->element[1]->str);
	return plat_error(c->ctx, PLAT_INTERNAL, "redis: unexpected reply");
}

/* ---- the ops ---- */

static void
get_done(struct rcall *c)
{
	const Platform__Kv__V1__GetRequest *req = c->req;
	Platform__Kv__V1__GetResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 3);

	if (rc == PLAT_OK && c->reply->element[1]->type != REDIS_REPLY_STRING)
		rc = plat_error(c->ctx, PLAT_NOT_FOUND, "key \"%s\" not found "
		    "in table \"%s\"", req->key, req->table);
	else if (rc == PLAT_OK)
		resp->entry = kv_entry_new(c->ctx, req->table, req->key,
		    c->reply->element[0]->str, c->reply->element[0]->len,
		    redis_reply_i64(c->reply->element[1]),
		    redis_reply_i64(c->reply->element[2]));
	finish_call(c, rc);
}

/* kv:{T}:v:K in ctx's memory. */
static const char *
value_key(plat_ctx *ctx, const char *table, const char *key, size_t *len)
{
	size_t n = strlen(table) + strlen(key) + sizeof("kv:{}:v:");
	char *s = plat_alloc(ctx, n);

	*len = (size_t)snprintf(s, n, "kv:{%s}:v:%s", table, key);
	return s;
}

static int
redis_get(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetRequest *req,
    Platform__Kv__V1__GetResponse *resp)
{
	struct rargs a;
	const char *k;
	size_t klen;

	(void)b;
	k = value_key(ctx, req->table, req->key, &klen);
	rargs_init(&a, 5);
	rarg_str(&a, "HMGET");
	rarg_bytes(&a, k, klen);
	rarg_str(&a, "v");
	rarg_str(&a, "ver");
	rarg_str(&a, "exp");
	return submit_call(ctx, &a, req->table, get_done, req, &resp->base, NULL);
}

static void
put_done(struct rcall *c)
{
	const Platform__Kv__V1__PutRequest *req = c->req;
	Platform__Kv__V1__PutResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 1);

	if (rc == PLAT_OK && !reply_is(c->reply, 0, "OK"))
		rc = refused(c, req->key, req->expected_version);
	else if (rc == PLAT_OK && c->reply->elements < 3)
		rc = plat_error(c->ctx, PLAT_INTERNAL, "redis: short reply");
	else if (rc == PLAT_OK)
		resp->entry = kv_entry_new(c->ctx, req->table, req->key,
		    req->value.data, req->value.len,
		    redis_reply_i64(c->reply->element[1]),
		    redis_reply_i64(c->reply->element[2]));
	finish_call(c, rc);
}

static int
redis_put(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutRequest *req,
    Platform__Kv__V1__PutResponse *resp)
{
	struct rargs a;

	(void)b;
	rargs_init(&a, 9);
	rarg_script(&a, S_PUT, req->table);
	rarg_str(&a, req->table);
	rarg_str(&a, req->key);
	rarg_bytes(&a, req->value.data, req->value.len);
	rarg_i64(&a, req->ttl_ms);
	rarg_i64(&a, req->expected_version);
	rarg_str(&a, req->if_absent ? "1" : "0");
	return submit_call(ctx, &a, req->table, put_done, req, &resp->base, NULL);
}

static void
delete_done(struct rcall *c)
{
	const Platform__Kv__V1__DeleteRequest *req = c->req;
	Platform__Kv__V1__DeleteResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 1);

	if (rc == PLAT_OK && reply_is(c->reply, 0, "OK") &&
	    c->reply->elements >= 2) {
		resp->deleted = true;
		resp->version = redis_reply_i64(c->reply->element[1]);
	} else if (rc == PLAT_OK && !reply_is(c->reply, 0, "NONE")) {
		rc = refused(c, req->key, req->expected_version);
	}
	finish_call(c, rc);
}

static int
redis_delete(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__DeleteRequest *req,
    Platform__Kv__V1__DeleteResponse *resp)
{
	struct rargs a;

	(void)b;
	rargs_init(&a, 6);
	rarg_script(&a, S_DELETE, req->table);
	rarg_str(&a, req->table);
	rarg_str(&a, req->key);
	rarg_i64(&a, req->expected_version);
	return submit_call(ctx, &a, req->table, delete_done, req, &resp->base, NULL);
}

static void
increment_done(struct rcall *c)
{
	const Platform__Kv__V1__IncrementRequest *req = c->req;
	Platform__Kv__V1__IncrementResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 2);
	const redisReply *r = c->reply;

	if (rc == PLAT_OK && reply_is(r, 0, "REFUSED") &&
	    strstr(r->element[1]->str, "overflow") != NULL)
		rc = plat_error(c->ctx, PLAT_FAILED_PRECONDITION, "key \"%s\": "
		    "adding %" PRId64 " overflows a 64-bit integer", req->key,
		    req->delta);
	else if (rc == PLAT_OK && reply_is(r, 0, "REFUSED"))
		rc = plat_error(c->ctx, PLAT_FAILED_PRECONDITION, "key \"%s\" "
		    "does not hold a decimal integer", req->key);
	else if (rc == PLAT_OK && (!reply_is(r, 0, "OK") || r->elements < 4))
		rc = plat_error(c->ctx, PLAT_INTERNAL,
		    "redis: unexpected reply");
	else if (rc == PLAT_OK) {
		resp->value = redis_reply_i64(r->element[1]);
		resp->entry = kv_entry_new(c->ctx, req->table, req->key,
		    r->element[1]->str, r->element[1]->len,
		    redis_reply_i64(r->element[2]), redis_reply_i64(r->element[3]));
	}
	finish_call(c, rc);
}

static int
redis_increment(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__IncrementRequest *req,
    Platform__Kv__V1__IncrementResponse *resp)
{
	struct rargs a;

	(void)b;
	rargs_init(&a, 7);
	rarg_script(&a, S_INCREMENT, req->table);
	rarg_str(&a, req->table);
	rarg_str(&a, req->key);
	rarg_i64(&a, req->delta);
	rarg_i64(&a, req->ttl_ms);
	return submit_call(ctx, &a, req->table, increment_done, req, &resp->base, NULL);
}

static void
get_many_done(struct rcall *c)
{
	const Platform__Kv__V1__GetManyRequest *req = c->req;
	Platform__Kv__V1__GetManyResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 3 * req->n_keys);

	if (rc == PLAT_OK) {
		resp->entries = plat_alloc(c->ctx, (req->n_keys + 1) *
		    sizeof(*resp->entries));
		resp->missing = plat_alloc(c->ctx, (req->n_keys + 1) *
		    sizeof(*resp->missing));
	}
	for (size_t i = 0; rc == PLAT_OK && i < req->n_keys; i++) {
		redisReply **e = &c->reply->element[3 * i];

		if (e[1]->type != REDIS_REPLY_STRING)
			resp->missing[resp->n_missing++] = req->keys[i];
		else
			resp->entries[resp->n_entries++] = kv_entry_new(c->ctx,
			    req->table, req->keys[i], e[0]->str, e[0]->len,
			    redis_reply_i64(e[1]), redis_reply_i64(e[2]));
	}
	finish_call(c, rc);
}

static int
redis_get_many(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetManyRequest *req,
    Platform__Kv__V1__GetManyResponse *resp)
{
	struct rargs a;

	(void)b;
	rargs_init(&a, 4 + (int)req->n_keys);
	rarg_script(&a, S_GET_MANY, req->table);
	rarg_str(&a, req->table);
	for (size_t i = 0; i < req->n_keys; i++)
		rarg_str(&a, req->keys[i]);
	return submit_call(ctx, &a, req->table, get_many_done, req, &resp->base, NULL);
}

static void
put_many_done(struct rcall *c)
{
	const Platform__Kv__V1__PutManyRequest *req = c->req;
	Platform__Kv__V1__PutManyResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 2 * req->n_items);

	if (rc == PLAT_OK)
		resp->entries = plat_alloc(c->ctx, req->n_items *
		    sizeof(*resp->entries));
	for (size_t i = 0; rc == PLAT_OK && i < req->n_items; i++) {
		const Platform__Kv__V1__PutItem *it = req->items[i];

		resp->entries[resp->n_entries++] = kv_entry_new(c->ctx,
		    req->table, it->key, it->value.data, it->value.len,
		    redis_reply_i64(c->reply->element[2 * i]),
		    redis_reply_i64(c->reply->element[2 * i + 1]));
	}
	finish_call(c, rc);
}

static int
redis_put_many(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutManyRequest *req,
    Platform__Kv__V1__PutManyResponse *resp)
{
	struct rargs a;

	(void)b;
	rargs_init(&a, 4 + 3 * (int)req->n_items);
	rarg_script(&a, S_PUT_MANY, req->table);
	rarg_str(&a, req->table);
	for (size_t i = 0; i < req->n_items; i++) {
		rarg_str(&a, req->items[i]->key);
		rarg_bytes(&a, req->items[i]->value.data,
		    req->items[i]->value.len);
		rarg_i64(&a, req->items[i]->ttl_ms);
	}
	return submit_call(ctx, &a, req->table, put_many_done, req, &resp->base, NULL);
}

/* The List script's command for a page of table's keys under prefix
 * after `after`. The bounds are built here, where strings compare as
 * bytes (Lua's compare by the locale). Keys are UTF-8, where 0xff never
 * occurs: prefix + 0xff is past every key under prefix. */
void
redis_list_args(struct rargs *a, const char *table, const char *prefix,
    const char *after, size_t limit, bool keys_only)
{
	size_t n = strlen(prefix) + strlen(after) + 3;
	char *lo = xcalloc(1, n), *hi = xcalloc(1, n);

	if (after[0] != '\0' && strcmp(after, prefix) >= 0)
		snprintf(lo, n, "(%s", after);
	else if (prefix[0] != '\0')
		snprintf(lo, n, "[%s", prefix);
	else
		strcpy(lo, "-");
	if (prefix[0] != '\0')
		snprintf(hi, n, "[%s\xff", prefix);
	else
		strcpy(hi, "+");
	rarg_own(a, lo);
	rarg_own(a, hi);
	rarg_script(a, S_LIST, table);
	rarg_str(a, table);
	rarg_str(a, lo);
	rarg_str(a, hi);
	rarg_i64(a, (int64_t)limit);
	rarg_str(a, keys_only ? "1" : "0");
}

struct list_job {
	const Platform__Kv__V1__ListRequest *req;
	size_t limit;
};

static void
list_done(struct rcall *c)
{
	const struct list_job *j = c->arg;
	Platform__Kv__V1__ListResponse *resp = (void *)c->resp;
	int rc = reply_status(c, 0);
	size_t n = rc == PLAT_OK ? c->reply->elements / 4 : 0;
	bool more = n > j->limit;

	if (rc == PLAT_OK) {
		if (more)
			n = j->limit;
		resp->entries = plat_alloc(c->ctx, (n + 1) *
		    sizeof(*resp->entries));
	}
	for (size_t i = 0; i < n; i++) {
		redisReply **e = &c->reply->element[4 * i];

		resp->entries[resp->n_entries++] = kv_entry_new(c->ctx,
		    j->req->table, e[0]->str, e[1]->str, e[1]->len,
		    redis_reply_i64(e[2]), redis_reply_i64(e[3]));
	}
	if (rc == PLAT_OK)
		kv_list_set_token(c->ctx, resp, more);
	finish_call(c, rc);
}

static int
redis_list(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__ListRequest *req, const char *after,
    size_t limit, Platform__Kv__V1__ListResponse *resp, bool *more)
{
	struct list_job *j = plat_alloc(ctx, sizeof(*j));
	struct rargs a;

	(void)b;
	j->req = req;
	j->limit = limit;
	*more = false;          /* list_done makes the page token */
	rargs_init(&a, 8);
	redis_list_args(&a, req->table, req->prefix, after, limit, req->keys_only);
	return submit_call(ctx, &a, req->table, list_done, req, &resp->base, j);
}

/* ---- lifecycle ---- */

static double
gauge_pending(void *arg)
{
	(void)arg;
	return (double)redis_pipe_pending();
}

static double
gauge_batches(void *arg)
{
	(void)arg;
	return (double)redis_pipe_batches();
}

static double
gauge_errors(void *arg)
{
	(void)arg;
	return (double)redis_pipe_errors();
}

static double
gauge_reconnects(void *arg)
{
	(void)arg;
	return (double)redis_pipe_reconnects();
}

static double
gauge_redirects(void *arg)
{
	(void)arg;
	return (double)redis_pipe_redirects();
}

static void
redis_stopping(struct kv_backend *b)
{
	(void)b;
	redis_feed_stop();
}

static void
redis_free(struct kv_backend *b)
{
	redis_feed_stop();
	redis_pipe_stop();
	free(b);
}

static const struct kv_backend_ops redis_ops = {
	.get = redis_get,
	.put = redis_put,
	.del = redis_delete,
	.increment = redis_increment,
	.get_many = redis_get_many,
	.put_many = redis_put_many,
	.list = redis_list,
	.watch = redis_watch,
	.replicate = NULL,
	.stopping = redis_stopping,
	.free = redis_free,
};

struct kv_backend *
kv_redis_new(plat_server *srv, const struct kv_settings *set)
{
	struct metrics *mx = plat_server_metrics(srv);
	const char *hp = set->backend + strlen("redis://");
	const char *colon = strrchr(hp, ':');   /* checked by the settings */
	struct kv_backend *b = xcalloc(1, sizeof(*b));
	char *host = xstrndup(hp, (size_t)(colon - hp)), err[256];
	int port = atoi(colon + 1);

	b->ops = &redis_ops;
	b->name = "redis";
	if (host[0] == '[') {           /* [::1]:6379 */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	redis_scripts_init();
	/* Reachable and usable now, or kv-srv does not start. */
	if (redis_pipe_start(host, port, err, sizeof(err)) != 0 ||
	    redis_feed_start(host, port, err, sizeof(err)) != 0) {
		log_error("kv: cannot use the redis backend", "backend",
		    set->backend, "error", err);
		free(host);
		redis_free(b);
		return NULL;
	}
	free(host);
	metrics_gauge_fn(mx, "kv_redis_pending", "Calls queued for Redis or "
	    "in its pipeline.", gauge_pending, NULL);
	metrics_counter_fn(mx, "kv_redis_pipelines_total", "Pipelines sent "
	    "to Redis.", gauge_batches, NULL);
	metrics_counter_fn(mx, "kv_redis_errors_total", "Calls Redis failed "
	    "or could not be reached for.", gauge_errors, NULL);
	metrics_counter_fn(mx, "kv_redis_reconnects_total", "Connections to "
	    "Redis dropped and made again.", gauge_reconnects, NULL);
	metrics_counter_fn(mx, "kv_redis_redirects_total", "Calls a Redis "
	    "Cluster node sent to another (MOVED, ASK).", gauge_redirects,
	    NULL);
	return b;
}
