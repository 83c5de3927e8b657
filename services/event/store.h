/*
 * store: event-srv's PostgreSQL tables and every statement on them.
 *
 *   events               every stored event; seq is the stream-wide
 *                        sequence, off the offset within its topic
 *   event_sequence       one row: the last sequence handed out
 *   event_topics         per topic, the last offset handed out
 *   event_groups         consumer groups: subjects, ack wait, and
 *                        `claimed`, the sequence up to which events were
 *                        handed out to the group
 *   event_group_pending  deliveries not yet acknowledged, each with its
 *                        owner (one subscriber) and deadline
 *   event_retention      per subject, the age and count limits
 *
 * A publish is one transaction for a whole batch of events: it locks the
 * sequence row first, so batches commit in sequence order (a reader that
 * sees sequence S sees every sequence below S), looks up the batch's
 * idempotency keys, then inserts every new event, moves the topics'
 * offsets and the sequence row, and notifies channel 'platform_event'
 * with the last sequence, in one statement whose input is a JSON array
 * bound as one parameter.
 *
 * A group's committed position is derived, never stored: every event up
 * to the lowest pending sequence (or up to `claimed` when nothing is
 * pending) has been acknowledged.
 *
 * Every call returns a gRPC code with a message in err (platform/pg.h).
 */
#ifndef EVENT_STORE_H
#define EVENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/event/v1/event.pb-c.h"
#include "platform/pg.h"
#include "platform/server.h"

#define STORE_CHANNEL "platform_event"

typedef Platform__Event__V1__StoredEvent__MetadataEntry ev_meta;

/* One stored event. Immutable once made; shared by reference between the
 * feed and every subscriber. */
struct ev_row {
	int refs;                       /* atomic */
	int64_t seq;
	int64_t offset;
	int64_t time_ms;
	char *id;
	char *topic;
	char *type;
	char *source;
	char *idem;
	uint8_t *data;
	size_t ndata;
	ev_meta *meta;                  /* ready to send */
	ev_meta **metap;
	size_t nmeta;
	size_t size;                    /* bytes held, for buffer limits */
};

struct ev_row *ev_row_new(int64_t seq, int64_t offset, int64_t time_ms,
    const char *id, const char *topic, const char *type, const char *source,
    const char *idem, const uint8_t *data, size_t ndata,
    const char *const *keys, const char *const *values, size_t nmeta);
struct ev_row *ev_row_ref(struct ev_row *r);
void ev_row_unref(struct ev_row *r);        /* NULL is fine */
/* e (initialised here) points into r. */
void ev_row_fill(Platform__Event__V1__StoredEvent *e, const struct ev_row *r);

struct ev_rows {
	struct ev_row **v;
	size_t n;
};
void ev_rows_free(struct ev_rows *rows);

struct pg_store;

/* The store is a pg_store (pool and schema) with event's migrations
 * (component "event"): pg_store_migrate, pg_store_ready and pg_store_free
 * as for any; until the migrations applied every call below answers
 * PLAT_UNAVAILABLE. NULL when conninfo does not parse. */
struct pg_store *store_new(const char *conninfo, int pool_size);

/* ---- publishing ---- */

/* One event to store; strings checked, data at most EV_DATA_MAX. */
struct ev_input {
	const char *topic;
	const char *type;
	const char *source;
	const char *idem;               /* "" for none */
	const uint8_t *data;
	size_t ndata;
	const char *const *keys;
	const char *const *values;
	size_t nmeta;
};

struct ev_receipt {
	int64_t seq;
	int64_t offset;
	int64_t time_ms;
	char id[40];
	bool duplicate;                 /* an earlier event with its key */
};

/* Stores n events in one transaction, committed before it returns
 * PLAT_OK with a receipt for each in out. */
enum plat_code store_publish(struct pg_store *s, const struct ev_input *in,
    size_t n, int64_t timeout_ms, struct ev_receipt *out, char *err,
    size_t errlen);

/* ---- reading ---- */

/* The last sequence handed out. */
enum plat_code store_head(struct pg_store *s, int64_t timeout_ms,
    int64_t *seq, char *err, size_t errlen);
/*
 * Events with after < seq (<= upto when upto > 0) in sequence order, at
 * most limit; regexes_json is a JSON array of the topic regexes
 * (ev_subject_regex) to keep, or NULL for every topic.
 */
enum plat_code store_read(struct pg_store *s, int64_t after, int64_t upto,
    const char *regexes_json, int limit, int64_t timeout_ms,
    struct ev_rows *out, char *err, size_t errlen);
/* The sequence just before the first event of topic at offset or later
 * (*before is the head when there is none). */
