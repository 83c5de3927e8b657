/*
 * handlers: event-srv's gRPC methods over the store, the committer, the
 * feed and the consumer groups.
 *
 * Every input is checked before anything is read or written (subject.h),
 * so bad input gets INVALID_ARGUMENT naming the field and changes
 * nothing. Publishes are answered by the committer once their
 * transaction committed; everything else goes to PostgreSQL with the
 * call's deadline.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commit.h"
#include "event.h"
#include "feed.h"
#include "groups.h"
#include "platform/checks.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/paging.h"
#include "platform/pg.h"
#include "platform/server.h"
#include "retention.h"
#include "store.h"
#include "subject.h"

#define PUBLISH_BATCH_MAX 1000
#define SUBJECTS_MAX 100
#define ACK_MAX 10000
#define ACK_WAIT_MIN 100
#define ACK_WAIT_MAX 3600000
#define IN_FLIGHT_DEFAULT 1000
#define IN_FLIGHT_MAX 10000
#define QUERY_PAGE_DEFAULT 100
#define GROUPS_PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define RETENTION_INTERVAL_DEFAULT 60000
#define POOL_MIN 6

typedef Platform__Event__V1__PublishRequest pub_req;

static struct {
	struct pg_store *store;
	int64_t retention_interval_ms;
} S;

static char *retention_interval_opt;

static const struct settings_option event_options[] = {
	{ "--retention-interval-ms", "PLATFORM_RETENTION_INTERVAL_MS",
	  "how often retention runs, 100..86400000 (default 60000)",
	  &retention_interval_opt },
};

/* --database (required) and event-srv's own settings, checked with the
 * others: a bad one is a one-line error and exit 2. */
static int
event_check_settings(const struct plat_settings *s, char *err,
    size_t errlen)
{
	char *end;
	long long v;

	if (pg_check_database(s, err, errlen) != 0)
		return -1;
	S.retention_interval_ms = RETENTION_INTERVAL_DEFAULT;
	if (retention_interval_opt == NULL)
		return 0;
	v = strtoll(retention_interval_opt, &end, 10);
	if (end == retention_interval_opt || *end != '\0' || v < 100 ||
	    v > 86400000) {
		snprintf(err, errlen, "--retention-interval-ms: must be "
		    "100..86400000, not '%s'", retention_interval_opt);
		return -1;
	}
	S.retention_interval_ms = v;
	return 0;
}

static int
invalid(plat_ctx *ctx, const char *err)
{
	return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
}

/* Packs msg now (it points into rows about to be released). */
static int
respond(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	*resp = NULL;
	if (plat_respond_now(ctx, msg) != 0)
		return plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "response larger than the maximum message size");
	return PLAT_OK;
}

/* Metadata of a request: each pair checked, each key once. */
#define CHECK_META(field, pairs, n, err, errlen) \
	check_meta(field, (const ProtobufCMessage *const *)(pairs), n, err, \
	    errlen)

/* Map entries of every message type here have key and value as their
 * first two fields, laid out alike. */
struct meta_entry {
	ProtobufCMessage base;
	char *key;
	char *value;
};

