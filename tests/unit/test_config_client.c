/*
 * Unit tests for the config client's local logic: the order of the
 * sources, environment keys and values, file errors, selectors, and the
 * fallback to the cache file when config-srv cannot be reached (a port
 * nobody listens on). The live config-srv path is an integration test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "platform/client.h"
#include "platform/config_client.h"
#include "platform/log.h"

static char tmpdir[] = "/tmp/test_config_client.XXXXXX";

static int
setup_all(void **state)
{
	(void)state;
	/* The fallbacks log warnings by design; keep the output for
	 * failures. */
	log_setup(LOG_FORMAT_TEXT, LOG_LEVEL_ERROR, "test_config_client");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int
teardown_all(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to tmpdir/name; returns the path (static buffer). */
static const char *
write_file(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	return path;
}

/* host:port of a loopback port nobody listens on (bound, then closed). */
static void
closed_port(char *buf, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(buf, len, "127.0.0.1:%u", ntohs(sa.sin_port));
}

static void
assert_json_eq(json_t *got, const char *want_text)
{
	json_t *want = json_loads(want_text, JSON_DECODE_ANY, NULL);
	char *g = got != NULL ? json_dumps(got, JSON_SORT_KEYS |
	    JSON_ENCODE_ANY) : NULL;

	assert_non_null(want);
	if (got == NULL || !json_equal(got, want))
		fail_msg("got %s, want %s", g != NULL ? g : "NULL", want_text);
	free(g);
	json_decref(want);
	json_decref(got);
}

static void
test_precedence(void **state)
{
	const char *env[] = { "APP_DB__PORT=3", "APP_C=env", NULL };
	struct plat_config_opts o = {
		.defaults_json = "{\"a\":1,\"c\":\"def\","
		    "\"db\":{\"host\":\"d\",\"port\":1,\"pool\":4}}",
		.env_prefix = "APP_",
		.envp = env,
	};
	char err[256] = "";
	plat_config *cfg;

	(void)state;
	o.file = write_file("prec.json", "{\"db\":{\"host\":\"f\",\"port\":2},"
	    "\"b\":[1,2],\"c\":\"file\"}");
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	/* Objects merge key by key; the later source wins each key. */
	assert_json_eq(plat_config_get(cfg, NULL), "{\"a\":1,\"b\":[1,2],"
	    "\"c\":\"env\",\"db\":{\"host\":\"f\",\"port\":3,\"pool\":4}}");
	assert_int_equal(plat_config_stale(cfg), 0);
	plat_config_free(cfg);
}

static void
test_env_keys_and_values(void **state)
{
	const char *env[] = {
		"APP_DB__HOST=x",
		"APP_MAX_CONNS=42",
		"APP_ON=true",
		"APP_RATIO=0.5",
		"APP_LIST=[1, \"two\"]",
		"APP_OBJ={\"k\":{\"v\":null}}",
		"APP_WORDS=hello world",
		"APP_ALMOST=12abc",
		"APP_QUOTED=\"007\"",
		"APP_EMPTY=",
		"APP_A__B__C=deep",
		"OTHER_X=1",                    /* another prefix */
		"APP_=1",                       /* no key */
		"APP_BAD____X=1",               /* an empty segment */
		"APP_TRAIL__=1",
		"app_lower=1",                  /* the prefix is exact */
		NULL,
	};
	struct plat_config_opts o = { .env_prefix = "APP_", .envp = env };
	char err[256] = "";
	plat_config *cfg = plat_config_new(&o);

	(void)state;
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	assert_json_eq(plat_config_get(cfg, NULL), "{"
	    "\"db\":{\"host\":\"x\"},"
	    "\"max_conns\":42,"
	    "\"on\":true,"
	    "\"ratio\":0.5,"
	    "\"list\":[1,\"two\"],"
	    "\"obj\":{\"k\":{\"v\":null}},"
	    "\"words\":\"hello world\","
	    "\"almost\":\"12abc\","
	    "\"quoted\":\"007\","
	    "\"empty\":\"\","
	    "\"a\":{\"b\":{\"c\":\"deep\"}}}");
	plat_config_free(cfg);
}

/* MYAPP_DB=1 and MYAPP_DB__HOST=x: applied in name order whatever the
 * order of the environment, so the object wins, every time. */
static void
test_env_order(void **state)
{
	const char *env1[] = { "APP_DB__HOST=x", "APP_DB=1", NULL };
	const char *env2[] = { "APP_DB=1", "APP_DB__HOST=x", NULL };
	const char *const *envs[] = { env1, env2 };
	char err[256];

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct plat_config_opts o = { .env_prefix = "APP_",
		    .envp = envs[i] };
		plat_config *cfg = plat_config_new(&o);

		assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
		assert_json_eq(plat_config_get(cfg, NULL),
		    "{\"db\":{\"host\":\"x\"}}");
		plat_config_free(cfg);
	}
}

