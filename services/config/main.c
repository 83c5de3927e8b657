/*
 * config-srv: namespaced, versioned, hierarchical configuration kept in
 * PostgreSQL, with merged reads down the namespace chain and watches that
 * resume from a revision.
 *
 * --database (PLATFORM_DATABASE) is required: it is checked here, before
 * plat_main starts anything, so a missing or malformed one is a one-line
 * error and exit 2 like every other bad setting.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "platform/pg.h"
#include "platform/server.h"
#include "platform/settings.h"

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

/* 0 to go on, else the exit code. Settings errors and --help are left to
 * plat_main, which reports them the same way for every server. */
static int
check_database(const struct plat_service *svc, int argc, char **argv)
{
	struct settings_spec spec = {
		.prog = "config-srv",
		.default_listen = svc->default_listen,
		.extra = svc->options,
		.nextra = svc->noptions,
	};
	struct plat_settings s;
	char err[512];
	int rc = 0;

	if (settings_parse(&s, &spec, argc, argv, NULL, err, sizeof(err)) !=
	    SETTINGS_OK) {
		settings_free(&s);
		return 0;
	}
	rc = pg_database_setting_check("config-srv", s.database);
	settings_free(&s);
	return rc;
}

int
main(int argc, char **argv)
{
	struct plat_service svc = config_service;
	int rc;

	svc.nmethods = config_nmethods;
	if ((rc = check_database(&svc, argc, argv)) != 0)
		return rc;
	return plat_main(&svc, argc, argv);
}
