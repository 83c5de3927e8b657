/*
 * redis: kv-srv as a stateless gRPC front to Redis
 * (--backend redis://HOST:PORT), same proto and meanings as the
 * embedded ring.
 *
 * Layout: a table's keys share the hash tag {TABLE}, so every script
 * touches one slot (a table lives on one Redis Cluster shard; many
 * tables spread over the shards):
 *
 *   kv:{T}:v:K   hash: v (the value), ver (its version), exp (Unix ms
 *                expiry, 0: none); the key expires natively (PEXPIREAT)
 *   kv:{T}:f:K   the version floor a delete or a time to live leaves,
 *                kept FLOOR_MS past it, so a key's version only grows
 *                across a delete or an expiry
 *   kv:{T}:i     sorted set of the table's keys, for List in key order
 *
 * Every write is one Lua script (atomic: compare-and-set, if-absent and
 * the version are decided inside Redis), whose version is
 * max(Redis's TIME in microseconds, the old version + 1), and which
 * publishes the change on the channel kv:changes.
 *
 * Calls go through the shared batcher (platform/batcher.h): every call
 * queued while the previous batch ran goes to Redis as one pipeline on
 * one connection, and the batcher's answerer answers them while the next
 * pipeline is in flight.
 *
 * Watch: a subscriber connection listens to kv:changes and to the
 * keyspace events of expiry and eviction (notify-keyspace-events Exe,
 * which kv-srv sets when it may). A watch is registered before its
 * snapshot is read, and the merge (merge.h) drops anything not newer
 * than what it sent, so there is no gap and no duplicate between the
 * current state and the changes. Pub/sub delivers at most once: when the
 * subscriber connection drops, every Watch ends with UNAVAILABLE (watch
 * again: the snapshot restarts it) instead of missing a change.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "backend.h"
#include "merge.h"
#include "platform/batcher.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/settings.h"
#include "platform/xalloc.h"

#define CONNECT_MS 2000
#define BATCH_MAX_ITEMS 1024
#define BATCH_MAX_BYTES ((size_t)8 << 20)
#define BATCH_TIMEOUT_MAX_MS 5000
#define SUB_POLL_MS 200
#define SUB_RETRY_MS 500
#define SNAPSHOT_PAGE 500
#define CHANNEL "kv:changes"
#define EXPIRED_CHANNEL "__keyevent@0__:expired"
#define EVICTED_CHANNEL "__keyevent@0__:evicted"
#define EVT(x) PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_##x

/* ---- the scripts ---- */

/* What every script shares. Numbers are Lua doubles: versions
 * (microseconds) and expiries (ms) stay below 2^53, and go out as
 * strings (an integer reply would truncate nothing, but a string keeps
 * one parser in C). */
#define LUA_PRELUDE \
	"local FLOOR_MS = 60000\n" \
	"local function num(x) return string.format('%.0f', x) end\n" \
	"local function now_us()\n" \
	"  local t = redis.call('TIME')\n" \
	"  return tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
	"end\n" \
	"local function vkey(T, K) return 'kv:{' .. T .. '}:v:' .. K end\n" \
	"local function fkey(T, K) return 'kv:{' .. T .. '}:f:' .. K end\n" \
	"local function ikey(T) return 'kv:{' .. T .. '}:i' end\n" \
	/* past the live entry's version, or past the floor a delete or \
	 * an expiry (whose event carries floor + 1) left */ \
	"local function next_version(T, K, cur, now)\n" \
	"  local old = tonumber(cur)\n" \
	"  if not old then\n" \
	"    local f = tonumber(redis.call('GET', fkey(T, K)))\n" \
	"    old = f and f + 1 or 0\n" \
	"  end\n" \
	"  return math.max(now, old + 1)\n" \
	"end\n" \
	/* "TYPE VER EXP TLEN KLEN\n" T K VALUE, for every kv-srv's \
	 * watchers */ \
	"local function publish(kind, T, K, ver, exp, v)\n" \
	"  redis.call('PUBLISH', '" CHANNEL "', kind .. ' ' .. num(ver) .. " \
	"' ' .. num(exp) .. ' ' .. #T .. ' ' .. #K .. '\\n' .. T .. K .. v)\n" \
	"end\n" \
	"local function write(T, K, value, ttl, cur, now)\n" \
	"  local ver = next_version(T, K, cur, now)\n" \
	"  local exp = 0\n" \
	"  if ttl > 0 then exp = math.floor(now / 1000) + ttl end\n" \
	"  redis.call('HSET', vkey(T, K), 'v', value, 'ver', num(ver), " \
	"'exp', num(exp))\n" \
	"  if ttl > 0 then\n" \
	"    redis.call('PEXPIREAT', vkey(T, K), num(exp))\n" \
	"    redis.call('SET', fkey(T, K), num(ver), 'PX', " \
	"num(ttl + FLOOR_MS))\n" \
	"  else\n" \
	"    redis.call('PERSIST', vkey(T, K))\n" \
	"    redis.call('DEL', fkey(T, K))\n" \
	"  end\n" \
	"  redis.call('ZADD', ikey(T), 0, K)\n" \
	"  publish(1, T, K, ver, exp, value)\n" \
	"  return ver, exp\n" \
	"end\n"

