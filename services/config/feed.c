/*
 * feed: config-srv's callbacks for the platform's change feed
 * (platform/feed.h) and the feed.h functions over it.
 *
 * A row is a struct cfg_row, its revision the config revision; a watch
 * is a set of namespaces (none: all) and a path prefix. Every row the
 * feed reads, and every row this replica commits, also goes to the cache.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "config.h"
#include "feed.h"
#include "platform/feed.h"
#include "platform/xalloc.h"

#define FEED_BATCH 1000              /* rows per read of the table */

struct watch {
	char **namespaces;              /* exact; none: all */
	size_t nns;
	char *prefix;
};

static struct {
	struct pg_store *store;
	struct plat_feed *feed;
} F;

/* ---- the callbacks ---- */

static enum plat_code
cfg_head(void *arg, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	(void)arg;
	return store_head(F.store, timeout_ms, rev, err, errlen);
}

static enum plat_code
cfg_read(void *arg, const void *watch, int64_t after, int64_t upto,
    int limit, int64_t timeout_ms, struct plat_feed_page *out, char *err,
    size_t errlen)
{
	const struct watch *w = watch;
	struct cfg_rows rows;
	enum plat_code code;

	(void)arg;
	code = store_changes(F.store, after, upto,
	    w != NULL ? (const char *const *)w->namespaces : NULL,
	    w != NULL ? w->nns : 0, w != NULL ? w->prefix : "", limit,
	    timeout_ms, &rows, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (size_t i = 0; i < rows.n; i++)
		plat_feed_page_push(out, rows.v[i]);
	free(rows.v);
	return PLAT_OK;
}

static void
cfg_ref(void *row)
{
	cfg_row_ref(row);
}

static void
cfg_unref(void *row)
{
	cfg_row_unref(row);
}

static bool
cfg_match(const void *watch, const void *r)
{
	const struct watch *w = watch;
	const struct cfg_row *row = r;

	if (strncmp(row->path, w->prefix, strlen(w->prefix)) != 0)
		return false;
	if (w->nns == 0)
		return true;
	for (size_t i = 0; i < w->nns; i++)
		if (strcmp(w->namespaces[i], row->ns) == 0)
			return true;
	return false;
}

static int
cfg_send(plat_stream *st, const void *row)
{
	Platform__Config__V1__WatchResponse resp =
	    PLATFORM__CONFIG__V1__WATCH_RESPONSE__INIT;
	Platform__Config__V1__Value v;

	config_value_fill(&v, row);
	resp.value = &v;
	return plat_stream_send(st, &resp.base);
}

static void
cfg_watch_free(void *watch)
{
	struct watch *w = watch;

	for (size_t i = 0; i < w->nns; i++)
		free(w->namespaces[i]);
	free(w->namespaces);
	free(w->prefix);
	free(w);
}

static void
cfg_started(void *arg, int64_t rev)
{
	(void)arg;
	cache_open(rev);
}

static void
cfg_read_rows(void *arg, void *const *rows, size_t n)
{
	(void)arg;
	for (size_t i = 0; i < n; i++)
		cache_apply(rows[i]);
}

/* The marker after a replay (caught_up set at start). */
static Platform__Config__V1__WatchResponse cfg_caught_up = PLATFORM__CONFIG__V1__WATCH_RESPONSE__INIT;

static const struct plat_feed_ops cfg_feed_ops = {
	.name = "config",
	.channel = STORE_CHANNEL,
	.health_service = "platform.config.v1.Config",
	.page = FEED_BATCH,
	.start_wait_ms = 5000,          /* a Watch during the start waits */
	.head = cfg_head,
	.read = cfg_read,
	.revision_at = offsetof(struct cfg_row, revision),
	.size_at = offsetof(struct cfg_row, size),
	.ref = cfg_ref,
	.unref = cfg_unref,
	.match = cfg_match,
	.send = cfg_send,
	.caught_up = &cfg_caught_up.base,
	.watch_free = cfg_watch_free,
	.started = cfg_started,
	.read_rows = cfg_read_rows,
};

/* ---- feed.h ---- */

int
feed_start(struct pg_store *store, const char *conninfo, plat_server *srv)
{
	F.store = store;
	cfg_caught_up.caught_up = 1;
	F.feed = plat_feed_start(&cfg_feed_ops, NULL, conninfo, srv,
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
feed_committed(struct cfg_row *const *rows, size_t n)
{
	void **v;

	if (n == 0)
		return;
	/* Into the cache either way, so a read through this replica sees
	 * its own write the moment it is answered. */
	for (size_t i = 0; i < n; i++)
		cache_apply(rows[i]);
	if (F.feed == NULL)             /* the writer starts first */
		return;
	v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = rows[i];
	plat_feed_committed(F.feed, v, n);
	free(v);
}

int
feed_watch(plat_ctx *ctx, plat_stream *st, const char *const *namespaces,
    size_t nns, const char *prefix, int64_t after_revision)
{
	struct watch *w = xcalloc(1, sizeof(*w));

	w->nns = nns;
	w->namespaces = xcalloc(nns, sizeof(*w->namespaces));
	for (size_t i = 0; i < nns; i++)
		w->namespaces[i] = xstrdup(namespaces[i]);
	w->prefix = xstrdup(prefix);
	/* after_revision 0 starts at the store's current revision. */
	return plat_feed_watch(F.feed, ctx, st, w,
	    after_revision > 0 ? after_revision : -1);
}
