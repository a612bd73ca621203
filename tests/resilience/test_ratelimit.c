/*
 * test_ratelimit.c - the limiter grants exactly what its rate allows, to the
 * nanosecond, for both algorithms: bursts, steady spacing, fractional rates,
 * debt and recovery through reserve, idle periods, a clock that stands still
 * or steps back, and the option bounds. A random call sequence checks that
 * the token bucket and GCRA agree on every decision and wait. Time is a
 * variable; nothing sleeps.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads under -std=c11 */

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/error.h"
#include "ratchet/ratelimit.h"
#include "ratchet/rng.h"
#include "testutil.h"

/* Tests that hold for both algorithms run once with each as their state. */
static ratchet_ratelimit_algorithm algo_tb = RATCHET_RATELIMIT_TOKEN_BUCKET;
static ratchet_ratelimit_algorithm algo_gcra = RATCHET_RATELIMIT_GCRA;

#define CASE(f, label, state)                                                  \
  { #f " (" label ")", f, NULL, NULL, &state }
#define BOTH(f) CASE(f, "token bucket", algo_tb), CASE(f, "gcra", algo_gcra)

#define LIMITED RATCHET_ERATE_LIMITED
#define YEAR_NS (UINT64_C(31557600) * TU_S) /* 365.25 days */

static ratchet_ratelimit *make(ratchet_ratelimit_algorithm algorithm,
                               uint64_t limit, uint64_t period_ns,
                               uint64_t burst, uint64_t now) {
  ratchet_ratelimit_options o = RATCHET_RATELIMIT_OPTIONS_INIT;
  o.algorithm = algorithm;
  o.limit = limit;
  o.period_ns = period_ns;
  o.burst = burst;
  ratchet_ratelimit *rl = NULL;
  assert_int_equal(ratchet_ratelimit_new(&o, now, &rl), 0);
  assert_non_null(rl);
  return rl;
}

static ratchet_ratelimit_algorithm algo(void **state) {
  return *(ratchet_ratelimit_algorithm *)*state;
}

/* Takes everything available at now. */
static void drain(ratchet_ratelimit *rl, uint64_t now) {
  uint64_t n = ratchet_ratelimit_available(rl, now);
  assert_true(n > 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, n, now, NULL), 0);
  assert_int_equal(ratchet_ratelimit_available(rl, now), 0);
}

static void test_starts_full(void **state) {
  uint64_t t0 = 5 * TU_S, wait = 42;
  ratchet_ratelimit *rl = make(algo(state), 10, TU_S, 0, t0);
  assert_int_equal(ratchet_ratelimit_available(rl, t0), 10);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0, &wait), 0);
    assert_int_equal(wait, 0);
  }
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0, &wait), LIMITED);
  assert_int_equal(wait, 100 * TU_MS);
  assert_int_equal(ratchet_ratelimit_available(rl, t0), 0);
  ratchet_ratelimit_free(rl);

  /* An explicit burst replaces the limit as the bucket's size. */
  rl = make(algo(state), 10, TU_S, 25, 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 0), 25);
  ratchet_ratelimit_free(rl);
  ratchet_ratelimit_free(NULL);
}

/* 10 per second: after the burst, one permit exactly every 100 ms. */
static void test_steady_spacing(void **state) {
  uint64_t t0 = TU_S, wait;
  ratchet_ratelimit *rl = make(algo(state), 10, TU_S, 0, t0);
  drain(rl, t0);
  for (uint64_t k = 1; k <= 100; k++) {
    uint64_t due = t0 + k * 100 * TU_MS;
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, due - 1, &wait), LIMITED);
    assert_int_equal(wait, 1);
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, due, &wait), 0);
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, due, &wait), LIMITED);
    assert_int_equal(wait, 100 * TU_MS);
  }
  ratchet_ratelimit_free(rl);
}

/* 3 per second: the k-th permit after the burst is due at exactly
 * ceil(k * 10^9 / 3) ns, and 1000 s yield exactly 3000 permits. (The bucket
 * must hold more than one permit for the first: with a burst of 1, the
 * fraction that accrues past a whole permit before the caller comes back is
 * capped away, as it should be.) */
