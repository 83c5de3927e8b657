/* Unit tests for router-srv's decisions (services/router/view.c and
 * outlier.c): pure logic, time passed in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "outlier.h"
#include "view.h"

typedef Platform__Router__V1__Rules Rules;
typedef Platform__Router__V1__Split Split;
typedef Platform__Router__V1__WeightOverride Weight;
typedef Platform__Router__V1__Label Label;

static struct view_node *
four(struct view_node *v)
{
	static const char *ids[] = { "n1", "n2", "n3", "n4" };
	static const char *addrs[] = { "a:1", "a:2", "a:3", "a:4" };
	static const char *vers[] = { "1", "1", "1", "2" };

	for (int i = 0; i < 4; i++)
		v[i] = (struct view_node){ ids[i], addrs[i], vers[i],
		    VIEW_ACTIVE, 0 };
	return v;
}

static uint32_t
sum(const struct view_node *v, size_t n, const char *version)
{
	uint32_t s = 0;

	for (size_t i = 0; i < n; i++)
		if (version == NULL || strcmp(v[i].version, version) == 0)
			s += v[i].weight;
	return s;
}

static void
test_equal_without_rules(void **state)
{
	struct view_node v[4];

	(void)state;
	view_weights(four(v), 4, NULL, NULL, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(v[i].weight, VIEW_WEIGHT_TOTAL / 4);
}

static void
test_states(void **state)
{
	struct view_node v[4];

	(void)state;
	four(v);
	v[0].state = VIEW_EJECTED;
	v[1].state = VIEW_DEGRADED;
	view_weights(v, 4, NULL, NULL, 0);
	assert_int_equal(v[0].weight, 0);
	assert_true(v[1].weight * 5 < v[2].weight);
	assert_int_equal(v[2].weight, v[3].weight);
}

static void
test_overrides(void **state)
{
	Weight wv = PLATFORM__ROUTER__V1__WEIGHT_OVERRIDE__INIT;
	Weight wn = PLATFORM__ROUTER__V1__WEIGHT_OVERRIDE__INIT;
	Weight *ws[] = { &wn, &wv };
	Rules r = PLATFORM__ROUTER__V1__RULES__INIT;
	struct view_node v[4];

	(void)state;
	wv.version = "1";
	wv.weight = 300;
	wn.node_id = "n1";
	wn.weight = 0;          /* drained; the node id wins over version */
	r.weights = ws;
	r.n_weights = 2;
	view_weights(four(v), 4, &r, NULL, 0);
	assert_int_equal(v[0].weight, 0);
	assert_int_equal(v[1].weight, v[2].weight);
	assert_in_range(v[1].weight, 3 * v[3].weight - 2,
	    3 * v[3].weight + 2);
}

static void
test_split_by_percent(void **state)
{
	Split s = PLATFORM__ROUTER__V1__SPLIT__INIT;
	Split *ss[] = { &s };
	Rules r = PLATFORM__ROUTER__V1__RULES__INIT;
	struct view_node v[4];

	(void)state;
	s.version = "2";
	s.percent = 10;
	r.splits = ss;
	r.n_splits = 1;
	view_weights(four(v), 4, &r, NULL, 0);
	assert_int_equal(sum(v, 4, "2"), VIEW_WEIGHT_TOTAL / 10);
	assert_in_range(sum(v, 4, "1"), VIEW_WEIGHT_TOTAL * 9 / 10 - 2,
	    VIEW_WEIGHT_TOTAL * 9 / 10 + 2);
	/* Version 2 ejected: its share goes to the others (fail-open). */
	four(v)[3].state = VIEW_EJECTED;
	view_weights(v, 4, &r, NULL, 0);
	assert_int_equal(sum(v, 4, "2"), 0);
	assert_in_range(sum(v, 4, "1"), VIEW_WEIGHT_TOTAL - 2,
	    VIEW_WEIGHT_TOTAL + 2);
}

