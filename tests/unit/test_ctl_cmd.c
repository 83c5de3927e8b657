/*
 * Unit tests for platformctl's command table (cli/ctl_cmd.c): the one
 * parser, help printer and usage error, driven with a made-up group
 * ("kv get|put") and a plain command ("ping"), as a new server's
 * commands would be added.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ctl_cmd.h"

struct kv_flags {
	const char *ttl, *all, *version, *addr;
	struct ctl_list tag;
};

/* What the last run function saw (copied: the parser frees it all). */
static struct {
	int calls;
	const char *cmd;
	int argc;
	const char *argv[8];
	struct kv_flags f;
	struct ctl_globals g;
	int rc;				/* what the run function returns */
} seen;

static const struct ctl_group kv_group;

static int
record(const struct ctl_run *r, int argc, char **argv)
{
	seen.calls++;
	seen.cmd = r->cmd->sub != NULL ? r->cmd->sub : r->cmd->word;
	seen.argc = argc;
	for (int i = 0; i < argc && i < 8; i++)
		seen.argv[i] = argv[i];
	if (r->group == &kv_group)
		memcpy(&seen.f, r->flags, sizeof(seen.f));
	seen.g = *r->g;
	return seen.rc;
}

#define F(name, kind, arg, cmds) { "--" #name, NULL, kind, arg, NULL, cmds, \
	"help of --" #name, offsetof(struct kv_flags, name) }

static const struct ctl_flag kv_flags[] = {
	F(ttl, CTL_VALUE, "SECONDS", "put"),
	F(all, CTL_SWITCH, NULL, NULL),
	F(version, CTL_VALUE, "N", "kv.get"),
	F(tag, CTL_LIST, "T", NULL),
	{ "--addr", NULL, CTL_VALUE, "ADDR", "TEST_CTL_KV", NULL,
	    "help of --addr", offsetof(struct kv_flags, addr) },
};

#undef F

static const struct ctl_cmd kv_cmds[] = {
	{ "kv", NULL, "COMMAND ...", 0, 0, NULL, "kv-srv: get, put" },
	{ "kv", "get", "KEY", 1, 1, record, "read a key" },
	{ "kv", "put", "KEY [VALUE]", 1, 2, record, "write a key" },
};

static int
kv_check(const struct ctl_run *r)
{
	const struct kv_flags *f = r->flags;

	if (f->addr != NULL && strchr(f->addr, ':') == NULL)
		return ctl_usage(r->group, "--addr must be host:port");
	return CTL_OK;
}

static const struct ctl_group kv_group = {
	.name = "kv",
	.hint = "kv help",
	.head = "Usage: platformctl kv COMMAND\n\nCommands:\n",
	.foot = "\nThe kv foot.\n",
	.width = 20,
	.show_cmds = 1,
	.cmds = CTL_TABLE(kv_cmds),
	.flags = CTL_TABLE(kv_flags),
	.flags_size = sizeof(struct kv_flags),
	.check = kv_check,
};

static const struct ctl_cmd ping_cmds[] = {
	{ "ping", NULL, "[ADDR]", 0, 1, record, "ping a server" },
};

static const struct ctl_group ping_group = {
	.cmds = CTL_TABLE(ping_cmds),
};

/* What one command line did: its exit status, stdout and stderr. */
struct outcome {
	int rc;
	char out[8192], err[2048];
};

