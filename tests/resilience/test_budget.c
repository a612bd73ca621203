/*
 * test_budget.c - the retry budget on a virtual clock: min_retries with no
 * calls, the ratio computed exactly, the window sliding bucket by bucket,
 * clock jumps, a clock standing still or going back, refusal counting, every
 * option bound, allocation failure, no allocation on the hot path, and the
 * lock under contention.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/budget.h"
#include "ratchet/error.h"
#include "testutil.h"

/* A budget with 1 s buckets over 10 s, so that bucket boundaries are whole
 * seconds. */
static ratchet_retry_budget *make(double ratio, uint32_t min_retries,
                                  uint64_t now_ns) {
  ratchet_retry_budget_options o = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  o.ratio = ratio;
  o.min_retries = min_retries;
  o.window_ns = 10 * TU_S;
  o.buckets = 10;
  ratchet_retry_budget *b = NULL;
  assert_int_equal(ratchet_retry_budget_new(&o, now_ns, &b), 0);
  assert_non_null(b);
  return b;
}

static ratchet_retry_budget_metrics metrics(ratchet_retry_budget *b,
                                            uint64_t now_ns) {
  ratchet_retry_budget_metrics m;
  ratchet_retry_budget_metrics_get(b, now_ns, &m);
  return m;
}

/* Withdraws until refused (at most `cap` times); returns the successes. */
static unsigned drain(ratchet_retry_budget *b, uint64_t now_ns, unsigned cap) {
  unsigned ok = 0;
  while (ok < cap && ratchet_retry_budget_withdraw(b, now_ns) == 0)
    ok++;
  return ok;
}

static void deposit_n(ratchet_retry_budget *b, uint64_t now_ns, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    ratchet_retry_budget_deposit(b, now_ns);
}

static void test_defaults(void **state) {
  (void)state;
  ratchet_retry_budget_options o = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  assert_true(o.ratio == 0.2);
  assert_int_equal(o.min_retries, 3);
  assert_true(o.window_ns == 10 * TU_S);
  assert_int_equal(o.buckets, 10);
  ratchet_retry_budget *b = NULL;
  assert_int_equal(ratchet_retry_budget_new(&o, 0, &b), 0);
  ratchet_retry_budget_metrics m = metrics(b, 0);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.retries, 0);
  assert_int_equal(m.allowed, 3);
  assert_int_equal(m.total_refused, 0);
  ratchet_retry_budget_free(b);
}

static void test_min_retries_without_calls(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.2, 3, 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), RATCHET_EBUDGET);
  ratchet_retry_budget_metrics m = metrics(b, 0);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.retries, 3);
  assert_int_equal(m.allowed, 3);
  assert_int_equal(m.total_refused, 1);
  ratchet_retry_budget_free(b);

  /* min_retries = 0 and no calls: nothing at all. */
  b = make(0.2, 0, 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), RATCHET_EBUDGET);
  ratchet_retry_budget_free(b);
}

static void test_ratio_applied(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.2, 0, 0);
  deposit_n(b, 0, 100);
  assert_int_equal(metrics(b, 0).allowed, 20);
  for (int i = 0; i < 20; i++)
    assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), RATCHET_EBUDGET);
  ratchet_retry_budget_metrics m = metrics(b, 0);
  assert_int_equal(m.calls, 100);
  assert_int_equal(m.retries, 20);
  assert_int_equal(m.total_refused, 1);
  /* One more call is worth 0.2 retries: still refused. Five more are worth
   * one. */
  ratchet_retry_budget_deposit(b, 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), RATCHET_EBUDGET);
  deposit_n(b, 0, 4);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), RATCHET_EBUDGET);
  ratchet_retry_budget_free(b);

  /* The limit is the larger of the two: min_retries 3 hides ratio * 10 = 2,
   * and ratio * 100 = 20 hides min_retries 3. */
  b = make(0.2, 3, 0);
  deposit_n(b, 0, 10);
  assert_int_equal(drain(b, 0, 1000), 3);
  deposit_n(b, 0, 90);
  assert_int_equal(drain(b, 0, 1000), 17);
  ratchet_retry_budget_free(b);
}

