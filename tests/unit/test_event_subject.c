/* Unit tests for event-srv's pure logic: topic and subject syntax, the
 * wildcard matching table, subject regexes and base64. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <regex.h>
#include <cmocka.h>

#include "subject.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void
test_topic_syntax(void **state)
{
	static const char *const good[] = { "a", "orders.created", "A-b_9.x",
	    "a.b.c.d.e" };
	static const char *const bad[] = { "", ".", "a.", ".a", "a..b",
	    "a.*", "a.>", "*", ">", "a b", "a/b", "é", "a;drop" };
	char err[256], big[EV_TOPIC_MAX + 2];

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++)
		assert_int_equal(ev_check_topic("topic", good[i], err,
		    sizeof(err)), 0);
	for (size_t i = 0; i < NELEM(bad); i++) {
		err[0] = '\0';
		assert_int_equal(ev_check_topic("topic", bad[i], err,
		    sizeof(err)), -1);
		assert_non_null(strstr(err, "topic"));
	}
	memset(big, 'a', sizeof(big) - 1);
	big[EV_TOPIC_MAX] = '\0';
	assert_int_equal(ev_check_topic("t", big, err, sizeof(err)), 0);
	big[EV_TOPIC_MAX] = 'a';
	big[EV_TOPIC_MAX + 1] = '\0';
	assert_int_equal(ev_check_topic("t", big, err, sizeof(err)), -1);
}

static void
test_subject_syntax(void **state)
{
	static const char *const good[] = { "a", "a.*", "a.>", "*", ">",
	    "*.b.*", "a.*.>" };
	static const char *const bad[] = { "", "a.>.b", ">.a", "a*", "a.b*",
	    "a.>>", "a..*", "**" };
	char err[256];

	(void)state;
	for (size_t i = 0; i < NELEM(good); i++)
		assert_int_equal(ev_check_subject("s", good[i], err,
		    sizeof(err)), 0);
	for (size_t i = 0; i < NELEM(bad); i++)
		assert_int_equal(ev_check_subject("s", bad[i], err,
		    sizeof(err)), -1);
	assert_true(ev_subject_literal("a.b"));
	assert_false(ev_subject_literal("a.*"));
	assert_false(ev_subject_literal(">"));
}

static const struct {
	const char *subject, *topic;
	bool match;
} table[] = {
	{ "a", "a", true },
	{ "a", "b", false },
	{ "a", "a.b", false },
	{ "a.*", "a.b", true },
	{ "a.*", "a", false },
	{ "a.*", "a.b.c", false },
	{ "a.>", "a.b", true },
	{ "a.>", "a.b.c", true },
	{ "a.>", "a", false },
	{ "*", "a", true },
	{ "*", "a.b", false },
	{ ">", "a", true },
	{ ">", "a.b.c", true },
	{ "*.b", "a.b", true },
	{ "*.b", "a.c", false },
	{ "a.*.c", "a.b.c", true },
	{ "a.*.c", "a.b.d", false },
	{ "a.*.>", "a.b.c", true },
	{ "a.*.>", "a.b", false },
	{ "ab", "a", false },
	{ "a", "ab", false },
	{ "a.b", "a.bc", false },
	{ "orders.*", "orders-x.y", false },
};

static void
test_match_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(table); i++) {
		if (ev_subject_match(table[i].subject, table[i].topic) !=
		    table[i].match)
			fail_msg("%s vs %s", table[i].subject, table[i].topic);
	}
}

/* The regex PostgreSQL runs gives the same answers as the matcher. */
static void
test_regex_agrees(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(table); i++) {
		char *re = ev_subject_regex(table[i].subject);
		regex_t rx;

		assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB),
		    0);
		if ((regexec(&rx, table[i].topic, 0, NULL, 0) == 0) !=
		    table[i].match)
			fail_msg("%s (%s) vs %s", table[i].subject, re,
			    table[i].topic);
		regfree(&rx);
		free(re);
	}
	char *re = ev_subject_regex("a.*.>");
	assert_string_equal(re, "^a\\.[^.]+\\..+$");
	free(re);
}

static void
test_fields(void **state)
{
	char err[256], big[EV_META_VALUE_MAX + 2];

	(void)state;
	assert_int_equal(ev_check_text("type", "", 10, true, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "type"));
	assert_int_equal(ev_check_text("source", "", 10, false, err,
	    sizeof(err)), 0);
	assert_int_equal(ev_check_text("type", "a\tb", 10, true, err,
	    sizeof(err)), -1);
	assert_int_equal(ev_check_text("type", "0123456789x", 10, true, err,
	    sizeof(err)), -1);
	assert_int_equal(ev_check_text("type", "ünïcode", 10, true, err,
	    sizeof(err)), 0);
	assert_int_equal(ev_check_group("group", "g.1-a_b", err,
	    sizeof(err)), 0);
	assert_int_equal(ev_check_group("group", "g/1", err, sizeof(err)),
	    -1);
	assert_int_equal(ev_check_group("group", "", err, sizeof(err)), -1);
	assert_int_equal(ev_check_meta("metadata", "k.1", "any \"v\"", err,
	    sizeof(err)), 0);
	assert_int_equal(ev_check_meta("metadata", "k 1", "v", err,
	    sizeof(err)), -1);
	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(ev_check_meta("metadata", "k", big, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "metadata[k]"));
}

static void
test_base64(void **state)
{
	static const struct { const char *in, *out; } v[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	static const uint8_t bin[] = { 0x00, 0xff, 0xfe, 0x3e, 0x3f };

	(void)state;
	for (size_t i = 0; i < NELEM(v); i++) {
		char *s = ev_base64((const uint8_t *)v[i].in,
		    strlen(v[i].in));

		assert_string_equal(s, v[i].out);
		free(s);
	}
	char *s = ev_base64(bin, sizeof(bin));
	assert_string_equal(s, "AP/+Pj8=");
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topic_syntax),
		cmocka_unit_test(test_subject_syntax),
		cmocka_unit_test(test_match_table),
		cmocka_unit_test(test_regex_agrees),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_base64),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
