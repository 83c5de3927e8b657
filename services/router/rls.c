/*
 * rls: ShouldRateLimit over router-srv's limits (see rls.h).
 *
 * The buckets sit in one hash table under one lock: a call takes at most
 * RLS_DESCRIPTORS_MAX of them. The table is bounded; when it is full,
 * the buckets that would have refilled completely by now are dropped
 * first, since a full bucket is the same as one made afresh.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "platform/arena.h"
#include "platform/clock.h"
#include "platform/metrics.h"
#include "platform/token_bucket.h"
#include "platform/xalloc.h"
#include "rls.h"
#include "state.h"
#include "view.h"

#define RLS_DESCRIPTORS_MAX 64
#define RLS_ENTRIES_MAX 16
#define RLS_TEXT_MAX 256
#define RLS_HITS_MAX 10000
#define RLS_BUCKETS_MAX 100000
#define RLS_SLOTS 4096

typedef Envoy__Service__Ratelimit__V3__RateLimitRequest pb_request;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse pb_response;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse__DescriptorStatus
    pb_status;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse__RateLimit pb_limit;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor pb_desc;

#define CODE_OK ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__CODE__OK
#define CODE_OVER \
	ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__CODE__OVER_LIMIT

struct bucket {
	char *key;                       /* service \n key=value \n ... */
	uint64_t hash;
	struct token_bucket tb;
	struct bucket *next;
};

static struct {
	pthread_mutex_t mu;
	struct bucket *slot[RLS_SLOTS];
	size_t n;
	atomic_ullong over;
} L = { .mu = PTHREAD_MUTEX_INITIALIZER };

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Drops the buckets that are full at now_ms. Called with L.mu held. */
static void
sweep(int64_t now_ms)
{
	for (size_t i = 0; i < RLS_SLOTS; i++) {
		struct bucket **pp = &L.slot[i], *b;

		while ((b = *pp) != NULL) {
			double secs = (double)(now_ms - b->tb.at_ms) / 1000.0;

			if (b->tb.tokens + secs * b->tb.rate >= b->tb.burst) {
				*pp = b->next;
				free(b->key);
				free(b);
				L.n--;
				continue;
			}
			pp = &b->next;
		}
	}
}

/* The bucket of key with limit (rate, burst), made full when new; NULL
 * when the table is full of buckets in use. Called with L.mu held. */
static struct bucket *
bucket_get(const char *key, double rate, double burst, int64_t now_ms)
{
	uint64_t h = hash_str(key);
	struct bucket *b;

	for (b = L.slot[h % RLS_SLOTS]; b != NULL; b = b->next)
		if (b->hash == h && strcmp(b->key, key) == 0) {
			/* The rules may have changed since. */
			token_bucket_set(&b->tb, rate, burst, now_ms);
			return b;
		}
	if (L.n >= RLS_BUCKETS_MAX)
		sweep(now_ms);
	if (L.n >= RLS_BUCKETS_MAX)
		return NULL;
	b = xcalloc(1, sizeof(*b));
	b->key = xstrdup(key);
	b->hash = h;
	token_bucket_init(&b->tb, rate, burst, now_ms);
	b->next = L.slot[h % RLS_SLOTS];
	L.slot[h % RLS_SLOTS] = b;
	L.n++;
	return b;
}

/* ---- checks ---- */

static const char *
text_problem(const char *s)
{
	size_t len = strlen(s);

	if (len == 0)
		return "must not be empty";
	if (len > RLS_TEXT_MAX)
		return "too long";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < ' ' || (unsigned char)s[i] == 127)
			return "no control characters";
	return NULL;
}

