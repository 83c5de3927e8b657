/*
 * ctl_cmd: the one parser, help printer and usage error of platformctl.
 * See ctl_cmd.h.
 *
 * A command line is read in one pass: a word that is not a flag is a
 * word of the command or one of its arguments; a flag is looked up in
 * the group of the first word (once that is known), then among the
 * global flags, so a group may reuse a global name for its own meaning
 * (config's --version N). "--" ends the flags; "-" and "-5" are words.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_cmd.h"

#ifndef PLATFORM_VERSION
#define PLATFORM_VERSION "unknown"
#endif

#define PROG			"platformctl"
#define DEFAULT_DISCOVERY	"127.0.0.1:7070"
#define DEFAULT_TIMEOUT		"5000"
#define MAX_TIMEOUT_MS		3600000
#define MAIN_WIDTH		24

/* The global flags as given: flag, else environment, else default.
 * Those that need no checking go straight into g. */
struct ctl_raw {
	struct ctl_globals g;
	const char *output, *timeout, *help, *version;
};

#define G(name, alias, kind, arg, env, help, field) { name, alias, kind, \
	arg, env, NULL, help, offsetof(struct ctl_raw, field) }

static const struct ctl_flag global_flags[] = {
	G("--discovery", NULL, CTL_VALUE, "ADDR", "PLATFORM_DISCOVERY",
	    "discovery-srv host:port, or its replicas a,b,c (default "
	    DEFAULT_DISCOVERY ")",
	    g.discovery),
	G("--config", NULL, CTL_VALUE, "ADDR", "PLATFORM_CONFIG",
	    "config-srv host:port (default: service \"config\" in "
	    "discovery)", g.config),
	G("--auth", NULL, CTL_VALUE, "ADDR", "PLATFORM_AUTH",
	    "auth-srv host:port (default: the login's, else service "
	    "\"auth\" in discovery)", g.auth),
	G("--output", "-o", CTL_VALUE, "FORMAT", NULL,
	    "table or json (default table)", output),
	G("--timeout", NULL, CTL_VALUE, "MS", NULL,
	    "deadline of each call (default " DEFAULT_TIMEOUT ")", timeout),
	G("--tls-ca", NULL, CTL_VALUE, "FILE", "PLATFORM_TLS_CA",
	    "PEM CA bundle; given: use TLS", g.tls_ca),
	G("--tls-cert", NULL, CTL_VALUE, "FILE", "PLATFORM_TLS_CERT",
	    "PEM client certificate (with --tls-key)", g.tls_cert),
	G("--tls-key", NULL, CTL_VALUE, "FILE", "PLATFORM_TLS_KEY",
	    "PEM client private key", g.tls_key),
	G("--help", "-h", CTL_SWITCH, NULL, NULL, "show this help", help),
	G("--version", NULL, CTL_SWITCH, NULL, NULL, "print the version",
	    version),
};

#undef G

/* One command line being read. */
struct parse {
	const struct ctl_cli *cli;
	FILE *out;			/* help and version */
	struct ctl_raw raw;
	const struct ctl_group *group;	/* of words[0], once known */
	void *flags;			/* group->flags_size bytes */
	unsigned char *given;		/* per group flag: on the line */
	char **words;
	int nwords;
};

/* ---- usage errors ---- */

/* Where ctl_usage writes: the running ctl_cli's err, else stderr. The
 * parser's own errors go there in the words of the group found so far
 * (p->group), those of the global settings as platformctl's. */
static FILE *usage_out;

static int
vusage(FILE *f, const struct ctl_group *g, const char *fmt, va_list ap)
{
	fputs(PROG ": ", f);
	if (g != NULL && g->name != NULL)
		fprintf(f, "%s: ", g->name);
	vfprintf(f, fmt, ap);
	fprintf(f, "\nTry '" PROG " %s' for more information.\n",
	    g != NULL && g->hint != NULL ? g->hint : "--help");
	return CTL_USAGE;
}

