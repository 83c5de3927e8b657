/*
 * ctl_config: `platformctl config get|set|delete|history|diff|rollback|
 * list|watch`, an operator's view of config-srv. See ctl_config.h.
 *
 * config-srv is the --config address (PLATFORM_CONFIG), else the service
 * "config" resolved through discovery by the shared client. Output is for
 * people by default (get prints the document itself on stdout, so it can
 * be piped or saved, and says what version it is on stderr) and one JSON
 * value with -o json. Exit status as for every platformctl command: 0 ok,
 * 1 a call failed (stderr names the gRPC status), 2 bad usage.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_config.h"
#include "ctl_out.h"
#include "platform/client.h"
#include "platform/config/v1/config.pb-c.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/xalloc.h"

#define PROG			"platformctl"
#define CONFIG_SERVICE		"config"
#define ERRLEN			512
#define PAGE_SIZE		1000	/* the server's maximum: fewest calls */
#define WATCH_POLL_MS		200	/* how soon watch notices a signal */
#define STDIN_MAX		(64 << 20)

#define M_PREFIX	"/platform.config.v1.Config/"
#define M_READ		M_PREFIX "Read"
#define M_UPDATE	M_PREFIX "Update"
#define M_DELETE	M_PREFIX "Delete"
#define M_HISTORY	M_PREFIX "History"
#define M_DIFF		M_PREFIX "Diff"
#define M_ROLLBACK	M_PREFIX "Rollback"
#define M_LIST		M_PREFIX "List"
#define M_WATCH		M_PREFIX "Watch"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

typedef Platform__Config__V1__Value		pb_value;
typedef Platform__Config__V1__ReadResponse	pb_read_resp;
typedef Platform__Config__V1__HistoryResponse	pb_history_resp;
typedef Platform__Config__V1__ListResponse	pb_list_resp;
typedef Platform__Config__V1__DiffResponse	pb_diff_resp;
typedef Platform__Config__V1__Change		pb_change;
typedef Platform__Config__V1__WatchResponse	pb_watch_resp;

enum { CFG_OK = 0, CFG_FAIL = 1, CFG_USAGE = 2 };

/* The config commands' own flags, as given (NULL: not given). */
struct cfg_flags {
	const char *version;
	const char *merged;
	const char *expect;
	const char *comment;
	const char *author;
	const char *prefix;
	const char *after;
	const char *help;
};

struct cfg {
	const struct ctl_host *h;
	struct ctl_globals g;
	struct cfg_flags f;
	const char *sub;		/* the subcommand's name */
};

struct cfg_flag {
	const char *flag;
	const char *alias;
	const char *arg;		/* NULL: a switch */
	const char *cmds;		/* the subcommands taking it; NULL: all */
	const char *help;
	size_t off;
};

#define OFF(f)	offsetof(struct cfg_flags, f)

static const struct cfg_flag cfg_flags[] = {
	{ "--version", NULL, "N", "get",
	    "read version N of the path (default: the latest)",
	    OFF(version) },
	{ "--merged", NULL, NULL, "get",
	    "deep-merge global <- ... <- NS, the most specific winning",
	    OFF(merged) },
	{ "--expect", NULL, "N", "set delete rollback",
	    "only if the path is at version N (-1: does not exist)",
	    OFF(expect) },
	{ "--comment", NULL, "TEXT", "set delete rollback",
	    "why, kept in the history", OFF(comment) },
	{ "--author", NULL, "NAME", "set delete rollback",
	    "who, kept in the history (default $USER)", OFF(author) },
	{ "--prefix", NULL, "PATH", "watch",
	    "only paths starting with PATH", OFF(prefix) },
	{ "--after", NULL, "REV", "watch",
	    "first replay the changes after revision REV (default: only new "
	    "ones)", OFF(after) },
	{ "--help", "-h", NULL, NULL, "show this help", OFF(help) },
};

static int cfg_get(struct cfg *, int, char **);
static int cfg_set(struct cfg *, int, char **);
static int cfg_delete(struct cfg *, int, char **);
static int cfg_history(struct cfg *, int, char **);
static int cfg_diff(struct cfg *, int, char **);
static int cfg_rollback(struct cfg *, int, char **);
static int cfg_list(struct cfg *, int, char **);
static int cfg_watch(struct cfg *, int, char **);
static int cfg_help_cmd(struct cfg *, int, char **);

struct cfg_cmd {
	const char *name;
	const char *args;		/* as shown in help */
	int min, max;			/* positional arguments it takes */
	int (*run)(struct cfg *, int, char **);
	const char *help;
};

