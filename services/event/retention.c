/*
 * retention: the background enforcement of retentions (see retention.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "platform/clock.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "retention.h"

#define RETENTION_LIMIT 10000    /* events per statement */
#define RETENTION_QUERY_MS 30000

static struct {
	struct pg_store *store;
	int64_t interval_ms;
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	atomic_uint_fast64_t deleted;
} R = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
};

static void
retention_pass(void)
{
	struct retention *r;
	enum plat_code code;
	int64_t deleted = 0, total = 0;
	char err[256];
	size_t n;

	if (!pg_store_ready(R.store))
		return;
	code = store_retention_list(R.store, RETENTION_QUERY_MS, &r, &n, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return;
	for (size_t i = 0; i < n && !R.stop; i++) {
		do {
			code = store_retention_apply(R.store, &r[i],
			    RETENTION_LIMIT, RETENTION_QUERY_MS, &deleted, err,
			    sizeof(err));
			if (code != PLAT_OK) {
				if (code != PLAT_UNAVAILABLE)
					log_warn("event: retention failed",
					    "subject", r[i].subject, "error",
					    err);
				break;
			}
			total += deleted;
		} while (deleted == RETENTION_LIMIT && !R.stop);
	}
	retention_free(r, n);
	if (total > 0) {
		atomic_fetch_add(&R.deleted, (uint64_t)total);
		if (store_pending_sweep(R.store, RETENTION_QUERY_MS, err,
		    sizeof(err)) != PLAT_OK)
			log_warn("event: dropping deleted events from groups "
			    "failed", "error", err);
	}
}

static void *
retention_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&R.mu);
	while (!plat_cond_wait_ms(&R.cv, &R.mu, R.interval_ms, &R.stop)) {
		pthread_mutex_unlock(&R.mu);
		retention_pass();
		pthread_mutex_lock(&R.mu);
	}
	pthread_mutex_unlock(&R.mu);
	return NULL;
}

int
retention_start(struct pg_store *store, int64_t interval_ms)
{
	R.store = store;
	R.interval_ms = interval_ms;
	R.stop = 0;
	plat_cond_init(&R.cv);
	if (pthread_create(&R.thread, NULL, retention_main, NULL) != 0)
		return -1;
	R.running = true;
	return 0;
}

void
retention_stop(void)
{
	if (!R.running)
		return;
	pthread_mutex_lock(&R.mu);
	R.stop = 1;
	pthread_cond_signal(&R.cv);
	pthread_mutex_unlock(&R.mu);
	pthread_join(R.thread, NULL);
	R.running = false;
	pthread_cond_destroy(&R.cv);
}

double
retention_deleted(void)
{
	return (double)atomic_load(&R.deleted);
}
