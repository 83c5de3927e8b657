/*
 * subject: event-srv's pure logic, with no database and no gRPC: the
 * syntax of topics, subjects and the other fields of an event, subject
 * matching, and the encodings its SQL parameters need. Linked by the
 * server and by tests/unit/test_event_subject.c.
 *
 * A topic is one or more segments separated by '.', each of
 * [A-Za-z0-9_-]: "orders.created". A subject is a topic in which a whole
 * segment may be "*" (exactly one segment) and the last one may be ">"
 * (one or more segments): "orders.*", "orders.>", ">".
 *
 * The checks return 0, or -1 with one line in err that starts with the
 * field's name, fit for INVALID_ARGUMENT.
 */
#ifndef EVENT_SUBJECT_H
#define EVENT_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EV_TOPIC_MAX		255	/* bytes of a topic or subject */
#define EV_TEXT_MAX		256	/* type, source */
#define EV_KEY_MAX		128	/* idempotency key, group name */
#define EV_DATA_MAX		(1u << 20)
#define EV_META_MAX		64	/* pairs */
#define EV_META_KEY_MAX		128
#define EV_META_VALUE_MAX	1024

int ev_check_topic(const char *field, const char *s, char *err,
    size_t errlen);
int ev_check_subject(const char *field, const char *s, char *err,
    size_t errlen);
/* type, source, idempotency key: at most max bytes, no control
 * characters; "" only when !required. */
int ev_check_text(const char *field, const char *s, size_t max,
    bool required, char *err, size_t errlen);
/* A group name: 1..EV_KEY_MAX of [A-Za-z0-9_.-]. */
int ev_check_group(const char *field, const char *s, char *err,
    size_t errlen);
/* One metadata pair (field is "metadata" or "events[3].metadata"). */
int ev_check_meta(const char *field, const char *key, const char *value,
    char *err, size_t errlen);

/* Whether a checked subject matches a checked topic. */
bool ev_subject_match(const char *subject, const char *topic);
/* A subject without wildcards: it names one topic. */
bool ev_subject_literal(const char *subject);
/* The POSIX regular expression (PostgreSQL's ~) matching the same topics
 * as a checked subject, anchored; malloc'd. Topics hold no regex
 * metacharacters but '.', so the translation is exact. */
char *ev_subject_regex(const char *subject);

/* Standard base64 of n bytes, NUL-terminated, malloc'd. */
char *ev_base64(const uint8_t *p, size_t n);

#endif
