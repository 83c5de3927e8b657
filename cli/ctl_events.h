/*
 * ctl_events: `platformctl events ...`, the event-srv commands.
 *
 * Like `config`, platformctl hands over everything after the word
 * "events" unparsed; flags these commands do not know go back to
 * platformctl through the host (ctl_config.h), so the global flags work
 * after the command as well.
 */
#ifndef CTL_EVENTS_H
#define CTL_EVENTS_H

#include "ctl_config.h"

/* Runs `events SUBCOMMAND ARGS...` (argv[0] is SUBCOMMAND). Returns the
 * exit status: 0 ok, 1 a call failed, 2 bad usage. */
int ctl_events_main(const struct ctl_host *h, int argc, char **argv);

#endif
