/*
 * handlers: kv-srv's gRPC methods. Each checks its request, naming the
 * field at fault, and hands it to the backend (backend.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kv.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/paging.h"
#include "platform/server.h"

#define TABLE_MAX 128
#define KEY_MAX 1024
#define TTL_MAX_MS 2592000000LL         /* 30 days */
#define MANY_MAX 1000
#define LIST_PAGE_DEFAULT 100
#define LIST_PAGE_MAX 1000
#define MAX_MEMORY_DEFAULT ((size_t)256 << 20)
#define MAX_VALUE_DEFAULT ((size_t)1 << 20)

static char *max_memory_opt, *replicas_opt, *backend_opt, *max_value_opt;

static const struct settings_option kv_options[] = {
	{ "--max-memory", "PLATFORM_MAX_MEMORY",
	  "memory for entries, bytes or with K/M/G; past it the least "
	  "recently used are evicted (default 256M)", &max_memory_opt },
	{ "--replicas", "PLATFORM_REPLICAS",
	  "kv-srv nodes that hold each key, 1..5 (default 2)",
	  &replicas_opt },
	{ "--backend", "PLATFORM_BACKEND",
	  "memory (the default: the kv-srv ring) or redis://HOST:PORT",
	  &backend_opt },
	{ "--max-value-bytes", "PLATFORM_MAX_VALUE_BYTES",
	  "largest value, 1..67108864 (default 1048576)", &max_value_opt },
};

static struct {
	struct kv_settings set;
	struct kv_backend *b;
} K;

/* ---- settings ---- */

/* A size in bytes with an optional K, M or G: 0, or -1. */
static int
parse_size(const char *s, size_t *out)
{
	unsigned long long v, mul = 1;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (end == s || errno != 0 || s[0] == '-')
		return -1;
	switch (*end) {
	case 'K': case 'k': mul = 1ULL << 10; end++; break;
	case 'M': case 'm': mul = 1ULL << 20; end++; break;
	case 'G': case 'g': mul = 1ULL << 30; end++; break;
	}
	if (*end != '\0' || v > (1ULL << 50) / mul)
		return -1;
	*out = (size_t)(v * mul);
	return 0;
}

static int
kv_check_settings(const struct plat_settings *ps, char *err, size_t errlen)
{
	struct kv_settings *s = &K.set;
	size_t n;

	(void)ps;
	s->max_memory = MAX_MEMORY_DEFAULT;
	s->max_value_bytes = MAX_VALUE_DEFAULT;
	s->replicas = 2;
	s->backend = NULL;
	if (max_memory_opt != NULL && (parse_size(max_memory_opt,
	    &s->max_memory) != 0 || s->max_memory < (1u << 16))) {
		snprintf(err, errlen, "--max-memory: a size of at least 64K "
		    "(bytes, or with K, M or G), not '%s'", max_memory_opt);
		return -1;
	}
	if (replicas_opt != NULL && (parse_size(replicas_opt, &n) != 0 ||
	    n < 1 || n > 5 || strspn(replicas_opt, "0123456789") !=
	    strlen(replicas_opt))) {
		snprintf(err, errlen, "--replicas: must be 1..5, not '%s'",
		    replicas_opt);
		return -1;
	}
	if (replicas_opt != NULL)
		s->replicas = (int)n;
	if (max_value_opt != NULL && (parse_size(max_value_opt,
	    &s->max_value_bytes) != 0 || s->max_value_bytes < 1 ||
	    s->max_value_bytes > (64u << 20))) {
		snprintf(err, errlen, "--max-value-bytes: must be "
		    "1..67108864, not '%s'", max_value_opt);
		return -1;
	}
	if (backend_opt != NULL && backend_opt[0] != '\0' &&
	    strcmp(backend_opt, "memory") != 0) {
		const char *hp = backend_opt + strlen("redis://");

		if (strncmp(backend_opt, "redis://", 8) != 0 ||
		    settings_check_address(hp) != 0) {
			snprintf(err, errlen, "--backend: memory or "
			    "redis://HOST:PORT, not '%s'", backend_opt);
			return -1;
		}
		s->backend = backend_opt;
	}
	return 0;
}

/* ---- checks ---- */

/* [A-Za-z0-9_.-], without the locale (isalnum's letters may be more). */
static bool
table_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Every call checks its table: one pass over the name (strspn with a
 * 65-byte set builds a table of its own each call, ~0.9% of a Get's
 * instructions in the bench). */
