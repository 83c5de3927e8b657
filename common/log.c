/*
 * log: structured logging, one line per event on stderr.
 *
 * A line is built in a stack buffer by log_format_line and written with one
 * write(2) under a mutex, so lines from different threads never mix. Every
 * string goes through one escaper that keeps the line one line and, for
 * JSON, valid: control characters are escaped and bytes that are not UTF-8
 * become U+FFFD. An overlong line is cut between characters, its open string
 * closed, and marked with "truncated".
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "platform/log.h"
#include "platform/trace.h"

#define LOG_LINE_MAX	8192
#define LOG_FIELDS_MAX	64	/* keys plus values taken by log_write */
#define LOG_LINE_MIN	128	/* the fixed prefix and the tail fit */

/* Written in full, past the body, whenever the line was cut. */
#define LOG_JSON_TAIL_CUT	",\"truncated\":true}"
#define LOG_TEXT_TAIL_CUT	" truncated=true"

static enum log_format	log_fmt = LOG_FORMAT_AUTO;
static enum log_level	log_threshold = LOG_LEVEL_INFO;
static char		log_component[128];
static pthread_mutex_t	log_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const log_level_names[] = {
	"debug", "info", "warn", "error",
};
static const char *const log_level_text[] = {
	"DEBUG", "INFO ", "WARN ", "ERROR",
};

/* An output buffer whose body stops at cap, leaving room for the tail. */
struct log_out {
	char	*p;
	size_t	 cap;
	size_t	 pos;
	int	 cut;		/* something did not fit: write nothing more */
};

static enum log_format
log_resolve(enum log_format f)
{
	if (f == LOG_FORMAT_AUTO)
		return isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT :
		    LOG_FORMAT_JSON;
	return f;
}

