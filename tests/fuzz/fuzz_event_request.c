/*
 * fuzz_event_request: event-srv's requests as the runtime decodes them
 * (fuzz_request.h), then the checks its handlers make before the store:
 * every published event's topic, type, source, idempotency key and
 * metadata, Subscribe's subjects and group, Query's subject (and the
 * regex the store is given), groups, page sizes and tokens. The
 * handlers' own check functions are static beside the store calls, so
 * the checks of services/event/subject.c and common/paging.c are called
 * here one by one, in the handlers' order.
 */
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "platform/event/v1/event.pb-c.h"
#include "platform/paging.h"
#include "subject.h"

/* Map entries of every message type have key and value first. */
struct meta_entry {
	ProtobufCMessage base;
	char *key;
	char *value;
};

static void
check_meta(const char *field, void *const *pairs, size_t n)
{
	const struct meta_entry *const *m = (const void *)pairs;
	char err[512];

	for (size_t i = 0; i < n && i < EV_META_MAX; i++)
		if (ev_check_meta(field, m[i]->key, m[i]->value, err,
		    sizeof(err)) != 0)
			FUZZ_ASSERT(strncmp(err, field, strlen(field)) == 0);
}

static void
check_event(const Platform__Event__V1__PublishRequest *r)
{
	char err[512];

	if (ev_check_topic("topic", r->topic, err, sizeof(err)) != 0 ||
	    ev_check_text("type", r->type, EV_TEXT_MAX, true, err,
	    sizeof(err)) != 0 ||
	    ev_check_text("source", r->source, EV_TEXT_MAX, false, err,
	    sizeof(err)) != 0 ||
	    ev_check_text("idempotency_key", r->idempotency_key, EV_KEY_MAX,
	    false, err, sizeof(err)) != 0)
		return;
	check_meta("metadata", (void *const *)r->metadata, r->n_metadata);
}

/* A subject the store is given as a regex, and the page token after. */
static void
check_subject(const char *subject)
{
	char err[512];

	if (subject[0] == '\0' || ev_check_subject("subject", subject, err,
	    sizeof(err)) != 0)
		return;
	free(ev_subject_regex(subject));
	(void)ev_subject_literal(subject);
}

static void
check_page(plat_ctx *ctx, int32_t size, const char *token, char kind)
{
	char after[EV_KEY_MAX + 1], err[512];
	int page;

	if (plat_page_size(ctx, size, 100, 1000, &page) != PLAT_OK ||
	    token[0] == '\0' || plat_page_token_parse(ctx, token, kind, after,
	    sizeof(after)) != PLAT_OK)
		return;
	if (kind == 'g')
		(void)ev_check_group("page_token", after, err, sizeof(err));
	else
		(void)strtoll(after, NULL, 10);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	plat_ctx *ctx = fuzz_ctx_begin();
	const ProtobufCMethodDescriptor *m;
	const ProtobufCMessage *msg = fuzz_request(ctx,
	    &platform__event__v1__event__descriptor, data, size, &m);
	char err[512];

	if (msg == NULL)
		goto done;
	fuzz_roundtrip(msg);
	if (FUZZ_IS(msg, platform__event__v1__publish_request__descriptor)) {
		check_event((const void *)msg);
	} else if (FUZZ_IS(msg,
	    platform__event__v1__publish_batch_request__descriptor)) {
		const Platform__Event__V1__PublishBatchRequest *r =
		    (const void *)msg;

		for (size_t i = 0; i < r->n_events && i < 1000; i++)
			check_event(r->events[i]);
	} else if (FUZZ_IS(msg,
	    platform__event__v1__subscribe_request__descriptor)) {
		const Platform__Event__V1__SubscribeRequest *r =
		    (const void *)msg;

		for (size_t i = 0; i < r->n_subjects && i < 100; i++)
			check_subject(r->subjects[i]);
		if (r->group[0] != '\0')
			(void)ev_check_group("group", r->group, err,
			    sizeof(err));
	} else if (FUZZ_IS(msg,
	    platform__event__v1__query_request__descriptor)) {
		const Platform__Event__V1__QueryRequest *r = (const void *)msg;

		check_subject(r->subject);
		(void)ev_check_text("type", r->type, EV_TEXT_MAX, false, err,
		    sizeof(err));
		check_meta("metadata", (void *const *)r->metadata,
		    r->n_metadata);
		check_page(ctx, r->page_size, r->page_token, 'q');
	} else if (FUZZ_IS(msg,
	    platform__event__v1__list_groups_request__descriptor)) {
		const Platform__Event__V1__ListGroupsRequest *r =
		    (const void *)msg;

		check_page(ctx, r->page_size, r->page_token, 'g');
	} else if (FUZZ_IS(msg, platform__event__v1__ack_request__descriptor)) {
		(void)ev_check_group("group", ((const
		    Platform__Event__V1__AckRequest *)msg)->group, err,
		    sizeof(err));
	} else if (FUZZ_IS(msg,
	    platform__event__v1__delete_group_request__descriptor)) {
		(void)ev_check_group("group", ((const
		    Platform__Event__V1__DeleteGroupRequest *)msg)->group, err,
		    sizeof(err));
	} else if (FUZZ_IS(msg,
	    platform__event__v1__set_retention_request__descriptor)) {
		const Platform__Event__V1__SetRetentionRequest *r =
		    (const void *)msg;

		if (r->retention != NULL)
			check_subject(r->retention->subject);
	}
done:
	fuzz_ctx_end(ctx);
	return 0;
}