/* Ratios whose product with the calls is an integer in exact arithmetic but
 * falls just below it in doubles (0.29 * 100 = 28.999999999999996, and
 * 0.000249 * 1e6 = 248.99999999999997, which a truncating conversion to
 * millionths would get wrong). */
static void test_ratio_is_exact(void **state) {
  (void)state;
  static const struct {
    double ratio;
    unsigned calls, allowed;
  } cases[] = {
      {0.29, 100, 29},
      {0.57, 100, 57},
      {0.7, 10, 7},
      {0.1, 30, 3},
      {1.0, 7, 7},
      {0.0, 1000, 0},
      {1000.0, 3, 3000},
      {0.000001, 999999, 0},
      {0.000001, 1000000, 1},
      {0.000249, 1000000, 249},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ratchet_retry_budget *b = make(cases[i].ratio, 0, 0);
    deposit_n(b, 0, cases[i].calls);
    assert_int_equal(metrics(b, 0).allowed, cases[i].allowed);
    ratchet_retry_budget_free(b);
  }
}

/* Ten calls in each of ten 1 s buckets; from t = 10 s on, the oldest bucket
 * leaves the window at each whole second, and not before. */
static void test_window_slides(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.5, 0, 0);
  for (uint64_t s = 0; s < 10; s++)
    deposit_n(b, s * TU_S + 500 * TU_MS, 10);
  ratchet_retry_budget_metrics m = metrics(b, 9 * TU_S + 999 * TU_MS);
  assert_int_equal(m.calls, 100);
  assert_int_equal(m.allowed, 50);
  for (uint64_t s = 10; s < 20; s++) {
    uint64_t left = 10 * (19 - s);
    m = metrics(b, s * TU_S);
    assert_int_equal(m.calls, left);
    assert_int_equal(m.allowed, left / 2);
    m = metrics(b, s * TU_S + TU_S - 1);
    assert_int_equal(m.calls, left);
  }
  ratchet_retry_budget_free(b);
}

/* The budget shrinks as calls expire, and retries expire with their bucket
 * too. */
static void test_budget_shrinks(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.5, 0, 0);
  deposit_n(b, 0, 40);        /* bucket 0 */
  deposit_n(b, 5 * TU_S, 20); /* bucket 5 */
  assert_int_equal(drain(b, 5 * TU_S, 1000), 30);
  /* At 10 s bucket 0 leaves: 20 calls allow 10, and 30 retries remain. */
  ratchet_retry_budget_metrics m = metrics(b, 10 * TU_S);
  assert_int_equal(m.calls, 20);
  assert_int_equal(m.retries, 30);
  assert_int_equal(m.allowed, 10);
  deposit_n(b, 10 * TU_S, 40); /* 60 calls allow 30: still none left */
  assert_int_equal(ratchet_retry_budget_withdraw(b, 10 * TU_S),
                   RATCHET_EBUDGET);
  deposit_n(b, 10 * TU_S, 2); /* 62 allow 31 */
  assert_int_equal(ratchet_retry_budget_withdraw(b, 10 * TU_S), 0);
  /* At 15 s bucket 5 leaves with its 20 calls and 30 retries: 42 calls in
   * bucket 10 allow 21, and the one retry made there is left. */
  m = metrics(b, 15 * TU_S);
  assert_int_equal(m.calls, 42);
  assert_int_equal(m.retries, 1);
  assert_int_equal(m.allowed, 21);
  assert_int_equal(drain(b, 15 * TU_S, 1000), 20);
  ratchet_retry_budget_free(b);
}

