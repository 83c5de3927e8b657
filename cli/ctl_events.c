/*
 * ctl_events: `platformctl events publish|tail|query|groups`, an
 * operator's view of event-srv. See ctl_events.h.
 *
 * event-srv is --events ADDR (PLATFORM_EVENTS), else the service "event"
 * found through discovery. Events print one per line (sequence, topic,
 * offset, time, type, data) or, with -o json, one JSON object per line
 * for tail and one JSON value for the others. Data that is not UTF-8
 * text is shown as base64 ("b64:..."). Exit status: 0 ok, 1 a call
 * failed, 2 bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_events.h"
#include "ctl_out.h"
#include "platform/client.h"
#include "platform/event/v1/event.pb-c.h"
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define EVENT_SERVICE	"event"
#define M_PREFIX	"/platform.event.v1.Event/"
#define STDIN_MAX	(1 << 20)

typedef Platform__Event__V1__StoredEvent pb_event;
typedef Platform__Event__V1__StoredEvent__MetadataEntry pb_meta;

/* The events commands' own flags, as given (NULL: not given). */
struct ev_flags {
	const char *events, *type, *source, *key, *from, *group, *count;
	const char *limit, *since, *until, *oldest;
	struct ctl_list meta;
};

/* The flags of a run (the command table fills them). */
static const struct ev_flags *
ev_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_events_group, __VA_ARGS__)

/* A whole decimal number in [min, max] from flag, or dflt when not
 * given: 0, or CTL_USAGE after a message. */
static int
num(const char *what, const char *s, int64_t min, int64_t max, int64_t dflt,
    int64_t *out)
{
	long long v;

	*out = dflt;
	if (s == NULL)
		return 0;
	if (ctl_parse_int(s, min, max, &v) != 0)
		return usage_error("%s must be a number %" PRId64 "..%" PRId64
		    ", not '%s'", what, min, max, s);
	*out = v;
	return 0;
}

/* ---- calls ---- */

static int
ev_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, EVENT_SERVICE, ev_f(x)->events, method,
	    req, desc, resp, idempotent);
}

/* Metadata pairs from --meta K=V into entries (pointing into argv). */
static int
meta_of(const struct ctl_run *x, pb_meta *entries, pb_meta **ptrs)
{
	const struct ev_flags *f = ev_f(x);
	memset(entries, 0, f->meta.n * sizeof(*entries));
	for (size_t i = 0; i < f->meta.n; i++) {
		const char *kv = f->meta.v[i], *eq = strchr(kv, '=');

		if (eq == NULL || eq == kv)
			return usage_error("--meta must be KEY=VALUE, not "
			    "'%s'", kv);
		platform__event__v1__stored_event__metadata_entry__init(
		    &entries[i]);
		entries[i].key = xcalloc(1, (size_t)(eq - kv) + 1);
		memcpy(entries[i].key, kv, (size_t)(eq - kv));
		entries[i].value = (char *)eq + 1;
		ptrs[i] = &entries[i];
	}
	return 0;
}

static void
meta_free(pb_meta *entries, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(entries[i].key);
}

/* ---- printing ---- */

static void
fmt_time(char *buf, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf + strlen(buf), len - strlen(buf), ".%03dZ",
		    (int)(ms % 1000));
}

static json_t *
event_json(const pb_event *e, int delivery_count)
{
	json_t *meta = json_object(), *j;
	char *data;
	int text;

	for (size_t i = 0; i < e->n_metadata; i++)
		json_object_set_new(meta, e->metadata[i]->key,
		    ctl_jstr(e->metadata[i]->value));
	data = ctl_bytes_text(&e->data, &text);
	j = json_pack("{s:o, s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:I}",
	    "id", ctl_jstr(e->id), "topic", ctl_jstr(e->topic),
	    "offset", (json_int_t)e->offset,
	    "sequence", (json_int_t)e->sequence,
	    "type", ctl_jstr(e->type), "source", ctl_jstr(e->source),
	    text ? "data" : "data_base64", ctl_jstr(text ? data : data + 4),
	    "metadata", meta, "time_unix_ms", (json_int_t)e->time_unix_ms);
	if (e->idempotency_key[0] != '\0')
		json_object_set_new(j, "idempotency_key",
		    ctl_jstr(e->idempotency_key));
	if (delivery_count > 0)
		json_object_set_new(j, "delivery_count",
		    json_integer(delivery_count));
	free(data);
	return j;
}

