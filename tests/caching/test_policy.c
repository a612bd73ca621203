/*
 * test_policy.c - the eviction policies through ratchet_cache_sim: exact
 * eviction orders worked out by hand for each policy (SIEVE's hand and its
 * wrap, S3-FIFO's admission, ghost, move-to-main and reinsertion rules), a
 * scan whose miss counts are derived by hand, request-by-request agreement
 * with the naive model of policy_model.c on random traces (hits and the
 * order of evictions), the entry limit, names, and allocation failure.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy_model.h"
#include "ratchet/cache_policy.h"
#include "testutil.h"

/* Eviction log filled by the simulator's callback. */
struct log {
  uint64_t ids[4096];
  size_t n;
};

static void log_evict(void *ctx, uint64_t id, uint64_t size) {
  (void)size;
  struct log *l = ctx;
  if (l->n < sizeof l->ids / sizeof l->ids[0])
    l->ids[l->n++] = id;
}

static ratchet_cache_sim *make(ratchet_cache_policy p, uint64_t capacity,
                               struct log *l) {
  ratchet_cache_sim_options o = RATCHET_CACHE_SIM_OPTIONS_INIT;
  o.policy = p;
  o.capacity_bytes = capacity;
  o.on_evict = l != NULL ? log_evict : NULL;
  o.on_evict_ctx = l;
  ratchet_cache_sim *s = NULL;
  assert_int_equal(ratchet_cache_sim_new(&o, &s), 0);
  return s;
}

/* Accesses ids (unit size) given as a string of letters; returns the hits
 * as a string of '+' (hit) and '-' (miss). */
static void run(ratchet_cache_sim *s, const char *ids, char *out) {
  for (; *ids; ids++)
    *out++ = ratchet_cache_sim_access(s, (uint64_t)*ids, 1) == 1 ? '+' : '-';
  *out = '\0';
}

static void log_equals(const struct log *l, const char *ids) {
  char got[64];
  size_t i;
  for (i = 0; i < l->n && i < sizeof got - 1; i++)
    got[i] = (char)l->ids[i];
  got[i] = '\0';
  assert_string_equal(got, ids);
}

static void test_names(void **state) {
  (void)state;
  static const char *names[] = {"s3fifo", "sieve", "lru", "fifo"};
  for (int i = 0; i < 4; i++) {
    ratchet_cache_policy p;
    assert_string_equal(ratchet_cache_policy_name((ratchet_cache_policy)i),
                        names[i]);
    assert_int_equal(ratchet_cache_policy_parse(names[i], &p), 0);
    assert_int_equal(p, i);
  }
  ratchet_cache_policy p = RATCHET_CACHE_LRU;
  assert_null(ratchet_cache_policy_name((ratchet_cache_policy)4));
  assert_int_equal(ratchet_cache_policy_parse("S3FIFO", &p), -EINVAL);
  assert_int_equal(ratchet_cache_policy_parse("", &p), -EINVAL);
  assert_int_equal(ratchet_cache_policy_parse(NULL, &p), -EINVAL);
  assert_int_equal(ratchet_cache_policy_parse("lru", NULL), -EINVAL);
  assert_int_equal(p, RATCHET_CACHE_LRU);
}

static void test_sim_options(void **state) {
  (void)state;
  ratchet_cache_sim_options o = RATCHET_CACHE_SIM_OPTIONS_INIT;
  ratchet_cache_sim *s = (ratchet_cache_sim *)&o; /* must stay untouched */
  o.capacity_bytes = 0;
  assert_int_equal(ratchet_cache_sim_new(&o, &s), -EINVAL);
  o.capacity_bytes = 1;
  o.policy = (ratchet_cache_policy)4;
  assert_int_equal(ratchet_cache_sim_new(&o, &s), -EINVAL);
  assert_int_equal(ratchet_cache_sim_new(NULL, &s), -EINVAL);
  assert_ptr_equal(s, (ratchet_cache_sim *)&o);
  o.policy = RATCHET_CACHE_SIEVE;
  assert_int_equal(ratchet_cache_sim_new(&o, NULL), -EINVAL);
  ratchet_cache_sim_free(NULL);
  ratchet_cache_sim_stats st;
  ratchet_cache_sim_stats_get(NULL, &st);
  assert_int_equal(st.requests, 0);
}

