/*
 * trace-srv: takes spans by OTLP/gRPC, keeps them in PostgreSQL in daily
 * partitions, and answers trace lookups, searches and the dependency
 * graph.
 */
#include "trace.h"

int
main(int argc, char **argv)
{
	return plat_main(&trace_service, argc, argv);
}
