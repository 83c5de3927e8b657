/*
 * server: the gRPC runtime every server runs on. See platform/server.h.
 *
 * One completion queue, a pool of pollers calling grpc_completion_queue_next
 * on it, and per-call state machines. Every completion tag is a struct
 * cq_tag whose fn runs on the poller that received it. A call is reference
 * counted: each batch in flight holds a reference (taken before
 * grpc_call_start_batch, since the completion may run on another poller
 * before start_batch returns), and so does the dispatcher while a handler
 * runs and any handler that keeps a stream.
 *
 * Streams send through a bounded queue with one SEND_MESSAGE in flight; a
 * full queue cancels the call with RESOURCE_EXHAUSTED. RECV_CLOSE_ON_SERVER
 * is started as soon as a streaming call arrives, so a client's cancel or
 * disconnect reaches the handler's close callback at once.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "platform/arena.h"
#include "platform/client.h"
#include "platform/log.h"
#include "platform/metrics.h"
#include "platform/events.h"
#include "platform/guard.h"
#include "platform/identity.h"
#include "platform/registrar.h"
#include "platform/router_follow.h"
#include "platform/server.h"
#include "platform/trace.h"
#include "platform/settings.h"
#include "platform/xalloc.h"
#include "server_internal.h"

#define SERVER_REQUESTS_PER_METHOD 16
/* Room for a registry snapshot; bytes bound the memory either way. */
#define STREAM_QUEUE_MAX_MSGS 65536
#define STREAM_QUEUE_MAX_BYTES (16u << 20)
#define STATUS_MSG_MAX 512
/* How long a stopping server waits for buffered platform events to reach
 * event-srv (at most its grace period). */
#define EVENTS_FLUSH_MS 1000
#define DRAIN_CHECK_MS 20       /* how often the drain looks at our calls */

struct cq_tag {
	void (*fn)(struct cq_tag *t, int ok);
};

struct mounted_method {
	const struct plat_method *m;
	void *handle;                    /* from grpc_server_register_method */
	plat_server *srv;
	struct metrics_method *mx;
	int guarded;                     /* the guard runs before it */
	char *grpc_service;              /* "platform.config.v1.Config" */
	const char *grpc_method;         /* "Update", in m->path */
};

struct qmsg {
	struct qmsg *next;
	grpc_byte_buffer *buf;
	size_t len;
};

struct plat_ctx {
	struct plat_stream *call;
	int code;
	grpc_byte_buffer *packed_resp;   /* from plat_respond_now */
	struct plat_caller caller;
	void *caller_mem;                /* malloc'd: holds caller's data */
	char message[STATUS_MSG_MAX];
	struct arena arena;              /* last: its inline block is big */
};

/* One call, unary or streaming; plat_stream is the same object. */
struct plat_stream {
	struct cq_tag t_request;
	struct cq_tag t_unary;
	struct cq_tag t_closed;
	struct cq_tag t_send;
	struct cq_tag t_status;
	struct cq_tag t_recv;

	plat_server *srv;
	struct mounted_method *mm;       /* NULL: an unregistered method */
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md_in;
	grpc_byte_buffer *payload;
	grpc_call_details details;       /* unregistered calls only */
	int64_t started_us;              /* 0: not accepted (yet) */

	pthread_mutex_t mu;
	int refs;
	int handler_running;
	int closed;                      /* RECV_CLOSE_ON_SERVER completed */
	int cancelled_flag;              /* written by gRPC at close */
	int initial_md_sent;
	int send_inflight;
	int finish_pending;
	int status_started;
	int have_status_slice;           /* status_slice needs an unref */
	int close_fired;
	int final_code;
	grpc_slice status_slice;
	struct qmsg *qhead, *qtail;
	size_t qlen, qbytes;
	grpc_byte_buffer *send_buf;
	grpc_byte_buffer *recv_buf;
	void (*close_cb)(plat_stream *, void *);
	void *close_arg;
	struct plat_stream *live_prev, *live_next;

	struct plat_span span;           /* when traced */
	bool traced;

	struct plat_ctx ctx;
};

struct plat_server {
	const struct plat_service *svc;
	struct plat_settings settings;
	struct settings_spec spec;
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t *pollers;
	int npollers;
	struct mounted_method *methods;
	size_t nmethods;
	char address[256];
	char advertised[300];      /* what discovery is told */
	char metrics_advertised[300]; /* its metrics endpoint, "" for none */
	char started[24];          /* Unix ms of this run's start */
	/* The service's own registration metadata: key, value, ... */
	char *extra_md[2 * PLAT_EXTRA_METADATA_MAX];
	size_t nextra_md;
	atomic_int stopping;
	struct health_state *health;
	struct plat_checks *checks;      /* its own, reported to monitor-srv */
	struct metrics *metrics;
	struct metrics_method *mx_unimplemented;
	plat_events *events;             /* the platform events it emits */
	struct plat_guard *guard;        /* NULL: --insecure-no-auth */
	struct plat_identity *identity;  /* NULL: no credentials */
	plat_client *client;             /* to discovery, events, ... */
	void *user;

	atomic_int active;               /* calls accepted, not yet freed */
	pthread_mutex_t live_mu;         /* the streams open right now */
	struct plat_stream *live;

	pthread_mutex_t shutdown_mu;
	pthread_cond_t shutdown_cv;
	int shutdown_done;
	struct cq_tag t_shutdown;
};

static void call_unref(struct plat_stream *c);
static void stream_start_status_locked(struct plat_stream *c);
static void stream_maybe_fire_close(struct plat_stream *c);
static int server_arm(struct mounted_method *mm);
static int server_arm_unregistered(plat_server *srv);

/* ---- byte buffers ---- */

static grpc_byte_buffer *
pack_message(const ProtobufCMessage *msg, size_t max, size_t *lenp)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	grpc_slice slice;
	grpc_byte_buffer *bb;

	if (len > max)
		return NULL;
	slice = grpc_slice_malloc(len);
	protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
	bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	if (lenp != NULL)
		*lenp = len;
	return bb;
}

static int wire_check_strings(const ProtobufCMessageDescriptor *d,
    const uint8_t *p, size_t n, int depth, char *path, size_t cap,
    size_t plen);

/* Decodes bb into the context's arena; INVALID_ARGUMENT when malformed. */
static int
decode_request(struct plat_ctx *ctx, const ProtobufCMessageDescriptor *desc,
    grpc_byte_buffer *bb, ProtobufCMessage **out)
{
	grpc_byte_buffer_reader reader;
	grpc_slice all;
	ProtobufCMessage *msg;
	char path[256];
	int bad;

	*out = NULL;
	if (bb == NULL) {
		/* An empty request is a valid all-defaults message. */
		msg = protobuf_c_message_unpack(desc, arena_allocator(
		    &ctx->arena), 0, (const uint8_t *)"");
	} else {
		if (!grpc_byte_buffer_reader_init(&reader, bb))
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "request: cannot read the message");
		all = grpc_byte_buffer_reader_readall(&reader);
		grpc_byte_buffer_reader_destroy(&reader);
		msg = protobuf_c_message_unpack(desc,
		    arena_allocator(&ctx->arena), GRPC_SLICE_LENGTH(all),
		    GRPC_SLICE_START_PTR(all));
		path[0] = '\0';
		bad = msg != NULL ? wire_check_strings(desc,
		    GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all), 0,
		    path, sizeof(path), 0) : 0;
		grpc_slice_unref(all);
		if (bad > 0)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "%s: not valid UTF-8, or holds a NUL byte", path);
		if (bad < 0)
			msg = NULL;     /* malformed after all */
	}
	if (msg == NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "request: malformed %s message", desc->name);
	*out = msg;
	return PLAT_OK;
}

/* ---- string checks: protobuf-c neither checks that string fields are
 * UTF-8, as proto3 requires, nor keeps bytes after a NUL, which would
 * silently change what a caller sent. The raw request is walked once,
 * here, for every service. */

static int
utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], cp;
		size_t k;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		} else
			return 0;
		if (i + k >= n)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
		    (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

static int
wire_varint(const uint8_t **p, size_t *n, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *n > 0; shift += 7) {
		uint8_t b = **p;

		(*p)++;
		(*n)--;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0)
			return 0;
	}
	return -1;
}

/* Appends ".name" or ".name[i]" for field f to path at len. */
static size_t
wire_path(char *path, size_t cap, size_t len,
    const ProtobufCFieldDescriptor *f, unsigned index)
{
	int n;

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		n = snprintf(path + len, cap - len, "%s%s[%u]",
		    len ? "." : "", f->name, index);
	else
		n = snprintf(path + len, cap - len, "%s%s", len ? "." : "",
		    f->name);
	if (n < 0 || (size_t)n >= cap - len)
		return cap - 1;
	return len + (size_t)n;
}