static int
check_table(plat_ctx *ctx, const char *t)
{
	size_t n;
	bool bad = false;

	for (n = 0; t[n] != '\0' && n <= TABLE_MAX; n++)
		bad |= !table_char((unsigned char)t[n]);
	if (n == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "table: required");
	if (n > TABLE_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "table: longer than %d bytes", TABLE_MAX);
	if (bad)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "table: only letters, digits, '_', '.' and '-'");
	return PLAT_OK;
}

/* The runtime has checked every string for UTF-8 and NUL bytes. */
static int
check_key(plat_ctx *ctx, const char *field, const char *k)
{
	size_t n = strlen(k);

	if (n == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (n > KEY_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "%s: longer than %d bytes", field, KEY_MAX);
	return PLAT_OK;
}

static int
check_value(plat_ctx *ctx, const char *field, size_t len)
{
	if (len > K.set.max_value_bytes)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "%s: %zu bytes, over the limit of %zu", field, len,
		    K.set.max_value_bytes);
	return PLAT_OK;
}

static int
check_ttl(plat_ctx *ctx, const char *field, int64_t ttl)
{
	if (ttl < 0 || ttl > TTL_MAX_MS)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "%s: must be 0 (none) or 1..%lld ms, not %" PRId64, field,
		    TTL_MAX_MS, ttl);
	return PLAT_OK;
}

static int
check_version(plat_ctx *ctx, int64_t v)
{
	if (v < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "expected_version: must be 0 (any) or a version, not %"
		    PRId64, v);
	return PLAT_OK;
}

static int
check_prefix(plat_ctx *ctx, const char *p)
{
	if (strlen(p) > KEY_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "prefix: longer than %d bytes", KEY_MAX);
	return PLAT_OK;
}

/* ---- entries ---- */

kv_entry_pb *
kv_entry_new(plat_ctx *ctx, const char *table, const char *key,
    const void *value, size_t vlen, int64_t version, int64_t expires_ms)
{
	kv_entry_pb *e = plat_new(ctx, kv_entry_pb,
	    &platform__kv__v1__entry__descriptor);
	uint8_t *v = plat_alloc(ctx, vlen > 0 ? vlen : 1);

	if (vlen > 0)
		memcpy(v, value, vlen);
	e->table = plat_strdup(ctx, table);
	e->key = plat_strdup(ctx, key);
	e->value.data = v;
	e->value.len = vlen;
	e->version = version;
	e->expires_unix_ms = expires_ms;
	return e;
}

void
kv_list_set_token(plat_ctx *ctx, Platform__Kv__V1__ListResponse *resp,
    bool more)
{
	if (more && resp->n_entries > 0)
		resp->next_page_token = plat_page_token(ctx, 'k',
		    resp->entries[resp->n_entries - 1]->key);
}

/* ---- GetMany and PutMany, key by key ---- */

int
kv_get_many_each(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetManyRequest *req,
    Platform__Kv__V1__GetManyResponse *resp)
{
	int rc;

	resp->entries = plat_alloc(ctx, (req->n_keys + 1) *
	    sizeof(*resp->entries));
	resp->missing = plat_alloc(ctx, (req->n_keys + 1) *
	    sizeof(*resp->missing));
	for (size_t i = 0; i < req->n_keys; i++) {
		Platform__Kv__V1__GetRequest one =
		    PLATFORM__KV__V1__GET_REQUEST__INIT;
		Platform__Kv__V1__GetResponse got =
		    PLATFORM__KV__V1__GET_RESPONSE__INIT;

		one.table = req->table;
		one.key = req->keys[i];
		rc = b->ops->get(b, ctx, &one, &got);
		if (rc == PLAT_OK && got.entry != NULL)
			resp->entries[resp->n_entries++] = got.entry;
		else if (rc == PLAT_NOT_FOUND)
			resp->missing[resp->n_missing++] = req->keys[i];
		else
			return rc;
	}
	return PLAT_OK;
}

int
kv_put_many_each(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutManyRequest *req,
    Platform__Kv__V1__PutManyResponse *resp)
{
	int rc;

	resp->entries = plat_alloc(ctx, req->n_items * sizeof(*resp->entries));
	for (size_t i = 0; i < req->n_items; i++) {
		Platform__Kv__V1__PutRequest one =
		    PLATFORM__KV__V1__PUT_REQUEST__INIT;
		Platform__Kv__V1__PutResponse put =
		    PLATFORM__KV__V1__PUT_RESPONSE__INIT;

		one.table = req->table;
		one.key = req->items[i]->key;
		one.value = req->items[i]->value;
		one.ttl_ms = req->items[i]->ttl_ms;
		if ((rc = b->ops->put(b, ctx, &one, &put)) != PLAT_OK)
			return rc;
		resp->entries[resp->n_entries++] = put.entry;
	}
	return PLAT_OK;
}

