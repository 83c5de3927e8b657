/*
 * handlers: db-srv's gRPC methods over the store (store.h), the filter
 * compiler (filter.h) and the change feed (feed.h).
 *
 * Every input is checked before anything is read or written, so bad
 * input gets INVALID_ARGUMENT naming the field and changes nothing; then
 * the caller's scopes are checked against the database and collection
 * (tenancy, see db_access); then one transaction or one statement runs
 * with the call's deadline.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "db.h"
#include "doc.h"
#include "feed.h"
#include "filter.h"
#include "platform/feed.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/paging.h"
#include "platform/pg.h"
#include "platform/rules.h"
#include "platform/server.h"
#include "platform/xalloc.h"
#include "store.h"
#include "writer.h"

#define NAME_MAX_LEN 63
#define ID_MAX 256
#define TTL_MAX_MS INT64_C(31536000000) /* a year */
#define BATCH_MAX 1000
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define INDEX_PATHS_MAX 4
#define POOL_MIN 6
#define SWEEP_MS 1000
#define SWEEP_BATCH 500
#define INDEX_TICK_MS 5000
#define SCAN_WARN_DEFAULT 1000
#define RETENTION_DEFAULT INT64_C(604800000)
#define COMPACT_BATCH 10000
#define COMPACT_TICKS 10                /* sweeps between compactions */

typedef Platform__Db__V1__Document pb_doc;

/* A PostgreSQL a database lives in: --database holds every database
 * but those --backends maps elsewhere. Each has its own store (schema,
 * revisions), change feed and group commit. */
#define BACKENDS_MAX 16

struct backend {
	char *name;             /* the database it holds; NULL: the others */
	char *conninfo;
	struct store *store;
	struct db_feed *feed;
	struct db_writer *writer;
};

static struct {
	struct backend b[BACKENDS_MAX];
	size_t nb;
	struct plat_feed_loop *sweeper, *indexer;
	int64_t scan_warn, retention_ms;
	int compact_due;
	char node_id[128];
	bool notify;
	uint64_t unindexed, expired;
} S;

static char *scan_warn_opt, *notify_opt, *retention_opt, *backends_opt;

static const struct settings_option db_options[] = {
	{ "--scan-warn-documents", "PLATFORM_SCAN_WARN_DOCUMENTS",
	  "a search of a collection this large that no index serves is "
	  "logged and counted, 0..1000000000 (default 1000)",
	  &scan_warn_opt },
	{ "--notify", "PLATFORM_NOTIFY",
	  "on (default): commits wake watchers on every replica with "
	  "NOTIFY; off for engines without LISTEN/NOTIFY (CockroachDB): "
	  "watchers on other replicas then see changes by polling, within "
	  "a second", &notify_opt },
	{ "--changes-retention-ms", "PLATFORM_CHANGES_RETENTION_MS",
	  "how long changes are kept for Watch to resume from, "
	  "1000..31536000000 (default 604800000, a week)", &retention_opt },
	{ "--backends", "PLATFORM_BACKENDS",
	  "databases kept in another PostgreSQL than --database: "
	  "NAME=CONNINFO;NAME=CONNINFO...", &backends_opt },
};

/* The backend holding database. */
static struct backend *
B(const char *database)
{
	for (size_t i = 1; i < S.nb; i++)
		if (strcmp(S.b[i].name, database) == 0)
			return &S.b[i];
	return &S.b[0];
}

/* --backends into S.b[1..]: 0, or -1 with err naming the setting (never
 * quoting a conninfo, which may hold a password). */
static int
parse_backends(const char *text, char *err, size_t errlen)
{
	char *copy = xstrdup(text), *save = NULL, *item;
	char why[256];

	S.nb = 1;
	for (item = strtok_r(copy, ";", &save); item != NULL;
	    item = strtok_r(NULL, ";", &save)) {
		char *eq = strchr(item, '=');
		size_t n;

		if (eq == NULL || eq == item) {
			snprintf(err, errlen, "--backends: NAME=CONNINFO "
			    "entries separated by ';' (entry %zu is not)",
			    S.nb);
			goto fail;
		}
		*eq = '\0';
		n = strlen(item);
		for (size_t i = 0; i < n; i++)
			if (!((item[i] >= 'a' && item[i] <= 'z') ||
			    (item[i] >= 'A' && item[i] <= 'Z') ||
			    (item[i] >= '0' && item[i] <= '9') ||
			    item[i] == '_' || item[i] == '-'))
				n = 0;
		if (n == 0 || n > NAME_MAX_LEN) {
			snprintf(err, errlen, "--backends: \"%s\" is not a "
			    "database name", item);
			goto fail;
		}
		if (pg_conninfo_check(eq + 1, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "--backends: the conninfo of "
			    "\"%s\" does not parse", item);
			goto fail;
		}
		for (size_t i = 1; i < S.nb; i++)
			if (strcmp(S.b[i].name, item) == 0) {
				snprintf(err, errlen, "--backends: \"%s\" "
				    "given twice", item);
				goto fail;
			}
		if (S.nb == BACKENDS_MAX) {
			snprintf(err, errlen, "--backends: at most %d",
			    BACKENDS_MAX - 1);
			goto fail;
		}
		S.b[S.nb].name = xstrdup(item);
		S.b[S.nb].conninfo = xstrdup(eq + 1);
		S.nb++;
	}
	explicit_bzero(copy, strlen(text));
	free(copy);
	return 0;
fail:
	explicit_bzero(copy, strlen(text));
	free(copy);
	return -1;
}

static int
db_check_settings(const struct plat_settings *s, char *err, size_t errlen)
{
	char *end;
	long long v;

	if (pg_check_database(s, err, errlen) != 0)
		return -1;
	S.nb = 1;
	if (backends_opt != NULL && parse_backends(backends_opt, err,
	    errlen) != 0)
		return -1;
	S.scan_warn = SCAN_WARN_DEFAULT;
	S.retention_ms = RETENTION_DEFAULT;
	S.notify = true;
	if (retention_opt != NULL) {
		v = strtoll(retention_opt, &end, 10);
		if (end == retention_opt || *end != '\0' || v < 1000 ||
		    v > TTL_MAX_MS) {
			snprintf(err, errlen, "--changes-retention-ms: must be "
			    "1000..31536000000, not '%s'", retention_opt);
			return -1;
		}
		S.retention_ms = v;
	}
	if (notify_opt != NULL) {
		if (strcmp(notify_opt, "off") == 0)
			S.notify = false;
		else if (strcmp(notify_opt, "on") != 0) {
			snprintf(err, errlen, "--notify: on or off, not '%s'",
			    notify_opt);
			return -1;
		}
	}
	if (scan_warn_opt == NULL)
		return 0;
	v = strtoll(scan_warn_opt, &end, 10);
	if (end == scan_warn_opt || *end != '\0' || v < 0 || v > 1000000000) {
		snprintf(err, errlen, "--scan-warn-documents: must be "
		    "0..1000000000, not '%s'", scan_warn_opt);
		return -1;
	}
	S.scan_warn = v;
	return 0;
}

/* ---- checks ---- */

static int
invalid(plat_ctx *ctx, const char *err)
{
	return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s", err);
}

static int
check_name(plat_ctx *ctx, const char *field, const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (n > NAME_MAX_LEN)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: longer than "
		    "%d bytes", field, NAME_MAX_LEN);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: only "
			    "letters, digits, '_' and '-' (byte %zu is not)",
			    field, i);
	}
	return PLAT_OK;
}

static int
check_id(plat_ctx *ctx, const char *field, const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (n > ID_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: longer than "
		    "%d bytes", field, ID_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: "
			    "control character at byte %zu", field, i);
	return PLAT_OK;
}

/* database and collection, both required. */
static int
check_coll(plat_ctx *ctx, const char *pfx, const char *database,
    const char *collection)
{
	char f[96];
	int rc;

	snprintf(f, sizeof(f), "%sdatabase", pfx);
	if ((rc = check_name(ctx, f, database)) != PLAT_OK)
		return rc;
	snprintf(f, sizeof(f), "%scollection", pfx);
	return check_name(ctx, f, collection);
}

/* Why v cannot be stored and read back as it is, or NULL: a string
 * holding U+0000 (JSONB refuses it), a number past +-9.2e18 (JSONB
 * would give it back as an integer of hundreds of digits, which no
 * 64-bit JSON reader takes). */
