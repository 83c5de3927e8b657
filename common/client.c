/*
 * client: synchronous calls over gRPC C core, and service names resolved
 * through discovery-srv. See platform/client.h.
 *
 * Every call gets its own pluck completion queue, so calls never share
 * polling state and any number of threads may call at once. Channels, one
 * per node address, live as long as the client.
 *
 * Resolution: the first by-name call asks GetService for that name and
 * starts one thread that keeps a Watch on every service. Until the Watch
 * has delivered its snapshot (SYNCED) the cache is only a hint: names
 * missing from it, or answers older than RESOLVE_STALE_MS, are asked for
 * again. Once synced the cache is the truth and a missing name is
 * UNAVAILABLE without a round trip. A broken Watch reconnects with backoff
 * and swaps in the new snapshot at its SYNCED marker; meanwhile the old
 * entries keep serving.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/time.h>

#include "platform/client.h"
#include "platform/trace.h"
#include "platform/jwt_verify.h"
#include "platform/errbuf.h"
#include "platform/clock.h"
#include "platform/hash.h"
#include "platform/xalloc.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/log.h"
#include "platform/balancer.h"
#include "platform/token_bucket.h"

#define CLIENT_DEADLINE_MS 5000
#define CLIENT_MAX_MSG (4 << 20)
#define CLIENT_ATTEMPTS 3
#define RETRY_BASE_MS 50
#define RETRY_CAP_MS 1000
#define WATCH_BACKOFF_MIN_MS 100
#define WATCH_BACKOFF_MAX_MS 5000
#define WATCH_POLL_MS 1000
#define RESOLVE_STALE_MS 5000
#define TLS_FILE_MAX (1 << 20)
/* Reconnect quickly to a node that comes back: the default backoff grows
 * to two minutes, longer than a heartbeat. */
#define CHANNEL_BACKOFF_INITIAL_MS 100
#define CHANNEL_BACKOFF_MAX_MS 1000

#define M_GET_SERVICE "/platform.discovery.v1.Discovery/GetService"
#define M_WATCH "/platform.discovery.v1.Discovery/Watch"

typedef Platform__Discovery__V1__Service pb_service;
typedef Platform__Discovery__V1__WatchResponse pb_event;
typedef Platform__Discovery__V1__GetServiceResponse pb_get_resp;

struct client_chan {
	char *addr;
	grpc_channel *ch;
	struct client_chan *next;
};

/* The live nodes of one service name, all versions together. */
struct rsvc {
	char *name;
	char **ids;
	char **addrs;
	size_t n, cap;
	int64_t fetched_ms;              /* when last confirmed */
	uint64_t gen;                    /* bumped when the nodes change */
	uint64_t bal_gen;                /* the gen bal was synced to */
	struct balancer bal;             /* stats, breakers, the choice */
	struct rsvc *next;
};

/* Weights from router-srv for one service (plat_client_route_set). */
struct route {
	char *service;
	char **addrs;
	uint32_t *weights;
	size_t n;
	struct route *next;
};

/* Calls by name per (service, node, method) since the last drain. */
#define CALLSTAT_BUCKETS 64
#define CALLSTAT_MAX 4096
struct callstat {
	struct plat_call_stats st;
	uint64_t hash;
	struct callstat *next;
};

/* A client-side rate limit; method "" covers the whole service. */
struct limit {
	char *service;
	char *method;
	struct token_bucket tb;
	struct limit *next;
};

struct plat_client {
	pthread_mutex_t mu;              /* chans, cache, watch state */
	grpc_channel_credentials *creds;
	grpc_arg argv[4];
	grpc_channel_args args;
	int deadline_ms;
	char *discovery;                 /* as given: "a" or "a,b,c" */
	struct plat_addrs disc;          /* its replicas */
	int (*token)(void *, char *, size_t);
	void (*token_rejected)(void *);
	void *token_arg;
	struct client_chan *chans;
	struct rsvc *cache;
	struct route *routes;
	struct limit *limits;
	int stats_on;                    /* a drain asked for call stats */
	size_t ncallstats;
	struct callstat *callstats[CALLSTAT_BUCKETS];
	void (*on_discovery)(void *, const ProtobufCMessage *);
	void *on_discovery_arg;
	int watch_started;
	int synced;                      /* the cache mirrors discovery */
	int stopping;
	plat_discovery_watch *watch;     /* keeps the cache */
	struct rsvc *fresh;              /* the watch's snapshot being built */
};

struct plat_client_stream {
	plat_client *client;
	int with_token;                  /* sent the client's token */
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata *md;
	size_t nmd;
	grpc_byte_buffer *send_bb;
	grpc_metadata_array init_md;
	grpc_metadata_array trail_md;
	grpc_byte_buffer *recv_bb;
	grpc_status_code status;
	grpc_slice details;
	int start_pending;               /* the opening batch not plucked */
	int recv_pending;
	int ended;
	/* Distinct addresses to use as completion tags. */
	char tag_start, tag_recv, tag_status;
};

static const char *const status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
	"UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};

const char *
plat_status_name(int code)
{
	if (code < 0 ||
	    (size_t)code >= sizeof(status_names) / sizeof(status_names[0]))
		return "UNKNOWN";
	return status_names[code];
}

/* ---- small helpers ---- */