/* ARGV: T K value ttl_ms expected_version if_absent(0/1) */
static const char put_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"local cur = redis.call('HGET', vkey(T, K), 'ver')\n"
	"if ARGV[6] == '1' and cur then return {'EXISTS', cur} end\n"
	"if ARGV[5] ~= '0' then\n"
	"  if not cur then return {'ABSENT'} end\n"
	"  if cur ~= ARGV[5] then return {'MISMATCH', cur} end\n"
	"end\n"
	"local ver, exp = write(T, K, ARGV[3], tonumber(ARGV[4]), cur, "
	"now_us())\n"
	"return {'OK', num(ver), num(exp)}\n";

/* ARGV: T K expected_version */
static const char delete_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"local cur = redis.call('HGET', vkey(T, K), 'ver')\n"
	"if ARGV[3] ~= '0' then\n"
	"  if not cur then return {'ABSENT'} end\n"
	"  if cur ~= ARGV[3] then return {'MISMATCH', cur} end\n"
	"end\n"
	"if not cur then return {'NONE'} end\n"
	"local ver = next_version(T, K, cur, now_us())\n"
	"redis.call('DEL', vkey(T, K))\n"
	"redis.call('SET', fkey(T, K), num(ver), 'PX', FLOOR_MS)\n"
	"redis.call('ZREM', ikey(T), K)\n"
	"publish(2, T, K, ver, 0, '')\n"
	"return {'OK', num(ver)}\n";

/* ARGV: T K delta ttl_ms. HINCRBY does the 64-bit arithmetic (a Lua
 * number would round past 2^53) and refuses a value that is not an
 * integer or a sum that overflows; an existing counter keeps its
 * expiry, as INCRBY does. */
static const char increment_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"local cur = redis.call('HMGET', vkey(T, K), 'ver', 'exp')\n"
	"local now = now_us()\n"
	"if not cur[1] then\n"
	"  local ver, exp = write(T, K, ARGV[3], tonumber(ARGV[4]), nil, "
	"now)\n"
	"  return {'OK', ARGV[3], num(ver), num(exp)}\n"
	"end\n"
	"local r = redis.pcall('HINCRBY', vkey(T, K), 'v', ARGV[3])\n"
	"if type(r) == 'table' and r.err then return {'REFUSED', r.err} end\n"
	"local v = redis.call('HGET', vkey(T, K), 'v')\n"
	"local ver = next_version(T, K, cur[1], now)\n"
	"local exp = tonumber(cur[2]) or 0\n"
	"redis.call('HSET', vkey(T, K), 'ver', num(ver))\n"
	"if exp > 0 then\n"
	"  redis.call('SET', fkey(T, K), num(ver), 'PXAT', "
	"num(exp + FLOOR_MS))\n"
	"end\n"
	"publish(1, T, K, ver, exp, v)\n"
	"return {'OK', v, num(ver), num(exp)}\n";

/* ARGV: T K1 K2 ...; per key: value, version, expiry (nil: missing). */
static const char get_many_lua[] = LUA_PRELUDE
	"local out = {}\n"
	"for i = 2, #ARGV do\n"
	"  local e = redis.call('HMGET', vkey(ARGV[1], ARGV[i]), 'v', 'ver', "
	"'exp')\n"
	"  out[#out + 1] = e[1]\n"
	"  out[#out + 1] = e[2]\n"
	"  out[#out + 1] = e[3]\n"
	"end\n"
	"return out\n";

/* ARGV: T, then K value ttl_ms per item; per item: version, expiry. */
static const char put_many_lua[] = LUA_PRELUDE
	"local T, now, out = ARGV[1], now_us(), {}\n"
	"for i = 2, #ARGV, 3 do\n"
	"  local cur = redis.call('HGET', vkey(T, ARGV[i]), 'ver')\n"
	"  local ver, exp = write(T, ARGV[i], ARGV[i + 1], "
	"tonumber(ARGV[i + 2]), cur, now)\n"
	"  out[#out + 1] = num(ver)\n"
	"  out[#out + 1] = num(exp)\n"
	"end\n"
	"return out\n";

/* ARGV: T lo hi limit keys_only(0/1), lo and hi as ZRANGEBYLEX takes
 * them; up to limit + 1 live entries in key order as key, value,
 * version, expiry. Index members whose entry expired or was evicted are
 * dropped on the way. */
static const char list_lua[] = LUA_PRELUDE
	"local T, lo, hi = ARGV[1], ARGV[2], ARGV[3]\n"
	"local limit, keys_only = tonumber(ARGV[4]), ARGV[5] == '1'\n"
	"local out, n = {}, 0\n"
	"while n <= limit do\n"
	"  local keys = redis.call('ZRANGEBYLEX', ikey(T), lo, hi, 'LIMIT', "
	"0, limit + 1 - n)\n"
	"  if #keys == 0 then break end\n"
	"  for _, k in ipairs(keys) do\n"
	"    local e = redis.call('HMGET', vkey(T, k), 'v', 'ver', 'exp')\n"
	"    if e[2] then\n"
	"      n = n + 1\n"
	"      out[#out + 1] = k\n"
	"      out[#out + 1] = keys_only and '' or e[1]\n"
	"      out[#out + 1] = e[2]\n"
	"      out[#out + 1] = e[3]\n"
	"    else\n"
	"      redis.call('ZREM', ikey(T), k)\n"
	"    end\n"
	"    lo = '(' .. k\n"
	"  end\n"
	"end\n"
	"return out\n";

/* ARGV: T K, after Redis expired or evicted kv:{T}:v:K: drops it from
 * the index and gives the version of its EXPIRED or EVICTED event (the
 * floor + 1, or now for an entry that had none); nil when the key is
 * back. */
