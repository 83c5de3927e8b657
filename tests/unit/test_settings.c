/* Unit tests for settings: defaults, environment, flags and every check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "platform/settings.h"

/* A fake environment: the real one is never read. */
static const char *fake_env[32][2];
static size_t fake_nenv;

static const char *
fake_getenv(const char *name)
{
	size_t i;

	for (i = 0; i < fake_nenv; i++)
		if (strcmp(fake_env[i][0], name) == 0)
			return fake_env[i][1];
	return NULL;
}

static void
env_set(const char *name, const char *value)
{
	assert_true(fake_nenv < 32);
	fake_env[fake_nenv][0] = name;
	fake_env[fake_nenv][1] = value;
	fake_nenv++;
}

static char *store_limit;	/* a service's own option */
static const struct settings_option extra[] = {
	{ "--store-limit", "PLATFORM_STORE_LIMIT", "entries kept", &store_limit },
};

static const struct settings_spec spec = {
	.prog = "discovery-srv",
	.default_listen = "127.0.0.1:7070",
	.extra = extra,
	.nextra = 1,
};

static struct plat_settings s;
static char err[256];
static char host[256];

static int
setup(void **state)
{
	(void)state;
	fake_nenv = 0;
	memset(&s, 0, sizeof(s));
	err[0] = '\0';
	store_limit = NULL;
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	settings_free(&s);
	free(store_limit);
	store_limit = NULL;
	return 0;
}

/* settings_parse over the NULL-terminated flags after the program name. */
static int
run(const char *first, ...)
{
	char *argv[32];
	const char *a;
	va_list ap;
	int argc = 0;

	settings_free(&s);
	argv[argc++] = (char *)"discovery-srv";
	va_start(ap, first);
	for (a = first; a != NULL; a = va_arg(ap, const char *)) {
		assert_true(argc < 31);
		argv[argc++] = (char *)a;
	}
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return settings_parse(&s, &spec, argc, argv, fake_getenv, err,
	    sizeof(err));
}

#define RUN(...)	run(__VA_ARGS__, (const char *)NULL)
#define RUN0()		run((const char *)NULL)

/* Fails naming err when parse did not fail naming `name`. */
static void
expect_error(int rc, const char *name)
{
	assert_int_equal(rc, SETTINGS_ERROR);
	if (strncmp(err, name, strlen(name)) != 0)
		fail_msg("error does not start with %s: %s", name, err);
	assert_null(strchr(err, '\n'));
	/* A failed parse leaves nothing allocated behind. */
	assert_null(s.listen);
	assert_null(s.node_id);
}

static void
test_defaults(void **state)
{
	char want[512];
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	(void)state;
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_string_equal(s.listen, "127.0.0.1:7070");
	assert_string_equal(s.advertise, "127.0.0.1:7070");
	assert_null(s.discovery);
	assert_null(s.database);
	assert_null(s.tls_cert);
	assert_null(s.tls_key);
	assert_null(s.tls_ca);
	assert_null(s.metrics_listen);
	assert_int_equal(s.log_format, LOG_FORMAT_AUTO);
	assert_int_equal(s.log_level, LOG_LEVEL_INFO);
	assert_int_equal(s.workers, cores < 1 ? 1 : cores > 256 ? 256 : cores);
	assert_int_equal(s.max_message_bytes, 4194304);
	assert_int_equal(s.grace_ms, 10000);
	assert_int_equal(s.register_ttl_s, 15);
	snprintf(want, sizeof(want), "discovery-%s-7070", host);
	assert_string_equal(s.node_id, want);
	assert_null(store_limit);

	settings_free(&s);
	assert_null(s.listen);
	assert_null(s.node_id);
	assert_int_equal(s.workers, 0);
}