/* ---- methods ---- */

#define NEW_RESP(ctx, type, lower) \
	plat_new(ctx, Platform__Kv__V1__##type##Response, \
	    &platform__kv__v1__##lower##_response__descriptor)

static int
kv_get(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Platform__Kv__V1__GetRequest *req = (const void *)msg;
	Platform__Kv__V1__GetResponse *out;
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK ||
	    (rc = check_key(ctx, "key", req->key)) != PLAT_OK)
		return rc;
	out = NEW_RESP(ctx, Get, get);
	if ((rc = K.b->ops->get(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

static int
check_put(plat_ctx *ctx, const Platform__Kv__V1__PutRequest *req)
{
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK ||
	    (rc = check_key(ctx, "key", req->key)) != PLAT_OK ||
	    (rc = check_value(ctx, "value", req->value.len)) != PLAT_OK ||
	    (rc = check_ttl(ctx, "ttl_ms", req->ttl_ms)) != PLAT_OK ||
	    (rc = check_version(ctx, req->expected_version)) != PLAT_OK)
		return rc;
	if (req->if_absent && req->expected_version > 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "if_absent: cannot go with expected_version");
	return PLAT_OK;
}

static int
kv_put(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Platform__Kv__V1__PutRequest *req = (const void *)msg;
	Platform__Kv__V1__PutResponse *out;
	int rc;

	if ((rc = check_put(ctx, req)) != PLAT_OK)
		return rc;
	out = NEW_RESP(ctx, Put, put);
	if ((rc = K.b->ops->put(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

static int
kv_delete(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Kv__V1__DeleteRequest *req = (const void *)msg;
	Platform__Kv__V1__DeleteResponse *out;
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK ||
	    (rc = check_key(ctx, "key", req->key)) != PLAT_OK ||
	    (rc = check_version(ctx, req->expected_version)) != PLAT_OK)
		return rc;
	out = NEW_RESP(ctx, Delete, delete);
	if ((rc = K.b->ops->del(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

static int
kv_increment(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Kv__V1__IncrementRequest *req = (const void *)msg;
	Platform__Kv__V1__IncrementResponse *out;
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK ||
	    (rc = check_key(ctx, "key", req->key)) != PLAT_OK ||
	    (rc = check_ttl(ctx, "ttl_ms", req->ttl_ms)) != PLAT_OK)
		return rc;
	out = NEW_RESP(ctx, Increment, increment);
	if ((rc = K.b->ops->increment(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

static int
kv_get_many(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Kv__V1__GetManyRequest *req = (const void *)msg;
	Platform__Kv__V1__GetManyResponse *out;
	char field[32];
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK)
		return rc;
	if (req->n_keys > MANY_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "keys: at most %d", MANY_MAX);
	for (size_t i = 0; i < req->n_keys; i++) {
		snprintf(field, sizeof(field), "keys[%zu]", i);
		if ((rc = check_key(ctx, field, req->keys[i])) != PLAT_OK)
			return rc;
	}
	out = NEW_RESP(ctx, GetMany, get_many);
	if ((rc = K.b->ops->get_many(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

static int
kv_put_many(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Kv__V1__PutManyRequest *req = (const void *)msg;
	Platform__Kv__V1__PutManyResponse *out;
	char field[40];
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK)
		return rc;
	if (req->n_items == 0 || req->n_items > MANY_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "items: 1..%d", MANY_MAX);
	/* Every item is checked before any is set. */
	for (size_t i = 0; i < req->n_items; i++) {
		const Platform__Kv__V1__PutItem *it = req->items[i];

		snprintf(field, sizeof(field), "items[%zu].key", i);
		if ((rc = check_key(ctx, field, it->key)) != PLAT_OK)
			return rc;
		snprintf(field, sizeof(field), "items[%zu].value", i);
		if ((rc = check_value(ctx, field, it->value.len)) != PLAT_OK)
			return rc;
		snprintf(field, sizeof(field), "items[%zu].ttl_ms", i);
		if ((rc = check_ttl(ctx, field, it->ttl_ms)) != PLAT_OK)
			return rc;
	}
	out = NEW_RESP(ctx, PutMany, put_many);
	if ((rc = K.b->ops->put_many(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

static int
kv_list(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Platform__Kv__V1__ListRequest *req = (const void *)msg;
	Platform__Kv__V1__ListResponse *out;
	char after[KEY_MAX + 1] = "";
	bool more = false;
	int page, rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK ||
	    (rc = check_prefix(ctx, req->prefix)) != PLAT_OK ||
	    (rc = plat_page_size(ctx, req->page_size, LIST_PAGE_DEFAULT,
	    LIST_PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0' &&
	    (rc = plat_page_token_parse(ctx, req->page_token, 'k', after,
	    sizeof(after))) != PLAT_OK)
		return rc;
	out = NEW_RESP(ctx, List, list);
	if ((rc = K.b->ops->list(K.b, ctx, req, after, (size_t)page, out,
	    &more)) != PLAT_OK)
		return rc;
	kv_list_set_token(ctx, out, more);
	*resp = &out->base;
	return PLAT_OK;
}

static int
kv_watch(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	const Platform__Kv__V1__WatchRequest *req = (const void *)msg;
	int rc;

	if ((rc = check_table(ctx, req->table)) != PLAT_OK ||
	    (rc = check_prefix(ctx, req->prefix)) != PLAT_OK)
		return rc;
	return K.b->ops->watch(K.b, ctx, req, st);
}

static int
kv_replicate(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Kv__V1__ReplicateRequest *req = (const void *)msg;
	Platform__Kv__V1__ReplicateResponse *out;
	char field[48];
	int rc;

	if (K.b->ops->replicate == NULL)
		return plat_error(ctx, PLAT_FAILED_PRECONDITION,
		    "this kv-srv serves the %s backend, not a ring",
		    K.b->name);
	for (size_t i = 0; i < req->n_entries; i++) {
		const kv_entry_pb *e = req->entries[i]->entry;

		snprintf(field, sizeof(field), "entries[%zu].entry.key", i);
		if (e == NULL)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "entries[%zu].entry: required", i);
		if ((rc = check_table(ctx, e->table)) != PLAT_OK ||
		    (rc = check_key(ctx, field, e->key)) != PLAT_OK)
			return rc;
		if (e->version <= 0)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "entries[%zu].entry.version: required", i);
	}
	out = NEW_RESP(ctx, Replicate, replicate);
	if ((rc = K.b->ops->replicate(K.b, ctx, req, out)) == PLAT_OK)
		*resp = &out->base;
	return rc;
}

/* ---- lifecycle ---- */

static int
kv_init(plat_server *srv, const struct plat_settings *s)
{
	(void)s;
	K.b = K.set.backend != NULL ? kv_redis_new(srv, &K.set) :
	    kv_embedded_new(srv, &K.set);
	if (K.b == NULL)
		return -1;
	log_info("kv: serving", "backend", K.b->name);
	return 0;
}

static void
kv_stopping(plat_server *srv)
{
	(void)srv;
	if (K.b != NULL && K.b->ops->stopping != NULL)
		K.b->ops->stopping(K.b);
}

static void
kv_fini(plat_server *srv)
{
	(void)srv;
	if (K.b != NULL)
		K.b->ops->free(K.b);
	K.b = NULL;
}

#define KV_PATH "/platform.kv.v1.KV/"
#define KV_UNARY(name, type, fn, idem) \
	PLAT_UNARY(KV_PATH, name, platform__kv__v1, type, fn, idem)

static const struct plat_method kv_methods[] = {
	KV_UNARY("Get", get, kv_get, 1),
	KV_UNARY("Put", put, kv_put, 0),
	KV_UNARY("Delete", delete, kv_delete, 0),
	KV_UNARY("Increment", increment, kv_increment, 0),
	KV_UNARY("GetMany", get_many, kv_get_many, 1),
	KV_UNARY("PutMany", put_many, kv_put_many, 0),
	KV_UNARY("List", list, kv_list, 1),
	{
		.path = KV_PATH "Watch",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__kv__v1__watch_request__descriptor,
		.response = &platform__kv__v1__watch_response__descriptor,
		.stream = kv_watch,
	},
	KV_UNARY("Replicate", replicate, kv_replicate, 1),
};

const struct plat_service kv_service = {
	.name = "kv",
	.grpc_service = "platform.kv.v1.KV",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7074",
	.methods = kv_methods,
	.nmethods = PLAT_COUNT(kv_methods),
	.options = kv_options,
	.noptions = PLAT_COUNT(kv_options),
	.check_settings = kv_check_settings,
	.init = kv_init,
	.stopping = kv_stopping,
	.fini = kv_fini,
};
