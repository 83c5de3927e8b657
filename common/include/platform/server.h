/*
 * server: the one runtime that serves every method of every server.
 *
 * A service describes itself with a plat_service: its name, version and a
 * table of methods (full path, kind, protobuf-c descriptors, handler).
 * plat_main() does the rest: settings, logging, the gRPC server with a
 * pool of pollers on one completion queue, health and reflection, request
 * logging, self-registration with discovery, and graceful shutdown on
 * SIGTERM/SIGINT.
 *
 * Handlers see decoded messages and a plat_ctx, never gRPC itself. All
 * memory a handler takes from the context (plat_alloc, plat_new, ...) is
 * freed when the call ends.
 */
#ifndef PLATFORM_SERVER_H
#define PLATFORM_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "platform/clock.h"
#include "platform/settings.h"

/* gRPC status codes, numbered as on the wire. */
enum plat_code {
	PLAT_OK = 0,
	PLAT_CANCELLED = 1,
	PLAT_UNKNOWN = 2,
	PLAT_INVALID_ARGUMENT = 3,
	PLAT_DEADLINE_EXCEEDED = 4,
	PLAT_NOT_FOUND = 5,
	PLAT_ALREADY_EXISTS = 6,
	PLAT_PERMISSION_DENIED = 7,
	PLAT_RESOURCE_EXHAUSTED = 8,
	PLAT_FAILED_PRECONDITION = 9,
	PLAT_ABORTED = 10,
	PLAT_OUT_OF_RANGE = 11,
	PLAT_UNIMPLEMENTED = 12,
	PLAT_INTERNAL = 13,
	PLAT_UNAVAILABLE = 14,
	PLAT_DATA_LOSS = 15,
	PLAT_UNAUTHENTICATED = 16,
};

/* A stream handler returns this to keep the stream open after it returns;
 * the stream then ends by plat_stream_finish or by the client. */
#define PLAT_STREAM_OPEN (-1)
/* A unary handler returns plat_defer(ctx) (this value) to answer later,
 * from any thread, with plat_reply. */
#define PLAT_DEFERRED (-2)

typedef struct plat_ctx plat_ctx;
typedef struct plat_stream plat_stream;
typedef struct plat_server plat_server;

enum plat_method_kind {
	PLAT_METHOD_UNARY,
	PLAT_METHOD_SERVER_STREAM,
	PLAT_METHOD_CLIENT_STREAM,
	PLAT_METHOD_BIDI,
};

/* Unary: fill *resp (allocated with plat_new) and return PLAT_OK, or
 * return plat_error(ctx, code, ...). */
typedef int (*plat_unary_fn)(plat_ctx *ctx, const ProtobufCMessage *req,
    ProtobufCMessage **resp);

/* Server stream: send with plat_stream_send; return a status to end the
 * stream now, or PLAT_STREAM_OPEN after taking a reference
 * (plat_stream_ref) to go on sending from elsewhere. */
typedef int (*plat_stream_fn)(plat_ctx *ctx, const ProtobufCMessage *req,
    plat_stream *st);

/* Client-stream and bidi: on_open when the call starts, on_message for each
 * request message, on_half_close when the client is done sending. Each
 * returns PLAT_STREAM_OPEN to go on, or a status to end the call. The
 * ctx's arena is reset after each on_message. */
struct plat_bidi_handlers {
	int (*on_open)(plat_ctx *ctx, plat_stream *st);
	int (*on_message)(plat_ctx *ctx, plat_stream *st,
	    const ProtobufCMessage *msg);
	int (*on_half_close)(plat_ctx *ctx, plat_stream *st);
};

struct plat_method {
	const char *path;       /* "/platform.discovery.v1.Discovery/Register" */
	enum plat_method_kind kind;
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *response;
	plat_unary_fn unary;
	plat_stream_fn stream;
	const struct plat_bidi_handlers *bidi;
	int idempotent;         /* for clients and docs */
};

/* A unary method's entry in a service's table: the path svc_path name
 * ("/platform.config.v1.Config/" "Read") and the protobuf-c descriptors
 * pfx__type_request__descriptor and pfx__type_response__descriptor
 * (pfx: platform__config__v1, type: read). */
