/*
 * events: the platform's own events, published to event-srv without ever
 * blocking a request. See platform/events.h.
 *
 * The buffer and its sender are an outbox (platform/outbox.h): each batch
 * is one PublishBatch, removed only once event-srv took it, so an
 * event-srv outage loses nothing that fits in the buffer. Idempotency
 * keys are "<source>/<boot>/<seq>", boot random per process: unique per
 * event, and the same on every retry of it.
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
#include "platform/outbox.h"
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
	struct outbox_item item;        /* first */
	pb_publish msg;
	pb_md md[EV_METADATA_MAX];
	pb_md *mdp[EV_METADATA_MAX];
	char key[96];
};

struct plat_events {
	char *source;
	uint64_t boot;                   /* tells this process's keys apart */
	struct outbox *out;
	plat_client *client;
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

static int send_batch(void *arg, struct outbox_item *first, size_t n,
    int deadline_ms, char *err, size_t errlen);

static void
free_item(void *arg, struct outbox_item *it)
{
	(void)arg;
	ev_free((struct ev *)it);
}

/* The idempotency key, as the outbox takes the event. */
static void
accepted(void *arg, struct outbox_item *it, uint64_t seq)
{
	plat_events *ev = arg;
	struct ev *e = (struct ev *)it;

	snprintf(e->key, sizeof(e->key), "%.60s/%016llx/%llu", ev->source,
	    (unsigned long long)ev->boot, (unsigned long long)seq);
}

static const struct outbox_ops events_ops = {
	.what = "platform events",
	.to = "event-srv",
	.send = send_batch,
	.free_item = free_item,
	.accepted = accepted,
};

plat_events *
plat_events_new(const struct plat_events_opts *opts, struct metrics *metrics)
{
	plat_events *ev = xcalloc(1, sizeof(*ev));
	struct outbox_limits lim = {
		.max_items = opts->max_events != 0 ? opts->max_events :
		    EV_MAX_EVENTS_DEFAULT,
		.max_bytes = opts->max_bytes != 0 ? opts->max_bytes :
		    EV_MAX_BYTES_DEFAULT,
		.batch_max = EV_BATCH_MAX,
		.call_ms = EV_CALL_MS,
		.backoff_min_ms = EV_BACKOFF_MIN_MS,
		.backoff_max_ms = EV_BACKOFF_MAX_MS,
	};

	ev->source = xstrdup(opts->source != NULL ? opts->source : "");
	ev->boot = random_u64();
	ev->out = outbox_new(&events_ops, ev, &lim);
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
	e->item.bytes = sizeof(*e) + dlen + strlen(topic) + strlen(type);
	(void)outbox_push(ev->out, &e->item);
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

/* Publishes n buffered events in one PublishBatch. */
static int
send_batch(void *arg, struct outbox_item *first, size_t n, int deadline_ms,
    char *err, size_t errlen)
{
	plat_events *ev = arg;
	Platform__Event__V1__PublishBatchRequest req =
	    PLATFORM__EVENT__V1__PUBLISH_BATCH_REQUEST__INIT;
	ProtobufCMessage *resp = NULL;
	pb_publish **msgs = xcalloc(n, sizeof(*msgs));
	struct plat_call_opts co = {
		.deadline_ms = deadline_ms,
		.idempotent = 1,        /* idempotency keys make it so */
	};
	struct outbox_item *it = first;
	int code;

	for (size_t i = 0; i < n; i++, it = it->next)
		msgs[i] = &((struct ev *)it)->msg;
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

void
plat_events_connect(plat_events *ev, plat_client *client)
{
	if (ev == NULL || client == NULL || ev->client != NULL)
		return;
	ev->client = client;
	(void)outbox_start(ev->out);
}

void
plat_events_stop(plat_events *ev, int flush_ms)
{
	if (ev != NULL)
		outbox_stop(ev->out, flush_ms);
}

void
plat_events_free(plat_events *ev)
{
	if (ev == NULL)
		return;
	outbox_free(ev->out);
	free(ev->source);
	free(ev);
}

void
plat_events_stats(plat_events *ev, struct plat_events_stats *out)
{
	struct outbox_stats st;

	outbox_stats(ev->out, &st);
	out->published = st.sent;
	out->dropped = st.dropped;
	out->send_failures = st.send_failures;
	out->buffered = st.buffered;
}