static void
test_env_overrides_default(void **state)
{
	char want[512];

	(void)state;
	env_set("PLATFORM_LISTEN", "0.0.0.0:9000");
	env_set("PLATFORM_DISCOVERY", "disco.local:7000");
	env_set("PLATFORM_DATABASE", "host=/tmp dbname=x");
	env_set("PLATFORM_LOG_FORMAT", "text");
	env_set("PLATFORM_LOG_LEVEL", "debug");
	env_set("PLATFORM_WORKERS", "3");
	env_set("PLATFORM_MAX_MESSAGE_BYTES", "1024");
	env_set("PLATFORM_GRACE_MS", "0");
	env_set("PLATFORM_REGISTER_TTL", "60");
	env_set("PLATFORM_METRICS_LISTEN", "127.0.0.1:9100");
	env_set("PLATFORM_STORE_LIMIT", "500");
	env_set("PLATFORM_NODE_ID", "");	/* empty: unset */
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_string_equal(s.listen, "0.0.0.0:9000");
	/* Nobody can dial 0.0.0.0: advertise the hostname. */
	snprintf(want, sizeof(want), "%s:9000", host);
	assert_string_equal(s.advertise, want);
	snprintf(want, sizeof(want), "discovery-%s-9000", host);
	assert_string_equal(s.node_id, want);
	assert_string_equal(s.discovery, "disco.local:7000");
	assert_string_equal(s.database, "host=/tmp dbname=x");
	assert_int_equal(s.log_format, LOG_FORMAT_TEXT);
	assert_int_equal(s.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(s.workers, 3);
	assert_int_equal(s.max_message_bytes, 1024);
	assert_int_equal(s.grace_ms, 0);
	assert_int_equal(s.register_ttl_s, 60);
	assert_string_equal(s.metrics_listen, "127.0.0.1:9100");
	assert_string_equal(store_limit, "500");
}

static void
test_empty_env_is_unset(void **state)
{
	(void)state;
	env_set("PLATFORM_LISTEN", "");
	env_set("PLATFORM_WORKERS", "");
	env_set("PLATFORM_LOG_LEVEL", "");
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_string_equal(s.listen, "127.0.0.1:7070");
	assert_int_equal(s.log_level, LOG_LEVEL_INFO);
}

static void
test_flag_overrides_env(void **state)
{
	(void)state;
	env_set("PLATFORM_WORKERS", "3");
	env_set("PLATFORM_LISTEN", "bad");	/* a flag replaces it unseen */
	env_set("PLATFORM_NODE_ID", "from-env");
	env_set("PLATFORM_DISCOVERY", "disco:7000");
	env_set("PLATFORM_STORE_LIMIT", "500");
	assert_int_equal(RUN("--workers", "5", "--listen", "[::1]:8080",
	    "--discovery=", "--store-limit", "9"), SETTINGS_OK);
	assert_int_equal(s.workers, 5);
	assert_string_equal(s.listen, "[::1]:8080");
	assert_string_equal(s.advertise, "[::1]:8080");
	assert_string_equal(s.node_id, "from-env");
	assert_null(s.discovery);	/* an empty flag clears it */
	assert_string_equal(store_limit, "9");

	/* Without the flag, the bad environment value is an error. */
	assert_int_equal(RUN("--workers", "5"), SETTINGS_ERROR);
	assert_string_equal(err, "PLATFORM_LISTEN: \"bad\" is not host:port");
}

static void
test_equals_form(void **state)
{
	(void)state;
	assert_int_equal(RUN("--listen=127.0.0.1:0", "--workers=7",
	    "--log-format=json", "--log-level=warn", "--node-id=n=1",
	    "--advertise=example.com:443", "--database=postgres://u@h/d?x=1",
	    "--grace-ms=-0"), SETTINGS_OK);
	assert_string_equal(s.listen, "127.0.0.1:0");
	assert_int_equal(s.workers, 7);
	assert_int_equal(s.log_format, LOG_FORMAT_JSON);
	assert_int_equal(s.log_level, LOG_LEVEL_WARN);
	assert_string_equal(s.node_id, "n=1");
	assert_string_equal(s.advertise, "example.com:443");
	assert_string_equal(s.database, "postgres://u@h/d?x=1");
	assert_int_equal(s.grace_ms, 0);
	/* The last of a repeated flag wins. */
	assert_int_equal(RUN("--workers", "2", "--workers=4"), SETTINGS_OK);
	assert_int_equal(s.workers, 4);
}

static void
test_numeric_ranges(void **state)
{
	static const struct {
		const char *flag, *env, *min, *max, *below, *above;
		size_t off;
	} r[] = {
		{ "--workers", "PLATFORM_WORKERS", "1", "256", "0", "257",
		  offsetof(struct plat_settings, workers) },
		{ "--max-message-bytes", "PLATFORM_MAX_MESSAGE_BYTES", "1024",
		  "67108864", "1023", "67108865",
		  offsetof(struct plat_settings, max_message_bytes) },
		{ "--grace-ms", "PLATFORM_GRACE_MS", "0", "600000", "-1",
		  "600001", offsetof(struct plat_settings, grace_ms) },
		{ "--register-ttl", "PLATFORM_REGISTER_TTL", "3", "3600", "2",
		  "3601", offsetof(struct plat_settings, register_ttl_s) },
	};
	static const char *junk[] = { "abc", "", "5x", " 5", "+5", "0x10",
	    "1.5", "99999999999999999999", "-99999999999999999999" };
	char want[160];
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		const int *field = (const int *)(const void *)
		    ((const char *)&s + r[i].off);

		assert_int_equal(RUN(r[i].flag, r[i].min), SETTINGS_OK);
		assert_int_equal(*field, atoi(r[i].min));
		assert_int_equal(RUN(r[i].flag, r[i].max), SETTINGS_OK);
		assert_int_equal(*field, atoi(r[i].max));

		expect_error(RUN(r[i].flag, r[i].below), r[i].flag);
		snprintf(want, sizeof(want), "%s: must be an integer %s..%s, "
		    "got \"%s\"", r[i].flag, r[i].min, r[i].max, r[i].below);
		assert_string_equal(err, want);
		expect_error(RUN(r[i].flag, r[i].above), r[i].flag);
		for (j = 0; j < sizeof(junk) / sizeof(junk[0]); j++) {
			char eq[64];

			snprintf(eq, sizeof(eq), "%s=%s", r[i].flag, junk[j]);
			expect_error(RUN(eq), r[i].flag);
		}

		/* The environment is held to the same ranges. */
		fake_nenv = 0;
		env_set(r[i].env, r[i].above);
		expect_error(RUN0(), r[i].env);
		fake_nenv = 0;
		env_set(r[i].env, r[i].max);
		assert_int_equal(RUN0(), SETTINGS_OK);
		assert_int_equal(*field, atoi(r[i].max));
		fake_nenv = 0;
	}
	expect_error(RUN("--workers", "abc"), "--workers");
	assert_string_equal(err, "--workers: must be an integer 1..256, "
	    "got \"abc\"");
}