void
log_setup(enum log_format format, enum log_level level,
    const char *component)
{
	log_fmt = log_resolve(format);
	log_threshold = level;
	snprintf(log_component, sizeof(log_component), "%s",
	    component != NULL ? component : "");
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < sizeof(log_level_names) / sizeof(*log_level_names);
	    i++) {
		if (strcasecmp(s, log_level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int
log_format_parse(const char *s, enum log_format *out)
{
	if (s == NULL)
		return -1;
	if (strcasecmp(s, "auto") == 0)
		*out = LOG_FORMAT_AUTO;
	else if (strcasecmp(s, "json") == 0)
		*out = LOG_FORMAT_JSON;
	else if (strcasecmp(s, "text") == 0)
		*out = LOG_FORMAT_TEXT;
	else
		return -1;
	return 0;
}

int
log_enabled(enum log_level level)
{
	return level >= log_threshold;
}

/* Appends n bytes whole, keeping `keep` bytes free for a closing quote. */
static int
log_put(struct log_out *o, const char *s, size_t n, size_t keep)
{
	if (o->cut || o->pos + n + keep > o->cap) {
		o->cut = 1;
		return -1;
	}
	memcpy(o->p + o->pos, s, n);
	o->pos += n;
	return 0;
}

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the
 * byte there does not start one: overlong forms, surrogates and code points
 * past U+10FFFF are invalid too.
 */
static size_t
log_utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/*
 * Appends s escaped, one character at a time so a cut never splits an
 * escape or a UTF-8 sequence. JSON escapes the JSON way; text uses C-like
 * escapes and escapes '"' and '\' only inside quotes. With `quoted` the
 * string is wrapped in quotes and room for the closing one is always kept.
 */
static void
log_put_escaped(struct log_out *o, enum log_format f, const char *s,
    int quoted)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, clen, keep = quoted ? 1 : 0;
	char esc[8];
	const char *rep;
	size_t replen;

	if (quoted && log_put(o, "\"", 1, keep) != 0)
		return;
	while (i < n && !o->cut) {
		clen = log_utf8_len(u + i, n - i);
		rep = esc;
		if (clen == 0) {
			rep = f == LOG_FORMAT_JSON ? "\\ufffd" : "\xef\xbf\xbd";
			replen = strlen(rep);
			clen = 1;
		} else if (u[i] == '"' && (f == LOG_FORMAT_JSON || quoted)) {
			rep = "\\\"";
			replen = 2;
		} else if (u[i] == '\\' && (f == LOG_FORMAT_JSON || quoted)) {
			rep = "\\\\";
			replen = 2;
		} else if (u[i] == '\n') {
			rep = "\\n";
			replen = 2;
		} else if (u[i] == '\r') {
			rep = "\\r";
			replen = 2;
		} else if (u[i] == '\t') {
			rep = "\\t";
			replen = 2;
		} else if (u[i] < 0x20 || (u[i] == 0x7f &&
		    f != LOG_FORMAT_JSON)) {
			replen = (size_t)snprintf(esc, sizeof(esc),
			    f == LOG_FORMAT_JSON ? "\\u%04x" : "\\x%02x", u[i]);
		} else {
			rep = s + i;
			replen = clen;
		}
		if (log_put(o, rep, replen, keep) != 0)
			break;
		i += clen;
	}
	if (quoted) {
		/* The room was kept above. */
		o->p[o->pos++] = '"';
	}
}

/* Text values are quoted only when they would not read back as one word. */
static int
log_text_needs_quotes(const char *v)
{
	const unsigned char *u;

	if (*v == '\0')
		return 1;
	for (u = (const unsigned char *)v; *u != '\0'; u++)
		if (*u <= ' ' || *u == '"' || *u == '=' || *u == 0x7f)
			return 1;
	return 0;
}

/*
 * One key/value field. The key goes in whole or the line ends before it,
 * so JSON never holds a key without its value; the value may be cut.
 */
static void
log_put_field(struct log_out *o, enum log_format f, const char *k,
    const char *v)
{
	size_t mark = o->pos;

	if (o->cut)
		return;
	if (f == LOG_FORMAT_JSON) {
		log_put(o, ",", 1, 0);
		log_put_escaped(o, f, k, 1);
		log_put(o, ":", 1, 0);
	} else {
		log_put(o, " ", 1, 0);
		log_put_escaped(o, f, k, 0);
		log_put(o, "=", 1, 0);
	}
	if (o->cut) {
		o->pos = mark;
		return;
	}
	log_put_escaped(o, f, v, f == LOG_FORMAT_JSON ||
	    log_text_needs_quotes(v));
}

/* Everything but the closing brace or the truncation mark. */
static void
log_body(struct log_out *o, enum log_format f, int lvl, const char *when,
    const char *component, const char *msg, const char *const *kv,
    size_t nkv)
{
	size_t i;

	if (f == LOG_FORMAT_JSON) {
		log_put(o, "{\"ts\":\"", 7, 0);
		log_put(o, when, strlen(when), 0);
		log_put(o, "\",\"level\":\"", 11, 0);
		log_put(o, log_level_names[lvl], strlen(log_level_names[lvl]),
		    0);
		log_put(o, "\"", 1, 0);
		log_put_field(o, f, "component", component);
		log_put_field(o, f, "msg", msg);
	} else {
		log_put(o, when, strlen(when), 0);
		log_put(o, " ", 1, 0);
		log_put(o, log_level_text[lvl], 5, 0);
		log_put(o, " ", 1, 0);
		if (*component != '\0') {
			log_put_escaped(o, f, component, 0);
			log_put(o, ": ", 2, 0);
		}
		log_put_escaped(o, f, msg, 0);
	}
	/* kv holds nkv strings, keys and values alternating. */
	for (i = 0; i < nkv && !o->cut; i += 2) {
		const char *k = kv[i] != NULL ? kv[i] : "";
		const char *v = i + 1 < nkv && kv[i + 1] != NULL ?
		    kv[i + 1] : "";

		log_put_field(o, f, k, v);
	}
}

size_t
log_format_line(char *buf, size_t len, enum log_format format,
    enum log_level level, const char *component, const char *msg,
    const char *const *kv, size_t nkv)
{
	struct log_out o;
	struct timespec ts;
	struct tm tm;
	char when[96];		/* ample for any int the compiler imagines */
	const char *tail;
	size_t taillen;
	int lvl = (int)level;

	/* Too small for the fixed prefix and the tail: no line at all. */
	if (len < LOG_LINE_MIN) {
		if (len > 0)
			buf[0] = '\0';
		return 0;
	}
	format = log_resolve(format);
	if (lvl < LOG_LEVEL_DEBUG || lvl > LOG_LEVEL_ERROR)
		lvl = LOG_LEVEL_ERROR;
	if (component == NULL)
		component = "";
	if (msg == NULL)
		msg = "";
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));

	/* First with room for the closing brace only... */
	o.p = buf;
	o.cap = len - 1 - (format == LOG_FORMAT_JSON);
	o.pos = 0;
	o.cut = 0;
	log_body(&o, format, lvl, when, component, msg, kv, nkv);
	if (!o.cut) {
		if (format == LOG_FORMAT_JSON)
			buf[o.pos++] = '}';
		buf[o.pos] = '\0';
		return o.pos;
	}

	/* ...then, as that did not fit, again with room for the mark. */
	tail = format == LOG_FORMAT_JSON ? LOG_JSON_TAIL_CUT :
	    LOG_TEXT_TAIL_CUT;
	taillen = strlen(tail);
	o.cap = len - 1 - taillen;
	o.pos = 0;
	o.cut = 0;
	log_body(&o, format, lvl, when, component, msg, kv, nkv);
	/* Fields end whole or in a closed string, so the mark fits after. */
	memcpy(buf + o.pos, tail, taillen);
	o.pos += taillen;
	buf[o.pos] = '\0';
	return o.pos;
}

void
log_write(enum log_level level, const char *msg, ...)
{
	const char *kv[LOG_FIELDS_MAX + 4];
	char line[LOG_LINE_MAX];
	char trace_id[2 * PLAT_TRACE_ID_LEN + 1], span_id[2 * PLAT_SPAN_ID_LEN + 1];
	size_t nkv = 0, n, off;
	const char *k;
	va_list ap;
	ssize_t w;
	int saved_errno = errno;

	if (!log_enabled(level))
		return;
	va_start(ap, msg);
	/* Fields past LOG_FIELDS_MAX are dropped; a NULL key ends the list. */
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);

		if (nkv + 2 <= LOG_FIELDS_MAX) {
			kv[nkv++] = k;
			kv[nkv++] = v;
		}
	}
	va_end(ap);
	/* A line written inside a traced call says which. */
	if (plat_trace_log_ids(trace_id, span_id)) {
		kv[nkv++] = "trace_id";
		kv[nkv++] = trace_id;
		kv[nkv++] = "span_id";
		kv[nkv++] = span_id;
	}

	/* One byte short of the buffer: room for the newline. */
	n = log_format_line(line, sizeof(line) - 1, log_fmt, level,
	    log_component, msg, kv, nkv);
	line[n++] = '\n';

	pthread_mutex_lock(&log_mu);
	for (off = 0; off < n; off += (size_t)w) {
		w = write(STDERR_FILENO, line + off, n - off);
		if (w < 0 && errno == EINTR) {
			w = 0;
			continue;
		}
		if (w <= 0)
			break;	/* nowhere left to report it */
	}
	pthread_mutex_unlock(&log_mu);
	errno = saved_errno;
}
