/*
 * test_alloc.c - the replaceable allocator: replacement, refusal of NULL
 * hooks, reset, and that ratchet_free(NULL) is harmless.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ratchet/alloc.h"
#include "testutil.h"

static void test_replace_counts_and_fails(void **state) {
  (void)state;
  tu_alloc_install(2);
  void *a = ratchet_malloc(16);
  void *b = ratchet_calloc(4, 4);
  void *c = ratchet_malloc(16);
  assert_non_null(a);
  assert_non_null(b);
  assert_null(c);
  assert_int_equal(tu_alloc_count(), 3);
  assert_int_equal(tu_alloc_live(), 2);
  ratchet_free(a);
  ratchet_free(b);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

static void test_refuses_null_hooks(void **state) {
  (void)state;
  assert_int_equal(ratchet_replace_allocator(NULL, realloc, calloc, free),
                   -EINVAL);
  assert_int_equal(ratchet_replace_allocator(malloc, NULL, calloc, free),
                   -EINVAL);
  assert_int_equal(ratchet_replace_allocator(malloc, realloc, NULL, free),
                   -EINVAL);
  assert_int_equal(ratchet_replace_allocator(malloc, realloc, calloc, NULL),
                   -EINVAL);
  /* The default allocator is still in place. */
  void *p = ratchet_realloc(NULL, 8);
  assert_non_null(p);
  ratchet_free(p);
}

static void test_free_null(void **state) {
  (void)state;
  tu_alloc_install(SIZE_MAX);
  ratchet_free(NULL);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

int test_alloc(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replace_counts_and_fails),
      cmocka_unit_test(test_refuses_null_hooks),
      cmocka_unit_test(test_free_null),
  };
  return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
