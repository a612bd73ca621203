/*
 * test_acct.c - the latency histograms (runtime/src/histogram.c) and the
 * orchestrator's kind table and accounting (runtime/src/acct.c): bucket
 * bounds, records at and just past them, merges, quantiles on known
 * distributions; interning, where counts and finals land, snapshot totals
 * and independence, a thread taking snapshots while kinds are interned and
 * recorded (run it under TSan), and -ENOMEM at every allocation.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h> /* NAN */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "acct.h"
#include "ratchet/accounting.h"
#include "testutil.h"

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * UINT64_C(0x2545f4914f6cdd1d);
}

/* ---- histograms -------------------------------------------------------- */

static void test_hist_bounds(void **state) {
  (void)state;
  assert_int_equal(ratchet_histogram_bound_ns(0), 1000);
  assert_int_equal(ratchet_histogram_bound_ns(1), 2000);
  assert_int_equal(ratchet_histogram_bound_ns(10), 1024000);
  assert_int_equal(ratchet_histogram_bound_ns(31), UINT64_C(2147483648000));
  assert_int_equal(ratchet_histogram_bound_ns(RATCHET_HIST_FINITE), UINT64_MAX);
  assert_int_equal(ratchet_histogram_bound_ns(1000), UINT64_MAX);
  for (unsigned i = 1; i < RATCHET_HIST_FINITE; i++)
    assert_int_equal(ratchet_histogram_bound_ns(i),
                     2 * ratchet_histogram_bound_ns(i - 1));
}

/* The one bucket holding a value, after recording only it. */
static unsigned bucket_of(uint64_t v) {
  ratchet_histogram h;
  memset(&h, 0, sizeof h);
  ratchet_histogram_record(&h, v);
  unsigned found = RATCHET_HIST_BUCKETS;
  for (unsigned i = 0; i < RATCHET_HIST_BUCKETS; i++) {
    if (h.buckets[i] == 0)
      continue;
    assert_int_equal(h.buckets[i], 1);
    assert_int_equal(found, RATCHET_HIST_BUCKETS); /* only one */
    found = i;
  }
  assert_int_equal(h.count, 1);
  assert_int_equal(h.sum_ns, v);
  assert_int_equal(h.min_ns, v);
  assert_int_equal(h.max_ns, v);
  return found;
}

static void test_hist_record_bounds(void **state) {
  (void)state;
  assert_int_equal(bucket_of(0), 0);
  assert_int_equal(bucket_of(1), 0);
  assert_int_equal(bucket_of(999), 0);
  assert_int_equal(bucket_of(1001), 1);
  for (unsigned i = 0; i < RATCHET_HIST_FINITE; i++) {
    uint64_t b = ratchet_histogram_bound_ns(i);
    assert_int_equal(bucket_of(b), i);         /* at the bound: inside */
    assert_int_equal(bucket_of(b + 1), i + 1); /* just above: the next */
    if (i > 0)
      assert_int_equal(bucket_of(ratchet_histogram_bound_ns(i - 1) + 1), i);
  }
  assert_int_equal(bucket_of(UINT64_MAX), RATCHET_HIST_FINITE);

  /* Several values: count, sum, min and max are exact. */
  ratchet_histogram h;
  memset(&h, 0, sizeof h);
  ratchet_histogram_record(&h, 5000);
  ratchet_histogram_record(&h, 3);
  ratchet_histogram_record(&h, 70000);
  assert_int_equal(h.count, 3);
  assert_int_equal(h.sum_ns, 75003);
  assert_int_equal(h.min_ns, 3);
  assert_int_equal(h.max_ns, 70000);
  assert_int_equal(h.buckets[0], 1);
  assert_int_equal(h.buckets[3], 1);
  assert_int_equal(h.buckets[7], 1);
  /* The sum saturates rather than wrapping. */
  ratchet_histogram_record(&h, UINT64_MAX);
  assert_int_equal(h.sum_ns, UINT64_MAX);
  assert_int_equal(h.max_ns, UINT64_MAX);
}

