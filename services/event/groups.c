/*
 * groups: consumer groups (see groups.h).
 *
 * G.mu guards the groups with subscribers here, their subscribers, the
 * owners to release and G.loop (the feed's loop, platform/feed.h: rounds
 * run one at a time, when kicked and every GROUPS_TICK_MS). A round
 * copies what it needs under G.mu (with a reference on each stream) and
 * talks to PostgreSQL without it, so a subscriber that leaves mid-round
 * only makes a send fail; its deliveries are then released for the
 * others.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "feed.h"
#include "groups.h"
#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"

#define GROUPS_TICK_MS 200
#define GROUPS_QUERY_MS 5000
#define CLAIM_MAX 1000          /* events handed out per round and group */

struct gsub {
	struct gsub *next;
	plat_stream *st;
	char *owner;
	int max_in_flight;
};

struct lgroup {
	struct lgroup *next;
	char *name;
	char *regexes;          /* JSON array of topic regexes */
	struct gsub *subs;
};

/* What a round works on, copied under G.mu. */
struct round_sub {
	plat_stream *st;
	char *owner;
	int64_t room;
	bool gone;              /* a send failed */
};

struct round_group {
	char *name;
	char *regexes;
	struct round_sub *subs;
	size_t n;
};

static struct {
	struct pg_store *store;
	char prefix[256];               /* "NODE/BOOT/" */
	char node[256];                 /* "NODE/" */

	pthread_mutex_t mu;
	struct plat_feed_loop *loop;    /* NULL when not running */
	struct lgroup *groups;
	size_t nsubs;
	uint64_t next_id;
	char **releases;                /* owners whose deliveries go back */
	size_t nreleases;
	bool booted;                    /* an earlier run's released */
	bool reported;                  /* a failing round was logged */
} G = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
};

/* G.mu held. The feed may kick before the start and after the stop. */
static void
kick_locked(void)
{
	if (G.loop != NULL)
		plat_feed_loop_kick(G.loop);
}

void
groups_kick(void)
{
	pthread_mutex_lock(&G.mu);
	kick_locked();
	pthread_mutex_unlock(&G.mu);
}

size_t
groups_subscribers(void)
{
	size_t n;

	pthread_mutex_lock(&G.mu);
	n = G.nsubs;
	pthread_mutex_unlock(&G.mu);
	return n;
}

/* G.mu held. */
static void
release_later(char *owner)
{
	G.releases = xrealloc(G.releases, (G.nreleases + 1) *
	    sizeof(*G.releases));
	G.releases[G.nreleases++] = owner;
	kick_locked();
}

static void
round_log(enum plat_code code, const char *err)
{
	if (code == PLAT_UNAVAILABLE || G.reported)
		return;
	G.reported = true;
	log_warn("event: consumer groups round failed", "error", err);
}

/* ---- a round ---- */

static struct round_group *
round_snapshot(size_t *n, char ***releases, size_t *nreleases)
{
	struct round_group *rg;
	struct lgroup *g;
	size_t i = 0, j;

	pthread_mutex_lock(&G.mu);
	*releases = G.releases;
	*nreleases = G.nreleases;
	G.releases = NULL;
	G.nreleases = 0;
	for (g = G.groups; g != NULL; g = g->next)
		i++;
	rg = xcalloc(i, sizeof(*rg));
	*n = i;
	for (g = G.groups, i = 0; g != NULL; g = g->next, i++) {
		struct gsub *s;

		rg[i].name = xstrdup(g->name);
		rg[i].regexes = xstrdup(g->regexes);
		for (s = g->subs; s != NULL; s = s->next)
			rg[i].n++;
		rg[i].subs = xcalloc(rg[i].n, sizeof(*rg[i].subs));
		for (s = g->subs, j = 0; s != NULL; s = s->next, j++) {
			plat_stream_ref(s->st);
			rg[i].subs[j].st = s->st;
			rg[i].subs[j].owner = xstrdup(s->owner);
			rg[i].subs[j].room = s->max_in_flight;
		}
	}
	pthread_mutex_unlock(&G.mu);
	return rg;
}

static void
round_free(struct round_group *rg, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < rg[i].n; j++) {
			plat_stream_unref(rg[i].subs[j].st);
			free(rg[i].subs[j].owner);
		}
		free(rg[i].subs);
		free(rg[i].name);
		free(rg[i].regexes);
	}
	free(rg);
}

