/*
 * groups: consumer groups, the subscribers that share a group's events.
 *
 * A group's state is in PostgreSQL (store.h): what it was handed out,
 * and each delivery not yet acknowledged with its owner and deadline, so
 * every replica serves the same group and a group resumes from its
 * committed position after any restart. Each replica runs one thread
 * that, for every group with subscribers here, hands out events to those
 * with room (at most max_in_flight unacknowledged each), round robin, in
 * one transaction per round: first deliveries past their deadline, then
 * new events. It runs when the feed has new events, on an Ack here, when
 * a subscriber comes or goes, and every GROUPS_TICK_MS for deadlines and
 * for acknowledgements made through other replicas.
 *
 * An owner is "NODE/BOOT/N/": this server's node id, a number drawn at
 * start and the subscriber's number. When a subscriber leaves, its
 * deliveries become due at once; at start, those of an earlier run of
 * this node are.
 */
#ifndef EVENT_GROUPS_H
#define EVENT_GROUPS_H

#include <stddef.h>
#include <stdint.h>

#include "platform/server.h"
#include "store.h"

int groups_start(struct pg_store *store, const char *node_id);
/* Every stream must have ended. */
void groups_stop(void);
void groups_kick(void);
size_t groups_subscribers(void);

/*
 * The work of a Subscribe with a group once its request is checked:
 * opens the group (made with these subjects, start and ack wait unless
 * it exists; FAILED_PRECONDITION when it exists with other subjects or,
 * when ack_wait_ms is given, another ack wait) and adds the subscriber.
 * start_after -1 is the head. Returns what the stream handler returns.
 */
int groups_subscribe(plat_ctx *ctx, plat_stream *st, const char *group,
    const char *const *subjects, size_t n, int64_t start_after,
    int64_t ack_wait_ms, int max_in_flight);

#endif
