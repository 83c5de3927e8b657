/* Unit tests for structured logging: escaping, quoting, truncation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "platform/log.h"

#define TS_LEN	24	/* 2026-11-23T08:00:00.123Z */

/* Checks the timestamp's shape and returns what follows it. */
static const char *
skip_ts(const char *ts)
{
	const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ";
	size_t i;

	for (i = 0; i < TS_LEN; i++) {
		if (shape[i] == 'd')
			assert_true(ts[i] >= '0' && ts[i] <= '9');
		else
			assert_int_equal(ts[i], shape[i]);
	}
	return ts + TS_LEN;
}

/* The JSON line after its "ts" value. */
static const char *
json_rest(const char *line)
{
	assert_memory_equal(line, "{\"ts\":\"", 7);
	return skip_ts(line + 7);
}

static size_t
fmt(char *buf, size_t len, enum log_format f, enum log_level l,
    const char *msg, const char *const *kv, size_t nkv)
{
	return log_format_line(buf, len, f, l, "comp", msg, kv, nkv);
}

/*
 * A small validator for what the logger emits: one object of string keys
 * with string or true values, strings holding valid UTF-8 and no raw
 * control characters.
 */
static int
js_string(const unsigned char **pp)
{
	const unsigned char *p = *pp;
	int n, i;

	if (*p++ != '"')
		return -1;
	while (*p != '"') {
		if (*p < 0x20)
			return -1;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (i = 1; i <= 4; i++)
					if (strchr("0123456789abcdefABCDEF",
					    p[i]) == NULL || p[i] == '\0')
						return -1;
				p += 5;
			} else if (*p != '\0' && strchr("\"\\/bfnrt", *p) != NULL)
				p++;
			else
				return -1;
			continue;
		}
		n = *p < 0x80 ? 0 : *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 :
		    *p >= 0xc2 ? 1 : -1;
		if (n < 0)
			return -1;
		for (p++; n > 0; n--, p++)
			if ((*p & 0xc0) != 0x80)
				return -1;
	}
	*pp = p + 1;
	return 0;
}

static int
json_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (*p++ != '{')
		return 0;
	for (;;) {
		if (js_string(&p) != 0 || *p++ != ':')
			return 0;
		if (strncmp((const char *)p, "true", 4) == 0)
			p += 4;
		else if (js_string(&p) != 0)
			return 0;
		if (*p == '}')
			return p[1] == '\0';
		if (*p++ != ',')
			return 0;
	}
}

static void
test_json_basic(void **state)
{
	char buf[512];
	const char *kv[] = { "method", "/a.B/C", "code", "0" };
	size_t n;

	(void)state;
	n = fmt(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_LEVEL_WARN, "call done",
	    kv, 4);
	assert_int_equal(n, strlen(buf));
	assert_string_equal(json_rest(buf), "\",\"level\":\"warn\","
	    "\"component\":\"comp\",\"msg\":\"call done\","
	    "\"method\":\"/a.B/C\",\"code\":\"0\"}");
	assert_true(json_valid(buf));
}

static void
test_json_escaping(void **state)
{
	char buf[512];
	const char *kv[] = { "k\"ey", "a\"b\\c\nd\te\rf\x01g\x1fh\x7f",
	    "utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" };

	(void)state;
	fmt(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_LEVEL_INFO, "m", kv, 4);
	assert_true(json_valid(buf));
	assert_non_null(strstr(buf, ",\"k\\\"ey\":"
	    "\"a\\\"b\\\\c\\nd\\te\\rf\\u0001g\\u001fh\x7f\","));
	/* Valid UTF-8 passes through untouched. */
	assert_non_null(strstr(buf,
	    "\"utf8\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}"));
}

static void
test_json_invalid_utf8(void **state)
{
	char buf[512];
	/* A lone continuation, a cut sequence, an overlong '/', a surrogate,
	 * a code point past U+10FFFF and a byte never used by UTF-8. */
	const char *kv[] = { "v", "a\x80" "b\xc3" "c\xc0\xaf" "d\xed\xa0\x80"
	    "e\xf4\x90\x80\x80" "f\xff" "\xe2\x82" };

	(void)state;
	fmt(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_LEVEL_INFO, "bad \xfe", kv,
	    2);
	assert_true(json_valid(buf));
	assert_non_null(strstr(buf, "\"msg\":\"bad \\ufffd\""));
	assert_non_null(strstr(buf, "\"v\":\"a\\ufffdb\\ufffdc\\ufffd\\ufffd"
	    "d\\ufffd\\ufffd\\ufffde\\ufffd\\ufffd\\ufffd\\ufffdf\\ufffd"
	    "\\ufffd\\ufffd\"}"));
}

