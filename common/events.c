/*
 * events: the platform's own events, published to event-srv without ever
 * blocking a request. See platform/events.h.
 *
 * The buffer is a FIFO of malloc'd events under one mutex. The sender
 * takes up to EV_BATCH_MAX from the head, publishes them with one
 * PublishBatch and only then removes them, so an event-srv outage loses
 * nothing that fits in the buffer. Idempotency keys are
 * "<source>/<boot>/<seq>", boot random per process: unique per event, and
 * the same on every retry of it.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/clock.h"
#include "platform/event/v1/event.pb-c.h"
#include "platform/events.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/xalloc.h"

#define EV_MAX_EVENTS_DEFAULT 10000
#define EV_MAX_BYTES_DEFAULT (8u << 20)
#define EV_BATCH_MAX 500
#define EV_CALL_MS 3000
#define EV_BACKOFF_MIN_MS 250
#define EV_BACKOFF_MAX_MS 5000
#define EV_METADATA_MAX 16

#define M_PUBLISH_BATCH "/platform.event.v1.Event/PublishBatch"

typedef Platform__Event__V1__PublishRequest pb_publish;
typedef Platform__Event__V1__PublishRequest__MetadataEntry pb_md;

struct ev {
	struct ev *next;
	size_t bytes;
	pb_publish msg;
	pb_md md[EV_METADATA_MAX];
	pb_md *mdp[EV_METADATA_MAX];
	char key[96];
};

struct plat_events {
	char *source;
	uint64_t boot;                   /* tells this process's keys apart */
	size_t max_events, max_bytes;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ev *head, *tail;
	size_t n, bytes;
	uint64_t seq;
	uint64_t published, dropped;
	uint64_t send_failures;          /* batches event-srv did not take */
	uint64_t dropped_in_outage;      /* since the last log line */
	bool failing;
	bool idle;                       /* the sender waits for events */
	int stopping;
	int64_t flush_deadline;          /* plat_now_ms; while stopping */

	plat_client *client;
	pthread_t thread;
	bool running;
};

static void
ev_free(struct ev *e)
{
	if (e == NULL)
		return;
	free(e->msg.topic);
	free(e->msg.type);
	free(e->msg.data.data);
	for (size_t i = 0; i < e->msg.n_metadata; i++) {
		free(e->md[i].key);
		free(e->md[i].value);
	}
	free(e);
}

static double
gauge_published(void *arg)
{
	struct plat_events_stats st;

	plat_events_stats(arg, &st);
	return (double)st.published;
}

static double
gauge_dropped(void *arg)
{
	struct plat_events_stats st;

	plat_events_stats(arg, &st);
	return (double)st.dropped;
}

static double
gauge_buffered(void *arg)
{
	struct plat_events_stats st;

	plat_events_stats(arg, &st);
	return (double)st.buffered;
}

static double
gauge_send_failures(void *arg)
{
	struct plat_events_stats st;

	plat_events_stats(arg, &st);
	return (double)st.send_failures;
}

static uint64_t
random_u64(void)
{
	uint64_t v = 0;
	FILE *f = fopen("/dev/urandom", "rb");

	if (f == NULL || fread(&v, sizeof(v), 1, f) != 1)
		v = (uint64_t)plat_wall_ms() ^ ((uint64_t)getpid() << 32);
	if (f != NULL)
		fclose(f);
	return v;
}

plat_events *
plat_events_new(const struct plat_events_opts *opts, struct metrics *metrics)
{
	plat_events *ev = xcalloc(1, sizeof(*ev));

	ev->source = xstrdup(opts->source != NULL ? opts->source : "");
	ev->boot = random_u64();
	ev->max_events = opts->max_events != 0 ? opts->max_events :
	    EV_MAX_EVENTS_DEFAULT;
	ev->max_bytes = opts->max_bytes != 0 ? opts->max_bytes :
	    EV_MAX_BYTES_DEFAULT;
	pthread_mutex_init(&ev->mu, NULL);
	plat_cond_init(&ev->cv);
	if (metrics != NULL) {
		metrics_counter_fn(metrics, "platform_events_published_total",
		    "Platform events event-srv stored.", gauge_published, ev);
		metrics_counter_fn(metrics, "platform_events_dropped_total",
		    "Platform events dropped: the buffer was full (event-srv "
		    "away) or the server was stopping.", gauge_dropped, ev);
		metrics_counter_fn(metrics,
		    "platform_events_send_failures_total",
		    "Batches of platform events event-srv did not take (away "
		    "or failing); they stay buffered and are sent again.",
		    gauge_send_failures, ev);
		metrics_gauge_fn(metrics, "platform_events_buffered",
		    "Platform events waiting to be sent.", gauge_buffered, ev);
	}
	return ev;
}

