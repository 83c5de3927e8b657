/*
 * ctl_monitor: `platformctl status|checks|watch-status`, the fleet's
 * health as monitor-srv sees it. See ctl_monitor.h.
 *
 * status prints a table of every node (of SERVICE, or all) with its
 * status and the checks that decided it; checks prints every check with
 * its output; watch-status prints the current status of every node,
 * then each change, one line each until Ctrl-C. Statuses are coloured
 * on a terminal only (never in a pipe, nor with NO_COLOR set). Exit
 * status: 0 ok, 1 a call failed, 2 bad usage.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_monitor.h"
#include "ctl_out.h"
#include "platform/monitor/v1/monitor.pb-c.h"
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define MONITOR_SERVICE	"monitor"
#define ID_MAX		255

#define M_PREFIX	"/platform.monitor.v1.Monitor/"
#define M_GET_STATUS	M_PREFIX "GetStatus"
#define M_LIST_CHECKS	M_PREFIX "ListChecks"
#define M_WATCH		M_PREFIX "WatchStatus"

typedef Platform__Monitor__V1__NodeStatus pb_node;
typedef Platform__Monitor__V1__Check pb_check;

struct mo_flags {
	const char *monitor, *node;
};

static const struct mo_flags *
mo_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_monitor_group, __VA_ARGS__)

static int
mo_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp)
{
	return ctl_call_service(x, MONITOR_SERVICE, mo_f(x)->monitor, method,
	    req, desc, resp, 1);
}

static const char *
status_name(int s)
{
	switch (s) {
	case PLATFORM__MONITOR__V1__CHECK_STATUS__PASSING:
		return "passing";
	case PLATFORM__MONITOR__V1__CHECK_STATUS__WARNING:
		return "warning";
	case PLATFORM__MONITOR__V1__CHECK_STATUS__CRITICAL:
		return "critical";
	default:
		return "-";
	}
}

/* Colour on a terminal that has not asked for none (no-color.org). */
static int
colour_on(void)
{
	const char *nc = getenv("NO_COLOR");

	return isatty(STDOUT_FILENO) && (nc == NULL || nc[0] == '\0');
}

/* A status word padded to width, coloured when colour is on. */
static void
put_status(int s, int width, int colour)
{
	const char *w = status_name(s);
	const char *c = s == PLATFORM__MONITOR__V1__CHECK_STATUS__PASSING ?
	    "32" : s == PLATFORM__MONITOR__V1__CHECK_STATUS__WARNING ? "33" :
	    s == PLATFORM__MONITOR__V1__CHECK_STATUS__CRITICAL ? "31" : NULL;

	int pad = width > (int)strlen(w) ? width - (int)strlen(w) : 0;

	if (colour && c != NULL)
		printf("\033[%sm%s\033[0m%*s", c, w, pad, "");
	else
		printf("%s%*s", w, pad, "");
}

static json_t *
check_json(const pb_check *c)
{
	return json_pack("{s:o, s:o, s:o, s:s, s:o, s:b, s:I, s:I}",
	    "node_id", ctl_jstr(c->node_id), "service", ctl_jstr(c->service),
	    "name", ctl_jstr(c->name), "status", status_name(c->status),
	    "output", ctl_jstr(c->output), "pushed", c->pushed,
	    "updated_ms", (json_int_t)c->updated_ms,
	    "ttl_ms", (json_int_t)c->ttl_ms);
}

static json_t *
node_json(const pb_node *n)
{
	json_t *checks = json_array();

	for (size_t i = 0; i < n->n_checks; i++)
		json_array_append_new(checks, check_json(n->checks[i]));
	return json_pack("{s:o, s:o, s:o, s:s, s:I, s:o, s:o}",
	    "node_id", ctl_jstr(n->node_id), "service", ctl_jstr(n->service),
	    "address", ctl_jstr(n->address), "status", status_name(n->status),
	    "since_ms", (json_int_t)n->since_ms,
	    "monitor", ctl_jstr(n->monitor), "checks", checks);
}

/* "health:passing database:critical", the deciding ones first. */
static char *
checks_line(const pb_node *n)
{
	size_t len = 1;
	char *s;

	for (size_t i = 0; i < n->n_checks; i++)
		len += strlen(n->checks[i]->name) + 12;
	s = xcalloc(1, len);
	for (size_t i = 0; i < n->n_checks; i++) {
		strcat(s, i > 0 ? " " : "");
		strcat(s, n->checks[i]->name);
		strcat(s, ":");
		strcat(s, status_name(n->checks[i]->status));
	}
	return s;
}