static void
test_null_value(void **state)
{
	char buf[512];
	const char *kv[] = { "a", NULL, "b", "x", "lonely" };

	(void)state;
	fmt(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_LEVEL_INFO, "m", kv, 5);
	assert_true(json_valid(buf));
	assert_non_null(strstr(buf, ",\"a\":\"\",\"b\":\"x\",\"lonely\":\"\"}"));
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_LEVEL_INFO, "m", kv, 4);
	assert_string_equal(skip_ts(buf), " INFO  comp: m a=\"\" b=x");
	/* A NULL message or component is empty too. */
	log_format_line(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_LEVEL_INFO,
	    NULL, NULL, NULL, 0);
	assert_string_equal(json_rest(buf),
	    "\",\"level\":\"info\",\"component\":\"\",\"msg\":\"\"}");
}

static void
test_text_quoting(void **state)
{
	char buf[512];
	const char *kv[] = { "plain", "value", "sp", "value with spaces",
	    "q", "say \"hi\"", "eq", "a=b", "nl", "a\nb", "bs", "c:\\x",
	    "empty", "" };

	(void)state;
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_LEVEL_INFO, "started", kv,
	    14);
	assert_string_equal(skip_ts(buf), " INFO  comp: started plain=value "
	    "sp=\"value with spaces\" q=\"say \\\"hi\\\"\" eq=\"a=b\" "
	    "nl=\"a\\nb\" bs=c:\\x empty=\"\"");
	assert_null(strchr(buf, '\n'));

	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_LEVEL_ERROR, "two\nlines",
	    NULL, 0);
	assert_string_equal(skip_ts(buf), " ERROR comp: two\\nlines");
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_LEVEL_DEBUG, "m", NULL, 0);
	assert_string_equal(skip_ts(buf), " DEBUG comp: m");
	fmt(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_LEVEL_WARN, "m", NULL, 0);
	assert_string_equal(skip_ts(buf), " WARN  comp: m");
	log_format_line(buf, sizeof(buf), LOG_FORMAT_TEXT, LOG_LEVEL_INFO,
	    "", "no component", NULL, 0);
	assert_string_equal(skip_ts(buf), " INFO  no component");
}

static void
test_truncation(void **state)
{
	char big[3000], buf[1024];
	const char *kv[] = { "first", "short", "big", big, "after", "x" };
	size_t len, n, i;

	(void)state;
	/* Escapes and multi-byte characters all along, so every cut point
	 * falls next to or inside one. */
	for (i = 0; i + 6 < sizeof(big); i += 6)
		memcpy(big + i, "\"\xc3\xa9\n\\a", 6);
	big[i] = '\0';
	for (len = 128; len <= sizeof(buf); len++) {
		memset(buf, 'Z', sizeof(buf));
		n = fmt(buf, len, LOG_FORMAT_JSON, LOG_LEVEL_INFO, "msg", kv, 6);
		assert_true(n < len);
		assert_int_equal(n, strlen(buf));
		assert_int_equal(buf[n - 1], '}');
		if (!json_valid(buf))
			fail_msg("invalid JSON at len %zu: %s", len, buf);
		assert_non_null(strstr(buf, "\"truncated\":true}"));
		assert_null(strstr(buf, "\"after\""));
		if (len < sizeof(buf))
			assert_int_equal(buf[len], 'Z');	/* no overrun */

		n = fmt(buf, len, LOG_FORMAT_TEXT, LOG_LEVEL_INFO, "msg", kv, 6);
		assert_true(n < len);
		assert_int_equal(n, strlen(buf));
		assert_non_null(strstr(buf, " truncated=true"));
	}
	/* A key that does not fit leaves no dangling key behind. */
	memset(big, 'k', 400);
	big[400] = '\0';
	{
		const char *kv2[] = { "a", "b", big, "v" };

		n = fmt(buf, 256, LOG_FORMAT_JSON, LOG_LEVEL_INFO, "m", kv2, 4);
		assert_true(json_valid(buf));
		assert_non_null(strstr(buf,
		    "\"a\":\"b\",\"truncated\":true}"));
	}
	/* Too small for a line at all: an empty string, no overrun. */
	assert_int_equal(fmt(buf, 16, LOG_FORMAT_JSON, LOG_LEVEL_INFO, "m",
	    NULL, 0), 0);
	assert_string_equal(buf, "");
	/* What fits exactly is not marked; one byte less is. */
	memset(big, 'm', 200);
	big[200] = '\0';
	n = fmt(buf, sizeof(buf), LOG_FORMAT_JSON, LOG_LEVEL_INFO, big, NULL,
	    0);
	assert_int_equal(fmt(buf, n + 1, LOG_FORMAT_JSON, LOG_LEVEL_INFO,
	    big, NULL, 0), n);
	assert_null(strstr(buf, "truncated"));
	assert_true(json_valid(buf));
	fmt(buf, n, LOG_FORMAT_JSON, LOG_LEVEL_INFO, big, NULL, 0);
	assert_non_null(strstr(buf, "\",\"truncated\":true}"));
	assert_true(json_valid(buf));
}