static const struct cfg_cmd cfg_cmds[] = {
	{ "get", "NS PATH[.SELECTOR]", 2, 2, cfg_get,
	    "print a value (the part at SELECTOR: limits.daily.max)" },
	{ "set", "NS PATH [JSON|-]", 2, 3, cfg_set,
	    "write a new version; JSON from the argument, else stdin" },
	{ "delete", "NS PATH", 2, 2, cfg_delete,
	    "delete a path (a tombstone version)" },
	{ "history", "NS PATH", 2, 2, cfg_history,
	    "list the versions of a path, newest first" },
	{ "diff", "NS PATH FROM [TO]", 3, 4, cfg_diff,
	    "what changed from version FROM to TO (default: the latest)" },
	{ "rollback", "NS PATH VERSION", 3, 3, cfg_rollback,
	    "write the value of VERSION as a new version" },
	{ "list", "NS [PREFIX]", 1, 2, cfg_list,
	    "list the paths of a namespace (under PREFIX)" },
	{ "watch", "[NS...]", 0, 1 << 20, cfg_watch,
	    "stream changes in NS (default: every namespace)" },
	{ "help", "", 0, 0, cfg_help_cmd, "show this help" },
};


/* ---- strings and output ---- */


/* Prints the table on stdout, then frees it. */
static int
table_flush(struct ctl_table *t)
{
	ctl_table_print(t, stdout);
	ctl_table_free(t);
	return CFG_OK;
}

/* A stored document as JSON: null when empty (a tombstone), the text as
 * a string when it does not parse (it always should). */
static json_t *
doc_json(const char *text)
{
	json_t *j;

	if (text == NULL || *text == '\0')
		return json_null();
	j = json_loads(text, JSON_DECODE_ANY, NULL);
	return j != NULL ? j : ctl_jstr(text);
}

/* A document on one line, for table cells and watch lines. */
static char *
doc_compact(const char *text)
{
	json_t *j;
	char *s;

	if (text == NULL || *text == '\0')
		return xstrdup("-");
	if ((j = json_loads(text, JSON_DECODE_ANY, NULL)) == NULL)
		return xstrdup(text);
	s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(j);
	return s != NULL ? s : xstrdup(text);
}

/* "2024-05-01T12:00:00Z", or "-" for 0. */
static void
fmt_time(char *buf, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
}

static json_t *
value_json(const pb_value *v)
{
	return json_pack("{s:o, s:o, s:I, s:I, s:b, s:o, s:o, s:I, s:o}",
	    "namespace", ctl_jstr(v->namespace_),
	    "path", ctl_jstr(v->path),
	    "version", (json_int_t)v->version,
	    "revision", (json_int_t)v->revision,
	    "deleted", (int)v->deleted,
	    "author", ctl_jstr(v->author),
	    "comment", ctl_jstr(v->comment),
	    "created_unix_ms", (json_int_t)v->created_unix_ms,
	    "value", doc_json(v->json));
}

/* ---- calls ---- */

/* "platformctl: Update: FAILED_PRECONDITION: ..." */
static int
cfg_fail(const char *method, int code, const char *err)
{
	return ctl_fail(ctl_method_name(method), code, err);
}

/* One unary call to config-srv under --timeout: at --config, else at a
 * node of the service "config" found through discovery. Only reads are
 * retried (on UNAVAILABLE): a write retried could be written twice. */
static int
cfg_call(struct cfg *x, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
    int idempotent)
{
	struct plat_call_opts co = {
		.deadline_ms = x->g.timeout_ms,
		.idempotent = idempotent,
		.metadata = ctl_auth_metadata(),
	};
	plat_client *c = x->h->client(x->h->arg);
	char err[ERRLEN] = "";
	int rc;

	if (x->g.config != NULL)
		rc = plat_client_call_addr(c, x->g.config, method, req, desc,
		    resp, &co, err, sizeof(err));
	else
		rc = plat_client_call(c, CONFIG_SERVICE, method, req, desc,
		    resp, &co, err, sizeof(err));
	return rc != 0 ? cfg_fail(method, rc, err) : CFG_OK;
}

/* ---- usage and numbers ---- */

static int
usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": config: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry '" PROG " config help' for more information.\n",
	    stderr);
	return CFG_USAGE;
}

/* A whole decimal number in [min, INT64_MAX]: 0, or -1. */
static int
parse_num(const char *s, int64_t min, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min)
		return -1;
	*out = v;
	return 0;
}

/* A flag's number, 0 when not given; CFG_USAGE after saying why. */
static int
flag_num(const char *flag, const char *v, int64_t min, int64_t *out)
{
	*out = 0;
	if (v != NULL && parse_num(v, min, out) != 0)
		return usage_error("%s must be a whole number of at least "
		    "%lld, not '%s'", flag, (long long)min, v);
	return CFG_OK;
}

