/*
 * lockout: failed-login counters and slowed answers (see lockout.h).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lockout.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/xalloc.h"

#define BUCKETS 1024
#define ENTRIES_MAX 100000

struct counter {
	struct counter *next;
	char *key;              /* "a:<account>" or "p:<host>" */
	int failures;
	int64_t since_ms;       /* start of the counting window */
	int64_t locked_until_ms;
};

struct delayed {
	struct delayed *next;
	int64_t due_ms;
	plat_ctx *ctx;
	int code;
};

static struct {
	struct lockout_config cfg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct counter *buckets[BUCKETS];
	size_t entries;
	struct delayed *queue;  /* by due time */
	pthread_t thread;
	int started;
	volatile int stop;
} L = { .mu = PTHREAD_MUTEX_INITIALIZER };

static unsigned
hash(const char *s)
{
	unsigned h = 2166136261u;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % BUCKETS;
}

static bool
counter_stale(const struct counter *c, int64_t now)
{
	return c->locked_until_ms <= now && now - c->since_ms >= L.cfg.lock_ms;
}

/* The counter of key; create: make it when missing (NULL when the table
 * is full). Drops the stale ones of the bucket on the way. mu held. */
static struct counter *
counter_get(const char *key, bool create, int64_t now)
{
	struct counter **pp = &L.buckets[hash(key)], *c, *found = NULL;

	while ((c = *pp) != NULL) {
		if (strcmp(c->key, key) == 0) {
			found = c;
			pp = &c->next;
		} else if (counter_stale(c, now)) {
			*pp = c->next;
			free(c->key);
			free(c);
			L.entries--;
		} else {
			pp = &c->next;
		}
	}
	if (found != NULL || !create)
		return found;
	if (L.entries >= ENTRIES_MAX)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->key = xstrdup(key);
	c->since_ms = now;
	c->next = L.buckets[hash(key)];
	L.buckets[hash(key)] = c;
	L.entries++;
	return c;
}

static void
key_of(char *buf, size_t len, char kind, const char *name)
{
	snprintf(buf, len, "%c:%s", kind, name);
}

static int64_t
left_locked(const char *key, int64_t now)
{
	struct counter *c = counter_get(key, false, now);

	return c != NULL && c->locked_until_ms > now ?
	    c->locked_until_ms - now : 0;
}

int64_t
lockout_blocked(const char *account, const char *peer)
{
	char key[300];
	int64_t now = plat_now_ms(), a = 0, p;

	pthread_mutex_lock(&L.mu);
	if (account != NULL) {
		key_of(key, sizeof(key), 'a', account);
		a = left_locked(key, now);
	}
	key_of(key, sizeof(key), 'p', peer);
	p = left_locked(key, now);
	pthread_mutex_unlock(&L.mu);
	return a > p ? a : p;
}

/* Counts one failure on key; the failures in the window. mu held. */
static int
count_failure(const char *key, int limit, int64_t now, bool *locked_now)
{
	struct counter *c = counter_get(key, true, now);

	if (c == NULL)
		return 0;
	if (now - c->since_ms >= L.cfg.lock_ms && c->locked_until_ms <= now) {
		c->failures = 0;
		c->since_ms = now;
	}
	if (++c->failures >= limit && c->locked_until_ms <= now) {
		c->locked_until_ms = now + L.cfg.lock_ms;
		*locked_now = true;
	}
	return c->failures;
}

static void
enqueue(plat_ctx *ctx, int code, int64_t due)
{
	struct delayed *d = xcalloc(1, sizeof(*d)), **pp;

	d->ctx = ctx;
	d->code = code;
	d->due_ms = due;
	pthread_mutex_lock(&L.mu);
	for (pp = &L.queue; *pp != NULL && (*pp)->due_ms <= due;
	    pp = &(*pp)->next)
		;
	d->next = *pp;
	*pp = d;
	pthread_cond_signal(&L.cv);
	pthread_mutex_unlock(&L.mu);
}

