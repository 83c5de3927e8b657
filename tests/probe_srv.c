/*
 * probe-srv: a libplatform server for the router tests and bench. It
 * registers as "probe" (version from PROBE_VERSION, default 1) and
 * answers Ping with its node id, after PROBE_DELAY_MS and failing
 * PROBE_FAIL_PERCENT of the calls with UNAVAILABLE, both changed at run
 * time by SetBehaviour.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "platform/probe/v1/probe.pb-c.h"
#include "platform/server.h"

static atomic_uint delay_ms, fail_percent, counter;
static plat_server *probe_srv;

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int
probe_ping(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Probe__V1__PingRequest *req = (const void *)m;
	Platform__Probe__V1__PingResponse *resp;
	unsigned d = atomic_load(&delay_ms), f = atomic_load(&fail_percent);

	if (d > 0)
		sleep_ms(d);
	/* Every n-th call fails, spread evenly rather than at random, so
	 * a test's counts are what it set. */
	if (f > 0 && atomic_fetch_add(&counter, 1) % 100 < f)
		return plat_error(ctx, PLAT_UNAVAILABLE, "probe: told to fail");
	resp = plat_new(ctx, Platform__Probe__V1__PingResponse,
	    &platform__probe__v1__ping_response__descriptor);
	resp->node_id = plat_strdup(ctx, plat_server_settings(probe_srv)->node_id);
	resp->version = plat_strdup(ctx, getenv("PROBE_VERSION") != NULL ?
	    getenv("PROBE_VERSION") : "1");
	resp->payload = plat_strdup(ctx, req->payload);
	*out = &resp->base;
	return PLAT_OK;
}

static int
probe_set(plat_ctx *ctx, const ProtobufCMessage *m, ProtobufCMessage **out)
{
	const Platform__Probe__V1__SetBehaviourRequest *req = (const void *)m;

	if (req->delay_ms > 10000)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "delay_ms: at most 10000");
	if (req->fail_percent > 100)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "fail_percent: at most 100");
	atomic_store(&delay_ms, req->delay_ms);
	atomic_store(&fail_percent, req->fail_percent);
	*out = (ProtobufCMessage *)plat_new(ctx,
	    Platform__Probe__V1__SetBehaviourResponse,
	    &platform__probe__v1__set_behaviour_response__descriptor);
	return PLAT_OK;
}

static int
probe_init(plat_server *srv, const struct plat_settings *s)
{
	(void)s;
	probe_srv = srv;
	return 0;
}

#define PROBE_PATH "/platform.probe.v1.Probe/"

static const struct plat_method probe_methods[] = {
	PLAT_UNARY(PROBE_PATH, "Ping", platform__probe__v1, ping, probe_ping,
	    1),
	PLAT_UNARY(PROBE_PATH, "SetBehaviour", platform__probe__v1,
	    set_behaviour, probe_set, 0),
};

static struct plat_service probe_service = {
	.name = "probe",
	.grpc_service = "platform.probe.v1.Probe",
	.version = "1",
	.default_listen = "127.0.0.1:7090",
	.methods = probe_methods,
	.nmethods = PLAT_COUNT(probe_methods),
	.init = probe_init,
};

int
main(int argc, char **argv)
{
	const char *v = getenv("PROBE_VERSION");

	if (v != NULL && v[0] != '\0')
		probe_service.version = v;
	if (getenv("PROBE_DELAY_MS") != NULL)
		atomic_store(&delay_ms, (unsigned)atoi(getenv("PROBE_DELAY_MS")));
	if (getenv("PROBE_FAIL_PERCENT") != NULL)
		atomic_store(&fail_percent,
		    (unsigned)atoi(getenv("PROBE_FAIL_PERCENT")));
	return plat_main(&probe_service, argc, argv);
}