static const char *
unstorable(const json_t *v)
{
	const char *key, *why;
	json_t *e;
	size_t i;

	if (json_is_string(v))
		return strlen(json_string_value(v)) != json_string_length(v) ?
		    "a string holds \\u0000, which cannot be stored" : NULL;
	if (json_is_real(v))
		return json_real_value(v) >= 9.2e18 ||
		    json_real_value(v) <= -9.2e18 ? "a number is "
		    "beyond +-9.2e18, which cannot be stored exactly" : NULL;
	if (json_is_array(v)) {
		json_array_foreach((json_t *)v, i, e)
			if ((why = unstorable(e)) != NULL)
				return why;
	} else if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, e)
			if ((why = unstorable(e)) != NULL)
				return why;
	}
	return NULL;
}

/* A JSON object (any JSON value when any), parsed into *out. */
static int
check_json(plat_ctx *ctx, const char *field, const char *text, bool any,
    json_t **out)
{
	const char *why;
	char err[512];

	if (doc_parse(field, text, out, err, sizeof(err)) != 0)
		return invalid(ctx, err);
	if ((why = unstorable(*out)) != NULL) {
		json_decref(*out);
		*out = NULL;
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: %s", field,
		    why);
	}
	if (!any && !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: must be a "
		    "JSON object", field);
	}
	return PLAT_OK;
}

static int
check_ttl(plat_ctx *ctx, const char *field, int64_t ttl, bool update)
{
	if ((ttl >= 0 || (update && ttl == -1)) && ttl <= TTL_MAX_MS)
		return PLAT_OK;
	return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: %s1..%" PRId64
	    " milliseconds", field, update ? "0 (keep), -1 (clear) or " :
	    "0 (none) or ", TTL_MAX_MS);
}

static int
check_expected(plat_ctx *ctx, const char *field, int64_t v)
{
	if (v < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: must not be "
		    "negative", field);
	return PLAT_OK;
}

/* ---- tenancy ---- */

/*
 * Which databases and collections a guarded caller may touch, from its
 * token's scopes: "db:PATTERN" reads and writes, "db.read:PATTERN" only
 * reads. PATTERN is "DATABASE" (all of it) or "DATABASE/COLLECTION",
 * with '*' matching any run of characters as in the guard's rules
 * (rule_match): "db:shop", "db.read:shop/orders", "db:tenant-*". The
 * database's own calls (create, drop, list its collections) match
 * "DATABASE/" . A call the guard did not check (the guard off) is
 * allowed; the guard's rules decide who may call which method at all.
 */
static bool
scope_grants(const char *pat, const char *database, const char *resource)
{
	return strchr(pat, '/') != NULL ? rule_match(pat, resource) :
	    rule_match(pat, database);
}

static bool
db_allowed(plat_ctx *ctx, const char *database, const char *collection,
    bool write)
{
	const struct plat_caller *c = plat_ctx_caller(ctx);
	char resource[2 * NAME_MAX_LEN + 2];

	if (c == NULL)
		return true;
	snprintf(resource, sizeof(resource), "%s/%s", database, collection);
	for (size_t i = 0; i < c->nscopes; i++) {
		const char *s = c->scopes[i];

		if (strncmp(s, "db:", 3) == 0 &&
		    scope_grants(s + 3, database, resource))
			return true;
		if (!write && strncmp(s, "db.read:", 8) == 0 &&
		    scope_grants(s + 8, database, resource))
			return true;
	}
	return false;
}

static int
db_access(plat_ctx *ctx, const char *database, const char *collection,
    bool write)
{
	if (db_allowed(ctx, database, collection, write))
		return PLAT_OK;
	return plat_error(ctx, PLAT_PERMISSION_DENIED, "no scope of the "
	    "caller grants %s database \"%s\"%s%s%s (db:%s%s%s%s)",
	    write ? "writes to" : "reads of", database,
	    collection[0] != '\0' ? " collection \"" : "", collection,
	    collection[0] != '\0' ? "\"" : "", database,
	    collection[0] != '\0' ? "/" : "", collection,
	    write ? "" : " or db.read:...");
}

/* ---- responses ---- */

/* A Document in the call's arena. */
static pb_doc *
doc_msg(plat_ctx *ctx, const struct db_doc *d)
{
	pb_doc *m = plat_new(ctx, pb_doc,
	    &platform__db__v1__document__descriptor);

	m->id = plat_strdup(ctx, d->id);
	m->json = plat_strdup(ctx, d->body);
	m->revision = d->revision;
	m->create_revision = d->create_revision;
	m->expires_unix_ms = d->expires_ms;
	return m;
}

struct fields {
	struct db_path *p;
	size_t n;
};

static void
fields_free(struct fields *f)
{
	for (size_t i = 0; i < f->n; i++)
		db_path_free(&f->p[i]);
	free(f->p);
	f->p = NULL;
	f->n = 0;
}

static int
check_fields(plat_ctx *ctx, char *const *v, size_t n, struct fields *out)
{
	char f[32], err[256];

	memset(out, 0, sizeof(*out));
	if (n > DB_FIELDS_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "fields: at most "
		    "%d paths", DB_FIELDS_MAX);
	out->p = calloc(n + 1, sizeof(*out->p));
	if (out->p == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		snprintf(f, sizeof(f), "fields[%zu]", i);
		if (db_path_parse(f, v[i], &out->p[i], err, sizeof(err)) != 0) {
			fields_free(out);
			return invalid(ctx, err);
		}
		out->n++;
	}
	return PLAT_OK;
}

/* The document with only the fields' paths (in the arena). */
static char *
project(plat_ctx *ctx, const char *body, const struct fields *f)
{
	json_t *doc, *out;
	char *s, *r;

	if (f->n == 0)
		return plat_strdup(ctx, body);
	doc = doc_load(body);
	out = json_object();
	for (size_t i = 0; i < f->n; i++) {
		json_t *v = db_path_get(doc, &f->p[i]), *cur = out;

		if (v == NULL)
			continue;
		for (size_t j = 0; j + 1 < f->p[i].n; j++) {
			json_t *next = json_object_get(cur, f->p[i].segs[j]);

			if (!json_is_object(next)) {
				next = json_object();
				json_object_set_new(cur, f->p[i].segs[j], next);
			}
			cur = next;
		}
		json_object_set(cur, f->p[i].segs[f->p[i].n - 1], v);
	}
	s = doc_dump(out);
	r = plat_strdup(ctx, s);
	free(s);
	json_decref(out);
	json_decref(doc);
	return r;
}

static int
store_fail(plat_ctx *ctx, enum plat_code code, const char *err)
{
	return plat_error(ctx, code, "%s", err);
}

/* ---- databases ---- */

