/*
 * token_bucket: see platform/token_bucket.h.
 */
#include "platform/token_bucket.h"

static double
token_bucket_burst(double rate, double burst)
{
	if (burst >= 1)
		return burst;
	return rate > 1 ? rate : 1;
}

static void
token_bucket_refill(struct token_bucket *tb, int64_t now_ms)
{
	if (now_ms > tb->at_ms) {
		tb->tokens += tb->rate * (double)(now_ms - tb->at_ms) / 1000.0;
		if (tb->tokens > tb->burst)
			tb->tokens = tb->burst;
	}
	/* A clock that went back (it is monotonic, but tests pass any
	 * time) neither adds nor removes tokens. */
	tb->at_ms = now_ms;
}

void
token_bucket_init(struct token_bucket *tb, double rate, double burst,
    int64_t now_ms)
{
	tb->rate = rate;
	tb->burst = token_bucket_burst(rate, burst);
	tb->tokens = tb->burst;
	tb->at_ms = now_ms;
}

void
token_bucket_set(struct token_bucket *tb, double rate, double burst,
    int64_t now_ms)
{
	token_bucket_refill(tb, now_ms);
	tb->rate = rate;
	tb->burst = token_bucket_burst(rate, burst);
	if (tb->tokens > tb->burst)
		tb->tokens = tb->burst;
}

int
token_bucket_take(struct token_bucket *tb, int64_t now_ms)
{
	if (tb->rate <= 0)
		return 1;
	token_bucket_refill(tb, now_ms);
	if (tb->tokens < 1)
		return 0;
	tb->tokens -= 1;
	return 1;
}
