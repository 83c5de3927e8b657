/*
 * store: event-srv's PostgreSQL tables and statements (see store.h).
 *
 * Every statement is prepared by name and takes its values as bound
 * parameters; lists of values (a batch of events, topic regexes, keys)
 * travel as one JSON parameter built with jansson. Topics and names are
 * COLLATE "C" so pages are in byte order whatever the locale.
 */
#include <inttypes.h>
#include <sys/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "store.h"
#include "subject.h"

static const struct pg_migration store_migrations[] = {
	{ 1, "create event tables",
	  "CREATE TABLE event_sequence ("
	  " id integer PRIMARY KEY CHECK (id = 1),"
	  " seq bigint NOT NULL);"
	  "INSERT INTO event_sequence (id, seq) VALUES (1, 0);"
	  "CREATE TABLE event_topics ("
	  " topic text COLLATE \"C\" PRIMARY KEY,"
	  " last_offset bigint NOT NULL);"
	  "CREATE TABLE events ("
	  " seq bigint PRIMARY KEY,"
	  " topic text COLLATE \"C\" NOT NULL,"
	  " off bigint NOT NULL,"
	  " id uuid NOT NULL,"
	  " type text NOT NULL,"
	  " source text NOT NULL,"
	  " data bytea NOT NULL,"
	  " metadata jsonb NOT NULL,"
	  " idem_key text,"
	  " created_at timestamptz NOT NULL,"
	  " UNIQUE (topic, off));"
	  "CREATE UNIQUE INDEX events_idem ON events (topic, idem_key)"
	  " WHERE idem_key IS NOT NULL;"
	  "CREATE INDEX events_created ON events (created_at);"
	  "CREATE INDEX events_metadata ON events"
	  " USING gin (metadata jsonb_path_ops);"
	  "CREATE TABLE event_groups ("
	  " name text COLLATE \"C\" PRIMARY KEY,"
	  " subjects text NOT NULL,"
	  " claimed bigint NOT NULL,"
	  " ack_wait_ms bigint NOT NULL,"
	  " created_at timestamptz NOT NULL DEFAULT now());"
	  "CREATE TABLE event_group_pending ("
	  " grp text COLLATE \"C\" NOT NULL"
	  "  REFERENCES event_groups (name) ON DELETE CASCADE,"
	  " seq bigint NOT NULL,"
	  " owner text NOT NULL,"
	  " deliveries integer NOT NULL,"
	  " deadline timestamptz NOT NULL,"
	  " PRIMARY KEY (grp, seq));"
	  "CREATE INDEX event_group_pending_deadline"
	  " ON event_group_pending (grp, deadline);"
	  "CREATE TABLE event_retention ("
	  " subject text COLLATE \"C\" PRIMARY KEY,"
	  " max_age_ms bigint NOT NULL,"
	  " max_count bigint NOT NULL);" },
};

#define MS_OF(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"
#define TS_OF(param) "('epoch'::timestamptz + " param \
	"::bigint * interval '1 millisecond')"
/* The columns every event-returning statement selects, in row_of order. */
#define ROW_COLS \
	"e.seq, e.off, " MS_OF("e.created_at") ", e.id::text, e.topic," \
	" e.type, e.source, COALESCE(e.idem_key, ''), e.data," \
	" e.metadata::text"
/* A JSON array parameter of regexes as the right side of topic ~ ANY. */
#define REGEXES(param) \
	"ARRAY(SELECT json_array_elements_text(" param "::json))"

/* ---- rows ---- */

struct ev_row *
ev_row_new(int64_t seq, int64_t offset, int64_t time_ms, const char *id,
    const char *topic, const char *type, const char *source, const char *idem,
    const uint8_t *data, size_t ndata, const char *const *keys,
    const char *const *values, size_t nmeta)
{
	struct ev_row *r = xcalloc(1, sizeof(*r));

	r->refs = 1;
	r->seq = seq;
	r->offset = offset;
	r->time_ms = time_ms;
	r->id = xstrdup(id);
	r->topic = xstrdup(topic);
	r->type = xstrdup(type);
	r->source = xstrdup(source);
	r->idem = xstrdup(idem);
	r->data = xcalloc(1, ndata);
	if (ndata > 0)
		memcpy(r->data, data, ndata);
	r->ndata = ndata;
	r->nmeta = nmeta;
	r->meta = xcalloc(nmeta, sizeof(*r->meta));
	r->metap = xcalloc(nmeta, sizeof(*r->metap));
	r->size = sizeof(*r) + ndata + strlen(topic) + strlen(type) +
	    strlen(source) + strlen(idem) + 64;
	for (size_t i = 0; i < nmeta; i++) {
		platform__event__v1__stored_event__metadata_entry__init(&r->meta[i]);
		r->meta[i].key = xstrdup(keys[i]);
		r->meta[i].value = xstrdup(values[i]);
		r->metap[i] = &r->meta[i];
		r->size += strlen(keys[i]) + strlen(values[i]) + 32;
	}
	return r;
}

