/*
 * filter: db-srv's filters, paths and searches as pure logic: checked
 * into a tree once, then compiled to SQL (every value a bound parameter,
 * only whitelisted operators, nothing of the caller's spliced into the
 * text) or evaluated in C on a document (for Watch), with the same
 * meaning both ways.
 *
 * A path ("address.city", "tags.0") is bound as a text[] parameter and
 * read with JSONB's #>: an all-digit segment indexes an array.
 */
#ifndef DB_FILTER_H
#define DB_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "platform/db/v1/db.pb-c.h"

#define DB_PATH_SEGMENTS_MAX 16
#define DB_SEGMENT_MAX 128
#define DB_PATH_MAX 1024
#define DB_FILTER_DEPTH_MAX 8
#define DB_FILTER_CONDITIONS_MAX 100
#define DB_FILTER_VALUE_MAX 65536
#define DB_IN_MAX 100
#define DB_ORDER_MAX 4
#define DB_FIELDS_MAX 64

typedef Platform__Db__V1__Filter db_filter_pb;

struct db_path {
	char **segs;
	size_t n;
	char *array;            /* the text[] literal bound for it */
	bool numeric;           /* a segment is all digits (an index) */
};

enum dbf_kind { DBF_TRUE, DBF_COND, DBF_ALL, DBF_ANY, DBF_NOT };

struct dbf {
	enum dbf_kind kind;
	int op;                 /* PLATFORM__DB__V1__OPERATOR__* */
	struct db_path path;
	json_t *value;          /* the condition's value (exists: bool) */
	char *value_text;       /* as bound: JSON, or the string itself */
	struct dbf **kids;
	size_t n;
};

/* A path checked into p (db_path_free it): 0, or -1 with "field: why". */
int db_path_parse(const char *field, const char *text, struct db_path *p,
    char *err, size_t errlen);
void db_path_free(struct db_path *p);
/* The value at p in doc (borrowed), or NULL when there is none. */
json_t *db_path_get(const json_t *doc, const struct db_path *p);

/* f (NULL: match everything) checked into *out (dbf_free it); field
 * names it in err ("filter"). */
int dbf_parse(const char *field, const db_filter_pb *f, struct dbf **out,
    char *err, size_t errlen);
void dbf_free(struct dbf *f);
/* Whether doc matches, as the SQL of dbf_sql decides. */
bool dbf_match(const struct dbf *f, const json_t *doc);
/* Whether the tree (an all at the top, or one condition) has a
 * condition on path among its necessary ones: for the index check. */
bool dbf_uses_path(const struct dbf *f, const char *const *segs, size_t n);

/* JSON values equal as JSONB has them (numbers by value). */
bool db_json_equal(const json_t *a, const json_t *b);
/* JSONB containment (@>). */
bool db_json_contains(const json_t *a, const json_t *b);

/* ---- SQL text with bound parameters ---- */

struct db_sql {
	char *text;
	size_t len, cap;
	char **params;
	int n, cap_p;
};

void db_sql_init(struct db_sql *q);
void db_sql_free(struct db_sql *q);
void db_sql_add(struct db_sql *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Binds a copy of v (NULL: SQL NULL); its number for "$n". */
int db_sql_param(struct db_sql *q, const char *v);

/* Appends f as a boolean expression over the documents aliased d; gin:
 * the collection has a GIN index, so equality and containment also say
 * d.body @> ... for it to use. */
void dbf_sql(const struct dbf *f, struct db_sql *q, bool gin);

/* ---- searches ---- */

struct db_order {
	struct db_path path;
	bool desc;
};

struct db_search {
	const char *database, *collection;
	const struct dbf *filter;
	struct db_order *order;
	size_t norder;
	bool gin;
	int limit;
	/* The cursor: after the row with these order values (JSON text or
	 * NULL for a missing one) and this id; NULL after_id: from the
	 * start. */
	char *const *after_keys;
	const char *after_id;
	bool count;             /* SELECT count(*) instead */
};

/*
 * The whole statement into q. Rows: id, body, revision, create_revision,
 * expires_ms (0: none), then each order key's JSON text (NULL when
 * missing), in order, at most limit.
 */
void db_search_sql(const struct db_search *s, struct db_sql *q);

#endif