static void
test_log_values(void **state)
{
	(void)state;
	expect_error(RUN("--log-format", "xml"), "--log-format");
	expect_error(RUN("--log-level", "loud"), "--log-level");
	env_set("PLATFORM_LOG_LEVEL", "verbose");
	expect_error(RUN0(), "PLATFORM_LOG_LEVEL");
	assert_non_null(strstr(err, "\"verbose\""));
	assert_int_equal(RUN("--log-level", "error"), SETTINGS_OK);
	assert_int_equal(s.log_level, LOG_LEVEL_ERROR);
}

static void
test_guard_settings(void **state)
{
	(void)state;
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_null(s.auth);
	assert_null(s.credentials);
	assert_string_equal(s.auth_issuer, "platform-auth");
	assert_string_equal(s.auth_audience, "platform");
	assert_int_equal(s.insecure_no_auth, 0);
	/* A switch: its name alone is on, and it takes no value after it. */
	assert_int_equal(RUN("--insecure-no-auth", "--auth", "a:1"),
	    SETTINGS_OK);
	assert_int_equal(s.insecure_no_auth, 1);
	assert_string_equal(s.auth, "a:1");
	assert_int_equal(RUN("--insecure-no-auth=false"), SETTINGS_OK);
	assert_int_equal(s.insecure_no_auth, 0);
	expect_error(RUN("--insecure-no-auth=maybe"), "--insecure-no-auth");
	expect_error(RUN("--auth", "nohost"), "--auth");
	env_set("PLATFORM_INSECURE_NO_AUTH", "1");
	env_set("PLATFORM_AUTH_ISSUER", "me");
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_int_equal(s.insecure_no_auth, 1);
	assert_string_equal(s.auth_issuer, "me");
	assert_int_equal(RUN("--insecure-no-auth=0"), SETTINGS_OK);
	assert_int_equal(s.insecure_no_auth, 0);
}