static void
count_inflight(const char *owner, int64_t n, void *arg)
{
	struct round_group *g = arg;

	for (size_t j = 0; j < g->n; j++)
		if (strcmp(g->subs[j].owner, owner) == 0)
			g->subs[j].room -= n;
}

static void
finish_group(struct round_group *g, int code, const char *err)
{
	for (size_t j = 0; j < g->n; j++)
		plat_stream_finish(g->subs[j].st, code, err);
}

/* Hands out one round of g's events: true when there may be more. */
static bool
round_group(struct round_group *g)
{
	struct round_sub **take = xcalloc(g->n, sizeof(*take));
	int64_t per = CLAIM_MAX;
	int *deliveries = NULL, *who = NULL, limit;
	json_t *owners = json_array();
	struct ev_rows rows = { NULL, 0 };
	char err[256], *owners_json = NULL;
	enum plat_code code;
	size_t k = 0;
	bool more = false, behind = false;

	code = store_group_inflight(G.store, g->name, G.prefix,
	    GROUPS_QUERY_MS, count_inflight, g, err, sizeof(err));
	if (code != PLAT_OK) {
		round_log(code, err);
		goto out;
	}
	/* Round robin over the subscribers with room gives each at most
	 * `per`, the least room among them. */
	for (size_t j = 0; j < g->n; j++)
		if (g->subs[j].room > 0 && !plat_stream_closed(g->subs[j].st)) {
			take[k++] = &g->subs[j];
			json_array_append_new(owners,
			    json_string(g->subs[j].owner));
			if (g->subs[j].room < per)
				per = g->subs[j].room;
		}
	if (k == 0)
		goto out;
	limit = (int)(per * (int64_t)k > CLAIM_MAX ? CLAIM_MAX : per *
	    (int64_t)k);
	if ((owners_json = json_dumps(owners, JSON_COMPACT)) == NULL)
		abort();
	code = store_group_claim(G.store, g->name, owners_json, g->regexes,
	    limit, GROUPS_QUERY_MS, &rows, &deliveries, &who, &behind, err,
	    sizeof(err));
	if (code == PLAT_NOT_FOUND) {
		finish_group(g, PLAT_NOT_FOUND, err);
		goto out;
	}
	if (code != PLAT_OK) {
		round_log(code, err);
		goto out;
	}
	G.reported = false;
	for (size_t i = 0; i < rows.n; i++) {
		struct round_sub *s = take[who[i]];

		if (!s->gone && feed_send(s->st, rows.v[i], deliveries[i]) !=
		    0) {
			/* Gone: what it holds goes to the others. */
			pthread_mutex_lock(&G.mu);
			release_later(xstrdup(s->owner));
			pthread_mutex_unlock(&G.mu);
			s->gone = true;
		}
	}
	more = rows.n == (size_t)limit || behind;
out:
	ev_rows_free(&rows);
	free(deliveries);
	free(who);
	free(owners_json);
	json_decref(owners);
	free(take);
	return more;
}

static void
round_run(void *arg)
{
	struct round_group *rg;
	char **releases, err[256];
	size_t n, nreleases;
	enum plat_code code;
	bool more = false;

	(void)arg;
	if (!pg_store_ready(G.store))
		return;
	if (!G.booted) {
		code = store_group_release(G.store, G.node, GROUPS_QUERY_MS,
		    err, sizeof(err));
		if (code != PLAT_OK) {
			round_log(code, err);
			return;
		}
		G.booted = true;
	}
	rg = round_snapshot(&n, &releases, &nreleases);
	for (size_t i = 0; i < nreleases; i++) {
		code = store_group_release(G.store, releases[i],
		    GROUPS_QUERY_MS, err, sizeof(err));
		if (code != PLAT_OK)
			round_log(code, err);
		free(releases[i]);
	}
	free(releases);
	for (size_t i = 0; i < n; i++)
		if (round_group(&rg[i]))
			more = true;
	round_free(rg, n);
	if (more)
		groups_kick();
}

int
groups_start(struct pg_store *store, const char *node_id)
{
	struct plat_feed_loop *l;
	uint32_t boot = 0;

	if (getrandom(&boot, sizeof(boot), 0) != sizeof(boot))
		boot = (uint32_t)plat_wall_ms();
	G.store = store;
	snprintf(G.node, sizeof(G.node), "%s/", node_id);
	snprintf(G.prefix, sizeof(G.prefix), "%s/%08x/", node_id, boot);
	G.booted = false;
	l = plat_feed_loop_start(GROUPS_TICK_MS, round_run, NULL);
	pthread_mutex_lock(&G.mu);
	G.loop = l;
	pthread_mutex_unlock(&G.mu);
	return l != NULL ? 0 : -1;
}