static void test_clock_jumps(void **state) {
  (void)state;
  static const uint64_t jumps[] = {
      10 * TU_S,             /* exactly the window */
      10 * TU_S + 1,         /* just past it */
      3600 * TU_S,           /* an hour */
      UINT64_MAX - 5 * TU_S, /* as far as a uint64_t goes */
  };
  for (size_t i = 0; i < sizeof jumps / sizeof jumps[0]; i++) {
    ratchet_retry_budget *b = make(0.2, 3, 5 * TU_S);
    deposit_n(b, 5 * TU_S, 100);
    assert_int_equal(drain(b, 5 * TU_S, 1000), 20);
    uint64_t later = 5 * TU_S + jumps[i];
    ratchet_retry_budget_metrics m = metrics(b, later);
    assert_int_equal(m.calls, 0);
    assert_int_equal(m.retries, 0);
    assert_int_equal(m.allowed, 3);
    assert_int_equal(m.total_refused, 1);
    /* The emptied window works as new. */
    deposit_n(b, later, 50);
    assert_int_equal(drain(b, later, 1000), 10);
    ratchet_retry_budget_free(b);
  }

  /* A jump of nine buckets keeps only the newest of ten; of three, seven. */
  ratchet_retry_budget *b = make(1.0, 0, 0);
  for (uint64_t s = 0; s < 10; s++)
    deposit_n(b, s * TU_S, 1);
  assert_int_equal(metrics(b, 12 * TU_S).calls, 7);
  assert_int_equal(metrics(b, 18 * TU_S).calls, 1);
  assert_int_equal(metrics(b, 19 * TU_S).calls, 0);
  ratchet_retry_budget_free(b);
}

static void test_clock_stands_still(void **state) {
  (void)state;
  const uint64_t t = 123 * TU_S + 456;
  ratchet_retry_budget *b = make(0.2, 0, t);
  deposit_n(b, t, 1000);
  assert_int_equal(drain(b, t, 10000), 200);
  for (int i = 0; i < 3; i++) {
    ratchet_retry_budget_metrics m = metrics(b, t);
    assert_int_equal(m.calls, 1000);
    assert_int_equal(m.retries, 200);
    assert_int_equal(m.allowed, 200);
    assert_int_equal(m.total_refused, 1);
  }
  ratchet_retry_budget_free(b);
}

/* Time going backwards counts into the newest bucket, which then expires as
 * usual. */
static void test_clock_goes_back(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.5, 0, 0);
  deposit_n(b, 5 * TU_S, 10);
  deposit_n(b, 2 * TU_S, 10); /* counted at 5 s */
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  ratchet_retry_budget_metrics m = metrics(b, 1 * TU_S);
  assert_int_equal(m.calls, 20);
  assert_int_equal(m.retries, 1);
  /* Nothing expires at 12 s, where bucket 2 would have left... */
  assert_int_equal(metrics(b, 12 * TU_S).calls, 20);
  /* ...and everything at 15 s, with bucket 5. */
  m = metrics(b, 15 * TU_S);
  assert_int_equal(m.calls, 0);
  assert_int_equal(m.retries, 0);
  ratchet_retry_budget_free(b);
}

static void test_total_refused(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.2, 1, 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 0), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(ratchet_retry_budget_withdraw(b, 0), RATCHET_EBUDGET);
  assert_int_equal(metrics(b, 0).total_refused, 5);
  /* It outlives the window, and successful withdrawals do not touch it. */
  assert_int_equal(ratchet_retry_budget_withdraw(b, 60 * TU_S), 0);
  assert_int_equal(ratchet_retry_budget_withdraw(b, 60 * TU_S),
                   RATCHET_EBUDGET);
  ratchet_retry_budget_metrics m = metrics(b, 60 * TU_S);
  assert_int_equal(m.retries, 1);
  assert_int_equal(m.total_refused, 6);
  ratchet_retry_budget_free(b);
}

