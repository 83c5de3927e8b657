/*
 * db-srv: CRUD over RPC on JSON documents in PostgreSQL: databases,
 * collections, documents with revisions, filtered searches, atomic
 * batches, Watch from a revision, TTL and declared indexes.
 */
#include "db.h"

int
main(int argc, char **argv)
{
	return plat_main(&db_service, argc, argv);
}