/* Finds the first string field that is not valid UTF-8 or holds a NUL;
 * writes its path ("service.nodes[1].id") and returns 1, else 0.
 * Malformed input is left for the decoder to report, but for field
 * number 0 (-1): protobuf-c accepts it when the tag takes more bytes
 * than it needs and keeps it as an unknown field that it then packs in a
 * form it refuses to read back, so a copy made by packing (discovery's
 * registry) would fail. */
static int
wire_check_strings(const ProtobufCMessageDescriptor *d, const uint8_t *p,
    size_t n, int depth, char *path, size_t cap, size_t plen)
{
	unsigned seen[64] = { 0 };      /* occurrences per field index */

	while (n > 0) {
		const ProtobufCFieldDescriptor *f;
		uint64_t key, len;
		unsigned idx = 0;
		size_t sub;
		int bad;

		if (wire_varint(&p, &n, &key) != 0)
			return 0;
		if (key >> 3 == 0)
			return -1;
		switch (key & 7) {
		case 0:
			if (wire_varint(&p, &n, &len) != 0)
				return 0;
			break;
		case 1:
			if (n < 8)
				return 0;
			p += 8;
			n -= 8;
			break;
		case 5:
			if (n < 4)
				return 0;
			p += 4;
			n -= 4;
			break;
		case 2:
			if (wire_varint(&p, &n, &len) != 0 || len > n)
				return 0;
			f = protobuf_c_message_descriptor_get_field(d,
			    (unsigned)(key >> 3));
			if (f != NULL && (size_t)(f - d->fields) < 64)
				idx = seen[f - d->fields]++;
			if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING &&
			    !utf8_valid(p, (size_t)len)) {
				wire_path(path, cap, plen, f, idx);
				return 1;
			}
			if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    depth < 64) {
				sub = wire_path(path, cap, plen, f, idx);
				if ((bad = wire_check_strings(f->descriptor, p,
				    (size_t)len, depth + 1, path, cap, sub)) != 0)
					return bad;
				path[plen] = '\0';
			}
			p += len;
			n -= (size_t)len;
			break;
		default:
			return 0;
		}
	}
	return 0;
}

/* ---- handler context ---- */

int
plat_error(plat_ctx *ctx, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ctx->message, sizeof(ctx->message), fmt, ap);
	va_end(ap);
	ctx->code = code;
	return code;
}

void *
plat_alloc(plat_ctx *ctx, size_t n)
{
	return arena_calloc(&ctx->arena, n);
}

char *
plat_strdup(plat_ctx *ctx, const char *s)
{
	return arena_strdup(&ctx->arena, s);
}

char *
plat_printf(plat_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	char *p, probe[1];
	int n;

	/* A 1-byte probe, not NULL: gcc's format checks reject NULL. */
	va_start(ap, fmt);
	n = vsnprintf(probe, sizeof(probe), fmt, ap);
	va_end(ap);
	if (n < 0)
		return plat_strdup(ctx, "");
	p = arena_alloc(&ctx->arena, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

ProtobufCMessage *
plat_new_message(plat_ctx *ctx, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = arena_alloc(&ctx->arena, desc->sizeof_message);

	desc->message_init(m);
	return m;
}

int
plat_respond_now(plat_ctx *ctx, const ProtobufCMessage *msg)
{
	plat_server *srv = ctx->call->srv;

	if (ctx->packed_resp != NULL)
		grpc_byte_buffer_destroy(ctx->packed_resp);
	ctx->packed_resp = pack_message(msg,
	    (size_t)srv->settings.max_message_bytes, NULL);
	return ctx->packed_resp == NULL ? -1 : 0;
}

int64_t
plat_ctx_deadline_left_ms(const plat_ctx *ctx)
{
	gpr_timespec now, d = ctx->call->deadline;
	int64_t ms;

	if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0)
		return INT64_MAX;
	now = gpr_now(d.clock_type);
	ms = (int64_t)(d.tv_sec - now.tv_sec) * 1000 +
	    (d.tv_nsec - now.tv_nsec) / 1000000;
	return ms;
}

struct plat_span *
plat_ctx_span(plat_ctx *ctx)
{
	return ctx->call->traced ? &ctx->call->span : NULL;
}

const char *
plat_ctx_metadata(const plat_ctx *ctx, const char *key)
{
	const grpc_metadata_array *md = &ctx->call->md_in;
	size_t klen = strlen(key);

	for (size_t i = 0; i < md->count; i++) {
		const grpc_slice *k = &md->metadata[i].key;
		const grpc_slice *v = &md->metadata[i].value;

		if (GRPC_SLICE_LENGTH(*k) == klen &&
		    memcmp(GRPC_SLICE_START_PTR(*k), key, klen) == 0)
			return arena_strndup(&((plat_ctx *)ctx)->arena,
			    (const char *)GRPC_SLICE_START_PTR(*v),
			    GRPC_SLICE_LENGTH(*v));
	}
	return NULL;
}

const char *
plat_ctx_peer(const plat_ctx *ctx)
{
	char *peer = grpc_call_get_peer(ctx->call->call);
	char *copy = arena_strdup(&((plat_ctx *)ctx)->arena,
	    peer != NULL ? peer : "");

	gpr_free(peer);
	return copy;
}

const char *
plat_ctx_method(const plat_ctx *ctx)
{
	return ctx->call->mm != NULL ? ctx->call->mm->m->path : "";
}

plat_events *
plat_server_events(const plat_server *srv)
{
	return srv->events;
}

plat_server *
plat_ctx_server(const plat_ctx *ctx)
{
	return ctx->call->srv;
}

const struct plat_caller *
plat_ctx_caller(const plat_ctx *ctx)
{
	return ctx->caller_mem != NULL ? &ctx->caller : NULL;
}

plat_client *
plat_server_client(const plat_server *srv)
{
	return srv->client;
}

/* ---- call lifetime ---- */

static struct plat_stream *
call_new(plat_server *srv, struct mounted_method *mm)
{
	struct plat_stream *c = malloc(sizeof(*c));

	if (c == NULL)
		abort();
	/* Zero all but the arena's inline block: one call per request, so
	 * clearing 4 KiB nobody reads shows up in the req/s. */
	memset(c, 0, offsetof(struct plat_stream, ctx.arena));
	c->srv = srv;
	c->mm = mm;
	c->refs = 1;
	c->final_code = -1;
	pthread_mutex_init(&c->mu, NULL);
	grpc_metadata_array_init(&c->md_in);
	grpc_call_details_init(&c->details);
	c->ctx.call = c;
	arena_init(&c->ctx.arena);
	return c;
}

/* Logs and measures the call as it ends; its final status. */
static int
call_log(struct plat_stream *c)
{
	char code[16], ms[32];
	int lvl;
	const char *path = c->mm != NULL ? c->mm->m->path : "(unknown)";
	/* A call the client cancelled is CANCELLED whatever we answered
	 * (a unary call cut off before its request arrived, say). */
	int fc = c->final_code < 0 || c->cancelled_flag ? PLAT_CANCELLED :
	    c->final_code;

	if (c->mm == NULL)
		path = "(unimplemented)";
	metrics_observe(c->mm != NULL ? c->mm->mx :
	    c->srv->mx_unimplemented, fc, plat_now_us() - c->started_us);
	if (fc == PLAT_OK || fc == PLAT_CANCELLED)
		lvl = LOG_LEVEL_DEBUG;
	else if (fc == PLAT_INTERNAL || fc == PLAT_UNKNOWN ||
	    fc == PLAT_DATA_LOSS)
		lvl = LOG_LEVEL_WARN;
	else
		lvl = LOG_LEVEL_INFO;
	if (!log_enabled(lvl))
		return fc;
	snprintf(code, sizeof(code), "%d", fc);
	snprintf(ms, sizeof(ms), "%.3f",
	    (double)(plat_now_us() - c->started_us) / 1000.0);
	log_write(lvl, "call", "method", path, "code", code,
	    "status", plat_status_name(fc), "message",
	    c->ctx.code == fc ? c->ctx.message : "", "duration_ms", ms,
	    (char *)NULL);
	return fc;
}

static void
call_free(struct plat_stream *c)
{
	struct qmsg *q, *next;

	if (c->call != NULL) {
		struct plat_span *prev = NULL;
		int fc;

		/* The call's log line carries its trace. */
		if (c->traced)
			prev = plat_span_enter(&c->span);
		fc = call_log(c);
		if (c->traced) {
			plat_span_leave(prev);
			plat_span_end(&c->span, fc, c->ctx.code == fc ?
			    c->ctx.message : "");
		}
	}
	if (c->started_us != 0)
		atomic_fetch_sub(&c->srv->active, 1);
	for (q = c->qhead; q != NULL; q = next) {
		next = q->next;
		grpc_byte_buffer_destroy(q->buf);
		free(q);
	}
	if (c->send_buf != NULL)
		grpc_byte_buffer_destroy(c->send_buf);
	if (c->recv_buf != NULL)
		grpc_byte_buffer_destroy(c->recv_buf);
	if (c->payload != NULL)
		grpc_byte_buffer_destroy(c->payload);
	if (c->ctx.packed_resp != NULL)
		grpc_byte_buffer_destroy(c->ctx.packed_resp);
	free(c->ctx.caller_mem);
	if (c->have_status_slice)
		grpc_slice_unref(c->status_slice);
	grpc_metadata_array_destroy(&c->md_in);
	grpc_call_details_destroy(&c->details);
	if (c->call != NULL)
		grpc_call_unref(c->call);
	arena_reset(&c->ctx.arena);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static void
call_ref_locked(struct plat_stream *c)
{
	c->refs++;
}

static void
call_unref(struct plat_stream *c)
{
	int last;

	pthread_mutex_lock(&c->mu);
	last = --c->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (last)
		call_free(c);
}

static int
start_batch_locked(struct plat_stream *c, const grpc_op *ops, size_t n,
    struct cq_tag *tag)
{
	grpc_call_error err;

	call_ref_locked(c);
	err = grpc_call_start_batch(c->call, ops, n, tag, NULL);
	if (err != GRPC_CALL_OK) {
		c->refs--;
		log_error("start_batch failed", "method",
		    c->mm != NULL ? c->mm->m->path : "", "error",
		    grpc_call_error_to_string(err));
		return -1;
	}
	return 0;
}

/* ---- live streams, for shutdown ---- */

static void
live_add(struct plat_stream *c)
{
	plat_server *srv = c->srv;

	metrics_stream_delta(c->mm->mx, 1);
	pthread_mutex_lock(&srv->live_mu);
	c->live_next = srv->live;
	c->live_prev = NULL;
	if (srv->live != NULL)
		srv->live->live_prev = c;
	srv->live = c;
	pthread_mutex_unlock(&srv->live_mu);
}

static void
live_remove(struct plat_stream *c)
{
	plat_server *srv = c->srv;

	metrics_stream_delta(c->mm->mx, -1);
	pthread_mutex_lock(&srv->live_mu);
	if (c->live_prev != NULL)
		c->live_prev->live_next = c->live_next;
	else if (srv->live == c)
		srv->live = c->live_next;
	if (c->live_next != NULL)
		c->live_next->live_prev = c->live_prev;
	c->live_prev = c->live_next = NULL;
	pthread_mutex_unlock(&srv->live_mu);
}

/* ---- unary ---- */

/* The last batch of a call (a unary answer, a stream's status) holds
 * nothing but its reference. */
static void
on_unary_done(struct cq_tag *t, int ok)
{
	call_unref((struct plat_stream *)((char *)t -
	    offsetof(struct plat_stream, t_unary)));
}

static void
on_stream_status_sent(struct cq_tag *t, int ok)
{
	call_unref((struct plat_stream *)((char *)t -
	    offsetof(struct plat_stream, t_status)));
}

static void
unary_finish(struct plat_stream *c, int code, grpc_byte_buffer *resp)
{
	grpc_op ops[4];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	n++;
	if (code == PLAT_OK && resp != NULL) {
		c->send_buf = resp;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = resp;
		n++;
	}
	c->final_code = code;
	c->status_slice = grpc_slice_from_copied_string(
	    code == PLAT_OK ? "" : c->ctx.message);
	c->have_status_slice = 1;
	c->status_started = 1;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)code;
	ops[n].data.send_status_from_server.status_details =
	    &c->status_slice;
	n++;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n].data.recv_close_on_server.cancelled = &c->cancelled_flag;
	n++;
	pthread_mutex_lock(&c->mu);
	start_batch_locked(c, ops, n, &c->t_unary);
	pthread_mutex_unlock(&c->mu);
}