static void test_hist_merge(void **state) {
  (void)state;
  uint64_t rs = 42;
  ratchet_histogram all, a, b, empty;
  memset(&all, 0, sizeof all);
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&empty, 0, sizeof empty);
  for (int i = 0; i < 5000; i++) {
    uint64_t v = rng_next(&rs) >> (rng_next(&rs) % 64);
    v >>= 20; /* keep the sum far from saturation */
    ratchet_histogram_record(&all, v);
    ratchet_histogram_record(i % 3 == 0 ? &a : &b, v);
  }
  ratchet_histogram merged = a;
  ratchet_histogram_merge(&merged, &b);
  assert_memory_equal(&merged, &all, sizeof all);
  /* An empty source changes nothing; an empty destination becomes the
   * source (its zero minimum does not count). */
  ratchet_histogram_merge(&merged, &empty);
  assert_memory_equal(&merged, &all, sizeof all);
  ratchet_histogram e = empty;
  ratchet_histogram_merge(&e, &a);
  assert_memory_equal(&e, &a, sizeof a);
  assert_true(a.min_ns > 0 || a.buckets[0] > 0);
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

/* The exact p/1000-quantile of sorted v[0..n): the value of rank
 * ceil(p * n / 1000). (Integer arithmetic: the suite does not link libm.) */
static uint64_t exact_quantile(const uint64_t *v, size_t n, unsigned p) {
  size_t r = (p * n + 999) / 1000;
  return v[r == 0 ? 0 : r - 1];
}

/* Every 0.1 percentile of values v[0..n) (unsorted), estimated within the
 * bucket that holds the exact value, so within a factor of two for values
 * from 1 us to 2^31 us; and, when tol_permille > 0, within tol_permille
 * thousandths of the exact value (for q >= 0.01). */
static void check_quantiles(uint64_t *v, size_t n, uint64_t tol_permille) {
  ratchet_histogram h;
  memset(&h, 0, sizeof h);
  for (size_t i = 0; i < n; i++)
    ratchet_histogram_record(&h, v[i]);
  qsort(v, n, sizeof *v, cmp_u64);
  assert_int_equal(ratchet_histogram_quantile(&h, 0), v[0]);
  assert_int_equal(ratchet_histogram_quantile(&h, 1), v[n - 1]);
  uint64_t top = ratchet_histogram_bound_ns(RATCHET_HIST_FINITE - 1);
  for (unsigned p = 1; p <= 999; p++) {
    uint64_t est = ratchet_histogram_quantile(&h, p / 1000.0);
    uint64_t exact = exact_quantile(v, n, p);
    assert_true(est >= v[0] && est <= v[n - 1]);
    if (exact >= 1000 && exact <= top) {
      /* Below 1 us the factor is unbounded; above 2^31 us (+Inf) the
       * estimate is only known to lie above that bound. */
      assert_true(est <= 2 * exact);
      assert_true(2 * est >= exact);
    } else if (exact > top) {
      assert_true(est >= top);
    }
    if (tol_permille > 0 && p >= 10) {
      uint64_t err = est > exact ? est - exact : exact - est;
      if (err * 1000 > exact * tol_permille)
        fail_msg("q %u/1000: estimate %llu, exact %llu", p,
                 (unsigned long long)est, (unsigned long long)exact);
    }
  }
}

static void test_hist_quantiles(void **state) {
  (void)state;
  enum { N = 20000 };
  static uint64_t v[N];
  /* Uniform 1 us .. 20 ms in steps of 1 us: the interpolation's own
   * assumption, so close to exact. */
  for (size_t i = 0; i < N; i++)
    v[i] = (i + 1) * 1000;
  check_quantiles(v, N, 10);
  /* Roughly log-uniform over 1 us .. 2^30 us: only the bucket factor. */
  uint64_t rs = 7;
  for (size_t i = 0; i < N; i++) {
    uint64_t base = UINT64_C(1000) << (rng_next(&rs) % 30);
    v[i] = base + rng_next(&rs) % base;
  }
  check_quantiles(v, N, 0);
  /* Sub-microsecond values, with a tenth in the +Inf bucket. */
  for (size_t i = 0; i < N; i++)
    v[i] = i % 10 == 0 ? UINT64_C(5000000000000) + i : 100 + i;
  check_quantiles(v, N, 0);
}

