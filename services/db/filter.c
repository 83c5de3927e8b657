/*
 * filter: db-srv's filters compiled to SQL and evaluated in C (see
 * filter.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "platform/errbuf.h"
#include "platform/pg.h"
#include "platform/xalloc.h"

typedef Platform__Db__V1__Condition cond_pb;

/* ---- paths ---- */

static bool
all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

int
db_path_parse(const char *field, const char *text, struct db_path *p,
    char *err, size_t errlen)
{
	struct pg_array arr;
	const char *s, *dot;
	size_t len;

	memset(p, 0, sizeof(*p));
	if (text == NULL || text[0] == '\0') {
		errbuf_set(err, errlen, "%s: required (a path such as "
		    "\"address.city\")", field);
		return -1;
	}
	if (strlen(text) > DB_PATH_MAX) {
		errbuf_set(err, errlen, "%s: longer than %d bytes", field,
		    DB_PATH_MAX);
		return -1;
	}
	p->segs = xcalloc(DB_PATH_SEGMENTS_MAX, sizeof(*p->segs));
	for (s = text;; s = dot + 1) {
		dot = strchr(s, '.');
		len = dot != NULL ? (size_t)(dot - s) : strlen(s);
		if (len == 0 || len > DB_SEGMENT_MAX) {
			errbuf_set(err, errlen, "%s: segment %zu is %s", field,
			    p->n + 1, len == 0 ? "empty" :
			    "longer than 128 bytes");
			goto fail;
		}
		if (p->n == DB_PATH_SEGMENTS_MAX) {
			errbuf_set(err, errlen, "%s: more than %d segments",
			    field, DB_PATH_SEGMENTS_MAX);
			goto fail;
		}
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
				errbuf_set(err, errlen, "%s: control "
				    "character in segment %zu", field,
				    p->n + 1);
				goto fail;
			}
		if (s[0] == '-' || s[0] == '+' || s[0] == ' ') {
			errbuf_set(err, errlen, "%s: segment %zu starts with "
			    "'%c'", field, p->n + 1, s[0]);
			goto fail;
		}
		p->segs[p->n] = xstrndup(s, len);
		if (all_digits(p->segs[p->n])) {
			if (len > 9) {
				errbuf_set(err, errlen, "%s: index in segment "
				    "%zu has more than 9 digits", field,
				    p->n + 1);
				p->n++;
				goto fail;
			}
			p->numeric = true;
		}
		p->n++;
		if (dot == NULL)
			break;
	}
	pg_array_init(&arr);
	for (size_t i = 0; i < p->n; i++)
		pg_array_add(&arr, p->segs[i]);
	p->array = xstrdup(pg_array_str(&arr));
	pg_array_free(&arr);
	return 0;
fail:
	db_path_free(p);
	return -1;
}

void
db_path_free(struct db_path *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->segs[i]);
	free(p->segs);
	free(p->array);
	memset(p, 0, sizeof(*p));
}

json_t *
db_path_get(const json_t *doc, const struct db_path *p)
{
	json_t *cur = (json_t *)doc;

	for (size_t i = 0; i < p->n && cur != NULL; i++) {
		if (json_is_object(cur))
			cur = json_object_get(cur, p->segs[i]);
		else if (json_is_array(cur) && all_digits(p->segs[i]))
			cur = json_array_get(cur,
			    (size_t)strtol(p->segs[i], NULL, 10));
		else
			cur = NULL;
	}
	return cur;
}

/* ---- JSON as JSONB compares it ---- */

static bool
num_equal(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b))
		return json_integer_value(a) == json_integer_value(b);
	return json_number_value(a) == json_number_value(b);
}

bool
db_json_equal(const json_t *a, const json_t *b)
{
	const char *key;
	json_t *v;

	if (json_is_number(a) && json_is_number(b))
		return num_equal(a, b);
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		    memcmp(json_string_value(a), json_string_value(b),
		    json_string_length(a)) == 0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!db_json_equal(json_array_get(a, i),
			    json_array_get(b, i)))
				return false;
		return true;
	case JSON_OBJECT:
		if (json_object_size(a) != json_object_size(b))
			return false;
		json_object_foreach((json_t *)a, key, v) {
			json_t *w = json_object_get(b, key);

			if (w == NULL || !db_json_equal(v, w))
				return false;
		}
		return true;
	default:
		return true;    /* true, false, null: the type says it */
	}
}

