/*
 * route-cost: the client-side cost of choosing a node, per call, in one
 * run: today's round robin (selector), the balancer's fallback (round
 * robin over the closed breakers, with stats), and P2C+EWMA over
 * router-srv's weights (with stats), for a few fleet sizes. Each op is
 * one pick and one outcome, as a call by name does under the client's
 * lock; no network. Prints a table (bench/README.md).
 */
#include <stdio.h>
#include <stdlib.h>

#include "platform/balancer.h"
#include "platform/clock.h"
#include "platform/selector.h"

#define OPS 2000000
#define ADDRS_MAX 64

static char addr_buf[ADDRS_MAX][32];
static const char *addrs[ADDRS_MAX];

static double
bench_selector(size_t n)
{
	struct selector s;
	int64_t t0, now = 1000;
	volatile int sink = 0;

	selector_init(&s, 0);
	t0 = plat_now_us();
	for (int i = 0; i < OPS; i++) {
		int k = selector_pick(&s, addrs, n, now);

		selector_mark_ok(&s, addrs[k]);
		sink += k;
	}
	(void)sink;
	return (double)(plat_now_us() - t0) * 1000.0 / OPS;
}

static double
bench_balancer(size_t n, int weighted)
{
	struct balancer b;
	uint32_t w[ADDRS_MAX];
	int64_t t0, now = 1000;

	balancer_init(&b, NULL, 42);
	balancer_sync(&b, addrs, n);
	for (size_t i = 0; i < n; i++)
		w[i] = 100;
	if (weighted)
		balancer_set_weights(&b, addrs, w, n);
	t0 = plat_now_us();
	for (int i = 0; i < OPS; i++) {
		int k = balancer_pick(&b, now);

		/* The outcome by address, as the client reports it. */
		balancer_done(&b, b.nodes[k].addr, 0, 0.3 + (k % 3) * 0.1,
		    now);
		if ((i & 1023) == 0)
			now++;
	}
	t0 = plat_now_us() - t0;
	balancer_free(&b);
	return (double)t0 * 1000.0 / OPS;
}

int
main(void)
{
	static const size_t sizes[] = { 3, 10, 50 };

	for (int i = 0; i < ADDRS_MAX; i++) {
		snprintf(addr_buf[i], sizeof(addr_buf[i]), "10.0.0.%d:7090",
		    i + 1);
		addrs[i] = addr_buf[i];
	}
	printf("| nodes | round robin (selector) ns/op | breakers + stats, "
	    "round robin ns/op | P2C+EWMA + breakers + stats ns/op |\n");
	printf("|---|---|---|---|\n");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		printf("| %zu | %.1f | %.1f | %.1f |\n", sizes[s],
		    bench_selector(sizes[s]), bench_balancer(sizes[s], 0),
		    bench_balancer(sizes[s], 1));
	return 0;
}
