/*
 * test_backoff.c - schedules, jitter bounds and distributions, determinism,
 * clamping at huge retry numbers, the attempt and elapsed-time limits, and
 * option validation.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/backoff.h"
#include "ratchet/error.h"
#include "ratchet/rng.h"
#include "testutil.h"

static ratchet_backoff_options plain(ratchet_backoff_kind kind) {
  ratchet_backoff_options o = RATCHET_BACKOFF_OPTIONS_INIT;
  o.kind = kind;
  o.jitter = RATCHET_JITTER_NONE;
  o.initial_ns = 100 * TU_MS;
  o.max_delay_ns = 10 * TU_S;
  return o;
}

static void test_defaults_are_valid(void **state) {
  (void)state;
  ratchet_backoff_options d = RATCHET_BACKOFF_OPTIONS_INIT;
  ratchet_backoff_options g = RATCHET_BACKOFF_GRPC_INIT;
  assert_int_equal(ratchet_backoff_validate(&d), 0);
  assert_int_equal(ratchet_backoff_validate(&g), 0);
  assert_true(ratchet_backoff_base(&g, 1) == 1 * TU_S);
  assert_true(ratchet_backoff_base(&g, 2) == 1600 * TU_MS);
  assert_true(ratchet_backoff_base(&g, 100) == 120 * TU_S);
}

static void test_schedules(void **state) {
  (void)state;
  ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  const uint64_t expo[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000};
  for (uint32_t i = 0; i < 9; i++)
    assert_true(ratchet_backoff_base(&o, i + 1) == expo[i] * TU_MS);
  assert_true(ratchet_backoff_base(&o, 0) == 100 * TU_MS); /* 0 acts as 1 */

  o.multiplier = 1.5;
  assert_true(ratchet_backoff_base(&o, 3) == 225 * TU_MS);
  o.multiplier = 1.0;
  assert_true(ratchet_backoff_base(&o, 1000) == 100 * TU_MS);

  o = plain(RATCHET_BACKOFF_CONSTANT);
  assert_true(ratchet_backoff_base(&o, 7) == 100 * TU_MS);

  o = plain(RATCHET_BACKOFF_LINEAR);
  o.increment_ns = 50 * TU_MS;
  assert_true(ratchet_backoff_base(&o, 1) == 100 * TU_MS);
  assert_true(ratchet_backoff_base(&o, 4) == 250 * TU_MS);
  assert_true(ratchet_backoff_base(&o, 1000) == 10 * TU_S);

  o = plain(RATCHET_BACKOFF_FIBONACCI);
  const uint64_t fib[] = {1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 100};
  for (uint32_t i = 0; i < 12; i++)
    assert_true(ratchet_backoff_base(&o, i + 1) == fib[i] * 100 * TU_MS);

  const uint64_t table[] = {5 * TU_MS, 50 * TU_MS, 20 * TU_S};
  o = plain(RATCHET_BACKOFF_TABLE);
  o.table_ns = table;
  o.table_len = 3;
  assert_true(ratchet_backoff_base(&o, 1) == 5 * TU_MS);
  assert_true(ratchet_backoff_base(&o, 2) == 50 * TU_MS);
  assert_true(ratchet_backoff_base(&o, 3) == 10 * TU_S);  /* capped */
  assert_true(ratchet_backoff_base(&o, 99) == 10 * TU_S); /* last repeats */
}

static void test_huge_retry_numbers_clamp(void **state) {
  (void)state;
  const uint64_t table[] = {1};
  ratchet_backoff_kind kinds[] = {RATCHET_BACKOFF_LINEAR,
                                  RATCHET_BACKOFF_EXPONENTIAL,
                                  RATCHET_BACKOFF_FIBONACCI};
  for (size_t k = 0; k < 3; k++) {
    ratchet_backoff_options o = plain(kinds[k]);
    o.increment_ns = UINT64_MAX / 2;
    o.multiplier = 1000.0;
    o.max_delay_ns = UINT64_MAX; /* the cap cannot hide an overflow */
    /* fib(93) < 2^64 <= fib(94): every kind has passed the cap by 100. */
    o.initial_ns = 1;
    for (uint32_t r = 100; r < UINT32_MAX - 1000; r += 100000000)
      assert_true(ratchet_backoff_base(&o, r) == UINT64_MAX);
    assert_true(ratchet_backoff_base(&o, UINT32_MAX) == UINT64_MAX);
    o.max_delay_ns = 30 * TU_S;
    assert_true(ratchet_backoff_base(&o, UINT32_MAX) == 30 * TU_S);
    /* Jittered delays stay within the cap too. */
    o.jitter = RATCHET_JITTER_PROPORTIONAL;
    o.jitter_fraction = 1.0;
    assert_true(ratchet_backoff_delay(&o, UINT32_MAX, 0, UINT64_MAX) <=
                30 * TU_S);
  }
  /* A tiny multiplier over many retries is still bounded and monotonic. */
  ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  o.multiplier = 1.000001;
  uint64_t prev = 0;
  for (uint32_t r = 1; r < UINT32_MAX / 2; r = r * 3 + 1) {
    uint64_t v = ratchet_backoff_base(&o, r);
    assert_true(v >= prev && v <= o.max_delay_ns);
    prev = v;
  }
  assert_true(prev == o.max_delay_ns);
  o.kind = RATCHET_BACKOFF_TABLE;
  o.table_ns = table;
  o.table_len = 1;
  assert_true(ratchet_backoff_base(&o, UINT32_MAX) == 1);
}