void
groups_stop(void)
{
	struct plat_feed_loop *l;

	pthread_mutex_lock(&G.mu);
	l = G.loop;
	G.loop = NULL;
	pthread_mutex_unlock(&G.mu);
	plat_feed_loop_stop(l);
	/* Every stream ended, so every subscriber and group is gone; what
	 * is left to release is released by the next start of this node. */
	for (size_t i = 0; i < G.nreleases; i++)
		free(G.releases[i]);
	free(G.releases);
	G.releases = NULL;
	G.nreleases = 0;
}

/* ---- Subscribe ---- */

static void
gsub_closed(plat_stream *st, void *arg)
{
	struct gsub *s = arg, **sp;
	struct lgroup **gp, *g;

	pthread_mutex_lock(&G.mu);
	for (gp = &G.groups; (g = *gp) != NULL; gp = &g->next) {
		for (sp = &g->subs; *sp != NULL && *sp != s; sp = &(*sp)->next)
			;
		if (*sp == NULL)
			continue;
		*sp = s->next;
		if (g->subs == NULL) {
			*gp = g->next;
			free(g->name);
			free(g->regexes);
			free(g);
		}
		break;
	}
	G.nsubs--;
	release_later(s->owner);
	pthread_mutex_unlock(&G.mu);
	free(s);
	plat_stream_unref(st);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The subjects as a group stores them: sorted, each once, JSON. */
static char *
subjects_canonical(const char *const *subjects, size_t n)
{
	const char **v = xcalloc(n, sizeof(*v));
	json_t *arr = json_array();
	char *s;

	memcpy(v, subjects, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
			json_array_append_new(arr, json_string(v[i]));
	free(v);
	if ((s = json_dumps(arr, JSON_COMPACT)) == NULL)
		abort();
	json_decref(arr);
	return s;
}

int
groups_subscribe(plat_ctx *ctx, plat_stream *st, const char *group,
    const char *const *subjects, size_t n, int64_t start_after,
    int64_t ack_wait_ms, int max_in_flight)
{
	char *want = subjects_canonical(subjects, n), *have = NULL, err[256];
	int64_t wait = 0;
	enum plat_code code;
	struct lgroup *g;
	struct gsub *s;
	int rc;

	if (start_after < 0)
		code = store_head(G.store, plat_ctx_deadline_left_ms(ctx),
		    &start_after, err, sizeof(err));
	else
		code = PLAT_OK;
	if (code == PLAT_OK)
		code = store_group_open(G.store, group, want, start_after,
		    ack_wait_ms > 0 ? ack_wait_ms : 30000,
		    plat_ctx_deadline_left_ms(ctx), &have, &wait, err,
		    sizeof(err));
	if (code != PLAT_OK) {
		rc = plat_error(ctx, code, "%s", err);
		goto out;
	}
	if (strcmp(have, want) != 0) {
		rc = plat_error(ctx, PLAT_FAILED_PRECONDITION, "subjects: "
		    "group \"%s\" has the subjects %s", group, have);
		goto out;
	}
	if (ack_wait_ms > 0 && ack_wait_ms != wait) {
		rc = plat_error(ctx, PLAT_FAILED_PRECONDITION, "ack_wait_ms: "
		    "group \"%s\" has an ack wait of %" PRId64 " ms", group,
		    wait);
		goto out;
	}
	s = xcalloc(1, sizeof(*s));
	s->st = st;
	s->max_in_flight = max_in_flight;
	plat_stream_ref(st);
	pthread_mutex_lock(&G.mu);
	s->owner = xcalloc(1, strlen(G.prefix) + 24);
	sprintf(s->owner, "%s%" PRIu64 "/", G.prefix, ++G.next_id);
	for (g = G.groups; g != NULL && strcmp(g->name, group) != 0;
	    g = g->next)
		;
	if (g == NULL) {
		g = xcalloc(1, sizeof(*g));
		g->name = xstrdup(group);
		g->regexes = feed_regexes_json(subjects, n);
		g->next = G.groups;
		G.groups = g;
	}
	s->next = g->subs;
	g->subs = s;
	G.nsubs++;
	kick_locked();
	pthread_mutex_unlock(&G.mu);
	plat_stream_on_close(st, gsub_closed, s);
	rc = PLAT_STREAM_OPEN;
out:
	free(want);
	free(have);
	return rc;
}