enum plat_code store_before_offset(struct pg_store *s, const char *topic,
    int64_t offset, int64_t timeout_ms, int64_t *before, char *err,
    size_t errlen);
/* The sequence just before the first event stored at time_ms or later. */
enum plat_code store_before_time(struct pg_store *s, int64_t time_ms,
    int64_t timeout_ms, int64_t *before, char *err, size_t errlen);

struct store_query {
	const char *regex;              /* "" for every topic */
	const char *type;
	const char *source;
	int64_t start_ms, end_ms;       /* 0: unbounded */
	const char *meta_json;          /* a JSON object, "{}" for none */
	bool oldest_first;
	int64_t after_seq;              /* the page token; 0: first page */
	int limit;
};
enum plat_code store_query(struct pg_store *s, const struct store_query *q,
    int64_t timeout_ms, struct ev_rows *out, char *err, size_t errlen);

/* ---- consumer groups ---- */

/* Makes the group unless it exists, then gives its subjects (a JSON
 * array, malloc'd) and ack wait as stored. */
enum plat_code store_group_open(struct pg_store *s, const char *name,
    const char *subjects_json, int64_t start_after, int64_t ack_wait_ms,
    int64_t timeout_ms, char **subjects_out, int64_t *ack_wait_out,
    char *err, size_t errlen);

/*
 * Hands out up to limit events to the owners (a JSON array of owner
 * strings, one per subscriber), round robin: first deliveries past their
 * deadline (redeliveries), then events after the group's claimed position
 * that match regexes_json. Each becomes pending with a deadline of now
 * plus the group's ack wait. Per row, (*deliveries)[i] is its delivery
 * count and (*who)[i] the index of its owner (both malloc'd). *behind:
 * the claimed position is still short of the stream's head (a claim
 * scans a bounded window: claim again at once). PLAT_NOT_FOUND when the
 * group is gone.
 */
enum plat_code store_group_claim(struct pg_store *s, const char *group,
    const char *owners_json, const char *regexes_json, int limit,
    int64_t timeout_ms, struct ev_rows *out, int **deliveries, int **who,
    bool *behind, char *err, size_t errlen);
/* Per owner starting with owner_prefix, its deliveries still within
 * their deadline: calls fn for each. */
enum plat_code store_group_inflight(struct pg_store *s, const char *group,
    const char *owner_prefix, int64_t timeout_ms,
    void (*fn)(const char *owner, int64_t n, void *arg), void *arg,
    char *err, size_t errlen);
/* Makes the deliveries of owners starting with owner_prefix due for
 * redelivery now (a subscriber left, or this server restarted). */
enum plat_code store_group_release(struct pg_store *s,
    const char *owner_prefix, int64_t timeout_ms, char *err, size_t errlen);
/* Acknowledges; *acked is how many were pending. PLAT_NOT_FOUND when the
 * group does not exist. */
enum plat_code store_ack(struct pg_store *s, const char *group,
    const int64_t *seqs, size_t n, int64_t timeout_ms, int64_t *acked,
    char *err, size_t errlen);

struct group_info {
	char *name;
	char *subjects_json;
	int64_t ack_wait_ms;
	int64_t committed;
	int64_t delivered;
	int64_t pending;
	int64_t created_ms;
};
/* Groups named after `after` in name order, at most limit; free each
 * with group_info_free. */
enum plat_code store_groups(struct pg_store *s, const char *after, int limit,
    int64_t timeout_ms, struct group_info **out, size_t *n, char *err,
    size_t errlen);
void group_info_free(struct group_info *g, size_t n);
enum plat_code store_group_delete(struct pg_store *s, const char *name,
    int64_t timeout_ms, char *err, size_t errlen);

/* ---- retention ---- */

struct retention {
	char *subject;
	int64_t max_age_ms;
	int64_t max_count;
};
/* Both limits 0 removes the subject's retention. */
enum plat_code store_retention_set(struct pg_store *s, const char *subject,
    int64_t max_age_ms, int64_t max_count, int64_t timeout_ms, char *err,
    size_t errlen);
enum plat_code store_retention_list(struct pg_store *s, int64_t timeout_ms,
    struct retention **out, size_t *n, char *err, size_t errlen);
void retention_free(struct retention *r, size_t n);
/* Deletes at most limit events beyond one retention; *deleted says how
 * many went. */
enum plat_code store_retention_apply(struct pg_store *s,
    const struct retention *r, int limit, int64_t timeout_ms,
    int64_t *deleted, char *err, size_t errlen);
/* Drops pending deliveries whose event retention deleted. */
enum plat_code store_pending_sweep(struct pg_store *s, int64_t timeout_ms,
    char *err, size_t errlen);

#endif
