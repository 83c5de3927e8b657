/*
 * ctl_events: `platformctl events ...`, the event-srv commands, as a
 * group of the command table (ctl_cmd.h).
 */
#ifndef CTL_EVENTS_H
#define CTL_EVENTS_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_events_group;

#endif
