/*
 * Unit tests for platformctl's output helpers (cli/ctl_out.c) that
 * decide what text reaches a server: ctl_json_text, which writes the
 * filter values of `platformctl db` with every real in its shortest
 * exact form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "ctl_out.h"

/* in as jansson reads it, written back by ctl_json_text. */
static void
check(const char *in, const char *want)
{
	json_t *j = json_loads(in, JSON_DECODE_ANY, NULL);
	char *got;

	assert_non_null(j);
	got = ctl_json_text(j);
	assert_string_equal(got, want);
	free(got);
	json_decref(j);
}

static void
test_reals_shortest(void **state)
{
	(void)state;
	check("0.1", "0.1");
	check("0.10", "0.1");
	check("2.5e-7", "2.5e-07");
	check("0.30000000000000004", "0.30000000000000004");
	check("1.0", "1.0");
	check("-0.0", "-0.0");
	check("1e300", "1e+300");
	check("123456.789", "123456.789");
	check("5e-324", "5e-324");
}

static void
test_other_values(void **state)
{
	(void)state;
	check("3", "3");
	check("-9223372036854775808", "-9223372036854775808");
	check("true", "true");
	check("null", "null");
	/* Strings as jansson writes them: UTF-8 as it is. */
	check("\"a\\\"b\\u00e9\\n\"", "\"a\\\"b\xc3\xa9\\n\"");
	check("[]", "[]");
	check("{}", "{}");
	check("[0.1, {\"k\\\"\": [1, 0.2, \"x\"]}, false]",
	    "[0.1,{\"k\\\"\":[1,0.2,\"x\"]},false]");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reals_shortest),
		cmocka_unit_test(test_other_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
