/*
 * config: config-srv's service descriptor (handlers.c), and what its
 * modules share.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

#include "platform/config/v1/config.pb-c.h"
#include "platform/server.h"
#include "store.h"

extern const struct plat_service config_service;

/* Fills v (initialised here) from r; v points into r's strings. */
void config_value_fill(Platform__Config__V1__Value *v,
    const struct cfg_row *r);

#endif
