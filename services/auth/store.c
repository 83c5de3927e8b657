/*
 * store: auth-srv's PostgreSQL tables and statements (see store.h).
 *
 * Every statement is prepared by name and takes its values as bound
 * parameters. Times are Unix milliseconds from the server's clock, as
 * bigint, so the token checks and the rows agree on "now".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "store.h"

struct store {
	struct pg_store *db;
};

static const struct pg_migration store_migrations[] = {
	{ 1, "create auth tables",
	  "CREATE TABLE auth_accounts ("
	  " id text COLLATE \"C\" PRIMARY KEY,"
	  " type smallint NOT NULL CHECK (type IN (1, 2)),"
	  " secret_hash text NOT NULL,"
	  " scopes text NOT NULL DEFAULT '',"
	  " metadata text NOT NULL DEFAULT '{}',"
	  " disabled boolean NOT NULL DEFAULT false,"
	  " created_ms bigint NOT NULL,"
	  " updated_ms bigint NOT NULL);"
	  "CREATE TABLE auth_refresh_tokens ("
	  " hash text PRIMARY KEY,"
	  " family text NOT NULL,"
	  " account_id text COLLATE \"C\" NOT NULL"
	  "  REFERENCES auth_accounts (id) ON DELETE CASCADE,"
	  " scopes text NOT NULL,"
	  " created_ms bigint NOT NULL,"
	  " expires_ms bigint NOT NULL,"
	  " used boolean NOT NULL DEFAULT false,"
	  " revoked boolean NOT NULL DEFAULT false);"
	  "CREATE INDEX auth_refresh_tokens_family"
	  " ON auth_refresh_tokens (family);"
	  "CREATE INDEX auth_refresh_tokens_account"
	  " ON auth_refresh_tokens (account_id);"
	  "CREATE TABLE auth_revoked ("
	  " jti text PRIMARY KEY,"
	  " expires_ms bigint NOT NULL);"
	  "CREATE TABLE auth_signing_keys ("
	  " kid text PRIMARY KEY,"
	  " alg text NOT NULL,"
	  " sealed text NOT NULL,"
	  " jwk text NOT NULL,"
	  " created_ms bigint NOT NULL,"
	  " retired_ms bigint);"
	  "CREATE TABLE auth_rules ("
	  " id text COLLATE \"C\" PRIMARY KEY,"
	  " service text NOT NULL,"
	  " method text NOT NULL,"
	  " account text NOT NULL,"
	  " scope text NOT NULL,"
	  " account_type smallint NOT NULL,"
	  " effect smallint NOT NULL,"
	  " priority integer NOT NULL,"
	  " description text NOT NULL,"
	  " created_ms bigint NOT NULL);"
	  "CREATE TABLE auth_bootstrap ("
	  " id integer PRIMARY KEY CHECK (id = 1),"
	  " done_ms bigint NOT NULL);" },
};

#define ACCOUNT_COLS \
	"id, type, scopes, metadata, disabled, created_ms, updated_ms," \
	" secret_hash"

/* ---- rows ---- */

void
account_free(struct account *a)
{
	if (a == NULL)
		return;
	free(a->id);
	free(a->scopes);
	json_decref(a->metadata);
	if (a->secret_hash != NULL)
		explicit_bzero(a->secret_hash, strlen(a->secret_hash));
	free(a->secret_hash);
	free(a);
}

static int64_t
int_at(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Row i of a result selecting ACCOUNT_COLS from column `col` on. */
static struct account *
account_at(const PGresult *res, int i, int col)
{
	struct account *a = xcalloc(1, sizeof(*a));

	a->id = xstrdup(PQgetvalue(res, i, col));
	a->type = (int)int_at(res, i, col + 1);
	a->scopes = xstrdup(PQgetvalue(res, i, col + 2));
	a->metadata = json_loads(PQgetvalue(res, i, col + 3), 0, NULL);
	if (!json_is_object(a->metadata)) {
		json_decref(a->metadata);
		a->metadata = json_object();
	}
	a->disabled = PQgetvalue(res, i, col + 4)[0] == 't';
	a->created_ms = int_at(res, i, col + 5);
	a->updated_ms = int_at(res, i, col + 6);
	a->secret_hash = xstrdup(PQgetvalue(res, i, col + 7));
	return a;
}

static struct rule *
rule_at(const PGresult *res, int i)
{
	struct rule r = {
		.id = PQgetvalue(res, i, 0),
		.service = PQgetvalue(res, i, 1),
		.method = PQgetvalue(res, i, 2),
		.account = PQgetvalue(res, i, 3),
		.scope = PQgetvalue(res, i, 4),
		.account_type = (int)int_at(res, i, 5),
		.effect = (int)int_at(res, i, 6),
		.priority = (int32_t)int_at(res, i, 7),
		.description = PQgetvalue(res, i, 8),
		.created_ms = int_at(res, i, 9),
	};

	return rule_copy(&r);
}

void
key_rows_free(struct key_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].kid);
		free(rows[i].alg);
		free(rows[i].sealed);
		free(rows[i].jwk);
	}
	free(rows);
}

