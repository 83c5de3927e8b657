/*
 * doc: config-srv's pure document logic (see doc.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "platform/errbuf.h"
#include "platform/xalloc.h"

/* How much of an offending value an error message quotes. */
#define QUOTE_MAX 64

/* ---- input checks ---- */

static bool
is_lower_or_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
is_path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

int
doc_check_namespace(const char *field, const char *ns, char *err,
    size_t errlen)
{
	size_t n = strlen(ns);
	bool seg_start = true;

	if (n == 0) {
		errbuf_set(err, errlen, "%s: required", field);
		return -1;
	}
	if (n > DOC_NAMESPACE_MAX) {
		errbuf_set(err, errlen, "%s: at most %d characters, not %zu",
		    field, DOC_NAMESPACE_MAX, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char c = ns[i];

		if (c == '/') {
			if (seg_start)
				goto empty;
			seg_start = true;
			continue;
		}
		if (seg_start ? !is_lower_or_digit(c) :
		    !(is_lower_or_digit(c) || c == '_' || c == '-')) {
			errbuf_set(err, errlen, "%s \"%.*s\": segments are "
			    "[a-z0-9][a-z0-9_-]* separated by single '/'",
			    field, QUOTE_MAX, ns);
			return -1;
		}
		seg_start = false;
	}
	if (!seg_start)
		return 0;
empty:
	errbuf_set(err, errlen, "%s \"%.*s\": empty segment (a leading, "
	    "trailing or double '/')", field, QUOTE_MAX, ns);
	return -1;
}

int
doc_check_path(const char *field, const char *path, char *err,
    size_t errlen)
{
	size_t n = strlen(path);
	bool seg_start = true;

	if (n == 0) {
		errbuf_set(err, errlen, "%s: required", field);
		return -1;
	}
	if (n > DOC_PATH_MAX) {
		errbuf_set(err, errlen, "%s: at most %d characters, not %zu",
		    field, DOC_PATH_MAX, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char c = path[i];

		if (c == '/') {
			if (seg_start)
				goto empty;
			seg_start = true;
			continue;
		}
		if (c == '.') {
			errbuf_set(err, errlen, "%s \"%.*s\": '.' is not "
			    "allowed in a path (it starts a selector in "
			    "reads)", field, QUOTE_MAX, path);
			return -1;
		}
		if (!is_path_char(c)) {
			errbuf_set(err, errlen, "%s \"%.*s\": segments are "
			    "[A-Za-z0-9_-]+ separated by single '/'", field,
			    QUOTE_MAX, path);
			return -1;
		}
		seg_start = false;
	}
	if (!seg_start)
		return 0;
empty:
	errbuf_set(err, errlen, "%s \"%.*s\": empty segment (a leading, "
	    "trailing or double '/')", field, QUOTE_MAX, path);
	return -1;
}

int
doc_check_prefix(const char *field, const char *prefix, char *err,
    size_t errlen)
{
	size_t n = strlen(prefix);

	if (n > DOC_PATH_MAX) {
		errbuf_set(err, errlen, "%s: at most %d characters, not %zu",
		    field, DOC_PATH_MAX, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!is_path_char(prefix[i]) && prefix[i] != '/') {
			errbuf_set(err, errlen, "%s \"%.*s\": a path prefix "
			    "holds only [A-Za-z0-9_/-]", field, QUOTE_MAX,
			    prefix);
			return -1;
		}
		/* No path starts with '/' or holds "//": such a prefix
		 * would match nothing. */
		if (prefix[i] == '/' && (i == 0 || prefix[i - 1] == '/')) {
			errbuf_set(err, errlen, "%s \"%.*s\": empty segment "
			    "(a leading or double '/')", field, QUOTE_MAX,
			    prefix);
			return -1;
		}
	}
	return 0;
}

int
doc_check_length(const char *field, const char *s, size_t max, char *err,
    size_t errlen)
{
	size_t n = strlen(s);

	if (n <= max)
		return 0;
	errbuf_set(err, errlen, "%s: at most %zu bytes, not %zu", field, max,
	    n);
	return -1;
}

int
doc_split_address(const char *in, char path[DOC_PATH_MAX + 1],
    const char **selector, char *err, size_t errlen)
{
	const char *dot = strchr(in, '.');
	size_t n = dot != NULL ? (size_t)(dot - in) : strlen(in);

	*selector = NULL;
	if (n > DOC_PATH_MAX) {
		errbuf_set(err, errlen, "path: at most %d characters before "
		    "the selector, not %zu", DOC_PATH_MAX, n);
		return -1;
	}
	memcpy(path, in, n);
	path[n] = '\0';
	if (doc_check_path("path", path, err, errlen) != 0)
		return -1;
	if (dot == NULL)
		return 0;
	if (strlen(dot + 1) > DOC_SELECTOR_MAX) {
		errbuf_set(err, errlen, "path: a selector is at most %d "
		    "characters", DOC_SELECTOR_MAX);
		return -1;
	}
	/* Segments between dots are keys or indexes: none may be empty. */
	for (const char *p = dot; *p != '\0'; p++)
		if (*p == '.' && (p[1] == '.' || p[1] == '\0')) {
			errbuf_set(err, errlen, "path \"%.*s\": empty selector "
			    "segment (a trailing or double '.')", QUOTE_MAX,
			    in);
			return -1;
		}
	*selector = dot + 1;
	return 0;
}

size_t
doc_chain(const char *ns, char out[DOC_CHAIN_MAX][DOC_NAMESPACE_MAX + 1])
{
	size_t n = 0, len = strlen(ns);

	snprintf(out[n++], DOC_NAMESPACE_MAX + 1, "%s", DOC_ROOT_NAMESPACE);
	for (size_t i = 1; i <= len && n < DOC_CHAIN_MAX; i++) {
		if (i < len && ns[i] != '/')
			continue;
		if (i > DOC_NAMESPACE_MAX)
			break;
		memcpy(out[n], ns, i);
		out[n][i] = '\0';
		if (strcmp(out[n], DOC_ROOT_NAMESPACE) != 0)
			n++;
	}
	return n;
}

/* ---- JSON ---- */

int
doc_parse(const char *field, const char *text, json_t **out, char *err,
    size_t errlen)
{
	size_t n = strlen(text);
	json_error_t je;

	*out = NULL;
	if (n == 0) {
		errbuf_set(err, errlen, "%s: required (a JSON document)",
		    field);
		return -1;
	}
	if (n > DOC_JSON_MAX) {
		errbuf_set(err, errlen, "%s: the document is %zu bytes, over "
		    "the limit of %d bytes (256 KiB)", field, n, DOC_JSON_MAX);
		return -1;
	}
	*out = json_loadb(text, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY |
	    JSON_ALLOW_NUL, &je);
	if (*out == NULL) {
		errbuf_set(err, errlen, "%s: not valid JSON: %s at line %d "
		    "column %d", field, je.text, je.line, je.column);
		return -1;
	}
	return 0;
}

json_t *
doc_load(const char *text)
{
	return json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

struct sbuf {
	char *p;
	size_t n, cap;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 64;

		while (b->n + n + 1 > cap)
			cap *= 2;
		if ((b->p = realloc(b->p, cap)) == NULL)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void
sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* As jansson writes strings: '"', '\\' and control characters escaped,
 * everything else (UTF-8 included) as is. */
static void
dump_string(struct sbuf *b, const char *s, size_t n)
{
	size_t run = 0;

	sb_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		sb_put(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"':  sb_puts(b, "\\\""); break;
		case '\\': sb_puts(b, "\\\\"); break;
		case '\b': sb_puts(b, "\\b"); break;
		case '\f': sb_puts(b, "\\f"); break;
		case '\n': sb_puts(b, "\\n"); break;
		case '\r': sb_puts(b, "\\r"); break;
		case '\t': sb_puts(b, "\\t"); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			sb_puts(b, esc);
		}
	}
	sb_put(b, s + run, n - run);
	sb_put(b, "\"", 1);
}

/* The shortest %g that reads back as d, with jansson's spelling of the
 * exponent ("1e300", "1e-5") and ".0" on integral values. */
static void
dump_real(struct sbuf *b, double d)
{
	char tmp[40], out[48], *e;
	size_t o = 0;

	int prec, exp;

	for (prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	/* %g switches to an exponent once it exceeds the precision: write
	 * 100.0, not 1e2, up to 17 digits. */
	if ((e = strchr(tmp, 'e')) != NULL &&
	    (exp = atoi(e + 1)) >= prec && exp < 17)
		snprintf(tmp, sizeof(tmp), "%.*g", exp + 1, d);
	if ((e = strchr(tmp, 'e')) != NULL) {
		const char *x = e + 1;

		memcpy(out, tmp, (size_t)(x - tmp));
		o = (size_t)(x - tmp);
		if (*x == '+')
			x++;
		else if (*x == '-')
			out[o++] = *x++;
		while (*x == '0' && x[1] != '\0')
			x++;
		while (*x != '\0')
			out[o++] = *x++;
		out[o] = '\0';
	} else {
		snprintf(out, sizeof(out), "%s%s", tmp,
		    strchr(tmp, '.') != NULL ? "" : ".0");
	}
	sb_puts(b, out);
}

static void
dump_value(struct sbuf *b, const json_t *v)
{
	char num[32];
	const char *key;
	json_t *item;
	size_t i;
	bool first = true;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		sb_put(b, "{", 1);
		json_object_foreach((json_t *)v, key, item) {
			if (!first)
				sb_put(b, ",", 1);
			first = false;
			dump_string(b, key, strlen(key));
			sb_put(b, ":", 1);
			dump_value(b, item);
		}
		sb_put(b, "}", 1);
		break;
	case JSON_ARRAY:
		sb_put(b, "[", 1);
		json_array_foreach((json_t *)v, i, item) {
			if (i > 0)
				sb_put(b, ",", 1);
			dump_value(b, item);
		}
		sb_put(b, "]", 1);
		break;
	case JSON_STRING:
		dump_string(b, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
		sb_puts(b, num);
		break;
	case JSON_REAL:
		dump_real(b, json_real_value(v));
		break;
	case JSON_TRUE:
		sb_puts(b, "true");
		break;
	case JSON_FALSE:
		sb_puts(b, "false");
		break;
	case JSON_NULL:
		sb_puts(b, "null");
		break;
	}
}

char *
doc_dump(const json_t *v)
{
	struct sbuf b = { 0 };

	dump_value(&b, v);
	return b.p;
}

int
doc_canonical(const char *field, const char *text, char **out, char *err,
    size_t errlen)
{
	json_t *doc;

	*out = NULL;
	if (doc_parse(field, text, &doc, err, errlen) != 0)
		return -1;
	*out = doc_dump(doc);
	json_decref(doc);
	return 0;
}

/* A canonical array index: digits, no leading zero, fits an int. */
static bool
parse_index(const char *s, size_t n, size_t *out)
{
	size_t v = 0;

	if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (size_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static const char *
type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

json_t *
doc_select(json_t *doc, const char *selector, char *err, size_t errlen)
{
	const char *seg = selector;
	json_t *cur = doc;

	while (cur != NULL) {
		const char *dot = strchr(seg, '.');
		size_t n = dot != NULL ? (size_t)(dot - seg) : strlen(seg);
		int at = (int)(seg - selector) - 1;  /* length of the parent */
		size_t idx;

		if (json_is_object(cur)) {
			char *key = xcalloc(1, n + 1);

			memcpy(key, seg, n);
			cur = json_object_get(cur, key);
			free(key);
			if (cur == NULL)
				errbuf_set(err, errlen, "selector \"%s\": no "
				    "key \"%.*s\"%s%.*s", selector, (int)n, seg,
				    at > 0 ? " in " : "", at > 0 ? at : 0,
				    selector);
		} else if (json_is_array(cur)) {
			if (!parse_index(seg, n, &idx)) {
				errbuf_set(err, errlen, "selector \"%s\": "
				    "\"%.*s\" is not an index into the array"
				    "%s%.*s", selector, (int)n, seg,
				    at > 0 ? " at " : "", at > 0 ? at : 0,
				    selector);
				return NULL;
			}
			if ((cur = json_array_get(cur, idx)) == NULL)
				errbuf_set(err, errlen, "selector \"%s\": "
				    "index %zu is past the end of the array"
				    "%s%.*s", selector, idx, at > 0 ? " at " :
				    "", at > 0 ? at : 0, selector);
		} else {
			errbuf_set(err, errlen, "selector \"%s\": %.*s is %s, "
			    "not an object or array", selector,
			    at > 0 ? at : 8, at > 0 ? selector : "document",
			    type_name(cur));
			return NULL;
		}
		if (dot == NULL)
			break;
		seg = dot + 1;
	}
	return cur;
}

/* ---- merge ---- */

void
doc_merge_init(struct doc_merge *m)
{
	m->doc = NULL;
	m->sources = json_object();
}

/* dst and src are objects: src's keys win, objects merging inside. */
static void
merge_objects(json_t *dst, const json_t *src)
{
	const char *key;
	json_t *v, *d;

	json_object_foreach((json_t *)src, key, v) {
		d = json_object_get(dst, key);
		if (d != NULL && json_is_object(d) && json_is_object(v))
			merge_objects(d, v);
		else
			json_object_set_new(dst, key, json_deep_copy(v));
	}
}

void
doc_merge_add(struct doc_merge *m, const json_t *doc, const char *ns)
{
	const char *key;
	json_t *v;

	if (m->doc != NULL && json_is_object(m->doc) && json_is_object(doc)) {
		merge_objects(m->doc, doc);
	} else {
		json_decref(m->doc);
		m->doc = json_deep_copy(doc);
		json_object_clear(m->sources);
	}
	if (json_is_object(doc))
		json_object_foreach((json_t *)doc, key, v)
			json_object_set_new(m->sources, key, json_string(ns));
}

void
doc_merge_free(struct doc_merge *m)
{
	json_decref(m->doc);
	json_decref(m->sources);
	m->doc = m->sources = NULL;
}

/* ---- diff ---- */

static void
diff_push(struct doc_diff *d, enum doc_op op, const char *pointer,
    const json_t *from, const json_t *to)
{
	struct doc_change *c;

	if (d->n == d->cap) {
		d->cap = d->cap != 0 ? 2 * d->cap : 8;
		d->changes = realloc(d->changes, d->cap * sizeof(*d->changes));
		if (d->changes == NULL)
			abort();
	}
	c = &d->changes[d->n++];
	c->op = op;
	c->pointer = xstrdup(pointer);
	c->old_json = from != NULL ? doc_dump(from) : xstrdup("");
	c->new_json = to != NULL ? doc_dump(to) : xstrdup("");
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void diff_value(const json_t *from, const json_t *to,
    const char *pointer, struct doc_diff *out);

static void
diff_objects(const json_t *from, const json_t *to, const char *pointer,
    struct doc_diff *out)
{
	size_t n = json_object_size(from) + json_object_size(to), k = 0;
	const char **keys = xcalloc(n, sizeof(*keys));
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)from, key, v)
		keys[k++] = key;
	json_object_foreach((json_t *)to, key, v)
		if (json_object_get(from, key) == NULL)
			keys[k++] = key;
	qsort(keys, k, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < k; i++) {
		size_t plen = strlen(pointer);
		char *sub = xcalloc(1, plen + strlen(keys[i]) + 2);

		sprintf(sub, "%s%s%s", pointer, plen > 0 ? "." : "", keys[i]);
		diff_value(json_object_get(from, keys[i]),
		    json_object_get(to, keys[i]), sub, out);
		free(sub);
	}
	free(keys);
}

static void
diff_value(const json_t *from, const json_t *to, const char *pointer,
    struct doc_diff *out)
{
	if (from == NULL && to == NULL)
		return;
	if (from == NULL)
		diff_push(out, DOC_OP_ADDED, pointer, NULL, to);
	else if (to == NULL)
		diff_push(out, DOC_OP_REMOVED, pointer, from, NULL);
	else if (json_is_object(from) && json_is_object(to))
		diff_objects(from, to, pointer, out);
	else if (!json_equal((json_t *)from, (json_t *)to))
		diff_push(out, DOC_OP_CHANGED, pointer, from, to);
}

void
doc_diff(const json_t *from, const json_t *to, struct doc_diff *out)
{
	memset(out, 0, sizeof(*out));
	diff_value(from, to, "", out);
}

void
doc_diff_free(struct doc_diff *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->changes[i].pointer);
		free(d->changes[i].old_json);
		free(d->changes[i].new_json);
	}
	free(d->changes);
	memset(d, 0, sizeof(*d));
}
