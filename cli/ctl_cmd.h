/*
 * ctl_cmd: platformctl's one command table.
 *
 * Every command of platformctl is a row of a group's table: its words,
 * its positional arguments, its help and its run function. A group (the
 * discovery commands, config, events, auth, ...) also lists the flags its
 * commands take, each with its kind and help. platformctl registers the
 * groups into a ctl_cli; one parser then reads every command line (the
 * global flags -o, --timeout, --discovery, --config, --auth, --tls-*
 * before or after the command, the group's flags after its word), one
 * help printer prints `platformctl --help` and every group's help, and
 * one usage error ("platformctl: ...", a line naming the help, exit 2)
 * serves them all. Adding a server's commands is adding a group: a table
 * and its run functions, and one ctl_cli_add.
 *
 * This module knows nothing of gRPC: the run functions do the calls.
 */
#ifndef CTL_CMD_H
#define CTL_CMD_H

#include <stddef.h>
#include <stdio.h>

enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

#define CTL_LIST_MAX	64	/* values of one repeatable flag */
#define CTL_MAX_GROUPS	16

enum ctl_kind {
	CTL_SWITCH,		/* "--oldest": set to "" when given */
	CTL_VALUE,		/* "--type T", "--type=T": the last wins */
	CTL_LIST,		/* "--meta K=V", repeatable: a ctl_list */
};

/* What a CTL_LIST flag's offset points at. */
struct ctl_list {
	const char *v[CTL_LIST_MAX];
	size_t n;
};

struct ctl_flag {
	const char *name;		/* "--version" */
	const char *alias;		/* "-o", or NULL */
	enum ctl_kind kind;
	const char *arg;		/* its value in help ("N"), or NULL */
	const char *env;		/* a variable giving a default */
	/* The commands taking it, space-separated, each "WORD.SUB" or
	 * "SUB" ("get", "accounts.create", "login"); NULL: all of the
	 * group's. Given to another command it is a usage error. */
	const char *cmds;
	const char *help;
	/* Where it goes in the group's flags struct: a const char *, or
	 * for a CTL_LIST a struct ctl_list. */
	size_t off;
};

struct ctl_globals;
struct ctl_run;

typedef int ctl_run_fn(const struct ctl_run *r, int argc, char **argv);

/*
 * One row. word is the first word of the command line ("services",
 * "config", "login"); sub the second for words that have subcommands
 * ("get"), else NULL. A row with sub NULL and run NULL only gives such
 * a word its line in `platformctl --help` ("config COMMAND ...").
 */
struct ctl_cmd {
	const char *word;
	const char *sub;
	const char *args;		/* in help: "NS PATH [JSON|-]" */
	int min, max;			/* positional arguments it takes */
	ctl_run_fn *run;
	const char *help;
	/* Its line in `platformctl --help` when that says it otherwise
	 * (NULL: help). */
	const char *brief;
};

struct ctl_group {
	/* Usage errors of its commands read "platformctl: NAME: ...";
	 * NULL for groups whose messages name their words themselves.
	 * A group with a name prints its subcommands in its help without
	 * the word ("get NS PATH" under "config"). */
	const char *name;
	const char *hint;		/* "Try 'platformctl HINT' ..." */
	const char *head;		/* its help up to the command list */
	const char *foot;		/* its help after the flags */
	int width;			/* of the left column of its help */
	int show_cmds;			/* help names the commands of a flag */
	const struct ctl_cmd *cmds;
	size_t ncmds;
	const struct ctl_flag *flags;
	size_t nflags;
	size_t flags_size;		/* the struct the offsets point into */
	/* Checks the settings the group needs once every flag is in
	 * (--config is host:port): 0, or the exit status of ctl_usage. */
	int (*check)(const struct ctl_run *r);
};

#define CTL_NELEM(a)	(sizeof(a) / sizeof((a)[0]))
/* A group's table and flags: CTL_TABLE(cmds), CTL_TABLE(flags). */
#define CTL_TABLE(a)	(a), CTL_NELEM(a)

/* The global settings, checked, as every command sees them. */
struct ctl_globals {
	int json;			/* -o json */
	int timeout_ms;
	const char *discovery;
	const char *config;		/* NULL: "config" by discovery */
	const char *auth;		/* NULL: the login's, else discovery */
	const char *tls_ca, *tls_cert, *tls_key;
};

/* What a run function is given, with its positional arguments. */
struct ctl_run {
	const struct ctl_cmd *cmd;
	const struct ctl_group *group;
	const struct ctl_globals *g;
	void *flags;			/* the group's flags struct, filled */
};

/* The registered groups, in the order of `platformctl --help`. */
struct ctl_cli {
	const struct ctl_group *groups[CTL_MAX_GROUPS];
	size_t ngroups;
	FILE *out, *err;		/* help, usage errors; NULL: stdout,
					 * stderr */
};

/* Registers g; its words must not be another group's. */
void ctl_cli_add(struct ctl_cli *cli, const struct ctl_group *g);

/* Parses argv (argv[0] the program) and runs the command, or prints
 * the help or the version it asks for. The exit status: 0 ok, 1 a call
 * failed, 2 bad usage (after one line saying why). */
int ctl_cli_run(const struct ctl_cli *cli, int argc, char **argv);

/* A usage error of group g's commands (NULL: platformctl's own):
 * "platformctl: [NAME: ]<fmt...>" and a line naming the help, on the
 * running ctl_cli's err (stderr). Returns 2, the exit status. */
int ctl_usage(const struct ctl_group *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A whole decimal number in [min, max]: 0, or -1. */
int ctl_parse_int(const char *s, long long min, long long max,
    long long *out);

/* A duration of at least 1 ms and at most max_ms: a number and a unit,
 * "500ms", "30s", "5m", "2h", "1d", or a bare number of seconds. 0 with
 * *ms set, or -1. */
int ctl_parse_duration(const char *s, long long max_ms, long long *ms);

/* 1 when the word w is in the space-separated list. */
int ctl_word_in(const char *w, const char *list);

#endif
