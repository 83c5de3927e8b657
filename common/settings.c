/*
 * settings: the flags every server takes.
 *
 * One table describes every common option; parsing, the environment and
 * --help all read it. A value is only collected while reading the
 * environment and argv (a flag replaces the environment's value); it is
 * checked afterwards, once, so an error names where the winning value came
 * from ("--workers" or "PLATFORM_WORKERS") and a bad environment value that
 * a flag overrides does no harm.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/settings.h"
#include "platform/errbuf.h"

enum settings_kind {
	SETTINGS_K_HELP,
	SETTINGS_K_ADDR,	/* host:port */
	SETTINGS_K_STR,
	SETTINGS_K_FILE,	/* a readable file */
	SETTINGS_K_INT,
	SETTINGS_K_LOGFMT,
	SETTINGS_K_LOGLVL,
	SETTINGS_K_BOOL,	/* "--flag" alone, or =1/0, true/false, ... */
	SETTINGS_K_RATE,	/* 0..1, a double; dflt in percent */
};

#define SETTINGS_F_EMPTY_UNSET	0x1	/* an empty value means not given */
#define SETTINGS_F_PORT0	0x2	/* port 0: the system picks one */
#define SETTINGS_F_LIST		0x4	/* addresses, comma-separated */

struct settings_def {
	const char		*flag;
	const char		*env;
	const char		*arg;	/* name of the value in --help */
	const char		*help;
	enum settings_kind	 kind;
	int			 flags;
	size_t			 off;	/* field in struct plat_settings */
	int			 min, max, dflt;	/* ints and enums */
	const char		*dflt_text;	/* for --help */
};

#define SETTINGS_OFF(f)	offsetof(struct plat_settings, f)

