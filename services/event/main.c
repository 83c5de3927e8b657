/*
 * event-srv: the platform's durable event stream and record in
 * PostgreSQL: publish, subscribe with replay, consumer groups, query and
 * retention.
 *
 * --database (PLATFORM_DATABASE) is required and, like event-srv's own
 * settings, checked before plat_main starts anything: a missing or bad
 * one is a one-line error and exit 2 like every other bad setting.
 */
#include <stdio.h>

#include "event.h"
#include "platform/pg.h"
#include "platform/server.h"

static const struct plat_service event_service = {
	.name = "event",
	.grpc_service = "platform.event.v1.Event",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7073",
	.methods = event_methods,
	.init = event_init,
	.fini = event_fini,
};

int
main(int argc, char **argv)
{
	struct plat_service svc = event_service;
	char err[256];
	int rc;

	/* The tables live in other files: set here. */
	svc.nmethods = event_nmethods;
	svc.options = event_options;
	svc.noptions = event_noptions;
	if ((rc = pg_settings_check(&svc, "event-srv", argc, argv)) != 0)
		return rc;
	if (event_check_options(err, sizeof(err)) != 0) {
		fprintf(stderr, "event-srv: %s\n", err);
		return 2;
	}
	return plat_main(&svc, argc, argv);
}
