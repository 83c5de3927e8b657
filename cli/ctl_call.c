/*
 * ctl_call: how every platformctl command calls a server. See
 * ctl_call.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_out.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/log.h"
#include "platform/xalloc.h"

#define POLL_MS		200	/* how soon a stream notices a signal */
#define ERRLEN		512

static plat_client *the_client;	/* see ctl_client */

plat_client *
ctl_client(const struct ctl_globals *g)
{
	struct plat_client_opts o = {
		/* The client asks discovery for nothing until a call by
		 * service name. */
		.discovery = g->discovery,
		.tls_ca = g->tls_ca,
		.tls_cert = g->tls_cert,
		.tls_key = g->tls_key,
		.default_deadline_ms = g->timeout_ms,
		.token = ctl_auth_token,
	};

	if (the_client != NULL)
		return the_client;
	/* What the library logs (a TLS file it cannot read, say) is for a
	 * person at a terminal here, not for a log collector. */
	log_setup(LOG_FORMAT_TEXT, LOG_LEVEL_WARN, "platformctl");
	if ((the_client = plat_client_new(&o)) == NULL) {
		fprintf(stderr, "platformctl: cannot set up the gRPC client "
		    "(check the --tls-* files)\n");
		exit(CTL_FAIL);
	}
	return the_client;
}

void
ctl_client_free(void)
{
	if (the_client != NULL)
		plat_client_free(the_client);
	the_client = NULL;
}

int
ctl_unary(const struct ctl_globals *g, const char *service,
    const char *addr, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
    int idempotent, const char *const *md, char *err, size_t errlen)
{
	struct plat_call_opts co = {
		.deadline_ms = g->timeout_ms,
		.idempotent = idempotent,
		.metadata = md,
	};
	plat_client *c = ctl_client(g);

	err[0] = '\0';
	*resp = NULL;
	/* discovery-srv: whichever of its replicas answers. */
	if (addr != NULL && g->discovery != NULL &&
	    strcmp(addr, g->discovery) == 0)
		return plat_client_call_discovery(c, method, req, desc, resp,
		    &co, err, errlen);
	if (addr != NULL)
		return plat_client_call_addr(c, addr, method, req, desc, resp,
		    &co, err, errlen);
	return plat_client_call(c, service, method, req, desc, resp, &co,
	    err, errlen);
}

int
ctl_call_service(const struct ctl_run *r, const char *service,
    const char *addr, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
    int idempotent)
{
	char err[ERRLEN];
	int rc;

	rc = ctl_unary(r->g, service, addr, method, req, desc, resp,
	    idempotent, ctl_auth_metadata(r->g), err, sizeof(err));
	return rc != 0 ? ctl_fail(ctl_method_name(method), rc, err) : CTL_OK;
}

int
ctl_service_address(const struct ctl_globals *g, const char *service,
    const char *given, char **addr)
{
	static const char method[] =
	    "/platform.discovery.v1.Discovery/GetService";
	Platform__Discovery__V1__GetServiceRequest req =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_REQUEST__INIT;
	Platform__Discovery__V1__GetServiceResponse *r;
	ProtobufCMessage *m = NULL;
	char err[512] = "";
	int rc;

	*addr = NULL;
	if (given != NULL) {
		*addr = xstrdup(given);
		return 0;
	}
	req.name = (char *)service;
	rc = ctl_unary(g, NULL, g->discovery, method, &req.base,
	    &platform__discovery__v1__get_service_response__descriptor, &m,
	    1, ctl_auth_metadata(g), err, sizeof(err));
	if (rc != 0)
		return ctl_fail(ctl_method_name(method), rc, err);
	r = (Platform__Discovery__V1__GetServiceResponse *)m;
	for (size_t i = 0; i < r->n_services && *addr == NULL; i++)
		for (size_t j = 0; j < r->services[i]->n_nodes; j++)
			if (*r->services[i]->nodes[j]->address != '\0') {
				*addr = xstrdup(
				    r->services[i]->nodes[j]->address);
				break;
			}
	protobuf_c_message_free_unpacked(m, NULL);
	if (*addr != NULL)
		return 0;
	fprintf(stderr, "platformctl: service \"%s\" has no live node in "
	    "discovery %s\n", service, g->discovery);
	return 1;
}

void *
ctl_field(const ProtobufCMessage *m, const char *name, size_t *count)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
	    name);

	/* A name the contract does not have is a bug here, not input. */
	if (f == NULL)
		abort();
	if (count != NULL)
		memcpy(count, (const char *)m + f->quantifier_offset,
		    sizeof(*count));
	return (char *)m + f->offset;
}

/* The repeated field items of answer m: *n of them. */
static void **
page_items(ProtobufCMessage *m, const char *items, size_t *n)
{
	void **v;

	memcpy(&v, ctl_field(m, items, n), sizeof(v));
	return v;
}

