/*
 * doc: config-srv's pure document logic, with no database and no gRPC.
 *
 * Input checks for namespaces, paths, prefixes and selectors; JSON parsed
 * with jansson and written back in one canonical compact form; selection
 * inside a document; the deep merge down a namespace chain with the
 * source of each top-level key; and the diff of two documents.
 *
 * Every check returns 0, or -1 with one line in err that names the
 * field, fit to hand to the caller as INVALID_ARGUMENT.
 */
#ifndef CONFIG_DOC_H
#define CONFIG_DOC_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define DOC_NAMESPACE_MAX 128
#define DOC_PATH_MAX 256
#define DOC_SELECTOR_MAX 1024
#define DOC_JSON_MAX (256 * 1024)
#define DOC_AUTHOR_MAX 128
#define DOC_COMMENT_MAX 1024
/* The root of every namespace chain. */
#define DOC_ROOT_NAMESPACE "global"
/* "global" and at most one prefix per segment of a 128-character name. */
#define DOC_CHAIN_MAX (DOC_NAMESPACE_MAX / 2 + 2)

/* ---- input checks ---- */

/* 1..128 characters; segments of [a-z0-9][a-z0-9_-]* separated by single
 * '/'. field names it in err ("namespace", "namespaces[2]"). */
int doc_check_namespace(const char *field, const char *ns, char *err,
    size_t errlen);
/* 1..256 characters; segments of [A-Za-z0-9_-]+ separated by single '/'. */
int doc_check_path(const char *field, const char *path, char *err,
    size_t errlen);
/* A path prefix for List and Watch: "" or at most 256 characters of
 * [A-Za-z0-9_/-] with no leading or double '/' ("payments/", "pay"). */
int doc_check_prefix(const char *field, const char *prefix, char *err,
    size_t errlen);
/* At most max bytes (a length limit for author and comment). */
int doc_check_length(const char *field, const char *s, size_t max,
    char *err, size_t errlen);

/* A Read's path "payments/limits.daily.max": the document's path is
 * copied to path, *selector points into in after the first '.' (NULL when
 * there is none). The selector's segments must be non-empty. */
int doc_split_address(const char *in, char path[DOC_PATH_MAX + 1],
    const char **selector, char *err, size_t errlen);

/* The namespaces a merged read of ns walks, root first: "global", then
 * each '/'-prefix of ns ("prod", "prod/eu"); "global" is not repeated
 * when ns starts with it. Returns the count. */
size_t doc_chain(const char *ns,
    char out[DOC_CHAIN_MAX][DOC_NAMESPACE_MAX + 1]);

/* ---- JSON ---- */

/* Parses a document (any JSON value; duplicate keys rejected; at most
 * DOC_JSON_MAX bytes): a new reference in *out. field names it in err. */
int doc_parse(const char *field, const char *text, json_t **out,
    char *err, size_t errlen);
/* The canonical compact text of v (malloc'd): no whitespace, keys in
 * document order, reals in the shortest form that reads back the same
 * (0.1, not 0.10000000000000001). */
char *doc_dump(const json_t *v);
/* Parses a stored (canonical, trusted) document: NULL if it does not
 * parse, which is a bug or a damaged database. */
json_t *doc_load(const char *text);
/* doc_parse, then doc_dump: what Update stores. */
int doc_canonical(const char *field, const char *text, char **out,
    char *err, size_t errlen);

/* The value inside doc at selector ("daily.max"; a numeric segment
 * indexes an array), borrowed from doc; NULL with the reason in err when
 * there is none. */
json_t *doc_select(json_t *doc, const char *selector, char *err,
    size_t errlen);

/* ---- merge ---- */

/*
 * Deep merge down a chain: add each namespace's document, root first.
 * Objects merge key by key, recursively; any other value replaces what
 * was there. sources maps each top-level key of the result to the
 * namespace whose document last set it (empty when the result is not an
 * object).
 */
struct doc_merge {
	json_t *doc;            /* NULL until the first add */
	json_t *sources;        /* object: key -> namespace string */
};

void doc_merge_init(struct doc_merge *m);
/* doc is copied, not taken. */
void doc_merge_add(struct doc_merge *m, const json_t *doc, const char *ns);
void doc_merge_free(struct doc_merge *m);

/* ---- diff ---- */

/* As Change.Op in config.proto. */
enum doc_op {
	DOC_OP_ADDED = 1,
	DOC_OP_REMOVED = 2,
	DOC_OP_CHANGED = 3,
};

struct doc_change {
	enum doc_op op;
	char *pointer;          /* "daily.max"; "" for the whole document */
	char *old_json;         /* "" when added */
	char *new_json;         /* "" when removed */
};

struct doc_diff {
	struct doc_change *changes;
	size_t n, cap;
};

/*
 * What changed from one document to another; NULL stands for no document
 * (a tombstone), so it diffs as the whole document added or removed.
 * Objects are compared key by key (in key order), recursively; arrays and
 * scalars as a whole.
 */
void doc_diff(const json_t *from, const json_t *to, struct doc_diff *out);
void doc_diff_free(struct doc_diff *d);

#endif