static void test_hist_quantile_edges(void **state) {
  (void)state;
  ratchet_histogram h;
  memset(&h, 0, sizeof h);
  assert_int_equal(ratchet_histogram_quantile(&h, 0.5), 0);
  assert_int_equal(ratchet_histogram_quantile(&h, 0), 0);
  assert_int_equal(ratchet_histogram_quantile(&h, 1), 0);

  /* One value: every quantile is it. */
  ratchet_histogram_record(&h, 1234567);
  for (double q = 0; q <= 1.0; q += 0.125)
    assert_int_equal(ratchet_histogram_quantile(&h, q), 1234567);
  /* q outside [0, 1] (and NaN) is clamped. */
  assert_int_equal(ratchet_histogram_quantile(&h, -1), 1234567);
  assert_int_equal(ratchet_histogram_quantile(&h, 2), 1234567);
  assert_int_equal(ratchet_histogram_quantile(&h, NAN), 1234567);

  /* 1 .. 1024 us: at the cumulative bounds of the buckets the estimate is
   * the bucket bound itself. */
  memset(&h, 0, sizeof h);
  for (uint64_t us = 1; us <= 1024; us++)
    ratchet_histogram_record(&h, us * 1000);
  for (unsigned i = 0; i <= 10; i++)
    assert_int_equal(
        ratchet_histogram_quantile(&h, (double)(UINT64_C(1) << i) / 1024.0),
        ratchet_histogram_bound_ns(i));
  assert_int_equal(ratchet_histogram_quantile(&h, 0), 1000);

  /* 3001 .. 4000 ns, all inside bucket 2 (2 .. 4 us): the bucket's bounds
   * narrow to the exact min and max, so the median is close to 3.5 us
   * rather than the bucket's own midpoint, 3 us. */
  memset(&h, 0, sizeof h);
  for (uint64_t ns = 3001; ns <= 4000; ns++)
    ratchet_histogram_record(&h, ns);
  uint64_t median = ratchet_histogram_quantile(&h, 0.5);
  assert_true(median >= 3490 && median <= 3510);
  assert_int_equal(ratchet_histogram_quantile(&h, 0.001), 3001);

  /* Only the +Inf bucket: between min and max. */
  memset(&h, 0, sizeof h);
  ratchet_histogram_record(&h, UINT64_C(1) << 60);
  ratchet_histogram_record(&h, UINT64_MAX);
  assert_int_equal(ratchet_histogram_quantile(&h, 0), UINT64_C(1) << 60);
  assert_int_equal(ratchet_histogram_quantile(&h, 1), UINT64_MAX);
  uint64_t mid = ratchet_histogram_quantile(&h, 0.5);
  assert_true(mid >= UINT64_C(1) << 60);
  assert_true(mid <= UINT64_MAX);
}

/* ---- the kind table ---------------------------------------------------- */

static ratchet__acct *acct_new(void) {
  ratchet__acct *a = NULL;
  assert_int_equal(ratchet__acct_new(&a), 0);
  assert_non_null(a);
  return a;
}

static ratchet_stats *snapshot(ratchet__acct *a, const ratchet__gauges *g) {
  ratchet_stats *s = NULL;
  assert_int_equal(ratchet__acct_snapshot(a, g, &s), 0);
  assert_non_null(s);
  return s;
}

static void test_counter_names(void **state) {
  (void)state;
  static const char *const want[RATCHET_COUNTER_COUNT] = {
      "submitted",    "attempts",  "retries",  "lost",        "cache_hits",
      "cache_misses", "coalesced", "deferred", "dead_letters"};
  for (unsigned c = 0; c < RATCHET_COUNTER_COUNT; c++)
    assert_string_equal(ratchet_counter_name((ratchet_counter)c), want[c]);
  assert_string_equal(
      ratchet_counter_name((ratchet_counter)RATCHET_COUNTER_COUNT), "unknown");
  assert_string_equal(ratchet_counter_name((ratchet_counter)-1), "unknown");
}

