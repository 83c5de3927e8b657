/*
 * ctl_out: platformctl's output helpers. See ctl_out.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_out.h"
#include "platform/xalloc.h"
#include "subject.h"

volatile sig_atomic_t ctl_stop;


char *
ctl_safe_dup(const char *s)
{
	char *d = xstrdup(s);

	for (char *p = d; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return d;
}

void
ctl_put_line(FILE *f, const char *fmt, ...)
{
	va_list ap;
	char *raw, *line;

	va_start(ap, fmt);
	if (vasprintf(&raw, fmt, ap) < 0)
		abort();
	va_end(ap);
	line = ctl_safe_dup(raw);
	fprintf(f, "%s\n", line);
	free(line);
	free(raw);
}

size_t
ctl_str_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void
ctl_table_row(struct ctl_table *t, const char *const *row)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cell = xrealloc(t->cell, t->cap * t->ncols *
		    sizeof(*t->cell));
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cell[t->nrows * t->ncols + i] = ctl_safe_dup(row[i]);
	t->nrows++;
}

/* The last column is not padded: that would only leave trailing blanks. */
void
ctl_table_print(const struct ctl_table *t, FILE *f)
{
	size_t w[CTL_TABLE_MAXCOLS] = { 0 };

	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		size_t n = ctl_str_width(t->cell[i]);

		if (n > w[i % t->ncols])
			w[i % t->ncols] = n;
	}
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cell[r * t->ncols + c];

			if (c + 1 == t->ncols)
				fprintf(f, "%s\n", s);
			else
				fprintf(f, "%s%*s", s, (int)(w[c] -
				    ctl_str_width(s) + 2), "");
		}
}

void
ctl_table_free(struct ctl_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cell[i]);
	free(t->cell);
}

char *
ctl_bytes_text(const ProtobufCBinaryData *d, int *text)
{
	json_t *j = json_stringn((const char *)d->data, d->len);
	char *b, *s;

	*text = j != NULL && memchr(d->data, 0, d->len) == NULL;
	json_decref(j);
	if (*text) {
		s = xcalloc(1, d->len + 1);
		if (d->len > 0)
			memcpy(s, d->data, d->len);
		return s;
	}
	b = ev_base64(d->data, d->len);
	s = xcalloc(1, strlen(b) + 5);
	sprintf(s, "b64:%s", b);
	free(b);
	return s;
}

void
ctl_put_bytes(FILE *f, const void *p, size_t n)
{
	const unsigned char *b = p;

	if (!isatty(fileno(f))) {
		fwrite(b, 1, n, f);
		return;
	}
	for (size_t i = 0; i < n; i++)
		putc((b[i] < 0x20 && b[i] != '\n' && b[i] != '\t') ||
		    b[i] == 0x7f ? '?' : b[i], f);
	if (n == 0 || b[n - 1] != '\n')
		putc('\n', f);
}

void
ctl_fmt_expires(char *buf, size_t len, int64_t at_ms, int64_t now)
{
	if (at_ms == 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%llds", at_ms <= now ? 0LL :
		    (long long)((at_ms - now + 999) / 1000));
}

/* Grows the buffer as it goes: a value is usually small, its limit
 * large. */
int
ctl_read_stdin(const struct ctl_group *g, const char *what, size_t max,
    char **buf, size_t *len)
{
	size_t cap = 4096, n;
	char *b = xrealloc(NULL, cap);

	*len = 0;
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "platformctl: reading %s from stdin (end with "
		    "Ctrl-D)\n", what);
	while ((n = fread(b + *len, 1, cap - *len - 1, stdin)) > 0) {
		if ((*len += n) <= max && *len + 1 < cap)
			continue;
		if (*len > max) {
			free(b);
			return ctl_usage(g, "%s on stdin is over %zu bytes",
			    what, max);
		}
		b = xrealloc(b, cap *= 2);
	}
	if (ferror(stdin)) {
		free(b);
		fprintf(stderr, "platformctl: cannot read stdin: %s\n",
		    strerror(errno));
		return CTL_FAIL;
	}
	b[*len] = '\0';
	*buf = b;
	return CTL_OK;
}

json_t *
ctl_jstr(const char *s)
{
	json_t *j = json_string(s != NULL ? s : "");
	char *d;

	if (j != NULL)
		return j;
	d = ctl_safe_dup(s);
	for (char *p = d; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(d);
	free(d);
	return j;
}

void
ctl_fmt_time(char *buf, size_t len, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
}

/* A real in the fewest digits that read back as the same double. */
static void
real_text(FILE *f, double v)
{
	char buf[40];

	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	/* "1" would read back as an integer: keep it a real. */
	fprintf(f, "%s%s", buf, strpbrk(buf, ".eEn") != NULL ? "" : ".0");
}

static void
json_text(FILE *f, const json_t *j)
{
	const char *k;
	json_t *v, *key;
	size_t i, n = 0;
	char *s;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		fputc('{', f);
		json_object_foreach((json_t *)j, k, v) {
			/* Keys came from text jansson took: valid UTF-8. */
			key = json_string(k);
			s = json_dumps(key, JSON_ENCODE_ANY);
			json_decref(key);
			fprintf(f, "%s%s:", n++ ? "," : "", s != NULL ? s :
			    "\"\"");
			free(s);
			json_text(f, v);
		}
		fputc('}', f);
		return;
	case JSON_ARRAY:
		fputc('[', f);
		json_array_foreach((json_t *)j, i, v) {
			if (i > 0)
				fputc(',', f);
			json_text(f, v);
		}
		fputc(']', f);
		return;
	case JSON_REAL:
		real_text(f, json_real_value(j));
		return;
	default:
		if ((s = json_dumps(j, JSON_ENCODE_ANY)) != NULL)
			fputs(s, f);
		free(s);
		return;
	}
}

char *
ctl_json_text(const json_t *j)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		abort();
	json_text(f, j);
	if (fclose(f) != 0)
		abort();
	return buf;
}

json_t *
ctl_json_doc(const char *text)
{
	json_t *j;

	if (text == NULL || *text == '\0')
		return json_null();
	j = json_loads(text, JSON_DECODE_ANY, NULL);
	return j != NULL ? j : ctl_jstr(text);
}

int
ctl_json_print(json_t *j, size_t flags)
{
	int bad = j == NULL || json_dumpf(j, stdout, (flags ? flags :
	    JSON_INDENT(2)) | JSON_ENCODE_ANY) != 0;

	json_decref(j);
	if (bad) {
		fprintf(stderr, "platformctl: cannot write JSON\n");
		return 1;
	}
	putchar('\n');
	return 0;
}

const char *
ctl_enum_name(const ProtobufCEnumDescriptor *d, int v, const char *prefix)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d,
	    v);
	size_t n = strlen(prefix);

	if (ev == NULL)
		return "UNKNOWN";
	return strncmp(ev->name, prefix, n) == 0 ? ev->name + n : ev->name;
}

const char *
ctl_method_name(const char *method)
{
	const char *p = strrchr(method, '/');

	return p != NULL ? p + 1 : method;
}

static void
on_signal(int sig)
{
	ctl_stop = sig;
}

void
ctl_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int
ctl_fail(const char *what, int code, const char *err)
{
	char *msg = ctl_safe_dup(err);

	fprintf(stderr, "platformctl: %s: %s%s%s\n", what,
	    plat_status_name(code), *msg != '\0' ? ": " : "", msg);
	free(msg);
	return 1;
}