static void test_fifo_order(void **state) {
  (void)state;
  struct log l = {.n = 0};
  ratchet_cache_sim *s = make(RATCHET_CACHE_FIFO, 3, &l);
  char hits[32];
  /* A hit changes nothing: A is still the oldest, so D evicts it; A comes
   * back evicting B, E evicts C, and B evicts D. */
  run(s, "ABCADAE", hits);
  assert_string_equal(hits, "---+---");
  run(s, "B", hits);
  assert_string_equal(hits, "-");
  log_equals(&l, "ABCD");
  ratchet_cache_sim_free(s);
}

static void test_lru_order(void **state) {
  (void)state;
  struct log l = {.n = 0};
  ratchet_cache_sim *s = make(RATCHET_CACHE_LRU, 3, &l);
  char hits[32];
  run(s, "ABCADAEB", hits);
  /* A hit moves A to the head: D evicts B, E evicts C, B evicts D. */
  assert_string_equal(hits, "---+-+--");
  log_equals(&l, "BCD");
  ratchet_cache_sim_free(s);
}

static void test_sieve_order(void **state) {
  (void)state;
  struct log l = {.n = 0};
  ratchet_cache_sim *s = make(RATCHET_CACHE_SIEVE, 4, &l);
  char hits[32];
  /* Queue D C B A (head first); A and B visited. E: the hand starts at the
   * tail, clears A and B, evicts C and stays on D. F evicts D (the hand moves
   * to E), G evicts E (to F). */
  run(s, "ABCDABEFG", hits);
  assert_string_equal(hits, "----++---");
  log_equals(&l, "CDE");
  ratchet_cache_sim_free(s);

  /* The wrap: every object visited, so the hand clears them all, passes the
   * head, wraps to the tail and evicts the oldest. */
  l.n = 0;
  s = make(RATCHET_CACHE_SIEVE, 3, &l);
  run(s, "ABCABCD", hits);
  assert_string_equal(hits, "---+++-");
  log_equals(&l, "A");
  /* The hand is on B (A's newer neighbour): E evicts B, F evicts C. */
  run(s, "EF", hits);
  log_equals(&l, "ABC");
  ratchet_cache_sim_free(s);

  /* Evicting the head leaves no newer object: the hand restarts at the
   * tail. C evicts A, the hand stays on B; B is hit. D: B is cleared, C (the
   * head) is evicted, the hand is on nothing. E: from the tail, B goes. */
  l.n = 0;
  s = make(RATCHET_CACHE_SIEVE, 2, &l);
  run(s, "ABCBDE", hits);
  assert_string_equal(hits, "---+--");
  log_equals(&l, "ACB");
  ratchet_cache_sim_free(s);
}

/* S3-FIFO with C = 100: S = 10, M = 90, G = 90. */
static void test_s3fifo_admission(void **state) {
  (void)state;
  struct log l = {.n = 0};
  ratchet_cache_sim *s = make(RATCHET_CACHE_S3FIFO, 100, &l);
  ratchet_cache_sim_stats st;
  /* Larger than S: not admitted, nothing evicted. */
  assert_int_equal(ratchet_cache_sim_access(s, 1000, 11), 0);
  assert_int_equal(ratchet_cache_sim_access(s, 1000, 11), 0);
  /* 100 unit objects fill the cache, all in small (it may exceed S while
   * the cache has room). */
  for (uint64_t id = 1; id <= 100; id++)
    assert_int_equal(ratchet_cache_sim_access(s, id, 1), 0);
  ratchet_cache_sim_stats_get(s, &st);
  assert_int_equal(st.bytes, 100);
  assert_int_equal(st.evictions, 0);
  assert_int_equal(st.refused, 2);
  /* Exactly S bytes: room is made (the 10 oldest leave small for the
   * ghost), then the object is dropped. */
  assert_int_equal(ratchet_cache_sim_access(s, 2000, 10), 0);
  ratchet_cache_sim_stats_get(s, &st);
  assert_int_equal(st.evictions, 10);
  assert_int_equal(st.bytes, 90);
  assert_int_equal(st.objects, 90);
  assert_int_equal(st.ghost_objects, 10);
  assert_int_equal(st.ghost_bytes, 10);
  assert_int_equal(st.refused, 3);
  for (size_t i = 0; i < 10; i++)
    assert_int_equal(l.ids[i], i + 1);
  assert_int_equal(ratchet_cache_sim_access(s, 2000, 10), 0);
  ratchet_cache_sim_stats_get(s, &st);
  assert_int_equal(st.evictions, 10); /* room was there: nothing evicted */
  /* A ghost hit: id 1 misses, leaves the ghost and enters main. A scan of
   * 200 new objects then churns small only (main holds 1 byte <= M), so id
   * 1 survives; id 11, in small and never hit, does not. */
  assert_int_equal(ratchet_cache_sim_access(s, 1, 1), 0);
  ratchet_cache_sim_stats_get(s, &st);
  assert_int_equal(st.ghost_objects, 9);
  for (uint64_t id = 3000; id < 3200; id++)
    assert_int_equal(ratchet_cache_sim_access(s, id, 1), 0);
  assert_int_equal(ratchet_cache_sim_access(s, 1, 1), 1);
  assert_int_equal(ratchet_cache_sim_access(s, 11, 1), 0);
  ratchet_cache_sim_stats_get(s, &st);
  assert_true(st.ghost_bytes <= 90);
  assert_true(st.bytes <= 100);
  ratchet_cache_sim_free(s);
}

