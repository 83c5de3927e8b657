/*
 * arena: per-call bump allocator, freed in one go when the call ends.
 *
 * The first block lives inside the arena struct, so a small request is
 * decoded and answered without touching malloc. arena_allocator() adapts
 * it to protobuf-c so unpacked messages live in the arena too.
 */
#ifndef PLATFORM_ARENA_H
#define PLATFORM_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

#define ARENA_INLINE_BYTES 4096

struct arena_block;

struct arena {
	struct arena_block *blocks;   /* extra blocks, newest first */
	char *cur;
	size_t left;
	ProtobufCAllocator pb;
	_Alignas(16) char inline_buf[ARENA_INLINE_BYTES];
};

void arena_init(struct arena *a);
/* Frees every extra block and rewinds to the inline block. */
void arena_reset(struct arena *a);
/* 16-byte aligned, never NULL (aborts when memory is exhausted). */
void *arena_alloc(struct arena *a, size_t n);
void *arena_calloc(struct arena *a, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_printf(struct arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ProtobufCAllocator *arena_allocator(struct arena *a);

#endif
