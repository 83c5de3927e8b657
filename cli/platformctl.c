/*
 * platformctl: the operator's command line for the platform.
 *
 * It talks to discovery-srv, and to any server's grpc.health.v1, through
 * the same client library the servers use. Output is an aligned table for
 * people or JSON for scripts. The exit status says what happened: 0 ok,
 * 1 a call failed (stderr names the gRPC status), 2 bad usage.
 *
 * Every command is a row of a group's table in the one command table
 * (ctl_cmd.h): the discovery commands are here, config, events, kv, db
 * and auth in ctl_config.c, ctl_events.c, ctl_kv.c, ctl_db.c and
 * ctl_auth.c; main registers them all.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_cmd.h"
#include "ctl_config.h"
#include "ctl_db.h"
#include "ctl_events.h"
#include "ctl_kv.h"
#include "ctl_monitor.h"
#include "ctl_out.h"
#include "ctl_route.h"
#include "ctl_sync.h"
#include "ctl_trace.h"
#include "grpc/health/v1/health.pb-c.h"
#include "platform/client.h"
#include "platform/clock.h"
#include "platform/discovery/v1/discovery.pb-c.h"

#define PROG			"platformctl"
#define LIST_PAGE_SIZE		1000	/* the server's maximum: fewest calls */
#define ERRLEN			512

#define M_LIST	"/platform.discovery.v1.Discovery/ListServices"
#define M_GET	"/platform.discovery.v1.Discovery/GetService"
#define M_WATCH	"/platform.discovery.v1.Discovery/Watch"
#define M_CHECK	"/grpc.health.v1.Health/Check"


/* The generated names are long; these keep call sites on one line. */
typedef Platform__Discovery__V1__Service	pb_service;
typedef Platform__Discovery__V1__Node		pb_node;
typedef Platform__Discovery__V1__WatchResponse	pb_event;
#define EV_SYNCED	PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_SYNCED
#define HC_SERVING \
	GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define HC_STATUS_DESC \
	(&grpc__health__v1__health_check_response__serving_status__descriptor)
#define LIST_RESP_DESC \
	(&platform__discovery__v1__list_services_response__descriptor)

/* ---- memory and strings ---- */

/* A CLI has nothing sensible to do without memory but stop. */
static _Noreturn void
oom(void)
{
	fprintf(stderr, PROG ": out of memory\n");
	exit(CTL_FAIL);
}

static void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n == 0 ? 1 : n)) == NULL)
		oom();
	return p;
}

/* A FILE writing into a growing string: joins without length sums. */
static FILE *
mem_open(char **buf, size_t *len)
{
	FILE *f;

	*buf = NULL;
	*len = 0;
	if ((f = open_memstream(buf, len)) == NULL)
		oom();
	return f;
}


/* ---- tables ---- */


/* ---- map<string,string> fields ---- */

/*
 * Every map<string,string> of the contract is generated as its own
 * *_MetadataEntry type; all are messages whose fields are "key" and
 * "value", so reading them through the descriptor serves them all.
 */
#define MD(m)	(m)->n_metadata, (ProtobufCMessage **)(void *)(m)->metadata

static const char *
md_field(const ProtobufCMessage *e, const char *name)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(e->descriptor,
	    name);
	const char *s;

	if (f == NULL)
		return "";
	memcpy(&s, (const char *)e + f->offset, sizeof(s));
	return s != NULL ? s : "";
}

static int
md_cmp(const void *a, const void *b)
{
	return strcmp(md_field(*(ProtobufCMessage *const *)a, "key"),
	    md_field(*(ProtobufCMessage *const *)b, "key"));
}

/* Maps arrive in any order; sorted by key, output is stable to diff. */
static ProtobufCMessage **
md_sorted(size_t n, ProtobufCMessage **e)
{
	ProtobufCMessage **s = xrealloc(NULL, n * sizeof(*s));

	if (n > 0)
		memcpy(s, e, n * sizeof(*s));
	qsort(s, n, sizeof(*s), md_cmp);
	return s;
}

