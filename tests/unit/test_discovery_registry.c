/* Unit tests for discovery-srv's registry: TTL bookkeeping, heartbeats,
 * events, validation. Time is passed in, so no test waits. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "platform/server.h"
#include "registry.h"

struct event_log {
	int n;
	int types[64];
	char nodes[64][32];
	char reasons[64][32];
	uint64_t revs[64];
};

static void
record(void *arg, Platform__Discovery__V1__EventType type,
    const struct reg_version *v, const struct reg_node *n,
    const char *reason, uint64_t revision)
{
	struct event_log *l = arg;

	(void)v;
	if (l->n == 64)
		return;
	l->types[l->n] = type;
	snprintf(l->nodes[l->n], 32, "%s", n->node->id);
	snprintf(l->reasons[l->n], 32, "%s", reason);
	l->revs[l->n] = revision;
	l->n++;
}

/* A request for one node; the structs live in *b. */
struct req_buf {
	Platform__Discovery__V1__RegisterRequest req;
	Platform__Discovery__V1__Service svc;
	Platform__Discovery__V1__Node node, *nodes[1];
	Platform__Discovery__V1__Node__MetadataEntry md, *mds[1];
};

static Platform__Discovery__V1__RegisterRequest *
mkreq(struct req_buf *b, const char *name, const char *version,
    const char *id, const char *addr, uint32_t ttl)
{
	platform__discovery__v1__register_request__init(&b->req);
	platform__discovery__v1__service__init(&b->svc);
	platform__discovery__v1__node__init(&b->node);
	b->svc.name = (char *)name;
	b->svc.version = (char *)version;
	b->node.id = (char *)id;
	b->node.address = (char *)addr;
	b->nodes[0] = &b->node;
	b->svc.n_nodes = 1;
	b->svc.nodes = b->nodes;
	b->req.service = &b->svc;
	b->req.ttl_seconds = ttl;
	return &b->req;
}

static void
test_register_lookup_expire(void **state)
{
	struct registry *r = registry_new();
	struct event_log log = { 0 };
	struct req_buf b;
	char err[256];
	uint32_t ttl;
	const struct reg_name *n;

	(void)state;
	registry_set_listener(r, record, &log);
	assert_int_equal(registry_register(r, mkreq(&b, "api", "1.0", "n1",
	    "10.0.0.1:80", 10), 1000, 0, &ttl, err, sizeof(err)), PLAT_OK);
	assert_int_equal(ttl, 10);
	n = registry_lookup(r, "api");
	assert_non_null(n);
	assert_int_equal(n->nversions, 1);
	assert_int_equal(n->versions[0]->nnodes, 1);
	assert_int_equal(registry_node_count(r), 1);

	/* Not yet expired just before the deadline... */
	assert_int_equal(registry_expire(r, 1000 + 9999), 0);
	/* ...a heartbeat moves the deadline and emits nothing... */
	assert_int_equal(registry_register(r, mkreq(&b, "api", "1.0", "n1",
	    "10.0.0.1:80", 10), 9000, 0, &ttl, err, sizeof(err)), PLAT_OK);
	assert_int_equal(log.n, 1);
	assert_int_equal(registry_expire(r, 1000 + 10000), 0);
	/* ...and the lapse removes it with an "expired" event. */
	assert_int_equal(registry_expire(r, 9000 + 10000), 1);
	assert_null(registry_lookup(r, "api"));
	assert_int_equal(registry_count(r), 0);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.types[1],
	    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED);
	assert_string_equal(log.reasons[1], "expired");
	assert_true(log.revs[1] > log.revs[0]);
	registry_free(r);
}

static void
test_default_ttl_and_update_event(void **state)
{
	struct registry *r = registry_new();
	struct event_log log = { 0 };
	struct req_buf b;
	char err[256];
	uint32_t ttl;

	(void)state;
	registry_set_listener(r, record, &log);
	registry_register(r, mkreq(&b, "api", "1.0", "n1", "h:1", 0), 0, 0,
	    &ttl, err, sizeof(err));
	assert_int_equal(ttl, REGISTRY_TTL_DEFAULT);
	/* A new address is a change: UPDATED. */
	registry_register(r, mkreq(&b, "api", "1.0", "n1", "h:2", 0), 0, 0,
	    &ttl, err, sizeof(err));
	assert_int_equal(log.n, 2);
	assert_int_equal(log.types[1],
	    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_UPDATED);
	assert_string_equal(
	    registry_lookup(r, "api")->versions[0]->nodes[0]->node->address,
	    "h:2");
	registry_free(r);
}

static void
test_node_id_owned_elsewhere(void **state)
{
	struct registry *r = registry_new();
	struct req_buf b;
	char err[256];

	(void)state;
	assert_int_equal(registry_register(r, mkreq(&b, "a", "1", "n1", "h:1",
	    5), 0, 0, NULL, err, sizeof(err)), PLAT_OK);
	assert_int_equal(registry_register(r, mkreq(&b, "b", "1", "n1", "h:1",
	    5), 0, 0, NULL, err, sizeof(err)), PLAT_INVALID_ARGUMENT);
	assert_non_null(strstr(err, "service.nodes[0].id"));
	assert_int_equal(registry_register(r, mkreq(&b, "a", "2", "n1", "h:1",
	    5), 0, 0, NULL, err, sizeof(err)), PLAT_INVALID_ARGUMENT);
	/* Nothing changed. */
	assert_null(registry_lookup(r, "b"));
	assert_int_equal(registry_lookup(r, "a")->nversions, 1);
	registry_free(r);
}

