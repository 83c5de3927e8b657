/*
 * ctl_config: `platformctl config ...`, the config-srv commands.
 *
 * platformctl hands over everything after the word "config" unparsed:
 * these commands have flags of their own (here --version N is a version
 * of a value, not platformctl's --version). A flag they do not know goes
 * back to platformctl through the host, so the global flags (-o json,
 * --timeout, --config, --tls-*) work after the command as well.
 */
#ifndef CTL_CONFIG_H
#define CTL_CONFIG_H

#include "platform/client.h"

/* platformctl's global settings, once every flag is in. */
struct ctl_globals {
	int json;                       /* --output json */
	int timeout_ms;
	const char *config;             /* --config; NULL: by discovery */
	const char *discovery;
	const char *auth;               /* --auth; NULL: login's, discovery */
};

/* What platformctl lends the config commands. The functions return the
 * exit status: 0, or 2 after printing the usage error. */
struct ctl_host {
	void *arg;
	/* Applies the global option at argv[*i] ("--flag value" moves *i
	 * past the value). */
	int (*parse_opt)(void *arg, int argc, char **argv, int *i);
	/* Checks the global options and fills g. */
	int (*check)(void *arg, struct ctl_globals *g);
	/* The shared client, made on first use with the discovery address,
	 * so it can call a service by name. */
	plat_client *(*client)(void *arg);
};

/* Runs `config SUBCOMMAND ARGS...` (argv[0] is SUBCOMMAND). Returns the
 * exit status: 0 ok, 1 a call failed, 2 bad usage. */
int ctl_config_main(const struct ctl_host *h, int argc, char **argv);

#endif
