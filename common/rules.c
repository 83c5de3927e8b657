/*
 * rules: access rules and their evaluation (see rules.h).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "platform/errbuf.h"
#include "platform/xalloc.h"
#include "platform/rules.h"

struct rule_set {
	atomic_int refs;
	struct rule **v;
	size_t n;
};

bool
rule_match(const char *pattern, const char *s)
{
	const char *star = NULL, *retry = NULL;

	/* Greedy with one backtrack point: the last '*' seen. */
	while (*s != '\0') {
		if (*pattern == '*') {
			star = ++pattern;
			retry = s;
		} else if (*pattern == *s) {
			pattern++;
			s++;
		} else if (star != NULL) {
			pattern = star;
			s = ++retry;
		} else {
			return false;
		}
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}

/* Letters, digits and . _ - : / @ *: every gRPC name, account id and
 * scope there is, and nothing that needs quoting anywhere. */
static int
check_pattern(const char *field, const char *p, bool required, char *err,
    size_t errlen)
{
	size_t n = strlen(p);

	if (n == 0 && required) {
		errbuf_set(err, errlen, "%s: required (\"*\" for any)", field);
		return -1;
	}
	if (n > RULE_PATTERN_MAX) {
		errbuf_set(err, errlen, "%s: longer than %d bytes", field,
		    RULE_PATTERN_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("._-:/@*", c) != NULL)) {
			errbuf_set(err, errlen, "%s: only letters, digits and "
			    "._-:/@* are allowed", field);
			return -1;
		}
	}
	return 0;
}

int
rule_check(const struct rule *r, char *err, size_t errlen)
{
	if (check_pattern("service", r->service, true, err, errlen) != 0 ||
	    check_pattern("method", r->method, true, err, errlen) != 0 ||
	    check_pattern("account", r->account, false, err, errlen) != 0 ||
	    check_pattern("scope", r->scope, false, err, errlen) != 0)
		return -1;
	if (r->account_type != RULE_ANY_TYPE && r->account_type != RULE_USER &&
	    r->account_type != RULE_SERVICE) {
		errbuf_set(err, errlen, "account_type: unknown value %d",
		    r->account_type);
		return -1;
	}
	if (r->account[0] == '\0' && r->scope[0] == '\0' &&
	    r->account_type == RULE_ANY_TYPE) {
		errbuf_set(err, errlen, "account: set account, scope or "
		    "account_type (account \"*\" for every caller)");
		return -1;
	}
	if (r->effect != RULE_ALLOW && r->effect != RULE_DENY) {
		errbuf_set(err, errlen, "effect: EFFECT_ALLOW or EFFECT_DENY");
		return -1;
	}
	if (strlen(r->description) > RULE_DESCRIPTION_MAX) {
		errbuf_set(err, errlen, "description: longer than %d bytes",
		    RULE_DESCRIPTION_MAX);
		return -1;
	}
	return 0;
}

bool
rule_applies(const struct rule *r, const struct rule_subject *who,
    const char *service, const char *method)
{
	const char *account = who->account != NULL ? who->account : "";
	bool scope_ok;

	if (!rule_match(r->service, service) || !rule_match(r->method, method))
		return false;
	if (r->account[0] != '\0' && !rule_match(r->account, account))
		return false;
	if (r->account_type != RULE_ANY_TYPE &&
	    r->account_type != who->account_type)
		return false;
	if (r->scope[0] == '\0' || strcmp(r->scope, "*") == 0)
		return true;
	scope_ok = false;
	for (size_t i = 0; i < who->nscopes && !scope_ok; i++)
		scope_ok = rule_match(r->scope, who->scopes[i]);
	return scope_ok;
}

struct rule *
rule_copy(const struct rule *r)
{
	struct rule *c = xcalloc(1, sizeof(*c));

	*c = *r;
	c->id = xstrdup(r->id);
	c->service = xstrdup(r->service);
	c->method = xstrdup(r->method);
	c->account = xstrdup(r->account);
	c->scope = xstrdup(r->scope);
	c->description = xstrdup(r->description);
	return c;
}

void
rule_free(struct rule *r)
{
	if (r == NULL)
		return;
	free(r->id);
	free(r->service);
	free(r->method);
	free(r->account);
	free(r->scope);
	free(r->description);
	free(r);
}

int
rule_order(const struct rule *a, const struct rule *b)
{
	if (a->priority != b->priority)
		return a->priority > b->priority ? -1 : 1;
	if (a->effect != b->effect)
		return a->effect == RULE_DENY ? -1 : 1;
	return strcmp(a->id, b->id);
}

static int
order_cmp(const void *a, const void *b)
{
	return rule_order(*(struct rule *const *)a, *(struct rule *const *)b);
}

struct rule_set *
rule_set_new(struct rule **rules, size_t n)
{
	struct rule_set *rs = xcalloc(1, sizeof(*rs));

	atomic_init(&rs->refs, 1);
	rs->v = rules;
	rs->n = n;
	if (n > 1)
		qsort(rs->v, n, sizeof(*rs->v), order_cmp);
	return rs;
}

struct rule_set *
rule_set_ref(struct rule_set *rs)
{
	atomic_fetch_add(&rs->refs, 1);
	return rs;
}

void
rule_set_unref(struct rule_set *rs)
{
	if (rs == NULL || atomic_fetch_sub(&rs->refs, 1) != 1)
		return;
	for (size_t i = 0; i < rs->n; i++)
		rule_free(rs->v[i]);
	free(rs->v);
	free(rs);
}

size_t
rule_set_size(const struct rule_set *rs)
{
	return rs != NULL ? rs->n : 0;
}

const struct rule *
rule_set_at(const struct rule_set *rs, size_t i)
{
	return rs->v[i];
}

const struct rule *
rule_evaluate(const struct rule_set *rs, const struct rule_subject *who,
    const char *service, const char *method, bool *allowed)
{
	for (size_t i = 0; i < rule_set_size(rs); i++) {
		if (rule_applies(rs->v[i], who, service, method)) {
			*allowed = rs->v[i]->effect == RULE_ALLOW;
			return rs->v[i];
		}
	}
	*allowed = false;
	return NULL;
}