static void
test_split_by_label(void **state)
{
	Split s = PLATFORM__ROUTER__V1__SPLIT__INIT;
	Split *ss[] = { &s };
	Rules r = PLATFORM__ROUTER__V1__RULES__INIT;
	Label l = PLATFORM__ROUTER__V1__LABEL__INIT, other = l;
	Label *canary[] = { &l }, *plain[] = { &other };
	struct view_node v[4];

	(void)state;
	s.version = "2";
	s.percent = 100;
	s.label_key = "canary";
	s.label_value = "yes";
	r.splits = ss;
	r.n_splits = 1;
	l.key = "canary";
	l.value = "yes";
	other.key = "canary";
	other.value = "no";
	view_weights(four(v), 4, &r, canary, 1);
	assert_int_equal(sum(v, 4, "2"), VIEW_WEIGHT_TOTAL);
	assert_int_equal(sum(v, 4, "1"), 0);
	view_weights(four(v), 4, &r, plain, 1);
	assert_int_equal(v[3].weight, VIEW_WEIGHT_TOTAL / 4);
}

static void
test_rules_problems(void **state)
{
	Rules r = PLATFORM__ROUTER__V1__RULES__INIT;
	Split a = PLATFORM__ROUTER__V1__SPLIT__INIT, b = a;
	Split *ss[] = { &a, &b };
	Weight w = PLATFORM__ROUTER__V1__WEIGHT_OVERRIDE__INIT;
	Weight *ws[] = { &w };
	Platform__Router__V1__RateLimit l =
	    PLATFORM__ROUTER__V1__RATE_LIMIT__INIT;
	Platform__Router__V1__RateLimit *ls[] = { &l };
	char buf[256];

	(void)state;
	assert_non_null(view_rules_problem(NULL, buf, sizeof(buf)));
	assert_non_null(view_rules_problem(&r, buf, sizeof(buf)));
	r.service = "probe";
	assert_null(view_rules_problem(&r, buf, sizeof(buf)));
	r.service = "bad name";
	assert_non_null(strstr(view_rules_problem(&r, buf, sizeof(buf)),
	    "rules.service"));
	r.service = "probe";
	a.version = "2";
	a.percent = 60;
	b.version = "3";
	b.percent = 50;
	r.splits = ss;
	r.n_splits = 2;
	assert_non_null(strstr(view_rules_problem(&r, buf, sizeof(buf)),
	    "rules.splits[1].percent"));
	b.percent = 40;
	assert_null(view_rules_problem(&r, buf, sizeof(buf)));
	r.n_splits = 0;
	r.weights = ws;
	r.n_weights = 1;
	assert_non_null(strstr(view_rules_problem(&r, buf, sizeof(buf)),
	    "rules.weights[0]"));
	w.version = "1";
	w.weight = 10001;
	assert_non_null(strstr(view_rules_problem(&r, buf, sizeof(buf)),
	    "weight"));
	r.n_weights = 0;
	r.limits = ls;
	r.n_limits = 1;
	assert_non_null(strstr(view_rules_problem(&r, buf, sizeof(buf)),
	    "rules.limits[0].rate"));
	l.rate = 5;
	l.method = "Ping";
	assert_non_null(strstr(view_rules_problem(&r, buf, sizeof(buf)),
	    "rules.limits[0].method"));
	l.method = "/platform.probe.v1.Probe/Ping";
	assert_null(view_rules_problem(&r, buf, sizeof(buf)));
}

/* ---- outlier ---- */

static void
feed(struct outlier_node *n, int64_t now, uint64_t req, uint64_t err,
    double ms_each)
{
	struct win_counts d = { 0 };

	d.requests = req;
	d.errors = err;
	d.lat_sum_ms = ms_each * (double)req;
	win_add(&n->w, 10000, now, &d);
}

static void
test_window(void **state)
{
	struct win w;
	struct win_counts d = { .requests = 5 }, s;

	(void)state;
	win_clear(&w, 0);
	win_add(&w, 10000, 100, &d);
	win_add(&w, 10000, 5100, &d);
	win_sum(&w, 10000, 5200, &s);
	assert_int_equal(s.requests, 10);
	win_sum(&w, 10000, 10100, &s);   /* the first half rolled out */
	assert_int_equal(s.requests, 5);
	win_sum(&w, 10000, 30000, &s);
	assert_int_equal(s.requests, 0);
}

