/*
 * ctl_out: what every platformctl command prints with (and reads its
 * stdin with).
 *
 * Text from the wire goes to a terminal only through ctl_safe_dup (control
 * bytes become '?', so a value cannot drive the tty); tables align on
 * display width; bytes that may not be text shown as text or base64;
 * JSON output and the Ctrl-C flag for streaming commands.
 */
#ifndef CTL_OUT_H
#define CTL_OUT_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "ctl_cmd.h"
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

/* The bytes as text when they are UTF-8 without NULs, else "b64:" and
 * their base64 (malloc'd, NUL-terminated); *text says which. */
char *ctl_bytes_text(const ProtobufCBinaryData *d, int *text);

/* Writes n bytes as they are, unless f is a terminal: then control
 * bytes but newline and tab become '?' and a newline ends them. For a
 * value printed whole (kv get), which may be binary and piped. */
void ctl_put_bytes(FILE *f, const void *p, size_t n);

/* An expiry as the seconds left, rounded up, "30s" ("0s": due now);
 * "-" for at_ms 0 (none). now is the wall clock in ms. */
void ctl_fmt_expires(char *buf, size_t len, int64_t at_ms, int64_t now);

/* j as compact JSON text with every real in the fewest digits that
 * read back as the same double ("0.1"): json_dumps writes 17 digits
 * (0.10000000000000001), which a store keeping decimals exactly (JSONB)
 * takes as another number. The caller frees it. */
char *ctl_json_text(const json_t *j);

/* A wall-clock time in ms as "2024-05-01T12:00:00Z" (UTC); "-" for 0. */
void ctl_fmt_time(char *buf, size_t len, int64_t ms);

/* All of stdin, NUL-terminated past *len bytes (it may hold NULs),
 * after a prompt naming what when stdin is a terminal. CTL_OK with *buf
 * malloc'd; else, after a message, CTL_USAGE (over max bytes, as group
 * g's usage error) or CTL_FAIL (a read error). */
int ctl_read_stdin(const struct ctl_group *g, const char *what, size_t max,
    char **buf, size_t *len);

/* json_string refuses bad UTF-8; such bytes become '?' rather than the
 * field vanishing. */
json_t *ctl_jstr(const char *s);

/* A stored document (JSON text) as a value: null when empty (a
 * tombstone), the text as a string when it does not parse (it always
 * should; jansson refuses an integer past 64 bits). */
json_t *ctl_json_doc(const char *text);

/* Prints j on stdout and frees it: indented, or with flags (compact
 * lines for streams). 0, or 1 after a message when it cannot. */
int ctl_json_print(json_t *j, size_t flags);

/* The proto name of enum value v without prefix ("EVENT_TYPE_PUT" ->
 * "PUT"), "UNKNOWN" for a value the descriptor does not know. */
const char *ctl_enum_name(const ProtobufCEnumDescriptor *d, int v,
    const char *prefix);

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
