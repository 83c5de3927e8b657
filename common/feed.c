/*
 * feed: the change feed and its hub of watchers (see platform/feed.h).
 *
 * Locks: f->hub_mu guards the watcher list, every watcher's fields and
 * the moves of f->last; rows are sent to live watchers under it, so each
 * stream gets them in revision order. f->mu guards the start's waiters
 * and the count of replays. A plat_feed_loop's mutex guards only its
 * wake-up state.
 *
 * A watcher joins the hub "catching up" at feed position T: from then on
 * the feed buffers the rows it matches (all above T) while a replay
 * thread sends the stored ones, up to T or the head H read just after
 * joining, whichever is higher (so every change committed before the
 * call is replayed before caught_up, even one this process's feed has not
 * read yet); then, under hub_mu, the buffer is flushed skipping what was
 * already sent, the caught_up marker goes out and the watcher turns live.
 * When the buffer overflows during a long replay it is dropped and the
 * replay goes on past it from the store, as often as needed: only memory
 * is bounded, not how far behind a watcher may start.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "feed_internal.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"

#define FEED_TICK_MS 1000            /* the safety-net read */
#define FEED_QUERY_MS 5000
#define REPLAY_QUERY_MS 30000        /* per page, within the deadline */
#define REPLAY_QUEUE_MAX 256         /* messages queued while replaying */
#define BUFFER_MAX_ROWS 10000        /* live rows held while catching up */
#define BUFFER_MAX_BYTES (32u << 20)

struct plat_feed__streams plat_feed__streams = {
	.send = plat_stream_send,
	.ref = plat_stream_ref,
	.unref = plat_stream_unref,
	.on_close = plat_stream_on_close,
	.closed = plat_stream_closed,
	.queued = plat_stream_queued,
	.finish = plat_stream_finish,
};
#define S plat_feed__streams

struct watcher {
	struct watcher *next;
	int refs;                       /* the hub's and the replay's */
	struct plat_feed *f;
	plat_stream *st;
	void *watch;                    /* the server's */
	int64_t sent;                   /* revisions up to here are done */
	bool live;
	bool dead;                      /* ended; waiting for its close */
	bool overflow;                  /* buffer dropped: replay further */
	void **buf;                     /* live rows while catching up */
	size_t nbuf, capbuf, bufbytes;
	/* For the replay thread. */
	int64_t after;
	int64_t fed;
	int64_t deadline_ms;
};

struct plat_feed {
	const struct plat_feed_ops *ops;
	void *arg;
	plat_server *srv;
	struct pg_store *db;            /* NULL: migrated elsewhere */
	struct pg_listener *listener;
	struct plat_feed_loop *loop;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int replays;                    /* replay threads running */

	pthread_mutex_t hub_mu;
	struct watcher *watchers;
	size_t nwatchers;
	atomic_int_fast64_t last;       /* -1 until started */
	atomic_bool healthy;
	bool reported_down;             /* feed thread only */
};

static int64_t
row_revision(const struct plat_feed_ops *ops, const void *row)
{
	int64_t rev;

	memcpy(&rev, (const char *)row + ops->revision_at, sizeof(rev));
	return rev;
}

static size_t
row_size(const struct plat_feed_ops *ops, const void *row)
{
	size_t size;

	memcpy(&size, (const char *)row + ops->size_at, sizeof(size));
	return size;
}

/* ---- pages ---- */

void
plat_feed_page_push(struct plat_feed_page *p, void *row)
{
	if (p->n == p->cap) {
		p->cap = p->cap != 0 ? 2 * p->cap : 16;
		p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
	}
	p->v[p->n++] = row;
}

void
plat_feed_page_free(struct plat_feed_page *p, void (*unref)(void *))
{
	for (size_t i = 0; i < p->n; i++)
		unref(p->v[i]);
	free(p->v);
	p->v = NULL;
	p->n = p->cap = 0;
}

