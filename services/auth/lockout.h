/*
 * lockout: brute-force protection for Token.
 *
 * Failed logins are counted per account and per peer host (the address
 * of plat_ctx_peer without its port) in memory, over a window of
 * lock_ms: counters are per replica and start afresh on restart, which
 * bounds what one replica lets through, not what a fleet does. From the
 * second failure on, each failed answer is slowed (delay_step_ms more
 * per failure, at most delay_max_ms) without holding a worker thread:
 * the answer is deferred (plat_defer) and sent by a timer thread. At
 * account_failures for an account, or peer_failures for a peer, logins
 * of that account, or from that peer, are refused with
 * RESOURCE_EXHAUSTED for lock_ms, right credentials or not. A success
 * clears the account's count.
 */
#ifndef AUTH_LOCKOUT_H
#define AUTH_LOCKOUT_H

#include <stdint.h>

#include "platform/server.h"

struct lockout_config {
	int account_failures;
	int peer_failures;
	int64_t lock_ms;
	int64_t delay_step_ms;
	int64_t delay_max_ms;
};

int lockout_start(const struct lockout_config *cfg);
/* Answers every delayed call at once, stops the timer thread. */
void lockout_stop(void);

/* The peer host of a gRPC peer string ("ipv4:127.0.0.1:5000" gives
 * "127.0.0.1"), in the call's arena. */
const char *lockout_peer_host(plat_ctx *ctx);

/* Milliseconds the account or the peer is still locked out, or 0.
 * account may be NULL (not known yet). */
int64_t lockout_blocked(const char *account, const char *peer);

/* Counts a failure and answers it: the status already set on ctx by
 * plat_error (code), now or after the delay. Returns what the handler
 * returns. */
int lockout_fail(plat_ctx *ctx, int code, const char *account,
    const char *peer);

void lockout_succeeded(const char *account);

#endif