static void test_s3fifo_queues(void **state) {
  (void)state;
  struct log l = {.n = 0};
  /* C = 30: S = 3, M = 27, G = 27. Unit objects are admitted to small. */
  ratchet_cache_sim *s = make(RATCHET_CACHE_S3FIFO, 30, &l);
  /* 1 hit twice, 2 once, the rest never: fill to 30. */
  for (uint64_t id = 1; id <= 30; id++)
    ratchet_cache_sim_access(s, id, 1);
  ratchet_cache_sim_access(s, 1, 1);
  ratchet_cache_sim_access(s, 1, 1);
  ratchet_cache_sim_access(s, 2, 1);
  /* 31: small's tail is 1 (count 2): to main; then 2 (count 1): dropped
   * into the ghost, evicted. */
  ratchet_cache_sim_access(s, 31, 1);
  assert_int_equal(l.n, 1);
  assert_int_equal(l.ids[0], 2);
  /* 32..59 churn small (M_used = 1 <= 27): 3..30 go, in order. */
  for (uint64_t id = 32; id <= 59; id++)
    ratchet_cache_sim_access(s, id, 1);
  assert_int_equal(l.n, 29);
  for (size_t i = 1; i < l.n; i++)
    assert_int_equal(l.ids[i], i + 2);
  /* 1 is in main: a hit (count 1). */
  assert_int_equal(ratchet_cache_sim_access(s, 1, 1), 1);
  /* The ghost holds the last 27 dropped ids, 4..30 (2 and 3 aged out): 4
   * is a ghost hit and goes to main, evicting small's oldest, 31. */
  ratchet_cache_sim_stats st;
  ratchet_cache_sim_stats_get(s, &st);
  assert_int_equal(st.ghost_objects, 27);
  l.n = 0;
  assert_int_equal(ratchet_cache_sim_access(s, 4, 1), 0);
  assert_int_equal(l.n, 1);
  assert_int_equal(l.ids[0], 31);
  ratchet_cache_sim_stats_get(s, &st);
  assert_int_equal(st.ghost_objects, 27); /* 4 left, 31 came in */
  /* 2 aged out of the ghost: a plain miss, into small. */
  assert_int_equal(ratchet_cache_sim_access(s, 2, 1), 0);
  assert_int_equal(l.ids[1], 32);
  ratchet_cache_sim_free(s);
}

/* The hand-derived scan: C = 100 unit objects; hot set 1..5 read three times
 * (5 misses, 10 hits), a scan of 200 new ids (200 misses), the hot set once
 * more. S3-FIFO moved the hot set to main and SIEVE's hand never came back
 * to it: 0 misses; LRU and FIFO lost it to the scan: 5 misses. */
static void test_scan_by_hand(void **state) {
  (void)state;
  static const uint64_t expect[4] = {205, 205, 210, 210};
  for (int p = 0; p < 4; p++) {
    ratchet_cache_sim *s = make((ratchet_cache_policy)p, 100, NULL);
    for (int r = 0; r < 3; r++)
      for (uint64_t id = 1; id <= 5; id++)
        ratchet_cache_sim_access(s, id, 1);
    for (uint64_t id = 1000; id < 1200; id++)
      ratchet_cache_sim_access(s, id, 1);
    for (uint64_t id = 1; id <= 5; id++)
      ratchet_cache_sim_access(s, id, 1);
    ratchet_cache_sim_stats st;
    ratchet_cache_sim_stats_get(s, &st);
    assert_int_equal(st.requests, 220);
    assert_int_equal(st.misses, expect[p]);
    assert_int_equal(st.hits + st.misses, st.requests);
    ratchet_cache_sim_free(s);
  }
}

