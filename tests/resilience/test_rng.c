/*
 * test_rng.c - the generator is deterministic per seed, distinct across
 * seeds, and the pure mappings stay in their ranges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/rng.h"
#include "testutil.h"

static void test_deterministic(void **state) {
  (void)state;
  ratchet_rng a, b, c;
  ratchet_rng_seed(&a, 42);
  ratchet_rng_seed(&b, 42);
  ratchet_rng_seed(&c, 43);
  int same_as_c = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = ratchet_rng_next(&a);
    assert_true(x == ratchet_rng_next(&b));
    same_as_c += x == ratchet_rng_next(&c);
  }
  assert_int_equal(same_as_c, 0);
}

static void test_seed_zero_is_usable(void **state) {
  (void)state;
  ratchet_rng r;
  ratchet_rng_seed(&r, 0);
  uint64_t or_all = 0;
  for (int i = 0; i < 8; i++)
    or_all |= ratchet_rng_next(&r);
  assert_true(or_all != 0);
}

static void test_mappings(void **state) {
  (void)state;
  assert_true(ratchet_rng_unit(0) == 0.0);
  assert_true(ratchet_rng_unit(UINT64_MAX) < 1.0);
  assert_true(ratchet_rng_upto(0, 10) == 0);
  assert_true(ratchet_rng_upto(UINT64_MAX, 10) == 10);
  assert_true(ratchet_rng_upto(UINT64_MAX, UINT64_MAX) == UINT64_MAX);
  assert_true(ratchet_rng_upto(12345, 0) == 0);

  /* Every value of a small range is reached, roughly evenly. */
  ratchet_rng r;
  ratchet_rng_seed(&r, 7);
  unsigned hist[5] = {0};
  for (int i = 0; i < 50000; i++) {
    uint64_t v = ratchet_rng_upto(ratchet_rng_next(&r), 4);
    assert_true(v <= 4);
    hist[v]++;
  }
  for (int i = 0; i < 5; i++)
    assert_in_range(hist[i], 9000, 11000);
}

int test_rng(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_seed_zero_is_usable),
      cmocka_unit_test(test_mappings),
  };
  return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
