/*
 * fuzz: what the libFuzzer targets in tests/fuzz share.
 *
 * Most targets read their input as fields: C strings separated by NUL
 * bytes (a NUL cannot be inside a C string anyway, so no field can hide
 * one), with single bytes taken where a target needs a choice. A field
 * past the end of the input is "". Every field lives until
 * fuzz_in_free, so the code under test may keep pointers into it.
 *
 * FUZZ_ASSERT is an invariant of the code under test: when it fails the
 * target aborts, which libFuzzer reports as a crash with the input.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: invariant failed: %s\n",	\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

struct fuzz_in {
	const uint8_t *p;
	size_t n;
	char **owned;           /* every field handed out */
	size_t nowned, cap;
};

void fuzz_in_init(struct fuzz_in *in, const uint8_t *data, size_t size);
/* The next field: the bytes up to the next NUL or the end (malloc'd,
 * NUL-terminated, freed by fuzz_in_free). */
char *fuzz_str(struct fuzz_in *in);
/* The next byte, 0 past the end. */
unsigned fuzz_byte(struct fuzz_in *in);
/* The next four bytes as a little-endian number, 0s past the end. */
uint32_t fuzz_u32(struct fuzz_in *in);
/* Whether any input is left. */
int fuzz_more(const struct fuzz_in *in);
void fuzz_in_free(struct fuzz_in *in);

#endif