static const char reap_lua[] = LUA_PRELUDE
	"local T, K = ARGV[1], ARGV[2]\n"
	"if redis.call('EXISTS', vkey(T, K)) == 1 then return false end\n"
	"redis.call('ZREM', ikey(T), K)\n"
	"local f = tonumber(redis.call('GET', fkey(T, K)))\n"
	"if f then return num(f + 1) end\n"
	"return num(now_us())\n";

enum script { S_PUT, S_DELETE, S_INCREMENT, S_GET_MANY, S_PUT_MANY, S_LIST,
	S_REAP, S_COUNT };

static const char *const script_text[S_COUNT] = {
	put_lua, delete_lua, increment_lua, get_many_lua, put_many_lua,
	list_lua, reap_lua,
};

/* ---- state ---- */

struct rcall;
typedef void (*rcall_done)(struct rcall *c);

/* One command in a pipeline: a gRPC call's, or the backend's own (a
 * Watch's snapshot page, a reap). */
struct rcall {
	struct batcher_call bc;
	char *cmd;                      /* formatted (redisFormatCommand) */
	int cmdlen;
	redisReply *reply;              /* when bc.code is PLAT_OK */
	rcall_done done;                /* on the answerer thread */
	plat_ctx *ctx;                  /* NULL for the backend's own */
	const void *req;
	ProtobufCMessage *resp;
	void *arg;
};

struct rwatch {
	struct rwatch *next;
	struct kv_merge merge;
	plat_stream *st;
	char *table, *prefix;
	char after[1025];               /* the snapshot's next page */
	atomic_int closed;
	atomic_int refs;
};

struct rbatch {
	struct rcall **calls;
	size_t n;
};

struct rds {
	struct kv_backend base;
	char *host;
	int port;
	char sha[S_COUNT][2 * SHA_DIGEST_LENGTH + 1];

	redisContext *c;                /* the batcher's writer's only */
	struct batcher *batcher;

	pthread_t sub_thread;
	bool sub_started;
	pthread_mutex_t mu;             /* watches, sub_ready */
	pthread_cond_t cv;
	struct rwatch *watches;
	int sub_ready;                  /* subscribed; changes flow */
	int stop;
	atomic_int stopping;

	atomic_ullong errors, reconnects, feed_drops;
};

static struct rds *R;

/* ---- connections ---- */