static void
client_sleep_ms(int64_t ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Uniform in [ms/2, ms]: spreads retries of many clients apart. */
static int64_t
client_jitter(int64_t ms)
{
	static _Thread_local unsigned seed;

	if (seed == 0)
		seed = (unsigned)plat_now_ms() ^ (unsigned)(uintptr_t)&seed;
	if (ms < 2)
		return ms;
	return ms / 2 + rand_r(&seed) % (ms / 2 + 1);
}

static void
client_err_slice(char *errmsg, size_t errlen, grpc_slice s)
{
	size_t n = GRPC_SLICE_LENGTH(s);

	if (errmsg == NULL || errlen == 0)
		return;
	if (n >= errlen)
		n = errlen - 1;
	memcpy(errmsg, GRPC_SLICE_START_PTR(s), n);
	errmsg[n] = '\0';
}

/* Prepends "addr: " to errmsg, so a failure names the node it hit. */
static void
client_err_prefix(char *errmsg, size_t errlen, const char *addr)
{
	char buf[512];

	if (errmsg == NULL || errlen == 0)
		return;
	snprintf(buf, sizeof(buf), "%s: %s", addr, errmsg);
	snprintf(errmsg, errlen, "%s", buf);
}

/* An absolute deadline ms from now; ms <= 0 is none. */
static gpr_timespec
client_deadline(int64_t ms)
{
	if (ms <= 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	    gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ---- TLS ---- */

static char *
client_read_file(const char *path)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0, n;

	if ((f = fopen(path, "re")) == NULL)
		return NULL;
	buf = xcalloc(1, TLS_FILE_MAX + 1);
	while ((n = fread(buf + len, 1, TLS_FILE_MAX - len, f)) > 0)
		len += n;
	if (ferror(f) || len == 0 || len == TLS_FILE_MAX) {
		explicit_bzero(buf, len);
		free(buf);
		buf = NULL;
		errno = ferror(f) ? EIO : EINVAL;
	}
	fclose(f);
	return buf;
}

static void
client_free_secret(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

static int
client_load(const char *path, char **out)
{
	*out = NULL;
	if (path == NULL)
		return 0;
	if ((*out = client_read_file(path)) == NULL) {
		log_error("cannot read a TLS file", "path", path, "error",
		    strerror(errno));
		return -1;
	}
	return 0;
}

static grpc_channel_credentials *
client_creds(const struct plat_client_opts *o)
{
	grpc_channel_credentials *creds = NULL;
	grpc_ssl_pem_key_cert_pair pair;
	char *ca = NULL, *cert = NULL, *key = NULL;

	if (o->tls_ca == NULL && o->tls_cert == NULL && o->tls_key == NULL)
		return grpc_insecure_credentials_create();
	if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
		log_error("a TLS client certificate needs its key and the "
		    "key its certificate", "tls_cert", o->tls_cert,
		    "tls_key", o->tls_key);
		goto fail;
	}
	if (client_load(o->tls_ca, &ca) != 0 ||
	    client_load(o->tls_cert, &cert) != 0 ||
	    client_load(o->tls_key, &key) != 0)
		goto fail;
	pair.private_key = key;
	pair.cert_chain = cert;
	/* gRPC copies the PEM strings. */
	creds = grpc_ssl_credentials_create(ca, cert != NULL ? &pair : NULL,
	    NULL, NULL);
	if (creds == NULL)
		log_error("cannot set up TLS client credentials");
fail:
	free(ca);
	free(cert);
	client_free_secret(key);
	return creds;
}

/* ---- the client ---- */

static void
client_arg_int(grpc_arg *a, const char *key, int v)
{
	a->type = GRPC_ARG_INTEGER;
	a->key = (char *)key;
	a->value.integer = v;
}

plat_client *
plat_client_new(const struct plat_client_opts *opts)
{
	struct plat_client_opts none;
	plat_client *c;
	int max;

	if (opts == NULL) {
		memset(&none, 0, sizeof(none));
		opts = &none;
	}
	grpc_init();
	c = xcalloc(1, sizeof(*c));
	if ((c->creds = client_creds(opts)) == NULL) {
		free(c);
		grpc_shutdown();
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->deadline_ms = opts->default_deadline_ms > 0 ?
	    opts->default_deadline_ms : CLIENT_DEADLINE_MS;
	if (opts->discovery != NULL && opts->discovery[0] != '\0' &&
	    plat_addrs_parse(&c->disc, opts->discovery) == 0)
		c->discovery = xstrdup(opts->discovery);
	c->token = opts->token;
	c->token_rejected = opts->token_rejected;
	c->token_arg = opts->token_arg;
	max = opts->max_message_bytes > 0 ? opts->max_message_bytes :
	    CLIENT_MAX_MSG;
	client_arg_int(&c->argv[0], GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, max);
	client_arg_int(&c->argv[1], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, max);
	client_arg_int(&c->argv[2], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
	    CHANNEL_BACKOFF_INITIAL_MS);
	client_arg_int(&c->argv[3], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
	    CHANNEL_BACKOFF_MAX_MS);
	c->args.num_args = sizeof(c->argv) / sizeof(c->argv[0]);
	c->args.args = c->argv;
	return c;
}

static void rsvc_free_all(struct rsvc *head);
static void routes_free(struct route *head);
static void limits_free(struct limit *head);
static void callstats_clear(plat_client *c);

void
plat_client_free(plat_client *c)
{
	struct client_chan *ch, *next;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = 1;                 /* no watch starts after this */
	pthread_mutex_unlock(&c->mu);
	plat_discovery_watch_stop(c->watch);
	rsvc_free_all(c->fresh);

	for (ch = c->chans; ch != NULL; ch = next) {
		next = ch->next;
		grpc_channel_destroy(ch->ch);
		free(ch->addr);
		free(ch);
	}
	rsvc_free_all(c->cache);
	routes_free(c->routes);
	limits_free(c->limits);
	callstats_clear(c);
	grpc_channel_credentials_release(c->creds);
	free(c->discovery);
	plat_addrs_free(&c->disc);
	pthread_mutex_destroy(&c->mu);
	free(c);
	grpc_shutdown();
}

/* The channel to addr, made on first use. */
static grpc_channel *
client_channel(plat_client *c, const char *addr)
{
	struct client_chan *ch;

	pthread_mutex_lock(&c->mu);
	for (ch = c->chans; ch != NULL; ch = ch->next)
		if (strcmp(ch->addr, addr) == 0)
			break;
	if (ch == NULL) {
		ch = xcalloc(1, sizeof(*ch));
		ch->addr = xstrdup(addr);
		ch->ch = grpc_channel_create(addr, c->creds, &c->args);
		ch->next = c->chans;
		c->chans = ch;
	}
	pthread_mutex_unlock(&c->mu);
	return ch->ch;
}

/* ---- messages and metadata ---- */

static grpc_byte_buffer *
client_pack(const ProtobufCMessage *m)
{
	grpc_byte_buffer *bb;
	grpc_slice s;

	s = grpc_slice_malloc(protobuf_c_message_get_packed_size(m));
	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

static int
client_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **out)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;

	*out = NULL;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return -1;
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	*out = protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s),
	    GRPC_SLICE_START_PTR(s));
	grpc_slice_unref(s);
	return *out != NULL ? 0 : -1;
}

#define AUTHORIZATION "authorization"
#define BEARER "Bearer "

/*
 * kv is key, value, ..., NULL; a trailing key without value is ignored.
 * With an outbound identity and no "authorization" in kv, the client's
 * token is added (*with_token says so). The token is only ever in the
 * gRPC slice, wiped here from the stack copy. With a span (and no
 * traceparent in kv), its context goes too.
 */
static grpc_metadata *
client_md_new(plat_client *c, const char *const *kv, size_t *n,
    int *with_token, const struct plat_span *span)
{
	grpc_metadata *md;
	size_t i, count = 0;
	int own = 0, traced;
	char tok[sizeof(BEARER) + JWT_TOKEN_MAX];
	char tp[PLAT_TRACEPARENT_LEN + 1];

	*n = 0;
	*with_token = 0;
	traced = span != NULL;
	while (kv != NULL && kv[2 * count] != NULL && kv[2 * count + 1] != NULL) {
		if (strcmp(kv[2 * count], AUTHORIZATION) == 0)
			own = 1;
		if (strcmp(kv[2 * count], "traceparent") == 0)
			traced = 0;
		count++;
	}
	if (c->token != NULL && !own) {
		memcpy(tok, BEARER, sizeof(BEARER) - 1);
		*with_token = c->token(c->token_arg, tok + sizeof(BEARER) - 1,
		    sizeof(tok) - (sizeof(BEARER) - 1)) == 0;
	}
	if (count + (size_t)*with_token + (size_t)traced == 0)
		return NULL;
	md = xcalloc(count + 3, sizeof(*md));
	for (i = 0; i < count; i++) {
		md[i].key = grpc_slice_from_copied_string(kv[2 * i]);
		md[i].value = grpc_slice_from_copied_string(kv[2 * i + 1]);
	}
	if (traced) {
		plat_traceparent_format(&span->ctx, tp);
		md[i].key = grpc_slice_from_static_string("traceparent");
		md[i++].value = grpc_slice_from_copied_string(tp);
		if (span->tracestate[0] != '\0') {
			md[i].key = grpc_slice_from_static_string("tracestate");
			md[i++].value = grpc_slice_from_copied_string(
			    span->tracestate);
		}
		count = i;
	}
	if (*with_token) {
		md[i].key = grpc_slice_from_static_string(AUTHORIZATION);
		md[i].value = grpc_slice_from_copied_string(tok);
		explicit_bzero(tok, sizeof(tok));
		count++;
	}
	*n = count;
	return md;
}