static int
check_meta(const char *field, const ProtobufCMessage *const *pairs, size_t n,
    char *err, size_t errlen)
{
	const struct meta_entry *const *m = (const void *)pairs;

	if (n > EV_META_MAX) {
		snprintf(err, errlen, "%s: at most %d pairs", field,
		    EV_META_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (ev_check_meta(field, m[i]->key, m[i]->value, err,
		    errlen) != 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(m[i]->key, m[j]->key) == 0) {
				snprintf(err, errlen, "%s: key \"%s\" given "
				    "twice", field, m[i]->key);
				return -1;
			}
	}
	return 0;
}

/* One event to publish; pfx names it in a batch ("events[3]."). */
static int
check_event(const pub_req *r, const char *pfx, char *err, size_t errlen)
{
	char f[64];

#define FIELD(name) (snprintf(f, sizeof(f), "%s%s", pfx, name), f)
	if (ev_check_topic(FIELD("topic"), r->topic, err, errlen) != 0 ||
	    ev_check_text(FIELD("type"), r->type, EV_TEXT_MAX, true, err,
	    errlen) != 0 ||
	    ev_check_text(FIELD("source"), r->source, EV_TEXT_MAX, false, err,
	    errlen) != 0 ||
	    ev_check_text(FIELD("idempotency_key"), r->idempotency_key,
	    EV_KEY_MAX, false, err, errlen) != 0 ||
	    CHECK_META(FIELD("metadata"), r->metadata, r->n_metadata, err,
	    errlen) != 0)
		return -1;
	if (r->data.len > EV_DATA_MAX) {
		snprintf(err, errlen, "%s: larger than %u bytes",
		    FIELD("data"), EV_DATA_MAX);
		return -1;
	}
#undef FIELD
	return 0;
}

/* ---- Publish ---- */

static int
event_publish(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const pub_req *req = (const void *)msg;
	pub_req **one;
	char err[512];
	int rc;

	if (check_event(req, "", err, sizeof(err)) != 0)
		return invalid(ctx, err);
	one = plat_alloc(ctx, sizeof(*one));
	one[0] = (pub_req *)req;
	/* Deferred before queueing: the committer may answer at once. */
	rc = plat_defer(ctx);
	commit_enqueue(ctx, one, 1, false);
	return rc;
}

static int
event_publish_batch(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Event__V1__PublishBatchRequest *req =
	    (const void *)msg;
	char err[512], pfx[32];
	int rc;

	if (req->n_events == 0 || req->n_events > PUBLISH_BATCH_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "events: 1 to %d "
		    "events", PUBLISH_BATCH_MAX);
	for (size_t i = 0; i < req->n_events; i++) {
		snprintf(pfx, sizeof(pfx), "events[%zu].", i);
		if (check_event(req->events[i], pfx, err, sizeof(err)) != 0)
			return invalid(ctx, err);
	}
	rc = plat_defer(ctx);
	commit_enqueue(ctx, req->events, req->n_events, true);
	return rc;
}

/* ---- Subscribe ---- */

static int
check_subjects(plat_ctx *ctx, char *const *subjects, size_t n)
{
	char err[512], field[32];

	if (n == 0 || n > SUBJECTS_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "subjects: 1 to "
		    "%d subjects", SUBJECTS_MAX);
	for (size_t i = 0; i < n; i++) {
		snprintf(field, sizeof(field), "subjects[%zu]", i);
		if (ev_check_subject(field, subjects[i], err,
		    sizeof(err)) != 0)
			return invalid(ctx, err);
	}
	return PLAT_OK;
}

/* The sequence after which a subscription starts (-1: the head). */
static int
start_after(plat_ctx *ctx, const Platform__Event__V1__SubscribeRequest *req,
    int64_t *after)
{
	enum plat_code code = PLAT_OK;
	char err[256];

	switch (req->start) {
	case PLATFORM__EVENT__V1__START__START_LATEST:
		*after = -1;
		break;
	case PLATFORM__EVENT__V1__START__START_EARLIEST:
		*after = 0;
		break;
	case PLATFORM__EVENT__V1__START__START_OFFSET:
		code = store_before_offset(S.store, req->subjects[0],
		    req->start_offset, plat_ctx_deadline_left_ms(ctx), after,
		    err, sizeof(err));
		break;
	case PLATFORM__EVENT__V1__START__START_TIME:
		code = store_before_time(S.store, req->start_time_unix_ms,
		    plat_ctx_deadline_left_ms(ctx), after, err, sizeof(err));
		break;
	case PLATFORM__EVENT__V1__START__START_SEQUENCE:
		*after = req->start_sequence - 1;
		break;
	default:
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "start: unknown "
		    "start position %d", (int)req->start);
	}
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	return PLAT_OK;
}