static int
check_request(plat_ctx *ctx, const pb_request *req)
{
	const char *why;

	if (req->n_descriptors == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "descriptors: at least one");
	if (req->n_descriptors > RLS_DESCRIPTORS_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "descriptors: at most %d", RLS_DESCRIPTORS_MAX);
	if (req->hits_addend > RLS_HITS_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "hits_addend: at most %d", RLS_HITS_MAX);
	for (size_t i = 0; i < req->n_descriptors; i++) {
		const pb_desc *d = req->descriptors[i];
		int service = 0;

		if (d->n_entries == 0 || d->n_entries > RLS_ENTRIES_MAX)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "descriptors[%zu].entries: 1 to %d", i,
			    RLS_ENTRIES_MAX);
		for (size_t j = 0; j < d->n_entries; j++) {
			const char *k = d->entries[j]->key;
			const char *v = d->entries[j]->value;

			if ((why = text_problem(k)) != NULL)
				return plat_error(ctx, PLAT_INVALID_ARGUMENT,
				    "descriptors[%zu].entries[%zu].key: %s",
				    i, j, why);
			if ((why = text_problem(v)) != NULL)
				return plat_error(ctx, PLAT_INVALID_ARGUMENT,
				    "descriptors[%zu].entries[%zu].value: %s",
				    i, j, why);
			if (strcmp(k, "service") == 0) {
				if ((why = view_name_problem(v)) != NULL)
					return plat_error(ctx,
					    PLAT_INVALID_ARGUMENT,
					    "descriptors[%zu].entries[%zu]."
					    "value: a service name: %s", i, j,
					    why);
				service = 1;
			}
		}
		if (!service && (why = view_name_problem(req->domain)) != NULL)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "domain: the service whose limits apply (or a "
			    "descriptor entry \"service\"): %s", why);
	}
	return PLAT_OK;
}

/* ---- decisions ---- */

static const char *
entry(const pb_desc *d, const char *key)
{
	for (size_t j = 0; j < d->n_entries; j++)
		if (strcmp(d->entries[j]->key, key) == 0)
			return d->entries[j]->value;
	return NULL;
}

/* The limit of service's rules for method (NULL: the service's own),
 * or NULL when none applies. */
static const Platform__Router__V1__RateLimit *
limit_of(const Platform__Router__V1__Rules *r, const char *method)
{
	const Platform__Router__V1__RateLimit *whole = NULL;

	for (size_t i = 0; r != NULL && i < r->n_limits; i++) {
		if (method != NULL && strcmp(r->limits[i]->method, method) == 0)
			return r->limits[i];
		if (r->limits[i]->method[0] == '\0')
			whole = r->limits[i];
	}
	return whole;
}

static char *
bucket_key(struct arena *a, const char *service, const pb_desc *d)
{
	size_t len = strlen(service) + 1;
	char *key, *p;

	for (size_t j = 0; j < d->n_entries; j++)
		len += strlen(d->entries[j]->key) +
		    strlen(d->entries[j]->value) + 2;
	p = key = arena_alloc(a, len + 1);
	p = stpcpy(p, service);
	for (size_t j = 0; j < d->n_entries; j++) {
		*p++ = '\n';
		p = stpcpy(p, d->entries[j]->key);
		*p++ = '=';
		p = stpcpy(p, d->entries[j]->value);
	}
	return key;
}

static void
set_unit(pb_limit *l, double rate)
{
	static const struct {
		double secs;
		int unit;
	} units[] = {
		{ 1, ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__SECOND },
		{ 60, ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__MINUTE },
		{ 3600, ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__HOUR },
		{ 86400, ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__UNIT__DAY },
	};
	size_t i = 0;

	while (i + 1 < sizeof(units) / sizeof(units[0]) &&
	    rate * units[i].secs < 1)
		i++;
	l->unit = (Envoy__Service__Ratelimit__V3__RateLimitResponse__RateLimit__Unit)
	    units[i].unit;
	l->requests_per_unit = rate * units[i].secs >= 1 ?
	    (uint32_t)lround(rate * units[i].secs) : 1;
}

