/*
 * redis.h: the pieces of kv-srv's Redis backend (--backend
 * redis://HOST:PORT), a stateless gRPC front to Redis or Redis Cluster
 * with the proto's meanings.
 *
 *   redis.c       the backend's ops: each call is one command
 *   redis_lua.c   the scripts that make writes atomic inside Redis
 *   redis_pipe.c  the connections (one per Cluster master) and the
 *                 pipeline every command goes through
 *   redis_feed.c  Watch: the change channel and keyspace events
 *
 * Layout: a table's keys share the hash tag {TABLE}, so every command
 * touches one slot (a table lives on one Cluster shard; tables spread
 * over the shards):
 *
 *   kv:{T}:v:K   hash: v (the value), ver (its version), exp (Unix ms
 *                expiry, 0: none); the key expires natively (PEXPIREAT)
 *   kv:{T}:f:K   the version floor a delete or a time to live leaves,
 *                kept a minute past it, so a key's version only grows
 *                across a delete or an expiry
 *   kv:{T}:i     sorted set of the table's keys, for List in key order
 *
 * A write's version is max(Redis's TIME in microseconds, the old
 * version + 1), decided in its script, which also publishes the change
 * on KV_CHANNEL.
 */
#ifndef KV_REDIS_H
#define KV_REDIS_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "backend.h"
#include "platform/batcher.h"

#define KV_CHANNEL "kv:changes"
#define KV_KEY_MAX 1024

/* ---- scripts (redis_lua.c) ---- */

enum redis_script { S_PUT, S_DELETE, S_INCREMENT, S_GET_MANY, S_PUT_MANY,
	S_LIST, S_REAP, S_COUNT };

#define REDIS_SHA_LEN 41
extern const char *const redis_script_text[S_COUNT];
extern char redis_script_sha[S_COUNT][REDIS_SHA_LEN];
void redis_scripts_init(void);

/* ---- commands and the pipeline (redis_pipe.c) ---- */

struct rcall;
typedef void (*rcall_done)(struct rcall *c);

/* One command: a gRPC call's, or the backend's own (a Watch's snapshot
 * page, a reap). */
struct rcall {
	struct batcher_call bc;
	char *cmd;                      /* formatted (redisFormatCommand) */
	int cmdlen;
	int slot;                       /* its table's Cluster slot */
	redisReply *reply;              /* when bc.code is PLAT_OK */
	rcall_done done;                /* on the answerer thread */
	plat_ctx *ctx;                  /* NULL for the backend's own */
	const void *req;
	ProtobufCMessage *resp;
	void *arg;
	/* The pipeline's. */
	size_t node;
	bool asking, sent;
};

/* A command's arguments as it is built. */
struct rargs {
	const char **v;
	size_t *len;
	int n, cap;
	char **owned;                   /* made here, freed with it */
	int nowned, ownedcap;
};

/* cap: the arguments expected (more may be added). */
void rargs_init(struct rargs *a, int cap);
/* An argument the caller keeps alive until redis_submit. */
void rarg_bytes(struct rargs *a, const void *p, size_t n);
void rarg_str(struct rargs *a, const char *s);
void rarg_i64(struct rargs *a, int64_t v);
/* A string the arguments keep (malloc'd; freed by redis_submit). */
void rarg_own(struct rargs *a, char *s);
/* EVALSHA of script with table's index as its one key. */
void rarg_script(struct rargs *a, enum redis_script s, const char *table);

/* Queues c's command (a, then freed) about table; c->done answers it.
 * From any thread while the pipeline runs. */
void redis_submit(struct rcall *c, struct rargs *a, const char *table,
    int64_t deadline_ms);
/* Frees c's command and reply (not c). */
void rcall_clear(struct rcall *c);

/* Connects to seed and every Cluster master now (kv-srv does not start
 * without Redis), then runs the pipeline. -1 with err. */
int redis_pipe_start(const char *host, int port, char *err, size_t errlen);
void redis_pipe_stop(void);
int64_t redis_pipe_pending(void);
uint64_t redis_pipe_batches(void);
uint64_t redis_pipe_errors(void);
uint64_t redis_pipe_reconnects(void);
uint64_t redis_pipe_redirects(void);

/* ---- shared by the pieces ---- */

struct redis_addr {
	char *host;
	int port;
};

redisContext *redis_connect(const char *host, int port, char *err,
    size_t errlen);
/* The masters of the Cluster c (at host:port) is part of, or host:port
 * alone for a Redis that is not a Cluster. */
int redis_masters(redisContext *c, const char *host, int port,
    struct redis_addr **out, size_t *n, char *err, size_t errlen);
void redis_addrs_free(struct redis_addr *a, size_t n);
bool redis_is_error(const redisReply *r, const char *prefix);
/* A Redis error reply as a status, with its message. */
int redis_status(const redisReply *r, char *msg, size_t msglen);
int64_t redis_reply_i64(const redisReply *r);

/* The List script's command for table's keys under prefix after
 * `after`, at most limit + 1 (redis.c). */
void redis_list_args(struct rargs *a, const char *table, const char *prefix,
    const char *after, size_t limit, bool keys_only);

/* ---- Watch (redis_feed.c) ---- */

int redis_feed_start(const char *host, int port, char *err, size_t errlen);
/* Stops following (every Watch still open ends with the server). */
void redis_feed_stop(void);
int redis_watch(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__WatchRequest *req, plat_stream *st);
uint64_t redis_feed_drops(void);

#endif