static void test_fractional_rate(void **state) {
  uint64_t wait;
  ratchet_ratelimit *rl = make(algo(state), 3, TU_S, 0, 0);
  drain(rl, 0);
  for (uint64_t k = 1; k <= 3000; k++) {
    uint64_t due = (k * TU_S + 2) / 3;
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, due - 1, &wait), LIMITED);
    assert_int_equal(wait, 1);
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, due, NULL), 0);
  }
  ratchet_ratelimit_free(rl);

  /* Greedy callers every millisecond for 1000 s: the burst (3) plus the
   * rate's 3000, with no drift from rounding. */
  rl = make(algo(state), 3, TU_S, 0, 0);
  uint64_t granted = 0;
  for (uint64_t t = 0; t <= 1000 * TU_S; t += TU_MS)
    while (ratchet_ratelimit_acquire(rl, 1, t, NULL) == 0)
      granted++;
  assert_int_equal(granted, 3003);
  ratchet_ratelimit_free(rl);
}

static void test_acquire_many(void **state) {
  uint64_t t0 = 0, wait = 42;
  ratchet_ratelimit *rl = make(algo(state), 10, TU_S, 0, t0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 4, t0, &wait), 0);
  assert_int_equal(ratchet_ratelimit_available(rl, t0), 6);
  /* A refusal takes nothing, even though some permits are there. */
  assert_int_equal(ratchet_ratelimit_acquire(rl, 7, t0, &wait), LIMITED);
  assert_int_equal(wait, 100 * TU_MS);
  assert_int_equal(ratchet_ratelimit_available(rl, t0), 6);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 6, t0, &wait), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 10, t0, &wait), LIMITED);
  assert_int_equal(wait, TU_S);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 10, t0 + TU_S - 1, &wait),
                   LIMITED);
  assert_int_equal(wait, 1);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 10, t0 + TU_S, &wait), 0);

  /* n that can never succeed is an error, and leaves *wait_ns alone. */
  wait = 42;
  assert_int_equal(ratchet_ratelimit_acquire(rl, 0, t0, &wait), -EINVAL);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 11, t0, &wait), -EINVAL);
  assert_int_equal(ratchet_ratelimit_acquire(rl, UINT64_MAX, t0, &wait),
                   -EINVAL);
  assert_int_equal(wait, 42);
  ratchet_ratelimit_free(rl);
}

static void test_reserve(void **state) {
  uint64_t t0 = 7 * TU_S, wait = 42;
  ratchet_ratelimit *rl = make(algo(state), 10, TU_S, 0, t0);
  /* Available now: no wait, even with no wait allowed. */
  assert_int_equal(ratchet_ratelimit_reserve(rl, 1, 0, t0, &wait), 0);
  assert_int_equal(wait, 0);
  drain(rl, t0);

  /* Each reservation queues behind the last: 100 ms, 200 ms, ... 1 s. */
  for (uint64_t k = 1; k <= 10; k++) {
    assert_int_equal(ratchet_ratelimit_reserve(rl, 1, TU_S, t0, &wait), 0);
    assert_int_equal(wait, k * 100 * TU_MS);
  }
  /* The next would wait 1.1 s: refused, and nothing is taken. */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(ratchet_ratelimit_reserve(rl, 1, TU_S, t0, &wait),
                     LIMITED);
    assert_int_equal(wait, 1100 * TU_MS);
  }
  assert_int_equal(ratchet_ratelimit_available(rl, t0), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0, &wait), LIMITED);
  assert_int_equal(wait, 1100 * TU_MS);
  /* Several permits at once, and a wait exactly at the maximum. */
  assert_int_equal(ratchet_ratelimit_reserve(rl, 5, 1500 * TU_MS, t0, &wait),
                   0);
  assert_int_equal(wait, 1500 * TU_MS);
  assert_int_equal(ratchet_ratelimit_reserve(rl, 1, UINT64_MAX, t0, NULL), 0);

  /* Recovery: the debt (16 permits) is repaid at 1.6 s, then permits flow
   * again at the rate and the bucket refills to its burst, no further. */
  assert_int_equal(ratchet_ratelimit_available(rl, t0 + 1600 * TU_MS), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0 + 1600 * TU_MS, &wait),
                   LIMITED);
  assert_int_equal(wait, 100 * TU_MS);
  assert_int_equal(ratchet_ratelimit_available(rl, t0 + 1700 * TU_MS), 1);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0 + 1700 * TU_MS, &wait),
                   0);
  assert_int_equal(ratchet_ratelimit_available(rl, t0 + 100 * TU_S), 10);

  assert_int_equal(ratchet_ratelimit_reserve(rl, 0, TU_S, t0, &wait), -EINVAL);
  assert_int_equal(ratchet_ratelimit_reserve(rl, 11, TU_S, t0, &wait), -EINVAL);
  ratchet_ratelimit_free(rl);
}