static pb_status *
decide(plat_ctx *ctx, struct arena *a, const char *domain, const pb_desc *d,
    uint32_t hits, int64_t now_ms, int *full)
{
	const char *service = entry(d, "service");
	const char *method = entry(d, "method");
	const Platform__Router__V1__RateLimit *lim;
	pb_status *st = plat_new(ctx, pb_status,
	    &envoy__service__ratelimit__v3__rate_limit_response__descriptor_status__descriptor);
	struct bucket *b;
	int ok = 1;

	if (service == NULL)
		service = domain;
	st->code = CODE_OK;
	lim = limit_of(state_rules_get(a, service), method);
	if (lim == NULL || !(lim->rate > 0))
		return st;               /* no limit: OK, none reported */
	pthread_mutex_lock(&L.mu);
	if ((b = bucket_get(bucket_key(a, service, d), lim->rate, lim->burst,
	    now_ms)) == NULL) {
		pthread_mutex_unlock(&L.mu);
		*full = 1;
		return st;
	}
	/* Every hit counts, as Envoy's own service counts them. */
	for (uint32_t i = 0; i < hits; i++)
		if (!token_bucket_take(&b->tb, now_ms))
			ok = 0;
	st->limit_remaining = b->tb.tokens > 0 ?
	    (uint32_t)floor(b->tb.tokens) : 0;
	pthread_mutex_unlock(&L.mu);
	st->code = ok ? CODE_OK : CODE_OVER;
	st->current_limit = plat_new(ctx, pb_limit,
	    &envoy__service__ratelimit__v3__rate_limit_response__rate_limit__descriptor);
	st->current_limit->name = plat_printf(ctx, "%s %s", service,
	    lim->method[0] != '\0' ? lim->method : "*");
	/* Envoy's limits are whole requests per unit: the shortest unit
	 * in which the rate is at least one. */
	set_unit(st->current_limit, lim->rate);
	return st;
}

int
rls_should_rate_limit(plat_ctx *ctx, const ProtobufCMessage *m,
    ProtobufCMessage **out)
{
	const pb_request *req = (const void *)m;
	pb_response *resp;
	struct arena a;
	int64_t now = plat_now_ms();
	int rc, full = 0;

	if ((rc = check_request(ctx, req)) != PLAT_OK)
		return rc;
	resp = plat_new(ctx, pb_response,
	    &envoy__service__ratelimit__v3__rate_limit_response__descriptor);
	resp->statuses = plat_alloc(ctx, req->n_descriptors *
	    sizeof(*resp->statuses));
	resp->overall_code = CODE_OK;
	arena_init(&a);
	for (size_t i = 0; i < req->n_descriptors; i++) {
		pb_status *st = decide(ctx, &a, req->domain,
		    req->descriptors[i], req->hits_addend ? req->hits_addend : 1,
		    now, &full);

		if (st->code == CODE_OVER)
			resp->overall_code = CODE_OVER;
		resp->statuses[resp->n_statuses++] = st;
	}
	arena_reset(&a);
	if (full)
		return plat_error(ctx, PLAT_RESOURCE_EXHAUSTED,
		    "rate limit buckets: all %d in use", RLS_BUCKETS_MAX);
	if (resp->overall_code == CODE_OVER)
		atomic_fetch_add(&L.over, 1);
	*out = &resp->base;
	return PLAT_OK;
}

/* ---- metrics ---- */

static double
gauge_buckets(void *arg)
{
	size_t n;

	(void)arg;
	pthread_mutex_lock(&L.mu);
	n = L.n;
	pthread_mutex_unlock(&L.mu);
	return (double)n;
}

static double
counter_over(void *arg)
{
	(void)arg;
	return (double)atomic_load(&L.over);
}

void
rls_init(plat_server *srv)
{
	metrics_gauge_fn(plat_server_metrics(srv), "rls_buckets",
	    "Token buckets of ShouldRateLimit descriptors.", gauge_buckets,
	    NULL);
	metrics_counter_fn(plat_server_metrics(srv), "rls_over_limit_total",
	    "ShouldRateLimit answers OVER_LIMIT.", counter_over, NULL);
}

void
rls_fini(void)
{
	for (size_t i = 0; i < RLS_SLOTS; i++) {
		struct bucket *b;

		while ((b = L.slot[i]) != NULL) {
			L.slot[i] = b->next;
			free(b->key);
			free(b);
		}
	}
	L.n = 0;
}