static bool
contains(const json_t *a, const json_t *b, bool top)
{
	const char *key;
	json_t *v;

	if (json_is_object(b)) {
		if (!json_is_object(a))
			return false;
		json_object_foreach((json_t *)b, key, v) {
			json_t *w = json_object_get(a, key);

			if (w == NULL || !contains(w, v, false))
				return false;
		}
		return true;
	}
	if (json_is_array(b)) {
		if (!json_is_array(a))
			return false;
		for (size_t i = 0; i < json_array_size(b); i++) {
			const json_t *e = json_array_get(b, i);
			bool found = false;

			for (size_t j = 0; j < json_array_size(a) && !found;
			    j++) {
				const json_t *f = json_array_get(a, j);

				/* A scalar element matches a scalar; a
				 * container one contains. */
				if (json_is_object(e) || json_is_array(e))
					found = json_typeof(f) ==
					    json_typeof(e) &&
					    contains(f, e, false);
				else
					found = !json_is_object(f) &&
					    !json_is_array(f) &&
					    db_json_equal(f, e);
			}
			if (!found)
				return false;
		}
		return true;
	}
	/* A scalar: equal, or (at the top only) an element of an array. */
	if (top && json_is_array(a)) {
		for (size_t j = 0; j < json_array_size(a); j++) {
			const json_t *f = json_array_get(a, j);

			if (!json_is_object(f) && !json_is_array(f) &&
			    db_json_equal(f, b))
				return true;
		}
		return false;
	}
	return db_json_equal(a, b);
}

bool
db_json_contains(const json_t *a, const json_t *b)
{
	return contains(a, b, true);
}

/* ---- the tree ---- */

static const char *
op_name(int op)
{
	static const char *names[] = { "OPERATOR_UNSPECIFIED", "EQ", "NE",
	    "LT", "LE", "GT", "GE", "IN", "PREFIX", "EXISTS", "CONTAINS" };

	return op >= 0 && op < (int)(sizeof(names) / sizeof(names[0])) ?
	    names[op] : "?";
}

struct parse_state {
	int conditions;
};

static int parse_node(const char *field, const db_filter_pb *f, int depth,
    struct parse_state *ps, struct dbf **out, char *err, size_t errlen);

static int
parse_cond(const char *field, const cond_pb *c, struct dbf *n, char *err,
    size_t errlen)
{
	char f[320];
	json_error_t je;
	size_t vlen = strlen(c->value);

	n->kind = DBF_COND;
	n->op = (int)c->op;
	snprintf(f, sizeof(f), "%s.path", field);
	if (db_path_parse(f, c->path, &n->path, err, errlen) != 0)
		return -1;
	if (c->op < PLATFORM__DB__V1__OPERATOR__OPERATOR_EQ ||
	    c->op > PLATFORM__DB__V1__OPERATOR__OPERATOR_CONTAINS) {
		errbuf_set(err, errlen, "%s.op: required, one of EQ, NE, LT, "
		    "LE, GT, GE, IN, PREFIX, EXISTS, CONTAINS (not %d)", field,
		    (int)c->op);
		return -1;
	}
	snprintf(f, sizeof(f), "%s.value", field);
	if (vlen > DB_FILTER_VALUE_MAX) {
		errbuf_set(err, errlen, "%s: longer than %d bytes", f,
		    DB_FILTER_VALUE_MAX);
		return -1;
	}
	if (c->op == PLATFORM__DB__V1__OPERATOR__OPERATOR_EXISTS &&
	    vlen == 0) {
		n->value = json_true();
	} else {
		if (vlen == 0) {
			errbuf_set(err, errlen, "%s: required (JSON) for %s", f,
			    op_name(n->op));
			return -1;
		}
		n->value = json_loadb(c->value, vlen, JSON_DECODE_ANY |
		    JSON_REJECT_DUPLICATES, &je);
		if (n->value == NULL) {
			errbuf_set(err, errlen, "%s: not valid JSON: %s", f,
			    je.text);
			return -1;
		}
	}
	switch (n->op) {
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_LT:
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_LE:
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_GT:
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_GE:
		if (!json_is_number(n->value) && !json_is_string(n->value)) {
			errbuf_set(err, errlen, "%s: %s takes a number or a "
			    "string", f, op_name(n->op));
			return -1;
		}
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_IN:
		if (!json_is_array(n->value) ||
		    json_array_size(n->value) == 0 ||
		    json_array_size(n->value) > DB_IN_MAX) {
			errbuf_set(err, errlen, "%s: IN takes a JSON array of "
			    "1 to %d values", f, DB_IN_MAX);
			return -1;
		}
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_PREFIX:
		if (!json_is_string(n->value)) {
			errbuf_set(err, errlen, "%s: PREFIX takes a string", f);
			return -1;
		}
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_EXISTS:
		if (!json_is_boolean(n->value)) {
			errbuf_set(err, errlen, "%s: EXISTS takes true, false "
			    "or nothing", f);
			return -1;
		}
		break;
	default:
		break;
	}
	/* Strings compared as text are bound as themselves; everything
	 * else as JSON: the caller's own text (checked above), since a real
	 * written out again by jansson (17 digits: 0.1 as
	 * 0.10000000000000001) is another number to PostgreSQL's numeric. */
	if (json_is_string(n->value) &&
	    n->op != PLATFORM__DB__V1__OPERATOR__OPERATOR_EQ &&
	    n->op != PLATFORM__DB__V1__OPERATOR__OPERATOR_NE &&
	    n->op != PLATFORM__DB__V1__OPERATOR__OPERATOR_CONTAINS)
		n->value_text = xstrdup(json_string_value(n->value));
	else if (vlen > 0)
		n->value_text = xstrndup(c->value, vlen);
	else if ((n->value_text = json_dumps(n->value, JSON_COMPACT |
	    JSON_ENCODE_ANY)) == NULL)
		abort();
	return 0;
}

