/*
 * db: db-srv's service descriptor (handlers.c).
 */
#ifndef DB_H
#define DB_H

#include "platform/server.h"

extern const struct plat_service db_service;

#endif
