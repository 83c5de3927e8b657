/*
 * fuzz: the input reader every target shares. See fuzz.h.
 */
#include <string.h>

#include "fuzz.h"

void
fuzz_in_init(struct fuzz_in *in, const uint8_t *data, size_t size)
{
	memset(in, 0, sizeof(*in));
	in->p = data;
	in->n = size;
}

char *
fuzz_str(struct fuzz_in *in)
{
	const uint8_t *end = memchr(in->p, '\0', in->n);
	size_t len = end != NULL ? (size_t)(end - in->p) : in->n;
	char *s = malloc(len + 1);

	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, in->p, len);
	s[len] = '\0';
	/* Past the field and its NUL. */
	in->p += len;
	in->n -= len;
	if (in->n > 0) {
		in->p++;
		in->n--;
	}
	if (in->nowned == in->cap) {
		in->cap = in->cap ? 2 * in->cap : 8;
		if ((in->owned = realloc(in->owned,
		    in->cap * sizeof(*in->owned))) == NULL)
			abort();
	}
	in->owned[in->nowned++] = s;
	return s;
}

unsigned
fuzz_byte(struct fuzz_in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

uint32_t
fuzz_u32(struct fuzz_in *in)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)fuzz_byte(in) << (8 * i);
	return v;
}

int
fuzz_more(const struct fuzz_in *in)
{
	return in->n > 0;
}

void
fuzz_in_free(struct fuzz_in *in)
{
	for (size_t i = 0; i < in->nowned; i++)
		free(in->owned[i]);
	free(in->owned);
	memset(in, 0, sizeof(*in));
}
