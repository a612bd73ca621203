/*
 * test_bulkhead.c - at most max_concurrent holders, a place back on release,
 * resizing without evicting anyone, stray releases ignored, the metrics, the
 * option bounds, and threads that hammer one bulkhead (with and without a
 * concurrent resize) without ever seeing more holders than allowed.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads under -std=c11 */

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ratchet/bulkhead.h"
#include "ratchet/error.h"
#include "testutil.h"

#define FULL RATCHET_EBULKHEAD_FULL

static ratchet_bulkhead *make(uint32_t max) {
  ratchet_bulkhead_options o = RATCHET_BULKHEAD_OPTIONS_INIT;
  o.max_concurrent = max;
  ratchet_bulkhead *bh = NULL;
  assert_int_equal(ratchet_bulkhead_new(&o, &bh), 0);
  assert_non_null(bh);
  return bh;
}

static ratchet_bulkhead_metrics metrics(ratchet_bulkhead *bh) {
  ratchet_bulkhead_metrics m;
  ratchet_bulkhead_metrics_get(bh, &m);
  return m;
}

static void test_full_then_release(void **state) {
  (void)state;
  ratchet_bulkhead *bh = make(3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  assert_int_equal(metrics(bh).in_use, 3);

  /* One release frees exactly one place. */
  ratchet_bulkhead_release(bh);
  assert_int_equal(metrics(bh).in_use, 2);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);

  for (int i = 0; i < 3; i++)
    ratchet_bulkhead_release(bh);
  assert_int_equal(metrics(bh).in_use, 0);
  ratchet_bulkhead_free(bh);
  ratchet_bulkhead_free(NULL);
}

static void test_resize(void **state) {
  (void)state;
  ratchet_bulkhead *bh = make(4);
  for (int i = 0; i < 4; i++)
    assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);

  /* Lowered below in_use: the four holders keep their places, newcomers are
   * refused until in_use falls below the new maximum. */
  assert_int_equal(ratchet_bulkhead_resize(bh, 2), 0);
  ratchet_bulkhead_metrics m = metrics(bh);
  assert_int_equal(m.max_concurrent, 2);
  assert_int_equal(m.in_use, 4);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  ratchet_bulkhead_release(bh); /* 3 */
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  ratchet_bulkhead_release(bh); /* 2 */
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  ratchet_bulkhead_release(bh); /* 1 */
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  assert_int_equal(metrics(bh).in_use, 2);

  /* Raised: the new places are free at once. */
  assert_int_equal(ratchet_bulkhead_resize(bh, 5), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  assert_int_equal(metrics(bh).in_use, 5);

  /* Out of range: refused, nothing changes. */
  assert_int_equal(ratchet_bulkhead_resize(bh, 0), -EINVAL);
  assert_int_equal(ratchet_bulkhead_resize(bh, 1000001), -EINVAL);
  assert_int_equal(ratchet_bulkhead_resize(bh, UINT32_MAX), -EINVAL);
  m = metrics(bh);
  assert_int_equal(m.max_concurrent, 5);
  assert_int_equal(m.in_use, 5);
  assert_int_equal(ratchet_bulkhead_resize(bh, 1), 0);
  assert_int_equal(ratchet_bulkhead_resize(bh, 1000000), 0);
  assert_int_equal(metrics(bh).max_concurrent, 1000000);
  assert_int_equal(metrics(bh).in_use, 5);
  ratchet_bulkhead_free(bh);
}

static void test_stray_release_ignored(void **state) {
  (void)state;
  ratchet_bulkhead *bh = make(2);
  for (int i = 0; i < 3; i++)
    ratchet_bulkhead_release(bh);
  assert_int_equal(metrics(bh).in_use, 0);
  /* The count did not go below zero: still exactly two places. */
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  for (int i = 0; i < 5; i++)
    ratchet_bulkhead_release(bh);
  assert_int_equal(metrics(bh).in_use, 0);
  ratchet_bulkhead_free(bh);
}

static void test_metrics(void **state) {
  (void)state;
  ratchet_bulkhead *bh = make(3);
  ratchet_bulkhead_metrics m = metrics(bh);
  assert_int_equal(m.max_concurrent, 3);
  assert_int_equal(m.in_use, 0);
  assert_int_equal(m.peak, 0);
  assert_int_equal(m.total_acquired, 0);
  assert_int_equal(m.total_rejected, 0);

  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  ratchet_bulkhead_release(bh);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), 0);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  assert_int_equal(ratchet_bulkhead_try_acquire(bh), FULL);
  m = metrics(bh);
  assert_int_equal(m.in_use, 3);
  assert_int_equal(m.peak, 3);
  assert_int_equal(m.total_acquired, 4);
  assert_int_equal(m.total_rejected, 2);

  /* The peak is a high-water mark: releases do not lower it. */
  for (int i = 0; i < 3; i++)
    ratchet_bulkhead_release(bh);
  m = metrics(bh);
  assert_int_equal(m.in_use, 0);
  assert_int_equal(m.peak, 3);
  assert_int_equal(m.total_acquired, 4);
  ratchet_bulkhead_free(bh);
}

