/*
 * redis_feed: Watch on the Redis backend (redis.h).
 *
 * A subscriber thread listens to KV_CHANNEL, where every write's script
 * publishes its change (in a Cluster, PUBLISH reaches every node, so one
 * master is asked), and to the keyspace events of expiry and eviction on
 * every master (they are each node's own), which kv-srv turns on
 * (notify-keyspace-events Exe) where Redis lets it.
 *
 * A watch is registered before its snapshot is read, and the merge
 * (merge.h) drops anything not newer than what it sent, so the current
 * state and the changes meet with no gap and no duplicate. Pub/sub
 * delivers at most once: when a subscriber connection drops, every Watch
 * ends with UNAVAILABLE (watch again: its snapshot restarts it) rather
 * than miss a change. The masters are read when the subscriber connects:
 * a master added later is heard after the next reconnect.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/xalloc.h"
#include "redis.h"

#define SUB_POLL_MS 200
#define SUB_RETRY_MS 500
#define SNAPSHOT_PAGE 500
#define EXPIRED_CHANNEL "__keyevent@0__:expired"
#define EVICTED_CHANNEL "__keyevent@0__:evicted"
#define EVT(x) PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_##x

struct rwatch {
	struct rwatch *next;
	struct kv_merge merge;
	plat_stream *st;
	char *table, *prefix;
	char after[KV_KEY_MAX + 1];     /* the snapshot's next page */
	atomic_int closed;
	atomic_int refs;
};

/* The subscriber's connections, one per master. */
struct subs {
	redisContext **c;
	size_t n;
};

static struct {
	struct redis_addr seed;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;             /* watches, ready */
	pthread_cond_t cv;
	struct rwatch *watches;
	int ready;                      /* subscribed: changes flow */
	int stop;
	atomic_int stopping;
	atomic_ullong drops;
} F;

/* ---- watches ---- */

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
	pthread_mutex_lock(&F.mu);
	for (struct rwatch *w = F.watches; w != NULL; w = w->next)
		if (!atomic_load(&w->closed) && watches(w, e->table, e->key))
			kv_merge_deliver(&w->merge, type, e);
	pthread_mutex_unlock(&F.mu);
}

static bool
anyone_watches(const char *table, const char *key)
{
	bool yes = false;

	pthread_mutex_lock(&F.mu);
	for (struct rwatch *w = F.watches; w != NULL && !yes; w = w->next)
		yes = watches(w, table, key);
	pthread_mutex_unlock(&F.mu);
	return yes;
}

static void snapshot_next(struct rwatch *w);

/* One page of a watch's current state, as PUT events. */
static void
snapshot_done(struct rcall *c)
{
	struct rwatch *w = c->arg;
	size_t n;

	if (c->bc.code != PLAT_OK || c->reply->type != REDIS_REPLY_ARRAY) {
		char msg[BATCHER_ERR_MAX + 16];
		int code = c->bc.code != PLAT_OK ? (int)c->bc.code :
		    redis_status(c->reply, msg, sizeof(msg));

		plat_stream_finish(w->st, code, c->bc.code != PLAT_OK ?
		    c->bc.err : msg);
		goto out;
	}
	n = c->reply->elements / 4;
	for (size_t i = 0; i < n && i < SNAPSHOT_PAGE; i++) {
		redisReply **e = &c->reply->element[4 * i];
		kv_entry_pb ent = PLATFORM__KV__V1__ENTRY__INIT;

		ent.table = w->table;
		ent.key = e[0]->str;
		ent.value.data = (uint8_t *)e[1]->str;
		ent.value.len = e[1]->len;
		ent.version = redis_reply_i64(e[2]);
		ent.expires_unix_ms = redis_reply_i64(e[3]);
		kv_merge_deliver(&w->merge, EVT(PUT), &ent);
		snprintf(w->after, sizeof(w->after), "%s", e[0]->str);
	}
	if (n <= SNAPSHOT_PAGE) {
		kv_merge_deliver(&w->merge, EVT(SYNCED), NULL);
	} else if (!atomic_load(&w->closed) && !atomic_load(&F.stopping)) {
		rcall_clear(c);
		free(c);
		snapshot_next(w);       /* the reference goes on */
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
	struct rargs a;

	c->done = snapshot_done;
	c->arg = w;
	rargs_init(&a, 10);
	redis_list_args(&a, w->table, w->prefix, w->after, SNAPSHOT_PAGE,
	    false);
	redis_submit(c, &a, w->table, INT64_MAX);
}

static void
rwatch_closed(plat_stream *st, void *arg)
{
	struct rwatch *w = arg, **p;

	(void)st;
	atomic_store(&w->closed, 1);
	pthread_mutex_lock(&F.mu);
	for (p = &F.watches; *p != NULL; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	pthread_mutex_unlock(&F.mu);
	rwatch_unref(w);
}

int
redis_watch(struct kv_backend *b, plat_ctx *ctx,
    const Platform__Kv__V1__WatchRequest *req, plat_stream *st)
{
	struct rwatch *w;

	(void)b;
	pthread_mutex_lock(&F.mu);
	if (!F.ready) {
		pthread_mutex_unlock(&F.mu);
		return plat_error(ctx, PLAT_UNAVAILABLE, "redis %s:%d: the "
		    "change feed is not connected; watch again", F.seed.host,
		    F.seed.port);
	}
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->table = xstrdup(req->table);
	w->prefix = xstrdup(req->prefix);
	kv_merge_init(&w->merge, st, 1);        /* the snapshot syncs */
	atomic_init(&w->refs, 2);               /* the list's, the snapshot's */
	/* Registered before the snapshot is read: a change after the read
	 * comes as an event, one before it is in the read. */
	w->next = F.watches;
	F.watches = w;
	pthread_mutex_unlock(&F.mu);
	plat_stream_on_close(st, rwatch_closed, w);
	snapshot_next(w);
	return PLAT_STREAM_OPEN;
}

/* ---- what the feed says ---- */

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
		atomic_fetch_add(&F.drops, 1);
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
		e.version = redis_reply_i64(c->reply);
		deliver(r->type, &e);
	}
	rcall_clear(c);
	free(c);
	free(r->table);
	free(r->key);
	free(r);
}

