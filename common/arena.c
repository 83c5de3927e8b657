/*
 * arena: per-call bump allocator. See platform/arena.h.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/arena.h"

struct arena_block {
	struct arena_block *next;
	size_t size;
	_Alignas(16) char data[];
};

#define ARENA_ALIGN 16
#define ARENA_MIN_BLOCK (16 * 1024)

static void *
arena_pb_alloc(void *ud, size_t n)
{
	return arena_alloc(ud, n);
}

static void
arena_pb_free(void *ud, void *p)
{
	/* Freed with the arena. */
	(void)ud;
	(void)p;
}

void
arena_init(struct arena *a)
{
	a->blocks = NULL;
	a->cur = a->inline_buf;
	a->left = sizeof(a->inline_buf);
	a->pb.alloc = arena_pb_alloc;
	a->pb.free = arena_pb_free;
	a->pb.allocator_data = a;
}

void
arena_reset(struct arena *a)
{
	struct arena_block *b, *next;

	for (b = a->blocks; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	arena_init(a);
}

void *
arena_alloc(struct arena *a, size_t n)
{
	struct arena_block *b;
	size_t size;
	void *p;

	n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (n == 0)
		n = ARENA_ALIGN;
	if (n <= a->left) {
		p = a->cur;
		a->cur += n;
		a->left -= n;
		return p;
	}
	size = n > ARENA_MIN_BLOCK ? n : ARENA_MIN_BLOCK;
	if (size > SIZE_MAX - sizeof(*b))
		abort();
	if ((b = malloc(sizeof(*b) + size)) == NULL)
		abort();
	b->size = size;
	b->next = a->blocks;
	a->blocks = b;
	/* A big allocation gets its own block; the current one stays. */
	if (size == n)
		return b->data;
	a->cur = b->data + n;
	a->left = size - n;
	return b->data;
}

void *
arena_calloc(struct arena *a, size_t n)
{
	void *p = arena_alloc(a, n);

	memset(p, 0, n);
	return p;
}

char *
arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
arena_strdup(struct arena *a, const char *s)
{
	return arena_strndup(a, s, strlen(s));
}

char *
arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *p, probe[1];

	/* A 1-byte probe, not NULL: gcc's format checks reject NULL. */
	va_start(ap, fmt);
	n = vsnprintf(probe, sizeof(probe), fmt, ap);
	va_end(ap);
	if (n < 0)
		return arena_strdup(a, "");
	p = arena_alloc(a, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

ProtobufCAllocator *
arena_allocator(struct arena *a)
{
	return &a->pb;
}
