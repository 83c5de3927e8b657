/*
 * ctl_config: `platformctl config ...`, the config-srv commands, as a
 * group of the command table (ctl_cmd.h). Their flags are their own
 * (here --version N is a version of a value, not platformctl's
 * --version); the global flags (-o json, --timeout, --config, --tls-*)
 * work among them as everywhere.
 */
#ifndef CTL_CONFIG_H
#define CTL_CONFIG_H

#include "ctl_cmd.h"

extern const struct ctl_group ctl_config_group;

#endif
