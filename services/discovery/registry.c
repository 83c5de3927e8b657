/*
 * registry: discovery-srv's in-memory service registry. See registry.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/server.h"
#include "platform/settings.h"
#include "registry.h"

#define PACK_STACK_BYTES 4096

struct node_slot {
	struct node_slot *next;
	struct reg_node *node;
};

struct registry {
	struct reg_name **names;        /* sorted by name */
	size_t nnames, cap;
	struct node_slot **index;       /* node id -> node, chained */
	size_t nbuckets;
	size_t nnodes;
	uint64_t revision;
	registry_event_fn listener;
	void *listener_arg;
};

/* ---- node id index ---- */

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static struct reg_node *
index_get(const struct registry *r, const char *id)
{
	struct node_slot *s;

	for (s = r->index[hash_str(id) & (r->nbuckets - 1)]; s != NULL;
	    s = s->next)
		if (strcmp(s->node->node->id, id) == 0)
			return s->node;
	return NULL;
}

static void
index_grow(struct registry *r)
{
	size_t nb = r->nbuckets * 2;
	struct node_slot **idx = calloc(nb, sizeof(*idx));

	if (idx == NULL)
		abort();
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct node_slot *s, *next;

		for (s = r->index[i]; s != NULL; s = next) {
			size_t b = hash_str(s->node->node->id) & (nb - 1);

			next = s->next;
			s->next = idx[b];
			idx[b] = s;
		}
	}
	free(r->index);
	r->index = idx;
	r->nbuckets = nb;
}

static void
index_put(struct registry *r, struct reg_node *n)
{
	struct node_slot *s = malloc(sizeof(*s));
	size_t b;

	if (s == NULL)
		abort();
	if (r->nnodes + 1 > r->nbuckets)
		index_grow(r);
	b = hash_str(n->node->id) & (r->nbuckets - 1);
	s->node = n;
	s->next = r->index[b];
	r->index[b] = s;
	r->nnodes++;
}

static void
index_del(struct registry *r, const char *id)
{
	struct node_slot **pp, *s;

	for (pp = &r->index[hash_str(id) & (r->nbuckets - 1)];
	    (s = *pp) != NULL; pp = &s->next)
		if (strcmp(s->node->node->id, id) == 0) {
			*pp = s->next;
			free(s);
			r->nnodes--;
			return;
		}
}

/* ---- lifetime ---- */

struct registry *
registry_new(void)
{
	struct registry *r = calloc(1, sizeof(*r));

	if (r == NULL)
		abort();
	r->nbuckets = 64;
	if ((r->index = calloc(r->nbuckets, sizeof(*r->index))) == NULL)
		abort();
	return r;
}

static void
node_free(struct reg_node *n)
{
	protobuf_c_message_free_unpacked(&n->node->base, NULL);
	free(n->packed);
	free(n);
}

static void
version_free(struct reg_version *v)
{
	for (size_t i = 0; i < v->nnodes; i++)
		node_free(v->nodes[i]);
	free(v->nodes);
	protobuf_c_message_free_unpacked(&v->svc->base, NULL);
	free(v->packed);
	free(v);
}

static void
name_free(struct reg_name *n)
{
	for (size_t i = 0; i < n->nversions; i++)
		version_free(n->versions[i]);
	free(n->versions);
	free(n->name);
	free(n);
}

void
registry_free(struct registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nnames; i++)
		name_free(r->names[i]);
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct node_slot *s, *next;

		for (s = r->index[i]; s != NULL; s = next) {
			next = s->next;
			free(s);
		}
	}
	free(r->index);
	free(r->names);
	free(r);
}

void
registry_set_listener(struct registry *r, registry_event_fn fn, void *arg)
{
	r->listener = fn;
	r->listener_arg = arg;
}

static void
emit(struct registry *r, Platform__Discovery__V1__EventType type,
    const struct reg_version *v, const struct reg_node *n,
    const char *reason)
{
	r->revision++;
	if (r->listener != NULL)
		r->listener(r->listener_arg, type, v, n, reason, r->revision);
}

/* ---- validation ---- */

