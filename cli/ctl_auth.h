/*
 * ctl_auth: `platformctl login|logout|token|accounts|rules`, and the
 * stored token every other command sends.
 *
 * The commands are a group of the command table (ctl_cmd.h). auth-srv is
 * --auth ADDR (PLATFORM_AUTH), else the address given at login, else the
 * service "auth" found through discovery.
 */
#ifndef CTL_AUTH_H
#define CTL_AUTH_H

#include <stddef.h>

#include "ctl_cmd.h"

extern const struct ctl_group ctl_auth_group;

/* The metadata every call sends: {"authorization", "Bearer <stored
 * access token>", NULL}, or NULL when no token is stored. The file is
 * read on the first call; a token that expired is refreshed once with
 * its refresh token (and saved) at the auth-srv g names; one that
 * cannot be is left out, after a line on stderr saying to log in
 * again. Valid until ctl_auth_cleanup. */
const char *const *ctl_auth_metadata(const struct ctl_globals *g);
/* The same token for the client's own calls (finding a service through
 * discovery), as plat_client_opts.token, once ctl_auth_metadata made it:
 * 0, or -1 when there is none (yet). */
int ctl_auth_token(void *arg, char *buf, size_t len);

/* Wipes and frees what ctl_auth_metadata kept. */
void ctl_auth_cleanup(void);

#endif
