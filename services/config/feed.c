/*
 * feed: the change feed and the watch hub (see feed.h).
 *
 * Locks: F.mu guards the thread's wake-up state; F.hub_mu guards the
 * watcher list, every watcher's fields and the moves of F.last. Changes
 * are sent to live watchers under hub_mu, so each stream gets them in
 * revision order.
 *
 * A Watch joins the hub "catching up" at feed position T: from then on
 * the feed buffers the watcher's live changes (all above T) while the
 * handler replays the stored ones from the table, up to T or the store's
 * revision H read just after joining, whichever is higher (so every
 * change committed before the Watch came is replayed before caught_up,
 * even one this replica's feed has not read yet); then, under hub_mu,
 * the buffer is flushed skipping what was already sent, the caught_up
 * marker goes out and the watcher turns live. A watcher whose
 * buffer overflows while it catches up is ended with RESOURCE_EXHAUSTED;
 * its client resumes from the last revision it received.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "config.h"
#include "feed.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"

#define FEED_TICK_MS 1000            /* the safety-net read */
#define FEED_BATCH 1000              /* rows per read of the table */
#define FEED_QUERY_MS 5000
#define REPLAY_QUERY_MS 30000        /* per page, within the deadline */
#define WATCH_BUFFER_MAX_ROWS 10000  /* live changes held while catching up */
#define WATCH_BUFFER_MAX_BYTES (32u << 20)

struct watcher {
	struct watcher *next;
	plat_stream *st;
	char **namespaces;              /* exact; none: all */
	size_t nns;
	char *prefix;
	int64_t sent;                   /* revisions up to here are done */
	bool live;
	bool dead;                      /* ended; waiting for its close */
	struct cfg_row **buf;           /* live changes while catching up */
	size_t nbuf, capbuf, bufbytes;
};

static struct {
	struct store *store;
	plat_server *srv;
	struct pg_listener *listener;
	pthread_t thread;
	bool running;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int kicked;

	pthread_mutex_t hub_mu;
	struct watcher *watchers;
	size_t nwatchers;
	atomic_int_fast64_t last;       /* -1 until started */
	atomic_bool healthy;
	bool reported_down;             /* feed thread only */
} F = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.hub_mu = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- sending ---- */

static int
send_row(plat_stream *st, const struct cfg_row *row)
{
	Platform__Config__V1__WatchResponse resp =
	    PLATFORM__CONFIG__V1__WATCH_RESPONSE__INIT;
	Platform__Config__V1__Value v;

	config_value_fill(&v, row);
	resp.value = &v;
	return plat_stream_send(st, &resp.base);
}

static int
send_caught_up(plat_stream *st)
{
	Platform__Config__V1__WatchResponse resp =
	    PLATFORM__CONFIG__V1__WATCH_RESPONSE__INIT;

	resp.caught_up = 1;
	return plat_stream_send(st, &resp.base);
}

static bool
watcher_matches(const struct watcher *w, const struct cfg_row *row)
{
	size_t i;

	if (strncmp(row->path, w->prefix, strlen(w->prefix)) != 0)
		return false;
	if (w->nns == 0)
		return true;
	for (i = 0; i < w->nns; i++)
		if (strcmp(w->namespaces[i], row->ns) == 0)
			return true;
	return false;
}

static void
watcher_drop_buffer(struct watcher *w)
{
	for (size_t i = 0; i < w->nbuf; i++)
		cfg_row_unref(w->buf[i]);
	free(w->buf);
	w->buf = NULL;
	w->nbuf = w->capbuf = w->bufbytes = 0;
}

static void
watcher_free(struct watcher *w)
{
	watcher_drop_buffer(w);
	for (size_t i = 0; i < w->nns; i++)
		free(w->namespaces[i]);
	free(w->namespaces);
	free(w->prefix);
	free(w);
}

