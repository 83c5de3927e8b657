/*
 * fuzz_paging: page tokens as every List-like call reads them back
 * (common/paging.c), in a real handler context.
 *
 * Input: a kind byte, then a token NUL a key NUL a page size (4 bytes). Invariants: a token
 * that parses is the one plat_page_token makes for the key it holds (one
 * spelling per key), and every key the server hands out parses back.
 */
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "platform/paging.h"

#define KEY_MAX 512

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in;
	plat_ctx *ctx = fuzz_ctx_begin();
	char kind, key[KEY_MAX + 1], *t;
	const char *token, *last;
	int page;

	fuzz_in_init(&in, data, size);
	/* The kinds in use are letters; any non-NUL byte must work. */
	kind = (char)(fuzz_byte(&in) | 1);
	token = fuzz_str(&in);
	last = fuzz_str(&in);

	if (plat_page_token_parse(ctx, token, kind, key, sizeof(key)) ==
	    PLAT_OK) {
		t = plat_page_token(ctx, kind, key);
		FUZZ_ASSERT(strcmp(t, token) == 0);
	} else {
		FUZZ_ASSERT(fuzz_ctx_code(ctx) == PLAT_INVALID_ARGUMENT);
		FUZZ_ASSERT(strncmp(fuzz_ctx_message(ctx), "page_token",
		    10) == 0);
	}

	if (strlen(last) <= KEY_MAX) {
		t = plat_page_token(ctx, kind, last);
		FUZZ_ASSERT(plat_page_token_parse(ctx, t, kind, key,
		    sizeof(key)) == PLAT_OK);
		FUZZ_ASSERT(strcmp(key, last) == 0);
	}

	FUZZ_ASSERT(plat_page_size(ctx, (int32_t)fuzz_u32(&in), 50, 1000,
	    &page) != PLAT_OK || (page >= 1 && page <= 1000));
	fuzz_ctx_end(ctx);
	fuzz_in_free(&in);
	return 0;
}
