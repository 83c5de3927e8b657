/*
 * ctl_kv: `platformctl kv get|put|delete|list|watch|incr`, an operator's
 * view of kv-srv. See ctl_kv.h.
 *
 * What etcdctl and redis-cli users expect: get prints the value's bytes
 * as they are (so `kv get t k > file` saves it whole), put reads "-"
 * from stdin, incr prints the new number, watch prints one line per
 * event until Ctrl-C. -o json prints entries with their version and
 * expiry; values that are not UTF-8 text come as "value_base64". Exit
 * status as for every platformctl command: 0 ok, 1 a call failed
 * (stderr names the gRPC status: a missing key is NOT_FOUND, a lost
 * compare-and-set FAILED_PRECONDITION), 2 bad usage.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl_call.h"
#include "ctl_kv.h"
#include "ctl_out.h"
#include "platform/clock.h"
#include "platform/kv/v1/kv.pb-c.h"
#include "platform/server.h"	/* PLAT_NOT_FOUND, the status codes */

#define PROG		"platformctl"
#define KV_SERVICE	"kv"
#define PAGE_SIZE	1000	/* the server's maximum: fewest calls */
#define STDIN_MAX	(4 << 20)	/* gRPC's default message limit */
#define TTL_MAX_MS	2592000000LL	/* 30 days, as kv-srv takes */

#define M_PREFIX	"/platform.kv.v1.KV/"
#define M_GET		M_PREFIX "Get"
#define M_PUT		M_PREFIX "Put"
#define M_DELETE	M_PREFIX "Delete"
#define M_INCREMENT	M_PREFIX "Increment"
#define M_LIST		M_PREFIX "List"
#define M_WATCH		M_PREFIX "Watch"

typedef Platform__Kv__V1__Entry		pb_entry;
typedef Platform__Kv__V1__WatchResponse	pb_watch_resp;
#define EV_PUT		PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_PUT
#define EV_SYNCED	PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_SYNCED

/* The kv commands' own flags, as given (NULL: not given). */
struct kv_flags {
	const char *kv, *ttl, *expect_version, *if_absent;
	const char *keys_only, *limit;
};

static const struct kv_flags *
kv_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_kv_group, __VA_ARGS__)

/* ---- numbers ---- */

/* A whole number in 1..max from flag's value s: 0, or CTL_USAGE after
 * saying why. */
static int
positive(const char *flag, const char *s, int64_t max, int64_t *out)
{
	long long v;

	if (ctl_parse_int(s, 1, max, &v) != 0)
		return usage_error("%s must be a whole number of at least 1, "
		    "not '%s'", flag, s);
	*out = v;
	return 0;
}

/* --ttl: a duration of 1ms..30 days (ctl_parse_duration), 0 when not
 * given; over 30 days is refused here, where the message can name the
 * flag. */
static int
ttl_of(const struct ctl_run *x, int64_t *ms)
{
	const char *s = kv_f(x)->ttl;

	*ms = 0;
	if (s == NULL || ctl_parse_duration(s, TTL_MAX_MS, ms) == 0)
		return 0;
	return usage_error("--ttl must be a duration of 1ms..30d (500ms, 30s, "
	    "5m, 2h, 1d; a bare number is seconds), not '%s'", s);
}

/* --expect-version N: 0 (any) when not given. */
static int
expect_of(const struct ctl_run *x, int64_t *v)
{
	*v = 0;
	if (kv_f(x)->expect_version == NULL)
		return 0;
	return positive("--expect-version", kv_f(x)->expect_version,
	    INT64_MAX, v);
}

/* ---- output ---- */

static json_t *
entry_json(const pb_entry *e, int with_value)
{
	json_t *o = json_pack("{s:o, s:o, s:I, s:I}",
	    "table", ctl_jstr(e->table), "key", ctl_jstr(e->key),
	    "version", (json_int_t)e->version,
	    "expires_unix_ms", (json_int_t)e->expires_unix_ms);
	char *v;
	int text;

	if (with_value) {
		v = ctl_bytes_text(&e->value, &text);
		json_object_set_new(o, text ? "value" : "value_base64",
		    ctl_jstr(text ? v : v + 4));
		free(v);
	}
	return o;
}