#define PLAT_UNARY(svc_path, name, pfx, type, fn, idem) {                \
	.path = svc_path name,                                           \
	.kind = PLAT_METHOD_UNARY,                                       \
	.request = &pfx##__##type##_request__descriptor,                 \
	.response = &pfx##__##type##_response__descriptor,               \
	.unary = fn,                                                     \
	.idempotent = idem,                                              \
}

/* The number of entries of a table defined in the same file: a service's
 * descriptor stands beside its method table, so both are constants. */
#define PLAT_COUNT(table) (sizeof(table) / sizeof((table)[0]))

struct plat_service {
	const char *name;       /* registered name: "discovery" */
	const char *grpc_service; /* "platform.discovery.v1.Discovery" */
	const char *version;
	const char *default_listen;
	const struct plat_method *methods;
	size_t nmethods;
	const struct settings_option *options;  /* service-specific flags */
	size_t noptions;
	/* With no --discovery, register with this server itself (only
	 * discovery-srv does). */
	int self_discovery;
	/* auth-srv: checks its own callers (Token and PublicKeys are open),
	 * so the guard does not run in front of its methods, and with no
	 * --auth it is its own auth-srv for this server's tokens. */
	int self_auth;
	/* router-srv: does not follow router-srv's views (every other
	 * server with --discovery does: platform/router_follow.h). */
	int self_router;
	/* The service's own settings (its options' values are set): 0, or
	 * -1 with err naming the setting, which ends the start as any bad
	 * setting does (one line, exit 2) before anything starts. May be
	 * NULL. */
	int (*check_settings)(const struct plat_settings *s, char *err,
	    size_t errlen);
	/* Called after settings are parsed and before serving; non-zero
	 * aborts the start (exit 1). May be NULL. */
	int (*init)(plat_server *srv, const struct plat_settings *s);
	/* Called once when shutdown starts, after the server left the
	 * registry and before it stops accepting: stop background work
	 * that calls other servers (the server's own client closes after
	 * the last call has drained). May be NULL. */
	void (*stopping)(plat_server *srv);
	/* Called after the last call has drained. May be NULL. */
	void (*fini)(plat_server *srv);
};

/* Runs the server to completion: returns the process exit code (0 after a
 * clean shutdown, 2 for a bad setting, 1 when it could not start). */
int plat_main(const struct plat_service *svc, int argc, char **argv);

/* ---- inside a handler ---- */

