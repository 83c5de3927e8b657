/*
 * redis_pipe: every command of the Redis backend goes through one
 * pipeline (redis.h).
 *
 * The shared batcher (platform/batcher.h) takes every call queued while
 * the previous pipeline ran; its writer sends them to Redis in one go and
 * reads every reply, and its answerer answers them while the next
 * pipeline is in flight. One connection per node: Redis runs a node's
 * commands one at a time anyway.
 *
 * Redis Cluster: the writer keeps the map of slots to masters (CLUSTER
 * SLOTS) and a connection to each, sends each command to its table's
 * slot's master, follows MOVED (the map is read again) and ASK (ASKING,
 * then the command, on the node named), and reloads the scripts where a
 * node answers NOSCRIPT (a restart, a failover). A node that fails fails
 * only its own commands, with UNAVAILABLE.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/log.h"
#include "platform/xalloc.h"
#include "redis.h"

#define CONNECT_MS 2000
#define BATCH_MAX_ITEMS 1024
#define BATCH_MAX_BYTES ((size_t)8 << 20)
#define BATCH_TIMEOUT_MAX_MS 5000
#define SLOTS 16384
#define ROUNDS 4                /* a command may be redirected thrice */

struct pnode {
	struct redis_addr addr;
	redisContext *c;
	bool failed;                    /* in this round */
};

struct rbatch {
	struct rcall **calls;
	size_t n;
};

/* The writer thread's alone, but for the counters. */
static struct {
	struct redis_addr seed;
	struct pnode *nodes;
	size_t n;
	uint16_t owner[SLOTS];          /* index into nodes */
	bool stale;                     /* read the slot map again */
	struct batcher *batcher;
	atomic_ullong errors, reconnects, redirects;
} P;

/* ---- shared helpers ---- */

