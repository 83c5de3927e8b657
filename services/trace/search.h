/*
 * search: a Search request compiled into one SQL statement.
 *
 * Pure logic: the statement's text depends only on which filters are
 * given, and every value is a bound parameter (never text in the SQL),
 * so a caller's strings cannot change the statement.
 */
#ifndef TRACE_SEARCH_H
#define TRACE_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEARCH_PARAMS_MAX 12

struct search_query {
	const char *service;            /* NULL or "": any */
	const char *operation;
	const char *const *attr_keys;   /* nattrs pairs, equality */
	const char *const *attr_values;
	size_t nattrs;
	int64_t min_duration_ns, max_duration_ns;       /* 0: no bound */
	bool errors_only;
	int64_t start_ms, end_ms;       /* the span start window */
	int limit;                      /* rows to read (a page and one) */
	/* The page after (after_t, after_trace): the last trace served. */
	bool has_after;
	int64_t after_t;
	char after_trace[33];
};

/* The statement: its rows are (trace_id hex, the newest matching
 * span's start_ns), newest first. */
struct search_sql {
	char *sql;
	size_t nparams;
	char *values[SEARCH_PARAMS_MAX];
};

void search_build(const struct search_query *q, struct search_sql *out);
void search_sql_free(struct search_sql *s);

/* A page key: "<start_ns>:<trace id hex>". */
void search_key_format(int64_t t, const char *trace_id, char *out,
    size_t outlen);
/* 0, or -1 when key is not one. */
int search_key_parse(const char *key, int64_t *t, char trace_id[33]);

/* A hex id of exactly n lower-case or upper-case digits, as lower case
 * into out: 0, or -1. All-zero is refused too. */
int search_hex_id(const char *s, size_t n, char *out);

#endif