static void
test_parse(void **state)
{
	enum log_level l;
	enum log_format f;

	(void)state;
	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_parse("info", &l), 0);
	assert_int_equal(l, LOG_LEVEL_INFO);
	assert_int_equal(log_level_parse("warn", &l), 0);
	assert_int_equal(l, LOG_LEVEL_WARN);
	assert_int_equal(log_level_parse("ERROR", &l), 0);
	assert_int_equal(l, LOG_LEVEL_ERROR);
	assert_int_equal(log_level_parse("warning", &l), -1);
	assert_int_equal(log_level_parse("", &l), -1);
	assert_int_equal(log_level_parse(NULL, &l), -1);

	assert_int_equal(log_format_parse("auto", &f), 0);
	assert_int_equal(f, LOG_FORMAT_AUTO);
	assert_int_equal(log_format_parse("json", &f), 0);
	assert_int_equal(f, LOG_FORMAT_JSON);
	assert_int_equal(log_format_parse("text", &f), 0);
	assert_int_equal(f, LOG_FORMAT_TEXT);
	assert_int_equal(log_format_parse("xml", &f), -1);
	assert_int_equal(log_format_parse("", &f), -1);
	assert_int_equal(log_format_parse(NULL, &f), -1);
}

/* log_write through a pipe in place of stderr. */
static void
test_write(void **state)
{
	char out[2048];
	int fds[2], saved;
	ssize_t n;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fds[1], STDERR_FILENO) >= 0);

	log_setup(LOG_FORMAT_JSON, LOG_LEVEL_INFO, "test-srv");
	assert_false(log_enabled(LOG_LEVEL_DEBUG));
	assert_true(log_enabled(LOG_LEVEL_INFO));
	log_debug("hidden", "k", "v");
	log_info("shown", "k", "v", "nothing", NULL, "last", "1");
	log_error("bare");

	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	close(fds[1]);
	n = read(fds[0], out, sizeof(out) - 1);
	close(fds[0]);
	assert_true(n > 0);
	out[n] = '\0';
	log_setup(LOG_FORMAT_AUTO, LOG_LEVEL_INFO, NULL);

	assert_null(strstr(out, "hidden"));
	{
		char *second = strchr(out, '\n');

		assert_non_null(second);
		*second++ = '\0';
		assert_string_equal(json_rest(out), "\",\"level\":\"info\","
		    "\"component\":\"test-srv\",\"msg\":\"shown\",\"k\":\"v\","
		    "\"nothing\":\"\",\"last\":\"1\"}");
		assert_string_equal(json_rest(second), "\",\"level\":\"error\","
		    "\"component\":\"test-srv\",\"msg\":\"bare\"}\n");
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_basic),
		cmocka_unit_test(test_json_escaping),
		cmocka_unit_test(test_json_invalid_utf8),
		cmocka_unit_test(test_null_value),
		cmocka_unit_test(test_text_quoting),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_write),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
