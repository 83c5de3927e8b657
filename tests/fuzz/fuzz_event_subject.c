/*
 * fuzz_event_subject: event-srv's topic, subject and field checks
 * (services/event/subject.c), and the invariants its callers rely on:
 * a valid subject and its PostgreSQL regex match the same topics, a topic
 * is a literal subject matching itself.
 *
 * Input: subject-or-topic NUL topic NUL value; the whole input is also
 * base64'd.
 */
#include <regex.h>
#include <string.h>

#include "fuzz.h"
#include "subject.h"

/* Every check's error starts with the name of the field it was given. */
static void
check_err(int rc, const char *err, const char *field)
{
	if (rc != 0)
		FUZZ_ASSERT(strncmp(err, field, strlen(field)) == 0);
}

/* ev_subject_regex must translate exactly (topics hold no regex
 * metacharacter but '.'), checked against POSIX extended regexes. */
static void
check_regex(const char *subject, const char *topic)
{
	char *re = ev_subject_regex(subject);
	regex_t rx;

	FUZZ_ASSERT(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) == 0);
	FUZZ_ASSERT((regexec(&rx, topic, 0, NULL, 0) == 0) ==
	    ev_subject_match(subject, topic));
	regfree(&rx);
	free(re);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in;
	const char *a, *b, *c;
	char err[512], *b64;
	int subj_ok, topic_ok, b_topic;

	fuzz_in_init(&in, data, size);
	a = fuzz_str(&in);
	b = fuzz_str(&in);
	c = fuzz_str(&in);

	subj_ok = ev_check_subject("subject", a, err, sizeof(err)) == 0;
	check_err(!subj_ok, err, "subject");
	topic_ok = ev_check_topic("topic", a, err, sizeof(err)) == 0;
	check_err(!topic_ok, err, "topic");
	b_topic = ev_check_topic("topic", b, err, sizeof(err)) == 0;
	check_err(ev_check_text("type", a, EV_TEXT_MAX, true, err,
	    sizeof(err)), err, "type");
	check_err(ev_check_text("source", a, EV_TEXT_MAX, false, err,
	    sizeof(err)), err, "source");
	check_err(ev_check_group("group", a, err, sizeof(err)), err, "group");
	check_err(ev_check_meta("metadata", b, c, err, sizeof(err)), err,
	    "metadata");

	/* A topic is a subject without wildcards, naming itself. */
	if (topic_ok) {
		FUZZ_ASSERT(subj_ok);
		FUZZ_ASSERT(ev_subject_literal(a));
		FUZZ_ASSERT(ev_subject_match(a, a));
	}
	if (subj_ok) {
		FUZZ_ASSERT(ev_subject_literal(a) == topic_ok);
		check_regex(a, a);
		if (b_topic)
			check_regex(a, b);
	}

	b64 = ev_base64(data, size);
	FUZZ_ASSERT(strlen(b64) == (size + 2) / 3 * 4);
	free(b64);
	fuzz_in_free(&in);
	return 0;
}
