/*
 * ctl_sync: `platformctl sync leases|lock|leader|observe`, the sync-srv
 * commands, as a group of the command table (ctl_cmd.h). sync-srv is
 * --sync ADDR (PLATFORM_SYNC), else the service "sync" found through
 * discovery; its replicas share one database, so any of them answers.
 */
#ifndef CTL_SYNC_H
#define CTL_SYNC_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_sync_group;

#endif