static int
parse_list(const char *field, const char *name, db_filter_pb *const *v,
    size_t nv, int depth, struct parse_state *ps, struct dbf *n, char *err,
    size_t errlen)
{
	char f[256];

	if (nv == 0) {
		errbuf_set(err, errlen, "%s.%s: empty", field, name);
		return -1;
	}
	n->kids = xcalloc(nv, sizeof(*n->kids));
	for (size_t i = 0; i < nv; i++) {
		snprintf(f, sizeof(f), "%s.%s[%zu]", field, name, i);
		/* The kid is made even when it fails: freed with n. */
		if (parse_node(f, v[i], depth + 1, ps, &n->kids[n->n++], err,
		    errlen) != 0)
			return -1;
	}
	return 0;
}

static int
parse_node(const char *field, const db_filter_pb *f, int depth,
    struct parse_state *ps, struct dbf **out, char *err, size_t errlen)
{
	struct dbf *n = xcalloc(1, sizeof(*n));
	int set = (f->condition != NULL) + (f->n_all > 0) + (f->n_any > 0) +
	    (f->not_ != NULL);
	char sub[256];
	int rc = 0;

	*out = n;
	n->kind = DBF_TRUE;
	if (depth > DB_FILTER_DEPTH_MAX) {
		errbuf_set(err, errlen, "%s: nested deeper than %d levels",
		    field, DB_FILTER_DEPTH_MAX);
		return -1;
	}
	if (set > 1) {
		errbuf_set(err, errlen, "%s: set only one of condition, all, "
		    "any, not", field);
		return -1;
	}
	if (f->condition != NULL) {
		if (++ps->conditions > DB_FILTER_CONDITIONS_MAX) {
			errbuf_set(err, errlen, "%s: more than %d conditions",
			    field, DB_FILTER_CONDITIONS_MAX);
			return -1;
		}
		snprintf(sub, sizeof(sub), "%s.condition", field);
		rc = parse_cond(sub, f->condition, n, err, errlen);
	} else if (f->n_all > 0) {
		n->kind = DBF_ALL;
		rc = parse_list(field, "all", f->all, f->n_all, depth, ps, n,
		    err, errlen);
	} else if (f->n_any > 0) {
		n->kind = DBF_ANY;
		rc = parse_list(field, "any", f->any, f->n_any, depth, ps, n,
		    err, errlen);
	} else if (f->not_ != NULL) {
		n->kind = DBF_NOT;
		n->kids = xcalloc(1, sizeof(*n->kids));
		snprintf(sub, sizeof(sub), "%s.not", field);
		rc = parse_node(sub, f->not_, depth + 1, ps, &n->kids[0], err,
		    errlen);
		if (n->kids[0] != NULL)
			n->n = 1;
	}
	return rc;
}

