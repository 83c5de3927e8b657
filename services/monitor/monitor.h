/*
 * monitor: monitor-srv's service descriptor (handlers.c).
 */
#ifndef MONITOR_H
#define MONITOR_H

#include "platform/server.h"

extern const struct plat_service monitor_service;

#endif
