/*
 * store: trace-srv's tables and statements (see store.h).
 *
 * Ids are bytea, bound as hex text. Span attributes are one jsonb
 * object of text values with a GIN index, so attribute equality is
 * containment (@>), the same for every key.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/pg.h"
#include "store.h"

static const struct pg_migration store_migrations[] = {
	{ 1, "create trace tables",
	  "CREATE TABLE trace_spans ("
	  " trace_id bytea NOT NULL,"
	  " span_id bytea NOT NULL,"
	  " parent_id bytea,"
	  " service text COLLATE \"C\" NOT NULL,"
	  " node text NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " kind smallint NOT NULL,"
	  " start_at timestamptz NOT NULL,"
	  " start_ns bigint NOT NULL,"
	  " duration_ns bigint NOT NULL,"
	  " error boolean NOT NULL,"
	  " status_message text NOT NULL,"
	  " trace_state text NOT NULL,"
	  " attributes jsonb NOT NULL,"
	  " UNIQUE (trace_id, span_id, start_at)"
	  ") PARTITION BY RANGE (start_at);"
	  "CREATE INDEX trace_spans_service ON trace_spans"
	  " (service, start_at);"
	  "CREATE INDEX trace_spans_operation ON trace_spans"
	  " (service, name, start_at);"
	  "CREATE INDEX trace_spans_start ON trace_spans (start_at);"
	  "CREATE INDEX trace_spans_duration ON trace_spans"
	  " (duration_ns, start_at);"
	  "CREATE INDEX trace_spans_error ON trace_spans (start_at)"
	  " WHERE error;"
	  "CREATE INDEX trace_spans_attributes ON trace_spans"
	  " USING gin (attributes jsonb_path_ops);"
	  "CREATE TABLE trace_operations ("
	  " service text COLLATE \"C\" NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " kind smallint NOT NULL,"
	  " last_seen timestamptz NOT NULL,"
	  " PRIMARY KEY (service, name, kind));"
	  /* Replicas may run it at once: the lock serialises them. */
	  "CREATE FUNCTION trace_maintain(keep_days integer,"
	  " ahead_days integer) RETURNS integer LANGUAGE plpgsql AS $f$"
	  " DECLARE"
	  "  today date := (now() AT TIME ZONE 'UTC')::date;"
	  "  d date; r record; dropped integer := 0;"
	  " BEGIN"
	  "  PERFORM pg_advisory_xact_lock(hashtext('trace_maintain'));"
	  "  FOR d IN SELECT g::date FROM generate_series(today - keep_days,"
	  "   today + ahead_days, interval '1 day') g LOOP"
	  "   EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF"
	  "    trace_spans FOR VALUES FROM (%L) TO (%L)',"
	  "    'trace_spans_' || to_char(d, 'YYYYMMDD'),"
	  "    d::timestamp AT TIME ZONE 'UTC',"
	  "    (d + 1)::timestamp AT TIME ZONE 'UTC');"
	  "  END LOOP;"
	  "  FOR r IN SELECT c.relname FROM pg_inherits i"
	  "   JOIN pg_class c ON c.oid = i.inhrelid"
	  "   WHERE i.inhparent = 'trace_spans'::regclass LOOP"
	  "   IF r.relname ~ '^trace_spans_[0-9]{8}$' AND"
	  "    to_date(substr(r.relname, 13), 'YYYYMMDD') <"
	  "    today - keep_days THEN"
	  "    EXECUTE format('DROP TABLE %I', r.relname);"
	  "    dropped := dropped + 1;"
	  "   END IF;"
	  "  END LOOP;"
	  "  RETURN dropped;"
	  " END $f$;" },
};

