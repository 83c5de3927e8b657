/* Unit tests for the guard's pure parts (common/guard.c, identity.c):
 * what a call without a usable token gets, the caller's account type,
 * credentials parsing and when a token is renewed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "platform/guard.h"
#include "platform/identity.h"
#include "platform/server.h"

static const char JWKS[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
    "\"kid\":\"k1\",\"use\":\"sig\",\"alg\":\"ES256\","
    "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\","
    "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\"}]}";

static int
decide(const struct jwt_keyset *ks, const char *authz, char *msg,
    size_t len, int *unknown_kid)
{
	struct jwt_expect ex = { .issuer = "platform-auth",
	    .audience = "platform", .now = 1700000000, .leeway = 5 };
	struct jwt_claims cl;
	struct rule_set *rs = rule_set_new(NULL, 0);
	int code;

	code = guard_decide(ks, rs, authz, &ex, "platform.config.v1.Config",
	    "Read", &cl, unknown_kid, msg, len);
	if (code == PLAT_OK)
		jwt_claims_free(&cl);
	rule_set_unref(rs);
	return code;
}

static void
test_no_usable_token(void **state)
{
	struct jwt_keyset *ks = jwt_keyset_from_jwks(JWKS, NULL, 0);
	char msg[256];
	int kid;

	(void)state;
	assert_non_null(ks);
	assert_int_equal(decide(ks, NULL, msg, sizeof(msg), &kid),
	    PLAT_UNAUTHENTICATED);
	assert_non_null(strstr(msg, "needs an access token"));
	assert_int_equal(decide(ks, "", msg, sizeof(msg), &kid),
	    PLAT_UNAUTHENTICATED);
	assert_int_equal(decide(ks, "Basic abcdefgh", msg, sizeof(msg), &kid),
	    PLAT_UNAUTHENTICATED);
	assert_null(strstr(msg, "abcdefgh"));
	assert_int_equal(decide(ks, "Bearer secret-garbage", msg,
	    sizeof(msg), &kid), PLAT_UNAUTHENTICATED);
	assert_null(strstr(msg, "secret-garbage"));
	assert_int_equal(kid, 0);
	/* {"alg":"ES256","kid":"k9"} . {} . x: a kid the set lacks. */
	assert_int_equal(decide(ks, "Bearer eyJhbGciOiJFUzI1NiIsImtpZCI6Imsy"
	    "In0.e30.eA", msg, sizeof(msg), &kid), PLAT_UNAUTHENTICATED);
	assert_int_equal(kid, 1);
	jwt_keyset_unref(ks);
}

static void
test_keys_not_loaded_is_unavailable(void **state)
{
	char msg[256];
	int kid;

	(void)state;
	/* Without a token the answer does not depend on the keys... */
	assert_int_equal(decide(NULL, NULL, msg, sizeof(msg), &kid),
	    PLAT_UNAUTHENTICATED);
	/* ...with one it cannot be judged yet. */
	assert_int_equal(decide(NULL, "Bearer a.b.c", msg, sizeof(msg), &kid),
	    PLAT_UNAVAILABLE);
	assert_non_null(strstr(msg, "not read from auth-srv yet"));
}

static void
test_account_type(void **state)
{
	(void)state;
	assert_int_equal(guard_account_type("user"), RULE_USER);
	assert_int_equal(guard_account_type("service"), RULE_SERVICE);
	assert_int_equal(guard_account_type("robot"), RULE_ANY_TYPE);
	assert_int_equal(guard_account_type(NULL), RULE_ANY_TYPE);
}

static void
test_credentials_parse(void **state)
{
	struct plat_credentials c;
	char err[256];

	(void)state;
	assert_int_equal(plat_credentials_parse("{\"client_id\":\"cfg\","
	    "\"client_secret\":\"s3cret-value\",\"scope\":\"x\"}", &c, err,
	    sizeof(err)), 0);
	assert_string_equal(c.client_id, "cfg");
	assert_string_equal(c.client_secret, "s3cret-value");
	plat_credentials_free(&c);
	assert_null(c.client_secret);
	assert_int_equal(plat_credentials_parse("{\"client_id\":\"cfg\"}", &c,
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "client_secret"));
	assert_int_equal(plat_credentials_parse("{\"client_secret\":"
	    "\"s3cret-value\"", &c, err, sizeof(err)), -1);
	assert_null(strstr(err, "s3cret-value"));
	assert_int_equal(plat_credentials_parse("[]", &c, err, sizeof(err)),
	    -1);
	assert_int_equal(plat_credentials_parse("{\"client_id\":\"\","
	    "\"client_secret\":\"x\"}", &c, err, sizeof(err)), -1);
}

static void
test_renew_at(void **state)
{
	(void)state;
	assert_int_equal(plat_identity_renew_at(1000, 900), 1000 + 600000);
	assert_int_equal(plat_identity_renew_at(1000, 3), 1000 + 2000);
	/* A token without a lifetime is asked again a second later, not in
	 * a loop. */
	assert_int_equal(plat_identity_renew_at(1000, 0), 2000);
	assert_int_equal(plat_identity_renew_at(1000, -5), 2000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_usable_token),
		cmocka_unit_test(test_keys_not_loaded_is_unavailable),
		cmocka_unit_test(test_account_type),
		cmocka_unit_test(test_credentials_parse),
		cmocka_unit_test(test_renew_at),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