static void test_interning(void **state) {
  (void)state;
  ratchet__acct *a = acct_new();
  /* Names need not be NUL-terminated: "resize" out of "resized". */
  char buf[] = "resized";
  ratchet__kind *k = ratchet__acct_kind(a, buf, 6);
  assert_non_null(k);
  assert_ptr_equal(ratchet__acct_kind(a, "resize", 6), k);
  assert_string_equal(ratchet__kind_name(k), "resize");
  assert_int_equal(ratchet__kind_len(k), 6);
  memset(buf, 'x', sizeof buf - 1); /* the name was copied */
  assert_string_equal(ratchet__kind_name(k), "resize");
  ratchet__kind *k2 = ratchet__acct_kind(a, "resized", 7);
  assert_non_null(k2);
  assert_ptr_not_equal(k2, k);
  ratchet__kind *empty = ratchet__acct_kind(a, NULL, 0);
  assert_non_null(empty);
  assert_ptr_equal(ratchet__acct_kind(a, "", 0), empty);
  assert_string_equal(ratchet__kind_name(empty), "");

  /* The user slot starts NULL and keeps what it is given. */
  assert_null(*ratchet__kind_user(k));
  *ratchet__kind_user(k) = a;
  assert_ptr_equal(*ratchet__kind_user(k), a);
  assert_null(*ratchet__kind_user(k2));

  /* 1024 bytes is the longest name. */
  static char big[1025];
  memset(big, 'n', sizeof big);
  assert_null(ratchet__acct_kind(a, big, 1025));
  ratchet__kind *longest = ratchet__acct_kind(a, big, 1024);
  assert_non_null(longest);
  assert_int_equal(strlen(ratchet__kind_name(longest)), 1024);

  /* Many kinds, through growth: each keeps its pointer. */
  ratchet__kind *many[300];
  char name[32];
  for (int i = 0; i < 300; i++) {
    int len = snprintf(name, sizeof name, "kind-%d", i);
    many[i] = ratchet__acct_kind(a, name, (size_t)len);
    assert_non_null(many[i]);
  }
  for (int i = 0; i < 300; i++) {
    int len = snprintf(name, sizeof name, "kind-%d", i);
    assert_ptr_equal(ratchet__acct_kind(a, name, (size_t)len), many[i]);
  }
  assert_ptr_equal(*ratchet__kind_user(k), a);
  ratchet_stats *s = snapshot(a, NULL);
  assert_int_equal(s->n_kinds, 304);
  assert_string_equal(s->kinds[0].kind, "resize");
  assert_string_equal(s->kinds[1].kind, "resized");
  assert_string_equal(s->kinds[2].kind, "");
  assert_int_equal(strlen(s->kinds[3].kind), 1024);
  assert_string_equal(s->kinds[303].kind, "kind-299");
  ratchet_stats_free(s);
  ratchet__acct_free(a);
  ratchet__acct_free(NULL);
  ratchet_stats_free(NULL);
}

static bool hist_empty(const ratchet_histogram *h) {
  static const ratchet_histogram zero;
  return memcmp(h, &zero, sizeof zero) == 0;
}

