/*
 * store: monitor-srv's tables (see store.h). Every value is bound as a
 * parameter; times are Unix ms from the monitor that wrote them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "platform/pg.h"
#include "store.h"

static const struct pg_migration store_migrations[] = {
	{ 1, "create monitor tables",
	  "CREATE TABLE monitor_checks ("
	  " node_id text COLLATE \"C\" NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " service text NOT NULL,"
	  " status smallint NOT NULL,"
	  " damped smallint NOT NULL,"
	  " output text NOT NULL,"
	  " ttl_ms bigint NOT NULL,"
	  " reported_ms bigint NOT NULL,"
	  " expires_ms bigint NOT NULL,"
	  " PRIMARY KEY (node_id, name));"
	  "CREATE TABLE monitor_nodes ("
	  " node_id text COLLATE \"C\" PRIMARY KEY,"
	  " service text NOT NULL,"
	  " status smallint NOT NULL,"
	  " since_ms bigint NOT NULL);"
	  "CREATE TABLE monitor_settings ("
	  " service text COLLATE \"C\" PRIMARY KEY,"
	  " interval_ms bigint NOT NULL,"
	  " timeout_ms bigint NOT NULL);" },
};

struct pg_store *
store_new(const char *conninfo, int pool_size)
{
	return pg_store_new(conninfo, pool_size, "monitor", store_migrations,
	    PLAT_COUNT(store_migrations));
}

#define I64(buf, v) (snprintf((buf), sizeof(buf), "%" PRId64, \
	(int64_t)(v)), (buf))

enum plat_code
store_put_check(struct pg_store *s, const struct store_check *c,
    int64_t timeout_ms, char *err, size_t errlen)
{
	char st[24], dm[24], ttl[24], rep[24], exp[24];

	return pg_store_exec(s, "monitor_put_check",
	    "INSERT INTO monitor_checks (node_id, name, service, status,"
	    " damped, output, ttl_ms, reported_ms, expires_ms)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
	    " ON CONFLICT (node_id, name) DO UPDATE SET"
	    " service = EXCLUDED.service, status = EXCLUDED.status,"
	    " damped = EXCLUDED.damped, output = EXCLUDED.output,"
	    " ttl_ms = EXCLUDED.ttl_ms, reported_ms = EXCLUDED.reported_ms,"
	    " expires_ms = EXCLUDED.expires_ms", 9,
	    (const char *[]){ c->node_id, c->name, c->service,
	    I64(st, c->status), I64(dm, c->damped), c->output,
	    I64(ttl, c->ttl_ms), I64(rep, c->reported_ms),
	    I64(exp, c->expires_ms) }, timeout_ms, NULL, err, errlen);
}

enum plat_code
store_put_node(struct pg_store *s, const struct store_node *n,
    int64_t timeout_ms, char *err, size_t errlen)
{
	char st[24], since[24];

	return pg_store_exec(s, "monitor_put_node",
	    "INSERT INTO monitor_nodes (node_id, service, status, since_ms)"
	    " VALUES ($1, $2, $3, $4) ON CONFLICT (node_id) DO UPDATE SET"
	    " service = EXCLUDED.service, status = EXCLUDED.status,"
	    " since_ms = EXCLUDED.since_ms", 4,
	    (const char *[]){ n->node_id, n->service, I64(st, n->status),
	    I64(since, n->since_ms) }, timeout_ms, NULL, err, errlen);
}

enum plat_code
store_delete_node(struct pg_store *s, const char *node_id, int64_t timeout_ms,
    char *err, size_t errlen)
{
	return pg_store_exec(s, "monitor_delete_node",
	    "WITH c AS (DELETE FROM monitor_checks WHERE node_id = $1)"
	    " DELETE FROM monitor_nodes WHERE node_id = $1", 1,
	    (const char *[]){ node_id }, timeout_ms, NULL, err, errlen);
}

enum plat_code
store_put_settings(struct pg_store *s, const struct store_settings *st,
    int64_t timeout_ms, char *err, size_t errlen)
{
	char iv[24], to[24];

	return pg_store_exec(s, "monitor_put_settings",
	    "INSERT INTO monitor_settings (service, interval_ms, timeout_ms)"
	    " VALUES ($1, $2, $3) ON CONFLICT (service) DO UPDATE SET"
	    " interval_ms = EXCLUDED.interval_ms,"
	    " timeout_ms = EXCLUDED.timeout_ms", 3,
	    (const char *[]){ st->service, I64(iv, st->interval_ms),
	    I64(to, st->timeout_ms) }, timeout_ms, NULL, err, errlen);
}

static int64_t
num(PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* The checks and node rows of one node (node_id) or of all (NULL). */
static enum plat_code
load(struct pg_store *s, const char *node_id, const struct store_loader *l,
    int64_t deadline, char *err, size_t errlen)
{
	const char *const one[] = { node_id };
	PGresult *r;
	enum plat_code code;

	code = node_id == NULL ? pg_store_exec(s, "monitor_load_checks",
	    "SELECT node_id, name, service, status, damped, output, ttl_ms,"
	    " reported_ms, expires_ms FROM monitor_checks", 0, NULL,
	    pg_left(deadline), &r, err, errlen) :
	    pg_store_exec(s, "monitor_load_node_checks",
	    "SELECT node_id, name, service, status, damped, output, ttl_ms,"
	    " reported_ms, expires_ms FROM monitor_checks WHERE node_id = $1",
	    1, one, pg_left(deadline), &r, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (int i = 0; i < PQntuples(r); i++)
		l->check(l->arg, &(struct store_check){
		    .node_id = PQgetvalue(r, i, 0),
		    .name = PQgetvalue(r, i, 1),
		    .service = PQgetvalue(r, i, 2),
		    .status = (int)num(r, i, 3), .damped = (int)num(r, i, 4),
		    .output = PQgetvalue(r, i, 5), .ttl_ms = num(r, i, 6),
		    .reported_ms = num(r, i, 7), .expires_ms = num(r, i, 8) });
	PQclear(r);
	code = node_id == NULL ? pg_store_exec(s, "monitor_load_nodes",
	    "SELECT node_id, service, status, since_ms FROM monitor_nodes",
	    0, NULL, pg_left(deadline), &r, err, errlen) :
	    pg_store_exec(s, "monitor_load_node",
	    "SELECT node_id, service, status, since_ms FROM monitor_nodes"
	    " WHERE node_id = $1", 1, one, pg_left(deadline), &r, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (int i = 0; i < PQntuples(r); i++)
		l->node(l->arg, &(struct store_node){
		    .node_id = PQgetvalue(r, i, 0),
		    .service = PQgetvalue(r, i, 1),
		    .status = (int)num(r, i, 2), .since_ms = num(r, i, 3) });
	PQclear(r);
	return PLAT_OK;
}

enum plat_code
store_load_node(struct pg_store *s, const char *node_id,
    const struct store_loader *l, int64_t timeout_ms, char *err,
    size_t errlen)
{
	return load(s, node_id, l, pg_deadline(timeout_ms), err, errlen);
}

enum plat_code
store_load(struct pg_store *s, const struct store_loader *l,
    int64_t timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = pg_deadline(timeout_ms);
	PGresult *r;
	enum plat_code code;

	if ((code = load(s, NULL, l, deadline, err, errlen)) != PLAT_OK)
		return code;
	code = pg_store_exec(s, "monitor_load_settings",
	    "SELECT service, interval_ms, timeout_ms FROM monitor_settings",
	    0, NULL, pg_left(deadline), &r, err, errlen);
	if (code != PLAT_OK)
		return code;
	for (int i = 0; i < PQntuples(r); i++)
		l->settings(l->arg, &(struct store_settings){
		    .service = PQgetvalue(r, i, 0),
		    .interval_ms = num(r, i, 1), .timeout_ms = num(r, i, 2) });
	PQclear(r);
	return PLAT_OK;
}