/* Packs a unary handler's answer and sends it with the status. */
static void
unary_answer(struct plat_stream *c, int code, const ProtobufCMessage *resp)
{
	const struct plat_method *m = c->mm->m;
	grpc_byte_buffer *out = NULL;

	if (code < 0 || code > PLAT_UNAUTHENTICATED) {
		log_error("handler returned a bad status", "method", m->path);
		code = plat_error(&c->ctx, PLAT_INTERNAL, "internal error");
	}
	if (code == PLAT_OK) {
		if (c->ctx.packed_resp != NULL) {
			out = c->ctx.packed_resp;
			c->ctx.packed_resp = NULL;
		} else if (resp != NULL) {
			out = pack_message(resp,
			    (size_t)c->srv->settings.max_message_bytes, NULL);
		} else {
			ProtobufCMessage *empty = plat_new_message(&c->ctx,
			    m->response);
			out = pack_message(empty, SIZE_MAX, NULL);
		}
		if (out == NULL)
			code = plat_error(&c->ctx, PLAT_RESOURCE_EXHAUSTED,
			    "response larger than the maximum message size");
	}
	unary_finish(c, code, out);
}

static void
dispatch_unary(struct plat_stream *c)
{
	const struct plat_method *m = c->mm->m;
	ProtobufCMessage *req = NULL, *resp = NULL;
	int code;

	code = decode_request(&c->ctx, m->request, c->payload, &req);
	if (code == PLAT_OK) {
		c->ctx.code = PLAT_OK;
		code = m->unary(&c->ctx, req, &resp);
		if (code == PLAT_DEFERRED)
			return;         /* plat_reply answers, holding a ref */
	}
	unary_answer(c, code, resp);
}

int
plat_defer(plat_ctx *ctx)
{
	struct plat_stream *c = ctx->call;

	pthread_mutex_lock(&c->mu);
	call_ref_locked(c);
	pthread_mutex_unlock(&c->mu);
	return PLAT_DEFERRED;
}

void
plat_reply(plat_ctx *ctx, int code, const ProtobufCMessage *resp)
{
	struct plat_stream *c = ctx->call;

	unary_answer(c, code, resp);
	call_unref(c);          /* plat_defer's */
}

/* ---- streams ---- */

static void
stream_fire_close_now(struct plat_stream *c)
{
	void (*cb)(plat_stream *, void *);
	void *arg;

	pthread_mutex_lock(&c->mu);
	if (!c->closed || c->close_fired || c->handler_running) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->close_fired = 1;
	cb = c->close_cb;
	arg = c->close_arg;
	c->close_cb = NULL;
	pthread_mutex_unlock(&c->mu);
	live_remove(c);
	if (cb != NULL)
		cb(c, arg);
}

static void
stream_maybe_fire_close(struct plat_stream *c)
{
	stream_fire_close_now(c);
}

static void
on_stream_closed(struct cq_tag *t, int ok)
{
	struct plat_stream *c = (struct plat_stream *)((char *)t -
	    offsetof(struct plat_stream, t_closed));
	struct qmsg *q, *next;

	pthread_mutex_lock(&c->mu);
	c->closed = 1;
	if (c->final_code < 0)
		c->final_code = PLAT_CANCELLED;
	for (q = c->qhead; q != NULL; q = next) {
		next = q->next;
		grpc_byte_buffer_destroy(q->buf);
		free(q);
	}
	c->qhead = c->qtail = NULL;
	c->qlen = c->qbytes = 0;
	pthread_mutex_unlock(&c->mu);
	stream_maybe_fire_close(c);
	call_unref(c);
}