struct pg_store *
store_new(const char *conninfo, int pool_size)
{
	return pg_store_new(conninfo, pool_size, "trace", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
}

enum plat_code
store_maintain(struct pg_store *s, int keep_days, int64_t *dropped,
    char *err, size_t errlen)
{
	char keep[16], ahead[16];
	PGresult *res;
	enum plat_code code;

	snprintf(keep, sizeof(keep), "%d", keep_days);
	snprintf(ahead, sizeof(ahead), "%d", STORE_AHEAD_DAYS);
	code = pg_store_exec(s, "trace_maintain",
	    "SELECT trace_maintain($1::integer, $2::integer)", 2,
	    (const char *[]){ keep, ahead }, 60000, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*dropped = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return PLAT_OK;
}

/* ---- insert ---- */

enum {
	A_TRACE, A_SPAN, A_PARENT, A_SERVICE, A_NODE, A_NAME, A_KIND,
	A_START, A_DURATION, A_ERROR, A_MESSAGE, A_STATE, A_ATTRS, A_N
};

struct insert_arg {
	struct span_row **rows;
	size_t n;
	int64_t max_spans;
};

static int
by_trace(const void *a, const void *b)
{
	return strcmp((*(struct span_row *const *)a)->trace_id,
	    (*(struct span_row *const *)b)->trace_id);
}

/* Marks refused the rows that would take their trace past max_spans,
 * counting what is stored already: rows sorted by trace, walked beside
 * the stored counts (in the same order). */
static enum plat_code
refuse_oversized(struct pg_conn *c, struct insert_arg *a, int64_t timeout_ms,
    char *err, size_t errlen)
{
	struct pg_array ids;
	enum plat_code code;
	PGresult *res;
	int r = 0, nres;
	int64_t have = 0;

	qsort(a->rows, a->n, sizeof(*a->rows), by_trace);
	pg_array_init(&ids);
	for (size_t i = 0; i < a->n; i++) {
		a->rows[i]->refused = false;
		if (i == 0 || strcmp(a->rows[i]->trace_id,
		    a->rows[i - 1]->trace_id) != 0)
			pg_array_add(&ids, a->rows[i]->trace_id);
	}
	code = pg_exec(c, "trace_counts",
	    "SELECT encode(trace_id, 'hex'), count(*) FROM trace_spans"
	    " WHERE trace_id IN"
	    " (SELECT decode(x, 'hex') FROM unnest($1::text[]) x)"
	    " GROUP BY trace_id"
	    " ORDER BY encode(trace_id, 'hex') COLLATE \"C\"", 1,
	    (const char *[]){ pg_array_str(&ids) }, NULL, NULL, timeout_ms,
	    &res, err, errlen);
	pg_array_free(&ids);
	if (code != PLAT_OK)
		return code;
	nres = PQntuples(res);
	for (size_t i = 0; i < a->n; i++) {
		struct span_row *row = a->rows[i];

		if (i == 0 || strcmp(row->trace_id, a->rows[i - 1]->trace_id)
		    != 0) {
			while (r < nres && strcmp(PQgetvalue(res, r, 0),
			    row->trace_id) < 0)
				r++;
			have = r < nres && strcmp(PQgetvalue(res, r, 0),
			    row->trace_id) == 0 ?
			    strtoll(PQgetvalue(res, r, 1), NULL, 10) : 0;
		}
		row->refused = have >= a->max_spans;
		if (!row->refused)
			have++;
	}
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
insert_tx(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct insert_arg *a = arg;
	struct pg_array arr[A_N];
	const char *v[A_N], *ops[4];
	enum plat_code code;
	struct pg_query q[2] = {
		{ "trace_insert",
		  "INSERT INTO trace_spans (trace_id, span_id, parent_id,"
		  " service, node, name, kind, start_at, start_ns,"
		  " duration_ns, error, status_message, trace_state,"
		  " attributes)"
		  " SELECT decode(t, 'hex'), decode(s, 'hex'),"
		  "  decode(nullif(p, ''), 'hex'), sv, nd, nm, k,"
		  "  to_timestamp(st / 1e9), st, d, e, m, ts, a::jsonb"
		  " FROM unnest($1::text[], $2::text[], $3::text[],"
		  "  $4::text[], $5::text[], $6::text[], $7::smallint[],"
		  "  $8::bigint[], $9::bigint[], $10::boolean[], $11::text[],"
		  "  $12::text[], $13::text[])"
		  "  AS u(t, s, p, sv, nd, nm, k, st, d, e, m, ts, a)"
		  " ON CONFLICT DO NOTHING", A_N, v, NULL, NULL, NULL },
		{ "trace_operations_seen",
		  "INSERT INTO trace_operations (service, name, kind,"
		  " last_seen)"
		  " SELECT sv, nm, k, to_timestamp(max(st) / 1e9)"
		  " FROM unnest($1::text[], $2::text[], $3::smallint[],"
		  "  $4::bigint[]) AS u(sv, nm, k, st)"
		  " GROUP BY sv, nm, k ORDER BY sv, nm, k"
		  " ON CONFLICT (service, name, kind) DO UPDATE"
		  " SET last_seen = greatest(trace_operations.last_seen,"
		  "  excluded.last_seen)", 4, ops, NULL, NULL, NULL },
	};

	if ((code = refuse_oversized(c, a, timeout_ms, err, errlen)) !=
	    PLAT_OK)
		return code;
	for (int i = 0; i < A_N; i++)
		pg_array_init(&arr[i]);
	for (size_t i = 0; i < a->n; i++) {
		const struct span_row *r = a->rows[i];

		if (r->refused)
			continue;

		pg_array_add(&arr[A_TRACE], r->trace_id);
		pg_array_add(&arr[A_SPAN], r->span_id);
		pg_array_add(&arr[A_PARENT], r->parent_id);
		pg_array_add(&arr[A_SERVICE], r->service);
		pg_array_add(&arr[A_NODE], r->node);
		pg_array_add(&arr[A_NAME], r->name);
		pg_array_add_int(&arr[A_KIND], r->kind);
		pg_array_add_int(&arr[A_START], r->start_ns);
		pg_array_add_int(&arr[A_DURATION], r->duration_ns);
		pg_array_add_bool(&arr[A_ERROR], r->error);
		pg_array_add(&arr[A_MESSAGE], r->status_message);
		pg_array_add(&arr[A_STATE], r->trace_state);
		pg_array_add(&arr[A_ATTRS], r->attrs);
	}
	for (int i = 0; i < A_N; i++)
		v[i] = pg_array_str(&arr[i]);
	ops[0] = v[A_SERVICE];
	ops[1] = v[A_NAME];
	ops[2] = v[A_KIND];
	ops[3] = v[A_START];
	code = pg_pipeline_commit(c, q, 2, timeout_ms, err, errlen);
	for (int i = 0; i < 2; i++)
		PQclear(q[i].result);
	for (int i = 0; i < A_N; i++)
		pg_array_free(&arr[i]);
	return code;
}

enum plat_code
store_insert(struct pg_store *s, struct span_row **rows, size_t n,
    int64_t max_spans, int64_t timeout_ms, char *err, size_t errlen)
{
	struct insert_arg a = { rows, n, max_spans };

	return pg_store_tx(s, timeout_ms, insert_tx, &a, err, errlen);
}

/* ---- queries ---- */

enum plat_code
store_get_trace(struct pg_store *s, const char *trace_id, int limit,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen)
{
	char lim[16];

	snprintf(lim, sizeof(lim), "%d", limit);
	return pg_store_exec(s, "trace_get",
	    "SELECT encode(span_id, 'hex'), coalesce(encode(parent_id, 'hex'),"
	    " ''), service, node, name, kind, start_ns, duration_ns, error,"
	    " status_message, trace_state, attributes::text"
	    " FROM trace_spans WHERE trace_id = decode($1::text, 'hex')"
	    " ORDER BY start_ns, parent_id IS NOT NULL, span_id"
	    " LIMIT $2::integer", 2, (const char *[]){ trace_id, lim },
	    timeout_ms, res, err, errlen);
}

struct search_arg {
	const struct search_query *q;
	PGresult **res;
};

static enum plat_code
search_conn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct search_arg *a = arg;
	struct search_sql sql;
	enum plat_code code;

	search_build(a->q, &sql);
	code = pg_exec_dynamic(c, sql.sql, (int)sql.nparams,
	    (const char *const *)sql.values, timeout_ms, a->res, err, errlen);
	search_sql_free(&sql);
	return code;
}

enum plat_code
store_search(struct pg_store *s, const struct search_query *q,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen)
{
	struct search_arg a = { q, res };

	return pg_store_conn(s, timeout_ms, search_conn, &a, err, errlen);
}

enum plat_code
store_summaries(struct pg_store *s, const char *ids, int64_t timeout_ms,
    PGresult **res, char *err, size_t errlen)
{
	return pg_store_exec(s, "trace_summaries",
	    "SELECT encode(trace_id, 'hex'), count(*),"
	    " count(*) FILTER (WHERE error), min(start_ns),"
	    " max(start_ns + duration_ns),"
	    " coalesce((array_agg(service ORDER BY start_ns)"
	    "  FILTER (WHERE parent_id IS NULL))[1], ''),"
	    " coalesce((array_agg(name ORDER BY start_ns)"
	    "  FILTER (WHERE parent_id IS NULL))[1], ''),"
	    " jsonb_agg(DISTINCT service)::text"
	    " FROM trace_spans WHERE trace_id IN"
	    " (SELECT decode(x, 'hex') FROM unnest($1::text[]) x)"
	    " GROUP BY trace_id", 1, (const char *[]){ ids }, timeout_ms,
	    res, err, errlen);
}

enum plat_code
store_services(struct pg_store *s, int64_t timeout_ms, PGresult **res,
    char *err, size_t errlen)
{
	return pg_store_exec(s, "trace_services",
	    "SELECT DISTINCT service FROM trace_operations ORDER BY service",
	    0, NULL, timeout_ms, res, err, errlen);
}

enum plat_code
store_operations(struct pg_store *s, const char *service,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen)
{
	return pg_store_exec(s, "trace_operations",
	    "SELECT name, kind FROM trace_operations WHERE service = $1::text"
	    " ORDER BY name, kind", 1, (const char *[]){ service },
	    timeout_ms, res, err, errlen);
}

/* An edge for each span whose parent is in another service, or is a
 * client span (a call to another node of the same service). */
enum plat_code
store_dependencies(struct pg_store *s, int64_t start_ms, int64_t end_ms,
    int64_t timeout_ms, PGresult **res, char *err, size_t errlen)
{
	char from[24], to[24];

	snprintf(from, sizeof(from), "%" PRId64, start_ms);
	snprintf(to, sizeof(to), "%" PRId64, end_ms);
	return pg_store_exec(s, "trace_dependencies",
	    "SELECT p.service, c.service, count(*),"
	    " count(*) FILTER (WHERE c.error)"
	    " FROM trace_spans c JOIN trace_spans p"
	    "  ON p.trace_id = c.trace_id AND p.span_id = c.parent_id"
	    " WHERE c.start_at >= to_timestamp($1::bigint / 1000.0)"
	    "  AND c.start_at < to_timestamp($2::bigint / 1000.0)"
	    "  AND c.parent_id IS NOT NULL"
	    "  AND (p.service <> c.service OR (p.kind = 3 AND c.kind = 2))"
	    " GROUP BY p.service, c.service ORDER BY 1, 2", 2,
	    (const char *[]){ from, to }, timeout_ms, res, err, errlen);
}
