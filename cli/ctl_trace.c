/*
 * ctl_trace: an operator's view of trace-srv. See ctl_trace.h.
 *
 * get prints a trace as an indented tree, each span under its parent
 * (spans whose parent is not stored are roots), with its service, its
 * start after the trace's first span and its duration, errors marked;
 * search prints one line per trace (every page, up to --limit);
 * services, operations and deps print tables. -o json prints what
 * trace-srv answered. Exit status: 0 ok, 1 a call failed, 2 bad usage.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_out.h"
#include "ctl_trace.h"
#include "platform/clock.h"
#include "platform/trace/v1/trace.pb-c.h"
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define TRACE_SERVICE	"trace"
#define PAGE_SIZE	100
#define LIMIT_DEFAULT	20
#define DAY_MS		86400000LL

#define M_PREFIX	"/platform.trace.v1.Trace/"
#define M_GET		M_PREFIX "GetTrace"
#define M_SEARCH	M_PREFIX "Search"
#define M_SERVICES	M_PREFIX "Services"
#define M_OPERATIONS	M_PREFIX "Operations"
#define M_DEPS		M_PREFIX "Dependencies"

typedef Platform__Trace__V1__Span pb_span;

struct tr_flags {
	const char *trace, *service, *operation, *min, *max, *errors, *since,
	    *limit;
	struct ctl_list attrs;
};

static const struct tr_flags *
tr_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_trace_group, __VA_ARGS__)

static int
tr_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, TRACE_SERVICE, tr_f(x)->trace, method, req,
	    desc, resp, idempotent);
}

/* "12.345ms", "1.500s" */
static void
fmt_ns(char *buf, size_t len, int64_t ns)
{
	if (ns >= 1000000000)
		snprintf(buf, len, "%.3fs", (double)ns / 1e9);
	else
		snprintf(buf, len, "%.3fms", (double)ns / 1e6);
}

static const char *
kind_name(int k)
{
	return ctl_enum_name(&platform__trace__v1__span_kind__descriptor, k,
	    "SPAN_KIND_");
}

/* A window flag: the last DURATION, up to now. */
static int
since_of(const struct ctl_run *x, int64_t *start_ms)
{
	int64_t ms;

	*start_ms = 0;
	if (tr_f(x)->since == NULL)
		return CTL_OK;
	if (ctl_parse_duration(tr_f(x)->since, 3650 * DAY_MS, &ms) != 0)
		return usage_error("--since must be a duration (30s, 5m, 1h, "
		    "7d), not '%s'", tr_f(x)->since);
	*start_ms = plat_wall_ms() - ms;
	return CTL_OK;
}

/* ---- get ---- */

static json_t *
span_json(const pb_span *s)
{
	json_t *a = json_object();

	for (size_t i = 0; i < s->n_attributes; i++)
		json_object_set_new(a, s->attributes[i]->key,
		    ctl_jstr(s->attributes[i]->value));
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:s,s:I,s:I,s:b,s:o,s:o}",
	    "span_id", ctl_jstr(s->span_id),
	    "parent_span_id", ctl_jstr(s->parent_span_id),
	    "service", ctl_jstr(s->service), "node", ctl_jstr(s->node),
	    "name", ctl_jstr(s->name), "kind", kind_name(s->kind),
	    "start_unix_nano", (json_int_t)s->start_unix_nano,
	    "duration_ns", (json_int_t)s->duration_ns, "error", s->error,
	    "status_message", ctl_jstr(s->status_message),
	    "attributes", a);
}

struct tree {
	pb_span **s;
	size_t n;
	int64_t t0;
	struct ctl_table tab;
	bool *done;
};

static void
tree_add(struct tree *t, size_t i, int depth)
{
	char name[600], dur[32], at[32];
	const pb_span *s = t->s[i];

	if (t->done[i])
		return;                 /* a cycle in bad data */
	t->done[i] = true;
	snprintf(name, sizeof(name), "%*s%s", 2 * (depth < 60 ? depth : 60),
	    "", s->name);
	fmt_ns(dur, sizeof(dur), s->duration_ns);
	at[0] = '+';
	fmt_ns(at + 1, sizeof(at) - 1, s->start_unix_nano - t->t0);
	ctl_table_row(&t->tab, (const char *[]){ name, s->service, at, dur,
	    kind_name(s->kind), s->error ? (s->status_message[0] != '\0' ?
	    s->status_message : "error") : "" });
	/* Children in start order (the answer's order). */
	for (size_t k = 0; k < t->n; k++)
		if (strcmp(t->s[k]->parent_span_id, s->span_id) == 0)
			tree_add(t, k, depth + 1);
}

static bool
has_parent(const struct tree *t, const pb_span *s)
{
	for (size_t k = 0; k < t->n; k++)
		if (strcmp(t->s[k]->span_id, s->parent_span_id) == 0)
			return true;
	return false;
}