/* ---- the loop ---- */

struct plat_feed_loop {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	int kicked;
	int64_t tick_ms;
	void (*fn)(void *);
	void *arg;
};

static void *
loop_main(void *arg)
{
	struct plat_feed_loop *l = arg;
	struct timespec until;

	pthread_mutex_lock(&l->mu);
	while (!l->stop) {
		until = plat_deadline_ts(l->tick_ms);
		while (!l->stop && !l->kicked &&
		    pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
			;
		if (l->stop)
			break;
		l->kicked = 0;
		pthread_mutex_unlock(&l->mu);
		l->fn(l->arg);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

struct plat_feed_loop *
plat_feed_loop_start(int64_t tick_ms, void (*fn)(void *), void *arg)
{
	struct plat_feed_loop *l = xcalloc(1, sizeof(*l));

	l->tick_ms = tick_ms;
	l->fn = fn;
	l->arg = arg;
	l->kicked = 1;                  /* run at once */
	pthread_mutex_init(&l->mu, NULL);
	plat_cond_init(&l->cv);
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
		log_warn("feed: cannot start a thread", "error",
		    strerror(errno));
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mu);
		free(l);
		return NULL;
	}
	return l;
}

void
plat_feed_loop_kick(struct plat_feed_loop *l)
{
	pthread_mutex_lock(&l->mu);
	l->kicked = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

void
plat_feed_loop_stop(struct plat_feed_loop *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

/* ---- watchers ---- */

static void
watcher_drop_buffer(struct watcher *w)
{
	for (size_t i = 0; i < w->nbuf; i++)
		w->f->ops->unref(w->buf[i]);
	free(w->buf);
	w->buf = NULL;
	w->nbuf = w->capbuf = w->bufbytes = 0;
}

static void
watcher_unref(struct watcher *w)
{
	if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	watcher_drop_buffer(w);
	if (w->watch != NULL && w->f->ops->watch_free != NULL)
		w->f->ops->watch_free(w->watch);
	free(w);
}

/* One row to one watcher; hub_mu held. */
static void
watcher_offer(struct watcher *w, void *row)
{
	const struct plat_feed_ops *ops = w->f->ops;
	int64_t rev = row_revision(ops, row);
	size_t size;

	if (w->dead || !ops->match(w->watch, row))
		return;
	if (w->live) {
		if (rev <= w->sent)
			return;
		if (ops->send(w->st, row) != 0)
			w->dead = true;
		else
			w->sent = rev;
		return;
	}
	if (w->overflow)
		return;
	size = row_size(ops, row);
	if (w->nbuf == BUFFER_MAX_ROWS ||
	    w->bufbytes + size > BUFFER_MAX_BYTES) {
		w->overflow = true;
		watcher_drop_buffer(w);
		return;
	}
	if (w->nbuf == w->capbuf) {
		w->capbuf = w->capbuf != 0 ? 2 * w->capbuf : 16;
		w->buf = xrealloc(w->buf, w->capbuf * sizeof(*w->buf));
	}
	ops->ref(row);
	w->buf[w->nbuf++] = row;
	w->bufbytes += size;
}

/* Fans out rows (in revision order) past f->last: how many moved it.
 * hub_mu held. Rows at or below f->last went out already (a local
 * commit handed over while the thread's read was under way). */
static size_t
hub_fan_out(struct plat_feed *f, void *const *rows, size_t n)
{
	size_t done = 0;

	for (size_t i = 0; i < n; i++) {
		int64_t rev = row_revision(f->ops, rows[i]);

		if (rev <= atomic_load(&f->last))
			continue;
		for (struct watcher *w = f->watchers; w != NULL; w = w->next)
			watcher_offer(w, rows[i]);
		atomic_store(&f->last, rev);
		done++;
	}
	return done;
}

void
plat_feed_committed(struct plat_feed *f, void *const *rows, size_t n)
{
	int64_t last;
	size_t done = 0;
	bool next;

	if (n == 0)
		return;
	pthread_mutex_lock(&f->hub_mu);
	last = atomic_load(&f->last);
	next = last >= 0 && row_revision(f->ops, rows[0]) == last + 1;
	if (next)
		done = hub_fan_out(f, rows, n);
	pthread_mutex_unlock(&f->hub_mu);
	if (!next)
		plat_feed_kick(f);
	else if (done > 0 && f->ops->advanced != NULL)
		f->ops->advanced(f->arg);
}

/* ---- the feed thread ---- */

static void
feed_log(enum log_level level, const struct plat_feed *f, const char *what,
    const char *key, const char *value)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "%s: %s", f->ops->name, what);
	log_write(level, msg, key, value, (char *)NULL);
}

static void
feed_set_healthy(struct plat_feed *f, bool ok, const char *why)
{
	bool was = atomic_exchange(&f->healthy, ok);

	if (ok && !was && f->reported_down) {
		feed_log(LOG_LEVEL_INFO, f, "change feed running again", NULL,
		    NULL);
		f->reported_down = false;
	} else if (!ok && !f->reported_down) {
		feed_log(LOG_LEVEL_WARN, f, "change feed stalled", "error",
		    why);
		f->reported_down = true;
	}
	/* plat_main sets SERVING after start and NOT_SERVING at shutdown:
	 * NOT_SERVING is asserted at every step while down, SERVING only on
	 * the way back up. */
	if (f->ops->health_service == NULL || f->srv == NULL ||
	    plat_server_stopping(f->srv))
		return;
	if (!ok)
		plat_health_set(f->srv, f->ops->health_service,
		    PLAT_HEALTH_NOT_SERVING);
	else if (!was)
		plat_health_set(f->srv, f->ops->health_service,
		    PLAT_HEALTH_SERVING);
}

/* Learns where the feed starts: 0, or -1 (health set). */
static int
feed_begin(struct plat_feed *f)
{
	const struct plat_feed_ops *ops = f->ops;
	char err[256], rev[24];
	enum plat_code code;
	int64_t head;

	if (f->db != NULL && !pg_store_ready(f->db)) {
		code = pg_store_migrate(f->db, err, sizeof(err));
		if (code != PLAT_OK) {
			if (code != PLAT_UNAVAILABLE && !f->reported_down)
				feed_log(LOG_LEVEL_ERROR, f,
				    "database schema not ready", "error", err);
			feed_set_healthy(f, false, err);
			return -1;
		}
		feed_log(LOG_LEVEL_INFO, f, "database schema ready", NULL,
		    NULL);
	}
	if (atomic_load(&f->last) >= 0)
		return 0;
	code = ops->head(f->arg, FEED_QUERY_MS, &head, err, sizeof(err));
	if (code != PLAT_OK) {
		feed_set_healthy(f, false, err);
		return -1;
	}
	if (ops->started != NULL)
		ops->started(f->arg, head);
	pthread_mutex_lock(&f->hub_mu);
	atomic_store(&f->last, head);
	pthread_mutex_unlock(&f->hub_mu);
	/* Watchers that came during the start wait for this. */
	pthread_mutex_lock(&f->mu);
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	snprintf(rev, sizeof(rev), "%" PRId64, head);
	feed_log(LOG_LEVEL_INFO, f, "change feed started", "revision", rev);
	return 0;
}

/* Reads and fans out everything after f->last. */
static void
feed_step(void *arg)
{
	struct plat_feed *f = arg;
	const struct plat_feed_ops *ops = f->ops;
	struct plat_feed_page rows = { 0 };
	enum plat_code code;
	char err[256];
	size_t done, n;

	if (feed_begin(f) != 0)
		return;
	do {
		code = ops->read(f->arg, NULL, atomic_load(&f->last), 0,
		    ops->page, FEED_QUERY_MS, &rows, err, sizeof(err));
		if (code != PLAT_OK) {
			plat_feed_page_free(&rows, ops->unref);
			feed_set_healthy(f, false, err);
			return;
		}
		if (ops->read_rows != NULL && rows.n > 0)
			ops->read_rows(f->arg, rows.v, rows.n);
		pthread_mutex_lock(&f->hub_mu);
		done = hub_fan_out(f, rows.v, rows.n);
		pthread_mutex_unlock(&f->hub_mu);
		if (done > 0 && ops->advanced != NULL)
			ops->advanced(f->arg);
		n = rows.n;
		plat_feed_page_free(&rows, ops->unref);
	} while (n >= (size_t)ops->page);
	feed_set_healthy(f, true, NULL);
}

void
plat_feed_kick(struct plat_feed *f)
{
	if (f != NULL)
		plat_feed_loop_kick(f->loop);
}

static void
on_notify(const char *payload, void *arg)
{
	struct plat_feed *f = arg;

	/* The payload is a revision: nothing to do if it was seen. */
	if (payload != NULL && payload[0] != '\0' &&
	    strtoll(payload, NULL, 10) <= atomic_load(&f->last))
		return;
	plat_feed_kick(f);
}

static void
on_reconnect(void *arg)
{
	plat_feed_kick(arg);
}

struct plat_feed *
plat_feed_start(const struct plat_feed_ops *ops, void *arg,
    const char *conninfo, plat_server *srv, struct pg_store *db)
{
	struct plat_feed *f = xcalloc(1, sizeof(*f));

	f->ops = ops;
	f->arg = arg;
	f->srv = srv;
	f->db = db;
	atomic_store(&f->last, -1);
	atomic_store(&f->healthy, false);
	pthread_mutex_init(&f->mu, NULL);
	pthread_mutex_init(&f->hub_mu, NULL);
	plat_cond_init(&f->cv);
	/* The loop first: a notification may come as soon as we listen. */
	if ((f->loop = plat_feed_loop_start(FEED_TICK_MS, feed_step, f)) ==
	    NULL)
		goto fail;
	if (ops->channel != NULL && (f->listener = pg_listener_start(conninfo,
	    ops->channel, on_notify, on_reconnect, f)) == NULL)
		goto fail;
	return f;
fail:
	plat_feed_free(f);
	return NULL;
}

void
plat_feed_free(struct plat_feed *f)
{
	struct watcher *w, *next;

	if (f == NULL)
		return;
	pg_listener_stop(f->listener);
	f->listener = NULL;
	pthread_mutex_lock(&f->mu);
	f->stop = 1;
	pthread_cond_broadcast(&f->cv);
	/* Replays end at their next send once their stream has ended. */
	while (f->replays > 0)
		pthread_cond_wait(&f->cv, &f->mu);
	pthread_mutex_unlock(&f->mu);
	plat_feed_loop_stop(f->loop);
	f->loop = NULL;
	/* The runtime ended every stream before fini; their close callbacks
	 * unlinked them. Anything left is freed without its stream. */
	pthread_mutex_lock(&f->hub_mu);
	for (w = f->watchers; w != NULL; w = next) {
		next = w->next;
		watcher_unref(w);
	}
	f->watchers = NULL;
	f->nwatchers = 0;
	pthread_mutex_unlock(&f->hub_mu);
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
	pthread_mutex_destroy(&f->hub_mu);
	free(f);
}

int64_t
plat_feed_position(const struct plat_feed *f)
{
	return f != NULL ? atomic_load(&f->last) : -1;
}

bool
plat_feed_healthy(const struct plat_feed *f)
{
	return f != NULL && atomic_load(&f->healthy);
}

size_t
plat_feed_watchers(struct plat_feed *f)
{
	size_t n;

	if (f == NULL)
		return 0;
	pthread_mutex_lock(&f->hub_mu);
	n = f->nwatchers;
	pthread_mutex_unlock(&f->hub_mu);
	return n;
}

/* ---- watch ---- */

static void
watcher_closed(plat_stream *st, void *arg)
{
	struct watcher *w = arg, **pp;
	struct plat_feed *f = w->f;

	pthread_mutex_lock(&f->hub_mu);
	for (pp = &f->watchers; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			f->nwatchers--;
			break;
		}
	w->dead = true;
	pthread_mutex_unlock(&f->hub_mu);
	watcher_unref(w);
	S.unref(st);
}

/* Waits while the stream's queue is long: 0, or -1 once it ended. The
 * replay is paced by its client instead of ending it as too slow. */
static int
replay_pace(plat_stream *st)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	while (S.queued(st) > REPLAY_QUEUE_MAX) {
		if (S.closed(st))
			return -1;
		nanosleep(&ts, NULL);
	}
	return S.closed(st) ? -1 : 0;
}