static int
arg_num(const char *what, const char *v, int64_t min, int64_t *out)
{
	if (parse_num(v, min, out) != 0)
		return usage_error("%s must be a whole number of at least "
		    "%lld, not '%s'", what, (long long)min, v);
	return CFG_OK;
}

/* --author, else $USER, else the login name of the uid. */
static const char *
author_of(const struct cfg *x)
{
	const struct passwd *pw;
	const char *u;

	if (x->f.author != NULL)
		return x->f.author;
	if ((u = getenv("USER")) != NULL && *u != '\0')
		return u;
	return (pw = getpwuid(getuid())) != NULL ? pw->pw_name : "";
}

/* ---- get ---- */

/* "sources: daily=prod/eu, monthly=global", "" when there are none. */
static char *
sources_string(const pb_read_resp *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		abort();
	for (size_t i = 0; i < r->n_sources; i++)
		fprintf(f, "%s%s=%s", i ? ", " : "; sources: ",
		    r->sources[i]->key, r->sources[i]->value);
	fclose(f);
	return buf;
}

/* What get says on stderr about the document it prints on stdout. */
static void
get_header(const pb_read_resp *r, int merged)
{
	const pb_value *v = r->value;
	char when[32], *src = sources_string(r);

	fmt_time(when, sizeof(when), v->created_unix_ms);
	if (merged)
		ctl_put_line(stderr, "# %s %s (merged): revision %lld%s",
		    v->namespace_, v->path, (long long)v->revision, src);
	else
		ctl_put_line(stderr, "# %s %s: version %lld, revision %lld, "
		    "%s by %s%s%s", v->namespace_, v->path,
		    (long long)v->version, (long long)v->revision, when,
		    *v->author ? v->author : "-", *v->comment ? ": " : "",
		    v->comment);
	free(src);
}

static json_t *
read_json(const pb_read_resp *r)
{
	json_t *o = value_json(r->value), *src;

	if (r->n_sources > 0) {
		src = json_object();
		for (size_t i = 0; i < r->n_sources; i++)
			json_object_set_new(src, r->sources[i]->key,
			    ctl_jstr(r->sources[i]->value));
		json_object_set_new(o, "sources", src);
	}
	return o;
}

