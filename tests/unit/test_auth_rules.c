/* Unit tests for auth-srv's rule evaluation (common/rules.c):
 * patterns, checks, and precedence: priority first, deny wins a tie,
 * default deny. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "platform/xalloc.h"
#include "platform/rules.h"

/* A rule in a set under construction. */
struct spec {
	const char *id, *service, *method, *account, *scope;
	int type, effect, priority;
};

static struct rule_set *
set_of(const struct spec *s, size_t n)
{
	struct rule **v = n > 0 ? xcalloc(n, sizeof(*v)) : NULL;

	for (size_t i = 0; i < n; i++) {
		struct rule r = {
			.id = (char *)s[i].id,
			.service = (char *)(s[i].service ? s[i].service : "*"),
			.method = (char *)(s[i].method ? s[i].method : "*"),
			.account = (char *)(s[i].account ? s[i].account : ""),
			.scope = (char *)(s[i].scope ? s[i].scope : ""),
			.account_type = s[i].type,
			.effect = s[i].effect,
			.priority = s[i].priority,
			.description = "",
		};

		v[i] = rule_copy(&r);
	}
	return rule_set_new(v, n);
}

/* Evaluates and checks the outcome and the deciding rule's id (NULL for
 * the default deny). */
static void
expect(const struct rule_set *rs, const char *account, const char *scopes,
    int type, const char *service, const char *method, bool allowed,
    const char *rule_id)
{
	char buf[256], *words[16], *p;
	size_t n = 0;
	struct rule_subject who = { .account = account, .account_type = type };
	const struct rule *r;
	bool got;

	snprintf(buf, sizeof(buf), "%s", scopes != NULL ? scopes : "");
	for (p = strtok(buf, " "); p != NULL && n < 16; p = strtok(NULL, " "))
		words[n++] = p;
	who.scopes = (const char *const *)words;
	who.nscopes = n;
	r = rule_evaluate(rs, &who, service, method, &got);
	assert_int_equal(got, allowed);
	if (rule_id == NULL)
		assert_null(r);
	else {
		assert_non_null(r);
		assert_string_equal(r->id, rule_id);
	}
}

#define SVC "platform.kv.v1.Kv"

static void
test_match(void **state)
{
	(void)state;
	assert_true(rule_match("*", ""));
	assert_true(rule_match("*", "anything"));
	assert_true(rule_match("platform.*", "platform.kv.v1.Kv"));
	assert_true(rule_match("*.v1.*", "platform.kv.v1.Kv"));
	assert_true(rule_match("Get*", "Get"));
	assert_true(rule_match("G*t*s", "GetThings"));
	assert_true(rule_match("a*b*c", "aXbYbZc"));
	assert_false(rule_match("Get*", "Put"));
	assert_false(rule_match("Get", "GetX"));
	assert_false(rule_match("a*b", "aXbY"));
	assert_false(rule_match("", "x"));
	assert_true(rule_match("", ""));
}

static void
test_check(void **state)
{
	struct rule ok = { .service = "*", .method = "*", .account = "*",
	    .scope = "", .effect = RULE_ALLOW, .description = "" };
	struct rule r;
	char err[256];

	(void)state;
	assert_int_equal(rule_check(&ok, err, sizeof(err)), 0);
	r = ok;
	r.service = "";
	assert_int_equal(rule_check(&r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "service"));
	r = ok;
	r.method = "a b";
	assert_int_equal(rule_check(&r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "method"));
	r = ok;
	r.account = "";
	assert_int_equal(rule_check(&r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "account"));
	r.account_type = RULE_SERVICE;
	assert_int_equal(rule_check(&r, err, sizeof(err)), 0);
	r.account_type = 7;
	assert_int_equal(rule_check(&r, err, sizeof(err)), -1);
	r = ok;
	r.effect = 0;
	assert_int_equal(rule_check(&r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "effect"));
	r = ok;
	r.scope = "x';--";
	assert_int_equal(rule_check(&r, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "scope"));
}

