/*
 * ctl_db: `platformctl db ...`, an operator's view of db-srv. See
 * ctl_db.h.
 *
 * What mongosh, psql and PostgREST users expect of a document store's
 * command line: get prints the document (the JSON text as stored, one
 * line, so that jq reads it), find prints one document a line over every
 * page, put reads "-" from stdin, watch prints one line per change until
 * Ctrl-C. -o json prints whole records (id, revision, create_revision,
 * expires_unix_ms, document), one a line for find and watch. Exit status
 * as for every platformctl command: 0 ok, 1 a call failed (stderr names
 * the gRPC status: a missing document is NOT_FOUND, a revision that moved
 * on FAILED_PRECONDITION), 2 bad usage.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_db.h"
#include "ctl_out.h"
#include "platform/clock.h"
#include "platform/db/v1/db.pb-c.h"
#include "platform/server.h"	/* PLAT_ALREADY_EXISTS, the status codes */
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define DB_SERVICE	"db"
#define PAGE_SIZE	1000	/* the server's maximum: fewest calls */
#define STDIN_MAX	(256 << 10)	/* db-srv's largest document */
#define TTL_MAX_MS	31536000000LL	/* a year, as db-srv takes */
#define FILTER_DEPTH	8	/* db-srv's, checked there too */

#define M_PREFIX	"/platform.db.v1.DB/"
#define M_CREATE_DB	M_PREFIX "CreateDatabase"
#define M_LIST_DB	M_PREFIX "ListDatabases"
#define M_DROP_DB	M_PREFIX "DropDatabase"
#define M_CREATE_COLL	M_PREFIX "CreateCollection"
#define M_LIST_COLL	M_PREFIX "ListCollections"
#define M_DROP_COLL	M_PREFIX "DropCollection"
#define M_CREATE	M_PREFIX "Create"
#define M_READ		M_PREFIX "Read"
#define M_UPDATE	M_PREFIX "Update"
#define M_DELETE	M_PREFIX "Delete"
#define M_BATCH		M_PREFIX "BatchWrite"
#define M_SEARCH	M_PREFIX "Search"
#define M_COUNT		M_PREFIX "Count"
#define M_WATCH		M_PREFIX "Watch"
#define M_CREATE_INDEX	M_PREFIX "CreateIndex"
#define M_LIST_INDEXES	M_PREFIX "ListIndexes"
#define M_DROP_INDEX	M_PREFIX "DropIndex"

typedef Platform__Db__V1__Document	pb_doc;
typedef Platform__Db__V1__Filter	pb_filter;
typedef Platform__Db__V1__Condition	pb_cond;
typedef Platform__Db__V1__Order		pb_order;
typedef Platform__Db__V1__WatchResponse	pb_watch_resp;

/* The db commands' own flags, as given (NULL: not given). */
struct db_flags {
	const char *db, *expect_revision, *merge, *if_absent, *ttl;
	const char *limit, *page_size, *after_revision, *filter, *mode;
	const char *gin;
	struct ctl_list field;
};

static const struct db_flags *
db_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_db_group, __VA_ARGS__)

/* ---- numbers ---- */

/* flag's whole number in 1..max, 0 when not given: 0, or CTL_USAGE
 * after saying why. */
static int
flag_num(const char *flag, const char *s, int64_t max, int64_t *out)
{
	long long v;

	*out = 0;
	if (s == NULL)
		return 0;
	if (ctl_parse_int(s, 1, max, &v) != 0)
		return usage_error("%s must be a whole number of 1..%" PRId64
		    ", not '%s'", flag, max, s);
	*out = v;
	return 0;
}

static int
ttl_of(const struct ctl_run *x, int64_t *ms)
{
	const char *s = db_f(x)->ttl;

	*ms = 0;
	/* "none": no time to live any more (an update's -1). */
	if (s != NULL && strcmp(s, "none") == 0) {
		*ms = -1;
		return 0;
	}
	if (s == NULL || ctl_parse_duration(s, TTL_MAX_MS, ms) == 0)
		return 0;
	return usage_error("--ttl must be a duration of 1ms..365d (500ms, "
	    "30s, 5m, 2h, 1d; a bare number is seconds) or none, not '%s'",
	    s);
}

/* ---- calls ---- */

/* One unary call to db-srv under --timeout: at --db, else at a node of
 * the service "db" found through discovery. Only reads are retried (on
 * UNAVAILABLE): a write retried could be applied twice. */
static int
db_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, DB_SERVICE, db_f(x)->db, method, req, desc,
	    resp, idempotent);
}

/* A server that answers OK owes a document; not sending one is its bug,
 * said rather than crashed on. */
static int
no_document(const char *method)
{
	fprintf(stderr, PROG ": %s: the server sent no document\n",
	    ctl_method_name(method));
	return CTL_FAIL;
}

/* ---- JSON in: documents, filters, queries ---- */

/*
 * A JSON text given on the line or on stdin, parsed to check it before
 * the call (NULL after a usage error naming what). Integers past 64 bits
 * are taken as reals here, so that a document jansson cannot hold as
 * integers still goes to the server as written.
 */
static json_t *
json_arg(const char *what, const char *text, size_t flags)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | flags, &je);

	if (j != NULL)
		return j;
	usage_error("%s is not JSON: %s (line %d, column %d)", what, je.text,
	    je.line, je.column);
	return NULL;
}

/* The document of put: the argument, or all of stdin for "-"; it must
 * be JSON (the server checks the rest). CTL_OK with *out malloc'd. */
static int
read_document(const char *arg, char **out)
{
	size_t len;
	json_t *j;
	int rc;

	if (strcmp(arg, "-") != 0)
		*out = xstrdup(arg);
	else if ((rc = ctl_read_stdin(&ctl_db_group, "the JSON document",
	    STDIN_MAX, out, &len)) != CTL_OK)
		return rc;
	if ((j = json_arg("the document", *out,
	    JSON_DECODE_INT_AS_REAL)) == NULL) {
		free(*out);
		*out = NULL;
		return CTL_USAGE;
	}
	json_decref(j);
	return CTL_OK;
}

/* The operator named s: "eq", "GT", "operator_in", "OPERATOR_EXISTS";
 * 0 (unspecified) when there is none such. */
