/*
 * discovery-srv: the platform's service registry.
 *
 * Every other server is given this server's address; with no --discovery
 * of its own it registers with itself, so `platformctl services` lists it.
 */
#include "discovery.h"
#include "platform/server.h"

int
main(int argc, char **argv)
{
	return plat_main(&discovery_service, argc, argv);
}