int
dbf_parse(const char *field, const db_filter_pb *f, struct dbf **out,
    char *err, size_t errlen)
{
	struct parse_state ps = { 0 };

	if (f == NULL) {
		*out = xcalloc(1, sizeof(**out));
		(*out)->kind = DBF_TRUE;
		return 0;
	}
	if (parse_node(field, f, 1, &ps, out, err, errlen) != 0) {
		dbf_free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

void
dbf_free(struct dbf *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->n; i++)
		dbf_free(f->kids[i]);
	free(f->kids);
	db_path_free(&f->path);
	json_decref(f->value);
	free(f->value_text);
	free(f);
}

/* ---- evaluation in C ---- */

static int
scalar_cmp(const json_t *a, const json_t *b, bool *ok)
{
	*ok = true;
	if (json_is_number(a) && json_is_number(b)) {
		if (json_is_integer(a) && json_is_integer(b)) {
			json_int_t x = json_integer_value(a),
			    y = json_integer_value(b);

			return x < y ? -1 : x > y;
		} else {
			double x = json_number_value(a),
			    y = json_number_value(b);

			return x < y ? -1 : x > y;
		}
	}
	if (json_is_string(a) && json_is_string(b)) {
		size_t la = json_string_length(a), lb = json_string_length(b);
		int c = memcmp(json_string_value(a), json_string_value(b),
		    la < lb ? la : lb);

		return c != 0 ? (c < 0 ? -1 : 1) : (la < lb ? -1 : la > lb);
	}
	*ok = false;
	return 0;
}

static bool
cond_match(const struct dbf *f, const json_t *doc)
{
	json_t *x = db_path_get(doc, &f->path);
	bool ok;
	int c;

	switch (f->op) {
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_EQ:
		return x != NULL && db_json_equal(x, f->value);
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_NE:
		return x == NULL || !db_json_equal(x, f->value);
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_LT:
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_LE:
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_GT:
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_GE:
		if (x == NULL)
			return false;
		c = scalar_cmp(x, f->value, &ok);
		if (!ok)
			return false;
		switch (f->op) {
		case PLATFORM__DB__V1__OPERATOR__OPERATOR_LT: return c < 0;
		case PLATFORM__DB__V1__OPERATOR__OPERATOR_LE: return c <= 0;
		case PLATFORM__DB__V1__OPERATOR__OPERATOR_GT: return c > 0;
		default: return c >= 0;
		}
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_IN:
		if (x == NULL)
			return false;
		for (size_t i = 0; i < json_array_size(f->value); i++)
			if (db_json_equal(x, json_array_get(f->value, i)))
				return true;
		return false;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_PREFIX:
		return json_is_string(x) && json_string_length(x) >=
		    json_string_length(f->value) &&
		    memcmp(json_string_value(x), json_string_value(f->value),
		    json_string_length(f->value)) == 0;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_EXISTS:
		return (x != NULL) == json_is_true(f->value);
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_CONTAINS:
		return x != NULL && db_json_contains(x, f->value);
	}
	return false;
}

bool
dbf_match(const struct dbf *f, const json_t *doc)
{
	switch (f->kind) {
	case DBF_TRUE:
		return true;
	case DBF_COND:
		return cond_match(f, doc);
	case DBF_ALL:
		for (size_t i = 0; i < f->n; i++)
			if (!dbf_match(f->kids[i], doc))
				return false;
		return true;
	case DBF_ANY:
		for (size_t i = 0; i < f->n; i++)
			if (dbf_match(f->kids[i], doc))
				return true;
		return false;
	case DBF_NOT:
		return !dbf_match(f->kids[0], doc);
	}
	return false;
}

static bool
path_is(const struct db_path *p, const char *const *segs, size_t n)
{
	if (p->n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(p->segs[i], segs[i]) != 0)
			return false;
	return true;
}

bool
dbf_uses_path(const struct dbf *f, const char *const *segs, size_t n)
{
	if (f->kind == DBF_COND)
		return f->op != PLATFORM__DB__V1__OPERATOR__OPERATOR_NE &&
		    !(f->op == PLATFORM__DB__V1__OPERATOR__OPERATOR_EXISTS &&
		    json_is_false(f->value)) && path_is(&f->path, segs, n);
	if (f->kind == DBF_ALL)
		for (size_t i = 0; i < f->n; i++)
			if (dbf_uses_path(f->kids[i], segs, n))
				return true;
	return false;
}

/* ---- SQL ---- */

void
db_sql_init(struct db_sql *q)
{
	memset(q, 0, sizeof(*q));
}

void
db_sql_free(struct db_sql *q)
{
	for (int i = 0; i < q->n; i++)
		free(q->params[i]);
	free(q->params);
	free(q->text);
	memset(q, 0, sizeof(*q));
}

void
db_sql_add(struct db_sql *q, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(q->text != NULL ? q->text + q->len : NULL,
		    q->text != NULL ? q->cap - q->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if (q->text != NULL && q->len + (size_t)n < q->cap)
			break;
		q->cap = (q->cap + (size_t)n + 1) * 2;
		q->text = xrealloc(q->text, q->cap);
		if (q->len == 0)
			q->text[0] = '\0';
	}
	q->len += (size_t)n;
}

int
db_sql_param(struct db_sql *q, const char *v)
{
	if (q->n == q->cap_p) {
		q->cap_p = q->cap_p == 0 ? 8 : q->cap_p * 2;
		q->params = xrealloc(q->params,
		    (size_t)q->cap_p * sizeof(*q->params));
	}
	q->params[q->n++] = v != NULL ? xstrdup(v) : NULL;
	return q->n;
}

/* {"a":{"b":v}} for the path a.b, as JSON text (malloc'd). */
static char *
wrap_value(const struct db_path *p, const json_t *v)
{
	json_t *cur = json_deep_copy(v), *o;
	char *s;

	for (size_t i = p->n; i-- > 0;) {
		o = json_object();
		json_object_set_new(o, p->segs[i], cur);
		cur = o;
	}
	if ((s = json_dumps(cur, JSON_COMPACT)) == NULL)
		abort();
	json_decref(cur);
	return s;
}

static void
cond_sql(const struct dbf *f, struct db_sql *q, bool gin)
{
	int p = db_sql_param(q, f->path.array), v;
	const char *cmp = NULL;
	bool wrap = false;

	switch (f->op) {
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_EQ:
		v = db_sql_param(q, f->value_text);
		db_sql_add(q, "(d.body #> $%d::text[]) = $%d::jsonb", p, v);
		wrap = !json_is_object(f->value) && !json_is_array(f->value);
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_NE:
		v = db_sql_param(q, f->value_text);
		db_sql_add(q, "(d.body #> $%d::text[]) IS DISTINCT FROM "
		    "$%d::jsonb", p, v);
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_LT: cmp = "<"; break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_LE: cmp = "<="; break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_GT: cmp = ">"; break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_GE: cmp = ">="; break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_IN:
		v = db_sql_param(q, f->value_text);
		db_sql_add(q, "(d.body #> $%d::text[]) IN (SELECT "
		    "jsonb_array_elements($%d::jsonb))", p, v);
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_PREFIX:
		v = db_sql_param(q, f->value_text);
		db_sql_add(q, "(jsonb_typeof(d.body #> $%d::text[]) = 'string'"
		    " AND left(d.body #>> $%d::text[], length($%d::text)) ="
		    " $%d::text)", p, p, v, v);
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_EXISTS:
		db_sql_add(q, "(d.body #> $%d::text[]) IS %s", p,
		    json_is_true(f->value) ? "NOT NULL" : "NULL");
		break;
	case PLATFORM__DB__V1__OPERATOR__OPERATOR_CONTAINS:
		v = db_sql_param(q, f->value_text);
		db_sql_add(q, "coalesce((d.body #> $%d::text[]) @> $%d::jsonb,"
		    " false)", p, v);
		wrap = json_is_object(f->value) || json_is_array(f->value);
		break;
	}
	if (cmp != NULL) {
		v = db_sql_param(q, f->value_text);
		if (json_is_number(f->value))
			db_sql_add(q, "(jsonb_typeof(d.body #> $%d::text[]) = "
			    "'number' AND (d.body #> $%d::text[]) %s "
			    "$%d::jsonb)", p, p, cmp, v);
		else
			db_sql_add(q, "(jsonb_typeof(d.body #> $%d::text[]) = "
			    "'string' AND (d.body #>> $%d::text[]) COLLATE "
			    "\"C\" %s $%d::text COLLATE \"C\")", p, p, cmp, v);
	}
	/* A necessary condition a GIN index on the body can answer. */
	if (gin && wrap && !f->path.numeric) {
		char *w = wrap_value(&f->path, f->value);

		db_sql_add(q, " AND d.body @> $%d::jsonb", db_sql_param(q, w));
		free(w);
	}
}

void
dbf_sql(const struct dbf *f, struct db_sql *q, bool gin)
{
	switch (f->kind) {
	case DBF_TRUE:
		db_sql_add(q, "true");
		return;
	case DBF_COND:
		db_sql_add(q, "(");
		cond_sql(f, q, gin);
		db_sql_add(q, ")");
		return;
	case DBF_ALL:
	case DBF_ANY:
		db_sql_add(q, "(");
		for (size_t i = 0; i < f->n; i++) {
			if (i > 0)
				db_sql_add(q, f->kind == DBF_ALL ? " AND " :
				    " OR ");
			/* Under an OR the hint would be no use. */
			dbf_sql(f->kids[i], q, gin && f->kind == DBF_ALL);
		}
		db_sql_add(q, ")");
		return;
	case DBF_NOT:
		/* A missing value makes a condition NULL, which counts as
		 * false everywhere but under NOT: made false first. */
		db_sql_add(q, "(NOT coalesce(");
		dbf_sql(f->kids[0], q, false);
		db_sql_add(q, ", false))");
		return;
	}
}

void
db_search_sql(const struct db_search *s, struct db_sql *q)
{
	int keys[DB_ORDER_MAX];

	if (s->count)
		db_sql_add(q, "SELECT count(*) FROM db_documents d");
	else {
		db_sql_add(q, "SELECT d.id, d.body::text, d.revision,"
		    " d.create_revision, coalesce(d.expires_ms, 0)");
		for (size_t i = 0; i < s->norder; i++) {
			keys[i] = db_sql_param(q, s->order[i].path.array);
			db_sql_add(q, ", (d.body #> $%d::text[])::text",
			    keys[i]);
		}
		db_sql_add(q, " FROM db_documents d");
	}
	/* Expiry by the database's clock, as writes and reads have it. */
	db_sql_add(q, " WHERE d.database = $%d AND d.collection = $%d"
	    " AND (d.expires_ms IS NULL OR d.expires_ms >"
	    " floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
	    " AND ", db_sql_param(q, s->database),
	    db_sql_param(q, s->collection));
	dbf_sql(s->filter, q, s->gin);
	if (s->count)
		return;
	if (s->after_id != NULL) {
		/* Strictly after the cursor's row in the order below: on the
		 * first key after it, or equal on it and after on the next,
		 * ..., or equal on every key and a greater id. A missing
		 * value sorts last either way. */
		db_sql_add(q, " AND (");
		for (size_t i = 0; i <= s->norder; i++) {
			if (i > 0)
				db_sql_add(q, " OR ");
			db_sql_add(q, "(");
			for (size_t j = 0; j < i; j++) {
				if (s->after_keys[j] == NULL)
					db_sql_add(q, "(d.body #> $%d::text[])"
					    " IS NULL AND ", keys[j]);
				else
					db_sql_add(q, "(d.body #> $%d::text[])"
					    " = $%d::jsonb AND ", keys[j],
					    db_sql_param(q, s->after_keys[j]));
			}
			if (i == s->norder)
				db_sql_add(q, "d.id > $%d",
				    db_sql_param(q, s->after_id));
			else if (s->after_keys[i] == NULL)
				db_sql_add(q, "false");
			else
				db_sql_add(q, "((d.body #> $%d::text[]) %s "
				    "$%d::jsonb OR (d.body #> $%d::text[]) IS "
				    "NULL)", keys[i], s->order[i].desc ?
				    "<" : ">", db_sql_param(q,
				    s->after_keys[i]), keys[i]);
			db_sql_add(q, ")");
		}
		db_sql_add(q, ")");
	}
	db_sql_add(q, " ORDER BY ");
	for (size_t i = 0; i < s->norder; i++)
		db_sql_add(q, "(d.body #> $%d::text[]) %s NULLS LAST, ",
		    keys[i], s->order[i].desc ? "DESC" : "ASC");
	db_sql_add(q, "d.id LIMIT %d", s->limit);
}