/* Redis expired or evicted `name`; for a watched kv:{T}:v:K, its event
 * (the reap script gives its version and drops it from the index; List
 * drops the others in passing). */
static void
on_gone(int type, const char *name, size_t len)
{
	const char *close, *key;
	struct reap *r;
	struct rcall *c;
	struct rargs a;

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
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->done = reap_done;
	c->arg = r;
	rargs_init(&a, 8);
	rarg_script(&a, S_REAP, r->table);
	rarg_str(&a, r->table);
	rarg_str(&a, r->key);
	redis_submit(c, &a, r->table, INT64_MAX);
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
	if (strcmp(ch->str, KV_CHANNEL) == 0)
		on_change(body->str, body->len);
	else if (strcmp(ch->str, EXPIRED_CHANNEL) == 0)
		on_gone(EVT(EXPIRED), body->str, body->len);
	else if (strcmp(ch->str, EVICTED_CHANNEL) == 0)
		on_gone(EVT(EVICTED), body->str, body->len);
}

/* ---- subscribing ---- */

/* Asks a node for the keyspace events of expiry and eviction, keeping
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

/* A subscriber connection to host:port, its confirmations read. */
static redisContext *
subscribe_node(const char *host, int port, bool changes, char *err,
    size_t errlen)
{
	redisContext *c = redis_connect(host, port, err, errlen);
	redisReply *r;
	int confirmations = changes ? 3 : 2;

	if (c == NULL)
		return NULL;
	ask_keyspace_events(c);
	r = changes ? redisCommand(c, "SUBSCRIBE %s %s %s", KV_CHANNEL,
	    EXPIRED_CHANNEL, EVICTED_CHANNEL) : redisCommand(c,
	    "SUBSCRIBE %s %s", EXPIRED_CHANNEL, EVICTED_CHANNEL);
	/* The first confirmation is the reply; the others follow. */
	for (int i = 1; r != NULL && r->type == REDIS_REPLY_ARRAY &&
	    i < confirmations; i++) {
		freeReplyObject(r);
		if (redisGetReply(c, (void **)&r) != REDIS_OK)
			r = NULL;
	}
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(err, errlen, "redis %s:%d: SUBSCRIBE: %s", host,
		    port, r == NULL ? c->errstr : r->type ==
		    REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		if (r != NULL)
			freeReplyObject(r);
		redisFree(c);
		return NULL;
	}
	freeReplyObject(r);
	return c;
}

static void
subs_free(struct subs *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->c[i] != NULL)
			redisFree(s->c[i]);
	free(s->c);
	s->c = NULL;
	s->n = 0;
}

