/*
 * grant: sync-srv's pure decisions, with no database or gRPC in them
 * (tests/unit/test_sync_grant.c): whether a claim on a lock may be granted
 * beside its current holders and the waiters queued before it, and the
 * checks on names.
 */
#ifndef SYNC_GRANT_H
#define SYNC_GRANT_H

#include <stddef.h>

/* As platform.sync.v1.LockMode. */
enum sync_mode {
	SYNC_EXCLUSIVE = 0,
	SYNC_SHARED = 1,
	SYNC_SEMAPHORE = 2,
};

struct sync_claim {
	int mode;               /* enum sync_mode */
	int limit;              /* semaphore: its number of holders */
};

enum sync_verdict {
	SYNC_GRANT,             /* take it now */
	SYNC_WAIT,              /* a holder or an earlier waiter is in the way */
	SYNC_MISMATCH,          /* a semaphore held or queued with another limit */
};

/*
 * me beside held (the live holders) and ahead (the live waiters queued
 * before it, in order; for a try-lock every waiter). FIFO: a claim is
 * granted only when it could coexist with every holder and with every
 * waiter ahead of it, so nobody overtakes a waiter that is still blocked.
 * Exclusive coexists with nothing; shared with shared; a semaphore with
 * semaphores of the same limit while they number fewer than the limit.
 */
enum sync_verdict sync_decide(const struct sync_claim *me,
    const struct sync_claim *held, size_t nheld,
    const struct sync_claim *ahead, size_t nahead);

#define SYNC_NAME_MAX 256

/* A lock or election name: 1..SYNC_NAME_MAX bytes of UTF-8 with no
 * control characters. NULL when fine, else why not. */
const char *sync_name_problem(const char *name);

#endif