/* Waits are capped at 2^62 / limit ns, so debt never overflows: with a limit
 * of 10^9 that is 4,611,686,018 ns, whatever max_wait_ns says. */
static void test_reserve_horizon(void **state) {
  uint64_t wait;
  ratchet_ratelimit *rl = make(algo(state), 1000000000, TU_S, 0, 0);
  drain(rl, 0);
  for (uint64_t k = 1; k <= 4; k++) {
    assert_int_equal(
        ratchet_ratelimit_reserve(rl, 1000000000, UINT64_MAX, 0, &wait), 0);
    assert_int_equal(wait, k * TU_S);
  }
  assert_int_equal(
      ratchet_ratelimit_reserve(rl, 1000000000, UINT64_MAX, 0, &wait), LIMITED);
  assert_int_equal(wait, 5 * TU_S);
  assert_int_equal(
      ratchet_ratelimit_reserve(rl, 611686018, UINT64_MAX, 0, &wait), 0);
  assert_int_equal(wait, UINT64_C(4611686018));
  assert_int_equal(ratchet_ratelimit_reserve(rl, 1, UINT64_MAX, 0, &wait),
                   LIMITED);
  assert_int_equal(wait, UINT64_C(4611686019));
  /* It all drains in time. */
  assert_int_equal(ratchet_ratelimit_available(rl, UINT64_C(5611686018)),
                   1000000000);
  ratchet_ratelimit_free(rl);
}

static void test_available(void **state) {
  ratchet_ratelimit *rl = make(algo(state), 3, TU_S, 0, 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 0), 3);
  drain(rl, 0);
  /* Whole permits only: the first is due at 333,333,334 ns. */
  assert_int_equal(ratchet_ratelimit_available(rl, 333333333), 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 333333334), 1);
  assert_int_equal(ratchet_ratelimit_available(rl, 666666666), 1);
  assert_int_equal(ratchet_ratelimit_available(rl, 666666667), 2);
  assert_int_equal(ratchet_ratelimit_available(rl, TU_S), 3);
  assert_int_equal(ratchet_ratelimit_available(rl, 1000 * TU_S), 3);
  /* Looking takes nothing and moves no state. */
  assert_int_equal(ratchet_ratelimit_available(rl, 333333333), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 2, 666666667, NULL), 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 666666667), 0);
  ratchet_ratelimit_free(rl);
}

static void test_long_idle(void **state) {
  uint64_t wait;
  /* The largest bucket and slowest refill the options allow. */
  ratchet_ratelimit *rl = make(algo(state), 1, 86400 * TU_S, 53375, 0);
  drain(rl, 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 100 * YEAR_NS), 36525);
  assert_int_equal(ratchet_ratelimit_available(rl, 200 * YEAR_NS), 53375);
  ratchet_ratelimit_free(rl);

  /* A fast limiter idle for 100 years refills to its burst, no more. */
  rl = make(algo(state), 10, TU_S, 0, TU_S);
  drain(rl, TU_S);
  uint64_t t = TU_S + 100 * YEAR_NS;
  assert_int_equal(ratchet_ratelimit_available(rl, t), 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t, NULL), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t, &wait), LIMITED);
  assert_int_equal(wait, 100 * TU_MS);
  assert_int_equal(ratchet_ratelimit_available(rl, UINT64_MAX), 10);
  ratchet_ratelimit_free(rl);
}

/* Debt that reaches past the end of the clock's range is still exact. */
static void test_end_of_time(void **state) {
  uint64_t t0 = UINT64_MAX - 10 * TU_S, wait;
  ratchet_ratelimit *rl = make(algo(state), 10, TU_S, 0, t0);
  drain(rl, t0);
  for (uint64_t k = 1; k <= 20; k++) {
    assert_int_equal(ratchet_ratelimit_reserve(rl, 10, 60 * TU_S, t0, &wait),
                     0);
    assert_int_equal(wait, k * TU_S);
  }
  assert_int_equal(ratchet_ratelimit_available(rl, UINT64_MAX), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, UINT64_MAX, &wait),
                   LIMITED);
  assert_int_equal(wait, 10 * TU_S + 100 * TU_MS);
  ratchet_ratelimit_free(rl);
}