/* A server refused the token the client sent: renew it next time. */
static void
client_token_check(plat_client *c, int with_token, int status)
{
	if (with_token && status == GRPC_STATUS_UNAUTHENTICATED &&
	    c->token_rejected != NULL)
		c->token_rejected(c->token_arg);
}

/* Checked before a call starts, so a bad key is the caller's
 * INVALID_ARGUMENT rather than a gRPC core error line. */
static int
client_md_check(const char *const *kv, const char *method, char *errmsg,
    size_t errlen)
{
	grpc_slice k, v;

	for (size_t i = 0; kv != NULL && kv[i] != NULL && kv[i + 1] != NULL;
	    i += 2) {
		k = grpc_slice_from_static_string(kv[i]);
		v = grpc_slice_from_static_string(kv[i + 1]);
		if (!grpc_header_key_is_legal(k)) {
			errbuf_set(errmsg, errlen, "%s: metadata key \"%s\" "
			    "is not a valid header name", method, kv[i]);
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
		if (!grpc_is_binary_header(k) &&
		    !grpc_header_nonbin_value_is_legal(v)) {
			errbuf_set(errmsg, errlen, "%s: metadata \"%s\" has "
			    "a value that is not printable ASCII (use a -bin "
			    "key)", method, kv[i]);
			return GRPC_STATUS_INVALID_ARGUMENT;
		}
	}
	return GRPC_STATUS_OK;
}

static void
client_md_free(grpc_metadata *md, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		grpc_slice_unref(md[i].key);
		grpc_slice_unref(md[i].value);
	}
	free(md);
}

/* Shut down and drain a pluck queue whose tags were all plucked. */
static void
client_cq_destroy(grpc_completion_queue *cq)
{
	grpc_event ev;

	grpc_completion_queue_shutdown(cq);
	do
		ev = grpc_completion_queue_pluck(cq, NULL,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	while (ev.type != GRPC_QUEUE_SHUTDOWN);
	grpc_completion_queue_destroy(cq);
}

static grpc_call *
client_new_call(plat_client *c, const char *addr, const char *method,
    grpc_completion_queue *cq, int64_t deadline_ms)
{
	grpc_channel *ch = client_channel(c, addr);
	grpc_slice m = grpc_slice_from_copied_string(method);
	grpc_call *call;

	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
	    m, NULL, client_deadline(deadline_ms), NULL);
	grpc_slice_unref(m);
	return call;
}

static int
client_batch_error(grpc_call_error err, const char *method, char *errmsg,
    size_t errlen)
{
	errbuf_set(errmsg, errlen, "%s: cannot start the call: %s", method,
	    grpc_call_error_to_string(err));
	return err == GRPC_CALL_ERROR_INVALID_METADATA ?
	    GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_INTERNAL;
}

/* ---- unary ---- */

/* One attempt: one batch with every op, plucked once. */
static int
client_unary_once(plat_client *c, const char *addr, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
    ProtobufCMessage **resp, const char *const *metadata, int64_t deadline_ms,
    char *errmsg, size_t errlen)
{
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata *md;
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *send_bb, *recv_bb = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_call_error err;
	grpc_op ops[6], *op = ops;
	size_t nmd;
	int rc, with_token;
	struct plat_span span, *parent;

	/* A call made inside a traced one is a child span of it. */
	if ((parent = plat_span_current()) != NULL) {
		plat_span_start(&span, PLAT_SPAN_CLIENT, method + 1,
		    &parent->ctx, NULL, parent->tracestate);
		plat_span_attr(&span, "rpc.system", "grpc");
		plat_span_attr(&span, "net.peer.name", addr);
	}
	cq = grpc_completion_queue_create_for_pluck(NULL);
	call = client_new_call(c, addr, method, cq, deadline_ms);
	md = client_md_new(c, metadata, &nmd, &with_token,
	    parent != NULL ? &span : NULL);
	send_bb = client_pack(req);
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);

	memset(ops, 0, sizeof(ops));
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op->data.send_initial_metadata.count = nmd;
	op->data.send_initial_metadata.metadata = md;
	op++;
	op->op = GRPC_OP_SEND_MESSAGE;
	op->data.send_message.send_message = send_bb;
	op++;
	op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	op++;
	op->op = GRPC_OP_RECV_INITIAL_METADATA;
	op->data.recv_initial_metadata.recv_initial_metadata = &init_md;
	op++;
	op->op = GRPC_OP_RECV_MESSAGE;
	op->data.recv_message.recv_message = &recv_bb;
	op++;
	op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op->data.recv_status_on_client.trailing_metadata = &trail_md;
	op->data.recv_status_on_client.status = &status;
	op->data.recv_status_on_client.status_details = &details;
	op++;

	err = grpc_call_start_batch(call, ops, (size_t)(op - ops), call, NULL);
	if (err != GRPC_CALL_OK) {
		rc = client_batch_error(err, method, errmsg, errlen);
		goto out;
	}
	/* The call's deadline bounds this wait. */
	grpc_completion_queue_pluck(cq, call,
	    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (status != GRPC_STATUS_OK) {
		rc = status;
		client_err_slice(errmsg, errlen, details);
		client_token_check(c, with_token, status);
		goto out;
	}
	if (recv_bb == NULL) {
		rc = GRPC_STATUS_INTERNAL;
		errbuf_set(errmsg, errlen, "%s: the server sent no response "
		    "message", method);
		goto out;
	}
	if (client_unpack(recv_bb, resp_desc, resp) != 0) {
		rc = GRPC_STATUS_INTERNAL;
		errbuf_set(errmsg, errlen, "%s: cannot decode the response "
		    "as %s", method, resp_desc->name);
		goto out;
	}
	rc = GRPC_STATUS_OK;
out:
	if (recv_bb != NULL)
		grpc_byte_buffer_destroy(recv_bb);
	grpc_byte_buffer_destroy(send_bb);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	grpc_slice_unref(details);
	client_md_free(md, nmd);
	grpc_call_unref(call);
	client_cq_destroy(cq);
	if (parent != NULL)
		plat_span_end(&span, rc, rc != GRPC_STATUS_OK ? errmsg : "");
	return rc;
}

static int client_resolve(plat_client *c, const char *service,
    const uint64_t *key, char **addr, int64_t deadline_ms, char *errmsg,
    size_t errlen);
static int client_limit_take(plat_client *c, const char *service,
    const char *method);
static void client_mark(plat_client *c, const char *service,
    const char *addr, const char *method, int rc, double latency_ms);

/*
 * The retry loop shared by both unary entry points: a fixed address when
 * service is NULL, else a node picked afresh for each attempt. One
 * deadline covers every attempt and the pauses between them.
 */