static int
db_create_database(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__CreateDatabaseRequest *req = (const void *)msg;
	Platform__Db__V1__CreateDatabaseResponse *out;
	Platform__Db__V1__Database *d;
	struct db_info info;
	enum plat_code code;
	char err[512];
	int rc;

	if ((rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = db_access(ctx, req->name, "", true)) != PLAT_OK)
		return rc;
	code = store_database_create(B(req->name)->store, req->name,
	    plat_ctx_deadline_left_ms(ctx), &info, err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	out = plat_new(ctx, Platform__Db__V1__CreateDatabaseResponse,
	    &platform__db__v1__create_database_response__descriptor);
	d = plat_new(ctx, Platform__Db__V1__Database,
	    &platform__db__v1__database__descriptor);
	d->name = plat_strdup(ctx, info.name);
	d->created_unix_ms = info.created_ms;
	free(info.database);
	free(info.name);
	out->database = d;
	*resp = &out->base;
	return PLAT_OK;
}

static int
page_after(plat_ctx *ctx, const char *token, char kind, char *after,
    size_t len)
{
	int rc;

	after[0] = '\0';
	if (token[0] == '\0')
		return PLAT_OK;
	if ((rc = plat_page_token_parse(ctx, token, kind, after, len)) !=
	    PLAT_OK)
		return rc;
	return PLAT_OK;
}

static int
info_cmp(const void *a, const void *b)
{
	return strcmp(((const struct db_info *)a)->name,
	    ((const struct db_info *)b)->name);
}

/* The databases after `after` of every backend, in name order, at most
 * limit: each backend's first limit, merged. */
static enum plat_code
databases_all(const char *after, int limit, int64_t timeout_ms,
    struct db_info **out, size_t *n, char *err, size_t errlen)
{
	struct db_info *all = NULL, *v;
	size_t nall = 0, nv;
	enum plat_code code;

	for (size_t i = 0; i < S.nb; i++) {
		code = store_databases(S.b[i].store, after, limit, timeout_ms,
		    &v, &nv, err, errlen);
		if (code != PLAT_OK) {
			db_infos_free(all, nall);
			return code;
		}
		all = xrealloc(all, (nall + nv + 1) * sizeof(*all));
		for (size_t j = 0; j < nv; j++) {
			/* Only what this backend is the one for. */
			if (B(v[j].name) == &S.b[i])
				all[nall++] = v[j];
			else {
				free(v[j].database);
				free(v[j].name);
			}
		}
		free(v);
	}
	if (all == NULL)
		all = xcalloc(1, sizeof(*all));
	qsort(all, nall, sizeof(*all), info_cmp);
	while (nall > (size_t)limit) {
		nall--;
		free(all[nall].database);
		free(all[nall].name);
	}
	*out = all;
	*n = nall;
	return PLAT_OK;
}

static int
db_list_databases(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__ListDatabasesRequest *req = (const void *)msg;
	Platform__Db__V1__ListDatabasesResponse *out;
	char err[512], after[NAME_MAX_LEN + 1];
	struct db_info *v;
	enum plat_code code;
	size_t n;
	int page, rc;

	if ((rc = plat_page_size(ctx, req->page_size, PAGE_DEFAULT, PAGE_MAX,
	    &page)) != PLAT_OK ||
	    (rc = page_after(ctx, req->page_token, 'd', after,
	    sizeof(after))) != PLAT_OK)
		return rc;
	code = databases_all(after, page + 1, plat_ctx_deadline_left_ms(ctx),
	    &v, &n, err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	out = plat_new(ctx, Platform__Db__V1__ListDatabasesResponse,
	    &platform__db__v1__list_databases_response__descriptor);
	out->databases = plat_alloc(ctx, (n + 1) * sizeof(*out->databases));
	for (size_t i = 0; i < n && i < (size_t)page; i++) {
		Platform__Db__V1__Database *d;

		/* Only the databases the caller may read. */
		if (!db_allowed(ctx, v[i].name, "", false))
			continue;
		d = plat_new(ctx, Platform__Db__V1__Database,
		    &platform__db__v1__database__descriptor);
		d->name = plat_strdup(ctx, v[i].name);
		d->created_unix_ms = v[i].created_ms;
		out->databases[out->n_databases++] = d;
	}
	if (n > (size_t)page)
		out->next_page_token = plat_page_token(ctx, 'd',
		    v[page - 1].name);
	db_infos_free(v, n);
	*resp = &out->base;
	return PLAT_OK;
}

static int
db_drop_database(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__DropDatabaseRequest *req = (const void *)msg;
	enum plat_code code;
	char err[512];
	int rc;

	(void)resp;
	if ((rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = db_access(ctx, req->name, "", true)) != PLAT_OK)
		return rc;
	code = store_database_drop(B(req->name)->store, req->name,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	return PLAT_OK;
}

/* ---- collections ---- */

static Platform__Db__V1__Collection *
coll_msg(plat_ctx *ctx, const struct db_info *c)
{
	Platform__Db__V1__Collection *m = plat_new(ctx,
	    Platform__Db__V1__Collection,
	    &platform__db__v1__collection__descriptor);

	m->database = plat_strdup(ctx, c->database);
	m->name = plat_strdup(ctx, c->name);
	m->created_unix_ms = c->created_ms;
	m->documents = c->documents;
	return m;
}

static int
db_create_collection(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__CreateCollectionRequest *req =
	    (const void *)msg;
	Platform__Db__V1__CreateCollectionResponse *out;
	struct db_info info;
	enum plat_code code;
	char err[512];
	int rc;

	if ((rc = check_name(ctx, "database", req->database)) != PLAT_OK ||
	    (rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = db_access(ctx, req->database, req->name, true)) != PLAT_OK)
		return rc;
	code = store_collection_create(B(req->database)->store, req->database, req->name,
	    plat_ctx_deadline_left_ms(ctx), &info, err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	out = plat_new(ctx, Platform__Db__V1__CreateCollectionResponse,
	    &platform__db__v1__create_collection_response__descriptor);
	out->collection = coll_msg(ctx, &info);
	free(info.database);
	free(info.name);
	*resp = &out->base;
	return PLAT_OK;
}

static int
db_list_collections(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__ListCollectionsRequest *req =
	    (const void *)msg;
	Platform__Db__V1__ListCollectionsResponse *out;
	char err[512], after[NAME_MAX_LEN + 1];
	struct db_info *v;
	enum plat_code code;
	size_t n;
	int page, rc;

	if ((rc = check_name(ctx, "database", req->database)) != PLAT_OK ||
	    (rc = plat_page_size(ctx, req->page_size, PAGE_DEFAULT, PAGE_MAX,
	    &page)) != PLAT_OK ||
	    (rc = page_after(ctx, req->page_token, 'c', after,
	    sizeof(after))) != PLAT_OK ||
	    (rc = db_access(ctx, req->database, "", false)) != PLAT_OK)
		return rc;
	code = store_collections(B(req->database)->store, req->database, after, page + 1,
	    plat_ctx_deadline_left_ms(ctx), &v, &n, err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	out = plat_new(ctx, Platform__Db__V1__ListCollectionsResponse,
	    &platform__db__v1__list_collections_response__descriptor);
	out->collections = plat_alloc(ctx,
	    (n + 1) * sizeof(*out->collections));
	for (size_t i = 0; i < n && i < (size_t)page; i++)
		out->collections[out->n_collections++] = coll_msg(ctx, &v[i]);
	if (n > (size_t)page)
		out->next_page_token = plat_page_token(ctx, 'c',
		    v[page - 1].name);
	db_infos_free(v, n);
	*resp = &out->base;
	return PLAT_OK;
}

static int
db_drop_collection(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__DropCollectionRequest *req = (const void *)msg;
	enum plat_code code;
	char err[512];
	int rc;

	(void)resp;
	if ((rc = check_name(ctx, "database", req->database)) != PLAT_OK ||
	    (rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = db_access(ctx, req->database, req->name, true)) != PLAT_OK)
		return rc;
	code = store_collection_drop(B(req->database)->store, req->database, req->name,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	return PLAT_OK;
}

/* ---- writes ---- */

/* Each write's request checked into w (its strings the request's or the
 * arena's; a patch in *patches to decref). pfx names it in a batch. */
static int
check_create(plat_ctx *ctx, const char *pfx,
    const Platform__Db__V1__CreateRequest *r, const char *dflt_db,
    struct db_write *w)
{
	char f[96];
	json_t *j;
	int rc;

	w->op = DB_W_CREATE;
	w->database = r->database[0] != '\0' ? r->database : dflt_db;
	w->collection = r->collection;
	if ((rc = check_coll(ctx, pfx, w->database, r->collection)) != PLAT_OK)
		return rc;
	if (r->id[0] != '\0') {
		snprintf(f, sizeof(f), "%sid", pfx);
		if ((rc = check_id(ctx, f, r->id)) != PLAT_OK)
			return rc;
		w->id = r->id;
	} else {
		unsigned char b[16];
		char *id = plat_alloc(ctx, 33);

		if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
			return plat_error(ctx, PLAT_UNAVAILABLE, "no random "
			    "bytes for an id");
		for (int i = 0; i < 16; i++)
			snprintf(id + 2 * i, 3, "%02x", b[i]);
		w->id = id;
	}
	snprintf(f, sizeof(f), "%sjson", pfx);
	if ((rc = check_json(ctx, f, r->json, false, &j)) != PLAT_OK)
		return rc;
	json_decref(j);
	w->json = r->json;
	snprintf(f, sizeof(f), "%sttl_ms", pfx);
	if ((rc = check_ttl(ctx, f, r->ttl_ms, false)) != PLAT_OK)
		return rc;
	w->ttl_ms = r->ttl_ms;
	return PLAT_OK;
}

static int
check_update(plat_ctx *ctx, const char *pfx,
    const Platform__Db__V1__UpdateRequest *r, const char *dflt_db,
    struct db_write *w, json_t **patch)
{
	char f[96];
	json_t *j;
	int rc;

	w->database = r->database[0] != '\0' ? r->database : dflt_db;
	w->collection = r->collection;
	w->id = r->id;
	if ((rc = check_coll(ctx, pfx, w->database, r->collection)) != PLAT_OK)
		return rc;
	snprintf(f, sizeof(f), "%sid", pfx);
	if ((rc = check_id(ctx, f, r->id)) != PLAT_OK)
		return rc;
	if (r->mode != PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_REPLACE &&
	    r->mode != PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_MERGE_PATCH)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%smode: unknown "
		    "mode %d", pfx, (int)r->mode);
	snprintf(f, sizeof(f), "%sjson", pfx);
	if (r->mode == PLATFORM__DB__V1__UPDATE_MODE__UPDATE_MODE_REPLACE) {
		if ((rc = check_json(ctx, f, r->json, false, &j)) != PLAT_OK)
			return rc;
		json_decref(j);
		w->op = DB_W_REPLACE;
		w->json = r->json;
	} else {
		if ((rc = check_json(ctx, f, r->json, true, patch)) != PLAT_OK)
			return rc;
		w->op = DB_W_PATCH;
		w->patch = *patch;
	}
	snprintf(f, sizeof(f), "%sexpected_revision", pfx);
	if ((rc = check_expected(ctx, f, r->expected_revision)) != PLAT_OK)
		return rc;
	w->expected_revision = r->expected_revision;
	snprintf(f, sizeof(f), "%sttl_ms", pfx);
	if ((rc = check_ttl(ctx, f, r->ttl_ms, true)) != PLAT_OK)
		return rc;
	w->ttl_ms = r->ttl_ms;
	return PLAT_OK;
}

static int
check_delete(plat_ctx *ctx, const char *pfx,
    const Platform__Db__V1__DeleteRequest *r, const char *dflt_db,
    struct db_write *w)
{
	char f[96];
	int rc;

	w->op = DB_W_DELETE;
	w->database = r->database[0] != '\0' ? r->database : dflt_db;
	w->collection = r->collection;
	w->id = r->id;
	if ((rc = check_coll(ctx, pfx, w->database, r->collection)) != PLAT_OK)
		return rc;
	snprintf(f, sizeof(f), "%sid", pfx);
	if ((rc = check_id(ctx, f, r->id)) != PLAT_OK)
		return rc;
	snprintf(f, sizeof(f), "%sexpected_revision", pfx);
	if ((rc = check_expected(ctx, f, r->expected_revision)) != PLAT_OK)
		return rc;
	w->expected_revision = r->expected_revision;
	return PLAT_OK;
}

/* Runs a BatchWrite's checked writes in one transaction; on failure
 * the status names the write. */
static int
run_writes(plat_ctx *ctx, struct db_write *w, size_t n)
{
	struct backend *b;
	struct db_row **rows;
	enum plat_code code;
	size_t nrows, failed;
	char err[512];

	for (size_t i = 0; i < n; i++)
		if (!db_allowed(ctx, w[i].database, w[i].collection, true))
			return db_access(ctx, w[i].database, w[i].collection,
			    true);
	/* One transaction: every write in one backend. */
	b = B(w[0].database);
	for (size_t i = 1; i < n; i++)
		if (B(w[i].database) != b)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "writes[%zu]"
			    ".database: \"%s\" is kept in another PostgreSQL "
			    "(--backends) than \"%s\", and a batch is one "
			    "transaction", i, w[i].database, w[0].database);
	code = store_write(b->store, w, n, plat_ctx_deadline_left_ms(ctx),
	    &rows, &nrows, &failed, err, sizeof(err));
	if (code != PLAT_OK)
		return plat_error(ctx, code, "writes[%zu]: %s", failed, err);
	/* The watchers hear of it before the caller. */
	feed_committed(b->feed, rows, nrows);
	return PLAT_OK;
}

static void
writes_clear(struct db_write *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		db_doc_clear(&w[i].doc);
}

/* A Create, Update or Delete on its way through the group commit, in
 * the call's arena. */
enum single { SINGLE_CREATE, SINGLE_UPDATE, SINGLE_DELETE };

struct single_call {
	struct db_job job;
	enum single kind;
	json_t *patch;
};

/* On the batcher's answerer thread, after the commit. */
static void
single_done(struct db_job *j, enum plat_code code, const char *err)
{
	struct single_call *sc = (struct single_call *)j;
	plat_ctx *ctx = j->ctx;
	ProtobufCMessage *resp = NULL;

	json_decref(sc->patch);
	sc->patch = NULL;
	if (code != PLAT_OK) {
		db_doc_clear(&j->w.doc);
		plat_reply(ctx, plat_error(ctx, code, "%s", err), NULL);
		return;
	}
	switch (sc->kind) {
	case SINGLE_CREATE: {
		Platform__Db__V1__CreateResponse *out = plat_new(ctx,
		    Platform__Db__V1__CreateResponse,
		    &platform__db__v1__create_response__descriptor);

		out->document = doc_msg(ctx, &j->w.doc);
		resp = &out->base;
		break;
	}
	case SINGLE_UPDATE: {
		Platform__Db__V1__UpdateResponse *out = plat_new(ctx,
		    Platform__Db__V1__UpdateResponse,
		    &platform__db__v1__update_response__descriptor);

		out->document = doc_msg(ctx, &j->w.doc);
		resp = &out->base;
		break;
	}
	case SINGLE_DELETE: {
		Platform__Db__V1__DeleteResponse *out = plat_new(ctx,
		    Platform__Db__V1__DeleteResponse,
		    &platform__db__v1__delete_response__descriptor);

		out->revision = j->w.revision;
		resp = &out->base;
		break;
	}
	}
	db_doc_clear(&j->w.doc);
	plat_reply(ctx, PLAT_OK, resp);
}

/* A checked single write: tenancy, then into the group commit. */
static int
single_submit(plat_ctx *ctx, struct single_call *sc)
{
	int rc;

	if ((rc = db_access(ctx, sc->job.w.database, sc->job.w.collection,
	    true)) != PLAT_OK) {
		json_decref(sc->patch);
		return rc;
	}
	sc->job.ctx = ctx;
	sc->job.done = single_done;
	rc = plat_defer(ctx);   /* before the writer can answer */
	writer_submit(B(sc->job.w.database)->writer, &sc->job);
	return rc;
}

static int
db_create(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	struct single_call *sc = plat_alloc(ctx, sizeof(*sc));
	int rc;

	(void)resp;
	sc->kind = SINGLE_CREATE;
	if ((rc = check_create(ctx, "", (const void *)msg, "",
	    &sc->job.w)) != PLAT_OK)
		return rc;
	return single_submit(ctx, sc);
}

static int
db_update(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	struct single_call *sc = plat_alloc(ctx, sizeof(*sc));
	int rc;

	(void)resp;
	sc->kind = SINGLE_UPDATE;
	if ((rc = check_update(ctx, "", (const void *)msg, "", &sc->job.w,
	    &sc->patch)) != PLAT_OK) {
		json_decref(sc->patch);
		return rc;
	}
	return single_submit(ctx, sc);
}

static int
db_delete(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	struct single_call *sc = plat_alloc(ctx, sizeof(*sc));
	int rc;

	(void)resp;
	sc->kind = SINGLE_DELETE;
	if ((rc = check_delete(ctx, "", (const void *)msg, "",
	    &sc->job.w)) != PLAT_OK)
		return rc;
	return single_submit(ctx, sc);
}

static int
db_batch_write(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__BatchWriteRequest *req = (const void *)msg;
	Platform__Db__V1__BatchWriteResponse *out;
	struct db_write *w;
	json_t **patches;
	char pfx[48];
	size_t n = req->n_writes;
	int rc = PLAT_OK;

	if (n == 0 || n > BATCH_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "writes: 1 to %d "
		    "writes", BATCH_MAX);
	if (req->database[0] != '\0' &&
	    (rc = check_name(ctx, "database", req->database)) != PLAT_OK)
		return rc;
	w = plat_alloc(ctx, n * sizeof(*w));
	patches = plat_alloc(ctx, n * sizeof(*patches));
	for (size_t i = 0; i < n && rc == PLAT_OK; i++) {
		const Platform__Db__V1__Write *x = req->writes[i];

		switch (x->op_case) {
		case PLATFORM__DB__V1__WRITE__OP_CREATE:
			snprintf(pfx, sizeof(pfx), "writes[%zu].create.", i);
			rc = check_create(ctx, pfx, x->create, req->database,
			    &w[i]);
			break;
		case PLATFORM__DB__V1__WRITE__OP_UPDATE:
			snprintf(pfx, sizeof(pfx), "writes[%zu].update.", i);
			rc = check_update(ctx, pfx, x->update, req->database,
			    &w[i], &patches[i]);
			break;
		case PLATFORM__DB__V1__WRITE__OP_DELETE:
			snprintf(pfx, sizeof(pfx), "writes[%zu].delete.", i);
			rc = check_delete(ctx, pfx, x->delete_, req->database,
			    &w[i]);
			break;
		default:
			rc = plat_error(ctx, PLAT_INVALID_ARGUMENT, "writes[%zu]:"
			    " set one of create, update, delete", i);
		}
	}
	if (rc == PLAT_OK)
		rc = run_writes(ctx, w, n);
	for (size_t i = 0; i < n; i++)
		json_decref(patches[i]);
	if (rc != PLAT_OK) {
		writes_clear(w, n);
		return rc;
	}
	out = plat_new(ctx, Platform__Db__V1__BatchWriteResponse,
	    &platform__db__v1__batch_write_response__descriptor);
	out->results = plat_alloc(ctx, n * sizeof(*out->results));
	for (size_t i = 0; i < n; i++) {
		Platform__Db__V1__WriteResult *r = plat_new(ctx,
		    Platform__Db__V1__WriteResult,
		    &platform__db__v1__write_result__descriptor);

		if (w[i].doc.id != NULL)
			r->document = doc_msg(ctx, &w[i].doc);
		r->revision = w[i].revision;
		if (w[i].revision > out->revision)
			out->revision = w[i].revision;
		out->results[out->n_results++] = r;
	}
	writes_clear(w, n);
	*resp = &out->base;
	return PLAT_OK;
}

/* ---- reads ---- */

static int
db_read(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Platform__Db__V1__ReadRequest *req = (const void *)msg;
	Platform__Db__V1__ReadResponse *out;
	struct fields fl;
	struct db_doc d;
	enum plat_code code;
	char err[512];
	int rc;

	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK || (rc = check_id(ctx, "id", req->id)) != PLAT_OK ||
	    (rc = db_access(ctx, req->database, req->collection, false)) !=
	    PLAT_OK || (rc = check_fields(ctx, req->fields, req->n_fields,
	    &fl)) != PLAT_OK)
		return rc;
	code = store_read(B(req->database)->store, req->database, req->collection, req->id,
	    plat_ctx_deadline_left_ms(ctx), &d, err, sizeof(err));
	if (code != PLAT_OK) {
		fields_free(&fl);
		return store_fail(ctx, code, err);
	}
	out = plat_new(ctx, Platform__Db__V1__ReadResponse,
	    &platform__db__v1__read_response__descriptor);
	out->document = doc_msg(ctx, &d);
	out->document->json = project(ctx, d.body, &fl);
	db_doc_clear(&d);
	fields_free(&fl);
	*resp = &out->base;
	return PLAT_OK;
}

/* A search's checked request. */
struct search {
	struct dbf *filter;
	struct db_order order[DB_ORDER_MAX];
	size_t norder;
	struct fields fields;
	char **after_keys;
	size_t nafter;
	char *after_id;
	int page;
};

static void
search_free(struct search *s)
{
	dbf_free(s->filter);
	for (size_t i = 0; i < s->norder; i++)
		db_path_free(&s->order[i].path);
	fields_free(&s->fields);
	for (size_t i = 0; i < s->nafter; i++)
		free(s->after_keys[i]);
	free(s->after_keys);
	free(s->after_id);
}

static int
check_filter(plat_ctx *ctx, const Platform__Db__V1__Filter *f,
    struct dbf **out)
{
	char err[512];

	if (dbf_parse("filter", f, out, err, sizeof(err)) != 0)
		return invalid(ctx, err);
	return PLAT_OK;
}

/* The cursor in a token: {"k":[order values as JSON text or null],
 * "id":"..."}, checked so a made-up one is INVALID_ARGUMENT. */
static int
parse_cursor(plat_ctx *ctx, const char *token, struct search *s)
{
	size_t len = strlen(token) / 2 + 2;
	char *raw = plat_alloc(ctx, len);
	json_t *j, *k, *id;
	int rc;

	if ((rc = plat_page_token_parse(ctx, token, 's', raw, len)) != PLAT_OK)
		return rc;
	j = json_loads(raw, 0, NULL);
	k = json_object_get(j, "k");
	id = json_object_get(j, "id");
	if (!json_is_array(k) || !json_is_string(id) ||
	    json_array_size(k) != s->norder)
		goto bad;
	s->after_keys = calloc(s->norder + 1, sizeof(*s->after_keys));
	if (s->after_keys == NULL)
		abort();
	for (size_t i = 0; i < s->norder; i++) {
		json_t *e = json_array_get(k, i), *v;

		if (json_is_null(e)) {
			s->nafter++;
			continue;
		}
		if (!json_is_string(e) || (v = json_loads(json_string_value(e),
		    JSON_DECODE_ANY, NULL)) == NULL)
			goto bad;
		json_decref(v);
		s->after_keys[s->nafter++] = strdup(json_string_value(e));
	}
	s->after_id = strdup(json_string_value(id));
	json_decref(j);
	return PLAT_OK;
bad:
	json_decref(j);
	return plat_error(ctx, PLAT_INVALID_ARGUMENT, "page_token: not a "
	    "token this server gave for this search");
}

static int
check_search(plat_ctx *ctx, const Platform__Db__V1__SearchRequest *req,
    struct search *s)
{
	char f[32], err[256];
	int rc;

	memset(s, 0, sizeof(*s));
	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK || (rc = check_filter(ctx, req->filter, &s->filter)) !=
	    PLAT_OK)
		return rc;
	if (req->n_order_by > DB_ORDER_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "order_by: at "
		    "most %d keys", DB_ORDER_MAX);
	for (size_t i = 0; i < req->n_order_by; i++) {
		snprintf(f, sizeof(f), "order_by[%zu].path", i);
		if (db_path_parse(f, req->order_by[i]->path,
		    &s->order[i].path, err, sizeof(err)) != 0)
			return invalid(ctx, err);
		s->order[i].desc = req->order_by[i]->descending;
		s->norder++;
	}
	if ((rc = check_fields(ctx, req->fields, req->n_fields,
	    &s->fields)) != PLAT_OK ||
	    (rc = plat_page_size(ctx, req->page_size, PAGE_DEFAULT, PAGE_MAX,
	    &s->page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0')
		return parse_cursor(ctx, req->page_token, s);
	return PLAT_OK;
}

/* Whether a ready index serves the search; *gin when one is GIN. */
static bool
search_indexed(const struct db_coll_plan *p, const struct dbf *f,
    const struct db_order *order, size_t norder, bool *gin)
{
	bool served = false;
	char err[64];

	*gin = false;
	for (size_t i = 0; i < p->nix; i++) {
		struct db_path ip;

		if (p->ix[i].kind == 1) {
			*gin = true;
			served = served || f->kind != DBF_TRUE;
			continue;
		}
		if (p->ix[i].npaths == 0 || db_path_parse("index",
		    p->ix[i].paths[0], &ip, err, sizeof(err)) != 0)
			continue;
		if (dbf_uses_path(f, (const char *const *)ip.segs, ip.n))
			served = true;
		if (norder > 0 && order[0].path.n == ip.n) {
			bool same = true;

			for (size_t j = 0; j < ip.n; j++)
				same = same && strcmp(ip.segs[j],
				    order[0].path.segs[j]) == 0;
			served = served || same;
		}
		db_path_free(&ip);
	}
	return served;
}

/* Plans the statement: NOT_FOUND for a missing collection; a scan of a
 * large collection no index serves is logged and counted. */
static int
search_plan(plat_ctx *ctx, const char *database, const char *collection,
    const struct search *s, bool scans, bool *gin, int64_t *documents)
{
	struct db_coll_plan p;
	enum plat_code code;
	char err[512];

	code = store_collection_plan(B(database)->store, database, collection,
	    plat_ctx_deadline_left_ms(ctx), &p, err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	*documents = p.documents;
	if (!search_indexed(&p, s->filter, s->order, s->norder, gin) &&
	    scans && p.documents >= S.scan_warn) {
		char docs[24];

		__atomic_add_fetch(&S.unindexed, 1, __ATOMIC_RELAXED);
		snprintf(docs, sizeof(docs), "%" PRId64, p.documents);
		log_warn("db: search scans a collection no index serves",
		    "database", database, "collection", collection,
		    "documents", docs, "method", plat_ctx_method(ctx));
	}
	db_coll_plan_free(&p);
	return PLAT_OK;
}

/* The cursor after row i of a search result. */
static char *
cursor_of(plat_ctx *ctx, const PGresult *res, int i, size_t norder)
{
	json_t *j = json_object(), *k = json_array();
	char *s, *tok;

	for (size_t o = 0; o < norder; o++)
		json_array_append_new(k, PQgetisnull(res, i, 5 + (int)o) ?
		    json_null() : json_string(PQgetvalue(res, i, 5 + (int)o)));
	json_object_set_new(j, "k", k);
	json_object_set_new(j, "id", json_string(PQgetvalue(res, i, 0)));
	if ((s = json_dumps(j, JSON_COMPACT)) == NULL)
		abort();
	json_decref(j);
	tok = plat_page_token(ctx, 's', s);
	free(s);
	return tok;
}

static int
db_search(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Platform__Db__V1__SearchRequest *req = (const void *)msg;
	const struct plat_settings *set =
	    plat_server_settings(plat_ctx_server(ctx));
	size_t budget = (size_t)set->max_message_bytes / 2, used = 0;
	Platform__Db__V1__SearchResponse *out;
	struct db_search q = { 0 };
	struct search s;
	struct db_sql sql;
	PGresult *res = NULL;
	enum plat_code code;
	char err[512];
	bool gin = false;
	int64_t documents;
	int rc, n;

	if ((rc = check_search(ctx, req, &s)) != PLAT_OK ||
	    (rc = db_access(ctx, req->database, req->collection, false)) !=
	    PLAT_OK ||
	    (rc = search_plan(ctx, req->database, req->collection, &s, true,
	    &gin, &documents)) != PLAT_OK) {
		search_free(&s);
		return rc;
	}
	q.database = req->database;
	q.collection = req->collection;
	q.filter = s.filter;
	q.order = s.order;
	q.norder = s.norder;
	q.gin = gin;
	q.limit = s.page + 1;
	q.after_keys = s.after_keys;
	q.after_id = s.after_id;
	db_sql_init(&sql);
	db_search_sql(&q, &sql);
	code = store_query(B(req->database)->store, &sql,
	    plat_ctx_deadline_left_ms(ctx), &res, err, sizeof(err));
	db_sql_free(&sql);
	if (code != PLAT_OK) {
		search_free(&s);
		return store_fail(ctx, code, err);
	}
	out = plat_new(ctx, Platform__Db__V1__SearchResponse,
	    &platform__db__v1__search_response__descriptor);
	n = PQntuples(res);
	out->documents = plat_alloc(ctx, ((size_t)n + 1) *
	    sizeof(*out->documents));
	for (int i = 0; i < n && i < s.page; i++) {
		pb_doc *d = plat_new(ctx, pb_doc,
		    &platform__db__v1__document__descriptor);

		used += (size_t)PQgetlength(res, i, 1) + 64;
		if (out->n_documents > 0 && used > budget)
			break;
		d->id = plat_strdup(ctx, PQgetvalue(res, i, 0));
		d->json = project(ctx, PQgetvalue(res, i, 1), &s.fields);
		d->revision = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		d->create_revision = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		d->expires_unix_ms = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		out->documents[out->n_documents++] = d;
	}
	if (out->n_documents < (size_t)n)
		out->next_page_token = cursor_of(ctx, res,
		    (int)out->n_documents - 1, s.norder);
	PQclear(res);
	search_free(&s);
	*resp = &out->base;
	return PLAT_OK;
}

/* The planner's row estimate of a count statement: the rows of the
 * node under the aggregate. */
static int
planned_count(plat_ctx *ctx, struct store *store, const struct db_sql *count,
    int64_t *out)
{
	struct db_sql sql;
	PGresult *res;
	enum plat_code code;
	json_t *plan, *top, *kid, *rows;
	char err[512];

	db_sql_init(&sql);
	db_sql_add(&sql, "EXPLAIN (FORMAT JSON) %s", count->text);
	for (int i = 0; i < count->n; i++)
		(void)db_sql_param(&sql, count->params[i]);
	code = store_query(store, &sql, plat_ctx_deadline_left_ms(ctx), &res,
	    err, sizeof(err));
	db_sql_free(&sql);
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	plan = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	PQclear(res);
	top = json_object_get(json_array_get(plan, 0), "Plan");
	kid = json_array_get(json_object_get(top, "Plans"), 0);
	rows = json_object_get(kid != NULL ? kid : top, "Plan Rows");
	*out = json_is_number(rows) ? (int64_t)json_number_value(rows) : 0;
	json_decref(plan);
	return PLAT_OK;
}

static int
db_count(plat_ctx *ctx, const ProtobufCMessage *msg, ProtobufCMessage **resp)
{
	const Platform__Db__V1__CountRequest *req = (const void *)msg;
	Platform__Db__V1__CountResponse *out;
	struct db_search q = { 0 };
	struct search s;
	struct db_sql sql;
	PGresult *res;
	enum plat_code code;
	char err[512];
	bool gin = false, planned;
	int64_t documents;
	int rc;

	memset(&s, 0, sizeof(s));
	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK || (rc = check_filter(ctx, req->filter, &s.filter)) !=
	    PLAT_OK)
		goto done;
	if (req->mode != PLATFORM__DB__V1__COUNT_MODE__COUNT_MODE_EXACT &&
	    req->mode != PLATFORM__DB__V1__COUNT_MODE__COUNT_MODE_PLANNED &&
	    req->mode != PLATFORM__DB__V1__COUNT_MODE__COUNT_MODE_ESTIMATED) {
		rc = plat_error(ctx, PLAT_INVALID_ARGUMENT, "mode: unknown "
		    "mode %d", (int)req->mode);
		goto done;
	}
	/* Only an exact count scans (an estimated one does below the
	 * threshold, where nothing is counted anyway). */
	if ((rc = db_access(ctx, req->database, req->collection, false)) !=
	    PLAT_OK ||
	    (rc = search_plan(ctx, req->database, req->collection, &s,
	    req->mode == PLATFORM__DB__V1__COUNT_MODE__COUNT_MODE_EXACT,
	    &gin, &documents)) != PLAT_OK)
		goto done;
	q.database = req->database;
	q.collection = req->collection;
	q.filter = s.filter;
	q.gin = gin;
	q.count = true;
	db_sql_init(&sql);
	db_search_sql(&q, &sql);
	planned = req->mode == PLATFORM__DB__V1__COUNT_MODE__COUNT_MODE_PLANNED ||
	    (req->mode == PLATFORM__DB__V1__COUNT_MODE__COUNT_MODE_ESTIMATED &&
	    documents >= S.scan_warn);
	out = plat_new(ctx, Platform__Db__V1__CountResponse,
	    &platform__db__v1__count_response__descriptor);
	if (planned) {
		rc = planned_count(ctx, B(req->database)->store, &sql,
		    &out->count);
		out->estimated = true;
		db_sql_free(&sql);
		if (rc != PLAT_OK)
			goto done;
	} else {
		code = store_query(B(req->database)->store, &sql,
		    plat_ctx_deadline_left_ms(ctx), &res, err, sizeof(err));
		db_sql_free(&sql);
		if (code != PLAT_OK) {
			rc = store_fail(ctx, code, err);
			goto done;
		}
		out->count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	*resp = &out->base;
done:
	search_free(&s);
	return rc;
}

/* ---- Watch ---- */

static int
db_watch(plat_ctx *ctx, const ProtobufCMessage *msg, plat_stream *st)
{
	const Platform__Db__V1__WatchRequest *req = (const void *)msg;
	struct db_coll_plan p;
	struct dbf *f = NULL;
	enum plat_code code;
	char err[512];
	int rc;

	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK || (rc = check_filter(ctx, req->filter, &f)) != PLAT_OK)
		return rc;
	if (req->after_revision < 0) {
		dbf_free(f);
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "after_revision: "
		    "must not be negative");
	}
	if ((rc = db_access(ctx, req->database, req->collection, false)) !=
	    PLAT_OK) {
		dbf_free(f);
		return rc;
	}
	code = store_collection_plan(B(req->database)->store, req->database,
	    req->collection,
	    plat_ctx_deadline_left_ms(ctx), &p, err, sizeof(err));
	if (code != PLAT_OK) {
		dbf_free(f);
		return store_fail(ctx, code, err);
	}
	db_coll_plan_free(&p);
	if (req->after_revision > 0) {
		int64_t compacted;

		code = store_compacted(B(req->database)->store,
		    plat_ctx_deadline_left_ms(ctx),
		    &compacted, err, sizeof(err));
		if (code == PLAT_OK && req->after_revision < compacted)
			code = plat_error(ctx, PLAT_OUT_OF_RANGE,
			    "after_revision %" PRId64 ": the changes up to "
			    "revision %" PRId64 " are no longer kept "
			    "(--changes-retention-ms); read again and watch "
			    "for new changes", req->after_revision, compacted);
		else if (code != PLAT_OK)
			code = store_fail(ctx, code, err);
		if (code != PLAT_OK) {
			dbf_free(f);
			return code;
		}
	}
	return feed_watch(B(req->database)->feed, ctx, st, req->database,
	    req->collection, f,
	    req->after_revision);
}

/* ---- indexes ---- */

static int
db_create_index(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__CreateIndexRequest *req = (const void *)msg;
	Platform__Db__V1__CreateIndexResponse *out;
	Platform__Db__V1__Index *ix;
	json_t *paths, *arrays;
	char f[32], err[512], *pj, *aj;
	enum plat_code code;
	int rc;

	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK || (rc = check_name(ctx, "name", req->name)) != PLAT_OK)
		return rc;
	if (req->kind != PLATFORM__DB__V1__INDEX_KIND__INDEX_KIND_EXPRESSION &&
	    req->kind != PLATFORM__DB__V1__INDEX_KIND__INDEX_KIND_GIN)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "kind: unknown "
		    "kind %d", (int)req->kind);
	if (req->kind == PLATFORM__DB__V1__INDEX_KIND__INDEX_KIND_GIN ?
	    req->n_paths != 0 :
	    (req->n_paths == 0 || req->n_paths > INDEX_PATHS_MAX))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "paths: %s",
		    req->kind == PLATFORM__DB__V1__INDEX_KIND__INDEX_KIND_GIN ?
		    "none for a GIN index" : "1 to 4 paths");
	paths = json_array();
	arrays = json_array();
	for (size_t i = 0; i < req->n_paths; i++) {
		struct db_path p;

		snprintf(f, sizeof(f), "paths[%zu]", i);
		if (db_path_parse(f, req->paths[i], &p, err, sizeof(err)) !=
		    0) {
			json_decref(paths);
			json_decref(arrays);
			return invalid(ctx, err);
		}
		json_array_append_new(paths, json_string(req->paths[i]));
		json_array_append_new(arrays, json_string(p.array));
		db_path_free(&p);
	}
	if ((rc = db_access(ctx, req->database, req->collection, true)) !=
	    PLAT_OK) {
		json_decref(paths);
		json_decref(arrays);
		return rc;
	}
	pj = json_dumps(paths, JSON_COMPACT);
	aj = json_dumps(arrays, JSON_COMPACT);
	json_decref(paths);
	json_decref(arrays);
	code = store_index_create(B(req->database)->store, req->database, req->collection,
	    req->name, (int)req->kind, pj, aj, plat_ctx_deadline_left_ms(ctx),
	    err, sizeof(err));
	free(pj);
	free(aj);
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	plat_feed_loop_kick(S.indexer);
	out = plat_new(ctx, Platform__Db__V1__CreateIndexResponse,
	    &platform__db__v1__create_index_response__descriptor);
	ix = plat_new(ctx, Platform__Db__V1__Index,
	    &platform__db__v1__index__descriptor);
	ix->database = req->database;
	ix->collection = req->collection;
	ix->name = req->name;
	ix->kind = req->kind;
	ix->paths = req->paths;
	ix->n_paths = req->n_paths;
	ix->state = PLATFORM__DB__V1__INDEX_STATE__INDEX_STATE_BUILDING;
	out->index = ix;
	*resp = &out->base;
	return PLAT_OK;
}

static int
db_list_indexes(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__ListIndexesRequest *req = (const void *)msg;
	Platform__Db__V1__ListIndexesResponse *out;
	struct db_index *v;
	enum plat_code code;
	char err[512];
	size_t n;
	int rc;

	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK ||
	    (rc = db_access(ctx, req->database, req->collection, false)) !=
	    PLAT_OK)
		return rc;
	code = store_indexes(B(req->database)->store, req->database, req->collection,
	    plat_ctx_deadline_left_ms(ctx), &v, &n, err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	out = plat_new(ctx, Platform__Db__V1__ListIndexesResponse,
	    &platform__db__v1__list_indexes_response__descriptor);
	out->indexes = plat_alloc(ctx, (n + 1) * sizeof(*out->indexes));
	for (size_t i = 0; i < n; i++) {
		Platform__Db__V1__Index *ix = plat_new(ctx,
		    Platform__Db__V1__Index,
		    &platform__db__v1__index__descriptor);

		ix->database = plat_strdup(ctx, v[i].database);
		ix->collection = plat_strdup(ctx, v[i].collection);
		ix->name = plat_strdup(ctx, v[i].name);
		ix->kind = (Platform__Db__V1__IndexKind)v[i].kind;
		ix->state = (Platform__Db__V1__IndexState)v[i].state;
		ix->error = plat_strdup(ctx, v[i].error);
		ix->paths = plat_alloc(ctx, (v[i].npaths + 1) *
		    sizeof(*ix->paths));
		for (size_t j = 0; j < v[i].npaths; j++)
			ix->paths[ix->n_paths++] = plat_strdup(ctx,
			    v[i].paths[j]);
		out->indexes[out->n_indexes++] = ix;
	}
	db_indexes_free(v, n);
	*resp = &out->base;
	return PLAT_OK;
}

static int
db_drop_index(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Db__V1__DropIndexRequest *req = (const void *)msg;
	enum plat_code code;
	char err[512];
	int rc;

	(void)resp;
	if ((rc = check_coll(ctx, "", req->database, req->collection)) !=
	    PLAT_OK || (rc = check_name(ctx, "name", req->name)) != PLAT_OK ||
	    (rc = db_access(ctx, req->database, req->collection, true)) !=
	    PLAT_OK)
		return rc;
	code = store_index_drop(B(req->database)->store, req->database, req->collection,
	    req->name, plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return store_fail(ctx, code, err);
	return PLAT_OK;
}

/* ---- background work ---- */

/* Expired documents are deleted through the write path, so Watch sees
 * each expiry as a change (EXPIRED) in revision order. Reads hide an
 * expired document from its expiry on, swept or not. */
static void
sweep_backend(struct backend *b, bool compact)
{
	struct db_write *w;
	struct db_row **rows;
	size_t n, nrows, failed;
	int64_t dropped;
	char err[512];

	if (store_expired(b->store, SWEEP_BATCH, &w, &n, err, sizeof(err)) !=
	    PLAT_OK)
		return;
	if (n > 0 && store_write(b->store, w, n, 30000, &rows, &nrows,
	    &failed, err, sizeof(err)) == PLAT_OK) {
		__atomic_add_fetch(&S.expired, nrows, __ATOMIC_RELAXED);
		feed_committed(b->feed, rows, nrows);
		if (n == SWEEP_BATCH)
			plat_feed_loop_kick(S.sweeper);
	}
	store_writes_free(w, n);
	if (compact && store_compact(b->store, S.retention_ms, COMPACT_BATCH,
	    &dropped, err, sizeof(err)) == PLAT_OK &&
	    dropped == COMPACT_BATCH) {
		S.compact_due = 0;
		plat_feed_loop_kick(S.sweeper);
	}
}

static void
sweep(void *arg)
{
	/* Compaction looks at the oldest changes every COMPACT_TICKS
	 * sweeps, or at once again while it finds a full batch. */
	bool compact = S.compact_due-- <= 0;

	(void)arg;
	if (compact)
		S.compact_due = COMPACT_TICKS;
	for (size_t i = 0; i < S.nb; i++)
		sweep_backend(&S.b[i], compact);
}

static void
index_work(void *arg)
{
	(void)arg;
	for (size_t i = 0; i < S.nb; i++)
		store_index_work(S.b[i].store, S.node_id);
}

/* ---- lifecycle ---- */

/* What the registry shows of a backend: host:port/dbname of its
 * conninfo, never its password or other options. */
static void
backend_where(const char *conninfo, char *out, size_t len)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *host = "", *port = "", *dbname = "";

	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
	}
	snprintf(out, len, "%s%s%s/%s", host, port[0] != '\0' ? ":" : "",
	    port, dbname);
	PQconninfoFree(opts);
}

