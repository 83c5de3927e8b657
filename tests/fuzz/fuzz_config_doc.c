/*
 * fuzz_config_doc: config-srv's document logic (services/config/doc.c):
 * namespace, path, prefix and address checks, the namespace chain, JSON
 * parsing into the canonical form, selection, merge and diff.
 *
 * Input: name NUL address NUL document NUL document. Invariants: the
 * canonical form reads back as the same form (what Update stores is what
 * a later Read loads); a valid namespace's chain starts at the root and
 * holds only valid namespaces; diff of a document with itself is empty.
 */
#include <string.h>

#include "doc.h"
#include "fuzz.h"

static void
check_names(const char *s)
{
	char chain[DOC_CHAIN_MAX][DOC_NAMESPACE_MAX + 1];
	char err[512], path[DOC_PATH_MAX + 1];
	const char *selector;
	size_t n;

	if (doc_check_namespace("namespace", s, err, sizeof(err)) == 0) {
		n = doc_chain(s, chain);
		FUZZ_ASSERT(n >= 1 && n <= DOC_CHAIN_MAX);
		FUZZ_ASSERT(strcmp(chain[0], DOC_ROOT_NAMESPACE) == 0);
		for (size_t i = 0; i < n; i++)
			FUZZ_ASSERT(doc_check_namespace("chain", chain[i], err,
			    sizeof(err)) == 0);
		FUZZ_ASSERT(strcmp(chain[n - 1], s) == 0);
	}
	if (doc_check_path("path", s, err, sizeof(err)) == 0)
		FUZZ_ASSERT(doc_check_prefix("prefix", s, err,
		    sizeof(err)) == 0);
	(void)doc_check_length("author", s, DOC_AUTHOR_MAX, err, sizeof(err));
	if (doc_split_address(s, path, &selector, err, sizeof(err)) == 0) {
		FUZZ_ASSERT(doc_check_path("path", path, err,
		    sizeof(err)) == 0);
		FUZZ_ASSERT(selector == NULL || *selector != '\0');
	}
}

/* The canonical text of text, or NULL; checks it is a fixed point. */
static json_t *
canonical(const char *text)
{
	char err[512], *c, *again;
	json_t *doc;

	if (doc_canonical("json", text, &c, err, sizeof(err)) != 0) {
		FUZZ_ASSERT(strncmp(err, "json", 4) == 0);
		return NULL;
	}
	FUZZ_ASSERT(c != NULL);
	doc = doc_load(c);
	FUZZ_ASSERT(doc != NULL);
	again = doc_dump(doc);
	FUZZ_ASSERT(strcmp(c, again) == 0);
	free(again);
	free(c);
	return doc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in;
	struct doc_merge m;
	struct doc_diff d = { 0 };
	const char *name, *address, *selector;
	char err[512], path[DOC_PATH_MAX + 1];
	json_t *a, *b;

	fuzz_in_init(&in, data, size);
	name = fuzz_str(&in);
	address = fuzz_str(&in);
	a = canonical(fuzz_str(&in));
	b = canonical(fuzz_str(&in));
	check_names(name);
	check_names(address);

	if (a != NULL && doc_split_address(address, path, &selector, err,
	    sizeof(err)) == 0 && selector != NULL)
		(void)doc_select(a, selector, err, sizeof(err));

	doc_diff(a, a, &d);
	FUZZ_ASSERT(d.n == 0);
	doc_diff_free(&d);
	memset(&d, 0, sizeof(d));
	doc_diff(a, b, &d);
	FUZZ_ASSERT((d.n == 0) == (a == b || (a != NULL && b != NULL &&
	    json_equal(a, b))));
	doc_diff_free(&d);

	doc_merge_init(&m);
	if (a != NULL)
		doc_merge_add(&m, a, DOC_ROOT_NAMESPACE);
	if (b != NULL)
		doc_merge_add(&m, b, "prod");
	if (m.doc != NULL)
		free(doc_dump(m.doc));
	doc_merge_free(&m);

	json_decref(a);
	json_decref(b);
	fuzz_in_free(&in);
	return 0;
}
