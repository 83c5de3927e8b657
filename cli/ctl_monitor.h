/*
 * ctl_monitor: `platformctl status|checks|watch-status`, the monitor-srv
 * commands, as a group of the command table (ctl_cmd.h). monitor-srv is
 * --monitor ADDR (PLATFORM_MONITOR), else the service "monitor" found
 * through discovery.
 */
#ifndef CTL_MONITOR_H
#define CTL_MONITOR_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_monitor_group;

#endif