redisContext *
redis_connect(const char *host, int port, char *err, size_t errlen)
{
	struct timeval tv = { CONNECT_MS / 1000, (CONNECT_MS % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(host, port, tv);

	if (c == NULL || c->err != 0) {
		snprintf(err, errlen, "redis %s:%d: %s", host, port,
		    c != NULL ? c->errstr : "out of memory");
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	(void)redisEnableKeepAlive(c);
	return c;
}

bool
redis_is_error(const redisReply *r, const char *prefix)
{
	return r != NULL && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, prefix, strlen(prefix)) == 0;
}

int
redis_status(const redisReply *r, char *msg, size_t msglen)
{
	static const char *const busy[] = { "LOADING", "BUSY", "MASTERDOWN",
	    "READONLY", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK" };

	snprintf(msg, msglen, "redis: %s", r->str);
	if (redis_is_error(r, "OOM"))
		return PLAT_RESOURCE_EXHAUSTED;
	for (size_t i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
		if (redis_is_error(r, busy[i]))
			return PLAT_UNAVAILABLE;
	return PLAT_INTERNAL;
}

int64_t
redis_reply_i64(const redisReply *r)
{
	if (r == NULL)
		return 0;
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return strtoll(r->str, NULL, 10);
	return 0;
}

void
redis_addrs_free(struct redis_addr *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(a[i].host);
	free(a);
}

static bool
same_addr(const struct redis_addr *a, const char *host, int port)
{
	return a->port == port && strcmp(a->host, host) == 0;
}

/* Adds host:port to a list of n unless it is there; its index. */
static size_t
addr_add(struct redis_addr **a, size_t *n, const char *host, int port)
{
	for (size_t i = 0; i < *n; i++)
		if (same_addr(&(*a)[i], host, port))
			return i;
	*a = xrealloc(*a, (*n + 1) * sizeof(**a));
	(*a)[*n].host = xstrdup(host);
	(*a)[*n].port = port;
	return (*n)++;
}

/* CLUSTER SLOTS as the master of each slot (owner may be NULL), or a
 * Redis that is not a Cluster: host:port owns every slot. */
static int
read_slots(redisContext *c, const char *host, int port,
    struct redis_addr **out, size_t *n, uint16_t *owner, char *err,
    size_t errlen)
{
	redisReply *r = redisCommand(c, "CLUSTER SLOTS");

	*out = NULL;
	*n = 0;
	if (r == NULL) {
		snprintf(err, errlen, "redis %s:%d: %s", host, port,
		    c->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {     /* cluster support disabled */
		addr_add(out, n, host, port);
		if (owner != NULL)
			memset(owner, 0, SLOTS * sizeof(*owner));
		freeReplyObject(r);
		return 0;
	}
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements;
	    i++) {
		const redisReply *e = r->element[i], *m;
		size_t idx;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    (m = e->element[2])->type != REDIS_REPLY_ARRAY ||
		    m->elements < 2 || m->element[0]->type !=
		    REDIS_REPLY_STRING)
			continue;
		/* An empty host is "the one you asked". */
		idx = addr_add(out, n, m->element[0]->str[0] != '\0' ?
		    m->element[0]->str : host,
		    (int)redis_reply_i64(m->element[1]));
		for (int64_t s = redis_reply_i64(e->element[0]);
		    owner != NULL && s <= redis_reply_i64(e->element[1]) &&
		    s < SLOTS; s++)
			if (s >= 0)
				owner[s] = (uint16_t)idx;
	}
	freeReplyObject(r);
	if (*n == 0) {
		snprintf(err, errlen, "redis %s:%d: CLUSTER SLOTS names no "
		    "master", host, port);
		return -1;
	}
	return 0;
}

int
redis_masters(redisContext *c, const char *host, int port,
    struct redis_addr **out, size_t *n, char *err, size_t errlen)
{
	return read_slots(c, host, port, out, n, NULL, err, errlen);
}

/* ---- nodes ---- */

static void
node_drop(struct pnode *nd)
{
	if (nd->c != NULL) {
		redisFree(nd->c);
		atomic_fetch_add(&P.reconnects, 1);
	}
	nd->c = NULL;
}

/* Loads every script on a node (new, restarted, or failed over). */
static int
load_scripts(redisContext *c, char *err, size_t errlen)
{
	for (int i = 0; i < S_COUNT; i++) {
		redisReply *r = redisCommand(c, "SCRIPT LOAD %s",
		    redis_script_text[i]);

		if (r == NULL || r->type != REDIS_REPLY_STRING ||
		    strcmp(r->str, redis_script_sha[i]) != 0) {
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

/* The node's connection, made (with the scripts) when it has none. */
static redisContext *
node_conn(struct pnode *nd, char *err, size_t errlen)
{
	if (nd->c == NULL && (nd->c = redis_connect(nd->addr.host,
	    nd->addr.port, err, errlen)) != NULL &&
	    load_scripts(nd->c, err, errlen) != 0)
		node_drop(nd);
	return nd->c;
}

static size_t
node_of(const char *host, int port)
{
	for (size_t i = 0; i < P.n; i++)
		if (same_addr(&P.nodes[i].addr, host, port))
			return i;
	P.nodes = xrealloc(P.nodes, (P.n + 1) * sizeof(*P.nodes));
	memset(&P.nodes[P.n], 0, sizeof(P.nodes[P.n]));
	P.nodes[P.n].addr.host = xstrdup(host);
	P.nodes[P.n].addr.port = port;
	return P.n++;
}

/* Reads the slot map again from the seed or any node that answers,
 * keeping the connections of nodes that stay. */
static int
refresh_slots(char *err, size_t errlen)
{
	struct redis_addr *masters = NULL;
	uint16_t *owner = xcalloc(SLOTS, sizeof(*owner));
	size_t nm = 0;
	int rc = -1;

	for (size_t i = 0; i <= P.n && rc != 0; i++) {
		const struct redis_addr *a = i < P.n ? &P.nodes[i].addr :
		    &P.seed;
		redisContext *c = redis_connect(a->host, a->port, err,
		    errlen);

		if (c == NULL)
			continue;
		rc = read_slots(c, a->host, a->port, &masters, &nm, owner,
		    err, errlen);
		redisFree(c);
	}
	if (rc == 0) {
		for (size_t s = 0; s < SLOTS; s++)
			P.owner[s] = (uint16_t)node_of(masters[owner[s]].host,
			    masters[owner[s]].port);
		P.stale = false;
	}
	redis_addrs_free(masters, nm);
	free(owner);
	return rc;
}

/* ---- slots ---- */

/* CRC16-CCITT (XMODEM), as Redis Cluster hashes keys. */
static uint16_t
crc16(const char *s, size_t n)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((uint8_t)s[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) :
			    (uint16_t)(crc << 1);
	}
	return crc;
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

static void
call_fail(struct rcall *c, const char *err)
{
	c->bc.code = PLAT_UNAVAILABLE;
	snprintf(c->bc.err, sizeof(c->bc.err), "%s", err);
}

static void
node_failed(struct pnode *nd, char *err, size_t errlen)
{
	snprintf(err, errlen, "redis %s:%d: %s", nd->addr.host,
	    nd->addr.port, nd->c != NULL && nd->c->errstr[0] != '\0' ?
	    nd->c->errstr : "connection lost");
	nd->failed = true;
	node_drop(nd);
	P.stale = true;         /* a failover, maybe */
}

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

/* Sends every call to its node, all nodes at once, then reads each
 * node's replies in its order. A node that fails fails its calls. */
static void
send_round(struct rcall **calls, size_t n, int64_t timeout_ms)
{
	struct timeval tv;
	char err[BATCHER_ERR_MAX];

	if (timeout_ms <= 0 || timeout_ms > BATCH_TIMEOUT_MAX_MS)
		timeout_ms = BATCH_TIMEOUT_MAX_MS;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	for (size_t i = 0; i < P.n; i++)
		P.nodes[i].failed = false;
	for (size_t i = 0; i < n; i++) {
		struct pnode *nd = &P.nodes[calls[i]->node];

		calls[i]->sent = false;
		if (nd->failed || node_conn(nd, err, sizeof(err)) == NULL) {
			if (!nd->failed)
				node_failed(nd, err, sizeof(err));
			call_fail(calls[i], err);
			continue;
		}
		if ((calls[i]->asking && redisAppendFormattedCommand(nd->c,
		    asking_cmd, sizeof(asking_cmd) - 1) != REDIS_OK) ||
		    redisAppendFormattedCommand(nd->c, calls[i]->cmd,
		    (size_t)calls[i]->cmdlen) != REDIS_OK) {
			node_failed(nd, err, sizeof(err));
			call_fail(calls[i], err);
			continue;
		}
		calls[i]->sent = true;
	}
	/* Every node gets its commands before any reply is awaited. */
	for (size_t i = 0; i < P.n; i++) {
		struct pnode *nd = &P.nodes[i];
		int done = 0;

		if (nd->c == NULL || nd->failed)
			continue;
		(void)redisSetTimeout(nd->c, tv);
		while (!done)
			if (redisBufferWrite(nd->c, &done) != REDIS_OK) {
				node_failed(nd, err, sizeof(err));
				break;
			}
	}
	for (size_t i = 0; i < n; i++) {
		struct pnode *nd = &P.nodes[calls[i]->node];
		void *r = NULL;

		if (!calls[i]->sent)
			continue;
		if (nd->failed) {
			call_fail(calls[i], "redis: the node failed");
			continue;
		}
		if (calls[i]->asking) {
			if (redisGetReply(nd->c, &r) != REDIS_OK) {
				node_failed(nd, err, sizeof(err));
				call_fail(calls[i], err);
				continue;
			}
			freeReplyObject(r);
		}
		if (redisGetReply(nd->c, &r) != REDIS_OK) {
			node_failed(nd, err, sizeof(err));
			call_fail(calls[i], err);
			continue;
		}
		calls[i]->reply = r;
	}
}

/* "MOVED 3999 127.0.0.1:6381" or "ASK ...": the node named; 0 when the
 * reply is neither. */
static int
redirect(const redisReply *r, size_t *node, bool *asking)
{
	char host[256];
	int slot, port;

	if (!redis_is_error(r, "MOVED ") && !redis_is_error(r, "ASK "))
		return 0;
	if (sscanf(strchr(r->str, ' '), " %d %255[^:]:%d", &slot, host,
	    &port) != 3)
		return 0;
	*asking = r->str[0] == 'A';
	*node = node_of(host, port);
	if (!*asking) {
		if (slot >= 0 && slot < SLOTS)
			P.owner[slot] = (uint16_t)*node;
		P.stale = true;
	}
	atomic_fetch_add(&P.redirects, 1);
	return 1;
}

static enum plat_code
pipe_apply(void *arg, void *batch, int64_t timeout_ms, char *err,
    size_t errlen)
{
	struct rbatch *b = batch;
	struct rcall **todo = xcalloc(b->n, sizeof(*todo));
	size_t ntodo = 0;

	(void)arg;
	if ((P.stale || P.n == 0) && refresh_slots(err, errlen) != 0 &&
	    P.n == 0) {
		free(todo);
		return PLAT_UNAVAILABLE;
	}
	for (size_t i = 0; i < b->n; i++) {
		b->calls[i]->node = P.owner[b->calls[i]->slot];
		b->calls[i]->asking = false;
		todo[ntodo++] = b->calls[i];
	}
	for (int round = 0; round < ROUNDS && ntodo > 0; round++) {
		size_t next = 0;

		send_round(todo, ntodo, timeout_ms);
		if (round + 1 == ROUNDS)
			break;  /* the last replies stand */
		for (size_t i = 0; i < ntodo; i++) {
			struct rcall *c = todo[i];
			bool again = false;

			if (c->reply == NULL)
				continue;
			if (redis_is_error(c->reply, "NOSCRIPT")) {
				node_drop(&P.nodes[c->node]);   /* reloads */
				again = true;
			} else {
				again = redirect(c->reply, &c->node,
				    &c->asking) != 0;
			}
			if (again) {
				freeReplyObject(c->reply);
				c->reply = NULL;
				todo[next++] = c;
			}
		}
		ntodo = next;
	}
	free(todo);
	return PLAT_OK;
}

static void
pipe_answer(void *arg, void *batch, struct batcher_call *bc)
{
	struct rcall *c = (struct rcall *)bc;

	(void)arg;
	(void)batch;
	if (c->bc.code == PLAT_OK && c->reply == NULL)
		call_fail(c, "redis: no reply");
	if (c->bc.code != PLAT_OK)
		atomic_fetch_add(&P.errors, 1);
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

void
rargs_init(struct rargs *a, int cap)
{
	memset(a, 0, sizeof(*a));
	a->cap = cap > 0 ? cap : 8;
	a->v = xcalloc((size_t)a->cap, sizeof(*a->v));
	a->len = xcalloc((size_t)a->cap, sizeof(*a->len));
}

static void
rargs_free(struct rargs *a)
{
	for (int i = 0; i < a->nowned; i++)
		free(a->owned[i]);
	free(a->owned);
	free(a->v);
	free(a->len);
}

void
rarg_bytes(struct rargs *a, const void *p, size_t n)
{
	if (a->n == a->cap) {
		a->cap *= 2;
		a->v = xrealloc(a->v, (size_t)a->cap * sizeof(*a->v));
		a->len = xrealloc(a->len, (size_t)a->cap * sizeof(*a->len));
	}
	a->v[a->n] = p;
	a->len[a->n++] = n;
}

void
rarg_str(struct rargs *a, const char *s)
{
	rarg_bytes(a, s, strlen(s));
}

void
rarg_own(struct rargs *a, char *s)
{
	if (a->nowned == a->ownedcap) {
		a->ownedcap = a->ownedcap * 2 + 4;
		a->owned = xrealloc(a->owned, (size_t)a->ownedcap *
		    sizeof(*a->owned));
	}
	a->owned[a->nowned++] = s;
}

void
rarg_i64(struct rargs *a, int64_t v)
{
	char *s = xcalloc(1, 24);

	snprintf(s, 24, "%" PRId64, v);
	rarg_own(a, s);
	rarg_str(a, s);
}

void
rarg_script(struct rargs *a, enum redis_script s, const char *table)
{
	size_t n = strlen(table) + sizeof("kv:{}:i");
	char *index = xcalloc(1, n);

	snprintf(index, n, "kv:{%s}:i", table);
	rarg_own(a, index);
	rarg_str(a, "EVALSHA");
	rarg_str(a, redis_script_sha[s]);
	rarg_str(a, "1");
	rarg_str(a, index);
}

void
redis_submit(struct rcall *c, struct rargs *a, const char *table,
    int64_t deadline_ms)
{
	size_t bytes = 0;

	c->cmdlen = redisFormatCommandArgv(&c->cmd, a->n, a->v, a->len);
	if (c->cmdlen < 0)
		abort();        /* out of memory */
	for (int i = 0; i < a->n; i++)
		bytes += a->len[i];
	rargs_free(a);
	c->slot = crc16(table, strlen(table)) % SLOTS;
	c->bc.deadline_ms = deadline_ms;
	c->bc.items = 1;
	c->bc.bytes = bytes;
	batcher_submit(P.batcher, &c->bc);
}

void
rcall_clear(struct rcall *c)
{
	if (c->reply != NULL)
		freeReplyObject(c->reply);
	c->reply = NULL;
	redisFreeCommand(c->cmd);
	c->cmd = NULL;
}

/* ---- lifecycle ---- */

int
redis_pipe_start(const char *host, int port, char *err, size_t errlen)
{
	static const struct batcher_limits limits = {
		.max_items = BATCH_MAX_ITEMS,
		.max_bytes = BATCH_MAX_BYTES,
		.max_timeout_ms = BATCH_TIMEOUT_MAX_MS,
	};

	P.seed.host = xstrdup(host);
	P.seed.port = port;
	if (refresh_slots(err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < P.n; i++)
		if (node_conn(&P.nodes[i], err, errlen) == NULL)
			return -1;
	if ((P.batcher = batcher_new("kv-redis", &pipe_ops, NULL,
	    &limits)) == NULL) {
		snprintf(err, errlen, "cannot start the pipeline's threads");
		return -1;
	}
	if (P.n > 1) {
		char n[24];

		snprintf(n, sizeof(n), "%zu", P.n);
		log_info("kv: redis is a cluster", "masters", n);
	}
	return 0;
}

void
redis_pipe_stop(void)
{
	batcher_free(P.batcher);
	P.batcher = NULL;
	for (size_t i = 0; i < P.n; i++) {
		if (P.nodes[i].c != NULL)
			redisFree(P.nodes[i].c);
		free(P.nodes[i].addr.host);
	}
	free(P.nodes);
	free(P.seed.host);
	memset(&P, 0, sizeof(P));
}

int64_t
redis_pipe_pending(void)
{
	return P.batcher != NULL ? batcher_pending(P.batcher) : 0;
}

uint64_t
redis_pipe_batches(void)
{
	return P.batcher != NULL ? batcher_batches(P.batcher) : 0;
}

uint64_t
redis_pipe_errors(void)
{
	return atomic_load(&P.errors);
}

uint64_t
redis_pipe_reconnects(void)
{
	return atomic_load(&P.reconnects);
}

uint64_t
redis_pipe_redirects(void)
{
	return atomic_load(&P.redirects);
}
