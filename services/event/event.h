/*
 * event: event-srv's service descriptor (handlers.c).
 */
#ifndef EVENT_H
#define EVENT_H

#include "platform/server.h"

extern const struct plat_service event_service;

#endif
