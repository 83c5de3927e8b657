/*
 * feed: the live stream and the subscriber hub (see feed.h).
 *
 * Locks: F.mu guards the thread's wake-up state; F.hub_mu guards the
 * subscriber list, every subscriber's fields and the moves of F.last.
 * Events are sent to live subscribers under hub_mu, so each stream gets
 * them in sequence order.
 *
 * A Subscribe joins the hub "catching up" at feed position T: from then
 * on the feed buffers the subscriber's live events (all above T) while a
 * replay thread sends the stored ones, up to T or the head H read just
 * after joining, whichever is higher (so every event committed before the
 * call is replayed before caught_up, even one this replica's feed has not
 * read yet); then, under hub_mu, the buffer is flushed skipping what was
 * already sent, the caught_up marker goes out and the subscriber turns
 * live. When the buffer overflows during a long replay it is dropped and
 * the replay goes on past it from the table, as often as needed: only
 * memory is bounded, not how far behind a subscriber may start.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "feed.h"
#include "groups.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "subject.h"

#define FEED_TICK_MS 1000            /* the safety-net read */
#define FEED_BATCH 500               /* rows per read of the table */
#define FEED_QUERY_MS 5000
#define FEED_START_WAIT_MS 5000
#define REPLAY_QUERY_MS 30000
#define REPLAY_QUEUE_MAX 256         /* messages queued while replaying */
#define SUB_BUFFER_MAX_ROWS 10000    /* live events held while catching up */
#define SUB_BUFFER_MAX_BYTES (32u << 20)

struct sub {
	struct sub *next;
	int refs;                       /* the hub's and the replay's */
	plat_stream *st;
	char **subjects;
	size_t nsubjects;
	char *regexes;                  /* JSON, for the replay */
	int64_t min_offset;
	int64_t sent;                   /* sequences up to here are done */
	bool live;
	bool dead;                      /* ended; waiting for its close */
	bool overflow;                  /* buffer dropped: replay further */
	struct ev_row **buf;            /* live events while catching up */
	size_t nbuf, capbuf, bufbytes;
	/* For the replay thread. */
	int64_t after;
	int64_t fed;
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
	int replays;                    /* replay threads running */

	pthread_mutex_t hub_mu;
	struct sub *subs;
	size_t nsubs;
	atomic_int_fast64_t last;       /* -1 until started */
	atomic_bool healthy;
	bool reported_down;             /* feed thread only */
} F = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.hub_mu = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- sending ---- */

int
feed_send(plat_stream *st, const struct ev_row *row, int delivery_count)
{
	Platform__Event__V1__SubscribeResponse resp =
	    PLATFORM__EVENT__V1__SUBSCRIBE_RESPONSE__INIT;
	Platform__Event__V1__StoredEvent e;

	ev_row_fill(&e, row);
	resp.event = &e;
	resp.delivery_count = delivery_count;
	return plat_stream_send(st, &resp.base);
}

static int
send_caught_up(plat_stream *st)
{
	Platform__Event__V1__SubscribeResponse resp =
	    PLATFORM__EVENT__V1__SUBSCRIBE_RESPONSE__INIT;

	resp.caught_up = 1;
	return plat_stream_send(st, &resp.base);
}

char *
feed_regexes_json(const char *const *subjects, size_t n)
{
	json_t *arr = json_array();
	char *s;

	for (size_t i = 0; i < n; i++) {
		char *re = ev_subject_regex(subjects[i]);

		json_array_append_new(arr, json_string(re));
		free(re);
	}
	if ((s = json_dumps(arr, JSON_COMPACT)) == NULL)
		abort();
	json_decref(arr);
	return s;
}

static bool
sub_matches(const struct sub *s, const struct ev_row *row)
{
	if (row->offset < s->min_offset)
		return false;
	for (size_t i = 0; i < s->nsubjects; i++)
		if (ev_subject_match(s->subjects[i], row->topic))
			return true;
	return false;
}