static int64_t
replay_timeout(const struct watcher *w)
{
	int64_t left = w->deadline_ms == INT64_MAX ? INT64_MAX :
	    w->deadline_ms - plat_now_ms();

	if (left < 1)
		left = 1;
	return left < REPLAY_QUERY_MS ? left : REPLAY_QUERY_MS;
}

/* Sends the stored rows in (*from, upto], moving *from: 0, -1 when the
 * stream ended, or a status to end it with (err set). */
static int
replay_range(struct watcher *w, int64_t *from, int64_t upto, char *err,
    size_t errlen)
{
	const struct plat_feed_ops *ops = w->f->ops;
	struct plat_feed_page rows = { 0 };
	enum plat_code code;
	size_t n;

	while (*from < upto) {
		code = ops->read(w->f->arg, w->watch, *from, upto, ops->page,
		    replay_timeout(w), &rows, err, errlen);
		if (code != PLAT_OK) {
			plat_feed_page_free(&rows, ops->unref);
			return code;
		}
		for (size_t i = 0; i < rows.n; i++) {
			if (!ops->match(w->watch, rows.v[i]))
				continue;
			if (replay_pace(w->st) != 0 ||
			    ops->send(w->st, rows.v[i]) != 0) {
				plat_feed_page_free(&rows, ops->unref);
				return -1;
			}
		}
		n = rows.n;
		if (n > 0)
			*from = row_revision(ops, rows.v[n - 1]);
		plat_feed_page_free(&rows, ops->unref);
		if (n < (size_t)ops->page)
			break;
	}
	return 0;
}