int
registry_check_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > REGISTRY_NAME_MAX)
		return -1;
	if (!((name[0] >= 'a' && name[0] <= 'z') ||
	    (name[0] >= '0' && name[0] <= '9')))
		return -1;
	for (size_t i = 1; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == '-'))
			return -1;
	}
	return 0;
}

static int
check_version(const char *v)
{
	size_t n = strlen(v);

	if (n > REGISTRY_VERSION_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (v[i] <= ' ' || v[i] >= 0x7f)
			return -1;
	return 0;
}

static int
check_node_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > REGISTRY_NODE_ID_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-' || c == ':'))
			return -1;
	}
	return 0;
}

static int
check_metadata(const char *field, size_t n,
    Platform__Discovery__V1__Service__MetadataEntry *const *md,
    char *err, size_t errlen)
{
	if (n > REGISTRY_META_MAX) {
		snprintf(err, errlen, "%s: more than %d entries", field,
		    REGISTRY_META_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t kl = strlen(md[i]->key);

		if (kl == 0 || kl > REGISTRY_META_KEY_MAX) {
			snprintf(err, errlen, "%s: key must be 1..%d bytes",
			    field, REGISTRY_META_KEY_MAX);
			return -1;
		}
		if (strlen(md[i]->value) > REGISTRY_META_VALUE_MAX) {
			snprintf(err, errlen,
			    "%s[\"%.64s\"]: value longer than %d bytes",
			    field, md[i]->key, REGISTRY_META_VALUE_MAX);
			return -1;
		}
	}
	return 0;
}

/* All map entries share the layout {base, key, value}: the casts below
 * let one checker serve the service, endpoint and node maps. */
#define MD(x) ((Platform__Discovery__V1__Service__MetadataEntry *const *)(x))

int
registry_validate(const Platform__Discovery__V1__RegisterRequest *req,
    char *err, size_t errlen)
{
	const Platform__Discovery__V1__Service *s = req->service;
	char field[64];

	if (s == NULL) {
		snprintf(err, errlen, "service: required");
		return -1;
	}
	if (req->ttl_seconds > REGISTRY_TTL_MAX) {
		snprintf(err, errlen, "ttl_seconds: must be 1..%d (0 for "
		    "the default %d), got %u", REGISTRY_TTL_MAX,
		    REGISTRY_TTL_DEFAULT, req->ttl_seconds);
		return -1;
	}
	if (registry_check_name(s->name) != 0) {
		snprintf(err, errlen, "service.name: must be 1..%d "
		    "characters of a-z 0-9 . _ - starting with a letter or "
		    "digit, got \"%.64s\"", REGISTRY_NAME_MAX, s->name);
		return -1;
	}
	if (check_version(s->version) != 0) {
		snprintf(err, errlen, "service.version: at most %d printable "
		    "characters without spaces", REGISTRY_VERSION_MAX);
		return -1;
	}
	if (check_metadata("service.metadata", s->n_metadata,
	    MD(s->metadata), err, errlen) != 0)
		return -1;
	if (s->n_endpoints > REGISTRY_ENDPOINTS_MAX) {
		snprintf(err, errlen, "service.endpoints: more than %d",
		    REGISTRY_ENDPOINTS_MAX);
		return -1;
	}
	for (size_t i = 0; i < s->n_endpoints; i++) {
		size_t n = strlen(s->endpoints[i]->name);

		if (n == 0 || n > REGISTRY_ENDPOINT_NAME_MAX) {
			snprintf(err, errlen, "service.endpoints[%zu].name: "
			    "must be 1..%d bytes", i,
			    REGISTRY_ENDPOINT_NAME_MAX);
			return -1;
		}
		snprintf(field, sizeof(field),
		    "service.endpoints[%zu].metadata", i);
		if (check_metadata(field, s->endpoints[i]->n_metadata,
		    MD(s->endpoints[i]->metadata), err, errlen) != 0)
			return -1;
	}
	if (s->n_nodes == 0 || s->n_nodes > REGISTRY_NODES_PER_REQUEST) {
		snprintf(err, errlen, "service.nodes: give 1..%d nodes",
		    REGISTRY_NODES_PER_REQUEST);
		return -1;
	}
	for (size_t i = 0; i < s->n_nodes; i++) {
		const Platform__Discovery__V1__Node *n = s->nodes[i];

		if (check_node_id(n->id) != 0) {
			snprintf(err, errlen, "service.nodes[%zu].id: must be "
			    "1..%d characters of A-Z a-z 0-9 . _ - :", i,
			    REGISTRY_NODE_ID_MAX);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->nodes[j]->id, n->id) == 0) {
				snprintf(err, errlen, "service.nodes[%zu].id: "
				    "\"%s\" appears twice in the request", i,
				    n->id);
				return -1;
			}
		if (strlen(n->address) > REGISTRY_ADDRESS_MAX ||
		    settings_check_address(n->address) != 0) {
			snprintf(err, errlen, "service.nodes[%zu].address: "
			    "must be host:port with a port 1..65535, got "
			    "\"%.64s\"", i, n->address);
			return -1;
		}
		snprintf(field, sizeof(field), "service.nodes[%zu].metadata",
		    i);
		if (check_metadata(field, n->n_metadata, MD(n->metadata),
		    err, errlen) != 0)
			return -1;
	}
	return 0;
}