/* "k=v,k2=v2", or "-" when empty; the caller frees it. */
static char *
md_string(size_t n, ProtobufCMessage **e)
{
	ProtobufCMessage **s = md_sorted(n, e);
	char *buf;
	size_t len;
	FILE *f = mem_open(&buf, &len);

	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s=%s", i ? "," : "", md_field(s[i], "key"),
		    md_field(s[i], "value"));
	if (n == 0)
		fputs("-", f);
	fclose(f);
	free(s);
	return buf;
}

/* ---- JSON ---- */

static json_t *
md_json(size_t n, ProtobufCMessage **e)
{
	ProtobufCMessage **s = md_sorted(n, e);
	json_t *o = json_object();

	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, md_field(s[i], "key"),
		    ctl_jstr(md_field(s[i], "value")));
	free(s);
	return o;
}

static json_t *
node_json(const pb_node *n)
{
	return json_pack("{s:o, s:o, s:o, s:I}",
	    "id", ctl_jstr(n->id),
	    "address", ctl_jstr(n->address),
	    "metadata", md_json(MD(n)),
	    "expires_unix_ms", (json_int_t)n->expires_unix_ms);
}

static json_t *
service_json(const pb_service *s)
{
	json_t *eps = json_array(), *nodes = json_array();

	for (size_t i = 0; i < s->n_endpoints; i++)
		json_array_append_new(eps, json_pack("{s:o, s:o}",
		    "name", ctl_jstr(s->endpoints[i]->name),
		    "metadata", md_json(MD(s->endpoints[i]))));
	for (size_t i = 0; i < s->n_nodes; i++)
		json_array_append_new(nodes, node_json(s->nodes[i]));
	return json_pack("{s:o, s:o, s:o, s:o, s:o}",
	    "name", ctl_jstr(s->name),
	    "version", ctl_jstr(s->version),
	    "metadata", md_json(MD(s)),
	    "endpoints", eps,
	    "nodes", nodes);
}

/* ---- calls ---- */

/* A call to discovery-srv: CTL_OK, or CTL_FAIL after a message. Reads
 * are idempotent, so the client may retry them on UNAVAILABLE. */
static int
disco_call(const struct ctl_run *r, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(r, NULL, r->g->discovery, method, req, desc,
	    resp, idempotent);
}

/* GetService on discovery; NULL after reporting the failure. */
static Platform__Discovery__V1__GetServiceResponse *
get_service(const struct ctl_run *r, const char *name)
{
	Platform__Discovery__V1__GetServiceRequest req =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_REQUEST__INIT;
	ProtobufCMessage *m;

	req.name = (char *)name;
	if (disco_call(r, M_GET, &req.base,
	    &platform__discovery__v1__get_service_response__descriptor, &m,
	    1) != CTL_OK)
		return NULL;
	return (Platform__Discovery__V1__GetServiceResponse *)m;
}

/* ---- services ---- */

typedef Platform__Discovery__V1__ServiceSummary pb_summary;

static char *
versions_string(const pb_summary *s)
{
	char *buf;
	size_t len;
	FILE *f = mem_open(&buf, &len);

	for (size_t i = 0; i < s->n_versions; i++)
		fprintf(f, "%s%s", i ? "," : "", s->versions[i]);
	if (s->n_versions == 0)
		fputs("-", f);
	fclose(f);
	return buf;
}