/* backend: where --database is; databases: the ones --backends maps,
 * then * (all the others); backends: NAME=where;... for those. */
static void
register_backends(plat_server *srv)
{
	char where[512], dbs[2048] = "", more[4096] = "";
	size_t o = 0, m = 0;

	backend_where(S.b[0].conninfo, where, sizeof(where));
	(void)plat_server_add_metadata(srv, "backend", where);
	for (size_t i = 1; i < S.nb && o < sizeof(dbs) && m < sizeof(more);
	    i++) {
		char w[512];

		backend_where(S.b[i].conninfo, w, sizeof(w));
		o += (size_t)snprintf(dbs + o, sizeof(dbs) - o, "%s,",
		    S.b[i].name);
		m += (size_t)snprintf(more + m, sizeof(more) - m, "%s%s=%s",
		    m > 0 ? ";" : "", S.b[i].name, w);
	}
	if (o < sizeof(dbs) - 1)
		snprintf(dbs + o, sizeof(dbs) - o, "*");
	(void)plat_server_add_metadata(srv, "databases", dbs);
	if (S.nb > 1)
		(void)plat_server_add_metadata(srv, "backends", more);
}

static double
gauge_watchers(void *arg)
{
	size_t n = 0;

	(void)arg;
	for (size_t i = 0; i < S.nb; i++)
		n += plat_feed_watchers(feed_get(S.b[i].feed));
	return (double)n;
}