/* Draws many jittered delays for retry `retry` and checks they lie in
 * [lo, hi] with a mean near `mean` (within 3 %). */
static void check_jitter(const ratchet_backoff_options *o, uint32_t retry,
                         uint64_t prev, uint64_t lo, uint64_t hi, double mean) {
  ratchet_rng rng;
  ratchet_rng_seed(&rng, 1234);
  double sum = 0;
  uint64_t seen_lo = UINT64_MAX, seen_hi = 0;
  const int n = 20000;
  for (int i = 0; i < n; i++) {
    uint64_t d = ratchet_backoff_delay(o, retry, prev, ratchet_rng_next(&rng));
    assert_true(d >= lo && d <= hi);
    sum += (double)d;
    seen_lo = d < seen_lo ? d : seen_lo;
    seen_hi = d > seen_hi ? d : seen_hi;
  }
  double m = sum / n;
  assert_true(m > mean * 0.97 && m < mean * 1.03);
  /* The samples cover the range, not just its middle. */
  assert_true((double)(seen_lo - lo) < 0.01 * (double)(hi - lo) + 1);
  assert_true((double)(hi - seen_hi) < 0.01 * (double)(hi - lo) + 1);
}

static void test_jitter_bounds(void **state) {
  (void)state;
  ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  uint64_t v = 400 * TU_MS; /* retry 3 */

  o.jitter = RATCHET_JITTER_NONE;
  assert_true(ratchet_backoff_delay(&o, 3, 0, 777) == v);
  o.jitter = RATCHET_JITTER_FULL;
  check_jitter(&o, 3, 0, 0, v, v / 2.0);
  o.jitter = RATCHET_JITTER_EQUAL;
  check_jitter(&o, 3, 0, v / 2, v, v * 0.75);
  o.jitter = RATCHET_JITTER_PROPORTIONAL;
  o.jitter_fraction = 0.2;
  check_jitter(&o, 3, 0, v * 8 / 10, v * 12 / 10, (double)v);
  /* Decorrelated: U(initial, prev * 3), independent of the retry number. */
  o.jitter = RATCHET_JITTER_DECORRELATED;
  check_jitter(&o, 7, 1 * TU_S, 100 * TU_MS, 3 * TU_S, 1550.0 * TU_MS);
  check_jitter(&o, 1, 0, 100 * TU_MS, 300 * TU_MS, 200.0 * TU_MS);
  /* Near the cap, decorrelated jitter is clamped to it. */
  for (uint64_t r = 0; r < 1000; r++)
    assert_true(ratchet_backoff_delay(&o, 1, 9 * TU_S, r * 7919 * 1000003) <=
                10 * TU_S);
}

static void test_deterministic(void **state) {
  (void)state;
  ratchet_jitter modes[] = {RATCHET_JITTER_FULL, RATCHET_JITTER_EQUAL,
                            RATCHET_JITTER_DECORRELATED,
                            RATCHET_JITTER_PROPORTIONAL};
  for (size_t m = 0; m < 4; m++) {
    ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
    o.jitter = modes[m];
    o.jitter_fraction = 0.5;
    for (uint64_t r = 1; r < 200; r++) {
      uint64_t random = r * UINT64_C(0x9e3779b97f4a7c15);
      uint64_t a =
          ratchet_backoff_delay(&o, (uint32_t)(r % 9 + 1), r * TU_MS, random);
      uint64_t b =
          ratchet_backoff_delay(&o, (uint32_t)(r % 9 + 1), r * TU_MS, random);
      assert_true(a == b);
    }
  }
  /* Pinned values: random 0 is the bottom of each range, all ones the top. */
  ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  o.jitter = RATCHET_JITTER_FULL;
  assert_true(ratchet_backoff_delay(&o, 2, 0, 0) == 0);
  assert_true(ratchet_backoff_delay(&o, 2, 0, UINT64_MAX) == 200 * TU_MS);
  o.jitter = RATCHET_JITTER_EQUAL;
  assert_true(ratchet_backoff_delay(&o, 2, 0, 0) == 100 * TU_MS);
  assert_true(ratchet_backoff_delay(&o, 2, 0, UINT64_MAX) == 200 * TU_MS);
}