static int
check_service_arg(int argc, char **argv, const char **service)
{
	*service = argc > 0 ? argv[0] : "";
	if (strlen(*service) > ID_MAX)
		return usage_error("SERVICE is at most %d bytes", ID_MAX);
	return CTL_OK;
}

/* ---- status ---- */

static int
mo_status(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Monitor__V1__GetStatusRequest req =
	    PLATFORM__MONITOR__V1__GET_STATUS_REQUEST__INIT;
	const Platform__Monitor__V1__GetStatusResponse *r;
	ProtobufCMessage *m = NULL;
	int rc, colour = colour_on();
	size_t w[3] = { 7, 4, 8 };      /* SERVICE NODE STATUS */
	const char *service;

	if ((rc = check_service_arg(argc, argv, &service)) != CTL_OK)
		return rc;
	req.service = (char *)service;
	if ((rc = mo_call(x, M_GET_STATUS, &req.base,
	    &platform__monitor__v1__get_status_response__descriptor, &m)) !=
	    CTL_OK)
		return rc;
	r = (const void *)m;
	if (x->g->json) {
		json_t *all = json_array();

		for (size_t i = 0; i < r->n_services; i++)
			for (size_t j = 0; j < r->services[i]->n_nodes; j++)
				json_array_append_new(all, node_json(
				    r->services[i]->nodes[j]));
		protobuf_c_message_free_unpacked(m, NULL);
		return ctl_json_print(all, JSON_INDENT(2));
	}
	for (size_t i = 0; i < r->n_services; i++)
		for (size_t j = 0; j < r->services[i]->n_nodes; j++) {
			const pb_node *n = r->services[i]->nodes[j];
			size_t a = ctl_str_width(n->service), b =
			    ctl_str_width(n->node_id);

			w[0] = a > w[0] ? a : w[0];
			w[1] = b > w[1] ? b : w[1];
		}
	printf("%-*s  %-*s  %-*s  CHECKS\n", (int)w[0], "SERVICE", (int)w[1],
	    "NODE", (int)w[2], "STATUS");
	for (size_t i = 0; i < r->n_services; i++)
		for (size_t j = 0; j < r->services[i]->n_nodes; j++) {
			const pb_node *n = r->services[i]->nodes[j];
			char *svc = ctl_safe_dup(n->service);
			char *id = ctl_safe_dup(n->node_id);
			char *line = checks_line(n), *safe = ctl_safe_dup(line);

			printf("%s%*s  %s%*s  ", svc, (int)(w[0] -
			    ctl_str_width(svc)), "", id, (int)(w[1] -
			    ctl_str_width(id)), "");
			put_status(n->status, (int)w[2], colour);
			printf("  %s\n", safe);
			free(svc);
			free(id);
			free(line);
			free(safe);
		}
	protobuf_c_message_free_unpacked(m, NULL);
	return CTL_OK;
}

/* ---- checks ---- */

static int
mo_checks(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Monitor__V1__ListChecksRequest req =
	    PLATFORM__MONITOR__V1__LIST_CHECKS_REQUEST__INIT;
	const Platform__Monitor__V1__ListChecksResponse *r;
	struct ctl_table t = { .ncols = 6 };
	ProtobufCMessage *m = NULL;
	const char *service;
	json_t *all;
	int rc;

	if ((rc = check_service_arg(argc, argv, &service)) != CTL_OK)
		return rc;
	req.service = (char *)service;
	req.node_id = (char *)(mo_f(x)->node != NULL ? mo_f(x)->node : "");
	if (strlen(req.node_id) > ID_MAX)
		return usage_error("--node is at most %d bytes", ID_MAX);
	if ((rc = mo_call(x, M_LIST_CHECKS, &req.base,
	    &platform__monitor__v1__list_checks_response__descriptor, &m)) !=
	    CTL_OK)
		return rc;
	r = (const void *)m;
	all = json_array();
	ctl_table_row(&t, (const char *[]){ "SERVICE", "NODE", "CHECK",
	    "STATUS", "UPDATED", "OUTPUT" });
	for (size_t i = 0; i < r->n_checks; i++) {
		const pb_check *c = r->checks[i];
		char name[96], when[32];

		json_array_append_new(all, check_json(c));
		snprintf(name, sizeof(name), "%s%s", c->name, c->pushed ? "" :
		    " (probe)");
		ctl_fmt_time(when, sizeof(when), c->updated_ms);
		ctl_table_row(&t, (const char *[]){ c->service, c->node_id,
		    name, status_name(c->status), when, c->output });
	}
	protobuf_c_message_free_unpacked(m, NULL);
	if (x->g->json) {
		ctl_table_free(&t);
		return ctl_json_print(all, JSON_INDENT(2));
	}
	json_decref(all);
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	return CTL_OK;
}

