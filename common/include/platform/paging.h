/*
 * paging: page_size / page_token handling shared by every List-like call.
 *
 * A token is a kind letter (which call gave it) and the last key served,
 * hex encoded: opaque to callers, stable while entries come and go, and
 * checked on the way back in, so a token from another call or a made-up
 * one is INVALID_ARGUMENT rather than a silent restart.
 */
#ifndef PLATFORM_PAGING_H
#define PLATFORM_PAGING_H

#include <stddef.h>
#include <stdint.h>

#include "platform/server.h"

/* The page size to use: dflt for 0, max when more is asked (clamped, as
 * AIP-158 has it); INVALID_ARGUMENT naming page_size when negative. */
int plat_page_size(plat_ctx *ctx, int32_t asked, int dflt, int max,
    int *out);

/* The token for a next page after `last` (allocated in the call). */
char *plat_page_token(plat_ctx *ctx, char kind, const char *last);

/* The key in a token of `kind` into out (NUL-terminated): PLAT_OK, or
 * INVALID_ARGUMENT naming page_token. "" is not a token: check first. */
int plat_page_token_parse(plat_ctx *ctx, const char *token, char kind,
    char *out, size_t outlen);

#endif