static void
test_bad_file(void **state)
{
	struct plat_config_opts o = { 0 };
	char err[256] = "", path[256];
	plat_config *cfg;

	(void)state;
	/* Broken JSON: the file, line and column are named. */
	o.file = write_file("bad.json", "{\n  \"a\": 1,\n  \"b\": \n}\n");
	snprintf(path, sizeof(path), "%s", o.file);
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "line 4"));
	plat_config_free(cfg);

	/* Not an object at the top. */
	o.file = write_file("array.json", "[1, 2]");
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "array.json"));
	plat_config_free(cfg);

	/* Missing: an error unless optional. */
	snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
	o.file = path;
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "missing.json"));
	plat_config_free(cfg);
	o.file_optional = 1;
	o.defaults_json = "{\"a\":1}";
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	assert_int_equal(plat_config_get_int(cfg, "a", 0), 1);
	plat_config_free(cfg);

	/* Bad defaults are the program's bug: said, not skipped. */
	memset(&o, 0, sizeof(o));
	o.defaults_json = "{\"a\":";
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "defaults"));
	plat_config_free(cfg);
	o.defaults_json = "[1]";
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a JSON object"));
	plat_config_free(cfg);
}

/* A reload that fails leaves the values loaded before. */
static void
test_failed_reload_keeps_values(void **state)
{
	struct plat_config_opts o = { 0 };
	char err[256] = "";
	plat_config *cfg;

	(void)state;
	o.file = write_file("reload.json", "{\"v\":1}");
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	write_file("reload.json", "{\"v\":");
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_int_equal(plat_config_get_int(cfg, "v", 0), 1);
	write_file("reload.json", "{\"v\":2}");
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	assert_int_equal(plat_config_get_int(cfg, "v", 0), 2);
	plat_config_free(cfg);
}

static void
test_selectors(void **state)
{
	struct plat_config_opts o = {
		.defaults_json = "{\"db\":{\"host\":\"h\",\"port\":5432,"
		    "\"tls\":false},\"servers\":[{\"port\":1},{\"port\":2}],"
		    "\"ratio\":1.5}",
	};
	char err[256], *s;
	plat_config *cfg = plat_config_new(&o);
	json_t *copy;

	(void)state;
	/* Nothing before the first load. */
	assert_null(plat_config_get(cfg, "db"));
	assert_int_equal(plat_config_get_int(cfg, "db.port", -1), -1);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);

	assert_json_eq(plat_config_get(cfg, "db.host"), "\"h\"");
	assert_json_eq(plat_config_get(cfg, "servers.1.port"), "2");
	assert_json_eq(plat_config_get(cfg, "servers.1"), "{\"port\":2}");
	assert_json_eq(plat_config_get(cfg, ""), o.defaults_json);
	assert_null(plat_config_get(cfg, "db.nope"));
	assert_null(plat_config_get(cfg, "servers.2.port"));
	assert_null(plat_config_get(cfg, "servers.x"));
	assert_null(plat_config_get(cfg, "db.host.deeper"));

	/* A copy: changing it changes nothing inside. */
	copy = plat_config_get(cfg, "db");
	json_object_set_new(copy, "host", json_string("changed"));
	json_decref(copy);
	assert_json_eq(plat_config_get(cfg, "db.host"), "\"h\"");

	s = plat_config_get_string(cfg, "db.host", "dflt");
	assert_string_equal(s, "h");
	free(s);
	s = plat_config_get_string(cfg, "db.port", "dflt"); /* not a string */
	assert_string_equal(s, "dflt");
	free(s);
	assert_null(plat_config_get_string(cfg, "db.user", NULL));
	assert_int_equal(plat_config_get_int(cfg, "db.port", 0), 5432);
	assert_int_equal(plat_config_get_int(cfg, "ratio", 7), 7);
	assert_int_equal(plat_config_get_bool(cfg, "db.tls", 1), 0);
	assert_int_equal(plat_config_get_bool(cfg, "db.host", 1), 1);
	plat_config_free(cfg);
}

/* Options for config-srv at a closed port, with a cache file. */
static void
remote_opts(struct plat_config_opts *o, plat_client *c, char *addr,
    size_t alen, const char *cache)
{
	static const char *const paths[] = { "payments/limits", "feature",
	    NULL };

	closed_port(addr, alen);
	memset(o, 0, sizeof(*o));
	o->client = c;
	o->address = addr;
	o->namespace_ = "prod/eu";
	o->paths = paths;
	o->cache_file = cache;
	o->deadline_ms = 1000;
}