/* ---- the store ---- */

struct store *
store_new(const char *conninfo, int pool_size)
{
	struct pg_store *db;
	struct store *s;

	db = pg_store_new(conninfo, pool_size, "auth", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
	if (db == NULL)
		return NULL;
	s = xcalloc(1, sizeof(*s));
	s->db = db;
	return s;
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	pg_store_free(s->db);
	free(s);
}

enum plat_code
store_migrate(struct store *s, char *err, size_t errlen)
{
	return pg_store_migrate(s->db, err, errlen);
}

bool
store_ready(struct store *s)
{
	return pg_store_ready(s->db);
}

struct pg_store *
store_db(struct store *s)
{
	return s->db;
}

/* One statement on a pooled connection (pg_store_exec). */
static enum plat_code
query(struct store *s, const char *name, const char *sql, int nparams,
    const char *const *values, int64_t timeout_ms, PGresult **res,
    char *err, size_t errlen)
{
	return pg_store_exec(s->db, name, sql, nparams, values, timeout_ms,
	    res, err, errlen);
}

/* A statement whose affected-row count says whether its target existed. */
static enum plat_code
query_found(struct store *s, const char *name, const char *sql,
    int nparams, const char *const *values, int64_t timeout_ms,
    bool *found, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	code = query(s, name, sql, nparams, values, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	*found = strtoll(PQcmdTuples(res), NULL, 10) > 0;
	PQclear(res);
	return PLAT_OK;
}

/* fn on a pooled connection, outside a transaction. */
static enum plat_code
on_conn(struct store *s, int64_t timeout_ms, pg_tx_fn fn, void *arg,
    char *err, size_t errlen)
{
	return pg_store_conn(s->db, timeout_ms, fn, arg, err, errlen);
}

static enum plat_code
tx(struct store *s, int64_t timeout_ms, pg_tx_fn fn, void *arg, char *err,
    size_t errlen)
{
	return pg_store_tx(s->db, timeout_ms, fn, arg, err, errlen);
}

/* ---- accounts ---- */

static enum plat_code
account_insert(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	const struct account *a = arg;
	char type[8], ms[24], *meta = json_dumps(a->metadata, JSON_COMPACT |
	    JSON_SORT_KEYS);
	const char *v[] = { a->id, type, a->secret_hash, a->scopes, meta,
	    a->disabled ? "t" : "f", ms };
	enum plat_code code;

	snprintf(type, sizeof(type), "%d", a->type);
	snprintf(ms, sizeof(ms), "%" PRId64, plat_wall_ms());
	code = pg_exec(c, "auth_account_insert",
	    "INSERT INTO auth_accounts (id, type, secret_hash, scopes,"
	    " metadata, disabled, created_ms, updated_ms)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
	    7, v, NULL, NULL, timeout_ms, NULL, err, errlen);
	free(meta);
	if (code == PLAT_ALREADY_EXISTS)
		errbuf_set(err, errlen, "account \"%s\" already exists",
		    a->id);
	return code;
}

enum plat_code
store_account_create(struct store *s, const struct account *a,
    int64_t timeout_ms, char *err, size_t errlen)
{
	return on_conn(s, timeout_ms, account_insert, (void *)a, err, errlen);
}

enum plat_code
store_account_get(struct store *s, const char *id, int64_t timeout_ms,
    struct account **out, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*out = NULL;
	code = query(s, "auth_account_get",
	    "SELECT " ACCOUNT_COLS " FROM auth_accounts WHERE id = $1",
	    1, (const char *[]){ id }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1)
		*out = account_at(res, 0, 0);
	PQclear(res);
	return PLAT_OK;
}

struct update_tx {
	const char *id;
	const struct account_update *u;
	struct account *out;
};

static enum plat_code
update_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct update_tx *t = arg;
	const struct account_update *u = t->u;
	char ms[24];
	const char *v[] = { t->id, u->scopes_set ? "t" : "f", u->scopes,
	    u->metadata_set ? "t" : "f", u->metadata_json,
	    u->disabled_set ? "t" : "f", u->disabled ? "t" : "f",
	    u->secret_set ? "t" : "f", u->secret_hash, ms };
	PGresult *res;
	enum plat_code code;

	snprintf(ms, sizeof(ms), "%" PRId64, plat_wall_ms());
	code = pg_exec(c, "auth_account_update",
	    "UPDATE auth_accounts SET"
	    " scopes = CASE WHEN $2::boolean THEN $3 ELSE scopes END,"
	    " metadata = CASE WHEN $4::boolean THEN $5 ELSE metadata END,"
	    " disabled = CASE WHEN $6::boolean THEN $7::boolean"
	    "  ELSE disabled END,"
	    " secret_hash = CASE WHEN $8::boolean THEN $9 ELSE secret_hash"
	    "  END,"
	    " updated_ms = $10::bigint"
	    " WHERE id = $1 RETURNING " ACCOUNT_COLS,
	    10, v, NULL, NULL, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) != 1) {
		PQclear(res);
		errbuf_set(err, errlen, "account \"%s\" not found", t->id);
		return PLAT_NOT_FOUND;
	}
	t->out = account_at(res, 0, 0);
	PQclear(res);
	/* A disabled account, or a new secret, ends its sessions. */
	if ((u->disabled_set && u->disabled) || u->secret_set)
		code = pg_exec(c, "auth_account_revoke_refresh",
		    "UPDATE auth_refresh_tokens SET revoked = true"
		    " WHERE account_id = $1 AND NOT revoked",
		    1, v, NULL, NULL, timeout_ms, NULL, err, errlen);
	return code;
}