static redisContext *
connect_redis(char *err, size_t errlen)
{
	struct timeval tv = { CONNECT_MS / 1000, (CONNECT_MS % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(R->host, R->port, tv);

	if (c == NULL || c->err != 0) {
		snprintf(err, errlen, "redis %s:%d: %s", R->host, R->port,
		    c != NULL ? c->errstr : "out of memory");
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	(void)redisEnableKeepAlive(c);
	return c;
}

static void
set_timeout(redisContext *c, int64_t ms)
{
	struct timeval tv;

	if (ms <= 0 || ms > BATCH_TIMEOUT_MAX_MS)
		ms = BATCH_TIMEOUT_MAX_MS;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	(void)redisSetTimeout(c, tv);
}

static bool
is_error(const redisReply *r, const char *prefix)
{
	return r != NULL && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, prefix, strlen(prefix)) == 0;
}

/* Loads every script (after a connect, or when Redis forgot them). */
static int
load_scripts(redisContext *c, char *err, size_t errlen)
{
	for (int i = 0; i < S_COUNT; i++) {
		redisReply *r = redisCommand(c, "SCRIPT LOAD %s",
		    script_text[i]);

		if (r == NULL || r->type != REDIS_REPLY_STRING ||
		    strcmp(r->str, R->sha[i]) != 0) {
			snprintf(err, errlen, "redis: SCRIPT LOAD: %s",
			    r == NULL ? c->errstr : r->type ==
			    REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			if (r != NULL)
				freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	return 0;
}

static void
drop_connection(void)
{
	if (R->c != NULL)
		redisFree(R->c);
	R->c = NULL;
	atomic_fetch_add(&R->reconnects, 1);
}

/* ---- the pipeline (the batcher's callbacks) ---- */

static void *
pipe_build(void *arg, struct batcher_call *const *calls, size_t n)
{
	struct rbatch *b = xcalloc(1, sizeof(*b));

	(void)arg;
	b->calls = xcalloc(n, sizeof(*b->calls));
	for (size_t i = 0; i < n; i++)
		b->calls[b->n++] = (struct rcall *)calls[i];
	return b;
}

/* Sends the calls' commands as one pipeline and reads every reply. */
static int
pipe_round(struct rcall **calls, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		if (redisAppendFormattedCommand(R->c, calls[i]->cmd,
		    (size_t)calls[i]->cmdlen) != REDIS_OK)
			goto lost;
	for (size_t i = 0; i < n; i++) {
		void *reply;

		if (redisGetReply(R->c, &reply) != REDIS_OK)
			goto lost;
		calls[i]->reply = reply;
	}
	return 0;
lost:
	snprintf(err, errlen, "redis %s:%d: %s", R->host, R->port,
	    R->c->errstr[0] != '\0' ? R->c->errstr : "connection lost");
	drop_connection();
	return -1;
}

static enum plat_code
pipe_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct rbatch *b = batch;
	struct rcall **again;
	size_t nagain = 0;

	(void)arg;
	if (R->c == NULL) {
		if ((R->c = connect_redis(err, errlen)) == NULL)
			return PLAT_UNAVAILABLE;
		if (load_scripts(R->c, err, errlen) != 0) {
			drop_connection();
			return PLAT_UNAVAILABLE;
		}
	}
	set_timeout(R->c, timeout_ms);
	if (pipe_round(b->calls, b->n, err, errlen) != 0)
		return PLAT_UNAVAILABLE;
	/* A Redis restarted (or SCRIPT FLUSHed) since the scripts were
	 * loaded: load them again and resend what it refused. */
	again = xcalloc(b->n, sizeof(*again));
	for (size_t i = 0; i < b->n; i++)
		if (is_error(b->calls[i]->reply, "NOSCRIPT")) {
			freeReplyObject(b->calls[i]->reply);
			b->calls[i]->reply = NULL;
			again[nagain++] = b->calls[i];
		}
	if (nagain > 0 && (load_scripts(R->c, err, errlen) != 0 ||
	    pipe_round(again, nagain, err, errlen) != 0)) {
		free(again);
		return PLAT_UNAVAILABLE;
	}
	free(again);
	return PLAT_OK;
}

static void
pipe_answer(void *arg, void *batch, struct batcher_call *bc)
{
	struct rcall *c = (struct rcall *)bc;

	(void)arg;
	(void)batch;
	if (c->bc.code == PLAT_OK && c->reply == NULL) {
		c->bc.code = PLAT_UNAVAILABLE;
		snprintf(c->bc.err, sizeof(c->bc.err), "redis: no reply");
	}
	if (c->bc.code != PLAT_OK)
		atomic_fetch_add(&R->errors, 1);
	c->done(c);
}

static void
pipe_release(void *arg, void *batch)
{
	struct rbatch *b = batch;

	(void)arg;
	free(b->calls);
	free(b);
}

static const struct batcher_ops pipe_ops = {
	.build = pipe_build,
	.apply = pipe_apply,
	.answer = pipe_answer,
	.release = pipe_release,
};

/* ---- commands ---- */

/* Queues argv (argc strings, lens[i] bytes each) as c's command. */
static void
submit(struct rcall *c, int argc, const char **argv, const size_t *lens,
    int64_t deadline_ms)
{
	size_t bytes = 0;

	c->cmdlen = redisFormatCommandArgv(&c->cmd, argc, argv, lens);
	if (c->cmdlen < 0)
		abort();        /* out of memory */
	for (int i = 0; i < argc; i++)
		bytes += lens[i];
	c->bc.deadline_ms = deadline_ms;
	c->bc.items = 1;
	c->bc.bytes = bytes;
	batcher_submit(R->batcher, &c->bc);
}

/* Frees what the command and its reply hold (not c itself). */
static void
rcall_clear(struct rcall *c)
{
	if (c->reply != NULL)
		freeReplyObject(c->reply);
	c->reply = NULL;
	redisFreeCommand(c->cmd);
	c->cmd = NULL;
}

/* Arguments of a command being built. */
struct args {
	const char **v;
	size_t *len;
	int n, cap;
	char **owned;                   /* numbers, freed by args_free */
	int nowned;
};

static void
args_init(struct args *a, int cap)
{
	memset(a, 0, sizeof(*a));
	a->cap = cap;
	a->v = xcalloc((size_t)cap, sizeof(*a->v));
	a->len = xcalloc((size_t)cap, sizeof(*a->len));
	a->owned = xcalloc((size_t)cap, sizeof(*a->owned));
}

static void
args_free(struct args *a)
{
	for (int i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	free(a->owned);
	free(a->v);
	free(a->len);
}

/* Adds an argument the caller keeps alive until submit. */
static void
arg_bytes(struct args *a, const void *p, size_t n)
{
	if (a->n == a->cap)
		abort();        /* sized by the caller */
	a->v[a->n] = p;
	a->len[a->n++] = n;
}

static void
arg_str(struct args *a, const char *s)
{
	arg_bytes(a, s, strlen(s));
}

static void
arg_i64(struct args *a, int64_t v)
{
	char *s = xcalloc(1, 24);

	snprintf(s, 24, "%" PRId64, v);
	a->owned[a->nowned++] = s;
	arg_str(a, s);
}

static void
arg_script(struct args *a, enum script s)
{
	arg_str(a, "EVALSHA");
	arg_str(a, R->sha[s]);
	arg_str(a, "0");        /* keys are named in the script: one slot */
}

static int64_t
call_deadline(plat_ctx *ctx)
{
	int64_t left = plat_ctx_deadline_left_ms(ctx);

	return left == INT64_MAX ? INT64_MAX : plat_now_ms() + left;
}

/* Submits a gRPC call's command (a is freed), answered by done;
 * PLAT_DEFERRED. */
static int
submit_call(plat_ctx *ctx, struct args *a, rcall_done done, const void *req,
    ProtobufCMessage *resp, void *arg)
{
	struct rcall *c = plat_alloc(ctx, sizeof(*c));

	memset(c, 0, sizeof(*c));
	c->done = done;
	c->ctx = ctx;
	c->req = req;
	c->resp = resp;
	c->arg = arg;
	plat_defer(ctx);        /* before the answerer can answer */
	submit(c, a->n, a->v, a->len, call_deadline(ctx));
	args_free(a);
	return PLAT_DEFERRED;
}

/* ---- replies ---- */

static int64_t
reply_i64(const redisReply *r)
{
	if (r == NULL)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
	return 0;
}

static bool
reply_is(const redisReply *r, size_t i, const char *s)
{
	return r->type == REDIS_REPLY_ARRAY && r->elements > i &&
	    r->element[i]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[i]->str, s) == 0;
}

/* A Redis error reply as the call's status. */
static int
redis_status(const redisReply *r, char *msg, size_t msglen)
{
	static const char *const busy[] = { "LOADING", "BUSY", "MASTERDOWN",
	    "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK" };

	snprintf(msg, msglen, "redis: %s", r->str);
	if (is_error(r, "OOM"))
		return PLAT_RESOURCE_EXHAUSTED;
	for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
		if (is_error(r, busy[i]))
			return PLAT_UNAVAILABLE;
	return PLAT_INTERNAL;
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
		    reply_i64(c->reply->element[1]),
		    reply_i64(c->reply->element[2]));
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
	struct args a;
	const char *k;
	size_t klen;

	(void)b;
	k = value_key(ctx, req->table, req->key, &klen);
	args_init(&a, 5);
	arg_str(&a, "HMGET");
	arg_bytes(&a, k, klen);
	arg_str(&a, "v");
	arg_str(&a, "ver");
	arg_str(&a, "exp");
	return submit_call(ctx, &a, get_done, req, &resp->base, NULL);
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
		    reply_i64(c->reply->element[1]),
		    reply_i64(c->reply->element[2]));
	finish_call(c, rc);
}

static int
redis_put(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutRequest *req,
    Platform__Kv__V1__PutResponse *resp)
{
	struct args a;

	(void)b;
	args_init(&a, 9);
	arg_script(&a, S_PUT);
	arg_str(&a, req->table);
	arg_str(&a, req->key);
	arg_bytes(&a, req->value.data, req->value.len);
	arg_i64(&a, req->ttl_ms);
	arg_i64(&a, req->expected_version);
	arg_str(&a, req->if_absent ? "1" : "0");
	return submit_call(ctx, &a, put_done, req, &resp->base, NULL);
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
		resp->version = reply_i64(c->reply->element[1]);
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
	struct args a;

	(void)b;
	args_init(&a, 6);
	arg_script(&a, S_DELETE);
	arg_str(&a, req->table);
	arg_str(&a, req->key);
	arg_i64(&a, req->expected_version);
	return submit_call(ctx, &a, delete_done, req, &resp->base, NULL);
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
		resp->value = reply_i64(r->element[1]);
		resp->entry = kv_entry_new(c->ctx, req->table, req->key,
		    r->element[1]->str, r->element[1]->len,
		    reply_i64(r->element[2]), reply_i64(r->element[3]));
	}
	finish_call(c, rc);
}

static int
redis_increment(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__IncrementRequest *req,
    Platform__Kv__V1__IncrementResponse *resp)
{
	struct args a;

	(void)b;
	args_init(&a, 7);
	arg_script(&a, S_INCREMENT);
	arg_str(&a, req->table);
	arg_str(&a, req->key);
	arg_i64(&a, req->delta);
	arg_i64(&a, req->ttl_ms);
	return submit_call(ctx, &a, increment_done, req, &resp->base, NULL);
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
			    reply_i64(e[1]), reply_i64(e[2]));
	}
	finish_call(c, rc);
}

