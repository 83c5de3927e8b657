/*
 * store: sync-srv's tables and statements (see store.h).
 *
 * Every statement is prepared by name with its values bound; byte values
 * travel as hex text (decode/encode in SQL). Names are COLLATE "C".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grant.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "store.h"

#define LIVE(alias) \
	"EXISTS (SELECT 1 FROM sync_leases l WHERE l.id = " alias \
	".lease_id AND l.expires_at > now())"
/* A holder or waiter whose lease row is gone. Lease rows are deleted
 * only by statements that write them (Revoke, and the DELETE of lapsed
 * leases below), so a lapse and a concurrent KeepAlive are ordered by the
 * row's lock: a renewal that committed first keeps the lease, and one
 * that comes after finds no row. A judgement on a snapshot (expires_at <
 * now() in a read) could drop the lock of a lease being renewed. */
#define NO_LEASE(alias) \
	"NOT EXISTS (SELECT 1 FROM sync_leases l WHERE l.id = " alias \
	".lease_id)"
/* A waiting call's replica tries it again at least every second, each
 * time marking its row seen; a row not seen for this long was left by a
 * replica that died with the call waiting. */
#define WAITER_STALE "interval '10 seconds'"
/* A lease leaves a name's queue ($1 kind, $2 name, $3 lease). */
#define DEQUEUE_SQL \
	"DELETE FROM sync_waiters WHERE kind = $1::smallint AND name = $2" \
	" AND lease_id = $3::bigint"
#define MS_OF(x) "floor(extract(epoch FROM " x ") * 1000)::bigint"

static const struct pg_migration store_migrations[] = {
	{ 1, "create sync tables",
	  "CREATE TABLE sync_revision ("
	  " id integer PRIMARY KEY CHECK (id = 1),"
	  " rev bigint NOT NULL);"
	  "INSERT INTO sync_revision (id, rev) VALUES (1, 0);"
	  "CREATE TABLE sync_leases ("
	  " id bigserial PRIMARY KEY,"
	  " ttl_ms bigint NOT NULL,"
	  " expires_at timestamptz NOT NULL,"
	  " created_at timestamptz NOT NULL DEFAULT now());"
	  "CREATE INDEX sync_leases_expires ON sync_leases (expires_at);"
	  "CREATE TABLE sync_names ("
	  " kind smallint NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " epoch bigint NOT NULL,"
	  " PRIMARY KEY (kind, name));"
	  "CREATE TABLE sync_holders ("
	  " kind smallint NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " lease_id bigint NOT NULL,"
	  " mode smallint NOT NULL,"
	  " lim integer NOT NULL,"
	  " token bigint NOT NULL,"
	  " value bytea,"
	  " acquired_at timestamptz NOT NULL,"
	  " PRIMARY KEY (kind, name, lease_id));"
	  "CREATE INDEX sync_holders_lease ON sync_holders (lease_id);"
	  "CREATE TABLE sync_waiters ("
	  " ticket bigserial PRIMARY KEY,"
	  " kind smallint NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " lease_id bigint NOT NULL,"
	  " mode smallint NOT NULL,"
	  " lim integer NOT NULL,"
	  " seen_at timestamptz NOT NULL,"
	  " UNIQUE (kind, name, lease_id));"
	  "CREATE INDEX sync_waiters_lease ON sync_waiters (lease_id);"
	  "CREATE TABLE sync_changes ("
	  " revision bigint PRIMARY KEY,"
	  " kind smallint NOT NULL,"
	  " name text COLLATE \"C\" NOT NULL,"
	  " event text NOT NULL,"
	  " lease_id bigint NOT NULL,"
	  " token bigint NOT NULL,"
	  " value bytea,"
	  " at timestamptz NOT NULL DEFAULT now());"
	  "CREATE INDEX sync_changes_at ON sync_changes (at);" },
};

/* ---- small things ---- */

void
sync_notes_free(struct sync_notes *n)
{
	for (size_t i = 0; i < n->n; i++)
		free(n->v[i].name);
	free(n->v);
	memset(n, 0, sizeof(*n));
}

static void
note_add(struct sync_notes *n, int kind, const char *name,
    const char *event, int64_t lease, int64_t token)
{
	if (n == NULL)
		return;
	if (n->n == n->cap) {
		n->cap = n->cap ? n->cap * 2 : 4;
		n->v = xrealloc(n->v, n->cap * sizeof(*n->v));
	}
	n->v[n->n++] = (struct sync_note){ kind, xstrdup(name), event, lease,
	    token };
}

void
sync_change_ref(struct sync_change *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void
sync_change_unref(struct sync_change *c)
{
	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL))
		return;
	free(c->name);
	free(c->event);
	PQfreemem(c->value);
	free(c);
}