static int
check_subscribe(plat_ctx *ctx, const Platform__Event__V1__SubscribeRequest *req)
{
	char err[512];
	int rc;

	if ((rc = check_subjects(ctx, req->subjects, req->n_subjects)) !=
	    PLAT_OK)
		return rc;
	if (req->start == PLATFORM__EVENT__V1__START__START_OFFSET &&
	    (req->n_subjects != 1 || !ev_subject_literal(req->subjects[0])))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "subjects: a "
		    "start at an offset needs exactly one topic, without "
		    "wildcards");
	if (req->start == PLATFORM__EVENT__V1__START__START_OFFSET ?
	    req->start_offset < 1 : req->start_offset != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "start_offset: "
		    "1 or more with START_OFFSET, else 0");
	if (req->start == PLATFORM__EVENT__V1__START__START_TIME ?
	    req->start_time_unix_ms < 1 : req->start_time_unix_ms != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "start_time_unix_ms: 1 or more with START_TIME, else 0");
	if (req->start == PLATFORM__EVENT__V1__START__START_SEQUENCE ?
	    req->start_sequence < 1 : req->start_sequence != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "start_sequence: 1 or more with START_SEQUENCE, else 0");
	if (req->group[0] == '\0') {
		if (req->ack_wait_ms != 0 || req->max_in_flight != 0)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: "
			    "only with a group", req->ack_wait_ms != 0 ?
			    "ack_wait_ms" : "max_in_flight");
		return PLAT_OK;
	}
	if (ev_check_group("group", req->group, err, sizeof(err)) != 0)
		return invalid(ctx, err);
	if (req->ack_wait_ms != 0 && (req->ack_wait_ms < ACK_WAIT_MIN ||
	    req->ack_wait_ms > ACK_WAIT_MAX))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "ack_wait_ms: 0 "
		    "(default) or %d..%d", ACK_WAIT_MIN, ACK_WAIT_MAX);
	if (req->max_in_flight < 0 || req->max_in_flight > IN_FLIGHT_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "max_in_flight: "
		    "0 (default %d) to %d", IN_FLIGHT_DEFAULT, IN_FLIGHT_MAX);
	return PLAT_OK;
}

static int
event_subscribe(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	const Platform__Event__V1__SubscribeRequest *req = (const void *)msg;
	const char *const *subjects = (const char *const *)req->subjects;
	int64_t after;
	int rc;

	if ((rc = check_subscribe(ctx, req)) != PLAT_OK ||
	    (rc = start_after(ctx, req, &after)) != PLAT_OK)
		return rc;
	if (req->group[0] != '\0')
		return groups_subscribe(ctx, st, req->group, subjects,
		    req->n_subjects, after, req->ack_wait_ms,
		    req->max_in_flight != 0 ? req->max_in_flight :
		    IN_FLIGHT_DEFAULT);
	return feed_subscribe(ctx, st, subjects, req->n_subjects, after,
	    req->start == PLATFORM__EVENT__V1__START__START_OFFSET ?
	    req->start_offset : 0);
}

/* ---- Ack ---- */

static int
event_ack(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Event__V1__AckRequest *req = (const void *)msg;
	Platform__Event__V1__AckResponse *out;
	enum plat_code code;
	int64_t acked;
	char err[512];

	if (ev_check_group("group", req->group, err, sizeof(err)) != 0)
		return invalid(ctx, err);
	if (req->n_sequences == 0 || req->n_sequences > ACK_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "sequences: 1 to "
		    "%d sequences", ACK_MAX);
	for (size_t i = 0; i < req->n_sequences; i++)
		if (req->sequences[i] < 1)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "sequences[%zu]: 1 or more", i);
	code = store_ack(S.store, req->group, req->sequences,
	    req->n_sequences, plat_ctx_deadline_left_ms(ctx), &acked, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	if (acked > 0)
		groups_kick();
	out = plat_new(ctx, Platform__Event__V1__AckResponse,
	    &platform__event__v1__ack_response__descriptor);
	out->acked = (int32_t)acked;
	*resp = &out->base;
	return PLAT_OK;
}

/* ---- Query ---- */

/* The query's metadata as a JSON object (malloc'd). */
static char *
meta_json(const Platform__Event__V1__QueryRequest *req)
{
	json_t *o = json_object();
	char *s;

	for (size_t i = 0; i < req->n_metadata; i++)
		json_object_set_new(o, req->metadata[i]->key,
		    json_string(req->metadata[i]->value));
	if ((s = json_dumps(o, JSON_COMPACT)) == NULL)
		abort();
	json_decref(o);
	return s;
}

