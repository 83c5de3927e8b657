/*
 * settings: the flags every server takes, each also read from a
 * PLATFORM_* environment variable (a flag wins over the environment).
 *
 *   --listen ADDR           PLATFORM_LISTEN          host:port to serve on
 *                                                    (port 0: any free port)
 *   --advertise ADDR        PLATFORM_ADVERTISE       address registered with
 *                                                    discovery (default: listen)
 *   --discovery ADDR        PLATFORM_DISCOVERY       discovery-srv host:port
 *   --database URL          PLATFORM_DATABASE        PostgreSQL conninfo
 *   --log-format F          PLATFORM_LOG_FORMAT      auto|json|text
 *   --log-level L           PLATFORM_LOG_LEVEL       debug|info|warn|error
 *   --tls-cert FILE         PLATFORM_TLS_CERT        PEM certificate
 *   --tls-key FILE          PLATFORM_TLS_KEY         PEM private key
 *   --tls-ca FILE           PLATFORM_TLS_CA          PEM CA bundle
 *   --metrics-listen ADDR   PLATFORM_METRICS_LISTEN  reserved for metrics
 *   --node-id ID            PLATFORM_NODE_ID         default NAME-HOST-PORT
 *   --workers N             PLATFORM_WORKERS         1..256, default cores
 *   --max-message-bytes N   PLATFORM_MAX_MESSAGE_BYTES  1024..67108864
 *   --grace-ms N            PLATFORM_GRACE_MS        shutdown drain, 0..600000
 *   --register-ttl N        PLATFORM_REGISTER_TTL    seconds, 3..3600
 *   --auth ADDR             PLATFORM_AUTH            auth-srv host:port (the
 *                                                    guard's keys and rules,
 *                                                    this server's tokens)
 *   --auth-issuer S         PLATFORM_AUTH_ISSUER     iss tokens must have
 *   --auth-audience S       PLATFORM_AUTH_AUDIENCE   aud tokens must hold
 *   --credentials FILE      PLATFORM_CREDENTIALS     this server's identity:
 *                                                    JSON client_id and
 *                                                    client_secret, mode 0600
 *   --insecure-no-auth      PLATFORM_INSECURE_NO_AUTH  development only: no
 *                                                    guard, every caller trusted
 *   --help
 *
 * Flags accept "--flag value" and "--flag=value". A service may add its own
 * options through `extra`.
 */
#ifndef PLATFORM_SETTINGS_H
#define PLATFORM_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

#include "platform/log.h"

struct plat_settings {
	char *listen;
	char *advertise;
	char *discovery;        /* NULL or "": do not register */
	char *database;
	enum log_format log_format;
	enum log_level log_level;
	char *tls_cert;
	char *tls_key;
	char *tls_ca;
	char *metrics_listen;
	char *node_id;
	int workers;
	int max_message_bytes;
	int grace_ms;
	int register_ttl_s;
	char *auth;             /* NULL: none given */
	char *auth_issuer;      /* default "platform-auth" */
	char *auth_audience;    /* default "platform" */
	char *credentials;      /* NULL: PLATFORM_CLIENT_ID/_SECRET, or none */
	int insecure_no_auth;   /* 1: the guard is off */
	char *trace_endpoint;   /* NULL: spans are not recorded */
	char *statsd;           /* NULL: no push */
	int statsd_interval_s;
	int check_interval_ms;  /* the server's own checks (checks.h) */
	double trace_sample;    /* new traces recorded, 0..1 */
	int trace_tail;         /* 1: unsampled spans sent too, marked */
};

#define SETTINGS_AUTH_ISSUER "platform-auth"
#define SETTINGS_AUTH_AUDIENCE "platform"

/* A service-specific string option; *value is set to a malloc'd copy (or
 * left as is when not given; a non-NULL initial value must be malloc'd
 * too, it is freed when replaced). */
struct settings_option {
	const char *flag;       /* "--store-limit" */
	const char *env;        /* "PLATFORM_STORE_LIMIT" */
	const char *help;
	char **value;
};

typedef const char *(*settings_getenv_fn)(const char *name);

struct settings_spec {
	const char *prog;            /* "discovery-srv" */
	const char *default_listen;  /* "127.0.0.1:7070" */
	const struct settings_option *extra;  /* may be NULL */
	size_t nextra;
};

enum {
	SETTINGS_OK = 0,
	SETTINGS_HELP = 1,      /* --help was given: print usage, exit 0 */
	SETTINGS_ERROR = -1,    /* err holds one line naming the setting */
};

/* Fills s (which it zeroes first) from defaults, then getenv_fn (NULL
 * means getenv), then argv. Checks every value: addresses are host:port
 * with a port 1..65535 (0 too for --listen), numbers in range, tls cert
 * and key given together and readable. On SETTINGS_ERROR the caller
 * prints err and exits 2. */
int settings_parse(struct plat_settings *s, const struct settings_spec *spec,
    int argc, char **argv, settings_getenv_fn getenv_fn,
    char *err, size_t errlen);

void settings_usage(FILE *out, const struct settings_spec *spec);

void settings_free(struct plat_settings *s);

/* host:port with a non-empty host (name, IPv4, or [IPv6]) and a port
 * 1..65535: 0, or -1. Shared with discovery's input checks. */
int settings_check_address(const char *addr);
/* host:port split for getaddrinfo: the host (brackets of [IPv6] taken
 * off) into host, and the port's text returned; NULL when there is no
 * ':' or the host does not fit. */
const char *settings_split_address(const char *addr, char *host,
    size_t hostlen);

#endif
