/*
 * fuzz_request: see fuzz_request.h.
 *
 * The runtime's decode_request and its plat_ctx are private to
 * common/server.c, and a fuzz target should run that code, not a copy:
 * the file is compiled into this one, which reaches its static functions
 * without widening the runtime's API. Its external symbols are defined
 * here then, so the linker never takes server.o from libplatform.
 */
#include "../../common/server.c"

#include "fuzz.h"
#include "fuzz_request.h"

static struct plat_ctx fuzz_the_ctx;
static int fuzz_ctx_ready;

plat_ctx *
fuzz_ctx_begin(void)
{
	if (!fuzz_ctx_ready) {
		arena_init(&fuzz_the_ctx.arena);
		fuzz_ctx_ready = 1;
	}
	fuzz_the_ctx.code = PLAT_OK;
	fuzz_the_ctx.message[0] = '\0';
	return &fuzz_the_ctx;
}

void
fuzz_ctx_end(plat_ctx *ctx)
{
	arena_reset(&ctx->arena);
}

int
fuzz_ctx_code(const plat_ctx *ctx)
{
	return ctx->code;
}

const char *
fuzz_ctx_message(const plat_ctx *ctx)
{
	return ctx->message;
}

const ProtobufCMessage *
fuzz_request(plat_ctx *ctx, const ProtobufCServiceDescriptor *svc,
    const uint8_t *data, size_t size,
    const ProtobufCMethodDescriptor **method)
{
	ProtobufCMessage *msg = NULL;
	grpc_byte_buffer *bb = NULL;
	grpc_slice slice;
	int rc;

	if (size == 0 || svc->n_methods == 0)
		return NULL;
	*method = &svc->methods[data[0] % svc->n_methods];
	/* An empty message arrives as no buffer at all. */
	if (size > 1) {
		slice = grpc_slice_from_copied_buffer((const char *)data + 1,
		    size - 1);
		bb = grpc_raw_byte_buffer_create(&slice, 1);
		grpc_slice_unref(slice);
	}
	rc = decode_request(ctx, (*method)->input, bb, &msg);
	if (bb != NULL)
		grpc_byte_buffer_destroy(bb);
	FUZZ_ASSERT((rc == PLAT_OK) == (msg != NULL));
	FUZZ_ASSERT(rc == PLAT_OK || rc == PLAT_INVALID_ARGUMENT);
	return msg;
}

void
fuzz_roundtrip(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg), again;
	uint8_t *buf = malloc(len != 0 ? len : 1);
	ProtobufCMessage *back;

	FUZZ_ASSERT(buf != NULL);
	FUZZ_ASSERT(protobuf_c_message_pack(msg, buf) == len);
	back = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
	FUZZ_ASSERT(back != NULL);
	again = protobuf_c_message_get_packed_size(back);
	FUZZ_ASSERT(again == len);
	protobuf_c_message_free_unpacked(back, NULL);
	free(buf);
}
