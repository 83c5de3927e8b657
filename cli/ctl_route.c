/*
 * ctl_route: an operator's view of router-srv. See ctl_route.h.
 *
 * show prints a service's nodes as callers see them (weight, state) and
 * its rules; stats what every client reported over router-srv's window.
 * weight, split and limit change one rule each: they read the service's
 * rules, change that one and write them back with the version they read
 * (expected_version), so two operators at once cannot undo each other's
 * change: the second gets FAILED_PRECONDITION and runs it again.
 *
 * Exit status: 0 ok, 1 a call failed, 2 bad usage.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_out.h"
#include "ctl_route.h"
#include "platform/router/v1/router.pb-c.h"
#include "platform/server.h"	/* PLAT_NOT_FOUND, the status codes */
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define ROUTER_SERVICE	"router"

#define M_PREFIX	"/platform.router.v1.Router/"
#define M_SELECT	M_PREFIX "Select"
#define M_STATS		M_PREFIX "Stats"
#define M_GET		M_PREFIX "GetRules"
#define M_SET		M_PREFIX "SetRules"
#define M_DELETE	M_PREFIX "DeleteRules"

typedef Platform__Router__V1__Rules pb_rules;

struct ro_flags {
	const char *router, *burst, *label;
};

static const struct ro_flags *
ro_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_route_group, __VA_ARGS__)

static int
ro_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, ROUTER_SERVICE, ro_f(x)->router, method,
	    req, desc, resp, idempotent);
}

static const char *
state_name(int s)
{
	return ctl_enum_name(&platform__router__v1__node_state__descriptor, s,
	    "NODE_STATE_");
}

/* The service's rules, or NULL (*m NULL) when it has none: CTL_OK; else
 * CTL_FAIL after a message. */
static int
rules_get(const struct ctl_run *x, const char *service, ProtobufCMessage **m,
    pb_rules **rules)
{
	Platform__Router__V1__GetRulesRequest req =
	    PLATFORM__ROUTER__V1__GET_RULES_REQUEST__INIT;
	char err[512];
	int code;

	req.service = (char *)service;
	*m = NULL;
	*rules = NULL;
	code = ctl_unary(x->g, ROUTER_SERVICE, ro_f(x)->router, M_GET,
	    &req.base, &platform__router__v1__get_rules_response__descriptor,
	    m, 1, NULL, err, sizeof(err));
	if (code == PLAT_NOT_FOUND)
		return CTL_OK;
	if (code != PLAT_OK)
		return ctl_fail(ctl_method_name(M_GET), code, err);
	*rules = ((Platform__Router__V1__GetRulesResponse *)*m)->rules;
	return CTL_OK;
}

/* ---- show, stats ---- */

static json_t *
rules_json(const pb_rules *r)
{
	json_t *o, *w, *s, *l;

	if (r == NULL)
		return json_null();
	w = json_array();
	s = json_array();
	l = json_array();
	for (size_t i = 0; i < r->n_weights; i++)
		json_array_append_new(w, json_pack("{s:o, s:o, s:i}",
		    "node_id", ctl_jstr(r->weights[i]->node_id), "version",
		    ctl_jstr(r->weights[i]->version), "weight",
		    (int)r->weights[i]->weight));
	for (size_t i = 0; i < r->n_splits; i++)
		json_array_append_new(s, json_pack("{s:o, s:i, s:o, s:o}",
		    "version", ctl_jstr(r->splits[i]->version), "percent",
		    (int)r->splits[i]->percent, "label_key",
		    ctl_jstr(r->splits[i]->label_key), "label_value",
		    ctl_jstr(r->splits[i]->label_value)));
	for (size_t i = 0; i < r->n_limits; i++)
		json_array_append_new(l, json_pack("{s:o, s:f, s:i}",
		    "method", ctl_jstr(r->limits[i]->method), "rate",
		    r->limits[i]->rate, "burst", (int)r->limits[i]->burst));
	o = json_pack("{s:I, s:o, s:o, s:o}", "version",
	    (json_int_t)r->version, "weights", w, "splits", s, "limits", l);
	if (r->outlier != NULL)
		json_object_set_new(o, "outlier", json_pack(
		    "{s:b, s:i, s:i, s:f, s:i, s:i, s:i}", "disabled",
		    r->outlier->disabled, "min_requests",
		    (int)r->outlier->min_requests, "error_percent",
		    (int)r->outlier->error_percent, "latency_factor",
		    r->outlier->latency_factor, "max_ejection_percent",
		    (int)r->outlier->max_ejection_percent, "base_ejection_ms",
		    (int)r->outlier->base_ejection_ms, "window_ms",
		    (int)r->outlier->window_ms));
	return o;
}

