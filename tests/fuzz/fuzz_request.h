/*
 * fuzz_request: a handler context and the server runtime's own request
 * decoding, outside a running server, for the targets that fuzz what a
 * caller's bytes reach: each server's request messages and page tokens.
 *
 * A request input is one byte choosing a method of the service (modulo
 * its count) and the rest as that method's request on the wire, decoded
 * exactly as common/server.c decodes every call: protobuf-c into the
 * call's arena, then the walk that refuses strings that are not UTF-8 or
 * hold a NUL.
 */
#ifndef FUZZ_REQUEST_H
#define FUZZ_REQUEST_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "platform/server.h"

/* The context for one input: no call behind it, so only what handlers'
 * checks use works (plat_error, plat_alloc, plat_strdup, plat_printf);
 * plat_ctx_server and the like must not be called. */
plat_ctx *fuzz_ctx_begin(void);
/* Frees what the input allocated in the context. */
void fuzz_ctx_end(plat_ctx *ctx);
int fuzz_ctx_code(const plat_ctx *ctx);
const char *fuzz_ctx_message(const plat_ctx *ctx);

/* The decoded request (in ctx's arena), its method in *method; NULL when
 * the runtime would answer INVALID_ARGUMENT before any handler runs. */
const ProtobufCMessage *fuzz_request(plat_ctx *ctx,
    const ProtobufCServiceDescriptor *svc, const uint8_t *data, size_t size,
    const ProtobufCMethodDescriptor **method);

/* Packs msg and decodes it again (what an answer goes through, here and
 * at the caller): aborts if that does not read back. */
void fuzz_roundtrip(const ProtobufCMessage *msg);

/* Whether a message is of the type d describes. */
#define FUZZ_IS(msg, d) ((msg)->descriptor == &(d))

#endif
