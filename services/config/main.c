/*
 * config-srv: namespaced, versioned, hierarchical configuration kept in
 * PostgreSQL, with merged reads down the namespace chain and watches that
 * resume from a revision.
 */
#include "config.h"

int
main(int argc, char **argv)
{
	return plat_main(&config_service, argc, argv);
}