static void
rules_text(const pb_rules *r)
{
	if (r == NULL) {
		ctl_put_line(stdout, "rules: none");
		return;
	}
	ctl_put_line(stdout, "rules: version %" PRId64, r->version);
	for (size_t i = 0; i < r->n_weights; i++)
		ctl_put_line(stdout, "  weight %s=%s %u",
		    r->weights[i]->node_id[0] ? "node" : "version",
		    r->weights[i]->node_id[0] ? r->weights[i]->node_id :
		    r->weights[i]->version, r->weights[i]->weight);
	for (size_t i = 0; i < r->n_splits; i++)
		ctl_put_line(stdout, "  split %u%% to version %s%s%s%s%s",
		    r->splits[i]->percent, r->splits[i]->version,
		    r->splits[i]->label_key[0] ? " for callers with " : "",
		    r->splits[i]->label_key,
		    r->splits[i]->label_key[0] ? "=" : "",
		    r->splits[i]->label_value);
	for (size_t i = 0; i < r->n_limits; i++)
		ctl_put_line(stdout, "  limit %s %g/s burst %u",
		    r->limits[i]->method[0] ? r->limits[i]->method : "*",
		    r->limits[i]->rate, r->limits[i]->burst);
	if (r->outlier != NULL)
		ctl_put_line(stdout, "  outlier %s max_ejection_percent %u "
		    "error_percent %u", r->outlier->disabled ? "off" : "on",
		    r->outlier->max_ejection_percent,
		    r->outlier->error_percent);
}