static double
gauge_revision(void *arg)
{
	int64_t pos = plat_feed_position(feed_get(S.b[0].feed));

	(void)arg;
	return pos < 0 ? 0 : (double)pos;
}

static double
count_unindexed(void *arg)
{
	(void)arg;
	return (double)__atomic_load_n(&S.unindexed, __ATOMIC_RELAXED);
}

static double
count_expired(void *arg)
{
	(void)arg;
	return (double)__atomic_load_n(&S.expired, __ATOMIC_RELAXED);
}

static double
count_batches(void *arg)
{
	(void)arg;
	uint64_t n = 0;

	for (size_t i = 0; i < S.nb; i++)
		n += writer_batches(S.b[i].writer);
	return (double)n;
}

static void
db_fini(plat_server *srv)
{
	(void)srv;
	plat_feed_loop_stop(S.sweeper);
	plat_feed_loop_stop(S.indexer);
	S.sweeper = S.indexer = NULL;
	for (size_t i = 0; i < S.nb; i++) {
		struct backend *b = &S.b[i];

		writer_stop(b->writer);
		feed_stop(b->feed);
		store_free(b->store);
		b->writer = NULL;
		b->feed = NULL;
		b->store = NULL;
	}
}

/* One backend's store, schema, feed and group commit. The first one's
 * feed speaks for the service's health. */
