/* Unit tests for the per-call arena. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "platform/arena.h"

static void
test_alignment_and_inline(void **state)
{
	struct arena a;
	char *p, *q;

	(void)state;
	arena_init(&a);
	p = arena_alloc(&a, 1);
	q = arena_alloc(&a, 3);
	assert_int_equal((uintptr_t)p % 16, 0);
	assert_int_equal((uintptr_t)q % 16, 0);
	/* Small allocations come from the inline block. */
	assert_true(p >= a.inline_buf && p < a.inline_buf + sizeof(a.inline_buf));
	assert_null(a.blocks);
	arena_reset(&a);
}

static void
test_grows_and_resets(void **state)
{
	struct arena a;
	char *big;

	(void)state;
	arena_init(&a);
	for (int i = 0; i < 1000; i++)
		memset(arena_alloc(&a, 100), i & 0xff, 100);
	big = arena_alloc(&a, 1 << 20);
	memset(big, 1, 1 << 20);
	assert_non_null(a.blocks);
	arena_reset(&a);
	assert_null(a.blocks);
	assert_ptr_equal(a.cur, a.inline_buf);
}

static void
test_strings(void **state)
{
	struct arena a;

	(void)state;
	arena_init(&a);
	assert_string_equal(arena_strdup(&a, "hello"), "hello");
	assert_string_equal(arena_strndup(&a, "hello", 2), "he");
	assert_string_equal(arena_printf(&a, "%s-%d", "x", 42), "x-42");
	assert_int_equal(((char *)arena_calloc(&a, 64))[63], 0);
	arena_reset(&a);
}

static void
test_protobuf_allocator(void **state)
{
	struct arena a;
	ProtobufCAllocator *pa;
	void *p;

	(void)state;
	arena_init(&a);
	pa = arena_allocator(&a);
	p = pa->alloc(pa->allocator_data, 32);
	assert_non_null(p);
	pa->free(pa->allocator_data, p);   /* a no-op: freed with the arena */
	arena_reset(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alignment_and_inline),
		cmocka_unit_test(test_grows_and_resets),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_protobuf_allocator),
	};

	return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
