/*
 * ctl_auth: `platformctl login|logout|token|accounts|rules`, and the
 * stored token every other command sends.
 *
 * Like `config`, platformctl hands over everything after the command word
 * unparsed; flags these commands do not know go back to platformctl
 * through the host (ctl_config.h). auth-srv is --auth ADDR
 * (PLATFORM_AUTH), else the address given at login, else the service
 * "auth" found through discovery.
 */
#ifndef CTL_AUTH_H
#define CTL_AUTH_H

#include "ctl_config.h"

/* Lends the host to ctl_auth_metadata, which may need to call auth-srv
 * to refresh the stored token. platformctl calls it once, first. */
void ctl_auth_setup(const struct ctl_host *h);

/* The metadata every call sends: {"authorization", "Bearer <stored
 * access token>", NULL}, or NULL when no token is stored. The file is
 * read on the first call; a token that expired is refreshed once with
 * its refresh token (and saved); one that cannot be is left out, after
 * a line on stderr saying to log in again. Valid until ctl_auth_cleanup. */
const char *const *ctl_auth_metadata(void);
/* The same token for the client's own calls (finding a service through
 * discovery), as plat_client_opts.token, once ctl_auth_metadata made it:
 * 0, or -1 when there is none (yet). */
int ctl_auth_token(void *arg, char *buf, size_t len);

/* Wipes and frees what ctl_auth_metadata kept. */
void ctl_auth_cleanup(void);

/* Runs the command cmd ("login", "logout", "token", "accounts",
 * "rules") with its arguments (for accounts and rules argv[0] is the
 * subcommand). Returns the exit status: 0 ok, 1 a call failed, 2 bad
 * usage. */
int ctl_auth_main(const struct ctl_host *h, const char *cmd, int argc,
    char **argv);

#endif
