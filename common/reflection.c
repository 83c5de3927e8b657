/*
 * reflection: grpc.reflection.v1 and v1alpha on every server, so grpcurl,
 * buf curl or Postman can list and call every method with no .proto at
 * hand.
 *
 * The build embeds one descriptor set (protoc --include_imports) holding
 * every file of the contract; it is indexed once, at the first request.
 * The two protocol versions are the same messages on the wire, so both
 * are served with the v1alpha types.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "platform/log.h"
#include "platform/server.h"
#include "server_internal.h"

extern const unsigned char plat_descriptor_set[];
extern const size_t plat_descriptor_set_len;

struct refl_file {
	const Google__Protobuf__FileDescriptorProto *fd;
	uint8_t *bytes;                  /* the file, serialized */
	size_t len;
};

static struct {
	Google__Protobuf__FileDescriptorSet *set;
	struct refl_file *files;
	size_t nfiles;
} refl;
static pthread_once_t refl_once = PTHREAD_ONCE_INIT;

static void
refl_load(void)
{
	refl.set = google__protobuf__file_descriptor_set__unpack(NULL,
	    plat_descriptor_set_len, plat_descriptor_set);
	if (refl.set == NULL) {
		log_error("embedded descriptor set is corrupt");
		return;
	}
	refl.nfiles = refl.set->n_file;
	refl.files = calloc(refl.nfiles, sizeof(*refl.files));
	if (refl.files == NULL)
		abort();
	for (size_t i = 0; i < refl.nfiles; i++) {
		const ProtobufCMessage *m = &refl.set->file[i]->base;

		refl.files[i].fd = refl.set->file[i];
		refl.files[i].len = protobuf_c_message_get_packed_size(m);
		refl.files[i].bytes = malloc(refl.files[i].len + 1);
		if (refl.files[i].bytes == NULL)
			abort();
		protobuf_c_message_pack(m, refl.files[i].bytes);
	}
}

static const struct refl_file *
refl_by_name(const char *name)
{
	for (size_t i = 0; i < refl.nfiles; i++)
		if (strcmp(refl.files[i].fd->name, name) == 0)
			return &refl.files[i];
	return NULL;
}

/* Does message type m (named prefix + m->name) define sym? */
static int
refl_message_defines(const Google__Protobuf__DescriptorProto *m,
    const char *sym)
{
	size_t n = strlen(m->name);

	if (strncmp(sym, m->name, n) != 0)
		return 0;
	if (sym[n] == '\0')
		return 1;
	if (sym[n] != '.')
		return 0;
	sym += n + 1;
	for (size_t i = 0; i < m->n_nested_type; i++)
		if (refl_message_defines(m->nested_type[i], sym))
			return 1;
	for (size_t i = 0; i < m->n_enum_type; i++)
		if (strcmp(m->enum_type[i]->name, sym) == 0)
			return 1;
	for (size_t i = 0; i < m->n_field; i++)
		if (strcmp(m->field[i]->name, sym) == 0)
			return 1;
	return 0;
}

static int
refl_file_defines(const Google__Protobuf__FileDescriptorProto *fd,
    const char *sym)
{
	size_t plen = fd->package != NULL ? strlen(fd->package) : 0;

	if (plen > 0) {
		if (strncmp(sym, fd->package, plen) != 0 || sym[plen] != '.')
			return 0;
		sym += plen + 1;
	}
	for (size_t i = 0; i < fd->n_message_type; i++)
		if (refl_message_defines(fd->message_type[i], sym))
			return 1;
	for (size_t i = 0; i < fd->n_enum_type; i++)
		if (strcmp(fd->enum_type[i]->name, sym) == 0)
			return 1;
	for (size_t i = 0; i < fd->n_service; i++) {
		const Google__Protobuf__ServiceDescriptorProto *s =
		    fd->service[i];
		size_t n = strlen(s->name);

		if (strcmp(s->name, sym) == 0)
			return 1;
		if (strncmp(s->name, sym, n) == 0 && sym[n] == '.')
			for (size_t j = 0; j < s->n_method; j++)
				if (strcmp(s->method[j]->name,
				    sym + n + 1) == 0)
					return 1;
	}
	return 0;
}

static const struct refl_file *
refl_by_symbol(const char *sym)
{
	for (size_t i = 0; i < refl.nfiles; i++)
		if (refl_file_defines(refl.files[i].fd, sym))
			return &refl.files[i];
	return NULL;
}

/* Appends f and, depth first, every file it imports (each once). */
static void
refl_collect(const struct refl_file *f, const struct refl_file **out,
    size_t *n, size_t max)
{
	for (size_t i = 0; i < *n; i++)
		if (out[i] == f)
			return;
	if (*n == max)
		return;
	out[(*n)++] = f;
	for (size_t i = 0; i < f->fd->n_dependency; i++) {
		const struct refl_file *dep =
		    refl_by_name(f->fd->dependency[i]);

		if (dep != NULL)
			refl_collect(dep, out, n, max);
	}
}

