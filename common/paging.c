/*
 * paging: page sizes and page tokens. See platform/paging.h.
 */
#include <string.h>

#include "platform/paging.h"

int
plat_page_size(plat_ctx *ctx, int32_t asked, int dflt, int max, int *out)
{
	if (asked < 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "page_size: must not be negative");
	*out = asked == 0 ? dflt : asked > max ? max : asked;
	return PLAT_OK;
}

char *
plat_page_token(plat_ctx *ctx, char kind, const char *last)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(last) + 1;
	char *t = plat_alloc(ctx, 2 * n + 1);

	for (size_t i = 0; i < n; i++) {
		unsigned char c = i == 0 ? (unsigned char)kind :
		    (unsigned char)last[i - 1];

		t[2 * i] = hex[c >> 4];
		t[2 * i + 1] = hex[c & 15];
	}
	return t;
}

static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
plat_page_token_parse(plat_ctx *ctx, const char *token, char kind,
    char *out, size_t outlen)
{
	size_t n = strlen(token);

	if (n < 2 || n % 2 != 0 || n / 2 > outlen)
		goto bad;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit(token[2 * i]);
		int lo = hex_digit(token[2 * i + 1]);
		int v;

		if (hi < 0 || lo < 0)
			goto bad;
		v = hi << 4 | lo;
		if (i == 0 ? v != (unsigned char)kind : v == 0)
			goto bad;
		if (i > 0)
			out[i - 1] = (char)v;
	}
	out[n / 2 - 1] = '\0';
	return PLAT_OK;
bad:
	return plat_error(ctx, PLAT_INVALID_ARGUMENT,
	    "page_token: not a token this server gave for this call");
}