static const struct settings_def settings_defs[] = {
	{ "--listen", "PLATFORM_LISTEN", "ADDR",
	  "host:port to serve on (port 0: any free port)",
	  SETTINGS_K_ADDR, SETTINGS_F_PORT0, SETTINGS_OFF(listen),
	  0, 0, 0, NULL },
	{ "--advertise", "PLATFORM_ADVERTISE", "ADDR",
	  "host:port registered with discovery",
	  SETTINGS_K_ADDR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(advertise),
	  0, 0, 0, "listen (hostname:port for 0.0.0.0, [::])" },
	{ "--discovery", "PLATFORM_DISCOVERY", "ADDR",
	  "discovery-srv host:port, or several (its replicas) separated by "
	  "commas: whichever answers; empty: do not register",
	  SETTINGS_K_ADDR, SETTINGS_F_EMPTY_UNSET | SETTINGS_F_LIST,
	  SETTINGS_OFF(discovery),
	  0, 0, 0, "none" },
	{ "--database", "PLATFORM_DATABASE", "URL",
	  "PostgreSQL conninfo",
	  SETTINGS_K_STR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(database),
	  0, 0, 0, "none" },
	{ "--log-format", "PLATFORM_LOG_FORMAT", "F",
	  "auto|json|text (auto: text on a terminal, else JSON)",
	  SETTINGS_K_LOGFMT, 0, SETTINGS_OFF(log_format),
	  0, 0, LOG_FORMAT_AUTO, "auto" },
	{ "--log-level", "PLATFORM_LOG_LEVEL", "L",
	  "debug|info|warn|error",
	  SETTINGS_K_LOGLVL, 0, SETTINGS_OFF(log_level),
	  0, 0, LOG_LEVEL_INFO, "info" },
	{ "--tls-cert", "PLATFORM_TLS_CERT", "FILE",
	  "PEM certificate; with --tls-key turns TLS on",
	  SETTINGS_K_FILE, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(tls_cert),
	  0, 0, 0, "none" },
	{ "--tls-key", "PLATFORM_TLS_KEY", "FILE",
	  "PEM private key for --tls-cert",
	  SETTINGS_K_FILE, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(tls_key),
	  0, 0, 0, "none" },
	{ "--tls-ca", "PLATFORM_TLS_CA", "FILE",
	  "PEM CA bundle",
	  SETTINGS_K_FILE, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(tls_ca),
	  0, 0, 0, "none" },
	{ "--metrics-listen", "PLATFORM_METRICS_LISTEN", "ADDR",
	  "host:port for metrics",
	  SETTINGS_K_ADDR, SETTINGS_F_EMPTY_UNSET,
	  SETTINGS_OFF(metrics_listen), 0, 0, 0, "none" },
	{ "--node-id", "PLATFORM_NODE_ID", "ID",
	  "this node's id in discovery",
	  SETTINGS_K_STR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(node_id),
	  0, 0, 0, "NAME-HOST-PORT" },
	{ "--workers", "PLATFORM_WORKERS", "N",
	  "worker threads, 1..256",
	  SETTINGS_K_INT, 0, SETTINGS_OFF(workers),
	  1, 256, 0, "online cores" },
	{ "--max-message-bytes", "PLATFORM_MAX_MESSAGE_BYTES", "N",
	  "largest message sent or received, 1024..67108864",
	  SETTINGS_K_INT, 0, SETTINGS_OFF(max_message_bytes),
	  1024, 67108864, 4194304, NULL },
	{ "--grace-ms", "PLATFORM_GRACE_MS", "N",
	  "shutdown drain in milliseconds, 0..600000",
	  SETTINGS_K_INT, 0, SETTINGS_OFF(grace_ms),
	  0, 600000, 10000, NULL },
	{ "--register-ttl", "PLATFORM_REGISTER_TTL", "N",
	  "registration TTL in seconds, 3..3600",
	  SETTINGS_K_INT, 0, SETTINGS_OFF(register_ttl_s),
	  3, 3600, 15, NULL },
	{ "--auth", "PLATFORM_AUTH", "ADDR",
	  "auth-srv host:port: the guard's keys and rules, this server's "
	  "tokens",
	  SETTINGS_K_ADDR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(auth),
	  0, 0, 0, "none (auth-srv: itself)" },
	{ "--auth-issuer", "PLATFORM_AUTH_ISSUER", "S",
	  "the iss every access token must have",
	  SETTINGS_K_STR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(auth_issuer),
	  0, 0, 0, SETTINGS_AUTH_ISSUER },
	{ "--auth-audience", "PLATFORM_AUTH_AUDIENCE", "S",
	  "the aud every access token must hold",
	  SETTINGS_K_STR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(auth_audience),
	  0, 0, 0, SETTINGS_AUTH_AUDIENCE },
	{ "--credentials", "PLATFORM_CREDENTIALS", "FILE",
	  "this server's identity: JSON client_id, client_secret (mode 0600)",
	  SETTINGS_K_FILE, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(credentials),
	  0, 0, 0, "PLATFORM_CLIENT_ID and PLATFORM_CLIENT_SECRET" },
	{ "--insecure-no-auth", "PLATFORM_INSECURE_NO_AUTH", NULL,
	  "DEVELOPMENT ONLY: no guard, every caller is trusted",
	  SETTINGS_K_BOOL, 0, SETTINGS_OFF(insecure_no_auth),
	  0, 1, 0, "0" },
	{ "--statsd", "PLATFORM_STATSD", "ADDR",
	  "statsd / DogStatsD agent host:port (UDP): the metrics pushed "
	  "there too, tagged",
	  SETTINGS_K_ADDR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(statsd),
	  0, 0, 0, "none" },
	{ "--statsd-interval", "PLATFORM_STATSD_INTERVAL", "N",
	  "seconds between pushes, 1..3600",
	  SETTINGS_K_INT, 0, SETTINGS_OFF(statsd_interval_s),
	  1, 3600, 10, NULL },
	{ "--check-interval-ms", "PLATFORM_CHECK_INTERVAL_MS", "N",
	  "how often the server runs its own checks (its database "
	  "reachable) and reports them to monitor-srv, 200..3600000",
	  SETTINGS_K_INT, 0, SETTINGS_OFF(check_interval_ms),
	  200, 3600000, 5000, NULL },
	{ "--trace-endpoint", "PLATFORM_TRACE_ENDPOINT", "ADDR",
	  "where spans go by OTLP/gRPC: host:port (trace-srv, an "
	  "OpenTelemetry Collector), or \"discovery\" for trace-srv found "
	  "there; unset: trace context is passed on, no span is recorded",
	  SETTINGS_K_STR, SETTINGS_F_EMPTY_UNSET, SETTINGS_OFF(trace_endpoint),
	  0, 0, 0, "none" },
	{ "--trace-sample", "PLATFORM_TRACE_SAMPLE", "R",
	  "share of new traces recorded, 0..1 (a caller's sampled flag is "
	  "kept)",
	  SETTINGS_K_RATE, 0, SETTINGS_OFF(trace_sample),
	  0, 0, 100, "1" },
	{ "--trace-tail", "PLATFORM_TRACE_TAIL", NULL,
	  "send the spans of traces --trace-sample left out too, marked "
	  "unsampled, so trace-srv keeps every error and slow trace whole "
	  "(tail-based retention)",
	  SETTINGS_K_BOOL, 0, SETTINGS_OFF(trace_tail),
	  0, 1, 0, "0" },
	{ "--help", NULL, NULL, "print this help and exit (also -h)",
	  SETTINGS_K_HELP, 0, 0, 0, 0, 0, NULL },
};