static int
op_of(const char *s)
{
	const ProtobufCEnumValue *v;
	char name[64];
	size_t n;

	if (strncasecmp(s, "OPERATOR_", 9) == 0)
		s += 9;
	if ((n = strlen(s)) == 0 || n > 32)
		return 0;
	snprintf(name, sizeof(name), "OPERATOR_%s", s);
	for (char *p = name; *p != '\0'; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	v = protobuf_c_enum_descriptor_get_value_by_name(
	    &platform__db__v1__operator__descriptor, name);
	return v != NULL ? v->value : 0;
}

static int filter_of(const char *at, json_t *j, int depth, pb_filter **out);

/* {"path": P, "op": OP, "value": V} at at. */
static int
cond_of(const char *at, json_t *j, pb_cond **out)
{
	json_t *path = json_object_get(j, "path"), *op = json_object_get(j,
	    "op"), *val = json_object_get(j, "value");
	const char *k;
	json_t *v;
	pb_cond *c;

	json_object_foreach(j, k, v)
		if (strcmp(k, "path") != 0 && strcmp(k, "op") != 0 &&
		    strcmp(k, "value") != 0)
			return usage_error("%s: unknown key \"%s\" (a condition "
			    "is {\"path\", \"op\", \"value\"}; or all, any, "
			    "not)", at, k);
	if (!json_is_string(path))
		return usage_error("%s.path must be a string", at);
	if (!json_is_string(op) || op_of(json_string_value(op)) == 0)
		return usage_error("%s.op must be one of eq, ne, lt, le, gt, "
		    "ge, in, prefix, exists, contains", at);
	c = xcalloc(1, sizeof(*c));
	platform__db__v1__condition__init(c);
	c->path = xstrdup(json_string_value(path));
	c->op = op_of(json_string_value(op));
	if (val != NULL)
		c->value = ctl_json_text(val);
	*out = c;
	return CTL_OK;
}

/* The filters of a JSON array at at. */
static int
filters_of(const char *at, json_t *a, int depth, pb_filter ***out,
    size_t *n)
{
	char sub[512];
	size_t i;
	json_t *e;
	int rc;

	if (!json_is_array(a))
		return usage_error("%s must be an array of filters", at);
	*out = xcalloc(json_array_size(a) + 1, sizeof(**out));
	json_array_foreach(a, i, e) {
		snprintf(sub, sizeof(sub), "%s[%zu]", at, i);
		*n = i + 1;
		if ((rc = filter_of(sub, e, depth + 1, &(*out)[i])) != CTL_OK)
			return rc;
	}
	return CTL_OK;
}

/*
 * The Filter written as JSON at at ("filter", "filter.all[2]"), into
 * *out (malloc'd all through, for protobuf_c_message_free_unpacked, even
 * after a failure). CTL_OK, or CTL_USAGE after naming the place.
 */
static int
filter_of(const char *at, json_t *j, int depth, pb_filter **out)
{
	static const char *const keys[] = { "all", "any", "not" };
	pb_filter *f = xcalloc(1, sizeof(*f));
	char sub[512];
	json_t *v;
	int given = 0;

	platform__db__v1__filter__init(f);
	*out = f;
	if (!json_is_object(j))
		return usage_error("%s must be an object (a filter)", at);
	if (depth > FILTER_DEPTH)
		return usage_error("%s: filters nest %d levels at most", at,
		    FILTER_DEPTH);
	if (json_object_get(j, "path") != NULL ||
	    json_object_get(j, "op") != NULL)
		return cond_of(at, j, &f->condition);
	for (size_t i = 0; i < CTL_NELEM(keys); i++)
		given += json_object_get(j, keys[i]) != NULL;
	if (given > 1 || json_object_size(j) > (size_t)given)
		return usage_error("%s: a filter is a condition {\"path\", "
		    "\"op\", \"value\"}, or one of all, any, not", at);
	snprintf(sub, sizeof(sub), "%s.%s", at, given ?
	    json_object_iter_key(json_object_iter(j)) : "");
	if ((v = json_object_get(j, "all")) != NULL)
		return filters_of(sub, v, depth, &f->all, &f->n_all);
	if ((v = json_object_get(j, "any")) != NULL)
		return filters_of(sub, v, depth, &f->any, &f->n_any);
	if ((v = json_object_get(j, "not")) != NULL)
		return filter_of(sub, v, depth + 1, &f->not_);
	return CTL_OK;
}

/* The Filter of text (what --filter was given), NULL for none. */
static int
filter_text(const char *what, const char *text, pb_filter **out)
{
	json_t *j;
	int rc;

	*out = NULL;
	if (text == NULL)
		return CTL_OK;
	if ((j = json_arg(what, text, 0)) == NULL)
		return CTL_USAGE;
	rc = filter_of(what, j, 1, out);
	json_decref(j);
	return rc;
}

static void
filter_free(pb_filter *f)
{
	if (f != NULL)
		protobuf_c_message_free_unpacked(&f->base, NULL);
}

/* A find or count query: {"filter", "order", "fields", "limit"}. */
struct query {
	pb_filter *filter;
	pb_order **order;
	size_t n_order;
	char **fields;
	size_t n_fields;
	int64_t limit;
};

static void
query_free(struct query *q)
{
	filter_free(q->filter);
	for (size_t i = 0; i < q->n_order; i++)
		protobuf_c_message_free_unpacked(&q->order[i]->base, NULL);
	free(q->order);
	for (size_t i = 0; i < q->n_fields; i++)
		free(q->fields[i]);
	free(q->fields);
	memset(q, 0, sizeof(*q));
}

/* "age", "-age" (descending), or {"path": "age", "descending": true}. */
static int
order_of(size_t i, json_t *e, pb_order **out)
{
	json_t *p = json_object_get(e, "path"), *d = json_object_get(e,
	    "descending");
	pb_order *o = xcalloc(1, sizeof(*o));
	const char *s;

	platform__db__v1__order__init(o);
	*out = o;
	if (json_is_string(e)) {
		s = json_string_value(e);
		o->descending = *s == '-';
		o->path = xstrdup(s + (*s == '-'));
		return CTL_OK;
	}
	if (!json_is_object(e) || !json_is_string(p) ||
	    (d != NULL && !json_is_boolean(d)) ||
	    json_object_size(e) != 1 + (d != NULL))
		return usage_error("order[%zu] must be \"path\", \"-path\" or "
		    "{\"path\": ..., \"descending\": true}", i);
	o->path = xstrdup(json_string_value(p));
	o->descending = d != NULL && json_is_true(d);
	return CTL_OK;
}

static int
query_parse(const char *arg, int with_rest, struct query *q)
{
	const char *k;
	json_t *j, *v, *e;
	char *in = NULL;
	size_t i, len;
	int rc = CTL_OK;

	memset(q, 0, sizeof(*q));
	if (arg == NULL)
		return CTL_OK;
	/* "-": the query from stdin (a long one, from a file). */
	if (strcmp(arg, "-") == 0 && (rc = ctl_read_stdin(&ctl_db_group,
	    "the JSON query", STDIN_MAX, &in, &len)) != CTL_OK)
		return rc;
	j = json_arg("the query", in != NULL ? in : arg, 0);
	free(in);
	if (j == NULL)
		return CTL_USAGE;
	if (!json_is_object(j)) {
		json_decref(j);
		return usage_error("the query must be an object: {\"filter\": "
		    "...%s}", with_rest ? ", \"order\": [...], \"fields\": "
		    "[...], \"limit\": N" : "");
	}
	json_object_foreach(j, k, v) {
		if (strcmp(k, "filter") == 0)
			rc = filter_of("filter", v, 1, &q->filter);
		else if (!with_rest)
			rc = usage_error("count: the query takes \"filter\" "
			    "only, not \"%s\"", k);
		else if (strcmp(k, "order") == 0 && json_is_array(v)) {
			q->order = xcalloc(json_array_size(v) + 1,
			    sizeof(*q->order));
			json_array_foreach(v, i, e) {
				q->n_order = i + 1;
				if ((rc = order_of(i, e, &q->order[i])) !=
				    CTL_OK)
					break;
			}
		} else if (strcmp(k, "fields") == 0 && json_is_array(v)) {
			q->fields = xcalloc(json_array_size(v) + 1,
			    sizeof(*q->fields));
			json_array_foreach(v, i, e) {
				if (!json_is_string(e)) {
					rc = usage_error("fields[%zu] must be a "
					    "path (a string)", i);
					break;
				}
				q->fields[q->n_fields++] =
				    xstrdup(json_string_value(e));
			}
		} else if (strcmp(k, "limit") == 0 && json_is_integer(v) &&
		    json_integer_value(v) >= 1)
			q->limit = json_integer_value(v);
		else if (strcmp(k, "order") == 0 || strcmp(k, "fields") == 0)
			rc = usage_error("\"%s\" must be an array", k);
		else if (strcmp(k, "limit") == 0)
			rc = usage_error("\"limit\" must be a whole number of "
			    "at least 1");
		else
			rc = usage_error("unknown key \"%s\" in the query "
			    "(filter, order, fields, limit)", k);
		if (rc != CTL_OK)
			break;
	}
	json_decref(j);
	if (rc != CTL_OK)
		query_free(q);
	return rc;
}

/* ---- JSON out ---- */

/* The record: id, revision, create_revision, expires_unix_ms and the
 * document itself. */
static json_t *
doc_record(const pb_doc *d)
{
	return json_pack("{s:o, s:I, s:I, s:I, s:o}",
	    "id", ctl_jstr(d->id),
	    "revision", (json_int_t)d->revision,
	    "create_revision", (json_int_t)d->create_revision,
	    "expires_unix_ms", (json_int_t)d->expires_unix_ms,
	    "document", ctl_json_doc(d->json));
}

/* One document a line: its JSON text as the server sent it (so numbers
 * stay exactly as stored), or with -o json the record, compact. */
static int
doc_line(const struct ctl_run *x, const pb_doc *d)
{
	if (x->g->json)
		return ctl_json_print(doc_record(d), JSON_COMPACT);
	ctl_put_line(stdout, "%s", d->json);
	return CTL_OK;
}

/* ---- databases, collections ---- */

static int
db_databases(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__ListDatabasesRequest req =
	    PLATFORM__DB__V1__LIST_DATABASES_REQUEST__INIT;
	struct ctl_table t = { .ncols = 2 };
	struct ctl_pages pg = { 0 };
	char when[32];
	json_t *arr;
	int rc;

	if ((rc = ctl_pages_fetch(x, db_call, M_LIST_DB, &req.base,
	    &platform__db__v1__list_databases_response__descriptor,
	    "databases", PAGE_SIZE, 0, &pg)) != CTL_OK)
		goto out;
	if (x->g->json) {
		arr = json_array();
		for (size_t i = 0; i < pg.nitems; i++) {
			const Platform__Db__V1__Database *d = pg.items[i];

			json_array_append_new(arr, json_pack("{s:o, s:I}",
			    "name", ctl_jstr(d->name), "created_unix_ms",
			    (json_int_t)d->created_unix_ms));
		}
		rc = ctl_json_print(arr, 0);
		goto out;
	}
	ctl_table_row(&t, (const char *[]){ "NAME", "CREATED" });
	for (size_t i = 0; i < pg.nitems; i++) {
		const Platform__Db__V1__Database *d = pg.items[i];

		ctl_fmt_time(when, sizeof(when), d->created_unix_ms);
		ctl_table_row(&t, (const char *[]){ d->name, when });
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
out:
	ctl_pages_free(&pg);
	return rc;
}

static int
db_collections(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__ListCollectionsRequest req =
	    PLATFORM__DB__V1__LIST_COLLECTIONS_REQUEST__INIT;
	struct ctl_table t = { .ncols = 3 };
	struct ctl_pages pg = { 0 };
	char when[32], docs[24];
	json_t *arr;
	int rc;

	req.database = argv[0];
	if ((rc = ctl_pages_fetch(x, db_call, M_LIST_COLL, &req.base,
	    &platform__db__v1__list_collections_response__descriptor,
	    "collections", PAGE_SIZE, 0, &pg)) != CTL_OK)
		goto out;
	if (x->g->json) {
		arr = json_array();
		for (size_t i = 0; i < pg.nitems; i++) {
			const Platform__Db__V1__Collection *c = pg.items[i];

			json_array_append_new(arr, json_pack(
			    "{s:o, s:o, s:I, s:I}", "database",
			    ctl_jstr(c->database), "name", ctl_jstr(c->name),
			    "documents", (json_int_t)c->documents,
			    "created_unix_ms",
			    (json_int_t)c->created_unix_ms));
		}
		rc = ctl_json_print(arr, 0);
		goto out;
	}
	ctl_table_row(&t, (const char *[]){ "NAME", "DOCUMENTS", "CREATED" });
	for (size_t i = 0; i < pg.nitems; i++) {
		const Platform__Db__V1__Collection *c = pg.items[i];

		snprintf(docs, sizeof(docs), "%" PRId64, c->documents);
		ctl_fmt_time(when, sizeof(when), c->created_unix_ms);
		ctl_table_row(&t, (const char *[]){ c->name, docs, when });
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
out:
	ctl_pages_free(&pg);
	return rc;
}

/* What create and drop call: for a database (DATABASE) or a collection
 * (DATABASE COLLECTION). Their requests' first string fields are the
 * database and, for a collection, its name. */
struct db_admin {
	const char *word;			/* "created", "dropped" */
	const char *method[2];
	const ProtobufCMessageDescriptor *req[2], *resp[2];
};

static const struct db_admin db_creates = { "created",
	{ M_CREATE_DB, M_CREATE_COLL },
	{ &platform__db__v1__create_database_request__descriptor,
	  &platform__db__v1__create_collection_request__descriptor },
	{ &platform__db__v1__create_database_response__descriptor,
	  &platform__db__v1__create_collection_response__descriptor } };

static const struct db_admin db_drops = { "dropped",
	{ M_DROP_DB, M_DROP_COLL },
	{ &platform__db__v1__drop_database_request__descriptor,
	  &platform__db__v1__drop_collection_request__descriptor },
	{ &platform__db__v1__drop_database_response__descriptor,
	  &platform__db__v1__drop_collection_response__descriptor } };

/* "created shop" / "dropped shop orders"; -o json: {"database",
 * "collection", "created"|"dropped": true}. */
static int
db_admin_run(const struct ctl_run *x, const struct db_admin *a, int argc,
    char **argv)
{
	int coll = argc > 1;
	const ProtobufCMessageDescriptor *d = a->req[coll];
	ProtobufCMessage *req = xcalloc(1, d->sizeof_message), *m = NULL;
	int rc;

	protobuf_c_message_init(d, req);
	/* DATABASE and COLLECTION, in the order the request has them. */
	for (int i = 0; i <= coll; i++)
		memcpy((char *)req + d->fields[i].offset, &argv[i],
		    sizeof(argv[i]));
	rc = db_call(x, a->method[coll], req, a->resp[coll], &m, 0);
	free(req);
	if (rc != CTL_OK)
		return rc;
	if (x->g->json)
		rc = ctl_json_print(json_pack("{s:o, s:o, s:b}", "database",
		    ctl_jstr(argv[0]), "collection", ctl_jstr(coll ? argv[1] :
		    ""), a->word, 1), 0);
	else
		ctl_put_line(stdout, "%s %s%s%s", a->word, argv[0],
		    coll ? " " : "", coll ? argv[1] : "");
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
db_create(const struct ctl_run *x, int argc, char **argv)
{
	return db_admin_run(x, &db_creates, argc, argv);
}

static int
db_drop(const struct ctl_run *x, int argc, char **argv)
{
	return db_admin_run(x, &db_drops, argc, argv);
}

/* ---- get ---- */

static int
db_get(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__ReadRequest req = PLATFORM__DB__V1__READ_REQUEST__INIT;
	const pb_doc *d;
	ProtobufCMessage *m = NULL;
	int rc;

	req.database = argv[0];
	req.collection = argv[1];
	req.id = argv[2];
	req.fields = (char **)db_f(x)->field.v;
	req.n_fields = db_f(x)->field.n;
	if ((rc = db_call(x, M_READ, &req.base,
	    &platform__db__v1__read_response__descriptor, &m, 1)) != CTL_OK)
		return rc;
	d = ((Platform__Db__V1__ReadResponse *)m)->document;
	if (d == NULL)
		rc = no_document(M_READ);
	else if (x->g->json)
		rc = ctl_json_print(doc_record(d), 0);
	else
		rc = doc_line(x, d);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- put ---- */

/* "shop orders o-1: revision 17, expires in 30s"; the revision is what
 * a following --expect-revision wants. */
static int
write_out(const struct ctl_run *x, const char *method, const char *db,
    const char *coll, const pb_doc *d)
{
	char left[32] = "";

	if (d == NULL)
		return no_document(method);
	if (x->g->json)
		return ctl_json_print(doc_record(d), 0);
	if (d->expires_unix_ms != 0)
		ctl_fmt_expires(left, sizeof(left), d->expires_unix_ms,
		    plat_wall_ms());
	ctl_put_line(stdout, "%s %s %s: revision %" PRId64 "%s%s", db, coll,
	    d->id, d->revision, *left ? ", expires in " : "", left);
	return CTL_OK;
}

/* Update: the whole document or a merge patch, at --expect-revision N
 * when given. */
static int
put_update(const struct ctl_run *x, char **argv, const char *id,
    char *json, int64_t ttl, int64_t expect, ProtobufCMessage **m)
{
	Platform__Db__V1__UpdateRequest req =
	    PLATFORM__DB__V1__UPDATE_REQUEST__INIT;

	req.database = argv[0];
	req.collection = argv[1];
	req.id = (char *)id;
	req.json = json;
	req.mode = db_f(x)->merge != NULL ?
	    PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_MERGE_PATCH :
	    PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_REPLACE;
	req.expected_revision = expect;
	req.ttl_ms = ttl;
	return db_call(x, M_UPDATE, &req.base,
	    &platform__db__v1__update_response__descriptor, m, 0);
}

/*
 * put DB COLL [ID] JSON: a new document (ALREADY_EXISTS with
 * --if-absent when the id is taken); without --if-absent a taken id is
 * replaced (an upsert, like kv put and Firestore's set). --expect-revision
 * and --merge update an existing document only.
 */
static int
db_put(const struct ctl_run *x, int argc, char **argv)
{
	const struct db_flags *f = db_f(x);
	Platform__Db__V1__CreateRequest req =
	    PLATFORM__DB__V1__CREATE_REQUEST__INIT;
	const char *id = argc > 3 ? argv[2] : "";
	ProtobufCMessage *m = NULL;
	int64_t ttl, expect;
	char err[512], *json = NULL;
	const pb_doc *d;
	int rc, update = f->merge != NULL || f->expect_revision != NULL;

	if ((rc = ttl_of(x, &ttl)) != 0 || (rc = flag_num("--expect-revision",
	    f->expect_revision, INT64_MAX, &expect)) != 0)
		return rc;
	if (update && f->if_absent != NULL)
		return usage_error("put: --if-absent does not go with %s",
		    f->merge != NULL ? "--merge" : "--expect-revision");
	if (update && *id == '\0')
		return usage_error("put: %s needs the document's ID",
		    f->merge != NULL ? "--merge" : "--expect-revision");
	if ((rc = read_document(argv[argc - 1], &json)) != CTL_OK)
		return rc;
	if (update) {
		rc = put_update(x, argv, id, json, ttl, expect, &m);
		d = rc == CTL_OK ?
		    ((Platform__Db__V1__UpdateResponse *)m)->document : NULL;
		goto done;
	}
	req.database = argv[0];
	req.collection = argv[1];
	req.id = (char *)id;
	req.json = json;
	req.ttl_ms = ttl > 0 ? ttl : 0;
	rc = ctl_unary(x->g, DB_SERVICE, f->db, M_CREATE, &req.base,
	    &platform__db__v1__create_response__descriptor, &m, 0,
	    ctl_auth_metadata(x->g), err, sizeof(err));
	if (rc == PLAT_ALREADY_EXISTS && *id != '\0' && f->if_absent == NULL)
		/* Taken: replaced, as put means. */
		rc = put_update(x, argv, id, json, ttl, 0, &m);
	else if (rc != 0)
		rc = ctl_fail(ctl_method_name(M_CREATE), rc, err);
	d = rc != CTL_OK ? NULL : m->descriptor ==
	    &platform__db__v1__create_response__descriptor ?
	    ((Platform__Db__V1__CreateResponse *)m)->document :
	    ((Platform__Db__V1__UpdateResponse *)m)->document;
done:
	if (rc == CTL_OK)
		rc = write_out(x, update ? M_UPDATE : M_CREATE, argv[0],
		    argv[1], d);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	free(json);
	return rc;
}

/* ---- delete ---- */

static int
db_delete(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__DeleteRequest req =
	    PLATFORM__DB__V1__DELETE_REQUEST__INIT;
	const Platform__Db__V1__DeleteResponse *r;
	ProtobufCMessage *m = NULL;
	int rc;

	if ((rc = flag_num("--expect-revision", db_f(x)->expect_revision,
	    INT64_MAX, &req.expected_revision)) != 0)
		return rc;
	req.database = argv[0];
	req.collection = argv[1];
	req.id = argv[2];
	if ((rc = db_call(x, M_DELETE, &req.base,
	    &platform__db__v1__delete_response__descriptor, &m, 0)) != CTL_OK)
		return rc;
	r = (const Platform__Db__V1__DeleteResponse *)m;
	if (x->g->json)
		rc = ctl_json_print(json_pack("{s:o, s:b, s:I}", "id",
		    ctl_jstr(argv[2]), "deleted", 1, "revision",
		    (json_int_t)r->revision), 0);
	else
		ctl_put_line(stdout, "%s %s %s: deleted (revision %" PRId64 ")",
		    argv[0], argv[1], argv[2], r->revision);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- batch ---- */

/* The keys each kind of write takes, beside "collection". */
static const struct {
	const char *op;
	const char *keys;
} batch_ops[] = {
	{ "create", "collection id document ttl_ms" },
	{ "update", "collection id document merge expected_revision ttl_ms" },
	{ "delete", "collection id expected_revision" },
};

/* A string field of write i: NULL after a usage error. */
static char *
batch_str(size_t i, const char *op, json_t *o, const char *k, int need)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL && !need)
		return xstrdup("");
	if (!json_is_string(v)) {
		usage_error("writes[%zu].%s.%s must be a string", i, op, k);
		return NULL;
	}
	return xstrdup(json_string_value(v));
}

/* An integer field of write i (0 when absent): 0, or CTL_USAGE. */
static int
batch_int(size_t i, const char *op, json_t *o, const char *k, int64_t *out)
{
	json_t *v = json_object_get(o, k);

	*out = 0;
	if (v == NULL)
		return 0;
	if (!json_is_integer(v))
		return usage_error("writes[%zu].%s.%s must be a whole number", i,
		    op, k);
	*out = json_integer_value(v);
	return 0;
}

/*
 * Write i, {"create"|"update"|"delete": {...}}, into w (malloc'd all
 * through, for protobuf_c_message_free_unpacked, even after a failure).
 * The document is a JSON value, sent as ctl_json_text writes it.
 */
static int
batch_write(size_t i, json_t *e, Platform__Db__V1__Write *w)
{
	Platform__Db__V1__CreateRequest *c;
	Platform__Db__V1__UpdateRequest *u;
	Platform__Db__V1__DeleteRequest *d;
	const char *op = NULL, *k;
	json_t *o = NULL, *v, *doc;
	size_t n = 0;
	int rc;

	if (json_is_object(e) && json_object_size(e) == 1)
		for (n = 0; n < CTL_NELEM(batch_ops); n++)
			if ((o = json_object_get(e, batch_ops[n].op)) != NULL) {
				op = batch_ops[n].op;
				break;
			}
	if (op == NULL || !json_is_object(o))
		return usage_error("writes[%zu] must be {\"create\"|\"update\""
		    "|\"delete\": {...}}", i);
	json_object_foreach(o, k, v)
		if (!ctl_word_in(k, batch_ops[n].keys))
			return usage_error("writes[%zu].%s: unknown key \"%s\" "
			    "(%s)", i, op, k, batch_ops[n].keys);
	doc = json_object_get(o, "document");
	if (n < 2 && doc == NULL)
		return usage_error("writes[%zu].%s.document is missing", i, op);
	if (n == 0) {
		c = xcalloc(1, sizeof(*c));
		platform__db__v1__create_request__init(c);
		w->op_case = PLATFORM__DB__V1__WRITE__OP_CREATE;
		w->create = c;
		c->database = xstrdup("");
		c->json = ctl_json_text(doc);
		if ((c->collection = batch_str(i, op, o, "collection", 1)) ==
		    NULL || (c->id = batch_str(i, op, o, "id", 0)) == NULL)
			return CTL_USAGE;
		return batch_int(i, op, o, "ttl_ms", &c->ttl_ms);
	}
	if (n == 1) {
		u = xcalloc(1, sizeof(*u));
		platform__db__v1__update_request__init(u);
		w->op_case = PLATFORM__DB__V1__WRITE__OP_UPDATE;
		w->update = u;
		u->database = xstrdup("");
		u->json = ctl_json_text(doc);
		if ((v = json_object_get(o, "merge")) != NULL &&
		    !json_is_boolean(v))
			return usage_error("writes[%zu].update.merge must be true "
			    "or false", i);
		u->mode = json_is_true(v) ?
		    PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_MERGE_PATCH :
		    PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_REPLACE;
		if ((u->collection = batch_str(i, op, o, "collection", 1)) ==
		    NULL || (u->id = batch_str(i, op, o, "id", 1)) == NULL)
			return CTL_USAGE;
		if ((rc = batch_int(i, op, o, "expected_revision",
		    &u->expected_revision)) != 0)
			return rc;
		return batch_int(i, op, o, "ttl_ms", &u->ttl_ms);
	}
	d = xcalloc(1, sizeof(*d));
	platform__db__v1__delete_request__init(d);
	w->op_case = PLATFORM__DB__V1__WRITE__OP_DELETE;
	w->delete_ = d;
	d->database = xstrdup("");
	if ((d->collection = batch_str(i, op, o, "collection", 1)) == NULL ||
	    (d->id = batch_str(i, op, o, "id", 1)) == NULL)
		return CTL_USAGE;
	return batch_int(i, op, o, "expected_revision", &d->expected_revision);
}

/* "create orders o-1: revision 17", one line a write, in order. */
static int
batch_out(const struct ctl_run *x, const Platform__Db__V1__BatchWriteRequest
    *req, const Platform__Db__V1__BatchWriteResponse *r)
{
	json_t *arr = json_array();
	const char *op, *coll, *id;

	for (size_t i = 0; i < req->n_writes; i++) {
		const Platform__Db__V1__Write *w = req->writes[i];
		const Platform__Db__V1__WriteResult *res = i < r->n_results ?
		    r->results[i] : NULL;

		op = batch_ops[w->op_case - 1].op;
		coll = w->op_case == PLATFORM__DB__V1__WRITE__OP_CREATE ?
		    w->create->collection : w->op_case ==
		    PLATFORM__DB__V1__WRITE__OP_UPDATE ? w->update->collection :
		    w->delete_->collection;
		id = res != NULL && res->document != NULL ? res->document->id :
		    w->op_case == PLATFORM__DB__V1__WRITE__OP_DELETE ?
		    w->delete_->id : "-";
		json_array_append_new(arr, json_pack("{s:s, s:o, s:o, s:I}",
		    "op", op, "collection", ctl_jstr(coll), "id", ctl_jstr(id),
		    "revision", (json_int_t)(res != NULL ? res->revision : 0)));
		if (!x->g->json)
			ctl_put_line(stdout, "%s %s %s: revision %" PRId64, op,
			    coll, id, res != NULL ? res->revision : 0);
	}
	if (!x->g->json) {
		json_decref(arr);
		return CTL_OK;
	}
	return ctl_json_print(json_pack("{s:I, s:o}", "revision",
	    (json_int_t)r->revision, "results", arr), 0);
}

static int
db_batch(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__BatchWriteRequest *req = xcalloc(1, sizeof(*req));
	ProtobufCMessage *m = NULL;
	char *text = NULL;
	json_t *j = NULL, *e;
	size_t len, i;
	int rc = CTL_OK;

	platform__db__v1__batch_write_request__init(req);
	req->database = xstrdup(argv[0]);
	if (strcmp(argv[1], "-") != 0)
		text = xstrdup(argv[1]);
	else if ((rc = ctl_read_stdin(&ctl_db_group, "the JSON writes",
	    STDIN_MAX * 16, &text, &len)) != CTL_OK)
		goto out;
	if ((j = json_arg("the writes", text, 0)) == NULL) {
		rc = CTL_USAGE;
		goto out;
	}
	if (!json_is_array(j) || json_array_size(j) == 0) {
		rc = usage_error("batch: the writes must be a JSON array of "
		    "1..1000 writes");
		goto out;
	}
	req->writes = xcalloc(json_array_size(j), sizeof(*req->writes));
	json_array_foreach(j, i, e) {
		req->writes[i] = xcalloc(1, sizeof(**req->writes));
		platform__db__v1__write__init(req->writes[i]);
		req->n_writes = i + 1;
		if ((rc = batch_write(i, e, req->writes[i])) != CTL_OK)
			goto out;
	}
	if ((rc = db_call(x, M_BATCH, &req->base,
	    &platform__db__v1__batch_write_response__descriptor, &m, 0)) ==
	    CTL_OK)
		rc = batch_out(x, req,
		    (const Platform__Db__V1__BatchWriteResponse *)m);
out:
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	protobuf_c_message_free_unpacked(&req->base, NULL);
	json_decref(j);
	free(text);
	return rc;
}

/* ---- find, count ---- */

/* Prints a page of find as it comes, then frees it. */
static int
find_page(void *arg, ProtobufCMessage *m, void **v, size_t k)
{
	const struct ctl_run *x = arg;
	int rc = CTL_OK;

	for (size_t i = 0; i < k && rc == CTL_OK; i++)
		rc = doc_line(x, v[i]);
	protobuf_c_message_free_unpacked(m, NULL);
	/* The reader went away (a closed pipe, `| head`): stop asking. */
	if (fflush(stdout) != 0)
		rc = CTL_FAIL;
	return rc;
}

static int
db_find(const struct ctl_run *x, int argc, char **argv)
{
	const struct db_flags *f = db_f(x);
	Platform__Db__V1__SearchRequest req =
	    PLATFORM__DB__V1__SEARCH_REQUEST__INIT;
	struct query q;
	int64_t limit, page;
	int rc;

	if ((rc = flag_num("--limit", f->limit, INT32_MAX, &limit)) != 0 ||
	    (rc = flag_num("--page-size", f->page_size, PAGE_SIZE,
	    &page)) != 0 ||
	    (rc = query_parse(argc > 2 ? argv[2] : NULL, 1, &q)) != 0)
		return rc;
	req.database = argv[0];
	req.collection = argv[1];
	req.filter = q.filter;
	req.order_by = q.order;
	req.n_order_by = q.n_order;
	req.fields = q.fields;
	req.n_fields = q.n_fields;
	if (f->field.n > 0) {
		req.fields = (char **)f->field.v;
		req.n_fields = f->field.n;
	}
	rc = ctl_pages_each(x, db_call, M_SEARCH, &req.base,
	    &platform__db__v1__search_response__descriptor, "documents",
	    page > 0 ? (int32_t)page : PAGE_SIZE,
	    (size_t)(limit > 0 ? limit : q.limit), find_page, (void *)x);
	query_free(&q);
	return rc;
}

static int
db_count(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__CountRequest req =
	    PLATFORM__DB__V1__COUNT_REQUEST__INIT;
	const Platform__Db__V1__CountResponse *r;
	ProtobufCMessage *m = NULL;
	struct query q;
	int64_t n;
	int rc;

	const char *mode = db_f(x)->mode;
	const ProtobufCEnumValue *ev = NULL;
	char name[64];

	if (mode != NULL) {
		snprintf(name, sizeof(name), "COUNT_MODE_%s", mode);
		for (char *p = name; *p != '\0'; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
		if ((ev = protobuf_c_enum_descriptor_get_value_by_name(
		    &platform__db__v1__count_mode__descriptor, name)) == NULL)
			return usage_error("--mode must be exact, planned or "
			    "estimated, not '%s'", mode);
	}
	if ((rc = query_parse(argc > 2 ? argv[2] : NULL, 0, &q)) != 0)
		return rc;
	req.database = argv[0];
	req.collection = argv[1];
	req.filter = q.filter;
	req.mode = ev != NULL ? ev->value : 0;
	if ((rc = db_call(x, M_COUNT, &req.base,
	    &platform__db__v1__count_response__descriptor, &m, 1)) == CTL_OK) {
		r = (Platform__Db__V1__CountResponse *)m;
		n = r->count;
		if (x->g->json)
			rc = ctl_json_print(json_pack("{s:I, s:b}", "count",
			    (json_int_t)n, "estimated", (int)r->estimated), 0);
		else
			printf("%" PRId64 "%s\n", n, r->estimated ?
			    " (estimated)" : "");
		protobuf_c_message_free_unpacked(m, NULL);
	}
	query_free(&q);
	return rc;
}

/* ---- watch ---- */

/* "PUT", "DELETE", "EXPIRED" */
static const char *
change_name(int type)
{
	return ctl_enum_name(&platform__db__v1__change_type__descriptor, type,
	    "CHANGE_TYPE_");
}

/* "PUT o-1 revision=17 {...}", "DELETE o-1 revision=18"; "-- caught up
 * --" once the stored changes have all come. -o json: {"type",
 * "revision", "id", "document"}, {"caught_up": true}. */
static int
watch_msg(void *arg, const ProtobufCMessage *m)
{
	const pb_watch_resp *ev = (const pb_watch_resp *)m;
	const Platform__Db__V1__Change *c = ev->change;
	const struct ctl_run *x = arg;
	const pb_doc *d = c != NULL ? c->document : NULL;
	json_t *o;

	if (c != NULL && x->g->json) {
		o = json_pack("{s:s, s:I}", "type", change_name((int)c->type),
		    "revision", (json_int_t)c->revision);
		if (d != NULL) {
			json_object_set_new(o, "id", ctl_jstr(d->id));
			json_object_set_new(o, "document",
			    ctl_json_doc(d->json));
		}
		if (ctl_json_print(o, JSON_COMPACT) != CTL_OK)
			return CTL_FAIL;
	} else if (c != NULL)
		ctl_put_line(stdout, "%s %s revision=%" PRId64 "%s%s",
		    change_name((int)c->type), d != NULL ? d->id : "-",
		    c->revision, d != NULL &&
		    c->type == PLATFORM__DB__V1__CHANGE_TYPE__CHANGE_TYPE_PUT ?
		    " " : "", d != NULL &&
		    c->type == PLATFORM__DB__V1__CHANGE_TYPE__CHANGE_TYPE_PUT ?
		    d->json : "");
	if (ev->caught_up && x->g->json &&
	    ctl_json_print(json_pack("{s:b}", "caught_up", 1),
	    JSON_COMPACT) != CTL_OK)
		return CTL_FAIL;
	if (ev->caught_up && !x->g->json)
		ctl_put_line(stdout, "-- caught up --");
	/* The reader went away (a closed pipe): nothing left to do. */
	return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int
db_watch(const struct ctl_run *x, int argc, char **argv)
{
	const struct db_flags *f = db_f(x);
	Platform__Db__V1__WatchRequest req =
	    PLATFORM__DB__V1__WATCH_REQUEST__INIT;
	pb_filter *filter = NULL;
	char *addr;
	int rc;

	if ((rc = flag_num("--after-revision", f->after_revision, INT64_MAX,
	    &req.after_revision)) != 0 ||
	    (rc = filter_text("--filter", f->filter, &filter)) != 0) {
		filter_free(filter);
		return rc;
	}
	req.database = argv[0];
	req.collection = argv[1];
	req.filter = filter;
	if (ctl_service_address(x->g, DB_SERVICE, f->db, &addr) != 0) {
		if (f->db == NULL)
			fprintf(stderr, PROG ": (or give --db ADDR)\n");
		filter_free(filter);
		return CTL_FAIL;
	}
	rc = ctl_stream(x->g, addr, M_WATCH, &req.base,
	    &platform__db__v1__watch_response__descriptor, watch_msg,
	    (void *)x);
	free(addr);
	filter_free(filter);
	return rc;
}

/* ---- indexes ---- */

static int
db_indexes(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__ListIndexesRequest req =
	    PLATFORM__DB__V1__LIST_INDEXES_REQUEST__INIT;
	const Platform__Db__V1__ListIndexesResponse *r;
	struct ctl_table t = { .ncols = 5 };
	ProtobufCMessage *m = NULL;
	json_t *arr, *paths;
	char *p;
	int rc;

	req.database = argv[0];
	req.collection = argv[1];
	if ((rc = db_call(x, M_LIST_INDEXES, &req.base,
	    &platform__db__v1__list_indexes_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	r = (const Platform__Db__V1__ListIndexesResponse *)m;
	arr = json_array();
	ctl_table_row(&t, (const char *[]){ "NAME", "KIND", "STATE", "PATHS",
	    "ERROR" });
	for (size_t i = 0; i < r->n_indexes; i++) {
		const Platform__Db__V1__Index *ix = r->indexes[i];
		const char *kind = ctl_enum_name(
		    &platform__db__v1__index_kind__descriptor, (int)ix->kind,
		    "INDEX_KIND_"), *state = ctl_enum_name(
		    &platform__db__v1__index_state__descriptor, (int)ix->state,
		    "INDEX_STATE_");

		paths = json_array();
		for (size_t k = 0; k < ix->n_paths; k++)
			json_array_append_new(paths, ctl_jstr(ix->paths[k]));
		if ((p = json_dumps(paths, JSON_COMPACT)) == NULL)
			abort();
		ctl_table_row(&t, (const char *[]){ ix->name, kind, state,
		    ix->n_paths ? p : "-", *ix->error ? ix->error : "-" });
		free(p);
		json_array_append_new(arr, json_pack("{s:o, s:s, s:s, s:o, s:o}",
		    "name", ctl_jstr(ix->name), "kind", kind, "state", state,
		    "paths", paths, "error", ctl_jstr(ix->error)));
	}
	if (x->g->json)
		rc = ctl_json_print(arr, 0);
	else {
		json_decref(arr);
		ctl_table_print(&t, stdout);
	}
	ctl_table_free(&t);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* An expression index on PATH..., or with --gin one on the whole
 * document; built in the background: `db indexes` says when it is
 * READY. */
static int
db_create_index(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__CreateIndexRequest req =
	    PLATFORM__DB__V1__CREATE_INDEX_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int gin = db_f(x)->gin != NULL;
	int rc;

	if (gin == (argc > 3))
		return usage_error("create-index: %s", gin ? "--gin indexes "
		    "the whole document: no PATH" : "missing PATH (or --gin)");
	req.database = argv[0];
	req.collection = argv[1];
	req.name = argv[2];
	req.kind = gin ? PLATFORM__DB__V1__INDEX_KIND__INDEX_KIND_GIN :
	    PLATFORM__DB__V1__INDEX_KIND__INDEX_KIND_EXPRESSION;
	req.paths = argv + 3;
	req.n_paths = (size_t)(argc - 3);
	if ((rc = db_call(x, M_CREATE_INDEX, &req.base,
	    &platform__db__v1__create_index_response__descriptor, &m, 0)) !=
	    CTL_OK)
		return rc;
	if (x->g->json)
		rc = ctl_json_print(json_pack("{s:o, s:s}", "name",
		    ctl_jstr(argv[2]), "state", "BUILDING"), 0);
	else
		ctl_put_line(stdout, "%s %s %s: building", argv[0], argv[1],
		    argv[2]);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
db_drop_index(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Db__V1__DropIndexRequest req =
	    PLATFORM__DB__V1__DROP_INDEX_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int rc;

	req.database = argv[0];
	req.collection = argv[1];
	req.name = argv[2];
	if ((rc = db_call(x, M_DROP_INDEX, &req.base,
	    &platform__db__v1__drop_index_response__descriptor, &m, 0)) !=
	    CTL_OK)
		return rc;
	if (x->g->json)
		rc = ctl_json_print(json_pack("{s:o, s:b}", "name",
		    ctl_jstr(argv[2]), "dropped", 1), 0);
	else
		ctl_put_line(stdout, "dropped %s %s %s", argv[0], argv[1],
		    argv[2]);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- the command table ---- */

#define F(name, flag, kind, arg, cmds, help) { flag, NULL, kind, arg, \
	NULL, cmds, help, offsetof(struct db_flags, name) }

static const struct ctl_flag db_flags[] = {
	{ "--db", NULL, CTL_VALUE, "ADDR", "PLATFORM_DB", NULL,
	    "db-srv host:port (default: discovery's)",
	    offsetof(struct db_flags, db) },
	F(expect_revision, "--expect-revision", CTL_VALUE, "N", "put delete",
	    "only at the document's revision N"),
	F(merge, "--merge", CTL_SWITCH, NULL, "put",
	    "JSON is a merge patch (RFC 7386)"),
	F(if_absent, "--if-absent", CTL_SWITCH, NULL, "put",
	    "only create (ALREADY_EXISTS if taken)"),
	F(ttl, "--ttl", CTL_VALUE, "DURATION", "put",
	    "500ms, 30s, 5m, 2h, 1d..365d; none: no TTL"),
	F(field, "--field", CTL_LIST, "PATH", "get find",
	    "only this path (repeatable)"),
	F(limit, "--limit", CTL_VALUE, "N", "find",
	    "at most N documents (default all)"),
	F(page_size, "--page-size", CTL_VALUE, "N", "find",
	    "documents per call (default 1000)"),
	F(after_revision, "--after-revision", CTL_VALUE, "N", "watch",
	    "first the changes after revision N"),
	F(filter, "--filter", CTL_VALUE, "JSON", "watch",
	    "only changes matching the filter"),
	F(gin, "--gin", CTL_SWITCH, NULL, "create-index",
	    "a GIN index of the whole document"),
	F(mode, "--mode", CTL_VALUE, "MODE", "count",
	    "exact (default), planned or estimated"),
};

#undef F

static const struct ctl_cmd db_cmds[] = {
	{ "db", NULL, "COMMAND ...", 0, 0, NULL,
	    "db-srv documents: get, put, delete, find, count, watch ('db "
	    "help')" },
	{ "db", "databases", "", 0, 0, db_databases,
	    "list the databases" },
	{ "db", "collections", "DATABASE", 1, 1, db_collections,
	    "a database's collections, with documents" },
	{ "db", "create", "DATABASE [COLLECTION]", 1, 2, db_create,
	    "create a database, or a collection in it" },
	{ "db", "drop", "DATABASE [COLLECTION]", 1, 2, db_drop,
	    "drop a database or a collection, all of it" },
	{ "db", "get", "DATABASE COLLECTION ID", 3, 3, db_get,
	    "print a document (-o json: the record)" },
	{ "db", "put", "DATABASE COLLECTION [ID] JSON|-", 3, 4, db_put,
	    "write a document (no ID: a new one)" },
	{ "db", "delete", "DATABASE COLLECTION ID", 3, 3, db_delete,
	    "delete a document" },
	{ "db", "batch", "DATABASE JSON|-", 2, 2, db_batch,
	    "writes in one transaction: all or none" },
	{ "db", "find", "DATABASE COLLECTION [QUERY]", 2, 3, db_find,
	    "print the matching documents, one a line" },
	{ "db", "count", "DATABASE COLLECTION [QUERY]", 2, 3, db_count,
	    "print how many documents match" },
	{ "db", "watch", "DATABASE COLLECTION", 2, 2, db_watch,
	    "print each change until Ctrl-C" },
	{ "db", "indexes", "DATABASE COLLECTION", 2, 2, db_indexes,
	    "list the indexes and their state" },
	{ "db", "create-index", "DATABASE COLLECTION NAME PATH...", 3, 7,
	    db_create_index, "index paths, or --gin; in the background" },
	{ "db", "drop-index", "DATABASE COLLECTION NAME", 3, 3, db_drop_index,
	    "drop an index" },
	{ "db", "help", "", 0, 0, NULL, "show this help" },
};

static int
db_check(const struct ctl_run *x)
{
	const char *a = db_f(x)->db;

	if (a != NULL && strchr(a, ':') == NULL)
		return usage_error("--db must be host:port, not '%s'", a);
	return CTL_OK;
}

const struct ctl_group ctl_db_group = {
	.name = "db",
	.hint = "db help",
	.head = "Usage: " PROG " db COMMAND [ARGS] [options]\n\n"
	    "Read, write, search and watch db-srv: JSON documents in a "
	    "COLLECTION of a\nDATABASE, each with an id and a revision.\n\n"
	    "Commands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help): "
	    "-o json prints records\n(id, revision, create_revision, "
	    "expires_unix_ms, document), one a line for\nfind and watch. "
	    "--db ADDR may also come from PLATFORM_DB.\n"
	    "\nwatch prints only new changes; --after-revision N (the last "
	    "revision it\nprinted) resumes with no gap and no duplicate.\n"
	    "\nput with an ID replaces a document that is there (unless "
	    "--if-absent);\n--expect-revision N and --merge update one that "
	    "is there only.\n"
	    "\nbatch takes a JSON array of writes (up to 1000): {\"create\": "
	    "{\"collection\",\n\"id\", \"document\", \"ttl_ms\"}}, "
	    "{\"update\": {\"collection\", \"id\", \"document\",\n\"merge\", "
	    "\"expected_revision\", \"ttl_ms\"}}, {\"delete\": {\"collection\", "
	    "\"id\",\n\"expected_revision\"}}.\n"
	    "\nA QUERY is JSON: {\"filter\": F, \"order\": [\"-age\", "
	    "\"name\"], \"fields\": [\"name\"],\n\"limit\": N}; a filter F "
	    "is {\"path\": \"address.city\", \"op\": \"eq\", \"value\":\n"
	    "\"Paris\"}, {\"all\": [F, ...]}, {\"any\": [F, ...]} or "
	    "{\"not\": F}; op is eq, ne, lt,\nle, gt, ge, in, prefix, "
	    "exists or contains. count takes {\"filter\": F}.\nQUERY '-' "
	    "reads it from stdin.\n"
	    "\nExit status: 0 ok, 1 a call failed (a missing document: "
	    "NOT_FOUND; a revision\nthat moved on: FAILED_PRECONDITION), 2 "
	    "bad usage.\n",
	.width = 36,
	.show_cmds = 1,
	.cmds = CTL_TABLE(db_cmds),
	.flags = CTL_TABLE(db_flags),
	.flags_size = sizeof(struct db_flags),
	.check = db_check,
};
