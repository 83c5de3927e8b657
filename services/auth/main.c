/*
 * auth-srv: accounts and service identities, OAuth 2.0 grants, signed
 * access tokens and the access rules, kept in PostgreSQL.
 *
 * --database (PLATFORM_DATABASE) is required and auth-srv's own settings
 * are checked with the others (check_settings), so a missing or wrong
 * one is a one-line error and exit 2 like every other bad setting.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "platform/pg.h"
#include "platform/server.h"
#include "platform/settings.h"

static char *opt_token_ttl, *opt_refresh_ttl, *opt_key_rotation,
    *opt_key_alg, *opt_kek_file, *opt_bootstrap_file, *opt_issuer,
    *opt_audience, *opt_lockout_failures, *opt_lockout_peer_failures,
    *opt_lockout_seconds;

static const struct settings_option auth_options[] = {
	{ "--token-ttl", "PLATFORM_AUTH_TOKEN_TTL",
	  "access token lifetime, seconds (1..86400, default 900)",
	  &opt_token_ttl },
	{ "--refresh-ttl", "PLATFORM_AUTH_REFRESH_TTL",
	  "refresh token lifetime, seconds (default 2592000: 30 days)",
	  &opt_refresh_ttl },
	{ "--key-rotation", "PLATFORM_AUTH_KEY_ROTATION",
	  "a new signing key after this many seconds (default 2592000)",
	  &opt_key_rotation },
	{ "--key-alg", "PLATFORM_AUTH_KEY_ALG",
	  "RS256 or ES256, for new signing keys (default RS256)",
	  &opt_key_alg },
	{ "--kek-file", "PLATFORM_AUTH_KEK_FILE",
	  "key-encryption key file, mode 0600, made when missing (default "
	  "$XDG_STATE_HOME/platform/auth-kek)", &opt_kek_file },
	{ "--bootstrap-file", "PLATFORM_AUTH_BOOTSTRAP_FILE",
	  "where the first start writes the admin credentials (default "
	  "$XDG_STATE_HOME/platform/auth-bootstrap.json)",
	  &opt_bootstrap_file },
	{ "--issuer", "PLATFORM_AUTH_ISSUER",
	  "the tokens' iss (default platform-auth)", &opt_issuer },
	{ "--audience", "PLATFORM_AUTH_AUDIENCE",
	  "the tokens' aud (default platform)", &opt_audience },
	{ "--lockout-failures", "PLATFORM_AUTH_LOCKOUT_FAILURES",
	  "failed logins of one account before it is locked (default 10)",
	  &opt_lockout_failures },
	{ "--lockout-peer-failures", "PLATFORM_AUTH_LOCKOUT_PEER_FAILURES",
	  "failed logins from one host before it is locked (default 100)",
	  &opt_lockout_peer_failures },
	{ "--lockout-seconds", "PLATFORM_AUTH_LOCKOUT_SECONDS",
	  "how long a lock-out lasts, and the counting window (default 300)",
	  &opt_lockout_seconds },
};

static int
number(const char *flag, const char *v, int64_t dflt, int64_t min,
    int64_t max, int64_t *out, char *err, size_t errlen)
{
	char *end;
	long long n;

	if (v == NULL || v[0] == '\0') {
		*out = dflt;
		return 0;
	}
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < min || n > max) {
		snprintf(err, errlen, "%s: a whole number %" PRId64 "..%"
		    PRId64, flag, min, max);
		return -1;
	}
	*out = n;
	return 0;
}

/* $XDG_STATE_HOME/platform/name, ~/.local/state/platform/name, or name in
 * the working directory (static storage, one per name). */
static const char *
state_path(const char *name, char *buf, size_t len)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (xdg != NULL && xdg[0] == '/')
		snprintf(buf, len, "%s/platform/%s", xdg, name);
	else if (home != NULL && home[0] == '/')
		snprintf(buf, len, "%s/.local/state/platform/%s", home, name);
	else
		snprintf(buf, len, "%s", name);
	return buf;
}

int
auth_settings_load(struct auth_settings *s, char *err, size_t errlen)
{
	static char kek[4096], boot[4096];
	int64_t n;

	if (number("--token-ttl", opt_token_ttl, 900, 1, 86400,
	    &s->token_ttl_s, err, errlen) != 0 ||
	    number("--refresh-ttl", opt_refresh_ttl, 2592000, 1, 31536000,
	    &s->refresh_ttl_s, err, errlen) != 0 ||
	    number("--key-rotation", opt_key_rotation, 2592000, 1,
	    31536000, &s->key_rotation_s, err, errlen) != 0 ||
	    number("--lockout-seconds", opt_lockout_seconds, 300, 1, 86400,
	    &s->lockout_s, err, errlen) != 0)
		return -1;
	if (number("--lockout-failures", opt_lockout_failures, 10, 1, 1000,
	    &n, err, errlen) != 0)
		return -1;
	s->lockout_failures = (int)n;
	if (number("--lockout-peer-failures", opt_lockout_peer_failures, 100,
	    1, 100000, &n, err, errlen) != 0)
		return -1;
	s->lockout_peer_failures = (int)n;
	s->key_alg = opt_key_alg != NULL && opt_key_alg[0] != '\0' ?
	    opt_key_alg : "RS256";
	if (strcmp(s->key_alg, "RS256") != 0 &&
	    strcmp(s->key_alg, "ES256") != 0) {
		snprintf(err, errlen, "--key-alg: RS256 or ES256");
		return -1;
	}
	s->kek_file = opt_kek_file != NULL && opt_kek_file[0] != '\0' ?
	    opt_kek_file : state_path("auth-kek", kek, sizeof(kek));
	s->bootstrap_file = opt_bootstrap_file != NULL &&
	    opt_bootstrap_file[0] != '\0' ? opt_bootstrap_file :
	    state_path("auth-bootstrap.json", boot, sizeof(boot));
	s->issuer = opt_issuer != NULL && opt_issuer[0] != '\0' ?
	    opt_issuer : "platform-auth";
	s->audience = opt_audience != NULL && opt_audience[0] != '\0' ?
	    opt_audience : "platform";
	return 0;
}

/* --database and auth-srv's own settings (their values are set). */
static int
check_settings(const struct plat_settings *s, char *err, size_t errlen)
{
	struct auth_settings as;

	if (pg_check_database(s, err, errlen) != 0)
		return -1;
	return auth_settings_load(&as, err, errlen) != 0 ? -1 : 0;
}

static const struct plat_service auth_service = {
	.name = "auth",
	.grpc_service = "platform.auth.v1.Auth",
	.version = PLATFORM_VERSION,
	.default_listen = "127.0.0.1:7072",
	.methods = auth_methods,
	.nmethods = AUTH_NMETHODS,
	.options = auth_options,
	.noptions = PLAT_COUNT(auth_options),
	.check_settings = check_settings,
	.self_auth = 1,
	.init = auth_init,
	.fini = auth_fini,
};

int
main(int argc, char **argv)
{
	return plat_main(&auth_service, argc, argv);
}
