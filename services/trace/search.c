/*
 * search: Search into SQL (see search.h).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "platform/xalloc.h"
#include "search.h"

struct sqlbuf {
	char *s;
	size_t len, cap;
};

static void
put(struct sqlbuf *b, const char *text)
{
	size_t n = strlen(text);

	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? b->cap * 2 : 512;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, text, n + 1);
	b->len += n;
}

/* Binds v as the next parameter and writes its placeholder ($n) with
 * the cast given. */
static void
bind(struct sqlbuf *b, struct search_sql *out, char *v, const char *cast)
{
	char ph[32];

	out->values[out->nparams++] = v;
	snprintf(ph, sizeof(ph), "$%zu%s", out->nparams, cast);
	put(b, ph);
}

static char *
num(int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	return xstrdup(s);
}

void
search_build(const struct search_query *q, struct search_sql *out)
{
	struct sqlbuf b = { 0 };

	memset(out, 0, sizeof(*out));
	/* start_at is the partition key: the window prunes the partitions
	 * read. */
	put(&b, "SELECT encode(trace_id, 'hex'), max(start_ns) AS t"
	    " FROM trace_spans WHERE start_at >= to_timestamp(");
	bind(&b, out, num(q->start_ms), "::bigint / 1000.0");
	put(&b, ") AND start_at < to_timestamp(");
	bind(&b, out, num(q->end_ms), "::bigint / 1000.0");
	put(&b, ")");
	if (q->service != NULL && q->service[0] != '\0') {
		put(&b, " AND service = ");
		bind(&b, out, xstrdup(q->service), "::text");
	}
	if (q->operation != NULL && q->operation[0] != '\0') {
		put(&b, " AND name = ");
		bind(&b, out, xstrdup(q->operation), "::text");
	}
	if (q->nattrs > 0) {
		json_t *o = json_object();

		for (size_t i = 0; i < q->nattrs; i++)
			json_object_set_new(o, q->attr_keys[i],
			    json_string(q->attr_values[i]));
		put(&b, " AND attributes @> ");
		bind(&b, out, json_dumps(o, JSON_COMPACT), "::jsonb");
		json_decref(o);
	}
	if (q->min_duration_ns > 0) {
		put(&b, " AND duration_ns >= ");
		bind(&b, out, num(q->min_duration_ns), "::bigint");
	}
	if (q->max_duration_ns > 0) {
		put(&b, " AND duration_ns <= ");
		bind(&b, out, num(q->max_duration_ns), "::bigint");
	}
	if (q->errors_only)
		put(&b, " AND error");
	put(&b, " GROUP BY trace_id");
	if (q->has_after) {
		put(&b, " HAVING (max(start_ns), trace_id) < (");
		bind(&b, out, num(q->after_t), "::bigint");
		put(&b, ", decode(");
		bind(&b, out, xstrdup(q->after_trace), "::text");
		put(&b, ", 'hex'))");
	}
	put(&b, " ORDER BY t DESC, trace_id DESC LIMIT ");
	bind(&b, out, num(q->limit), "::integer");
	out->sql = b.s;
}

void
search_sql_free(struct search_sql *s)
{
	for (size_t i = 0; i < s->nparams; i++)
		free(s->values[i]);
	free(s->sql);
	memset(s, 0, sizeof(*s));
}

void
search_key_format(int64_t t, const char *trace_id, char *out, size_t outlen)
{
	snprintf(out, outlen, "%" PRId64 ":%s", t, trace_id);
}

int
search_hex_id(const char *s, size_t n, char *out)
{
	bool nonzero = false;

	if (s == NULL || strlen(s) != n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -1;
		out[i] = (char)tolower((unsigned char)s[i]);
		nonzero |= s[i] != '0';
	}
	out[n] = '\0';
	return nonzero ? 0 : -1;
}

int
search_key_parse(const char *key, int64_t *t, char trace_id[33])
{
	const char *colon = strchr(key, ':');
	char *end;
	long long v;

	if (colon == NULL || colon == key)
		return -1;
	v = strtoll(key, &end, 10);
	if (end != colon || v < 0)
		return -1;
	if (search_hex_id(colon + 1, 32, trace_id) != 0)
		return -1;
	*t = v;
	return 0;
}