/* Sets the status message and returns code, for `return plat_error(...)`. */
int plat_error(plat_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void *plat_alloc(plat_ctx *ctx, size_t n);       /* zeroed */
char *plat_strdup(plat_ctx *ctx, const char *s);
char *plat_printf(plat_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Packs msg now as the call's response, for a handler whose response
 * points into shared data it must read under a lock: call it while holding
 * the lock, then return PLAT_OK leaving *resp NULL. 0, or -1 when the
 * message is over the size limit. */
int plat_respond_now(plat_ctx *ctx, const ProtobufCMessage *msg);

/*
 * Deferred answers, for a unary handler whose work completes elsewhere
 * (a group commit, say): plat_defer(ctx) keeps the call open after the
 * handler returns, and exactly one plat_reply(ctx, ...) later, from any
 * thread, answers it. Call plat_defer before handing ctx to the thread
 * that will reply, and return its value. Until then ctx, its arena and the request
 * stay valid; they belong to whoever will reply (one thread at a time).
 * On code != PLAT_OK the status message is the one set by plat_error on
 * ctx (call it first; its return value is the code). resp may be NULL
 * for an empty response. The server's shutdown waits for every deferred
 * call to be answered.
 */
int plat_defer(plat_ctx *ctx);
void plat_reply(plat_ctx *ctx, int code, const ProtobufCMessage *resp);

/* A zeroed, initialised message of the given descriptor. */
ProtobufCMessage *plat_new_message(plat_ctx *ctx,
    const ProtobufCMessageDescriptor *desc);
#define plat_new(ctx, type, desc) ((type *)plat_new_message((ctx), (desc)))

/* Milliseconds until the call's deadline; INT64_MAX when it has none. */
int64_t plat_ctx_deadline_left_ms(const plat_ctx *ctx);
/* The call's server span (platform/trace.h), NULL when it is not
 * traced: for attributes, and for a thread that works on the call to
 * plat_span_enter so the calls it makes are the span's children. */
struct plat_span *plat_ctx_span(plat_ctx *ctx);

/* First value of a request metadata key (lower case), or NULL. */
const char *plat_ctx_metadata(const plat_ctx *ctx, const char *key);
const char *plat_ctx_peer(const plat_ctx *ctx);

/* Who called, as the guard verified it (platform/guard.h). */
struct plat_caller {
	const char *account;            /* the access token's sub */
	int account_type;               /* 1 user, 2 service, 0 not said */
	const char *const *scopes;
	size_t nscopes;
};
/* The verified caller, or NULL when the call was not guarded (the guard
 * off, health, reflection, auth-srv's own methods). Valid for the call. */
const struct plat_caller *plat_ctx_caller(const plat_ctx *ctx);
const char *plat_ctx_method(const plat_ctx *ctx);
plat_server *plat_ctx_server(const plat_ctx *ctx);

/* ---- streams (thread-safe) ---- */

/* Packs msg and queues it. 0 when queued; -1 when the stream is closed or
 * its queue is full, in which case the stream is ended with
 * RESOURCE_EXHAUSTED (slow consumer) and the close callback runs. */
int plat_stream_send(plat_stream *st, const ProtobufCMessage *msg);
/* Ends the stream after the queued messages with code and message. */
void plat_stream_finish(plat_stream *st, int code, const char *message);
/* cb runs exactly once, on any thread, when the stream ends for any
 * reason (finish, client cancel or disconnect, overflow, shutdown). Set it
 * before returning PLAT_STREAM_OPEN. cb must not call back into st except
 * plat_stream_unref. */
void plat_stream_on_close(plat_stream *st, void (*cb)(plat_stream *, void *),
    void *arg);
int plat_stream_closed(plat_stream *st);
/* Messages queued and not yet handed to gRPC: a sender with much to send
 * (a replay of stored events) keeps this low instead of filling the
 * queue, which would end the stream as a slow consumer. */
size_t plat_stream_queued(plat_stream *st);
void plat_stream_ref(plat_stream *st);
void plat_stream_unref(plat_stream *st);

/* ---- server-wide ---- */

/* Per-service health for grpc.health.v1 ("" is the whole server). */
enum plat_health {
	PLAT_HEALTH_SERVING = 1,
	PLAT_HEALTH_NOT_SERVING = 2,
};
void plat_health_set(plat_server *srv, const char *service,
    enum plat_health status);

const struct plat_settings *plat_server_settings(const plat_server *srv);
/* The server's metrics, for service gauges (platform/metrics.h). */
struct metrics *plat_server_metrics(const plat_server *srv);
/* The address the server listens on (the bound port when :0 was given). */
const char *plat_server_address(const plat_server *srv);
/* The address it registers with discovery, and its node id: both known
 * from init on. */
const char *plat_server_advertised(const plat_server *srv);
/* When this run of the server started (Unix ms, in decimal), registered
 * as the node's metadata PLAT_MD_STARTED: a node restarted under the
 * same id has a new one. */
#define PLAT_MD_STARTED "started"
const char *plat_server_started(const plat_server *srv);
/* With --metrics-listen, the node's metadata PLAT_MD_METRICS holds the
 * host:port its /metrics is scraped at (monitor-srv's Stats). */
#define PLAT_MD_METRICS "metrics"
/* The client this server calls others with (discovery, events), sending
 * its own access token; NULL when it has neither --discovery nor an
 * identity. */
struct plat_client *plat_server_client(const plat_server *srv);
/* The server's platform events publisher (platform/events.h), for
 * plat_event_emit. */
struct plat_events *plat_server_events(const plat_server *srv);
/* A key and value the server adds to what it registers with discovery
 * (beside grpc_service and auth), from init: what it serves, say. 0, or
 * -1 past PLAT_EXTRA_METADATA_MAX pairs. Copied. */
#define PLAT_EXTRA_METADATA_MAX 4
int plat_server_add_metadata(plat_server *srv, const char *key,
    const char *value);
void plat_server_set_user(plat_server *srv, void *user);
void *plat_server_user(const plat_server *srv);
int plat_server_stopping(const plat_server *srv);


#endif
