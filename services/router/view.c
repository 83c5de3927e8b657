/*
 * view: rules and outlier states into weights. See view.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "view.h"

#define NAME_MAX_LEN 128
#define LIST_MAX 256

static int
label_has(Platform__Router__V1__Label *const *labels, size_t n,
    const char *key, const char *value)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(labels[i]->key, key) == 0 &&
		    strcmp(labels[i]->value, value) == 0)
			return 1;
	return 0;
}

static int
split_matches(const Platform__Router__V1__Split *sp,
    Platform__Router__V1__Label *const *labels, size_t nlabels)
{
	return sp->label_key[0] == '\0' ||
	    label_has(labels, nlabels, sp->label_key, sp->label_value);
}

/* The base weight of a node under the rules' overrides. */
static uint32_t
view_base(const struct view_node *nd, const Platform__Router__V1__Rules *r)
{
	uint32_t w = VIEW_WEIGHT_BASE;

	if (r == NULL)
		return w;
	for (size_t i = 0; i < r->n_weights; i++)
		if (r->weights[i]->node_id[0] == '\0' &&
		    r->weights[i]->version[0] != '\0' &&
		    strcmp(r->weights[i]->version, nd->version) == 0)
			w = r->weights[i]->weight;
	for (size_t i = 0; i < r->n_weights; i++)
		if (r->weights[i]->node_id[0] != '\0' &&
		    strcmp(r->weights[i]->node_id, nd->id) == 0)
			w = r->weights[i]->weight;
	return w;
}

/* The matching split a node's version falls in (its index), or -1 for
 * the rest. */
static int
view_group(const struct view_node *nd, const Platform__Router__V1__Rules *r,
    Platform__Router__V1__Label *const *labels, size_t nlabels)
{
	if (r == NULL)
		return -1;
	for (size_t i = 0; i < r->n_splits; i++)
		if (split_matches(r->splits[i], labels, nlabels) &&
		    strcmp(r->splits[i]->version, nd->version) == 0)
			return (int)i;
	return -1;
}

void
view_weights(struct view_node *nodes, size_t n,
    const Platform__Router__V1__Rules *rules,
    Platform__Router__V1__Label *const *labels, size_t nlabels)
{
	/* Group g is split g; the last slot is the rest. */
	double gw[LIST_MAX + 1], share[LIST_MAX + 1], total = 0, used = 0;
	size_t ns = rules != NULL ? rules->n_splits : 0, rest;
	int g;

	if (ns > LIST_MAX)
		ns = LIST_MAX;          /* SetRules refuses more */
	rest = ns;
	for (size_t i = 0; i <= ns; i++)
		gw[i] = share[i] = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t w = view_base(&nodes[i], rules);

		if (nodes[i].state == VIEW_EJECTED)
			w = 0;
		else if (nodes[i].state == VIEW_DEGRADED && w > 0)
			w = w / 10 > 0 ? w / 10 : 1;
		nodes[i].weight = w;
		g = view_group(&nodes[i], rules, labels, nlabels);
		gw[g < 0 ? rest : (size_t)g] += w;
	}
	/* Each split's share, once per version (the first split of a
	 * version that matches wins, as view_group does). */
	for (size_t i = 0; i < ns; i++) {
		const Platform__Router__V1__Split *sp = rules->splits[i];
		int dup = 0;

		if (!split_matches(sp, labels, nlabels))
			continue;
		for (size_t j = 0; j < i && !dup; j++)
			dup = split_matches(rules->splits[j], labels,
			    nlabels) && strcmp(rules->splits[j]->version,
			    sp->version) == 0;
		if (dup || gw[i] <= 0)
			continue;
		share[i] = sp->percent;
		used += sp->percent;
	}
	if (used > 100) {
		for (size_t i = 0; i < ns; i++)
			share[i] *= 100 / used;
		used = 100;
	}
	share[rest] = gw[rest] > 0 ? 100 - used : 0;
	for (size_t i = 0; i <= ns; i++)
		total += share[i];
	if (total <= 0) {
		/* No split applies, or only empty groups: weights as they
		 * are, every node in proportion. */
		for (size_t i = 0; i <= ns; i++) {
			share[i] = gw[i];
			total += gw[i];
		}
		if (total <= 0)
			return;                 /* every node at 0 */
	}
	for (size_t i = 0; i < n; i++) {
		double w;

		if (nodes[i].weight == 0)
			continue;
		g = view_group(&nodes[i], rules, labels, nlabels);
		if (g < 0)
			g = (int)rest;
		if (share[g] <= 0) {
			nodes[i].weight = 0;    /* a split took every call */
			continue;
		}
		w = (double)nodes[i].weight / gw[g] * share[g] / total *
		    VIEW_WEIGHT_TOTAL;
		nodes[i].weight = w >= 1 ? (uint32_t)lround(w) : 1;
	}
}

const char *
view_name_problem(const char *name)
{
	size_t len = name != NULL ? strlen(name) : 0;

	if (len == 0)
		return "must not be empty";
	if (len > NAME_MAX_LEN)
		return "longer than 128 bytes";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.'))
			return "only letters, digits, '-', '_' and '.'";
	}
	return NULL;
}

/* Printable ASCII with no space, or empty; for ids, versions, labels and
 * methods. */