static int
backend_start(plat_server *srv, struct backend *b, int pool)
{
	enum plat_code code;
	char err[512];

	if ((b->store = store_new(b->conninfo, pool, S.notify)) == NULL)
		return -1;
	code = store_migrate(b->store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("db: database unavailable at start; answering "
		    "UNAVAILABLE until it is reachable", "backend",
		    b->name != NULL ? b->name : "*", "error", err);
	} else if (code != PLAT_OK) {
		log_error("db: cannot bring the database schema up to date",
		    "backend", b->name != NULL ? b->name : "*", "error", err);
		fprintf(stderr, "db-srv: %s\n", err);
		return -1;
	}
	if ((b->feed = feed_start(b->store, b->conninfo, srv,
	    b == &S.b[0] ? db_service.grpc_service : NULL)) == NULL ||
	    (b->writer = writer_start(b->store, b->feed)) == NULL) {
		log_error("db: cannot start its threads");
		return -1;
	}
	return 0;
}

static int
db_init(plat_server *srv, const struct plat_settings *s)
{
	struct metrics *m = plat_server_metrics(srv);
	int pool;

	snprintf(S.node_id, sizeof(S.node_id), "%s",
	    s->node_id != NULL && s->node_id[0] != '\0' ? s->node_id :
	    plat_server_advertised(srv));
	pool = s->workers * 2 + 4 < POOL_MIN ? POOL_MIN : s->workers * 2 + 4;
	S.b[0].conninfo = s->database;
	for (size_t i = 0; i < S.nb; i++)
		if (backend_start(srv, &S.b[i], pool) != 0) {
			db_fini(srv);
			return -1;
		}
	if ((S.sweeper = plat_feed_loop_start(SWEEP_MS, sweep, NULL)) == NULL ||
	    (S.indexer = plat_feed_loop_start(INDEX_TICK_MS, index_work,
	    NULL)) == NULL) {
		log_error("db: cannot start its threads");
		db_fini(srv);
		return -1;
	}
	register_backends(srv);
	metrics_gauge_fn(m, "db_watchers", "Open Watch streams.",
	    gauge_watchers, NULL);
	metrics_gauge_fn(m, "db_feed_revision", "The last revision the feed "
	    "of --database fanned out.", gauge_revision, NULL);
	metrics_counter_fn(m, "db_unindexed_searches_total", "Searches and "
	    "counts of a large collection that no index served.",
	    count_unindexed, NULL);
	metrics_counter_fn(m, "db_write_batches_total", "Transactions of "
	    "group-committed single writes.", count_batches, NULL);
	metrics_counter_fn(m, "db_expired_total", "Documents deleted by "
	    "their time to live.", count_expired, NULL);
	return 0;
}