/* One table row of an event (cells malloc'd into cell[7]). */
static void
event_row(const pb_event *e, char **cell)
{
	char t[40];
	int text;

	fmt_time(t, sizeof(t), e->time_unix_ms);
	cell[0] = xcalloc(1, 24);
	sprintf(cell[0], "%" PRId64, e->sequence);
	cell[1] = xstrdup(e->topic);
	cell[2] = xcalloc(1, 24);
	sprintf(cell[2], "%" PRId64, e->offset);
	cell[3] = xstrdup(t);
	cell[4] = xstrdup(e->type);
	cell[5] = xstrdup(e->source[0] != '\0' ? e->source : "-");
	cell[6] = ctl_bytes_text(&e->data, &text);
}

static void
event_line(const struct ctl_run *x, const pb_event *e, int delivery_count)
{
	char *cell[7];

	if (x->g->json) {
		ctl_json_print(event_json(e, delivery_count), JSON_COMPACT);
		fflush(stdout);
		return;
	}
	event_row(e, cell);
	ctl_put_line(stdout, "%s %s@%s %s %s %s", cell[0], cell[1], cell[2],
	    cell[3], cell[4], cell[6]);
	fflush(stdout);
	for (int i = 0; i < 7; i++)
		free(cell[i]);
}

/* ---- publish ---- */

static int
ev_publish(const struct ctl_run *x, int argc, char **argv)
{
	const struct ev_flags *f = ev_f(x);
	Platform__Event__V1__PublishRequest req =
	    PLATFORM__EVENT__V1__PUBLISH_REQUEST__INIT;
	Platform__Event__V1__PublishResponse *r;
	pb_meta entries[CTL_LIST_MAX], *ptrs[CTL_LIST_MAX];
	ProtobufCMessage *m = NULL;
	char *data = NULL;
	size_t len;
	int rc;

	if (argc < 2 || strcmp(argv[1], "-") == 0) {
		if ((rc = ctl_read_stdin(&ctl_events_group, "the data",
		    STDIN_MAX, &data, &len)) != CTL_OK)
			return rc;
	} else {
		data = xstrdup(argv[1]);
		len = strlen(data);
	}
	if ((rc = meta_of(x, entries, ptrs)) != 0) {
		meta_free(entries, f->meta.n);
		free(data);
		return rc;
	}
	req.topic = argv[0];
	req.type = (char *)(f->type ? f->type : "platformctl");
	req.source = (char *)(f->source ? f->source : "");
	req.idempotency_key = (char *)(f->key ? f->key : "");
	req.data.data = (uint8_t *)data;
	req.data.len = len;
	req.metadata = (Platform__Event__V1__PublishRequest__MetadataEntry **)
	    ptrs;
	req.n_metadata = f->meta.n;
	/* Retried only with a key, which makes a retry harmless. */
	rc = ev_call(x, M_PREFIX "Publish", &req.base,
	    &platform__event__v1__publish_response__descriptor, &m,
	    f->key != NULL);
	meta_free(entries, f->meta.n);
	free(data);
	if (rc != CTL_OK)
		return rc;
	r = (Platform__Event__V1__PublishResponse *)m;
	if (x->g->json)
		ctl_json_print(json_pack("{s:o, s:I, s:I, s:I, s:b}",
		    "id", ctl_jstr(r->id), "offset", (json_int_t)r->offset,
		    "sequence", (json_int_t)r->sequence,
		    "time_unix_ms", (json_int_t)r->time_unix_ms,
		    "duplicate", (int)r->duplicate), JSON_INDENT(2));
	else
		ctl_put_line(stdout, "%s offset %" PRId64 " sequence %" PRId64
		    " id %s%s", argv[0], r->offset, r->sequence, r->id,
		    r->duplicate ? " (duplicate: stored before)" : "");
	protobuf_c_message_free_unpacked(m, NULL);
	return CTL_OK;
}