/* 1. No rules: deny by default. */
static void
test_default_deny(void **state)
{
	struct rule_set *rs = set_of(NULL, 0);

	(void)state;
	expect(rs, "a", "x", RULE_USER, SVC, "Get", false, NULL);
	rule_set_unref(rs);
}

/* 2. A rule for another service or method does not apply. */
static void
test_no_applicable_rule(void **state)
{
	const struct spec s[] = {
		{ "r1", "platform.db.*", "*", "*", NULL, 0, RULE_ALLOW, 0 },
		{ "r2", SVC, "Put", "*", NULL, 0, RULE_ALLOW, 0 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "a", "", 0, SVC, "Get", false, NULL);
	expect(rs, "a", "", 0, SVC, "Put", true, "r2");
	expect(rs, "a", "", 0, "platform.db.v1.Db", "Query", true, "r1");
	rule_set_unref(rs);
}

/* 3. Deny wins at equal priority, whatever the ids or order. */
static void
test_deny_wins_tie(void **state)
{
	const struct spec s[] = {
		{ "a-allow", SVC, "*", "*", NULL, 0, RULE_ALLOW, 5 },
		{ "z-deny", SVC, "Get", NULL, "x", 0, RULE_DENY, 5 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "u", "x", 0, SVC, "Get", false, "z-deny");
	expect(rs, "u", "y", 0, SVC, "Get", true, "a-allow");
	expect(rs, "u", "x", 0, SVC, "Put", true, "a-allow");
	rule_set_unref(rs);
}

/* 4. A higher-priority allow beats a lower deny. */
static void
test_higher_allow_beats_lower_deny(void **state)
{
	const struct spec s[] = {
		{ "deny-all", "*", "*", "*", NULL, 0, RULE_DENY, 0 },
		{ "allow-kv", SVC, "*", "*", NULL, 0, RULE_ALLOW, 10 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "u", "", 0, SVC, "Get", true, "allow-kv");
	expect(rs, "u", "", 0, "other", "Get", false, "deny-all");
	rule_set_unref(rs);
}

/* 5. A higher-priority deny beats a lower allow. */
static void
test_higher_deny_beats_lower_allow(void **state)
{
	const struct spec s[] = {
		{ "allow", SVC, "*", NULL, "kv", 0, RULE_ALLOW, 1 },
		{ "deny-mallory", SVC, "*", "mallory", NULL, 0, RULE_DENY, 2 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "mallory", "kv", 0, SVC, "Get", false, "deny-mallory");
	expect(rs, "alice", "kv", 0, SVC, "Get", true, "allow");
	rule_set_unref(rs);
}

/* 6. Negative priorities order below zero. */
static void
test_negative_priority(void **state)
{
	const struct spec s[] = {
		{ "fallback", "*", "*", "*", NULL, 0, RULE_ALLOW, -100 },
		{ "deny-put", SVC, "Put", "*", NULL, 0, RULE_DENY, 0 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "u", "", 0, SVC, "Put", false, "deny-put");
	expect(rs, "u", "", 0, SVC, "Get", true, "fallback");
	assert_string_equal(rule_set_at(rs, 0)->id, "deny-put");
	rule_set_unref(rs);
}

/* 7. Every matcher a rule sets must match. */
static void
test_all_matchers(void **state)
{
	const struct spec s[] = {
		{ "svc-admin", "*", "*", "ops-*", "admin", RULE_SERVICE,
		  RULE_ALLOW, 0 },
	};
	struct rule_set *rs = set_of(s, 1);

	(void)state;
	expect(rs, "ops-1", "admin", RULE_SERVICE, SVC, "Get", true,
	    "svc-admin");
	expect(rs, "ops-1", "admin", RULE_USER, SVC, "Get", false, NULL);
	expect(rs, "ops-1", "read", RULE_SERVICE, SVC, "Get", false, NULL);
	expect(rs, "dev-1", "admin", RULE_SERVICE, SVC, "Get", false, NULL);
	rule_set_unref(rs);
}

/* 8. Scope patterns: one of the caller's scopes matching is enough;
 * "*" matches a caller with no scopes too. */
static void
test_scope_patterns(void **state)
{
	const struct spec s[] = {
		{ "kv-any", SVC, "*", NULL, "kv:*", 0, RULE_ALLOW, 0 },
		{ "ping", "*", "Ping", NULL, "*", 0, RULE_ALLOW, 0 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "u", "other kv:read", 0, SVC, "Get", true, "kv-any");
	expect(rs, "u", "kvread", 0, SVC, "Get", false, NULL);
	expect(rs, NULL, "", 0, "x", "Ping", true, "ping");
	rule_set_unref(rs);
}

/* 9. Account "*" is every caller, one known only by scopes included. */
static void
test_account_star(void **state)
{
	const struct spec s[] = {
		{ "everyone", SVC, "Get", "*", NULL, 0, RULE_ALLOW, 0 },
	};
	struct rule_set *rs = set_of(s, 1);

	(void)state;
	expect(rs, "anyone", "", RULE_USER, SVC, "Get", true, "everyone");
	expect(rs, NULL, "", 0, SVC, "Get", true, "everyone");
	rule_set_unref(rs);
}

/* 10. The highest priority with an applicable rule decides, even when
 * lower rules would say otherwise; a higher one that does not apply does
 * not. */
static void
test_first_applicable_priority(void **state)
{
	const struct spec s[] = {
		{ "p30-deny-other", SVC, "*", "bob", NULL, 0, RULE_DENY, 30 },
		{ "p20-allow", SVC, "Get", "alice", NULL, 0, RULE_ALLOW, 20 },
		{ "p10-deny", SVC, "*", "*", NULL, 0, RULE_DENY, 10 },
		{ "p0-allow", "*", "*", "*", NULL, 0, RULE_ALLOW, 0 },
	};
	struct rule_set *rs = set_of(s, 4);

	(void)state;
	expect(rs, "alice", "", 0, SVC, "Get", true, "p20-allow");
	expect(rs, "alice", "", 0, SVC, "Put", false, "p10-deny");
	expect(rs, "bob", "", 0, SVC, "Get", false, "p30-deny-other");
	expect(rs, "carol", "", 0, "other", "Get", true, "p0-allow");
	rule_set_unref(rs);
}

/* 11. Two allows at one priority: the one first by id decides (stable). */
static void
test_equal_allows_stable(void **state)
{
	const struct spec s[] = {
		{ "b", SVC, "*", "*", NULL, 0, RULE_ALLOW, 0 },
		{ "a", SVC, "Get", "*", NULL, 0, RULE_ALLOW, 0 },
	};
	struct rule_set *rs = set_of(s, 2);

	(void)state;
	expect(rs, "u", "", 0, SVC, "Get", true, "a");
	expect(rs, "u", "", 0, SVC, "Put", true, "b");
	rule_set_unref(rs);
}

/* 12. Deny at equal priority wins over several allows, from any place in
 * the input. */
static void
test_deny_among_many(void **state)
{
	const struct spec s[] = {
		{ "a1", SVC, "*", "*", NULL, 0, RULE_ALLOW, 3 },
		{ "a2", SVC, "Get", NULL, "x", 0, RULE_ALLOW, 3 },
		{ "d", SVC, "Get", "eve", NULL, 0, RULE_DENY, 3 },
		{ "a3", "*", "*", "eve", NULL, 0, RULE_ALLOW, 3 },
	};
	struct rule_set *rs = set_of(s, 4);

	(void)state;
	expect(rs, "eve", "x", 0, SVC, "Get", false, "d");
	expect(rs, "eve", "x", 0, SVC, "Put", true, "a1");
	rule_set_unref(rs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_default_deny),
		cmocka_unit_test(test_no_applicable_rule),
		cmocka_unit_test(test_deny_wins_tie),
		cmocka_unit_test(test_higher_allow_beats_lower_deny),
		cmocka_unit_test(test_higher_deny_beats_lower_allow),
		cmocka_unit_test(test_negative_priority),
		cmocka_unit_test(test_all_matchers),
		cmocka_unit_test(test_scope_patterns),
		cmocka_unit_test(test_account_star),
		cmocka_unit_test(test_first_applicable_priority),
		cmocka_unit_test(test_equal_allows_stable),
		cmocka_unit_test(test_deny_among_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