static void
sub_drop_buffer(struct sub *s)
{
	for (size_t i = 0; i < s->nbuf; i++)
		ev_row_unref(s->buf[i]);
	free(s->buf);
	s->buf = NULL;
	s->nbuf = s->capbuf = s->bufbytes = 0;
}

static void
sub_unref(struct sub *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	sub_drop_buffer(s);
	for (size_t i = 0; i < s->nsubjects; i++)
		free(s->subjects[i]);
	free(s->subjects);
	free(s->regexes);
	free(s);
}

/* One event to one subscriber; hub_mu held. */
static void
sub_offer(struct sub *s, struct ev_row *row)
{
	if (s->dead || !sub_matches(s, row))
		return;
	if (s->live) {
		if (row->seq <= s->sent)
			return;
		if (feed_send(s->st, row, 0) != 0)
			s->dead = true;
		else
			s->sent = row->seq;
		return;
	}
	if (s->overflow)
		return;
	if (s->nbuf == SUB_BUFFER_MAX_ROWS ||
	    s->bufbytes + row->size > SUB_BUFFER_MAX_BYTES) {
		s->overflow = true;
		sub_drop_buffer(s);
		return;
	}
	if (s->nbuf == s->capbuf) {
		s->capbuf = s->capbuf != 0 ? 2 * s->capbuf : 16;
		s->buf = xrealloc(s->buf, s->capbuf * sizeof(*s->buf));
	}
	s->buf[s->nbuf++] = ev_row_ref(row);
	s->bufbytes += row->size;
}

/* Fans out rows (in sequence order) past F.last; hub_mu held. */
static size_t
hub_fan_out(struct ev_row *const *rows, size_t n)
{
	size_t done = 0;

	for (size_t i = 0; i < n; i++) {
		if (rows[i]->seq <= atomic_load(&F.last))
			continue;
		for (struct sub *s = F.subs; s != NULL; s = s->next)
			sub_offer(s, rows[i]);
		atomic_store(&F.last, rows[i]->seq);
		done++;
	}
	return done;
}

/* ---- the feed thread ---- */

static void
feed_set_healthy(bool ok, const char *why)
{
	bool was = atomic_exchange(&F.healthy, ok);

	if (ok && !was && F.reported_down) {
		log_info("event: feed running again");
		F.reported_down = false;
	} else if (!ok && !F.reported_down) {
		log_warn("event: feed stalled", "error", why);
		F.reported_down = true;
	}
	if (plat_server_stopping(F.srv))
		return;
	if (!ok)
		plat_health_set(F.srv, "platform.event.v1.Event",
		    PLAT_HEALTH_NOT_SERVING);
	else if (!was)
		plat_health_set(F.srv, "platform.event.v1.Event",
		    PLAT_HEALTH_SERVING);
}

