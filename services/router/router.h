/*
 * router: router-srv's service descriptor (handlers.c).
 */
#ifndef ROUTER_H
#define ROUTER_H

#include "platform/server.h"

extern const struct plat_service router_service;

#endif