enum plat_code
store_account_update(struct store *s, const char *id,
    const struct account_update *u, int64_t timeout_ms,
    struct account **out, char *err, size_t errlen)
{
	struct update_tx t = { .id = id, .u = u };
	enum plat_code code;

	*out = NULL;
	code = tx(s, timeout_ms, update_fn, &t, err, errlen);
	if (code == PLAT_OK)
		*out = t.out;
	else
		account_free(t.out);
	return code;
}

enum plat_code
store_account_delete(struct store *s, const char *id, int64_t timeout_ms,
    char *err, size_t errlen)
{
	enum plat_code code;
	bool found = false;

	code = query_found(s, "auth_account_delete",
	    "DELETE FROM auth_accounts WHERE id = $1", 1,
	    (const char *[]){ id }, timeout_ms, &found, err, errlen);
	if (code == PLAT_OK && !found) {
		errbuf_set(err, errlen, "account \"%s\" not found", id);
		return PLAT_NOT_FOUND;
	}
	return code;
}

enum plat_code
store_account_list(struct store *s, const char *after, int limit,
    int64_t timeout_ms, struct account ***out, size_t *n, char *err,
    size_t errlen)
{
	char lim[16];
	PGresult *res;
	enum plat_code code;

	*out = NULL;
	*n = 0;
	snprintf(lim, sizeof(lim), "%d", limit);
	code = query(s, "auth_account_list",
	    "SELECT " ACCOUNT_COLS " FROM auth_accounts WHERE id > $1"
	    " ORDER BY id LIMIT $2::integer",
	    2, (const char *[]){ after, lim }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*out = xcalloc((size_t)PQntuples(res) + 1, sizeof(**out));
	for (int i = 0; i < PQntuples(res); i++)
		(*out)[(*n)++] = account_at(res, i, 0);
	PQclear(res);
	return PLAT_OK;
}

/* ---- refresh tokens ---- */

static enum plat_code
refresh_insert(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	const struct refresh_grant *g = arg;
	char created[24], expires[24];
	const char *v[] = { g->hash, g->family, g->account, g->scopes,
	    created, expires };

	snprintf(created, sizeof(created), "%" PRId64, plat_wall_ms());
	snprintf(expires, sizeof(expires), "%" PRId64, g->expires_ms);
	return pg_exec(c, "auth_refresh_insert",
	    "INSERT INTO auth_refresh_tokens (hash, family, account_id,"
	    " scopes, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
	    6, v, NULL, NULL, timeout_ms, NULL, err, errlen);
}

enum plat_code
store_refresh_insert(struct store *s, const struct refresh_grant *g,
    int64_t timeout_ms, char *err, size_t errlen)
{
	return on_conn(s, timeout_ms, refresh_insert, (void *)g, err, errlen);
}

/* The token's row with its account's columns after it. */
#define REFRESH_SELECT \
	"SELECT r.family, r.scopes, r.used, r.revoked, r.expires_ms," \
	" r.created_ms, a." ACCOUNT_COLS_A \
	" FROM auth_refresh_tokens r" \
	" JOIN auth_accounts a ON a.id = r.account_id WHERE r.hash = $1"
#define ACCOUNT_COLS_A \
	"id, a.type, a.scopes, a.metadata, a.disabled, a.created_ms," \
	" a.updated_ms, a.secret_hash"
#define REFRESH_ACCOUNT_COL 6

struct use_tx {
	const char *hash;
	const struct refresh_grant *next;
	int64_t now_ms;
	enum refresh_outcome outcome;
	struct account *acct;
	char *scopes;
};

static enum plat_code
use_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct use_tx *t = arg;
	PGresult *res;
	enum plat_code code;
	char *family;
	bool used, revoked, disabled;
	int64_t expires;

	account_free(t->acct);
	t->acct = NULL;
	free(t->scopes);
	t->scopes = NULL;
	t->outcome = REFRESH_INVALID;
	code = pg_exec(c, "auth_refresh_lock", REFRESH_SELECT " FOR UPDATE",
	    1, (const char *[]){ t->hash }, NULL, NULL, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK || PQntuples(res) != 1) {
		PQclear(res);
		return code;
	}
	used = PQgetvalue(res, 0, 2)[0] == 't';
	revoked = PQgetvalue(res, 0, 3)[0] == 't';
	expires = int_at(res, 0, 4);
	disabled = PQgetvalue(res, 0, REFRESH_ACCOUNT_COL + 4)[0] == 't';
	family = xstrdup(PQgetvalue(res, 0, 0));
	if (used && !revoked) {
		/* Reuse: someone holds a copy. End the whole grant. */
		t->outcome = REFRESH_REUSED;
		code = pg_exec(c, "auth_refresh_revoke_family",
		    "UPDATE auth_refresh_tokens SET revoked = true"
		    " WHERE family = $1", 1, (const char *[]){ family },
		    NULL, NULL, timeout_ms, NULL, err, errlen);
	} else if (!used && !revoked && expires > t->now_ms && !disabled) {
		t->outcome = REFRESH_OK;
		t->scopes = xstrdup(PQgetvalue(res, 0, 1));
		t->acct = account_at(res, 0, REFRESH_ACCOUNT_COL);
		code = pg_exec(c, "auth_refresh_mark_used",
		    "UPDATE auth_refresh_tokens SET used = true WHERE hash = $1",
		    1, (const char *[]){ t->hash }, NULL, NULL, timeout_ms,
		    NULL, err, errlen);
		if (code == PLAT_OK) {
			struct refresh_grant next = *t->next;

			next.family = family;
			next.account = t->acct->id;
			next.scopes = t->scopes;
			code = refresh_insert(c, timeout_ms, &next, err,
			    errlen);
		}
	}
	PQclear(res);
	free(family);
	return code;
}