/* new() with o, expecting rc; on failure *out is left as it was. */
static void expect_new(const ratchet_retry_budget_options *o, int rc) {
  ratchet_retry_budget *sentinel = (ratchet_retry_budget *)&sentinel;
  ratchet_retry_budget *b = sentinel;
  assert_int_equal(ratchet_retry_budget_new(o, 0, &b), rc);
  if (rc == 0)
    ratchet_retry_budget_free(b);
  else
    assert_ptr_equal(b, sentinel);
}

static void test_invalid_options(void **state) {
  (void)state;
  const ratchet_retry_budget_options def = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  ratchet_retry_budget_options o;

  static const struct {
    double ratio;
    int rc;
  } ratios[] = {{0.0, 0},
                {1000.0, 0},
                {-0.0, 0},
                {-1e-12, -EINVAL},
                {1000.000001, -EINVAL},
                {-1.0, -EINVAL},
                {NAN, -EINVAL},
                {INFINITY, -EINVAL},
                {-INFINITY, -EINVAL}};
  for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++) {
    o = def;
    o.ratio = ratios[i].ratio;
    expect_new(&o, ratios[i].rc);
  }

  static const struct {
    uint32_t v;
    int rc;
  } mins[] = {
      {0, 0}, {1000000000u, 0}, {1000000001u, -EINVAL}, {UINT32_MAX, -EINVAL}};
  for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++) {
    o = def;
    o.min_retries = mins[i].v;
    expect_new(&o, mins[i].rc);
  }

  static const struct {
    uint64_t v;
    int rc;
  } windows[] = {
      {TU_MS, 0},   {86400 * TU_S, 0},           {TU_MS - 1, -EINVAL},
      {0, -EINVAL}, {86400 * TU_S + 1, -EINVAL}, {UINT64_MAX, -EINVAL}};
  for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
    o = def;
    o.window_ns = windows[i].v;
    expect_new(&o, windows[i].rc);
  }

  static const struct {
    uint32_t v;
    int rc;
  } buckets[] = {
      {1, 0}, {1000, 0}, {0, -EINVAL}, {1001, -EINVAL}, {UINT32_MAX, -EINVAL}};
  for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++) {
    o = def;
    o.buckets = buckets[i].v;
    expect_new(&o, buckets[i].rc);
  }

  /* The narrowest buckets the ranges allow: 1 ms in 1000, 1 us each. */
  o = def;
  o.window_ns = TU_MS;
  o.buckets = 1000;
  expect_new(&o, 0);

  ratchet_retry_budget *b = NULL;
  assert_int_equal(ratchet_retry_budget_new(NULL, 0, &b), -EINVAL);
  assert_null(b);
  assert_int_equal(ratchet_retry_budget_new(&def, 0, NULL), -EINVAL);
}

/* One bucket: the window is all or nothing. 1000 one-microsecond buckets:
 * the narrowest the ranges allow. */
static void test_bucket_extremes(void **state) {
  (void)state;
  ratchet_retry_budget_options o = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  o.ratio = 1.0;
  o.min_retries = 0;
  o.buckets = 1;
  ratchet_retry_budget *b = NULL;
  assert_int_equal(ratchet_retry_budget_new(&o, 0, &b), 0);
  deposit_n(b, 0, 5);
  assert_int_equal(metrics(b, 10 * TU_S - 1).calls, 5);
  assert_int_equal(metrics(b, 10 * TU_S).calls, 0);
  ratchet_retry_budget_free(b);

  o.window_ns = TU_MS;
  o.buckets = 1000;
  assert_int_equal(ratchet_retry_budget_new(&o, 0, &b), 0);
  for (uint64_t us = 0; us < 1000; us++)
    ratchet_retry_budget_deposit(b, us * 1000);
  assert_int_equal(metrics(b, 999999).calls, 1000);
  assert_int_equal(metrics(b, TU_MS + 499999).calls, 500);
  assert_int_equal(metrics(b, 2 * TU_MS).calls, 0);
  ratchet_retry_budget_free(b);
}