static int
cfg_get(struct cfg *x, int argc, char **argv)
{
	Platform__Config__V1__ReadRequest req =
	    PLATFORM__CONFIG__V1__READ_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	pb_read_resp *r;
	int64_t version = 0;
	int rc;

	if ((rc = flag_num("--version", x->f.version, 1, &version)) != 0)
		return rc;
	if (x->f.version != NULL && x->f.merged != NULL)
		return usage_error("get: --version and --merged do not go "
		    "together");
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.version = version;
	req.merged = x->f.merged != NULL;
	if ((rc = cfg_call(x, M_READ, &req.base,
	    &platform__config__v1__read_response__descriptor, &m, 1)) != 0)
		return rc;
	r = (pb_read_resp *)m;
	if (r->value == NULL) {
		fprintf(stderr, PROG ": Read: the server sent no value\n");
		rc = CFG_FAIL;
	} else if (x->g.json)
		rc = ctl_json_print(read_json(r), 0);
	else {
		get_header(r, req.merged);
		fflush(stderr);
		rc = ctl_json_print(doc_json(r->value->json), 0);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- writes: set, delete, rollback ---- */

/* The value of set: the argument, or all of stdin for "-" or none. */
static int
read_value(const char *arg, char **out)
{
	size_t len = 0, cap = 4096, n;
	char *buf;

	if (arg != NULL && strcmp(arg, "-") != 0) {
		*out = xstrdup(arg);
		return CFG_OK;
	}
	if (isatty(STDIN_FILENO))
		fprintf(stderr, PROG ": reading the JSON value from stdin "
		    "(end with Ctrl-D)\n");
	buf = xrealloc(NULL, cap);
	while ((n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
		if ((len += n) + 1 == cap) {
			if (cap >= STDIN_MAX) {
				free(buf);
				return usage_error("set: the value on stdin "
				    "is over %d bytes", STDIN_MAX);
			}
			buf = xrealloc(buf, cap *= 2);
		}
	}
	if (ferror(stdin)) {
		free(buf);
		fprintf(stderr, PROG ": cannot read stdin: %s\n",
		    strerror(errno));
		return CFG_FAIL;
	}
	buf[len] = '\0';
	*out = buf;
	return CFG_OK;
}

/* A value that is not JSON is a usage error, caught before the call;
 * a bare word gets a hint, since that is the usual slip. */
static int
check_value(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &je);

	if (j != NULL) {
		json_decref(j);
		return CFG_OK;
	}
	return usage_error("set: the value is not JSON: %s (line %d, column "
	    "%d)%s", je.text, je.line, je.column,
	    strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_-./:") == strlen(text) && *text != '\0' ?
	    "; a string needs quotes: '\"...\"'" : "");
}

/* Prints the version a write made. */
static int
write_out(struct cfg *x, const pb_value *v, const char *what)
{
	if (v == NULL) {
		fprintf(stderr, PROG ": the server sent no value\n");
		return CFG_FAIL;
	}
	if (x->g.json)
		return ctl_json_print(value_json(v), 0);
	ctl_put_line(stdout, "%s %s: %s version %lld (revision %lld)",
	    v->namespace_, v->path, what, (long long)v->version,
	    (long long)v->revision);
	return CFG_OK;
}

static int
cfg_set(struct cfg *x, int argc, char **argv)
{
	Platform__Config__V1__UpdateRequest req =
	    PLATFORM__CONFIG__V1__UPDATE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t expect = 0;
	char *text = NULL;
	int rc;

	if ((rc = flag_num("--expect", x->f.expect, -1, &expect)) != 0 ||
	    (rc = read_value(argc > 2 ? argv[2] : NULL, &text)) != 0)
		return rc;
	if ((rc = check_value(text)) == CFG_OK) {
		req.namespace_ = argv[0];
		req.path = argv[1];
		req.json = text;
		req.expected_version = expect;
		req.author = (char *)author_of(x);
		req.comment = (char *)(x->f.comment ? x->f.comment : "");
		rc = cfg_call(x, M_UPDATE, &req.base,
		    &platform__config__v1__update_response__descriptor, &m, 0);
	}
	if (rc == CFG_OK)
		rc = write_out(x, ((Platform__Config__V1__UpdateResponse *)
		    m)->value, "wrote");
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	free(text);
	return rc;
}

static int
cfg_delete(struct cfg *x, int argc, char **argv)
{
	Platform__Config__V1__DeleteRequest req =
	    PLATFORM__CONFIG__V1__DELETE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t expect = 0;
	int rc;

	if ((rc = flag_num("--expect", x->f.expect, -1, &expect)) != 0)
		return rc;
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.expected_version = expect;
	req.author = (char *)author_of(x);
	req.comment = (char *)(x->f.comment ? x->f.comment : "");
	if ((rc = cfg_call(x, M_DELETE, &req.base,
	    &platform__config__v1__delete_response__descriptor, &m, 0)) != 0)
		return rc;
	rc = write_out(x, ((Platform__Config__V1__DeleteResponse *)m)->value,
	    "deleted as");
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
cfg_rollback(struct cfg *x, int argc, char **argv)
{
	Platform__Config__V1__RollbackRequest req =
	    PLATFORM__CONFIG__V1__ROLLBACK_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t expect = 0, to = 0;
	char what[64];
	int rc;

	if ((rc = flag_num("--expect", x->f.expect, -1, &expect)) != 0 ||
	    (rc = arg_num("VERSION", argv[2], 1, &to)) != 0)
		return rc;
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.to_version = to;
	req.expected_version = expect;
	req.author = (char *)author_of(x);
	req.comment = (char *)(x->f.comment ? x->f.comment : "");
	if ((rc = cfg_call(x, M_ROLLBACK, &req.base,
	    &platform__config__v1__rollback_response__descriptor, &m, 0)) != 0)
		return rc;
	snprintf(what, sizeof(what), "rolled back to version %lld as",
	    (long long)to);
	rc = write_out(x, ((Platform__Config__V1__RollbackResponse *)m)->value,
	    what);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- history and list: paged ---- */

/* The values of every page, kept whole: a table needs every row before
 * it knows its widths. */
struct pages {
	size_t n;
	ProtobufCMessage **p;
	size_t nvalues;
	const pb_value **values;	/* into p */
};

static void
pages_free(struct pages *pg)
{
	for (size_t i = 0; i < pg->n; i++)
		protobuf_c_message_free_unpacked(pg->p[i], NULL);
	free(pg->p);
	free(pg->values);
}

static void
pages_add(struct pages *pg, ProtobufCMessage *m, size_t n,
    Platform__Config__V1__Value **v)
{
	pg->p = xrealloc(pg->p, (pg->n + 1) * sizeof(*pg->p));
	pg->p[pg->n++] = m;
	pg->values = xrealloc(pg->values, (pg->nvalues + n) *
	    sizeof(*pg->values));
	for (size_t i = 0; i < n; i++)
		pg->values[pg->nvalues++] = v[i];
}

/* The next page token, or NULL at the end or when the server repeats
 * the one it was given (it would keep us here forever). */
static const char *
next_token(const char *method, const char *given, const char *next)
{
	if (*next == '\0')
		return NULL;
	if (strcmp(given, next) == 0) {
		fprintf(stderr, PROG ": %s: the server repeated page token "
		    "\"%s\"\n", ctl_method_name(method), given);
		return NULL;
	}
	return next;
}

static int
history_all(struct cfg *x, char **argv, struct pages *pg)
{
	Platform__Config__V1__HistoryRequest req =
	    PLATFORM__CONFIG__V1__HISTORY_REQUEST__INIT;
	ProtobufCMessage *m;
	pb_history_resp *r;
	int rc;

	req.namespace_ = argv[0];
	req.path = argv[1];
	req.page_size = PAGE_SIZE;
	for (;;) {
		if ((rc = cfg_call(x, M_HISTORY, &req.base,
		    &platform__config__v1__history_response__descriptor, &m,
		    1)) != 0)
			return rc;
		r = (pb_history_resp *)m;
		pages_add(pg, m, r->n_versions, r->versions);
		if ((req.page_token = (char *)next_token(M_HISTORY,
		    req.page_token, r->next_page_token)) == NULL)
			return *r->next_page_token == '\0' ? CFG_OK : CFG_FAIL;
	}
}

static int
values_json_out(const struct pages *pg)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < pg->nvalues; i++)
		json_array_append_new(arr, value_json(pg->values[i]));
	return ctl_json_print(arr, 0);
}

static int
cfg_history(struct cfg *x, int argc, char **argv)
{
	struct pages pg = { 0 };
	struct ctl_table t = { .ncols = 6 };
	char ver[24], rev[24], when[32];
	int rc;

	if ((rc = history_all(x, argv, &pg)) == CFG_OK && x->g.json)
		rc = values_json_out(&pg);
	else if (rc == CFG_OK) {
		ctl_table_row(&t, (const char *[]){ "VERSION", "REVISION",
		    "CREATED", "AUTHOR", "OP", "COMMENT" });
		for (size_t i = 0; i < pg.nvalues; i++) {
			const pb_value *v = pg.values[i];

			snprintf(ver, sizeof(ver), "%lld",
			    (long long)v->version);
			snprintf(rev, sizeof(rev), "%lld",
			    (long long)v->revision);
			fmt_time(when, sizeof(when), v->created_unix_ms);
			ctl_table_row(&t, (const char *[]){ ver, rev, when,
			    *v->author ? v->author : "-",
			    v->deleted ? "delete" : "write",
			    *v->comment ? v->comment : "-" });
		}
		rc = table_flush(&t);
	}
	pages_free(&pg);
	return rc;
}

static int
list_all(struct cfg *x, int argc, char **argv, struct pages *pg)
{
	Platform__Config__V1__ListRequest req =
	    PLATFORM__CONFIG__V1__LIST_REQUEST__INIT;
	ProtobufCMessage *m;
	pb_list_resp *r;
	int rc;

	req.namespace_ = argv[0];
	req.prefix = argc > 1 ? argv[1] : "";
	req.page_size = PAGE_SIZE;
	for (;;) {
		if ((rc = cfg_call(x, M_LIST, &req.base,
		    &platform__config__v1__list_response__descriptor, &m,
		    1)) != 0)
			return rc;
		r = (pb_list_resp *)m;
		pages_add(pg, m, r->n_values, r->values);
		if ((req.page_token = (char *)next_token(M_LIST,
		    req.page_token, r->next_page_token)) == NULL)
			return *r->next_page_token == '\0' ? CFG_OK : CFG_FAIL;
	}
}

static int
cfg_list(struct cfg *x, int argc, char **argv)
{
	struct pages pg = { 0 };
	struct ctl_table t = { .ncols = 5 };
	char ver[24], rev[24], when[32];
	int rc;

	if ((rc = list_all(x, argc, argv, &pg)) == CFG_OK && x->g.json)
		rc = values_json_out(&pg);
	else if (rc == CFG_OK) {
		ctl_table_row(&t, (const char *[]){ "PATH", "VERSION", "REVISION",
		    "UPDATED", "AUTHOR" });
		for (size_t i = 0; i < pg.nvalues; i++) {
			const pb_value *v = pg.values[i];

			snprintf(ver, sizeof(ver), "%lld",
			    (long long)v->version);
			snprintf(rev, sizeof(rev), "%lld",
			    (long long)v->revision);
			fmt_time(when, sizeof(when), v->created_unix_ms);
			ctl_table_row(&t, (const char *[]){ v->path, ver, rev,
			    when, *v->author ? v->author : "-" });
		}
		rc = table_flush(&t);
	}
	pages_free(&pg);
	return rc;
}

/* ---- diff ---- */

static const char *
op_name(int op)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
	    &platform__config__v1__change__op__descriptor, op);

	/* "OP_ADDED" -> "ADDED" */
	return ev != NULL && strncmp(ev->name, "OP_", 3) == 0 ? ev->name + 3 :
	    "UNKNOWN";
}