/* ---- watch-status ---- */

struct watch_state {
	const struct ctl_run *x;
	int colour;
};

static int
watch_msg(void *arg, const ProtobufCMessage *m)
{
	const Platform__Monitor__V1__StatusEvent *e = (const void *)m;
	const struct watch_state *w = arg;
	char when[32], *line, *id, *svc;

	if (e->caught_up || e->node == NULL)
		return CTL_OK;
	if (w->x->g->json) {
		json_t *j = node_json(e->node);

		json_object_set_new(j, "previous", json_string(
		    status_name(e->previous)));
		json_object_set_new(j, "initial", json_boolean(e->initial));
		json_object_set_new(j, "removed", json_boolean(e->removed));
		if (ctl_json_print(j, JSON_COMPACT) != CTL_OK)
			return CTL_FAIL;
		return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
	}
	ctl_fmt_time(when, sizeof(when), e->node->since_ms);
	id = ctl_safe_dup(e->node->node_id);
	svc = ctl_safe_dup(e->node->service);
	printf("%s %s %s ", when, svc, id);
	if (e->removed)
		printf("removed\n");
	else {
		if (!e->initial)
			printf("%s -> ", status_name(e->previous));
		put_status(e->node->status, 0, w->colour);
		line = checks_line(e->node);
		free(svc);
		svc = ctl_safe_dup(line);
		printf(" %s\n", svc);
		free(line);
	}
	free(id);
	free(svc);
	return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int
mo_watch(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Monitor__V1__WatchStatusRequest req =
	    PLATFORM__MONITOR__V1__WATCH_STATUS_REQUEST__INIT;
	struct watch_state w = { x, colour_on() };
	const char *service;
	char *addr;
	int rc;

	if ((rc = check_service_arg(argc, argv, &service)) != CTL_OK)
		return rc;
	req.service = (char *)service;
	if (ctl_service_address(x->g, MONITOR_SERVICE, mo_f(x)->monitor,
	    &addr) != 0)
		return CTL_FAIL;
	rc = ctl_stream(x->g, addr, M_WATCH, &req.base,
	    &platform__monitor__v1__status_event__descriptor, watch_msg, &w);
	free(addr);
	return rc;
}

static int
mo_check(const struct ctl_run *x)
{
	const char *a = mo_f(x)->monitor;

	if (a != NULL && strchr(a, ':') == NULL)
		return usage_error("--monitor must be host:port, not '%s'", a);
	return CTL_OK;
}

static const struct ctl_flag mo_flags[] = {
	{ "--monitor", NULL, CTL_VALUE, "ADDR", "PLATFORM_MONITOR",
	    "status checks watch-status",
	    "monitor-srv host:port (default: \"monitor\" in discovery)",
	    offsetof(struct mo_flags, monitor) },
	{ "--node", NULL, CTL_VALUE, "NODE", NULL, "checks",
	    "only this node's checks", offsetof(struct mo_flags, node) },
};

static const struct ctl_cmd mo_cmds[] = {
	{ "status", NULL, "[SERVICE]", 0, 1, mo_status,
	    "every node's status and the checks that decided it" },
	{ "checks", NULL, "[SERVICE]", 0, 1, mo_checks,
	    "every check's status and output (--node NODE: one node's)" },
	{ "watch-status", NULL, "[SERVICE]", 0, 1, mo_watch,
	    "every node's status, then each change, until Ctrl-C" },
};

const struct ctl_group ctl_monitor_group = {
	.hint = "--help",
	.head = "Usage: " PROG " status|checks|watch-status [SERVICE] "
	    "[options]\n\nThe fleet's health as monitor-srv sees it.\n\n"
	    "Commands:\n",
	.foot = "\nmonitor-srv is --monitor ADDR (PLATFORM_MONITOR), else the "
	    "service \"monitor\"\nin discovery; any replica answers status "
	    "and checks for the whole fleet,\nwatch-status shows the changes "
	    "that replica decides. Statuses are coloured\non a terminal "
	    "(not with NO_COLOR set).\n"
	    "platformctl's options apply too (" PROG " --help).\n"
	    "Exit status: 0 ok, 1 a call failed, 2 bad usage.\n",
	.width = 30,
	.cmds = CTL_TABLE(mo_cmds),
	.flags = CTL_TABLE(mo_flags),
	.flags_size = sizeof(struct mo_flags),
	.check = mo_check,
};
