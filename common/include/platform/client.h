/*
 * client: how any server (or platformctl) calls another.
 *
 * A plat_client keeps one gRPC channel per node address, puts a deadline
 * on every call, and can address a service by name: names resolve through
 * discovery-srv (a cache kept fresh by Watch), a node is picked round robin
 * skipping nodes that just failed, and idempotent calls are retried on
 * UNAVAILABLE with exponential backoff.
 *
 * Every call returns a gRPC status code (0 is OK) and, on failure, a human
 * message in errmsg. Responses are protobuf-c messages the caller frees with
 * protobuf_c_message_free_unpacked(resp, NULL). Thread-safe.
 */
#ifndef PLATFORM_CLIENT_H
#define PLATFORM_CLIENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

typedef struct plat_client plat_client;
typedef struct plat_client_stream plat_client_stream;

struct plat_client_opts {
	const char *discovery;        /* host:port of discovery-srv, or NULL */
	const char *tls_ca;           /* PEM file paths; all NULL: plaintext */
	const char *tls_cert;
	const char *tls_key;
	int default_deadline_ms;      /* 0 means 5000 */
	int max_message_bytes;        /* 0 means 4 MiB */
	/* Outbound identity: when set, every call that does not carry its
	 * own "authorization" metadata gets "Bearer " + the token this
	 * fills into buf (0; -1 sends the call without one). token_rejected
	 * runs after a server answered UNAUTHENTICATED to such a call, so
	 * the next one gets a fresh token. Both may be called from any
	 * thread at once; token_arg is passed to both. */
	int (*token)(void *arg, char *buf, size_t len);
	void (*token_rejected)(void *arg);
	void *token_arg;
};

struct plat_call_opts {
	int deadline_ms;              /* 0: the client's default */
	int idempotent;               /* retry on UNAVAILABLE */
	int max_attempts;             /* 0 means 3 (only when idempotent) */
	const char *const *metadata;  /* key, value, ..., NULL; may be NULL */
};

plat_client *plat_client_new(const struct plat_client_opts *opts);
void plat_client_free(plat_client *c);

/* Unary call to a fixed address. method is the full path,
 * "/platform.discovery.v1.Discovery/GetService". */
int plat_client_call_addr(plat_client *c, const char *address,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    const struct plat_call_opts *opts, char *errmsg, size_t errlen);

/* Unary call to a service by its registered name. UNAVAILABLE when the
 * name has no live node. */
int plat_client_call(plat_client *c, const char *service,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    const struct plat_call_opts *opts, char *errmsg, size_t errlen);

/* The node of service that key routes to (rendezvous hashing over its
 * live nodes, see balancer_pick_key), for calls that must land on one
 * node per key (spans by trace id): 0 with *addr malloc'd, or a status
 * (UNAVAILABLE: no live node) with errmsg. A node whose breaker is
 * open passes its keys to the next best until it is back. */
int plat_client_route(plat_client *c, const char *service, uint64_t key,
    int timeout_ms, char **addr, char *errmsg, size_t errlen);

/*
 * Replicas of one server (--discovery a,b,c): calls go to the one that
 * answered last, and move on to the next when it is down.
 */
struct plat_addrs {
	char **addr;
	size_t n;
	atomic_size_t cur;
};
/* "a,b,c" into l: 0, or -1 when the list or an element is empty. */
int plat_addrs_parse(struct plat_addrs *l, const char *list);
void plat_addrs_free(struct plat_addrs *l);
/* The one to try first, or NULL for an empty list. */
const char *plat_addrs_current(struct plat_addrs *l);
/* After a failure at addr: the next one is tried first from now on. */
void plat_addrs_failed(struct plat_addrs *l, const char *addr);

/* A unary call to whichever of l answers, from the current one on: a
 * replica that is UNAVAILABLE (or past the deadline) passes the call to
 * the next; any other answer is the call's. */
int plat_client_call_any(plat_client *c, struct plat_addrs *l,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    const struct plat_call_opts *opts, char *errmsg, size_t errlen);
/* The same to the client's discovery replicas; FAILED_PRECONDITION when
 * it has none. */
int plat_client_call_discovery(plat_client *c, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
    ProtobufCMessage **resp, const struct plat_call_opts *opts,
    char *errmsg, size_t errlen);

/* Server-streaming call to a fixed address. deadline_ms 0: no deadline. */
int plat_client_stream_open(plat_client *c, const char *address,
    const char *method, const ProtobufCMessage *req, int deadline_ms,
    const char *const *metadata, plat_client_stream **out,
    char *errmsg, size_t errlen);