int
ctl_pages_each(const struct ctl_run *r, ctl_call_fn *call,
    const char *method, ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, const char *items,
    int32_t page, size_t max, ctl_page_fn *fn, void *arg)
{
	char **token = ctl_field(req, "page_token", NULL), *next;
	char *orig = *token, *owned = NULL, *copy;
	int32_t *size = ctl_field(req, "page_size", NULL);
	ProtobufCMessage *m;
	size_t got = 0, k;
	void **v;
	int rc;

	for (;;) {
		*size = max > 0 && max - got < (size_t)page ?
		    (int32_t)(max - got) : page;
		if ((rc = call(r, method, req, desc, &m, 1)) != CTL_OK)
			break;
		v = page_items(m, items, &k);
		got += k;
		memcpy(&next, ctl_field(m, "next_page_token", NULL),
		    sizeof(next));
		/* The token outlives the page, which fn may free. */
		copy = xstrdup(next);
		if ((rc = fn(arg, m, v, k)) != CTL_OK || *copy == '\0' ||
		    (max > 0 && got >= max)) {
			free(copy);
			break;
		}
		if (strcmp(*token, copy) == 0) {
			fprintf(stderr, "platformctl: %s: the server repeated "
			    "page token \"%s\"\n", ctl_method_name(method),
			    copy);
			free(copy);
			rc = CTL_FAIL;
			break;
		}
		free(owned);
		*token = owned = copy;
	}
	*token = orig;
	free(owned);
	return rc;
}

/* Keeps answer m and its items (arg: the ctl_pages). */
static int
pages_add(void *arg, ProtobufCMessage *m, void **v, size_t k)
{
	struct ctl_pages *pg = arg;

	pg->p = xrealloc(pg->p, (pg->n + 1) * sizeof(*pg->p));
	pg->p[pg->n++] = m;
	pg->items = xrealloc(pg->items, (pg->nitems + k + 1) *
	    sizeof(*pg->items));
	if (k > 0)
		memcpy(pg->items + pg->nitems, v, k * sizeof(*v));
	pg->nitems += k;
	return CTL_OK;
}

int
ctl_pages_fetch(const struct ctl_run *r, ctl_call_fn *call,
    const char *method, ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, const char *items,
    int32_t page, size_t max, struct ctl_pages *pg)
{
	return ctl_pages_each(r, call, method, req, desc, items, page, max,
	    pages_add, pg);
}

void
ctl_pages_free(struct ctl_pages *pg)
{
	for (size_t i = 0; i < pg->n; i++)
		protobuf_c_message_free_unpacked(pg->p[i], NULL);
	free(pg->p);
	free(pg->items);
	memset(pg, 0, sizeof(*pg));
}

/* Reads s until it ends, fn stops, or a signal asks us to stop. */
static int
stream_read(plat_client_stream *s, const char *method,
    const ProtobufCMessageDescriptor *desc, ctl_msg_fn *fn, void *arg)
{
	ProtobufCMessage *m;
	char err[ERRLEN] = "";
	int n, rc = CTL_OK;

	while (!ctl_stop && rc == CTL_OK) {
		n = plat_client_stream_next(s, desc, &m, POLL_MS);
		if (n == PLAT_STREAM_TIMEOUT || (n == PLAT_STREAM_MESSAGE &&
		    m == NULL))
			continue;
		if (n != PLAT_STREAM_MESSAGE)
			break;
		rc = fn(arg, m);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	if (ctl_stop || rc != CTL_OK) {
		plat_client_stream_cancel(s);
		return rc == CTL_STREAM_DONE ? CTL_OK : rc;
	}
	if ((n = plat_client_stream_status(s, err, sizeof(err))) != 0)
		return ctl_fail(ctl_method_name(method), n, err);
	return CTL_OK;
}

int
ctl_stream(const struct ctl_globals *g, const char *addr,
    const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ctl_msg_fn *fn, void *arg)
{
	plat_client_stream *s = NULL;
	char err[ERRLEN] = "", first[300];
	int rc;

	ctl_catch_signals();
	/* Of several replicas (a,b,c) a stream goes to the first. */
	if (addr != NULL && strchr(addr, ',') != NULL) {
		snprintf(first, sizeof(first), "%.*s",
		    (int)strcspn(addr, ","), addr);
		addr = first;
	}
	rc = plat_client_stream_open(ctl_client(g), addr, method, req, 0,
	    ctl_auth_metadata(g), &s, err, sizeof(err));
	if (rc != 0)
		return ctl_fail(ctl_method_name(method), rc, err);
	rc = stream_read(s, method, desc, fn, arg);
	plat_client_stream_free(s);
	return rc;
}