/* ---- tail ---- */

static int
start_of(const struct ctl_run *x, Platform__Event__V1__SubscribeRequest *req)
{
	static const struct {
		const char *prefix;
		Platform__Event__V1__Start start;
	} starts[] = {
		{ "offset:", PLATFORM__EVENT__V1__START__START_OFFSET },
		{ "time:", PLATFORM__EVENT__V1__START__START_TIME },
		{ "seq:", PLATFORM__EVENT__V1__START__START_SEQUENCE },
	};
	const char *f = ev_f(x)->from;
	int64_t v;

	if (f == NULL || strcmp(f, "latest") == 0)
		return 0;
	if (strcmp(f, "earliest") == 0) {
		req->start = PLATFORM__EVENT__V1__START__START_EARLIEST;
		return 0;
	}
	for (size_t i = 0; i < CTL_NELEM(starts); i++) {
		size_t n = strlen(starts[i].prefix);

		if (strncmp(f, starts[i].prefix, n) != 0)
			continue;
		if (num("--from", f + n, 1, INT64_MAX, 0, &v) != 0)
			return CTL_USAGE;
		req->start = starts[i].start;
		if (i == 0)
			req->start_offset = v;
		else if (i == 1)
			req->start_time_unix_ms = v;
		else
			req->start_sequence = v;
		return 0;
	}
	return usage_error("--from must be latest, earliest, offset:N, "
	    "time:UNIX_MS or seq:N, not '%s'", f);
}