static void test_counts_and_finals(void **state) {
  (void)state;
  ratchet__acct *a = acct_new();
  ratchet__kind *img = ratchet__acct_kind(a, "image", 5);
  ratchet__kind *mail = ratchet__acct_kind(a, "mail", 4);
  ratchet__acct_count(a, img, RATCHET_COUNT_SUBMITTED, 3);
  ratchet__acct_count(a, img, RATCHET_COUNT_ATTEMPTS, 1);
  ratchet__acct_count(a, img, RATCHET_COUNT_ATTEMPTS, 4);
  ratchet__acct_count(a, mail, RATCHET_COUNT_DEAD_LETTERS, 2);
  ratchet__acct_count(a, mail, (ratchet_counter)RATCHET_COUNTER_COUNT, 9);
  ratchet__acct_final(a, img, RATCHET_STATUS_OK, true, 1000, 5000, 8000);
  ratchet__acct_final(a, img, RATCHET_STATUS_OK, true, 3000, 7000, 12000);
  ratchet__acct_final(a, img, RATCHET_STATUS_TIMEOUT, true, 10, 20, 30);
  /* Never reached a worker: end_to_end only. */
  ratchet__acct_final(a, mail, RATCHET_STATUS_EXPIRED, false, 111, 222, 999);
  ratchet__acct_final(a, mail, (ratchet_status)RATCHET_STATUS_COUNT, true, 1, 1,
                      1);

  ratchet__gauges g = {.taken_ns = 77,
                       .queued = 1,
                       .delayed = 2,
                       .in_flight = 3,
                       .workers_ready = 4};
  ratchet_stats *s = snapshot(a, &g);
  assert_int_equal(s->taken_ns, 77);
  assert_int_equal(s->queued, 1);
  assert_int_equal(s->delayed, 2);
  assert_int_equal(s->in_flight, 3);
  assert_int_equal(s->workers_ready, 4);
  assert_int_equal(s->n_kinds, 2);
  const ratchet_kind_stats *ki = ratchet_stats_kind(s, "image");
  const ratchet_kind_stats *km = ratchet_stats_kind(s, "mail");
  assert_ptr_equal(ki, &s->kinds[0]);
  assert_ptr_equal(km, &s->kinds[1]);
  assert_null(ratchet_stats_kind(s, "imag"));
  assert_null(ratchet_stats_kind(s, NULL));
  assert_null(ratchet_stats_kind(NULL, "image"));

  for (unsigned c = 0; c < RATCHET_COUNTER_COUNT; c++) {
    uint64_t wi = c == RATCHET_COUNT_SUBMITTED  ? 3
                  : c == RATCHET_COUNT_ATTEMPTS ? 5
                                                : 0;
    uint64_t wm = c == RATCHET_COUNT_DEAD_LETTERS ? 2 : 0;
    assert_int_equal(ki->counters[c], wi);
    assert_int_equal(km->counters[c], wm);
    assert_int_equal(s->total.counters[c], wi + wm);
  }
  const ratchet_status_stats *ok = &ki->by_status[RATCHET_STATUS_OK];
  assert_int_equal(ok->count, 2);
  assert_int_equal(ok->queue_wait.count, 2);
  assert_int_equal(ok->queue_wait.sum_ns, 4000);
  assert_int_equal(ok->queue_wait.min_ns, 1000);
  assert_int_equal(ok->queue_wait.max_ns, 3000);
  assert_int_equal(ok->run.sum_ns, 12000);
  assert_int_equal(ok->end_to_end.sum_ns, 20000);
  assert_int_equal(ok->end_to_end.buckets[3], 1); /* 8 us */
  assert_int_equal(ok->end_to_end.buckets[4], 1); /* 12 us */
  assert_int_equal(ki->by_status[RATCHET_STATUS_TIMEOUT].count, 1);
  assert_int_equal(ki->by_status[RATCHET_STATUS_TIMEOUT].run.sum_ns, 20);
  const ratchet_status_stats *expired = &km->by_status[RATCHET_STATUS_EXPIRED];
  assert_int_equal(expired->count, 1);
  assert_int_equal(expired->end_to_end.count, 1);
  assert_int_equal(expired->end_to_end.sum_ns, 999);
  assert_true(hist_empty(&expired->queue_wait));
  assert_true(hist_empty(&expired->run));
  /* Every other cell is empty. */
  for (unsigned st = 0; st < RATCHET_STATUS_COUNT; st++) {
    if (st != RATCHET_STATUS_OK && st != RATCHET_STATUS_TIMEOUT)
      assert_int_equal(ki->by_status[st].count, 0);
    if (st != RATCHET_STATUS_EXPIRED) {
      assert_int_equal(km->by_status[st].count, 0);
      assert_true(hist_empty(&km->by_status[st].end_to_end));
    }
  }
  assert_string_equal(s->total.kind, "");
  assert_int_equal(s->total.by_status[RATCHET_STATUS_OK].count, 2);
  assert_int_equal(s->total.by_status[RATCHET_STATUS_EXPIRED].count, 1);
  ratchet_stats_free(s);

  /* Without gauges, the snapshot's are zero. */
  s = snapshot(a, NULL);
  assert_int_equal(s->taken_ns, 0);
  assert_int_equal(s->queued, 0);
  ratchet_stats_free(s);
  ratchet__acct_free(a);
}

/* Checks that s->total is the sum over s's kinds. */
static void check_totals(const ratchet_stats *s) {
  ratchet_kind_stats sum;
  memset(&sum, 0, sizeof sum);
  for (size_t i = 0; i < s->n_kinds; i++) {
    const ratchet_kind_stats *k = &s->kinds[i];
    for (unsigned c = 0; c < RATCHET_COUNTER_COUNT; c++)
      sum.counters[c] += k->counters[c];
    for (unsigned st = 0; st < RATCHET_STATUS_COUNT; st++) {
      sum.by_status[st].count += k->by_status[st].count;
      ratchet_histogram_merge(&sum.by_status[st].queue_wait,
                              &k->by_status[st].queue_wait);
      ratchet_histogram_merge(&sum.by_status[st].run, &k->by_status[st].run);
      ratchet_histogram_merge(&sum.by_status[st].end_to_end,
                              &k->by_status[st].end_to_end);
    }
  }
  assert_string_equal(s->total.kind, "");
  assert_memory_equal(sum.counters, s->total.counters, sizeof sum.counters);
  assert_memory_equal(sum.by_status, s->total.by_status, sizeof sum.by_status);
}