/* One change to one watcher; hub_mu held. */
static void
watcher_offer(struct watcher *w, struct cfg_row *row)
{
	if (w->dead || !watcher_matches(w, row))
		return;
	if (w->live) {
		if (row->revision <= w->sent)
			return;
		if (send_row(w->st, row) != 0)
			w->dead = true;
		else
			w->sent = row->revision;
		return;
	}
	if (w->nbuf == WATCH_BUFFER_MAX_ROWS ||
	    w->bufbytes + row->size > WATCH_BUFFER_MAX_BYTES) {
		w->dead = true;
		watcher_drop_buffer(w);
		plat_stream_finish(w->st, PLAT_RESOURCE_EXHAUSTED,
		    "watch: too many changes arrived while replaying the "
		    "stored ones; watch again from the last revision received");
		return;
	}
	if (w->nbuf == w->capbuf) {
		w->capbuf = w->capbuf != 0 ? 2 * w->capbuf : 16;
		if ((w->buf = realloc(w->buf, w->capbuf * sizeof(*w->buf))) ==
		    NULL)
			abort();
	}
	w->buf[w->nbuf++] = cfg_row_ref(row);
	w->bufbytes += row->size;
}

/* Changes in revision order to every watcher, moving F.last; hub_mu
 * held. Rows at or below F.last were already fanned out (by a local
 * writer's feed_committed while this read was under way). */
static void
fan_out_locked(struct cfg_row *const *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (rows[i]->revision <= atomic_load(&F.last))
			continue;
		for (struct watcher *w = F.watchers; w != NULL; w = w->next)
			watcher_offer(w, rows[i]);
		atomic_store(&F.last, rows[i]->revision);
	}
}

void
feed_committed(struct cfg_row *const *rows, size_t n)
{
	bool taken = false;

	if (n == 0)
		return;
	/* Into the cache either way, so a read through this replica sees
	 * its own write the moment it is answered. */
	for (size_t i = 0; i < n; i++)
		cache_apply(rows[i]);
	pthread_mutex_lock(&F.hub_mu);
	if (atomic_load(&F.last) == rows[0]->revision - 1) {
		fan_out_locked(rows, n);
		taken = true;
	}
	pthread_mutex_unlock(&F.hub_mu);
	if (!taken)
		feed_kick();
}

/* ---- the feed thread ---- */

static void
feed_set_healthy(bool ok, const char *why)
{
	bool was = atomic_exchange(&F.healthy, ok);

	if (ok && !was && F.reported_down) {
		log_info("config: change feed running again");
		F.reported_down = false;
	} else if (!ok && !F.reported_down) {
		log_warn("config: change feed stalled", "error", why);
		F.reported_down = true;
	}
	/* plat_main sets SERVING after start and NOT_SERVING at shutdown:
	 * NOT_SERVING is asserted at every step while down, SERVING only on
	 * the way back up. */
	if (plat_server_stopping(F.srv))
		return;
	if (!ok)
		plat_health_set(F.srv, "platform.config.v1.Config",
		    PLAT_HEALTH_NOT_SERVING);
	else if (!was)
		plat_health_set(F.srv, "platform.config.v1.Config",
		    PLAT_HEALTH_SERVING);
}