static int
ack(const struct ctl_run *x, int64_t seq)
{
	Platform__Event__V1__AckRequest req =
	    PLATFORM__EVENT__V1__ACK_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int rc;

	req.group = (char *)ev_f(x)->group;
	req.sequences = &seq;
	req.n_sequences = 1;
	rc = ev_call(x, M_PREFIX "Ack", &req.base,
	    &platform__event__v1__ack_response__descriptor, &m, 1);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* A tail's reader: prints each event, acknowledges it in a group, and
 * stops after --count. */
struct tail_state {
	const struct ctl_run *x;
	int64_t count, seen;
};

static int
tail_msg(void *arg, const ProtobufCMessage *m)
{
	const Platform__Event__V1__SubscribeResponse *r = (const void *)m;
	struct tail_state *t = arg;
	const struct ctl_run *x = t->x;
	int rc = CTL_OK;

	if (r->caught_up && !x->g->json)
		fprintf(stderr, "-- caught up --\n");
	if (r->event == NULL)
		return CTL_OK;
	event_line(x, r->event, r->delivery_count);
	t->seen++;
	if (ev_f(x)->group != NULL)
		rc = ack(x, r->event->sequence);
	if (rc == CTL_OK && t->count > 0 && t->seen >= t->count)
		return CTL_STREAM_DONE;
	return rc;
}

static int
ev_tail(const struct ctl_run *x, int argc, char **argv)
{
	const struct ev_flags *f = ev_f(x);
	Platform__Event__V1__SubscribeRequest req =
	    PLATFORM__EVENT__V1__SUBSCRIBE_REQUEST__INIT;
	struct tail_state t = { x, 0, 0 };
	char *addr;
	int rc;

	if ((rc = num("--count", f->count, 1, INT64_MAX, 0, &t.count)) != 0 ||
	    (rc = start_of(x, &req)) != 0)
		return rc;
	req.subjects = argv;
	req.n_subjects = (size_t)argc;
	req.group = (char *)(f->group ? f->group : "");
	if (ctl_service_address(x->g, EVENT_SERVICE, f->events, &addr) != 0)
		return CTL_FAIL;
	rc = ctl_stream(x->g, addr, M_PREFIX "Subscribe", &req.base,
	    &platform__event__v1__subscribe_response__descriptor, tail_msg,
	    &t);
	free(addr);
	return rc;
}

/* ---- query ---- */

static int
ev_query(const struct ctl_run *x, int argc, char **argv)
{
	const struct ev_flags *f = ev_f(x);
	Platform__Event__V1__QueryRequest req =
	    PLATFORM__EVENT__V1__QUERY_REQUEST__INIT;
	pb_meta entries[CTL_LIST_MAX], *ptrs[CTL_LIST_MAX];
	struct ctl_table t = { .ncols = 7 };
	static const char *const head[] = { "SEQUENCE", "TOPIC", "OFFSET",
	    "TIME", "TYPE", "SOURCE", "DATA" };
	struct ctl_pages pg = { 0 };
	int64_t limit, since, until;
	json_t *all;
	char *cell[7];
	int rc;

	memset(entries, 0, sizeof(entries));
	if ((rc = num("--limit", f->limit, 1, 1000000, 100, &limit)) != 0 ||
	    (rc = num("--since", f->since, 0, INT64_MAX, 0, &since)) != 0 ||
	    (rc = num("--until", f->until, 0, INT64_MAX, 0, &until)) != 0 ||
	    (rc = meta_of(x, entries, ptrs)) != 0)
		goto out;
	req.subject = argc > 0 ? argv[0] : "";
	req.type = (char *)(f->type ? f->type : "");
	req.source = (char *)(f->source ? f->source : "");
	req.start_time_unix_ms = since;
	req.end_time_unix_ms = until;
	req.metadata = (Platform__Event__V1__QueryRequest__MetadataEntry **)
	    ptrs;
	req.n_metadata = f->meta.n;
	req.order = f->oldest ?
	    PLATFORM__EVENT__V1__ORDER__ORDER_OLDEST_FIRST :
	    PLATFORM__EVENT__V1__ORDER__ORDER_NEWEST_FIRST;
	if ((rc = ctl_pages_fetch(x, ev_call, M_PREFIX "Query", &req.base,
	    &platform__event__v1__query_response__descriptor, "events", 1000,
	    (size_t)limit, &pg)) != CTL_OK)
		goto out;
	if (x->g->json) {
		all = json_array();
		for (size_t i = 0; i < pg.nitems; i++)
			json_array_append_new(all, event_json(pg.items[i], 0));
		rc = ctl_json_print(all, JSON_INDENT(2));
		goto out;
	}
	ctl_table_row(&t, head);
	for (size_t i = 0; i < pg.nitems; i++) {
		event_row(pg.items[i], cell);
		ctl_table_row(&t, (const char *const *)cell);
		for (int k = 0; k < 7; k++)
			free(cell[k]);
	}
	ctl_table_print(&t, stdout);
out:
	ctl_pages_free(&pg);
	ctl_table_free(&t);
	meta_free(entries, f->meta.n);
	return rc;
}

/* ---- groups ---- */

static json_t *
group_json(const Platform__Event__V1__Group *g)
{
	json_t *subj = json_array();

	for (size_t k = 0; k < g->n_subjects; k++)
		json_array_append_new(subj, ctl_jstr(g->subjects[k]));
	return json_pack("{s:o, s:o, s:I, s:I, s:I, s:i, s:I}",
	    "name", ctl_jstr(g->name), "subjects", subj,
	    "committed_sequence", (json_int_t)g->committed_sequence,
	    "delivered_sequence", (json_int_t)g->delivered_sequence,
	    "pending", (json_int_t)g->pending,
	    "ack_wait_ms", (int)g->ack_wait_ms,
	    "created_unix_ms", (json_int_t)g->created_unix_ms);
}

static void
group_row(struct ctl_table *t, const Platform__Event__V1__Group *g)
{
	json_t *subj = json_array();
	char *s, n[4][24];

	for (size_t k = 0; k < g->n_subjects; k++)
		json_array_append_new(subj, ctl_jstr(g->subjects[k]));
	s = json_dumps(subj, JSON_COMPACT);
	json_decref(subj);
	snprintf(n[0], 24, "%" PRId64, g->committed_sequence);
	snprintf(n[1], 24, "%" PRId64, g->delivered_sequence);
	snprintf(n[2], 24, "%" PRId64, g->pending);
	snprintf(n[3], 24, "%d", (int)g->ack_wait_ms);
	ctl_table_row(t, (const char *const[]){ g->name, s != NULL ? s : "-",
	    n[0], n[1], n[2], n[3] });
	free(s);
}

static int
ev_groups(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Event__V1__ListGroupsRequest req =
	    PLATFORM__EVENT__V1__LIST_GROUPS_REQUEST__INIT;
	struct ctl_table t = { .ncols = 6 };
	static const char *const head[] = { "GROUP", "SUBJECTS", "COMMITTED",
	    "DELIVERED", "PENDING", "ACK_WAIT_MS" };
	struct ctl_pages pg = { 0 };
	json_t *all;
	int rc;

	if ((rc = ctl_pages_fetch(x, ev_call, M_PREFIX "ListGroups", &req.base,
	    &platform__event__v1__list_groups_response__descriptor, "groups",
	    1000, 0, &pg)) == CTL_OK && x->g->json) {
		all = json_array();
		for (size_t i = 0; i < pg.nitems; i++)
			json_array_append_new(all, group_json(pg.items[i]));
		rc = ctl_json_print(all, JSON_INDENT(2));
	} else if (rc == CTL_OK) {
		ctl_table_row(&t, head);
		for (size_t i = 0; i < pg.nitems; i++)
			group_row(&t, pg.items[i]);
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
	}
	ctl_pages_free(&pg);
	return rc;
}

/* ---- the command table ---- */

#define F(name, kind, arg, help) { "--" #name, NULL, kind, arg, NULL, NULL, \
	help, offsetof(struct ev_flags, name) }

