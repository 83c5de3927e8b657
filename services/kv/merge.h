/*
 * merge: one Watch stream fed by several sources of changes.
 *
 * A Watch may hear of the same change more than once (each owner of a
 * key on the ring sends it; Redis's change channel and a snapshot read
 * may both carry it) and out of order between sources. The merge passes
 * a key's change on only when its version is newer than the last one
 * sent for that key, and sends SYNCED once, after every source has said
 * it sent its current state.
 */
#ifndef KV_MERGE_H
#define KV_MERGE_H

#include <pthread.h>
#include <stdbool.h>

#include "backend.h"

#define KV_MERGE_BUCKETS 256

struct kv_merge {
	plat_stream *st;
	pthread_mutex_t mu;
	struct kv_seen *seen[KV_MERGE_BUCKETS];
	int unsynced;                   /* sources yet to send SYNCED */
	bool synced;
};

/* Takes a reference on st; sources: how many will send SYNCED. */
void kv_merge_init(struct kv_merge *m, plat_stream *st, int sources);
/* One source's event (type: the proto's EventType); from any thread. */
void kv_merge_deliver(struct kv_merge *m, int type, const kv_entry_pb *e);
/* Frees what it kept and drops the reference on the stream. */
void kv_merge_fini(struct kv_merge *m);

#endif
