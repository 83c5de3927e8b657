/*
 * handlers: monitor-srv's gRPC methods. Every input is checked here,
 * before fleet.c sees it, so bad input gets INVALID_ARGUMENT naming the
 * field and changes nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "judge.h"
#include "monitor.h"
#include "platform/checks.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/monitor/v1/monitor.pb-c.h"
#include "store.h"

#define ID_MAX 255              /* node ids and service names */
#define NAME_MAX_LEN 64
#define OUTPUT_MAX_LEN 1024
#define TTL_MIN_MS 1000
#define TTL_MAX_MS 86400000
#define INTERVAL_MIN_MS 200
#define INTERVAL_MAX_MS 3600000
#define TIMEOUT_MIN_MS 50
#define POOL_SIZE 4

static struct pg_store *store;
static char *interval_opt, *timeout_opt, *flap_opt, *scrape_opt,
    *probers_opt;
static struct fleet_opts opts;

/* ---- input ---- */

static int
check_id(plat_ctx *ctx, const char *field, const char *v, int required)
{
	if (required && v[0] == '\0')
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (strlen(v) > ID_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: longer than "
		    "%d bytes", field, ID_MAX);
	for (const char *p = v; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: "
			    "control characters are not allowed", field);
	return PLAT_OK;
}

static int
check_name(plat_ctx *ctx, const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > NAME_MAX_LEN)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "name: 1 to %d "
		    "characters", NAME_MAX_LEN);
	for (const char *p = v; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		    strchr("_.-", *p) != NULL))
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "name: "
			    "only a-z, 0-9, '_', '.' and '-'");
	if (strcmp(v, "health") == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "name: \"health\""
		    " is the monitor's own probe");
	return PLAT_OK;
}

#define CHECK(x) do { int c_ = (x); if (c_ != PLAT_OK) return c_; } while (0)

/* ---- methods ---- */

static int
monitor_report(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Platform__Monitor__V1__ReportCheckRequest *r = (const void *)req;

	(void)resp;
	CHECK(check_id(ctx, "node_id", r->node_id, 1));
	CHECK(check_id(ctx, "service", r->service, 1));
	CHECK(check_name(ctx, r->name));
	if ((int)r->status < MON_PASSING || (int)r->status > MON_CRITICAL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "status: "
		    "PASSING, WARNING or CRITICAL");
	if (strlen(r->output) > OUTPUT_MAX_LEN)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "output: longer "
		    "than %d bytes", OUTPUT_MAX_LEN);
	if (r->ttl_ms < TTL_MIN_MS || r->ttl_ms > TTL_MAX_MS)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "ttl_ms: %d to "
		    "%d", TTL_MIN_MS, TTL_MAX_MS);
	CHECK(fleet_report(ctx, r));
	*resp = plat_new_message(ctx,
	    &platform__monitor__v1__report_check_response__descriptor);
	return PLAT_OK;
}

static int
monitor_get_status(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Platform__Monitor__V1__GetStatusRequest *r = (const void *)req;

	(void)resp;
	CHECK(check_id(ctx, "service", r->service, 0));
	return fleet_get_status(ctx, r->service, r->local);
}

static int
monitor_list_checks(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Platform__Monitor__V1__ListChecksRequest *r = (const void *)req;

	(void)resp;
	CHECK(check_id(ctx, "service", r->service, 0));
	CHECK(check_id(ctx, "node_id", r->node_id, 0));
	return fleet_list_checks(ctx, r->service, r->node_id, r->local);
}

static int
monitor_watch(plat_ctx *ctx, const ProtobufCMessage *req, plat_stream *st)
{
	const Platform__Monitor__V1__WatchStatusRequest *r = (const void *)req;

	CHECK(check_id(ctx, "service", r->service, 0));
	return fleet_watch(ctx, r->service, st);
}

static int
monitor_set_settings(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Platform__Monitor__V1__SetServiceSettingsRequest *r =
	    (const void *)req;
	const Platform__Monitor__V1__ServiceSettings *s = r->settings;

	(void)resp;
	if (s == NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "settings: "
		    "required");
	CHECK(check_id(ctx, "settings.service", s->service, 1));
	if (s->interval_ms < INTERVAL_MIN_MS || s->interval_ms >
	    INTERVAL_MAX_MS)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "settings."
		    "interval_ms: %d to %d", INTERVAL_MIN_MS, INTERVAL_MAX_MS);
	if (s->timeout_ms < TIMEOUT_MIN_MS || s->timeout_ms > s->interval_ms)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "settings."
		    "timeout_ms: %d to the interval (%" PRId64 ")",
		    TIMEOUT_MIN_MS, s->interval_ms);
	return fleet_set_settings(ctx, s);
}

static int
monitor_get_settings(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Platform__Monitor__V1__GetServiceSettingsRequest *r =
	    (const void *)req;

	(void)resp;
	CHECK(check_id(ctx, "service", r->service, 1));
	return fleet_get_settings(ctx, r->service);
}

static int
monitor_stats(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp)
{
	const Platform__Monitor__V1__StatsRequest *r = (const void *)req;

	(void)resp;
	CHECK(check_id(ctx, "service", r->service, 0));
	CHECK(check_id(ctx, "node_id", r->node_id, 0));
	return fleet_stats(ctx, r->service, r->node_id, r->local);
}

/* ---- settings ---- */

