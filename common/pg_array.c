/*
 * pg_array: the text form of PostgreSQL array literals, for binding a
 * batch of values as one parameter (see platform/pg.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/pg.h"
#include "platform/xalloc.h"

void
pg_array_init(struct pg_array *a)
{
	a->cap = 256;
	a->buf = xcalloc(1, a->cap);
	a->buf[0] = '{';
	a->len = 1;
	a->n = 0;
}

static void
reserve(struct pg_array *a, size_t more)
{
	/* room for the closing brace and NUL too */
	while (a->len + more + 2 > a->cap) {
		a->cap *= 2;
		a->buf = xrealloc(a->buf, a->cap);
	}
}

/* Appends one element, quoted: inside double quotes only '"' and '\'
 * need a backslash. */
void
pg_array_add(struct pg_array *a, const char *s)
{
	size_t slen = strlen(s);

	reserve(a, 2 * slen + 3);
	if (a->n++ > 0)
		a->buf[a->len++] = ',';
	a->buf[a->len++] = '"';
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			a->buf[a->len++] = '\\';
		a->buf[a->len++] = *p;
	}
	a->buf[a->len++] = '"';
}

void
pg_array_add_int(struct pg_array *a, int64_t v)
{
	char num[24];

	snprintf(num, sizeof(num), "%" PRId64, v);
	pg_array_add(a, num);
}

void
pg_array_add_bool(struct pg_array *a, bool v)
{
	pg_array_add(a, v ? "t" : "f");
}

const char *
pg_array_str(struct pg_array *a)
{
	reserve(a, 0);
	a->buf[a->len] = '}';
	a->buf[a->len + 1] = '\0';
	return a->buf;
}

void
pg_array_free(struct pg_array *a)
{
	free(a->buf);
	a->buf = NULL;
	a->len = a->cap = a->n = 0;
}