static int
services_table(const struct ctl_pages *pg)
{
	struct ctl_table t = { .ncols = 3 };
	char nodes[16], *v;

	ctl_table_row(&t, (const char *[]){ "NAME", "VERSIONS", "NODES" });
	for (size_t i = 0; i < pg->nitems; i++) {
		const pb_summary *s = pg->items[i];

		snprintf(nodes, sizeof(nodes), "%u", s->node_count);
		v = versions_string(s);
		ctl_table_row(&t, (const char *[]){ s->name, v, nodes });
		free(v);
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	return CTL_OK;
}

static json_t *
summary_json(const pb_summary *s)
{
	json_t *vers = json_array();

	for (size_t k = 0; k < s->n_versions; k++)
		json_array_append_new(vers, ctl_jstr(s->versions[k]));
	return json_pack("{s:o, s:o, s:I}", "name", ctl_jstr(s->name),
	    "versions", vers, "nodes", (json_int_t)s->node_count);
}

static int
services_json(const struct ctl_pages *pg)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < pg->nitems; i++)
		json_array_append_new(arr, summary_json(pg->items[i]));
	return ctl_json_print(arr, 0);
}

static int
cmd_services(const struct ctl_run *r, int argc, char **argv)
{
	Platform__Discovery__V1__ListServicesRequest req =
	    PLATFORM__DISCOVERY__V1__LIST_SERVICES_REQUEST__INIT;
	struct ctl_pages pg = { 0 };
	int rc;

	if ((rc = ctl_pages_fetch(r, disco_call, M_LIST, &req.base,
	    LIST_RESP_DESC, "services", LIST_PAGE_SIZE, 0, &pg)) == CTL_OK)
		rc = r->g->json ? services_json(&pg) : services_table(&pg);
	ctl_pages_free(&pg);
	return rc;
}

/* ---- service NAME ---- */

static void
service_rows(struct ctl_table *t, const pb_service *s, int64_t now)
{
	char exp[32], *md;

	/* A version without nodes still gets a row: it is registered. */
	if (s->n_nodes == 0)
		ctl_table_row(t, (const char *[]){ s->name, s->version, "-", "-",
		    "-", "-" });
	for (size_t i = 0; i < s->n_nodes; i++) {
		const pb_node *n = s->nodes[i];

		ctl_fmt_expires(exp, sizeof(exp), n->expires_unix_ms, now);
		md = md_string(MD(n));
		ctl_table_row(t, (const char *[]){ s->name, s->version, n->id,
		    n->address, exp, md });
		free(md);
	}
}

static int
service_table(const Platform__Discovery__V1__GetServiceResponse *r)
{
	struct ctl_table t = { .ncols = 6 };
	int64_t now = plat_wall_ms();

	ctl_table_row(&t, (const char *[]){ "NAME", "VERSION", "NODE", "ADDRESS",
	    "EXPIRES", "METADATA" });
	for (size_t i = 0; i < r->n_services; i++)
		service_rows(&t, r->services[i], now);
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	return CTL_OK;
}

static int
service_json_print(const Platform__Discovery__V1__GetServiceResponse *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < r->n_services; i++)
		json_array_append_new(arr, service_json(r->services[i]));
	return ctl_json_print(arr, 0);
}

static int
cmd_service(const struct ctl_run *run, int argc, char **argv)
{
	const struct ctl_globals *g = run->g;
	Platform__Discovery__V1__GetServiceResponse *r;
	int rc;

	if ((r = get_service(run, argv[0])) == NULL)
		return CTL_FAIL;
	rc = g->json ? service_json_print(r) : service_table(r);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return rc;
}

/* ---- watch [NAME] ---- */

static const char *
event_name(const pb_event *ev)
{
	return ctl_enum_name(&platform__discovery__v1__event_type__descriptor,
	    (int)ev->type, "EVENT_TYPE_");
}

/* "CREATED discovery 0.1.0 node=... addr=..." for each node the event
 * names (the server sends one per event). */
static void
watch_line(const pb_event *ev)
{
	const pb_service *s = ev->service;
	const char *r = ev->reason;

	if (ev->type == EV_SYNCED) {
		ctl_put_line(stdout, "-- synced (revision %llu) --",
		    (unsigned long long)ev->revision);
		return;
	}
	if (s == NULL || s->n_nodes == 0) {
		ctl_put_line(stdout, "%s %s %s", event_name(ev),
		    s ? s->name : "-", s ? s->version : "-");
		return;
	}
	for (size_t i = 0; i < s->n_nodes; i++)
		ctl_put_line(stdout, "%s %s %s node=%s addr=%s%s%s",
		    event_name(ev), s->name, s->version, s->nodes[i]->id,
		    s->nodes[i]->address, *r ? " reason=" : "", r);
}