static int
client_unary(plat_client *c, const char *addr, const char *service,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    const struct plat_call_opts *opts, char *errmsg, size_t errlen)
{
	int64_t end, left, t0, delay = RETRY_BASE_MS;
	int attempts = 1, rc = GRPC_STATUS_UNAVAILABLE;
	char *node;

	*resp = NULL;
	if (errmsg != NULL && errlen > 0)
		errmsg[0] = '\0';
	left = opts != NULL && opts->deadline_ms > 0 ? opts->deadline_ms :
	    c->deadline_ms;
	end = plat_now_ms() + left;
	if (opts != NULL && opts->idempotent)
		attempts = opts->max_attempts > 0 ? opts->max_attempts :
		    CLIENT_ATTEMPTS;
	if ((rc = client_md_check(opts != NULL ? opts->metadata : NULL,
	    method, errmsg, errlen)) != GRPC_STATUS_OK)
		return rc;
	if (service != NULL && !client_limit_take(c, service, method)) {
		errbuf_set(errmsg, errlen, "%s: over the client-side rate "
		    "limit for %s", method, service);
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	}

	for (int i = 0; i < attempts; i++) {
		if (i > 0) {
			int64_t pause = client_jitter(delay);

			/* No time left for a pause and a try: report the
			 * last failure rather than a deadline. */
			if (plat_now_ms() + pause >= end)
				break;
			client_sleep_ms(pause);
			if ((delay *= 2) > RETRY_CAP_MS)
				delay = RETRY_CAP_MS;
		}
		if ((left = end - plat_now_ms()) <= 0)
			break;
		node = NULL;
		if (service != NULL) {
			rc = client_resolve(c, service, NULL, &node, left,
			    errmsg, errlen);
			if (rc != GRPC_STATUS_OK) {
				if (rc == GRPC_STATUS_UNAVAILABLE)
					continue;
				break;
			}
			if ((left = end - plat_now_ms()) <= 0) {
				client_mark(c, service, node, method, -1, 0);
				free(node);
				rc = GRPC_STATUS_DEADLINE_EXCEEDED;
				errbuf_set(errmsg, errlen, "deadline exceeded "
				    "while resolving \"%s\"", service);
				break;
			}
		}
		t0 = plat_now_us();
		rc = client_unary_once(c, node != NULL ? node : addr, method,
		    req, resp_desc, resp, opts != NULL ? opts->metadata : NULL,
		    left, errmsg, errlen);
		if (node != NULL) {
			client_mark(c, service, node, method, rc,
			    (double)(plat_now_us() - t0) / 1000.0);
			if (rc == GRPC_STATUS_UNAVAILABLE ||
			    rc == GRPC_STATUS_DEADLINE_EXCEEDED)
				client_err_prefix(errmsg, errlen, node);
			free(node);
		}
		if (rc != GRPC_STATUS_UNAVAILABLE)
			break;
	}
	return rc;
}

int
plat_client_call_addr(plat_client *c, const char *address,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    const struct plat_call_opts *opts, char *errmsg, size_t errlen)
{
	if (address == NULL || address[0] == '\0') {
		*resp = NULL;
		errbuf_set(errmsg, errlen, "%s: no address to call", method);
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	return client_unary(c, address, NULL, method, req, resp_desc, resp,
	    opts, errmsg, errlen);
}

/* ---- replicas ---- */

int
plat_addrs_parse(struct plat_addrs *l, const char *list)
{
	const char *p = list, *comma;

	memset(l, 0, sizeof(*l));
	if (list == NULL || list[0] == '\0')
		return -1;
	do {
		size_t n;

		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n == 0) {
			plat_addrs_free(l);
			return -1;
		}
		l->addr = xrealloc(l->addr, (l->n + 1) * sizeof(*l->addr));
		l->addr[l->n] = xcalloc(1, n + 1);
		memcpy(l->addr[l->n++], p, n);
		if (comma != NULL)
			p = comma + 1;
	} while (comma != NULL);
	atomic_init(&l->cur, 0);
	return 0;
}

void
plat_addrs_free(struct plat_addrs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->addr[i]);
	free(l->addr);
	l->addr = NULL;
	l->n = 0;
}

const char *
plat_addrs_current(struct plat_addrs *l)
{
	return l->n == 0 ? NULL : l->addr[atomic_load(&l->cur) % l->n];
}

void
plat_addrs_failed(struct plat_addrs *l, const char *addr)
{
	size_t cur;

	if (l->n < 2)
		return;
	cur = atomic_load(&l->cur);
	/* Only the caller that saw the current one fail moves it on. */
	if (strcmp(l->addr[cur % l->n], addr) == 0)
		atomic_compare_exchange_strong(&l->cur, &cur, cur + 1);
}

int
plat_client_call_any(plat_client *c, struct plat_addrs *l,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
    const struct plat_call_opts *opts, char *errmsg, size_t errlen)
{
	int rc = GRPC_STATUS_UNAVAILABLE;

	*resp = NULL;
	if (l == NULL || l->n == 0) {
		errbuf_set(errmsg, errlen, "%s: no address to call", method);
		return GRPC_STATUS_FAILED_PRECONDITION;
	}
	for (size_t i = 0; i < l->n; i++) {
		const char *addr = plat_addrs_current(l);

		rc = client_unary(c, addr, NULL, method, req, resp_desc, resp,
		    opts, errmsg, errlen);
		if (rc != GRPC_STATUS_UNAVAILABLE &&
		    rc != GRPC_STATUS_DEADLINE_EXCEEDED)
			return rc;
		if (*resp != NULL)
			protobuf_c_message_free_unpacked(*resp, NULL);
		*resp = NULL;
		plat_addrs_failed(l, addr);
	}
	return rc;
}

int
plat_client_call_discovery(plat_client *c, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
    ProtobufCMessage **resp, const struct plat_call_opts *opts,
    char *errmsg, size_t errlen)
{
	return plat_client_call_any(c, &c->disc, method, req, resp_desc, resp,
	    opts, errmsg, errlen);
}

