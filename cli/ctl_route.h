/*
 * ctl_route: `platformctl route show|stats|weight|split|limit|rules|
 * delete`, router-srv's commands, as a group of the command table
 * (ctl_cmd.h). router-srv is --router ADDR (PLATFORM_ROUTER), else the
 * service "router" found through discovery; its replicas share one
 * database, so any of them answers.
 */
#ifndef CTL_ROUTE_H
#define CTL_ROUTE_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_route_group;

#endif
