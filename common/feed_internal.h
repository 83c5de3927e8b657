/*
 * feed_internal: what tests/unit/test_feed.c reaches inside common/feed.c
 * to drive the hand-off logic without the runtime or PostgreSQL.
 */
#ifndef PLATFORM_FEED_INTERNAL_H
#define PLATFORM_FEED_INTERNAL_H

#include "platform/feed.h"

/* The stream calls the feed makes besides ops->send; the runtime's
 * plat_stream_* unless a test replaces them. */
struct plat_feed__streams {
	int (*send)(plat_stream *st, const ProtobufCMessage *msg);
	void (*ref)(plat_stream *st);
	void (*unref)(plat_stream *st);
	void (*on_close)(plat_stream *st, void (*cb)(plat_stream *, void *),
	    void *arg);
	int (*closed)(plat_stream *st);
	size_t (*queued)(plat_stream *st);
	void (*finish)(plat_stream *st, int code, const char *message);
};

extern struct plat_feed__streams plat_feed__streams;

/* plat_feed_watch without a call context: deadline_ms is a plat_now_ms()
 * time (INT64_MAX: none); on an error status, err says why. */
int plat_feed__watch(struct plat_feed *f, plat_stream *st, void *watch,
    int64_t after, int64_t deadline_ms, char *err, size_t errlen);

#endif