int
ctl_usage(const struct ctl_group *g, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vusage(usage_out != NULL ? usage_out : stderr, g, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- small helpers ---- */

int
ctl_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
ctl_parse_duration(const char *s, long long max_ms, long long *ms)
{
	static const struct {
		const char *unit;
		long long ms;
	} units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 },
	};
	char *end;
	long long v;

	errno = 0;
	/* Digits first: strtoll alone would take " 5", "+5" and "-5". */
	if (s[0] >= '0' && s[0] <= '9' && (v = strtoll(s, &end, 10)) > 0 &&
	    errno == 0)
		for (size_t i = 0; i < CTL_NELEM(units); i++)
			if (strcmp(end, units[i].unit) == 0 &&
			    v <= max_ms / units[i].ms) {
				*ms = v * units[i].ms;
				return 0;
			}
	return -1;
}

int
ctl_word_in(const char *w, const char *list)
{
	size_t n = strlen(w);

	for (const char *p = list; *p != '\0'; p += strcspn(p, " "),
	    p += strspn(p, " "))
		if (strncmp(p, w, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

static void *
xcalloc_or_die(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL) {
		fputs(PROG ": out of memory\n", stderr);
		exit(CTL_FAIL);
	}
	return p;
}

static const char **
slot(void *base, const struct ctl_flag *o)
{
	return (const char **)(void *)((char *)base + o->off);
}

static struct ctl_list *
list_slot(void *base, const struct ctl_flag *o)
{
	return (struct ctl_list *)(void *)((char *)base + o->off);
}

/* An empty variable counts as unset, as in most shells' idiom. */
static void
env_defaults(const struct ctl_flag *flags, size_t n, void *base)
{
	const char *v;

	for (size_t i = 0; i < n; i++)
		if (flags[i].env != NULL && flags[i].kind == CTL_VALUE &&
		    (v = getenv(flags[i].env)) != NULL && *v != '\0')
			*slot(base, &flags[i]) = v;
}

/* The flag named by a (its first len bytes), or NULL. */
static const struct ctl_flag *
flag_find(const struct ctl_flag *flags, size_t n, const char *a, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const struct ctl_flag *o = &flags[i];

		if ((strlen(o->name) == len && strncmp(o->name, a, len) == 0) ||
		    (o->alias != NULL && strlen(o->alias) == len &&
		    strncmp(o->alias, a, len) == 0))
			return o;
	}
	return NULL;
}

/* A flag, as opposed to "-" (stdin) or a negative number (a value). */
static int
is_flag(const char *a)
{
	return a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9');
}

/* ---- the table ---- */

void
ctl_cli_add(struct ctl_cli *cli, const struct ctl_group *g)
{
	if (cli->ngroups == CTL_MAX_GROUPS) {
		fputs(PROG ": too many command groups\n", stderr);
		abort();
	}
	cli->groups[cli->ngroups++] = g;
}

static const struct ctl_group *
group_of(const struct ctl_cli *cli, const char *word)
{
	for (size_t i = 0; i < cli->ngroups; i++)
		for (size_t j = 0; j < cli->groups[i]->ncmds; j++)
			if (strcmp(cli->groups[i]->cmds[j].word, word) == 0)
				return cli->groups[i];
	return NULL;
}

/* "get" under config, "accounts get" under auth, "services". */
static void
cmd_name(const struct ctl_group *g, const struct ctl_cmd *c, char *buf,
    size_t len)
{
	if (c->sub == NULL)
		snprintf(buf, len, "%s", c->word);
	else if (g->name != NULL && strcmp(g->name, c->word) == 0)
		snprintf(buf, len, "%s", c->sub);
	else
		snprintf(buf, len, "%s %s", c->word, c->sub);
}

/* ---- help ---- */

static void
flag_left(const struct ctl_flag *o, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s%s", o->alias ? o->alias : "",
	    o->alias ? ", " : "", o->name, o->arg ? " " : "",
	    o->arg ? o->arg : "");
}

