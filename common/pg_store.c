/*
 * pg_store: a server's database, its pool and its schema in one handle
 * (see platform/pg.h), so every server that keeps state checks readiness
 * and runs statements the same way.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "platform/errbuf.h"
#include "platform/pg.h"
#include "platform/xalloc.h"

struct pg_store {
	struct pg_pool *pool;
	const char *component;
	const struct pg_migration *migrations;
	size_t nmigrations;
	atomic_int ready;
};

struct pg_store *
pg_store_new(const char *conninfo, int pool_size, const char *component,
    const struct pg_migration *migrations, size_t nmigrations)
{
	struct pg_pool *pool;
	struct pg_store *s;

	if ((pool = pg_pool_new(conninfo, pool_size)) == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->pool = pool;
	s->component = component;
	s->migrations = migrations;
	s->nmigrations = nmigrations;
	atomic_init(&s->ready, 0);
	return s;
}

void
pg_store_free(struct pg_store *s)
{
	if (s == NULL)
		return;
	pg_pool_free(s->pool);
	free(s);
}

enum plat_code
pg_store_migrate(struct pg_store *s, char *err, size_t errlen)
{
	enum plat_code code;

	code = pg_migrate(s->pool, s->component, s->migrations,
	    s->nmigrations, err, errlen);
	if (code == PLAT_OK)
		atomic_store(&s->ready, 1);
	return code;
}

bool
pg_store_ready(struct pg_store *s)
{
	return atomic_load(&s->ready) != 0;
}

static enum plat_code
not_ready(char *err, size_t errlen)
{
	errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
	return PLAT_UNAVAILABLE;
}

enum plat_code
pg_store_exec(struct pg_store *s, const char *name, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    PGresult **res, char *err, size_t errlen)
{
	struct pg_conn *c;
	enum plat_code code;

	if (res != NULL)
		*res = NULL;
	if (!pg_store_ready(s))
		return not_ready(err, errlen);
	if ((code = pg_acquire(s->pool, timeout_ms, &c)) != PLAT_OK) {
		errbuf_set(err, errlen, "%s", pg_code_message(code));
		return code;
	}
	code = pg_exec(c, name, sql, nparams, values, NULL, NULL, timeout_ms,
	    res, err, errlen);
	pg_release(s->pool, c);
	return code;
}

enum plat_code
pg_store_tx(struct pg_store *s, int64_t timeout_ms, pg_tx_fn fn, void *arg,
    char *err, size_t errlen)
{
	if (!pg_store_ready(s))
		return not_ready(err, errlen);
	return pg_tx(s->pool, timeout_ms, fn, arg, err, errlen);
}

enum plat_code
pg_store_conn(struct pg_store *s, int64_t timeout_ms, pg_tx_fn fn,
    void *arg, char *err, size_t errlen)
{
	struct pg_conn *c;
	enum plat_code code;

	if (!pg_store_ready(s))
		return not_ready(err, errlen);
	if ((code = pg_acquire(s->pool, timeout_ms, &c)) != PLAT_OK) {
		errbuf_set(err, errlen, "%s", pg_code_message(code));
		return code;
	}
	code = fn(c, timeout_ms, arg, err, errlen);
	pg_release(s->pool, c);
	return code;
}