static int
check_query(plat_ctx *ctx, const Platform__Event__V1__QueryRequest *req)
{
	char err[512];

	if ((req->subject[0] != '\0' && ev_check_subject("subject",
	    req->subject, err, sizeof(err)) != 0) ||
	    ev_check_text("type", req->type, EV_TEXT_MAX, false, err,
	    sizeof(err)) != 0 ||
	    ev_check_text("source", req->source, EV_TEXT_MAX, false, err,
	    sizeof(err)) != 0 ||
	    CHECK_META("metadata", req->metadata, req->n_metadata, err,
	    sizeof(err)) != 0)
		return invalid(ctx, err);
	if (req->start_time_unix_ms < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "start_time_unix_ms: must not be negative");
	if (req->end_time_unix_ms < 0 || (req->end_time_unix_ms != 0 &&
	    req->end_time_unix_ms <= req->start_time_unix_ms))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "end_time_unix_ms: 0, or after start_time_unix_ms");
	if (req->order != PLATFORM__EVENT__V1__ORDER__ORDER_NEWEST_FIRST &&
	    req->order != PLATFORM__EVENT__V1__ORDER__ORDER_OLDEST_FIRST)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "order: unknown "
		    "order %d", (int)req->order);
	return PLAT_OK;
}

static int
event_query(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Event__V1__QueryRequest *req = (const void *)msg;
	Platform__Event__V1__QueryResponse out =
	    PLATFORM__EVENT__V1__QUERY_RESPONSE__INIT;
	const struct plat_settings *set =
	    plat_server_settings(plat_ctx_server(ctx));
	size_t budget = (size_t)set->max_message_bytes / 2, used = 0;
	struct store_query q = { 0 };
	char err[512], tok[32], *end, *re = NULL, *meta = NULL;
	struct ev_rows rows = { NULL, 0 };
	enum plat_code code;
	int page = 0, rc;

	if ((rc = check_query(ctx, req)) != PLAT_OK ||
	    (rc = plat_page_size(ctx, req->page_size, QUERY_PAGE_DEFAULT,
	    PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0') {
		if ((rc = plat_page_token_parse(ctx, req->page_token, 'q', tok,
		    sizeof(tok))) != PLAT_OK)
			return rc;
		q.after_seq = strtoll(tok, &end, 10);
		if (*end != '\0' || q.after_seq < 1)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "page_token: not a token this server gave for "
			    "this call");
	}
	re = req->subject[0] != '\0' ? ev_subject_regex(req->subject) : NULL;
	q.regex = re != NULL ? re : "";
	q.type = req->type;
	q.source = req->source;
	q.start_ms = req->start_time_unix_ms;
	q.end_ms = req->end_time_unix_ms;
	q.meta_json = meta = meta_json(req);
	q.oldest_first =
	    req->order == PLATFORM__EVENT__V1__ORDER__ORDER_OLDEST_FIRST;
	q.limit = page + 1;
	code = store_query(S.store, &q, plat_ctx_deadline_left_ms(ctx), &rows,
	    err, sizeof(err));
	free(re);
	free(meta);
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	out.events = plat_alloc(ctx, (rows.n + 1) * sizeof(*out.events));
	for (size_t i = 0; i < rows.n && out.n_events < (size_t)page; i++) {
		/* Stay well inside the message size limit. */
		used += rows.v[i]->size + 64;
		if (out.n_events > 0 && used > budget)
			break;
		out.events[out.n_events] = plat_alloc(ctx,
		    sizeof(**out.events));
		ev_row_fill(out.events[out.n_events++], rows.v[i]);
	}
	if (out.n_events < rows.n) {
		snprintf(tok, sizeof(tok), "%" PRId64,
		    out.events[out.n_events - 1]->sequence);
		out.next_page_token = plat_page_token(ctx, 'q', tok);
	}
	rc = respond(ctx, &out.base, resp);
	ev_rows_free(&rows);
	return rc;
}

/* ---- groups ---- */

static int
event_list_groups(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Event__V1__ListGroupsRequest *req = (const void *)msg;
	Platform__Event__V1__ListGroupsResponse *out;
	char err[512], after[EV_KEY_MAX + 1] = "";
	struct group_info *g;
	enum plat_code code;
	size_t n;
	int page = 0, rc;

	if ((rc = plat_page_size(ctx, req->page_size, GROUPS_PAGE_DEFAULT,
	    PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0' &&
	    ((rc = plat_page_token_parse(ctx, req->page_token, 'g', after,
	    sizeof(after))) != PLAT_OK ||
	    ev_check_group("page_token", after, err, sizeof(err)) != 0))
		return rc != PLAT_OK ? rc : plat_error(ctx,
		    PLAT_INVALID_ARGUMENT, "page_token: not a token this "
		    "server gave for this call");
	code = store_groups(S.store, after, page + 1,
	    plat_ctx_deadline_left_ms(ctx), &g, &n, err, sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	out = plat_new(ctx, Platform__Event__V1__ListGroupsResponse,
	    &platform__event__v1__list_groups_response__descriptor);
	out->groups = plat_alloc(ctx, (n + 1) * sizeof(*out->groups));
	for (size_t i = 0; i < n && i < (size_t)page; i++) {
		Platform__Event__V1__Group *p = plat_new(ctx,
		    Platform__Event__V1__Group,
		    &platform__event__v1__group__descriptor);
		json_t *subjects = json_loads(g[i].subjects_json, 0, NULL);

		p->name = plat_strdup(ctx, g[i].name);
		p->subjects = plat_alloc(ctx, (json_array_size(subjects) + 1) *
		    sizeof(*p->subjects));
		for (size_t k = 0; k < json_array_size(subjects); k++)
			p->subjects[p->n_subjects++] = plat_strdup(ctx,
			    json_string_value(json_array_get(subjects, k)));
		json_decref(subjects);
		p->ack_wait_ms = (int32_t)g[i].ack_wait_ms;
		p->committed_sequence = g[i].committed;
		p->delivered_sequence = g[i].delivered;
		p->pending = g[i].pending;
		p->created_unix_ms = g[i].created_ms;
		out->groups[out->n_groups++] = p;
	}
	if (n > (size_t)page)
		out->next_page_token = plat_page_token(ctx, 'g',
		    out->groups[out->n_groups - 1]->name);
	group_info_free(g, n);
	*resp = &out->base;
	return PLAT_OK;
}

static int
event_delete_group(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Event__V1__DeleteGroupRequest *req = (const void *)msg;
	enum plat_code code;
	char err[512];

	if (ev_check_group("group", req->group, err, sizeof(err)) != 0)
		return invalid(ctx, err);
	code = store_group_delete(S.store, req->group,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	groups_kick();          /* its subscribers here are ended */
	return PLAT_OK;
}

/* ---- retention ---- */

static int
event_set_retention(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Event__V1__SetRetentionRequest *req =
	    (const void *)msg;
	const Platform__Event__V1__Retention *r = req->retention;
	enum plat_code code;
	char err[512];

	if (r == NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "retention: required");
	if (ev_check_subject("retention.subject", r->subject, err,
	    sizeof(err)) != 0)
		return invalid(ctx, err);
	if (r->max_age_ms < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "retention.max_age_ms: must not be negative");
	if (r->max_count < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "retention.max_count: must not be negative");
	code = store_retention_set(S.store, r->subject, r->max_age_ms,
	    r->max_count, plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	return PLAT_OK;
}

static int
event_list_retention(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	Platform__Event__V1__ListRetentionResponse *out;
	struct retention *r;
	enum plat_code code;
	char err[512];
	size_t n;

	code = store_retention_list(S.store, plat_ctx_deadline_left_ms(ctx),
	    &r, &n, err, sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "%s", err);
	out = plat_new(ctx, Platform__Event__V1__ListRetentionResponse,
	    &platform__event__v1__list_retention_response__descriptor);
	out->retentions = plat_alloc(ctx, (n + 1) * sizeof(*out->retentions));
	for (size_t i = 0; i < n; i++) {
		Platform__Event__V1__Retention *p = plat_new(ctx,
		    Platform__Event__V1__Retention,
		    &platform__event__v1__retention__descriptor);

		p->subject = plat_strdup(ctx, r[i].subject);
		p->max_age_ms = r[i].max_age_ms;
		p->max_count = r[i].max_count;
		out->retentions[out->n_retentions++] = p;
	}
	retention_free(r, n);
	*resp = &out->base;
	return PLAT_OK;
}

/* ---- lifecycle ---- */

static double
gauge_subscribers(void *arg)
{
	(void)arg;
	return (double)(plat_feed_watchers(feed_get()) + groups_subscribers());
}

static double
gauge_sequence(void *arg)
{
	int64_t pos = plat_feed_position(feed_get());

	(void)arg;
	return pos < 0 ? 0 : (double)pos;
}

static double
gauge_batches(void *arg)
{
	(void)arg;
	return commit_batches();
}

static double
gauge_events(void *arg)
{
	(void)arg;
	return commit_events();
}

static double
gauge_retention(void *arg)
{
	(void)arg;
	return retention_deleted();
}

static void
event_fini(plat_server *srv)
{
	(void)srv;
	commit_stop();
	retention_stop();
	groups_stop();
	feed_stop();
	pg_store_free(S.store);
	S.store = NULL;
}

static int
event_init(plat_server *srv, const struct plat_settings *s)
{
	struct metrics *m = plat_server_metrics(srv);
	enum plat_code code;
	char err[512];
	int pool;

	if (s->database == NULL || s->database[0] == '\0') {
		fprintf(stderr, "event-srv: --database (PLATFORM_DATABASE) "
		    "is required\n");
		return -1;
	}
	/* The workers, plus the committer, feed, groups, retention and
	 * replay threads. */
	pool = s->workers * 2 + 4 < POOL_MIN ? POOL_MIN : s->workers * 2 + 4;
	if ((S.store = store_new(s->database, pool)) == NULL)
		return -1;
	code = pg_store_migrate(S.store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("event: database unavailable at start; answering "
		    "UNAVAILABLE until it is reachable", "error", err);
	} else if (code != PLAT_OK) {
		log_error("event: cannot bring the database schema up to "
		    "date", "error", err);
		fprintf(stderr, "event-srv: %s\n", err);
		pg_store_free(S.store);
		S.store = NULL;
		return -1;
	}
	if (feed_start(S.store, s->database, srv) != 0 ||
	    groups_start(S.store, s->node_id) != 0 ||
	    commit_start(S.store) != 0 ||
	    retention_start(S.store, S.retention_interval_ms) != 0) {
		log_error("event: cannot start its threads");
		event_fini(srv);
		return -1;
	}
	metrics_gauge_fn(m, "event_subscribers", "Open Subscribe streams.",
	    gauge_subscribers, NULL);
	metrics_gauge_fn(m, "event_feed_sequence", "The last sequence the "
	    "feed fanned out.", gauge_sequence, NULL);
	metrics_counter_fn(m, "event_commit_batches_total", "Publish "
	    "transactions committed.", gauge_batches, NULL);
	metrics_counter_fn(m, "event_commit_events_total", "Events committed.",
	    gauge_events, NULL);
	metrics_counter_fn(m, "event_retention_deleted_total", "Events "
	    "deleted by retention.", gauge_retention, NULL);
	(void)plat_check_declare_database(srv, S.store);
	return 0;
}

#define EVENT_PATH "/platform.event.v1.Event/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(EVENT_PATH, name, platform__event__v1, type, fn, idem)

static const struct plat_method event_methods[] = {
	UNARY("Publish", event_publish, publish, 0),
	UNARY("PublishBatch", event_publish_batch, publish_batch, 0),
	{
		.path = EVENT_PATH "Subscribe",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__event__v1__subscribe_request__descriptor,
		.response =
		    &platform__event__v1__subscribe_response__descriptor,
		.stream = event_subscribe,
	},
	UNARY("Ack", event_ack, ack, 1),
	UNARY("Query", event_query, query, 1),
	UNARY("ListGroups", event_list_groups, list_groups, 1),
	UNARY("DeleteGroup", event_delete_group, delete_group, 0),
	UNARY("SetRetention", event_set_retention, set_retention, 1),
	UNARY("ListRetention", event_list_retention, list_retention, 1),
};
const struct plat_service event_service = {
	.name = "event",
	.grpc_service = "platform.event.v1.Event",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7073",
	.methods = event_methods,
	.nmethods = PLAT_COUNT(event_methods),
	.options = event_options,
	.noptions = PLAT_COUNT(event_options),
	.check_settings = event_check_settings,
	.init = event_init,
	.fini = event_fini,
};
