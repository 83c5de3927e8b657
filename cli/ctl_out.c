/*
 * ctl_out: platformctl's output helpers. See ctl_out.h.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_auth.h"
#include "ctl_out.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/log.h"
#include "platform/xalloc.h"

volatile sig_atomic_t ctl_stop;

static plat_client *the_client;	/* see ctl_client */

char *
ctl_safe_dup(const char *s)
{
	char *d = xstrdup(s);

	for (char *p = d; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return d;
}

void
ctl_put_line(FILE *f, const char *fmt, ...)
{
	va_list ap;
	char *raw, *line;

	va_start(ap, fmt);
	if (vasprintf(&raw, fmt, ap) < 0)
		abort();
	va_end(ap);
	line = ctl_safe_dup(raw);
	fprintf(f, "%s\n", line);
	free(line);
	free(raw);
}

size_t
ctl_str_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void
ctl_table_row(struct ctl_table *t, const char *const *row)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cell = xrealloc(t->cell, t->cap * t->ncols *
		    sizeof(*t->cell));
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cell[t->nrows * t->ncols + i] = ctl_safe_dup(row[i]);
	t->nrows++;
}

/* The last column is not padded: that would only leave trailing blanks. */
void
ctl_table_print(const struct ctl_table *t, FILE *f)
{
	size_t w[CTL_TABLE_MAXCOLS] = { 0 };

	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		size_t n = ctl_str_width(t->cell[i]);

		if (n > w[i % t->ncols])
			w[i % t->ncols] = n;
	}
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cell[r * t->ncols + c];

			if (c + 1 == t->ncols)
				fprintf(f, "%s\n", s);
			else
				fprintf(f, "%s%*s", s, (int)(w[c] -
				    ctl_str_width(s) + 2), "");
		}
}

void
ctl_table_free(struct ctl_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cell[i]);
	free(t->cell);
}

json_t *
ctl_jstr(const char *s)
{
	json_t *j = json_string(s != NULL ? s : "");
	char *d;

	if (j != NULL)
		return j;
	d = ctl_safe_dup(s);
	for (char *p = d; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	j = json_string(d);
	free(d);
	return j;
}

int
ctl_json_print(json_t *j, size_t flags)
{
	int bad = j == NULL || json_dumpf(j, stdout, (flags ? flags :
	    JSON_INDENT(2)) | JSON_ENCODE_ANY) != 0;

	json_decref(j);
	if (bad) {
		fprintf(stderr, "platformctl: cannot write JSON\n");
		return 1;
	}
	putchar('\n');
	return 0;
}

const char *
ctl_method_name(const char *method)
{
	const char *p = strrchr(method, '/');

	return p != NULL ? p + 1 : method;
}

static void
on_signal(int sig)
{
	ctl_stop = sig;
}

void
ctl_catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int
ctl_fail(const char *what, int code, const char *err)
{
	char *msg = ctl_safe_dup(err);

	fprintf(stderr, "platformctl: %s: %s%s%s\n", what,
	    plat_status_name(code), *msg != '\0' ? ": " : "", msg);
	free(msg);
	return 1;
}

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
	if (addr != NULL)
		return plat_client_call_addr(c, addr, method, req, desc, resp,
		    &co, err, errlen);
	return plat_client_call(c, service, method, req, desc, resp, &co,
	    err, errlen);
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