static int
ro_show(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Router__V1__SelectRequest req =
	    PLATFORM__ROUTER__V1__SELECT_REQUEST__INIT;
	const Platform__Router__V1__ServiceView *v;
	struct ctl_table t = { .ncols = 5 };
	ProtobufCMessage *m = NULL, *rm = NULL;
	pb_rules *rules;
	json_t *nodes;
	char w[16];
	int rc;

	(void)argc;
	req.service = argv[0];
	req.caller = "platformctl";
	if ((rc = ro_call(x, M_SELECT, &req.base,
	    &platform__router__v1__select_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	if ((rc = rules_get(x, argv[0], &rm, &rules)) != CTL_OK)
		goto out;
	v = ((Platform__Router__V1__SelectResponse *)m)->view;
	if (x->g->json) {
		nodes = json_array();
		for (size_t i = 0; v != NULL && i < v->n_nodes; i++)
			json_array_append_new(nodes, json_pack(
			    "{s:o, s:o, s:o, s:i, s:s}", "id",
			    ctl_jstr(v->nodes[i]->id), "address",
			    ctl_jstr(v->nodes[i]->address), "version",
			    ctl_jstr(v->nodes[i]->version), "weight",
			    (int)v->nodes[i]->weight, "state",
			    state_name(v->nodes[i]->state)));
		rc = ctl_json_print(json_pack("{s:o, s:o, s:o}", "service",
		    ctl_jstr(argv[0]), "nodes", nodes, "rules",
		    rules_json(rules)), 0);
		goto out;
	}
	ctl_table_row(&t, (const char *[]){ "NODE", "ADDRESS", "VERSION",
	    "WEIGHT", "STATE" });
	for (size_t i = 0; v != NULL && i < v->n_nodes; i++) {
		snprintf(w, sizeof(w), "%u", v->nodes[i]->weight);
		ctl_table_row(&t, (const char *[]){ v->nodes[i]->id,
		    v->nodes[i]->address, v->nodes[i]->version, w,
		    state_name(v->nodes[i]->state) });
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	rules_text(rules);
out:
	if (rm != NULL)
		protobuf_c_message_free_unpacked(rm, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
ro_stats(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Router__V1__StatsRequest req =
	    PLATFORM__ROUTER__V1__STATS_REQUEST__INIT;
	const Platform__Router__V1__StatsResponse *s;
	struct ctl_table t = { .ncols = 7 };
	ProtobufCMessage *m = NULL;
	json_t *nodes;
	char a[24], b[24], c[24], d[16], e[24];
	int rc;

	(void)argc;
	req.service = argv[0];
	if ((rc = ro_call(x, M_STATS, &req.base,
	    &platform__router__v1__stats_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	s = (const void *)m;
	if (x->g->json) {
		nodes = json_array();
		for (size_t i = 0; i < s->n_nodes; i++) {
			const Platform__Router__V1__NodeStats *n = s->nodes[i];

			json_array_append_new(nodes, json_pack(
			    "{s:o, s:I, s:I, s:f, s:s, s:i, s:I}", "address",
			    ctl_jstr(n->address), "requests",
			    (json_int_t)n->requests, "errors",
			    (json_int_t)n->errors, "mean_latency_ms",
			    n->mean_latency_ms, "state", state_name(n->state),
			    "weight", (int)n->weight, "ejected_until_unix_ms",
			    (json_int_t)n->ejected_until_unix_ms));
		}
		rc = ctl_json_print(json_pack("{s:o, s:i, s:o}", "service",
		    ctl_jstr(s->service), "window_ms", (int)s->window_ms,
		    "nodes", nodes), 0);
		goto out;
	}
	ctl_table_row(&t, (const char *[]){ "ADDRESS", "REQUESTS", "ERRORS",
	    "MEAN_MS", "WEIGHT", "STATE", "EJECTED_UNTIL" });
	for (size_t i = 0; i < s->n_nodes; i++) {
		const Platform__Router__V1__NodeStats *n = s->nodes[i];

		snprintf(a, sizeof(a), "%" PRIu64, n->requests);
		snprintf(b, sizeof(b), "%" PRIu64, n->errors);
		snprintf(c, sizeof(c), "%.2f", n->mean_latency_ms);
		snprintf(d, sizeof(d), "%u", n->weight);
		ctl_fmt_time(e, sizeof(e), n->ejected_until_unix_ms);
		ctl_table_row(&t, (const char *[]){ n->address, a, b, c, d,
		    state_name(n->state), e });
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	ctl_put_line(stdout, "window: %u ms", s->window_ms);
out:
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- changing one rule ---- */

/*
 * The service's rules as a mutable copy (its lists malloc'd so one
 * entry can be added or removed), written back with the version read.
 */
struct edit {
	pb_rules r;
	int64_t version;
	ProtobufCMessage *held;          /* what the copy points into */
};

static int
edit_begin(const struct ctl_run *x, const char *service, struct edit *e)
{
	pb_rules *cur;
	int rc;

	memset(e, 0, sizeof(*e));
	platform__router__v1__rules__init(&e->r);
	if ((rc = rules_get(x, service, &e->held, &cur)) != CTL_OK)
		return rc;
	if (cur != NULL) {
		e->r = *cur;
		e->version = cur->version;
	}
	e->r.service = (char *)service;
	/* Copies of the lists, one spare slot each. */
#define DUP(list, n) do {						\
	void **v = xcalloc(e->r.n + 1, sizeof(void *));			\
	if (e->r.n > 0)							\
		memcpy(v, e->r.list, e->r.n * sizeof(void *));		\
	e->r.list = (void *)v;						\
} while (0)
	DUP(weights, n_weights);
	DUP(splits, n_splits);
	DUP(limits, n_limits);
#undef DUP
	return CTL_OK;
}

static void
edit_free(struct edit *e)
{
	free(e->r.weights);
	free(e->r.splits);
	free(e->r.limits);
	if (e->held != NULL)
		protobuf_c_message_free_unpacked(e->held, NULL);
}

static int
edit_commit(const struct ctl_run *x, struct edit *e)
{
	Platform__Router__V1__SetRulesRequest req =
	    PLATFORM__ROUTER__V1__SET_RULES_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int rc;

	e->r.version = 0;
	req.rules = &e->r;
	/* 0 when there were none: nothing to hold to, so a concurrent
	 * first write may be overwritten (the version then says so). */
	req.expected_version = e->version;
	if ((rc = ro_call(x, M_SET, &req.base,
	    &platform__router__v1__set_rules_response__descriptor, &m, 0)) !=
	    CTL_OK)
		return rc;
	if (x->g->json)
		rc = ctl_json_print(rules_json(
		    ((Platform__Router__V1__SetRulesResponse *)m)->rules), 0);
	else
		rules_text(((Platform__Router__V1__SetRulesResponse *)m)->rules);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static void
remove_at(void **v, size_t *n, size_t i)
{
	memmove(v + i, v + i + 1, (*n - i - 1) * sizeof(*v));
	(*n)--;
}

/* weight SERVICE node=ID|version=V WEIGHT|clear */
static int
ro_weight(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Router__V1__WeightOverride w =
	    PLATFORM__ROUTER__V1__WEIGHT_OVERRIDE__INIT;
	struct edit e;
	long long weight = 0;
	int clear = strcmp(argv[2], "clear") == 0, rc;
	size_t i;

	(void)argc;
	if (strncmp(argv[1], "node=", 5) == 0 && argv[1][5] != '\0')
		w.node_id = argv[1] + 5;
	else if (strncmp(argv[1], "version=", 8) == 0 && argv[1][8] != '\0')
		w.version = argv[1] + 8;
	else
		return usage_error("weight: say node=ID or version=V, not "
		    "'%s'", argv[1]);
	if (!clear && ctl_parse_int(argv[2], 0, 10000, &weight) != 0)
		return usage_error("weight: WEIGHT must be 0..10000 or "
		    "clear, not '%s'", argv[2]);
	w.weight = (uint32_t)weight;
	if ((rc = edit_begin(x, argv[0], &e)) != CTL_OK)
		return rc;
	for (i = 0; i < e.r.n_weights; i++)
		if (strcmp(e.r.weights[i]->node_id, w.node_id) == 0 &&
		    strcmp(e.r.weights[i]->version, w.version) == 0)
			break;
	if (i < e.r.n_weights)
		remove_at((void **)e.r.weights, &e.r.n_weights, i);
	if (!clear)
		e.r.weights[e.r.n_weights++] = &w;
	rc = edit_commit(x, &e);
	edit_free(&e);
	return rc;
}

/* split SERVICE VERSION PERCENT|clear [--label K=V] */
static int
ro_split(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Router__V1__Split s = PLATFORM__ROUTER__V1__SPLIT__INIT;
	const char *label = ro_f(x)->label;
	char *key = NULL;
	struct edit e;
	long long pct = 0;
	int clear = strcmp(argv[2], "clear") == 0, rc;
	size_t i;

	(void)argc;
	if (!clear && ctl_parse_int(argv[2], 0, 100, &pct) != 0)
		return usage_error("split: PERCENT must be 0..100 or clear, "
		    "not '%s'", argv[2]);
	if (label != NULL) {
		const char *eq = strchr(label, '=');

		if (eq == NULL || eq == label)
			return usage_error("--label must be KEY=VALUE, not "
			    "'%s'", label);
		key = xstrdup(label);
		key[eq - label] = '\0';
		s.label_key = key;
		s.label_value = key + (eq - label) + 1;
	}
	s.version = argv[1];
	s.percent = (uint32_t)pct;
	if ((rc = edit_begin(x, argv[0], &e)) != CTL_OK) {
		free(key);
		return rc;
	}
	for (i = 0; i < e.r.n_splits; i++)
		if (strcmp(e.r.splits[i]->version, s.version) == 0 &&
		    strcmp(e.r.splits[i]->label_key, s.label_key) == 0 &&
		    strcmp(e.r.splits[i]->label_value, s.label_value) == 0)
			break;
	if (i < e.r.n_splits)
		remove_at((void **)e.r.splits, &e.r.n_splits, i);
	if (!clear)
		e.r.splits[e.r.n_splits++] = &s;
	rc = edit_commit(x, &e);
	edit_free(&e);
	free(key);
	return rc;
}

/* limit SERVICE [METHOD] RATE|clear [--burst N] */
static int
ro_limit(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Router__V1__RateLimit l =
	    PLATFORM__ROUTER__V1__RATE_LIMIT__INIT;
	const char *rate_s = argv[argc - 1];
	struct edit e;
	long long burst = 0;
	char *end;
	int clear = strcmp(rate_s, "clear") == 0, rc;
	size_t i;

	l.method = argc == 3 ? argv[1] : "";
	if (!clear) {
		l.rate = strtod(rate_s, &end);
		if (end == rate_s || *end != '\0' || !isfinite(l.rate) ||
		    l.rate <= 0 || l.rate > 1e9)
			return usage_error("limit: RATE must be calls a "
			    "second above 0, or clear, not '%s'", rate_s);
	}
	if (ro_f(x)->burst != NULL && ctl_parse_int(ro_f(x)->burst, 0,
	    1000000000, &burst) != 0)
		return usage_error("--burst must be 0..1000000000, not '%s'",
		    ro_f(x)->burst);
	l.burst = (uint32_t)burst;
	if ((rc = edit_begin(x, argv[0], &e)) != CTL_OK)
		return rc;
	for (i = 0; i < e.r.n_limits; i++)
		if (strcmp(e.r.limits[i]->method, l.method) == 0)
			break;
	if (i < e.r.n_limits)
		remove_at((void **)e.r.limits, &e.r.n_limits, i);
	if (!clear)
		e.r.limits[e.r.n_limits++] = &l;
	rc = edit_commit(x, &e);
	edit_free(&e);
	return rc;
}

static int
ro_delete(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Router__V1__DeleteRulesRequest req =
	    PLATFORM__ROUTER__V1__DELETE_RULES_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int rc;

	(void)argc;
	req.service = argv[0];
	rc = ro_call(x, M_DELETE, &req.base,
	    &platform__router__v1__delete_rules_response__descriptor, &m, 0);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- the command table ---- */

#define F(name, flag, cmds, arg, help) { flag, NULL, CTL_VALUE, arg, NULL, \
	cmds, help, offsetof(struct ro_flags, name) }

static const struct ctl_flag ro_flags[] = {
	{ "--router", NULL, CTL_VALUE, "ADDR", "PLATFORM_ROUTER", NULL,
	    "router-srv host:port (default: \"router\" in discovery)",
	    offsetof(struct ro_flags, router) },
	F(burst, "--burst", "limit", "N",
	    "calls at once past the rate (default: a second's worth)"),
	F(label, "--label", "split", "KEY=VALUE",
	    "only callers with this label (default: every caller)"),
};

#undef F

static const struct ctl_cmd ro_cmds[] = {
	{ "route", NULL, "COMMAND ...", 0, 0, NULL,
	    "router-srv: show, stats, weight, split, limit ('route help')" },
	{ "route", "show", "SERVICE", 1, 1, ro_show,
	    "a service's nodes with their weights and state, and its rules" },
	{ "route", "stats", "SERVICE", 1, 1, ro_stats,
	    "what clients reported of a service's nodes" },
	{ "route", "weight", "SERVICE node=ID|version=V WEIGHT|clear", 3, 3,
	    ro_weight, "the weight of a node or of every node of a version" },
	{ "route", "split", "SERVICE VERSION PERCENT|clear", 3, 3, ro_split,
	    "send PERCENT of the calls to VERSION's nodes" },
	{ "route", "limit", "SERVICE [METHOD] RATE|clear", 2, 3, ro_limit,
	    "a rate limit per client, for the service or one method" },
	{ "route", "delete", "SERVICE", 1, 1, ro_delete,
	    "remove every rule of a service" },
	{ "route", "help", "", 0, 0, NULL, "show this help" },
};

static int
ro_check(const struct ctl_run *x)
{
	const char *a = ro_f(x)->router;

	if (a != NULL && strchr(a, ':') == NULL)
		return usage_error("--router must be host:port, not '%s'", a);
	return CTL_OK;
}

const struct ctl_group ctl_route_group = {
	.name = "route",
	.hint = "route help",
	.head = "Usage: " PROG " route COMMAND [ARGS] [options]\n\n"
	    "Weights, splits and rate limits of router-srv, and what clients "
	    "report.\n\nCommands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help). "
	    "--router ADDR may also come\nfrom PLATFORM_ROUTER.\n"
	    "\nweight, split and limit change one rule and write the rules "
	    "back with the\nversion they read: when another change came in "
	    "between, the call fails with\nFAILED_PRECONDITION and changes "
	    "nothing; run it again. METHOD is a full path\n"
	    "(/pkg.Service/Method); a limit holds per client.\n"
	    "\nExit status: 0 ok, 1 a call failed, 2 bad usage.\n",
	.width = 44,
	.show_cmds = 1,
	.cmds = CTL_TABLE(ro_cmds),
	.flags = CTL_TABLE(ro_flags),
	.flags_size = sizeof(struct ro_flags),
	.check = ro_check,
};