static void test_next_limits(void **state) {
  (void)state;
  ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  o.max_attempts = 3;
  ratchet_backoff_state st;
  uint64_t d = 0;
  ratchet_backoff_start(&st, 1000);
  assert_int_equal(st.attempts, 1);
  assert_int_equal(ratchet_backoff_next(&o, &st, 1000, 0, &d), 0);
  assert_true(d == 100 * TU_MS);
  assert_int_equal(ratchet_backoff_next(&o, &st, 2000, 0, &d), 0);
  assert_true(d == 200 * TU_MS);
  assert_int_equal(st.attempts, 3);
  d = 42;
  assert_int_equal(ratchet_backoff_next(&o, &st, 3000, 0, &d),
                   RATCHET_EATTEMPTS);
  assert_true(d == 42);
  assert_int_equal(st.attempts, 3);

  /* max_elapsed: 1 s from the first call; the retry starting at exactly 1 s
   * is allowed, one nanosecond later is not. */
  o.max_attempts = 0;
  o.max_elapsed_ns = 1 * TU_S;
  ratchet_backoff_start(&st, 5 * TU_S);
  assert_int_equal(ratchet_backoff_next(&o, &st, 5 * TU_S + 900 * TU_MS, 0, &d),
                   0);
  assert_true(d == 100 * TU_MS);
  assert_int_equal(ratchet_backoff_next(&o, &st, 5 * TU_S + 801 * TU_MS, 0, &d),
                   RATCHET_EDEADLINE);
  assert_int_equal(st.attempts, 2);
  assert_int_equal(ratchet_backoff_next(&o, &st, 5 * TU_S + 800 * TU_MS, 0, &d),
                   0);
  assert_true(d == 200 * TU_MS);
  /* A clock that went backwards counts as no time elapsed. */
  ratchet_backoff_start(&st, 5 * TU_S);
  assert_int_equal(ratchet_backoff_next(&o, &st, 1 * TU_S, 0, &d), 0);
}

static void test_invalid_options(void **state) {
  (void)state;
  ratchet_backoff_options o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  assert_int_equal(ratchet_backoff_validate(NULL), -EINVAL);
  o.initial_ns = 0;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  o.max_delay_ns = o.initial_ns - 1;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.max_delay_ns = o.initial_ns; /* boundary */
  assert_int_equal(ratchet_backoff_validate(&o), 0);
  o.multiplier = 0.999;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.multiplier = 1000.001;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.multiplier = 0.0 / 0.0;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.multiplier = 1000.0;
  assert_int_equal(ratchet_backoff_validate(&o), 0);
  o.kind = (ratchet_backoff_kind)99;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o = plain(RATCHET_BACKOFF_EXPONENTIAL);
  o.jitter = (ratchet_jitter)-1;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.jitter = RATCHET_JITTER_PROPORTIONAL;
  o.jitter_fraction = 1.01;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.jitter_fraction = -0.01;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.jitter_fraction = 1.0;
  assert_int_equal(ratchet_backoff_validate(&o), 0);
  o = plain(RATCHET_BACKOFF_TABLE);
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL); /* no table */
  static uint64_t big[4097];
  o.table_ns = big;
  o.table_len = 4097;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
  o.table_len = 4096;
  assert_int_equal(ratchet_backoff_validate(&o), 0);
  o.table_len = 0;
  assert_int_equal(ratchet_backoff_validate(&o), -EINVAL);
}

int test_backoff(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_are_valid),
      cmocka_unit_test(test_schedules),
      cmocka_unit_test(test_huge_retry_numbers_clamp),
      cmocka_unit_test(test_jitter_bounds),
      cmocka_unit_test(test_deterministic),
      cmocka_unit_test(test_next_limits),
      cmocka_unit_test(test_invalid_options),
  };
  return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
