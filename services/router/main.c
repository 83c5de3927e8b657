/*
 * router-srv: routing decisions for smart clients (weights, outlier
 * ejection, rate limits, splits by label) from the stats every client
 * reports; rules in PostgreSQL. Not a proxy: clients call the nodes
 * themselves.
 */
#include "router.h"

int
main(int argc, char **argv)
{
	return plat_main(&router_service, argc, argv);
}