static void test_clock_still_and_backwards(void **state) {
  uint64_t t0 = 10 * TU_S, wait;
  ratchet_ratelimit *rl = make(algo(state), 10, TU_S, 0, t0);
  drain(rl, t0);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0, &wait), LIMITED);
    assert_int_equal(wait, 100 * TU_MS);
  }
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0 + 50 * TU_MS, &wait),
                   LIMITED);
  assert_int_equal(wait, 50 * TU_MS);
  /* An earlier time counts as the latest seen: no refill, no loss, and the
   * wait runs from the latest time. */
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0, &wait), LIMITED);
  assert_int_equal(wait, 50 * TU_MS);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, 0, &wait), LIMITED);
  assert_int_equal(wait, 50 * TU_MS);
  assert_int_equal(ratchet_ratelimit_available(rl, 0), 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0 + 100 * TU_MS, NULL), 0);
  assert_int_equal(ratchet_ratelimit_reserve(rl, 1, TU_S, t0, &wait), 0);
  assert_int_equal(wait, 100 * TU_MS);
  ratchet_ratelimit_free(rl);

  /* Times before creation count as the creation time. */
  rl = make(algo(state), 10, TU_S, 0, t0);
  assert_int_equal(ratchet_ratelimit_available(rl, 0), 10);
  drain(rl, 0);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, 0, &wait), LIMITED);
  assert_int_equal(wait, 100 * TU_MS);
  assert_int_equal(ratchet_ratelimit_acquire(rl, 1, t0 + 100 * TU_MS, NULL), 0);
  ratchet_ratelimit_free(rl);
}

/* ------------------------------------------------------------------------ */
/* Token bucket and GCRA agree on a random call sequence.                    */

typedef struct eq_counts {
  unsigned long granted, limited, debt, horizon, invalid, backwards;
} eq_counts;

static uint64_t pick_n(ratchet_rng *rng, uint64_t burst) {
  uint64_t r = ratchet_rng_next(rng);
  switch (r % 32) {
  case 0:
    return 0;
  case 1:
    return burst + 1;
  case 2:
    return burst;
  default:
    break;
  }
  uint64_t top = r % 4 == 0 ? burst : (burst < 4 ? burst : 4);
  return 1 + ratchet_rng_upto(ratchet_rng_next(rng), top - 1);
}

static void run_equivalence(uint64_t limit, uint64_t period_ns, uint64_t burst,
                            uint64_t start, uint64_t seed, eq_counts *c) {
  ratchet_ratelimit *tb =
      make(RATCHET_RATELIMIT_TOKEN_BUCKET, limit, period_ns, burst, start);
  ratchet_ratelimit *gcra =
      make(RATCHET_RATELIMIT_GCRA, limit, period_ns, burst, start);
  uint64_t b = burst != 0 ? burst : limit;
  /* Time steps scale with the spacing of permits, at least 1 ns. */
  uint64_t spacing = period_ns / limit > 0 ? period_ns / limit : 1;
  ratchet_rng rng;
  ratchet_rng_seed(&rng, seed);
  uint64_t now = start;

  for (int i = 0; i < 50000; i++) {
    uint64_t r = ratchet_rng_next(&rng);
    uint64_t step = 0, t;
    switch (r % 16) {
    case 0:
    case 1:
    case 2:
      break; /* the clock stands still */
    case 3:
      step = 1;
      break;
    case 4: /* now and then a long idle, up to a whole bucket's refill */
      if ((r >> 32) % 16 == 0)
        step = ratchet_rng_upto(ratchet_rng_next(&rng), b * period_ns / limit);
      break;
    default:
      step = ratchet_rng_upto(ratchet_rng_next(&rng), 2 * spacing);
      break;
    }
    now = now > UINT64_MAX - step ? UINT64_MAX : now + step;
    t = now;
    if ((r >> 8) % 16 == 0) { /* a caller with a stale clock reading */
      uint64_t back = ratchet_rng_upto(ratchet_rng_next(&rng), 3 * spacing);
      t = back > now ? 0 : now - back;
      c->backwards++;
    }

    uint64_t n = pick_n(&rng, b);
    uint64_t w_tb = 7, w_gcra = 7;
    int rc_tb, rc_gcra;
    switch ((r >> 16) % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
      rc_tb = ratchet_ratelimit_acquire(tb, n, t, &w_tb);
      rc_gcra = ratchet_ratelimit_acquire(gcra, n, t, &w_gcra);
      break;
    case 4:
    case 5:
    case 6:
    case 7: {
      uint64_t max_wait;
      switch ((r >> 24) % 3) {
      case 0:
        max_wait = 0;
        break;
      case 1:
        max_wait = UINT64_MAX;
        break;
      default:
        max_wait = ratchet_rng_upto(ratchet_rng_next(&rng), 2 * b * spacing);
        break;
      }
      rc_tb = ratchet_ratelimit_reserve(tb, n, max_wait, t, &w_tb);
      rc_gcra = ratchet_ratelimit_reserve(gcra, n, max_wait, t, &w_gcra);
      if (rc_tb == 0 && w_tb > 0)
        c->debt++;
      if (rc_tb == LIMITED && w_tb <= max_wait)
        c->horizon++;
      break;
    }
    default:
      w_tb = ratchet_ratelimit_available(tb, t);
      w_gcra = ratchet_ratelimit_available(gcra, t);
      rc_tb = rc_gcra = 0;
      break;
    }
    assert_int_equal(rc_tb, rc_gcra);
    assert_int_equal(w_tb, w_gcra);
    c->granted += rc_tb == 0;
    c->limited += rc_tb == LIMITED;
    c->invalid += rc_tb == -EINVAL;
  }
  ratchet_ratelimit_free(tb);
  ratchet_ratelimit_free(gcra);
}