static const struct ctl_flag ev_flags[] = {
	F(meta, CTL_LIST, "K=V", "publish: a metadata pair; query: only events "
	    "with it (repeatable)"),
	{ "--events", NULL, CTL_VALUE, "ADDR", "PLATFORM_EVENTS", NULL,
	    "event-srv host:port (PLATFORM_EVENTS; default: service "
	    "\"event\" in discovery)", offsetof(struct ev_flags, events) },
	F(type, CTL_VALUE, "TYPE", "publish: the event type (default "
	    "\"platformctl\"); query: only this type"),
	F(source, CTL_VALUE, "SOURCE", "publish: who publishes; query: only "
	    "from it"),
	F(key, CTL_VALUE, "KEY", "publish: idempotency key"),
	F(from, CTL_VALUE, "START", "tail: latest (default), earliest, "
	    "offset:N, time:UNIX_MS or seq:N"),
	F(group, CTL_VALUE, "NAME", "tail: share the events with a consumer "
	    "group, acknowledging each"),
	F(count, CTL_VALUE, "N", "tail: stop after N events"),
	F(limit, CTL_VALUE, "N", "query: at most N events (default 100)"),
	F(since, CTL_VALUE, "UNIX_MS", "query: stored at or after"),
	F(until, CTL_VALUE, "UNIX_MS", "query: stored before"),
	F(oldest, CTL_SWITCH, NULL, "query: oldest first (default newest "
	    "first)"),
};

#undef F

static const struct ctl_cmd ev_cmds[] = {
	{ "events", NULL, "COMMAND ...", 0, 0, NULL,
	    "event-srv: publish, tail, query, groups ('events help')" },
	{ "events", "publish", "TOPIC [DATA|-]", 1, 2, ev_publish,
	    "publish one event; DATA from the argument, else stdin "
	    "(--meta K=V adds metadata)" },
	{ "events", "tail", "SUBJECT...", 1, 100, ev_tail,
	    "stream events of the subjects (\"orders.*\", \"orders.>\")" },
	{ "events", "query", "[SUBJECT]", 0, 1, ev_query,
	    "search the stored events, newest first" },
	{ "events", "groups", "", 0, 0, ev_groups,
	    "list the consumer groups and their positions" },
};

const struct ctl_group ctl_events_group = {
	.name = "events",
	.hint = "events --help",
	.head = "Usage: " PROG " events COMMAND [ARGS] [options]\n\n"
	    "Publish to, follow and search event-srv's stream.\n\n"
	    "Commands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help).\n"
	    "Exit status: 0 ok, 1 a call failed, 2 bad usage.\n",
	.width = 26,
	.cmds = CTL_TABLE(ev_cmds),
	.flags = CTL_TABLE(ev_flags),
	.flags_size = sizeof(struct ev_flags),
};
