/*
 * checks: a server's own health checks, run on one thread and reported
 * to monitor-srv. See platform/checks.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/monitor/v1/monitor.pb-c.h"
#include "platform/checks.h"
#include "platform/client.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/pg.h"
#include "server_internal.h"

#define M_REPORT "/platform.monitor.v1.Monitor/ReportCheck"
#define REPORT_DEADLINE_MS 1000
#define CHECK_TIMEOUT_MAX_MS 2000
#define OUTPUT_MAX 1024
#define TTL_MIN_MS 2000

struct check {
	char name[PLAT_CHECK_NAME_MAX + 1];
	char health[PLAT_CHECK_NAME_MAX + 8];     /* "check.NAME" */
	int interval_ms;
	plat_check_fn fn;
	void *arg;
	int64_t due_ms;
	int status;                     /* guarded by plat_checks.mu */
	char output[OUTPUT_MAX];
};

struct plat_checks {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct check checks[PLAT_CHECKS_MAX];
	size_t n;
	struct metrics_family *mx_status;
	pthread_t thread;
	int running;
	int stop;
	int report_failing;             /* to log once per outage */
};

struct plat_checks *
checks_new(void)
{
	struct plat_checks *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	pthread_mutex_init(&c->mu, NULL);
	plat_cond_init(&c->cv);
	return c;
}

void
checks_free(struct plat_checks *c)
{
	if (c == NULL)
		return;
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static int
check_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > PLAT_CHECK_NAME_MAX)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    strchr("_.-", *s) != NULL))
			return 0;
	return 1;
}

int
plat_check_declare(plat_server *srv, const char *name, int interval_ms,
    plat_check_fn fn, void *arg)
{
	struct plat_checks *c = server_checks(srv);
	struct check *k;

	if (name == NULL || !check_name_ok(name) || interval_ms < 200 ||
	    fn == NULL) {
		log_warn("checks: bad declaration", "name",
		    name != NULL ? name : "(null)");
		return -1;
	}
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->checks[i].name, name) == 0) {
			pthread_mutex_unlock(&c->mu);
			log_warn("checks: declared twice", "name", name);
			return -1;
		}
	if (c->n == PLAT_CHECKS_MAX || c->running) {
		pthread_mutex_unlock(&c->mu);
		log_warn("checks: no room, or declared after start", "name",
		    name);
		return -1;
	}
	k = &c->checks[c->n++];
	snprintf(k->name, sizeof(k->name), "%s", name);
	snprintf(k->health, sizeof(k->health), "check.%s", name);
	k->interval_ms = interval_ms;
	k->fn = fn;
	k->arg = arg;
	k->status = PLAT_CHECK_PASSING;
	if (c->mx_status == NULL)
		c->mx_status = metrics_family(plat_server_metrics(srv),
		    METRICS_GAUGE, "platform_check_status", "The server's own "
		    "checks: 1 passing, 2 warning, 3 critical.", "check");
	pthread_mutex_unlock(&c->mu);
	return 0;
}

int
plat_check_last(plat_server *srv, const char *name, char *out, size_t outlen)
{
	struct plat_checks *c = server_checks(srv);
	int status = 0;

	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->checks[i].name, name) == 0) {
			status = c->checks[i].status;
			if (outlen > 0)
				snprintf(out, outlen, "%s",
				    c->checks[i].output);
		}
	pthread_mutex_unlock(&c->mu);
	return status;
}

/* The result to monitor-srv, if there is one: a failure is logged once
 * per outage and otherwise forgotten (the next run reports again). */
static void
check_report(struct plat_checks *c, plat_server *srv, const struct check *k,
    int status, const char *output)
{
	Platform__Monitor__V1__ReportCheckRequest req =
	    PLATFORM__MONITOR__V1__REPORT_CHECK_REQUEST__INIT;
	plat_client *client = plat_server_client(srv);
	ProtobufCMessage *resp = NULL;
	char err[256];
	int code;

	if (client == NULL || plat_server_settings(srv)->discovery == NULL)
		return;
	req.node_id = (char *)plat_server_settings(srv)->node_id;
	req.service = (char *)server_name(srv);
	req.name = (char *)k->name;
	req.status = (Platform__Monitor__V1__CheckStatus)status;
	req.output = (char *)output;
	req.ttl_ms = 3 * (int64_t)k->interval_ms < TTL_MIN_MS ? TTL_MIN_MS :
	    3 * (int64_t)k->interval_ms;
	code = plat_client_call(client, "monitor", M_REPORT, &req.base,
	    &platform__monitor__v1__report_check_response__descriptor, &resp,
	    &(struct plat_call_opts){ .deadline_ms = REPORT_DEADLINE_MS },
	    err, sizeof(err));
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	if (code != PLAT_OK && !c->report_failing)
		log_info("checks: not reported to monitor-srv (reported again "
		    "next run)", "check", k->name, "code",
		    plat_status_name(code), "error", err);
	else if (code == PLAT_OK && c->report_failing)
		log_info("checks: reporting to monitor-srv again");
	c->report_failing = code != PLAT_OK;
}

