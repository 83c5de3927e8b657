/*
 * registry: discovery-srv's in-memory service registry.
 *
 * Services are kept by name, then version; each version holds its nodes.
 * Every stored service and node is a private protobuf-c copy, plus its
 * packed bytes so a heartbeat (a repeated Register) is recognised by one
 * memcmp and costs no allocation. Time is passed in, so the TTL
 * bookkeeping is unit tested without a clock.
 *
 * Every change bumps the revision and is reported to the listener, under
 * the registry's lock, so watchers see changes in order.
 *
 * Not thread-safe by itself: discovery-srv wraps it in a rwlock.
 */
#ifndef DISCOVERY_REGISTRY_H
#define DISCOVERY_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "platform/discovery/v1/discovery.pb-c.h"

#define REGISTRY_NAME_MAX 128
#define REGISTRY_VERSION_MAX 64
#define REGISTRY_NODE_ID_MAX 128
#define REGISTRY_ADDRESS_MAX 255
#define REGISTRY_META_MAX 64
#define REGISTRY_META_KEY_MAX 128
#define REGISTRY_META_VALUE_MAX 1024
#define REGISTRY_ENDPOINTS_MAX 256
#define REGISTRY_ENDPOINT_NAME_MAX 256
#define REGISTRY_NODES_PER_REQUEST 100
#define REGISTRY_TTL_DEFAULT 30
#define REGISTRY_TTL_MAX 3600
#define REGISTRY_NODES_MAX 100000

struct reg_node {
	Platform__Discovery__V1__Node *node;   /* the copy served */
	uint8_t *packed;                       /* node with expires = 0 */
	size_t packed_len;
	int64_t expires_ms;                    /* monotonic */
	struct reg_version *owner;
};

struct reg_version {
	Platform__Discovery__V1__Service *svc; /* without nodes */
	uint8_t *packed;
	size_t packed_len;
	struct reg_node **nodes;
	size_t nnodes, cap;
	struct reg_name *owner;
};

struct reg_name {
	char *name;
	struct reg_version **versions;
	size_t nversions;
};

typedef void (*registry_event_fn)(void *arg,
    Platform__Discovery__V1__EventType type, const struct reg_version *v,
    const struct reg_node *n, const char *reason, uint64_t revision);

struct registry;

struct registry *registry_new(void);
void registry_free(struct registry *r);
void registry_set_listener(struct registry *r, registry_event_fn fn,
    void *arg);

/* Checks a Register request: 0, or -1 with err naming the field. */
int registry_validate(const Platform__Discovery__V1__RegisterRequest *req,
    char *err, size_t errlen);
/* A service name: 0, or -1. */
int registry_check_name(const char *name);

/* Registers or refreshes every node of req (already validated); wall_ms
 * feeds Node.expires_unix_ms. Returns a gRPC status code: OK,
 * INVALID_ARGUMENT (a node id owned by another service or version) or
 * RESOURCE_EXHAUSTED, with err set. Nothing changes unless OK. */
int registry_register(struct registry *r,
    const Platform__Discovery__V1__RegisterRequest *req, int64_t now_ms,
    int64_t wall_ms, uint32_t *ttl_out, char *err, size_t errlen);

/* Removes node_id of name+version, or all its nodes when node_id is "".
 * Returns how many were removed. */
size_t registry_deregister(struct registry *r, const char *name,
    const char *version, const char *node_id, const char *reason);

/* Removes every node whose TTL lapsed by now_ms; returns how many. */
size_t registry_expire(struct registry *r, int64_t now_ms);

const struct reg_name *registry_lookup(const struct registry *r,
    const char *name);
/* Names in ascending order: the first whose name is > after ("" for the
 * start); NULL past the end. */
const struct reg_name *registry_next_after(const struct registry *r,
    const char *after, size_t *index);
const struct reg_name *registry_at(const struct registry *r, size_t index);
size_t registry_count(const struct registry *r);
size_t registry_node_count(const struct registry *r);
uint64_t registry_revision(const struct registry *r);

#endif
