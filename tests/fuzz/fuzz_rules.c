/*
 * fuzz_rules: the access rules every guard and auth-srv's Verify share
 * (common/rules.c): rule_check on what CreateRule stores, pattern
 * matching, and evaluation of a set.
 *
 * Input: up to 8 rules (a count byte, then per rule: service NUL method
 * NUL account NUL scope NUL description NUL, an account type byte, an
 * effect byte and a 4-byte priority), then the caller (account NUL
 * space-separated scopes NUL, a type byte) and the call (service NUL
 * method). Invariants: a checked pattern matches as fnmatch(3) does (its
 * characters hold no other metacharacter); the deciding rule applies and
 * comes first in evaluation order among those that apply.
 */
#include <fnmatch.h>
#include <string.h>

#include "fuzz.h"
#include "platform/rules.h"

#define RULES_MAX 8
#define SCOPES_MAX 8

static void
check_match(const char *pattern, const char *s)
{
	FUZZ_ASSERT(rule_match(pattern, s) == (fnmatch(pattern, s, 0) == 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule **v, r;
	struct rule_set *rs;
	struct rule_subject who = { 0 };
	const struct rule *d;
	const char *scopes[SCOPES_MAX], *service, *method;
	char err[512], ids[RULES_MAX][4], *words, *w, *save;
	size_t n, nrules = 0;
	struct fuzz_in in;
	bool allowed;

	fuzz_in_init(&in, data, size);
	n = fuzz_byte(&in) % (RULES_MAX + 1);
	v = calloc(RULES_MAX, sizeof(*v));
	FUZZ_ASSERT(v != NULL);
	for (size_t i = 0; i < n; i++) {
		memset(&r, 0, sizeof(r));
		snprintf(ids[i], sizeof(ids[i]), "r%zu", i);
		r.id = ids[i];
		r.service = fuzz_str(&in);
		r.method = fuzz_str(&in);
		r.account = fuzz_str(&in);
		r.scope = fuzz_str(&in);
		r.description = fuzz_str(&in);
		r.account_type = (int)fuzz_byte(&in) % 4;
		r.effect = (int)fuzz_byte(&in) % 4;
		r.priority = (int32_t)fuzz_u32(&in);
		if (rule_check(&r, err, sizeof(err)) != 0)
			continue;
		v[nrules++] = rule_copy(&r);
	}

	who.account = fuzz_str(&in);
	words = fuzz_str(&in);
	for (w = strtok_r(words, " ", &save); w != NULL && who.nscopes <
	    SCOPES_MAX; w = strtok_r(NULL, " ", &save))
		scopes[who.nscopes++] = w;
	who.scopes = scopes;
	who.account_type = (int)fuzz_byte(&in) % 3;
	service = fuzz_str(&in);
	method = fuzz_str(&in);

	for (size_t i = 0; i < nrules; i++) {
		check_match(v[i]->service, service);
		check_match(v[i]->method, method);
		check_match(v[i]->account, who.account);
	}

	rs = rule_set_new(nrules > 0 ? v : NULL, nrules);
	if (nrules == 0)
		free(v);
	for (size_t i = 1; i < rule_set_size(rs); i++)
		FUZZ_ASSERT(rule_order(rule_set_at(rs, i - 1),
		    rule_set_at(rs, i)) < 0);
	d = rule_evaluate(rs, &who, service, method, &allowed);
	FUZZ_ASSERT(allowed == (d != NULL && d->effect == RULE_ALLOW));
	for (size_t i = 0; i < rule_set_size(rs); i++) {
		const struct rule *x = rule_set_at(rs, i);

		if (rule_applies(x, &who, service, method))
			FUZZ_ASSERT(d != NULL && rule_order(d, x) <= 0);
	}
	rule_set_unref(rs);
	fuzz_in_free(&in);
	return 0;
}
