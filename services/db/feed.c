/*
 * feed: db-srv's callbacks for the platform's change feed (see feed.h).
 *
 * A row is a struct db_row, its revision the store's revision; a watch
 * is one collection and a filter, matched in C (filter.c) on the
 * document a change left (for a deletion, the last one stored).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"
#include "platform/xalloc.h"

#define FEED_PAGE 1000
/* A Watch arriving while the feed makes its first read (just after the
 * start) waits this long for it rather than failing. */
#define FEED_START_WAIT_MS 5000

struct watch {
	char *database, *collection;
	struct dbf *filter;
};

struct db_feed {
	struct store *store;
	struct plat_feed_ops ops;       /* its own: the channel differs */
	struct plat_feed *feed;
};

static enum plat_code
db_head(void *arg, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	struct db_feed *f = arg;

	return store_head(f->store, timeout_ms, rev, err, errlen);
}

static enum plat_code
db_read(void *arg, const void *watch, int64_t after, int64_t upto, int limit,
    int64_t timeout_ms, struct plat_feed_page *out, char *err, size_t errlen)
{
	const struct watch *w = watch;
	struct db_feed *f = arg;
	struct db_row **rows;
	enum plat_code code;
	size_t n;

	code = store_changes(f->store, after, upto,
	    w != NULL ? w->database : NULL, w != NULL ? w->collection : NULL,
	    limit, timeout_ms, &rows, &n, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < n; i++)
		plat_feed_page_push(out, rows[i]);
	free(rows);
	return PLAT_OK;
}

static void
db_ref(void *row)
{
	db_row_ref(row);
}

static void
db_unref(void *row)
{
	db_row_unref(row);
}

static bool
db_match(const void *watch, const void *r)
{
	const struct watch *w = watch;
	const struct db_row *row = r;

	return strcmp(row->database, w->database) == 0 &&
	    strcmp(row->collection, w->collection) == 0 &&
	    row->doc != NULL && dbf_match(w->filter, row->doc);
}

void
feed_document(Platform__Db__V1__Document *d, const struct db_row *r)
{
	platform__db__v1__document__init(d);
	d->id = r->id;
	d->json = r->body;
	d->revision = r->revision;
	d->create_revision = r->create_revision;
	d->expires_unix_ms = r->expires_ms;
}

static int
db_send(plat_stream *st, const void *r)
{
	const struct db_row *row = r;
	Platform__Db__V1__WatchResponse resp =
	    PLATFORM__DB__V1__WATCH_RESPONSE__INIT;
	Platform__Db__V1__Change ch = PLATFORM__DB__V1__CHANGE__INIT;
	Platform__Db__V1__Document d;

	feed_document(&d, row);
	ch.type = (Platform__Db__V1__ChangeType)row->kind;
	ch.document = &d;
	ch.revision = row->revision;
	resp.change = &ch;
	return plat_stream_send(st, &resp.base);
}

static void
db_watch_free(void *watch)
{
	struct watch *w = watch;

	free(w->database);
	free(w->collection);
	dbf_free(w->filter);
	free(w);
}

static Platform__Db__V1__WatchResponse db_caught_up =
    PLATFORM__DB__V1__WATCH_RESPONSE__INIT;

static const struct plat_feed_ops db_feed_ops = {
	.name = "db",
	.channel = STORE_CHANNEL,
	.health_service = "platform.db.v1.DB",
	.page = FEED_PAGE,
	.start_wait_ms = FEED_START_WAIT_MS,
	.head = db_head,
	.read = db_read,
	.revision_at = offsetof(struct db_row, revision),
	.size_at = offsetof(struct db_row, size),
	.ref = db_ref,
	.unref = db_unref,
	.match = db_match,
	.send = db_send,
	.caught_up = &db_caught_up.base,
	.watch_free = db_watch_free,
};

struct db_feed *
feed_start(struct store *store, const char *conninfo, plat_server *srv,
    const char *health_service)
{
	struct db_feed *f = xcalloc(1, sizeof(*f));

	f->store = store;
	db_caught_up.caught_up = 1;
	f->ops = db_feed_ops;
	/* Without NOTIFY the feed polls (every second) and is kicked by
	 * this replica's own commits. */
	f->ops.channel = store_notifies(store) ? STORE_CHANNEL : NULL;
	f->ops.health_service = health_service;
	f->feed = plat_feed_start(&f->ops, f, conninfo, srv, store_db(store));
	if (f->feed == NULL) {
		free(f);
		return NULL;
	}
	return f;
}

void
feed_stop(struct db_feed *f)
{
	if (f == NULL)
		return;
	plat_feed_free(f->feed);
	free(f);
}

struct plat_feed *
feed_get(struct db_feed *f)
{
	return f != NULL ? f->feed : NULL;
}

void
feed_committed(struct db_feed *f, struct db_row **rows, size_t n)
{
	if (n > 0 && f != NULL)
		plat_feed_committed(f->feed, (void *const *)rows, n);
	for (size_t i = 0; i < n; i++)
		db_row_unref(rows[i]);
	free(rows);
}

int
feed_watch(struct db_feed *f, plat_ctx *ctx, plat_stream *st,
    const char *database, const char *collection, struct dbf *filter,
    int64_t after_revision)
{
	struct watch *w = xcalloc(1, sizeof(*w));

	w->database = xstrdup(database);
	w->collection = xstrdup(collection);
	w->filter = filter;
	return plat_feed_watch(f->feed, ctx, st, w,
	    after_revision > 0 ? after_revision : -1);
}
