/*
 * subject: topic and subject syntax, matching, field checks (subject.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/errbuf.h"
#include "platform/xalloc.h"
#include "subject.h"

static bool
seg_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Topics and subjects share one parser; wild allows "*" and a final ">". */
static int
check_segments(const char *field, const char *s, bool wild, char *err,
    size_t errlen)
{
	const char *what = wild ? "subject" : "topic";
	size_t len = strlen(s), seg;

	if (len == 0) {
		errbuf_set(err, errlen, "%s: required (a %s such as "
		    "\"orders.created\")", field, what);
		return -1;
	}
	if (len > EV_TOPIC_MAX) {
		errbuf_set(err, errlen, "%s: longer than %d bytes", field,
		    EV_TOPIC_MAX);
		return -1;
	}
	for (const char *p = s;; p += seg + 1) {
		seg = strcspn(p, ".");
		if (seg == 0) {
			errbuf_set(err, errlen, "%s: \"%s\" has an empty "
			    "segment", field, s);
			return -1;
		}
		if (wild && seg == 1 && (*p == '*' || *p == '>')) {
			if (*p == '>' && p[1] != '\0') {
				errbuf_set(err, errlen, "%s: \">\" may only "
				    "be the last segment", field);
				return -1;
			}
		} else {
			for (size_t i = 0; i < seg; i++)
				if (!seg_char((unsigned char)p[i])) {
					errbuf_set(err, errlen, "%s: a %s's "
					    "segments are letters, digits, "
					    "'_' and '-'%s", field, what, wild ?
					    ", or a whole \"*\" or \">\"" : "");
					return -1;
				}
		}
		if (p[seg] == '\0')
			return 0;
	}
}

int
ev_check_topic(const char *field, const char *s, char *err, size_t errlen)
{
	return check_segments(field, s, false, err, errlen);
}

int
ev_check_subject(const char *field, const char *s, char *err,
    size_t errlen)
{
	return check_segments(field, s, true, err, errlen);
}

int
ev_check_text(const char *field, const char *s, size_t max, bool required,
    char *err, size_t errlen)
{
	size_t len = strlen(s);

	if (required && len == 0) {
		errbuf_set(err, errlen, "%s: required", field);
		return -1;
	}
	if (len > max) {
		errbuf_set(err, errlen, "%s: longer than %zu bytes", field,
		    max);
		return -1;
	}
	for (const unsigned char *p = (const void *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f) {
			errbuf_set(err, errlen, "%s: holds a control "
			    "character", field);
			return -1;
		}
	return 0;
}

int
ev_check_group(const char *field, const char *s, char *err, size_t errlen)
{
	size_t len = strlen(s);

	if (len == 0 || len > EV_KEY_MAX) {
		errbuf_set(err, errlen, "%s: 1 to %d characters", field,
		    EV_KEY_MAX);
		return -1;
	}
	for (const unsigned char *p = (const void *)s; *p != '\0'; p++)
		if (!seg_char(*p) && *p != '.') {
			errbuf_set(err, errlen, "%s: letters, digits, '_', "
			    "'-' and '.' only", field);
			return -1;
		}
	return 0;
}

int
ev_check_meta(const char *field, const char *key, const char *value,
    char *err, size_t errlen)
{
	size_t len = strlen(key);

	if (len == 0 || len > EV_META_KEY_MAX) {
		errbuf_set(err, errlen, "%s: a key is 1 to %d characters",
		    field, EV_META_KEY_MAX);
		return -1;
	}
	for (const unsigned char *p = (const void *)key; *p != '\0'; p++)
		if (!seg_char(*p) && *p != '.') {
			errbuf_set(err, errlen, "%s: key \"%.*s\": letters, "
			    "digits, '_', '-' and '.' only", field,
			    EV_META_KEY_MAX, key);
			return -1;
		}
	if (strlen(value) > EV_META_VALUE_MAX) {
		errbuf_set(err, errlen, "%s[%s]: longer than %d bytes", field,
		    key, EV_META_VALUE_MAX);
		return -1;
	}
	return 0;
}

bool
ev_subject_match(const char *subject, const char *topic)
{
	const char *s = subject, *t = topic;
	size_t ls, lt;

	for (;;) {
		ls = strcspn(s, ".");
		lt = strcspn(t, ".");
		if (ls == 1 && *s == '>')
			return lt > 0;
		if (!(ls == 1 && *s == '*') &&
		    (ls != lt || memcmp(s, t, ls) != 0))
			return false;
		s += ls;
		t += lt;
		if (*s == '\0' || *t == '\0')
			return *s == '\0' && *t == '\0';
		s++;
		t++;
	}
}

bool
ev_subject_literal(const char *subject)
{
	for (const char *p = subject;; p++) {
		size_t seg = strcspn(p, ".");

		if (seg == 1 && (*p == '*' || *p == '>'))
			return false;
		p += seg;
		if (*p == '\0')
			return true;
	}
}

char *
ev_subject_regex(const char *subject)
{
	/* Each byte grows to at most 5 ("[^.]+" for "*"), plus "^$". */
	char *re = xcalloc(1, strlen(subject) * 5 + 3), *o = re;

	*o++ = '^';
	for (const char *p = subject; *p != '\0'; p++) {
		bool whole = (p == subject || p[-1] == '.') &&
		    (p[1] == '.' || p[1] == '\0');

		if (*p == '.') {
			memcpy(o, "\\.", 2);
			o += 2;
		} else if (whole && *p == '*') {
			memcpy(o, "[^.]+", 5);
			o += 5;
		} else if (whole && *p == '>') {
			memcpy(o, ".+", 2);
			o += 2;
		} else {
			*o++ = *p;
		}
	}
	*o++ = '$';
	*o = '\0';
	return re;
}

char *
ev_base64(const uint8_t *p, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xcalloc(1, (n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];

		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 |
		    (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}