static int
diff_out(struct cfg *x, const pb_diff_resp *r, int64_t from, int64_t to)
{
	struct ctl_table t = { .ncols = 4 };
	json_t *arr;
	char *o, *n;

	if (x->g.json) {
		arr = json_array();
		for (size_t i = 0; i < r->n_changes; i++)
			json_array_append_new(arr, json_pack("{s:s, s:o, s:o, "
			    "s:o}", "op", op_name((int)r->changes[i]->op),
			    "pointer", ctl_jstr(r->changes[i]->pointer),
			    "old", doc_json(r->changes[i]->old_json),
			    "new", doc_json(r->changes[i]->new_json)));
		return ctl_json_print(arr, 0);
	}
	if (r->n_changes == 0) {
		if (to > 0)
			fprintf(stderr, "no changes from version %lld to "
			    "version %lld\n", (long long)from, (long long)to);
		else
			fprintf(stderr, "no changes from version %lld to the "
			    "latest\n", (long long)from);
		return CFG_OK;
	}
	ctl_table_row(&t, (const char *[]){ "OP", "POINTER", "OLD", "NEW" });
	for (size_t i = 0; i < r->n_changes; i++) {
		const pb_change *c = r->changes[i];

		o = doc_compact(c->old_json);
		n = doc_compact(c->new_json);
		ctl_table_row(&t, (const char *[]){ op_name((int)c->op),
		    *c->pointer ? c->pointer : "(document)", o, n });
		free(o);
		free(n);
	}
	return table_flush(&t);
}