/* ---- packing: the stored copy and its bytes ---- */

/* Packs msg into buf when it fits, else into malloc'd memory. */
static uint8_t *
pack_into(const ProtobufCMessage *msg, uint8_t *buf, size_t buflen,
    size_t *len)
{
	uint8_t *out = buf;

	*len = protobuf_c_message_get_packed_size(msg);
	if (*len > buflen && (out = malloc(*len)) == NULL)
		abort();
	protobuf_c_message_pack(msg, out);
	return out;
}

static uint8_t *
dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n + 1);

	if (d == NULL)
		abort();
	memcpy(d, p, n);
	return d;
}

static ProtobufCMessage *
copy_from_packed(const ProtobufCMessageDescriptor *d, const uint8_t *p,
    size_t n)
{
	ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, p);

	if (m == NULL)
		abort();        /* we packed it ourselves */
	return m;
}

/* ---- lookups ---- */

static size_t
name_search(const struct registry *r, const char *name, int *found)
{
	size_t lo = 0, hi = r->nnames;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(r->names[mid]->name, name);

		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

const struct reg_name *
registry_lookup(const struct registry *r, const char *name)
{
	int found;
	size_t i = name_search(r, name, &found);

	return found ? r->names[i] : NULL;
}

const struct reg_name *
registry_next_after(const struct registry *r, const char *after,
    size_t *index)
{
	int found;
	size_t i = name_search(r, after, &found);

	if (found)
		i++;
	*index = i;
	return i < r->nnames ? r->names[i] : NULL;
}

const struct reg_name *
registry_at(const struct registry *r, size_t index)
{
	return index < r->nnames ? r->names[index] : NULL;
}

size_t
registry_count(const struct registry *r)
{
	return r->nnames;
}

size_t
registry_node_count(const struct registry *r)
{
	return r->nnodes;
}

uint64_t
registry_revision(const struct registry *r)
{
	return r->revision;
}

static struct reg_version *
version_find(const struct reg_name *n, const char *version)
{
	for (size_t i = 0; i < n->nversions; i++)
		if (strcmp(n->versions[i]->svc->version, version) == 0)
			return n->versions[i];
	return NULL;
}

static struct reg_name *
name_get_or_add(struct registry *r, const char *name)
{
	int found;
	size_t i = name_search(r, name, &found);
	struct reg_name *n;

	if (found)
		return r->names[i];
	if (r->nnames == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		if ((r->names = realloc(r->names, r->cap *
		    sizeof(*r->names))) == NULL)
			abort();
	}
	if ((n = calloc(1, sizeof(*n))) == NULL ||
	    (n->name = strdup(name)) == NULL)
		abort();
	memmove(&r->names[i + 1], &r->names[i],
	    (r->nnames - i) * sizeof(*r->names));
	r->names[i] = n;
	r->nnames++;
	return n;
}

static void
name_remove_if_empty(struct registry *r, struct reg_name *n)
{
	int found;
	size_t i;

	if (n->nversions > 0)
		return;
	i = name_search(r, n->name, &found);
	if (!found)
		return;
	memmove(&r->names[i], &r->names[i + 1],
	    (r->nnames - i - 1) * sizeof(*r->names));
	r->nnames--;
	name_free(n);
}

static void
version_remove_if_empty(struct registry *r, struct reg_version *v)
{
	struct reg_name *n = v->owner;

	if (v->nnodes > 0)
		return;
	for (size_t i = 0; i < n->nversions; i++)
		if (n->versions[i] == v) {
			memmove(&n->versions[i], &n->versions[i + 1],
			    (n->nversions - i - 1) * sizeof(*n->versions));
			n->nversions--;
			break;
		}
	version_free(v);
	name_remove_if_empty(r, n);
}

/* Removes node i of v, telling watchers first. */
static void
node_remove(struct registry *r, struct reg_version *v, size_t i,
    const char *reason)
{
	struct reg_node *n = v->nodes[i];

	emit(r, PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED, v, n,
	    reason);
	index_del(r, n->node->id);
	memmove(&v->nodes[i], &v->nodes[i + 1],
	    (v->nnodes - i - 1) * sizeof(*v->nodes));
	v->nnodes--;
	node_free(n);
}

/* ---- register ---- */

static struct reg_version *
version_add(struct reg_name *n, const uint8_t *packed, size_t len)
{
	struct reg_version *v = calloc(1, sizeof(*v));

	if (v == NULL)
		abort();
	v->svc = (Platform__Discovery__V1__Service *)copy_from_packed(
	    &platform__discovery__v1__service__descriptor, packed, len);
	v->packed = dup_bytes(packed, len);
	v->packed_len = len;
	v->owner = n;
	if ((n->versions = realloc(n->versions, (n->nversions + 1) *
	    sizeof(*n->versions))) == NULL)
		abort();
	n->versions[n->nversions++] = v;
	return v;
}

static void
node_set(struct reg_node *rn, const uint8_t *packed, size_t len)
{
	if (rn->node != NULL)
		protobuf_c_message_free_unpacked(&rn->node->base, NULL);
	free(rn->packed);
	rn->node = (Platform__Discovery__V1__Node *)copy_from_packed(
	    &platform__discovery__v1__node__descriptor, packed, len);
	rn->packed = dup_bytes(packed, len);
	rn->packed_len = len;
}

int
registry_register(struct registry *r,
    const Platform__Discovery__V1__RegisterRequest *req, int64_t now_ms,
    int64_t wall_ms, uint32_t *ttl_out, char *err, size_t errlen)
{
	const Platform__Discovery__V1__Service *s = req->service;
	uint32_t ttl = req->ttl_seconds ? req->ttl_seconds :
	    REGISTRY_TTL_DEFAULT;
	Platform__Discovery__V1__Service bare;
	Platform__Discovery__V1__Node tmp;
	uint8_t stack[PACK_STACK_BYTES], *p;
	struct reg_name *name;
	struct reg_version *v;
	size_t len, fresh = 0;
	int svc_changed = 0;

	/* Check everything first: a refused Register changes nothing. */
	for (size_t i = 0; i < s->n_nodes; i++) {
		struct reg_node *rn = index_get(r, s->nodes[i]->id);

		if (rn == NULL) {
			fresh++;
			continue;
		}
		if (strcmp(rn->owner->svc->name, s->name) != 0 ||
		    strcmp(rn->owner->svc->version, s->version) != 0) {
			snprintf(err, errlen, "service.nodes[%zu].id: node "
			    "\"%s\" is already registered by service \"%s\" "
			    "version \"%s\"", i, s->nodes[i]->id,
			    rn->owner->svc->name, rn->owner->svc->version);
			return PLAT_INVALID_ARGUMENT;
		}
	}
	if (r->nnodes + fresh > REGISTRY_NODES_MAX) {
		snprintf(err, errlen, "registry full: at most %d nodes",
		    REGISTRY_NODES_MAX);
		return PLAT_RESOURCE_EXHAUSTED;
	}

	/* The service without its nodes, as stored and compared. */
	bare = *s;
	bare.n_nodes = 0;
	bare.nodes = NULL;
	p = pack_into(&bare.base, stack, sizeof(stack), &len);
	name = name_get_or_add(r, s->name);
	if ((v = version_find(name, s->version)) == NULL) {
		v = version_add(name, p, len);
	} else if (len != v->packed_len || memcmp(p, v->packed, len) != 0) {
		protobuf_c_message_free_unpacked(&v->svc->base, NULL);
		free(v->packed);
		v->svc = (Platform__Discovery__V1__Service *)copy_from_packed(
		    &platform__discovery__v1__service__descriptor, p, len);
		v->packed = dup_bytes(p, len);
		v->packed_len = len;
		svc_changed = 1;
	}
	if (p != stack)
		free(p);

	for (size_t i = 0; i < s->n_nodes; i++) {
		struct reg_node *rn = index_get(r, s->nodes[i]->id);
		int changed = 0, created = 0;

		tmp = *s->nodes[i];
		tmp.expires_unix_ms = 0;
		p = pack_into(&tmp.base, stack, sizeof(stack), &len);
		if (rn == NULL) {
			if ((rn = calloc(1, sizeof(*rn))) == NULL)
				abort();
			rn->owner = v;
			node_set(rn, p, len);
			if (v->nnodes == v->cap) {
				v->cap = v->cap ? v->cap * 2 : 4;
				if ((v->nodes = realloc(v->nodes, v->cap *
				    sizeof(*v->nodes))) == NULL)
					abort();
			}
			v->nodes[v->nnodes++] = rn;
			index_put(r, rn);
			created = 1;
		} else if (len != rn->packed_len ||
		    memcmp(p, rn->packed, len) != 0) {
			node_set(rn, p, len);
			changed = 1;
		}
		if (p != stack)
			free(p);
		/* The heartbeat: only the expiry moves. */
		rn->expires_ms = now_ms + (int64_t)ttl * 1000;
		rn->node->expires_unix_ms = wall_ms + (int64_t)ttl * 1000;
		if (created)
			emit(r,
			    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED,
			    v, rn, "");
		else if (changed)
			emit(r,
			    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_UPDATED,
			    v, rn, "");
	}
	/* Watchers of the other nodes learn of a changed service too. */
	if (svc_changed)
		for (size_t i = 0; i < v->nnodes; i++)
			emit(r,
			    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_UPDATED,
			    v, v->nodes[i], "service changed");
	if (ttl_out != NULL)
		*ttl_out = ttl;
	return PLAT_OK;
}

size_t
registry_deregister(struct registry *r, const char *name,
    const char *version, const char *node_id, const char *reason)
{
	const struct reg_name *cn = registry_lookup(r, name);
	struct reg_version *v;
	size_t removed = 0;

	if (cn == NULL || (v = version_find(cn, version)) == NULL)
		return 0;
	for (size_t i = v->nnodes; i-- > 0;)
		if (node_id[0] == '\0' ||
		    strcmp(v->nodes[i]->node->id, node_id) == 0) {
			node_remove(r, v, i, reason);
			removed++;
		}
	version_remove_if_empty(r, v);
	return removed;
}

size_t
registry_expire(struct registry *r, int64_t now_ms)
{
	size_t removed = 0;

	/* Walk backwards: removals shift only what was already visited. */
	for (size_t i = r->nnames; i-- > 0;) {
		struct reg_name *n = r->names[i];

		for (size_t j = n->nversions; j-- > 0;) {
			struct reg_version *v = n->versions[j];
			size_t before = removed;

			for (size_t k = v->nnodes; k-- > 0;)
				if (v->nodes[k]->expires_ms <= now_ms) {
					node_remove(r, v, k, "expired");
					removed++;
				}
			if (removed != before && v->nnodes == 0) {
				int last = n->nversions == 1;

				version_remove_if_empty(r, v);
				if (last)
					break;  /* n was freed */
			}
		}
	}
	return removed;
}