/* ", expires in 30s", or "" without a time to live. */
static void
expiry_note(char *buf, size_t len, const pb_entry *e)
{
	char left[32];

	buf[0] = '\0';
	if (e->expires_unix_ms == 0)
		return;
	ctl_fmt_expires(left, sizeof(left), e->expires_unix_ms, plat_wall_ms());
	snprintf(buf, len, ", expires in %s", left);
}

/* A server that answers OK owes an entry; not sending one is its bug,
 * said rather than crashed on. */
static int
no_entry(const char *method)
{
	fprintf(stderr, PROG ": %s: the server sent no entry\n",
	    ctl_method_name(method));
	return CTL_FAIL;
}

/* ---- calls ---- */

/* One unary call to kv-srv under --timeout: at --kv, else at a node of
 * the service "kv" found through discovery. Only reads are retried (on
 * UNAVAILABLE): a write retried could be applied twice (an incr would
 * count twice, a compare-and-set fail on its own first success). */
static int
kv_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, KV_SERVICE, kv_f(x)->kv, method, req, desc,
	    resp, idempotent);
}

/* ---- get ---- */

static int
kv_get(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Kv__V1__GetRequest req = PLATFORM__KV__V1__GET_REQUEST__INIT;
	const pb_entry *e;
	ProtobufCMessage *m = NULL;
	int rc;

	req.table = argv[0];
	req.key = argv[1];
	if ((rc = kv_call(x, M_GET, &req.base,
	    &platform__kv__v1__get_response__descriptor, &m, 1)) != CTL_OK)
		return rc;
	e = ((Platform__Kv__V1__GetResponse *)m)->entry;
	if (e == NULL)
		rc = no_entry(M_GET);
	else if (x->g->json)
		rc = ctl_json_print(entry_json(e, 1), 0);
	else
		ctl_put_bytes(stdout, e->value.data, e->value.len);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- put ---- */

/* "orders o-1: version 17, expires in 30s"; the version is what a
 * following --expect-version wants. */
static int
write_out(const struct ctl_run *x, const char *method, const pb_entry *e)
{
	char note[64];

	if (e == NULL)
		return no_entry(method);
	if (x->g->json)
		return ctl_json_print(entry_json(e, 0), 0);
	expiry_note(note, sizeof(note), e);
	ctl_put_line(stdout, "%s %s: version %" PRId64 "%s", e->table, e->key,
	    e->version, note);
	return CTL_OK;
}

static int
kv_put(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Kv__V1__PutRequest req = PLATFORM__KV__V1__PUT_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int64_t ttl, expect;
	char *in = NULL;
	size_t len;
	int rc;

	if ((rc = ttl_of(x, &ttl)) != 0 || (rc = expect_of(x, &expect)) != 0)
		return rc;
	if (expect > 0 && kv_f(x)->if_absent != NULL)
		return usage_error("put: --expect-version and --if-absent do "
		    "not go together");
	if (strcmp(argv[2], "-") == 0) {
		if ((rc = ctl_read_stdin(&ctl_kv_group, "the value", STDIN_MAX,
		    &in, &len)) != CTL_OK)
			return rc;
		req.value.data = (uint8_t *)in;
		req.value.len = len;
	} else {
		req.value.data = (uint8_t *)argv[2];
		req.value.len = strlen(argv[2]);
	}
	req.table = argv[0];
	req.key = argv[1];
	req.ttl_ms = ttl;
	req.expected_version = expect;
	req.if_absent = kv_f(x)->if_absent != NULL;
	if ((rc = kv_call(x, M_PUT, &req.base,
	    &platform__kv__v1__put_response__descriptor, &m, 0)) == CTL_OK)
		rc = write_out(x, M_PUT,
		    ((Platform__Kv__V1__PutResponse *)m)->entry);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	free(in);
	return rc;
}

/* ---- delete ---- */

/* Said as Get says a missing key, so a script matches one message. */
static int
not_deleted(const char *table, const char *key)
{
	char *msg;
	int rc;

	if (asprintf(&msg, "key \"%s\" not found in table \"%s\"; nothing "
	    "deleted", key, table) < 0)
		abort();
	rc = ctl_fail(ctl_method_name(M_DELETE), PLAT_NOT_FOUND, msg);
	free(msg);
	return rc;
}

static int
kv_delete(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Kv__V1__DeleteRequest req =
	    PLATFORM__KV__V1__DELETE_REQUEST__INIT;
	const Platform__Kv__V1__DeleteResponse *r;
	ProtobufCMessage *m = NULL;
	int rc;

	if ((rc = expect_of(x, &req.expected_version)) != 0)
		return rc;
	req.table = argv[0];
	req.key = argv[1];
	if ((rc = kv_call(x, M_DELETE, &req.base,
	    &platform__kv__v1__delete_response__descriptor, &m, 0)) != CTL_OK)
		return rc;
	r = (const Platform__Kv__V1__DeleteResponse *)m;
	/* kv-srv answers a missing key with deleted: false; like rm, and
	 * like get, that is a failure an operator should see. */
	if (!r->deleted)
		rc = not_deleted(argv[0], argv[1]);
	else if (x->g->json)
		rc = ctl_json_print(json_pack("{s:o, s:o, s:b, s:I}",
		    "table", ctl_jstr(argv[0]), "key", ctl_jstr(argv[1]),
		    "deleted", 1, "version", (json_int_t)r->version), 0);
	else
		ctl_put_line(stdout, "%s %s: deleted (version %" PRId64 ")",
		    argv[0], argv[1], r->version);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- incr ---- */

static int
kv_incr(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Kv__V1__IncrementRequest req =
	    PLATFORM__KV__V1__INCREMENT_REQUEST__INIT;
	const Platform__Kv__V1__IncrementResponse *r;
	ProtobufCMessage *m = NULL;
	long long delta = 1;
	json_t *o;
	int rc;

	if (argc > 2 && ctl_parse_int(argv[2], INT64_MIN, INT64_MAX,
	    &delta) != 0)
		return usage_error("incr: DELTA must be a whole number (64 "
		    "bits), not '%s'", argv[2]);
	if ((rc = ttl_of(x, &req.ttl_ms)) != 0)
		return rc;
	req.delta = delta;
	req.table = argv[0];
	req.key = argv[1];
	if ((rc = kv_call(x, M_INCREMENT, &req.base,
	    &platform__kv__v1__increment_response__descriptor, &m, 0)) !=
	    CTL_OK)
		return rc;
	r = (const Platform__Kv__V1__IncrementResponse *)m;
	if (x->g->json) {
		o = r->entry != NULL ? entry_json(r->entry, 0) : json_object();
		json_object_set_new(o, "value", json_integer(r->value));
		rc = ctl_json_print(o, 0);
	} else
		printf("%" PRId64 "\n", r->value);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- list ---- */

static int
list_print(const struct ctl_run *x, const struct ctl_pages *pg,
    int keys_only)
{
	struct ctl_table t = { .ncols = 4 };
	int64_t now = plat_wall_ms();
	char ver[24], exp[32], *v;
	json_t *arr;
	int text;

	if (x->g->json) {
		arr = json_array();
		for (size_t i = 0; i < pg->nitems; i++)
			json_array_append_new(arr, entry_json(pg->items[i],
			    !keys_only));
		return ctl_json_print(arr, 0);
	}
	/* Bare keys, one a line, as etcdctl's --keys-only: for pipes. */
	if (keys_only) {
		for (size_t i = 0; i < pg->nitems; i++)
			ctl_put_line(stdout, "%s",
			    ((const pb_entry *)pg->items[i])->key);
		return CTL_OK;
	}
	ctl_table_row(&t, (const char *[]){ "KEY", "VERSION", "EXPIRES",
	    "VALUE" });
	for (size_t i = 0; i < pg->nitems; i++) {
		const pb_entry *e = pg->items[i];

		snprintf(ver, sizeof(ver), "%" PRId64, e->version);
		ctl_fmt_expires(exp, sizeof(exp), e->expires_unix_ms, now);
		v = ctl_bytes_text(&e->value, &text);
		ctl_table_row(&t, (const char *[]){ e->key, ver, exp, v });
		free(v);
	}
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	return CTL_OK;
}

static int
kv_list(const struct ctl_run *x, int argc, char **argv)
{
	const struct kv_flags *f = kv_f(x);
	Platform__Kv__V1__ListRequest req = PLATFORM__KV__V1__LIST_REQUEST__INIT;
	struct ctl_pages pg = { 0 };
	int64_t limit = 0;
	int rc;

	if (f->limit != NULL &&
	    (rc = positive("--limit", f->limit, INT32_MAX, &limit)) != 0)
		return rc;
	req.table = argv[0];
	req.prefix = argc > 1 ? argv[1] : "";
	req.keys_only = f->keys_only != NULL;
	if ((rc = ctl_pages_fetch(x, kv_call, M_LIST, &req.base,
	    &platform__kv__v1__list_response__descriptor, "entries", PAGE_SIZE,
	    (size_t)limit, &pg)) == CTL_OK)
		rc = list_print(x, &pg, req.keys_only);
	ctl_pages_free(&pg);
	return rc;
}

/* ---- watch ---- */

/* "PUT", "DELETE", "EXPIRED", ... */
static const char *
event_name(const pb_watch_resp *ev)
{
	return ctl_enum_name(&platform__kv__v1__event_type__descriptor,
	    (int)ev->type, "EVENT_TYPE_");
}

/* "PUT o-1 version=17 expires=30s value=..."; "DELETE o-1 version=18";
 * "-- synced --" once the entries as they were have all come. */
static void
watch_line(const pb_watch_resp *ev)
{
	const pb_entry *e = ev->entry;
	char exp[32], *v;
	int text;

	if (ev->type == EV_SYNCED) {
		ctl_put_line(stdout, "-- synced --");
		return;
	}
	if (e == NULL) {
		ctl_put_line(stdout, "%s", event_name(ev));
		return;
	}
	if (ev->type != EV_PUT) {
		ctl_put_line(stdout, "%s %s version=%" PRId64, event_name(ev),
		    e->key, e->version);
		return;
	}
	ctl_fmt_expires(exp, sizeof(exp), e->expires_unix_ms, plat_wall_ms());
	v = ctl_bytes_text(&e->value, &text);
	ctl_put_line(stdout, "PUT %s version=%" PRId64 "%s%s value=%s", e->key,
	    e->version, e->expires_unix_ms ? " expires=" : "",
	    e->expires_unix_ms ? exp : "", v);
	free(v);
}

/* Prints one event and flushes it: watch output is usually piped into
 * something that wants each line as it happens. */
static int
watch_msg(void *arg, const ProtobufCMessage *m)
{
	const pb_watch_resp *ev = (const pb_watch_resp *)m;
	const struct ctl_run *x = arg;
	json_t *o;

	if (x->g->json) {
		o = ev->entry != NULL && ev->type != EV_SYNCED ?
		    entry_json(ev->entry, ev->type == EV_PUT) : json_object();
		json_object_set_new(o, "type", json_string(event_name(ev)));
		if (ctl_json_print(o, JSON_COMPACT) != CTL_OK)
			return CTL_FAIL;
	} else
		watch_line(ev);
	/* The reader went away (a closed pipe): nothing left to do. */
	return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int
kv_watch(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Kv__V1__WatchRequest req =
	    PLATFORM__KV__V1__WATCH_REQUEST__INIT;
	char *addr;
	int rc;

	req.table = argv[0];
	req.prefix = argc > 1 ? argv[1] : "";
	if (ctl_service_address(x->g, KV_SERVICE, kv_f(x)->kv, &addr) != 0) {
		if (kv_f(x)->kv == NULL)
			fprintf(stderr, PROG ": (or give --kv ADDR)\n");
		return CTL_FAIL;
	}
	rc = ctl_stream(x->g, addr, M_WATCH, &req.base,
	    &platform__kv__v1__watch_response__descriptor, watch_msg,
	    (void *)x);
	free(addr);
	return rc;
}

/* ---- the command table ---- */

#define F(name, flag, kind, arg, cmds, help) { flag, NULL, kind, arg, \
	NULL, cmds, help, offsetof(struct kv_flags, name) }

static const struct ctl_flag kv_flags[] = {
	{ "--kv", NULL, CTL_VALUE, "ADDR", "PLATFORM_KV", NULL,
	    "kv-srv host:port (default: \"kv\" in discovery)",
	    offsetof(struct kv_flags, kv) },
	F(ttl, "--ttl", CTL_VALUE, "DURATION", "put incr",
	    "expire after 500ms, 30s, 5m, 2h or 1d"),
	F(expect_version, "--expect-version", CTL_VALUE, "N", "put delete",
	    "only if the key is at version N"),
	F(if_absent, "--if-absent", CTL_SWITCH, NULL, "put",
	    "only if the key has no entry"),
	F(keys_only, "--keys-only", CTL_SWITCH, NULL, "list",
	    "only the keys, one a line"),
	F(limit, "--limit", CTL_VALUE, "N", "list",
	    "at most N entries (default: all)"),
};

#undef F

static const struct ctl_cmd kv_cmds[] = {
	{ "kv", NULL, "COMMAND ...", 0, 0, NULL,
	    "kv-srv keys: get, put, delete, list, watch, incr ('kv help')" },
	{ "kv", "get", "TABLE KEY", 2, 2, kv_get,
	    "print the value of a key (-o json: the entry)" },
	{ "kv", "put", "TABLE KEY VALUE|-", 3, 3, kv_put,
	    "set a key; VALUE '-' reads it from stdin" },
	{ "kv", "delete", "TABLE KEY", 2, 2, kv_delete,
	    "delete a key" },
	{ "kv", "list", "TABLE [PREFIX]", 1, 2, kv_list,
	    "list the entries under PREFIX, in key order" },
	{ "kv", "watch", "TABLE [PREFIX]", 1, 2, kv_watch,
	    "print the entries under PREFIX, then each change" },
	{ "kv", "incr", "TABLE KEY [DELTA]", 2, 3, kv_incr,
	    "add DELTA (default 1) to a counter, print it" },
	{ "kv", "help", "", 0, 0, NULL, "show this help" },
};

static int
kv_check(const struct ctl_run *x)
{
	const char *a = kv_f(x)->kv;

	if (a != NULL && strchr(a, ':') == NULL)
		return usage_error("--kv must be host:port, not '%s'", a);
	return CTL_OK;
}

const struct ctl_group ctl_kv_group = {
	.name = "kv",
	.hint = "kv help",
	.head = "Usage: " PROG " kv COMMAND [ARGS] [options]\n\n"
	    "Read, write and watch kv-srv: keys in a TABLE, each value "
	    "versioned, with an\noptional time to live.\n\nCommands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help): "
	    "-o json prints\nentries with their version and expiry "
	    "(\"value_base64\" for a value that is not\nUTF-8). --kv ADDR "
	    "may also come from PLATFORM_KV.\n"
	    "\nget writes the value's bytes as they are (on a terminal, "
	    "control bytes as '?').\nA VALUE that starts with '-' goes after "
	    "'--' (kv put t k -- -x). incr's --ttl\nis for a key it creates: "
	    "a counter keeps its expiry. watch runs until Ctrl-C.\n"
	    "\nExit status: 0 ok, 1 a call failed (a missing key: NOT_FOUND; "
	    "a version that\nmoved on: FAILED_PRECONDITION), 2 bad usage.\n",
	.width = 24,
	.show_cmds = 1,
	.cmds = CTL_TABLE(kv_cmds),
	.flags = CTL_TABLE(kv_flags),
	.flags_size = sizeof(struct kv_flags),
	.check = kv_check,
};
