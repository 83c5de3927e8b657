/*
 * handlers: config-srv's gRPC methods over the store, the cache and the
 * change feed.
 *
 * Every input is checked before anything is read or written (doc.h), so
 * bad input gets INVALID_ARGUMENT naming the field and changes nothing.
 * Latest versions are read through the cache while the feed is healthy;
 * everything else goes to PostgreSQL with the call's deadline. A write
 * answers OK only after its transaction committed, and puts its own
 * result in the cache first, so a read through the same replica sees it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "config.h"
#include "doc.h"
#include "feed.h"
#include "platform/checks.h"
#include "platform/events.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/paging.h"
#include "platform/pg.h"
#include "platform/metrics.h"
#include "platform/server.h"
#include "platform/xalloc.h"
#include "store.h"
#include "writer.h"

#define HISTORY_PAGE_DEFAULT 50
#define LIST_PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define WATCH_NAMESPACES_MAX 100
#define CACHE_MAX_ENTRIES 100000
#define CACHE_MAX_BYTES (64u << 20)
#define POOL_MIN 4

typedef Platform__Config__V1__Value Value;

static struct {
	struct pg_store *store;
	plat_events *events;
} S;

void
config_value_fill(Value *v, const struct cfg_row *r)
{
	platform__config__v1__value__init(v);
	v->namespace_ = r->ns;
	v->path = r->path;
	v->version = r->version;
	v->revision = r->revision;
	v->json = r->json;
	v->deleted = r->deleted;
	v->author = r->author;
	v->comment = r->comment;
	v->created_unix_ms = r->created_ms;
}

static Value *
value_new(plat_ctx *ctx, const struct cfg_row *r)
{
	Value *v = plat_alloc(ctx, sizeof(*v));

	config_value_fill(v, r);
	return v;
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

/* A store error for the caller. The database being unreachable also
 * wakes the feed, which then stops serving reads from the cache at once
 * instead of at its next tick. */
static int
store_error(plat_ctx *ctx, enum plat_code code, const char *err)
{
	if (code == PLAT_UNAVAILABLE)
		plat_feed_kick(feed_get());
	return plat_error(ctx, code, "%s", err);
}

/* ---- reading versions ---- */

/* The latest version of a path (a tombstone included; NULL when it never
 * existed), from the cache while the feed keeps it current. */
static int
latest(plat_ctx *ctx, const char *ns, const char *path,
    struct cfg_row **row)
{
	char err[256];
	enum plat_code code;
	int64_t pos;