static void test_tb_equals_gcra(void **state) {
  (void)state;
  static const struct {
    uint64_t limit, period_ns, burst, start;
  } cases[] = {
      {10, TU_S, 0, 0},
      {3, TU_S, 1, 12345},
      {3, TU_S, 7, UINT64_MAX - 100 * TU_S},
      {50, 500 * TU_MS, 0, TU_S},
      {7, 1000, 5, 0},
      {999999937, 1000000007, 4, 0},
      {1000000000, 1, 0, 0},
      {1000000000, TU_S, 1000000000, 0},
      {1, 86400 * TU_S, 53375, 0},
      {1000000000, 86400 * TU_S, 1, UINT64_MAX - YEAR_NS},
  };
  eq_counts c = {0};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_equivalence(cases[i].limit, cases[i].period_ns, cases[i].burst,
                    cases[i].start, 1000 + i, &c);
  /* The sequence reached every kind of outcome. */
  assert_true(c.granted > 1000);
  assert_true(c.limited > 1000);
  assert_true(c.debt > 1000);
  assert_true(c.horizon > 0);
  assert_true(c.invalid > 100);
  assert_true(c.backwards > 1000);
}

/* ------------------------------------------------------------------------ */

static void test_options(void **state) {
  (void)state;
  static const uint64_t day = 86400 * TU_S;
  static const struct {
    int algorithm;
    uint64_t limit, period_ns, burst;
    int want;
  } cases[] = {
      /* Bounds that are accepted. */
      {0, 1, 1, 1, 0},
      {1, 1, 1, 1, 0},
      {0, 1000000000, 1, 0, 0},
      {0, 1000000000, 1, 1000000000, 0},
      {0, 1, day, 0, 0},
      {0, 1, day, 53375, 0}, /* 53375 days < 2^62 ns */
      /* burst * period_ns = 2^62 - 1 */
      {0, 1, UINT64_C(6442450941), 715827883, 0},
      {1, 1000000000, day, 1, 0},
      /* Out of range. */
      {2, 10, TU_S, 0, -EINVAL},
      {0, 0, TU_S, 0, -EINVAL},
      {0, 1000000001, TU_S, 1, -EINVAL},
      {0, UINT64_MAX, TU_S, 1, -EINVAL},
      {0, 10, 0, 0, -EINVAL},
      {0, 10, day + 1, 1, -EINVAL},
      {0, 10, UINT64_MAX, 1, -EINVAL},
      {0, 10, 1, 1000000001, -EINVAL},
      {0, 10, 1, UINT64_MAX, -EINVAL},
      {0, 1, day, 53376, -EINVAL},
      /* burst * period_ns = 2^62 exactly */
      {0, 1, UINT64_C(1) << 40, UINT64_C(1) << 22, -EINVAL},
      /* burst 0 means limit: 10^9 days is far too much */
      {0, 1000000000, day, 0, -EINVAL},
      /* 2^29 * (2^35 + 1) wraps to 2^29 in 64 bits: still refused */
      {1, 1, (UINT64_C(1) << 35) + 1, UINT64_C(1) << 29, -EINVAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ratchet_ratelimit_options o;
    o.algorithm = (ratchet_ratelimit_algorithm)cases[i].algorithm;
    o.limit = cases[i].limit;
    o.period_ns = cases[i].period_ns;
    o.burst = cases[i].burst;
    ratchet_ratelimit *rl = NULL;
    int rc = ratchet_ratelimit_new(&o, 0, &rl);
    if (rc != cases[i].want)
      fail_msg("case %zu: got %d, want %d", i, rc, cases[i].want);
    if (rc == 0) {
      uint64_t burst = o.burst != 0 ? o.burst : o.limit;
      assert_int_equal(ratchet_ratelimit_available(rl, 0), burst);
      assert_int_equal(ratchet_ratelimit_acquire(rl, burst, 0, NULL), 0);
      ratchet_ratelimit_free(rl);
    } else {
      assert_null(rl);
    }
  }

  ratchet_ratelimit_options d = RATCHET_RATELIMIT_OPTIONS_INIT;
  ratchet_ratelimit *rl = NULL;
  assert_int_equal(ratchet_ratelimit_new(NULL, 0, &rl), -EINVAL);
  assert_int_equal(ratchet_ratelimit_new(&d, 0, NULL), -EINVAL);
  /* The defaults: 50 per 500 ms, burst 50. */
  assert_int_equal(ratchet_ratelimit_new(&d, 0, &rl), 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 0), 50);
  drain(rl, 0);
  assert_int_equal(ratchet_ratelimit_available(rl, 500 * TU_MS), 50);
  ratchet_ratelimit_free(rl);
}