static const struct settings_option monitor_options[] = {
	{ "--probe-interval-ms", "PLATFORM_PROBE_INTERVAL_MS",
	  "how often each node is probed, 200..3600000 ms (default 5000; "
	  "per service with SetServiceSettings)", &interval_opt },
	{ "--probe-timeout-ms", "PLATFORM_PROBE_TIMEOUT_MS",
	  "a probe's deadline, 50 ms..the interval (default 1000)",
	  &timeout_opt },
	{ "--flap-threshold", "PLATFORM_FLAP_THRESHOLD",
	  "consecutive results that agree before a check's status changes, "
	  "1..100 (default 2)", &flap_opt },
	{ "--scrape-interval-ms", "PLATFORM_SCRAPE_INTERVAL_MS",
	  "how often each node's metrics are scraped for Stats, "
	  "1000..3600000 ms (default 10000)", &scrape_opt },
	{ "--probers", "PLATFORM_PROBERS",
	  "probes in flight at once, 1..16 (default 4)", &probers_opt },
};

/* An integer setting in [lo, hi], or def when not given: 0, or -1 with
 * err naming it. */
static int
int_setting(const char *v, const char *flag, int64_t lo, int64_t hi,
    int64_t def, int64_t *out, char *err, size_t errlen)
{
	char *end;
	long long n;

	if (v == NULL) {
		*out = def;
		return 0;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (end == v || *end != '\0' || errno != 0 || n < lo || n > hi) {
		snprintf(err, errlen, "%s: a whole number from %" PRId64
		    " to %" PRId64 ", not '%s'", flag, lo, hi, v);
		return -1;
	}
	*out = n;
	return 0;
}

static int
monitor_check_settings(const struct plat_settings *s, char *err,
    size_t errlen)
{
	int64_t flap, probers;

	if (pg_check_database(s, err, errlen) != 0)
		return -1;
	if (s->discovery == NULL || s->discovery[0] == '\0') {
		snprintf(err, errlen, "--discovery (PLATFORM_DISCOVERY): "
		    "required: monitor-srv follows the nodes registered there");
		return -1;
	}
	if (int_setting(interval_opt, "--probe-interval-ms", INTERVAL_MIN_MS,
	    INTERVAL_MAX_MS, 5000, &opts.interval_ms, err, errlen) != 0 ||
	    int_setting(timeout_opt, "--probe-timeout-ms", TIMEOUT_MIN_MS,
	    INTERVAL_MAX_MS, 1000, &opts.timeout_ms, err, errlen) != 0 ||
	    int_setting(flap_opt, "--flap-threshold", 1, 100, 2, &flap, err,
	    errlen) != 0 ||
	    int_setting(scrape_opt, "--scrape-interval-ms", 1000,
	    INTERVAL_MAX_MS, 10000, &opts.scrape_interval_ms, err,
	    errlen) != 0 ||
	    int_setting(probers_opt, "--probers", 1, 16, 4, &probers, err,
	    errlen) != 0)
		return -1;
	if (opts.timeout_ms > opts.interval_ms) {
		snprintf(err, errlen, "--probe-timeout-ms: at most the probe "
		    "interval (%" PRId64 " ms)", opts.interval_ms);
		return -1;
	}
	opts.flap_threshold = (int)flap;
	opts.probers = (int)probers;
	return 0;
}

/* ---- the service ---- */

static int
monitor_init(plat_server *srv, const struct plat_settings *s)
{
	char err[512];
	enum plat_code code;

	if ((store = store_new(s->database, POOL_SIZE)) == NULL)
		return -1;
	code = pg_store_migrate(store, err, sizeof(err));
	if (code == PLAT_UNAVAILABLE) {
		log_warn("monitor: database unavailable at start; probing "
		    "without the last state", "error", err);
	} else if (code != PLAT_OK) {
		log_error("monitor: cannot bring the database schema up to "
		    "date", "error", err);
		fprintf(stderr, "monitor-srv: %s\n", err);
		goto fail;
	}
	if (fleet_start(srv, store, &opts) != 0) {
		log_error("monitor: cannot start its threads");
		fleet_free();
		goto fail;
	}
	/* Its own database, reported like any server's (to itself or a
	 * peer): a monitor that cannot store says so where it is seen. */
	(void)plat_check_declare_database(srv, store);
	return 0;
fail:
	pg_store_free(store);
	store = NULL;
	return -1;
}

static void
monitor_stopping(plat_server *srv)
{
	(void)srv;
	fleet_stopping();
}

static void
monitor_fini(plat_server *srv)
{
	(void)srv;
	fleet_free();
	pg_store_free(store);
	store = NULL;
}

#define MONITOR_PATH "/platform.monitor.v1.Monitor/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(MONITOR_PATH, name, platform__monitor__v1, type, fn, idem)

static const struct plat_method monitor_methods[] = {
	UNARY("ReportCheck", monitor_report, report_check, 1),
	UNARY("GetStatus", monitor_get_status, get_status, 1),
	UNARY("ListChecks", monitor_list_checks, list_checks, 1),
	{
		.path = MONITOR_PATH "WatchStatus",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request =
		    &platform__monitor__v1__watch_status_request__descriptor,
		.response = &platform__monitor__v1__status_event__descriptor,
		.stream = monitor_watch,
	},
	UNARY("SetServiceSettings", monitor_set_settings,
	    set_service_settings, 1),
	UNARY("GetServiceSettings", monitor_get_settings,
	    get_service_settings, 1),
	UNARY("Stats", monitor_stats, stats, 1),
};

const struct plat_service monitor_service = {
	.name = "monitor",
	.grpc_service = "platform.monitor.v1.Monitor",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7076",
	.methods = monitor_methods,
	.nmethods = PLAT_COUNT(monitor_methods),
	.options = monitor_options,
	.noptions = PLAT_COUNT(monitor_options),
	.check_settings = monitor_check_settings,
	.init = monitor_init,
	.stopping = monitor_stopping,
	.fini = monitor_fini,
};
