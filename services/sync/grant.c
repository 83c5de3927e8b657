/*
 * grant: see grant.h.
 */
#include <stdbool.h>
#include <string.h>

#include "grant.h"

static bool
coexist(const struct sync_claim *a, const struct sync_claim *b)
{
	return a->mode == b->mode &&
	    (a->mode == SYNC_SHARED || a->mode == SYNC_SEMAPHORE);
}

static bool
other_limit(const struct sync_claim *me, const struct sync_claim *x)
{
	return x->mode == SYNC_SEMAPHORE && x->limit != me->limit;
}

enum sync_verdict
sync_decide(const struct sync_claim *me, const struct sync_claim *held,
    size_t nheld, const struct sync_claim *ahead, size_t nahead)
{
	bool blocked = false;

	for (size_t i = 0; i < nheld; i++) {
		if (me->mode == SYNC_SEMAPHORE && other_limit(me, &held[i]))
			return SYNC_MISMATCH;
		if (!coexist(&held[i], me))
			blocked = true;
	}
	for (size_t i = 0; i < nahead; i++) {
		if (me->mode == SYNC_SEMAPHORE && other_limit(me, &ahead[i]))
			return SYNC_MISMATCH;
		if (!coexist(&ahead[i], me))
			blocked = true;
	}
	if (blocked)
		return SYNC_WAIT;
	if (me->mode == SYNC_SEMAPHORE &&
	    nheld + nahead >= (size_t)(me->limit > 0 ? me->limit : 1))
		return SYNC_WAIT;
	return SYNC_GRANT;
}

/* The length of the UTF-8 sequence at s (0 when malformed). */
static size_t
utf8_len(const unsigned char *s)
{
	size_t n;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

const char *
sync_name_problem(const char *name)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t len;

	if (name == NULL || name[0] == '\0')
		return "is required";
	len = strlen(name);
	if (len > SYNC_NAME_MAX)
		return "is longer than 256 bytes";
	for (size_t i = 0; i < len;) {
		size_t n;

		if (s[i] < 0x20 || s[i] == 0x7f)
			return "has a control character";
		if ((n = utf8_len(s + i)) == 0 || i + n > len)
			return "is not valid UTF-8";
		i += n;
	}
	return NULL;
}