#define SETTINGS_NDEFS	(sizeof(settings_defs) / sizeof(settings_defs[0]))

/* A value shown in an error: cut short and kept on one line. */
static const char *
settings_show(char *buf, size_t len, const char *v)
{
	size_t i, n = strlen(v);

	/* Cut on purpose: copied by hand (gcc -O3 warns on snprintf). */
	if (len == 0)
		return buf;
	if (n >= len)
		n = len - 1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	if (strlen(v) >= len && len > 4)
		memcpy(buf + len - 4, "...", 4);
	for (i = 0; buf[i] != '\0'; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	return buf;
}

static char *
settings_strdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		abort();
	return p;
}

static void
settings_hostname(char *buf, size_t len)
{
	if (gethostname(buf, len) != 0 || buf[0] == '\0')
		snprintf(buf, len, "localhost");
	buf[len - 1] = '\0';
}

/*
 * The checker behind settings_check_address, with port 0 allowed on
 * request (--listen only). Returns NULL, or why addr is not one.
 */
static const char *
settings_address_problem(const char *addr, int port0)
{
	const char *colon, *h, *p;
	char host[256];
	unsigned char bin[16];
	size_t hlen;
	long port;
	int digits_dots = 1;

	if ((colon = strrchr(addr, ':')) == NULL)
		return "is not host:port";
	hlen = (size_t)(colon - addr);
	if (hlen == 0 || hlen >= sizeof(host))
		return "is not host:port";
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (host[0] == '[') {
		if (hlen < 3 || host[hlen - 1] != ']')
			return "is not host:port ([IPv6] needs its brackets)";
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, bin) != 1)
			return "is not host:port (bad IPv6 address)";
	} else {
		for (h = host; *h != '\0'; h++) {
			if (*h >= '0' && *h <= '9')
				continue;
			digits_dots &= *h == '.';
			if (!(*h >= 'a' && *h <= 'z') &&
			    !(*h >= 'A' && *h <= 'Z') &&
			    *h != '.' && *h != '-' && *h != '_')
				return "is not host:port (bad host)";
		}
		if (digits_dots && inet_pton(AF_INET, host, bin) != 1)
			return "is not host:port (bad IPv4 address)";
	}
	p = colon + 1;
	port = 0;
	if (*p == '\0' || strlen(p) > 5)
		goto badport;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			goto badport;
		port = port * 10 + (*p - '0');
	}
	if (port > 65535 || (port == 0 && !port0))
		goto badport;
	return NULL;
badport:
	return port0 ? "is not host:port with a port 0..65535" :
	    "is not host:port with a port 1..65535";
}

int
settings_check_address(const char *addr)
{
	if (addr == NULL)
		return -1;
	return settings_address_problem(addr, 0) == NULL ? 0 : -1;
}

