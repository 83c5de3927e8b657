/*
 * store: sync-srv's tables and statements in PostgreSQL.
 *
 * sync_leases     one row per lease; expires_at is set from now() in the
 *                 statement that grants or renews it, so every replica
 *                 decides expiry on the database's clock.
 * sync_names      one row per lock or election name with its epoch, the
 *                 last fencing token given out; the row is locked by the
 *                 upsert that starts every acquisition, so acquisitions of
 *                 one name are serialised across replicas, and it is never
 *                 deleted, so tokens grow across restarts.
 * sync_holders    who holds what, under which lease, with which token.
 * sync_waiters    the FIFO queue of a name (ticket order), one row per
 *                 waiting lease, kept across retries of the same lease
 *                 (on any replica); marked seen at every try, and dropped
 *                 when not seen for 10 s (its replica died).
 * sync_changes    every change of holder, in revision order (a counter row
 *                 locked until commit), NOTIFY'd on STORE_CHANNEL: the
 *                 change feed that wakes waiters and serves Observe.
 *
 * A holder or waiter whose lease lapsed counts for nothing: an
 * acquisition of the name deletes the lapsed lease rows of its holders
 * and waiters, then the holders and waiters left with no lease row; the
 * sweeper does the same for every lease. A lapsed lease is only ever
 * judged by a statement that writes its row, so a lapse and a KeepAlive
 * racing for one lease are ordered by the row's lock, never by two
 * snapshots.
 */
#ifndef SYNC_STORE_H
#define SYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/pg.h"

#define STORE_CHANNEL "platform_sync"

enum sync_kind {
	SYNC_KIND_LOCK = 0,
	SYNC_KIND_ELECTION = 1,
};

/* A bytes value (an election's); set false: SQL NULL. */
struct sync_value {
	bool set;
	const unsigned char *data;
	size_t len;
};

/* A change of holder the caller reports (platform events). */
struct sync_note {
	int kind;
	char *name;
	const char *event;      /* "acquired", "released", "expired", "proclaimed" */
	int64_t lease;
	int64_t token;
};

struct sync_notes {
	struct sync_note *v;
	size_t n, cap;
};
void sync_notes_free(struct sync_notes *n);

/* A row of sync_changes, reference counted, for the feed. */
struct sync_change {
	int64_t revision;
	size_t size;
	int refs;
	int kind;
	char *name;
	char *event;
	int64_t lease;
	int64_t token;
	unsigned char *value;   /* PQfreemem */
	size_t vlen;
};
void sync_change_ref(struct sync_change *c);
void sync_change_unref(struct sync_change *c);

/* The store is a pg_store (pool and schema) with sync's migrations:
 * pg_store_migrate and pg_store_free as for any. */
struct pg_store *store_new(const char *conninfo, int pool_size);

/* ---- leases ---- */
enum plat_code store_grant(struct pg_store *db, int64_t ttl_ms,
    int64_t timeout_ms, int64_t *id, char *err, size_t errlen);
/* *left: the TTL after renewal, 0 when the lease is gone. */
enum plat_code store_keepalive(struct pg_store *db, int64_t id,
    int64_t timeout_ms, int64_t *left, char *err, size_t errlen);
/* NOT_FOUND when there is no such live lease. */
enum plat_code store_ttl(struct pg_store *db, int64_t id, int64_t timeout_ms,
    int64_t *ttl, int64_t *remaining, char *err, size_t errlen);
/* Releases everything held under it; NOT_FOUND when it is gone. */
enum plat_code store_revoke(struct pg_store *db, int64_t id,
    int64_t timeout_ms, struct sync_notes *notes, char *err, size_t errlen);

/* ---- locks and elections ---- */
enum sync_outcome {
	SYNC_GRANTED,           /* token (and value) set */
	SYNC_QUEUED,            /* queued (wait) or busy (try) */
	SYNC_NO_LEASE,          /* the lease is gone: the waiter is dropped */
	SYNC_LIMIT_MISMATCH,    /* a semaphore with another limit */
};

struct sync_attempt {
	/* in */
	int kind;
	const char *name;
	int64_t lease;
	int mode;
	int limit;
	bool wait;              /* queue when not granted */
	struct sync_value value;        /* election: its value */
	/* out */
	enum sync_outcome outcome;
	int64_t token;
	int other_limit;        /* SYNC_LIMIT_MISMATCH */
	struct sync_notes notes;
};
enum plat_code store_acquire(struct pg_store *db, struct sync_attempt *a,
    int64_t timeout_ms, char *err, size_t errlen);
/* One op of a batch (store_apply): an acquisition (a set) or a release
 * (a NULL) of kind/name by lease. */
struct sync_op {
	struct sync_attempt *a;
	int kind;
	const char *name;
	int64_t lease;
	/* out: the op's own outcome once the batch committed (NOT_FOUND
	 * for a lease gone or a release of nothing held, FAILED_PRECONDITION
	 * for another semaphore limit), and its committed changes */
	enum plat_code code;
	char err[256];
	struct sync_notes notes;
};
/* The ops in one transaction, in order: PLAT_OK when it committed (each
 * op then carries its own outcome); otherwise nothing was written (or,
 * for an unknown commit outcome, maybe all) and no op has notes. */
enum plat_code store_apply(struct pg_store *db, struct sync_op *const *ops,
    size_t n, int64_t timeout_ms, char *err, size_t errlen);
/* Leaves the queue (a waiter that gave up). */
enum plat_code store_dequeue(struct pg_store *db, int kind, const char *name,
    int64_t lease, int64_t timeout_ms, char *err, size_t errlen);
/* NOT_FOUND when lease holds nothing of that name. */
enum plat_code store_release(struct pg_store *db, int kind, const char *name,
    int64_t lease, int64_t timeout_ms, struct sync_notes *notes, char *err,
    size_t errlen);
/* FAILED_PRECONDITION when lease is not the leader in term token. */
enum plat_code store_proclaim(struct pg_store *db, const char *name,
    int64_t lease, int64_t token, const struct sync_value *value,
    int64_t timeout_ms, struct sync_notes *notes, char *err, size_t errlen);

/* The leader (a live one) and the revision it was read at, in one
 * snapshot. *found false: none. *value for PQfreemem. */
enum plat_code store_leader(struct pg_store *db, const char *name,
    int64_t timeout_ms, bool *found, int64_t *lease, int64_t *token,
    unsigned char **value, size_t *vlen, int64_t *rev, char *err,
    size_t errlen);

/* Drops lapsed leases and what they held. */
enum plat_code store_sweep(struct pg_store *db, int64_t timeout_ms,
    struct sync_notes *notes, char *err, size_t errlen);

/* ---- the change feed ---- */
enum plat_code store_head(struct pg_store *db, int64_t timeout_ms,
    int64_t *rev, char *err, size_t errlen);
/* Changes after `after` (<= upto when upto > 0), at most limit; of one
 * election when name is not NULL. */
enum plat_code store_changes(struct pg_store *db, int64_t after, int64_t upto,
    const char *name, int limit, int64_t timeout_ms,
    struct sync_change ***rows, size_t *n, char *err, size_t errlen);

#endif