int
lockout_fail(plat_ctx *ctx, int code, const char *account, const char *peer)
{
	char key[300];
	int64_t now = plat_now_ms(), delay;
	bool acct_locked = false, peer_locked = false;
	int fa = 0, fp, worst;

	pthread_mutex_lock(&L.mu);
	if (account != NULL) {
		key_of(key, sizeof(key), 'a', account);
		fa = count_failure(key, L.cfg.account_failures, now,
		    &acct_locked);
	}
	key_of(key, sizeof(key), 'p', peer);
	fp = count_failure(key, L.cfg.peer_failures, now, &peer_locked);
	pthread_mutex_unlock(&L.mu);
	if (acct_locked)
		log_warn("auth: too many failed logins, account locked out",
		    "account", account, "peer", peer);
	if (peer_locked)
		log_warn("auth: too many failed logins, peer locked out",
		    "peer", peer);
	worst = fa > fp ? fa : fp;
	delay = (int64_t)(worst - 1) * L.cfg.delay_step_ms;
	if (delay > L.cfg.delay_max_ms)
		delay = L.cfg.delay_max_ms;
	if (delay <= 0 || !L.started)
		return code;
	plat_defer(ctx);
	enqueue(ctx, code, now + delay);
	return PLAT_DEFERRED;
}

void
lockout_succeeded(const char *account)
{
	char key[300];
	struct counter *c;

	key_of(key, sizeof(key), 'a', account);
	pthread_mutex_lock(&L.mu);
	if ((c = counter_get(key, false, plat_now_ms())) != NULL &&
	    c->locked_until_ms <= plat_now_ms()) {
		c->failures = 0;
		c->since_ms = plat_now_ms();
	}
	pthread_mutex_unlock(&L.mu);
}

const char *
lockout_peer_host(plat_ctx *ctx)
{
	const char *peer = plat_ctx_peer(ctx), *colon, *p;
	char *host;

	/* "ipv4:1.2.3.4:5", "ipv6:[::1]:5", "unix:/path" */
	if ((p = strchr(peer, ':')) == NULL)
		return peer;
	p++;
	if (strncmp(peer, "unix", 4) == 0)
		return peer;
	if ((colon = strrchr(p, ':')) == NULL)
		colon = p + strlen(p);
	host = plat_alloc(ctx, (size_t)(colon - p) + 1);
	memcpy(host, p, (size_t)(colon - p));
	return host;
}

/* ---- the timer thread ---- */

static void *
timer_main(void *arg)
{
	struct timespec ts;
	struct delayed *d;
	int64_t wait;

	(void)arg;
	pthread_mutex_lock(&L.mu);
	for (;;) {
		while ((d = L.queue) != NULL &&
		    (L.stop || d->due_ms <= plat_now_ms())) {
			L.queue = d->next;
			pthread_mutex_unlock(&L.mu);
			plat_reply(d->ctx, d->code, NULL);
			free(d);
			pthread_mutex_lock(&L.mu);
		}
		if (L.stop)
			break;
		wait = L.queue != NULL ? L.queue->due_ms - plat_now_ms() :
		    60000;
		/* Woken by enqueue and stop, unlike plat_cond_wait_ms. */
		ts = plat_deadline_ts(wait > 0 ? wait : 0);
		pthread_cond_timedwait(&L.cv, &L.mu, &ts);
	}
	pthread_mutex_unlock(&L.mu);
	return NULL;
}

int
lockout_start(const struct lockout_config *cfg)
{
	L.cfg = *cfg;
	L.stop = 0;
	plat_cond_init(&L.cv);
	if (pthread_create(&L.thread, NULL, timer_main, NULL) != 0)
		return -1;
	L.started = 1;
	return 0;
}

void
lockout_stop(void)
{
	struct counter *c, *next;

	if (L.started) {
		pthread_mutex_lock(&L.mu);
		L.stop = 1;
		pthread_cond_signal(&L.cv);
		pthread_mutex_unlock(&L.mu);
		pthread_join(L.thread, NULL);
		pthread_cond_destroy(&L.cv);
		L.started = 0;
	}
	for (size_t i = 0; i < BUCKETS; i++) {
		for (c = L.buckets[i]; c != NULL; c = next) {
			next = c->next;
			free(c->key);
			free(c);
		}
		L.buckets[i] = NULL;
	}
	L.entries = 0;
}