int
plat_client_call(plat_client *c, const char *service, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
    ProtobufCMessage **resp, const struct plat_call_opts *opts,
    char *errmsg, size_t errlen)
{
	if (service == NULL || service[0] == '\0') {
		*resp = NULL;
		errbuf_set(errmsg, errlen, "%s: no service name to call",
		    method);
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	return client_unary(c, NULL, service, method, req, resp_desc, resp,
	    opts, errmsg, errlen);
}

int
plat_client_route(plat_client *c, const char *service, uint64_t key,
    int timeout_ms, char **addr, char *errmsg, size_t errlen)
{
	return client_resolve(c, service, &key, addr,
	    timeout_ms > 0 ? timeout_ms : c->deadline_ms, errmsg, errlen);
}

/* ---- server streaming ---- */

static void
stream_free_sent(plat_client_stream *s)
{
	client_md_free(s->md, s->nmd);
	s->md = NULL;
	s->nmd = 0;
	if (s->send_bb != NULL)
		grpc_byte_buffer_destroy(s->send_bb);
	s->send_bb = NULL;
}

static void
stream_pluck(plat_client_stream *s, void *tag)
{
	grpc_completion_queue_pluck(s->cq, tag,
	    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

int
plat_client_stream_open(plat_client *c, const char *address,
    const char *method, const ProtobufCMessage *req, int deadline_ms,
    const char *const *metadata, plat_client_stream **out,
    char *errmsg, size_t errlen)
{
	plat_client_stream *s;
	grpc_call_error err;
	grpc_op ops[4], *op = ops;
	int rc;

	*out = NULL;
	if (address == NULL || address[0] == '\0') {
		errbuf_set(errmsg, errlen, "%s: no address to call", method);
		return GRPC_STATUS_INVALID_ARGUMENT;
	}
	if ((rc = client_md_check(metadata, method, errmsg, errlen)) !=
	    GRPC_STATUS_OK)
		return rc;
	s = xcalloc(1, sizeof(*s));
	s->status = GRPC_STATUS_UNKNOWN;
	s->details = grpc_empty_slice();
	grpc_metadata_array_init(&s->init_md);
	grpc_metadata_array_init(&s->trail_md);
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	s->call = client_new_call(c, address, method, s->cq, deadline_ms);
	s->client = c;
	s->md = client_md_new(c, metadata, &s->nmd, &s->with_token,
	    plat_span_current());
	s->send_bb = client_pack(req);

	memset(ops, 0, sizeof(ops));
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op->data.send_initial_metadata.count = s->nmd;
	op->data.send_initial_metadata.metadata = s->md;
	op++;
	op->op = GRPC_OP_SEND_MESSAGE;
	op->data.send_message.send_message = s->send_bb;
	op++;
	op->op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	op++;
	op->op = GRPC_OP_RECV_INITIAL_METADATA;
	op->data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
	op++;
	err = grpc_call_start_batch(s->call, ops, (size_t)(op - ops),
	    &s->tag_start, NULL);
	if (err != GRPC_CALL_OK) {
		rc = client_batch_error(err, method, errmsg, errlen);
		s->ended = 1;
		plat_client_stream_free(s);
		return rc;
	}
	s->start_pending = 1;
	*out = s;
	return GRPC_STATUS_OK;
}

/* The stream is over: collect the status and every outstanding tag. */
static void
stream_finish(plat_client_stream *s)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
	op.data.recv_status_on_client.status = &s->status;
	op.data.recv_status_on_client.status_details = &s->details;
	if (grpc_call_start_batch(s->call, &op, 1, &s->tag_status, NULL) ==
	    GRPC_CALL_OK)
		stream_pluck(s, &s->tag_status);
	else
		s->status = GRPC_STATUS_UNKNOWN;
	client_token_check(s->client, s->with_token, s->status);
	if (s->start_pending) {
		stream_pluck(s, &s->tag_start);
		s->start_pending = 0;
	}
	stream_free_sent(s);
	s->ended = 1;
}

int
plat_client_stream_next(plat_client_stream *s,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
    int timeout_ms)
{
	gpr_timespec until;
	grpc_event ev;
	grpc_op op;

	*msg = NULL;
	if (s->ended)
		return PLAT_STREAM_END;
	if (!s->recv_pending) {
		memset(&op, 0, sizeof(op));
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &s->recv_bb;
		if (grpc_call_start_batch(s->call, &op, 1, &s->tag_recv,
		    NULL) != GRPC_CALL_OK) {
			grpc_call_cancel_with_status(s->call,
			    GRPC_STATUS_INTERNAL, "cannot read the stream",
			    NULL);
			stream_finish(s);
			return PLAT_STREAM_END;
		}
		s->recv_pending = 1;
	}
	until = timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME) :
	    gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	ev = grpc_completion_queue_pluck(s->cq, &s->tag_recv, until, NULL);
	if (ev.type == GRPC_QUEUE_TIMEOUT)
		return PLAT_STREAM_TIMEOUT;     /* the read stays pending */
	s->recv_pending = 0;
	if (s->recv_bb != NULL) {
		int bad = client_unpack(s->recv_bb, desc, msg) != 0;

		grpc_byte_buffer_destroy(s->recv_bb);
		s->recv_bb = NULL;
		if (!bad)
			return PLAT_STREAM_MESSAGE;
		grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL,
		    "cannot decode a stream message", NULL);
	}
	/* No message: the server closed the stream, or the call failed. */
	stream_finish(s);
	return PLAT_STREAM_END;
}

int
plat_client_stream_status(plat_client_stream *s, char *errmsg,
    size_t errlen)
{
	if (!s->ended) {
		errbuf_set(errmsg, errlen, "the stream has not ended");
		return GRPC_STATUS_UNKNOWN;
	}
	client_err_slice(errmsg, errlen, s->details);
	return s->status;
}

void
plat_client_stream_cancel(plat_client_stream *s)
{
	if (s != NULL && s->call != NULL)
		grpc_call_cancel(s->call, NULL);
}

void
plat_client_stream_free(plat_client_stream *s)
{
	if (s == NULL)
		return;
	/* Cancelling completes whatever is pending, so the plucks return. */
	if (!s->ended)
		grpc_call_cancel(s->call, NULL);
	if (s->recv_pending)
		stream_pluck(s, &s->tag_recv);
	if (s->start_pending)
		stream_pluck(s, &s->tag_start);
	if (s->recv_bb != NULL)
		grpc_byte_buffer_destroy(s->recv_bb);
	stream_free_sent(s);
	grpc_metadata_array_destroy(&s->init_md);
	grpc_metadata_array_destroy(&s->trail_md);
	grpc_slice_unref(s->details);
	grpc_call_unref(s->call);
	client_cq_destroy(s->cq);
	free(s);
}

/* ---- the resolver cache ---- */

static struct rsvc *
rsvc_find(struct rsvc *head, const char *name)
{
	for (; head != NULL; head = head->next)
		if (strcmp(head->name, name) == 0)
			return head;
	return NULL;
}

static struct rsvc *
rsvc_get(struct rsvc **head, const char *name)
{
	struct rsvc *s;

	if ((s = rsvc_find(*head, name)) != NULL)
		return s;
	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(name);
	balancer_init(&s->bal, NULL, (uint64_t)plat_now_us() ^
	    (uint64_t)(uintptr_t)s);
	s->bal_gen = UINT64_MAX;
	s->next = *head;
	*head = s;
	return s;
}

static void
rsvc_clear(struct rsvc *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->ids[i]);
		free(s->addrs[i]);
	}
	s->n = 0;
	s->gen++;
}

static void
rsvc_free_all(struct rsvc *head)
{
	struct rsvc *next;

	for (; head != NULL; head = next) {
		next = head->next;
		rsvc_clear(head);
		balancer_free(&head->bal);
		free(head->ids);
		free(head->addrs);
		free(head->name);
		free(head);
	}
}

static void
rsvc_upsert(struct rsvc *s, const char *id, const char *addr)
{
	size_t i;

	if (addr == NULL || addr[0] == '\0')
		return;
	for (i = 0; i < s->n; i++)
		if (strcmp(s->ids[i], id) == 0) {
			if (strcmp(s->addrs[i], addr) != 0) {
				free(s->addrs[i]);
				s->addrs[i] = xstrdup(addr);
				s->gen++;
			}
			return;
		}
	if (s->n == s->cap) {
		s->cap = s->cap != 0 ? s->cap * 2 : 4;
		if ((s->ids = realloc(s->ids, s->cap * sizeof(char *))) ==
		    NULL ||
		    (s->addrs = realloc(s->addrs, s->cap * sizeof(char *))) ==
		    NULL)
			abort();
	}
	s->ids[s->n] = xstrdup(id);
	s->addrs[s->n] = xstrdup(addr);
	s->n++;
	s->gen++;
}

static void
rsvc_remove(struct rsvc *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->ids[i], id) == 0) {
			free(s->ids[i]);
			free(s->addrs[i]);
			s->n--;
			s->gen++;
			s->ids[i] = s->ids[s->n];
			s->addrs[i] = s->addrs[s->n];
			return;
		}
}

static void
rsvc_add_service(struct rsvc **head, const pb_service *svc, int64_t now)
{
	struct rsvc *s = rsvc_get(head, svc->name);

	for (size_t i = 0; i < svc->n_nodes; i++)
		rsvc_upsert(s, svc->nodes[i]->id, svc->nodes[i]->address);
	s->fetched_ms = now;
}