	if (plat_feed_healthy(feed_get()) && cache_get(ns, path, row))
		return PLAT_OK;
	pos = plat_feed_position(feed_get());
	code = store_latest(S.store, ns, path, plat_ctx_deadline_left_ms(ctx),
	    row, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	cache_put(ns, path, *row, pos);
	return PLAT_OK;
}

/* One version (NULL when there is no such version). */
static int
version_row(plat_ctx *ctx, const char *ns, const char *path,
    int64_t version, struct cfg_row **row)
{
	char err[256];
	enum plat_code code;

	if (plat_feed_healthy(feed_get()) && cache_get(ns, path, row)) {
		if (*row != NULL && (*row)->version == version)
			return PLAT_OK;
		cfg_row_unref(*row);
		*row = NULL;
	}
	code = store_version(S.store, ns, path, version,
	    plat_ctx_deadline_left_ms(ctx), row, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	return PLAT_OK;
}

/* ---- Read ---- */

static int
not_found(plat_ctx *ctx, const char *ns, const char *path)
{
	return plat_error(ctx, PLAT_NOT_FOUND,
	    "namespace \"%s\" path \"%s\" not found", ns, path);
}

/* The selected part of a stored document, as canonical text (malloc'd). */
static int
select_json(plat_ctx *ctx, const struct cfg_row *row, const char *selector,
    char **out)
{
	char err[1200];
	json_t *doc, *sub;

	*out = NULL;
	if (row->deleted)
		return plat_error(ctx, PLAT_NOT_FOUND, "namespace \"%s\" path "
		    "\"%s\": version %" PRId64 " is a deletion; selector "
		    "\"%s\" not found", row->ns, row->path, row->version,
		    selector);
	if ((doc = doc_load(row->json)) == NULL) {
		log_error("config: stored document does not parse",
		    "namespace", row->ns, "path", row->path);
		return plat_error(ctx, PLAT_INTERNAL, "stored document does "
		    "not parse");
	}
	if ((sub = doc_select(doc, selector, err, sizeof(err))) == NULL) {
		json_decref(doc);
		return plat_error(ctx, PLAT_NOT_FOUND, "namespace \"%s\" path "
		    "\"%s\": %s", row->ns, row->path, err);
	}
	*out = doc_dump(sub);
	json_decref(doc);
	return PLAT_OK;
}

static int
read_one(plat_ctx *ctx, const char *ns, const char *path,
    const char *selector, int64_t version, ProtobufCMessage **resp)
{
	Platform__Config__V1__ReadResponse out =
	    PLATFORM__CONFIG__V1__READ_RESPONSE__INIT;
	struct cfg_row *row;
	char *json = NULL;
	int rc;

	if (version == 0) {
		if ((rc = latest(ctx, ns, path, &row)) != PLAT_OK)
			return rc;
		if (row == NULL)
			return not_found(ctx, ns, path);
		if (row->deleted) {
			rc = plat_error(ctx, PLAT_NOT_FOUND, "namespace \"%s\" "
			    "path \"%s\" was deleted at version %" PRId64, ns,
			    path, row->version);
			cfg_row_unref(row);
			return rc;
		}
	} else {
		if ((rc = version_row(ctx, ns, path, version, &row)) !=
		    PLAT_OK)
			return rc;
		if (row == NULL)
			return plat_error(ctx, PLAT_NOT_FOUND, "namespace "
			    "\"%s\" path \"%s\" has no version %" PRId64, ns,
			    path, version);
	}
	if (selector != NULL &&
	    (rc = select_json(ctx, row, selector, &json)) != PLAT_OK) {
		cfg_row_unref(row);
		return rc;
	}
	out.value = value_new(ctx, row);
	if (json != NULL)
		out.value->json = json;
	rc = respond(ctx, &out.base, resp);
	free(json);
	cfg_row_unref(row);
	return rc;
}

/* The first segment of a selector, the top-level key it lives under. */
static char *
selector_top(plat_ctx *ctx, const char *selector)
{
	size_t n = strcspn(selector, ".");
	char *key = plat_alloc(ctx, n + 1);

	memcpy(key, selector, n);
	return key;
}

static int
read_merged_respond(plat_ctx *ctx, struct doc_merge *m,
    const struct cfg_row *top, const char *selector, ProtobufCMessage **resp)
{
	Platform__Config__V1__ReadResponse out =
	    PLATFORM__CONFIG__V1__READ_RESPONSE__INIT;
	Platform__Config__V1__ReadResponse__SourcesEntry *e;
	char err[1200];
	const char *key;
	json_t *result = m->doc, *src;
	int rc;

	if (selector != NULL &&
	    (result = doc_select(m->doc, selector, err, sizeof(err))) == NULL)
		return plat_error(ctx, PLAT_NOT_FOUND, "namespace \"%s\" path "
		    "\"%s\" (merged): %s", top->ns, top->path, err);
	out.value = value_new(ctx, top);
	out.value->json = doc_dump(result);
	/* With a selector, the source of the top-level key it is under. */
	out.sources = plat_alloc(ctx, (json_object_size(m->sources) + 1) *
	    sizeof(*out.sources));
	if (selector != NULL) {
		key = selector_top(ctx, selector);
		if ((src = json_object_get(m->sources, key)) != NULL) {
			e = plat_alloc(ctx, sizeof(*e));
			platform__config__v1__read_response__sources_entry__init(
			    e);
			e->key = (char *)key;
			e->value = (char *)json_string_value(src);
			out.sources[out.n_sources++] = e;
		}
	} else {
		json_object_foreach(m->sources, key, src) {
			e = plat_alloc(ctx, sizeof(*e));
			platform__config__v1__read_response__sources_entry__init(
			    e);
			e->key = (char *)key;
			e->value = (char *)json_string_value(src);
			out.sources[out.n_sources++] = e;
		}
	}
	rc = respond(ctx, &out.base, resp);
	free(out.value->json);
	return rc;
}

/* Deep-merges the latest live documents of path down the chain of ns;
 * the Value is that of the most specific one. */
static int
read_merged(plat_ctx *ctx, const char *ns, const char *path,
    const char *selector, ProtobufCMessage **resp)
{
	char chain[DOC_CHAIN_MAX][DOC_NAMESPACE_MAX + 1];
	size_t n = doc_chain(ns, chain);
	struct cfg_row *top = NULL, *row;
	struct doc_merge m;
	json_t *doc;
	int rc = PLAT_OK;

	doc_merge_init(&m);
	for (size_t i = 0; i < n && rc == PLAT_OK; i++) {
		if ((rc = latest(ctx, chain[i], path, &row)) != PLAT_OK)
			break;
		if (row == NULL || row->deleted) {
			cfg_row_unref(row);
			continue;
		}
		if ((doc = doc_load(row->json)) == NULL) {
			log_error("config: stored document does not parse",
			    "namespace", row->ns, "path", row->path);
			rc = plat_error(ctx, PLAT_INTERNAL, "stored document "
			    "does not parse");
			cfg_row_unref(row);
			break;
		}
		doc_merge_add(&m, doc, chain[i]);
		json_decref(doc);
		cfg_row_unref(top);
		top = row;
	}
	if (rc == PLAT_OK && top == NULL)
		rc = plat_error(ctx, PLAT_NOT_FOUND, "path \"%s\" not found in "
		    "namespace \"%s\" nor in any above it", path, ns);
	else if (rc == PLAT_OK)
		rc = read_merged_respond(ctx, &m, top, selector, resp);
	cfg_row_unref(top);
	doc_merge_free(&m);
	return rc;
}

static int
config_read(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Config__V1__ReadRequest *req = (const void *)msg;
	char path[DOC_PATH_MAX + 1], err[512];
	const char *selector;

	if (doc_check_namespace("namespace", req->namespace_, err,
	    sizeof(err)) != 0 ||
	    doc_split_address(req->path, path, &selector, err,
	    sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if (req->version < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "version: must not be negative");
	if (req->merged && req->version != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "version: a "
		    "merged read is of the latest versions; leave version 0");
	if (req->merged)
		return read_merged(ctx, req->namespace_, path, selector, resp);
	return read_one(ctx, req->namespace_, path, selector, req->version,
	    resp);
}

/* ---- writes ---- */

static int
check_target(plat_ctx *ctx, const char *ns, const char *path,
    int64_t expected_version, const char *author, const char *comment)
{
	char err[512];

	if (doc_check_namespace("namespace", ns, err, sizeof(err)) != 0 ||
	    doc_check_path("path", path, err, sizeof(err)) != 0 ||
	    doc_check_length("author", author, DOC_AUTHOR_MAX, err,
	    sizeof(err)) != 0 ||
	    doc_check_length("comment", comment, DOC_COMMENT_MAX, err,
	    sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if (expected_version < -1)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "expected_version: -1 (absent), 0 (any) or a version");
	return PLAT_OK;
}

/* A write on its way through the writer: the response to fill, and the
 * canonical document it owns. Lives in the call's arena. */
struct write_call {
	struct write_job job;
	plat_ctx *ctx;
	ProtobufCMessage *out;
	Value **slot;
	char *json;
};

/* s as a JSON string at p (escaped as json_dumps does: '"', '\\' and
 * control characters; s is UTF-8, as the runtime checked every request
 * string), at most 6 * strlen(s) + 2 bytes; returns the end. */
static char *
json_quote(char *p, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	static const char short_esc[0x20] = {
		['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f',
		['\r'] = 'r',
	};

	*p++ = '"';
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\') {
			*p++ = '\\';
			*p++ = (char)ch;
		} else if (ch < 0x20 && short_esc[ch] != '\0') {
			*p++ = '\\';
			*p++ = short_esc[ch];
		} else if (ch < 0x20) {
			memcpy(p, "\\u00", 4);
			p[4] = hex[ch >> 4];
			p[5] = hex[ch & 15];
			p += 6;
		} else
			*p++ = (char)ch;
	}
	*p++ = '"';
	return p;
}

/*
 * A committed change as the platform event platform.config.changed. Its
 * JSON is written directly, one allocation, rather than built as a
 * jansson object and dumped: this runs for every write.
 */
static void
emit_change(enum store_op op, const struct cfg_row *row)
{
	static const char *const ops[] = {
		[STORE_UPDATE] = "update",
		[STORE_DELETE] = "delete",
		[STORE_ROLLBACK] = "rollback",
	};
	size_t len = 6 * (strlen(row->ns) + strlen(row->path) +
	    strlen(row->author) + strlen(row->comment)) + 192;
	char *text = xcalloc(1, len), *p = text;

	p += sprintf(p, "{\"op\":\"%s\",\"namespace\":", ops[op]);
	p = json_quote(p, row->ns);
	p += sprintf(p, ",\"path\":");
	p = json_quote(p, row->path);
	p += sprintf(p, ",\"version\":%" PRId64 ",\"revision\":%" PRId64
	    ",\"deleted\":%s,\"author\":", row->version, row->revision,
	    row->deleted ? "true" : "false");
	p = json_quote(p, row->author);
	p += sprintf(p, ",\"comment\":");
	p = json_quote(p, row->comment);
	memcpy(p, "}", 2);
	plat_event_emit(S.events, "platform.config.changed",
	    "platform.config.changed.v1", text,
	    (const char *const[]){ "namespace", row->ns, NULL });
	free(text);
}

/* The writer's answer: on success the change is published as a platform
 * event and the caller answered with the new version. */
static void
write_done(struct write_job *job, enum plat_code code, const char *err,
    struct cfg_row *row)
{
	struct write_call *wc = (struct write_call *)job;
	plat_ctx *ctx = wc->ctx;
	ProtobufCMessage *resp = NULL;
	int rc;

	free(wc->json);
	wc->json = NULL;
	if (code != PLAT_OK) {
		plat_reply(ctx, store_error(ctx, code, err), NULL);
		return;
	}
	emit_change(wc->job.w.op, row);
	*wc->slot = value_new(ctx, row);
	rc = respond(ctx, wc->out, &resp);
	plat_reply(ctx, rc, resp);
}

/* A version's author: the one the request names, else the caller the
 * guard verified, else none. */
static const char *
write_author(plat_ctx *ctx, const char *given)
{
	const struct plat_caller *who = plat_ctx_caller(ctx);

	if (given[0] != '\0' || who == NULL)
		return given;
	return who->account;
}

/*
 * Update, Delete and Rollback are one handler: their requests carry the
 * fields of a write under the same names (namespace, path,
 * expected_version, author, comment; json for Update, to_version for
 * Rollback), read here by name, and each answers with a message whose
 * one field is the new version's Value.
 */
static const struct write_method {
	const ProtobufCMessageDescriptor *req, *resp;
	enum store_op op;
} write_methods[] = {
	{ &platform__config__v1__update_request__descriptor,
	  &platform__config__v1__update_response__descriptor, STORE_UPDATE },
	{ &platform__config__v1__delete_request__descriptor,
	  &platform__config__v1__delete_response__descriptor, STORE_DELETE },
	{ &platform__config__v1__rollback_request__descriptor,
	  &platform__config__v1__rollback_response__descriptor,
	  STORE_ROLLBACK },
};

/* Field name of msg, or NULL when its message has none. */
static const void *
write_field(const ProtobufCMessage *msg, const char *name)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(msg->descriptor,
	    name);

	return f != NULL ? (const char *)msg + f->offset : NULL;
}

static const char *
write_str(const ProtobufCMessage *msg, const char *name)
{
	const char *const *p = write_field(msg, name);

	return p != NULL ? *p : "";
}

static int64_t
write_int(const ProtobufCMessage *msg, const char *name)
{
	const int64_t *p = write_field(msg, name);

	return p != NULL ? *p : 0;
}

/* Checks the write, hands it to the writer (group commit) and answers
 * once it committed. Its strings stay in the request, which lives until
 * the answer. */
static int
config_write(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const struct write_method *m = NULL;
	struct write_call *wc;
	char *json = NULL, err[512];
	struct store_write w;
	int rc;

	for (size_t i = 0; m == NULL && i < sizeof(write_methods) /
	    sizeof(write_methods[0]); i++)
		if (write_methods[i].req == msg->descriptor)
			m = &write_methods[i];
	if (m == NULL)
		return plat_error(ctx, PLAT_INTERNAL, "not a write request");
	w = (struct store_write){
		.op = m->op,
		.ns = write_str(msg, "namespace"),
		.path = write_str(msg, "path"),
		.expected_version = write_int(msg, "expected_version"),
		.to_version = write_int(msg, "to_version"),
		.author = write_str(msg, "author"),
		.comment = write_str(msg, "comment"),
	};
	if ((rc = check_target(ctx, w.ns, w.path, w.expected_version,
	    w.author, w.comment)) != PLAT_OK)
		return rc;
	if (w.op == STORE_UPDATE && doc_canonical("json",
	    write_str(msg, "json"), &json, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if (w.op == STORE_ROLLBACK && w.to_version < 1)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "to_version: required (a version, 1 or more)");
	w.json = json;
	w.author = write_author(ctx, w.author);
	wc = plat_alloc(ctx, sizeof(*wc));
	wc->job.w = w;
	wc->job.call.deadline_ms = batcher_deadline_of(ctx);
	wc->job.done = write_done;
	wc->ctx = ctx;
	wc->out = plat_new_message(ctx, m->resp);
	wc->slot = (Value **)(void *)((char *)wc->out +
	    m->resp->fields[0].offset);
	wc->json = json;
	rc = plat_defer(ctx);   /* before the writer can answer */
	writer_submit(&wc->job);
	return rc;
}

/* ---- History, Diff, List ---- */

static int
config_history(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Config__V1__HistoryRequest *req = (const void *)msg;
	Platform__Config__V1__HistoryResponse out =
	    PLATFORM__CONFIG__V1__HISTORY_RESPONSE__INIT;
	const struct plat_settings *set =
	    plat_server_settings(plat_ctx_server(ctx));
	size_t budget = (size_t)set->max_message_bytes / 2, used = 0;
	char err[512], tok[32], *end;
	int64_t before = 0;
	struct cfg_rows rows;
	enum plat_code code;
	int page = 0, rc;

	if (doc_check_namespace("namespace", req->namespace_, err,
	    sizeof(err)) != 0 ||
	    doc_check_path("path", req->path, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if ((rc = plat_page_size(ctx, req->page_size, HISTORY_PAGE_DEFAULT,
	    PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0') {
		if ((rc = plat_page_token_parse(ctx, req->page_token, 'h', tok,
		    sizeof(tok))) != PLAT_OK)
			return rc;
		before = strtoll(tok, &end, 10);
		if (*end != '\0' || before < 2)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "page_token: not a token this server gave for "
			    "this call");
	}
	code = store_history(S.store, req->namespace_, req->path, before,
	    page + 1, plat_ctx_deadline_left_ms(ctx), &rows, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	if (rows.n == 0 && before == 0) {
		cfg_rows_free(&rows);
		return not_found(ctx, req->namespace_, req->path);
	}
	out.versions = plat_alloc(ctx, (rows.n + 1) * sizeof(*out.versions));
	for (size_t i = 0; i < rows.n && out.n_versions < (size_t)page; i++) {
		/* Stay well inside the message size limit. */
		used += rows.v[i]->size + 64;
		if (out.n_versions > 0 && used > budget)
			break;
		out.versions[out.n_versions++] = value_new(ctx, rows.v[i]);
	}
	if (out.n_versions < rows.n) {
		snprintf(tok, sizeof(tok), "%" PRId64,
		    out.versions[out.n_versions - 1]->version);
		out.next_page_token = plat_page_token(ctx, 'h', tok);
	}
	rc = respond(ctx, &out.base, resp);
	cfg_rows_free(&rows);
	return rc;
}

/* The document of a version for a diff: NULL for a tombstone. */
static int
diff_doc(plat_ctx *ctx, const struct cfg_row *row, json_t **doc)
{
	*doc = NULL;
	if (row->deleted)
		return PLAT_OK;
	if ((*doc = doc_load(row->json)) == NULL) {
		log_error("config: stored document does not parse",
		    "namespace", row->ns, "path", row->path);
		return plat_error(ctx, PLAT_INTERNAL, "stored document does "
		    "not parse");
	}
	return PLAT_OK;
}

static int
diff_respond(plat_ctx *ctx, const struct cfg_row *from,
    const struct cfg_row *to, ProtobufCMessage **resp)
{
	Platform__Config__V1__DiffResponse out =
	    PLATFORM__CONFIG__V1__DIFF_RESPONSE__INIT;
	json_t *a = NULL, *b = NULL;
	struct doc_diff d;
	int rc;

	if ((rc = diff_doc(ctx, from, &a)) != PLAT_OK ||
	    (rc = diff_doc(ctx, to, &b)) != PLAT_OK) {
		json_decref(a);
		return rc;
	}
	doc_diff(a, b, &d);
	out.changes = plat_alloc(ctx, (d.n + 1) * sizeof(*out.changes));
	for (size_t i = 0; i < d.n; i++) {
		Platform__Config__V1__Change *c = plat_alloc(ctx, sizeof(*c));

		platform__config__v1__change__init(c);
		c->op = (Platform__Config__V1__Change__Op)d.changes[i].op;
		c->pointer = d.changes[i].pointer;
		c->old_json = d.changes[i].old_json;
		c->new_json = d.changes[i].new_json;
		out.changes[out.n_changes++] = c;
	}
	rc = respond(ctx, &out.base, resp);
	doc_diff_free(&d);
	json_decref(a);
	json_decref(b);
	return rc;
}

static int
config_diff(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Config__V1__DiffRequest *req = (const void *)msg;
	const char *ns = req->namespace_, *path = req->path;
	struct cfg_row *from = NULL, *to = NULL;
	char err[512];
	int rc;

	if (doc_check_namespace("namespace", ns, err, sizeof(err)) != 0 ||
	    doc_check_path("path", path, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if (req->from_version < 1)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "from_version: required (a version, 1 or more)");
	if (req->to_version < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "to_version: a version, or 0 for the latest");
	if ((rc = version_row(ctx, ns, path, req->from_version, &from)) !=
	    PLAT_OK)
		return rc;
	if (from == NULL)
		return plat_error(ctx, PLAT_NOT_FOUND, "from_version %" PRId64
		    ": namespace \"%s\" path \"%s\" has no such version",
		    req->from_version, ns, path);
	rc = req->to_version == 0 ? latest(ctx, ns, path, &to) :
	    version_row(ctx, ns, path, req->to_version, &to);
	if (rc == PLAT_OK && to == NULL)
		rc = plat_error(ctx, PLAT_NOT_FOUND, "to_version %" PRId64
		    ": namespace \"%s\" path \"%s\" has no such version",
		    req->to_version, ns, path);
	if (rc == PLAT_OK)
		rc = diff_respond(ctx, from, to, resp);
	cfg_row_unref(from);
	cfg_row_unref(to);
	return rc;
}

static int
config_list(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Config__V1__ListRequest *req = (const void *)msg;
	Platform__Config__V1__ListResponse out =
	    PLATFORM__CONFIG__V1__LIST_RESPONSE__INIT;
	char err[512], after[DOC_PATH_MAX + 1] = "";
	struct cfg_rows rows;
	enum plat_code code;
	int page = 0, rc;

	if (doc_check_namespace("namespace", req->namespace_, err,
	    sizeof(err)) != 0 ||
	    doc_check_prefix("prefix", req->prefix, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if ((rc = plat_page_size(ctx, req->page_size, LIST_PAGE_DEFAULT,
	    PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0' &&
	    ((rc = plat_page_token_parse(ctx, req->page_token, 'l', after,
	    sizeof(after))) != PLAT_OK ||
	    doc_check_path("page_token", after, err, sizeof(err)) != 0))
		return rc != PLAT_OK ? rc : plat_error(ctx,
		    PLAT_INVALID_ARGUMENT, "page_token: not a token this "
		    "server gave for this call");
	code = store_list(S.store, req->namespace_, req->prefix, after,
	    req->include_deleted, page + 1, plat_ctx_deadline_left_ms(ctx),
	    &rows, err, sizeof(err));
	if (code != PLAT_OK)
		return store_error(ctx, code, err);
	out.values = plat_alloc(ctx, (rows.n + 1) * sizeof(*out.values));
	for (size_t i = 0; i < rows.n && i < (size_t)page; i++)
		out.values[out.n_values++] = value_new(ctx, rows.v[i]);
	if (rows.n > (size_t)page)
		out.next_page_token = plat_page_token(ctx, 'l',
		    out.values[out.n_values - 1]->path);
	rc = respond(ctx, &out.base, resp);
	cfg_rows_free(&rows);
	return rc;
}

/* ---- Watch ---- */

static int
config_watch(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	const Platform__Config__V1__WatchRequest *req = (const void *)msg;
	char err[512], field[48];

	if (req->n_namespaces > WATCH_NAMESPACES_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "namespaces: at "
		    "most %d", WATCH_NAMESPACES_MAX);
	for (size_t i = 0; i < req->n_namespaces; i++) {
		snprintf(field, sizeof(field), "namespaces[%zu]", i);
		if (doc_check_namespace(field, req->namespaces[i], err,
		    sizeof(err)) != 0)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s",
			    err);
	}
	if (doc_check_prefix("prefix", req->prefix, err, sizeof(err)) != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
	if (req->after_revision < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "after_revision: must not be negative");
	return feed_watch(ctx, st, (const char *const *)req->namespaces,
	    req->n_namespaces, req->prefix, req->after_revision);
}

/* ---- lifecycle ---- */

static double
gauge_watchers(void *arg)
{
	(void)arg;
	return (double)plat_feed_watchers(feed_get());
}

static double
gauge_cache(void *arg)
{
	(void)arg;
	return (double)cache_entries();
}

static double
gauge_write_queue(void *arg)
{
	(void)arg;
	return (double)writer_pending();
}

static double
gauge_revision(void *arg)
{
	int64_t pos = plat_feed_position(feed_get());

	(void)arg;
	return pos < 0 ? 0 : (double)pos;
}

static int
config_init(plat_server *srv, const struct plat_settings *s)
{
	char err[512];
	enum plat_code code;
	int pool;

	if (s->database == NULL || s->database[0] == '\0') {
		fprintf(stderr, "config-srv: --database (PLATFORM_DATABASE) "
		    "is required\n");
		return -1;
	}
	S.events = plat_server_events(srv);
	pool = s->workers * 2 < POOL_MIN ? POOL_MIN : s->workers * 2;
	if ((S.store = store_new(s->database, pool)) == NULL)
		return -1;
	code = pg_store_migrate(S.store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("config: database unavailable at start; answering "
		    "UNAVAILABLE until it is reachable", "error", err);
	} else if (code != PLAT_OK) {
		log_error("config: cannot bring the database schema up to "
		    "date", "error", err);
		fprintf(stderr, "config-srv: %s\n", err);
		pg_store_free(S.store);
		S.store = NULL;
		return -1;
	}
	cache_init(CACHE_MAX_ENTRIES, CACHE_MAX_BYTES);
	if (writer_start(S.store, feed_committed) != 0) {
		cache_free();
		pg_store_free(S.store);
		S.store = NULL;
		return -1;
	}
	if (feed_start(S.store, s->database, srv) != 0) {
		log_error("config: cannot start the change feed");
		writer_stop();
		cache_free();
		pg_store_free(S.store);
		S.store = NULL;
		return -1;
	}
	metrics_gauge_fn(plat_server_metrics(srv), "config_watchers",
	    "Open Watch streams.", gauge_watchers, NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "config_write_queue",
	    "Writes waiting for or in a group commit.", gauge_write_queue,
	    NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "config_cache_entries",
	    "Paths whose latest version is cached.", gauge_cache, NULL);
	metrics_gauge_fn(plat_server_metrics(srv), "config_feed_revision",
	    "The last revision the change feed applied.", gauge_revision,
	    NULL);
	(void)plat_check_declare_database(srv, S.store);
	return 0;
}

static void
config_fini(plat_server *srv)
{
	(void)srv;
	writer_stop();          /* its answers touch the cache and the feed */
	feed_stop();
	cache_free();
	pg_store_free(S.store);
	S.store = NULL;
}

#define CONFIG_PATH "/platform.config.v1.Config/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(CONFIG_PATH, name, platform__config__v1, type, fn, idem)

static const struct plat_method config_methods[] = {
	UNARY("Read", config_read, read, 1),
	UNARY("Update", config_write, update, 0),
	UNARY("Delete", config_write, delete, 0),
	UNARY("History", config_history, history, 1),
	UNARY("Diff", config_diff, diff, 1),
	UNARY("Rollback", config_write, rollback, 0),
	UNARY("List", config_list, list, 1),
	{
		.path = CONFIG_PATH "Watch",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__config__v1__watch_request__descriptor,
		.response = &platform__config__v1__watch_response__descriptor,
		.stream = config_watch,
	},
};
/* --database is required: checked with the other settings, so a missing
 * or malformed one is a one-line error and exit 2. */
const struct plat_service config_service = {
	.name = "config",
	.grpc_service = "platform.config.v1.Config",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7071",
	.methods = config_methods,
	.nmethods = PLAT_COUNT(config_methods),
	.check_settings = pg_check_database,
	.init = config_init,
	.fini = config_fini,
};
