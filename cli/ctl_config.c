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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_config.h"
#include "ctl_out.h"
#include "platform/client.h"
#include "platform/config/v1/config.pb-c.h"
#include "platform/xalloc.h"

#define PROG			"platformctl"
#define CONFIG_SERVICE		"config"
#define PAGE_SIZE		1000	/* the server's maximum: fewest calls */
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


typedef Platform__Config__V1__Value		pb_value;
typedef Platform__Config__V1__ReadResponse	pb_read_resp;
typedef Platform__Config__V1__DiffResponse	pb_diff_resp;
typedef Platform__Config__V1__Change		pb_change;
typedef Platform__Config__V1__WatchResponse	pb_watch_resp;

/* The config commands' own flags, as given (NULL: not given). */
struct cfg_flags {
	const char *version;
	const char *merged;
	const char *expect;
	const char *comment;
	const char *author;
	const char *prefix;
	const char *after;
};

/* The flags of a run (the command table fills them). */
static const struct cfg_flags *
cfg_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_config_group, __VA_ARGS__)

/* ---- strings and output ---- */


/* Prints the table on stdout, then frees it. */
static int
table_flush(struct ctl_table *t)
{
	ctl_table_print(t, stdout);
	ctl_table_free(t);
	return CTL_OK;
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
	    "value", ctl_json_doc(v->json));
}

/* ---- calls ---- */

/* One unary call to config-srv under --timeout: at --config, else at a
 * node of the service "config" found through discovery. Only reads are
 * retried (on UNAVAILABLE): a write retried could be written twice. */
static int
cfg_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, CONFIG_SERVICE, x->g->config, method, req,
	    desc, resp, idempotent);
}

/* ---- usage and numbers ---- */

/* A whole decimal number of at least min: 0, or -1. */
static int
parse_num(const char *s, int64_t min, int64_t *out)
{
	long long v;

	if (ctl_parse_int(s, min, INT64_MAX, &v) != 0)
		return -1;
	*out = v;
	return 0;
}

/* A flag's number, 0 when not given; CTL_USAGE after saying why. */
static int
flag_num(const char *flag, const char *v, int64_t min, int64_t *out)
{
	*out = 0;
	if (v != NULL && parse_num(v, min, out) != 0)
		return usage_error("%s must be a whole number of at least "
		    "%lld, not '%s'", flag, (long long)min, v);
	return CTL_OK;
}

static int
arg_num(const char *what, const char *v, int64_t min, int64_t *out)
{
	if (parse_num(v, min, out) != 0)
		return usage_error("%s must be a whole number of at least "
		    "%lld, not '%s'", what, (long long)min, v);
	return CTL_OK;
}