static void test_snapshot_totals(void **state) {
  (void)state;
  ratchet__acct *a = acct_new();
  uint64_t rs = 99;
  char name[16];
  uint64_t submitted = 0, finals = 0;
  for (int i = 0; i < 5000; i++) {
    int len = snprintf(name, sizeof name, "k%d", (int)(rng_next(&rs) % 23));
    ratchet__kind *k = ratchet__acct_kind(a, name, (size_t)len);
    assert_non_null(k);
    ratchet_counter c =
        (ratchet_counter)(rng_next(&rs) % RATCHET_COUNTER_COUNT);
    uint64_t n = rng_next(&rs) % 5;
    ratchet__acct_count(a, k, c, n);
    if (c == RATCHET_COUNT_SUBMITTED)
      submitted += n;
    if (i % 2 == 0) {
      ratchet_status st =
          (ratchet_status)(rng_next(&rs) % RATCHET_STATUS_COUNT);
      ratchet__acct_final(a, k, st, rng_next(&rs) % 2, rng_next(&rs) >> 30,
                          rng_next(&rs) >> 30, rng_next(&rs) >> 30);
      finals++;
    }
  }
  ratchet_stats *s = snapshot(a, NULL);
  assert_int_equal(s->n_kinds, 23);
  check_totals(s);
  assert_int_equal(s->total.counters[RATCHET_COUNT_SUBMITTED], submitted);
  uint64_t total_finals = 0;
  for (unsigned st = 0; st < RATCHET_STATUS_COUNT; st++) {
    total_finals += s->total.by_status[st].count;
    assert_int_equal(s->total.by_status[st].count,
                     s->total.by_status[st].end_to_end.count);
  }
  assert_int_equal(total_finals, finals);
  ratchet_stats_free(s);

  /* No kinds: an empty snapshot with zero totals. */
  ratchet__acct *none = acct_new();
  s = snapshot(none, NULL);
  assert_int_equal(s->n_kinds, 0);
  check_totals(s);
  assert_int_equal(s->total.counters[RATCHET_COUNT_SUBMITTED], 0);
  ratchet_stats_free(s);
  ratchet__acct_free(none);
  ratchet__acct_free(a);
}

static void test_snapshot_is_a_copy(void **state) {
  (void)state;
  ratchet__acct *a = acct_new();
  ratchet__kind *k = ratchet__acct_kind(a, "one", 3);
  ratchet__acct_count(a, k, RATCHET_COUNT_RETRIES, 2);
  ratchet__acct_final(a, k, RATCHET_STATUS_FAILED, true, 5, 6, 7);
  ratchet_stats *s = snapshot(a, NULL);
  ratchet_stats before = *s;
  ratchet_kind_stats kind0 = s->kinds[0];

  /* Record more, intern more (through growth of the kind array). */
  ratchet__acct_count(a, k, RATCHET_COUNT_RETRIES, 40);
  ratchet__acct_final(a, k, RATCHET_STATUS_FAILED, true, 50, 60, 70);
  char name[16];
  for (int i = 0; i < 40; i++) {
    int len = snprintf(name, sizeof name, "more%d", i);
    ratchet__acct_count(a, ratchet__acct_kind(a, name, (size_t)len),
                        RATCHET_COUNT_SUBMITTED, 1);
  }
  assert_memory_equal(s, &before, sizeof before);
  assert_memory_equal(&s->kinds[0], &kind0, sizeof kind0);

  /* And it outlives the table, names included. */
  ratchet__acct_free(a);
  assert_int_equal(s->n_kinds, 1);
  assert_string_equal(s->kinds[0].kind, "one");
  assert_int_equal(s->kinds[0].counters[RATCHET_COUNT_RETRIES], 2);
  assert_int_equal(s->total.by_status[RATCHET_STATUS_FAILED].run.sum_ns, 6);
  assert_ptr_equal(ratchet_stats_kind(s, "one"), &s->kinds[0]);
  ratchet_stats_free(s);
}

/* ---- a snapshot thread against the loop thread ------------------------- */

enum { THREAD_KINDS = 400, THREAD_ROUNDS = 4 };

typedef struct race {
  ratchet__acct *a;
  atomic_bool stop;
  atomic_int snapshots;
  atomic_int failures;
} race;

