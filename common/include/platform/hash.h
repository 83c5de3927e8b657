/*
 * hash: the one 64-bit string hash of the platform: FNV-1a for the bytes,
 * then splitmix64's finaliser, since FNV alone clusters names that differ
 * only in their last characters. Used wherever every process must reach
 * the same answer from the same names (kv-srv's ring, monitor-srv's
 * split of the nodes, the client's choice by key).
 */
#ifndef PLATFORM_HASH_H
#define PLATFORM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define PLAT_FNV_PRIME 1099511628211ULL

/* h, then n bytes at p folded in by FNV-1a. */
static inline uint64_t
plat_fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * PLAT_FNV_PRIME;
	return h;
}

/* h, then the bytes of s up to its NUL. */
static inline uint64_t
plat_fnv1a_str(uint64_t h, const char *s)
{
	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * PLAT_FNV_PRIME;
	return h;
}

/* splitmix64's finaliser. */
static inline uint64_t
plat_mix64(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	return h ^ (h >> 31);
}

#endif
