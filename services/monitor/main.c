/*
 * monitor-srv: the health of every node of the fleet, from active
 * grpc.health probes and the checks servers push themselves, damped and
 * published as status changes; and each node's metrics summary.
 */
#include "monitor.h"

int
main(int argc, char **argv)
{
	return plat_main(&monitor_service, argc, argv);
}
