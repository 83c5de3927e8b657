/*
 * ctl_trace: `platformctl trace get|search|services|operations|deps`,
 * the trace-srv commands, as a group of the command table (ctl_cmd.h).
 * trace-srv is --trace ADDR (PLATFORM_TRACE), else the service "trace"
 * found through discovery.
 */
#ifndef CTL_TRACE_H
#define CTL_TRACE_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_trace_group;

#endif