static int
redis_get_many(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__GetManyRequest *req,
    Platform__Kv__V1__GetManyResponse *resp)
{
	struct args a;

	(void)b;
	args_init(&a, 4 + (int)req->n_keys);
	arg_script(&a, S_GET_MANY);
	arg_str(&a, req->table);
	for (size_t i = 0; i < req->n_keys; i++)
		arg_str(&a, req->keys[i]);
	return submit_call(ctx, &a, get_many_done, req, &resp->base, NULL);
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
		    reply_i64(c->reply->element[2 * i]),
		    reply_i64(c->reply->element[2 * i + 1]));
	}
	finish_call(c, rc);
}

static int
redis_put_many(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__PutManyRequest *req,
    Platform__Kv__V1__PutManyResponse *resp)
{
	struct args a;

	(void)b;
	args_init(&a, 4 + 3 * (int)req->n_items);
	arg_script(&a, S_PUT_MANY);
	arg_str(&a, req->table);
	for (size_t i = 0; i < req->n_items; i++) {
		arg_str(&a, req->items[i]->key);
		arg_bytes(&a, req->items[i]->value.data,
		    req->items[i]->value.len);
		arg_i64(&a, req->items[i]->ttl_ms);
	}
	return submit_call(ctx, &a, put_many_done, req, &resp->base, NULL);
}

/* The List script's command for a page of table's keys under prefix
 * after `after`. The bounds are built here, where strings compare as
 * bytes (Lua's compare by the locale). Keys are UTF-8, where 0xff never
 * occurs: prefix + 0xff is past every key under prefix. */
static void
list_args(struct args *a, const char *table, const char *prefix,
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
	a->owned[a->nowned++] = lo;
	a->owned[a->nowned++] = hi;
	arg_script(a, S_LIST);
	arg_str(a, table);
	arg_str(a, lo);
	arg_str(a, hi);
	arg_i64(a, (int64_t)limit);
	arg_str(a, keys_only ? "1" : "0");
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
		    reply_i64(e[2]), reply_i64(e[3]));
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
	struct args a;

	(void)b;
	j->req = req;
	j->limit = limit;
	*more = false;          /* list_done makes the page token */
	args_init(&a, 8);
	list_args(&a, req->table, req->prefix, after, limit, req->keys_only);
	return submit_call(ctx, &a, list_done, req, &resp->base, j);
}

/* ---- Watch ---- */

static void
rwatch_unref(struct rwatch *w)
{
	if (atomic_fetch_sub(&w->refs, 1) != 1)
		return;
	kv_merge_fini(&w->merge);
	free(w->table);
	free(w->prefix);
	free(w);
}