static void
main_help(const struct ctl_cli *cli, FILE *f)
{
	char left[96];

	fprintf(f, "Usage: " PROG " [options] COMMAND [ARGS]\n\n"
	    "The operator's command line for the platform.\n\nCommands:\n");
	for (size_t i = 0; i < cli->ngroups; i++)
		for (size_t j = 0; j < cli->groups[i]->ncmds; j++) {
			const struct ctl_cmd *c = &cli->groups[i]->cmds[j];

			if (c->sub != NULL)
				continue;
			snprintf(left, sizeof(left), "%s %s", c->word, c->args);
			fprintf(f, "  %-*s %s\n", MAIN_WIDTH, left,
			    c->brief != NULL ? c->brief : c->help);
		}
	fprintf(f, "  %-*s %s\n", MAIN_WIDTH, "help", "show this help");
	fprintf(f, "\nOptions (before or after the command):\n");
	for (size_t i = 0; i < CTL_NELEM(global_flags); i++) {
		flag_left(&global_flags[i], left, sizeof(left));
		fprintf(f, "  %-*s %s\n", MAIN_WIDTH, left,
		    global_flags[i].help);
	}
	fprintf(f, "\nEnvironment (a flag wins):\n");
	for (size_t i = 0; i < CTL_NELEM(global_flags); i++)
		if (global_flags[i].env != NULL)
			fprintf(f, "  %-*s default for %s\n", MAIN_WIDTH,
			    global_flags[i].env, global_flags[i].name);
	fprintf(f, "\nExit status: 0 ok, 1 a call failed, 2 bad usage.\n");
}

/* A group's own help; one without its own text has platformctl's. */
static void
group_help(const struct ctl_cli *cli, const struct ctl_group *g, FILE *f)
{
	char left[96], name[64];

	if (g == NULL || g->head == NULL) {
		main_help(cli, f);
		return;
	}
	fputs(g->head, f);
	for (size_t i = 0; i < g->ncmds; i++) {
		const struct ctl_cmd *c = &g->cmds[i];

		if (c->sub == NULL && c->run == NULL)
			continue;
		cmd_name(g, c, name, sizeof(name));
		snprintf(left, sizeof(left), "%s %s", name, c->args);
		fprintf(f, "  %-*s %s\n", g->width, left, c->help);
	}
	fprintf(f, "\nOptions:\n");
	for (size_t i = 0; i < g->nflags; i++) {
		const struct ctl_flag *o = &g->flags[i];
		int cmds = g->show_cmds && o->cmds != NULL;

		flag_left(o, left, sizeof(left));
		fprintf(f, "  %-*s %s%s%s%s\n", g->width, left, o->help,
		    cmds ? " [" : "", cmds ? o->cmds : "", cmds ? "]" : "");
	}
	fprintf(f, "  %-*s %s\n", g->width, "-h, --help", "show this help");
	fputs(g->foot != NULL ? g->foot : "", f);
}

/* ---- parsing ---- */

/* Applies flag o, found at argv[*i] (eq: its "=value", or NULL), to
 * base; advances *i past a separate value. */
static int
flag_apply(struct parse *p, const struct ctl_flag *o, void *base,
    const char *eq, int argc, char **argv, int *i)
{
	struct ctl_list *l;
	const char *v;

	if (o->kind == CTL_SWITCH) {
		if (eq != NULL)
			return ctl_usage(p->group, "%s takes no value",
			    o->name);
		*slot(base, o) = "";
		return CTL_OK;
	}
	if (eq != NULL)
		v = eq + 1;
	else if (*i + 1 < argc)
		v = argv[++*i];
	else
		return ctl_usage(p->group, "%s needs a value (%s)", o->name,
		    o->arg);
	if (o->kind == CTL_VALUE) {
		*slot(base, o) = v;
		return CTL_OK;
	}
	l = list_slot(base, o);
	if (l->n == CTL_LIST_MAX)
		return ctl_usage(p->group, "at most %d %s", CTL_LIST_MAX,
		    o->name);
	l->v[l->n++] = v;
	return CTL_OK;
}