static void *snapshotter(void *arg) {
  race *r = arg;
  uint64_t last_submitted = 0;
  size_t last_kinds = 0;
  while (!atomic_load(&r->stop) || atomic_load(&r->snapshots) < 20) {
    ratchet_stats *s = NULL;
    if (ratchet__acct_snapshot(r->a, NULL, &s) != 0) {
      atomic_fetch_add(&r->failures, 1);
      break;
    }
    /* No cmocka asserts off the test's thread: count the violations. */
    uint64_t sum = 0;
    char want[32];
    for (size_t i = 0; i < s->n_kinds; i++) {
      const ratchet_kind_stats *k = &s->kinds[i];
      sum += k->counters[RATCHET_COUNT_SUBMITTED];
      snprintf(want, sizeof want, "t%zu", i);
      if (strcmp(k->kind, want) != 0)
        atomic_fetch_add(&r->failures, 1);
      const ratchet_status_stats *ok = &k->by_status[RATCHET_STATUS_OK];
      if (ok->count != ok->end_to_end.count || ok->count != ok->run.count)
        atomic_fetch_add(&r->failures, 1);
    }
    if (sum != s->total.counters[RATCHET_COUNT_SUBMITTED] ||
        sum < last_submitted || s->n_kinds < last_kinds)
      atomic_fetch_add(&r->failures, 1);
    last_submitted = sum;
    last_kinds = s->n_kinds;
    ratchet_stats_free(s);
    atomic_fetch_add(&r->snapshots, 1);
  }
  return NULL;
}

static void test_snapshot_thread(void **state) {
  (void)state;
  race r;
  r.a = acct_new();
  atomic_init(&r.stop, false);
  atomic_init(&r.snapshots, 0);
  atomic_init(&r.failures, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, snapshotter, &r), 0);
  char name[16];
  uint64_t rs = 5;
  for (int round = 0; round < THREAD_ROUNDS; round++) {
    for (int i = 0; i < THREAD_KINDS; i++) {
      /* A new kind in the first round, an old one after. */
      int len = snprintf(name, sizeof name, "t%d", i);
      ratchet__kind *k = ratchet__acct_kind(r.a, name, (size_t)len);
      assert_non_null(k);
      ratchet__acct_count(r.a, k, RATCHET_COUNT_SUBMITTED, 1);
      ratchet__acct_final(r.a, k, RATCHET_STATUS_OK, true, rng_next(&rs) >> 40,
                          rng_next(&rs) >> 40, rng_next(&rs) >> 40);
      /* And one at random, as the loop thread would. */
      len = snprintf(name, sizeof name, "t%d", (int)(rng_next(&rs) % (i + 1)));
      ratchet__acct_count(r.a, ratchet__acct_kind(r.a, name, (size_t)len),
                          RATCHET_COUNT_ATTEMPTS, 1);
      /* Interleave: now and then, wait for the next snapshot to end. */
      if (i % 50 == 0) {
        int seen = atomic_load(&r.snapshots);
        while (atomic_load(&r.snapshots) == seen &&
               atomic_load(&r.failures) == 0)
          sched_yield();
      }
    }
  }
  atomic_store(&r.stop, true);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(atomic_load(&r.failures), 0);
  assert_true(atomic_load(&r.snapshots) >= 20);
  ratchet_stats *s = snapshot(r.a, NULL);
  assert_int_equal(s->n_kinds, THREAD_KINDS);
  assert_int_equal(s->total.counters[RATCHET_COUNT_SUBMITTED],
                   THREAD_KINDS * THREAD_ROUNDS);
  assert_int_equal(s->total.counters[RATCHET_COUNT_ATTEMPTS],
                   THREAD_KINDS * THREAD_ROUNDS);
  check_totals(s);
  ratchet_stats_free(s);
  ratchet__acct_free(r.a);
}

/* ---- out of memory ----------------------------------------------------- */

static void test_new_out_of_memory(void **state) {
  (void)state;
  ratchet__acct *a = NULL;
  int rc = -ENOMEM;
  size_t k;
  for (k = 0; rc == -ENOMEM; k++) {
    a = NULL;
    tu_alloc_install(k);
    rc = ratchet__acct_new(&a);
    long live = tu_alloc_live();
    size_t tried = tu_alloc_count();
    tu_alloc_uninstall();
    if (rc == 0)
      assert_true(tried <= k); /* success only when nothing failed */
    else {
      assert_int_equal(rc, -ENOMEM);
      assert_null(a);
      assert_int_equal(live, 0);
    }
    assert_true(k < 20);
  }
  assert_true(k > 1);
  ratchet__acct_free(a);
}

