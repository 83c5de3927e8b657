/*
 * backend: where kv-srv's entries live, behind one interface.
 *
 * The handlers (handlers.c) check every request, then hand it to the
 * backend chosen by --backend: the embedded one (embedded.c: memory, a
 * consistent-hash ring of kv-srv nodes) or Redis (redis.c). Each
 * operation gets the checked request and fills the response (allocated
 * in the call with plat_new / plat_alloc), returning PLAT_OK or
 * plat_error(ctx, code, ...). The meanings are the proto's
 * (proto/platform/kv/v1/kv.proto), whichever backend serves them.
 */
#ifndef KV_BACKEND_H
#define KV_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "platform/kv/v1/kv.pb-c.h"
#include "platform/server.h"

typedef Platform__Kv__V1__Entry kv_entry_pb;

struct kv_backend;

struct kv_backend_ops {
	int (*get)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__GetRequest *req,
	    Platform__Kv__V1__GetResponse *resp);
	int (*put)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__PutRequest *req,
	    Platform__Kv__V1__PutResponse *resp);
	int (*del)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__DeleteRequest *req,
	    Platform__Kv__V1__DeleteResponse *resp);
	int (*increment)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__IncrementRequest *req,
	    Platform__Kv__V1__IncrementResponse *resp);
	int (*get_many)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__GetManyRequest *req,
	    Platform__Kv__V1__GetManyResponse *resp);
	int (*put_many)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__PutManyRequest *req,
	    Platform__Kv__V1__PutManyResponse *resp);
	/* One page of live entries under req->prefix after the key `after`
	 * ("": from the start), at most limit, in key order; *more when
	 * others follow. A deferred answer sets its own page token
	 * (kv_list_set_token). */
	int (*list)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__ListRequest *req, const char *after,
	    size_t limit, Platform__Kv__V1__ListResponse *resp, bool *more);
	/* Each unary op may also plat_defer(ctx), return PLAT_DEFERRED and
	 * plat_reply(ctx, code, &resp->base) later: the response it was
	 * given stays valid until then. */
	/* What a Watch stream handler returns (PLAT_STREAM_OPEN to go on). */
	int (*watch)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__WatchRequest *req, plat_stream *st);
	/* The ring's own call; NULL where the backend has no ring. */
	int (*replicate)(struct kv_backend *b, plat_ctx *ctx,
	    const Platform__Kv__V1__ReplicateRequest *req,
	    Platform__Kv__V1__ReplicateResponse *resp);
	/* Shutdown starts: stop background work that calls other servers
	 * (the server's client closes after the drain). May be NULL. */
	void (*stopping)(struct kv_backend *b);
	/* Stops the rest; every call and stream has ended. */
	void (*free)(struct kv_backend *b);
};

struct kv_backend {
	const struct kv_backend_ops *ops;
	const char *name;               /* "memory", "redis" */
};

/* kv-srv's settings, once checked (kv.h's kv_check_settings). */
struct kv_settings {
	size_t max_memory;              /* bytes */
	size_t max_value_bytes;
	int replicas;                   /* copies of each key in the ring */
	const char *backend;            /* NULL: memory; else redis://... */
};

/* GetMany and PutMany as one get or put per key, through b's own ops
 * (checked requests), for a backend with nothing better. */
int kv_get_many_each(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetManyRequest *req,
    Platform__Kv__V1__GetManyResponse *resp);
int kv_put_many_each(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutManyRequest *req,
    Platform__Kv__V1__PutManyResponse *resp);

/* A List page's next_page_token, when more entries follow its last. */
void kv_list_set_token(plat_ctx *ctx, Platform__Kv__V1__ListResponse *resp,
    bool more);

/* An Entry in the call's memory. */
kv_entry_pb *kv_entry_new(plat_ctx *ctx, const char *table, const char *key,
    const void *value, size_t vlen, int64_t version, int64_t expires_ms);

struct kv_backend *kv_embedded_new(plat_server *srv,
    const struct kv_settings *set);
/* NULL after a log line when Redis cannot be reached or is unusable. */
struct kv_backend *kv_redis_new(plat_server *srv,
    const struct kv_settings *set);

#endif