/* Reads and fans out everything after F.last. */
static void
feed_step(void)
{
	char err[256], rev[24];
	struct cfg_rows rows;
	enum plat_code code;
	int64_t head;

	if (!store_ready(F.store)) {
		code = store_migrate(F.store, err, sizeof(err));
		if (code != PLAT_OK) {
			if (code != PLAT_UNAVAILABLE && !F.reported_down)
				log_error("config: database schema not ready",
				    "error", err);
			feed_set_healthy(false, err);
			return;
		}
		log_info("config: database schema ready");
	}
	if (atomic_load(&F.last) < 0) {
		code = store_head(F.store, FEED_QUERY_MS, &head, err,
		    sizeof(err));
		if (code != PLAT_OK) {
			feed_set_healthy(false, err);
			return;
		}
		cache_open(head);
		pthread_mutex_lock(&F.hub_mu);
		atomic_store(&F.last, head);
		pthread_mutex_unlock(&F.hub_mu);
		snprintf(rev, sizeof(rev), "%" PRId64, head);
		log_info("config: change feed started", "revision", rev);
	}
	for (;;) {
		code = store_changes(F.store, atomic_load(&F.last), 0, NULL, 0,
		    "", FEED_BATCH, FEED_QUERY_MS, &rows, err, sizeof(err));
		if (code != PLAT_OK) {
			feed_set_healthy(false, err);
			return;
		}
		for (size_t i = 0; i < rows.n; i++)
			cache_apply(rows.v[i]);
		pthread_mutex_lock(&F.hub_mu);
		fan_out_locked(rows.v, rows.n);
		pthread_mutex_unlock(&F.hub_mu);
		if (rows.n < FEED_BATCH) {
			cfg_rows_free(&rows);
			break;
		}
		cfg_rows_free(&rows);
	}
	feed_set_healthy(true, NULL);
}