/* Replays, then turns the watcher live: 0, -1 when the stream ended, or
 * a status. */
static int
replay(struct watcher *w, char *err, size_t errlen)
{
	struct plat_feed *f = w->f;
	const struct plat_feed_ops *ops = f->ops;
	enum plat_code code;
	int64_t from = w->after, head, upto;
	int rc;

	code = ops->head(f->arg, replay_timeout(w), &head, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (from < 0)
		from = head;
	upto = head > w->fed ? head : w->fed;
	for (;;) {
		if ((rc = replay_range(w, &from, upto, err, errlen)) != 0)
			return rc;
		if (from < upto)
			from = upto;
		pthread_mutex_lock(&f->hub_mu);
		if (w->dead) {
			pthread_mutex_unlock(&f->hub_mu);
			return -1;
		}
		if (!w->overflow)
			break;
		/* Live rows were dropped: they are stored; read on up to
		 * where the feed is now, buffering from here. */
		w->overflow = false;
		upto = atomic_load(&f->last);
		pthread_mutex_unlock(&f->hub_mu);
	}
	w->sent = from;
	for (size_t i = 0; i < w->nbuf && !w->dead; i++) {
		int64_t rev = row_revision(ops, w->buf[i]);

		if (rev <= w->sent)
			continue;
		if (ops->send(w->st, w->buf[i]) != 0)
			w->dead = true;
		else
			w->sent = rev;
	}
	watcher_drop_buffer(w);
	if (!w->dead && ops->caught_up != NULL &&
	    S.send(w->st, ops->caught_up) != 0)
		w->dead = true;
	w->live = true;
	pthread_mutex_unlock(&f->hub_mu);
	return 0;
}

static void *
replay_main(void *arg)
{
	struct watcher *w = arg;
	struct plat_feed *f = w->f;
	plat_stream *st = w->st;
	char err[256];
	int rc;

	if ((rc = replay(w, err, sizeof(err))) > 0)
		S.finish(st, rc, err);
	watcher_unref(w);
	S.unref(st);
	pthread_mutex_lock(&f->mu);
	f->replays--;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* Whether the feed knows where it starts, waiting for it (a watcher
 * arriving just after the server started) up to ops->start_wait_ms
 * within the deadline. */
static bool
feed_wait_started(struct plat_feed *f, int64_t deadline_ms)
{
	int64_t until;

	if (atomic_load(&f->last) >= 0 || f->ops->start_wait_ms <= 0)
		return atomic_load(&f->last) >= 0;
	until = plat_now_ms() + f->ops->start_wait_ms;
	if (until > deadline_ms)
		until = deadline_ms;
	pthread_mutex_lock(&f->mu);
	while (atomic_load(&f->last) < 0 && !f->stop &&
	    plat_now_ms() < until) {
		struct timespec ts = plat_deadline_ts(until - plat_now_ms());

		(void)pthread_cond_timedwait(&f->cv, &f->mu, &ts);
	}
	pthread_mutex_unlock(&f->mu);
	return atomic_load(&f->last) >= 0;
}

int
plat_feed__watch(struct plat_feed *f, plat_stream *st, void *watch,
    int64_t after, int64_t deadline_ms, char *err, size_t errlen)
{
	pthread_attr_t attr;
	pthread_t thread;
	struct watcher *w;
	int rc;

	if (!feed_wait_started(f, deadline_ms)) {
		if (watch != NULL && f->ops->watch_free != NULL)
			f->ops->watch_free(watch);
		snprintf(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	w = xcalloc(1, sizeof(*w));
	w->refs = 2;
	w->f = f;
	w->st = st;
	w->watch = watch;
	w->after = after;
	w->deadline_ms = deadline_ms;
	S.ref(st);                      /* the hub's, dropped at close */
	S.ref(st);                      /* the replay's */
	S.on_close(st, watcher_closed, w);

	/* From here on the feed buffers every row above fed for us. */
	pthread_mutex_lock(&f->hub_mu);
	w->fed = atomic_load(&f->last);
	w->next = f->watchers;
	f->watchers = w;
	f->nwatchers++;
	pthread_mutex_unlock(&f->hub_mu);

	/* The replay may be long and paced by the client: a thread of its
	 * own keeps it off the runtime's pollers and the feed thread. */
	pthread_mutex_lock(&f->mu);
	f->replays++;
	pthread_mutex_unlock(&f->mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, replay_main, w);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_lock(&f->mu);
		f->replays--;
		pthread_mutex_unlock(&f->mu);
		watcher_unref(w);
		S.unref(st);
		/* The close callback drops the hub's references. */
		snprintf(err, errlen, "cannot start a replay thread");
		return PLAT_RESOURCE_EXHAUSTED;
	}
	return PLAT_STREAM_OPEN;
}

int
plat_feed_watch(struct plat_feed *f, plat_ctx *ctx, plat_stream *st,
    void *watch, int64_t after)
{
	int64_t left = plat_ctx_deadline_left_ms(ctx);
	char err[256];
	int rc;

	rc = plat_feed__watch(f, st, watch, after, left == INT64_MAX ?
	    INT64_MAX : plat_now_ms() + left, err, sizeof(err));
	if (rc != PLAT_STREAM_OPEN)
		return plat_error(ctx, rc, "%s", err);
	return rc;
}