static void
rsvc_apply(struct rsvc **head, const pb_event *ev, int64_t now)
{
	struct rsvc *s;

	if (ev->service == NULL || ev->service->name[0] == '\0')
		return;
	switch (ev->type) {
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_CREATED:
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_UPDATED:
		rsvc_add_service(head, ev->service, now);
		break;
	case PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_DELETED:
		if ((s = rsvc_find(*head, ev->service->name)) == NULL)
			break;
		for (size_t i = 0; i < ev->service->n_nodes; i++)
			rsvc_remove(s, ev->service->nodes[i]->id);
		s->fetched_ms = now;
		break;
	default:
		break;
	}
}

/* Swaps in a fresh snapshot, keeping each name's balancer: the nodes'
 * stats and breakers live on. */
static void
client_swap_cache_locked(plat_client *c, struct rsvc *fresh)
{
	struct rsvc *s, *old;
	struct balancer tmp;

	for (s = fresh; s != NULL; s = s->next)
		if ((old = rsvc_find(c->cache, s->name)) != NULL) {
			tmp = s->bal;
			s->bal = old->bal;
			old->bal = tmp;
		}
	rsvc_free_all(c->cache);
	c->cache = fresh;
}

static struct route *
route_find(struct route *head, const char *service)
{
	for (; head != NULL; head = head->next)
		if (strcmp(head->service, service) == 0)
			return head;
	return NULL;
}

/* Brings s's balancer up to its node list and router-srv's weights. */
static void
client_balancer_sync_locked(plat_client *c, struct rsvc *s)
{
	struct route *r;

	if (s->bal_gen == s->gen)
		return;
	balancer_sync(&s->bal, (const char *const *)s->addrs, s->n);
	if ((r = route_find(c->routes, s->name)) != NULL)
		balancer_set_weights(&s->bal, (const char *const *)r->addrs,
		    r->weights, r->n);
	s->bal_gen = s->gen;
}

/* Picks a node of service into *addr (for key when not NULL); 0 when
 * there is none to pick (or, unless stale_ok, the entry is an
 * unconfirmed old answer). */
static int
client_pick_locked(plat_client *c, const char *service, const uint64_t *key,
    char **addr, int stale_ok)
{
	struct rsvc *s;
	int64_t now = plat_now_ms();
	int i;

	if ((s = rsvc_find(c->cache, service)) == NULL || s->n == 0)
		return 0;
	if (!c->synced && !stale_ok && now - s->fetched_ms > RESOLVE_STALE_MS)
		return 0;
	client_balancer_sync_locked(c, s);
	i = key != NULL ? balancer_pick_key(&s->bal, *key, now) :
	    balancer_pick(&s->bal, now);
	if (i < 0)
		return 0;
	*addr = xstrdup(s->bal.nodes[i].addr);
	return 1;
}

static uint64_t
callstat_hash(const char *service, const char *addr, const char *method)
{
	const char *parts[3] = { service, addr, method };
	uint64_t h = 1469598103934665603ULL;

	for (int i = 0; i < 3; i++)
		h = (plat_fnv1a_str(h, parts[i]) ^ 0xff) * PLAT_FNV_PRIME;
	return h;
}

static void
callstat_add_locked(plat_client *c, const char *service, const char *addr,
    const char *method, int rc, double latency_ms)
{
	uint64_t h = callstat_hash(service, addr, method);
	struct callstat **bucket = &c->callstats[h % CALLSTAT_BUCKETS], *cs;

	for (cs = *bucket; cs != NULL; cs = cs->next)
		if (cs->hash == h && strcmp(cs->st.method, method) == 0 &&
		    strcmp(cs->st.address, addr) == 0 &&
		    strcmp(cs->st.service, service) == 0)
			break;
	if (cs == NULL) {
		if (c->ncallstats >= CALLSTAT_MAX)
			return;         /* bounded; drained every second */
		cs = xcalloc(1, sizeof(*cs));
		cs->st.service = xstrdup(service);
		cs->st.address = xstrdup(addr);
		cs->st.method = xstrdup(method);
		cs->hash = h;
		cs->next = *bucket;
		*bucket = cs;
		c->ncallstats++;
	}
	cs->st.requests++;
	if (rc >= 0 && rc < 17)
		cs->st.codes[rc]++;
	cs->st.latency_ms_sum += latency_ms;
	if (latency_ms > cs->st.latency_ms_max)
		cs->st.latency_ms_max = latency_ms;
}

static void
callstats_clear(plat_client *c)
{
	struct callstat *cs, *next;

	for (size_t b = 0; b < CALLSTAT_BUCKETS; b++) {
		for (cs = c->callstats[b]; cs != NULL; cs = next) {
			next = cs->next;
			free((char *)cs->st.service);
			free((char *)cs->st.address);
			free((char *)cs->st.method);
			free(cs);
		}
		c->callstats[b] = NULL;
	}
	c->ncallstats = 0;
}

void
plat_client_drain_stats(plat_client *c,
    void (*fn)(void *arg, const struct plat_call_stats *st), void *arg)
{
	pthread_mutex_lock(&c->mu);
	c->stats_on = 1;
	for (size_t b = 0; b < CALLSTAT_BUCKETS; b++)
		for (struct callstat *cs = c->callstats[b]; cs != NULL;
		    cs = cs->next)
			fn(arg, &cs->st);
	callstats_clear(c);
	pthread_mutex_unlock(&c->mu);
}

/* The outcome of a call to addr, picked by client_pick_locked. rc -1:
 * the call was never made. */
static void
client_mark(plat_client *c, const char *service, const char *addr,
    const char *method, int rc, double latency_ms)
{
	struct rsvc *s;

	pthread_mutex_lock(&c->mu);
	if (rc >= 0 && c->stats_on)
		callstat_add_locked(c, service, addr, method, rc, latency_ms);
	if ((s = rsvc_find(c->cache, service)) != NULL) {
		if (rc < 0)
			balancer_release(&s->bal, addr);
		else
			balancer_done(&s->bal, addr, rc, latency_ms,
			    plat_now_ms());
	}
	pthread_mutex_unlock(&c->mu);
}

/* ---- discovery watches ---- */

struct plat_discovery_watch {
	plat_client *c;
	char *service;
	struct plat_discovery_watch_cb cb;
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	plat_client_stream *stream;      /* open now, for stop to cancel */
	pthread_t thr;
};

/* Sleeps up to ms unless the watch is stopping; 1 when stopping. */
static int
watch_wait_locked(plat_discovery_watch *w, int64_t ms)
{
	return plat_cond_wait_ms(&w->cv, &w->mu, ms, &w->stop);
}

