/*
 * event: event-srv's method table, lifecycle hooks and settings.
 */
#ifndef EVENT_H
#define EVENT_H

#include <stddef.h>

#include "platform/server.h"
#include "platform/settings.h"

extern const struct plat_method event_methods[];
extern const size_t event_nmethods;
extern const struct settings_option event_options[];
extern const size_t event_noptions;

/* Checks event-srv's own settings once parsed: 0, or -1 with err naming
 * the setting. */
int event_check_options(char *err, size_t errlen);

int event_init(plat_server *srv, const struct plat_settings *s);
void event_fini(plat_server *srv);

#endif