static void test_options(void **state) {
  (void)state;
  static const struct {
    uint32_t max;
    int want;
  } cases[] = {
      {1, 0},
      {25, 0},
      {1000000, 0},
      {0, -EINVAL},
      {1000001, -EINVAL},
      {UINT32_MAX, -EINVAL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ratchet_bulkhead_options o = {cases[i].max};
    ratchet_bulkhead *bh = NULL;
    int rc = ratchet_bulkhead_new(&o, &bh);
    if (rc != cases[i].want)
      fail_msg("max %u: got %d, want %d", (unsigned)cases[i].max, rc,
               cases[i].want);
    if (rc == 0) {
      assert_int_equal(metrics(bh).max_concurrent, cases[i].max);
      ratchet_bulkhead_free(bh);
    } else {
      assert_null(bh);
    }
  }

  ratchet_bulkhead_options d = RATCHET_BULKHEAD_OPTIONS_INIT;
  ratchet_bulkhead *bh = NULL;
  assert_int_equal(ratchet_bulkhead_new(NULL, &bh), -EINVAL);
  assert_int_equal(ratchet_bulkhead_new(&d, NULL), -EINVAL);
  assert_int_equal(ratchet_bulkhead_new(&d, &bh), 0);
  assert_int_equal(metrics(bh).max_concurrent, 25);
  ratchet_bulkhead_free(bh);
}

static void test_allocation(void **state) {
  (void)state;
  ratchet_bulkhead_options o = RATCHET_BULKHEAD_OPTIONS_INIT;
  ratchet_bulkhead *bh = NULL;
  tu_alloc_install(0);
  assert_int_equal(ratchet_bulkhead_new(&o, &bh), -ENOMEM);
  assert_null(bh);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();

  tu_alloc_install(SIZE_MAX);
  assert_int_equal(ratchet_bulkhead_new(&o, &bh), 0);
  size_t allocs = tu_alloc_count();
  for (int i = 0; i < 100000; i++) {
    if (ratchet_bulkhead_try_acquire(bh) == 0 && i % 2 == 0)
      ratchet_bulkhead_release(bh);
    if (i % 1000 == 0) {
      assert_int_equal(ratchet_bulkhead_resize(bh, 10 + (uint32_t)i % 7), 0);
      for (int j = 0; j < 30; j++)
        ratchet_bulkhead_release(bh);
    }
  }
  assert_int_equal(tu_alloc_count(), allocs);
  ratchet_bulkhead_free(bh);
  assert_int_equal(tu_alloc_live(), 0);
  tu_alloc_uninstall();
}

/* ------------------------------------------------------------------------ */
/* Threads acquire and release as fast as they can and count, with an atomic */
/* of their own, how many of them are inside at once.                        */

#define WORKERS 4
#define ROUNDS  100000

typedef struct shared {
  ratchet_bulkhead *bh;
  uint32_t limit; /* the most holders the test allows at any instant */
  atomic_uint inside;
  atomic_uint most_inside;
  atomic_ulong acquired, rejected;
} shared;

static void *worker(void *p) {
  shared *s = p;
  unsigned long acquired = 0, rejected = 0;
  for (int i = 0; i < ROUNDS; i++) {
    if (ratchet_bulkhead_try_acquire(s->bh) != 0) {
      rejected++;
      continue;
    }
    acquired++;
    /* Counted after acquiring and before releasing, so `inside` can only
     * understate the bulkhead's own count. */
    unsigned now = atomic_fetch_add(&s->inside, 1) + 1;
    unsigned most = atomic_load(&s->most_inside);
    while (now > most &&
           !atomic_compare_exchange_weak(&s->most_inside, &most, now))
      ;
    atomic_fetch_sub(&s->inside, 1);
    ratchet_bulkhead_release(s->bh);
  }
  atomic_fetch_add(&s->acquired, acquired);
  atomic_fetch_add(&s->rejected, rejected);
  return NULL;
}

static void run_workers(shared *s, bool resizing) {
  pthread_t th[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, worker, s), 0);
  /* Meanwhile the maximum moves between 1 and s->limit. */
  for (uint32_t r = 0; resizing && r < 2000; r++)
    assert_int_equal(ratchet_bulkhead_resize(s->bh, 1 + r % s->limit), 0);
  for (int i = 0; i < WORKERS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);

  ratchet_bulkhead_metrics m = metrics(s->bh);
  assert_int_equal(m.in_use, 0);
  assert_true(atomic_load(&s->most_inside) <= s->limit);
  assert_true(m.peak <= s->limit);
  assert_true(m.peak >= atomic_load(&s->most_inside));
  assert_int_equal(m.total_acquired, atomic_load(&s->acquired));
  assert_int_equal(m.total_rejected, atomic_load(&s->rejected));
  assert_int_equal(m.total_acquired + m.total_rejected,
                   (uint64_t)WORKERS * ROUNDS);
  assert_true(m.total_acquired > 0);
}

static void test_threads(void **state) {
  (void)state;
  shared s = {.bh = make(2), .limit = 2};
  run_workers(&s, false);
  ratchet_bulkhead_free(s.bh);
}

static void test_threads_resize(void **state) {
  (void)state;
  shared s = {.bh = make(3), .limit = 3};
  run_workers(&s, true);
  ratchet_bulkhead_free(s.bh);
}

int test_bulkhead(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_then_release),
      cmocka_unit_test(test_resize),
      cmocka_unit_test(test_stray_release_ignored),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_options),
      cmocka_unit_test(test_allocation),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_threads_resize),
  };
  return cmocka_run_group_tests_name("bulkhead", tests, NULL, NULL);
}
