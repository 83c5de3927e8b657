/*
 * errbuf: the caller-supplied error buffer every module reports into.
 *
 * Functions that can fail take (char *err, size_t errlen) and write one
 * human line there; a NULL or empty buffer means the caller does not want
 * it.
 */
#ifndef PLATFORM_ERRBUF_H
#define PLATFORM_ERRBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void
errbuf_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

#endif
