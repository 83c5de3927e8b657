/*
 * tail: the tail decision buffer (see tail.h).
 *
 * Traces live in a hash table by id and, in the order they came, in a
 * queue, so a tick looks only at the oldest. A kept trace stays as a
 * marker for one more window, catching its late spans.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "platform/xalloc.h"
#include "tail.h"

#define BUCKETS 4096

/* A copy of a span_row with its strings in one block. */
struct held_span {
	struct span_row row;
	struct held_span *next;
	char buf[];
};

struct held_trace {
	char id[33];
	int64_t until_ms;               /* the window's end */
	bool keep;                      /* a span that matters was seen */
	bool decided;                   /* kept: a marker for late spans */
	struct held_span *spans, **tail_spans;
	size_t nspans;
	struct held_trace *hnext;       /* hash chain */
	struct held_trace *qnext;       /* age queue */
};

struct tail {
	struct tail_opts o;
	pthread_mutex_t mu;
	struct held_trace *buckets[BUCKETS];
	struct held_trace *qhead, **qtail;
	struct tail_stats st;
};

static unsigned
bucket_of(const char *id)
{
	unsigned h = 2166136261u;

	for (const char *p = id; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % BUCKETS;
}

bool
tail_matters(const struct span_row *r, int64_t slower_than_ns)
{
	return r->error || (slower_than_ns > 0 &&
	    r->duration_ns >= slower_than_ns);
}

struct tail *
tail_new(const struct tail_opts *o)
{
	struct tail *t = xcalloc(1, sizeof(*t));

	t->o = *o;
	pthread_mutex_init(&t->mu, NULL);
	t->qtail = &t->qhead;
	return t;
}

static void
spans_free(struct held_trace *h)
{
	struct held_span *s, *next;

	for (s = h->spans; s != NULL; s = next) {
		next = s->next;
		free(s);
	}
	h->spans = NULL;
	h->tail_spans = &h->spans;
	h->nspans = 0;
}

void
tail_free(struct tail *t)
{
	struct held_trace *h, *next;

	if (t == NULL)
		return;
	for (h = t->qhead; h != NULL; h = next) {
		next = h->qnext;
		spans_free(h);
		free(h);
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static struct held_span *
span_copy(const struct span_row *r)
{
	struct held_span *s = xcalloc(1, sizeof(*s) + span_row_size(r));

	span_row_copy(&s->row, r, s->buf);
	return s;
}

static struct held_trace *
find(struct tail *t, const char *id, unsigned b)
{
	for (struct held_trace *h = t->buckets[b]; h != NULL; h = h->hnext)
		if (strcmp(h->id, id) == 0)
			return h;
	return NULL;
}

size_t
tail_offer(struct tail *t, const struct span_row *rows, size_t n,
    int64_t now_ms)
{
	size_t refused = 0;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < n; i++) {
		const struct span_row *r = &rows[i];
		unsigned b = bucket_of(r->trace_id);
		struct held_trace *h = find(t, r->trace_id, b);
		struct held_span *s;

		if (t->st.spans_held >= t->o.max_spans) {
			refused++;
			continue;
		}
		if (h == NULL) {
			h = xcalloc(1, sizeof(*h));
			memcpy(h->id, r->trace_id, sizeof(h->id));
			h->until_ms = now_ms + t->o.window_ms;
			h->tail_spans = &h->spans;
			h->hnext = t->buckets[b];
			t->buckets[b] = h;
			*t->qtail = h;
			t->qtail = &h->qnext;
			t->st.traces_held++;
		}
		s = span_copy(r);
		*h->tail_spans = s;
		h->tail_spans = &s->next;
		h->nspans++;
		t->st.spans_held++;
		if (tail_matters(r, t->o.slower_than_ns))
			h->keep = true;
	}
	t->st.spans_refused += refused;
	pthread_mutex_unlock(&t->mu);
	return refused;
}

static void
unlink_trace(struct tail *t, struct held_trace *h)
{
	struct held_trace **pp = &t->buckets[bucket_of(h->id)];

	while (*pp != h)
		pp = &(*pp)->hnext;
	*pp = h->hnext;
	t->st.traces_held--;
}

/* Moves the spans of h onto the flush list. */
static void
take_spans(struct tail *t, struct held_trace *h, struct held_span ***out)
{
	if (h->spans == NULL)
		return;
	**out = h->spans;
	*out = h->tail_spans;
	t->st.spans_held -= h->nspans;
	h->spans = NULL;
	h->tail_spans = &h->spans;
	h->nspans = 0;
}

void
tail_tick(struct tail *t, int64_t now_ms)
{
	struct held_span *flush = NULL, **ftail = &flush, *s, *next;
	struct held_trace *h, **pp, *done = NULL;
	struct span_row **rows;
	size_t n = 0;

	pthread_mutex_lock(&t->mu);
	for (pp = &t->qhead; (h = *pp) != NULL;) {
		if (h->keep && !h->decided) {
			/* Kept as soon as it matters; a marker from here on. */
			h->decided = true;
			h->until_ms = now_ms + t->o.window_ms;
			t->st.kept++;
		}
		if (h->decided)
			take_spans(t, h, &ftail);
		if (h->until_ms > now_ms) {
			pp = &h->qnext;
			continue;
		}
		/* The window ended: a trace that never mattered goes. */
		if (!h->decided) {
			t->st.discarded++;
			t->st.spans_discarded += h->nspans;
			t->st.spans_held -= h->nspans;
			spans_free(h);
		}
		*pp = h->qnext;
		unlink_trace(t, h);
		h->qnext = done;
		done = h;
	}
	t->qtail = pp;
	pthread_mutex_unlock(&t->mu);
	for (h = done; h != NULL; h = done) {
		done = h->qnext;
		free(h);
	}
	*ftail = NULL;
	for (s = flush; s != NULL; s = s->next)
		n++;
	if (n > 0) {
		rows = xcalloc(n, sizeof(*rows));
		n = 0;
		for (s = flush; s != NULL; s = s->next)
			rows[n++] = &s->row;
		t->o.flush(t->o.arg, rows, n);
		free(rows);
	}
	for (s = flush; s != NULL; s = next) {
		next = s->next;
		free(s);
	}
}

void
tail_stats(struct tail *t, struct tail_stats *out)
{
	pthread_mutex_lock(&t->mu);
	*out = t->st;
	pthread_mutex_unlock(&t->mu);
}
