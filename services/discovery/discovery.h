/*
 * discovery: discovery-srv's service descriptor (its method table and
 * lifecycle hooks).
 */
#ifndef DISCOVERY_H
#define DISCOVERY_H

#include <stddef.h>

#include "platform/server.h"

extern const struct plat_service discovery_service;

#endif