struct ev_row *
ev_row_ref(struct ev_row *r)
{
	__atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void
ev_row_unref(struct ev_row *r)
{
	if (r == NULL || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < r->nmeta; i++) {
		free(r->meta[i].key);
		free(r->meta[i].value);
	}
	free(r->meta);
	free(r->metap);
	free(r->data);
	free(r->id);
	free(r->topic);
	free(r->type);
	free(r->source);
	free(r->idem);
	free(r);
}

void
ev_row_fill(Platform__Event__V1__StoredEvent *e, const struct ev_row *r)
{
	platform__event__v1__stored_event__init(e);
	e->id = r->id;
	e->topic = r->topic;
	e->offset = r->offset;
	e->sequence = r->seq;
	e->type = r->type;
	e->source = r->source;
	e->data.data = r->data;
	e->data.len = r->ndata;
	e->metadata = r->metap;
	e->n_metadata = r->nmeta;
	e->time_unix_ms = r->time_ms;
	e->idempotency_key = r->idem;
}

void
ev_rows_free(struct ev_rows *rows)
{
	for (size_t i = 0; i < rows->n; i++)
		ev_row_unref(rows->v[i]);
	free(rows->v);
	rows->v = NULL;
	rows->n = 0;
}

/* Row i of a result selecting ROW_COLS. */
static struct ev_row *
row_of(const PGresult *res, int i)
{
	const char **keys = NULL, **values = NULL;
	const char *key;
	unsigned char *data;
	struct ev_row *r;
	json_t *meta, *v;
	size_t ndata = 0, n = 0;

	data = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 8),
	    &ndata);
	if (data == NULL)
		abort();
	meta = json_loads(PQgetvalue(res, i, 9), 0, NULL);
	if (json_is_object(meta)) {
		keys = xcalloc(json_object_size(meta), sizeof(*keys));
		values = xcalloc(json_object_size(meta), sizeof(*values));
		json_object_foreach(meta, key, v) {
			if (!json_is_string(v))
				continue;
			keys[n] = key;
			values[n++] = json_string_value(v);
		}
	}
	r = ev_row_new(strtoll(PQgetvalue(res, i, 0), NULL, 10),
	    strtoll(PQgetvalue(res, i, 1), NULL, 10),
	    strtoll(PQgetvalue(res, i, 2), NULL, 10), PQgetvalue(res, i, 3),
	    PQgetvalue(res, i, 4), PQgetvalue(res, i, 5),
	    PQgetvalue(res, i, 6), PQgetvalue(res, i, 7), data, ndata, keys,
	    values, n);
	PQfreemem(data);
	free(keys);
	free(values);
	json_decref(meta);
	return r;
}

static void
rows_of(const PGresult *res, struct ev_rows *out)
{
	int n = PQntuples(res);

	out->n = 0;
	out->v = xcalloc((size_t)n, sizeof(*out->v));
	for (int i = 0; i < n; i++)
		out->v[out->n++] = row_of(res, i);
}

