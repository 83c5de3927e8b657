/*
 * trace: trace-srv's service descriptor (handlers.c).
 */
#ifndef TRACE_H
#define TRACE_H

#include "platform/server.h"

extern const struct plat_service trace_service;

#endif