static void test_allocation(void **state) {
  ratchet_ratelimit_options o = RATCHET_RATELIMIT_OPTIONS_INIT;
  o.algorithm = algo(state);
  ratchet_ratelimit *rl = NULL;
  tu_alloc_install(0);
  assert_int_equal(ratchet_ratelimit_new(&o, 0, &rl), -ENOMEM);
  assert_null(rl);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();

  /* After creation, nothing allocates. */
  tu_alloc_install(SIZE_MAX);
  assert_int_equal(ratchet_ratelimit_new(&o, 0, &rl), 0);
  size_t allocs = tu_alloc_count();
  unsigned long granted = 0;
  for (uint64_t i = 0; i < 100000; i++) {
    uint64_t t = i * 1000;
    granted += ratchet_ratelimit_acquire(rl, 1, t, NULL) == 0;
    if (i % 16 == 0)
      (void)ratchet_ratelimit_reserve(rl, 1, TU_MS, t, NULL);
    if (i % 64 == 0)
      (void)ratchet_ratelimit_available(rl, t);
  }
  assert_true(granted > 0);
  assert_int_equal(tu_alloc_count(), allocs);
  ratchet_ratelimit_free(rl);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

/* ------------------------------------------------------------------------ */
/* Two threads take greedily from one limiter, each walking its own virtual  */
/* clock from 0 to 1 s. 1000 per second with a burst of 10 allows exactly    */
/* 1010 permits in that time, however the threads interleave.                */

typedef struct rl_worker_arg {
  ratchet_ratelimit *rl;
  unsigned long granted;
} rl_worker_arg;

static void *rl_worker(void *p) {
  rl_worker_arg *a = p;
  for (uint64_t t = 0; t <= TU_S; t += 10000)
    while (ratchet_ratelimit_acquire(a->rl, 1, t, NULL) == 0)
      a->granted++;
  return NULL;
}

static void test_threads(void **state) {
  ratchet_ratelimit *rl = make(algo(state), 1000, TU_S, 10, 0);
  rl_worker_arg args[2] = {{rl, 0}, {rl, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, rl_worker, &args[i]), 0);
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  unsigned long total = args[0].granted + args[1].granted;
  assert_true(total <= 1010);
  /* Neither thread lets the bucket sit full, so none of the rate is lost. */
  assert_int_equal(total, 1010);
  assert_int_equal(ratchet_ratelimit_available(rl, TU_S), 0);
  ratchet_ratelimit_free(rl);
}

int test_ratelimit(void) {
  const struct CMUnitTest tests[] = {
      BOTH(test_starts_full),
      BOTH(test_steady_spacing),
      BOTH(test_fractional_rate),
      BOTH(test_acquire_many),
      BOTH(test_reserve),
      BOTH(test_reserve_horizon),
      BOTH(test_available),
      BOTH(test_long_idle),
      BOTH(test_end_of_time),
      BOTH(test_clock_still_and_backwards),
      cmocka_unit_test(test_tb_equals_gcra),
      cmocka_unit_test(test_options),
      BOTH(test_allocation),
      BOTH(test_threads),
  };
  return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