/* --author, else $USER, else the login name of the uid. */
static const char *
author_of(const struct ctl_run *x)
{
	const struct cfg_flags *f = cfg_f(x);
	const struct passwd *pw;
	const char *u;

	if (f->author != NULL)
		return f->author;
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

	ctl_fmt_time(when, sizeof(when), v->created_unix_ms);
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
cfg_get(const struct ctl_run *x, int argc, char **argv)
{
	const struct cfg_flags *f = cfg_f(x);
	Platform__Config__V1__ReadRequest req =
	    PLATFORM__CONFIG__V1__READ_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	pb_read_resp *r;
	int64_t version = 0;
	int rc;

	if ((rc = flag_num("--version", f->version, 1, &version)) != 0)
		return rc;
	if (f->version != NULL && f->merged != NULL)
		return usage_error("get: --version and --merged do not go "
		    "together");
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.version = version;
	req.merged = f->merged != NULL;
	if ((rc = cfg_call(x, M_READ, &req.base,
	    &platform__config__v1__read_response__descriptor, &m, 1)) != 0)
		return rc;
	r = (pb_read_resp *)m;
	if (r->value == NULL) {
		fprintf(stderr, PROG ": Read: the server sent no value\n");
		rc = CTL_FAIL;
	} else if (x->g->json)
		rc = ctl_json_print(read_json(r), 0);
	else {
		get_header(r, req.merged);
		fflush(stderr);
		rc = ctl_json_print(ctl_json_doc(r->value->json), 0);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- writes: set, delete, rollback ---- */

/* The value of set: the argument, or all of stdin for "-" or none. */
static int
read_value(const char *arg, char **out)
{
	size_t len;

	if (arg != NULL && strcmp(arg, "-") != 0) {
		*out = xstrdup(arg);
		return CTL_OK;
	}
	return ctl_read_stdin(&ctl_config_group, "the JSON value", STDIN_MAX,
	    out, &len);
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
		return CTL_OK;
	}
	return usage_error("set: the value is not JSON: %s (line %d, column "
	    "%d)%s", je.text, je.line, je.column,
	    strspn(text, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789_-./:") == strlen(text) && *text != '\0' ?
	    "; a string needs quotes: '\"...\"'" : "");
}

/* Prints the version a write made. */
static int
write_out(const struct ctl_run *x, const pb_value *v, const char *what)
{
	if (v == NULL) {
		fprintf(stderr, PROG ": the server sent no value\n");
		return CTL_FAIL;
	}
	if (x->g->json)
		return ctl_json_print(value_json(v), 0);
	ctl_put_line(stdout, "%s %s: %s version %lld (revision %lld)",
	    v->namespace_, v->path, what, (long long)v->version,
	    (long long)v->revision);
	return CTL_OK;
}

static int
cfg_set(const struct ctl_run *x, int argc, char **argv)
{
	const struct cfg_flags *f = cfg_f(x);
	Platform__Config__V1__UpdateRequest req =
	    PLATFORM__CONFIG__V1__UPDATE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t expect = 0;
	char *text = NULL;
	int rc;

	if ((rc = flag_num("--expect", f->expect, -1, &expect)) != 0 ||
	    (rc = read_value(argc > 2 ? argv[2] : NULL, &text)) != 0)
		return rc;
	if ((rc = check_value(text)) == CTL_OK) {
		req.namespace_ = argv[0];
		req.path = argv[1];
		req.json = text;
		req.expected_version = expect;
		req.author = (char *)author_of(x);
		req.comment = (char *)(f->comment ? f->comment : "");
		rc = cfg_call(x, M_UPDATE, &req.base,
		    &platform__config__v1__update_response__descriptor, &m, 0);
	}
	if (rc == CTL_OK)
		rc = write_out(x, ((Platform__Config__V1__UpdateResponse *)
		    m)->value, "wrote");
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	free(text);
	return rc;
}

static int
cfg_delete(const struct ctl_run *x, int argc, char **argv)
{
	const struct cfg_flags *f = cfg_f(x);
	Platform__Config__V1__DeleteRequest req =
	    PLATFORM__CONFIG__V1__DELETE_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t expect = 0;
	int rc;

	if ((rc = flag_num("--expect", f->expect, -1, &expect)) != 0)
		return rc;
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.expected_version = expect;
	req.author = (char *)author_of(x);
	req.comment = (char *)(f->comment ? f->comment : "");
	if ((rc = cfg_call(x, M_DELETE, &req.base,
	    &platform__config__v1__delete_response__descriptor, &m, 0)) != 0)
		return rc;
	rc = write_out(x, ((Platform__Config__V1__DeleteResponse *)m)->value,
	    "deleted as");
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
cfg_rollback(const struct ctl_run *x, int argc, char **argv)
{
	const struct cfg_flags *f = cfg_f(x);
	Platform__Config__V1__RollbackRequest req =
	    PLATFORM__CONFIG__V1__ROLLBACK_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t expect = 0, to = 0;
	char what[64];
	int rc;

	if ((rc = flag_num("--expect", f->expect, -1, &expect)) != 0 ||
	    (rc = arg_num("VERSION", argv[2], 1, &to)) != 0)
		return rc;
	req.namespace_ = argv[0];
	req.path = argv[1];
	req.to_version = to;
	req.expected_version = expect;
	req.author = (char *)author_of(x);
	req.comment = (char *)(f->comment ? f->comment : "");
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

/* The values of a history (VERSION ... COMMENT) or of a list (PATH ...
 * AUTHOR). */
static int
values_print(const struct ctl_run *x, const struct ctl_pages *pg,
    int history)
{
	struct ctl_table t = { .ncols = history ? 6 : 5 };
	char ver[24], rev[24], when[32];
	json_t *arr;

	if (x->g->json) {
		arr = json_array();
		for (size_t i = 0; i < pg->nitems; i++)
			json_array_append_new(arr, value_json(pg->items[i]));
		return ctl_json_print(arr, 0);
	}
	ctl_table_row(&t, history ? (const char *[]){ "VERSION", "REVISION",
	    "CREATED", "AUTHOR", "OP", "COMMENT" } : (const char *[]){ "PATH",
	    "VERSION", "REVISION", "UPDATED", "AUTHOR" });
	for (size_t i = 0; i < pg->nitems; i++) {
		const pb_value *v = pg->items[i];
		const char *author = *v->author ? v->author : "-";

		snprintf(ver, sizeof(ver), "%lld", (long long)v->version);
		snprintf(rev, sizeof(rev), "%lld", (long long)v->revision);
		ctl_fmt_time(when, sizeof(when), v->created_unix_ms);
		if (history)
			ctl_table_row(&t, (const char *[]){ ver, rev, when,
			    author, v->deleted ? "delete" : "write",
			    *v->comment ? v->comment : "-" });
		else
			ctl_table_row(&t, (const char *[]){ v->path, ver, rev,
			    when, author });
	}
	return table_flush(&t);
}

/* Every page of History or List, then its values printed. */
static int
values_list(const struct ctl_run *x, const char *method,
    ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    const char *items)
{
	struct ctl_pages pg = { 0 };
	int rc;

	if ((rc = ctl_pages_fetch(x, cfg_call, method, req, desc, items,
	    PAGE_SIZE, 0, &pg)) == CTL_OK)
		rc = values_print(x, &pg, strcmp(method, M_HISTORY) == 0);
	ctl_pages_free(&pg);
	return rc;
}

static int
cfg_history(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Config__V1__HistoryRequest req =
	    PLATFORM__CONFIG__V1__HISTORY_REQUEST__INIT;

	req.namespace_ = argv[0];
	req.path = argv[1];
	return values_list(x, M_HISTORY, &req.base,
	    &platform__config__v1__history_response__descriptor, "versions");
}

static int
cfg_list(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Config__V1__ListRequest req =
	    PLATFORM__CONFIG__V1__LIST_REQUEST__INIT;

	req.namespace_ = argv[0];
	req.prefix = argc > 1 ? argv[1] : "";
	return values_list(x, M_LIST, &req.base,
	    &platform__config__v1__list_response__descriptor, "values");
}

/* ---- diff ---- */

static const char *
op_name(int op)
{
	return ctl_enum_name(&platform__config__v1__change__op__descriptor, op,
	    "OP_");
}

static int
diff_out(const struct ctl_run *x, const pb_diff_resp *r, int64_t from,
    int64_t to)
{
	struct ctl_table t = { .ncols = 4 };
	json_t *arr;
	char *o, *n;

	if (x->g->json) {
		arr = json_array();
		for (size_t i = 0; i < r->n_changes; i++)
			json_array_append_new(arr, json_pack("{s:s, s:o, s:o, "
			    "s:o}", "op", op_name((int)r->changes[i]->op),
			    "pointer", ctl_jstr(r->changes[i]->pointer),
			    "old", ctl_json_doc(r->changes[i]->old_json),
			    "new", ctl_json_doc(r->changes[i]->new_json)));
		return ctl_json_print(arr, 0);
	}
	if (r->n_changes == 0) {
		if (to > 0)
			fprintf(stderr, "no changes from version %lld to "
			    "version %lld\n", (long long)from, (long long)to);
		else
			fprintf(stderr, "no changes from version %lld to the "
			    "latest\n", (long long)from);
		return CTL_OK;
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
cfg_diff(const struct ctl_run *x, int argc, char **argv)
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
watch_address(const struct ctl_run *x, char **addr)
{
	if (ctl_service_address(x->g, CONFIG_SERVICE, x->g->config,
	    addr) != 0) {
		if (x->g->config == NULL)
			fprintf(stderr, PROG ": (or give --config ADDR)\n");
		return CTL_FAIL;
	}
	return CTL_OK;
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
watch_print(const struct ctl_run *x, const pb_watch_resp *ev, int64_t rev)
{
	json_t *o;

	if (x->g->json) {
		o = ev->value != NULL ? value_json(ev->value) : json_object();
		if (ev->caught_up) {
			json_object_set_new(o, "caught_up", json_true());
			if (rev > 0)
				json_object_set_new(o, "revision",
				    json_integer(rev));
		}
		if (ctl_json_print(o, JSON_COMPACT) != CTL_OK)
			return CTL_FAIL;
	} else
		watch_line(ev, rev);
	/* The reader went away (a closed pipe): nothing left to do. */
	return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

/* A watch's reader: the highest revision seen, for the caught-up line. */
struct watch_state {
	const struct ctl_run *x;
	int64_t rev;
};

static int
watch_msg(void *arg, const ProtobufCMessage *m)
{
	struct watch_state *w = arg;
	const pb_watch_resp *ev = (const pb_watch_resp *)m;

	if (ev->value != NULL && ev->value->revision > w->rev)
		w->rev = ev->value->revision;
	return watch_print(w->x, ev, w->rev);
}

static int
cfg_watch(const struct ctl_run *x, int argc, char **argv)
{
	const struct cfg_flags *f = cfg_f(x);
	Platform__Config__V1__WatchRequest req =
	    PLATFORM__CONFIG__V1__WATCH_REQUEST__INIT;
	struct watch_state w = { x, 0 };
	char *addr;
	int rc;

	if ((rc = flag_num("--after", f->after, 0, &w.rev)) != 0)
		return rc;
	req.namespaces = argv;
	req.n_namespaces = (size_t)argc;
	req.prefix = (char *)(f->prefix ? f->prefix : "");
	req.after_revision = w.rev;
	if ((rc = watch_address(x, &addr)) != CTL_OK)
		return rc;
	rc = ctl_stream(x->g, addr, M_WATCH, &req.base,
	    &platform__config__v1__watch_response__descriptor, watch_msg, &w);
	free(addr);
	return rc;
}

/* ---- the command table ---- */

#define F(name, kind, arg, cmds, help) { "--" #name, NULL, kind, arg, \
	NULL, cmds, help, offsetof(struct cfg_flags, name) }

static const struct ctl_flag cfg_flags[] = {
	F(version, CTL_VALUE, "N", "get",
	    "read version N of the path (default: the latest)"),
	F(merged, CTL_SWITCH, NULL, "get",
	    "deep-merge global <- ... <- NS, the most specific winning"),
	F(expect, CTL_VALUE, "N", "set delete rollback",
	    "only if the path is at version N (-1: does not exist)"),
	F(comment, CTL_VALUE, "TEXT", "set delete rollback",
	    "why, kept in the history"),
	F(author, CTL_VALUE, "NAME", "set delete rollback",
	    "who, kept in the history (default $USER)"),
	F(prefix, CTL_VALUE, "PATH", "watch",
	    "only paths starting with PATH"),
	F(after, CTL_VALUE, "REV", "watch",
	    "first replay the changes after revision REV (default: only new "
	    "ones)"),
};

#undef F

static const struct ctl_cmd cfg_cmds[] = {
	{ "config", NULL, "COMMAND ...", 0, 0, NULL,
	    "config-srv values: get, set, delete, history, diff, rollback, "
	    "list, watch ('config help')" },
	{ "config", "get", "NS PATH[.SELECTOR]", 2, 2, cfg_get,
	    "print a value (the part at SELECTOR: limits.daily.max)" },
	{ "config", "set", "NS PATH [JSON|-]", 2, 3, cfg_set,
	    "write a new version; JSON from the argument, else stdin" },
	{ "config", "delete", "NS PATH", 2, 2, cfg_delete,
	    "delete a path (a tombstone version)" },
	{ "config", "history", "NS PATH", 2, 2, cfg_history,
	    "list the versions of a path, newest first" },
	{ "config", "diff", "NS PATH FROM [TO]", 3, 4, cfg_diff,
	    "what changed from version FROM to TO (default: the latest)" },
	{ "config", "rollback", "NS PATH VERSION", 3, 3, cfg_rollback,
	    "write the value of VERSION as a new version" },
	{ "config", "list", "NS [PREFIX]", 1, 2, cfg_list,
	    "list the paths of a namespace (under PREFIX)" },
	{ "config", "watch", "[NS...]", 0, 1 << 20, cfg_watch,
	    "stream changes in NS (default: every namespace)" },
	{ "config", "help", "", 0, 0, NULL, "show this help" },
};

static int
cfg_check(const struct ctl_run *x)
{
	if (x->g->config != NULL && strchr(x->g->config, ':') == NULL)
		return usage_error("--config must be host:port, not '%s'",
		    x->g->config);
	return CTL_OK;
}

const struct ctl_group ctl_config_group = {
	.name = "config",
	.hint = "config help",
	.head = "Usage: " PROG " config COMMAND [ARGS] [options]\n\n"
	    "Read, write and watch config-srv: JSON documents at a PATH in a "
	    "namespace NS\n(\"prod/eu\"), versioned.\n\nCommands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help): "
	    "-o json prints JSON;\n--config ADDR (or PLATFORM_CONFIG) names "
	    "config-srv, else the service\n\"" CONFIG_SERVICE "\" is found "
	    "through discovery (--discovery).\n"
	    "\nget prints the document on stdout and what version it is on "
	    "stderr.\n"
	    "\nExit status: 0 ok, 1 a call failed, 2 bad usage.\n",
	.width = 26,
	.show_cmds = 1,
	.cmds = CTL_TABLE(cfg_cmds),
	.flags = CTL_TABLE(cfg_flags),
	.flags_size = sizeof(struct cfg_flags),
	.check = cfg_check,
};
