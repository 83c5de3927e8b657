/*
 * sync: sync-srv's service descriptor (handlers.c).
 */
#ifndef SYNC_H
#define SYNC_H

#include "platform/server.h"

extern const struct plat_service sync_service;

#endif