static int
tr_get(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Trace__V1__GetTraceRequest req =
	    PLATFORM__TRACE__V1__GET_TRACE_REQUEST__INIT;
	Platform__Trace__V1__GetTraceResponse *resp;
	ProtobufCMessage *m = NULL;
	struct tree t = { 0 };
	int rc;

	(void)argc;
	req.trace_id = argv[0];
	if ((rc = tr_call(x, M_GET, &req.base,
	    &platform__trace__v1__get_trace_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	resp = (void *)m;
	if (x->g->json) {
		json_t *spans = json_array();

		for (size_t i = 0; i < resp->n_spans; i++)
			json_array_append_new(spans, span_json(resp->spans[i]));
		rc = ctl_json_print(json_pack("{s:s,s:o,s:b}", "trace_id",
		    argv[0], "spans", spans, "truncated", resp->truncated), 0);
		protobuf_c_message_free_unpacked(m, NULL);
		return rc;
	}
	t.s = resp->spans;
	t.n = resp->n_spans;
	t.t0 = t.n > 0 ? t.s[0]->start_unix_nano : 0;
	t.done = xcalloc(t.n + 1, sizeof(*t.done));
	t.tab.ncols = 6;
	ctl_table_row(&t.tab, (const char *[]){ "OPERATION", "SERVICE",
	    "START", "DURATION", "KIND", "ERROR" });
	for (size_t i = 0; i < t.n; i++)
		if (!has_parent(&t, t.s[i]))
			tree_add(&t, i, 0);
	ctl_table_print(&t.tab, stdout);
	if (resp->truncated)
		ctl_put_line(stdout, "-- more spans are stored than shown --");
	ctl_table_free(&t.tab);
	free(t.done);
	protobuf_c_message_free_unpacked(m, NULL);
	return CTL_OK;
}

/* ---- search ---- */

static int
duration_us(const char *flag, const char *s, int64_t *us)
{
	int64_t ms;

	*us = 0;
	if (s == NULL)
		return CTL_OK;
	if (ctl_parse_duration(s, DAY_MS, &ms) != 0)
		return usage_error("%s must be a duration (5ms, 2s, 1m), not "
		    "'%s'", flag, s);
	*us = ms * 1000;
	return CTL_OK;
}

static int
tr_search(const struct ctl_run *x, int argc, char **argv)
{
	const struct tr_flags *f = tr_f(x);
	Platform__Trace__V1__SearchRequest req =
	    PLATFORM__TRACE__V1__SEARCH_REQUEST__INIT;
	Platform__Trace__V1__SearchRequest__AttributesEntry
	    ent[CTL_LIST_MAX], *entp[CTL_LIST_MAX];
	char *keys[CTL_LIST_MAX] = { 0 };
	struct ctl_pages pg = { 0 };
	long long limit = LIMIT_DEFAULT;
	int rc;

	(void)argc;
	(void)argv;
	if (f->limit != NULL && ctl_parse_int(f->limit, 1, 100000, &limit))
		return usage_error("--limit must be 1..100000, not '%s'",
		    f->limit);
	if ((rc = duration_us("--min-duration", f->min,
	    &req.min_duration_us)) != CTL_OK ||
	    (rc = duration_us("--max-duration", f->max,
	    &req.max_duration_us)) != CTL_OK ||
	    (rc = since_of(x, &req.start_unix_ms)) != CTL_OK)
		return rc;
	for (size_t i = 0; i < f->attrs.n; i++) {
		const char *eq = strchr(f->attrs.v[i], '=');

		if (eq == NULL || eq == f->attrs.v[i]) {
			for (size_t k = 0; k < i; k++)
				free(keys[k]);
			return usage_error("--attr must be KEY=VALUE, not '%s'",
			    f->attrs.v[i]);
		}
		platform__trace__v1__search_request__attributes_entry__init(
		    &ent[i]);
		keys[i] = xstrndup(f->attrs.v[i], (size_t)(eq - f->attrs.v[i]));
		ent[i].key = keys[i];
		ent[i].value = (char *)eq + 1;
		entp[i] = &ent[i];
	}
	req.attributes = entp;
	req.n_attributes = f->attrs.n;
	req.service = (char *)(f->service != NULL ? f->service : "");
	req.operation = (char *)(f->operation != NULL ? f->operation : "");
	req.errors_only = f->errors != NULL;
	rc = ctl_pages_fetch(x, tr_call, M_SEARCH, &req.base,
	    &platform__trace__v1__search_response__descriptor, "traces",
	    PAGE_SIZE, (size_t)limit, &pg);
	for (size_t k = 0; k < f->attrs.n; k++)
		free(keys[k]);
	if (rc != CTL_OK) {
		ctl_pages_free(&pg);
		return rc;
	}
	if (x->g->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < pg.nitems; i++) {
			const Platform__Trace__V1__TraceSummary *t =
			    pg.items[i];
			json_t *svcs = json_array();

			for (size_t k = 0; k < t->n_services; k++)
				json_array_append_new(svcs,
				    ctl_jstr(t->services[k]));
			json_array_append_new(a, json_pack(
			    "{s:o,s:o,s:o,s:I,s:I,s:i,s:i,s:o}",
			    "trace_id", ctl_jstr(t->trace_id),
			    "root_service", ctl_jstr(t->root_service),
			    "root_name", ctl_jstr(t->root_name),
			    "start_unix_nano", (json_int_t)t->start_unix_nano,
			    "duration_ns", (json_int_t)t->duration_ns,
			    "span_count", t->span_count,
			    "error_count", t->error_count,
			    "services", svcs));
		}
		rc = ctl_json_print(a, 0);
	} else {
		struct ctl_table tab = { .ncols = 7 };

		ctl_table_row(&tab, (const char *[]){ "TRACE", "ROOT", "START",
		    "DURATION", "SPANS", "ERRORS", "SERVICES" });
		for (size_t i = 0; i < pg.nitems; i++) {
			const Platform__Trace__V1__TraceSummary *t =
			    pg.items[i];
			char root[512], start[40], dur[32], n[16], e[16];
			char svcs[512] = "";

			snprintf(root, sizeof(root), "%s %s",
			    t->root_service[0] ? t->root_service : "?",
			    t->root_name);
			ctl_fmt_time(start, sizeof(start),
			    t->start_unix_nano / 1000000);
			fmt_ns(dur, sizeof(dur), t->duration_ns);
			snprintf(n, sizeof(n), "%d", t->span_count);
			snprintf(e, sizeof(e), "%d", t->error_count);
			for (size_t k = 0; k < t->n_services; k++) {
				size_t l = strlen(svcs);

				snprintf(svcs + l, sizeof(svcs) - l, "%s%s",
				    k ? "," : "", t->services[k]);
			}
			ctl_table_row(&tab, (const char *[]){ t->trace_id,
			    root, start, dur, n, e, svcs });
		}
		ctl_table_print(&tab, stdout);
		ctl_table_free(&tab);
	}
	ctl_pages_free(&pg);
	return rc;
}

/* ---- services, operations, deps ---- */

static int
tr_services(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Trace__V1__ServicesRequest req =
	    PLATFORM__TRACE__V1__SERVICES_REQUEST__INIT;
	Platform__Trace__V1__ServicesResponse *resp;
	ProtobufCMessage *m = NULL;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = tr_call(x, M_SERVICES, &req.base,
	    &platform__trace__v1__services_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	resp = (void *)m;
	if (x->g->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < resp->n_services; i++)
			json_array_append_new(a, ctl_jstr(resp->services[i]));
		rc = ctl_json_print(a, 0);
	} else {
		for (size_t i = 0; i < resp->n_services; i++)
			ctl_put_line(stdout, "%s", resp->services[i]);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
tr_operations(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Trace__V1__OperationsRequest req =
	    PLATFORM__TRACE__V1__OPERATIONS_REQUEST__INIT;
	Platform__Trace__V1__OperationsResponse *resp;
	ProtobufCMessage *m = NULL;
	int rc;

	(void)argc;
	req.service = argv[0];
	if ((rc = tr_call(x, M_OPERATIONS, &req.base,
	    &platform__trace__v1__operations_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	resp = (void *)m;
	if (x->g->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < resp->n_operations; i++)
			json_array_append_new(a, json_pack("{s:o,s:s}", "name",
			    ctl_jstr(resp->operations[i]->name), "kind",
			    kind_name(resp->operations[i]->kind)));
		rc = ctl_json_print(a, 0);
	} else {
		struct ctl_table tab = { .ncols = 2 };

		ctl_table_row(&tab, (const char *[]){ "OPERATION", "KIND" });
		for (size_t i = 0; i < resp->n_operations; i++)
			ctl_table_row(&tab, (const char *[]){
			    resp->operations[i]->name,
			    kind_name(resp->operations[i]->kind) });
		ctl_table_print(&tab, stdout);
		ctl_table_free(&tab);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
tr_deps(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Trace__V1__DependenciesRequest req =
	    PLATFORM__TRACE__V1__DEPENDENCIES_REQUEST__INIT;
	Platform__Trace__V1__DependenciesResponse *resp;
	ProtobufCMessage *m = NULL;
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = since_of(x, &req.start_unix_ms)) != CTL_OK)
		return rc;
	if ((rc = tr_call(x, M_DEPS, &req.base,
	    &platform__trace__v1__dependencies_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	resp = (void *)m;
	if (x->g->json) {
		json_t *a = json_array();

		for (size_t i = 0; i < resp->n_dependencies; i++) {
			const Platform__Trace__V1__Dependency *d =
			    resp->dependencies[i];

			json_array_append_new(a, json_pack(
			    "{s:o,s:o,s:I,s:I,s:f}", "parent",
			    ctl_jstr(d->parent), "child", ctl_jstr(d->child),
			    "call_count", (json_int_t)d->call_count,
			    "error_count", (json_int_t)d->error_count,
			    "error_rate", d->error_rate));
		}
		rc = ctl_json_print(a, 0);
	} else {
		struct ctl_table tab = { .ncols = 5 };

		ctl_table_row(&tab, (const char *[]){ "CALLER", "CALLEE",
		    "CALLS", "ERRORS", "ERROR RATE" });
		for (size_t i = 0; i < resp->n_dependencies; i++) {
			const Platform__Trace__V1__Dependency *d =
			    resp->dependencies[i];
			char c[24], e[24], r[24];

			snprintf(c, sizeof(c), "%" PRId64, d->call_count);
			snprintf(e, sizeof(e), "%" PRId64, d->error_count);
			snprintf(r, sizeof(r), "%.1f%%", 100 * d->error_rate);
			ctl_table_row(&tab, (const char *[]){ d->parent,
			    d->child, c, e, r });
		}
		ctl_table_print(&tab, stdout);
		ctl_table_free(&tab);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- the command table ---- */

#define F(name, flag, cmds, arg, help) { flag, NULL, CTL_VALUE, arg, NULL, \
	cmds, help, offsetof(struct tr_flags, name) }

static const struct ctl_flag tr_flags[] = {
	{ "--trace", NULL, CTL_VALUE, "ADDR", "PLATFORM_TRACE", NULL,
	    "trace-srv host:port (default: \"trace\" in discovery)",
	    offsetof(struct tr_flags, trace) },
	F(service, "--service", "search", "NAME", "spans of this service"),
	F(operation, "--operation", "search", "NAME",
	    "spans of this operation (span name)"),
	{ "--attr", NULL, CTL_LIST, "KEY=VALUE", NULL, "search",
	    "a span attribute equal to VALUE (repeatable: all on one span)",
	    offsetof(struct tr_flags, attrs) },
	F(min, "--min-duration", "search", "DURATION",
	    "spans at least this long (5ms, 2s)"),
	F(max, "--max-duration", "search", "DURATION",
	    "spans at most this long"),
	{ "--errors", NULL, CTL_SWITCH, NULL, NULL, "search",
	    "error spans only", offsetof(struct tr_flags, errors) },
	F(since, "--since", "search deps", "DURATION",
	    "over the last DURATION (default 1h)"),
	F(limit, "--limit", "search", "N", "at most N traces (default 20)"),
};

#undef F

static const struct ctl_cmd tr_cmds[] = {
	{ "trace", NULL, "COMMAND ...", 0, 0, NULL,
	    "trace-srv: get, search, services, operations, deps "
	    "('trace help')" },
	{ "trace", "get", "TRACE_ID", 1, 1, tr_get,
	    "a trace as an indented tree of its spans with durations" },
	{ "trace", "search", "", 0, 0, tr_search,
	    "traces with a span matching the filters, newest first" },
	{ "trace", "services", "", 0, 0, tr_services,
	    "every service that sent spans" },
	{ "trace", "operations", "SERVICE", 1, 1, tr_operations,
	    "the operations (span names) of a service" },
	{ "trace", "deps", "", 0, 0, tr_deps,
	    "who calls whom: calls, errors and error rate per pair" },
	{ "trace", "help", "", 0, 0, NULL, "show this help" },
};

static int
tr_check(const struct ctl_run *x)
{
	const char *a = tr_f(x)->trace;

	if (a != NULL && strchr(a, ':') == NULL)
		return usage_error("--trace must be host:port, not '%s'", a);
	return CTL_OK;
}

const struct ctl_group ctl_trace_group = {
	.name = "trace",
	.hint = "trace help",
	.head = "Usage: " PROG " trace COMMAND [ARGS] [options]\n\n"
	    "Traces kept by trace-srv.\n\nCommands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help). "
	    "--trace ADDR may also come\nfrom PLATFORM_TRACE.\n"
	    "\nExit status: 0 ok, 1 a call failed (get: no such trace), 2 bad "
	    "usage.\n",
	.width = 30,
	.show_cmds = 1,
	.cmds = CTL_TABLE(tr_cmds),
	.flags = CTL_TABLE(tr_flags),
	.flags_size = sizeof(struct tr_flags),
	.check = tr_check,
};