static json_t *
event_json(const pb_event *ev)
{
	json_t *o = json_pack("{s:s, s:I}", "type", event_name(ev),
	    "revision", (json_int_t)ev->revision);

	if (ev->service != NULL && ev->type != EV_SYNCED)
		json_object_set_new(o, "service", service_json(ev->service));
	if (*ev->reason != '\0')
		json_object_set_new(o, "reason", ctl_jstr(ev->reason));
	return o;
}

/* Prints one event (arg: whether as JSON) and flushes it: watch output
 * is usually piped into something that wants each line as it happens. */
static int
watch_msg(void *arg, const ProtobufCMessage *m)
{
	const pb_event *ev = (const pb_event *)m;

	if (*(const int *)arg) {
		if (ctl_json_print(event_json(ev), JSON_COMPACT) != CTL_OK)
			return CTL_FAIL;
	} else
		watch_line(ev);
	/* The reader went away (a closed pipe): nothing left to do. */
	return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int
cmd_watch(const struct ctl_run *r, int argc, char **argv)
{
	Platform__Discovery__V1__WatchRequest req =
	    PLATFORM__DISCOVERY__V1__WATCH_REQUEST__INIT;
	int json = r->g->json;

	if (argc > 0)
		req.service = argv[0];
	return ctl_stream(r->g, r->g->discovery, M_WATCH, &req.base,
	    &platform__discovery__v1__watch_response__descriptor, watch_msg,
	    &json);
}

/* ---- health ADDRESS|SERVICE ---- */

struct target {
	const char *address;
	const char *node;		/* NULL when given as an address */
};

struct check {
	int code;			/* gRPC status of the call */
	int serving;			/* 1 only for SERVING */
	const char *status;		/* serving status, else code's name */
	char err[ERRLEN];		/* why the call failed */
};

/* Checks the whole server at addr (service "") without retrying: a
 * health check reports what it sees. */
static void
health_check(const struct ctl_globals *g, const char *addr, struct check *ck)
{
	Grpc__Health__V1__HealthCheckRequest req =
	    GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *r;
	ProtobufCMessage *m;

	ck->serving = 0;
	ck->code = ctl_unary(g, NULL, addr, M_CHECK, &req.base,
	    &grpc__health__v1__health_check_response__descriptor, &m, 0,
	    ctl_auth_metadata(g), ck->err, sizeof(ck->err));
	if (ck->code != 0) {
		ck->status = plat_status_name(ck->code);
		return;
	}
	r = (Grpc__Health__V1__HealthCheckResponse *)m;
	ck->status = ctl_enum_name(HC_STATUS_DESC, (int)r->status, "");
	ck->serving = r->status == HC_SERVING;
	protobuf_c_message_free_unpacked(m, NULL);
}

static json_t *
check_json(const struct target *t, const struct check *ck)
{
	json_t *o = json_pack("{s:o}", "address", ctl_jstr(t->address));

	if (t->node != NULL)
		json_object_set_new(o, "node", ctl_jstr(t->node));
	json_object_set_new(o, "status", json_string(ck->status));
	if (ck->code != 0)
		json_object_set_new(o, "error", ctl_jstr(ck->err));
	return o;
}

static int
health_output(const struct ctl_globals *g, const struct target *t,
    const struct check *ck, size_t n)
{
	struct ctl_table tab = { .ncols = 2 };
	json_t *arr;

	if (g->json) {
		arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, check_json(&t[i], &ck[i]));
		return ctl_json_print(arr, 0);
	}
	ctl_table_row(&tab, (const char *[]){ "ADDRESS", "STATUS" });
	for (size_t i = 0; i < n; i++)
		ctl_table_row(&tab, (const char *[]){ t[i].address, ck[i].status });
	ctl_table_print(&tab, stdout);
	ctl_table_free(&tab);
	return CTL_OK;
}

