/*
 * fuzz_config_request: config-srv's requests as the runtime decodes them
 * (fuzz_request.h), then the checks its handlers make before they reach
 * the store: namespaces, paths and Read's selector address, prefixes,
 * author and comment lengths, Update's document to its canonical form
 * and a selection inside it, page sizes and tokens. The handlers go to
 * the store and the writer as soon as the checks pass, so the checks
 * (services/config/doc.c, common/paging.c) are called here one by one,
 * in the handlers' order.
 */
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "fuzz.h"
#include "fuzz_request.h"
#include "platform/config/v1/config.pb-c.h"
#include "platform/paging.h"

/* check_target in services/config/handlers.c: every write's fields. */
static int
check_target(const char *ns, const char *path, const char *author,
    const char *comment)
{
	char err[512];

	return doc_check_namespace("namespace", ns, err, sizeof(err)) != 0 ||
	    doc_check_path("path", path, err, sizeof(err)) != 0 ||
	    doc_check_length("author", author, DOC_AUTHOR_MAX, err,
	    sizeof(err)) != 0 ||
	    doc_check_length("comment", comment, DOC_COMMENT_MAX, err,
	    sizeof(err)) != 0 ? -1 : 0;
}

static void
check_read(const Platform__Config__V1__ReadRequest *req)
{
	char err[512], path[DOC_PATH_MAX + 1];
	char chain[DOC_CHAIN_MAX][DOC_NAMESPACE_MAX + 1];
	const char *selector;

	if (doc_check_namespace("namespace", req->namespace_, err,
	    sizeof(err)) != 0 || doc_split_address(req->path, path, &selector,
	    err, sizeof(err)) != 0)
		return;
	FUZZ_ASSERT(doc_check_path("path", path, err, sizeof(err)) == 0);
	if (req->merged)
		FUZZ_ASSERT(doc_chain(req->namespace_, chain) >= 1);
}

static void
check_update(const Platform__Config__V1__UpdateRequest *req)
{
	char err[512], *json;
	json_t *doc;

	if (check_target(req->namespace_, req->path, req->author,
	    req->comment) != 0 || doc_canonical("json", req->json, &json, err,
	    sizeof(err)) != 0)
		return;
	/* What is stored loads back (the cache and every Read do this). */
	FUZZ_ASSERT((doc = doc_load(json)) != NULL);
	(void)doc_select(doc, req->comment, err, sizeof(err));
	json_decref(doc);
	free(json);
}

static void
check_page(plat_ctx *ctx, int32_t size, const char *token, char kind)
{
	char after[DOC_PATH_MAX + 1], err[512];
	int page;

	if (plat_page_size(ctx, size, 50, 1000, &page) != PLAT_OK ||
	    token[0] == '\0' ||
	    plat_page_token_parse(ctx, token, kind, after, sizeof(after)) !=
	    PLAT_OK)
		return;
	if (kind == 'l')
		(void)doc_check_path("page_token", after, err, sizeof(err));
	else
		(void)strtoll(after, NULL, 10);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	plat_ctx *ctx = fuzz_ctx_begin();
	const ProtobufCMethodDescriptor *m;
	const ProtobufCMessage *msg = fuzz_request(ctx,
	    &platform__config__v1__config__descriptor, data, size, &m);
	char err[512];

	if (msg == NULL)
		goto done;
	fuzz_roundtrip(msg);
	if (FUZZ_IS(msg, platform__config__v1__read_request__descriptor)) {
		check_read((const void *)msg);
	} else if (FUZZ_IS(msg,
	    platform__config__v1__update_request__descriptor)) {
		check_update((const void *)msg);
	} else if (FUZZ_IS(msg,
	    platform__config__v1__delete_request__descriptor)) {
		const Platform__Config__V1__DeleteRequest *r = (const void *)msg;

		(void)check_target(r->namespace_, r->path, r->author,
		    r->comment);
	} else if (FUZZ_IS(msg,
	    platform__config__v1__rollback_request__descriptor)) {
		const Platform__Config__V1__RollbackRequest *r =
		    (const void *)msg;

		(void)check_target(r->namespace_, r->path, r->author,
		    r->comment);
	} else if (FUZZ_IS(msg,
	    platform__config__v1__history_request__descriptor)) {
		const Platform__Config__V1__HistoryRequest *r =
		    (const void *)msg;

		if (check_target(r->namespace_, r->path, "", "") == 0)
			check_page(ctx, r->page_size, r->page_token, 'h');
	} else if (FUZZ_IS(msg,
	    platform__config__v1__diff_request__descriptor)) {
		const Platform__Config__V1__DiffRequest *r = (const void *)msg;

		(void)check_target(r->namespace_, r->path, "", "");
	} else if (FUZZ_IS(msg,
	    platform__config__v1__list_request__descriptor)) {
		const Platform__Config__V1__ListRequest *r = (const void *)msg;

		if (doc_check_namespace("namespace", r->namespace_, err,
		    sizeof(err)) == 0 && doc_check_prefix("prefix", r->prefix,
		    err, sizeof(err)) == 0)
			check_page(ctx, r->page_size, r->page_token, 'l');
	} else if (FUZZ_IS(msg,
	    platform__config__v1__watch_request__descriptor)) {
		const Platform__Config__V1__WatchRequest *r = (const void *)msg;

		for (size_t i = 0; i < r->n_namespaces && i < 100; i++)
			(void)doc_check_namespace("namespaces", r->namespaces[i],
			    err, sizeof(err));
		(void)doc_check_prefix("prefix", r->prefix, err, sizeof(err));
	}
done:
	fuzz_ctx_end(ctx);
	return 0;
}