enum plat_code
store_refresh_use(struct store *s, const char *hash,
    const struct refresh_grant *next, int64_t now_ms, int64_t timeout_ms,
    enum refresh_outcome *outcome, struct account **acct, char **scopes,
    char *err, size_t errlen)
{
	struct use_tx t = { .hash = hash, .next = next, .now_ms = now_ms };
	enum plat_code code;

	code = tx(s, timeout_ms, use_fn, &t, err, errlen);
	if (code != PLAT_OK) {
		account_free(t.acct);
		free(t.scopes);
		t.acct = NULL;
		t.scopes = NULL;
	}
	*outcome = t.outcome;
	*acct = t.acct;
	*scopes = t.scopes;
	return code;
}

enum plat_code
store_refresh_inspect(struct store *s, const char *hash, int64_t now_ms,
    int64_t timeout_ms, struct account **acct, char **scopes,
    int64_t *created_ms, int64_t *expires_ms, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*acct = NULL;
	*scopes = NULL;
	code = query(s, "auth_refresh_inspect", REFRESH_SELECT, 1,
	    (const char *[]){ hash }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) == 1 && PQgetvalue(res, 0, 2)[0] == 'f' &&
	    PQgetvalue(res, 0, 3)[0] == 'f' && int_at(res, 0, 4) > now_ms &&
	    PQgetvalue(res, 0, REFRESH_ACCOUNT_COL + 4)[0] == 'f') {
		*scopes = xstrdup(PQgetvalue(res, 0, 1));
		*expires_ms = int_at(res, 0, 4);
		*created_ms = int_at(res, 0, 5);
		*acct = account_at(res, 0, REFRESH_ACCOUNT_COL);
	}
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_refresh_revoke(struct store *s, const char *hash, const char *owner,
    int64_t timeout_ms, bool *found, bool *owned, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*found = *owned = false;
	code = query(s, "auth_refresh_owner",
	    "SELECT account_id FROM auth_refresh_tokens WHERE hash = $1", 1,
	    (const char *[]){ hash }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*found = PQntuples(res) == 1;
	*owned = *found && (owner == NULL ||
	    strcmp(owner, PQgetvalue(res, 0, 0)) == 0);
	PQclear(res);
	if (!*owned)
		return PLAT_OK;
	return query(s, "auth_refresh_revoke",
	    "UPDATE auth_refresh_tokens SET revoked = true WHERE family ="
	    " (SELECT family FROM auth_refresh_tokens WHERE hash = $1)", 1,
	    (const char *[]){ hash }, timeout_ms, NULL, err, errlen);
}

/* ---- access tokens ---- */

enum plat_code
store_revoke_jti(struct store *s, const char *jti, int64_t exp_ms,
    int64_t timeout_ms, char *err, size_t errlen)
{
	char ms[24];

	snprintf(ms, sizeof(ms), "%" PRId64, exp_ms);
	return query(s, "auth_revoke_jti",
	    "INSERT INTO auth_revoked (jti, expires_ms) VALUES ($1, $2)"
	    " ON CONFLICT DO NOTHING", 2, (const char *[]){ jti, ms },
	    timeout_ms, NULL, err, errlen);
}

enum plat_code
store_jti_revoked(struct store *s, const char *jti, int64_t timeout_ms,
    bool *revoked, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*revoked = false;
	code = query(s, "auth_jti_revoked",
	    "SELECT 1 FROM auth_revoked WHERE jti = $1", 1,
	    (const char *[]){ jti }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*revoked = PQntuples(res) > 0;
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_purge(struct store *s, int64_t now_ms, char *err, size_t errlen)
{
	char ms[24];
	enum plat_code code;

	snprintf(ms, sizeof(ms), "%" PRId64, now_ms);
	code = query(s, "auth_purge_revoked",
	    "DELETE FROM auth_revoked WHERE expires_ms < $1::bigint", 1,
	    (const char *[]){ ms }, INT64_MAX, NULL, err, errlen);
	if (code == PLAT_OK)
		code = query(s, "auth_purge_refresh",
		    "DELETE FROM auth_refresh_tokens"
		    " WHERE expires_ms < $1::bigint", 1,
		    (const char *[]){ ms }, INT64_MAX, NULL, err, errlen);
	return code;
}

/* ---- rules ---- */

static enum plat_code
rule_insert(struct pg_conn *c, const struct rule *r, int64_t timeout_ms,
    char *err, size_t errlen)
{
	char type[8], effect[8], prio[16], ms[24];
	const char *v[] = { r->id, r->service, r->method, r->account,
	    r->scope, type, effect, prio, r->description, ms };

	snprintf(type, sizeof(type), "%d", r->account_type);
	snprintf(effect, sizeof(effect), "%d", r->effect);
	snprintf(prio, sizeof(prio), "%" PRId32, r->priority);
	snprintf(ms, sizeof(ms), "%" PRId64, r->created_ms);
	return pg_exec(c, "auth_rule_insert",
	    "INSERT INTO auth_rules (id, service, method, account, scope,"
	    " account_type, effect, priority, description, created_ms)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
	    10, v, NULL, NULL, timeout_ms, NULL, err, errlen);
}

static enum plat_code
rules_notify(struct pg_conn *c, int64_t timeout_ms, char *err,
    size_t errlen)
{
	return pg_exec(c, "auth_rules_notify",
	    "SELECT pg_notify('" STORE_RULES_CHANNEL "', '')", 0, NULL, NULL,
	    NULL, timeout_ms, NULL, err, errlen);
}

static enum plat_code
rule_create_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	enum plat_code code = rule_insert(c, arg, timeout_ms, err, errlen);

	return code == PLAT_OK ? rules_notify(c, timeout_ms, err, errlen) :
	    code;
}

enum plat_code
store_rule_create(struct store *s, const struct rule *r, int64_t timeout_ms,
    char *err, size_t errlen)
{
	return tx(s, timeout_ms, rule_create_fn, (void *)r, err, errlen);
}

static enum plat_code
rule_delete_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	const char *id = arg;
	PGresult *res;
	enum plat_code code;
	bool found;

	code = pg_exec(c, "auth_rule_delete",
	    "DELETE FROM auth_rules WHERE id = $1", 1, (const char *[]){ id },
	    NULL, NULL, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	found = strtoll(PQcmdTuples(res), NULL, 10) > 0;
	PQclear(res);
	if (!found) {
		errbuf_set(err, errlen, "rule \"%s\" not found", id);
		return PLAT_NOT_FOUND;
	}
	return rules_notify(c, timeout_ms, err, errlen);
}

enum plat_code
store_rule_delete(struct store *s, const char *id, int64_t timeout_ms,
    char *err, size_t errlen)
{
	return tx(s, timeout_ms, rule_delete_fn, (void *)id, err, errlen);
}

enum plat_code
store_rules_all(struct store *s, int64_t timeout_ms, struct rule ***out,
    size_t *n, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*out = NULL;
	*n = 0;
	code = query(s, "auth_rules_all",
	    "SELECT id, service, method, account, scope, account_type,"
	    " effect, priority, description, created_ms FROM auth_rules",
	    0, NULL, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) > 0)
		*out = xcalloc((size_t)PQntuples(res), sizeof(**out));
	for (int i = 0; i < PQntuples(res); i++)
		(*out)[(*n)++] = rule_at(res, i);
	PQclear(res);
	return PLAT_OK;
}

/* ---- signing keys ---- */

struct keys_tx {
	int64_t now_ms, rotate_before_ms, drop_before_ms;
	key_new_fn new_key;
	void *arg;
	struct key_row *rows;
	size_t n;
};

static enum plat_code
keys_select(struct pg_conn *c, struct keys_tx *t, int64_t timeout_ms,
    char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	key_rows_free(t->rows, t->n);
	t->rows = NULL;
	t->n = 0;
	code = pg_exec(c, "auth_keys_select",
	    "SELECT kid, alg, sealed, jwk, created_ms,"
	    " coalesce(retired_ms, 0) FROM auth_signing_keys"
	    " ORDER BY created_ms DESC, kid", 0, NULL, NULL, NULL, timeout_ms,
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	t->rows = xcalloc((size_t)PQntuples(res) + 1, sizeof(*t->rows));
	for (int i = 0; i < PQntuples(res); i++) {
		struct key_row *k = &t->rows[t->n++];

		k->kid = xstrdup(PQgetvalue(res, i, 0));
		k->alg = xstrdup(PQgetvalue(res, i, 1));
		k->sealed = xstrdup(PQgetvalue(res, i, 2));
		k->jwk = xstrdup(PQgetvalue(res, i, 3));
		k->created_ms = int_at(res, i, 4);
		k->retired_ms = int_at(res, i, 5);
	}
	PQclear(res);
	return PLAT_OK;
}

static enum plat_code
keys_rotate(struct pg_conn *c, struct keys_tx *t, int64_t timeout_ms,
    char *err, size_t errlen)
{
	struct key_row k = { 0 };
	char ms[24];
	enum plat_code code;

	if (t->new_key(t->arg, &k) != 0) {
		errbuf_set(err, errlen, "cannot make a signing key");
		return PLAT_INTERNAL;
	}
	snprintf(ms, sizeof(ms), "%" PRId64, t->now_ms);
	code = pg_exec(c, "auth_keys_retire",
	    "UPDATE auth_signing_keys SET retired_ms = $1::bigint"
	    " WHERE retired_ms IS NULL", 1, (const char *[]){ ms }, NULL,
	    NULL, timeout_ms, NULL, err, errlen);
	if (code == PLAT_OK)
		code = pg_exec(c, "auth_keys_insert",
		    "INSERT INTO auth_signing_keys (kid, alg, sealed, jwk,"
		    " created_ms) VALUES ($1, $2, $3, $4, $5)", 5,
		    (const char *[]){ k.kid, k.alg, k.sealed, k.jwk, ms },
		    NULL, NULL, timeout_ms, NULL, err, errlen);
	free(k.kid);
	free(k.alg);
	free(k.sealed);
	free(k.jwk);
	return code;
}

static enum plat_code
keys_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct keys_tx *t = arg;
	char drop[24];
	enum plat_code code;

	code = pg_exec(c, "auth_keys_lock",
	    "SELECT pg_advisory_xact_lock(hashtext('platform_auth_keys'))",
	    0, NULL, NULL, NULL, timeout_ms, NULL, err, errlen);
	if (code == PLAT_OK)
		code = keys_select(c, t, timeout_ms, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (t->n == 0 || t->rows[0].retired_ms != 0 ||
	    t->rows[0].created_ms <= t->rotate_before_ms) {
		if ((code = keys_rotate(c, t, timeout_ms, err, errlen)) !=
		    PLAT_OK)
			return code;
	}
	snprintf(drop, sizeof(drop), "%" PRId64, t->drop_before_ms);
	code = pg_exec(c, "auth_keys_drop",
	    "DELETE FROM auth_signing_keys WHERE retired_ms <= $1::bigint",
	    1, (const char *[]){ drop }, NULL, NULL, timeout_ms, NULL, err,
	    errlen);
	if (code == PLAT_OK)
		code = keys_select(c, t, timeout_ms, err, errlen);
	return code;
}

enum plat_code
store_keys_sync(struct store *s, int64_t now_ms, int64_t rotate_before_ms,
    int64_t drop_before_ms, key_new_fn new_key, void *arg,
    struct key_row **rows, size_t *n, char *err, size_t errlen)
{
	struct keys_tx t = {
		.now_ms = now_ms,
		.rotate_before_ms = rotate_before_ms,
		.drop_before_ms = drop_before_ms,
		.new_key = new_key,
		.arg = arg,
	};
	enum plat_code code;

	code = tx(s, INT64_MAX, keys_fn, &t, err, errlen);
	if (code != PLAT_OK) {
		key_rows_free(t.rows, t.n);
		t.rows = NULL;
		t.n = 0;
	}
	*rows = t.rows;
	*n = t.n;
	return code;
}

/* ---- bootstrap ---- */

struct bootstrap_tx {
	const struct account *admin;
	struct rule *const *rules;
	size_t nrules;
	bool done;
};

static enum plat_code
bootstrap_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct bootstrap_tx *t = arg;
	char ms[24];
	PGresult *res;
	enum plat_code code;
	bool first;

	t->done = false;
	snprintf(ms, sizeof(ms), "%" PRId64, plat_wall_ms());
	code = pg_exec(c, "auth_bootstrap_mark",
	    "INSERT INTO auth_bootstrap (id, done_ms) VALUES (1, $1)"
	    " ON CONFLICT DO NOTHING", 1, (const char *[]){ ms }, NULL, NULL,
	    timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	first = strtoll(PQcmdTuples(res), NULL, 10) > 0;
	PQclear(res);
	if (!first)
		return PLAT_OK;
	code = pg_exec(c, "auth_bootstrap_empty",
	    "SELECT 1 FROM auth_accounts LIMIT 1", 0, NULL, NULL, NULL,
	    timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	first = PQntuples(res) == 0;
	PQclear(res);
	if (!first)
		return PLAT_OK;
	code = account_insert(c, timeout_ms, (void *)t->admin, err, errlen);
	for (size_t i = 0; code == PLAT_OK && i < t->nrules; i++)
		code = rule_insert(c, t->rules[i], timeout_ms, err, errlen);
	if (code == PLAT_OK)
		code = rules_notify(c, timeout_ms, err, errlen);
	t->done = code == PLAT_OK;
	return code;
}

enum plat_code
store_bootstrap(struct store *s, const struct account *admin,
    struct rule *const *rules, size_t nrules, bool *done, char *err,
    size_t errlen)
{
	struct bootstrap_tx t = { .admin = admin, .rules = rules,
	    .nrules = nrules };
	enum plat_code code;

	code = tx(s, INT64_MAX, bootstrap_fn, &t, err, errlen);
	*done = code == PLAT_OK && t.done;
	return code;
}
