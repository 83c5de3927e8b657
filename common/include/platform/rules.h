/*
 * rules: the access rules and their evaluation; pure logic, no I/O, so
 * auth-srv's Verify and every server's guard decide the same way.
 *
 * A rule applies to a call of service/method (gRPC names, "*" matching
 * any run of characters, "" included) by a caller that matches every
 * matcher the rule sets:
 *
 *   account        the caller's account id matches the pattern
 *   scope          one of the caller's scopes matches it ("*": any
 *                  caller, one with no scopes too)
 *   account_type   the caller is a user, or a service
 *
 * A rule sets at least one matcher (account "*" is everyone). Rules are
 * evaluated in one order: higher priority first, at equal priority deny
 * before allow, then by id; the first rule that applies decides. So the
 * highest priority with an applicable rule decides, deny wins a tie, and
 * when no rule applies the answer is deny.
 */
#ifndef PLATFORM_RULES_H
#define PLATFORM_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULE_PATTERN_MAX 256
#define RULE_DESCRIPTION_MAX 1024

/* Numbered as platform.auth.v1.Effect and AccountType. */
enum rule_effect {
	RULE_ALLOW = 1,
	RULE_DENY = 2,
};

enum rule_account_type {
	RULE_ANY_TYPE = 0,
	RULE_USER = 1,
	RULE_SERVICE = 2,
};

struct rule {
	char *id;
	char *service;
	char *method;
	char *account;          /* "" : not a matcher */
	char *scope;            /* "" : not a matcher */
	int account_type;       /* RULE_ANY_TYPE: not a matcher */
	int effect;
	int32_t priority;
	char *description;
	int64_t created_ms;
};

/* Who is calling. */
struct rule_subject {
	const char *account;    /* NULL or "" when only scopes are known */
	const char *const *scopes;
	size_t nscopes;
	int account_type;       /* RULE_ANY_TYPE when unknown */
};

/* Whether s matches pattern, where "*" matches any run of characters. */
bool rule_match(const char *pattern, const char *s);

/* 0 when r is a rule that can be stored (patterns of the allowed
 * characters and length, a known effect and account type, a matcher
 * set), else -1 with "field: reason" in err. id and created_ms are not
 * looked at. */
int rule_check(const struct rule *r, char *err, size_t errlen);

/* Whether r applies to who calling service/method. */
bool rule_applies(const struct rule *r, const struct rule_subject *who,
    const char *service, const char *method);

/* A deep copy; rule_free frees one made by rule_copy or by a store. */
struct rule *rule_copy(const struct rule *r);
void rule_free(struct rule *r);

/* A set of rules in evaluation order; immutable once made, reference
 * counted so readers keep the one they started with. */
struct rule_set;

/* Takes ownership of rules[0..n) (each from rule_copy or a store) and of
 * the array (malloc'd; NULL when n is 0). */
struct rule_set *rule_set_new(struct rule **rules, size_t n);
struct rule_set *rule_set_ref(struct rule_set *rs);
void rule_set_unref(struct rule_set *rs);     /* NULL is fine */
size_t rule_set_size(const struct rule_set *rs);
const struct rule *rule_set_at(const struct rule_set *rs, size_t i);

/* The deciding rule, or NULL for the default deny; *allowed says the
 * outcome. */
const struct rule *rule_evaluate(const struct rule_set *rs,
    const struct rule_subject *who, const char *service, const char *method,
    bool *allowed);

/* Evaluation order as a comparison (for sorting and for paging). */
int rule_order(const struct rule *a, const struct rule *b);

#endif