/* Loops, by hand: 40 objects in a cache of 50 miss only the first time; 100
 * objects in a cache of 50 miss every time under every policy (S3-FIFO's
 * ghost holds the last 45 drops, and an id returns after 100). */
static void test_loops_by_hand(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    ratchet_cache_sim *s = make((ratchet_cache_policy)p, 50, NULL);
    tm_req *t = tm_trace_loop(1, 40, 10, 1);
    uint64_t misses = 0;
    for (size_t i = 0; i < 400; i++)
      misses += ratchet_cache_sim_access(s, t[i].id, t[i].size) == 0;
    assert_int_equal(misses, 40);
    free(t);
    ratchet_cache_sim_free(s);

    s = make((ratchet_cache_policy)p, 50, NULL);
    t = tm_trace_loop(1, 100, 10, 1);
    misses = 0;
    for (size_t i = 0; i < 1000; i++)
      misses += ratchet_cache_sim_access(s, t[i].id, t[i].size) == 0;
    assert_int_equal(misses, 1000);
    free(t);
    ratchet_cache_sim_free(s);
  }
}

static void test_max_entries(void **state) {
  (void)state;
  for (int p = 0; p < 4; p++) {
    ratchet_cache_sim_options o = RATCHET_CACHE_SIM_OPTIONS_INIT;
    o.policy = (ratchet_cache_policy)p;
    o.capacity_bytes = 1000;
    o.max_entries = 7;
    ratchet_cache_sim *s;
    assert_int_equal(ratchet_cache_sim_new(&o, &s), 0);
    tm_model *m = tm_model_new(o.policy, 1000, 7);
    tm_req *t = tm_trace_zipf(5000, 50, 0.8, 1, 20, (uint64_t)p);
    for (size_t i = 0; i < 5000; i++) {
      int hit = ratchet_cache_sim_access(s, t[i].id, t[i].size);
      assert_int_equal(hit, tm_model_access(m, t[i].id, t[i].size));
      ratchet_cache_sim_stats st;
      ratchet_cache_sim_stats_get(s, &st);
      assert_true(st.objects <= 7);
    }
    free(t);
    tm_model_free(m);
    ratchet_cache_sim_free(s);
  }
}

/* Request-by-request agreement with the model, evictions in order, on
 * random traces: for each policy, several capacities and size mixes. */
static void check_agreement(ratchet_cache_policy p, uint64_t capacity,
                            const tm_req *t, size_t n) {
  struct log *l = calloc(1, sizeof *l);
  assert_non_null(l);
  ratchet_cache_sim *s = make(p, capacity, l);
  tm_model *m = tm_model_new(p, capacity, 0);
  assert_non_null(m);
  size_t checked = 0;
  uint64_t g = capacity / 10 * 9 + capacity % 10 * 9 / 10;
  for (size_t i = 0; i < n; i++) {
    int hit = ratchet_cache_sim_access(s, t[i].id, t[i].size);
    int want = tm_model_access(m, t[i].id, t[i].size);
    if (hit != want)
      fail_msg("%s C=%llu: request %zu (id %llu size %u): sim %d model %d",
               ratchet_cache_policy_name(p), (unsigned long long)capacity, i,
               (unsigned long long)t[i].id, t[i].size, hit, want);
    size_t ne;
    const uint64_t *ev = tm_model_evictions(m, &ne);
    /* Compare evictions in windows that fit the log. */
    if (l->n >= 2048 || i + 1 == n) {
      assert_true(ne - checked >= l->n);
      for (size_t k = 0; k < l->n; k++)
        if (ev[checked + k] != l->ids[k])
          fail_msg("%s C=%llu: eviction %zu: sim %llu model %llu",
                   ratchet_cache_policy_name(p), (unsigned long long)capacity,
                   checked + k, (unsigned long long)l->ids[k],
                   (unsigned long long)ev[checked + k]);
      checked += l->n;
      l->n = 0;
    }
    ratchet_cache_sim_stats st;
    ratchet_cache_sim_stats_get(s, &st);
    assert_int_equal(st.bytes, tm_model_bytes(m));
    assert_int_equal(st.objects, tm_model_objects(m));
    assert_true(st.bytes <= capacity);
    if (p == RATCHET_CACHE_S3FIFO) {
      assert_int_equal(st.ghost_bytes, tm_model_ghost_bytes(m));
      assert_true(st.ghost_bytes <= g);
    }
  }
  size_t ne;
  tm_model_evictions(m, &ne);
  assert_int_equal(checked, ne);
  tm_model_free(m);
  ratchet_cache_sim_free(s);
  free(l);
}