const char *
settings_split_address(const char *addr, char *host, size_t hostlen)
{
	const char *colon = strrchr(addr, ':');
	size_t n;

	if (colon == NULL || (n = (size_t)(colon - addr)) >= hostlen)
		return NULL;
	memcpy(host, addr, n);
	host[n] = '\0';
	if (host[0] == '[' && n >= 2) {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	return colon + 1;
}

/* Whether addr's host is 0.0.0.0 or [::], which others cannot dial. */
static int
settings_address_unspecified(const char *addr, const char **port)
{
	const char *colon = strrchr(addr, ':');
	char host[64];
	unsigned char bin[16] = { 0 }, zero[16] = { 0 };
	size_t hlen;

	*port = colon + 1;
	hlen = (size_t)(colon - addr);
	if (hlen >= sizeof(host))
		return 0;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, bin) == 1)
		return memcmp(bin, zero, 4) == 0;
	if (host[0] == '[' && hlen > 2) {
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, bin) == 1)
			return memcmp(bin, zero, 16) == 0;
	}
	return 0;
}

static int
settings_default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > 256 ? 256 : (int)n;
}

static int
settings_file_problem(const char *path, char *why, size_t len)
{
	struct stat st;

	if (access(path, R_OK) != 0 || stat(path, &st) != 0) {
		snprintf(why, len, "%s", strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(why, len, "is a directory");
		return -1;
	}
	return 0;
}

/* Checks one collected value and stores it; name is where it came from. */
static int
settings_apply(struct plat_settings *s, const struct settings_def *d,
    const char *name, const char *v, char *err, size_t errlen)
{
	char show[96], why[128];
	char **sp = (char **)((char *)s + d->off);
	const char *problem;
	char *end;
	long n;

	if (*v == '\0' && (d->flags & SETTINGS_F_EMPTY_UNSET)) {
		free(*sp);
		*sp = NULL;
		return 0;
	}
	settings_show(show, sizeof(show), v);
	switch (d->kind) {
	case SETTINGS_K_ADDR:
		if (d->flags & SETTINGS_F_LIST) {
			/* Each element an address, none empty. */
			char one[300];
			const char *p = v, *comma;

			do {
				size_t n1;

				comma = strchr(p, ',');
				n1 = comma != NULL ? (size_t)(comma - p) :
				    strlen(p);
				snprintf(one, sizeof(one), "%.*s", (int)n1, p);
				problem = n1 >= sizeof(one) ? "is too long" :
				    settings_address_problem(one, 0);
				if (problem != NULL) {
					settings_show(show, sizeof(show), one);
					errbuf_set(err, errlen, "%s: \"%s\" %s",
					    name, show, problem);
					return -1;
				}
				if (comma != NULL)
					p = comma + 1;
			} while (comma != NULL);
			break;
		}
		problem = settings_address_problem(v,
		    d->flags & SETTINGS_F_PORT0);
		if (problem != NULL) {
			errbuf_set(err, errlen, "%s: \"%s\" %s", name, show,
			    problem);
			return -1;
		}
		break;
	case SETTINGS_K_FILE:
		if (settings_file_problem(v, why, sizeof(why)) != 0) {
			errbuf_set(err, errlen, "%s: cannot read \"%s\": %s",
			    name, show, why);
			return -1;
		}
		break;
	case SETTINGS_K_STR:
		break;
	case SETTINGS_K_INT:
		errno = 0;
		n = strtol(v, &end, 10);
		if (!((*v >= '0' && *v <= '9') || *v == '-') || *end != '\0' ||
		    errno != 0 || n < d->min || n > d->max) {
			errbuf_set(err, errlen, "%s: must be an integer "
			    "%d..%d, got \"%s\"", name, d->min, d->max, show);
			return -1;
		}
		*(int *)(void *)((char *)s + d->off) = (int)n;
		return 0;
	case SETTINGS_K_RATE: {
		double r;

		errno = 0;
		r = strtod(v, &end);
		if (end == v || *end != '\0' || errno != 0 || !(r >= 0.0) ||
		    r > 1.0) {
			errbuf_set(err, errlen, "%s: must be a share 0..1, "
			    "got \"%s\"", name, show);
			return -1;
		}
		*(double *)(void *)((char *)s + d->off) = r;
		return 0;
	}
	case SETTINGS_K_LOGFMT:
		if (log_format_parse(v, &s->log_format) != 0) {
			errbuf_set(err, errlen, "%s: must be auto, json or "
			    "text, got \"%s\"", name, show);
			return -1;
		}
		return 0;
	case SETTINGS_K_LOGLVL:
		if (log_level_parse(v, &s->log_level) != 0) {
			errbuf_set(err, errlen, "%s: must be debug, info, "
			    "warn or error, got \"%s\"", name, show);
			return -1;
		}
		return 0;
	case SETTINGS_K_BOOL:
		if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 ||
		    strcmp(v, "yes") == 0 || strcmp(v, "on") == 0)
			n = 1;
		else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 ||
		    strcmp(v, "no") == 0 || strcmp(v, "off") == 0)
			n = 0;
		else {
			errbuf_set(err, errlen, "%s: must be 1 or 0 (true or "
			    "false), got \"%s\"", name, show);
			return -1;
		}
		*(int *)(void *)((char *)s + d->off) = (int)n;
		return 0;
	case SETTINGS_K_HELP:
		return 0;
	}
	free(*sp);
	*sp = settings_strdup(v);
	return 0;
}

