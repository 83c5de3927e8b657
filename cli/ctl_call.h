/*
 * ctl_call: how every platformctl command calls a server.
 *
 * One gRPC client per run, made from the global settings; unary calls
 * at an address or by service name through discovery; list methods
 * followed page by page; server streams read until they end or Ctrl-C.
 * Every call sends the stored login (ctl_auth_metadata).
 */
#ifndef CTL_CALL_H
#define CTL_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "ctl_cmd.h"
#include "platform/client.h"

/* The one gRPC client of the run, made on first use from the global
 * settings (discovery, TLS, --timeout), so that it can call a service
 * by name; exits 1 after a message when it cannot be made. */
plat_client *ctl_client(const struct ctl_globals *g);
void ctl_client_free(void);

/* One unary call under --timeout: at addr when not NULL, else at a node
 * of service found through discovery. Only idempotent calls are retried
 * (on UNAVAILABLE): a write retried could be done twice. The gRPC
 * status; err says why a call failed. */
int ctl_unary(const struct ctl_globals *g, const char *service,
    const char *addr, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
    int idempotent, const char *const *md, char *err, size_t errlen);

/* A group's own call to its server: CTL_OK, or CTL_FAIL after saying
 * why on stderr. */
typedef int ctl_call_fn(const struct ctl_run *r, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent);

/* What every group's ctl_call_fn does: ctl_unary to addr (else the
 * service by discovery) with the stored login, the failure reported
 * as ctl_fail does ("platformctl: Get: NOT_FOUND: ..."). CTL_OK, or
 * CTL_FAIL after the message. */
int ctl_call_service(const struct ctl_run *r, const char *service,
    const char *addr, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
    int idempotent);

/* The address of a service for a stream (the client resolves names only
 * for unary calls): given when not NULL, else the first live node of
 * service in discovery. 0 with *addr malloc'd, or 1 after a message. */
int ctl_service_address(const struct ctl_globals *g, const char *service,
    const char *given, char **addr);

/* Field name of message m, through its descriptor (*count: a repeated
 * field's length, when count is not NULL). */
void *ctl_field(const ProtobufCMessage *m, const char *name, size_t *count);

/* Every answer of a list, kept whole: a table needs every row before it
 * knows its widths. */
struct ctl_pages {
	size_t n;
	ProtobufCMessage **p;
	size_t nitems;
	void **items;			/* the listed messages, into p */
};

/*
 * Calls a list method until its last page: req has page_size and
 * page_token, each answer the repeated field items and next_page_token
 * (every List* of the contract does). Pages of at most page, up to max
 * items (0: all). A server handing back the token it was given ends it
 * (it would keep us here forever). CTL_OK, or CTL_FAIL after a message;
 * pg holds what came either way, for ctl_pages_free.
 */
int ctl_pages_fetch(const struct ctl_run *r, ctl_call_fn *call,
    const char *method, ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, const char *items,
    int32_t page, size_t max, struct ctl_pages *pg);
void ctl_pages_free(struct ctl_pages *pg);

/* What ctl_pages_each hands each answer m to, with its k items v: fn
 * owns m from then on (frees it, or keeps it). CTL_OK to go on. */
typedef int ctl_page_fn(void *arg, ProtobufCMessage *m, void **v, size_t k);

/* ctl_pages_fetch one page at a time, for output that need not wait
 * for the last page (and memory that need not hold them all): each
 * answer goes to fn as it comes. CTL_OK, or CTL_FAIL after a message
 * (or what fn returned). */
int ctl_pages_each(const struct ctl_run *r, ctl_call_fn *call,
    const char *method, ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, const char *items,
    int32_t page, size_t max, ctl_page_fn *fn, void *arg);

/* What a stream's reader returns to go on (CTL_OK), to stop with a
 * failure (CTL_FAIL) or to stop because it has what it wanted. */
#define CTL_STREAM_DONE	3
typedef int ctl_msg_fn(void *arg, const ProtobufCMessage *m);

/* Opens a server stream of method at addr, without a deadline (it lasts
 * as long as the operator wants it), and gives each message (of desc)
 * to fn until the stream ends, fn stops, or SIGINT/SIGTERM: those end
 * it normally, cancelled. The exit status: 0, or 1 after a message. */
int ctl_stream(const struct ctl_globals *g, const char *addr,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ctl_msg_fn *fn, void *arg);

#endif
