/*
 * log: structured logging for every server.
 *
 * One line per event on stderr: JSON lines (the default when stderr is not
 * a terminal) or human text. Fields are key/value string pairs closed by
 * NULL, so a line is always well formed whatever the values hold:
 *
 *     log_info("call done", "method", path, "code", code_str, NULL);
 *
 * Thread-safe; a line is written with one write(2).
 */
#ifndef PLATFORM_LOG_H
#define PLATFORM_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

enum log_format {
	LOG_FORMAT_AUTO = 0,  /* JSON unless stderr is a terminal */
	LOG_FORMAT_JSON,
	LOG_FORMAT_TEXT,
};

/* Sets format, threshold and the "component" field added to every line
 * (the server name). May be called again; not while other threads log. */
void log_setup(enum log_format format, enum log_level level,
    const char *component);

/* "debug", "info", "warn", "error": 0, or -1 for anything else. */
int log_level_parse(const char *s, enum log_level *out);
/* "auto", "json", "text": 0, or -1 for anything else. */
int log_format_parse(const char *s, enum log_format *out);

int log_enabled(enum log_level level);

/* msg, then key, value, key, value, ..., NULL. A NULL value prints as "". */
void log_write(enum log_level level, const char *msg, ...)
    __attribute__((sentinel));

/* Formats one line into buf (no trailing newline), for tests and for
 * log_write itself. Returns the length, truncated to len - 1. */
size_t log_format_line(char *buf, size_t len, enum log_format format,
    enum log_level level, const char *component, const char *msg,
    const char *const *kv, size_t nkv);

#define log_debug(...) log_write(LOG_LEVEL_DEBUG, __VA_ARGS__, (char *)NULL)
#define log_info(...)  log_write(LOG_LEVEL_INFO, __VA_ARGS__, (char *)NULL)
#define log_warn(...)  log_write(LOG_LEVEL_WARN, __VA_ARGS__, (char *)NULL)
#define log_error(...) log_write(LOG_LEVEL_ERROR, __VA_ARGS__, (char *)NULL)

#endif