static void
check_run(struct plat_checks *c, plat_server *srv, struct check *k)
{
	char output[OUTPUT_MAX] = "";
	int64_t timeout = k->interval_ms / 2 < CHECK_TIMEOUT_MAX_MS ?
	    k->interval_ms / 2 : CHECK_TIMEOUT_MAX_MS;
	int status = (int)k->fn(k->arg, timeout, output, sizeof(output));

	if (status < PLAT_CHECK_PASSING || status > PLAT_CHECK_CRITICAL)
		status = PLAT_CHECK_CRITICAL;
	pthread_mutex_lock(&c->mu);
	if (k->status != status)
		log_info("check changed", "check", k->name, "status",
		    status == PLAT_CHECK_PASSING ? "passing" :
		    status == PLAT_CHECK_WARNING ? "warning" : "critical",
		    "output", output);
	k->status = status;
	memcpy(k->output, output, sizeof(output));
	pthread_mutex_unlock(&c->mu);
	plat_gauge_set(c->mx_status, (const char *[]){ k->name }, status);
	plat_health_set(srv, k->health, status == PLAT_CHECK_CRITICAL ?
	    PLAT_HEALTH_NOT_SERVING : PLAT_HEALTH_SERVING);
	check_report(c, srv, k, status, output);
}

struct checks_thread {
	struct plat_checks *c;
	plat_server *srv;
};

static void *
checks_main(void *arg)
{
	struct plat_checks *c = ((struct checks_thread *)arg)->c;
	plat_server *srv = ((struct checks_thread *)arg)->srv;

	free(arg);
	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct check *next = &c->checks[0];
		int64_t wait;

		for (size_t i = 1; i < c->n; i++)
			if (c->checks[i].due_ms < next->due_ms)
				next = &c->checks[i];
		wait = next->due_ms - plat_now_ms();
		if (wait > 0) {
			if (plat_cond_wait_ms(&c->cv, &c->mu, wait, &c->stop))
				break;
			continue;
		}
		next->due_ms += next->interval_ms;
		if (next->due_ms < plat_now_ms())  /* a slow run: no burst */
			next->due_ms = plat_now_ms() + next->interval_ms;
		pthread_mutex_unlock(&c->mu);
		check_run(c, srv, next);
		pthread_mutex_lock(&c->mu);
		if (c->stop)
			break;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

void
checks_start(struct plat_checks *c, plat_server *srv)
{
	struct checks_thread *t;
	int64_t now = plat_now_ms();

	if (c->n == 0)
		return;
	for (size_t i = 0; i < c->n; i++) {
		c->checks[i].due_ms = now;      /* first run at once */
		plat_health_set(srv, c->checks[i].health,
		    PLAT_HEALTH_SERVING);
	}
	if ((t = malloc(sizeof(*t))) == NULL)
		abort();
	t->c = c;
	t->srv = srv;
	if (pthread_create(&c->thread, NULL, checks_main, t) != 0) {
		free(t);
		log_error("checks: cannot start their thread");
		return;
	}
	c->running = 1;
}

void
checks_stop(struct plat_checks *c)
{
	if (c == NULL || !c->running)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	c->running = 0;
}

static enum plat_check_status
database_check(void *arg, int64_t timeout_ms, char *output, size_t outlen)
{
	char err[256];
	int64_t t0 = plat_now_ms();
	int code = pg_store_exec(arg, "plat_check_select_1", "SELECT 1", 0,
	    NULL, timeout_ms, NULL, err, sizeof(err));

	if (code != PLAT_OK) {
		snprintf(output, outlen, "SELECT 1: %s: %s",
		    plat_status_name(code), err);
		return PLAT_CHECK_CRITICAL;
	}
	snprintf(output, outlen, "SELECT 1 in %lld ms",
	    (long long)(plat_now_ms() - t0));
	return PLAT_CHECK_PASSING;
}

int
plat_check_declare_database(plat_server *srv, struct pg_store *store)
{
	return plat_check_declare(srv, "database",
	    plat_server_settings(srv)->check_interval_ms, database_check,
	    store);
}