static void test_kind_out_of_memory(void **state) {
  (void)state;
  tu_alloc_install(SIZE_MAX);
  ratchet__acct *a = acct_new();
  ratchet__kind *first = ratchet__acct_kind(a, "first", 5);
  ratchet__acct_count(a, first, RATCHET_COUNT_SUBMITTED, 7);
  char name[16];
  int failures = 0;
  /* Enough kinds that both the map and the kind array grow, each at a
   * different interning. */
  for (int i = 0; i < 70; i++) {
    int len = snprintf(name, sizeof name, "kind%d", i);
    ratchet__kind *kind = NULL;
    size_t k;
    for (k = 0; kind == NULL; k++) {
      tu_alloc_install(k);
      kind = ratchet__acct_kind(a, name, (size_t)len);
      long live = tu_alloc_live();
      size_t tried = tu_alloc_count();
      tu_alloc_install(SIZE_MAX);
      if (kind != NULL) {
        assert_true(tried <= k);
        break;
      }
      failures++;
      assert_int_equal(live, 0);
      /* The table is as it was. */
      assert_ptr_equal(ratchet__acct_kind(a, "first", 5), first);
      ratchet_stats *s = snapshot(a, NULL);
      assert_int_equal(s->n_kinds, (size_t)i + 1);
      assert_null(ratchet_stats_kind(s, name));
      assert_int_equal(s->total.counters[RATCHET_COUNT_SUBMITTED], 7);
      ratchet_stats_free(s);
      assert_true(k < 10);
    }
    assert_string_equal(ratchet__kind_name(kind), name);
    assert_ptr_equal(ratchet__acct_kind(a, name, (size_t)len), kind);
  }
  assert_true(failures >= 70 * 2);
  /* Known kinds are found without allocating. */
  tu_alloc_install(0);
  for (int i = 0; i < 70; i++) {
    int len = snprintf(name, sizeof name, "kind%d", i);
    assert_non_null(ratchet__acct_kind(a, name, (size_t)len));
  }
  assert_int_equal(tu_alloc_count(), 0);
  tu_alloc_install(SIZE_MAX);
  ratchet__acct_free(a);
  tu_alloc_uninstall();
}

static void test_snapshot_out_of_memory(void **state) {
  (void)state;
  tu_alloc_install(SIZE_MAX);
  ratchet__acct *a = acct_new();
  ratchet__acct_count(a, ratchet__acct_kind(a, "x", 1), RATCHET_COUNT_LOST, 3);
  ratchet__acct_count(a, ratchet__acct_kind(a, "y", 1), RATCHET_COUNT_LOST, 4);
  int rc = -ENOMEM;
  size_t k;
  ratchet_stats *s = NULL;
  for (k = 0; rc == -ENOMEM; k++) {
    s = NULL;
    tu_alloc_install(k);
    rc = ratchet__acct_snapshot(a, NULL, &s);
    long live = tu_alloc_live();
    size_t tried = tu_alloc_count();
    tu_alloc_install(SIZE_MAX);
    if (rc == 0)
      assert_true(tried <= k);
    else {
      assert_int_equal(rc, -ENOMEM);
      assert_null(s);
      assert_int_equal(live, 0);
    }
    assert_true(k < 10);
  }
  assert_true(k > 1);
  assert_int_equal(s->n_kinds, 2);
  assert_int_equal(s->total.counters[RATCHET_COUNT_LOST], 7);
  check_totals(s);
  ratchet_stats_free(s);
  ratchet__acct_free(a);
  tu_alloc_uninstall();
}

int test_acct(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hist_bounds),
      cmocka_unit_test(test_hist_record_bounds),
      cmocka_unit_test(test_hist_merge),
      cmocka_unit_test(test_hist_quantiles),
      cmocka_unit_test(test_hist_quantile_edges),
      cmocka_unit_test(test_counter_names),
      cmocka_unit_test(test_interning),
      cmocka_unit_test(test_counts_and_finals),
      cmocka_unit_test(test_snapshot_totals),
      cmocka_unit_test(test_snapshot_is_a_copy),
      cmocka_unit_test(test_snapshot_thread),
      cmocka_unit_test(test_new_out_of_memory),
      cmocka_unit_test(test_kind_out_of_memory),
      cmocka_unit_test(test_snapshot_out_of_memory),
  };
  return cmocka_run_group_tests_name("acct", tests, NULL, NULL);
}
