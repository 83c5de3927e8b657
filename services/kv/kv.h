/*
 * kv: kv-srv's service descriptor (handlers.c).
 */
#ifndef KV_H
#define KV_H

#include "platform/server.h"

extern const struct plat_service kv_service;

#endif