/* The flag at argv[*i]: the group's, else a global one. */
static int
parse_flag(struct parse *p, int argc, char **argv, int *i)
{
	const char *a = argv[*i], *eq = strchr(a, '=');
	size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
	const struct ctl_flag *o = NULL;

	if (p->group != NULL &&
	    (o = flag_find(p->group->flags, p->group->nflags, a, len)) !=
	    NULL) {
		p->given[o - p->group->flags] = 1;
		return flag_apply(p, o, p->flags, eq, argc, argv, i);
	}
	o = flag_find(global_flags, CTL_NELEM(global_flags), a, len);
	if (o == NULL)
		return ctl_usage(p->group, "unknown flag '%.*s'", (int)len, a);
	return flag_apply(p, o, &p->raw, eq, argc, argv, i);
}

/* Once the first word is in, its group's flags are known. */
static void
group_found(struct parse *p, const char *word)
{
	const struct ctl_group *g = group_of(p->cli, word);

	if (g == NULL)
		return;
	p->group = g;
	p->flags = xcalloc_or_die(1, g->flags_size);
	p->given = xcalloc_or_die(g->nflags, 1);
	env_defaults(g->flags, g->nflags, p->flags);
}

static int
parse_line(struct parse *p, int argc, char **argv)
{
	int rc, flags = 1;

	for (int i = 1; i < argc; i++) {
		if (flags && strcmp(argv[i], "--") == 0)
			flags = 0;
		else if (flags && is_flag(argv[i])) {
			if ((rc = parse_flag(p, argc, argv, &i)) != CTL_OK)
				return rc;
		} else {
			p->words[p->nwords++] = argv[i];
			if (p->nwords == 1)
				group_found(p, argv[i]);
		}
	}
	return CTL_OK;
}

/* ---- running ---- */

/* Checks the global values once all sources are in, so a bad
 * environment variable is reported like the flag it stands for. */
static int
check_globals(struct parse *p)
{
	struct ctl_raw *r = &p->raw;
	long long ms;

	if (strcmp(r->output, "table") != 0 && strcmp(r->output, "json") != 0)
		return ctl_usage(NULL, "--output must be table or json, not "
		    "'%s'", r->output);
	if (ctl_parse_int(r->timeout, 1, MAX_TIMEOUT_MS, &ms) != 0)
		return ctl_usage(NULL, "--timeout must be 1..%d milliseconds, "
		    "not '%s'", MAX_TIMEOUT_MS, r->timeout);
	if (strchr(r->g.discovery, ':') == NULL)
		return ctl_usage(NULL, "--discovery must be host:port, not "
		    "'%s'", r->g.discovery);
	if ((r->g.tls_cert == NULL) != (r->g.tls_key == NULL))
		return ctl_usage(NULL, "--tls-cert and --tls-key go together");
	r->g.json = strcmp(r->output, "json") == 0;
	r->g.timeout_ms = (int)ms;
	return CTL_OK;
}

/* A flag given to a command of its group that does not take it. */
static int
check_flags(const struct parse *p, const struct ctl_cmd *c, const char *name)
{
	const struct ctl_group *g = p->group;
	char full[96];

	snprintf(full, sizeof(full), "%s%s%s", c->word, c->sub ? "." : "",
	    c->sub ? c->sub : "");
	for (size_t i = 0; i < g->nflags; i++) {
		const struct ctl_flag *o = &g->flags[i];

		if (!p->given[i] || o->cmds == NULL ||
		    ctl_word_in(full, o->cmds) ||
		    (c->sub != NULL && ctl_word_in(c->sub, o->cmds)))
			continue;
		return ctl_usage(p->group, "%s: %s applies to %s only", name,
		    o->name, o->cmds);
	}
	return CTL_OK;
}

/* The row the words name; *nw is how many words it took. NULL after a
 * usage error (*rc), or with *rc 0 when the words asked for help. */