static int64_t
int_at(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static void
fmt_int(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

/* One statement in a transaction, under the deadline. */
static enum plat_code
ex(struct pg_conn *c, const char *name, const char *sql, int n,
    const char *const *v, int64_t deadline, PGresult **res, char *err,
    size_t errlen)
{
	return pg_exec(c, name, sql, n, v, NULL, NULL, pg_left(deadline),
	    res, err, errlen);
}

/* The same with the last parameter binary (a bytea value, NULL for
 * SQL NULL). */
static enum plat_code
ex_value(struct pg_conn *c, const char *name, const char *sql, int n,
    const char *const *v, const struct sync_value *value, int64_t deadline,
    PGresult **res, char *err, size_t errlen)
{
	const char *vals[8];
	int lengths[8] = { 0 }, formats[8] = { 0 };

	memcpy(vals, v, (size_t)(n - 1) * sizeof(*v));
	vals[n - 1] = value == NULL || !value->set ? NULL :
	    value->data != NULL ? (const char *)value->data : "";
	lengths[n - 1] = value != NULL ? (int)value->len : 0;
	formats[n - 1] = 1;
	return pg_exec(c, name, sql, n, vals, lengths, formats,
	    pg_left(deadline), res, err, errlen);
}

/* A bytea column of a text result into v (malloc'd). */
static void
value_at(const PGresult *res, int row, int col, unsigned char **v,
    size_t *n)
{
	*v = NULL;
	*n = 0;
	if (PQgetisnull(res, row, col))
		return;
	*v = PQunescapeBytea((const unsigned char *)PQgetvalue(res, row, col),
	    n);
}

/*
 * A row of sync_changes as one statement of a pipeline; its values live
 * here until the pipeline ran. token 0 with SYNC_TOKEN_GRANTED: the
 * name's epoch as this transaction left it (the token just granted).
 */
#define SYNC_TOKEN_GRANTED 0
struct change_stmt {
	char k[8], l[24], t[24];
	const char *v[6];
	int lengths[6], formats[6];
};

static void
change_query(struct change_stmt *cs, struct pg_query *q, int kind,
    const char *name, const char *event, int64_t lease, int64_t token,
    const struct sync_value *value)
{
	snprintf(cs->k, sizeof(cs->k), "%d", kind);
	fmt_int(cs->l, sizeof(cs->l), lease);
	fmt_int(cs->t, sizeof(cs->t), token);
	memset(cs->lengths, 0, sizeof(cs->lengths));
	memset(cs->formats, 0, sizeof(cs->formats));
	cs->v[0] = cs->k;
	cs->v[1] = name;
	cs->v[2] = event;
	cs->v[3] = cs->l;
	cs->v[4] = token == SYNC_TOKEN_GRANTED ? NULL : cs->t;
	cs->v[5] = value == NULL || !value->set ? NULL :
	    value->data != NULL ? (const char *)value->data : "";
	cs->lengths[5] = value != NULL ? (int)value->len : 0;
	cs->formats[5] = 1;
	*q = (struct pg_query){ "sync_change",
	    "WITH r AS (UPDATE sync_revision SET rev = rev + 1 WHERE id = 1"
	    "  RETURNING rev),"
	    " c AS (INSERT INTO sync_changes (revision, kind, name, event,"
	    "  lease_id, token, value) SELECT r.rev, $1::smallint, $2, $3,"
	    "  $4::bigint, COALESCE($5::bigint, (SELECT epoch FROM sync_names"
	    "  WHERE kind = $1::smallint AND name = $2)), $6::bytea FROM r"
	    "  RETURNING revision)"
	    " SELECT pg_notify('" STORE_CHANNEL "', revision::text) FROM c",
	    6, cs->v, cs->lengths, cs->formats, NULL };
}

/* A row of sync_changes (and its NOTIFY at commit). */
static enum plat_code
change(struct pg_conn *c, int kind, const char *name, const char *event,
    int64_t lease, int64_t token, const struct sync_value *value,
    int64_t deadline, char *err, size_t errlen)
{
	struct change_stmt cs;
	struct pg_query q;

	change_query(&cs, &q, kind, name, event, lease, token, value);
	return pg_exec(c, q.name, q.sql, q.nparams, q.values, q.lengths,
	    q.formats, pg_left(deadline), NULL, err, errlen);
}

/* ---- the store ---- */

struct pg_store *
store_new(const char *conninfo, int pool_size)
{
	return pg_store_new(conninfo, pool_size, "sync", store_migrations,
	    sizeof(store_migrations) / sizeof(store_migrations[0]));
}

/* ---- leases ---- */

enum plat_code
store_grant(struct pg_store *db, int64_t ttl_ms, int64_t timeout_ms,
    int64_t *id, char *err, size_t errlen)
{
	char t[24];
	PGresult *res;
	enum plat_code code;

	fmt_int(t, sizeof(t), ttl_ms);
	code = pg_store_exec(db, "sync_grant",
	    "INSERT INTO sync_leases (ttl_ms, expires_at)"
	    " VALUES ($1::bigint, now() + $1::bigint * interval '1 ms')"
	    " RETURNING id", 1, (const char *[]){ t }, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	*id = int_at(res, 0, 0);
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_keepalive(struct pg_store *db, int64_t id, int64_t timeout_ms,
    int64_t *left, char *err, size_t errlen)
{
	char i[24];
	PGresult *res;
	enum plat_code code;

	fmt_int(i, sizeof(i), id);
	/* Only a live lease is renewed: a lapsed one may already be
	 * another's lock. */
	code = pg_store_exec(db, "sync_keepalive",
	    "UPDATE sync_leases SET expires_at = now() + ttl_ms *"
	    " interval '1 ms' WHERE id = $1::bigint AND expires_at > now()"
	    " RETURNING ttl_ms", 1, (const char *[]){ i }, timeout_ms, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	*left = PQntuples(res) == 1 ? int_at(res, 0, 0) : 0;
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_ttl(struct pg_store *db, int64_t id, int64_t timeout_ms, int64_t *ttl,
    int64_t *remaining, char *err, size_t errlen)
{
	char i[24];
	PGresult *res;
	enum plat_code code;

	fmt_int(i, sizeof(i), id);
	code = pg_store_exec(db, "sync_ttl",
	    "SELECT ttl_ms, greatest(0, " MS_OF("expires_at - now()") ")"
	    " FROM sync_leases WHERE id = $1::bigint AND expires_at > now()",
	    1, (const char *[]){ i }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) != 1) {
		PQclear(res);
		errbuf_set(err, errlen, "lease_id: lease %" PRId64
		    " not found (expired or revoked)", id);
		return PLAT_NOT_FOUND;
	}
	*ttl = int_at(res, 0, 0);
	*remaining = int_at(res, 0, 1);
	PQclear(res);
	return PLAT_OK;
}

struct revoke_tx {
	int64_t id;
	struct sync_notes *notes;
};

static enum plat_code
revoke_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct revoke_tx *x = arg;
	int64_t deadline = pg_deadline(timeout_ms);
	char i[24];
	const char *v[] = { i };
	PGresult *res;
	enum plat_code code;
	int n;

	sync_notes_free(x->notes);
	fmt_int(i, sizeof(i), x->id);
	code = ex(c, "sync_revoke_lease",
	    "DELETE FROM sync_leases WHERE id = $1::bigint"
	    " AND expires_at > now() RETURNING id", 1, v, deadline, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	n = PQntuples(res);
	PQclear(res);
	if (n != 1) {
		errbuf_set(err, errlen, "lease_id: lease %" PRId64
		    " not found (expired or revoked)", x->id);
		return PLAT_NOT_FOUND;
	}
	code = ex(c, "sync_revoke_waiters",
	    "DELETE FROM sync_waiters WHERE lease_id = $1::bigint", 1, v,
	    deadline, NULL, err, errlen);
	if (code != PLAT_OK)
		return code;
	code = ex(c, "sync_revoke_holders",
	    "DELETE FROM sync_holders WHERE lease_id = $1::bigint"
	    " RETURNING kind, name, token", 1, v, deadline, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	for (int r = 0; r < PQntuples(res) && code == PLAT_OK; r++) {
		int kind = (int)int_at(res, r, 0);
		const char *name = PQgetvalue(res, r, 1);
		int64_t token = int_at(res, r, 2);

		code = change(c, kind, name, "released", x->id, token, NULL,
		    deadline, err, errlen);
		note_add(x->notes, kind, name, "released", x->id, token);
	}
	PQclear(res);
	return code;
}

enum plat_code
store_revoke(struct pg_store *db, int64_t id, int64_t timeout_ms,
    struct sync_notes *notes, char *err, size_t errlen)
{
	struct revoke_tx x = { id, notes };

	return pg_store_tx(db, timeout_ms, revoke_fn, &x, err, errlen);
}

/* ---- locks and elections: acquisitions and releases in batches ---- */

/*
 * A batch's first round trip (with BEGIN) locks the row of every name it
 * acquires, in (kind, name) order, so batches on replicas never wait on
 * each other in a circle; every acquisition of a name, on any replica,
 * waits there for the one before. The ops then go in rounds, each op on
 * a name a round after the one before it in the batch. A round is two
 * round trips: its reads (lapsed holders and stale waiters cleared, a
 * waiting call queued, the holders and the claims ahead of it), then,
 * decided in C (sync_decide), its writes (the token bumped and the holder
 * stored, the waiter row gone, the releases, the changes), the last
 * round's with the COMMIT. An op's own refusal (its lease gone, another
 * semaphore limit, a release of nothing) is its outcome, not the
 * batch's: it writes nothing but what clearing lapsed holders found.
 */

/* An acquisition's reads, in order (A_ENQUEUE only when it waits). */
enum { A_LIVE, A_LAPSE, A_PRUNE_HOLDERS, A_PRUNE_WAITERS, A_HOLDERS,
	A_ENQUEUE, A_AHEAD, A_N };

/* An op's statement values, which live until its transaction ends. */
struct op_values {
	char k[8], l[24], m[8], lim[16];
	const char *kn[2], *knl[3], *all[5];
};

/* What the transaction keeps of one op. */
struct op_state {
	struct op_values x;
	int round;
	size_t reads;           /* where its reads start in the round's */
	size_t hold_at;         /* its hold or release in the writes */
	bool writes_one;        /* hold_at is set */
	/* The hold's values: the op's, then the value in binary. */
	const char *value_v[6];
	int value_len[6], value_fmt[6];
};

struct apply_tx {
	struct sync_op *const *ops;
	size_t n;
	struct op_state *st;
	int rounds;
	size_t *locks;          /* ops whose name is locked, one per name */
	size_t nlocks;
};

static int
op_name_cmp(const struct sync_op *x, const struct sync_op *y)
{
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Orders op indexes by (kind, name, position in the batch). */
static int
op_index_cmp(const void *a, const void *b, void *arg)
{
	struct sync_op *const *ops = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int c = op_name_cmp(ops[i], ops[j]);

	return c != 0 ? c : (i > j) - (i < j);
}

static void
op_values_fill(const struct sync_op *op, struct op_values *x)
{
	const struct sync_attempt *a = op->a;

	snprintf(x->k, sizeof(x->k), "%d", op->kind);
	fmt_int(x->l, sizeof(x->l), op->lease);
	snprintf(x->m, sizeof(x->m), "%d", a != NULL ? a->mode : 0);
	snprintf(x->lim, sizeof(x->lim), "%d", a != NULL ? a->limit : 0);
	x->kn[0] = x->knl[0] = x->all[0] = x->k;
	x->kn[1] = x->knl[1] = x->all[1] = op->name;
	x->knl[2] = x->all[2] = x->l;
	x->all[3] = x->m;
	x->all[4] = x->lim;
}

/* Rounds and name locks, once for every attempt of the transaction. */
static void
apply_plan(struct apply_tx *t)
{
	size_t *order = xcalloc(t->n + 1, sizeof(*order));

	t->st = xcalloc(t->n + 1, sizeof(*t->st));
	t->locks = xcalloc(t->n + 1, sizeof(*t->locks));
	for (size_t i = 0; i < t->n; i++) {
		order[i] = i;
		op_values_fill(t->ops[i], &t->st[i].x);
	}
	qsort_r(order, t->n, sizeof(*order), op_index_cmp, (void *)t->ops);
	t->rounds = t->n > 0 ? 1 : 0;
	for (size_t k = 0; k < t->n; k++) {
		size_t i = order[k];
		bool same = k > 0 &&
		    op_name_cmp(t->ops[order[k - 1]], t->ops[i]) == 0;
		bool locked = same && t->nlocks > 0 &&
		    op_name_cmp(t->ops[t->locks[t->nlocks - 1]], t->ops[i]) == 0;

		t->st[i].round = same ? t->st[order[k - 1]].round + 1 : 0;
		if (t->st[i].round + 1 > t->rounds)
			t->rounds = t->st[i].round + 1;
		if (t->ops[i]->a != NULL && !locked)
			t->locks[t->nlocks++] = i;
	}
	free(order);
}

static void
op_reset(struct sync_op *op)
{
	op->code = PLAT_OK;
	op->err[0] = '\0';
	sync_notes_free(&op->notes);
	if (op->a != NULL) {
		op->a->outcome = SYNC_QUEUED;
		op->a->token = 0;
	}
}

static size_t
acquire_reads(const struct sync_attempt *a, struct op_values *x,
    struct pg_query *q)
{
	size_t n = 0;

	/* FOR SHARE: a KeepAlive of this lease in flight finishes first. */
	q[n++] = (struct pg_query){ "sync_lease_live",
	    "SELECT 1 FROM sync_leases WHERE id = $1::bigint"
	    " AND expires_at > now() FOR SHARE", 1, &x->knl[2], NULL, NULL,
	    NULL };
	/* Holders and waiters whose lease lapsed count for nothing: their
	 * leases go first, then they. */
	q[n++] = (struct pg_query){ "sync_lapse",
	    "DELETE FROM sync_leases WHERE expires_at <= now() AND id IN"
	    " (SELECT lease_id FROM sync_holders WHERE kind = $1::smallint"
	    "  AND name = $2 UNION ALL SELECT lease_id FROM sync_waiters"
	    "  WHERE kind = $1::smallint AND name = $2)", 2, x->kn, NULL,
	    NULL, NULL };
	q[n++] = (struct pg_query){ "sync_prune_holders",
	    "DELETE FROM sync_holders h WHERE kind = $1::smallint"
	    " AND name = $2 AND " NO_LEASE("h") " RETURNING lease_id, token",
	    2, x->kn, NULL, NULL, NULL };
	/* A waiter whose replica stopped trying for it (killed while the
	 * call waited) leaves the queue, so it blocks no one. */
	q[n++] = (struct pg_query){ "sync_prune_waiters",
	    "DELETE FROM sync_waiters w WHERE kind = $1::smallint"
	    " AND name = $2 AND (" NO_LEASE("w") " OR seen_at < now() - "
	    WAITER_STALE ")", 2, x->kn, NULL, NULL, NULL };
	q[n++] = (struct pg_query){ "sync_holders_of",
	    "SELECT lease_id, token, mode, lim FROM sync_holders"
	    " WHERE kind = $1::smallint AND name = $2", 2, x->kn, NULL, NULL,
	    NULL };
	if (a->wait) {
		q[n++] = (struct pg_query){ "sync_enqueue",
		    "INSERT INTO sync_waiters (kind, name, lease_id, mode, lim,"
		    " seen_at) VALUES ($1::smallint, $2, $3::bigint,"
		    " $4::smallint, $5::integer, now())"
		    " ON CONFLICT (kind, name, lease_id)"
		    " DO UPDATE SET mode = EXCLUDED.mode, lim = EXCLUDED.lim,"
		    " seen_at = now()", 5, x->all, NULL, NULL, NULL };
		/* Ahead of a waiting call: the claims queued before its own
		 * (kept) place. */
		q[n++] = (struct pg_query){ "sync_ahead_of",
		    "SELECT mode, lim FROM sync_waiters WHERE kind = $1::smallint"
		    " AND name = $2 AND lease_id <> $3::bigint"
		    " AND ticket < (SELECT ticket FROM sync_waiters"
		    "  WHERE kind = $1::smallint AND name = $2"
		    "  AND lease_id = $3::bigint) ORDER BY ticket",
		    3, x->knl, NULL, NULL, NULL };
	} else {
		/* Ahead of a try: every claim queued. */
		q[n++] = (struct pg_query){ "sync_ahead_all",
		    "SELECT mode, lim FROM sync_waiters WHERE kind = $1::smallint"
		    " AND name = $2 AND lease_id <> $3::bigint ORDER BY ticket",
		    3, x->knl, NULL, NULL, NULL };
	}
	return n;
}

static void
claims_of(PGresult *res, int mode_col, struct sync_claim **out, size_t *n)
{
	*n = (size_t)PQntuples(res);
	*out = xcalloc(*n + 1, sizeof(**out));
	for (size_t r = 0; r < *n; r++) {
		(*out)[r].mode = (int)int_at(res, (int)r, mode_col);
		(*out)[r].limit = (int)int_at(res, (int)r, mode_col + 1);
	}
}

/* The round's writes for the space they need: a change per expired
 * holder, then at most hold, dequeue and change. */
struct writes {
	struct pg_query *q;
	struct change_stmt *cs;
	size_t n, ncs;
};

static void
write_dequeue(struct writes *w, struct op_values *x)
{
	w->q[w->n++] = (struct pg_query){ "sync_dequeue", DEQUEUE_SQL, 3,
	    x->knl, NULL, NULL, NULL };
}

/* An acquisition's outcome from its reads (r), and its writes. */
static void
acquire_decide(struct sync_op *op, struct op_state *st, struct pg_query *r,
    struct writes *w)
{
	struct sync_attempt *a = op->a;
	struct sync_claim me = { a->mode, a->limit }, *held = NULL,
	    *ahead = NULL;
	size_t nheld = 0, nahead = 0;
	PGresult *pruned = r[A_PRUNE_HOLDERS].result, *res;
	enum sync_verdict verdict;
	bool grant = false, dequeue = false;

	/* What clearing lapsed holders found is written whatever comes. */
	for (int p = 0; p < PQntuples(pruned); p++) {
		int64_t lease = int_at(pruned, p, 0);
		int64_t token = int_at(pruned, p, 1);

		change_query(&w->cs[w->ncs++], &w->q[w->n++], op->kind,
		    op->name, "expired", lease, token, NULL);
		note_add(&op->notes, op->kind, op->name, "expired", lease,
		    token);
	}
	res = r[A_HOLDERS].result;
	if (PQntuples(r[A_LIVE].result) != 1) {
		a->outcome = SYNC_NO_LEASE;
		op->code = PLAT_NOT_FOUND;
		snprintf(op->err, sizeof(op->err), "lease_id: lease %" PRId64
		    " not found (expired or revoked)", op->lease);
		dequeue = a->wait;
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++)
		if (int_at(res, i, 0) == op->lease) {
			/* Held already under this lease: the same token. */
			a->outcome = SYNC_GRANTED;
			a->token = int_at(res, i, 1);
			dequeue = a->wait;
			goto out;
		}
	claims_of(res, 2, &held, &nheld);
	claims_of(r[a->wait ? A_AHEAD : A_AHEAD - 1].result, 0, &ahead,
	    &nahead);
	verdict = sync_decide(&me, held, nheld, ahead, nahead);
	if (verdict == SYNC_MISMATCH) {
		for (size_t i = 0; i < nheld + nahead; i++) {
			struct sync_claim *h = i < nheld ? &held[i] :
			    &ahead[i - nheld];

			if (h->mode == SYNC_SEMAPHORE)
				a->other_limit = h->limit;
		}
		a->outcome = SYNC_LIMIT_MISMATCH;
		op->code = PLAT_FAILED_PRECONDITION;
		snprintf(op->err, sizeof(op->err), "limit: semaphore %s is in "
		    "use with limit %d", op->name, a->other_limit);
		dequeue = a->wait;
		goto out;
	}
	grant = verdict != SYNC_WAIT;
	dequeue = grant && a->wait;
out:
	if (grant) {
		struct op_values *x = &st->x;

		st->value_v[0] = x->k;
		st->value_v[1] = op->name;
		st->value_v[2] = x->l;
		st->value_v[3] = x->m;
		st->value_v[4] = x->lim;
		st->value_v[5] = !a->value.set ? NULL :
		    a->value.data != NULL ? (const char *)a->value.data : "";
		st->value_len[5] = a->value.set ? (int)a->value.len : 0;
		st->value_fmt[5] = 1;
		st->hold_at = w->n;
		st->writes_one = true;
		w->q[w->n++] = (struct pg_query){ "sync_hold",
		    "WITH b AS (UPDATE sync_names SET epoch = epoch + 1"
		    "  WHERE kind = $1::smallint AND name = $2 RETURNING epoch)"
		    " INSERT INTO sync_holders (kind, name, lease_id, mode, lim,"
		    " token, value, acquired_at) SELECT $1::smallint, $2,"
		    " $3::bigint, $4::smallint, $5::integer, b.epoch,"
		    " $6::bytea, now() FROM b RETURNING token",
		    6, st->value_v, st->value_len, st->value_fmt, NULL };
	}
	if (dequeue)
		write_dequeue(w, &st->x);
	if (grant)
		change_query(&w->cs[w->ncs++], &w->q[w->n++], op->kind,
		    op->name, "acquired", op->lease, SYNC_TOKEN_GRANTED,
		    &a->value);
	free(held);
	free(ahead);
}

/* A release: the holder row deleted, the revision moved and the change
 * stored by one statement (the deleted row's token is only there). */
static void
release_write(struct op_state *st, struct writes *w)
{
	st->hold_at = w->n;
	st->writes_one = true;
	w->q[w->n++] = (struct pg_query){ "sync_release",
	    "WITH d AS (DELETE FROM sync_holders WHERE kind = $1::smallint"
	    "  AND name = $2 AND lease_id = $3::bigint RETURNING token),"
	    " r AS (UPDATE sync_revision SET rev = rev + 1 WHERE id = 1"
	    "  AND EXISTS (SELECT 1 FROM d) RETURNING rev),"
	    " c AS (INSERT INTO sync_changes (revision, kind, name,"
	    "  event, lease_id, token) SELECT r.rev, $1::smallint, $2,"
	    "  'released', $3::bigint, d.token FROM r, d)"
	    " SELECT token FROM d", 3, st->x.knl, NULL, NULL, NULL };
}

/* The outcome of an op's hold or release, once its round's writes ran. */
static void
op_written(struct sync_op *op, struct op_state *st, struct writes *w)
{
	PGresult *res = w->q[st->hold_at].result;

	if (!st->writes_one)
		return;
	if (op->a != NULL) {
		op->a->token = int_at(res, 0, 0);
		op->a->outcome = SYNC_GRANTED;
		note_add(&op->notes, op->kind, op->name, "acquired", op->lease,
		    op->a->token);
	} else if (PQntuples(res) == 1) {
		note_add(&op->notes, op->kind, op->name, "released", op->lease,
		    int_at(res, 0, 0));
	} else {
		op->code = PLAT_NOT_FOUND;
		snprintf(op->err, sizeof(op->err), "%s: %s is not held by "
		    "lease %" PRId64, op->kind == SYNC_KIND_LOCK ? "name" :
		    "election", op->name, op->lease);
	}
}

static enum plat_code
apply_round(struct pg_conn *c, struct apply_tx *t, int round,
    int64_t deadline, char *err, size_t errlen)
{
	bool last = round == t->rounds - 1;
	struct pg_query *q = xcalloc(t->n * A_N + t->nlocks + 1, sizeof(*q));
	struct writes w = { 0 };
	size_t nq = 0, cap = 1;
	enum plat_code code = PLAT_OK;

	if (round == 0)
		for (size_t k = 0; k < t->nlocks; k++)
			q[nq++] = (struct pg_query){ "sync_name_lock",
			    "INSERT INTO sync_names (kind, name, epoch)"
			    " VALUES ($1::smallint, $2, 0)"
			    " ON CONFLICT (kind, name)"
			    " DO UPDATE SET epoch = sync_names.epoch",
			    2, t->st[t->locks[k]].x.kn, NULL, NULL, NULL };
	for (size_t i = 0; i < t->n; i++) {
		t->st[i].writes_one = false;
		if (t->st[i].round != round || t->ops[i]->a == NULL)
			continue;
		t->st[i].reads = nq;
		nq += acquire_reads(t->ops[i]->a, &t->st[i].x, q + nq);
	}
	if (nq > 0 && (code = pg_pipeline(c, q, nq, pg_left(deadline), err,
	    errlen)) != PLAT_OK)
		goto out;

	for (size_t i = 0; i < t->n; i++)
		if (t->st[i].round == round)
			cap += t->ops[i]->a == NULL ? 1 : 3 + (size_t)PQntuples(
			    q[t->st[i].reads + A_PRUNE_HOLDERS].result);
	w.q = xcalloc(cap, sizeof(*w.q));
	w.cs = xcalloc(cap, sizeof(*w.cs));
	for (size_t i = 0; i < t->n; i++) {
		if (t->st[i].round != round)
			continue;
		if (t->ops[i]->a == NULL)
			release_write(&t->st[i], &w);
		else
			acquire_decide(t->ops[i], &t->st[i],
			    q + t->st[i].reads, &w);
	}
	if (last) {
		/* One NOTIFY of where the revision ended, with the COMMIT. */
		w.q[w.n++] = (struct pg_query){ "sync_notify",
		    "SELECT pg_notify('" STORE_CHANNEL "', rev::text)"
		    " FROM sync_revision WHERE id = 1", 0, NULL, NULL, NULL,
		    NULL };
		code = pg_pipeline_commit(c, w.q, w.n, pg_left(deadline), err,
		    errlen);
	} else if (w.n > 0) {
		code = pg_pipeline(c, w.q, w.n, pg_left(deadline), err, errlen);
	}
	if (code == PLAT_OK)
		for (size_t i = 0; i < t->n; i++)
			if (t->st[i].round == round)
				op_written(t->ops[i], &t->st[i], &w);
	for (size_t i = 0; code == PLAT_OK && i < w.n; i++)
		PQclear(w.q[i].result);
out:
	for (size_t i = 0; code == PLAT_OK && i < nq; i++)
		PQclear(q[i].result);
	free(w.q);
	free(w.cs);
	free(q);
	return code;
}

static enum plat_code
apply_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct apply_tx *t = arg;
	int64_t deadline = pg_deadline(timeout_ms);
	enum plat_code code = PLAT_OK;

	for (size_t i = 0; i < t->n; i++)
		op_reset(t->ops[i]);
	for (int r = 0; r < t->rounds && code == PLAT_OK; r++)
		code = apply_round(c, t, r, deadline, err, errlen);
	return code;
}

enum plat_code
store_apply(struct pg_store *db, struct sync_op *const *ops, size_t n,
    int64_t timeout_ms, char *err, size_t errlen)
{
	struct apply_tx t = { ops, n, NULL, 0, NULL, 0 };
	enum plat_code code;

	apply_plan(&t);
	code = pg_store_tx(db, timeout_ms, apply_fn, &t, err, errlen);
	if (code != PLAT_OK)
		for (size_t i = 0; i < n; i++)
			sync_notes_free(&ops[i]->notes);        /* rolled back */
	free(t.st);
	free(t.locks);
	return code;
}

/* One op alone: its own outcome, or the transaction's failure. */
static enum plat_code
apply_one(struct pg_store *db, struct sync_op *op, int64_t timeout_ms,
    char *err, size_t errlen)
{
	enum plat_code code;

	code = store_apply(db, &op, 1, timeout_ms, err, errlen);
	if (code == PLAT_OK && op->code != PLAT_OK) {
		errbuf_set(err, errlen, "%s", op->err);
		code = op->code;
	}
	return code;
}

enum plat_code
store_acquire(struct pg_store *db, struct sync_attempt *a, int64_t timeout_ms,
    char *err, size_t errlen)
{
	struct sync_op op = { .a = a, .kind = a->kind, .name = a->name,
	    .lease = a->lease };
	enum plat_code code;

	sync_notes_free(&a->notes);
	code = apply_one(db, &op, timeout_ms, err, errlen);
	a->notes = op.notes;
	return code;
}

enum plat_code
store_release(struct pg_store *db, int kind, const char *name, int64_t lease,
    int64_t timeout_ms, struct sync_notes *notes, char *err, size_t errlen)
{
	struct sync_op op = { .kind = kind, .name = name, .lease = lease };
	enum plat_code code;

	sync_notes_free(notes);
	code = apply_one(db, &op, timeout_ms, err, errlen);
	*notes = op.notes;
	return code;
}

enum plat_code
store_dequeue(struct pg_store *db, int kind, const char *name, int64_t lease,
    int64_t timeout_ms, char *err, size_t errlen)
{
	char k[8], l[24];

	snprintf(k, sizeof(k), "%d", kind);
	fmt_int(l, sizeof(l), lease);
	return pg_store_exec(db, "sync_dequeue", DEQUEUE_SQL, 3,
	    (const char *[]){ k, name, l }, timeout_ms, NULL, err, errlen);
}

struct proclaim_tx {
	const char *name;
	int64_t lease, token;
	const struct sync_value *value;
	struct sync_notes *notes;
};

static enum plat_code
proclaim_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct proclaim_tx *x = arg;
	int64_t deadline = pg_deadline(timeout_ms);
	char l[24], t[24];
	PGresult *res;
	enum plat_code code;
	int n;

	sync_notes_free(x->notes);
	fmt_int(l, sizeof(l), x->lease);
	fmt_int(t, sizeof(t), x->token);
	code = ex_value(c, "sync_proclaim",
	    "UPDATE sync_holders h SET value = $4::bytea"
	    " WHERE kind = 1 AND name = $1 AND lease_id = $2::bigint"
	    " AND token = $3::bigint AND " LIVE("h") " RETURNING token", 4,
	    (const char *[]){ x->name, l, t }, x->value, deadline, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	n = PQntuples(res);
	PQclear(res);
	if (n != 1) {
		errbuf_set(err, errlen, "token: lease %" PRId64 " is not the "
		    "leader of %s in term %" PRId64, x->lease, x->name,
		    x->token);
		return PLAT_FAILED_PRECONDITION;
	}
	note_add(x->notes, SYNC_KIND_ELECTION, x->name, "proclaimed",
	    x->lease, x->token);
	return change(c, SYNC_KIND_ELECTION, x->name, "proclaimed", x->lease,
	    x->token, x->value, deadline, err, errlen);
}

enum plat_code
store_proclaim(struct pg_store *db, const char *name, int64_t lease,
    int64_t token, const struct sync_value *value, int64_t timeout_ms,
    struct sync_notes *notes, char *err, size_t errlen)
{
	struct proclaim_tx x = { name, lease, token, value, notes };

	return pg_store_tx(db, timeout_ms, proclaim_fn, &x, err, errlen);
}

enum plat_code
store_leader(struct pg_store *db, const char *name, int64_t timeout_ms,
    bool *found, int64_t *lease, int64_t *token, unsigned char **value,
    size_t *vlen, int64_t *rev, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	*found = false;
	*value = NULL;
	*vlen = 0;
	code = pg_store_exec(db, "sync_leader",
	    "SELECT r.rev, h.lease_id, h.token, h.value"
	    " FROM sync_revision r LEFT JOIN sync_holders h ON h.kind = 1"
	    " AND h.name = $1 AND " LIVE("h") " WHERE r.id = 1", 1,
	    (const char *[]){ name }, timeout_ms, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQntuples(res) >= 1) {
		*rev = int_at(res, 0, 0);
		if (!PQgetisnull(res, 0, 1)) {
			*found = true;
			*lease = int_at(res, 0, 1);
			*token = int_at(res, 0, 2);
			value_at(res, 0, 3, value, vlen);
		}
	}
	PQclear(res);
	return PLAT_OK;
}

struct sweep_tx {
	struct sync_notes *notes;
};

static enum plat_code
sweep_fn(struct pg_conn *c, int64_t timeout_ms, void *arg, char *err,
    size_t errlen)
{
	struct sweep_tx *x = arg;
	int64_t deadline = pg_deadline(timeout_ms);
	PGresult *res;
	enum plat_code code;

	sync_notes_free(x->notes);
	code = ex(c, "sync_sweep_leases",
	    "DELETE FROM sync_leases WHERE expires_at <= now()", 0, NULL,
	    deadline, NULL, err, errlen);
	if (code != PLAT_OK)
		return code;
	code = ex(c, "sync_sweep_holders",
	    "DELETE FROM sync_holders h WHERE " NO_LEASE("h")
	    " RETURNING kind, name, lease_id, token", 0, NULL, deadline, &res,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	for (int r = 0; r < PQntuples(res) && code == PLAT_OK; r++) {
		int kind = (int)int_at(res, r, 0);
		const char *name = PQgetvalue(res, r, 1);

		code = change(c, kind, name, "expired", int_at(res, r, 2),
		    int_at(res, r, 3), NULL, deadline, err, errlen);
		note_add(x->notes, kind, name, "expired", int_at(res, r, 2),
		    int_at(res, r, 3));
	}
	PQclear(res);
	if (code == PLAT_OK)
		code = ex(c, "sync_sweep_waiters",
		    "DELETE FROM sync_waiters w WHERE " NO_LEASE("w")
		    " OR seen_at < now() - " WAITER_STALE, 0, NULL, deadline,
		    NULL, err, errlen);
	/* Changes are for waking waiters and for Observe: an hour is
	 * plenty. */
	if (code == PLAT_OK)
		code = ex(c, "sync_sweep_changes",
		    "DELETE FROM sync_changes WHERE at < now() - interval '1 hour'"
		    " AND revision < (SELECT rev FROM sync_revision WHERE id = 1)",
		    0, NULL, deadline, NULL, err, errlen);
	return code;
}

enum plat_code
store_sweep(struct pg_store *db, int64_t timeout_ms, struct sync_notes *notes,
    char *err, size_t errlen)
{
	struct sweep_tx x = { notes };
	enum plat_code code;

	code = pg_store_tx(db, timeout_ms, sweep_fn, &x, err, errlen);
	if (code != PLAT_OK)
		sync_notes_free(notes);
	return code;
}

/* ---- the change feed ---- */

enum plat_code
store_head(struct pg_store *db, int64_t timeout_ms, int64_t *rev, char *err,
    size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	code = pg_store_exec(db, "sync_head",
	    "SELECT rev FROM sync_revision WHERE id = 1", 0, NULL, timeout_ms,
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*rev = PQntuples(res) == 1 ? int_at(res, 0, 0) : 0;
	PQclear(res);
	return PLAT_OK;
}

enum plat_code
store_changes(struct pg_store *db, int64_t after, int64_t upto,
    const char *name, int limit, int64_t timeout_ms,
    struct sync_change ***rows, size_t *n, char *err, size_t errlen)
{
	char a[24], u[24], lim[16];
	PGresult *res;
	enum plat_code code;

	*rows = NULL;
	*n = 0;
	fmt_int(a, sizeof(a), after);
	fmt_int(u, sizeof(u), upto);
	snprintf(lim, sizeof(lim), "%d", limit);
	code = pg_store_exec(db, "sync_changes",
	    "SELECT revision, kind, name, event, lease_id, token, value"
	    " FROM sync_changes"
	    " WHERE revision > $1::bigint"
	    " AND ($2::bigint <= 0 OR revision <= $2::bigint)"
	    " AND ($3::text IS NULL OR (kind = 1 AND name = $3::text))"
	    " ORDER BY revision LIMIT $4::integer", 4,
	    (const char *[]){ a, u, name, lim }, timeout_ms, &res, err,
	    errlen);
	if (code != PLAT_OK)
		return code;
	*n = (size_t)PQntuples(res);
	*rows = xcalloc(*n + 1, sizeof(**rows));
	for (size_t r = 0; r < *n; r++) {
		struct sync_change *c = xcalloc(1, sizeof(*c));
		int i = (int)r;

		c->refs = 1;
		c->revision = int_at(res, i, 0);
		c->kind = (int)int_at(res, i, 1);
		c->name = xstrdup(PQgetvalue(res, i, 2));
		c->event = xstrdup(PQgetvalue(res, i, 3));
		c->lease = int_at(res, i, 4);
		c->token = int_at(res, i, 5);
		value_at(res, i, 6, &c->value, &c->vlen);
		c->size = sizeof(*c) + strlen(c->name) + c->vlen;
		(*rows)[r] = c;
	}
	PQclear(res);
	return PLAT_OK;
}