static void
test_max_ejected(void **state)
{
	(void)state;
	assert_int_equal(outlier_max_ejected(10, 1), 0);
	/* envoy#3263: 10% of 3 rounds to 0, still one. */
	assert_int_equal(outlier_max_ejected(10, 3), 1);
	assert_int_equal(outlier_max_ejected(50, 4), 2);
	assert_int_equal(outlier_max_ejected(100, 4), 3);
	assert_int_equal(outlier_max_ejected(0, 4), 0);
}

static void
test_eject_and_return(void **state)
{
	struct outlier_node n[3], *p[3] = { &n[0], &n[1], &n[2] };
	struct outlier_cfg cfg;

	(void)state;
	outlier_cfg_from(&cfg, NULL);
	memset(n, 0, sizeof(n));
	feed(&n[0], 100, 100, 0, 1);
	feed(&n[1], 100, 100, 80, 1);
	feed(&n[2], 100, 100, 0, 1);
	assert_true(outlier_decide(&cfg, p, 3, 200));
	assert_int_equal(n[1].state, VIEW_EJECTED);
	assert_int_equal(n[1].ejected_until_ms, 200 + 10000);
	assert_int_equal(n[0].state, VIEW_ACTIVE);
	/* Its time over: back, judged afresh. */
	assert_true(outlier_decide(&cfg, p, 3, 10200));
	assert_int_equal(n[1].state, VIEW_ACTIVE);
	/* Failing again: out for twice as long. */
	feed(&n[1], 10300, 50, 50, 1);
	outlier_decide(&cfg, p, 3, 10300);
	assert_int_equal(n[1].ejected_until_ms, 10300 + 20000);
}

static void
test_ejection_cap(void **state)
{
	struct outlier_node n[4], *p[4] = { &n[0], &n[1], &n[2], &n[3] };
	struct outlier_cfg cfg;
	Platform__Router__V1__OutlierDetection o =
	    PLATFORM__ROUTER__V1__OUTLIER_DETECTION__INIT;
	int ejected = 0;

	(void)state;
	o.max_ejection_percent = 25;
	outlier_cfg_from(&cfg, &o);
	memset(n, 0, sizeof(n));
	for (int i = 0; i < 4; i++)
		feed(&n[i], 100, 100, i == 0 ? 0 : 60 + 10 * i, 1);
	outlier_decide(&cfg, p, 4, 200);
	for (int i = 0; i < 4; i++)
		ejected += n[i].state == VIEW_EJECTED;
	assert_int_equal(ejected, 1);
	assert_int_equal(n[3].state, VIEW_EJECTED);    /* the worst */
}

static void
test_slow_degraded(void **state)
{
	struct outlier_node n[3], *p[3] = { &n[0], &n[1], &n[2] };
	struct outlier_cfg cfg;

	(void)state;
	outlier_cfg_from(&cfg, NULL);
	memset(n, 0, sizeof(n));
	feed(&n[0], 100, 100, 0, 1);
	feed(&n[1], 100, 100, 0, 50);
	feed(&n[2], 100, 100, 0, 1.2);
	outlier_decide(&cfg, p, 3, 200);
	assert_int_equal(n[1].state, VIEW_DEGRADED);
	assert_int_equal(n[2].state, VIEW_ACTIVE);
	/* Too few calls to judge: it stays degraded. */
	win_clear(&n[1].w, 20000);
	outlier_decide(&cfg, p, 3, 20000);
	assert_int_equal(n[1].state, VIEW_DEGRADED);
	/* Fast again with enough calls: active. */
	feed(&n[0], 20100, 100, 0, 1);
	feed(&n[1], 20100, 100, 0, 1);
	feed(&n[2], 20100, 100, 0, 1);
	outlier_decide(&cfg, p, 3, 20200);
	assert_int_equal(n[1].state, VIEW_ACTIVE);
	/* Disabled: everything active. */
	n[1].state = VIEW_EJECTED;
	cfg.disabled = 1;
	outlier_decide(&cfg, p, 3, 20300);
	assert_int_equal(n[1].state, VIEW_ACTIVE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_without_rules),
		cmocka_unit_test(test_states),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_split_by_percent),
		cmocka_unit_test(test_split_by_label),
		cmocka_unit_test(test_rules_problems),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_max_ejected),
		cmocka_unit_test(test_eject_and_return),
		cmocka_unit_test(test_ejection_cap),
		cmocka_unit_test(test_slow_degraded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
