/*
 * fuzz_db_filter: db-srv's filter compiler (services/db/filter.c): a
 * Filter as a caller sends it (protobuf), checked, compiled to SQL and
 * evaluated on a document.
 *
 * Input: document NUL, then the Filter's protobuf bytes. Invariants: a
 * refused filter names the field ("filter..."); an accepted one compiles
 * to SQL whose only quoted literals are the compiler's own (no text of
 * the caller's is ever spliced in), every "$n" naming a bound value; and
 * evaluating it never fails.
 */
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "fuzz.h"

/* The literals the compiler writes itself. */
static const char *const own[] = { "'number'", "'string'", "'1'" };

static void
check_sql(const struct db_sql *q)
{
	const char *p = q->text;

	while ((p = strchr(p, '\'')) != NULL) {
		size_t i, n = 0;

		for (i = 0; i < sizeof(own) / sizeof(own[0]); i++)
			if (strncmp(p, own[i], (n = strlen(own[i]))) == 0)
				break;
		FUZZ_ASSERT(i < sizeof(own) / sizeof(own[0]));
		p += n;
	}
	for (p = q->text; (p = strchr(p, '$')) != NULL; p++) {
		int k = atoi(p + 1);

		FUZZ_ASSERT(k >= 1 && k <= q->n);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in;
	Platform__Db__V1__Filter *f;
	struct dbf *t;
	struct db_sql q;
	char err[512];
	json_t *doc;
	char *text;

	fuzz_in_init(&in, data, size);
	text = fuzz_str(&in);
	f = platform__db__v1__filter__unpack(NULL, in.n, in.p);
	if (f != NULL) {
		if (dbf_parse("filter", f, &t, err, sizeof(err)) != 0) {
			FUZZ_ASSERT(strncmp(err, "filter", 6) == 0);
		} else {
			db_sql_init(&q);
			dbf_sql(t, &q, in.n % 2 == 0);
			check_sql(&q);
			db_sql_free(&q);
			if ((doc = json_loads(text, JSON_DECODE_ANY, NULL)) !=
			    NULL) {
				(void)dbf_match(t, doc);
				json_decref(doc);
			}
			dbf_free(t);
		}
		platform__db__v1__filter__free_unpacked(f, NULL);
	}
	fuzz_in_free(&in);
	return 0;
}
