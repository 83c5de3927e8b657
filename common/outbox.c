/*
 * outbox: a bounded FIFO drained in batches by one sender thread. See
 * platform/outbox.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "platform/client.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/outbox.h"
#include "platform/xalloc.h"

struct outbox {
	const struct outbox_ops *ops;
	void *arg;
	struct outbox_limits lim;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct outbox_item *head, *tail;
	size_t n, bytes;
	uint64_t seq;
	uint64_t sent, dropped, send_failures;
	uint64_t dropped_in_outage;     /* since the last log line */
	bool failing;
	bool idle;                      /* the sender waits for items */
	bool lingering;                 /* ... or for a fuller batch */
	int64_t first_at_ms;            /* the oldest unsent item's arrival */
	int stopping;
	int64_t flush_deadline;         /* plat_now_ms; while stopping */

	pthread_t thread;
	bool running;
	bool stopped_sender;            /* a sender ran and stopped */
};

struct outbox *
outbox_new(const struct outbox_ops *ops, void *arg,
    const struct outbox_limits *limits)
{
	struct outbox *o = xcalloc(1, sizeof(*o));

	o->ops = ops;
	o->arg = arg;
	o->lim = *limits;
	pthread_mutex_init(&o->mu, NULL);
	plat_cond_init(&o->cv);
	return o;
}

bool
outbox_push(struct outbox *o, struct outbox_item *it)
{
	it->next = NULL;
	pthread_mutex_lock(&o->mu);
	if (o->stopping || o->n >= o->lim.max_items ||
	    o->bytes + it->bytes > o->lim.max_bytes) {
		o->dropped++;
		if (o->dropped_in_outage++ == 0) {
			char msg[160];

			snprintf(msg, sizeof(msg), "%s: buffer full, dropping "
			    "until %s takes them", o->ops->what, o->ops->to);
			log_warn(msg);
		}
		pthread_mutex_unlock(&o->mu);
		o->ops->free_item(o->arg, it);
		return false;
	}
	if (o->ops->accepted != NULL)
		o->ops->accepted(o->arg, it, ++o->seq);
	if (o->tail != NULL)
		o->tail->next = it;
	else {
		o->head = it;
		o->first_at_ms = plat_now_ms();
	}
	o->tail = it;
	o->n++;
	o->bytes += it->bytes;
	/* Only an idle sender needs waking: a busy one takes this item with
	 * the next batch, one backing off tries again when its wait ends. */
	if (o->idle || (o->lingering && o->n >= o->lim.batch_max))
		pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	return true;
}

/* Removes the first n items once they were taken. */
static void
remove_sent(struct outbox *o, size_t n)
{
	struct outbox_item *gone = NULL, *it;

	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; i < n && o->head != NULL; i++) {
		it = o->head;
		o->head = it->next;
		o->n--;
		o->bytes -= it->bytes;
		it->next = gone;
		gone = it;
	}
	if (o->head == NULL)
		o->tail = NULL;
	else
		o->first_at_ms = plat_now_ms();
	o->sent += n;
	if (o->failing) {
		char dropped[24], msg[160];

		snprintf(dropped, sizeof(dropped), "%llu",
		    (unsigned long long)o->dropped_in_outage);
		snprintf(msg, sizeof(msg), "%s: %s takes them again",
		    o->ops->what, o->ops->to);
		log_info(msg, "dropped", dropped);
		o->failing = false;
		o->dropped_in_outage = 0;
	}
	pthread_mutex_unlock(&o->mu);
	while ((it = gone) != NULL) {
		gone = it->next;
		o->ops->free_item(o->arg, it);
	}
}

/* Lock held: waits up to linger_ms from the oldest item's arrival for
 * a full batch. */
static void
linger(struct outbox *o)
{
	int64_t left;

	o->lingering = true;
	while (!o->stopping && o->n < o->lim.batch_max &&
	    (left = o->first_at_ms + o->lim.linger_ms - plat_now_ms()) > 0)
		(void)plat_cond_wait_ms(&o->cv, &o->mu, left, &o->stopping);
	o->lingering = false;
}

static void *
sender_main(void *arg)
{
	struct outbox *o = arg;
	int backoff = o->lim.backoff_min_ms;
	char err[256];

	pthread_mutex_lock(&o->mu);
	for (;;) {
		struct outbox_item *first;
		size_t n;
		int left, code;

		o->idle = true;
		while (o->head == NULL && !o->stopping)
			pthread_cond_wait(&o->cv, &o->mu);
		o->idle = false;
		linger(o);
		left = o->lim.call_ms;
		if (o->stopping) {
			int64_t l = o->flush_deadline - plat_now_ms();

			if (o->head == NULL || l <= 0)
				break;
			left = l < left ? (int)l : left;
		}
		first = o->head;
		n = o->n < o->lim.batch_max ? o->n : o->lim.batch_max;
		pthread_mutex_unlock(&o->mu);

		err[0] = '\0';
		code = o->ops->send(o->arg, first, n, left, err, sizeof(err));
		if (code == 0) {
			remove_sent(o, n);
			backoff = o->lim.backoff_min_ms;
			pthread_mutex_lock(&o->mu);
			continue;
		}
		pthread_mutex_lock(&o->mu);
		if (!o->failing) {
			char msg[160];

			snprintf(msg, sizeof(msg), "%s: cannot send to %s; "
			    "holding them", o->ops->what, o->ops->to);
			log_warn(msg, "code", plat_status_name(code), "error",
			    err);
			o->failing = true;
		}
		/* Counted after the log line: whoever sees the count sees it
		 * logged. */
		o->send_failures++;
		if (o->stopping)
			break;
		/* Wait out the backoff unless stop comes first. */
		(void)plat_cond_wait_ms(&o->cv, &o->mu, backoff, &o->stopping);
		backoff = backoff * 2 > o->lim.backoff_max_ms ?
		    o->lim.backoff_max_ms : backoff * 2;
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

int
outbox_start(struct outbox *o)
{
	if (o->running)
		return 0;
	if (pthread_create(&o->thread, NULL, sender_main, o) != 0) {
		log_error("outbox: cannot start the sender thread", "what",
		    o->ops->what);
		return -1;
	}
	o->running = true;
	return 0;
}

void
outbox_stop(struct outbox *o, int flush_ms)
{
	pthread_mutex_lock(&o->mu);
	o->stopping = 1;
	o->flush_deadline = plat_now_ms() + flush_ms;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
	if (o->running) {
		pthread_join(o->thread, NULL);
		o->running = false;
		o->stopped_sender = true;
	}
}

void
outbox_free(struct outbox *o)
{
	struct outbox_item *it;
	char n[24];

	if (o == NULL)
		return;
	outbox_stop(o, 0);
	if (o->n > 0 && o->stopped_sender) {
		char msg[160];

		snprintf(n, sizeof(n), "%zu", o->n);
		snprintf(msg, sizeof(msg), "%s: dropped at exit, never sent",
		    o->ops->what);
		log_warn(msg, "count", n);
	}
	o->dropped += o->n;
	while ((it = o->head) != NULL) {
		o->head = it->next;
		o->ops->free_item(o->arg, it);
	}
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

void
outbox_stats(struct outbox *o, struct outbox_stats *out)
{
	pthread_mutex_lock(&o->mu);
	out->sent = o->sent;
	out->dropped = o->dropped;
	out->send_failures = o->send_failures;
	out->buffered = o->n;
	pthread_mutex_unlock(&o->mu);
}