static void
settings_defaults(struct plat_settings *s)
{
	const struct settings_def *d;

	for (d = settings_defs; d < settings_defs + SETTINGS_NDEFS; d++) {
		if (d->kind == SETTINGS_K_INT || d->kind == SETTINGS_K_BOOL)
			*(int *)(void *)((char *)s + d->off) = d->dflt;
		else if (d->kind == SETTINGS_K_RATE)
			*(double *)(void *)((char *)s + d->off) =
			    d->dflt / 100.0;
		else if (d->kind == SETTINGS_K_LOGFMT)
			s->log_format = (enum log_format)d->dflt;
		else if (d->kind == SETTINGS_K_LOGLVL)
			s->log_level = (enum log_level)d->dflt;
	}
	/* Not a constant, so not in the table. */
	s->workers = settings_default_workers();
}

/* advertise and node_id follow from listen unless given. */
static void
settings_derive(struct plat_settings *s, const struct settings_spec *spec)
{
	char host[256], buf[600];
	const char *port, *prog = spec->prog != NULL ? spec->prog :
	    "platform";
	size_t plen = strlen(prog);

	if (s->auth_issuer == NULL)
		s->auth_issuer = settings_strdup(SETTINGS_AUTH_ISSUER);
	if (s->auth_audience == NULL)
		s->auth_audience = settings_strdup(SETTINGS_AUTH_AUDIENCE);
	settings_hostname(host, sizeof(host));
	if (settings_address_unspecified(s->listen, &port) &&
	    s->advertise == NULL) {
		snprintf(buf, sizeof(buf), "%s:%s", host, port);
		s->advertise = settings_strdup(buf);
	} else if (s->advertise == NULL)
		s->advertise = settings_strdup(s->listen);
	if (s->node_id == NULL) {
		if (plen > 4 && strcmp(prog + plen - 4, "-srv") == 0)
			plen -= 4;
		snprintf(buf, sizeof(buf), "%.*s-%s-%s", (int)plen, prog,
		    host, port);
		s->node_id = settings_strdup(buf);
	}
}

static const char *
settings_getenv(const char *name)
{
	return getenv(name);
}

/* The table row of a field of struct plat_settings. */
static size_t
settings_index(size_t off)
{
	size_t i;

	for (i = 0; i < SETTINGS_NDEFS; i++)
		if (settings_defs[i].off == off &&
		    settings_defs[i].kind != SETTINGS_K_HELP)
			break;
	return i;
}

