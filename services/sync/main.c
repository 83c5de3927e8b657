/*
 * sync-srv: leases, locks with fencing tokens and leader election, kept
 * in PostgreSQL with every expiry on the database's clock.
 */
#include "sync.h"

int
main(int argc, char **argv)
{
	return plat_main(&sync_service, argc, argv);
}