static void *
feed_main(void *arg)
{
	struct timespec until;

	(void)arg;
	pthread_mutex_lock(&F.mu);
	while (!F.stop) {
		until = plat_deadline_ts(FEED_TICK_MS);
		while (!F.stop && !F.kicked &&
		    pthread_cond_timedwait(&F.cv, &F.mu, &until) != ETIMEDOUT)
			;
		if (F.stop)
			break;
		F.kicked = 0;
		pthread_mutex_unlock(&F.mu);
		feed_step();
		pthread_mutex_lock(&F.mu);
	}
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

void
feed_kick(void)
{
	pthread_mutex_lock(&F.mu);
	F.kicked = 1;
	pthread_cond_signal(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

static void
on_notify(const char *payload, void *arg)
{
	(void)arg;
	/* The payload is a revision: nothing to do if it was seen. */
	if (payload != NULL && strtoll(payload, NULL, 10) <=
	    atomic_load(&F.last))
		return;
	feed_kick();
}

static void
on_reconnect(void *arg)
{
	(void)arg;
	feed_kick();
}

int
feed_start(struct store *store, const char *conninfo, plat_server *srv)
{
	F.store = store;
	F.srv = srv;
	F.stop = 0;
	F.kicked = 1;                   /* read at once */
	F.reported_down = false;
	atomic_store(&F.last, -1);
	atomic_store(&F.healthy, false);
	plat_cond_init(&F.cv);
	F.listener = pg_listener_start(conninfo, STORE_CHANNEL, on_notify,
	    on_reconnect, NULL);
	if (F.listener == NULL)
		return -1;
	if (pthread_create(&F.thread, NULL, feed_main, NULL) != 0) {
		pg_listener_stop(F.listener);
		F.listener = NULL;
		return -1;
	}
	F.running = true;
	return 0;
}

void
feed_stop(void)
{
	struct watcher *w, *next;

	pg_listener_stop(F.listener);
	F.listener = NULL;
	if (F.running) {
		pthread_mutex_lock(&F.mu);
		F.stop = 1;
		pthread_cond_signal(&F.cv);
		pthread_mutex_unlock(&F.mu);
		pthread_join(F.thread, NULL);
		F.running = false;
	}
	pthread_cond_destroy(&F.cv);
	/* The runtime ended every stream before fini; their close callbacks
	 * unlinked them. Anything left is freed without its stream. */
	pthread_mutex_lock(&F.hub_mu);
	for (w = F.watchers; w != NULL; w = next) {
		next = w->next;
		watcher_free(w);
	}
	F.watchers = NULL;
	F.nwatchers = 0;
	pthread_mutex_unlock(&F.hub_mu);
}

int64_t
feed_position(void)
{
	return atomic_load(&F.last);
}

bool
feed_healthy(void)
{
	return atomic_load(&F.healthy);
}

size_t
feed_watchers(void)
{
	size_t n;

	pthread_mutex_lock(&F.hub_mu);
	n = F.nwatchers;
	pthread_mutex_unlock(&F.hub_mu);
	return n;
}

/* ---- Watch ---- */

static void
watch_closed(plat_stream *st, void *arg)
{
	struct watcher *w = arg, **pp;

	pthread_mutex_lock(&F.hub_mu);
	for (pp = &F.watchers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			F.nwatchers--;
			break;
		}
	pthread_mutex_unlock(&F.hub_mu);
	watcher_free(w);
	plat_stream_unref(st);
}

static int64_t
replay_timeout(const plat_ctx *ctx)
{
	int64_t left = plat_ctx_deadline_left_ms(ctx);

	return left < REPLAY_QUERY_MS ? left : REPLAY_QUERY_MS;
}

/* Sends the stored changes in (from, upto]: 0, or a status to end with. */
static int
watch_replay(plat_ctx *ctx, struct watcher *w, int64_t from, int64_t upto)
{
	struct cfg_rows rows;
	enum plat_code code;
	char err[256];
	size_t n;

	while (from < upto) {
		code = store_changes(F.store, from, upto,
		    (const char *const *)w->namespaces, w->nns, w->prefix,
		    FEED_BATCH, replay_timeout(ctx), &rows, err, sizeof(err));
		if (code != PLAT_OK)
			return plat_error(ctx, code, "%s", err);
		for (size_t i = 0; i < rows.n; i++)
			if (send_row(w->st, rows.v[i]) != 0) {
				/* Ended (cancelled or too slow): its close
				 * callback cleans up. */
				cfg_rows_free(&rows);
				return PLAT_STREAM_OPEN;
			}
		n = rows.n;
		if (n > 0)
			from = rows.v[n - 1]->revision;
		cfg_rows_free(&rows);
		if (n < FEED_BATCH)
			break;
	}
	return 0;
}

int
feed_watch(plat_ctx *ctx, plat_stream *st, const char *const *namespaces,
    size_t nns, const char *prefix, int64_t after_revision)
{
	struct watcher *w;
	enum plat_code code;
	char err[256];
	int64_t from = after_revision, fed, head, upto;
	int rc;

	if (atomic_load(&F.last) < 0)
		return plat_error(ctx, PLAT_UNAVAILABLE, "%s",
		    pg_code_message(PLAT_UNAVAILABLE));
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->nns = nns;
	w->namespaces = xcalloc(nns, sizeof(*w->namespaces));
	for (size_t i = 0; i < nns; i++)
		w->namespaces[i] = xstrdup(namespaces[i]);
	w->prefix = xstrdup(prefix);
	plat_stream_ref(st);
	plat_stream_on_close(st, watch_closed, w);

	/* From here on the feed buffers every change above fed for us. */
	pthread_mutex_lock(&F.hub_mu);
	fed = atomic_load(&F.last);
	w->next = F.watchers;
	F.watchers = w;
	F.nwatchers++;
	pthread_mutex_unlock(&F.hub_mu);

	/* The store's revision now covers every change committed before
	 * this call, which the feed may not have read yet: those are stored
	 * changes, replayed before caught_up. after_revision 0 starts
	 * there. The close callback cleans up after an error. */
	code = store_head(F.store, replay_timeout(ctx), &head, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	if (from == 0)
		from = head;
	upto = head > fed ? head : fed;
	if ((rc = watch_replay(ctx, w, from, upto)) != 0)
		return rc;

	pthread_mutex_lock(&F.hub_mu);
	if (!w->dead) {
		w->sent = from > upto ? from : upto;
		for (size_t i = 0; i < w->nbuf && !w->dead; i++) {
			if (w->buf[i]->revision <= w->sent)
				continue;
			if (send_row(st, w->buf[i]) != 0)
				w->dead = true;
			else
				w->sent = w->buf[i]->revision;
		}
		watcher_drop_buffer(w);
		if (!w->dead && send_caught_up(st) != 0)
			w->dead = true;
		w->live = true;
	}
	pthread_mutex_unlock(&F.hub_mu);
	return PLAT_STREAM_OPEN;
}