static bool
watches(const struct rwatch *w, const char *table, const char *key)
{
	return strcmp(w->table, table) == 0 &&
	    strncmp(key, w->prefix, strlen(w->prefix)) == 0;
}

/* Gives a change to every watch of its key. */
static void
deliver(int type, const kv_entry_pb *e)
{
	pthread_mutex_lock(&R->mu);
	for (struct rwatch *w = R->watches; w != NULL; w = w->next)
		if (!atomic_load(&w->closed) && watches(w, e->table, e->key))
			kv_merge_deliver(&w->merge, type, e);
	pthread_mutex_unlock(&R->mu);
}

static bool
anyone_watches(const char *table, const char *key)
{
	bool yes = false;

	pthread_mutex_lock(&R->mu);
	for (struct rwatch *w = R->watches; w != NULL && !yes; w = w->next)
		yes = watches(w, table, key);
	pthread_mutex_unlock(&R->mu);
	return yes;
}

static void snapshot_next(struct rwatch *w);

/* One page of a watch's current state, as PUT events. */
static void
snapshot_done(struct rcall *c)
{
	struct rwatch *w = c->arg;
	size_t n = 0;
	bool more;

	if (c->bc.code != PLAT_OK || c->reply->type != REDIS_REPLY_ARRAY) {
		char msg[BATCHER_ERR_MAX + 16];
		int code = c->bc.code != PLAT_OK ? (int)c->bc.code :
		    redis_status(c->reply, msg, sizeof(msg));

		plat_stream_finish(w->st, code, c->bc.code != PLAT_OK ?
		    c->bc.err : msg);
		goto out;
	}
	n = c->reply->elements / 4;
	more = n > SNAPSHOT_PAGE;
	for (size_t i = 0; i < n && i < SNAPSHOT_PAGE; i++) {
		redisReply **e = &c->reply->element[4 * i];
		kv_entry_pb ent = PLATFORM__KV__V1__ENTRY__INIT;

		ent.table = w->table;
		ent.key = e[0]->str;
		ent.value.data = (uint8_t *)e[1]->str;
		ent.value.len = e[1]->len;
		ent.version = reply_i64(e[2]);
		ent.expires_unix_ms = reply_i64(e[3]);
		kv_merge_deliver(&w->merge, EVT(PUT), &ent);
		if (i + 1 == SNAPSHOT_PAGE)
			snprintf(w->after, sizeof(w->after), "%s", e[0]->str);
	}
	if (!more)
		kv_merge_deliver(&w->merge, EVT(SYNCED), NULL);
	else if (!atomic_load(&w->closed) && !atomic_load(&R->stopping)) {
		rcall_clear(c);
		free(c);
		snapshot_next(w);
		return;
	}
out:
	rcall_clear(c);
	free(c);
	rwatch_unref(w);
}

/* Reads the page after w->after (the watch's reference goes with it). */
static void
snapshot_next(struct rwatch *w)
{
	struct rcall *c = xcalloc(1, sizeof(*c));
	struct args a;

	c->done = snapshot_done;
	c->arg = w;
	args_init(&a, 8);
	list_args(&a, w->table, w->prefix, w->after, SNAPSHOT_PAGE, false);
	submit(c, a.n, a.v, a.len, INT64_MAX);
	args_free(&a);
}

