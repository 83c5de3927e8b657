/*
 * merge: one Watch stream fed by several sources (merge.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"
#include "platform/xalloc.h"

/* The last version passed on for a key. */
struct kv_seen {
	struct kv_seen *next;
	int64_t version;
	char key[];
};

void
kv_merge_init(struct kv_merge *m, plat_stream *st, int sources)
{
	memset(m, 0, sizeof(*m));
	m->st = st;
	plat_stream_ref(st);
	pthread_mutex_init(&m->mu, NULL);
	m->unsynced = sources;
}

void
kv_merge_fini(struct kv_merge *m)
{
	for (size_t i = 0; i < KV_MERGE_BUCKETS; i++)
		while (m->seen[i] != NULL) {
			struct kv_seen *s = m->seen[i];

			m->seen[i] = s->next;
			free(s);
		}
	pthread_mutex_destroy(&m->mu);
	plat_stream_unref(m->st);
}

/* 1 when version is newer than what went out for key (and records it). */
static int
seen_newer(struct kv_merge *m, const char *key, int64_t version)
{
	uint64_t h = 1469598103934665603ULL;
	struct kv_seen *s, **bucket;

	for (const char *p = key; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	bucket = &m->seen[h % KV_MERGE_BUCKETS];
	for (s = *bucket; s != NULL; s = s->next)
		if (strcmp(s->key, key) == 0) {
			if (version <= s->version)
				return 0;
			s->version = version;
			return 1;
		}
	s = xcalloc(1, sizeof(*s) + strlen(key) + 1);
	strcpy(s->key, key);
	s->version = version;
	s->next = *bucket;
	*bucket = s;
	return 1;
}

void
kv_merge_deliver(struct kv_merge *m, int type, const kv_entry_pb *e)
{
	Platform__Kv__V1__WatchResponse out =
	    PLATFORM__KV__V1__WATCH_RESPONSE__INIT;

	pthread_mutex_lock(&m->mu);
	if (type == PLATFORM__KV__V1__EVENT_TYPE__EVENT_TYPE_SYNCED) {
		if (--m->unsynced == 0 && !m->synced) {
			m->synced = true;
			out.type = type;
			(void)plat_stream_send(m->st, &out.base);
		}
	} else if (e != NULL && seen_newer(m, e->key, e->version)) {
		out.type = type;
		out.entry = (kv_entry_pb *)e;
		(void)plat_stream_send(m->st, &out.base);
	}
	pthread_mutex_unlock(&m->mu);
}
