/*
 * config-srv: namespaced, versioned, hierarchical configuration kept in
 * PostgreSQL, with merged reads down the namespace chain and watches that
 * resume from a revision.
 *
 * --database (PLATFORM_DATABASE) is required: it is checked here, before
 * plat_main starts anything, so a missing or malformed one is a one-line
 * error and exit 2 like every other bad setting.
 */
#include "config.h"
#include "platform/pg.h"
#include "platform/server.h"

static const struct plat_service config_service = {
	.name = "config",
	.grpc_service = "platform.config.v1.Config",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7071",
	.methods = config_methods,
	.nmethods = 0,              /* set in main: the table lives elsewhere */
	.init = config_init,
	.fini = config_fini,
};

int
main(int argc, char **argv)
{
	struct plat_service svc = config_service;
	int rc;

	svc.nmethods = config_nmethods;
	if ((rc = pg_settings_check(&svc, "config-srv", argc,
	    argv)) != 0)
		return rc;
	return plat_main(&svc, argc, argv);
}
