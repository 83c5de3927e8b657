/*
 * xalloc: allocation that aborts when memory is exhausted.
 *
 * A server that cannot allocate a few bytes cannot answer anyone either;
 * dying loudly beats limping on with half-built state.
 */
#ifndef PLATFORM_XALLOC_H
#define PLATFORM_XALLOC_H

#include <stdlib.h>
#include <string.h>

static inline void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n != 0 ? n : 1, size != 0 ? size : 1);

	if (p == NULL)
		abort();
	return p;
}

static inline void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n != 0 ? n : 1)) == NULL)
		abort();
	return p;
}

/* A copy of s; NULL copies as "". */
static inline char *
xstrdup(const char *s)
{
	char *p = strdup(s != NULL ? s : "");

	if (p == NULL)
		abort();
	return p;
}

/* The first n bytes of s (fewer at a NUL), NUL-terminated. */
static inline char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (p == NULL)
		abort();
	return p;
}

#endif
