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
 * live nodes, see platform/selector.h), for calls that must land on one
 * node per key (spans by trace id): 0 with *addr malloc'd, or a status
 * (UNAVAILABLE: no live node) with errmsg. A node that just failed
 * passes its keys to the next best until it recovers. */
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

/* "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" when out of range. */
const char *plat_status_name(int code);

#endif