static const char *
text_problem(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len > max)
		return "too long";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 127)
			return "only printable ASCII without spaces";
	return NULL;
}

#define PROBLEM(...) (snprintf(buf, len, __VA_ARGS__), buf)

static const char *
outlier_problem(const Platform__Router__V1__OutlierDetection *o, char *buf,
    size_t len)
{
	if (o == NULL)
		return NULL;
	if (o->error_percent > 100)
		return "outlier.error_percent: must be 1..100 (0: 50)";
	if (o->max_ejection_percent > 100)
		return "outlier.max_ejection_percent: must be 0..100";
	if (!(o->latency_factor >= 0 && o->latency_factor <= 1000) ||
	    (o->latency_factor > 0 && o->latency_factor < 1.1))
		return "outlier.latency_factor: must be 1.1..1000, or 0 "
		    "for the default";
	if (o->min_requests > 1000000)
		return "outlier.min_requests: at most 1000000";
	if (o->base_ejection_ms != 0 && (o->base_ejection_ms < 100 ||
	    o->base_ejection_ms > 3600000))
		return "outlier.base_ejection_ms: must be 100..3600000";
	if (o->window_ms != 0 && (o->window_ms < 1000 ||
	    o->window_ms > 600000))
		return "outlier.window_ms: must be 1000..600000";
	(void)buf;
	(void)len;
	return NULL;
}

const char *
view_rules_problem(const Platform__Router__V1__Rules *r, char *buf,
    size_t len)
{
	const char *why;

	if (r == NULL)
		return "rules: required";
	if ((why = view_name_problem(r->service)) != NULL)
		return PROBLEM("rules.service: %s", why);
	if (r->n_weights > LIST_MAX || r->n_splits > LIST_MAX ||
	    r->n_limits > LIST_MAX)
		return PROBLEM("rules: at most %d weights, splits and limits "
		    "each", LIST_MAX);
	for (size_t i = 0; i < r->n_weights; i++) {
		const Platform__Router__V1__WeightOverride *w = r->weights[i];

		if ((w->node_id[0] == '\0') == (w->version[0] == '\0'))
			return PROBLEM("rules.weights[%zu]: give node_id or "
			    "version, not both", i);
		if ((why = text_problem(w->node_id, NAME_MAX_LEN)) != NULL)
			return PROBLEM("rules.weights[%zu].node_id: %s", i, why);
		if ((why = text_problem(w->version, NAME_MAX_LEN)) != NULL)
			return PROBLEM("rules.weights[%zu].version: %s", i, why);
		if (w->weight > VIEW_WEIGHT_MAX)
			return PROBLEM("rules.weights[%zu].weight: must be "
			    "0..%d", i, VIEW_WEIGHT_MAX);
	}
	for (size_t i = 0; i < r->n_splits; i++) {
		const Platform__Router__V1__Split *s = r->splits[i];
		unsigned sum = 0;

		if (s->version[0] == '\0')
			return PROBLEM("rules.splits[%zu].version: must not "
			    "be empty", i);
		if ((why = text_problem(s->version, NAME_MAX_LEN)) != NULL)
			return PROBLEM("rules.splits[%zu].version: %s", i, why);
		if (s->percent > 100)
			return PROBLEM("rules.splits[%zu].percent: must be "
			    "0..100", i);
		if ((why = text_problem(s->label_key, NAME_MAX_LEN)) != NULL ||
		    (why = text_problem(s->label_value, NAME_MAX_LEN)) != NULL)
			return PROBLEM("rules.splits[%zu].label: %s", i, why);
		if (s->label_key[0] == '\0' && s->label_value[0] != '\0')
			return PROBLEM("rules.splits[%zu].label_value: needs "
			    "a label_key", i);
		/* Splits for the same callers may not give away more than
		 * all the calls. */
		for (size_t j = 0; j <= i; j++)
			if (strcmp(r->splits[j]->label_key, s->label_key) == 0 &&
			    strcmp(r->splits[j]->label_value,
			    s->label_value) == 0)
				sum += r->splits[j]->percent;
		if (sum > 100)
			return PROBLEM("rules.splits[%zu].percent: the splits "
			    "for the same callers add up to %u%%, over 100", i,
			    sum);
	}
	for (size_t i = 0; i < r->n_limits; i++) {
		const Platform__Router__V1__RateLimit *l = r->limits[i];

		if (l->method[0] != '\0' && (l->method[0] != '/' ||
		    strchr(l->method + 1, '/') == NULL))
			return PROBLEM("rules.limits[%zu].method: a full path "
			    "(\"/pkg.Service/Method\") or empty", i);
		if ((why = text_problem(l->method, 256)) != NULL)
			return PROBLEM("rules.limits[%zu].method: %s", i, why);
		if (!(l->rate > 0 && l->rate <= 1e9))
			return PROBLEM("rules.limits[%zu].rate: must be "
			    "above 0 (calls a second), at most 1e9", i);
		if (l->burst > 1000000000u)
			return PROBLEM("rules.limits[%zu].burst: at most 1e9",
			    i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(r->limits[j]->method, l->method) == 0)
				return PROBLEM("rules.limits[%zu].method: "
				    "\"%s\" has a limit already", i, l->method);
	}
	return outlier_problem(r->outlier, buf, len);
}