static void
rwatch_closed(plat_stream *st, void *arg)
{
	struct rwatch *w = arg, **p;

	(void)st;
	atomic_store(&w->closed, 1);
	pthread_mutex_lock(&R->mu);
	for (p = &R->watches; *p != NULL; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	pthread_mutex_unlock(&R->mu);
	rwatch_unref(w);
}

static int
redis_watch(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__WatchRequest *req, plat_stream *st)
{
	struct rwatch *w;

	(void)b;
	pthread_mutex_lock(&R->mu);
	if (!R->sub_ready) {
		pthread_mutex_unlock(&R->mu);
		return plat_error(ctx, PLAT_UNAVAILABLE, "redis %s:%d: the "
		    "change feed is not connected; watch again", R->host,
		    R->port);
	}
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->table = xstrdup(req->table);
	w->prefix = xstrdup(req->prefix);
	kv_merge_init(&w->merge, st, 1);        /* the snapshot syncs */
	atomic_init(&w->refs, 2);               /* the list's, the snapshot's */
	/* Registered before the snapshot is read: a change after the read
	 * comes as an event, one before it is in the read. */
	w->next = R->watches;
	R->watches = w;
	pthread_mutex_unlock(&R->mu);
	plat_stream_on_close(st, rwatch_closed, w);
	snapshot_next(w);
	return PLAT_STREAM_OPEN;
}

/* ---- the change feed (the subscriber thread) ---- */

/* "TYPE VER EXP TLEN KLEN\n" T K VALUE from a script's publish. */
static void
on_change(const char *msg, size_t len)
{
	kv_entry_pb e = PLATFORM__KV__V1__ENTRY__INIT;
	int type, head = 0;
	size_t tlen, klen;
	char *table, *key;

	if (sscanf(msg, "%d %" SCNd64 " %" SCNd64 " %zu %zu\n%n", &type,
	    &e.version, &e.expires_unix_ms, &tlen, &klen, &head) != 5 ||
	    head == 0 || tlen > len - (size_t)head ||
	    klen > len - (size_t)head - tlen ||
	    (type != EVT(PUT) && type != EVT(DELETE))) {
		atomic_fetch_add(&R->feed_drops, 1);
		return;
	}
	table = xstrndup(msg + head, tlen);
	key = xstrndup(msg + head + tlen, klen);
	e.table = table;
	e.key = key;
	e.value.data = (uint8_t *)msg + head + tlen + klen;
	e.value.len = len - (size_t)head - tlen - klen;
	deliver(type, &e);
	free(table);
	free(key);
}

struct reap {
	int type;                       /* EXPIRED or EVICTED */
	char *table, *key;
};

static void
reap_done(struct rcall *c)
{
	struct reap *r = c->arg;

	if (c->bc.code == PLAT_OK && c->reply->type == REDIS_REPLY_STRING) {
		kv_entry_pb e = PLATFORM__KV__V1__ENTRY__INIT;

		e.table = r->table;
		e.key = r->key;
		e.version = reply_i64(c->reply);
		deliver(r->type, &e);
	}
	rcall_clear(c);
	free(c);
	free(r->table);
	free(r->key);
	free(r);
}

/* Redis expired or evicted `name`; for kv:{T}:v:K, its event. */
static void
on_gone(int type, const char *name, size_t len)
{
	const char *close, *key;
	struct reap *r;
	struct rcall *c;
	struct args a;

	if (len < 8 || strncmp(name, "kv:{", 4) != 0 ||
	    (close = memchr(name + 4, '}', len - 4)) == NULL ||
	    (size_t)(close - name) + 4 > len ||
	    strncmp(close, "}:v:", 4) != 0)
		return;
	key = close + 4;
	r = xcalloc(1, sizeof(*r));
	r->type = type;
	r->table = xstrndup(name + 4, (size_t)(close - name) - 4);
	r->key = xstrndup(key, len - (size_t)(key - name));
	if (!anyone_watches(r->table, r->key)) {
		free(r->table);
		free(r->key);
		free(r);
		return;         /* List drops it from the index in passing */
	}
	c = xcalloc(1, sizeof(*c));
	c->done = reap_done;
	c->arg = r;
	args_init(&a, 5);
	arg_script(&a, S_REAP);
	arg_str(&a, r->table);
	arg_str(&a, r->key);
	submit(c, a.n, a.v, a.len, INT64_MAX);
	args_free(&a);
}

static void
on_message(const redisReply *m)
{
	const redisReply *ch, *body;

	if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
	    m->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(m->element[0]->str, "message") != 0)
		return;         /* subscribe confirmations */
	ch = m->element[1];
	body = m->element[2];
	if (ch->type != REDIS_REPLY_STRING || body->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(ch->str, CHANNEL) == 0)
		on_change(body->str, body->len);
	else if (strcmp(ch->str, EXPIRED_CHANNEL) == 0)
		on_gone(EVT(EXPIRED), body->str, body->len);
	else if (strcmp(ch->str, EVICTED_CHANNEL) == 0)
		on_gone(EVT(EVICTED), body->str, body->len);
}

/* Asks Redis for the keyspace events of expiry and eviction, keeping
 * whatever else it was told to send. A Redis that forbids CONFIG (a
 * managed one) still serves; its watchers only miss those events. */
static void
ask_keyspace_events(redisContext *c)
{
	redisReply *r = redisCommand(c, "CONFIG GET notify-keyspace-events");
	char flags[64] = "";

	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_STRING)
		snprintf(flags, sizeof(flags), "%s", r->element[1]->str);
	if (r != NULL)
		freeReplyObject(r);
	if (strchr(flags, 'A') != NULL)         /* every class, x and e too */
		strcpy(flags, "A");
	for (const char *f = "Exe"; *f != '\0'; f++) {
		size_t n = strlen(flags);

		if (strchr(flags, *f) == NULL && n + 1 < sizeof(flags)) {
			flags[n] = *f;
			flags[n + 1] = '\0';
		}
	}
	r = redisCommand(c, "CONFIG SET notify-keyspace-events %s", flags);
	if (r == NULL || r->type == REDIS_REPLY_ERROR)
		log_warn("kv: redis refused notify-keyspace-events; Watch "
		    "streams will not see entries expire or be evicted",
		    "error", r != NULL ? r->str : c->errstr);
	if (r != NULL)
		freeReplyObject(r);
}

static redisContext *
subscribe(char *err, size_t errlen)
{
	redisContext *c = connect_redis(err, errlen);
	redisReply *r;

	if (c == NULL)
		return NULL;
	ask_keyspace_events(c);
	r = redisCommand(c, "SUBSCRIBE %s %s %s", CHANNEL, EXPIRED_CHANNEL,
	    EVICTED_CHANNEL);
	/* The first confirmation is the reply; the other two follow. */
	for (int i = 0; r != NULL && i < 2; i++) {
		freeReplyObject(r);
		if (redisGetReply(c, (void **)&r) != REDIS_OK)
			r = NULL;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "redis: SUBSCRIBE: %s", r == NULL ?
		    c->errstr : r->type == REDIS_REPLY_ERROR ? r->str :
		    "unexpected reply");
		if (r != NULL)
			freeReplyObject(r);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	return c;
}

/* Every watch ends: changes may have been missed. */
static void
end_watches(const char *why)
{
	pthread_mutex_lock(&R->mu);
	R->sub_ready = 0;
	for (struct rwatch *w = R->watches; w != NULL; w = w->next)
		plat_stream_finish(w->st, PLAT_UNAVAILABLE, why);
	pthread_mutex_unlock(&R->mu);
}