static void
test_deregister_and_paging_order(void **state)
{
	struct registry *r = registry_new();
	struct req_buf b;
	char err[256], id[16];
	const char *names[] = { "m", "c", "x", "a", "k" };
	const struct reg_name *n;
	size_t idx;

	(void)state;
	for (int i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "n%d", i);
		registry_register(r, mkreq(&b, names[i], "1", id, "h:1", 5), 0,
		    0, NULL, err, sizeof(err));
	}
	n = registry_next_after(r, "", &idx);
	assert_string_equal(n->name, "a");
	n = registry_next_after(r, "c", &idx);
	assert_string_equal(n->name, "k");
	n = registry_next_after(r, "d", &idx);
	assert_string_equal(n->name, "k");
	assert_null(registry_next_after(r, "x", &idx));
	assert_int_equal(registry_deregister(r, "c", "1", "nope", "x"), 0);
	assert_int_equal(registry_deregister(r, "c", "1", "n1", "x"), 1);
	assert_null(registry_lookup(r, "c"));
	assert_int_equal(registry_deregister(r, "m", "1", "", "x"), 1);
	assert_int_equal(registry_count(r), 3);
	registry_free(r);
}

static void
test_many_nodes_expire_together(void **state)
{
	struct registry *r = registry_new();
	struct req_buf b;
	char err[256], id[16], name[16];

	(void)state;
	for (int i = 0; i < 500; i++) {
		snprintf(id, sizeof(id), "n%d", i);
		snprintf(name, sizeof(name), "s%d", i % 7);
		assert_int_equal(registry_register(r, mkreq(&b, name,
		    i % 2 ? "v1" : "v2", id, "h:1", 1 + i % 3), 0, 0, NULL,
		    err, sizeof(err)), PLAT_OK);
	}
	assert_int_equal(registry_node_count(r), 500);
	/* TTLs of 1, 2 and 3 s lapse in three waves. */
	assert_int_equal(registry_expire(r, 999), 0);
	assert_int_equal(registry_expire(r, 1000), 167);
	assert_int_equal(registry_expire(r, 2000), 167);
	assert_int_equal(registry_expire(r, 3000), 166);
	assert_int_equal(registry_node_count(r), 0);
	assert_int_equal(registry_count(r), 0);
	registry_free(r);
}

static void
test_validate(void **state)
{
	struct req_buf b;
	char err[256];
	Platform__Discovery__V1__RegisterRequest *req;
	const struct {
		const char *name, *version, *id, *addr;
		uint32_t ttl;
		const char *field;
	} bad[] = {
		{ "", "1", "n", "h:1", 5, "service.name" },
		{ "Upper", "1", "n", "h:1", 5, "service.name" },
		{ "-lead", "1", "n", "h:1", 5, "service.name" },
		{ "has space", "1", "n", "h:1", 5, "service.name" },
		{ "ok", "with space", "n", "h:1", 5, "service.version" },
		{ "ok", "1", "", "h:1", 5, "service.nodes[0].id" },
		{ "ok", "1", "bad/id", "h:1", 5, "service.nodes[0].id" },
		{ "ok", "1", "n", "nohost", 5, "service.nodes[0].address" },
		{ "ok", "1", "n", "h:0", 5, "service.nodes[0].address" },
		{ "ok", "1", "n", "h:65536", 5, "service.nodes[0].address" },
		{ "ok", "1", "n", ":80", 5, "service.nodes[0].address" },
		{ "ok", "1", "n", "h:1", 3601, "ttl_seconds" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		req = mkreq(&b, bad[i].name, bad[i].version, bad[i].id,
		    bad[i].addr, bad[i].ttl);
		err[0] = '\0';
		assert_int_equal(registry_validate(req, err, sizeof(err)), -1);
		if (strstr(err, bad[i].field) == NULL)
			fail_msg("case %zu: \"%s\" does not name %s", i, err,
			    bad[i].field);
	}
	req = mkreq(&b, "ok.name_1-x", "v1.2.3+build", "node-1:a", "[::1]:80",
	    0);
	assert_int_equal(registry_validate(req, err, sizeof(err)), 0);
	req->service->n_nodes = 0;
	assert_int_equal(registry_validate(req, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "service.nodes"));
	req->service = NULL;
	assert_int_equal(registry_validate(req, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "service"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_lookup_expire),
		cmocka_unit_test(test_default_ttl_and_update_event),
		cmocka_unit_test(test_node_id_owned_elsewhere),
		cmocka_unit_test(test_deregister_and_paging_order),
		cmocka_unit_test(test_many_nodes_expire_together),
		cmocka_unit_test(test_validate),
	};

	return cmocka_run_group_tests_name("discovery_registry", tests, NULL,
	    NULL);
}