static void test_enomem(void **state) {
  (void)state;
  const ratchet_retry_budget_options o = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  ratchet_retry_budget *sentinel = (ratchet_retry_budget *)&sentinel;
  ratchet_retry_budget *b = sentinel;
  tu_alloc_install(0);
  assert_int_equal(ratchet_retry_budget_new(&o, 0, &b), -ENOMEM);
  assert_ptr_equal(b, sentinel);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

static void test_no_allocation_after_new(void **state) {
  (void)state;
  const ratchet_retry_budget_options o = RATCHET_RETRY_BUDGET_OPTIONS_INIT;
  ratchet_retry_budget *b = NULL;
  tu_alloc_install(SIZE_MAX);
  assert_int_equal(ratchet_retry_budget_new(&o, 0, &b), 0);
  size_t before = tu_alloc_count();
  ratchet_retry_budget_metrics m;
  for (uint64_t i = 0; i < 100000; i++) {
    uint64_t now = i * 7 * TU_MS; /* crosses buckets and whole windows */
    ratchet_retry_budget_deposit(b, now);
    (void)ratchet_retry_budget_withdraw(b, now);
    ratchet_retry_budget_metrics_get(b, now, &m);
  }
  assert_int_equal(tu_alloc_count(), before);
  ratchet_retry_budget_free(b);
  ratchet_retry_budget_free(NULL);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

/* Threads that withdraw at once take exactly the budget between them: the
 * lock loses no update and grants no extra retry. */
#define THREADS     4
#define WITHDRAWALS 5000

typedef struct {
  ratchet_retry_budget *b;
  unsigned granted;
} worker_arg;

static void *worker(void *p) {
  worker_arg *a = p;
  for (int i = 0; i < WITHDRAWALS; i++) {
    ratchet_retry_budget_deposit(a->b, TU_S);
    if (ratchet_retry_budget_withdraw(a->b, TU_S) == 0)
      a->granted++;
  }
  return NULL;
}

static void test_threads(void **state) {
  (void)state;
  ratchet_retry_budget *b = make(0.2, 0, 0);
  deposit_n(b, TU_S, THREADS * WITHDRAWALS);
  pthread_t t[THREADS];
  worker_arg args[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (worker_arg){b, 0};
    assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
  }
  unsigned granted = 0;
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    granted += args[i].granted;
  }
  /* Exactly 8000 of the 20000 withdrawals are granted, whatever the
   * interleaving. Calls only grow, so a refusal means the retries had reached
   * the limit then; after the last refusal every withdrawal is granted, and
   * since each deposit is followed by a withdrawal in its own thread, there
   * are enough of them to reach the final limit, 0.2 * 40000 - but a grant
   * never passes the limit of its moment. */
  ratchet_retry_budget_metrics m = metrics(b, TU_S);
  assert_int_equal(m.calls, 2 * THREADS * WITHDRAWALS);
  assert_int_equal(m.retries, granted);
  assert_int_equal(granted, m.allowed);
  assert_int_equal(m.total_refused, THREADS * WITHDRAWALS - granted);
  ratchet_retry_budget_free(b);
}

int test_budget(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_min_retries_without_calls),
      cmocka_unit_test(test_ratio_applied),
      cmocka_unit_test(test_ratio_is_exact),
      cmocka_unit_test(test_window_slides),
      cmocka_unit_test(test_budget_shrinks),
      cmocka_unit_test(test_clock_jumps),
      cmocka_unit_test(test_clock_stands_still),
      cmocka_unit_test(test_clock_goes_back),
      cmocka_unit_test(test_total_refused),
      cmocka_unit_test(test_invalid_options),
      cmocka_unit_test(test_bucket_extremes),
      cmocka_unit_test(test_enomem),
      cmocka_unit_test(test_no_allocation_after_new),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
