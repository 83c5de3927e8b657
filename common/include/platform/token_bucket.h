/*
 * token_bucket: the client-side rate limiter, one per service and method.
 *
 * rate tokens a second flow in up to burst; a call takes one. rate <= 0
 * means no limit. Pure logic with the time passed in; not thread-safe:
 * the caller holds its lock.
 */
#ifndef PLATFORM_TOKEN_BUCKET_H
#define PLATFORM_TOKEN_BUCKET_H

#include <stdint.h>

struct token_bucket {
	double rate;                 /* tokens per second */
	double burst;                /* at most this many saved up */
	double tokens;
	int64_t at_ms;               /* when tokens was last brought up */
};

/* A full bucket. burst < 1 means max(1, rate): a second's worth. */
void token_bucket_init(struct token_bucket *tb, double rate, double burst,
    int64_t now_ms);

/* Changes the limit, keeping the tokens saved (up to the new burst). */
void token_bucket_set(struct token_bucket *tb, double rate, double burst,
    int64_t now_ms);

/* 1 and one token fewer, or 0 when the bucket is empty. */
int token_bucket_take(struct token_bucket *tb, int64_t now_ms);

#endif
