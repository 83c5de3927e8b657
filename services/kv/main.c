/*
 * kv-srv: the platform's key-value store, in memory on a consistent-hash
 * ring of kv-srv nodes, or in front of Redis (--backend redis://...).
 */
#include "kv.h"

int
main(int argc, char **argv)
{
	return plat_main(&kv_service, argc, argv);
}