static void test_model_agreement(void **state) {
  (void)state;
  static const uint64_t caps[] = {10, 37, 100, 1000};
  tm_req *unit = tm_trace_zipf(20000, 2000, 0.9, 1, 1, 1);
  tm_req *mixed = tm_trace_zipf(20000, 2000, 0.8, 1, 64, 2);
  tm_req *big = tm_trace_zipf(5000, 300, 1.1, 100, 900, 3);
  size_t nscan;
  tm_req *scan = tm_trace_zipf_scan(10000, 500, 0.9, 3000, 1, 4, &nscan);
  for (int p = 0; p < 4; p++) {
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
      check_agreement((ratchet_cache_policy)p, caps[c], unit, 20000);
      check_agreement((ratchet_cache_policy)p, caps[c] * 8, mixed, 20000);
      check_agreement((ratchet_cache_policy)p, caps[c] * 10, big, 5000);
      check_agreement((ratchet_cache_policy)p, caps[c], scan, nscan);
    }
  }
  free(unit);
  free(mixed);
  free(big);
  free(scan);
}

/* Hits on a hot set far above 3 per pass: S3-FIFO's main queue must agree
 * with the model, whose counts are not saturated. */
static void test_hot_counts(void **state) {
  (void)state;
  tm_req *t = tm_trace_zipf(30000, 400, 1.3, 1, 4, 9);
  check_agreement(RATCHET_CACHE_S3FIFO, 120, t, 30000);
  check_agreement(RATCHET_CACHE_S3FIFO, 300, t, 30000);
  free(t);
}

static void test_sim_oom(void **state) {
  (void)state;
  ratchet_cache_sim_options o = RATCHET_CACHE_SIM_OPTIONS_INIT;
  o.capacity_bytes = 100;
  ratchet_cache_sim *s = NULL;
  tu_alloc_install(0);
  assert_int_equal(ratchet_cache_sim_new(&o, &s), -ENOMEM);
  assert_null(s);
  tu_alloc_uninstall();
  /* Fail the k-th allocation of a run, for every k up to a clean run: each
   * failure is -ENOMEM, and freeing leaves nothing behind. */
  tm_req *t = tm_trace_zipf(3000, 300, 0.9, 1, 9, 5);
  for (int p = 0; p < 4; p++) {
    size_t total;
    o.policy = (ratchet_cache_policy)p;
    tu_alloc_install(SIZE_MAX);
    assert_int_equal(ratchet_cache_sim_new(&o, &s), 0);
    for (size_t i = 0; i < 3000; i++)
      assert_true(ratchet_cache_sim_access(s, t[i].id, t[i].size) >= 0);
    total = tu_alloc_count();
    ratchet_cache_sim_free(s);
    assert_int_equal(tu_alloc_live(), 0);
    tu_alloc_uninstall();
    for (size_t k = 1; k < total; k++) {
      tu_alloc_install(k);
      assert_int_equal(ratchet_cache_sim_new(&o, &s), 0);
      int failed = 0;
      for (size_t i = 0; i < 3000; i++) {
        int r = ratchet_cache_sim_access(s, t[i].id, t[i].size);
        if (r == -ENOMEM)
          failed++;
        else
          assert_true(r == 0 || r == 1);
      }
      assert_true(failed > 0);
      ratchet_cache_sim_stats st;
      ratchet_cache_sim_stats_get(s, &st);
      assert_int_equal(st.requests, 3000);
      assert_true(st.bytes <= 100);
      ratchet_cache_sim_free(s);
      assert_int_equal(tu_alloc_live(), 0);
      tu_alloc_uninstall();
    }
  }
  free(t);
}

int test_policy(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_sim_options),
      cmocka_unit_test(test_fifo_order),
      cmocka_unit_test(test_lru_order),
      cmocka_unit_test(test_sieve_order),
      cmocka_unit_test(test_s3fifo_admission),
      cmocka_unit_test(test_s3fifo_queues),
      cmocka_unit_test(test_scan_by_hand),
      cmocka_unit_test(test_loops_by_hand),
      cmocka_unit_test(test_max_entries),
      cmocka_unit_test(test_model_agreement),
      cmocka_unit_test(test_hot_counts),
      cmocka_unit_test(test_sim_oom),
  };
  return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