/* Index into settings_defs, then spec->extra, of the flag a names. */
static long
settings_lookup(const struct settings_spec *spec, const char *a, size_t len)
{
	size_t i, n = SETTINGS_NDEFS + (spec->extra != NULL ?
	    spec->nextra : 0);
	const char *f;

	for (i = 0; i < n; i++) {
		f = i < SETTINGS_NDEFS ? settings_defs[i].flag :
		    spec->extra[i - SETTINGS_NDEFS].flag;
		if (f != NULL && strlen(f) == len && strncmp(f, a, len) == 0)
			return (long)i;
	}
	return -1;
}

int
settings_parse(struct plat_settings *s, const struct settings_spec *spec,
    int argc, char **argv, settings_getenv_fn getenv_fn,
    char *err, size_t errlen)
{
	const char **val = NULL, **from = NULL, *v, *a, *env;
	size_t i, n, nlen;
	long at;
	int ac, rc = SETTINGS_ERROR;
	char show[96], name[96];

	memset(s, 0, sizeof(*s));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (getenv_fn == NULL)
		getenv_fn = settings_getenv;
	n = SETTINGS_NDEFS + (spec->extra != NULL ? spec->nextra : 0);
	val = calloc(n, sizeof(*val));
	from = calloc(n, sizeof(*from));
	if (val == NULL || from == NULL)
		abort();

	/* Collect: the environment, then argv over it. */
	for (i = 0; i < n; i++) {
		env = i < SETTINGS_NDEFS ? settings_defs[i].env :
		    spec->extra[i - SETTINGS_NDEFS].env;
		if (env != NULL && (v = getenv_fn(env)) != NULL &&
		    *v != '\0') {
			val[i] = v;
			from[i] = env;
		}
	}
	for (ac = 1; ac < argc; ac++) {
		a = argv[ac];
		if (strcmp(a, "-h") == 0) {
			rc = SETTINGS_HELP;
			goto out;
		}
		if (a[0] != '-') {
			errbuf_set(err, errlen, "unexpected argument \"%s\" "
			    "(settings are --flag value)",
			    settings_show(show, sizeof(show), a));
			goto fail;
		}
		nlen = strcspn(a, "=");
		at = settings_lookup(spec, a, nlen);
		if (at < 0 || a[1] != '-') {
			snprintf(name, sizeof(name), "%.*s", (int)nlen, a);
			errbuf_set(err, errlen, "%s: unknown flag (see "
			    "--help)", settings_show(show, sizeof(show), name));
			goto fail;
		}
		if ((size_t)at < SETTINGS_NDEFS &&
		    settings_defs[at].kind == SETTINGS_K_HELP) {
			if (a[nlen] == '=') {
				errbuf_set(err, errlen, "--help: takes no "
				    "value");
				goto fail;
			}
			rc = SETTINGS_HELP;
			goto out;
		}
		if (a[nlen] == '=')
			v = a + nlen + 1;
		else if ((size_t)at < SETTINGS_NDEFS &&
		    settings_defs[at].kind == SETTINGS_K_BOOL)
			v = "1";        /* a switch: its name alone is on */
		else if (ac + 1 < argc && strncmp(argv[ac + 1], "--", 2) != 0)
			v = argv[++ac];
		else {
			/* A flag where the value belongs: it was forgotten. */
			errbuf_set(err, errlen, "%.*s: missing value",
			    (int)nlen, a);
			goto fail;
		}
		val[at] = v;
		from[at] = (size_t)at < SETTINGS_NDEFS ? settings_defs[at].flag :
		    spec->extra[at - SETTINGS_NDEFS].flag;
	}

	/* The service's default listen goes through the same check. */
	i = settings_index(SETTINGS_OFF(listen));
	if (val[i] == NULL && spec->default_listen != NULL) {
		val[i] = spec->default_listen;
		from[i] = settings_defs[i].flag;
	}

	/* Check and store, in table order. */
	settings_defaults(s);
	for (i = 0; i < SETTINGS_NDEFS; i++) {
		if (val[i] != NULL && settings_apply(s, &settings_defs[i],
		    from[i], val[i], err, errlen) != 0)
			goto fail;
	}
	if (s->listen == NULL) {
		errbuf_set(err, errlen, "--listen: not set");
		goto fail;
	}
	if ((s->tls_cert == NULL) != (s->tls_key == NULL)) {
		size_t given = settings_index(s->tls_cert != NULL ?
		    SETTINGS_OFF(tls_cert) : SETTINGS_OFF(tls_key));
		size_t other = settings_index(s->tls_cert != NULL ?
		    SETTINGS_OFF(tls_key) : SETTINGS_OFF(tls_cert));

		errbuf_set(err, errlen, "%s: given without %s (%s)",
		    from[given], settings_defs[other].flag,
		    settings_defs[other].env);
		goto fail;
	}
	if (s->trace_endpoint != NULL &&
	    strcmp(s->trace_endpoint, "discovery") != 0) {
		const char *problem = settings_address_problem(
		    s->trace_endpoint, 0);

		if (problem != NULL) {
			settings_show(show, sizeof(show), s->trace_endpoint);
			errbuf_set(err, errlen, "--trace-endpoint: \"%s\" %s "
			    "(host:port, or discovery)", show, problem);
			goto fail;
		}
	}
	settings_derive(s, spec);

	/* Service options last, so a failure above leaves them untouched. */
	for (i = SETTINGS_NDEFS; i < n; i++) {
		char **dst = spec->extra[i - SETTINGS_NDEFS].value;

		if (val[i] == NULL || dst == NULL)
			continue;
		free(*dst);
		*dst = settings_strdup(val[i]);
	}
	rc = SETTINGS_OK;
	goto out;
fail:
	rc = SETTINGS_ERROR;
out:
	if (rc != SETTINGS_OK)
		settings_free(s);
	free(val);
	free(from);
	return rc;
}