static int64_t
int_at(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* ---- the store ---- */

struct pg_store *
store_new(const char *conninfo, int pool_size)
{
	return pg_store_new(conninfo, pool_size, "event", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
}

static enum plat_code
not_ready(char *err, size_t errlen)
{
	errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
	return PLAT_UNAVAILABLE;
}

static enum plat_code
query_rows(struct pg_store *s, const char *name, const char *sql, int nparams,
    const char *const *values, int64_t timeout_ms, struct ev_rows *out,
    char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	out->v = NULL;
	out->n = 0;
	code = pg_store_exec(s, name, sql, nparams, values, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	rows_of(res, out);
	PQclear(res);
	return PLAT_OK;
}

/* A statement giving one bigint (first row, first column; dflt when no
 * row or NULL). */
static enum plat_code
query_int(struct pg_store *s, const char *name, const char *sql, int nparams,
    const char *const *values, int64_t dflt, int64_t timeout_ms,
    int64_t *out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*out = dflt;
	code = pg_store_exec(s, name, sql, nparams, values, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		*out = int_at(res, 0, 0);
	PQclear(res);
	return PLAT_OK;
}

/* A JSON text (malloc'd) of j, which is consumed. */
static char *
json_text(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (s == NULL)
		abort();        /* only out of memory: inputs are checked */
	return s;
}

/* ---- publishing ---- */

struct publish_tx {
	const struct ev_input *in;
	size_t n;
	struct ev_receipt *out;
	ssize_t *first;         /* the earlier event of the batch with its key */
};

static void
receipt_from(struct ev_receipt *r, const PGresult *res, int row, int col)
{
	r->seq = int_at(res, row, col);
	r->offset = int_at(res, row, col + 1);
	r->time_ms = int_at(res, row, col + 2);
	snprintf(r->id, sizeof(r->id), "%s", PQgetvalue(res, row, col + 3));
}

/* Marks the events whose key is stored already (res: event_keys'). */
static void
publish_mark_duplicates(struct publish_tx *x, const PGresult *res)
{
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t i = int_at(res, r, 0);

		if (i < 0 || (size_t)i >= x->n)
			continue;
		receipt_from(&x->out[i], res, r, 1);
		x->out[i].duplicate = true;
	}
}

/* The insert's columns, one array parameter each. */
enum { P_SEQ, P_TOPIC, P_TYPE, P_SOURCE, P_DATA, P_META, P_IDEM, P_ARRAYS };

/* The new events as the arrays the insert reads, sequences from base + 1
 * on; returns the last sequence. */
static int64_t
publish_arrays(const struct publish_tx *x, int64_t base,
    struct pg_array *arr)
{
	int64_t seq = base;

	for (int k = 0; k < P_ARRAYS; k++)
		pg_array_init(&arr[k]);
	for (size_t i = 0; i < x->n; i++) {
		const struct ev_input *e = &x->in[i];
		json_t *meta;
		char *data, *mtext;

		if (x->first[i] >= 0 || x->out[i].duplicate)
			continue;
		meta = json_object();
		for (size_t k = 0; k < e->nmeta; k++)
			json_object_set_new(meta, e->keys[k],
			    json_string(e->values[k]));
		mtext = json_text(meta);
		data = ev_base64(e->data, e->ndata);
		pg_array_add_int(&arr[P_SEQ], ++seq);
		pg_array_add(&arr[P_TOPIC], e->topic);
		pg_array_add(&arr[P_TYPE], e->type);
		pg_array_add(&arr[P_SOURCE], e->source);
		pg_array_add(&arr[P_DATA], data);
		pg_array_add(&arr[P_META], mtext);
		pg_array_add(&arr[P_IDEM], e->idem);
		free(data);
		free(mtext);
	}
	return seq;
}

/*
 * Offsets: each topic's counter moves by its number of new events, and
 * an event's offset is the counter's new value minus the events of its
 * topic after it in the batch, by window functions over the input.
 */
static enum plat_code
publish_insert(struct pg_conn *c, struct publish_tx *x, int64_t base,
    int64_t deadline, char *err, size_t errlen)
{
	struct pg_array arr[P_ARRAYS];
	const char *values[P_ARRAYS + 1];
	char lastbuf[24];
	struct pg_query q;
	enum plat_code code;
	PGresult *res = NULL;
	int64_t last;
	size_t i;
	int r;

	last = publish_arrays(x, base, arr);
	for (int k = 0; k < P_ARRAYS; k++)
		values[k] = pg_array_str(&arr[k]);
	snprintf(lastbuf, sizeof(lastbuf), "%" PRId64, last);
	values[P_ARRAYS] = lastbuf;
	code = PLAT_OK;
	if (last == base)
		goto out;
	q = (struct pg_query){ "event_insert",
	    "WITH x AS (SELECT * FROM unnest($1::bigint[], $2::text[],"
	    "  $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::text[])"
	    "  AS x(seq, topic, type, source, data, meta, idem)),"
	    " t AS (INSERT INTO event_topics AS t (topic, last_offset)"
	    "  SELECT topic, count(*) FROM x GROUP BY topic"
	    "  ON CONFLICT (topic) DO UPDATE"
	    "  SET last_offset = t.last_offset + EXCLUDED.last_offset"
	    "  RETURNING topic, last_offset),"
	    " y AS (SELECT x.*, t.last_offset - count(*) OVER w"
	    "  + row_number() OVER (w ORDER BY x.seq) AS off"
	    "  FROM x JOIN t USING (topic) WINDOW w AS (PARTITION BY x.topic)),"
	    " e AS (INSERT INTO events (seq, topic, off, id, type, source,"
	    "  data, metadata, idem_key, created_at)"
	    "  SELECT seq, topic, off, gen_random_uuid(), type, source,"
	    "  decode(data, 'base64'), meta, NULLIF(idem, ''),"
	    "  clock_timestamp() FROM y ORDER BY seq"
	    "  RETURNING seq, off, created_at, id),"
	    " s AS (UPDATE event_sequence SET seq = $8::bigint WHERE id = 1)"
	    " SELECT e.seq, e.off, " MS_OF("e.created_at") ", e.id::text"
	    " FROM e, (SELECT pg_notify('" STORE_CHANNEL "', $8::text)) n"
	    " ORDER BY e.seq",
	    P_ARRAYS + 1, values, NULL, NULL, NULL };
	/* The commit goes in the same round trip. */
	code = pg_pipeline_commit(c, &q, 1, pg_left(deadline), err, errlen);
	res = q.result;
out:
	for (int k = 0; k < P_ARRAYS; k++)
		pg_array_free(&arr[k]);
	if (code != PLAT_OK || last == base)
		return code;
	if (PQntuples(res) != (int)(last - base)) {
		PQclear(res);
		log_error("event: insert returned a wrong number of rows");
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	for (i = 0, r = 0; i < x->n; i++)
		if (x->first[i] < 0 && !x->out[i].duplicate)
			receipt_from(&x->out[i], res, r++, 0);
	PQclear(res);
	return PLAT_OK;
}

/*
 * Two round trips: BEGIN, the sequence row's lock and the lookup of the
 * batch's idempotency keys together (the lock is taken first, so no
 * other publisher can store a key meanwhile), then the insert with the
 * COMMIT.
 */
enum { K_I, K_TOPIC, K_IDEM, K_ARRAYS };

static enum plat_code
publish_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct publish_tx *x = arg;
	int64_t deadline = pg_deadline(timeout_ms), base;
	struct pg_array k[K_ARRAYS];
	const char *kv[K_ARRAYS];
	struct pg_query q[2] = {
		{ "event_lock",
		    "SELECT seq FROM event_sequence WHERE id = 1 FOR UPDATE",
		    0, NULL, NULL, NULL, NULL },
		{ "event_keys",
		    "SELECT k.i, e.seq, e.off, " MS_OF("e.created_at") ","
		    " e.id::text FROM unnest($1::int[], $2::text[], $3::text[])"
		    "  AS k(i, topic, idem)"
		    " JOIN events e ON e.topic = k.topic AND e.idem_key = k.idem",
		    K_ARRAYS, kv, NULL, NULL, NULL },
	};
	enum plat_code code;

	for (int i = 0; i < K_ARRAYS; i++)
		pg_array_init(&k[i]);
	for (size_t i = 0; i < x->n; i++) {
		memset(&x->out[i], 0, sizeof(x->out[i]));
		if (x->in[i].idem[0] != '\0' && x->first[i] < 0) {
			pg_array_add_int(&k[K_I], (int64_t)i);
			pg_array_add(&k[K_TOPIC], x->in[i].topic);
			pg_array_add(&k[K_IDEM], x->in[i].idem);
		}
	}
	for (int i = 0; i < K_ARRAYS; i++)
		kv[i] = pg_array_str(&k[i]);
	code = pg_pipeline(c, q, k[K_I].n > 0 ? 2 : 1, pg_left(deadline), err,
	    errlen);
	for (int i = 0; i < K_ARRAYS; i++)
		pg_array_free(&k[i]);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(q[0].result) != 1) {
		PQclear(q[0].result);
		PQclear(q[1].result);
		log_error("event: sequence row missing");
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	base = int_at(q[0].result, 0, 0);
	PQclear(q[0].result);
	if (q[1].result != NULL)
		publish_mark_duplicates(x, q[1].result);
	PQclear(q[1].result);
	return publish_insert(c, x, base, deadline, err, errlen);
}

/* Orders events with a key by (topic, key, position in the batch). */
static int
keyed_cmp(const void *a, const void *b, void *arg)
{
	const struct ev_input *in = arg;
	const struct ev_input *x = &in[*(const size_t *)a];
	const struct ev_input *y = &in[*(const size_t *)b];
	int c;

	if ((c = strcmp(x->topic, y->topic)) != 0 ||
	    (c = strcmp(x->idem, y->idem)) != 0)
		return c;
	return (x > y) - (x < y);
}

/*
 * A key used twice in one batch: the later events answer with the first
 * one's receipt. Sorting the keyed events by (topic, key, position) puts
 * each key's uses side by side, first one first: n log n for a batch of
 * a thousand calls, where comparing every pair was n squared.
 */
static void
publish_first_of_keys(struct publish_tx *x)
{
	size_t *keyed = xcalloc(x->n + 1, sizeof(*keyed)), nk = 0;

	for (size_t i = 0; i < x->n; i++) {
		x->first[i] = -1;
		if (x->in[i].idem[0] != '\0')
			keyed[nk++] = i;
	}
	qsort_r(keyed, nk, sizeof(*keyed), keyed_cmp, (void *)x->in);
	for (size_t k = 1; k < nk; k++) {
		const struct ev_input *a = &x->in[keyed[k - 1]];
		const struct ev_input *b = &x->in[keyed[k]];

		if (strcmp(a->topic, b->topic) == 0 &&
		    strcmp(a->idem, b->idem) == 0)
			x->first[keyed[k]] = x->first[keyed[k - 1]] >= 0 ?
			    x->first[keyed[k - 1]] : (ssize_t)keyed[k - 1];
	}
	free(keyed);
}

enum plat_code
store_publish(struct pg_store *s, const struct ev_input *in, size_t n,
    int64_t timeout_ms, struct ev_receipt *out, char *err, size_t errlen)
{
	struct publish_tx x = { in, n, out, xcalloc(n, sizeof(ssize_t)) };
	enum plat_code code;

	if (!pg_store_ready(s)) {
		free(x.first);
		return not_ready(err, errlen);
	}
	publish_first_of_keys(&x);
	code = pg_store_tx(s, timeout_ms, publish_fn, &x, err, errlen);
	if (code == PLAT_OK)
		for (size_t i = 0; i < n; i++)
			if (x.first[i] >= 0) {
				out[i] = out[x.first[i]];
				out[i].duplicate = true;
			}
	free(x.first);
	return code;
}

/* ---- reading ---- */

enum plat_code
store_head(struct pg_store *s, int64_t timeout_ms, int64_t *seq, char *err,
    size_t errlen)
{
	return query_int(s, "event_head",
	    "SELECT seq FROM event_sequence WHERE id = 1", 0, NULL, 0,
	    timeout_ms, seq, err, errlen);
}

enum plat_code
store_read(struct pg_store *s, int64_t after, int64_t upto,
    const char *regexes_json, int limit, int64_t timeout_ms,
    struct ev_rows *out, char *err, size_t errlen)
{
	char a[24], u[24], lim[16];
	const char *values[] = { a, u, regexes_json, lim };

	snprintf(a, sizeof(a), "%" PRId64, after);
	snprintf(u, sizeof(u), "%" PRId64, upto);
	snprintf(lim, sizeof(lim), "%d", limit);
	return query_rows(s, "event_read",
	    "SELECT " ROW_COLS " FROM events e"
	    " WHERE e.seq > $1::bigint"
	    " AND ($2::bigint = 0 OR e.seq <= $2::bigint)"
	    " AND ($3::json IS NULL OR e.topic ~ ANY(" REGEXES("$3") "))"
	    " ORDER BY e.seq LIMIT $4",
	    4, values, timeout_ms, out, err, errlen);
}

enum plat_code
store_before_offset(struct pg_store *s, const char *topic, int64_t offset,
    int64_t timeout_ms, int64_t *before, char *err, size_t errlen)
{
	char off[24];
	const char *values[] = { topic, off };

	snprintf(off, sizeof(off), "%" PRId64, offset);
	return query_int(s, "event_before_offset",
	    "SELECT COALESCE((SELECT seq - 1 FROM events"
	    "  WHERE topic = $1 AND off >= $2::bigint ORDER BY off LIMIT 1),"
	    " (SELECT seq FROM event_sequence WHERE id = 1))",
	    2, values, 0, timeout_ms, before, err, errlen);
}

enum plat_code
store_before_time(struct pg_store *s, int64_t time_ms, int64_t timeout_ms,
    int64_t *before, char *err, size_t errlen)
{
	char t[24];
	const char *values[] = { t };

	snprintf(t, sizeof(t), "%" PRId64, time_ms);
	return query_int(s, "event_before_time",
	    "SELECT COALESCE((SELECT min(seq) - 1 FROM events"
	    "  WHERE created_at >= " TS_OF("$1") "),"
	    " (SELECT seq FROM event_sequence WHERE id = 1))",
	    1, values, 0, timeout_ms, before, err, errlen);
}

#define QUERY_WHERE \
	" WHERE ($1 = '' OR e.topic ~ $1) AND ($2 = '' OR e.type = $2)" \
	" AND ($3 = '' OR e.source = $3)" \
	" AND ($4::bigint = 0 OR e.created_at >= " TS_OF("$4") ")" \
	" AND ($5::bigint = 0 OR e.created_at < " TS_OF("$5") ")" \
	" AND e.metadata @> $6::jsonb"

enum plat_code
store_query(struct pg_store *s, const struct store_query *q,
    int64_t timeout_ms, struct ev_rows *out, char *err, size_t errlen)
{
	char st[24], en[24], after[24], lim[16];
	const char *values[] = { q->regex, q->type, q->source, st, en,
	    q->meta_json, after, lim };

	snprintf(st, sizeof(st), "%" PRId64, q->start_ms);
	snprintf(en, sizeof(en), "%" PRId64, q->end_ms);
	snprintf(after, sizeof(after), "%" PRId64, q->after_seq);
	snprintf(lim, sizeof(lim), "%d", q->limit);
	if (q->oldest_first)
		return query_rows(s, "event_query_oldest",
		    "SELECT " ROW_COLS " FROM events e" QUERY_WHERE
		    " AND e.seq > $7::bigint ORDER BY e.seq LIMIT $8",
		    8, values, timeout_ms, out, err, errlen);
	return query_rows(s, "event_query_newest",
	    "SELECT " ROW_COLS " FROM events e" QUERY_WHERE
	    " AND ($7::bigint = 0 OR e.seq < $7::bigint)"
	    " ORDER BY e.seq DESC LIMIT $8",
	    8, values, timeout_ms, out, err, errlen);
}

/* ---- consumer groups ---- */

enum plat_code
store_group_open(struct pg_store *s, const char *name,
    const char *subjects_json,
    int64_t start_after, int64_t ack_wait_ms, int64_t timeout_ms,
    char **subjects_out, int64_t *ack_wait_out, char *err, size_t errlen)
{
	char start[24], wait[24];
	const char *values[] = { name, subjects_json, start, wait };
	enum plat_code code;
	PGresult *res;

	*subjects_out = NULL;
	snprintf(start, sizeof(start), "%" PRId64, start_after);
	snprintf(wait, sizeof(wait), "%" PRId64, ack_wait_ms);
	code = pg_store_exec(s, "event_group_create",
	    "INSERT INTO event_groups (name, subjects, claimed, ack_wait_ms)"
	    " VALUES ($1, $2, $3::bigint, $4::bigint) ON CONFLICT DO NOTHING",
	    4, values, timeout_ms, NULL, err, errlen);
	if (code != PLAT_OK)
		return code;
	code = pg_store_exec(s, "event_group_get",
	    "SELECT subjects, ack_wait_ms FROM event_groups WHERE name = $1",
	    1, values, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) != 1) {
		/* Deleted between the two statements. */
		PQclear(res);
		errbuf_set(err, errlen, "group \"%s\" was deleted meanwhile",
		    name);
		return PLAT_ABORTED;
	}
	*subjects_out = xstrdup(PQgetvalue(res, 0, 0));
	*ack_wait_out = int_at(res, 0, 1);
	PQclear(res);
	return PLAT_OK;
}

struct claim_tx {
	const char *group;
	const char *owners_json;
	const char *regexes_json;
	int limit;
	struct ev_rows rows;
	int *deliveries;
	int *who;
	bool behind;
};

/* What a claim statement hands out: sequence, delivery count, owner. */
struct claimed {
	int64_t *seqs;
	int *counts;
	char **owners;
	size_t n;
};

/* "{1,2,3}" for a bigint[] parameter. */
static char *
int_array(const int64_t *v, size_t n)
{
	char *s = xcalloc(1, n * 21 + 3), *o = s;

	*o++ = '{';
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s%" PRId64, i > 0 ? "," : "", v[i]);
	*o++ = '}';
	return s;
}

static void
claimed_add(struct claimed *c, const PGresult *res)
{
	for (int r = 0; r < PQntuples(res); r++) {
		c->seqs[c->n] = int_at(res, r, 0);
		c->counts[c->n] = (int)int_at(res, r, 1);
		c->owners[c->n++] = xstrdup(PQgetvalue(res, r, 2));
	}
}

/* The owner of the i-th row handed out in this claim (offset: rows
 * handed out before in it), round robin over the owners array $2. */
#define OWNER_OF(rownum, offset) \
	"($2::json ->> ((" rownum " - 1 + " offset ")" \
	" % json_array_length($2::json))::int)"

/* Deliveries past their deadline, handed out again. */
static enum plat_code
claim_redeliver(struct pg_conn *c, struct claim_tx *x, const char *wait,
    int64_t deadline, struct claimed *out, char *err, size_t errlen)
{
	char lim[16];
	const char *values[] = { x->group, x->owners_json, lim, wait };
	enum plat_code code;
	PGresult *res;

	snprintf(lim, sizeof(lim), "%d", x->limit);
	code = pg_exec(c, "event_claim_redeliver",
	    "UPDATE event_group_pending p"
	    " SET owner = " OWNER_OF("r.n", "0") ","
	    " deliveries = p.deliveries + 1,"
	    " deadline = clock_timestamp() + $4::bigint * interval '1 ms'"
	    " FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n"
	    "  FROM event_group_pending WHERE grp = $1"
	    "  AND deadline <= clock_timestamp() ORDER BY seq LIMIT $3) r"
	    " WHERE p.grp = $1 AND p.seq = r.seq"
	    " RETURNING p.seq, p.deliveries, p.owner",
	    4, values, NULL, NULL, pg_left(deadline), &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	claimed_add(out, res);
	PQclear(res);
	return PLAT_OK;
}

/* Events after the claimed position, first deliveries. Scans at most
 * CLAIM_SCAN sequences per call, so a group whose subjects match little
 * does not read the whole stream at once. */
#define CLAIM_SCAN 10000
static enum plat_code
claim_new(struct pg_conn *c, struct claim_tx *x, int64_t claimed,
    const char *wait, int64_t deadline, struct claimed *out, char *err,
    size_t errlen)
{
	char from[24], scan[24], lim[16], done[24];
	const char *values[] = { x->group, x->owners_json, from, scan,
	    x->regexes_json, lim, wait, done };
	enum plat_code code;
	PGresult *res;

	snprintf(from, sizeof(from), "%" PRId64, claimed);
	snprintf(scan, sizeof(scan), "%d", CLAIM_SCAN);
	snprintf(lim, sizeof(lim), "%d", x->limit - (int)out->n);
	snprintf(done, sizeof(done), "%zu", out->n);
	/* The statement's snapshot sees the sequence row at H only after
	 * the batch that set it committed, and batches commit in sequence
	 * order: every event up to H is visible, so the claimed position
	 * never passes an event it did not see. */
	code = pg_exec(c, "event_claim_new",
	    "WITH h AS (SELECT LEAST(seq, $3::bigint + $4::bigint) AS upto"
	    "  FROM event_sequence WHERE id = 1),"
	    " c AS (SELECT e.seq FROM events e WHERE e.seq > $3::bigint"
	    /* A scalar bound (an InitPlan) bounds the index scan too; a
	     * join with h would only filter, scanning to the end. */
	    "  AND e.seq <= (SELECT upto FROM h)"
	    "  AND e.topic ~ ANY(" REGEXES("$5") ")"
	    "  ORDER BY e.seq LIMIT $6),"
	    " i AS (INSERT INTO event_group_pending (grp, seq, owner,"
	    "  deliveries, deadline)"
	    "  SELECT $1, seq, " OWNER_OF("row_number() OVER (ORDER BY seq)",
	    "$8::int") ", 1,"
	    "  clock_timestamp() + $7::bigint * interval '1 ms' FROM c"
	    "  RETURNING seq, deliveries, owner),"
	    " u AS (UPDATE event_groups SET claimed = CASE"
	    "  WHEN (SELECT count(*) FROM c) = $6::bigint"
	    "  THEN (SELECT max(seq) FROM c) ELSE (SELECT upto FROM h) END"
	    "  WHERE name = $1)"
	    " SELECT seq, deliveries, owner FROM i ORDER BY seq",
	    8, values, NULL, NULL, pg_left(deadline), &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	claimed_add(out, res);
	PQclear(res);
	return PLAT_OK;
}

/* Rows for what was handed out, with each one's count and owner index. */
static enum plat_code
claim_rows(struct pg_conn *c, struct claim_tx *x, const struct claimed *cl,
    int64_t deadline, char *err, size_t errlen)
{
	char *arr = int_array(cl->seqs, cl->n);
	const char *values[] = { arr };
	enum plat_code code;
	json_t *owners;
	PGresult *res;

	code = pg_exec(c, "event_claim_rows",
	    "SELECT " ROW_COLS " FROM events e WHERE e.seq = ANY($1::bigint[])"
	    " ORDER BY e.seq", 1, values, NULL, NULL, pg_left(deadline), &res,
	    err, errlen);
	free(arr);
	if (code != PLAT_OK)
		return code;
	rows_of(res, &x->rows);
	PQclear(res);
	/* Events retention deleted stay pending until the sweep drops
	 * them: only the rows found are delivered. */
	owners = json_loads(x->owners_json, 0, NULL);
	x->deliveries = xcalloc(x->rows.n, sizeof(int));
	x->who = xcalloc(x->rows.n, sizeof(int));
	for (size_t i = 0; i < x->rows.n; i++) {
		size_t j, k;

		for (j = 0; j < cl->n && cl->seqs[j] != x->rows.v[i]->seq; j++)
			;
		if (j == cl->n)
			continue;
		x->deliveries[i] = cl->counts[j];
		for (k = 0; k < json_array_size(owners); k++)
			if (strcmp(json_string_value(json_array_get(owners, k)),
			    cl->owners[j]) == 0)
				x->who[i] = (int)k;
	}
	json_decref(owners);
	return PLAT_OK;
}

static enum plat_code
claim_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct claim_tx *x = arg;
	int64_t deadline = pg_deadline(timeout_ms), claimed;
	struct claimed cl = {
		xcalloc((size_t)x->limit, sizeof(int64_t)),
		xcalloc((size_t)x->limit, sizeof(int)),
		xcalloc((size_t)x->limit, sizeof(char *)), 0 };
	const char *values[1] = { x->group };
	enum plat_code code;
	PGresult *res;
	char wait[24];

	ev_rows_free(&x->rows);
	free(x->deliveries);
	free(x->who);
	x->deliveries = x->who = NULL;
	/* The group's row lock orders claims across replicas. */
	code = pg_exec(c, "event_claim_lock",
	    "SELECT claimed, ack_wait_ms FROM event_groups WHERE name = $1"
	    " FOR UPDATE", 1, values, NULL, NULL, pg_left(deadline), &res,
	    err, errlen);
	if (code != PLAT_OK)
		goto out;
	if (PQntuples(res) != 1) {
		PQclear(res);
		errbuf_set(err, errlen, "group \"%s\" was deleted", x->group);
		code = PLAT_NOT_FOUND;
		goto out;
	}
	claimed = int_at(res, 0, 0);
	snprintf(wait, sizeof(wait), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	code = claim_redeliver(c, x, wait, deadline, &cl, err, errlen);
	if (code == PLAT_OK && cl.n < (size_t)x->limit)
		code = claim_new(c, x, claimed, wait, deadline, &cl, err,
		    errlen);
	if (code == PLAT_OK && cl.n > 0)
		code = claim_rows(c, x, &cl, deadline, err, errlen);
	/* A group far behind the head (new, from the earliest event, in a
	 * long stream of other topics) scans on at once, not a window per
	 * tick. */
	if (code == PLAT_OK && (code = pg_exec(c, "event_claim_behind",
	    "SELECT g.claimed < s.seq FROM event_groups g, event_sequence s"
	    " WHERE g.name = $1 AND s.id = 1", 1, values, NULL, NULL,
	    pg_left(deadline), &res, err, errlen)) == PLAT_OK) {
		x->behind = PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
out:
	for (size_t i = 0; i < cl.n; i++)
		free(cl.owners[i]);
	free(cl.owners);
	free(cl.seqs);
	free(cl.counts);
	return code;
}

enum plat_code
store_group_claim(struct pg_store *s, const char *group,
    const char *owners_json,
    const char *regexes_json, int limit, int64_t timeout_ms,
    struct ev_rows *out, int **deliveries, int **who, bool *behind,
    char *err, size_t errlen)
{
	struct claim_tx x = { group, owners_json, regexes_json, limit,
	    { NULL, 0 }, NULL, NULL, false };
	enum plat_code code;

	*deliveries = *who = NULL;
	out->v = NULL;
	out->n = 0;
	if (!pg_store_ready(s))
		return not_ready(err, errlen);
	code = pg_store_tx(s, timeout_ms, claim_fn, &x, err, errlen);
	if (code != PLAT_OK) {
		ev_rows_free(&x.rows);
		free(x.deliveries);
		free(x.who);
		return code;
	}
	*out = x.rows;
	*deliveries = x.deliveries;
	*who = x.who;
	*behind = x.behind;
	return PLAT_OK;
}

enum plat_code
store_group_inflight(struct pg_store *s, const char *group,
    const char *owner_prefix, int64_t timeout_ms,
    void (*fn)(const char *owner, int64_t n, void *arg), void *arg,
    char *err, size_t errlen)
{
	const char *values[] = { group, owner_prefix };
	enum plat_code code;
	PGresult *res;

	code = pg_store_exec(s, "event_group_inflight",
	    "SELECT owner, count(*) FROM event_group_pending"
	    " WHERE grp = $1 AND left(owner, length($2)) = $2"
	    " AND deadline > clock_timestamp() GROUP BY owner",
	    2, values, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (int r = 0; r < PQntuples(res); r++)
		fn(PQgetvalue(res, r, 0), int_at(res, r, 1), arg);
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_group_release(struct pg_store *s, const char *owner_prefix,
    int64_t timeout_ms, char *err, size_t errlen)
{
	const char *values[] = { owner_prefix };

	return pg_store_exec(s, "event_group_release",
	    "UPDATE event_group_pending SET deadline = clock_timestamp()"
	    " WHERE left(owner, length($1)) = $1"
	    " AND deadline > clock_timestamp()",
	    1, values, timeout_ms, NULL, err, errlen);
}

enum plat_code
store_ack(struct pg_store *s, const char *group, const int64_t *seqs, size_t n,
    int64_t timeout_ms, int64_t *acked, char *err, size_t errlen)
{
	char *arr = int_array(seqs, n);
	const char *values[] = { group, arr };
	enum plat_code code;
	int64_t exists;

	code = query_int(s, "event_ack",
	    "WITH d AS (DELETE FROM event_group_pending"
	    "  WHERE grp = $1 AND seq = ANY($2::bigint[]) RETURNING 1)"
	    " SELECT count(*) FROM d",
	    2, values, 0, timeout_ms, acked, err, errlen);
	free(arr);
	if (code != PLAT_OK || *acked > 0)
		return code;
	code = query_int(s, "event_group_exists",
	    "SELECT count(*) FROM event_groups WHERE name = $1", 1, values, 0,
	    timeout_ms, &exists, err, errlen);
	if (code == PLAT_OK && exists == 0) {
		errbuf_set(err, errlen, "group \"%s\" not found", group);
		code = PLAT_NOT_FOUND;
	}
	return code;
}

enum plat_code
store_groups(struct pg_store *s, const char *after, int limit,
    int64_t timeout_ms, struct group_info **out, size_t *n, char *err,
    size_t errlen)
{
	char lim[16];
	const char *values[] = { after, lim };
	struct group_info *g;
	enum plat_code code;
	PGresult *res;

	*out = NULL;
	*n = 0;
	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(s, "event_groups",
	    "SELECT g.name, g.subjects, g.ack_wait_ms,"
	    " LEAST(g.claimed, (SELECT min(seq) - 1 FROM event_group_pending p"
	    "  WHERE p.grp = g.name)), g.claimed,"
	    " (SELECT count(*) FROM event_group_pending p"
	    "  WHERE p.grp = g.name), " MS_OF("g.created_at")
	    " FROM event_groups g WHERE g.name > $1 ORDER BY g.name LIMIT $2",
	    2, values, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	g = xcalloc((size_t)PQntuples(res), sizeof(*g));
	for (int r = 0; r < PQntuples(res); r++) {
		g[r].name = xstrdup(PQgetvalue(res, r, 0));
		g[r].subjects_json = xstrdup(PQgetvalue(res, r, 1));
		g[r].ack_wait_ms = int_at(res, r, 2);
		g[r].committed = int_at(res, r, 3);
		g[r].delivered = int_at(res, r, 4);
		g[r].pending = int_at(res, r, 5);
		g[r].created_ms = int_at(res, r, 6);
	}
	*out = g;
	*n = (size_t)PQntuples(res);
	PQclear(res);
	return PLAT_OK;
}

void
group_info_free(struct group_info *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(g[i].name);
		free(g[i].subjects_json);
	}
	free(g);
}

enum plat_code
store_group_delete(struct pg_store *s, const char *name, int64_t timeout_ms,
    char *err, size_t errlen)
{
	const char *values[] = { name };
	enum plat_code code;
	int64_t n;

	code = query_int(s, "event_group_delete",
	    "WITH d AS (DELETE FROM event_groups WHERE name = $1 RETURNING 1)"
	    " SELECT count(*) FROM d", 1, values, 0, timeout_ms, &n, err,
	    errlen);
	if (code == PLAT_OK && n == 0) {
		errbuf_set(err, errlen, "group \"%s\" not found", name);
		code = PLAT_NOT_FOUND;
	}
	return code;
}

/* ---- retention ---- */

enum plat_code
store_retention_set(struct pg_store *s, const char *subject,
    int64_t max_age_ms,
    int64_t max_count, int64_t timeout_ms, char *err, size_t errlen)
{
	char age[24], count[24];
	const char *values[] = { subject, age, count };

	snprintf(age, sizeof(age), "%" PRId64, max_age_ms);
	snprintf(count, sizeof(count), "%" PRId64, max_count);
	if (max_age_ms == 0 && max_count == 0)
		return pg_store_exec(s, "event_retention_delete",
		    "DELETE FROM event_retention WHERE subject = $1", 1, values,
		    timeout_ms, NULL, err, errlen);
	return pg_store_exec(s, "event_retention_set",
	    "INSERT INTO event_retention (subject, max_age_ms, max_count)"
	    " VALUES ($1, $2::bigint, $3::bigint) ON CONFLICT (subject)"
	    " DO UPDATE SET max_age_ms = EXCLUDED.max_age_ms,"
	    " max_count = EXCLUDED.max_count",
	    3, values, timeout_ms, NULL, err, errlen);
}

enum plat_code
store_retention_list(struct pg_store *s, int64_t timeout_ms,
    struct retention **out, size_t *n, char *err, size_t errlen)
{
	struct retention *r;
	enum plat_code code;
	PGresult *res;

	*out = NULL;
	*n = 0;
	code = pg_store_exec(s, "event_retention_list",
	    "SELECT subject, max_age_ms, max_count FROM event_retention"
	    " ORDER BY subject", 0, NULL, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	r = xcalloc((size_t)PQntuples(res), sizeof(*r));
	for (int i = 0; i < PQntuples(res); i++) {
		r[i].subject = xstrdup(PQgetvalue(res, i, 0));
		r[i].max_age_ms = int_at(res, i, 1);
		r[i].max_count = int_at(res, i, 2);
	}
	*out = r;
	*n = (size_t)PQntuples(res);
	PQclear(res);
	return PLAT_OK;
}

void
retention_free(struct retention *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(r[i].subject);
	free(r);
}

/* Offsets of a topic are dense and only its oldest events are ever
 * deleted, so "more than max_count" is "offset at or below the topic's
 * last offset minus max_count". */
enum plat_code
store_retention_apply(struct pg_store *s, const struct retention *r, int limit,
    int64_t timeout_ms, int64_t *deleted, char *err, size_t errlen)
{
	char *re = ev_subject_regex(r->subject), age[24], count[24], lim[16];
	const char *values[] = { re, age, count, lim };
	enum plat_code code;

	snprintf(age, sizeof(age), "%" PRId64, r->max_age_ms);
	snprintf(count, sizeof(count), "%" PRId64, r->max_count);
	snprintf(lim, sizeof(lim), "%d", limit);
	code = query_int(s, "event_retention_apply",
	    "WITH d AS (DELETE FROM events WHERE seq IN ("
	    "  SELECT e.seq FROM events e JOIN event_topics t"
	    "  ON t.topic = e.topic WHERE t.topic ~ $1"
	    "  AND (($2::bigint > 0 AND e.created_at < clock_timestamp()"
	    "   - $2::bigint * interval '1 ms')"
	    "   OR ($3::bigint > 0 AND e.off <= t.last_offset - $3::bigint))"
	    "  LIMIT $4) RETURNING 1)"
	    " SELECT count(*) FROM d",
	    4, values, 0, timeout_ms, deleted, err, errlen);
	free(re);
	return code;
}

enum plat_code
store_pending_sweep(struct pg_store *s, int64_t timeout_ms, char *err,
    size_t errlen)
{
	return pg_store_exec(s, "event_pending_sweep",
	    "DELETE FROM event_group_pending p WHERE NOT EXISTS"
	    " (SELECT 1 FROM events e WHERE e.seq = p.seq)",
	    0, NULL, timeout_ms, NULL, err, errlen);
}