static int
cfg_diff(struct cfg *x, int argc, char **argv)
{
	Platform__Config__V1__DiffRequest req =
	    PLATFORM__CONFIG__V1__DIFF_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t from = 0, to = 0;
	int rc;

	if ((rc = arg_num("FROM", argv[2], 1, &from)) != 0 ||
	    (argc > 3 && (rc = arg_num("TO", argv[3], 1, &to)) != 0))
		return rc;
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.from_version = from;
	req.to_version = to;
	if ((rc = cfg_call(x, M_DIFF, &req.base,
	    &platform__config__v1__diff_response__descriptor, &m, 1)) != 0)
		return rc;
	rc = diff_out(x, (pb_diff_resp *)m, from, to);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- watch ---- */

/* A node of config-srv for the stream: --config, else the first live
 * node discovery knows (streams go to an address, not a name). */
static int
watch_address(struct cfg *x, char **addr)
{
	if (ctl_service_address(x->h->client(x->h->arg), x->g.discovery,
	    x->g.timeout_ms, CONFIG_SERVICE, x->g.config, addr) != 0) {
		if (x->g.config == NULL)
			fprintf(stderr, PROG ": (or give --config ADDR)\n");
		return CFG_FAIL;
	}
	return CFG_OK;
}

/* "UPDATED prod/eu payments/limits version=4 revision=43 author=alice
 * value={...}"; "-- caught up (revision 43) --" after the replay. */
static void
watch_line(const pb_watch_resp *ev, int64_t rev)
{
	const pb_value *v = ev->value;
	char *doc;

	if (v != NULL) {
		doc = doc_compact(v->json);
		ctl_put_line(stdout, "%s %s %s version=%lld revision=%lld "
		    "author=%s%s%s", v->deleted ? "DELETED" : "UPDATED",
		    v->namespace_, v->path, (long long)v->version,
		    (long long)v->revision, *v->author ? v->author : "-",
		    v->deleted ? "" : " value=", v->deleted ? "" : doc);
		free(doc);
	}
	if (ev->caught_up && rev > 0)
		printf("-- caught up (revision %lld) --\n", (long long)rev);
	else if (ev->caught_up)
		printf("-- caught up --\n");
}

static int
watch_print(struct cfg *x, const pb_watch_resp *ev, int64_t rev)
{
	json_t *o;

	if (x->g.json) {
		o = ev->value != NULL ? value_json(ev->value) : json_object();
		if (ev->caught_up) {
			json_object_set_new(o, "caught_up", json_true());
			if (rev > 0)
				json_object_set_new(o, "revision",
				    json_integer(rev));
		}
		if (ctl_json_print(o, JSON_COMPACT) != CFG_OK)
			return CFG_FAIL;
	} else
		watch_line(ev, rev);
	/* The reader went away (a closed pipe): nothing left to do. */
	return fflush(stdout) == 0 ? CFG_OK : CFG_FAIL;
}

/* Reads until the stream ends, output fails or a signal asks us to stop
 * (a normal end: exit 0). */
static int
watch_loop(struct cfg *x, plat_client_stream *s, int64_t rev)
{
	ProtobufCMessage *m;
	char err[ERRLEN] = "";
	int r, rc;

	while (!ctl_stop) {
		r = plat_client_stream_next(s,
		    &platform__config__v1__watch_response__descriptor, &m,
		    WATCH_POLL_MS);
		if (r == PLAT_STREAM_TIMEOUT)
			continue;
		if (r != PLAT_STREAM_MESSAGE)
			break;
		if (m == NULL)
			continue;
		if (((pb_watch_resp *)m)->value != NULL &&
		    ((pb_watch_resp *)m)->value->revision > rev)
			rev = ((pb_watch_resp *)m)->value->revision;
		rc = watch_print(x, (pb_watch_resp *)m, rev);
		protobuf_c_message_free_unpacked(m, NULL);
		if (rc != CFG_OK) {
			plat_client_stream_cancel(s);
			return CFG_FAIL;
		}
	}
	if (ctl_stop) {
		plat_client_stream_cancel(s);
		return CFG_OK;
	}
	if ((rc = plat_client_stream_status(s, err, sizeof(err))) != 0)
		return cfg_fail(M_WATCH, rc, err);
	return CFG_OK;
}

static int
cfg_watch(struct cfg *x, int argc, char **argv)
{
	Platform__Config__V1__WatchRequest req =
	    PLATFORM__CONFIG__V1__WATCH_REQUEST__INIT;
	plat_client_stream *s = NULL;
	char err[ERRLEN] = "", *addr;
	int64_t after = 0;
	int rc;

	if ((rc = flag_num("--after", x->f.after, 0, &after)) != 0)
		return rc;
	req.namespaces = argv;
	req.n_namespaces = (size_t)argc;
	req.prefix = (char *)(x->f.prefix ? x->f.prefix : "");
	req.after_revision = after;
	if ((rc = watch_address(x, &addr)) != CFG_OK)
		return rc;
	ctl_catch_signals();
	/* Deadline 0: a watch lasts as long as the operator wants it. */
	rc = plat_client_stream_open(x->h->client(x->h->arg), addr, M_WATCH,
	    &req.base, 0, ctl_auth_metadata(), &s, err, sizeof(err));
	free(addr);
	if (rc != 0)
		return cfg_fail(M_WATCH, rc, err);
	rc = watch_loop(x, s, after);
	plat_client_stream_free(s);
	return rc;
}

/* ---- the command line ---- */

static void
cfg_help(FILE *f)
{
	char left[64];

	fprintf(f, "Usage: " PROG " config COMMAND [ARGS] [options]\n\n"
	    "Read, write and watch config-srv: JSON documents at a PATH in a "
	    "namespace NS\n(\"prod/eu\"), versioned.\n\nCommands:\n");
	for (size_t i = 0; i < NELEM(cfg_cmds); i++) {
		snprintf(left, sizeof(left), "%s %s", cfg_cmds[i].name,
		    cfg_cmds[i].args);
		fprintf(f, "  %-26s %s\n", left, cfg_cmds[i].help);
	}
	fprintf(f, "\nOptions:\n");
	for (size_t i = 0; i < NELEM(cfg_flags); i++) {
		const struct cfg_flag *o = &cfg_flags[i];

		snprintf(left, sizeof(left), "%s%s%s%s%s",
		    o->alias ? o->alias : "", o->alias ? ", " : "", o->flag,
		    o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(f, "  %-26s %s%s%s%s\n", left, o->help,
		    o->cmds ? " [" : "", o->cmds ? o->cmds : "",
		    o->cmds ? "]" : "");
	}
	fprintf(f, "\nplatformctl's options apply too (" PROG " --help): "
	    "-o json prints JSON;\n--config ADDR (or PLATFORM_CONFIG) names "
	    "config-srv, else the service\n\"" CONFIG_SERVICE "\" is found "
	    "through discovery (--discovery).\n"
	    "\nget prints the document on stdout and what version it is on "
	    "stderr.\n"
	    "\nExit status: 0 ok, 1 a call failed, 2 bad usage.\n");
}

static int
cfg_help_cmd(struct cfg *x, int argc, char **argv)
{
	cfg_help(stdout);
	return CFG_OK;
}

static const struct cfg_flag *
flag_find(const char *a, size_t len)
{
	for (size_t i = 0; i < NELEM(cfg_flags); i++) {
		const struct cfg_flag *o = &cfg_flags[i];

		if ((strlen(o->flag) == len && strncmp(o->flag, a, len) == 0) ||
		    (o->alias != NULL && strlen(o->alias) == len &&
		    strncmp(o->alias, a, len) == 0))
			return o;
	}
	return NULL;
}

static void
flag_set(struct cfg *x, const struct cfg_flag *o, const char *v)
{
	memcpy((char *)&x->f + o->off, &v, sizeof(v));
}

static const char *
flag_get(const struct cfg *x, const struct cfg_flag *o)
{
	const char *v;

	memcpy(&v, (const char *)&x->f + o->off, sizeof(v));
	return v;
}

/* Applies the flag at argv[*i]: one of ours, else platformctl's. */
static int
cfg_parse_flag(struct cfg *x, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *eq = strchr(a, '=');
	size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
	const struct cfg_flag *o = flag_find(a, len);

	if (o == NULL)
		return x->h->parse_opt(x->h->arg, argc, argv, i);
	if (o->arg == NULL && eq != NULL)
		return usage_error("%s takes no value", o->flag);
	if (o->arg == NULL)
		flag_set(x, o, "");
	else if (eq != NULL)
		flag_set(x, o, eq + 1);
	else if (*i + 1 < argc)
		flag_set(x, o, argv[++*i]);
	else
		return usage_error("%s needs a value (%s)", o->flag, o->arg);
	return CFG_OK;
}

/* A flag, as opposed to "-" (stdin) or a negative number (a value). */
static int
is_flag(const char *a)
{
	return a[0] == '-' && a[1] != '\0' &&
	    !(a[1] >= '0' && a[1] <= '9');
}

/* Flags into x, the rest into pos in order; "--" ends the flags. */
static int
cfg_parse(struct cfg *x, int argc, char **argv, char **pos, int *npos)
{
	int rc, flags = 1;

	*npos = 0;
	for (int i = 0; i < argc; i++) {
		if (flags && strcmp(argv[i], "--") == 0)
			flags = 0;
		else if (flags && is_flag(argv[i])) {
			if ((rc = cfg_parse_flag(x, argc, argv, &i)) != 0)
				return rc;
		} else
			pos[(*npos)++] = argv[i];
	}
	return CFG_OK;
}

/* A flag of another subcommand is a mistake worth saying. */
static int
cfg_check_flags(const struct cfg *x, const struct cfg_cmd *cmd)
{
	for (size_t i = 0; i < NELEM(cfg_flags); i++) {
		const struct cfg_flag *o = &cfg_flags[i];

		if (flag_get(x, o) != NULL && o->cmds != NULL &&
		    !ctl_word_in(cmd->name, o->cmds))
			return usage_error("%s: %s applies to %s only",
			    cmd->name, o->flag, o->cmds);
	}
	return CFG_OK;
}

static const struct cfg_cmd *
cmd_find(const char *name)
{
	for (size_t i = 0; i < NELEM(cfg_cmds); i++)
		if (strcmp(cfg_cmds[i].name, name) == 0)
			return &cfg_cmds[i];
	return NULL;
}

/* Checks the words and flags, then runs the subcommand. */
static int
cfg_run(struct cfg *x, int npos, char **pos)
{
	const struct cfg_cmd *cmd;
	int rc;

	if (npos == 0)
		return usage_error("missing command (get, set, delete, "
		    "history, diff, rollback, list, watch)");
	if ((cmd = cmd_find(pos[0])) == NULL)
		return usage_error("unknown command '%s'", pos[0]);
	if (npos - 1 < cmd->min)
		return usage_error("%s: missing %s", cmd->name, cmd->args);
	if (npos - 1 > cmd->max)
		return usage_error("%s: unexpected argument '%s'", cmd->name,
		    pos[1 + cmd->max]);
	if ((rc = cfg_check_flags(x, cmd)) != CFG_OK ||
	    (rc = x->h->check(x->h->arg, &x->g)) != CFG_OK)
		return rc;
	if (x->g.config != NULL && strchr(x->g.config, ':') == NULL)
		return usage_error("--config must be host:port, not '%s'",
		    x->g.config);
	x->sub = cmd->name;
	return cmd->run(x, npos - 1, pos + 1);
}

int
ctl_config_main(const struct ctl_host *h, int argc, char **argv)
{
	struct cfg x = { .h = h };
	char **pos = xcalloc((size_t)argc + 1, sizeof(*pos));
	int npos, rc;

	if ((rc = cfg_parse(&x, argc, argv, pos, &npos)) == CFG_OK) {
		if (x.f.help != NULL) {
			cfg_help(stdout);
			rc = CFG_OK;
		} else
			rc = cfg_run(&x, npos, pos);
	}
	free(pos);
	return rc;
}