enum {
	PLAT_STREAM_MESSAGE = 1,      /* *msg holds the next message */
	PLAT_STREAM_END = 0,          /* the server finished: see _status */
	PLAT_STREAM_TIMEOUT = -1,     /* nothing within timeout_ms; call again */
};

/* Waits up to timeout_ms (-1: forever) for the next message. */
int plat_client_stream_next(plat_client_stream *s,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
    int timeout_ms);

/* The final status once _next returned PLAT_STREAM_END. */
int plat_client_stream_status(plat_client_stream *s, char *errmsg,
    size_t errlen);

/* Cancels the call (the server sees CANCELLED); _next then ends. */
void plat_client_stream_cancel(plat_client_stream *s);
void plat_client_stream_free(plat_client_stream *s);

/*
 * A Watch on discovery-srv (one service, or "" for every one) kept open
 * by a thread of its own: on the client's discovery replicas in turn,
 * reconnecting with backoff. Each stream delivers begin, the snapshot
 * as events with live 0, synced, then live events, and lost when it
 * ends; after lost the next stream begins again with a full snapshot.
 * The callbacks run on the watch's thread, one at a time; ev is valid
 * during the call. The client's own name cache is kept by one.
 */
struct Platform__Discovery__V1__WatchResponse;
struct plat_discovery_watch_cb {
	void (*begin)(void *arg);
	void (*event)(void *arg,
	    const struct Platform__Discovery__V1__WatchResponse *ev, int live);
	void (*synced)(void *arg);
	void (*lost)(void *arg);
};
typedef struct plat_discovery_watch plat_discovery_watch;
/* NULL when the client has no discovery address. */
plat_discovery_watch *plat_discovery_watch_start(plat_client *c,
    const char *service, const struct plat_discovery_watch_cb *cb,
    void *arg);
/* Ends the watch (its stream is cancelled) and joins its thread; no
 * callback runs after it returns. NULL is fine. */
void plat_discovery_watch_stop(plat_discovery_watch *w);

/*
 * Smart routing (router-srv's view; see platform/balancer.h). Every call
 * by name counts in its node's stats and breaker. With weights set for a
 * service its node is chosen by power of two choices over the weights and
 * each node's latency EWMA; without (never set, or cleared when router-srv
 * is gone) by round robin: fail-open.
 */
/* Weights for nodes of service by address (nodes not named get the
 * mean of those named). Replaces what was set before. */
void plat_client_route_set(plat_client *c, const char *service,
    const char *const *addrs, const uint32_t *weights, size_t n);
/* Back to round robin for service. */
void plat_client_route_clear(plat_client *c, const char *service);

/* A client-side rate limit for calls by name to service's method (the
 * full path; NULL or "" for all its methods): rate calls a second, burst
 * at once (0: a second's worth). Past it a call is RESOURCE_EXHAUSTED
 * without leaving the process. rate <= 0 removes the limit. A method's
 * own limit is checked before the service's. */
void plat_client_set_limit(plat_client *c, const char *service,
    const char *method, double rate, double burst);

struct plat_node_stats {
	char addr[128];
	uint64_t requests;
	uint64_t errors[17];          /* by gRPC code */
	double ewma_ms;
	int inflight;
	int state;                    /* 0 closed, 1 ejected, 2 half-open */
	uint32_t weight;
};
/* Up to max of service's nodes' stats into out; returns how many the
 * client knows (may exceed max). Starts the discovery watch, so a name
 * unknown now may be known a moment later. */
size_t plat_client_node_stats(plat_client *c, const char *service,
    struct plat_node_stats *out, size_t max);

/*
 * Per method stats of calls by name, for a reporter (router_follow.h):
 * counted only once a drain has asked for them, so a client nobody
 * reads pays nothing. Each drain hands fn every (service, node, method)
 * seen since the last one, then forgets them. fn runs under the
 * client's lock: it must only copy.
 */
struct plat_call_stats {
	const char *service;
	const char *address;
	const char *method;
	uint64_t requests;
	uint64_t codes[17];           /* by gRPC code; [0] is the OKs */
	double latency_ms_sum;
	double latency_ms_max;
};
void plat_client_drain_stats(plat_client *c,
    void (*fn)(void *arg, const struct plat_call_stats *st), void *arg);

/*
 * Every event of the client's discovery Watch (a
 * platform.discovery.v1.WatchResponse), in order, on the watch thread:
 * after each (re)connect fn gets NULL, then the snapshot up to SYNCED,
 * then changes. Starts the watch now. fn must be quick and must not call
 * the client. Set once, before any call.
 */
void plat_client_on_discovery(plat_client *c,
    void (*fn)(void *arg, const ProtobufCMessage *event), void *arg);

/* "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" when out of range. */
const char *plat_status_name(int code);

#endif
