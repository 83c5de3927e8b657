/*
 * discovery-srv: the platform's service registry.
 *
 * Every other server is given this server's address; with no --discovery
 * of its own it registers with itself, so `platformctl services` lists it.
 */
#include "discovery.h"
#include "platform/server.h"

static const struct plat_service discovery_service = {
	.name = "discovery",
	.grpc_service = "platform.discovery.v1.Discovery",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7070",
	.methods = discovery_methods,
	.nmethods = 0,              /* set in main: the table lives elsewhere */
	.self_discovery = 1,
	.init = discovery_init,
	.fini = discovery_fini,
};

int
main(int argc, char **argv)
{
	struct plat_service svc = discovery_service;

	svc.nmethods = discovery_nmethods;
	return plat_main(&svc, argc, argv);
}