/* Subscribes on every master (the changes on the first). */
static int
subscribe_all(struct subs *s, char *err, size_t errlen)
{
	struct redis_addr *m = NULL;
	size_t n = 0;
	redisContext *c = redis_connect(F.seed.host, F.seed.port, err,
	    errlen);
	int rc = -1;

	if (c == NULL)
		return -1;
	if (redis_masters(c, F.seed.host, F.seed.port, &m, &n, err,
	    errlen) == 0) {
		s->c = xcalloc(n, sizeof(*s->c));
		s->n = n;
		rc = 0;
		for (size_t i = 0; i < n && rc == 0; i++)
			if ((s->c[i] = subscribe_node(m[i].host, m[i].port,
			    i == 0, err, errlen)) == NULL)
				rc = -1;
	}
	redisFree(c);
	redis_addrs_free(m, n);
	if (rc != 0)
		subs_free(s);
	return rc;
}

/* Every watch ends: changes may have been missed. */
static void
end_watches(const char *why)
{
	pthread_mutex_lock(&F.mu);
	F.ready = 0;
	for (struct rwatch *w = F.watches; w != NULL; w = w->next)
		plat_stream_finish(w->st, PLAT_UNAVAILABLE, why);
	pthread_mutex_unlock(&F.mu);
}

/* Reads a connection's buffered messages: -1 when it failed. */
static int
drain(redisContext *c)
{
	void *reply;

	if (redisBufferRead(c) != REDIS_OK)
		return -1;
	for (;;) {
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			return -1;
		if (reply == NULL)
			return 0;
		on_message(reply);
		freeReplyObject(reply);
	}
}

/* Reads the feed until a connection fails or kv-srv stops; the one that
 * failed, or NULL. */
static redisContext *
follow(struct subs *s)
{
	struct pollfd *pfd = xcalloc(s->n, sizeof(*pfd));
	redisContext *failed = NULL;

	for (size_t i = 0; i < s->n; i++) {
		pfd[i].fd = s->c[i]->fd;
		pfd[i].events = POLLIN;
	}
	while (failed == NULL && !atomic_load(&F.stopping)) {
		int rc = poll(pfd, (nfds_t)s->n, SUB_POLL_MS);

		if (rc < 0 && errno != EINTR)
			failed = s->c[0];
		for (size_t i = 0; rc > 0 && i < s->n && failed == NULL; i++)
			if (pfd[i].revents != 0 && drain(s->c[i]) != 0)
				failed = s->c[i];
	}
	free(pfd);
	return failed;
}

static void *
feed_main(void *arg)
{
	struct subs s = *(struct subs *)arg;    /* subscribed at start */
	char err[256];
	bool warned = false;

	free(arg);
	while (!atomic_load(&F.stopping)) {
		redisContext *failed;

		if (s.n == 0 && subscribe_all(&s, err, sizeof(err)) != 0) {
			if (!warned)
				log_warn("kv: the redis change feed is down; "
				    "Watch answers UNAVAILABLE", "error", err);
			warned = true;
			pthread_mutex_lock(&F.mu);
			(void)plat_cond_wait_ms(&F.cv, &F.mu, SUB_RETRY_MS,
			    &F.stop);
			pthread_mutex_unlock(&F.mu);
			continue;
		}
		if (warned)
			log_info("kv: the redis change feed is back");
		warned = false;
		pthread_mutex_lock(&F.mu);
		F.ready = 1;
		pthread_mutex_unlock(&F.mu);
		if ((failed = follow(&s)) != NULL) {
			log_warn("kv: the redis change feed was cut; every "
			    "Watch ends with UNAVAILABLE", "error",
			    failed->errstr[0] != '\0' ? failed->errstr :
			    "closed");
			end_watches("kv-srv lost the redis change feed, so "
			    "changes may be missing: watch again");
		}
		subs_free(&s);
	}
	subs_free(&s);
	return NULL;
}

/* ---- lifecycle ---- */

int
redis_feed_start(const char *host, int port, char *err, size_t errlen)
{
	struct subs *s = xcalloc(1, sizeof(*s));

	F.seed.host = xstrdup(host);
	F.seed.port = port;
	pthread_mutex_init(&F.mu, NULL);
	plat_cond_init(&F.cv);
	if (subscribe_all(s, err, errlen) != 0) {
		free(s);
		return -1;
	}
	F.ready = 1;
	if (pthread_create(&F.thread, NULL, feed_main, s) != 0) {
		subs_free(s);
		free(s);
		snprintf(err, errlen, "cannot start the change feed's thread");
		return -1;
	}
	F.started = true;
	return 0;
}

void
redis_feed_stop(void)
{
	if (F.seed.host == NULL)
		return;         /* never started */
	atomic_store(&F.stopping, 1);
	pthread_mutex_lock(&F.mu);
	F.stop = 1;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	if (F.started)
		pthread_join(F.thread, NULL);
	F.started = false;
}

uint64_t
redis_feed_drops(void)
{
	return atomic_load(&F.drops);
}