/* Reads and fans out everything after F.last. */
static void
feed_step(void)
{
	char err[256], seq[24];
	struct ev_rows rows;
	enum plat_code code;
	int64_t head;
	size_t done;

	if (!store_ready(F.store)) {
		code = store_migrate(F.store, err, sizeof(err));
		if (code != PLAT_OK) {
			if (code != PLAT_UNAVAILABLE && !F.reported_down)
				log_error("event: database schema not ready",
				    "error", err);
			feed_set_healthy(false, err);
			return;
		}
		log_info("event: database schema ready");
	}
	if (atomic_load(&F.last) < 0) {
		code = store_head(F.store, FEED_QUERY_MS, &head, err,
		    sizeof(err));
		if (code != PLAT_OK) {
			feed_set_healthy(false, err);
			return;
		}
		pthread_mutex_lock(&F.hub_mu);
		atomic_store(&F.last, head);
		pthread_mutex_unlock(&F.hub_mu);
		snprintf(seq, sizeof(seq), "%" PRId64, head);
		log_info("event: feed started", "sequence", seq);
	}
	for (;;) {
		code = store_read(F.store, atomic_load(&F.last), 0, NULL,
		    FEED_BATCH, FEED_QUERY_MS, &rows, err, sizeof(err));
		if (code != PLAT_OK) {
			feed_set_healthy(false, err);
			return;
		}
		pthread_mutex_lock(&F.hub_mu);
		done = hub_fan_out(rows.v, rows.n);
		pthread_mutex_unlock(&F.hub_mu);
		if (done > 0)
			groups_kick();
		if (rows.n < FEED_BATCH) {
			ev_rows_free(&rows);
			break;
		}
		ev_rows_free(&rows);
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

void
feed_committed(struct ev_row **rows, size_t n)
{
	bool next;

	if (n == 0)
		return;
	/* Only a batch that follows the last event fanned out can go out
	 * now; one after a gap (another replica's batch in between) waits
	 * for the thread to read the gap from the table. */
	pthread_mutex_lock(&F.hub_mu);
	next = atomic_load(&F.last) >= 0 &&
	    rows[0]->seq == atomic_load(&F.last) + 1;
	if (next)
		hub_fan_out(rows, n);
	pthread_mutex_unlock(&F.hub_mu);
	for (size_t i = 0; i < n; i++)
		ev_row_unref(rows[i]);
	if (next)
		groups_kick();
	else
		feed_kick();
}

static void
on_notify(const char *payload, void *arg)
{
	(void)arg;
	/* The payload is a batch's last sequence: nothing to do if seen. */
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
	F.replays = 0;
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
	struct sub *s, *next;

	pg_listener_stop(F.listener);
	F.listener = NULL;
	pthread_mutex_lock(&F.mu);
	F.stop = 1;
	pthread_cond_broadcast(&F.cv);
	/* Replays end at their next send once their stream has ended. */
	while (F.replays > 0)
		pthread_cond_wait(&F.cv, &F.mu);
	pthread_mutex_unlock(&F.mu);
	if (F.running) {
		pthread_join(F.thread, NULL);
		F.running = false;
	}
	pthread_cond_destroy(&F.cv);
	pthread_mutex_lock(&F.hub_mu);
	for (s = F.subs; s != NULL; s = next) {
		next = s->next;
		sub_unref(s);
	}
	F.subs = NULL;
	F.nsubs = 0;
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
feed_subscribers(void)
{
	size_t n;

	pthread_mutex_lock(&F.hub_mu);
	n = F.nsubs;
	pthread_mutex_unlock(&F.hub_mu);
	return n;
}

/* ---- Subscribe ---- */

static void
sub_closed(plat_stream *st, void *arg)
{
	struct sub *s = arg, **pp;

	pthread_mutex_lock(&F.hub_mu);
	for (pp = &F.subs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			F.nsubs--;
			break;
		}
	s->dead = true;
	pthread_mutex_unlock(&F.hub_mu);
	sub_unref(s);
	plat_stream_unref(st);
}

/* Waits while the stream's queue is long: 0, or -1 once it ended. */
static int
replay_pace(plat_stream *st)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	while (plat_stream_queued(st) > REPLAY_QUEUE_MAX) {
		if (plat_stream_closed(st))
			return -1;
		nanosleep(&ts, NULL);
	}
	return plat_stream_closed(st) ? -1 : 0;
}

/* Sends the stored events in (from, upto]: 0, -1 when the stream ended,
 * or a status to end it with (err set). */
static int
replay_range(struct sub *s, int64_t from, int64_t upto, char *err,
    size_t errlen)
{
	struct ev_rows rows;
	enum plat_code code;
	size_t n;

	while (from < upto) {
		code = store_read(F.store, from, upto, s->regexes, FEED_BATCH,
		    REPLAY_QUERY_MS, &rows, err, errlen);
		if (code != PLAT_OK)
			return code;
		for (size_t i = 0; i < rows.n; i++) {
			if (rows.v[i]->offset < s->min_offset)
				continue;
			if (replay_pace(s->st) != 0 ||
			    feed_send(s->st, rows.v[i], 0) != 0) {
				ev_rows_free(&rows);
				return -1;
			}
		}
		n = rows.n;
		if (n > 0)
			from = rows.v[n - 1]->seq;
		ev_rows_free(&rows);
		if (n < FEED_BATCH)
			break;
	}
	return 0;
}

/* Replays, then turns the subscriber live: 0, -1 when the stream ended,
 * or a status. */
static int
replay(struct sub *s, char *err, size_t errlen)
{
	enum plat_code code;
	int64_t from = s->after, head, upto;
	int rc;

	code = store_head(F.store, REPLAY_QUERY_MS, &head, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (from < 0)
		from = head;
	upto = head > s->fed ? head : s->fed;
	for (;;) {
		if ((rc = replay_range(s, from, upto, err, errlen)) != 0)
			return rc;
		if (from < upto)
			from = upto;
		pthread_mutex_lock(&F.hub_mu);
		if (s->dead) {
			pthread_mutex_unlock(&F.hub_mu);
			return -1;
		}
		if (!s->overflow)
			break;
		/* Live events were dropped: they are stored; read on up to
		 * where the feed is now, buffering from here. */
		s->overflow = false;
		upto = atomic_load(&F.last);
		pthread_mutex_unlock(&F.hub_mu);
	}
	s->sent = from;
	for (size_t i = 0; i < s->nbuf && !s->dead; i++) {
		if (s->buf[i]->seq <= s->sent)
			continue;
		if (feed_send(s->st, s->buf[i], 0) != 0)
			s->dead = true;
		else
			s->sent = s->buf[i]->seq;
	}
	sub_drop_buffer(s);
	if (!s->dead && send_caught_up(s->st) != 0)
		s->dead = true;
	s->live = true;
	pthread_mutex_unlock(&F.hub_mu);
	return 0;
}

static void *
replay_main(void *arg)
{
	struct sub *s = arg;
	plat_stream *st = s->st;
	char err[256];
	int rc;

	if ((rc = replay(s, err, sizeof(err))) > 0)
		plat_stream_finish(st, rc, err);
	sub_unref(s);
	plat_stream_unref(st);
	pthread_mutex_lock(&F.mu);
	F.replays--;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

int
feed_subscribe(plat_ctx *ctx, plat_stream *st, const char *const *subjects,
    size_t n, int64_t after, int64_t min_offset)
{
	pthread_attr_t attr;
	pthread_t thread;
	struct sub *s;
	int rc;

	/* Just after start the feed may not have read the head yet: give it
	 * a moment rather than failing a call that came a little early. */
	for (int i = 0; i < FEED_START_WAIT_MS / 10 &&
	    atomic_load(&F.last) < 0 && plat_ctx_deadline_left_ms(ctx) > 10;
	    i++)
		nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
	if (atomic_load(&F.last) < 0)
		return plat_error(ctx, PLAT_UNAVAILABLE, "%s",
		    pg_code_message(PLAT_UNAVAILABLE));
	s = xcalloc(1, sizeof(*s));
	s->refs = 2;
	s->st = st;
	s->nsubjects = n;
	s->subjects = xcalloc(n, sizeof(*s->subjects));
	for (size_t i = 0; i < n; i++)
		s->subjects[i] = xstrdup(subjects[i]);
	s->regexes = feed_regexes_json(subjects, n);
	s->min_offset = min_offset;
	s->after = after;
	plat_stream_ref(st);            /* the hub's, dropped at close */
	plat_stream_ref(st);            /* the replay's */
	plat_stream_on_close(st, sub_closed, s);

	/* From here on the feed buffers every event above fed for us. */
	pthread_mutex_lock(&F.hub_mu);
	s->fed = atomic_load(&F.last);
	s->next = F.subs;
	F.subs = s;
	F.nsubs++;
	pthread_mutex_unlock(&F.hub_mu);

	/* The replay may be long and paced by the client: a thread of its
	 * own keeps it off the runtime's pollers. */
	pthread_mutex_lock(&F.mu);
	F.replays++;
	pthread_mutex_unlock(&F.mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, replay_main, s);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_lock(&F.mu);
		F.replays--;
		pthread_mutex_unlock(&F.mu);
		sub_unref(s);
		plat_stream_unref(st);
		/* The close callback drops the hub's references. */
		return plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "cannot start a replay thread");
	}
	return PLAT_STREAM_OPEN;
}
