/*
 * judge: monitor-srv's pure decisions. See judge.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "judge.h"
#include "platform/hash.h"

const char *
mon_status_name(int status)
{
	switch (status) {
	case MON_PASSING:
		return "passing";
	case MON_WARNING:
		return "warning";
	case MON_CRITICAL:
		return "critical";
	default:
		return "unspecified";
	}
}

int
mon_probe_status(int code, int serving, const char *message, char *out,
    size_t outlen)
{
	if (message == NULL)
		message = "";
	switch (code) {
	case 0:
		if (serving == MON_HEALTH_SERVING) {
			snprintf(out, outlen, "SERVING");
			return MON_PASSING;
		}
		snprintf(out, outlen, "%s", serving ==
		    MON_HEALTH_NOT_SERVING ? "NOT_SERVING" : serving ==
		    MON_HEALTH_SERVICE_UNKNOWN ? "SERVICE_UNKNOWN" :
		    "unknown serving status");
		return MON_CRITICAL;
	case 4:
		snprintf(out, outlen, "timeout: no answer within the probe's "
		    "timeout");
		return MON_CRITICAL;
	case 5:
		snprintf(out, outlen, "SERVICE_UNKNOWN: %s", message);
		return MON_CRITICAL;
	case 12:
		snprintf(out, outlen, "no grpc.health.v1 service: %s",
		    message);
		return MON_CRITICAL;
	case 14:
		snprintf(out, outlen, "unreachable: %s", message);
		return MON_CRITICAL;
	default:
		snprintf(out, outlen, "probe failed (code %d): %s", code,
		    message);
		return MON_CRITICAL;
	}
}

int
mon_damper_feed(struct mon_damper *d, int result, int threshold)
{
	if (threshold < 1)
		threshold = 1;
	if (d->status == MON_UNSPECIFIED) {
		d->status = result;
		d->candidate = result;
		d->count = 0;
		return 1;
	}
	if (result == d->status) {
		d->count = 0;
		return 0;
	}
	if (result == d->candidate && d->count > 0)
		d->count++;
	else {
		d->candidate = result;
		d->count = 1;
	}
	if (d->count < threshold)
		return 0;
	d->status = result;
	d->count = 0;
	return 1;
}

int
mon_worst(int a, int b)
{
	return a > b ? a : b;
}

/* The hash (platform/hash.h) of monitor, a 0xff byte, then node. */
static uint64_t
score(const char *monitor, const char *node)
{
	uint64_t h = plat_fnv1a_str(1469598103934665603ULL, monitor);

	h = (h ^ 0xff) * PLAT_FNV_PRIME;
	return plat_mix64(plat_fnv1a_str(h, node));
}

size_t
mon_owner(const char *const *monitors, size_t n, const char *node)
{
	size_t best = 0;
	uint64_t top = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t s = score(monitors[i], node);

		/* Ties (never in practice) go to the smaller name, so every
		 * monitor decides the same. */
		if (i == 0 || s > top || (s == top &&
		    strcmp(monitors[i], monitors[best]) < 0)) {
			top = s;
			best = i;
		}
	}
	return best;
}

#define LE_MAX 32

struct hist {
	double le[LE_MAX];
	double cum[LE_MAX];     /* summed over methods */
	size_t n;
};

/* The value of a label in a series' {...}, into out: 0, or -1. */
static int
label(const char *line, const char *end, const char *name, char *out,
    size_t outlen)
{
	size_t nl = strlen(name);

	for (const char *p = line; p + nl + 2 < end; p++)
		if ((p[-1] == '{' || p[-1] == ',') &&
		    strncmp(p, name, nl) == 0 && p[nl] == '=' &&
		    p[nl + 1] == '"') {
			const char *v = p + nl + 2, *q = strchr(v, '"');
			size_t len;

			if (q == NULL || q > end)
				return -1;
			len = (size_t)(q - v) < outlen - 1 ?
			    (size_t)(q - v) : outlen - 1;
			memcpy(out, v, len);
			out[len] = '\0';
			return 0;
		}
	return -1;
}

static void
hist_add(struct hist *h, double le, double v)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		if (h->le[i] == le) {
			h->cum[i] += v;
			return;
		}
	if (h->n == LE_MAX)
		return;
	/* Kept in le order (the exposition writes them so). */
	for (i = h->n; i > 0 && h->le[i - 1] > le; i--) {
		h->le[i] = h->le[i - 1];
		h->cum[i] = h->cum[i - 1];
	}
	h->le[i] = le;
	h->cum[i] = v;
	h->n++;
}

/* The q-th percentile in ms: the upper bound of the first bucket whose
 * cumulative count reaches it (the last finite bound past them all). */
static double
hist_quantile(const struct hist *h, double q)
{
	double total = h->n > 0 ? h->cum[h->n - 1] : 0;
	double last = 0;

	if (total <= 0)
		return 0;
	for (size_t i = 0; i < h->n; i++) {
		if (h->le[i] < 1e300)
			last = h->le[i];
		if (h->cum[i] >= total * q)
			return (h->le[i] < 1e300 ? h->le[i] : last) * 1000.0;
	}
	return last * 1000.0;
}

void
mon_stats_parse(const char *text, struct mon_stats *out)
{
	struct hist h = { .n = 0 };
	char v[64];

	memset(out, 0, sizeof(*out));
	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *nl = strchr(line, '\n');
		const char *end = nl != NULL ? nl : line + strlen(line);
		const char *sp = end;
		double val;

		while (sp > line && sp[-1] != ' ')
			sp--;
		val = sp > line ? strtod(sp, NULL) : 0;
		if (line[0] == '#' || sp == line) {
			/* a comment, or no value */
		} else if (strncmp(line, "platform_rpc_requests_total{",
		    28) == 0) {
			out->requests += val;
			if (label(line + 28, end, "code", v, sizeof(v)) == 0 &&
			    strcmp(v, "OK") != 0)
				out->errors += val;
		} else if (strncmp(line, "platform_rpc_duration_seconds_bucket{",
		    37) == 0 && label(line + 37, end, "le", v, sizeof(v)) ==
		    0) {
			hist_add(&h, strcmp(v, "+Inf") == 0 ? 1e308 :
			    strtod(v, NULL), val);
		} else if (strncmp(line, "process_resident_memory_bytes ",
		    30) == 0) {
			out->memory_bytes = val;
		}
		line = nl != NULL ? nl + 1 : NULL;
	}
	out->p50_ms = hist_quantile(&h, 0.50);
	out->p90_ms = hist_quantile(&h, 0.90);
	out->p99_ms = hist_quantile(&h, 0.99);
}