static void
slurp(FILE *f, char *buf, size_t len)
{
	size_t n;

	rewind(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

/* Runs "platformctl ARGS..." (NULL-ended) against both groups. */
static struct outcome *
run(struct outcome *o, ...)
{
	struct ctl_cli cli = { .ngroups = 0 };
	char *argv[80];
	int argc = 0, rc;
	va_list ap;

	argv[argc++] = "platformctl";
	va_start(ap, o);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	rc = seen.rc;
	memset(&seen, 0, sizeof(seen));
	seen.rc = rc;
	ctl_cli_add(&cli, &ping_group);
	ctl_cli_add(&cli, &kv_group);
	cli.out = tmpfile();
	cli.err = tmpfile();
	assert_non_null(cli.out);
	assert_non_null(cli.err);
	o->rc = ctl_cli_run(&cli, argc, argv);
	slurp(cli.out, o->out, sizeof(o->out));
	slurp(cli.err, o->err, sizeof(o->err));
	return o;
}

/* A usage error: exit 2, the one line, the hint, and no command run. */
static void
assert_usage(const struct outcome *o, const char *line, const char *hint)
{
	char want[512];

	snprintf(want, sizeof(want), "%s\nTry 'platformctl %s' for more "
	    "information.\n", line, hint);
	assert_int_equal(o->rc, CTL_USAGE);
	assert_string_equal(o->err, want);
	assert_int_equal(seen.calls, 0);
}

static int
setup(void **state)
{
	(void)state;
	unsetenv("PLATFORM_DISCOVERY");
	unsetenv("PLATFORM_CONFIG");
	unsetenv("PLATFORM_AUTH");
	unsetenv("PLATFORM_TLS_CA");
	unsetenv("PLATFORM_TLS_CERT");
	unsetenv("PLATFORM_TLS_KEY");
	unsetenv("TEST_CTL_KV");
	seen.rc = 0;
	return 0;
}

static void
test_flags_before_and_after_positionals(void **state)
{
	struct outcome o;

	(void)state;
	run(&o, "-o", "json", "kv", "--ttl", "5", "put", "k", "--tag", "a",
	    "v", "--timeout", "100", "--tag", "b", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.cmd, "put");
	assert_int_equal(seen.argc, 2);
	assert_string_equal(seen.argv[0], "k");
	assert_string_equal(seen.argv[1], "v");
	assert_string_equal(seen.f.ttl, "5");
	assert_int_equal(seen.f.tag.n, 2);
	assert_string_equal(seen.f.tag.v[0], "a");
	assert_string_equal(seen.f.tag.v[1], "b");
	assert_null(seen.f.all);
	assert_int_equal(seen.g.json, 1);
	assert_int_equal(seen.g.timeout_ms, 100);
	assert_string_equal(seen.g.discovery, "127.0.0.1:7070");

	/* Global flags after a plain command and its argument. */
	run(&o, "ping", "h:1", "--discovery", "d:2", "--config", "c:3", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.cmd, "ping");
	assert_int_equal(seen.argc, 1);
	assert_string_equal(seen.argv[0], "h:1");
	assert_string_equal(seen.g.discovery, "d:2");
	assert_string_equal(seen.g.config, "c:3");
	assert_int_equal(seen.g.json, 0);
	assert_int_equal(seen.g.timeout_ms, 5000);
}

static void
test_flag_equals_value(void **state)
{
	struct outcome o;

	(void)state;
	run(&o, "kv", "put", "--ttl=7", "k", "--output=json", "-o=json",
	    "--tag=x=y", "--all", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.f.ttl, "7");
	assert_string_equal(seen.f.tag.v[0], "x=y");
	assert_string_equal(seen.f.all, "");
	assert_int_equal(seen.g.json, 1);
	/* An empty value is a value. */
	run(&o, "kv", "put", "k", "--ttl=", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.f.ttl, "");
}

static void
test_words_that_are_not_flags(void **state)
{
	struct outcome o;

	(void)state;
	run(&o, "kv", "put", "k", "-5", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.argv[1], "-5");
	run(&o, "kv", "put", "k", "-", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.argv[1], "-");
	run(&o, "kv", "put", "--", "--ttl", "-o", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(seen.argc, 2);
	assert_string_equal(seen.argv[0], "--ttl");
	assert_string_equal(seen.argv[1], "-o");
	assert_null(seen.f.ttl);
	/* A value may start with a dash. */
	run(&o, "kv", "put", "k", "--ttl", "-1", "--tag", "--all", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.f.ttl, "-1");
	assert_string_equal(seen.f.tag.v[0], "--all");
	assert_null(seen.f.all);
}

static void
test_missing_values(void **state)
{
	struct outcome o;

	(void)state;
	assert_usage(run(&o, "kv", "put", "k", "--ttl", NULL),
	    "platformctl: kv: --ttl needs a value (SECONDS)", "kv help");
	assert_usage(run(&o, "ping", "--timeout", NULL),
	    "platformctl: --timeout needs a value (MS)", "--help");
	assert_usage(run(&o, "-o", NULL),
	    "platformctl: --output needs a value (FORMAT)", "--help");
	assert_usage(run(&o, "kv", "get", "k", "--all=1", NULL),
	    "platformctl: kv: --all takes no value", "kv help");
}

static void
test_unknown_flags(void **state)
{
	struct outcome o;

	(void)state;
	assert_usage(run(&o, "--no-such-flag", NULL),
	    "platformctl: unknown flag '--no-such-flag'", "--help");
	assert_usage(run(&o, "ping", "--bogus=1", NULL),
	    "platformctl: unknown flag '--bogus'", "--help");
	assert_usage(run(&o, "kv", "get", "k", "-x", NULL),
	    "platformctl: kv: unknown flag '-x'", "kv help");
	/* A group's flags are unknown before its word. */
	assert_usage(run(&o, "--ttl", "5", "kv", "put", "k", NULL),
	    "platformctl: unknown flag '--ttl'", "--help");
	/* ... and to other groups' commands. */
	assert_usage(run(&o, "ping", "--ttl", "5", NULL),
	    "platformctl: unknown flag '--ttl'", "--help");
}

static void
test_flag_of_another_command(void **state)
{
	struct outcome o;

	(void)state;
	assert_usage(run(&o, "kv", "get", "k", "--ttl", "5", NULL),
	    "platformctl: kv: get: --ttl applies to put only", "kv help");
	assert_usage(run(&o, "kv", "put", "k", "--version", "2", NULL),
	    "platformctl: kv: put: --version applies to kv.get only",
	    "kv help");
}

static void
test_group_flag_shadows_global(void **state)
{
	struct outcome o;

	(void)state;
	run(&o, "kv", "get", "k", "--version", "3", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.f.version, "3");
	assert_string_equal(o.out, "");
	run(&o, "--version", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(seen.calls, 0);
	assert_int_equal(strncmp(o.out, "platformctl ", 12), 0);
}

static void
test_commands_and_arguments(void **state)
{
	struct outcome o;

	(void)state;
	assert_usage(run(&o, NULL), "platformctl: missing command", "--help");
	assert_usage(run(&o, "frobnicate", NULL),
	    "platformctl: unknown command 'frobnicate'", "--help");
	assert_usage(run(&o, "kv", NULL),
	    "platformctl: kv: missing command (get, put)", "kv help");
	assert_usage(run(&o, "kv", "frob", NULL),
	    "platformctl: kv: unknown command 'frob'", "kv help");
	assert_usage(run(&o, "kv", "get", NULL),
	    "platformctl: kv: get: missing KEY", "kv help");
	assert_usage(run(&o, "kv", "get", "a", "b", NULL),
	    "platformctl: kv: get: unexpected argument 'b'", "kv help");
	assert_usage(run(&o, "ping", "a", "b", NULL),
	    "platformctl: ping: unexpected argument 'b'", "--help");
	assert_usage(run(&o, "help", "x", NULL),
	    "platformctl: help: unexpected argument 'x'", "--help");
	/* The run function's status is the exit status. */
	seen.rc = CTL_FAIL;
	run(&o, "ping", NULL);
	seen.rc = 0;
	assert_int_equal(o.rc, CTL_FAIL);
	assert_int_equal(seen.calls, 1);
}

static void
test_global_settings(void **state)
{
	struct outcome o;

	(void)state;
	assert_usage(run(&o, "-o", "yaml", "ping", NULL),
	    "platformctl: --output must be table or json, not 'yaml'",
	    "--help");
	assert_usage(run(&o, "kv", "get", "k", "--timeout", "0", NULL),
	    "platformctl: --timeout must be 1..3600000 milliseconds, not '0'",
	    "--help");
	assert_usage(run(&o, "ping", "--discovery", "nocolon", NULL),
	    "platformctl: --discovery must be host:port, not 'nocolon'",
	    "--help");
	assert_usage(run(&o, "ping", "--tls-cert", "c.pem", NULL),
	    "platformctl: --tls-cert and --tls-key go together", "--help");
	/* The environment gives defaults; a flag wins. */
	setenv("PLATFORM_DISCOVERY", "env:1", 1);
	setenv("TEST_CTL_KV", "kv:1", 1);
	run(&o, "kv", "get", "k", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(seen.g.discovery, "env:1");
	assert_string_equal(seen.f.addr, "kv:1");
	run(&o, "kv", "get", "k", "--discovery", "flag:1", "--addr", "a:2",
	    NULL);
	assert_string_equal(seen.g.discovery, "flag:1");
	assert_string_equal(seen.f.addr, "a:2");
	/* An empty variable is unset. */
	setenv("PLATFORM_DISCOVERY", "", 1);
	run(&o, "ping", NULL);
	assert_string_equal(seen.g.discovery, "127.0.0.1:7070");
	unsetenv("PLATFORM_DISCOVERY");
	unsetenv("TEST_CTL_KV");
	/* The group's own check. */
	assert_usage(run(&o, "kv", "get", "k", "--addr", "x", NULL),
	    "platformctl: kv: --addr must be host:port", "kv help");
}

static void
test_list_limit(void **state)
{
	struct outcome o;
	char *argv[3 + 2 * (CTL_LIST_MAX + 1) + 1];
	struct ctl_cli cli = { .ngroups = 0 };
	int argc = 0;

	(void)state;
	argv[argc++] = "platformctl";
	argv[argc++] = "kv";
	argv[argc++] = "get";
	for (int i = 0; i <= CTL_LIST_MAX; i++) {
		argv[argc++] = "--tag";
		argv[argc++] = "t";
	}
	argv[argc] = NULL;
	ctl_cli_add(&cli, &kv_group);
	cli.out = tmpfile();
	cli.err = tmpfile();
	memset(&seen, 0, sizeof(seen));
	o.rc = ctl_cli_run(&cli, argc, argv);
	slurp(cli.out, o.out, sizeof(o.out));
	slurp(cli.err, o.err, sizeof(o.err));
	assert_usage(&o, "platformctl: kv: at most 64 --tag", "kv help");
}

static void
test_help(void **state)
{
	struct outcome o;

	(void)state;
	run(&o, "--help", NULL);
	assert_int_equal(o.rc, 0);
	assert_string_equal(o.err, "");
	assert_non_null(strstr(o.out, "Usage: platformctl [options] COMMAND"));
	assert_non_null(strstr(o.out, "  ping [ADDR]   "));
	assert_non_null(strstr(o.out, "  kv COMMAND ...   "));
	assert_null(strstr(o.out, "kv get"));
	assert_non_null(strstr(o.out, "-o, --output FORMAT"));
	assert_non_null(strstr(o.out, "PLATFORM_DISCOVERY"));
	assert_int_equal(seen.calls, 0);
	/* platformctl's help for a plain command, and for "help". */
	run(&o, "ping", "-h", NULL);
	assert_non_null(strstr(o.out, "Usage: platformctl [options] COMMAND"));
	run(&o, "help", NULL);
	assert_non_null(strstr(o.out, "Usage: platformctl [options] COMMAND"));
	/* A group's own, by --help anywhere after its word or "help". */
	run(&o, "kv", "help", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(strncmp(o.out, kv_group.head, strlen(kv_group.head)),
	    0);
	assert_non_null(strstr(o.out, "  get KEY              read a key\n"));
	assert_non_null(strstr(o.out, "  --ttl SECONDS        help of --ttl "
	    "[put]\n"));
	assert_non_null(strstr(o.out, "  -h, --help           show this "
	    "help\n"));
	assert_non_null(strstr(o.out, "The kv foot."));
	/* "help" after a plain command is its argument. */
	run(&o, "ping", "help", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.argv[0], "help");
	run(&o, "kv", "put", "--help", NULL);
	assert_int_equal(o.rc, 0);
	assert_int_equal(strncmp(o.out, kv_group.head, strlen(kv_group.head)),
	    0);
	assert_int_equal(seen.calls, 0);
}

/* ctl_parse_duration: what kv's and db's --ttl take. */
static void
test_durations(void **state)
{
	static const struct {
		const char *s;
		int64_t ms;		/* -1: refused */
	} cases[] = {
		{ "500ms", 500 }, { "30s", 30000 }, { "30", 30000 },
		{ "5m", 300000 }, { "2h", 7200000 }, { "1d", 86400000 },
		{ "30d", 2592000000LL }, { "31d", -1 }, { "0", -1 },
		{ "0s", -1 }, { "-5s", -1 }, { "+5s", -1 }, { " 5s", -1 },
		{ "5x", -1 }, { "5 s", -1 }, { "", -1 }, { "s", -1 },
		{ "99999999999999999999d", -1 }, { "106751991167d", -1 },
	};
	int64_t ms;

	(void)state;
	for (size_t i = 0; i < CTL_NELEM(cases); i++) {
		ms = 7;
		if (cases[i].ms < 0) {
			assert_int_equal(ctl_parse_duration(cases[i].s,
			    2592000000LL, &ms), -1);
			assert_int_equal(ms, 7);
		} else {
			assert_int_equal(ctl_parse_duration(cases[i].s,
			    2592000000LL, &ms), 0);
			assert_int_equal(ms, cases[i].ms);
		}
	}
	/* The bound holds for every unit: 86400001 ms is over a day. */
	assert_int_equal(ctl_parse_duration("86400001ms", 86400000, &ms), -1);
	assert_int_equal(ctl_parse_duration("1441m", 86400000, &ms), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_flags_before_and_after_positionals,
		    setup),
		cmocka_unit_test_setup(test_flag_equals_value, setup),
		cmocka_unit_test_setup(test_words_that_are_not_flags, setup),
		cmocka_unit_test_setup(test_missing_values, setup),
		cmocka_unit_test_setup(test_unknown_flags, setup),
		cmocka_unit_test_setup(test_flag_of_another_command, setup),
		cmocka_unit_test_setup(test_group_flag_shadows_global, setup),
		cmocka_unit_test_setup(test_commands_and_arguments, setup),
		cmocka_unit_test_setup(test_global_settings, setup),
		cmocka_unit_test_setup(test_list_limit, setup),
		cmocka_unit_test_setup(test_help, setup),
		cmocka_unit_test(test_durations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