/* Checks each target in turn; 1 unless every one is SERVING. Calls that
 * failed are told on stderr too, after the table, with their message. */
static int
health_run(const struct ctl_globals *g, const struct target *t, size_t n)
{
	struct check *ck = xrealloc(NULL, n * sizeof(*ck));
	char what[300];
	int bad = 0;

	for (size_t i = 0; i < n; i++) {
		health_check(g, t[i].address, &ck[i]);
		bad |= !ck[i].serving;
	}
	bad |= health_output(g, t, ck, n) != CTL_OK;
	fflush(stdout);
	for (size_t i = 0; i < n; i++) {
		if (ck[i].code == 0)
			continue;
		snprintf(what, sizeof(what), "Check %s", t[i].address);
		ctl_fail(what, ck[i].code, ck[i].err);
	}
	free(ck);
	return bad ? CTL_FAIL : CTL_OK;
}

/* Every node of every version of the service, checked by address. */
static int
health_service(const struct ctl_run *run, const char *name)
{
	Platform__Discovery__V1__GetServiceResponse *r;
	struct target *t = NULL;
	size_t n = 0;
	int rc;

	if ((r = get_service(run, name)) == NULL)
		return CTL_FAIL;
	for (size_t i = 0; i < r->n_services; i++) {
		const pb_service *s = r->services[i];

		t = xrealloc(t, (n + s->n_nodes) * sizeof(*t));
		for (size_t j = 0; j < s->n_nodes; j++, n++) {
			t[n].address = s->nodes[j]->address;
			t[n].node = s->nodes[j]->id;
		}
	}
	if (n == 0) {
		fprintf(stderr, PROG ": health: service \"%s\" has no live "
		    "nodes\n", name);
		rc = CTL_FAIL;
	} else
		rc = health_run(run->g, t, n);
	free(t);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return rc;
}

static int
cmd_health(const struct ctl_run *r, int argc, char **argv)
{
	/* Service names never hold ':', addresses always do. */
	if (strchr(argv[0], ':') != NULL)
		return health_run(r->g, &(struct target){ argv[0], NULL }, 1);
	return health_service(r, argv[0]);
}

/* ---- the command table ---- */

static const struct ctl_cmd discovery_cmds[] = {
	{ "services", NULL, "", 0, 0, cmd_services,
	    "list every registered service" },
	{ "service", NULL, "NAME", 1, 1, cmd_service,
	    "show the versions and nodes of a service" },
	{ "watch", NULL, "[NAME]", 0, 1, cmd_watch,
	    "stream registry changes, of every service or of NAME" },
	{ "health", NULL, "ADDRESS|SERVICE", 1, 1, cmd_health,
	    "check host:port, or every node of a service" },
};

/* discovery-srv and grpc.health.v1: the global flags are all they
 * take, and their help is platformctl's. */
static const struct ctl_group discovery_group = {
	.cmds = CTL_TABLE(discovery_cmds),
};

int
main(int argc, char **argv)
{
	struct ctl_cli cli = { .ngroups = 0 };
	int rc;

	ctl_cli_add(&cli, &discovery_group);
	ctl_cli_add(&cli, &ctl_config_group);
	ctl_cli_add(&cli, &ctl_events_group);
	ctl_cli_add(&cli, &ctl_kv_group);
	ctl_cli_add(&cli, &ctl_db_group);
	ctl_cli_add(&cli, &ctl_sync_group);
	ctl_cli_add(&cli, &ctl_monitor_group);
	ctl_cli_add(&cli, &ctl_route_group);
	ctl_cli_add(&cli, &ctl_trace_group);
	ctl_cli_add(&cli, &ctl_auth_group);
	rc = ctl_cli_run(&cli, argc, argv);
	ctl_auth_cleanup();
	ctl_client_free();
	return rc;
}