#define DB_PATH "/platform.db.v1.DB/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(DB_PATH, name, platform__db__v1, type, fn, idem)

static const struct plat_method db_methods[] = {
	UNARY("CreateDatabase", db_create_database, create_database, 0),
	UNARY("ListDatabases", db_list_databases, list_databases, 1),
	UNARY("DropDatabase", db_drop_database, drop_database, 0),
	UNARY("CreateCollection", db_create_collection, create_collection, 0),
	UNARY("ListCollections", db_list_collections, list_collections, 1),
	UNARY("DropCollection", db_drop_collection, drop_collection, 0),
	UNARY("Create", db_create, create, 0),
	UNARY("Read", db_read, read, 1),
	UNARY("Update", db_update, update, 0),
	UNARY("Delete", db_delete, delete, 0),
	UNARY("BatchWrite", db_batch_write, batch_write, 0),
	UNARY("Search", db_search, search, 1),
	UNARY("Count", db_count, count, 1),
	{
		.path = DB_PATH "Watch",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__db__v1__watch_request__descriptor,
		.response = &platform__db__v1__watch_response__descriptor,
		.stream = db_watch,
	},
	UNARY("CreateIndex", db_create_index, create_index, 0),
	UNARY("ListIndexes", db_list_indexes, list_indexes, 1),
	UNARY("DropIndex", db_drop_index, drop_index, 0),
};

const struct plat_service db_service = {
	.name = "db",
	.grpc_service = "platform.db.v1.DB",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7079",
	.methods = db_methods,
	.nmethods = PLAT_COUNT(db_methods),
	.options = db_options,
	.noptions = PLAT_COUNT(db_options),
	.check_settings = db_check_settings,
	.init = db_init,
	.fini = db_fini,
};