static void
test_cache_fallback(void **state)
{
	struct plat_client_opts co = { .default_deadline_ms = 1000 };
	plat_client *c = plat_client_new(&co);
	struct plat_config_opts o;
	char addr[64], cache[256], err[256] = "";
	plat_config *cfg;

	(void)state;
	snprintf(cache, sizeof(cache), "%s", write_file("cache.json",
	    "{\"namespace\":\"prod/eu\","
	    "\"paths\":[\"payments/limits\",\"feature\"],\"revision\":41,"
	    "\"values\":{\"payments\":{\"limits\":{\"daily\":100}},"
	    "\"feature\":{\"on\":true}}}"));
	remote_opts(&o, c, addr, sizeof(addr), cache);
	o.defaults_json = "{\"payments\":{\"limits\":{\"daily\":1,"
	    "\"monthly\":9}},\"name\":\"svc\"}";
	cfg = plat_config_new(&o);

	/* config-srv down: the load succeeds on the other sources and the
	 * cached config-srv part, which wins over them, and says stale. */
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	assert_int_equal(plat_config_stale(cfg), 1);
	assert_int_equal(plat_config_revision(cfg), 41);
	assert_json_eq(plat_config_get(cfg, NULL), "{\"name\":\"svc\","
	    "\"payments\":{\"limits\":{\"daily\":100,\"monthly\":9}},"
	    "\"feature\":{\"on\":true}}");

	/* The watch keeps trying in the background and stops cleanly. */
	assert_int_equal(plat_config_watch_start(cfg), 0);
	assert_int_equal(plat_config_watch_start(cfg), 0);
	usleep(300 * 1000);
	assert_int_equal(plat_config_stale(cfg), 1);
	assert_int_equal(plat_config_get_int(cfg, "payments.limits.daily",
	    0), 100);
	plat_config_free(cfg);
	plat_client_free(c);
}

/* A cache file of another namespace or other paths is not used; without
 * any, the load still succeeds on the local sources. */
static void
test_cache_mismatch_and_missing(void **state)
{
	plat_client *c = plat_client_new(NULL);
	struct plat_config_opts o;
	char addr[64], cache[256], err[256] = "";
	const char *bad[] = {
		"{\"namespace\":\"prod\",\"paths\":[\"payments/limits\","
		    "\"feature\"],\"values\":{\"x\":1}}",
		"{\"namespace\":\"prod/eu\",\"paths\":[\"feature\"],"
		    "\"values\":{\"x\":1}}",
		"{\"namespace\":\"prod/eu\",\"paths\":[\"payments/limits\","
		    "\"feature\"],\"values\":[1]}",
		"not json",
		NULL,   /* no file at all */
	};
	plat_config *cfg;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bad[i] != NULL)
			snprintf(cache, sizeof(cache), "%s",
			    write_file("other.json", bad[i]));
		else
			snprintf(cache, sizeof(cache), "%s/none.json", tmpdir);
		remote_opts(&o, c, addr, sizeof(addr), cache);
		o.defaults_json = "{\"name\":\"svc\"}";
		cfg = plat_config_new(&o);
		assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
		assert_int_equal(plat_config_stale(cfg), 1);
		assert_json_eq(plat_config_get(cfg, NULL),
		    "{\"name\":\"svc\"}");
		plat_config_free(cfg);
	}
	plat_client_free(c);
}

/* config-srv named half-way is a mistake the load reports. */
static void
test_remote_options_checked(void **state)
{
	static const char *const paths[] = { "a", NULL };
	static const char *const empty_path[] = { "", NULL };
	plat_client *c = plat_client_new(NULL);
	struct plat_config_opts o = { .namespace_ = "prod" };
	char err[256] = "";
	plat_config *cfg;

	(void)state;
	cfg = plat_config_new(&o);              /* no paths, no client */
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "client"));
	assert_int_equal(plat_config_watch_start(cfg), -1);
	plat_config_free(cfg);

	o.client = c;                           /* still no paths */
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "paths"));
	plat_config_free(cfg);

	o.paths = empty_path;
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "paths[0]"));
	plat_config_free(cfg);

	/* By name, with a client that has no discovery: a setup mistake,
	 * not an outage to ride out. */
	o.paths = paths;
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "FAILED_PRECONDITION"));
	plat_config_free(cfg);

	/* No config-srv at all: no watch to start, nothing stale. */
	memset(&o, 0, sizeof(o));
	cfg = plat_config_new(&o);
	assert_int_equal(plat_config_load(cfg, err, sizeof(err)), 0);
	assert_int_equal(plat_config_watch_start(cfg), -1);
	assert_int_equal(plat_config_stale(cfg), 0);
	assert_json_eq(plat_config_get(cfg, NULL), "{}");
	plat_config_free(cfg);
	plat_client_free(c);
}

static void
on_change(plat_config *cfg, void *arg)
{
	(void)cfg;
	(*(int *)arg)++;
}

static void
test_callbacks_bounded(void **state)
{
	plat_config *cfg = plat_config_new(NULL);
	int n = 0;

	(void)state;
	for (int i = 0; i < PLAT_CONFIG_MAX_CALLBACKS; i++)
		assert_int_equal(plat_config_on_change(cfg, on_change, &n), 0);
	assert_int_equal(plat_config_on_change(cfg, on_change, &n), -1);
	assert_int_equal(plat_config_on_change(cfg, NULL, &n), -1);
	plat_config_free(cfg);
	plat_config_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_env_keys_and_values),
		cmocka_unit_test(test_env_order),
		cmocka_unit_test(test_bad_file),
		cmocka_unit_test(test_failed_reload_keeps_values),
		cmocka_unit_test(test_selectors),
		cmocka_unit_test(test_cache_fallback),
		cmocka_unit_test(test_cache_mismatch_and_missing),
		cmocka_unit_test(test_remote_options_checked),
		cmocka_unit_test(test_callbacks_bounded),
	};

	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