static void
test_check_address(void **state)
{
	static const char *good[] = { "localhost:1", "127.0.0.1:65535",
	    "[::1]:80", "[::]:7070", "[fe80::1:2]:443", "a-b.c_d.example:80",
	    "0.0.0.0:7070", "10.0.0.1:08080" };
	static const char *bad[] = { "", "localhost", "localhost:",
	    ":7070", "localhost:0", "localhost:65536", "localhost:99999999",
	    "localhost:-1", "localhost:+80", "localhost:8o", "::1:80",
	    "[::1:80", "::1]:80", "[]:80", "[::1]x:80", "[zz::1]:80",
	    "[127.0.0.1]:80", "a b:80", "a/b:80", "h\n:80", "999.1.1.1:80",
	    "1.2.3:80", "[::1]:" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (settings_check_address(good[i]) != 0)
			fail_msg("rejected %s", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (settings_check_address(bad[i]) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(settings_check_address(NULL), -1);
}

static void
test_bad_addresses(void **state)
{
	(void)state;
	/* Port 0 is "any free port", for --listen only. */
	assert_int_equal(RUN("--listen", "127.0.0.1:0"), SETTINGS_OK);
	assert_string_equal(s.listen, "127.0.0.1:0");
	assert_int_equal(RUN("--listen", "[::]:0"), SETTINGS_OK);
	expect_error(RUN("--discovery", "127.0.0.1:0"), "--discovery");
	expect_error(RUN("--advertise", "h:0"), "--advertise");
	expect_error(RUN("--metrics-listen", "h:0"), "--metrics-listen");

	expect_error(RUN("--listen", "localhost"), "--listen");
	assert_string_equal(err, "--listen: \"localhost\" is not host:port");
	expect_error(RUN("--listen", "h:65536"), "--listen");
	expect_error(RUN("--listen", ":7070"), "--listen");
	expect_error(RUN("--listen", ""), "--listen");
	expect_error(RUN("--listen", "[::1:80"), "--listen");
	expect_error(RUN("--listen", "::1:80"), "--listen");
	expect_error(RUN("--discovery", "disco"), "--discovery");
	expect_error(RUN("--discovery", "disco:65536"), "--discovery");
	expect_error(RUN("--advertise", "[::1"), "--advertise");

	env_set("PLATFORM_LISTEN", "foo");
	expect_error(RUN0(), "PLATFORM_LISTEN");
	assert_string_equal(err, "PLATFORM_LISTEN: \"foo\" is not host:port");
}

static void
test_unknown_and_stray(void **state)
{
	(void)state;
	expect_error(RUN("--bogus", "1"), "--bogus");
	assert_non_null(strstr(err, "unknown"));
	expect_error(RUN("--bogus=1"), "--bogus");
	assert_null(strstr(err, "=1"));
	expect_error(RUN("-x"), "-x");
	expect_error(RUN("--"), "--");
	expect_error(RUN("--listen-x", "h:1"), "--listen-x");
	expect_error(RUN("stray"), "unexpected argument \"stray\"");
	expect_error(RUN("--workers", "2", "3"), "unexpected argument \"3\"");
}

static void
test_missing_value(void **state)
{
	(void)state;
	expect_error(RUN("--listen"), "--listen");
	assert_string_equal(err, "--listen: missing value");
	expect_error(RUN("--database", "--workers", "3"), "--database");
	assert_string_equal(err, "--database: missing value");
	expect_error(RUN("--store-limit"), "--store-limit");
}

static void
test_help(void **state)
{
	(void)state;
	assert_int_equal(RUN("--help"), SETTINGS_HELP);
	assert_int_equal(RUN("-h"), SETTINGS_HELP);
	assert_int_equal(RUN("--workers", "4", "--help"), SETTINGS_HELP);
	/* A bad environment does not stand in the way of --help. */
	env_set("PLATFORM_WORKERS", "zero");
	assert_int_equal(RUN("--help", "--bogus"), SETTINGS_HELP);
	assert_null(s.listen);
	expect_error(RUN("--help=yes"), "--help");
}

static void
test_usage(void **state)
{
	static const char *names[] = { "--listen", "PLATFORM_LISTEN",
	    "--advertise", "PLATFORM_ADVERTISE", "--discovery",
	    "PLATFORM_DISCOVERY", "--database", "PLATFORM_DATABASE",
	    "--log-format", "PLATFORM_LOG_FORMAT", "--log-level",
	    "PLATFORM_LOG_LEVEL", "--tls-cert", "PLATFORM_TLS_CERT",
	    "--tls-key", "PLATFORM_TLS_KEY", "--tls-ca", "PLATFORM_TLS_CA",
	    "--metrics-listen", "PLATFORM_METRICS_LISTEN", "--node-id",
	    "PLATFORM_NODE_ID", "--workers", "PLATFORM_WORKERS",
	    "--max-message-bytes", "PLATFORM_MAX_MESSAGE_BYTES", "--grace-ms",
	    "PLATFORM_GRACE_MS", "--register-ttl", "PLATFORM_REGISTER_TTL",
	    "--help", "--store-limit", "PLATFORM_STORE_LIMIT", "entries kept",
	    "127.0.0.1:7070", "4194304", "10000", "discovery-srv" };
	char *text = NULL;
	size_t len = 0, i;
	FILE *f;

	(void)state;
	f = open_memstream(&text, &len);
	assert_non_null(f);
	settings_usage(f, &spec);
	fclose(f);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strstr(text, names[i]) == NULL)
			fail_msg("usage lacks %s:\n%s", names[i], text);
	free(text);
}

static char tmpdir[] = "/tmp/test_settings.XXXXXX";
static char cert[64], key[64], ca[64];

static void
make_file(const char *path)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("-----BEGIN PEM-----\n", f);
	fclose(f);
}

static int
tls_setup(void **state)
{
	setup(state);
	assert_non_null(mkdtemp(tmpdir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", tmpdir);
	make_file(cert);
	make_file(key);
	make_file(ca);
	return 0;
}

static int
tls_teardown(void **state)
{
	teardown(state);
	unlink(cert);
	unlink(key);
	unlink(ca);
	rmdir(tmpdir);
	return 0;
}

static void
test_tls(void **state)
{
	char missing[96];

	(void)state;
	assert_int_equal(RUN("--tls-cert", cert, "--tls-key", key,
	    "--tls-ca", ca), SETTINGS_OK);
	assert_string_equal(s.tls_cert, cert);
	assert_string_equal(s.tls_key, key);
	assert_string_equal(s.tls_ca, ca);
	/* A CA alone is fine: it verifies the servers this one calls. */
	assert_int_equal(RUN("--tls-ca", ca), SETTINGS_OK);

	expect_error(RUN("--tls-cert", cert), "--tls-cert");
	assert_non_null(strstr(err, "--tls-key"));
	expect_error(RUN("--tls-key", key), "--tls-key");
	assert_non_null(strstr(err, "--tls-cert"));
	env_set("PLATFORM_TLS_KEY", key);
	expect_error(RUN0(), "PLATFORM_TLS_KEY");
	assert_int_equal(RUN("--tls-cert", cert), SETTINGS_OK);
	assert_string_equal(s.tls_key, key);
	fake_nenv = 0;

	snprintf(missing, sizeof(missing), "%s/nope.pem", tmpdir);
	expect_error(RUN("--tls-cert", missing, "--tls-key", key),
	    "--tls-cert");
	assert_non_null(strstr(err, missing));
	expect_error(RUN("--tls-cert", cert, "--tls-key", missing),
	    "--tls-key");
	expect_error(RUN("--tls-cert", tmpdir, "--tls-key", key),
	    "--tls-cert");
	expect_error(RUN("--tls-ca", missing), "--tls-ca");
	if (geteuid() != 0) {
		/* root reads anything, so this only means something as a user. */
		assert_int_equal(chmod(cert, 0), 0);
		expect_error(RUN("--tls-cert", cert, "--tls-key", key),
		    "--tls-cert");
		chmod(cert, 0600);
	}
}

static void
test_extra(void **state)
{
	(void)state;
	/* A value already there must be malloc'd and is freed on replace. */
	store_limit = strdup("10");
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_string_equal(store_limit, "10");
	assert_int_equal(RUN("--store-limit=20"), SETTINGS_OK);
	assert_string_equal(store_limit, "20");
	env_set("PLATFORM_STORE_LIMIT", "30");
	assert_int_equal(RUN0(), SETTINGS_OK);
	assert_string_equal(store_limit, "30");
	assert_int_equal(RUN("--store-limit", "40"), SETTINGS_OK);
	assert_string_equal(store_limit, "40");
	/* A failed parse leaves it alone. */
	expect_error(RUN("--store-limit", "50", "--workers", "0"),
	    "--workers");
	assert_string_equal(store_limit, "40");
}

static void
test_small_err_buffer(void **state)
{
	char argv0[] = "x", argv1[] = "--bogus-flag-with-a-long-name";
	char *argv[] = { argv0, argv1, NULL };
	char small[8];

	(void)state;
	assert_int_equal(settings_parse(&s, &spec, 2, argv, fake_getenv,
	    small, sizeof(small)), SETTINGS_ERROR);
	assert_string_equal(small, "--bogus");
	assert_int_equal(settings_parse(&s, &spec, 2, argv, fake_getenv,
	    NULL, 0), SETTINGS_ERROR);
}

static void
test_split_address(void **state)
{
	char h[16];

	(void)state;
	assert_string_equal(settings_split_address("a.b:80", h,
	    sizeof(h)), "80");
	assert_string_equal(h, "a.b");
	assert_string_equal(settings_split_address("[::1]:9", h,
	    sizeof(h)), "9");
	assert_string_equal(h, "::1");
	assert_string_equal(settings_split_address(":7", h, sizeof(h)),
	    "7");
	assert_string_equal(h, "");
	assert_null(settings_split_address("nocolon", h, sizeof(h)));
	assert_null(settings_split_address("a-very-long-host-name:1", h,
	    sizeof(h)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_overrides_default,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_env_is_unset, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_flag_overrides_env, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_equals_form, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_numeric_ranges, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_log_values, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_guard_settings, setup,
		    teardown),
		cmocka_unit_test(test_check_address),
		cmocka_unit_test_setup_teardown(test_bad_addresses, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_stray, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_missing_value, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_help, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tls, tls_setup,
		    tls_teardown),
		cmocka_unit_test_setup_teardown(test_extra, setup, teardown),
		cmocka_unit_test(test_split_address),
		cmocka_unit_test_setup_teardown(test_small_err_buffer, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