/* Reads one Watch stream until it ends. Returns 1 if it got synced. */
static int
watch_run(plat_discovery_watch *w, plat_client_stream *s)
{
	ProtobufCMessage *m;
	pb_event *ev;
	int r, synced = 0;

	for (;;) {
		r = plat_client_stream_next(s,
		    &platform__discovery__v1__watch_response__descriptor, &m,
		    WATCH_POLL_MS);
		if (r == PLAT_STREAM_TIMEOUT) {
			int stop;

			pthread_mutex_lock(&w->mu);
			stop = w->stop;
			pthread_mutex_unlock(&w->mu);
			if (stop)
				break;
			continue;
		}
		if (r != PLAT_STREAM_MESSAGE)
			break;
		ev = (pb_event *)m;
		if (!synced && ev->type ==
		    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_SYNCED) {
			synced = 1;
			if (w->cb.synced != NULL)
				w->cb.synced(w->arg);
		} else if (ev->type !=
		    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_SYNCED &&
		    w->cb.event != NULL) {
			w->cb.event(w->arg, ev, synced);
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return synced;
}

static void *
watch_main(void *arg)
{
	Platform__Discovery__V1__WatchRequest req =
	    PLATFORM__DISCOVERY__V1__WATCH_REQUEST__INIT;
	plat_discovery_watch *w = arg;
	plat_client *c = w->c;
	plat_client_stream *s;
	const char *addr;
	int64_t backoff = WATCH_BACKOFF_MIN_MS;
	char err[256];
	int rc, was_synced = 0;

	req.service = w->service;
	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		pthread_mutex_unlock(&w->mu);
		err[0] = '\0';
		addr = plat_addrs_current(&c->disc);
		rc = plat_client_stream_open(c, addr, M_WATCH,
		    &req.base, 0, NULL, &s, err, sizeof(err));
		if (rc == GRPC_STATUS_OK) {
			pthread_mutex_lock(&w->mu);
			w->stream = s;
			if (w->stop)
				plat_client_stream_cancel(s);
			pthread_mutex_unlock(&w->mu);
			if (w->cb.begin != NULL)
				w->cb.begin(w->arg);
			if (watch_run(w, s)) {
				was_synced = 1;
				backoff = WATCH_BACKOFF_MIN_MS;
			}
			if (w->cb.lost != NULL)
				w->cb.lost(w->arg);
			pthread_mutex_lock(&w->mu);
			w->stream = NULL;
			pthread_mutex_unlock(&w->mu);
			rc = plat_client_stream_status(s, err, sizeof(err));
			plat_client_stream_free(s);
		}
		pthread_mutex_lock(&w->mu);
		if (w->stop)
			break;
		/* The next replica, if there is one, gets the next try. */
		plat_addrs_failed(&c->disc, addr);
		/* Say so once when a working watch breaks. */
		if (was_synced) {
			log_warn("discovery watch lost; reconnecting",
			    "discovery", addr, "status",
			    plat_status_name(rc), "message", err);
			was_synced = 0;
			/* Straight to the next replica: no backoff. */
			if (c->disc.n > 1) {
				backoff = WATCH_BACKOFF_MIN_MS;
				continue;
			}
		}
		watch_wait_locked(w, client_jitter(backoff));
		if ((backoff *= 2) > WATCH_BACKOFF_MAX_MS)
			backoff = WATCH_BACKOFF_MAX_MS;
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

plat_discovery_watch *
plat_discovery_watch_start(plat_client *c, const char *service,
    const struct plat_discovery_watch_cb *cb, void *arg)
{
	plat_discovery_watch *w;

	if (c->discovery == NULL)
		return NULL;
	w = xcalloc(1, sizeof(*w));
	w->c = c;
	w->service = xstrdup(service != NULL ? service : "");
	w->cb = *cb;
	w->arg = arg;
	pthread_mutex_init(&w->mu, NULL);
	plat_cond_init(&w->cv);
	if (pthread_create(&w->thr, NULL, watch_main, w) != 0) {
		log_warn("cannot start a discovery watch thread");
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w->service);
		free(w);
		return NULL;
	}
	return w;
}

void
plat_discovery_watch_stop(plat_discovery_watch *w)
{
	if (w == NULL)
		return;
	/* Cancelling the stream ends its pluck at once. */
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	if (w->stream != NULL)
		plat_client_stream_cancel(w->stream);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thr, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->service);
	free(w);
}

/* The client's own watch on every service keeps its cache: a snapshot
 * is built aside and swapped in at SYNCED, so the old entries serve
 * meanwhile. */
static void
cache_begin(void *arg)
{
	plat_client *c = arg;

	rsvc_free_all(c->fresh);
	c->fresh = NULL;
	if (c->on_discovery != NULL)
		c->on_discovery(c->on_discovery_arg, NULL);
}

static void
cache_event(void *arg, const Platform__Discovery__V1__WatchResponse *ev,
    int live)
{
	plat_client *c = arg;

	if (c->on_discovery != NULL)
		c->on_discovery(c->on_discovery_arg, &ev->base);
	if (!live) {
		rsvc_apply(&c->fresh, ev, plat_now_ms());
		return;
	}
	pthread_mutex_lock(&c->mu);
	rsvc_apply(&c->cache, ev, plat_now_ms());
	pthread_mutex_unlock(&c->mu);
}

static void
cache_synced(void *arg)
{
	plat_client *c = arg;

	if (c->on_discovery != NULL) {
		Platform__Discovery__V1__WatchResponse marker =
		    PLATFORM__DISCOVERY__V1__WATCH_RESPONSE__INIT;

		marker.type =
		    PLATFORM__DISCOVERY__V1__EVENT_TYPE__EVENT_TYPE_SYNCED;
		c->on_discovery(c->on_discovery_arg, &marker.base);
	}

	pthread_mutex_lock(&c->mu);
	client_swap_cache_locked(c, c->fresh);
	c->synced = 1;
	pthread_mutex_unlock(&c->mu);
	c->fresh = NULL;
	log_debug("discovery watch synced", "discovery", c->discovery);
}

static void
cache_lost(void *arg)
{
	plat_client *c = arg;

	rsvc_free_all(c->fresh);
	c->fresh = NULL;
	pthread_mutex_lock(&c->mu);
	c->synced = 0;
	pthread_mutex_unlock(&c->mu);
}

static void
client_watch_start_locked(plat_client *c)
{
	static const struct plat_discovery_watch_cb cache_cb = {
		.begin = cache_begin,
		.event = cache_event,
		.synced = cache_synced,
		.lost = cache_lost,
	};

	if (c->watch_started || c->stopping)
		return;
	c->watch_started = 1;
	c->watch = plat_discovery_watch_start(c, "", &cache_cb, c);
}

/* ---- resolution ---- */

/* Asks discovery-srv for service and, unless the watch has synced in the
 * meantime, caches the answer. */
static int
client_fetch(plat_client *c, const char *service, int64_t deadline_ms,
    char *errmsg, size_t errlen)
{
	Platform__Discovery__V1__GetServiceRequest req =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_REQUEST__INIT;
	struct plat_call_opts co = { .idempotent = 0 };
	ProtobufCMessage *m;
	pb_get_resp *resp;
	struct rsvc *s;
	int64_t now;
	int rc;

	req.name = (char *)service;
	co.deadline_ms = (int)(deadline_ms < c->deadline_ms ? deadline_ms :
	    c->deadline_ms);
	rc = plat_client_call_any(c, &c->disc, M_GET_SERVICE, &req.base,
	    &platform__discovery__v1__get_service_response__descriptor, &m,
	    &co, errmsg, errlen);
	if (rc != GRPC_STATUS_OK && rc != GRPC_STATUS_NOT_FOUND)
		return rc;
	resp = (pb_get_resp *)m;
	now = plat_now_ms();
	pthread_mutex_lock(&c->mu);
	if (!c->synced) {
		s = rsvc_get(&c->cache, service);
		rsvc_clear(s);
		s->fetched_ms = now;
		for (size_t i = 0; resp != NULL && i < resp->n_services; i++)
			rsvc_add_service(&c->cache, resp->services[i], now);
	}
	pthread_mutex_unlock(&c->mu);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return GRPC_STATUS_OK;
}

static int
client_resolve(plat_client *c, const char *service, const uint64_t *key,
    char **addr, int64_t deadline_ms, char *errmsg, size_t errlen)
{
	char err[256] = "";
	int rc, synced;

	*addr = NULL;
	if (c->discovery == NULL) {
		errbuf_set(errmsg, errlen, "cannot resolve \"%s\": the client "
		    "has no discovery address", service);
		return GRPC_STATUS_FAILED_PRECONDITION;
	}
	pthread_mutex_lock(&c->mu);
	client_watch_start_locked(c);
	if (client_pick_locked(c, service, key, addr, 0)) {
		pthread_mutex_unlock(&c->mu);
		return GRPC_STATUS_OK;
	}
	synced = c->synced;
	pthread_mutex_unlock(&c->mu);

	rc = synced ? GRPC_STATUS_OK : client_fetch(c, service, deadline_ms,
	    err, sizeof(err));
	pthread_mutex_lock(&c->mu);
	/* A failed refresh still leaves the old answer usable. */
	if (client_pick_locked(c, service, key, addr, 1)) {
		pthread_mutex_unlock(&c->mu);
		return GRPC_STATUS_OK;
	}
	pthread_mutex_unlock(&c->mu);
	if (rc != GRPC_STATUS_OK)
		errbuf_set(errmsg, errlen, "cannot resolve \"%s\": discovery "
		    "%s: %s: %s", service, c->discovery, plat_status_name(rc),
		    err);
	else
		errbuf_set(errmsg, errlen, "service \"%s\" has no live node",
		    service);
	return GRPC_STATUS_UNAVAILABLE;
}

/* ---- smart routing: weights, limits, stats ---- */

static void
route_free(struct route *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->addrs[i]);
	free(r->addrs);
	free(r->weights);
	free(r->service);
	free(r);
}

