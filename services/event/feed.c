/*
 * feed: event-srv's callbacks for the platform's change feed
 * (platform/feed.h) and the feed.h functions over it.
 *
 * A row is a struct ev_row, its revision the event's sequence; a watch
 * is a set of subjects and a lowest offset. Every advance of the feed
 * wakes the consumer groups.
 */
#include <stddef.h>
#include <stdlib.h>

#include <jansson.h>

#include "feed.h"
#include "groups.h"
#include "platform/feed.h"
#include "platform/xalloc.h"
#include "subject.h"

#define FEED_BATCH 500               /* rows per read of the table */
#define FEED_START_WAIT_MS 5000      /* a Subscribe during the start */

struct watch {
	char **subjects;
	size_t nsubjects;
	char *regexes;                  /* JSON, for the replay */
	int64_t min_offset;
};

static struct {
	struct pg_store *store;
	struct plat_feed *feed;
} F;

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

/* ---- the callbacks ---- */

static enum plat_code
ev_head(void *arg, int64_t timeout_ms, int64_t *seq, char *err,
    size_t errlen)
{
	(void)arg;
	return store_head(F.store, timeout_ms, seq, err, errlen);
}

static enum plat_code
ev_read(void *arg, const void *watch, int64_t after, int64_t upto,
    int limit, int64_t timeout_ms, struct plat_feed_page *out, char *err,
    size_t errlen)
{
	const struct watch *w = watch;
	struct ev_rows rows;
	enum plat_code code;

	(void)arg;
	code = store_read(F.store, after, upto, w != NULL ? w->regexes : NULL,
	    limit, timeout_ms, &rows, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < rows.n; i++)
		plat_feed_page_push(out, rows.v[i]);
	free(rows.v);
	return PLAT_OK;
}

static void
ev_ref(void *row)
{
	ev_row_ref(row);
}

static void
ev_unref(void *row)
{
	ev_row_unref(row);
}

static bool
ev_match(const void *watch, const void *r)
{
	const struct watch *w = watch;
	const struct ev_row *row = r;

	if (row->offset < w->min_offset)
		return false;
	for (size_t i = 0; i < w->nsubjects; i++)
		if (ev_subject_match(w->subjects[i], row->topic))
			return true;
	return false;
}

static int
ev_send(plat_stream *st, const void *row)
{
	return feed_send(st, row, 0);
}

static void
ev_watch_free(void *watch)
{
	struct watch *w = watch;

	for (size_t i = 0; i < w->nsubjects; i++)
		free(w->subjects[i]);
	free(w->subjects);
	free(w->regexes);
	free(w);
}

static void
ev_advanced(void *arg)
{
	(void)arg;
	groups_kick();
}

/* The marker after a replay (caught_up set at start). */
static Platform__Event__V1__SubscribeResponse ev_caught_up = PLATFORM__EVENT__V1__SUBSCRIBE_RESPONSE__INIT;

static const struct plat_feed_ops ev_feed_ops = {
	.name = "event",
	.channel = STORE_CHANNEL,
	.health_service = "platform.event.v1.Event",
	.page = FEED_BATCH,
	.start_wait_ms = FEED_START_WAIT_MS,
	.head = ev_head,
	.read = ev_read,
	.revision_at = offsetof(struct ev_row, seq),
	.size_at = offsetof(struct ev_row, size),
	.ref = ev_ref,
	.unref = ev_unref,
	.match = ev_match,
	.send = ev_send,
	.caught_up = &ev_caught_up.base,
	.watch_free = ev_watch_free,
	.advanced = ev_advanced,
};

/* ---- feed.h ---- */

int
feed_start(struct pg_store *store, const char *conninfo, plat_server *srv)
{
	F.store = store;
	ev_caught_up.caught_up = 1;
	F.feed = plat_feed_start(&ev_feed_ops, NULL, conninfo, srv,
	    store);
	return F.feed != NULL ? 0 : -1;
}

void
feed_stop(void)
{
	plat_feed_free(F.feed);
	F.feed = NULL;
}

struct plat_feed *
feed_get(void)
{
	return F.feed;
}

void
feed_committed(struct ev_row **rows, size_t n)
{
	void **v;

	if (n == 0)
		return;
	v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = rows[i];
	plat_feed_committed(F.feed, v, n);
	free(v);
	for (size_t i = 0; i < n; i++)
		ev_row_unref(rows[i]);
}

int
feed_subscribe(plat_ctx *ctx, plat_stream *st, const char *const *subjects,
    size_t n, int64_t after, int64_t min_offset)
{
	struct watch *w = xcalloc(1, sizeof(*w));

	w->nsubjects = n;
	w->subjects = xcalloc(n, sizeof(*w->subjects));
	for (size_t i = 0; i < n; i++)
		w->subjects[i] = xstrdup(subjects[i]);
	w->regexes = feed_regexes_json(subjects, n);
	w->min_offset = min_offset;
	return plat_feed_watch(F.feed, ctx, st, w, after);
}