static void
stream_start_send_locked(struct plat_stream *c)
{
	struct qmsg *q = c->qhead;
	grpc_op ops[2];
	size_t n = 0;

	c->qhead = q->next;
	if (c->qhead == NULL)
		c->qtail = NULL;
	c->qlen--;
	c->qbytes -= q->len;
	c->send_buf = q->buf;
	free(q);
	memset(ops, 0, sizeof(ops));
	if (!c->initial_md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->initial_md_sent = 1;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = c->send_buf;
	n++;
	c->send_inflight = 1;
	if (start_batch_locked(c, ops, n, &c->t_send) != 0) {
		c->send_inflight = 0;
		grpc_byte_buffer_destroy(c->send_buf);
		c->send_buf = NULL;
	}
}

static void
on_stream_sent(struct cq_tag *t, int ok)
{
	struct plat_stream *c = (struct plat_stream *)((char *)t -
	    offsetof(struct plat_stream, t_send));

	pthread_mutex_lock(&c->mu);
	c->send_inflight = 0;
	grpc_byte_buffer_destroy(c->send_buf);
	c->send_buf = NULL;
	if (ok && !c->closed && c->qhead != NULL)
		stream_start_send_locked(c);
	else if (c->finish_pending && !c->status_started)
		stream_start_status_locked(c);
	pthread_mutex_unlock(&c->mu);
	call_unref(c);
}

static void
stream_start_status_locked(struct plat_stream *c)
{
	grpc_op ops[2];
	size_t n = 0;

	c->status_started = 1;
	memset(ops, 0, sizeof(ops));
	if (!c->initial_md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		c->initial_md_sent = 1;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status =
	    (grpc_status_code)c->final_code;
	ops[n].data.send_status_from_server.status_details = &c->status_slice;
	n++;
	start_batch_locked(c, ops, n, &c->t_status);
}

int
plat_stream_send(plat_stream *c, const ProtobufCMessage *msg)
{
	struct qmsg *q;
	size_t len;
	grpc_byte_buffer *bb;

	bb = pack_message(msg, (size_t)c->srv->settings.max_message_bytes,
	    &len);
	if (bb == NULL) {
		log_error("stream message over the size limit", "method",
		    c->mm->m->path);
		return -1;
	}
	pthread_mutex_lock(&c->mu);
	if (c->closed || c->finish_pending) {
		pthread_mutex_unlock(&c->mu);
		grpc_byte_buffer_destroy(bb);
		return -1;
	}
	if (c->qlen >= STREAM_QUEUE_MAX_MSGS ||
	    c->qbytes + len > STREAM_QUEUE_MAX_BYTES) {
		/* A slow consumer: end it instead of growing without bound.
		 * Cancel rather than queue a status, since the send in
		 * flight may never complete while the client is not
		 * reading. */
		c->finish_pending = 1;
		c->status_started = 1;
		c->final_code = PLAT_RESOURCE_EXHAUSTED;
		pthread_mutex_unlock(&c->mu);
		grpc_byte_buffer_destroy(bb);
		log_warn("stream consumer too slow, ending it", "method",
		    c->mm->m->path);
		grpc_call_cancel_with_status(c->call,
		    GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "stream consumer too slow: send queue full", NULL);
		return -1;
	}
	if ((q = malloc(sizeof(*q))) == NULL)
		abort();
	q->next = NULL;
	q->buf = bb;
	q->len = len;
	if (c->qtail != NULL)
		c->qtail->next = q;
	else
		c->qhead = q;
	c->qtail = q;
	c->qlen++;
	c->qbytes += len;
	if (!c->send_inflight)
		stream_start_send_locked(c);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

size_t
plat_stream_queued(plat_stream *c)
{
	size_t n;

	pthread_mutex_lock(&c->mu);
	n = c->qlen;
	pthread_mutex_unlock(&c->mu);
	return n;
}

void
plat_stream_finish(plat_stream *c, int code, const char *message)
{
	pthread_mutex_lock(&c->mu);
	if (c->finish_pending || c->closed) {
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->finish_pending = 1;
	c->final_code = code;
	c->status_slice = grpc_slice_from_copied_string(
	    message != NULL ? message : "");
	c->have_status_slice = 1;
	/* Otherwise on_stream_sent sends it once the queue drains. */
	if (!c->send_inflight)
		stream_start_status_locked(c);
	pthread_mutex_unlock(&c->mu);
}

void
plat_stream_on_close(plat_stream *c, void (*cb)(plat_stream *, void *),
    void *arg)
{
	pthread_mutex_lock(&c->mu);
	c->close_cb = cb;
	c->close_arg = arg;
	pthread_mutex_unlock(&c->mu);
	/* If the call already closed, the dispatcher fires cb once the
	 * handler returns. */
}

int
plat_stream_closed(plat_stream *c)
{
	int closed;

	pthread_mutex_lock(&c->mu);
	closed = c->closed || c->finish_pending;
	pthread_mutex_unlock(&c->mu);
	return closed;
}

void
plat_stream_ref(plat_stream *c)
{
	pthread_mutex_lock(&c->mu);
	call_ref_locked(c);
	pthread_mutex_unlock(&c->mu);
}

void
plat_stream_unref(plat_stream *c)
{
	call_unref(c);
}

/* Starts RECV_CLOSE_ON_SERVER so cancellation is seen at once. */
static int
stream_watch_close(struct plat_stream *c)
{
	grpc_op op;
	int rc;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &c->cancelled_flag;
	pthread_mutex_lock(&c->mu);
	rc = start_batch_locked(c, &op, 1, &c->t_closed);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static void
stream_after_handler(struct plat_stream *c, int code)
{
	if (code != PLAT_STREAM_OPEN) {
		if (code < 0 || code > PLAT_UNAUTHENTICATED)
			code = plat_error(&c->ctx, PLAT_INTERNAL,
			    "internal error");
		plat_stream_finish(c, code, code == PLAT_OK ? "" :
		    c->ctx.message);
	}
	pthread_mutex_lock(&c->mu);
	c->handler_running = 0;
	pthread_mutex_unlock(&c->mu);
	stream_maybe_fire_close(c);
}

static void
dispatch_server_stream(struct plat_stream *c)
{
	const struct plat_method *m = c->mm->m;
	ProtobufCMessage *req = NULL;
	int code;

	live_add(c);
	c->handler_running = 1;
	if (stream_watch_close(c) != 0) {
		c->handler_running = 0;
		live_remove(c);
		return;
	}
	code = decode_request(&c->ctx, m->request, c->payload, &req);
	if (code == PLAT_OK) {
		c->ctx.code = PLAT_OK;
		code = m->stream(&c->ctx, req, c);
	}
	stream_after_handler(c, code);
}

static void stream_start_recv(struct plat_stream *c);

static void
on_stream_recv(struct cq_tag *t, int ok)
{
	struct plat_stream *c = (struct plat_stream *)((char *)t -
	    offsetof(struct plat_stream, t_recv));
	const struct plat_bidi_handlers *h = c->mm->m->bidi;
	struct plat_span *prev = NULL;
	grpc_byte_buffer *bb;
	ProtobufCMessage *msg = NULL;
	int code;

	pthread_mutex_lock(&c->mu);
	bb = c->recv_buf;
	c->recv_buf = NULL;
	c->handler_running = 1;
	pthread_mutex_unlock(&c->mu);
	if (c->traced)
		prev = plat_span_enter(&c->span);
	if (!ok) {
		code = PLAT_STREAM_OPEN;        /* the call is gone */
	} else if (bb == NULL) {
		code = h->on_half_close != NULL ?
		    h->on_half_close(&c->ctx, c) : PLAT_OK;
	} else {
		arena_reset(&c->ctx.arena);
		code = decode_request(&c->ctx, c->mm->m->request, bb, &msg);
		grpc_byte_buffer_destroy(bb);
		if (code == PLAT_OK) {
			c->ctx.code = PLAT_OK;
			code = h->on_message(&c->ctx, c, msg);
		}
		if (code == PLAT_STREAM_OPEN)
			stream_start_recv(c);
	}
	if (c->traced)
		plat_span_leave(prev);
	stream_after_handler(c, code);
	call_unref(c);
}

static void
stream_start_recv(struct plat_stream *c)
{
	grpc_op op;

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_buf;
	pthread_mutex_lock(&c->mu);
	if (!c->closed && !c->finish_pending)
		start_batch_locked(c, &op, 1, &c->t_recv);
	pthread_mutex_unlock(&c->mu);
}

static void
dispatch_bidi(struct plat_stream *c)
{
	const struct plat_bidi_handlers *h = c->mm->m->bidi;
	int code = PLAT_STREAM_OPEN;

	live_add(c);
	c->handler_running = 1;
	if (stream_watch_close(c) != 0) {
		c->handler_running = 0;
		live_remove(c);
		return;
	}
	c->ctx.code = PLAT_OK;
	if (h->on_open != NULL)
		code = h->on_open(&c->ctx, c);
	if (code == PLAT_STREAM_OPEN)
		stream_start_recv(c);
	stream_after_handler(c, code);
}

/* ---- the guard ---- */

/* Keeps the verified caller with the call, in one block outside the
 * arena (a bidi call resets its arena after every message). */
static void
call_set_caller(struct plat_stream *c, const struct jwt_claims *cl)
{
	size_t size = (cl->nscopes + 1) * sizeof(char *) + strlen(cl->sub) + 1;
	char **scopes, *p;

	for (size_t i = 0; i < cl->nscopes; i++)
		size += strlen(cl->scopes[i]) + 1;
	c->ctx.caller_mem = malloc(size);
	if (c->ctx.caller_mem == NULL)
		abort();
	scopes = c->ctx.caller_mem;
	p = (char *)(scopes + cl->nscopes + 1);
	for (size_t i = 0; i < cl->nscopes; i++) {
		scopes[i] = p;
		p = stpcpy(p, cl->scopes[i]) + 1;
	}
	scopes[cl->nscopes] = NULL;
	c->ctx.caller.account = p;
	strcpy(p, cl->sub);
	c->ctx.caller.scopes = (const char *const *)scopes;
	c->ctx.caller.nscopes = cl->nscopes;
	c->ctx.caller.account_type = guard_account_type(cl->account_type);
}

/* PLAT_OK when the call may go to its handler, else its status with the
 * message set. */
static int
call_guard(struct plat_stream *c)
{
	struct mounted_method *mm = c->mm;
	struct jwt_claims claims;
	int code;

	code = plat_guard_check(c->srv->guard, plat_ctx_metadata(&c->ctx,
	    "authorization"), mm->grpc_service, mm->grpc_method, &claims,
	    c->ctx.message, sizeof(c->ctx.message));
	c->ctx.code = code;
	if (code != PLAT_OK)
		return code;
	call_set_caller(c, &claims);
	jwt_claims_free(&claims);
	return PLAT_OK;
}

/* ---- accepting calls ---- */

/* The call's server span, a child of the caller's traceparent. Health
 * checks and reflection are not traced: probes would drown the rest;
 * nor is the OTLP Export of spans (trace-srv's), which would make spans
 * of sending spans, without end. */
static void
call_trace(struct plat_stream *c)
{
	const struct mounted_method *mm = c->mm;
	char *peer;

	if (strncmp(mm->grpc_service, "grpc.", 5) == 0 ||
	    strncmp(mm->grpc_service, "opentelemetry.", 14) == 0)
		return;
	plat_span_start(&c->span, PLAT_SPAN_SERVER, mm->m->path + 1, NULL,
	    plat_ctx_metadata(&c->ctx, "traceparent"),
	    plat_ctx_metadata(&c->ctx, "tracestate"));
	c->traced = true;
	if (!c->span.recording)
		return;
	plat_span_attr(&c->span, "rpc.system", "grpc");
	plat_span_attr(&c->span, "rpc.service", mm->grpc_service);
	plat_span_attr(&c->span, "rpc.method", mm->grpc_method);
	if ((peer = grpc_call_get_peer(c->call)) != NULL) {
		plat_span_attr(&c->span, "net.peer.name", peer);
		gpr_free(peer);
	}
}

static void
on_request(struct cq_tag *t, int ok)
{
	struct plat_stream *c = (struct plat_stream *)((char *)t -
	    offsetof(struct plat_stream, t_request));
	struct mounted_method *mm = c->mm;
	struct plat_span *prev = NULL;

	if (!ok) {
		/* The server is shutting down. */
		call_free(c);
		return;
	}
	c->started_us = plat_now_us();
	atomic_fetch_add(&c->srv->active, 1);
	if (mm != NULL)
		call_trace(c);
	/* Re-arm first so another call is accepted while this one runs. */
	if (mm != NULL)
		server_arm(mm);
	else
		server_arm_unregistered(c->srv);
	if (mm == NULL) {
		plat_error(&c->ctx, PLAT_UNIMPLEMENTED, "unknown method %.*s",
		    (int)GRPC_SLICE_LENGTH(c->details.method),
		    (const char *)GRPC_SLICE_START_PTR(c->details.method));
		c->deadline = c->details.deadline;
		unary_finish(c, PLAT_UNIMPLEMENTED, NULL);
		call_unref(c);
		return;
	}
	if (mm->guarded && c->srv->guard != NULL) {
		int code = call_guard(c);

		if (code != PLAT_OK) {
			unary_finish(c, code, NULL);
			call_unref(c);
			return;
		}
	}
	if (c->traced)
		prev = plat_span_enter(&c->span);
	switch (mm->m->kind) {
	case PLAT_METHOD_UNARY:
		dispatch_unary(c);
		break;
	case PLAT_METHOD_SERVER_STREAM:
		dispatch_server_stream(c);
		break;
	case PLAT_METHOD_CLIENT_STREAM:
	case PLAT_METHOD_BIDI:
		dispatch_bidi(c);
		break;
	}
	if (c->traced)
		plat_span_leave(prev);
	call_unref(c);
}

static int
server_arm(struct mounted_method *mm)
{
	struct plat_stream *c;
	int with_payload = mm->m->kind == PLAT_METHOD_UNARY ||
	    mm->m->kind == PLAT_METHOD_SERVER_STREAM;
	grpc_call_error err;

	if (atomic_load(&mm->srv->stopping))
		return -1;
	c = call_new(mm->srv, mm);
	c->t_request.fn = on_request;
	c->t_unary.fn = on_unary_done;
	c->t_closed.fn = on_stream_closed;
	c->t_send.fn = on_stream_sent;
	c->t_status.fn = on_stream_status_sent;
	c->t_recv.fn = on_stream_recv;
	err = grpc_server_request_registered_call(mm->srv->server, mm->handle,
	    &c->call, &c->deadline, &c->md_in,
	    with_payload ? &c->payload : NULL, mm->srv->cq, mm->srv->cq,
	    &c->t_request);
	if (err != GRPC_CALL_OK) {
		call_free(c);
		return -1;
	}
	return 0;
}

static int
server_arm_unregistered(plat_server *srv)
{
	struct plat_stream *c;
	grpc_call_error err;

	if (atomic_load(&srv->stopping))
		return -1;
	c = call_new(srv, NULL);
	c->t_request.fn = on_request;
	c->t_unary.fn = on_unary_done;
	err = grpc_server_request_call(srv->server, &c->call, &c->details,
	    &c->md_in, srv->cq, srv->cq, &c->t_request);
	if (err != GRPC_CALL_OK) {
		call_free(c);
		return -1;
	}
	return 0;
}

static void *
poller_main(void *arg)
{
	plat_server *srv = arg;
	grpc_event ev;

	for (;;) {
		ev = grpc_completion_queue_next(srv->cq,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE) {
			struct cq_tag *t = ev.tag;

			t->fn(t, ev.success);
		}
	}
	return NULL;
}

static void
on_shutdown_done(struct cq_tag *t, int ok)
{
	plat_server *srv = (plat_server *)((char *)t -
	    offsetof(plat_server, t_shutdown));

	pthread_mutex_lock(&srv->shutdown_mu);
	srv->shutdown_done = 1;
	pthread_cond_signal(&srv->shutdown_cv);
	pthread_mutex_unlock(&srv->shutdown_mu);
}

/* ---- server-wide accessors ---- */

struct metrics *
plat_server_metrics(const plat_server *srv)
{
	return srv->metrics;
}

const struct plat_settings *
plat_server_settings(const plat_server *srv)
{
	return &srv->settings;
}

const char *
plat_server_address(const plat_server *srv)
{
	return srv->address;
}

void
plat_server_set_user(plat_server *srv, void *user)
{
	srv->user = user;
}

int
plat_server_add_metadata(plat_server *srv, const char *key,
    const char *value)
{
	if (srv->nextra_md == 2 * PLAT_EXTRA_METADATA_MAX)
		return -1;
	srv->extra_md[srv->nextra_md++] = xstrdup(key);
	srv->extra_md[srv->nextra_md++] = xstrdup(value);
	return 0;
}

void *
plat_server_user(const plat_server *srv)
{
	return srv->user;
}

int
plat_server_stopping(const plat_server *srv)
{
	return atomic_load(&((plat_server *)srv)->stopping);
}

struct plat_checks *
server_checks(plat_server *srv)
{
	return srv->checks;
}

const char *
server_name(const plat_server *srv)
{
	return srv->svc->name;
}

struct health_state *
server_health(plat_server *srv)
{
	return srv->health;
}

size_t
server_grpc_services(plat_server *srv, const char **out, size_t max)
{
	const char *names[] = { srv->svc->grpc_service, PLAT_HEALTH_SERVICE,
	    PLAT_REFLECTION_V1ALPHA, PLAT_REFLECTION_V1 };
	size_t n = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && n < max;
	    i++)
		if (names[i] != NULL)
			out[n++] = names[i];
	return n;
}

/* ---- start and stop ---- */

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long len;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto fail;
	if ((buf = malloc((size_t)len + 1)) == NULL)
		goto fail;
	if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
		goto fail;
	}
	buf[len] = '\0';
fail:
	fclose(f);
	return buf;
}

static grpc_server_credentials *
server_credentials(const struct plat_settings *s)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_server_credentials *creds;
	char *cert, *key, *ca = NULL;

	if (s->tls_cert == NULL || s->tls_cert[0] == '\0')
		return grpc_insecure_server_credentials_create();
	cert = read_file(s->tls_cert);
	key = read_file(s->tls_key);
	if (s->tls_ca != NULL && s->tls_ca[0] != '\0')
		ca = read_file(s->tls_ca);
	if (cert == NULL || key == NULL) {
		free(cert);
		free(key);
		free(ca);
		return NULL;
	}
	pair.cert_chain = cert;
	pair.private_key = key;
	/* With a CA, clients must present a certificate it signed (mTLS). */
	creds = grpc_ssl_server_credentials_create_ex(ca, &pair, 1,
	    ca != NULL ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
	    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
	explicit_bzero(key, strlen(key));
	free(cert);
	free(key);
	free(ca);
	return creds;
}

/* guarded: the guard runs before these methods (the service's own, unless
 * it checks its callers itself); health and reflection stay open. */
static int
server_mount(plat_server *srv, const struct plat_method *methods, size_t n,
    int guarded, size_t *at)
{
	for (size_t i = 0; i < n; i++) {
		struct mounted_method *mm = &srv->methods[(*at)++];
		int with_payload = methods[i].kind == PLAT_METHOD_UNARY ||
		    methods[i].kind == PLAT_METHOD_SERVER_STREAM;
		const char *path = methods[i].path;
		const char *slash = strrchr(path, '/');

		mm->m = &methods[i];
		mm->srv = srv;
		mm->guarded = guarded;
		/* "/pkg.Service/Method": the names the rules match. */
		if (path[0] == '/' && slash != NULL && slash > path + 1) {
			mm->grpc_service = strndup(path + 1,
			    (size_t)(slash - path - 1));
			mm->grpc_method = slash + 1;
		} else {
			mm->grpc_service = strdup(path);
			mm->grpc_method = "";
		}
		if (mm->grpc_service == NULL)
			abort();
		mm->mx = metrics_method(srv->metrics, methods[i].path);
		mm->handle = grpc_server_register_method(srv->server,
		    methods[i].path, NULL, with_payload ?
		    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER :
		    GRPC_SRM_PAYLOAD_NONE, 0);
		if (mm->handle == NULL) {
			log_error("cannot register method", "method",
			    methods[i].path);
			return -1;
		}
	}
	return 0;
}

static int
server_create(plat_server *srv)
{
	grpc_arg args[3];
	grpc_channel_args chargs;
	grpc_server_credentials *creds;
	size_t at = 0;
	int port;
	const char *colon;

	memset(args, 0, sizeof(args));
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = srv->settings.max_message_bytes;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
	args[1].value.integer = srv->settings.max_message_bytes;
	/* Otherwise a second server silently shares the port. */
	args[2].type = GRPC_ARG_INTEGER;
	args[2].key = GRPC_ARG_ALLOW_REUSEPORT;
	args[2].value.integer = 0;
	chargs.num_args = 3;
	chargs.args = args;

	srv->cq = grpc_completion_queue_create_for_next(NULL);
	srv->server = grpc_server_create(&chargs, NULL);
	grpc_server_register_completion_queue(srv->server, srv->cq, NULL);

	srv->nmethods = srv->svc->nmethods + health_nmethods +
	    reflection_nmethods;
	srv->methods = calloc(srv->nmethods, sizeof(*srv->methods));
	if (srv->methods == NULL)
		abort();
	if (server_mount(srv, srv->svc->methods, srv->svc->nmethods,
	    !srv->svc->self_auth, &at) ||
	    server_mount(srv, health_methods, health_nmethods, 0, &at) ||
	    server_mount(srv, reflection_methods, reflection_nmethods, 0,
	    &at))
		return -1;

	if ((creds = server_credentials(&srv->settings)) == NULL) {
		log_error("cannot read the TLS certificate or key", "cert",
		    srv->settings.tls_cert, "key", srv->settings.tls_key);
		return -1;
	}
	port = grpc_server_add_http2_port(srv->server, srv->settings.listen,
	    creds);
	grpc_server_credentials_release(creds);
	if (port <= 0) {
		log_error("cannot listen", "listen", srv->settings.listen);
		fprintf(stderr, "%s: cannot listen on %s\n", srv->spec.prog,
		    srv->settings.listen);
		return -1;
	}
	colon = strrchr(srv->settings.listen, ':');
	snprintf(srv->address, sizeof(srv->address), "%.*s:%d",
	    (int)(colon - srv->settings.listen), srv->settings.listen, port);
	return 0;
}

static void
server_finish_streams(plat_server *srv)
{
	struct plat_stream **all = NULL, *c;
	size_t n = 0, cap = 0;

	pthread_mutex_lock(&srv->live_mu);
	for (c = srv->live; c != NULL; c = c->live_next) {
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((all = realloc(all, cap * sizeof(*all))) == NULL)
				abort();
		}
		plat_stream_ref(c);
		all[n++] = c;
	}
	pthread_mutex_unlock(&srv->live_mu);
	for (size_t i = 0; i < n; i++) {
		plat_stream_finish(all[i], PLAT_UNAVAILABLE,
		    "server shutting down");
		plat_stream_unref(all[i]);
	}
	free(all);
}

static void
server_shutdown(plat_server *srv)
{
	int done;

	atomic_store(&srv->stopping, 1);
	srv->t_shutdown.fn = on_shutdown_done;
	grpc_server_shutdown_and_notify(srv->server, srv->cq,
	    &srv->t_shutdown);
	health_close_watchers(srv->health);
	server_finish_streams(srv);

	/* Drain in-flight calls for up to the grace period. Once none of
	 * ours is left, what gRPC still waits for is no call of ours (one
	 * that came in after the shutdown began, never handed to a handler,
	 * held until cancelled): cancel it rather than wait out the grace
	 * (an idle client connection made every stop take 5 s). */
	pthread_mutex_lock(&srv->shutdown_mu);
	for (int64_t end = plat_now_ms() + srv->settings.grace_ms;;) {
		int64_t left = end - plat_now_ms();

		done = plat_cond_wait_ms(&srv->shutdown_cv, &srv->shutdown_mu,
		    left < DRAIN_CHECK_MS ? left : DRAIN_CHECK_MS,
		    &srv->shutdown_done);
		if (done || left <= DRAIN_CHECK_MS ||
		    atomic_load(&srv->active) == 0)
			break;
	}
	pthread_mutex_unlock(&srv->shutdown_mu);
	if (!done && atomic_load(&srv->active) == 0) {
		grpc_server_cancel_all_calls(srv->server);
		pthread_mutex_lock(&srv->shutdown_mu);
		while (!srv->shutdown_done)
			pthread_cond_wait(&srv->shutdown_cv,
			    &srv->shutdown_mu);
		pthread_mutex_unlock(&srv->shutdown_mu);
	} else if (!done) {
		log_warn("grace period over, cancelling the calls left");
		grpc_server_cancel_all_calls(srv->server);
		pthread_mutex_lock(&srv->shutdown_mu);
		while (!srv->shutdown_done)
			pthread_cond_wait(&srv->shutdown_cv,
			    &srv->shutdown_mu);
		pthread_mutex_unlock(&srv->shutdown_mu);
	}
	/* A handler still running (a slow database query, say) starts its
	 * answer's batch when it returns, and a batch on a shut-down queue
	 * aborts the process: wait for every accepted call to be freed. The
	 * calls are cancelled by now, so this is bounded by the handlers. */
	for (int64_t until = plat_now_ms() + srv->settings.grace_ms + 5000;
	    atomic_load(&srv->active) > 0; usleep(1000))
		if (plat_now_ms() > until) {
			log_error("calls still held after the grace period",
			    "method", "(any)");
			break;
		}
	grpc_completion_queue_shutdown(srv->cq);
	for (int i = 0; i < srv->npollers; i++)
		pthread_join(srv->pollers[i], NULL);
	grpc_server_destroy(srv->server);
	grpc_completion_queue_destroy(srv->cq);
}

/* Where the metrics endpoint is reached from elsewhere, registered as
 * the node's "metrics" metadata (monitor-srv scrapes it): the
 * advertised host when it listens on every address. */
static void
server_fix_metrics_advertised(plat_server *srv)
{
	const char *ml = srv->settings.metrics_listen;
	const char *colon = ml != NULL ? strrchr(ml, ':') : NULL;
	const char *acolon = strrchr(srv->advertised, ':');
	size_t hlen;

	srv->metrics_advertised[0] = '\0';
	if (colon == NULL || acolon == NULL)
		return;
	hlen = (size_t)(colon - ml);
	if (hlen == 0 || (hlen == 7 && strncmp(ml, "0.0.0.0", 7) == 0) ||
	    (hlen == 4 && strncmp(ml, "[::]", 4) == 0))
		snprintf(srv->metrics_advertised,
		    sizeof(srv->metrics_advertised), "%.*s%s",
		    (int)(acolon - srv->advertised), srv->advertised, colon);
	else
		snprintf(srv->metrics_advertised,
		    sizeof(srv->metrics_advertised), "%s", ml);
}

/* The default node id ends in the listen port; with --listen :0 that is
 * "-0", so put the bound port there to keep ids unique. */
static void
server_fix_node_id(plat_server *srv)
{
	const char *id = srv->settings.node_id;
	const char *lport = strrchr(srv->settings.listen, ':');
	size_t n = id != NULL ? strlen(id) : 0;
	char *fixed;

	if (n < 2 || strcmp(id + n - 2, "-0") != 0 || lport == NULL ||
	    strcmp(lport, ":0") != 0)
		return;
	if (asprintf(&fixed, "%.*s-%s", (int)(n - 2), id,
	    strrchr(srv->address, ':') + 1) < 0)
		abort();
	free(srv->settings.node_id);
	srv->settings.node_id = fixed;
}

/* The address registered with discovery: --advertise, the bound address
 * when that is not given (or is the listen address), and with --listen
 * :0 the port actually bound. */
static void
server_fix_advertised(plat_server *srv)
{
	const char *adv = srv->settings.advertise;
	size_t alen;

	if (adv == NULL || strcmp(adv, srv->settings.listen) == 0)
		snprintf(srv->advertised, sizeof(srv->advertised), "%s",
		    srv->address);
	else if ((alen = strlen(adv)) > 2 && strcmp(adv + alen - 2, ":0") == 0)
		snprintf(srv->advertised, sizeof(srv->advertised), "%.*s:%s",
		    (int)(alen - 2), adv, strrchr(srv->address, ':') + 1);
	else
		snprintf(srv->advertised, sizeof(srv->advertised), "%s", adv);
}

const char *
plat_server_advertised(const plat_server *srv)
{
	return srv->advertised;
}

const char *
plat_server_started(const plat_server *srv)
{
	return srv->started;
}

/* Tears down a server that was created but never started. */
static void
server_discard_unstarted(plat_server *srv)
{
	grpc_event ev;
	int tag;

	if (srv->server != NULL) {
		grpc_server_shutdown_and_notify(srv->server, srv->cq, &tag);
		do {
			ev = grpc_completion_queue_next(srv->cq,
			    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		} while (ev.type == GRPC_OP_COMPLETE && ev.tag != &tag);
		grpc_server_destroy(srv->server);
		srv->server = NULL;
	}
	if (srv->cq != NULL) {
		grpc_completion_queue_shutdown(srv->cq);
		while (grpc_completion_queue_next(srv->cq,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		    GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(srv->cq);
		srv->cq = NULL;
	}
}

static const char **
server_endpoints(const plat_server *srv)
{
	const struct plat_service *svc = srv->svc;
	const char **eps = calloc(svc->nmethods + 1, sizeof(*eps));

	if (eps == NULL)
		abort();
	for (size_t i = 0; i < svc->nmethods; i++) {
		/* "/pkg.Service/Method" → "Service.Method" */
		const char *p = svc->methods[i].path;
		const char *dot = strrchr(p, '.');

		eps[i] = dot != NULL ? dot + 1 : p;
	}
	return eps;
}

static void
server_free(plat_server *srv)
{
	for (size_t i = 0; i < srv->nextra_md; i++)
		free(srv->extra_md[i]);
	plat_events_free(srv->events);  /* before the metrics reading it */
	plat_trace_free();
	health_free(srv->health);
	checks_free(srv->checks);
	metrics_free(srv->metrics);
	for (size_t i = 0; srv->methods != NULL && i < srv->nmethods; i++)
		free(srv->methods[i].grpc_service);
	free(srv->methods);
	free(srv->pollers);
	settings_free(&srv->settings);
	pthread_mutex_destroy(&srv->live_mu);
	pthread_mutex_destroy(&srv->shutdown_mu);
	pthread_cond_destroy(&srv->shutdown_cv);
	free(srv);
}

static int
server_start_pollers(plat_server *srv)
{
	srv->npollers = srv->settings.workers;
	srv->pollers = calloc((size_t)srv->npollers, sizeof(pthread_t));
	if (srv->pollers == NULL)
		abort();
	for (int i = 0; i < srv->npollers; i++)
		if (pthread_create(&srv->pollers[i], NULL, poller_main,
		    srv) != 0) {
			srv->npollers = i;
			return -1;
		}
	return 0;
}

static void
server_arm_all(plat_server *srv)
{
	for (size_t i = 0; i < srv->nmethods; i++) {
		int n = srv->methods[i].m->kind == PLAT_METHOD_UNARY ?
		    SERVER_REQUESTS_PER_METHOD : 4;

		for (int j = 0; j < n; j++)
			server_arm(&srv->methods[i]);
	}
	server_arm_unregistered(srv);
	server_arm_unregistered(srv);
}

/*
 * Where this server's tokens and the guard's keys and rules come from:
 * --auth, or for auth-srv itself its own address. NULL: nowhere.
 */
static const char *
server_auth_address(const plat_server *srv)
{
	if (srv->settings.auth != NULL)
		return srv->settings.auth;
	return srv->svc->self_auth ? srv->address : NULL;
}

/*
 * The settings the guard and the identity need, checked before anything
 * starts: a one-line error naming them and 2, or 0 with the credentials
 * (if any) in *creds.
 */
static int
server_check_auth(plat_server *srv, struct plat_credentials *creds,
    char *err, size_t errlen)
{
	const struct plat_settings *s = &srv->settings;

	if (!s->insecure_no_auth && !srv->svc->self_auth && s->auth == NULL) {
		snprintf(err, errlen, "--auth (PLATFORM_AUTH): required: the "
		    "auth-srv this server's guard reads keys and rules from "
		    "(or --insecure-no-auth, for development only)");
		return 2;
	}
	if (plat_credentials_load(s->credentials, creds, err, errlen) < 0)
		return 2;
	return 0;
}

/*
 * This server's side of the fleet's security: its identity (tokens for
 * its calls), the client every outbound call goes through, and the guard
 * in front of its methods. The guard is made before serving, so no call
 * is ever answered unguarded.
 */
static int
server_secure(plat_server *srv, struct plat_credentials *creds)
{
	const struct plat_settings *s = &srv->settings;
	const char *auth = server_auth_address(srv);
	struct plat_client_opts co = {
		.discovery = s->discovery,
		.tls_ca = s->tls_ca,
		.tls_cert = s->tls_cert,
		.tls_key = s->tls_key,
	};

	if (creds->client_id != NULL && auth != NULL) {
		srv->identity = plat_identity_new(auth, creds, &co);
		if (srv->identity == NULL)
			return -1;
		co.token = plat_identity_token;
		co.token_rejected = plat_identity_rejected;
		co.token_arg = srv->identity;
		log_info("service identity", "client_id",
		    plat_identity_client_id(srv->identity), "auth", auth);
	} else if (creds->client_id != NULL) {
		log_warn("credentials given but no --auth to get tokens from: "
		    "calls to other servers carry no token");
	} else if (!s->insecure_no_auth) {
		log_warn("no service identity (--credentials, or "
		    "PLATFORM_CLIENT_ID and PLATFORM_CLIENT_SECRET): calls to "
		    "other servers carry no token and are refused",
		    "auth", auth);
	}
	plat_credentials_free(creds);
	if ((s->discovery != NULL || srv->identity != NULL ||
	    s->trace_endpoint != NULL ||
	    (!s->insecure_no_auth && !srv->svc->self_auth)) &&
	    (srv->client = plat_client_new(&co)) == NULL)
		return -1;
	if (s->insecure_no_auth && !srv->svc->self_auth) {
		log_warn("guard OFF: every caller is trusted, no token is "
		    "checked (--insecure-no-auth / PLATFORM_INSECURE_NO_AUTH: "
		    "for development only, never in production)");
		return 0;
	}
	if (srv->svc->self_auth)
		return 0;
	srv->guard = plat_guard_start(&(struct plat_guard_opts){
		.auth = auth,
		.issuer = s->auth_issuer,
		.audience = s->auth_audience,
		.client = srv->client,
	});
	if (srv->guard == NULL)
		return -1;
	log_info("guard on", "auth", auth, "issuer", s->auth_issuer,
	    "audience", s->auth_audience);
	return 0;
}

/* Ends every outbound call: before draining, since the server waits for
 * every connection to go and nothing else would read the GOAWAY on a
 * channel this process opened to itself. The guard keeps its last keys
 * and rules for the calls still arriving. */
static void
server_close_outbound(plat_server *srv)
{
	plat_guard_stop(srv->guard);
	plat_client_free(srv->client);
	srv->client = NULL;
	plat_identity_free(srv->identity);
	srv->identity = NULL;
}

/* "on" when the guard checks every call, "self" when the service checks
 * its own callers, "off" under --insecure-no-auth. */
static const char *
server_auth_mode(const plat_server *srv)
{
	if (srv->svc->self_auth)
		return "self";
	return srv->guard != NULL ? "on" : "off";
}

int
plat_main(const struct plat_service *svc, int argc, char **argv)
{
	plat_server *srv;
	char err[512], prog[128], ttl[16];
	sigset_t sigs;
	int sig, rc, exit_code = 1;
	plat_registrar *reg = NULL;
	struct plat_router_follow *follow = NULL;
	const char **eps = NULL;
	struct plat_credentials creds = { 0 };

	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		abort();
	srv->svc = svc;
	snprintf(srv->started, sizeof(srv->started), "%lld",
	    (long long)plat_wall_ms());
	pthread_mutex_init(&srv->live_mu, NULL);
	pthread_mutex_init(&srv->shutdown_mu, NULL);
	plat_cond_init(&srv->shutdown_cv);
	snprintf(prog, sizeof(prog), "%s-srv", svc->name);
	srv->spec.prog = prog;
	srv->spec.default_listen = svc->default_listen;
	srv->spec.extra = svc->options;
	srv->spec.nextra = svc->noptions;
	rc = settings_parse(&srv->settings, &srv->spec, argc, argv, NULL,
	    err, sizeof(err));
	if (rc == SETTINGS_HELP) {
		settings_usage(stdout, &srv->spec);
		server_free(srv);
		return 0;
	}
	if (rc == SETTINGS_OK && svc->check_settings != NULL &&
	    svc->check_settings(&srv->settings, err, sizeof(err)) != 0)
		rc = SETTINGS_ERROR;
	if (rc == SETTINGS_OK)
		rc = server_check_auth(srv, &creds, err, sizeof(err));
	if (rc != SETTINGS_OK) {
		fprintf(stderr, "%s: %s\n", prog, err);
		server_free(srv);
		return 2;
	}
	log_setup(srv->settings.log_format, srv->settings.log_level, prog);

	/* Signals are taken by sigwait in this thread only. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	grpc_init();
	srv->health = health_new();
	srv->checks = checks_new();
	srv->metrics = metrics_new(svc->name);
	srv->mx_unimplemented = metrics_method(srv->metrics,
	    "(unimplemented)");
	srv->events = plat_events_new(&(struct plat_events_opts){
	    .source = prog }, srv->metrics);
	plat_trace_setup(prog, srv->settings.node_id,
	    srv->settings.trace_endpoint != NULL ?
	    srv->settings.trace_endpoint : "", srv->settings.trace_sample,
	    srv->settings.trace_tail != 0, srv->metrics);
	if (srv->settings.metrics_listen != NULL &&
	    srv->settings.metrics_listen[0] != '\0' &&
	    metrics_serve(srv->metrics, srv->settings.metrics_listen) != 0) {
		log_error("cannot listen for metrics", "metrics_listen",
		    srv->settings.metrics_listen);
		fprintf(stderr, "%s: cannot listen on %s for metrics\n", prog,
		    srv->settings.metrics_listen);
		goto out_grpc;
	}
	if (server_create(srv) != 0) {
		server_discard_unstarted(srv);
		goto out_grpc;
	}
	/* The node's name and registered address are known from here on
	 * (init may use them). */
	server_fix_node_id(srv);
	server_fix_advertised(srv);
	if ((srv->settings.discovery == NULL ||
	    srv->settings.discovery[0] == '\0') && svc->self_discovery) {
		free(srv->settings.discovery);
		if ((srv->settings.discovery = strdup(srv->address)) == NULL)
			abort();
	}
	if (server_secure(srv, &creds) != 0) {
		log_error("cannot set up the guard or the service identity");
		server_close_outbound(srv);
		server_discard_unstarted(srv);
		goto out_grpc;
	}
	if (svc->init != NULL && svc->init(srv, &srv->settings) != 0) {
		log_error("service failed to start", "service", svc->name);
		server_close_outbound(srv);
		server_discard_unstarted(srv);
		goto out_grpc;
	}
	grpc_server_start(srv->server);
	server_arm_all(srv);
	if (server_start_pollers(srv) != 0) {
		log_error("cannot start pollers");
		server_close_outbound(srv);
		server_shutdown(srv);
		goto out_fini;
	}
	plat_health_set(srv, "", PLAT_HEALTH_SERVING);
	plat_health_set(srv, svc->grpc_service, PLAT_HEALTH_SERVING);
	plat_trace_connect(srv->client);
	if (srv->settings.statsd != NULL && metrics_statsd(srv->metrics,
	    srv->settings.statsd, srv->settings.statsd_interval_s,
	    srv->settings.node_id) != 0)
		log_warn("cannot push metrics to statsd", "statsd",
		    srv->settings.statsd);
	log_info("server started", "service", svc->name, "version",
	    svc->version, "listen", srv->address, "node",
	    srv->settings.node_id, "tls",
	    srv->settings.tls_cert != NULL ? "on" : "off", "auth",
	    server_auth_mode(srv));

	if (srv->settings.discovery != NULL &&
	    srv->settings.discovery[0] != '\0') {
		const char *md[9 + 2 * PLAT_EXTRA_METADATA_MAX] = {
		    "grpc_service", svc->grpc_service,
		    "auth", server_auth_mode(srv),
		    PLAT_MD_STARTED, srv->started };
		struct plat_registration r;
		size_t k = 6;

		server_fix_metrics_advertised(srv);
		if (srv->metrics_advertised[0] != '\0') {
			md[k++] = PLAT_MD_METRICS;
			md[k++] = srv->metrics_advertised;
		}
		for (size_t i = 0; i < srv->nextra_md; i++)
			md[k++] = srv->extra_md[i];

		eps = server_endpoints(srv);
		memset(&r, 0, sizeof(r));
		r.service = svc->name;
		r.version = svc->version;
		r.node_id = srv->settings.node_id;
		r.address = srv->advertised;
		r.metadata = md;
		r.endpoints = eps;
		r.ttl_s = srv->settings.register_ttl_s;
		reg = plat_registrar_start(srv->client,
		    srv->settings.discovery, &r);
		plat_events_connect(srv->events, srv->client);
		/* Calls to other servers follow router-srv's weights and
		 * limits when there is one, and report to it. */
		if (!svc->self_router)
			follow = plat_router_follow_start(srv->client,
			    srv->settings.node_id, (const char *const[]){
			    "service", svc->name, "version", svc->version,
			    "node", srv->settings.node_id, NULL });
	}
	checks_start(srv->checks, srv);

	do {
		if (sigwait(&sigs, &sig) != 0)
			sig = SIGTERM;
	} while (sig != SIGINT && sig != SIGTERM);
	snprintf(ttl, sizeof(ttl), "%d", srv->settings.grace_ms);
	log_info("shutting down", "signal", sig == SIGINT ? "SIGINT" :
	    "SIGTERM", "grace_ms", ttl);

	/* The checks first: they report and set health, which from here on
	 * is the shutdown's. */
	checks_stop(srv->checks);
	/* Leave the registry first so nobody is routed here while draining. */
	plat_health_set(srv, "", PLAT_HEALTH_NOT_SERVING);
	plat_health_set(srv, svc->grpc_service, PLAT_HEALTH_NOT_SERVING);
	plat_registrar_stop(reg);
	/* Events still buffered get a moment to reach event-srv; later ones
	 * (emitted while draining) are dropped and counted. */
	plat_events_stop(srv->events, srv->settings.grace_ms < EVENTS_FLUSH_MS ?
	    srv->settings.grace_ms : EVENTS_FLUSH_MS);
	if (svc->stopping != NULL)
		svc->stopping(srv);
	server_shutdown(srv);
	/* The drained calls' spans, then the client they go through. */
	plat_trace_stop(EVENTS_FLUSH_MS);
	/* After the drain: a call still answering may call other servers. */
	plat_router_follow_stop(follow);
	server_close_outbound(srv);
	exit_code = 0;
out_fini:
	metrics_stop(srv->metrics);
	if (svc->fini != NULL)
		svc->fini(srv);
	free(eps);
out_grpc:
	plat_credentials_free(&creds);
	plat_guard_free(srv->guard);
	srv->guard = NULL;
	grpc_shutdown();
	log_info("stopped", "exit", exit_code == 0 ? "0" : "1");
	server_free(srv);
	return exit_code;
}
