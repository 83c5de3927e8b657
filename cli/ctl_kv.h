/*
 * ctl_kv: `platformctl kv get|put|delete|list|watch|incr`, the kv-srv
 * commands, as a group of the command table (ctl_cmd.h). kv-srv is
 * --kv ADDR (PLATFORM_KV), else the service "kv" found through
 * discovery; any node of a ring answers for every key.
 */
#ifndef CTL_KV_H
#define CTL_KV_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_kv_group;

#endif