static const struct ctl_cmd *
find_cmd(const struct parse *p, int *nw, int *rc)
{
	const struct ctl_group *g = p->group;
	const char *word = p->words[0], *sep;
	char subs[256] = "";
	size_t len;

	*rc = CTL_OK;
	/* "help" after a word asks for its group's help, where the group
	 * has one ("login help"; not "service help": a service's name). */
	if (p->nwords > 1 && strcmp(p->words[1], "help") == 0 &&
	    g->head != NULL)
		return NULL;
	for (size_t i = 0; i < g->ncmds; i++)
		if (strcmp(g->cmds[i].word, word) == 0 &&
		    g->cmds[i].sub == NULL && g->cmds[i].run != NULL) {
			*nw = 1;
			return &g->cmds[i];
		}
	/* A word with subcommands. */
	sep = g->name != NULL && strcmp(g->name, word) == 0 ? "" : ": ";
	for (size_t i = 0; i < g->ncmds; i++) {
		const struct ctl_cmd *c = &g->cmds[i];

		if (strcmp(c->word, word) != 0 || c->sub == NULL ||
		    c->run == NULL)
			continue;
		if (p->nwords > 1 && strcmp(c->sub, p->words[1]) == 0) {
			*nw = 2;
			return c;
		}
		len = strlen(subs);
		snprintf(subs + len, sizeof(subs) - len, "%s%s",
		    len ? ", " : "", c->sub);
	}
	if (p->nwords == 1)
		*rc = ctl_usage(p->group, "%s%smissing command (%s)",
		    *sep ? word : "", sep, subs);
	else
		*rc = ctl_usage(p->group, "%s%sunknown command '%s'",
		    *sep ? word : "", sep, p->words[1]);
	return NULL;
}

static int
run_line(struct parse *p)
{
	const struct ctl_cmd *c;
	struct ctl_run r;
	char name[96];
	int nw, n, rc;

	if (p->raw.help != NULL) {
		group_help(p->cli, p->group, p->out);
		return CTL_OK;
	}
	if (p->raw.version != NULL) {
		fprintf(p->out, PROG " %s\n", PLATFORM_VERSION);
		return CTL_OK;
	}
	if (p->nwords == 0)
		return ctl_usage(NULL, "missing command");
	if (p->group == NULL) {
		if (strcmp(p->words[0], "help") != 0)
			return ctl_usage(NULL, "unknown command '%s'",
			    p->words[0]);
		if (p->nwords > 1)
			return ctl_usage(NULL, "help: unexpected argument '%s'",
			    p->words[1]);
		main_help(p->cli, p->out);
		return CTL_OK;
	}
	if ((c = find_cmd(p, &nw, &rc)) == NULL) {
		if (rc == CTL_OK)
			group_help(p->cli, p->group, p->out);
		return rc;
	}
	cmd_name(p->group, c, name, sizeof(name));
	n = p->nwords - nw;
	if (n < c->min)
		return ctl_usage(p->group, "%s: missing %s", name, c->args);
	if (n > c->max)
		return ctl_usage(p->group, "%s: unexpected argument '%s'", name,
		    p->words[nw + c->max]);
	if ((rc = check_flags(p, c, name)) != CTL_OK ||
	    (rc = check_globals(p)) != CTL_OK)
		return rc;
	r = (struct ctl_run){ c, p->group, &p->raw.g, p->flags };
	if (p->group->check != NULL &&
	    (rc = p->group->check(&r)) != CTL_OK)
		return rc;
	return c->run(&r, n, p->words + nw);
}

int
ctl_cli_run(const struct ctl_cli *cli, int argc, char **argv)
{
	struct parse p = {
		.cli = cli,
		.out = cli->out != NULL ? cli->out : stdout,
		.raw = {
			.g.discovery = DEFAULT_DISCOVERY,
			.output = "table",
			.timeout = DEFAULT_TIMEOUT,
		},
	};
	int rc;

	p.words = xcalloc_or_die((size_t)argc + 1, sizeof(*p.words));
	env_defaults(global_flags, CTL_NELEM(global_flags), &p.raw);
	usage_out = cli->err != NULL ? cli->err : stderr;
	if ((rc = parse_line(&p, argc, argv)) == CTL_OK)
		rc = run_line(&p);
	usage_out = NULL;
	free(p.words);
	free(p.flags);
	free(p.given);
	return rc;
}
