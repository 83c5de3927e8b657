/*
 * config: config-srv's method table, lifecycle hooks, and what its
 * modules share.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <stddef.h>

#include "platform/config/v1/config.pb-c.h"
#include "platform/server.h"
#include "store.h"

extern const struct plat_method config_methods[];
extern const size_t config_nmethods;

int config_init(plat_server *srv, const struct plat_settings *s);
void config_fini(plat_server *srv);

/* Fills v (initialised here) from r; v points into r's strings. */
void config_value_fill(Platform__Config__V1__Value *v,
    const struct cfg_row *r);

#endif