/* Counts a dropped event; mu held. */
static void
drop_locked(plat_events *ev)
{
	ev->dropped++;
	if (ev->dropped_in_outage++ == 0)
		log_warn("platform events: buffer full, dropping events until "
		    "event-srv takes them");
}

void
plat_event_emit(plat_events *ev, const char *topic, const char *type,
    const char *data, const char *const *metadata)
{
	struct ev *e;
	size_t nmd = 0, dlen = data != NULL ? strlen(data) : 0;

	if (ev == NULL)
		return;
	e = xcalloc(1, sizeof(*e));
	platform__event__v1__publish_request__init(&e->msg);
	e->msg.topic = xstrdup(topic);
	e->msg.type = xstrdup(type);
	e->msg.source = ev->source;
	if (dlen > 0) {
		e->msg.data.data = xcalloc(1, dlen);
		memcpy(e->msg.data.data, data, dlen);
		e->msg.data.len = dlen;
	}
	for (; metadata != NULL && metadata[2 * nmd] != NULL &&
	    nmd < EV_METADATA_MAX; nmd++) {
		platform__event__v1__publish_request__metadata_entry__init(
		    &e->md[nmd]);
		e->md[nmd].key = xstrdup(metadata[2 * nmd]);
		e->md[nmd].value = xstrdup(metadata[2 * nmd + 1]);
		e->mdp[nmd] = &e->md[nmd];
	}
	e->msg.metadata = nmd > 0 ? e->mdp : NULL;
	e->msg.n_metadata = nmd;
	e->msg.idempotency_key = e->key;
	e->bytes = sizeof(*e) + dlen + strlen(topic) + strlen(type);

	pthread_mutex_lock(&ev->mu);
	if (ev->stopping || ev->n >= ev->max_events ||
	    ev->bytes + e->bytes > ev->max_bytes) {
		drop_locked(ev);
		pthread_mutex_unlock(&ev->mu);
		ev_free(e);
		return;
	}
	snprintf(e->key, sizeof(e->key), "%.60s/%016llx/%llu", ev->source,
	    (unsigned long long)ev->boot,
	    (unsigned long long)++ev->seq);
	if (ev->tail != NULL)
		ev->tail->next = e;
	else
		ev->head = e;
	ev->tail = e;
	ev->n++;
	ev->bytes += e->bytes;
	/* Only an idle sender needs waking: a busy one takes this event with
	 * the next batch, one backing off tries again when its wait ends. */
	if (ev->idle)
		pthread_cond_signal(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
}

void
plat_event_emit_json(plat_events *ev, const char *topic, const char *type,
    json_t *data, const char *const *metadata)
{
	char *text;

	if (ev == NULL || data == NULL) {
		json_decref(data);
		return;
	}
	text = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	if (text == NULL)
		abort();        /* out of memory */
	plat_event_emit(ev, topic, type, text, metadata);
	free(text);
}

/* Publishes the first n buffered events (they stay buffered meanwhile:
 * only the sender removes events). */
static int
send_batch(plat_events *ev, struct ev *first, size_t n, int deadline_ms,
    char *err, size_t errlen)
{
	Platform__Event__V1__PublishBatchRequest req =
	    PLATFORM__EVENT__V1__PUBLISH_BATCH_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	pb_publish **msgs = xcalloc(n, sizeof(*msgs));
	struct plat_call_opts co = {
		.deadline_ms = deadline_ms,
		.idempotent = 1,        /* idempotency keys make it so */
	};
	struct ev *e = first;
	int code;

	for (size_t i = 0; i < n; i++, e = e->next)
		msgs[i] = &e->msg;
	req.events = msgs;
	req.n_events = n;
	code = plat_client_call(ev->client, "event", M_PUBLISH_BATCH,
	    &req.base, &platform__event__v1__publish_batch_response__descriptor,
	    &resp, &co, err, errlen);
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	free(msgs);
	return code;
}

/* Removes the first n events after they were published. */
static void
remove_sent(plat_events *ev, size_t n)
{
	struct ev *gone = NULL, *e;

	pthread_mutex_lock(&ev->mu);
	for (size_t i = 0; i < n && ev->head != NULL; i++) {
		e = ev->head;
		ev->head = e->next;
		ev->n--;
		ev->bytes -= e->bytes;
		e->next = gone;
		gone = e;
	}
	if (ev->head == NULL)
		ev->tail = NULL;
	ev->published += n;
	if (ev->failing) {
		char dropped[24];

		snprintf(dropped, sizeof(dropped), "%llu",
		    (unsigned long long)ev->dropped_in_outage);
		log_info("platform events: event-srv takes events again",
		    "dropped", dropped);
		ev->failing = false;
		ev->dropped_in_outage = 0;
	}
	pthread_mutex_unlock(&ev->mu);
	while ((e = gone) != NULL) {
		gone = e->next;
		ev_free(e);
	}
}

static void *
sender_main(void *arg)
{
	plat_events *ev = arg;
	int backoff = EV_BACKOFF_MIN_MS;
	char err[256];

	pthread_mutex_lock(&ev->mu);
	for (;;) {
		struct ev *first;
		size_t n;
		int left, code;

		ev->idle = true;
		while (ev->head == NULL && !ev->stopping)
			pthread_cond_wait(&ev->cv, &ev->mu);
		ev->idle = false;
		left = EV_CALL_MS;
		if (ev->stopping) {
			int64_t l = ev->flush_deadline - plat_now_ms();

			if (ev->head == NULL || l <= 0)
				break;
			left = l < left ? (int)l : left;
		}
		first = ev->head;
		n = ev->n < EV_BATCH_MAX ? ev->n : EV_BATCH_MAX;
		pthread_mutex_unlock(&ev->mu);

		code = send_batch(ev, first, n, left, err, sizeof(err));
		if (code == 0) {
			remove_sent(ev, n);
			backoff = EV_BACKOFF_MIN_MS;
			pthread_mutex_lock(&ev->mu);
			continue;
		}
		pthread_mutex_lock(&ev->mu);
		if (!ev->failing) {
			log_warn("platform events: cannot publish to event-srv; "
			    "holding events", "code", plat_status_name(code),
			    "error", err);
			ev->failing = true;
		}
		/* Counted after the log line: whoever sees the count sees it
		 * logged. */
		ev->send_failures++;
		if (ev->stopping)
			break;
		/* Wait out the backoff unless stop comes first. */
		(void)plat_cond_wait_ms(&ev->cv, &ev->mu, backoff,
		    &ev->stopping);
		backoff = backoff * 2 > EV_BACKOFF_MAX_MS ? EV_BACKOFF_MAX_MS :
		    backoff * 2;
	}
	pthread_mutex_unlock(&ev->mu);
	return NULL;
}

void
plat_events_connect(plat_events *ev, plat_client *client)
{
	if (ev == NULL || client == NULL || ev->running)
		return;
	ev->client = client;
	if (pthread_create(&ev->thread, NULL, sender_main, ev) != 0) {
		log_error("platform events: cannot start the sender thread");
		return;
	}
	ev->running = true;
}

void
plat_events_stop(plat_events *ev, int flush_ms)
{
	if (ev == NULL)
		return;
	pthread_mutex_lock(&ev->mu);
	ev->stopping = 1;
	ev->flush_deadline = plat_now_ms() + flush_ms;
	pthread_cond_broadcast(&ev->cv);
	pthread_mutex_unlock(&ev->mu);
	if (ev->running) {
		pthread_join(ev->thread, NULL);
		ev->running = false;
	}
}

void
plat_events_free(plat_events *ev)
{
	struct ev *e;
	char n[24];

	if (ev == NULL)
		return;
	plat_events_stop(ev, 0);
	if (ev->n > 0 && ev->client != NULL) {
		snprintf(n, sizeof(n), "%zu", ev->n);
		log_warn("platform events: dropped at exit, never sent",
		    "events", n);
	}
	ev->dropped += ev->n;
	while ((e = ev->head) != NULL) {
		ev->head = e->next;
		ev_free(e);
	}
	pthread_cond_destroy(&ev->cv);
	pthread_mutex_destroy(&ev->mu);
	free(ev->source);
	free(ev);
}

void
plat_events_stats(plat_events *ev, struct plat_events_stats *out)
{
	pthread_mutex_lock(&ev->mu);
	out->published = ev->published;
	out->dropped = ev->dropped;
	out->send_failures = ev->send_failures;
	out->buffered = ev->n;
	pthread_mutex_unlock(&ev->mu);
}