static void
refl_files_response(plat_ctx *ctx,
    Grpc__Reflection__V1alpha__ServerReflectionResponse *resp,
    const struct refl_file *f)
{
	Grpc__Reflection__V1alpha__FileDescriptorResponse *fdr;
	const struct refl_file **all;
	size_t n = 0;

	all = plat_alloc(ctx, refl.nfiles * sizeof(*all));
	refl_collect(f, all, &n, refl.nfiles);
	fdr = plat_new(ctx, Grpc__Reflection__V1alpha__FileDescriptorResponse,
	    &grpc__reflection__v1alpha__file_descriptor_response__descriptor);
	fdr->n_file_descriptor_proto = n;
	fdr->file_descriptor_proto = plat_alloc(ctx,
	    n * sizeof(ProtobufCBinaryData));
	for (size_t i = 0; i < n; i++) {
		fdr->file_descriptor_proto[i].data = all[i]->bytes;
		fdr->file_descriptor_proto[i].len = all[i]->len;
	}
	resp->message_response_case =
	    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
	resp->file_descriptor_response = fdr;
}

static void
refl_error_response(plat_ctx *ctx,
    Grpc__Reflection__V1alpha__ServerReflectionResponse *resp, int code,
    const char *message)
{
	Grpc__Reflection__V1alpha__ErrorResponse *e;

	e = plat_new(ctx, Grpc__Reflection__V1alpha__ErrorResponse,
	    &grpc__reflection__v1alpha__error_response__descriptor);
	e->error_code = code;
	e->error_message = (char *)message;
	resp->message_response_case =
	    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	resp->error_response = e;
}

static void
refl_list_services(plat_ctx *ctx,
    Grpc__Reflection__V1alpha__ServerReflectionResponse *resp)
{
	Grpc__Reflection__V1alpha__ListServiceResponse *l;
	const char *names[8];
	size_t n = server_grpc_services(plat_ctx_server(ctx), names, 8);

	l = plat_new(ctx, Grpc__Reflection__V1alpha__ListServiceResponse,
	    &grpc__reflection__v1alpha__list_service_response__descriptor);
	l->n_service = n;
	l->service = plat_alloc(ctx, n * sizeof(*l->service));
	for (size_t i = 0; i < n; i++) {
		l->service[i] = plat_new(ctx,
		    Grpc__Reflection__V1alpha__ServiceResponse,
		    &grpc__reflection__v1alpha__service_response__descriptor);
		l->service[i]->name = (char *)names[i];
	}
	resp->message_response_case =
	    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
	resp->list_services_response = l;
}

static int
refl_on_message(plat_ctx *ctx, plat_stream *st, const ProtobufCMessage *msg)
{
	const Grpc__Reflection__V1alpha__ServerReflectionRequest *req =
	    (const void *)msg;
	Grpc__Reflection__V1alpha__ServerReflectionResponse *resp;
	const struct refl_file *f;
	char *what;

	pthread_once(&refl_once, refl_load);
	if (refl.set == NULL)
		return plat_error(ctx, PLAT_INTERNAL,
		    "descriptor set unavailable");
	resp = plat_new(ctx, Grpc__Reflection__V1alpha__ServerReflectionResponse,
	    &grpc__reflection__v1alpha__server_reflection_response__descriptor);
	resp->valid_host = req->host;
	resp->original_request = (void *)req;
	switch (req->message_request_case) {
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		refl_list_services(ctx, resp);
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		if ((f = refl_by_name(req->file_by_filename)) != NULL)
			refl_files_response(ctx, resp, f);
		else {
			what = plat_printf(ctx, "file \"%s\" not found",
			    req->file_by_filename);
			refl_error_response(ctx, resp, PLAT_NOT_FOUND, what);
		}
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		if ((f = refl_by_symbol(req->file_containing_symbol)) != NULL)
			refl_files_response(ctx, resp, f);
		else {
			what = plat_printf(ctx, "symbol \"%s\" not found",
			    req->file_containing_symbol);
			refl_error_response(ctx, resp, PLAT_NOT_FOUND, what);
		}
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		if (refl_by_symbol(req->all_extension_numbers_of_type) !=
		    NULL) {
			Grpc__Reflection__V1alpha__ExtensionNumberResponse *e;

			/* The contract declares no extensions. */
			e = plat_new(ctx,
			    Grpc__Reflection__V1alpha__ExtensionNumberResponse,
			    &grpc__reflection__v1alpha__extension_number_response__descriptor);
			e->base_type_name =
			    req->all_extension_numbers_of_type;
			resp->message_response_case =
			    GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
			resp->all_extension_numbers_response = e;
		} else
			refl_error_response(ctx, resp, PLAT_NOT_FOUND,
			    "type not found");
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		refl_error_response(ctx, resp, PLAT_NOT_FOUND,
		    "extension not found");
		break;
	default:
		refl_error_response(ctx, resp, PLAT_INVALID_ARGUMENT,
		    "no request given");
		break;
	}
	plat_stream_send(st, &resp->base);
	return PLAT_STREAM_OPEN;
}

static const struct plat_bidi_handlers refl_handlers = {
	.on_message = refl_on_message,
};

const struct plat_method reflection_methods[] = {
	{
		.path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
		.kind = PLAT_METHOD_BIDI,
		.request = &grpc__reflection__v1alpha__server_reflection_request__descriptor,
		.response = &grpc__reflection__v1alpha__server_reflection_response__descriptor,
		.bidi = &refl_handlers,
	},
	{
		.path = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		.kind = PLAT_METHOD_BIDI,
		.request = &grpc__reflection__v1alpha__server_reflection_request__descriptor,
		.response = &grpc__reflection__v1alpha__server_reflection_response__descriptor,
		.bidi = &refl_handlers,
	},
};
const size_t reflection_nmethods =
    sizeof(reflection_methods) / sizeof(reflection_methods[0]);
