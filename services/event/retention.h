/*
 * retention: a thread that deletes events beyond each retention (store.h)
 * every interval, a bounded number per statement so it never holds locks
 * for long, then drops the group deliveries of deleted events. Replicas
 * may all run it: deleting what another already deleted is a no-op.
 */
#ifndef EVENT_RETENTION_H
#define EVENT_RETENTION_H

#include <stdint.h>

#include "store.h"

int retention_start(struct pg_store *store, int64_t interval_ms);
void retention_stop(void);
/* Events deleted by retention since start, for metrics. */
double retention_deleted(void);

#endif