/* Reads the feed until it fails or kv-srv stops. */
static void
follow_feed(redisContext *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

	while (!atomic_load(&R->stopping)) {
		void *reply;
		int rc = poll(&pfd, 1, SUB_POLL_MS);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return;
		if (rc == 0)
			continue;
		if (redisBufferRead(c) != REDIS_OK)
			return;
		for (;;) {
			if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
				return;
			if (reply == NULL)
				break;
			on_message(reply);
			freeReplyObject(reply);
		}
	}
}

static void *
sub_main(void *arg)
{
	redisContext *c = arg;          /* subscribed by kv_redis_new */
	char err[256];
	bool warned = false;

	while (!atomic_load(&R->stopping)) {
		if (c == NULL && (c = subscribe(err, sizeof(err))) == NULL) {
			if (!warned)
				log_warn("kv: the redis change feed is down; "
				    "Watch answers UNAVAILABLE", "error", err);
			warned = true;
			pthread_mutex_lock(&R->mu);
			(void)plat_cond_wait_ms(&R->cv, &R->mu, SUB_RETRY_MS,
			    &R->stop);
			pthread_mutex_unlock(&R->mu);
			continue;
		}
		if (warned)
			log_info("kv: the redis change feed is back");
		warned = false;
		pthread_mutex_lock(&R->mu);
		R->sub_ready = 1;
		pthread_mutex_unlock(&R->mu);
		follow_feed(c);
		if (!atomic_load(&R->stopping)) {
			log_warn("kv: the redis change feed was cut; every "
			    "Watch ends with UNAVAILABLE", "error",
			    c->errstr[0] != '\0' ? c->errstr : "closed");
			end_watches("kv-srv lost the redis change feed, so "
			    "changes may be missing: watch again");
		}
		redisFree(c);
		c = NULL;
	}
	if (c != NULL)
		redisFree(c);
	return NULL;
}

/* ---- lifecycle ---- */

static double
gauge_pending(void *arg)
{
	(void)arg;
	return (double)batcher_pending(R->batcher);
}

static double
gauge_batches(void *arg)
{
	(void)arg;
	return (double)batcher_batches(R->batcher);
}

static double
gauge_errors(void *arg)
{
	(void)arg;
	return (double)atomic_load(&R->errors);
}

static double
gauge_reconnects(void *arg)
{
	(void)arg;
	return (double)atomic_load(&R->reconnects);
}

static void
redis_stopping(struct kv_backend *b)
{
	(void)b;
	atomic_store(&R->stopping, 1);
	pthread_mutex_lock(&R->mu);
	R->stop = 1;
	pthread_cond_broadcast(&R->cv);
	pthread_mutex_unlock(&R->mu);
	if (R->sub_started)
		pthread_join(R->sub_thread, NULL);
	R->sub_started = false;
}

static void
redis_free(struct kv_backend *b)
{
	redis_stopping(b);
	batcher_free(R->batcher);
	if (R->c != NULL)
		redisFree(R->c);
	pthread_cond_destroy(&R->cv);
	pthread_mutex_destroy(&R->mu);
	free(R->host);
	free(R);
	R = NULL;
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
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};
	struct metrics *mx = plat_server_metrics(srv);
	const char *hp = set->backend + strlen("redis://");
	const char *colon = strrchr(hp, ':');
	redisContext *sub;
	char err[256];

	R = xcalloc(1, sizeof(*R));
	R->base.ops = &redis_ops;
	R->base.name = "redis";
	R->host = xstrndup(hp, (size_t)(colon - hp));   /* checked */
	R->port = atoi(colon + 1);
	if (R->host[0] == '[') {        /* [::1]:6379 */
		memmove(R->host, R->host + 1, strlen(R->host));
		R->host[strlen(R->host) - 1] = '\0';
	}
	pthread_mutex_init(&R->mu, NULL);
	plat_cond_init(&R->cv);
	for (int i = 0; i < S_COUNT; i++) {
		unsigned char d[SHA_DIGEST_LENGTH];

		SHA1((const unsigned char *)script_text[i],
		    strlen(script_text[i]), d);
		for (int j = 0; j < SHA_DIGEST_LENGTH; j++)
			snprintf(R->sha[i] + 2 * j, 3, "%02x", d[j]);
	}
	/* Reachable and usable now, or kv-srv does not start. */
	if ((R->c = connect_redis(err, sizeof(err))) == NULL ||
	    load_scripts(R->c, err, sizeof(err)) != 0 ||
	    (sub = subscribe(err, sizeof(err))) == NULL) {
		log_error("kv: cannot use the redis backend", "backend",
		    set->backend, "error", err);
		redis_free(&R->base);
		return NULL;
	}
	R->sub_ready = 1;
	if ((R->batcher = batcher_new("kv-redis", &pipe_ops, NULL,
	    &limits)) == NULL ||
	    pthread_create(&R->sub_thread, NULL, sub_main, sub) != 0) {
		log_error("kv: cannot start its threads");
		redisFree(sub);
		redis_free(&R->base);
		return NULL;
	}
	R->sub_started = true;
	metrics_gauge_fn(mx, "kv_redis_pending", "Calls queued for Redis or "
	    "in its pipeline.", gauge_pending, NULL);
	metrics_counter_fn(mx, "kv_redis_pipelines_total", "Pipelines sent "
	    "to Redis.", gauge_batches, NULL);
	metrics_counter_fn(mx, "kv_redis_errors_total", "Calls Redis failed "
	    "or could not be reached for.", gauge_errors, NULL);
	metrics_counter_fn(mx, "kv_redis_reconnects_total", "Connections to "
	    "Redis dropped and made again.", gauge_reconnects, NULL);
	return &R->base;
}
