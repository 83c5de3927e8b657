/*
 * fuzz_discovery_request: discovery-srv's requests as the runtime decodes
 * them (fuzz_request.h), then what its handlers do with them before and
 * around the lock: Register's registry_validate and registry_register
 * into a registry of this input's own, Deregister, GetService and Watch's
 * name checks, ListServices' page size and token, the registry walk and
 * the answer packed. The handlers themselves hold the server's global
 * registry and stream state, so their checks are called here one by one,
 * in the handlers' order.
 */
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "platform/paging.h"
#include "registry.h"

#define NOW_MS 1000000
#define WALL_MS 1700000000000

static void
check_register(plat_ctx *ctx,
    const Platform__Discovery__V1__RegisterRequest *req)
{
	struct registry *r;
	char err[256];
	uint32_t ttl = 0;
	const struct reg_name *name;

	if (registry_validate(req, err, sizeof(err)) != 0) {
		FUZZ_ASSERT(err[0] != '\0');
		return;
	}
	FUZZ_ASSERT(registry_check_name(req->service->name) == 0);
	r = registry_new();
	if (registry_register(r, req, NOW_MS, WALL_MS, &ttl, err,
	    sizeof(err)) == PLAT_OK) {
		FUZZ_ASSERT(ttl >= 1 && ttl <= REGISTRY_TTL_MAX);
		FUZZ_ASSERT((name = registry_lookup(r,
		    req->service->name)) != NULL);
		for (size_t i = 0; i < name->nversions; i++)
			fuzz_roundtrip(&name->versions[i]->svc->base);
		/* A heartbeat is the same Register again. */
		FUZZ_ASSERT(registry_register(r, req, NOW_MS + 1, WALL_MS,
		    &ttl, err, sizeof(err)) == PLAT_OK);
		/* The registry is this input's: removing every node of the
		 * one service and version leaves it empty. */
		FUZZ_ASSERT(registry_deregister(r, req->service->name,
		    req->service->version, "", "fuzz") >= 1);
		FUZZ_ASSERT(registry_node_count(r) == 0);
	}
	(void)registry_expire(r, INT64_MAX / 2);
	FUZZ_ASSERT(registry_node_count(r) == 0);
	registry_free(r);
	(void)ctx;
}

static void
check_list(plat_ctx *ctx,
    const Platform__Discovery__V1__ListServicesRequest *req)
{
	char after[REGISTRY_NAME_MAX + 1] = "";
	int page;

	if (plat_page_size(ctx, req->page_size, 100, 1000, &page) != PLAT_OK)
		return;
	FUZZ_ASSERT(page >= 1 && page <= 1000);
	if (req->page_token[0] != '\0' &&
	    plat_page_token_parse(ctx, req->page_token, 's', after,
	    sizeof(after)) == PLAT_OK && registry_check_name(after) == 0)
		FUZZ_ASSERT(strcmp(plat_page_token(ctx, 's', after),
		    req->page_token) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	plat_ctx *ctx = fuzz_ctx_begin();
	const ProtobufCMethodDescriptor *m;
	const ProtobufCMessage *msg = fuzz_request(ctx,
	    &platform__discovery__v1__discovery__descriptor, data, size, &m);

	if (msg == NULL)
		goto done;
	fuzz_roundtrip(msg);
	if (FUZZ_IS(msg, platform__discovery__v1__register_request__descriptor))
		check_register(ctx, (const void *)msg);
	else if (FUZZ_IS(msg,
	    platform__discovery__v1__list_services_request__descriptor))
		check_list(ctx, (const void *)msg);
	else if (FUZZ_IS(msg,
	    platform__discovery__v1__deregister_request__descriptor))
		(void)registry_check_name(((const
		    Platform__Discovery__V1__DeregisterRequest *)msg)->name);
	else if (FUZZ_IS(msg,
	    platform__discovery__v1__get_service_request__descriptor))
		(void)registry_check_name(((const
		    Platform__Discovery__V1__GetServiceRequest *)msg)->name);
	else if (FUZZ_IS(msg,
	    platform__discovery__v1__watch_request__descriptor))
		(void)registry_check_name(((const
		    Platform__Discovery__V1__WatchRequest *)msg)->service);
done:
	fuzz_ctx_end(ctx);
	return 0;
}