void
settings_usage(FILE *out, const struct settings_spec *spec)
{
	const struct settings_def *d;
	const struct settings_option *o;
	char left[64], dflt[64];
	const char *dt;
	size_t i;

	fprintf(out, "usage: %s [--flag value | --flag=value]...\n\n"
	    "A flag wins over its environment variable.\n\n",
	    spec->prog != NULL ? spec->prog : "server");
	for (d = settings_defs; d < settings_defs + SETTINGS_NDEFS; d++) {
		snprintf(left, sizeof(left), "%s%s%s", d->flag,
		    d->arg != NULL ? " " : "", d->arg != NULL ? d->arg : "");
		fprintf(out, "  %-24s %s\n", left, d->help);
		if (d->env == NULL)
			continue;
		dt = d->dflt_text;
		if (d->kind == SETTINGS_K_ADDR &&
		    (d->flags & SETTINGS_F_PORT0)) {
			dt = spec->default_listen != NULL ?
			    spec->default_listen : "none";
		} else if (dt == NULL) {
			snprintf(dflt, sizeof(dflt), "%d", d->dflt);
			dt = dflt;
		}
		fprintf(out, "  %-24s env %s, default %s\n", "", d->env, dt);
	}
	for (i = 0; spec->extra != NULL && i < spec->nextra; i++) {
		o = &spec->extra[i];
		if (o->flag == NULL)
			continue;
		snprintf(left, sizeof(left), "%s VALUE", o->flag);
		fprintf(out, "  %-24s %s\n", left,
		    o->help != NULL ? o->help : "");
		fprintf(out, "  %-24s env %s, default %s\n", "",
		    o->env != NULL ? o->env : "none",
		    o->value != NULL && *o->value != NULL ? *o->value :
		    "none");
	}
}

void
settings_free(struct plat_settings *s)
{
	if (s == NULL)
		return;
	free(s->listen);
	free(s->advertise);
	free(s->discovery);
	/* A conninfo may carry a password. */
	if (s->database != NULL) {
		explicit_bzero(s->database, strlen(s->database));
		free(s->database);
	}
	free(s->tls_cert);
	free(s->tls_key);
	free(s->tls_ca);
	free(s->metrics_listen);
	free(s->node_id);
	free(s->auth);
	free(s->auth_issuer);
	free(s->auth_audience);
	free(s->credentials);
	free(s->trace_endpoint);
	free(s->statsd);
	memset(s, 0, sizeof(*s));
}