static void
routes_free(struct route *head)
{
	struct route *next;

	for (; head != NULL; head = next) {
		next = head->next;
		route_free(head);
	}
}

/* Unlinks service's route from c; the caller frees it. */
static struct route *
route_unlink_locked(plat_client *c, const char *service)
{
	struct route **pp, *r;

	for (pp = &c->routes; (r = *pp) != NULL; pp = &r->next)
		if (strcmp(r->service, service) == 0) {
			*pp = r->next;
			return r;
		}
	return NULL;
}

void
plat_client_route_set(plat_client *c, const char *service,
    const char *const *addrs, const uint32_t *weights, size_t n)
{
	struct route *r, *old;
	struct rsvc *s;

	if (service == NULL || service[0] == '\0')
		return;
	r = xcalloc(1, sizeof(*r));
	r->service = xstrdup(service);
	r->addrs = xcalloc(n > 0 ? n : 1, sizeof(char *));
	r->weights = xcalloc(n > 0 ? n : 1, sizeof(uint32_t));
	for (size_t i = 0; i < n; i++) {
		r->addrs[i] = xstrdup(addrs[i]);
		r->weights[i] = weights[i];
	}
	r->n = n;
	pthread_mutex_lock(&c->mu);
	old = route_unlink_locked(c, service);
	r->next = c->routes;
	c->routes = r;
	if ((s = rsvc_find(c->cache, service)) != NULL)
		s->bal_gen = s->gen - 1;        /* re-sync at the next pick */
	pthread_mutex_unlock(&c->mu);
	if (old != NULL)
		route_free(old);
}

void
plat_client_route_clear(plat_client *c, const char *service)
{
	struct route *old;
	struct rsvc *s;

	if (service == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	old = route_unlink_locked(c, service);
	if ((s = rsvc_find(c->cache, service)) != NULL)
		balancer_clear_weights(&s->bal);
	pthread_mutex_unlock(&c->mu);
	if (old != NULL)
		route_free(old);
}

static void
limits_free(struct limit *head)
{
	struct limit *next;

	for (; head != NULL; head = next) {
		next = head->next;
		free(head->service);
		free(head->method);
		free(head);
	}
}

static struct limit **
limit_slot_locked(plat_client *c, const char *service, const char *method)
{
	struct limit **pp;

	for (pp = &c->limits; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->service, service) == 0 &&
		    strcmp((*pp)->method, method) == 0)
			break;
	return pp;
}

void
plat_client_set_limit(plat_client *c, const char *service,
    const char *method, double rate, double burst)
{
	struct limit **pp, *l;
	int64_t now = plat_now_ms();

	if (service == NULL || service[0] == '\0')
		return;
	if (method == NULL)
		method = "";
	pthread_mutex_lock(&c->mu);
	pp = limit_slot_locked(c, service, method);
	if ((l = *pp) != NULL && rate <= 0) {
		*pp = l->next;
		l->next = NULL;
		limits_free(l);
	} else if (l != NULL)
		token_bucket_set(&l->tb, rate, burst, now);
	else if (rate > 0) {
		l = xcalloc(1, sizeof(*l));
		l->service = xstrdup(service);
		l->method = xstrdup(method);
		token_bucket_init(&l->tb, rate, burst, now);
		l->next = c->limits;
		c->limits = l;
	}
	pthread_mutex_unlock(&c->mu);
}

/* 1 when a call to service's method is within its limits (and takes a
 * token from each that applies), 0 past one. */
static int
client_limit_take(plat_client *c, const char *service, const char *method)
{
	struct limit *l;
	int64_t now;
	int ok = 1;

	pthread_mutex_lock(&c->mu);
	if (c->limits != NULL) {
		now = plat_now_ms();
		if ((l = *limit_slot_locked(c, service, method)) != NULL)
			ok = token_bucket_take(&l->tb, now);
		if (ok && (l = *limit_slot_locked(c, service, "")) != NULL)
			ok = token_bucket_take(&l->tb, now);
	}
	pthread_mutex_unlock(&c->mu);
	return ok;
}

_Static_assert(sizeof(((struct plat_node_stats *)0)->errors) ==
    sizeof(((struct balancer_node *)0)->errors), "one error slot per code");
_Static_assert(sizeof(((struct plat_node_stats *)0)->addr) ==
    BALANCER_ADDR_MAX, "the same address room");

size_t
plat_client_node_stats(plat_client *c, const char *service,
    struct plat_node_stats *out, size_t max)
{
	const struct balancer_node *nd;
	struct rsvc *s;
	size_t n = 0;
	int64_t now = plat_now_ms();

	pthread_mutex_lock(&c->mu);
	/* A reader of stats wants the cache filled: the watch does. */
	if (c->discovery != NULL)
		client_watch_start_locked(c);
	if ((s = rsvc_find(c->cache, service)) != NULL) {
		client_balancer_sync_locked(c, s);
		n = s->bal.n;
		for (size_t i = 0; i < n && i < max; i++) {
			nd = &s->bal.nodes[i];
			memset(&out[i], 0, sizeof(out[i]));
			snprintf(out[i].addr, sizeof(out[i].addr), "%s",
			    nd->addr);
			out[i].requests = nd->requests;
			memcpy(out[i].errors, nd->errors, sizeof(out[i].errors));
			out[i].ewma_ms = nd->ewma_ms;
			out[i].inflight = nd->inflight;
			out[i].state = (int)balancer_state(&s->bal, i, now);
			out[i].weight = nd->weight;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return n;
}

void
plat_client_on_discovery(plat_client *c,
    void (*fn)(void *arg, const ProtobufCMessage *event), void *arg)
{
	pthread_mutex_lock(&c->mu);
	c->on_discovery = fn;
	c->on_discovery_arg = arg;
	if (c->discovery != NULL)
		client_watch_start_locked(c);
	pthread_mutex_unlock(&c->mu);
}
