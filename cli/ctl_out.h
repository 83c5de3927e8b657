/*
 * ctl_out: what every platformctl command prints with.
 *
 * Text from the wire goes to a terminal only through ctl_safe_dup (control
 * bytes become '?', so a value cannot drive the tty); tables align on
 * display width; JSON output and the Ctrl-C flag for streaming commands.
 */
#ifndef CTL_OUT_H
#define CTL_OUT_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "platform/client.h"

#define CTL_TABLE_MAXCOLS 8

/* A copy of s (NULL as "") fit for a terminal; the caller frees it. */
char *ctl_safe_dup(const char *s);

/* Columns a UTF-8 string takes: continuation bytes take none. */
size_t ctl_str_width(const char *s);

/* One line (a newline is added) through ctl_safe_dup. */
void ctl_put_line(FILE *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct ctl_table {
	size_t ncols, nrows, cap;
	char **cell;                    /* nrows * ncols, owned */
};

/* Adds one row of t->ncols strings; they are copied through
 * ctl_safe_dup. */
void ctl_table_row(struct ctl_table *t, const char *const *row);
/* Pads every column to its widest cell but the last. */
void ctl_table_print(const struct ctl_table *t, FILE *f);
void ctl_table_free(struct ctl_table *t);

/* json_string refuses bad UTF-8; such bytes become '?' rather than the
 * field vanishing. */
json_t *ctl_jstr(const char *s);

/* Prints j on stdout and frees it: indented, or with flags (compact
 * lines for streams). 0, or 1 after a message when it cannot. */
int ctl_json_print(json_t *j, size_t flags);

/* "/pkg.Service/Method" -> "Method", for messages. */
const char *ctl_method_name(const char *method);

/* Reports a failed call on stderr ("platformctl: GetService: NOT_FOUND:
 * service "x" is not registered"; what is the method's name, see
 * ctl_method_name) and returns 1, the exit status. */
int ctl_fail(const char *what, int code, const char *err);

/* Set by SIGINT/SIGTERM once ctl_catch_signals ran: streaming commands
 * poll it to stop cleanly. */
extern volatile sig_atomic_t ctl_stop;
void ctl_catch_signals(void);

#endif
