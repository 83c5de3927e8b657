/*
 * discovery: discovery-srv's method table and lifecycle hooks.
 */
#ifndef DISCOVERY_H
#define DISCOVERY_H

#include <stddef.h>

#include "platform/server.h"

extern const struct plat_method discovery_methods[];
extern const size_t discovery_nmethods;

int discovery_init(plat_server *srv, const struct plat_settings *s);
void discovery_fini(plat_server *srv);

#endif
