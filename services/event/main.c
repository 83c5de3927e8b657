/*
 * event-srv: the platform's durable event stream and record in
 * PostgreSQL: publish, subscribe with replay, consumer groups, query and
 * retention.
 */
#include "event.h"

int
main(int argc, char **argv)
{
	return plat_main(&event_service, argc, argv);
}
